//! The `api_keys` table: daemon keys and user tokens, stored as SHA-256 hashes only.
//!
//! What a secret looks like, how it is made, hashed and compared is [`crate::auth`]'s
//! business; this file only stores and looks up. The `ccrm-bot keys` commands
//! ([`crate::keys`]) create, list and revoke keys here; the daemon link, the dashboard
//! socket and the REST bearer-token middleware check them with [`Db::verify_key`], which
//! answers from the [`auth::KeyCache`] the [`Db`] holds when it can, and revocation clears
//! that cache here and in every other process on the same database.

use super::backend::{DbRow, on_pool};
use serde::{Deserialize, Serialize};

use super::{Db, DbError, DbResult, found, int, uint};
use crate::auth::{self, KeyKind};

/// An API key as listed: never the secret, never its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRow {
    /// Row id (accepted by [`Db::revoke_key`]).
    pub id: i64,
    /// Unique name chosen at creation.
    pub name: String,
    /// Daemon key or user token.
    pub kind: KeyKind,
    /// Creation time (Unix ms).
    pub created_ms: u64,
    /// Revocation time (Unix ms); a revoked key no longer verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
}

impl KeyRow {
    /// True unless the key was revoked.
    pub fn is_active(&self) -> bool {
        self.revoked_ms.is_none()
    }
}

impl Db {
    /// Creates an API key and returns its row id and its secret
    /// (`ccrm_<kind>_<43 random base62 characters>`). Only the secret's SHA-256 is stored:
    /// show the secret once, it cannot be recovered. Names are unique; see
    /// [`auth::validate_key_name`] for what a name may contain.
    #[tracing::instrument(skip_all, fields(name, %kind))]
    pub async fn create_key(
        &self,
        name: &str,
        kind: KeyKind,
        now_ms: u64,
    ) -> DbResult<(i64, String)> {
        auth::validate_key_name(name).map_err(DbError::Other)?;
        let secret = auth::generate_secret(kind)
            .map_err(|e| DbError::other(format!("no randomness for a key: {e}")))?;
        let id: Option<i64> = on_pool!(self, |p| {
            sqlx::query_scalar(
                "INSERT INTO api_keys (name, kind, hash, created_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO NOTHING RETURNING id",
            )
            .bind(name)
            .bind(kind.as_str())
            .bind(auth::hash_secret(&secret))
            .bind(int(now_ms)?)
            .fetch_optional(p)
            .await?
        });
        match id {
            Some(id) => Ok((id, secret)),
            None => Err(DbError::other(format!(
                "a key named `{name}` already exists"
            ))),
        }
    }

    /// Every key, active and revoked, by id. Never secrets or hashes.
    #[tracing::instrument(skip_all)]
    pub async fn list_keys(&self) -> DbResult<Vec<KeyRow>> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT id, name, kind, created_ms, revoked_ms FROM api_keys ORDER BY id",
            )
            .fetch_all(p)
            .await?;
            rows.iter().map(key_row).collect()
        })
    }

    /// Revokes a key given by name or by numeric id (a name is tried first). Revoking a
    /// revoked key keeps its first revocation time. [`DbError::NotFound`] if no key matches.
    #[tracing::instrument(skip_all, fields(key = name_or_id))]
    pub async fn revoke_key(&self, name_or_id: &str, now_ms: u64) -> DbResult<()> {
        on_pool!(self, |p| {
            let id: Option<i64> = sqlx::query_scalar("SELECT id FROM api_keys WHERE name = $1")
                .bind(name_or_id)
                .fetch_optional(p)
                .await?;
            let Some(id) = id.or_else(|| name_or_id.parse::<i64>().ok()) else {
                return Err(DbError::NotFound);
            };
            let done = sqlx::query(
                "UPDATE api_keys SET revoked_ms = COALESCE(revoked_ms, $2) WHERE id = $1",
            )
            .bind(id)
            .bind(int(now_ms)?)
            .execute(p)
            .await?;
            found(done.rows_affected())?;
            if let Err(e) = self.keys.revoked() {
                // The server drops the key within its cache lifetime anyway.
                tracing::warn!(error = %e, "cannot write the key revocation marker");
            }
            Ok(())
        })
    }

    /// Checks a presented secret. Returns the key if it is an active key of `kind`; a user
    /// token never passes as a daemon key or the other way round, and revoked keys fail.
    /// The secret's hash is compared with every candidate in constant time. A key that
    /// verified recently is answered from memory ([`auth::KeyCache`]); revocation clears it.
    #[tracing::instrument(skip_all, fields(%kind))]
    pub async fn verify_key(&self, secret: &str, kind: KeyKind) -> DbResult<Option<KeyRow>> {
        on_pool!(self, |p| {
            if !secret.starts_with(kind.prefix()) {
                return Ok(None);
            }
            let presented = auth::hash_secret(secret);
            if let Some(row) = self.keys.get(&presented, kind) {
                return Ok(Some(row));
            }
            let generation = self.keys.generation();
            let rows = sqlx::query(
                "SELECT id, name, kind, created_ms, revoked_ms, hash FROM api_keys
                 WHERE kind = $1 AND revoked_ms IS NULL",
            )
            .bind(kind.as_str())
            .fetch_all(p)
            .await?;
            let mut matched = None;
            for row in &rows {
                let hash: String = row.col("hash")?;
                // No early exit: the time taken does not depend on which row matched.
                if auth::hashes_equal(&presented, &hash) {
                    matched = Some(row);
                }
            }
            let row = matched.map(key_row).transpose()?;
            if let Some(row) = &row {
                self.keys.insert(generation, presented, kind, row.clone());
            }
            Ok(row)
        })
    }
}

/// Decodes one row of `api_keys` (never its hash).
fn key_row(row: &impl DbRow) -> DbResult<KeyRow> {
    let revoked: Option<i64> = row.col("revoked_ms")?;
    let kind = row.text("kind")?;
    Ok(KeyRow {
        id: row.col("id")?,
        name: row.col("name")?,
        kind: kind.parse().map_err(DbError::Other)?,
        created_ms: uint(row.col("created_ms")?),
        revoked_ms: revoked.map(uint),
    })
}
