-- Issue 17: the first answer to an approval wins in the database (several replicas may
-- pass answers to the one daemon at once). A surface claims a pending approval with a
-- conditional UPDATE before it sends the answer; a later answer finds the claim (or the
-- decision) and is refused with 409 naming who answered. A claim older than a command's
-- timeout is stale (its replica died) and may be taken over. Append-only.
ALTER TABLE approvals ADD COLUMN claimed_by TEXT;
ALTER TABLE approvals ADD COLUMN claimed_ms INTEGER;
