//! Natural prompts for the demo: a few plain-English requests that show, without an
//! Anthropic account, what a session does — streamed text, a tool call that waits for
//! approval (a Write, shown with its content), a question with options, an answer too long
//! for one chat message (it arrives as a file on Telegram and Discord), and a tool that
//! fails. `ccrm up --demo` lists [`PROMPTS`] in its banner.
//!
//! This is a layer on top of [`crate::script`]'s keywords: [`decide`], what the demo server
//! answers with, asks [`natural_reply`] only when no keyword matched (the text would be
//! echoed), so every keyword keeps working, and turns the [`Natural`] answer into a
//! [`Reply`]. Like the keywords, an answer is a pure function of the request body.

use std::time::Duration;

use serde_json::{Value, json};

use crate::script::{self, Block, Reply, ask_user_question_input};

/// The reply to a Messages API request body: the keyword rules of [`crate::script`], else a
/// natural prompt, else the keywords' echo.
pub fn decide(body: &Value) -> Reply {
    let reply = script::decide(body);
    let Some(t) = script::turn_facts(body) else {
        return reply;
    };
    if reply != Reply::text(format!("Echo: {}", t.text)) {
        return reply;
    }
    natural_reply(&t.text, t.rounds, (&t.last_result, t.last_failed)).map_or(reply, to_reply)
}

/// A natural prompt's answer as the reply the server sends.
fn to_reply(natural: Natural) -> Reply {
    match natural {
        Natural::Text(text) => Reply::Text(text),
        Natural::Stream { deltas, delay } => Reply::Chunks {
            deltas,
            delay: Some(delay),
        },
        Natural::Write {
            intro,
            path,
            content,
        } => Reply::Blocks(vec![
            Block::Text(intro),
            Block::ToolUse {
                name: "Write".to_owned(),
                input: json!({ "file_path": path, "content": content }),
            },
        ]),
        Natural::Ask { question, options } => {
            let options: Vec<&str> = options.iter().map(String::as_str).collect();
            Reply::ToolUse {
                name: "AskUserQuestion".to_owned(),
                input: ask_user_question_input(&question, &options),
            }
        }
        Natural::Bash {
            command,
            description,
        } => Reply::ToolUse {
            name: "Bash".to_owned(),
            input: json!({ "command": command, "description": description }),
        },
    }
}

/// What the demo model does for a natural prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum Natural {
    /// Say this.
    Text(String),
    /// Stream these pieces, `delay` apart.
    Stream {
        /// The text deltas.
        deltas: Vec<String>,
        /// Pause between them.
        delay: Duration,
    },
    /// Say `intro`, then call Write.
    Write {
        /// The text before the call.
        intro: String,
        /// `file_path`.
        path: String,
        /// `content`.
        content: String,
    },
    /// Ask one single-choice question (AskUserQuestion).
    Ask {
        /// The question.
        question: String,
        /// Its options.
        options: Vec<String>,
    },
    /// Call Bash.
    Bash {
        /// The command.
        command: String,
        /// What it does.
        description: String,
    },
}

/// The prompts, each with what it shows (for the banner, the README and `help`).
pub const PROMPTS: &[(&str, &str)] = &[
    ("tell me a story", "streamed text"),
    (
        "write a hello world file",
        "a Write that waits for your approval",
    ),
    ("ask me something", "a question with options to answer"),
    (
        "explain the project at length",
        "a long answer (a file on Telegram/Discord)",
    ),
    (
        "run a failing command",
        "a Bash approval, then a failing tool",
    ),
    ("help", "this list"),
];

/// The file `write a hello world file` creates (relative to the session's directory).
pub const HELLO_FILE: &str = "hello.py";

/// What the file holds.
pub const HELLO_CONTENT: &str = "#!/usr/bin/env python3\n\"\"\"Hello world, written by the ccrm demo model.\"\"\"\n\nprint(\"Hello, world!\")\n";

/// The directory `run a failing command` lists (it does not exist).
pub const MISSING_DIR: &str = "/nonexistent/ccrm-demo";

/// Longer than Telegram's 4096 characters and Discord's four 2000-character messages.
pub const LONG_ANSWER_MIN_CHARS: usize = 9_000;

/// The answer to `text` if it is one of the natural prompts, after `rounds` tool rounds;
/// `last` is the newest tool result (text, is_error).
pub fn natural_reply(text: &str, rounds: usize, last: (&str, bool)) -> Option<Natural> {
    let t = normalise(text);
    if t.len() > 200 {
        return None;
    }
    let (result, failed) = last;
    let say = |s: String| Some(Natural::Text(s));
    if t.contains("hello world") && (t.contains("write") || t.contains("create")) {
        if rounds == 0 {
            return Some(Natural::Write {
                intro: format!("I'll create `{HELLO_FILE}` with a classic hello world."),
                path: HELLO_FILE.to_owned(),
                content: HELLO_CONTENT.to_owned(),
            });
        }
        return if failed {
            say(format!(
                "All right, I did not write `{HELLO_FILE}` ({}).",
                first_line(result)
            ))
        } else {
            say(format!(
                "I wrote `{HELLO_FILE}`. Run it with `python3 {HELLO_FILE}`."
            ))
        };
    }
    if t.contains("ask me") {
        if rounds == 0 {
            return Some(Natural::Ask {
                question: "Which language should the next example be in?".to_owned(),
                options: vec!["Python".to_owned(), "Rust".to_owned(), "Go".to_owned()],
            });
        }
        return say(format!(
            "You chose {}. (That question came from the AskUserQuestion tool: every surface shows it with its options.)",
            chosen(result)
        ));
    }
    if t.contains("at length") || t.contains("explain the project") {
        return say(long_answer());
    }
    if t.contains("failing command") || (t.contains("fail") && t.contains("run")) {
        if rounds == 0 {
            return Some(Natural::Bash {
                command: format!("ls {MISSING_DIR}"),
                description: "List a directory that does not exist".to_owned(),
            });
        }
        return if failed {
            say(format!(
                "The command failed, as planned: {}. A failing tool is reported as an error and the session carries on.",
                first_line(result)
            ))
        } else {
            say("Surprisingly, the command worked.".to_owned())
        };
    }
    if t.contains("story") {
        return Some(Natural::Stream {
            deltas: STORY.split_inclusive(' ').map(str::to_owned).collect(),
            delay: Duration::from_millis(40),
        });
    }
    if t == "help" || t.contains("what can you do") {
        return say(help_text());
    }
    None
}

/// The `help` answer: every prompt with what it shows.
pub fn help_text() -> String {
    let mut out = String::from(
        "This is the ccrm demo model (no Claude behind it). Try one of these prompts:\n\n",
    );
    for (prompt, shows) in PROMPTS {
        out.push_str(&format!("- \"{prompt}\": {shows}\n"));
    }
    out.push_str("\nAnything else is echoed back.");
    out
}

fn normalise(text: &str) -> String {
    text.trim()
        .trim_end_matches(['.', '!', '?'])
        .to_lowercase()
        .replace('-', " ")
}

fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}

/// The chosen label in the CLI's answer text (`..."question"="label"...`), else the text.
fn chosen(result: &str) -> String {
    result
        .split_once("\"=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or_else(
            || first_line(result).to_owned(),
            |(label, _)| label.to_owned(),
        )
}

const STORY: &str = "Once upon a time, a developer left three Claude Code sessions running \
on three machines and went for a walk. On the way, a phone buzzed: one session wanted to \
write a file. A tap on Allow, and the work went on. Another asked which database to use; \
a second tap answered it. By the time the walk was over, every answer was waiting, and \
nothing had been lost. The end.";

/// A Markdown answer of at least [`LONG_ANSWER_MIN_CHARS`] characters about ccrm.
pub fn long_answer() -> String {
    let mut out = String::from(
        "# ccrm, explained at length\n\n\
         ccrm runs real Claude Code sessions under a small daemon on each of your machines \
         and lets you steer them from a terminal, a REST API, a dashboard, Telegram or \
         Discord.\n",
    );
    let sections: &[(&str, &str)] = &[
        (
            "The daemon",
            "`ccrmd` owns the Claude Code processes of one machine. It starts them without a \
             shell, in their own process groups, with a sanitised environment, and keeps every \
             event they produce in a per-session log. Prompts are queued: one turn runs at a \
             time and the next prompt is written only after the previous result.",
        ),
        (
            "Approvals and questions",
            "When Claude wants to use a tool that needs permission, the request becomes a \
             pending approval that outlives the terminal that saw it. The first answer wins, \
             whichever surface it came from, and everyone else is told who decided. Questions \
             asked with AskUserQuestion work the same way, with their options as buttons.",
        ),
        (
            "The bot",
            "`ccrm-bot` is the server that daemons dial out to. It stores every event in \
             SQLite exactly once, serves them over REST with Server-Sent Events, and drives \
             the chat front ends. It can serve HTTPS itself or sit behind a reverse proxy.",
        ),
        (
            "No lost output",
            "Every event is written to the daemon's spool before anyone sees it and resent \
             until the bot has committed it. Killing either side at any moment loses and \
             duplicates nothing.",
        ),
        (
            "Attach",
            "`ccrm attach` hands a session to the real Claude Code TUI in tmux, with its \
             history on screen, and takes it back when you leave.",
        ),
    ];
    let mut part = 1;
    while out.chars().count() < LONG_ANSWER_MIN_CHARS {
        for (title, body) in sections {
            out.push_str(&format!("\n## {part}. {title}\n\n{body}\n"));
            part += 1;
        }
        out.push_str(
            "\n```sh\nccrm start --name web --cwd ~/src/web\nccrm prompt web \"add a health check\" --follow\nccrm approve web\n```\n",
        );
    }
    out.push_str("\nThat is the whole tour.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_prompt_has_its_behaviour() {
        let none = ("", false);
        let write = natural_reply("Write a hello world file.", 0, none);
        assert!(
            matches!(&write, Some(Natural::Write { path, content, .. }) if path == HELLO_FILE && content == HELLO_CONTENT),
            "{write:?}"
        );
        assert!(matches!(
            natural_reply("ask me something", 0, none),
            Some(Natural::Ask { options, .. }) if options.len() == 3
        ));
        let Some(Natural::Text(long)) = natural_reply("explain the project at length", 0, none)
        else {
            panic!("a long text");
        };
        assert!(long.chars().count() >= LONG_ANSWER_MIN_CHARS);
        assert!(matches!(
            natural_reply("run a failing command", 0, none),
            Some(Natural::Bash { command, .. }) if command.contains(MISSING_DIR)
        ));
        assert!(matches!(
            natural_reply("tell me a story", 0, none),
            Some(Natural::Stream { deltas, .. }) if deltas.len() > 10
        ));
        assert!(natural_reply("help", 0, none).is_some());
        assert!(natural_reply("something else", 0, none).is_none());
    }

    #[test]
    fn keywords_win_and_only_echoes_become_natural() {
        let body = |text: &str| json!({"messages": [{"role": "user", "content": text}]});
        assert_eq!(
            decide(&body("WRITE:/tmp/file.txt hello world")),
            Reply::ToolUse {
                name: "Write".to_owned(),
                input: json!({"file_path": "/tmp/file.txt", "content": "hello world"}),
            }
        );
        assert_eq!(decide(&body("hi")), Reply::text("Echo: hi"));
        assert!(
            matches!(decide(&body("ask me something")), Reply::ToolUse { name, .. } if name == "AskUserQuestion")
        );
    }

    #[test]
    fn follow_ups_read_the_tool_result() {
        let r = natural_reply(
            "ask me something",
            1,
            (
                "User has answered your questions: \"Which?\"=\"Rust\". You can now continue",
                false,
            ),
        );
        assert!(matches!(r, Some(Natural::Text(t)) if t.starts_with("You chose Rust.")));
        let r = natural_reply(
            "run a failing command",
            1,
            ("Exit code 2\nls: cannot access", true),
        );
        assert!(matches!(r, Some(Natural::Text(t)) if t.contains("Exit code 2")));
        let r = natural_reply("write a hello world file", 1, ("denied", true));
        assert!(matches!(r, Some(Natural::Text(t)) if t.contains("did not write")));
    }
}
