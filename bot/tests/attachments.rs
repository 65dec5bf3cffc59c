//! Photos, screenshots and files sent in chat or with a REST prompt reach Claude (issue 18),
//! end to end: a real `ccrm-bot` process against the loopback Telegram and Discord fakes
//! (`testkit::telegram`, `testkit::discord`, extended to serve users' files), a real linked
//! `ccrmd`, the real Claude Code CLI and the fake Messages API.
//!
//! - Telegram: a photo with a caption in a session's topic reaches the model as an image
//!   block with the bytes of the largest size the model takes unscaled, beside the caption;
//!   a log file lands in `.ccrm/inbox/` of the session's cwd with the same SHA-256 and the
//!   prompt names its path; hostile names (`../../x`, a NUL, 300 characters) are
//!   sanitised and nothing is written outside the inbox; an over-size file and a voice
//!   note get replies, and the next text message is still answered.
//! - Discord: an image attachment in a session's thread reaches the model with the same
//!   bytes and the text, a large one scaled down to the model's 1568 px, and a voice
//!   message gets the "not supported yet" reply while the next message is answered.
//! - REST: JSON `images` and a multipart form with `text` and `files[]`; over-size and
//!   malformed bodies refused with the limit named.

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use common::chat::{
    DC_ALICE, TG_ALICE as ALICE, dc_msg, discord_world, kill9_while_pending, pending_texts,
    telegram_world, tg_msg, tg_new_topic, wait_until,
};
use common::{WAIT, World};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testkit::discord::UserAttachment;
use testkit::telegram::UserFile;

/// `chat_max_file_bytes` in these tests.
const LIMIT: &str = "16384";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A PNG of `w`×`h` whose pixels depend on `seed` (so two images differ).
fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x / 8) as u8 ^ seed, (y / 8) as u8, seed])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// Every image block `(media_type, data)` in the messages of a request.
fn images_in(body: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for msg in body["messages"].as_array().into_iter().flatten() {
        for block in msg["content"].as_array().into_iter().flatten() {
            if block["type"] == "image" {
                out.push((
                    block["source"]["media_type"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    block["source"]["data"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ));
            }
        }
    }
    out
}

/// The image blocks of the user message whose text blocks include `caption` (the CLI
/// adds a text block of its own naming where it keeps the image), if there is one.
fn images_with(body: &Value, caption: &str) -> Option<Vec<(String, String)>> {
    body["messages"].as_array()?.iter().find_map(|msg| {
        let blocks = msg["content"].as_array()?;
        let has = blocks.iter().any(|b| {
            b["type"] == "text" && b["text"].as_str().is_some_and(|t| t.contains(caption))
        });
        has.then(|| images_in(&json!({"messages": [msg]})))
    })
}

/// Waits (bounded) for a request to the fake model that `pred` accepts.
async fn api_request(w: &World, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(r) = w.api.message_requests().into_iter().find(|r| pred(&r.body)) {
            return r.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no model request with {what}; last texts: {:?}",
            w.api
                .message_requests()
                .iter()
                .map(|r| r.last_human_text())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The files in the session's inbox.
fn inbox(work: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(work.join(".ccrm/inbox"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// ---- Telegram ----------------------------------------------------------------------

/// A photo kept undelivered when the bot is killed (inside the window that joins a user's
/// messages) is downloaded again and sent after the restart, with its caption, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_photo_survives_a_kill_9_before_it_is_delivered() {
    let (mut w, tg) = telegram_world(&[]).await;
    let group = tg.forum_group("durable");
    let topic = tg_new_topic(&tg, group, &w.work, None).await;
    let photo = png(64, 48, 5);
    let caption = "keep this picture";
    let served = tg.updates_served().len();
    tg.user_photo(
        group,
        ALICE,
        &[(64, 48, photo.clone())],
        caption,
        Some(topic),
    );
    wait_until("the update was served", || {
        tg.updates_served().len() > served
    })
    .await;
    kill9_while_pending(&mut w, "telegram", &[caption]).await;
    let body = api_request(&w, "the photo after the restart", |b| {
        images_with(b, caption).is_some_and(|v| !v.is_empty())
    })
    .await;
    assert_eq!(
        images_with(&body, caption),
        Some(vec![("image/png".to_owned(), b64(&photo))]),
        "the photo, byte for byte, with its caption: {}",
        body["messages"]
    );
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: keep this picture")
    })
    .await;
    assert!(pending_texts(&w, "telegram").await.is_empty());
    // One prompt, with the caption: the daemon got the message once.
    let id = w.first_session().await;
    assert_eq!(w.prompts(&id).await, [caption]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_photos_files_hostile_names_oversize_and_voice() {
    let (w, tg) = telegram_world(&[("CCRM_BOT_CHAT_MAX_FILE_BYTES", LIMIT)]).await;
    let group = tg.forum_group("team");
    let topic = tg_new_topic(&tg, group, &w.work, None).await;

    // A photo with a caption: Telegram's sizes of one photo; the largest the model takes
    // unscaled (1280 px) is the one downloaded and sent, byte for byte.
    let chosen = png(64, 48, 1);
    let sizes = vec![
        (320, 240, png(32, 24, 2)),
        (1280, 960, chosen.clone()),
        (2560, 1920, b"not fetched".to_vec()),
    ];
    tg.user_photo(
        group,
        ALICE,
        &sizes,
        "what does this screen say",
        Some(topic),
    );
    let caption = "what does this screen say";
    let body = api_request(&w, "the photo", |b| !images_in(b).is_empty()).await;
    assert_eq!(
        images_with(&body, caption),
        Some(vec![("image/png".to_owned(), b64(&chosen))]),
        "the 1280 px size, unchanged, in the message with the caption: {}",
        body["messages"]
    );
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: what does this screen say")
    })
    .await;

    // A log file: saved in the session's inbox with the same bytes; the prompt names it.
    let log: Vec<u8> = (0..200)
        .flat_map(|i| format!("{i:04} ERROR something failed\n").into_bytes())
        .collect();
    tg.user_document(
        group,
        ALICE,
        UserFile {
            name: "app.log".into(),
            mime: "text/plain".into(),
            bytes: log.clone(),
            announced_size: None,
        },
        "why does it fail",
        Some(topic),
    );
    wait_until("app.log in the inbox", || {
        inbox(&w.work)
            .iter()
            .any(|p| p.to_string_lossy().ends_with("-app.log"))
    })
    .await;
    let saved = inbox(&w.work)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("-app.log"))
        .expect("saved");
    assert_eq!(sha(&std::fs::read(&saved).expect("read")), sha(&log));
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
    };
    assert_eq!(mode(&saved), 0o600);
    assert_eq!(mode(&w.work.join(".ccrm/inbox")), 0o700);
    let path = saved.display().to_string();
    let body = api_request(&w, "the log's path", |b| {
        testkit::script::last_human_text(b).is_some_and(|t| t.contains(&path))
    })
    .await;
    let text = testkit::script::last_human_text(&body).unwrap_or_default();
    assert!(text.contains("why does it fail"), "{text}");

    // Hostile names: only a sanitised last component, in the inbox.
    let hostile = [
        ("../../x", "-x"),
        ("evil\0name.txt", "-evil_name.txt"),
        (&*format!("{}.log", "n".repeat(300)), ".log"),
    ];
    for (i, (name, _)) in hostile.iter().enumerate() {
        tg.user_document(
            group,
            ALICE,
            UserFile {
                name: (*name).to_owned(),
                mime: "application/octet-stream".into(),
                bytes: format!("hostile {i}").into_bytes(),
                announced_size: None,
            },
            "",
            Some(topic),
        );
    }
    wait_until("three more files", || inbox(&w.work).len() == 4).await;
    // Their prompt is answered before the next messages (which would otherwise join it).
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: ") && m.visible_text.contains("-evil_name.txt")
    })
    .await;
    let names: Vec<String> = inbox(&w.work)
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    for (_, end) in hostile {
        assert!(names.iter().any(|n| n.ends_with(end)), "{end}: {names:?}");
    }
    assert!(
        names.iter().all(|n| n.len() <= 200 && !n.contains('\0')),
        "{names:?}"
    );
    assert!(!w.dir.path().join("x").exists() && !w.work.join("x").exists());
    let top: Vec<_> = std::fs::read_dir(&w.work)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        top,
        vec![std::ffi::OsString::from(".ccrm")],
        "nothing else written"
    );

    // Over the limit: refused with a reply naming it (nothing downloaded), and the next
    // text is answered.
    tg.user_document(
        group,
        ALICE,
        UserFile {
            name: "huge.bin".into(),
            mime: "application/octet-stream".into(),
            bytes: vec![7; 20_000],
            announced_size: None,
        },
        "",
        Some(topic),
    );
    let refusal = tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("huge.bin")
    })
    .await;
    assert!(
        refusal.visible_text.contains("16 KB limit")
            && refusal.visible_text.contains("chat_max_file_bytes"),
        "{}",
        refusal.visible_text
    );
    tg.user_message(group, ALICE, "after the big file", Some(topic));
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: after the big file")
    })
    .await;
    assert_eq!(inbox(&w.work).len(), 4, "the big file was not saved");

    // A voice note: "not supported yet", and the next message is answered.
    tg.user_voice(group, ALICE, b"OggS fake voice".to_vec(), Some(topic));
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("not supported yet")
    })
    .await;
    tg.user_message(group, ALICE, "after the voice", Some(topic));
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: after the voice")
    })
    .await;
    assert!(
        !w.api
            .message_requests()
            .iter()
            .any(|r| r.all_text().contains("OggS")),
        "the voice note never reached the model"
    );
}

// ---- Discord -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_image_attachments_scaled_images_and_voice() {
    let (w, dc) = discord_world(&[]).await;
    let general = dc.text_channel("general");
    let work = w.work.display().to_string();
    dc.slash_command(general, DC_ALICE, "new", &[("directory", &work)]);
    wait_until("thread", || !dc.threads(general).is_empty()).await;
    let (thread, _) = dc.threads(general)[0].clone();
    dc_msg(&dc, thread, |m| m.content.contains("started by")).await;

    // An image attachment with text: the same bytes and the text reach the model.
    let shot = png(80, 60, 9);
    dc.user_files(
        thread,
        DC_ALICE,
        "what is wrong in this screenshot",
        vec![UserAttachment {
            filename: "screen.png".into(),
            content_type: Some("image/png".into()),
            bytes: shot.clone(),
        }],
        false,
    );
    let body = api_request(&w, "the screenshot", |b| !images_in(b).is_empty()).await;
    assert_eq!(
        images_with(&body, "what is wrong in this screenshot"),
        Some(vec![("image/png".to_owned(), b64(&shot))]),
        "{}",
        body["messages"]
    );
    dc_msg(&dc, thread, |m| {
        m.content.contains("Echo: what is wrong in this screenshot")
    })
    .await;
    assert_eq!(dc.attachment_downloads(), 1);

    // An image over the model's 1568 px: scaled down, not dropped.
    let big = png(2000, 1000, 3);
    dc.user_files(
        thread,
        DC_ALICE,
        "and this wide one",
        vec![UserAttachment {
            filename: "wide.png".into(),
            content_type: Some("image/png".into()),
            bytes: big,
        }],
        false,
    );
    let body = api_request(&w, "the wide image", |b| {
        images_with(b, "and this wide one").is_some()
    })
    .await;
    let imgs = images_with(&body, "and this wide one").expect("the message");
    assert_eq!(imgs.len(), 1, "one image in that message");
    let (media, data) = imgs[0].clone();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64");
    let decoded = image::load_from_memory(&bytes).expect("an image");
    assert_eq!((decoded.width(), decoded.height()), (1568, 784), "{media}");

    // A voice message: a reply, and the next message is answered.
    dc.user_files(
        thread,
        DC_ALICE,
        "",
        vec![UserAttachment {
            filename: "voice-message.ogg".into(),
            content_type: Some("audio/ogg".into()),
            bytes: b"OggS voice".to_vec(),
        }],
        true,
    );
    dc_msg(&dc, thread, |m| m.content.contains("not supported yet")).await;
    dc.user_message(thread, DC_ALICE, "after the voice message");
    dc_msg(&dc, thread, |m| {
        m.content.contains("Echo: after the voice message")
    })
    .await;
}

// ---- REST --------------------------------------------------------------------------

/// The body of refusal `r`, which must have status `want`, and its error message.
async fn refusal(r: reqwest::Response, want: u16) -> (Value, String) {
    assert_eq!(r.status().as_u16(), want);
    let v: Value = r.json().await.expect("json");
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (v, msg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_prompt_takes_json_images_and_multipart_files() {
    let w = World::start_with(&[("CCRM_BOT_CHAT_MAX_FILE_BYTES", LIMIT)]).await;
    let id = w.new_session(json!({})).await;
    let prompt = format!("/api/sessions/{id}/prompt");

    // JSON with images.
    let pic = png(50, 40, 5);
    let (status, v) = w
        .post(
            &prompt,
            json!({"text": "look at this", "images": [{"media_type": "image/png", "data": b64(&pic)}]}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let body = api_request(&w, "the JSON image", |b| !images_in(b).is_empty()).await;
    assert_eq!(
        images_with(&body, "look at this"),
        Some(vec![("image/png".to_owned(), b64(&pic))])
    );

    // Multipart: text and a file, saved in the inbox and named in the prompt.
    let notes = b"TODO: fix the parser\n".repeat(50);
    let form = reqwest::multipart::Form::new()
        .text("text", "read my notes")
        .part(
            "files[]",
            reqwest::multipart::Part::bytes(notes.clone()).file_name("notes.txt"),
        );
    let r = w.post_multipart(&prompt, form).await.expect("POST");
    assert_eq!(r.status().as_u16(), 202, "{:?}", r.text().await);
    let saved = inbox(&w.work);
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert_eq!(sha(&std::fs::read(&saved[0]).expect("read")), sha(&notes));
    let path = saved[0].display().to_string();
    api_request(&w, "the notes' path", |b| {
        testkit::script::last_human_text(b)
            .is_some_and(|t| t.contains(&path) && t.contains("read my notes"))
    })
    .await;

    // Over the limit: 413 naming it; nothing saved.
    let form = reqwest::multipart::Form::new().text("text", "big").part(
        "files[]",
        reqwest::multipart::Part::bytes(vec![1u8; 20_000]).file_name("big.bin"),
    );
    let r = w.post_multipart(&prompt, form).await.expect("POST");
    let (v, msg) = refusal(r, 413).await;
    assert!(
        msg.contains("16 KB") && msg.contains("chat_max_file_bytes"),
        "{v}"
    );
    assert_eq!(inbox(&w.work).len(), 1);

    // A `files[]` part that is a bare value, not a file: 400 saying how to send a file.
    let form = reqwest::multipart::Form::new()
        .text("text", "x")
        .text("files[]", "{}");
    let r = w.post_multipart(&prompt, form).await.expect("POST");
    let (v, msg) = refusal(r, 400).await;
    assert!(msg.contains("no file name"), "{v}");
    assert_eq!(inbox(&w.work).len(), 1);

    // Images the model cannot take (not base64, not an image) are 422, as the contract
    // has it for a well-formed value that cannot be served; an unknown field is 400.
    for (bad, code) in [
        (
            json!({"text": "x", "images": [{"media_type": "image/png", "data": "%%%"}]}),
            422,
        ),
        (
            json!({"text": "x", "images": [{"media_type": "image/png", "data": b64(b"hello")}]}),
            422,
        ),
        (json!({"text": "x", "files": []}), 400),
    ] {
        let (status, v) = w.post(&prompt, bad.clone()).await;
        assert_eq!(status, code, "{bad}: {v}");
    }
    // The session still answers.
    let (status, _) = w.post(&prompt, json!({"text": "still here"})).await;
    assert_eq!(status, 202);
    api_request(&w, "the last prompt", |b| {
        testkit::script::last_human_text(b).as_deref() == Some("still here")
    })
    .await;
}
