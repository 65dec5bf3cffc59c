-- Direct links between replicas (issue 17): where each replica can be reached by the others
-- (`url`, `ws://` or `wss://`; NULL when it has no address to give) and the token a replica
-- must show to link to it, regenerated each time a replica starts. Calls and their replies
-- travel over these links when one is up, else through NOTIFY as before.
ALTER TABLE replica_heartbeats ADD COLUMN url TEXT;
ALTER TABLE replica_heartbeats ADD COLUMN token TEXT;
