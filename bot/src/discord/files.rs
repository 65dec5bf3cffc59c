//! Attachments of Discord messages: which ones a message carries ([`attachments`]: images,
//! voice messages, other files) and their download ([`download`]), bounded by size and
//! only from Discord's CDN hosts over HTTPS (or, with a configured API host such as the
//! loopback fake, from that host), so a crafted URL cannot make the bot fetch anything
//! else. The bot's token is never sent with a download.

use reqwest012 as reqwest;
use serenity::all::Message;

use super::rest::Rest;
use crate::chat::{Attachment, AttachmentKind, TooLarge};

/// Discord's attachment hosts.
const CDN_HOSTS: [&str; 2] = ["cdn.discordapp.com", "media.discordapp.net"];

/// The attachments of `msg` in the chat core's terms.
pub fn attachments(msg: &Message) -> Vec<Attachment> {
    msg.attachments
        .iter()
        .map(|a| {
            let ct = a.content_type.as_deref().unwrap_or_default();
            let kind = if a.waveform.is_some() || a.duration_secs.is_some() {
                AttachmentKind::Voice
            } else if ct.starts_with("image/") {
                AttachmentKind::Image
            } else {
                AttachmentKind::File
            };
            Attachment {
                name: a.filename.clone(),
                size: Some(u64::from(a.size)),
                kind,
                handle: a.url.clone(),
            }
        })
        .collect()
}

/// True when `url` may be downloaded: Discord's CDN over HTTPS, or the configured API host.
fn allowed(url: &reqwest::Url, proxy: Option<&str>) -> bool {
    if let Some(p) = proxy.and_then(|p| reqwest::Url::parse(p).ok())
        && url.scheme() == p.scheme()
        && url.host_str() == p.host_str()
        && url.port_or_known_default() == p.port_or_known_default()
    {
        return true;
    }
    url.scheme() == "https" && url.host_str().is_some_and(|h| CDN_HOSTS.contains(&h))
}

/// Downloads attachment `file` of at most `max` bytes.
pub async fn download(rest: &Rest, file: &Attachment, max: u64) -> anyhow::Result<Vec<u8>> {
    let url = reqwest::Url::parse(&file.handle)?;
    if !allowed(&url, rest.proxy()) {
        anyhow::bail!("the attachment is not on Discord's CDN");
    }
    let mut resp = rest.http().get(url).send().await?.error_for_status()?;
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(TooLarge(max).into());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if (out.len() + chunk.len()) as u64 > max {
            return Err(TooLarge(max).into());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_discords_cdn_or_the_configured_host() {
        let u = |s: &str| reqwest::Url::parse(s).expect("url");
        assert!(allowed(
            &u("https://cdn.discordapp.com/attachments/1/2/a.png"),
            None
        ));
        assert!(!allowed(&u("http://cdn.discordapp.com/a.png"), None));
        assert!(!allowed(&u("https://169.254.169.254/latest"), None));
        assert!(!allowed(&u("http://127.0.0.1:9/x"), None));
        assert!(allowed(
            &u("http://127.0.0.1:9/x"),
            Some("http://127.0.0.1:9")
        ));
        assert!(!allowed(
            &u("http://127.0.0.1:10/x"),
            Some("http://127.0.0.1:9")
        ));
    }
}
