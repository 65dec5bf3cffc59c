//! The two backends behind [`super::Db`]: SQLite (the default, one embedded file) and
//! PostgreSQL (several replicas on one database), and what lets one query body serve both.
//!
//! Almost every statement of the store is the same text on both: `$1`-style parameters
//! (sqlx's SQLite driver reads `$N` like `?N`), `ON CONFLICT`, `RETURNING`, `COALESCE`, and
//! integer columns that are `BIGINT` on PostgreSQL so the same Rust types decode. A query
//! method is written once inside [`on_pool!`], which expands its body once per backend with
//! the pool of that backend; the transaction helpers of the ingest take a [`Conn`] and use
//! [`on_conn!`] the same way. Row decoders take any [`DbRow`]. The few statements that
//! differ (`MAX(a, b)` is `GREATEST(a, b)` on PostgreSQL) pick their text with
//! [`Dialect::pick`].

use std::path::PathBuf;

use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{Decode, Postgres, Row, Sqlite, Type};

/// Which database the bot stores into, from `database_url`.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// One SQLite file (`sqlite://<path>` or the default `<data_dir>/ccrm.db`).
    Sqlite(PathBuf),
    /// A PostgreSQL server (`postgres://` or `postgresql://` URL, passed to sqlx as is).
    Postgres(String),
}

impl Target {
    /// Parses a `database_url`: `sqlite://<absolute path>` (also `sqlite:<path>`) or
    /// `postgres://...` / `postgresql://...`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() || !path.starts_with('/') {
                return Err(format!(
                    "a sqlite database_url needs an absolute file path, like sqlite:///var/lib/ccrm/ccrm.db (got `{url}`)"
                ));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        Err(
            "database_url must start with sqlite:// or postgres:// (e.g. postgres://ccrm@db.example.com/ccrm)"
                .to_owned(),
        )
    }

    /// What to show people: the file, or the URL with any password replaced by `***`.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(url) => redact_url(url),
        }
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// `url` with the password of its user-info (and a `password=` query parameter) hidden.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find("password=") {
        let end = out[q..].find('&').map_or(out.len(), |i| q + i);
        out.replace_range(q + "password=".len()..end, "***");
    }
    out
}

/// The connection pool of one backend.
#[derive(Clone, Debug)]
pub enum Pool {
    /// SQLite, with how its connections are made (the ingest's own connection too).
    Sqlite(SqlitePool, Box<SqliteConnectOptions>),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// One connection of either backend, borrowed for the ingest's transaction helpers.
pub enum Conn<'a> {
    /// A SQLite connection (usually inside an open transaction).
    Sqlite(&'a mut SqliteConnection),
    /// A PostgreSQL connection (usually inside an open transaction).
    Postgres(&'a mut PgConnection),
}

impl<'a> From<&'a mut SqliteConnection> for Conn<'a> {
    fn from(c: &'a mut SqliteConnection) -> Self {
        Self::Sqlite(c)
    }
}

impl<'a> From<&'a mut PgConnection> for Conn<'a> {
    fn from(c: &'a mut PgConnection) -> Self {
        Self::Postgres(c)
    }
}

/// The SQL dialect a body expanded by [`on_pool!`] runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// The statement text for this dialect.
    pub fn pick(self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self {
            Self::Sqlite => sqlite,
            Self::Postgres => postgres,
        }
    }
}

/// Runs `$body` with `$p` bound (written like a closure: `on_pool!(self, |p| ...)`) to the pool of `$db`'s backend (and, in the second form,
/// `$d` to its [`Dialect`]). The body is expanded once per backend, so the same text is
/// type-checked against each driver.
macro_rules! on_pool {
    ($db:expr, |$p:ident| $body:expr) => {
        match &$db.pool {
            $crate::db::backend::Pool::Sqlite($p, _) => $body,
            $crate::db::backend::Pool::Postgres($p) => $body,
        }
    };
    ($db:expr, |$p:ident, $d:ident| $body:expr) => {
        match &$db.pool {
            $crate::db::backend::Pool::Sqlite($p, _) => {
                let $d = $crate::db::backend::Dialect::Sqlite;
                $body
            }
            $crate::db::backend::Pool::Postgres($p) => {
                let $d = $crate::db::backend::Dialect::Postgres;
                $body
            }
        }
    };
}

/// Runs `$body` with `$c` bound to the connection inside a [`Conn`] (a `&mut` of the
/// backend's connection type; pass `&mut *$c` as the executor).
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::backend::Conn::Sqlite($c) => $body,
            $crate::db::backend::Conn::Postgres($c) => $body,
        }
    };
    ($conn:expr, |$c:ident, $d:ident| $body:expr) => {
        match $conn {
            $crate::db::backend::Conn::Sqlite($c) => {
                let $d = $crate::db::backend::Dialect::Sqlite;
                $body
            }
            $crate::db::backend::Conn::Postgres($c) => {
                let $d = $crate::db::backend::Dialect::Postgres;
                $body
            }
        }
    };
}

pub(crate) use {on_conn, on_pool};

/// A column type both drivers decode.
pub trait Col:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Col for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

/// A result row of either backend, as the row decoders read it.
pub trait DbRow {
    /// The column `name` as an owned value.
    fn col<T: Col>(&self, name: &str) -> Result<T, sqlx::Error>;
    /// A text column, borrowed.
    fn text(&self, name: &str) -> Result<&str, sqlx::Error>;
    /// A nullable text column, borrowed.
    fn opt_text(&self, name: &str) -> Result<Option<&str>, sqlx::Error>;
}

macro_rules! db_row {
    ($row:ty) => {
        impl DbRow for $row {
            fn col<T: Col>(&self, name: &str) -> Result<T, sqlx::Error> {
                self.try_get(name)
            }
            fn text(&self, name: &str) -> Result<&str, sqlx::Error> {
                self.try_get(name)
            }
            fn opt_text(&self, name: &str) -> Result<Option<&str>, sqlx::Error> {
                self.try_get(name)
            }
        }
    };
}

db_row!(SqliteRow);
db_row!(PgRow);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_hide_passwords() {
        assert_eq!(
            Target::parse("sqlite:///var/lib/ccrm/x.db"),
            Ok(Target::Sqlite("/var/lib/ccrm/x.db".into()))
        );
        assert!(Target::parse("sqlite://relative.db").is_err());
        assert!(Target::parse("mysql://x").is_err());
        let pg = Target::parse("postgres://ccrm:s3cret@db:5432/ccrm?sslmode=require").unwrap();
        assert!(pg.is_postgres());
        assert_eq!(
            pg.describe(),
            "postgres://ccrm:***@db:5432/ccrm?sslmode=require"
        );
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert_eq!(
            redact_url("postgresql:///ccrm?host=/tmp&password=hunter2&user=x"),
            "postgresql:///ccrm?host=/tmp&password=***&user=x"
        );
    }
}
