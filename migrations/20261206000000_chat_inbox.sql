-- Telegram webhook deliveries made durable by whichever replica received them, until the
-- chat leader's adapter has handled them (issue 17): one row per update, claimed once by
-- its id; `done_ms` is set once handled (rows done a day ago are trimmed).
CREATE TABLE chat_inbox (
    platform     TEXT     NOT NULL,
    update_id    INTEGER  NOT NULL,
    body         TEXT     NOT NULL,
    received_ms  INTEGER  NOT NULL,
    done_ms      INTEGER,
    PRIMARY KEY (platform, update_id)
);
CREATE INDEX chat_inbox_waiting ON chat_inbox (platform, update_id) WHERE done_ms IS NULL;
