-- Interrupted work: a running claim whose request could not have left yet (sent_at NULL: its
-- guardrails passed, its precondition check may be in flight) runs again after a restart; one
-- whose request may have been sent is handled by its action's on_interrupted policy.
-- interruptions counts how often a claim was run again after an interruption.
ALTER TABLE claims ADD COLUMN sent_at DOUBLE PRECISION;
ALTER TABLE claims ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0;
