-- ccrm-bot storage, first version. Append-only: never edit a migration once merged, add a
-- new file instead. Times are Unix milliseconds; ids are the protocol's text ids.

-- API keys for daemons (X-API-Key on the link) and users (REST/dashboard bearer tokens).
-- Only the SHA-256 of a secret is kept; the secret is shown once at creation.
CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL CHECK (kind IN ('daemon', 'user')),
    hash        TEXT    NOT NULL UNIQUE,
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
) STRICT;

-- One row per daemon (machine/user) that ever said hello.
CREATE TABLE daemons (
    id             TEXT    PRIMARY KEY,
    hostname       TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    key_id         INTEGER REFERENCES api_keys (id),
    online         INTEGER NOT NULL DEFAULT 0,
    first_seen_ms  INTEGER NOT NULL,
    last_seen_ms   INTEGER NOT NULL
) STRICT;

-- The latest known settings of each session. `state`/`reason` follow State events as they
-- are stored; `info` is the last full SessionInfo JSON the daemon sent.
CREATE TABLE sessions (
    id               TEXT    PRIMARY KEY,
    daemon_id        TEXT    NOT NULL REFERENCES daemons (id),
    name             TEXT,
    cwd              TEXT    NOT NULL,
    model            TEXT,
    permission_mode  TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    reason           TEXT,
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL,
    info             TEXT    NOT NULL
) STRICT;
CREATE INDEX sessions_daemon ON sessions (daemon_id);
CREATE INDEX sessions_state ON sessions (state);

-- Every event, once. `id` is the bot's own order (keyset cursor, SSE Last-Event-ID);
-- `(daemon_id, seq)` is the daemon's link sequence and makes resends harmless.
CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    daemon_id    TEXT    NOT NULL REFERENCES daemons (id),
    seq          INTEGER NOT NULL,
    session_id   TEXT    NOT NULL,
    session_seq  INTEGER NOT NULL,
    ts_ms        INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    data         TEXT    NOT NULL,
    UNIQUE (daemon_id, seq)
) STRICT;
CREATE INDEX events_session ON events (session_id, id);

-- Permission requests and questions, derived from their events.
CREATE TABLE approvals (
    id          TEXT    PRIMARY KEY,
    daemon_id   TEXT    NOT NULL REFERENCES daemons (id),
    session_id  TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('permission', 'question')),
    tool_name   TEXT    NOT NULL,
    input       TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'decided')),
    decision    TEXT,
    decided_by  TEXT,
    message     TEXT,
    answers     TEXT,
    created_ms  INTEGER NOT NULL,
    decided_ms  INTEGER
) STRICT;
CREATE INDEX approvals_status ON approvals (status);
CREATE INDEX approvals_session ON approvals (session_id);

-- Who did what, for the operator.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    ts_ms   INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    detail  TEXT    NOT NULL
) STRICT;
