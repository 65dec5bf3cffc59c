-- One-shot executions (issue 15): what the bot was asked to run on a daemon and what came
-- of it, kept so `GET /api/executions/{id}` answers after the client's stream is gone and
-- after a bot restart. `items` is the newest of the daemon's numbered items stored here;
-- the bot resumes following the daemon after it. Times are Unix milliseconds.
CREATE TABLE executions (
    id            TEXT    PRIMARY KEY,
    daemon_id     TEXT    NOT NULL REFERENCES daemons (id),
    workspace_id  TEXT,
    cwd           TEXT    NOT NULL,
    prompt        TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'timeout', 'cancelled')),
    exit_code     INTEGER,
    output        TEXT    NOT NULL DEFAULT '',
    error         TEXT,
    result        TEXT,
    items         INTEGER NOT NULL DEFAULT 0,
    requested_by  TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL,
    started_ms    INTEGER,
    finished_ms   INTEGER
) STRICT;
CREATE INDEX executions_status ON executions (status);
