-- The journal, alert instances, incidents, claims, attempts and the audit trail.
-- Portable SQL shared by SQLite and PostgreSQL; the token __ID__ stands for the dialect's
-- auto-assigned integer primary key. Times are Unix seconds.

CREATE TABLE journal (
    id __ID__,
    received_at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    processed_at DOUBLE PRECISION
);
CREATE INDEX journal_unprocessed ON journal (id) WHERE processed_at IS NULL;

CREATE TABLE incidents (
    id __ID__,
    rule TEXT NOT NULL,
    incident_key TEXT NOT NULL,          -- JSON array of the key labels' values
    key_labels TEXT NOT NULL,            -- JSON object: key label name -> value
    status TEXT NOT NULL,                -- open | resolved
    tier INTEGER NOT NULL,               -- -1 below every tier
    value DOUBLE PRECISION,
    labels TEXT NOT NULL,                -- JSON: labels of the latest alert
    annotations TEXT NOT NULL,           -- JSON: annotations of the latest alert
    opened_at DOUBLE PRECISION NOT NULL,
    tier_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    resolved_at DOUBLE PRECISION
);
CREATE UNIQUE INDEX incidents_open_key ON incidents (rule, incident_key) WHERE status = 'open';
CREATE INDEX incidents_status ON incidents (status, id);

CREATE TABLE alert_instances (
    rule TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    starts_at DOUBLE PRECISION NOT NULL,
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    status TEXT NOT NULL,                -- firing | resolved
    value DOUBLE PRECISION,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (rule, fingerprint, starts_at)
);
CREATE INDEX alert_instances_incident ON alert_instances (incident_id);

CREATE TABLE claims (
    id __ID__,
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    step TEXT NOT NULL,                  -- tier name, or on_resolved
    action TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    rule TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    context TEXT NOT NULL,               -- JSON: alert data the request is built from
    request TEXT,                        -- JSON: the request as sent, without credentials
    status TEXT NOT NULL,                -- claimed | running | succeeded | failed | interrupted | skipped
    detail TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    UNIQUE (incident_id, step, action)
);
CREATE INDEX claims_status ON claims (status);

CREATE TABLE attempts (
    id __ID__,
    claim_id BIGINT NOT NULL REFERENCES claims (id),
    attempt INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL,
    ok INTEGER NOT NULL,
    status_code INTEGER,
    exit_code INTEGER,
    detail TEXT NOT NULL,
    output TEXT NOT NULL DEFAULT ''
);
CREATE INDEX attempts_claim ON attempts (claim_id);

CREATE TABLE audit (
    id __ID__,
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,                  -- decision | action
    event TEXT NOT NULL,
    incident_id BIGINT,
    rule TEXT NOT NULL DEFAULT '',
    tier TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL DEFAULT '',
    actor TEXT NOT NULL,
    message TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_incident ON audit (incident_id, id);
