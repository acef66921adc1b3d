-- Only the claims that have the value are indexed: a claim's started_at is NULL until it starts
-- and its verify_status NULL unless its action verifies, and nothing looks a claim up by either
-- being NULL (budgets read `started_at >= ?`, the verifier `verify_status = ?`, both of which
-- imply IS NOT NULL, so both backends still use these indexes). A new claim no longer writes an
-- entry into either index and its start no longer moves one out of the NULLs: on SQLite two WAL
-- pages fewer in the commit that claims it and one fewer in the commit that starts it (issue 17).
DROP INDEX claims_started;
CREATE INDEX claims_started ON claims (started_at) WHERE started_at IS NOT NULL;
DROP INDEX claims_verify;
CREATE INDEX claims_verify ON claims (verify_status) WHERE verify_status IS NOT NULL;
