-- Issue 13: nothing lost and nothing doubled in chat, every question answered.
-- Append-only like every migration.

-- Chat messages claimed but not yet delivered as a prompt. A message is written here in
-- the same transaction as its claim (`chat_updates`), before Telegram's offset moves past
-- it or before a Discord catch-up would skip it, and deleted once the prompt it joined was
-- delivered (or refused for good). A bot killed inside the debounce window finds them
-- after the restart and rebuilds the pending prompt. `sender` and `payload` are JSON, so
-- more of a message (attachments) can ride along without a schema change.
CREATE TABLE chat_pending (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    platform    TEXT    NOT NULL,
    chat_id     TEXT    NOT NULL,
    thread_id   TEXT    NOT NULL DEFAULT '',
    msg_id      INTEGER,
    sender      TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL
) STRICT;
CREATE INDEX chat_pending_platform ON chat_pending (platform, id);

-- Outbound messages posted under an idempotency key (an answer part: the event row id and
-- the part), in each place. The intent is written before the send (`message_id` NULL) and
-- the message id after it, so a restarted bot edits the message it already posted instead
-- of posting it again.
CREATE TABLE chat_outbox (
    platform    TEXT    NOT NULL,
    chat_id     TEXT    NOT NULL,
    thread_id   TEXT    NOT NULL DEFAULT '',
    key         TEXT    NOT NULL,
    message_id  TEXT,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (platform, chat_id, thread_id, key)
) STRICT;
CREATE INDEX chat_outbox_created ON chat_outbox (platform, created_ms);

-- A question message's progress through a several-question AskUserQuestion (JSON: the
-- questions, the step shown, the answers so far, the options ticked on a multi-select
-- step); '' for permissions and older rows.
ALTER TABLE chat_approvals ADD COLUMN steps TEXT NOT NULL DEFAULT '';
