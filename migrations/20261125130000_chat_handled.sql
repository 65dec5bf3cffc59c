-- How far each chat platform has shown each session's events (bot event row id). On start
-- the chat core resumes from the lowest mark of the bound sessions, so events committed
-- just before a crash (a final answer still waiting on a 429, say) are shown after the
-- restart instead of being skipped. Append-only like every migration.
CREATE TABLE chat_handled (
    platform    TEXT    NOT NULL,
    session_id  TEXT    NOT NULL,
    event_id    INTEGER NOT NULL,
    PRIMARY KEY (platform, session_id)
) STRICT;
