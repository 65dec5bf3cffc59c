-- PostgreSQL twin of migrations/20261205230000_approval_claims.sql: who claimed a pending
-- approval first (the first answer wins across replicas), and when.
ALTER TABLE approvals ADD COLUMN claimed_by TEXT;
ALTER TABLE approvals ADD COLUMN claimed_ms BIGINT;
