//! Workspaces and one-shot executions on a real ccrmd, driven by the real `ccrm` binary and
//! the control socket, with the real Claude Code CLI against the fake Messages API:
//! `workspace push` of a directory (`.gitignore` honoured, `.git/` left out) and of a zip,
//! `reuse` and `overwrite`, every hostile archive refused with its code and nothing
//! written, `ccrm exec` streaming an answer and exiting with its code, restricted tools,
//! the timeout killing claude and its tool, the worker cap with its FIFO queue and
//! `WORKERS_BUSY`, cancel, and sessions started in a workspace.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::common::ipc::Command;
use ::common::workspace::{ExecArgs, ExecInfo, ExecRef, ExecStatus};
use common::{Env, WAIT};
use serde_json::Value;

fn json_out(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(path: &Path, content: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    std::fs::write(path, content).expect("write");
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("ls").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).expect("rel").display().to_string());
            }
        }
    }
    out
}

/// What the workspaces directory holds besides workspaces and their records.
fn leftovers(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.state_dir().join("workspaces"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `ccrm` without blocking this test's runtime, which also serves the fake API that
/// the daemon's claude children call.
async fn ccrm(env: &Env, args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_ccrm"))
        .args(args)
        .envs(env.env_vars())
        .current_dir(&env.work)
        .stdin(std::process::Stdio::null())
        .output();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("ccrm timed out")
        .expect("run ccrm")
}

async fn start_with(vars: &[(&str, &str)]) -> Env {
    let mut env = Env::prepare(None).await;
    env.extra_env = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    env.daemon = Some(env.spawn_daemon().expect("ccrmd did not start"));
    env
}

#[tokio::test]
async fn push_a_directory_or_a_zip_reuse_overwrite_list_and_remove() {
    let env = Env::start().await;
    // A project that is not a git repository, with .gitignore rules at two levels and a
    // stray .git directory that must never be sent.
    let src = env.dir.path().join("project");
    write(&src.join("README.md"), "# project\n");
    write(&src.join("src/main.rs"), "fn main() {}\n");
    write(&src.join(".gitignore"), "*.log\ntarget/\n");
    write(&src.join("debug.log"), "noise");
    write(&src.join("target/out.bin"), "build output");
    write(&src.join("src/.gitignore"), "generated.rs\n");
    write(&src.join("src/generated.rs"), "// generated");
    write(&src.join(".git/HEAD"), "ref: refs/heads/main\n");
    write(&src.join(".env.example"), "A=1\n");
    std::os::unix::fs::symlink("/etc/passwd", src.join("passwd-link")).expect("symlink");

    let src_s = src.display().to_string();
    let out = ccrm(
        &env,
        &[
            "--json",
            "workspace",
            "push",
            &src_s,
            "--id",
            "proj",
            "--name",
            "Project",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let v = json_out(&out);
    assert_eq!(v["reused"], false, "{v}");
    let path = PathBuf::from(v["workspace"]["path"].as_str().expect("path"));
    assert_eq!(path, env.state_dir().join("workspaces/proj"));
    assert_eq!(
        std::fs::metadata(&path).expect("ws").permissions().mode() & 0o777,
        0o700
    );
    let expected: BTreeSet<String> = [
        "README.md",
        "src/main.rs",
        ".gitignore",
        "src/.gitignore",
        ".env.example",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(
        files(&path),
        expected,
        "ignored files, .git/ and symlinks stay out"
    );
    assert_eq!(v["workspace"]["files"], 5);

    // The same rules apply when the directory is a git repository.
    let repo = env.dir.path().join("repo");
    write(&repo.join(".git/HEAD"), "ref: refs/heads/main\n");
    write(&repo.join(".git/config"), "[core]\n");
    write(&repo.join(".gitignore"), "secret.txt\n");
    write(&repo.join("secret.txt"), "do not send");
    write(&repo.join("lib.rs"), "pub fn f() {}\n");
    let repo_s = repo.display().to_string();
    let out = ccrm(
        &env,
        &["--json", "workspace", "push", &repo_s, "--id", "repo"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let repo_ws = env.state_dir().join("workspaces/repo");
    assert_eq!(
        files(&repo_ws),
        [".gitignore", "lib.rs"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    );

    // `reuse` keeps what is there, even what the model wrote since.
    write(&path.join("notes.txt"), "written later");
    let zip = env.dir.path().join("small.zip");
    std::fs::write(&zip, testkit::zips::small_project()).expect("zip");
    let zip_s = zip.display().to_string();
    let out = ccrm(
        &env,
        &[
            "--json",
            "workspace",
            "push",
            &zip_s,
            "--id",
            "proj",
            "--policy",
            "reuse",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json_out(&out)["reused"], true);
    assert!(path.join("notes.txt").exists() && !path.join("debug.log").exists());

    // `overwrite` replaces it whole.
    let out = ccrm(
        &env,
        &[
            "--json",
            "workspace",
            "push",
            &zip_s,
            "--id",
            "proj",
            "--policy",
            "overwrite",
            "--name",
            "Project",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json_out(&out)["reused"], false);
    assert_eq!(
        files(&path),
        ["README.md", "src/main.rs"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    );
    assert!(path.join("docs").is_dir(), "empty directories come along");
    assert!(leftovers(&env).is_empty(), "{:?}", leftovers(&env));

    let out = ccrm(&env, &["--json", "workspace", "list"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let list = json_out(&out);
    let ids: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert_eq!(ids, ["proj", "repo"]);
    assert_eq!(list[0]["name"], "Project");
    let human = ccrm(&env, &["workspace", "list"]).await;
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("Project"),
        "{}",
        text(&human)
    );

    let out = ccrm(&env, &["workspace", "rm", "repo"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!repo_ws.exists());
    let out = ccrm(&env, &["--json", "workspace", "rm", "repo"]).await;
    assert!(!out.status.success());
    assert_eq!(json_out(&out)["error"]["code"], "WORKSPACE_NOT_FOUND");
    let out = ccrm(
        &env,
        &["--json", "workspace", "push", &zip_s, "--id", "no/slash"],
    )
    .await;
    assert_eq!(
        json_out(&out)["error"]["code"],
        "BAD_WORKSPACE_ID",
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn hostile_archives_are_refused_with_their_code_and_nothing_is_written() {
    let max_bytes = 4 * 1024 * 1024;
    let env = start_with(&[
        ("CCRM_WORKSPACE_MAX_BYTES", &max_bytes.to_string()),
        ("CCRM_WORKSPACE_MAX_FILES", "20"),
    ])
    .await;
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("outside");
    for (i, h) in testkit::zips::hostile(&outside, max_bytes, 20)
        .into_iter()
        .enumerate()
    {
        let zip = env.dir.path().join(format!("hostile-{i}.zip"));
        std::fs::write(&zip, &h.zip).expect("zip");
        let id = format!("h{i}");
        let out = ccrm(
            &env,
            &[
                "--json",
                "workspace",
                "push",
                &zip.display().to_string(),
                "--id",
                &id,
            ],
        )
        .await;
        assert!(
            !out.status.success(),
            "{} was accepted: {}",
            h.what,
            text(&out)
        );
        let v = json_out(&out);
        assert_eq!(v["error"]["code"], h.code, "{}: {v}", h.what);
        assert!(
            !v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{}: {v}",
            h.what
        );
        assert!(
            !env.state_dir().join(format!("workspaces/{id}")).exists(),
            "{}",
            h.what
        );
        assert!(
            leftovers(&env).is_empty(),
            "{}: left {:?}",
            h.what,
            leftovers(&env)
        );
    }
    // Entries that name the entry in their message.
    let v = {
        let zip = env.dir.path().join("named.zip");
        std::fs::write(
            &zip,
            testkit::zips::RawZip::new()
                .with(testkit::zips::Entry::file(
                    "x/../../named-escape.txt",
                    "pwned",
                ))
                .build(),
        )
        .expect("zip");
        json_out(
            &ccrm(
                &env,
                &[
                    "--json",
                    "workspace",
                    "push",
                    &zip.display().to_string(),
                    "--id",
                    "n",
                ],
            )
            .await,
        )
    };
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("named-escape.txt"),
        "{v}"
    );
    // Nothing escaped the workspace root.
    assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0);
    for p in ["escaped.txt", "workspaces/../escaped.txt"] {
        assert!(!env.state_dir().join(p).exists(), "{p}");
    }
    assert!(!env.dir.path().join("escaped.txt").exists());
    // The daemon goes on serving.
    let zip = env.dir.path().join("good.zip");
    std::fs::write(&zip, testkit::zips::small_project()).expect("zip");
    let out = ccrm(
        &env,
        &[
            "--json",
            "workspace",
            "push",
            &zip.display().to_string(),
            "--id",
            "good",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(env.status().await["pid"].as_u64().is_some());
}

async fn push_small(env: &Env, id: &str) -> PathBuf {
    let zip = env.dir.path().join(format!("{id}.zip"));
    std::fs::write(&zip, testkit::zips::small_project()).expect("zip");
    let out = ccrm(
        env,
        &[
            "--json",
            "workspace",
            "push",
            &zip.display().to_string(),
            "--id",
            id,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    PathBuf::from(json_out(&out)["workspace"]["path"].as_str().expect("path"))
}

#[tokio::test]
async fn exec_streams_the_answer_with_restricted_tools_and_exits_with_its_code() {
    let env = Env::start().await;
    let ws = push_small(&env, "app").await;
    let out = ccrm(&env, &["exec", "--workspace", "app", "hello", "there"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Echo: hello there"),
        "{}",
        text(&out)
    );
    // The summary on stderr: the exit code and one turn, said so.
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("exit code 0")
            && summary.contains("1 turn")
            && !summary.contains("1 turns"),
        "{}",
        text(&out)
    );

    // An allowed tool writes into the workspace.
    let out = ccrm(
        &env,
        &[
            "exec",
            "-w",
            "app",
            "--allow-tool",
            "Write",
            "WRITE:notes.txt kept",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(ws.join("notes.txt")).expect("notes"),
        "kept"
    );

    // Any other tool is denied at once, with a reason the model sees.
    let out = ccrm(
        &env,
        &[
            "--json",
            "exec",
            "-w",
            "app",
            "--id",
            "denied-1",
            "WRITE:nope.txt x",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!ws.join("nope.txt").exists());
    let items: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(
        items.last().map(|i| i["type"].clone()),
        Some(Value::from("complete")),
        "{items:?}"
    );
    let told = env.api.requests().iter().any(|r| {
        r.body
            .to_string()
            .contains("is not allowed in this execution")
    });
    assert!(told, "the model was not told why the tool was denied");

    // An error result is exit code 1.
    let out = ccrm(
        &env,
        &["exec", "--cwd", &env.work.display().to_string(), "ERR400"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // A missing workspace is refused before anything runs.
    let out = ccrm(&env, &["--json", "exec", "-w", "nowhere", "hi"]).await;
    assert_eq!(
        json_out(&out)["error"]["code"],
        "WORKSPACE_NOT_FOUND",
        "{}",
        text(&out)
    );

    // The whole output stays readable by id.
    let v = env
        .call(Command::ExecGet(ExecRef {
            execution_id: "denied-1".into(),
        }))
        .await
        .expect("exec.get");
    let info: ExecInfo = serde_json::from_value(v).expect("info");
    assert_eq!(info.status, ExecStatus::Completed);
    assert_eq!(info.exit_code, Some(0));
    assert!(info.output.contains("Done."), "{info:?}");
}

/// Bad flags are refused by `ccrm` itself, naming the flag, before a directory is zipped or
/// ccrmd is asked anything (none runs here): a missing or doubled place is a usage error
/// (exit 2); a bad id or timeout gets the code ccrmd would give, as JSON with `--json`.
#[tokio::test]
async fn bad_flags_are_refused_before_anything_is_zipped_or_sent() {
    let env = Env::prepare(None).await;
    let src = env.dir.path().join("big-project");
    write(&src.join("README.md"), "# hi\n");
    let src = src.display().to_string();
    let work = env.work.display().to_string();
    for (args, says) in [
        (vec!["exec", "hi"], "--workspace <WORKSPACE>|--cwd <CWD>"),
        (
            vec!["exec", "-w", "app", "--cwd", &work, "hi"],
            "cannot be used with '--cwd <CWD>'",
        ),
    ] {
        let out = ccrm(&env, &args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    for (args, code, says) in [
        (
            vec!["exec", "-w", "app", "--timeout", "0", "hi"],
            "bad_request",
            "--timeout must be between 1 and 86400",
        ),
        (
            vec!["exec", "-w", "app", "--timeout", "90000", "hi"],
            "bad_request",
            "--timeout must be between 1 and 86400",
        ),
        (
            vec!["exec", "-w", "app", "--id", "no spaces", "hi"],
            "bad_request",
            "--id `no spaces` must be",
        ),
        (
            vec!["exec", "-w", "../up", "hi"],
            "BAD_WORKSPACE_ID",
            "--workspace `../up` is not a workspace id",
        ),
        (
            vec!["workspace", "push", &src, "--id", "bad/id"],
            "BAD_WORKSPACE_ID",
            "--id `bad/id` must be",
        ),
    ] {
        let out = ccrm(&env, &args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        let mut with_json = vec!["--json"];
        with_json.extend(&args);
        let v = json_out(&ccrm(&env, &with_json).await);
        assert_eq!(v["error"]["code"], code, "{args:?}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{args:?}: {v}"
        );
    }
    // Nothing was zipped beside the socket.
    let zips: Vec<String> = std::fs::read_dir(env.runtime_dir())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".zip"))
                .collect()
        })
        .unwrap_or_default();
    assert!(zips.is_empty(), "{zips:?}");
    // A path that is not there: what to pass instead.
    let out = ccrm(&env, &["workspace", "push", "/no/such/dir", "--id", "ok"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        err.contains("/no/such/dir") && err.contains("pass a directory"),
        "{err}"
    );
}

/// Pids of live processes whose environment carries `marker` (zombies have none).
fn marked(marker: &str) -> Vec<(i32, String)> {
    let needle = format!("CCRM_OWNER={marker}");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if env
            .split(|b| *b == 0)
            .any(|v| v.starts_with(needle.as_bytes()))
        {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            out.push((pid, cmd));
        }
    }
    out
}

#[tokio::test]
async fn the_timeout_kills_claude_and_the_tool_it_started() {
    let env = Env::start().await;
    push_small(&env, "slow").await;
    let tag = ccrm_daemon::spawn::daemon_tag(&env.state_dir());
    let marker = format!("{tag}:exec-timeout-1");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ccrm"));
    cmd.args([
        "exec",
        "-w",
        "slow",
        "--id",
        "timeout-1",
        "--timeout",
        "25",
        "--allow-tool",
        "Bash",
        "TOOL:echo start; sleep 60; echo done",
    ])
    .envs(env.env_vars())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let run = cmd.spawn().expect("ccrm exec");
    // The tool runs (bounded wait), carrying the execution's marker.
    let seen_tool = tokio::time::timeout(WAIT, async {
        loop {
            if marked(&marker).iter().any(|(_, c)| c.contains("sleep 60")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(seen_tool.is_ok(), "the Bash tool never started");
    let out = tokio::time::timeout(WAIT, run.wait_with_output())
        .await
        .expect("ccrm exec did not end")
        .expect("output");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("EXECUTION_TIMEOUT"),
        "{}",
        text(&out)
    );
    // Neither claude nor its tool outlive the timeout.
    let gone = tokio::time::timeout(WAIT, async {
        while !marked(&marker).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "left behind: {:?}", marked(&marker));
    let v = env
        .call(Command::ExecGet(ExecRef {
            execution_id: "timeout-1".into(),
        }))
        .await
        .expect("get");
    assert_eq!(v["status"], "timeout", "{v}");
    assert_eq!(v["error"]["code"], "EXECUTION_TIMEOUT", "{v}");
}

fn exec_args(id: &str, ws: &str, prompt: &str) -> ExecArgs {
    ExecArgs {
        execution_id: id.into(),
        workspace_id: Some(ws.into()),
        prompt: prompt.into(),
        timeout_secs: 120,
        ..Default::default()
    }
}

/// Claude processes of this daemon's executions: its children running the claude binary
/// (not the tools, nor helpers claude starts from its own binary).
fn claude_children(tag: &str, claude: &Path, daemon: u32) -> usize {
    marked(&format!("{tag}:exec-"))
        .iter()
        .filter(|(pid, _)| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command's closing parenthesis: state, then the parent pid.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            ppid == Some(daemon)
                && std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == claude)
        })
        .count()
}

#[tokio::test]
async fn two_workers_run_two_at_a_time_and_the_rest_wait_in_order() {
    let env = start_with(&[("CCRM_WORKERS", "2")]).await;
    push_small(&env, "pool").await;
    let tag = ccrm_daemon::spawn::daemon_tag(&env.state_dir());
    let claude = env.claude.canonicalize().expect("claude path");
    let mut accepted = Vec::new();
    for i in 1..=5 {
        let v = env
            .call(Command::ExecStart(exec_args(
                &format!("e{i}"),
                "pool",
                "SLOW:8:400",
            )))
            .await
            .expect("exec.start");
        accepted.push(v);
    }
    assert_eq!(accepted[0]["status"], "running", "{}", accepted[0]);
    assert_eq!(accepted[1]["status"], "running", "{}", accepted[1]);
    for (i, v) in accepted.iter().enumerate().skip(2) {
        assert_eq!(
            v["position"],
            i - 1,
            "e{} waits at position {}: {v}",
            i + 1,
            i - 1
        );
    }
    let status = env.status().await;
    assert_eq!(status["executions"]["workers"], 2);
    assert_eq!(status["executions"]["queued"], 3, "{status}");
    // Watch the children until all five are done; never more than two at once.
    let mut peak = 0;
    let watched = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            peak = peak.max(claude_children(&tag, &claude, env.daemon_pid()));
            let st = env.status().await;
            let running = st["executions"]["running"].as_u64().unwrap_or(0);
            assert!(running <= 2, "{st}");
            if running == 0 && st["executions"]["queued"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    assert!(watched.is_ok(), "executions did not finish");
    assert_eq!(peak, 2, "exactly two claude children at the peak");
    let mut started = Vec::new();
    for i in 1..=5 {
        let v = env
            .call(Command::ExecGet(ExecRef {
                execution_id: format!("e{i}"),
            }))
            .await
            .expect("get");
        let info: ExecInfo = serde_json::from_value(v).expect("info");
        assert_eq!(info.status, ExecStatus::Completed, "{info:?}");
        assert_eq!(
            info.output,
            (0..8).map(|n| format!("chunk{n} ")).collect::<String>()
        );
        started.push(info.started_ms.expect("started"));
    }
    assert!(
        started[2] <= started[3] && started[3] <= started[4],
        "FIFO: {started:?}"
    );
    assert!(started[2] >= started[0].min(started[1]), "{started:?}");
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_cancel_ends_queued_and_running() {
    let env = start_with(&[("CCRM_WORKERS", "1"), ("CCRM_WORKERS_QUEUE", "1")]).await;
    push_small(&env, "busy").await;
    let tag = ccrm_daemon::spawn::daemon_tag(&env.state_dir());
    env.call(Command::ExecStart(exec_args("run", "busy", "SLOW:100:300")))
        .await
        .expect("first runs");
    env.call(Command::ExecStart(exec_args("wait", "busy", "hi")))
        .await
        .expect("second waits");
    let err = env
        .call(Command::ExecStart(exec_args("third", "busy", "hi")))
        .await
        .expect_err("third is refused");
    assert!(err.to_string().contains("busy"), "{err}");
    let out = ccrm(&env, &["--json", "exec", "-w", "busy", "hi"]).await;
    assert_eq!(
        json_out(&out)["error"]["code"],
        "WORKERS_BUSY",
        "{}",
        text(&out)
    );

    let v = env
        .call(Command::ExecCancel(ExecRef {
            execution_id: "wait".into(),
        }))
        .await
        .expect("cancel queued");
    assert_eq!(v["status"], "cancelled", "{v}");
    assert_eq!(v["error"]["code"], "EXECUTION_CANCELLED");
    env.call(Command::ExecCancel(ExecRef {
        execution_id: "run".into(),
    }))
    .await
    .expect("cancel running");
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            let v = env
                .call(Command::ExecGet(ExecRef {
                    execution_id: "run".into(),
                }))
                .await
                .expect("get");
            if v["status"] == "cancelled" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(ended.is_ok(), "the running execution was not cancelled");
    let gone = tokio::time::timeout(WAIT, async {
        while !marked(&format!("{tag}:exec-run")).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "claude outlived its cancel");
    // The worker is free again.
    let out = ccrm(&env, &["exec", "-w", "busy", "after", "cancel"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Echo: after cancel"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn a_session_starts_in_a_workspace_which_cannot_be_removed_while_it_runs() {
    let env = Env::start().await;
    let ws = push_small(&env, "shared").await;
    let out = ccrm(
        &env,
        &[
            "--json",
            "start",
            "--workspace",
            "shared",
            "--name",
            "in-ws",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let info = json_out(&out);
    assert_eq!(PathBuf::from(info["cwd"].as_str().expect("cwd")), ws);
    let out = ccrm(&env, &["--json", "workspace", "list"]).await;
    assert_eq!(json_out(&out)[0]["sessions"][0], info["id"]);
    let out = ccrm(&env, &["--json", "workspace", "rm", "shared"]).await;
    assert_eq!(
        json_out(&out)["error"]["code"],
        "WORKSPACE_IN_USE",
        "{}",
        text(&out)
    );
    let out = ccrm(
        &env,
        &[
            "--json",
            "workspace",
            "push",
            &env.dir.path().join("shared.zip").display().to_string(),
            "--id",
            "shared",
        ],
    )
    .await;
    assert_eq!(
        json_out(&out)["error"]["code"],
        "WORKSPACE_IN_USE",
        "overwrite while in use: {}",
        text(&out)
    );
    let out = ccrm(&env, &["stop", "in-ws"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = ccrm(&env, &["workspace", "rm", "shared"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = ccrm(&env, &["--json", "start", "--workspace", "shared"]).await;
    assert_eq!(
        json_out(&out)["error"]["code"],
        "WORKSPACE_NOT_FOUND",
        "{}",
        text(&out)
    );
}
