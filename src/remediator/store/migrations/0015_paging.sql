-- Paging: the pages of each incident (the escalation level reached and when, for the escalation
-- timers, and the pagers called, for acknowledging and resolving them), and the pager outbox:
-- events for PagerDuty and Opsgenie waiting for delivery, in order per incident and pager.

CREATE TABLE pages (
    incident_id BIGINT PRIMARY KEY,      -- no foreign key: retention prunes incidents alone
    policy TEXT NOT NULL,
    level INTEGER NOT NULL,               -- 1-based level of the policy called last
    level_at DOUBLE PRECISION NOT NULL,   -- when that level was called
    pagers TEXT NOT NULL DEFAULT '[]'     -- JSON: every pager triggered for the incident
);

CREATE TABLE page_outbox (
    id __ID__,
    incident_id BIGINT NOT NULL,
    pager TEXT NOT NULL,
    event TEXT NOT NULL,                  -- trigger | acknowledge | resolve
    payload TEXT NOT NULL,                -- JSON: the request body, without the key
    status TEXT NOT NULL,                 -- pending | sent | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    sent_at DOUBLE PRECISION,
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX page_outbox_pending ON page_outbox (status, incident_id, pager, id);
