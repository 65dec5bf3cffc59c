-- Chat UX: the progress message of each running turn, and where a bound thread was opened.
-- Append-only like every migration.

-- The progress message a turn posted in a chat place, kept until the turn's end has been
-- shown there. A bot killed mid-turn finds it after the restart and edits it to its final
-- state (the answer, or how the turn ended) instead of leaving it at "Working…".
CREATE TABLE chat_progress (
    platform    TEXT    NOT NULL,
    session_id  TEXT    NOT NULL,
    chat_id     TEXT    NOT NULL,
    thread_id   TEXT    NOT NULL DEFAULT '',
    message_id  TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (platform, chat_id, message_id)
) STRICT;
CREATE INDEX chat_progress_session ON chat_progress (platform, session_id);

-- The chat a bound thread was opened from (a Telegram forum, a Discord text channel; ''
-- when the place was bound as it is), so `/bind` there finds the session's thread again
-- instead of opening a second one.
ALTER TABLE chat_bindings ADD COLUMN parent_id TEXT NOT NULL DEFAULT '';
