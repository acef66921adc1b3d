-- One at a time by lane: a running claim's lane (the values of its rule's one_at_a_time_by
-- labels) lets actions on one target run side by side when their lanes differ, as connectors of
-- one Kafka Connect cluster do. NULL: the claim holds its whole target (the default).
ALTER TABLE claims ADD COLUMN lane TEXT;
