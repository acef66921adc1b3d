-- Slack: the outbox (rendered messages waiting for delivery, in order per thread), the messages
-- that later updates refer to (an incident's parent, an approval request), and what the incidents
-- need for their messages.

ALTER TABLE incidents ADD COLUMN generator_url TEXT NOT NULL DEFAULT '';
ALTER TABLE incidents ADD COLUMN external_url TEXT NOT NULL DEFAULT '';
ALTER TABLE incidents ADD COLUMN acked_by TEXT;
ALTER TABLE incidents ADD COLUMN acked_at DOUBLE PRECISION;

CREATE TABLE slack_outbox (
    id __ID__,
    audit_id BIGINT,                      -- the audit line this message tells, if any
    thread TEXT NOT NULL,                 -- delivery order is per thread: incident:<id>, channel:<c>
    channel TEXT NOT NULL,
    method TEXT NOT NULL,                 -- post | reply | update
    ref TEXT,                             -- post: the name later updates use; update: the target
    parent TEXT,                          -- reply: the ref of the message to thread under
    payload TEXT NOT NULL,                -- JSON: text and blocks
    status TEXT NOT NULL,                 -- pending | sent | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    sent_at DOUBLE PRECISION,
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX slack_outbox_pending ON slack_outbox (status, thread, id);

CREATE TABLE slack_messages (
    ref TEXT PRIMARY KEY,                 -- incident:<id> (the parent), approval:<id>
    channel TEXT NOT NULL,                -- the channel id Slack answered with
    ts TEXT NOT NULL
);
