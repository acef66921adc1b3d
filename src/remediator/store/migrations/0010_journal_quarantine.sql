-- A notification the engine could not decide, even alone, is quarantined: marked processed (so
-- no replay retries it forever and it never again takes a batch down with it) and kept, with
-- why, for an operator to read. Its audit line names the journal id.
ALTER TABLE journal ADD COLUMN quarantined_at DOUBLE PRECISION;
ALTER TABLE journal ADD COLUMN quarantine_reason TEXT;
