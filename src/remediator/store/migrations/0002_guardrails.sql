-- Guardrails, approvals and verification. Everything a guardrail needs after a restart is here:
-- cooldowns, budgets and circuit breakers are derived from claims; the kill switch, mutes,
-- approvals and circuit resets have their own rows.

ALTER TABLE claims ADD COLUMN hold_until DOUBLE PRECISION;
ALTER TABLE claims ADD COLUMN verify_status TEXT;          -- pending | passed | failed
ALTER TABLE claims ADD COLUMN verify_detail TEXT NOT NULL DEFAULT '';
ALTER TABLE claims ADD COLUMN verify_next_at DOUBLE PRECISION;
ALTER TABLE claims ADD COLUMN verify_deadline DOUBLE PRECISION;
CREATE INDEX claims_target_started ON claims (target, started_at);
CREATE INDEX claims_rule_target_started ON claims (rule, target, started_at);
CREATE INDEX claims_verify ON claims (verify_status);

CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,                  -- JSON
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE mutes (
    id __ID__,
    rule TEXT,
    target TEXT,
    matchers TEXT,                        -- Alertmanager matcher syntax, on the incident's labels
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    until DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    ended_by TEXT
);

CREATE TABLE approvals (
    id __ID__,
    claim_id BIGINT NOT NULL UNIQUE REFERENCES claims (id),
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    rule TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    request TEXT NOT NULL,                -- JSON: what will be sent if approved
    requested_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL,                 -- pending | approved | denied | expired
    decided_by TEXT,
    decided_at DOUBLE PRECISION,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX approvals_status ON approvals (status, expires_at);

CREATE TABLE circuit_resets (
    target TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    by_whom TEXT NOT NULL
);
CREATE INDEX circuit_resets_target ON circuit_resets (target, at);
