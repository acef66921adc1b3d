-- Retention: the reads that find what is old enough to delete, and the deletes of what hangs
-- from an incident, each cost what they delete, not a scan of their table.
CREATE INDEX journal_processed ON journal (processed_at) WHERE processed_at IS NOT NULL;
CREATE INDEX incidents_resolved ON incidents (resolved_at) WHERE status = 'resolved';
CREATE INDEX approvals_incident ON approvals (incident_id);
CREATE INDEX claims_unfinished ON claims (incident_id) WHERE finished_at IS NULL;
CREATE INDEX slack_outbox_done ON slack_outbox (id) WHERE status != 'pending';
