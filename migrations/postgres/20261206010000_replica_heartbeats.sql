-- Each replica's heartbeat (issue 17): a row refreshed every few seconds, in the database's
-- own clock. Links (`daemon_links`) of a replica not seen for 15 s count as gone and are
-- removed by the others. `features` keeps what each linked daemon announced, so every
-- replica knows what a daemon linked elsewhere can do.
CREATE TABLE replica_heartbeats (
    replica  TEXT         PRIMARY KEY,
    seen     TIMESTAMPTZ  NOT NULL DEFAULT now()
);

ALTER TABLE daemon_links ADD COLUMN features TEXT NOT NULL DEFAULT '[]';
