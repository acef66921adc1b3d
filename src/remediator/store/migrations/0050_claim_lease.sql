-- A running claim's lease: written when the claim starts and renewed by its holder while the
-- action runs (leases.py), so that a running claim whose holder died is recognisable by a lease
-- that ran out. NULL for a claim that is not running (and for those started before this).
ALTER TABLE claims ADD COLUMN lease_until DOUBLE PRECISION;
ALTER TABLE claims ADD COLUMN lease_renewed_at DOUBLE PRECISION;
CREATE INDEX claims_running_lease ON claims (lease_until) WHERE status = 'running';
