//! The chat adapters' own state ([`crate::chat`], [`crate::telegram`],
//! [`crate::discord`]): which session each chat thread shows (`chat_bindings`), the
//! messages that carry approval buttons (`chat_approvals`, whose row id the buttons carry),
//! how far each session's events have been shown (`chat_handled`), the progress message of
//! each running turn (`chat_progress`, so one left by a killed bot is finished after the
//! restart), the answers posted under an idempotency key (`chat_outbox`: intent before the
//! send, message id after), and on the inbound side the update cursor (`chat_offsets`), the
//! claims that make each update or message handled once (`chat_updates`) and the messages
//! claimed but not yet delivered as a prompt (`chat_pending`, written in the claim's
//! transaction). Only the chat code uses these tables.

use super::backend::{DbRow, on_pool};
use common::ids::{DaemonId, SessionId};
use serde::{Deserialize, Serialize};

use super::{Db, DbError, DbResult, found, int, json_column, session_column, uint};

/// One chat thread bound to one session (see `bot/src/chat`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatBinding {
    /// `telegram`, `discord`.
    pub platform: String,
    /// The platform's chat (group, DM, channel) id.
    pub chat_id: String,
    /// The thread (forum topic, Discord thread) id; `None` for a whole chat.
    pub thread_id: Option<String>,
    /// The session shown there.
    pub session_id: SessionId,
    /// Its daemon.
    pub daemon_id: DaemonId,
    /// Who bound it.
    pub created_by: String,
    /// When (Unix ms).
    pub created_ms: u64,
    /// The chat the thread was opened from (a forum, a text channel), when the bot opened
    /// it; `None` for a place bound as it is.
    pub parent: Option<String>,
}

/// A turn's progress message in one chat place (see the `chat_progress` table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatProgressRow {
    /// The session whose turn it shows.
    pub session_id: SessionId,
    /// Where the message is.
    pub chat_id: String,
    /// Its thread, if any.
    pub thread_id: Option<String>,
    /// The platform message id.
    pub message_id: String,
}

/// A chat message that carries approval or question buttons.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatApprovalRow {
    /// The short id the buttons carry.
    pub id: i64,
    /// `telegram`, `discord`.
    pub platform: String,
    /// The approval it is for.
    pub approval_id: String,
    /// Its session.
    pub session_id: SessionId,
    /// Where the message is.
    pub chat_id: String,
    /// Its thread, if any.
    pub thread_id: Option<String>,
    /// The platform message id.
    pub message_id: String,
    /// The message text without buttons (kept to edit it later).
    pub title: String,
    /// Question option labels (empty for permissions).
    pub options: Vec<String>,
    /// Whether the message already shows a decision.
    pub decided: bool,
    /// A question's progress through its steps (JSON kept by the chat core; empty for
    /// permissions).
    pub steps: String,
}

/// A chat message claimed but not yet delivered as a prompt (the `chat_pending` table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatPendingRow {
    /// Row id (0 before it is stored).
    pub id: i64,
    /// Where it was written.
    pub chat_id: String,
    /// Its thread, if any.
    pub thread_id: Option<String>,
    /// The platform's message id (the order of prompt pieces).
    pub msg_id: Option<i64>,
    /// Who wrote it (JSON kept by the chat core).
    pub sender: String,
    /// What it says (JSON kept by the chat core: the text, and room for attachments).
    pub payload: String,
}

/// What the outbox knows of one keyed message (see the `chat_outbox` table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outboxed {
    /// Never sent under this key.
    New,
    /// A send was started but its message id was never recorded (the bot died meanwhile):
    /// it may or may not have been posted.
    Unconfirmed,
    /// Posted as this message.
    Sent(String),
}

impl Db {
    /// Binds a chat thread to a session, replacing what it showed before.
    #[tracing::instrument(skip_all)]
    pub async fn chat_bind(&self, b: &ChatBinding) -> DbResult<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO chat_bindings (platform, chat_id, thread_id, session_id, daemon_id, created_by, created_ms, parent_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (platform, chat_id, thread_id) DO UPDATE SET session_id = $4,
                     daemon_id = $5, created_by = $6, created_ms = $7, parent_id = $8",
            )
            .bind(&b.platform)
            .bind(&b.chat_id)
            .bind(thread_col(b.thread_id.as_deref()))
            .bind(b.session_id.to_string())
            .bind(&b.daemon_id.0)
            .bind(&b.created_by)
            .bind(int(b.created_ms)?)
            .bind(b.parent.as_deref().unwrap_or(""))
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// The session a chat thread shows, if any.
    #[tracing::instrument(skip_all)]
    pub async fn chat_binding(
        &self,
        platform: &str,
        chat_id: &str,
        thread_id: Option<&str>,
    ) -> DbResult<Option<ChatBinding>> {
        on_pool!(self, |p| {
            let row = sqlx::query(
                "SELECT * FROM chat_bindings WHERE platform = $1 AND chat_id = $2 AND thread_id = $3",
            )
            .bind(platform)
            .bind(chat_id)
            .bind(thread_col(thread_id))
            .fetch_optional(p)
            .await?;
            row.as_ref().map(chat_binding_row).transpose()
        })
    }

    /// How far `platform` has shown each session's events (see the `chat_handled` table).
    #[tracing::instrument(skip_all)]
    pub async fn chat_handled(&self, platform: &str) -> DbResult<Vec<(SessionId, i64)>> {
        on_pool!(self, |p| {
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT session_id, event_id FROM chat_handled WHERE platform = $1")
                    .bind(platform)
                    .fetch_all(p)
                    .await?;
            Ok(rows
                .into_iter()
                .filter_map(|(s, id)| s.parse().ok().map(|s| (s, id)))
                .collect())
        })
    }

    /// Records that `platform` has shown `session`'s events up to row `event_id` (never moves
    /// back).
    #[tracing::instrument(skip_all)]
    pub async fn set_chat_handled(
        &self,
        platform: &str,
        session: &SessionId,
        event_id: i64,
    ) -> DbResult<()> {
        on_pool!(self, |p, d| {
            sqlx::query(d.pick(
                "INSERT INTO chat_handled (platform, session_id, event_id) VALUES ($1, $2, $3)
                 ON CONFLICT (platform, session_id) DO UPDATE
                 SET event_id = MAX(event_id, excluded.event_id)",
                "INSERT INTO chat_handled (platform, session_id, event_id) VALUES ($1, $2, $3)
                 ON CONFLICT (platform, session_id) DO UPDATE
                 SET event_id = GREATEST(chat_handled.event_id, excluded.event_id)",
            ))
            .bind(platform)
            .bind(session.to_string())
            .bind(event_id)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// Every binding (loaded once at start; the chat core keeps them in memory).
    #[tracing::instrument(skip_all)]
    pub async fn chat_bindings(&self, platform: &str) -> DbResult<Vec<ChatBinding>> {
        on_pool!(self, |p| {
            let rows = sqlx::query("SELECT * FROM chat_bindings WHERE platform = $1")
                .bind(platform)
                .fetch_all(p)
                .await?;
            rows.iter().map(chat_binding_row).collect()
        })
    }

    /// Records a message with approval buttons; returns the id the buttons carry.
    #[tracing::instrument(skip_all)]
    pub async fn chat_approval_add(&self, a: &ChatApprovalRow, now_ms: u64) -> DbResult<i64> {
        on_pool!(self, |p| {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO chat_approvals (platform, approval_id, session_id, chat_id, thread_id,
                     message_id, title, options, decided, created_ms, steps)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10) RETURNING id",
            )
            .bind(&a.platform)
            .bind(&a.approval_id)
            .bind(a.session_id.to_string())
            .bind(&a.chat_id)
            .bind(thread_col(a.thread_id.as_deref()))
            .bind(&a.message_id)
            .bind(&a.title)
            .bind(serde_json::to_string(&a.options).unwrap_or_else(|_| "[]".into()))
            .bind(int(now_ms)?)
            .bind(&a.steps)
            .fetch_one(p)
            .await?;
            Ok(id)
        })
    }

    /// The approval message with button id `id`.
    #[tracing::instrument(skip_all)]
    pub async fn chat_approval(&self, id: i64) -> DbResult<ChatApprovalRow> {
        on_pool!(self, |p| {
            let row = sqlx::query("SELECT * FROM chat_approvals WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?
                .ok_or(DbError::NotFound)?;
            chat_approval_row(&row)
        })
    }

    /// Marks the undecided messages of `approval_id` decided and returns them (so each is
    /// edited once).
    #[tracing::instrument(skip_all)]
    pub async fn chat_approvals_decide(
        &self,
        platform: &str,
        approval_id: &str,
    ) -> DbResult<Vec<ChatApprovalRow>> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "UPDATE chat_approvals SET decided = 1
                 WHERE platform = $1 AND approval_id = $2 AND decided = 0 RETURNING *",
            )
            .bind(platform)
            .bind(approval_id)
            .fetch_all(p)
            .await?;
            rows.iter().map(chat_approval_row).collect()
        })
    }

    /// The stored update cursor of `platform` (0 when none).
    #[tracing::instrument(skip_all)]
    pub async fn chat_offset(&self, platform: &str) -> DbResult<i64> {
        on_pool!(self, |p| {
            let v: Option<i64> =
                sqlx::query_scalar("SELECT next_update FROM chat_offsets WHERE platform = $1")
                    .bind(platform)
                    .fetch_optional(p)
                    .await?;
            Ok(v.unwrap_or(0))
        })
    }

    /// Stores the update cursor of `platform`.
    #[tracing::instrument(skip_all)]
    pub async fn set_chat_offset(&self, platform: &str, next_update: i64) -> DbResult<()> {
        on_pool!(self, |p, d| {
            sqlx::query(d.pick(
                "INSERT INTO chat_offsets (platform, next_update) VALUES ($1, $2)
                 ON CONFLICT (platform) DO UPDATE SET next_update = MAX(next_update, $2)",
                "INSERT INTO chat_offsets (platform, next_update) VALUES ($1, $2)
                 ON CONFLICT (platform) DO UPDATE
                 SET next_update = GREATEST(chat_offsets.next_update, $2)",
            ))
            .bind(platform)
            .bind(next_update)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// Claims update `update_id`: true the first time, false if it was handled before.
    /// Rows older than the newest 10,000 are trimmed now and then.
    #[tracing::instrument(skip_all)]
    pub async fn chat_claim_update(
        &self,
        platform: &str,
        update_id: i64,
        now_ms: u64,
    ) -> DbResult<bool> {
        on_pool!(self, |p| {
            let first = self.insert_claim(platform, update_id, now_ms).await?;
            if update_id % 1000 == 0 {
                sqlx::query("DELETE FROM chat_updates WHERE platform = $1 AND update_id < $2")
                    .bind(platform)
                    .bind(update_id - 10_000)
                    .execute(p)
                    .await?;
            }
            Ok(first)
        })
    }

    /// Records that `id` of `platform` was handled; true if it was not recorded before.
    async fn insert_claim(&self, platform: &str, id: i64, now_ms: u64) -> DbResult<bool> {
        on_pool!(self, |p| {
            let done = sqlx::query(
                "INSERT INTO chat_updates (platform, update_id, seen_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (platform, update_id) DO NOTHING",
            )
            .bind(platform)
            .bind(id)
            .bind(int(now_ms)?)
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Claims platform message `id` (a Discord snowflake): true the first time. Unlike
    /// [`Db::chat_claim_update`], ids are not sequential, so old claims are trimmed by age:
    /// those seen more than `keep_ms` ago (callers only ever look back less than that).
    #[tracing::instrument(skip_all)]
    pub async fn chat_claim_message(
        &self,
        platform: &str,
        id: i64,
        now_ms: u64,
        keep_ms: u64,
    ) -> DbResult<bool> {
        on_pool!(self, |p| {
            let first = self.insert_claim(platform, id, now_ms).await?;
            if id % 256 == 0 {
                sqlx::query("DELETE FROM chat_updates WHERE platform = $1 AND seen_ms < $2")
                    .bind(platform)
                    .bind(int(now_ms.saturating_sub(keep_ms))?)
                    .execute(p)
                    .await?;
            }
            Ok(first)
        })
    }

    /// Records a turn's progress message (see [`ChatProgressRow`]).
    #[tracing::instrument(skip_all)]
    pub async fn chat_progress_add(
        &self,
        platform: &str,
        row: &ChatProgressRow,
        now_ms: u64,
    ) -> DbResult<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO chat_progress (platform, session_id, chat_id, thread_id, message_id, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(platform)
            .bind(row.session_id.to_string())
            .bind(&row.chat_id)
            .bind(thread_col(row.thread_id.as_deref()))
            .bind(&row.message_id)
            .bind(int(now_ms)?)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// The progress messages of `session` whose turn's end has not been shown yet.
    #[tracing::instrument(skip_all)]
    pub async fn chat_progress(
        &self,
        platform: &str,
        session: &SessionId,
    ) -> DbResult<Vec<ChatProgressRow>> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT * FROM chat_progress WHERE platform = $1 AND session_id = $2 ORDER BY created_ms",
            )
            .bind(platform)
            .bind(session.to_string())
            .fetch_all(p)
            .await?;
            rows.iter().map(chat_progress_row).collect()
        })
    }

    /// Forgets one progress message (its final state is shown).
    #[tracing::instrument(skip_all)]
    pub async fn chat_progress_done(
        &self,
        platform: &str,
        chat_id: &str,
        message_id: &str,
    ) -> DbResult<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "DELETE FROM chat_progress WHERE platform = $1 AND chat_id = $2 AND message_id = $3",
            )
            .bind(platform)
            .bind(chat_id)
            .bind(message_id)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// Forgets progress messages older than `before_ms` (a session nobody shows any more).
    #[tracing::instrument(skip_all)]
    pub async fn chat_progress_trim(&self, platform: &str, before_ms: u64) -> DbResult<u64> {
        on_pool!(self, |p| {
            let done =
                sqlx::query("DELETE FROM chat_progress WHERE platform = $1 AND created_ms < $2")
                    .bind(platform)
                    .bind(int(before_ms)?)
                    .execute(p)
                    .await?;
            Ok(done.rows_affected())
        })
    }

    /// Records the platform message id of approval message `id` once it is sent.
    #[tracing::instrument(skip_all)]
    pub async fn chat_approval_set_message(&self, id: i64, message_id: &str) -> DbResult<()> {
        on_pool!(self, |p| {
            let done = sqlx::query("UPDATE chat_approvals SET message_id = $2 WHERE id = $1")
                .bind(id)
                .bind(message_id)
                .execute(p)
                .await?;
            found(done.rows_affected())
        })
    }
}

/// Issue 13: inbound messages kept until delivered, outbound messages posted once, and the
/// steps of a question.
impl Db {
    /// Claims update or message `claim_id` of `platform` and keeps `row` as a pending prompt
    /// piece, in one transaction: returns the pending row's id the first time, `None` when
    /// the claim was made before (nothing is stored then). Claims seen more than `keep_ms`
    /// ago are trimmed now and then.
    #[tracing::instrument(skip_all)]
    pub async fn chat_claim_pending(
        &self,
        platform: &str,
        claim_id: i64,
        now_ms: u64,
        keep_ms: u64,
        row: &ChatPendingRow,
    ) -> DbResult<Option<i64>> {
        let now = int(now_ms)?;
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let claimed = sqlx::query(
                "INSERT INTO chat_updates (platform, update_id, seen_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (platform, update_id) DO NOTHING",
            )
            .bind(platform)
            .bind(claim_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() != 1 {
                return Ok(None);
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO chat_pending (platform, chat_id, thread_id, msg_id, sender, payload, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(platform)
            .bind(&row.chat_id)
            .bind(thread_col(row.thread_id.as_deref()))
            .bind(row.msg_id)
            .bind(&row.sender)
            .bind(&row.payload)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            if claim_id % 256 == 0 {
                sqlx::query("DELETE FROM chat_updates WHERE platform = $1 AND seen_ms < $2")
                    .bind(platform)
                    .bind(int(now_ms.saturating_sub(keep_ms))?)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Some(id))
        })
    }

    /// Every pending prompt piece of `platform`, oldest first.
    #[tracing::instrument(skip_all)]
    pub async fn chat_pending(&self, platform: &str) -> DbResult<Vec<ChatPendingRow>> {
        on_pool!(self, |p| {
            let rows = sqlx::query("SELECT * FROM chat_pending WHERE platform = $1 ORDER BY id")
                .bind(platform)
                .fetch_all(p)
                .await?;
            rows.iter().map(chat_pending_row).collect()
        })
    }

    /// Forgets pending pieces `ids` (delivered, or refused for good).
    #[tracing::instrument(skip_all)]
    pub async fn chat_pending_done(&self, ids: &[i64]) -> DbResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        on_pool!(self, |p, d| {
            sqlx::query(d.pick(
                "DELETE FROM chat_pending WHERE id IN (SELECT value FROM json_each($1))",
                "DELETE FROM chat_pending
                 WHERE id IN (SELECT value::bigint FROM json_array_elements_text($1::json))",
            ))
            .bind(list)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// What the outbox knows of `key` in a place.
    #[tracing::instrument(skip_all)]
    pub async fn chat_outbox(
        &self,
        platform: &str,
        chat_id: &str,
        thread_id: Option<&str>,
        key: &str,
    ) -> DbResult<Outboxed> {
        let row: Option<(Option<String>,)> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT message_id FROM chat_outbox
                 WHERE platform = $1 AND chat_id = $2 AND thread_id = $3 AND key = $4",
            )
            .bind(platform)
            .bind(chat_id)
            .bind(thread_col(thread_id))
            .bind(key)
            .fetch_optional(p)
            .await?
        });
        Ok(match row {
            None => Outboxed::New,
            Some((None,)) => Outboxed::Unconfirmed,
            Some((Some(id),)) => Outboxed::Sent(id),
        })
    }

    /// Records that message `key` is about to be sent to a place (`message_id` `None`), or
    /// that it was posted as `message_id`.
    #[tracing::instrument(skip_all)]
    pub async fn set_chat_outbox(
        &self,
        platform: &str,
        chat_id: &str,
        thread_id: Option<&str>,
        key: &str,
        message_id: Option<&str>,
        now_ms: u64,
    ) -> DbResult<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO chat_outbox (platform, chat_id, thread_id, key, message_id, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (platform, chat_id, thread_id, key) DO UPDATE
                 SET message_id = COALESCE(excluded.message_id, chat_outbox.message_id)",
            )
            .bind(platform)
            .bind(chat_id)
            .bind(thread_col(thread_id))
            .bind(key)
            .bind(message_id)
            .bind(int(now_ms)?)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// Forgets outbox rows older than `before_ms` (their events were shown long ago).
    #[tracing::instrument(skip_all)]
    pub async fn chat_outbox_trim(&self, platform: &str, before_ms: u64) -> DbResult<u64> {
        on_pool!(self, |p| {
            let done =
                sqlx::query("DELETE FROM chat_outbox WHERE platform = $1 AND created_ms < $2")
                    .bind(platform)
                    .bind(int(before_ms)?)
                    .execute(p)
                    .await?;
            Ok(done.rows_affected())
        })
    }

    /// Moves question message `id` from steps `old` to `new`, only if it is still at `old`
    /// and undecided (two presses at once: one wins). True when it moved.
    #[tracing::instrument(skip_all)]
    pub async fn chat_approval_step(&self, id: i64, old: &str, new: &str) -> DbResult<bool> {
        on_pool!(self, |p| {
            let done = sqlx::query(
                "UPDATE chat_approvals SET steps = $3 WHERE id = $1 AND steps = $2 AND decided = 0",
            )
            .bind(id)
            .bind(old)
            .bind(new)
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}

/// The `thread_id` column of a place: `''` for a chat without threads (the column is part
/// of the primary key and never NULL).
fn thread_col(thread: Option<&str>) -> &str {
    thread.unwrap_or("")
}

/// A stored `thread_id` column back as an optional thread.
fn opt_thread(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Decodes one row of `chat_bindings`.
fn chat_binding_row(r: &impl DbRow) -> DbResult<ChatBinding> {
    Ok(ChatBinding {
        platform: r.col("platform")?,
        chat_id: r.col("chat_id")?,
        thread_id: opt_thread(r.col("thread_id")?),
        session_id: session_column(r, "session_id")?,
        daemon_id: DaemonId(r.col("daemon_id")?),
        created_by: r.col("created_by")?,
        created_ms: uint(r.col("created_ms")?),
        parent: opt_thread(r.col("parent_id")?),
    })
}

/// Decodes one row of `chat_progress`.
fn chat_progress_row(r: &impl DbRow) -> DbResult<ChatProgressRow> {
    Ok(ChatProgressRow {
        session_id: session_column(r, "session_id")?,
        chat_id: r.col("chat_id")?,
        thread_id: opt_thread(r.col("thread_id")?),
        message_id: r.col("message_id")?,
    })
}

/// Decodes one row of `chat_approvals`.
fn chat_approval_row(r: &impl DbRow) -> DbResult<ChatApprovalRow> {
    Ok(ChatApprovalRow {
        id: r.col("id")?,
        platform: r.col("platform")?,
        approval_id: r.col("approval_id")?,
        session_id: session_column(r, "session_id")?,
        chat_id: r.col("chat_id")?,
        thread_id: opt_thread(r.col("thread_id")?),
        message_id: r.col("message_id")?,
        title: r.col("title")?,
        options: json_column(r, "options")?,
        decided: r.col::<i64>("decided")? != 0,
        steps: r.col("steps")?,
    })
}

/// Decodes one row of `chat_pending`.
fn chat_pending_row(r: &impl DbRow) -> DbResult<ChatPendingRow> {
    Ok(ChatPendingRow {
        id: r.col("id")?,
        chat_id: r.col("chat_id")?,
        thread_id: opt_thread(r.col("thread_id")?),
        msg_id: r.col("msg_id")?,
        sender: r.col("sender")?,
        payload: r.col("payload")?,
    })
}
