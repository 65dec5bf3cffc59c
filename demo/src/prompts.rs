//! Natural prompts for the demo: a few plain-English requests that show, without an
//! Anthropic account, what a session does — streamed text, a tool call that waits for
//! approval (a Write, shown with its content), a question with options, an answer too long
//! for one chat message (it arrives as a file on Telegram and Discord), and a tool that
//! fails. `ccrm up --demo` lists [`PROMPTS`] in its banner.
//!
//! This is a layer on top of [`crate::script`]'s keywords: [`crate::script::decide`] asks
//! [`natural_reply`] only when no keyword matched (the text would be echoed), so every
//! keyword keeps working. Like the keywords, a reply is a pure function of the text, the
//! number of tool rounds since it and the newest tool result.

use std::time::Duration;

use serde_json::json;

use crate::script::{Reply, ask_user_question_input};

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

/// The reply to `text` if it is one of the natural prompts, after `rounds` tool rounds;
/// `last` is the newest tool result (text, is_error).
pub fn natural_reply(text: &str, rounds: usize, last: (&str, bool)) -> Option<Reply> {
    let t = normalise(text);
    if t.len() > 200 {
        return None;
    }
    let (result, failed) = last;
    if t.contains("hello world") && (t.contains("write") || t.contains("create")) {
        return Some(if rounds == 0 {
            Reply::Blocks(vec![
                crate::Block::Text(format!(
                    "I'll create `{HELLO_FILE}` with a classic hello world."
                )),
                crate::Block::ToolUse {
                    name: "Write".to_owned(),
                    input: json!({ "file_path": HELLO_FILE, "content": HELLO_CONTENT }),
                },
            ])
        } else if failed {
            Reply::text(format!(
                "All right, I did not write `{HELLO_FILE}` ({}).",
                first_line(result)
            ))
        } else {
            Reply::text(format!(
                "I wrote `{HELLO_FILE}`. Run it with `python3 {HELLO_FILE}`."
            ))
        });
    }
    if t.contains("ask me") {
        return Some(if rounds == 0 {
            Reply::ToolUse {
                name: "AskUserQuestion".to_owned(),
                input: ask_user_question_input(
                    "Which language should the next example be in?",
                    &["Python", "Rust", "Go"],
                ),
            }
        } else {
            Reply::text(format!(
                "You chose {}. (That question came from the AskUserQuestion tool: every surface shows it with its options.)",
                chosen(result)
            ))
        });
    }
    if t.contains("at length") || t.contains("explain the project") {
        return Some(Reply::text(long_answer()));
    }
    if t.contains("failing command") || (t.contains("fail") && t.contains("run")) {
        return Some(if rounds == 0 {
            Reply::ToolUse {
                name: "Bash".to_owned(),
                input: json!({
                    "command": format!("ls {MISSING_DIR}"),
                    "description": "List a directory that does not exist",
                }),
            }
        } else if failed {
            Reply::text(format!(
                "The command failed, as planned: {}. A failing tool is reported as an error and the session carries on.",
                first_line(result)
            ))
        } else {
            Reply::text("Surprisingly, the command worked.")
        });
    }
    if t.contains("story") {
        return Some(Reply::Chunks {
            deltas: STORY.split_inclusive(' ').map(str::to_owned).collect(),
            delay: Some(Duration::from_millis(40)),
        });
    }
    if t == "help" || t.contains("what can you do") {
        return Some(Reply::text(help_text()));
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
        let write = natural_reply("Write a hello world file.", 0, ("", false));
        assert!(
            matches!(&write, Some(Reply::Blocks(b)) if b.iter().any(|x| matches!(x, crate::Block::ToolUse { name, .. } if name == "Write"))),
            "{write:?}"
        );
        assert!(matches!(
            natural_reply("ask me something", 0, ("", false)),
            Some(Reply::ToolUse { name, .. }) if name == "AskUserQuestion"
        ));
        let Some(Reply::Text(long)) =
            natural_reply("explain the project at length", 0, ("", false))
        else {
            panic!("a long text");
        };
        assert!(long.chars().count() >= LONG_ANSWER_MIN_CHARS);
        assert!(matches!(
            natural_reply("run a failing command", 0, ("", false)),
            Some(Reply::ToolUse { name, .. }) if name == "Bash"
        ));
        assert!(matches!(
            natural_reply("tell me a story", 0, ("", false)),
            Some(Reply::Chunks { .. })
        ));
        assert!(natural_reply("help", 0, ("", false)).is_some());
        assert!(natural_reply("something else", 0, ("", false)).is_none());
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
        assert_eq!(
            r,
            Some(Reply::text(
                "You chose Rust. (That question came from the AskUserQuestion tool: every surface shows it with its options.)"
            ))
        );
        let r = natural_reply(
            "run a failing command",
            1,
            ("Exit code 2\nls: cannot access", true),
        );
        assert!(matches!(r, Some(Reply::Text(t)) if t.contains("Exit code 2")));
        let r = natural_reply("write a hello world file", 1, ("denied", true));
        assert!(matches!(r, Some(Reply::Text(t)) if t.contains("did not write")));
    }
}
