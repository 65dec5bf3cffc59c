//! `/new` with a zip in chat becomes a workspace session (issue 15), end to end: a real
//! `ccrm-bot` process against the loopback Telegram and Discord fakes, a real linked
//! `ccrmd` (whose hardened unpacker does the work), the real Claude Code CLI and the fake
//! Messages API.
//!
//! - Telegram: a zip document with `/new` as its caption creates a workspace named after
//!   the file (its files on disk under the daemon's state dir), a topic announcing the
//!   workspace with its file count, and a session running there that the model answers;
//!   the same file again gets a fresh id instead of replacing the first; a zip with a
//!   symlink is refused with `ZIP_SYMLINK` naming the entry, and nothing is created.
//! - Discord: `/new` with the zip as its attachment option (and `workspace:<id>`) does
//!   the same in a new thread.
//! - Refusals, on both: a zip over `workspace_max_upload_bytes` (announced as such, and on
//!   Telegram one whose announced size lies, caught while it streams), one that is not a
//!   zip or is cut short, a zip bomb (by ratio, and one that lies about its size) and one
//!   with a `../` path each get a reply where `/new` was sent that names the code, the
//!   file, the entry and what to do; no topic or thread, no session, no workspace and no
//!   leftover upload are made, nothing lands outside the root, and the next `/new` with a
//!   good zip still becomes a session.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::chat::{
    DC_ALICE, TG_ALICE as ALICE, dc_answered, dc_msg, discord_world, telegram_world, tg_msg,
    tg_topic_started, wait_until,
};
use common::{WAIT, World};
use serde_json::Value;
use testkit::discord::UserAttachment;
use testkit::telegram::UserFile;
use testkit::zips::{Entry, RawZip, hostile, noise, small_project};

/// The daemon's workspace directory `id`.
fn workspace(w: &World, id: &str) -> PathBuf {
    w.dir.path().join("state/workspaces").join(id)
}

/// Checks that `dir` holds exactly the small project's files.
fn assert_small_project(dir: &Path) {
    assert_eq!(
        std::fs::read_to_string(dir.join("README.md"))
            .ok()
            .as_deref(),
        Some("# demo\n"),
        "{}",
        dir.display()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("src/main.rs"))
            .ok()
            .as_deref(),
        Some("fn main() {}\n")
    );
}

/// The stored session whose cwd is `dir`, waiting (bounded) for it.
async fn session_in(w: &World, dir: &Path) -> Value {
    let dir = dir.canonicalize().expect("workspace dir");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, v) = w.get("/api/sessions").await;
        let found = v["sessions"].as_array().into_iter().flatten().find(|s| {
            s["info"]["cwd"]
                .as_str()
                .is_some_and(|c| Path::new(c) == dir.as_path())
        });
        if let Some(s) = found {
            return s.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no session in {}: {v}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// True once a model request carried `dir` (Claude Code names its working directory in
/// the system prompt), i.e. the claude child runs there.
fn model_saw_dir(w: &World, dir: &Path) -> bool {
    let dir = dir.display().to_string();
    w.api
        .message_requests()
        .iter()
        .any(|r| r.body.to_string().contains(&dir))
}

fn zip_doc(name: &str, bytes: Vec<u8>) -> UserFile {
    UserFile {
        name: name.to_owned(),
        mime: "application/zip".to_owned(),
        bytes,
        announced_size: None,
    }
}

/// The upload cap the refusal tests give the bot (`workspace_max_upload_bytes`).
const UPLOAD_CAP: u64 = 256 * 1024;

/// One zip the chat must refuse: its file name, bytes, the size the platform announces
/// when it lies, the code, and a word the reply must hold (the entry, or the cap's name).
struct Refused {
    name: &'static str,
    zip: Vec<u8>,
    announced: Option<u64>,
    code: &'static str,
    names: &'static str,
}

/// The zips to refuse (see the module docs); `lying` adds the one whose announced size
/// is under the cap although its bytes are not (Telegram's `file_size`; Discord's
/// attachment size is the real one). `outside` must stay empty.
fn refused_zips(outside: &Path, lying: bool) -> Vec<Refused> {
    let big = RawZip::new()
        .with(Entry::file("big.bin", noise(UPLOAD_CAP as usize + 4096, 3)).stored())
        .build();
    let mut hostile = hostile(outside, 2 << 20, 10);
    let mut take = |what: &str| {
        let at = hostile
            .iter()
            .position(|h| h.what == what)
            .unwrap_or_else(|| panic!("no hostile zip {what}"));
        hostile.swap_remove(at).zip
    };
    let mut out = vec![
        Refused {
            name: "huge.zip",
            zip: big.clone(),
            announced: None,
            code: "ZIP_TOO_LARGE",
            names: "workspace_max_upload_bytes",
        },
        Refused {
            name: "garbage.zip",
            zip: take("not a zip at all"),
            announced: None,
            code: "ZIP_CORRUPT",
            names: "make it again",
        },
        Refused {
            name: "half.zip",
            zip: take("a truncated archive"),
            announced: None,
            code: "ZIP_CORRUPT",
            names: "make it again",
        },
        Refused {
            name: "bomb.zip",
            zip: take("a zip bomb (ratio)"),
            announced: None,
            code: "ZIP_RATIO",
            names: "zeros.bin",
        },
        Refused {
            name: "liar.zip",
            zip: take("a bomb that lies about its size"),
            announced: None,
            code: "ZIP_CORRUPT",
            names: "bomb.bin",
        },
        Refused {
            name: "escape.zip",
            zip: take("a `..` path"),
            announced: None,
            code: "ZIP_PATH_TRAVERSAL",
            names: "../escaped.txt",
        },
    ];
    if lying {
        out.insert(
            1,
            Refused {
                name: "understated.zip",
                zip: big,
                announced: Some(1000),
                code: "ZIP_TOO_LARGE",
                names: "workspace_max_upload_bytes",
            },
        );
    }
    out
}

/// Checks a refusal of `r`: its code, the file, what was wrong and what to do.
fn assert_refusal(r: &Refused, text: &str) {
    for want in [r.code, r.name, r.names, "Nothing was created", "send"] {
        assert!(text.contains(want), "{}: no {want:?} in {text:?}", r.name);
    }
}

/// Discord markdown as a reader sees it: `\_` is `_` (the bot escapes what it quotes).
fn unescape(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    let mut chars = md.chars().peekable();
    while let Some(c) = chars.next() {
        match chars.peek() {
            Some(n) if c == '\\' && n.is_ascii_punctuation() => {}
            _ => out.push(c),
        }
    }
    out
}

/// Checks that nothing was made: no workspace or leftover upload under the daemon's
/// root (waiting, bounded, for an aborted upload to be dropped), no session, and nothing
/// in `outside` or beside the root.
async fn assert_nothing_made(w: &World, outside: &Path) {
    let root = w.dir.path().join("state/workspaces");
    let entries = || -> Vec<String> {
        std::fs::read_dir(&root)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_until("no workspace or leftover upload", || entries().is_empty()).await;
    let (_, v) = w.get("/api/sessions").await;
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(
        std::fs::read_dir(outside).map(Iterator::count).ok(),
        Some(0),
        "something was written outside the root"
    );
    assert!(!w.dir.path().join("state/escaped.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_zip_with_new_becomes_a_workspace_session() {
    let (w, tg) = telegram_world(&[]).await;
    let group = tg.forum_group("team");
    tg.user_document(
        group,
        ALICE,
        zip_doc("my site.zip", small_project()),
        "/new",
        None,
    );
    let topic = tg_topic_started(&tg, group, None).await;
    let news = tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("started by")
    })
    .await;
    assert!(
        news.visible_text
            .contains("Workspace my-site unpacked from my site.zip: 2 files"),
        "{}",
        news.visible_text
    );
    let dir = workspace(&w, "my-site");
    assert_small_project(&dir);
    session_in(&w, &dir).await;

    // The session runs in the workspace and the model answers in its topic.
    tg.user_message(group, ALICE, "hello from the zip", Some(topic));
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: hello from the zip")
    })
    .await;
    assert!(
        model_saw_dir(&w, &dir.canonicalize().expect("dir")),
        "no model request names {}",
        dir.display()
    );

    // The same file again, without `overwrite`: a fresh workspace, the first untouched.
    std::fs::write(dir.join("notes.txt"), "mine").expect("write");
    tg.user_document(
        group,
        ALICE,
        zip_doc("my site.zip", small_project()),
        "/new",
        None,
    );
    wait_until("a second topic", || {
        tg.calls_named("createForumTopic")
            .iter()
            .filter(|c| c.ok())
            .count()
            == 2
    })
    .await;
    let second = workspace(&w, "my-site-2");
    session_in(&w, &second).await;
    assert_small_project(&second);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt"))
            .ok()
            .as_deref(),
        Some("mine")
    );

    // A hostile zip: refused with its code and the entry named; nothing created.
    let evil = RawZip::new()
        .with(Entry::file("ok.txt", "fine"))
        .with(Entry::symlink("sneaky-link", "/etc"))
        .build();
    tg.user_document(group, ALICE, zip_doc("evil.zip", evil), "/new", None);
    let refusal = tg_msg(&tg, group, None, |m| m.visible_text.contains("ZIP_")).await;
    assert!(
        refusal.visible_text.contains("ZIP_SYMLINK")
            && refusal.visible_text.contains("sneaky-link")
            && refusal.visible_text.contains("evil.zip"),
        "{}",
        refusal.visible_text
    );
    assert!(!workspace(&w, "evil").exists());
    assert_eq!(
        tg.calls_named("createForumTopic").len(),
        2,
        "no topic for a refused zip"
    );
    let (_, v) = w.get("/api/sessions").await;
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(2), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_zip_attachment_with_new_becomes_a_workspace_session() {
    let (w, dc) = discord_world(&[]).await;
    let general = dc.text_channel("general");
    dc.slash_command_with_file(
        general,
        DC_ALICE,
        "new",
        &[("workspace", "api_v2"), ("name", "api")],
        "zip",
        UserAttachment {
            filename: "whatever.zip".into(),
            content_type: Some("application/zip".into()),
            bytes: small_project(),
        },
    );
    wait_until("thread", || !dc.threads(general).is_empty()).await;
    let (thread, title) = dc.threads(general)[0].clone();
    assert_eq!(title, "api");
    let news = dc_msg(&dc, thread, |m| m.content.contains("started by")).await;
    assert!(
        news.content.contains("api_v2") && news.content.contains("2 files"),
        "{}",
        news.content
    );
    let dir = workspace(&w, "api_v2");
    assert_small_project(&dir);
    session_in(&w, &dir).await;
    dc.user_message(thread, DC_ALICE, "hello from discord");
    wait_until("the answer", || {
        dc.messages_in(thread)
            .iter()
            .any(|m| m.content.contains("Echo: hello from discord"))
    })
    .await;
    assert!(model_saw_dir(&w, &dir.canonicalize().expect("dir")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_refused_zips_get_a_reply_and_make_nothing() {
    let cap = UPLOAD_CAP.to_string();
    let (w, tg) = telegram_world(&[("CCRM_BOT_WORKSPACE_MAX_UPLOAD_BYTES", &cap)]).await;
    let outside = tempfile::tempdir().expect("outside");
    let group = tg.forum_group("team");
    for r in refused_zips(outside.path(), true) {
        let mut doc = zip_doc(r.name, r.zip.clone());
        doc.announced_size = r.announced;
        tg.user_document(group, ALICE, doc, "/new", None);
        let reply = tg_msg(&tg, group, None, |m| m.visible_text.contains(r.name)).await;
        assert_refusal(&r, &reply.visible_text);
    }
    assert_nothing_made(&w, outside.path()).await;
    assert!(
        tg.calls_named("createForumTopic").is_empty(),
        "no topic for a refused zip"
    );

    // Still serving: a good zip becomes a session in its own topic.
    tg.user_document(
        group,
        ALICE,
        zip_doc("fine.zip", small_project()),
        "/new",
        None,
    );
    let topic = tg_topic_started(&tg, group, None).await;
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text
            .contains("Workspace fine unpacked from fine.zip")
    })
    .await;
    let dir = workspace(&w, "fine");
    assert_small_project(&dir);
    session_in(&w, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_refused_zips_get_a_reply_and_make_nothing() {
    let cap = UPLOAD_CAP.to_string();
    let (w, dc) = discord_world(&[("CCRM_BOT_WORKSPACE_MAX_UPLOAD_BYTES", &cap)]).await;
    let outside = tempfile::tempdir().expect("outside");
    let general = dc.text_channel("general");
    let attachment = |name: &str, bytes: Vec<u8>| UserAttachment {
        filename: name.into(),
        content_type: Some("application/zip".into()),
        bytes,
    };
    for r in refused_zips(outside.path(), false) {
        let i = dc.slash_command_with_file(
            general,
            DC_ALICE,
            "new",
            &[],
            "zip",
            attachment(r.name, r.zip.clone()),
        );
        let answer = dc_answered(&dc, i.id).await;
        assert_refusal(&r, &unescape(&answer.content));
    }
    assert_nothing_made(&w, outside.path()).await;
    assert!(
        dc.threads(general).is_empty(),
        "no thread for a refused zip"
    );

    // Still serving: a good zip becomes a session in its own thread.
    dc.slash_command_with_file(
        general,
        DC_ALICE,
        "new",
        &[],
        "zip",
        attachment("fine.zip", small_project()),
    );
    wait_until("thread", || !dc.threads(general).is_empty()).await;
    let dir = workspace(&w, "fine");
    session_in(&w, &dir).await;
    assert_small_project(&dir);
}
