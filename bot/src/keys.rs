//! `ccrm-bot keys create|list|revoke`: API key management from the operator's shell.
//!
//! The commands work on the database directly (the server may be running: SQLite's WAL
//! lets both use the file), print for people or, with `--json`, one JSON document. A new
//! key's secret is printed exactly once; only its hash is stored ([`crate::auth`]). Every
//! change is written to the audit log with actor `cli`.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use common::event::now_ms;
use serde_json::json;

use crate::auth::KeyKind;
use crate::db::{Db, DbError, KeyRow};

/// The `keys` subcommands.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum KeysCmd {
    /// Create a key and print its secret (shown only this once).
    Create {
        /// Unique name, e.g. the machine (`laptop`) or the person (`alice`).
        name: String,
        /// `daemon` for a ccrmd link key, `user` for a REST/dashboard token.
        #[arg(long, value_parser = parse_kind)]
        kind: KeyKind,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by name or id; it stops working at once.
    Revoke {
        /// The key's name or numeric id.
        key: String,
    },
}

fn parse_kind(s: &str) -> Result<KeyKind, String> {
    s.parse()
}

/// Runs one `keys` command against `db`, writing its output to `out`.
pub async fn run(db: &Db, cmd: &KeysCmd, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Create { name, kind } => {
            let now = now_ms();
            let (id, secret) = db
                .create_key(name, *kind, now)
                .await
                .with_context(|| format!("cannot create key `{name}`"))?;
            db.audit(
                "cli",
                "key.create",
                name,
                json!({ "id": id, "kind": kind }),
                now,
            )
            .await?;
            if json {
                let doc = json!({
                    "id": id, "name": name, "kind": kind, "created_ms": now, "secret": secret,
                });
                writeln!(out, "{doc}")?;
            } else {
                writeln!(out, "created {kind} key `{name}` (id {id})")?;
                writeln!(out)?;
                writeln!(out, "    {secret}")?;
                writeln!(out)?;
                writeln!(
                    out,
                    "This secret is shown only now and cannot be shown again; store it safely."
                )?;
                match kind {
                    KeyKind::Daemon => writeln!(
                        out,
                        "Give it to the daemon (it sends it as X-API-Key when it connects)."
                    )?,
                    KeyKind::User => writeln!(
                        out,
                        "Use it as `Authorization: Bearer <secret>` for the REST API and dashboard."
                    )?,
                }
            }
        }
        KeysCmd::List => {
            let keys = db.list_keys().await?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&keys)?)?;
            } else {
                print_table(&keys, out)?;
            }
        }
        KeysCmd::Revoke { key } => {
            let now = now_ms();
            match db.revoke_key(key, now).await {
                Ok(()) => {}
                Err(DbError::NotFound) => anyhow::bail!("no key named or numbered `{key}`"),
                Err(e) => return Err(e.into()),
            }
            db.audit("cli", "key.revoke", key, json!({}), now).await?;
            if json {
                writeln!(out, "{}", json!({ "revoked": key }))?;
            } else {
                writeln!(out, "revoked key `{key}`")?;
            }
        }
    }
    Ok(())
}

fn print_table(keys: &[KeyRow], out: &mut impl Write) -> std::io::Result<()> {
    if keys.is_empty() {
        return writeln!(
            out,
            "no keys; create one with `ccrm-bot keys create <name> --kind daemon|user`"
        );
    }
    let width = keys.iter().map(|k| k.name.len()).max().unwrap_or(4).max(4);
    writeln!(
        out,
        "{:>4}  {:<width$}  {:<6}  {:<7}  CREATED",
        "ID", "NAME", "KIND", "STATUS"
    )?;
    for k in keys {
        let status = if k.is_active() { "active" } else { "revoked" };
        writeln!(
            out,
            "{:>4}  {:<width$}  {:<6}  {:<7}  {}",
            k.id,
            k.name,
            k.kind.as_str(),
            status,
            fmt_ms(k.created_ms)
        )?;
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a Unix time in milliseconds.
fn fmt_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`), to avoid a date crate for one column.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(fmt_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_ms(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(fmt_ms(1_795_600_000_123), "2026-11-25 09:46:40 UTC");
    }

    #[tokio::test]
    async fn create_list_revoke_through_the_commands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("ccrm.db")).await.expect("open");
        let mut out = Vec::new();
        let create = KeysCmd::Create {
            name: "laptop".into(),
            kind: KeyKind::Daemon,
        };
        run(&db, &create, true, &mut out).await.expect("create");
        let doc: serde_json::Value = serde_json::from_slice(&out).expect("json");
        let secret = doc["secret"].as_str().expect("secret").to_owned();
        assert!(secret.starts_with("ccrm_daemon_"));
        assert!(
            db.verify_key(&secret, KeyKind::Daemon)
                .await
                .expect("verify")
                .is_some()
        );

        let mut out = Vec::new();
        run(&db, &create, false, &mut out)
            .await
            .expect_err("duplicate name");

        let mut out = Vec::new();
        run(&db, &KeysCmd::List, false, &mut out)
            .await
            .expect("list");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("laptop") && text.contains("active"), "{text}");
        assert!(
            !text.contains(&secret[12..]),
            "list must not show the secret"
        );

        let mut out = Vec::new();
        let revoke = KeysCmd::Revoke {
            key: "laptop".into(),
        };
        run(&db, &revoke, false, &mut out).await.expect("revoke");
        assert!(
            db.verify_key(&secret, KeyKind::Daemon)
                .await
                .expect("verify")
                .is_none()
        );
        let missing = KeysCmd::Revoke { key: "nope".into() };
        let err = run(&db, &missing, false, &mut out)
            .await
            .expect_err("missing");
        assert!(err.to_string().contains("nope"), "{err}");

        let audit = db.list_audit(10).await.expect("audit");
        let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["key.revoke", "key.create"]);
        assert!(!audit.iter().any(|a| a.detail.to_string().contains(&secret)));
    }
}
