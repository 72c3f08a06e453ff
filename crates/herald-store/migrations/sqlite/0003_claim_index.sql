-- Claiming takes the first pending job in (lane, next_attempt_at, seq) order. A partial index in
-- exactly that order lets every plan — PostgreSQL's generic prepared plans included — read the
-- first due job instead of sorting the whole backlog.
DROP INDEX IF EXISTS broadcasts_ready;
CREATE INDEX IF NOT EXISTS broadcasts_pending ON broadcasts (lane, next_attempt_at, seq) WHERE status = 'pending';
