//! The body of `POST /api/sessions/{id}/prompt` ([`PromptInput`]): JSON
//! `{"text": "...", "images": [{"media_type": "image/png", "data": "<base64>"}]}` (images
//! optional), or `multipart/form-data` with a `text` field and any number of `files[]`
//! (also `files` or `file`) parts. Each is bounded while it is read: the JSON body by
//! `max_body_bytes` besides its images (12 MB of base64 at most), each file by
//! `chat_max_file_bytes`, at most
//! [`MAX_FILES`] files and 1 MiB of text; anything over answers 413 `too_large` naming the
//! limit. The route is exempt from `max_body_bytes` for this reason.
//!
//! [`PromptInput::prepare`] then turns the images and files into what the daemon gets:
//! images (JSON ones decoded and checked too) become image blocks, scaled down above the
//! model's limits, and other files are saved in the session's `.ccrm/inbox/`, named in the
//! prompt text ([`crate::attach`]).

use std::sync::Arc;

use axum::extract::multipart::{Field, Multipart};
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use base64::Engine;
use common::attach::{ImageBlock, MAX_PROMPT_IMAGES, MAX_PROMPT_IMAGES_BASE64};
use common::ids::DaemonId;
use common::ipc::ErrorBody;
use serde::Deserialize;

use super::{AppError, daemon_error};
use crate::AppState;
use crate::attach::{self, Part, human_bytes};
use crate::hub::HubError;
use crate::upload::UploadError;

/// Most files in one prompt.
pub const MAX_FILES: usize = 10;
/// Most bytes of prompt text.
const MAX_TEXT: usize = 1024 * 1024;

/// JSON body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBody {
    /// `prompt` as clients of the original CCRM send it.
    #[serde(alias = "prompt")]
    text: String,
    #[serde(default)]
    images: Vec<ImageBlock>,
}

/// A file of a multipart prompt.
pub struct UploadedFile {
    /// Its name as the client gave it.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// See the module docs.
pub struct PromptInput {
    /// The prompt text.
    pub text: String,
    /// Images given as JSON.
    pub images: Vec<ImageBlock>,
    /// Files of a multipart form.
    pub files: Vec<UploadedFile>,
}

fn bad(msg: impl Into<String>) -> AppError {
    AppError::new(StatusCode::BAD_REQUEST, "bad_request", msg)
}

/// A well-formed body whose images the model cannot take (422, like any schema-valid
/// value that cannot be served).
fn unprocessable(msg: impl Into<String>) -> AppError {
    AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", msg)
}

fn too_large(msg: impl Into<String>) -> AppError {
    AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", msg)
}

/// Reads `field` up to `max` bytes; `None` when it is longer.
pub async fn read_field(field: &mut Field<'_>, max: usize) -> Result<Option<Vec<u8>>, AppError> {
    let mut out = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| bad(format!("bad multipart form: {}", e.body_text())))?
    {
        if out.len() + chunk.len() > max {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

impl FromRequest<Arc<AppState>> for PromptInput {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, AppError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            return from_form(req, state).await;
        }
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(bad(
                "expected a JSON body (Content-Type: application/json) or multipart/form-data",
            ));
        }
        // Everything but the images is held to `max_body_bytes`, like any JSON body.
        let plain = state.cfg.max_body_bytes;
        let refused = || too_large("request body too large");
        let bytes = axum::body::to_bytes(req.into_body(), plain + MAX_PROMPT_IMAGES_BASE64)
            .await
            .map_err(|_| refused())?;
        let body: JsonBody =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("bad JSON body: {e}")))?;
        let images: usize = body.images.iter().map(|i| i.data.len()).sum();
        if bytes.len().saturating_sub(images) > plain || body.text.len() > MAX_TEXT {
            return Err(refused());
        }
        Ok(Self {
            text: body.text,
            images: body.images,
            files: Vec::new(),
        })
    }
}

async fn from_form(req: Request, state: &Arc<AppState>) -> Result<PromptInput, AppError> {
    let cap = state.cfg.chat_max_file_bytes;
    let mut form = Multipart::from_request(req, state)
        .await
        .map_err(|e| bad(format!("bad multipart form: {}", e.body_text())))?;
    let mut text = None;
    let mut files = Vec::new();
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("bad multipart form: {}", e.body_text())))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "text" => {
                let bytes = read_field(&mut field, MAX_TEXT)
                    .await?
                    .ok_or_else(|| too_large("the prompt text is over 1 MB"))?;
                let t =
                    String::from_utf8(bytes).map_err(|_| bad("the `text` field is not UTF-8"))?;
                text = Some(t);
            }
            "files[]" | "files" | "file" => {
                if files.len() == MAX_FILES {
                    return Err(bad(format!("at most {MAX_FILES} files in one prompt")));
                }
                // A file part names its file (`curl -F 'files[]=@x.png'` does); a bare
                // value is not a file and would be saved under a made-up name.
                let Some(file_name) = field.file_name().map(str::to_owned) else {
                    return Err(bad(format!(
                        "the `{name}` part has no file name; send files as file parts \
                         (e.g. curl -F '{name}=@path')"
                    )));
                };
                let max = usize::try_from(cap).unwrap_or(usize::MAX);
                let bytes = read_field(&mut field, max).await?.ok_or_else(|| {
                    too_large(format!(
                        "{file_name} is over the {} limit for files (chat_max_file_bytes)",
                        human_bytes(cap)
                    ))
                })?;
                files.push(UploadedFile {
                    name: file_name,
                    bytes,
                });
            }
            other => {
                return Err(bad(format!(
                    "unknown form field `{other}`; use `text` and `files[]`"
                )));
            }
        }
    }
    Ok(PromptInput {
        text: text.unwrap_or_default(),
        images: Vec::new(),
        files,
    })
}

impl PromptInput {
    /// The prompt text (with a line per saved file) and its images, for `session` on
    /// `daemon` (see the module docs).
    pub async fn prepare(
        self,
        state: &AppState,
        daemon: &DaemonId,
        session: &str,
    ) -> Result<(String, Vec<ImageBlock>), AppError> {
        if self.images.len() + self.files.len() > MAX_PROMPT_IMAGES.max(MAX_FILES) {
            return Err(bad("too many images and files in one prompt"));
        }
        let engine = base64::engine::general_purpose::STANDARD;
        let mut images = Vec::new();
        for (i, img) in self.images.into_iter().enumerate() {
            let bytes = engine
                .decode(img.data.as_bytes())
                .map_err(|_| unprocessable(format!("images[{i}].data is not base64")))?;
            let media = attach::image::sniff(&bytes).ok_or_else(|| {
                unprocessable(format!(
                    "images[{i}] is not a JPEG, PNG, GIF or WebP image (media_type says {})",
                    img.media_type
                ))
            })?;
            let p = tokio::task::spawn_blocking(move || attach::image::to_block(&bytes, media))
                .await
                .map_err(AppError::internal)?
                .map_err(|e| unprocessable(format!("images[{i}]: {e}")))?;
            images.push(p.block);
        }
        let mut lines = Vec::new();
        if !self.text.trim().is_empty() {
            lines.push(self.text);
        }
        for f in self.files {
            match attach::prepare(&state.hub, daemon, session, &f.name, f.bytes).await {
                Ok(Part::Image(img)) => images.push(img),
                Ok(Part::Saved(saved)) => lines.push(attach::file_line(&f.name, &saved)),
                Err(e) => return Err(not_given(&f.name, e)),
            }
        }
        common::attach::check_images(&images).map_err(unprocessable)?;
        Ok((lines.join("\n"), images))
    }
}

/// A file the session did not get: the daemon's refusal keeps its status (a session whose
/// directory is gone is 409 `bad_state`), an unreachable daemon is 503/504, and anything
/// else 502 `file_not_saved`; the message names the file either way.
fn not_given(name: &str, e: attach::AttachError) -> AppError {
    let why = format!("{name} could not be given to the session: {e}");
    match e {
        attach::AttachError::Upload(
            UploadError::Daemon(body) | UploadError::Hub(HubError::Daemon(body)),
        ) => daemon_error(ErrorBody::new(body.code, why)),
        attach::AttachError::Upload(UploadError::Hub(hub)) => hub.into(),
        _ => AppError::new(StatusCode::BAD_GATEWAY, "file_not_saved", why),
    }
}
