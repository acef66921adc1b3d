-- Whether a failed attempt says the target is sick (connection error, timeout, 5xx, 429, ...)
-- or only that this request's own data was refused (a 4xx such as 400/404/409/422, an SQL data
-- or constraint error). Only the first kind counts towards the target's circuit breaker: three
-- alerts with bogus label values must not lock out the legitimate action after them.
ALTER TABLE attempts ADD COLUMN target_fault INTEGER NOT NULL DEFAULT 1;
CREATE INDEX attempts_request_faults ON attempts (claim_id) WHERE target_fault = 0;
