//! API key secrets: their format, generation, hashing and constant-time comparison, and
//! where requests carry them. Storage and lookup are in [`crate::db`] (`create_key`,
//! `verify_key`); the `ccrm-bot keys` commands are in [`crate::keys`].
//!
//! A secret looks like `ccrm_daemon_<43 base62 chars>` or `ccrm_user_<43 base62 chars>`
//! (about 256 random bits). The kind is part of the text, so a user token presented as a
//! daemon key is refused before any lookup, and a leaked secret is easy to recognise by
//! secret scanners. Only `sha256(secret)` in hex is stored. Secrets never go to logs: use
//! [`redact`] when a key must be mentioned.
//!
//! [`KeyCache`] keeps the keys that verified recently in memory (by hash, compared in
//! constant time), so a request does not wait for the database to admit it. It forgets
//! everything when a key is revoked: at once in the revoking process, and in any other
//! process sharing the database (the server while `ccrm-bot keys revoke` runs beside it)
//! through the revocation marker, a file next to the database that every revocation
//! replaces and every lookup checks with one `stat`. Entries also expire after
//! [`KEY_CACHE_TTL`], so nothing stays trusted long without a fresh look at the database.

use std::fmt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Header a daemon sends its key in when it opens the link.
pub const DAEMON_KEY_HEADER: &str = "x-api-key";

/// Random characters after the prefix: 43 base62 characters carry just over 256 bits.
pub const SECRET_RANDOM_CHARS: usize = 43;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Longest key name accepted.
pub const MAX_KEY_NAME: usize = 64;

/// What a key may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// A daemon's key for the WebSocket link (`X-API-Key`).
    Daemon,
    /// A person's token for the REST API and dashboard (`Authorization: Bearer`).
    User,
}

impl KeyKind {
    /// The name as stored and shown (`daemon`, `user`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daemon => "daemon",
            Self::User => "user",
        }
    }

    /// How every secret of this kind starts (`ccrm_daemon_`, `ccrm_user_`).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Daemon => "ccrm_daemon_",
            Self::User => "ccrm_user_",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "daemon" => Ok(Self::Daemon),
            "user" => Ok(Self::User),
            other => Err(format!(
                "key kind must be `daemon` or `user`, not `{other}`"
            )),
        }
    }
}

/// A new random secret of `kind`. Fails only if the operating system has no randomness.
pub fn generate_secret(kind: KeyKind) -> Result<String, getrandom::Error> {
    let mut out = String::with_capacity(kind.prefix().len() + SECRET_RANDOM_CHARS);
    out.push_str(kind.prefix());
    let mut buf = [0u8; 64];
    let mut have = 0;
    while have < SECRET_RANDOM_CHARS {
        getrandom::fill(&mut buf)?;
        // Rejection sampling: 248 = 4 * 62, so the bytes kept map evenly onto the alphabet.
        for b in buf.iter().filter(|b| **b < 248) {
            if have == SECRET_RANDOM_CHARS {
                break;
            }
            out.push(char::from(BASE62[usize::from(*b % 62)]));
            have += 1;
        }
    }
    Ok(out)
}

/// `sha256(secret)` as lowercase hex: what the database stores.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two hashes without an early exit on the first differing byte.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Checks a key name: 1 to [`MAX_KEY_NAME`] characters of `A-Z a-z 0-9 . _ -`, not all
/// digits (a number names a key by id in `keys revoke`).
pub fn validate_key_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_KEY_NAME {
        return Err(format!(
            "key name must be 1 to {MAX_KEY_NAME} characters long"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "key name `{name}` may only contain letters, digits, `.`, `_` and `-`"
        ));
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "key name `{name}` must not be only digits (numbers name keys by id)"
        ));
    }
    Ok(())
}

/// A short, safe way to mention a secret: its prefix and first four random characters.
pub fn redact(secret: &str) -> String {
    let kind = [KeyKind::Daemon, KeyKind::User]
        .into_iter()
        .find(|k| secret.starts_with(k.prefix()));
    match kind {
        Some(k) => {
            let rest = &secret[k.prefix().len()..];
            let shown: String = rest.chars().take(4).collect();
            format!("{}{shown}…", k.prefix())
        }
        None => "<redacted>".to_owned(),
    }
}

/// The daemon key in a request's `X-API-Key` header, if any.
pub fn daemon_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(DAEMON_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The token in a request's `Authorization: Bearer <token>` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim()).filter(|t| !t.is_empty())
}

/// How long a verified key is trusted from memory before the database is asked again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

/// Most keys held (only keys that verified are cached, so this is never reached in
/// practice; past it the cache starts over).
const KEY_CACHE_MAX: usize = 4096;

/// What identifies one version of the revocation marker: inode, change time and size
/// (every revocation renames a new file into place, so the inode alone changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp(u64, i64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path)
        .ok()
        .map(|m| Stamp(m.ino(), m.ctime(), m.ctime_nsec()))
}

struct Entry<T> {
    hash: String,
    kind: KeyKind,
    at: Instant,
    value: T,
}

struct CacheInner<T> {
    entries: Vec<Entry<T>>,
    /// The marker as it was when the entries were last known good.
    seen: Option<Stamp>,
    /// Bumped on every invalidation, so a lookup that raced one does not cache.
    generation: u64,
}

/// Keys verified recently, by the SHA-256 of their secret; see the module docs.
pub struct KeyCache<T> {
    marker: PathBuf,
    inner: Mutex<CacheInner<T>>,
}

impl<T> fmt::Debug for KeyCache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("marker", &self.marker)
            .finish_non_exhaustive()
    }
}

impl<T: Clone> KeyCache<T> {
    /// An empty cache watching the revocation marker at `marker`.
    pub fn new(marker: PathBuf) -> Self {
        let seen = stamp(&marker);
        Self {
            marker,
            inner: Mutex::new(CacheInner {
                entries: Vec::new(),
                seen,
                generation: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets everything if the marker changed since the entries were last known good.
    fn check_marker(&self, inner: &mut CacheInner<T>) {
        let now = stamp(&self.marker);
        if now != inner.seen {
            inner.entries.clear();
            inner.seen = now;
            inner.generation += 1;
        }
    }

    /// The cached value for a key of `kind` whose secret hashes to `hash`, if it verified
    /// less than [`KEY_CACHE_TTL`] ago and nothing was revoked since. Every entry of that
    /// kind is compared, in constant time, with no early exit.
    pub fn get(&self, hash: &str, kind: KeyKind) -> Option<T> {
        let mut inner = self.lock();
        self.check_marker(&mut inner);
        inner.entries.retain(|e| e.at.elapsed() < KEY_CACHE_TTL);
        let mut found = None;
        for e in inner.entries.iter().filter(|e| e.kind == kind) {
            if hashes_equal(hash, &e.hash) {
                found = Some(e.value.clone());
            }
        }
        found
    }

    /// The current generation; pass it to [`KeyCache::insert`] after asking the database.
    pub fn generation(&self) -> u64 {
        let mut inner = self.lock();
        self.check_marker(&mut inner);
        inner.generation
    }

    /// Caches a key the database just verified, unless something was revoked since
    /// `generation` was read (the answer may already be stale).
    pub fn insert(&self, generation: u64, hash: String, kind: KeyKind, value: T) {
        let mut inner = self.lock();
        self.check_marker(&mut inner);
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= KEY_CACHE_MAX {
            inner.entries.clear();
        }
        inner.entries.retain(|e| e.hash != hash);
        inner.entries.push(Entry {
            hash,
            kind,
            at: Instant::now(),
            value,
        });
    }

    /// Forgets every key here and tells every other process sharing the marker to do the
    /// same (call after a revocation is committed).
    pub fn revoked(&self) -> std::io::Result<()> {
        {
            let mut inner = self.lock();
            inner.entries.clear();
            inner.generation += 1;
        }
        let mut tmp = self.marker.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            std::io::Write::write_all(
                &mut f,
                b"ccrm-bot: an API key was revoked; running servers drop their key cache\n",
            )?;
        }
        std::fs::rename(&tmp, &self.marker)?;
        let mut inner = self.lock();
        // Our own entries are already gone; note the new marker so it does not clear again.
        inner.seen = stamp(&self.marker);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_documented_shape_and_differ() {
        for kind in [KeyKind::Daemon, KeyKind::User] {
            let a = generate_secret(kind).expect("random");
            let b = generate_secret(kind).expect("random");
            assert_ne!(a, b);
            let rest = a.strip_prefix(kind.prefix()).expect("prefix");
            assert_eq!(rest.len(), SECRET_RANDOM_CHARS);
            assert!(rest.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        }
    }

    #[test]
    fn hashing_and_comparison() {
        let h = hash_secret("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(hashes_equal(&h, &hash_secret("abc")));
        assert!(!hashes_equal(&h, &hash_secret("abd")));
        assert!(!hashes_equal(&h, ""));
    }

    #[test]
    fn key_names() {
        assert!(validate_key_name("laptop-1.home_x").is_ok());
        assert!(validate_key_name("").is_err());
        assert!(validate_key_name("12").is_err());
        assert!(validate_key_name("a b").is_err());
        assert!(validate_key_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn kinds_parse_and_print() {
        assert_eq!("user".parse::<KeyKind>(), Ok(KeyKind::User));
        assert!("admin".parse::<KeyKind>().is_err());
        assert_eq!(KeyKind::Daemon.to_string(), "daemon");
        assert_eq!(
            serde_json::to_value(KeyKind::Daemon).expect("json"),
            serde_json::json!("daemon")
        );
    }

    #[test]
    fn redaction_hides_the_secret() {
        let s = generate_secret(KeyKind::User).expect("random");
        let r = redact(&s);
        assert!(r.starts_with("ccrm_user_") && r.len() < s.len(), "{r}");
        assert_eq!(redact("hunter2"), "<redacted>");
    }

    #[test]
    fn the_cache_admits_verified_keys_and_forgets_them_on_revocation() {
        let dir = tempfile::tempdir().expect("tmp");
        let marker = dir.path().join("ccrm.db-revoked");
        let a = KeyCache::<i64>::new(marker.clone());
        // A second process's cache on the same database.
        let b = KeyCache::<i64>::new(marker);
        let h = hash_secret("ccrm_user_x");
        assert_eq!(a.get(&h, KeyKind::User), None);
        let gen_a = a.generation();
        a.insert(gen_a, h.clone(), KeyKind::User, 7);
        b.insert(b.generation(), h.clone(), KeyKind::User, 7);
        assert_eq!(a.get(&h, KeyKind::User), Some(7));
        assert_eq!(a.get(&h, KeyKind::Daemon), None, "kinds never mix");
        assert_eq!(a.get(&hash_secret("other"), KeyKind::User), None);
        assert_eq!(b.get(&h, KeyKind::User), Some(7));

        a.revoked().expect("revoke");
        assert_eq!(a.get(&h, KeyKind::User), None);
        assert_eq!(
            b.get(&h, KeyKind::User),
            None,
            "the other process saw the marker"
        );
        // A lookup that started before the revocation does not put the key back.
        a.insert(gen_a, h.clone(), KeyKind::User, 7);
        assert_eq!(a.get(&h, KeyKind::User), None);
        b.insert(b.generation(), h.clone(), KeyKind::User, 8);
        assert_eq!(b.get(&h, KeyKind::User), Some(8));
        // A second revocation is seen too (a new file each time).
        a.revoked().expect("revoke again");
        assert_eq!(b.get(&h, KeyKind::User), None);
    }

    #[test]
    fn headers() {
        let mut h = HeaderMap::new();
        assert_eq!(daemon_key(&h), None);
        assert_eq!(bearer_token(&h), None);
        h.insert("x-api-key", "ccrm_daemon_x".parse().expect("value"));
        h.insert("authorization", "Bearer  tok ".parse().expect("value"));
        assert_eq!(daemon_key(&h), Some("ccrm_daemon_x"));
        assert_eq!(bearer_token(&h), Some("tok"));
        h.insert("authorization", "Basic abc".parse().expect("value"));
        assert_eq!(bearer_token(&h), None);
    }
}
