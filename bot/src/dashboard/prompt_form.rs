//! The body of the dashboard's prompt form ([`PromptForm`]): the usual URL-encoded
//! fields, or — when files are attached — `multipart/form-data` with `csrf`, `text` and
//! `files[]`. The multipart parts are bounded as they are read (1 MiB of text, at most
//! [`MAX_FILES`] files of `chat_max_file_bytes` each; an empty file part, which a browser
//! sends when nothing was chosen, is skipped). CSRF rules are unchanged: the handler checks
//! the `csrf` field (or header) before anything is sent anywhere.

use axum::extract::multipart::Multipart;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};

use super::Web;
use super::errors::WebError;
use super::page::Fields;
use crate::attach::human_bytes;
use crate::http::prompt_body::{MAX_FILES, UploadedFile, read_field};

/// Most bytes of a text field.
const MAX_TEXT: usize = 1024 * 1024;

/// See the module docs.
pub struct PromptForm {
    /// The text fields (`csrf`, `text`).
    pub fields: Fields,
    /// The attached files.
    pub files: Vec<UploadedFile>,
}

fn bad(msg: impl Into<String>) -> WebError {
    WebError::BadRequest(msg.into())
}

impl FromRequest<Web> for PromptForm {
    type Rejection = WebError;

    async fn from_request(req: Request, web: &Web) -> Result<Self, WebError> {
        let multipart = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        if !multipart {
            let fields = Fields::from_request(req, web).await?;
            return Ok(Self {
                fields,
                files: Vec::new(),
            });
        }
        let cap = web.app.cfg.chat_max_file_bytes;
        let mut form = Multipart::from_request(req, web)
            .await
            .map_err(|e| bad(format!("The form could not be read: {}", e.body_text())))?;
        let mut fields = Vec::new();
        let mut files = Vec::new();
        let unreadable = |e: crate::http::AppError| bad(e.to_string());
        while let Some(mut field) = form
            .next_field()
            .await
            .map_err(|e| bad(format!("The form could not be read: {}", e.body_text())))?
        {
            let name = field.name().unwrap_or_default().to_owned();
            if name == "files[]" {
                let file_name = field.file_name().unwrap_or_default().to_owned();
                let max = usize::try_from(cap).unwrap_or(usize::MAX);
                let bytes = read_field(&mut field, max).await.map_err(unreadable)?;
                let Some(bytes) = bytes else {
                    return Err(WebError::App(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!(
                            "{file_name} is over the {} limit for files (chat_max_file_bytes).",
                            human_bytes(cap)
                        ),
                    ));
                };
                if file_name.is_empty() && bytes.is_empty() {
                    continue;
                }
                if files.len() == MAX_FILES {
                    return Err(bad(format!("Attach at most {MAX_FILES} files.")));
                }
                files.push(UploadedFile {
                    name: file_name,
                    bytes,
                });
            } else {
                let bytes = read_field(&mut field, MAX_TEXT)
                    .await
                    .map_err(unreadable)?
                    .ok_or_else(|| bad("The form is too large."))?;
                let value =
                    String::from_utf8(bytes).map_err(|_| bad("The form is not UTF-8 text."))?;
                fields.push((name, value));
            }
        }
        Ok(Self {
            fields: Fields(fields),
            files,
        })
    }
}
