-- Chat adapters (Telegram now, Discord next): which chat thread shows which session, the
-- approval messages to edit once decided, and the platform update cursor. Append-only like
-- every migration. Chat and thread ids are the platform's own ids as text; `thread_id` is
-- '' for a chat without threads (a private chat's "current session").

-- One chat thread ↔ one session. A private chat's selected session is the row with
-- thread_id = ''; selecting another one replaces it.
CREATE TABLE chat_bindings (
    platform    TEXT    NOT NULL,
    chat_id     TEXT    NOT NULL,
    thread_id   TEXT    NOT NULL DEFAULT '',
    session_id  TEXT    NOT NULL,
    daemon_id   TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (platform, chat_id, thread_id)
) STRICT;
CREATE INDEX chat_bindings_session ON chat_bindings (session_id);

-- Approval and question messages with buttons. `id` is what the buttons carry (platform
-- callback data is short, approval ids need not be); the message is edited once decided.
CREATE TABLE chat_approvals (
    id           INTEGER PRIMARY KEY,
    platform     TEXT    NOT NULL,
    approval_id  TEXT    NOT NULL,
    session_id   TEXT    NOT NULL,
    chat_id      TEXT    NOT NULL,
    thread_id    TEXT    NOT NULL DEFAULT '',
    message_id   TEXT    NOT NULL,
    title        TEXT    NOT NULL,
    options      TEXT    NOT NULL,
    decided      INTEGER NOT NULL DEFAULT 0,
    created_ms   INTEGER NOT NULL
) STRICT;
CREATE INDEX chat_approvals_approval ON chat_approvals (approval_id);

-- The next platform update to ask for (Telegram's getUpdates offset).
CREATE TABLE chat_offsets (
    platform     TEXT    PRIMARY KEY,
    next_update  INTEGER NOT NULL
) STRICT;

-- Updates already handled, so one served twice (a restart between handling and the next
-- poll) is not handled twice. Old rows are trimmed.
CREATE TABLE chat_updates (
    platform   TEXT    NOT NULL,
    update_id  INTEGER NOT NULL,
    seen_ms    INTEGER NOT NULL,
    PRIMARY KEY (platform, update_id)
) STRICT;
