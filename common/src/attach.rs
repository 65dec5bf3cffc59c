//! Attachments of a prompt: images that ride in the prompt itself as base64 content blocks
//! ([`ImageBlock`], the `images` of [`crate::ipc::PromptArgs`]) and files saved into the
//! session's working directory by `session.file` ([`FileArgs`] → [`FileSaved`]), whose
//! bytes come as the command's streamed body over the bot link.
//!
//! [`sanitize_name`] is the one judge of a file name from outside: the daemon applies it
//! before anything touches the disk, whatever the sender already did.

use serde::{Deserialize, Serialize};

/// The image types the model takes.
pub const IMAGE_MEDIA_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Longest image edge the model uses unscaled; larger images are scaled down to it.
pub const MAX_IMAGE_EDGE: u32 = 1568;

/// Largest base64 text of one image the Messages API accepts (5 MB).
pub const MAX_IMAGE_BASE64: usize = 5 * 1024 * 1024;

/// Largest base64 text of all images of one prompt (it rides one link frame and one stdin
/// line).
pub const MAX_PROMPT_IMAGES_BASE64: usize = 12 * 1024 * 1024;

/// Most images in one prompt.
pub const MAX_PROMPT_IMAGES: usize = 8;

/// Where in the session's working directory files are saved.
pub const INBOX_DIR: &str = ".ccrm/inbox";

/// Longest saved name in bytes (timestamp prefix included stays under 255).
const MAX_NAME_BYTES: usize = 180;

/// An image of a prompt: the Messages API's base64 image source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageBlock {
    /// One of [`IMAGE_MEDIA_TYPES`].
    pub media_type: String,
    /// The image bytes, standard base64.
    pub data: String,
}

impl ImageBlock {
    /// Checks the type and size limits; the reason names the limit.
    pub fn check(&self) -> Result<(), String> {
        if !IMAGE_MEDIA_TYPES.contains(&self.media_type.as_str()) {
            return Err(format!(
                "image type `{}` is not supported (use {})",
                self.media_type,
                IMAGE_MEDIA_TYPES.join(", ")
            ));
        }
        if self.data.is_empty() {
            return Err("an image is empty".to_owned());
        }
        if self.data.len() > MAX_IMAGE_BASE64 {
            return Err(format!(
                "an image is {} bytes of base64, over the {MAX_IMAGE_BASE64}-byte limit; scale it down",
                self.data.len()
            ));
        }
        Ok(())
    }

    /// The stream-json content block.
    pub fn to_block(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "image",
            "source": {"type": "base64", "media_type": self.media_type, "data": self.data},
        })
    }
}

/// Checks a prompt's images: each one, their number and their total size.
pub fn check_images(images: &[ImageBlock]) -> Result<(), String> {
    if images.len() > MAX_PROMPT_IMAGES {
        return Err(format!(
            "{} images in one prompt; at most {MAX_PROMPT_IMAGES}",
            images.len()
        ));
    }
    let total: usize = images.iter().map(|i| i.data.len()).sum();
    if total > MAX_PROMPT_IMAGES_BASE64 {
        return Err(format!(
            "the images of one prompt are {total} bytes of base64, over the {MAX_PROMPT_IMAGES_BASE64}-byte limit; send fewer at once"
        ));
    }
    images.iter().try_for_each(ImageBlock::check)
}

/// `session.file`: save the command's body as a file in the session's inbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileArgs {
    /// The session (id, prefix or name).
    pub session: String,
    /// The sender's file name (sanitised by the daemon).
    pub name: String,
    /// The body's length in bytes, as announced.
    pub size: u64,
}

/// The reply of `session.file`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSaved {
    /// Absolute path of the saved file on the daemon's machine.
    pub path: String,
    /// The path relative to the session's working directory (`.ccrm/inbox/...`).
    pub relative: String,
    /// Bytes written.
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
}

/// A file name from outside made safe to create in one directory: only its last path
/// component, no control characters, no leading dots, at most 180 bytes (the extension
/// kept), never empty.
pub fn sanitize_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut out: String = last
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    out = out.trim().trim_start_matches('.').trim().to_owned();
    if out.len() > MAX_NAME_BYTES {
        let ext = out
            .rsplit_once('.')
            .map(|(_, e)| e)
            .filter(|e| !e.is_empty() && e.len() <= 16)
            .map(|e| format!(".{e}"))
            .unwrap_or_default();
        let mut keep = MAX_NAME_BYTES - ext.len();
        while !out.is_char_boundary(keep) {
            keep -= 1;
        }
        out.truncate(keep);
        out.push_str(&ext);
    }
    if out.is_empty() {
        "file".to_owned()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_made_safe() {
        assert_eq!(sanitize_name("../../x"), "x");
        assert_eq!(sanitize_name("..\\..\\evil.txt"), "evil.txt");
        assert_eq!(sanitize_name("a\0b\nc.log"), "a_b_c.log");
        assert_eq!(sanitize_name("/etc/passwd"), "passwd");
        assert_eq!(sanitize_name(".."), "file");
        assert_eq!(sanitize_name(".bashrc"), "bashrc");
        assert_eq!(sanitize_name(""), "file");
        let long = format!("{}.log", "é".repeat(300));
        let s = sanitize_name(&long);
        assert!(s.len() <= 180, "{}", s.len());
        assert!(s.ends_with(".log"));
        assert!(!s.contains('/'));
    }

    #[test]
    fn image_limits_name_the_limit() {
        let ok = ImageBlock {
            media_type: "image/png".into(),
            data: "iVBORw0KGgo=".into(),
        };
        assert!(check_images(std::slice::from_ref(&ok)).is_ok());
        let bad = ImageBlock {
            media_type: "image/bmp".into(),
            ..ok.clone()
        };
        assert!(check_images(&[bad]).unwrap_err().contains("image/png"));
        let big = ImageBlock {
            data: "A".repeat(MAX_IMAGE_BASE64 + 1),
            ..ok.clone()
        };
        assert!(check_images(&[big]).unwrap_err().contains("limit"));
        assert!(check_images(&vec![ok; MAX_PROMPT_IMAGES + 1]).is_err());
    }
}
