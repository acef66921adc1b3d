-- Several replicas on PostgreSQL. `leadership` is one row: the leadership epoch, bumped at every
-- takeover, which fences a deposed leader (every transaction that opens an incident, claims or
-- starts an action checks it), and who took it when. `replicas`: each replica's heartbeat, for
-- `remediator status`. On SQLite the one process takes the epoch at start.
CREATE TABLE leadership (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL,
    leader TEXT,
    since DOUBLE PRECISION
);
INSERT INTO leadership (id, epoch) VALUES (1, 0);

CREATE TABLE replicas (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,                   -- leader | follower | ingest
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    epoch BIGINT                          -- the epoch it leads in; NULL when it does not lead
);
