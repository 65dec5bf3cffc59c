//! The dashboard's session cookie and who it says the user is.
//!
//! Logging in exchanges a user token for a fresh random secret (256 bits) that only the
//! browser keeps, in the `ccrm_session` cookie: `HttpOnly` (no script reads it),
//! `SameSite=Strict`, `Path=/`, a `Max-Age` of `web_session_hours`, and `Secure` when the
//! login came over https (see [`crate::config::SecureCookie`]). The store keeps only the
//! secret's SHA-256 ([`crate::db::Db::web_session`]), so a copy of the database logs no
//! one in. The token itself is never put in a cookie or a URL.
//!
//! [`WebUser`] is the extractor every page and action takes: a valid, unexpired login
//! whose token is not revoked, or a redirect to the login page (for a browser navigating)
//! or a 401 (for the page script's requests).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use common::event::now_ms;

use super::Web;
use super::errors::WebError;
use crate::config::{BotConfig, SecureCookie};

/// The cookie's name.
pub const COOKIE: &str = "ccrm_session";

/// A logged-in dashboard user.
#[derive(Clone, Debug)]
pub struct WebUser {
    /// The name of the token they logged in with.
    pub name: String,
    /// The login's anti-forgery token.
    pub csrf: String,
    /// The hash of the login's cookie secret (what logout deletes).
    pub hash: String,
}

impl FromRequestParts<Web> for WebUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        let refused = || {
            if is_navigation(parts) {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .filter(|p| p != "/");
                WebError::Login(next)
            } else {
                WebError::Unauthorized
            }
        };
        let Some(secret) = read(&parts.headers) else {
            return Err(refused());
        };
        let hash = crate::auth::hash_secret(secret);
        match web.app.db.web_session(&hash, now_ms()).await? {
            Some(row) => Ok(Self {
                name: row.user,
                csrf: row.csrf,
                hash,
            }),
            None => Err(refused()),
        }
    }
}

/// True for a browser's top-level page load (which is redirected to the login page),
/// false for background requests (which get a 401 the script handles).
fn is_navigation(parts: &Parts) -> bool {
    if parts.method != Method::GET {
        return false;
    }
    match parts.headers.get("sec-fetch-mode") {
        Some(mode) => mode == "navigate",
        None => parts
            .headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/html")),
    }
}

/// The session secret in a request's cookies, if any.
pub fn read(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A new random secret: 32 bytes from the OS, as hex.
pub fn new_secret() -> Result<String, WebError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(WebError::internal)?;
    Ok(hex::encode(buf))
}

/// Whether the cookie gets `Secure` for this request.
pub fn secure(cfg: &BotConfig, headers: &HeaderMap) -> bool {
    match cfg.web_secure_cookie {
        SecureCookie::Always => true,
        SecureCookie::Never => false,
        SecureCookie::Auto => {
            headers
                .get("x-forwarded-proto")
                .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"))
                || cfg
                    .public_url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("https://"))
        }
    }
}

/// The `Set-Cookie` value that stores `secret` for `max_age_secs`.
pub fn set(secret: &str, max_age_secs: u64, secure: bool) -> Result<HeaderValue, WebError> {
    let value = format!(
        "{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&value).map_err(WebError::internal)
}

/// The `Set-Cookie` value that removes the cookie.
pub fn clear(secure: bool) -> HeaderValue {
    if secure {
        HeaderValue::from_static(
            "ccrm_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure",
        )
    } else {
        HeaderValue::from_static("ccrm_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_session_cookie_among_others() {
        let mut h = HeaderMap::new();
        assert_eq!(read(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ccrm_session=abc ; b=2"),
        );
        assert_eq!(read(&h), Some("abc"));
        h.insert(header::COOKIE, HeaderValue::from_static("ccrm_session="));
        assert_eq!(read(&h), None);
    }

    #[test]
    fn cookie_attributes() {
        let v = set("s3cret", 60, true).expect("value");
        let v = v.to_str().expect("ascii");
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=60",
            "Secure",
            "Path=/",
        ] {
            assert!(v.contains(part), "{v}");
        }
        let v = set("s", 60, false).expect("value");
        assert!(!v.to_str().expect("ascii").contains("Secure"));
        assert!(clear(false).to_str().expect("ascii").contains("Max-Age=0"));
    }

    #[test]
    fn secure_follows_the_setting() {
        let mut cfg = BotConfig::default();
        let mut h = HeaderMap::new();
        assert!(!secure(&cfg, &h));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(secure(&cfg, &h));
        cfg.web_secure_cookie = SecureCookie::Never;
        assert!(!secure(&cfg, &h));
        cfg.web_secure_cookie = SecureCookie::Always;
        assert!(secure(&cfg, &HeaderMap::new()));
    }

    #[test]
    fn secrets_are_random_hex() {
        let a = new_secret().expect("secret");
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_secret().expect("secret"));
    }
}
