-- Dashboard logins: a user token is exchanged once for a random session secret that the
-- browser keeps in an HttpOnly cookie. Only the secret's SHA-256 is stored (like api_keys).
-- A session ends at `expires_ms`, on logout, or when its token (`key_id`) is revoked.
-- `csrf` is the session's anti-forgery token, sent back by the page in a header or field.
-- Append-only like every migration.
CREATE TABLE web_sessions (
    hash          TEXT    PRIMARY KEY,
    key_id        INTEGER NOT NULL REFERENCES api_keys (id),
    csrf          TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
) STRICT;
CREATE INDEX web_sessions_expiry ON web_sessions (expires_ms);
