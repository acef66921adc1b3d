-- Indexes for the guardrails' reads, which run before every action: each must cost what the
-- claim's own history costs, not what the whole claims table does (at 12,000 claims the old
-- indexes made the cooldown and breaker reads scan ~10 ms per action).
--   cooldown: the claims of the incidents with the same key      -> incidents_key, then claims by incident
--   budgets: the claims started since the budget's window began -> claims_started
--   breaker and busy target: a target's claims by status, newest finished last
DROP INDEX claims_target_started;
DROP INDEX claims_rule_target_started;
CREATE INDEX incidents_key ON incidents (incident_key);
CREATE INDEX claims_started ON claims (started_at);
CREATE INDEX claims_target_status ON claims (target, status, finished_at);
