//! Files users send: photos (several sizes), documents and voice notes queued as messages
//! with the Bot API's `photo` / `document` / `voice` fields, `getFile`, and the download
//! endpoint `/file/bot<token>/<file_path>` that teloxide's `download_file` reads. Files
//! live in [`Shared::files`] by `file_id`; a `file_path` is `files/<file_id>`.

use std::time::SystemTime;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::world::{Failure, Params};
use super::{Call, FakeTelegram, Shared, failure_response, lock, ok_response};

/// A file a user sends (see [`FakeTelegram::user_document`]).
#[derive(Clone, Debug)]
pub struct UserFile {
    /// `file_name` (documents).
    pub name: String,
    /// `mime_type`.
    pub mime: String,
    /// The bytes served by the download endpoint.
    pub bytes: Vec<u8>,
    /// `file_size` as announced, when it should differ from the bytes' length (to test
    /// a size check before the download).
    pub announced_size: Option<u64>,
}

impl FakeTelegram {
    fn store_file(&self, bytes: Vec<u8>, announced: Option<u64>) -> Value {
        let mut files = lock(&self.shared.files);
        let n = files.len() + 1;
        let id = format!("file{n:06}");
        let size = announced.unwrap_or(bytes.len() as u64);
        files.insert(id.clone(), bytes);
        json!({"file_id": id, "file_unique_id": format!("u{id}"), "file_size": size})
    }

    /// Queues a message of user `from` carrying `fields` (besides a caption), like
    /// [`FakeTelegram::user_message`]; returns its `message_id`.
    fn user_media(
        &self,
        chat_id: i64,
        from: i64,
        caption: &str,
        thread_id: Option<i32>,
        fields: Value,
    ) -> i32 {
        let mut world = lock(&self.shared.world);
        let id = world.user_message(chat_id, from, caption, thread_id);
        if let Some((_, update)) = world.queue.back_mut() {
            let msg = &mut update["message"];
            if let Some(m) = msg.as_object_mut() {
                m.remove("text");
                m.remove("entities");
                if !caption.is_empty() {
                    m.insert("caption".into(), json!(caption));
                }
                if let Some(f) = fields.as_object() {
                    m.extend(f.clone());
                }
            }
        }
        drop(world);
        self.shared.changed();
        id
    }

    /// Queues a photo: one entry per `(width, height, bytes)` size, as Telegram sends the
    /// sizes of one photo. Returns the `message_id`.
    pub fn user_photo(
        &self,
        chat_id: i64,
        from: i64,
        sizes: &[(u32, u32, Vec<u8>)],
        caption: &str,
        thread_id: Option<i32>,
    ) -> i32 {
        let photo: Vec<Value> = sizes
            .iter()
            .map(|(w, h, bytes)| {
                let mut meta = self.store_file(bytes.clone(), None);
                meta["width"] = json!(w);
                meta["height"] = json!(h);
                meta
            })
            .collect();
        self.user_media(chat_id, from, caption, thread_id, json!({"photo": photo}))
    }

    /// Queues a document; returns the `message_id`.
    pub fn user_document(
        &self,
        chat_id: i64,
        from: i64,
        file: UserFile,
        caption: &str,
        thread_id: Option<i32>,
    ) -> i32 {
        let mut meta = self.store_file(file.bytes, file.announced_size);
        meta["file_name"] = json!(file.name);
        meta["mime_type"] = json!(file.mime);
        self.user_media(chat_id, from, caption, thread_id, json!({"document": meta}))
    }

    /// Queues a voice note; returns the `message_id`.
    pub fn user_voice(
        &self,
        chat_id: i64,
        from: i64,
        bytes: Vec<u8>,
        thread_id: Option<i32>,
    ) -> i32 {
        let mut meta = self.store_file(bytes, None);
        meta["duration"] = json!(3);
        meta["mime_type"] = json!("audio/ogg");
        self.user_media(chat_id, from, "", thread_id, json!({"voice": meta}))
    }

    /// How many times file `file_id` was downloaded.
    pub fn downloads(&self, file_id: &str) -> usize {
        lock(&self.shared.downloads)
            .iter()
            .filter(|d| d.as_str() == file_id)
            .count()
    }
}

/// `getFile`: the file's metadata with its `file_path`; recorded like every call.
pub(super) fn get_file(shared: &Shared, params: &Params, at: SystemTime) -> Response {
    let id = match &params.to_json()["file_id"] {
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    let result = lock(&shared.files).get(&id).map(|bytes| {
        json!({
            "file_id": id,
            "file_unique_id": format!("u{id}"),
            "file_size": bytes.len(),
            "file_path": format!("files/{id}"),
        })
    });
    let (response, result, status) = match result {
        Some(r) => (ok_response(&r), r, 200),
        None => {
            let f = Failure::bad("invalid file_id");
            (failure_response(&f), f.body(), f.code)
        }
    };
    shared.record(Call {
        method: "getFile".to_owned(),
        params: params.to_json(),
        at,
        chat_id: None,
        thread_id: None,
        result,
        status,
    });
    response
}

/// `/file/bot<token>/files/<file_id>` (the path percent-decoded): the bytes, or 404 / 401.
pub(super) fn download(shared: &Shared, rest: &str) -> Response {
    // teloxide sends the file path as one percent-encoded segment (`files%2F<id>`).
    let rest = super::percent_decode(rest);
    let Some((token, path)) = rest.split_once('/') else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if token != shared.token {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(id) = path.strip_prefix("files/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(bytes) = lock(&shared.files).get(id).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    lock(&shared.downloads).push(id.to_owned());
    shared.changed();
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from(bytes),
    )
        .into_response()
}
