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

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::chat::{
    DC_ALICE, TG_ALICE as ALICE, discord_world, telegram_world, tg_msg, wait_until,
};
use common::{WAIT, World};
use serde_json::Value;
use testkit::discord::UserAttachment;
use testkit::telegram::UserFile;
use testkit::zips::{Entry, RawZip, small_project};

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
    let created = tg
        .wait_for(WAIT, |c| c.method == "createForumTopic" && c.ok())
        .await
        .expect("topic");
    let topic = created.result["message_thread_id"]
        .as_i64()
        .expect("thread") as i32;
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
    let deadline = tokio::time::Instant::now() + WAIT;
    let news = loop {
        if let Some(m) = dc
            .messages_in(thread)
            .into_iter()
            .find(|m| m.content.contains("started by"))
        {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "no news in thread");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
