-- Claiming orders due jobs by (lane, next_attempt_at, seq): an index in that order lets the
-- claim read the first due job instead of sorting every pending one.
DROP INDEX IF EXISTS broadcasts_ready;
CREATE INDEX IF NOT EXISTS broadcasts_claim ON broadcasts (status, lane, next_attempt_at, seq);
