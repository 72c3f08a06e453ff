-- The notification layer. Times are Unix epoch milliseconds; JSON is stored as text.

-- Every accepted domain event; `id` is the idempotency key, `outcome` what the ingest answered.
CREATE TABLE IF NOT EXISTS domain_events (
    id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL
);

-- The user inbox.
CREATE TABLE IF NOT EXISTS notifications (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    notification_type TEXT NOT NULL,
    title TEXT NOT NULL,
    message TEXT NOT NULL,
    priority TEXT NOT NULL,
    data TEXT NOT NULL,
    action_url TEXT,
    created_at BIGINT NOT NULL,
    read_at BIGINT
);
CREATE INDEX IF NOT EXISTS notifications_by_user ON notifications (user_id, seq);

-- One row per broadcast: the queue job. lane 0 = critical-broadcasts, 1 = broadcasts.
CREATE TABLE IF NOT EXISTS broadcasts (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL,
    event_name TEXT NOT NULL,
    channels TEXT NOT NULL,
    payload TEXT NOT NULL,
    lane BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_until BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX IF NOT EXISTS broadcasts_ready ON broadcasts (status, lane, next_attempt_at);

CREATE TABLE IF NOT EXISTS dead_letters (
    broadcast_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    failed_at BIGINT NOT NULL
);

-- What each catalog channel was sent, for catch-up after a reconnect.
CREATE TABLE IF NOT EXISTS channel_events (
    seq BIGSERIAL PRIMARY KEY,
    channel TEXT NOT NULL,
    broadcast_id TEXT NOT NULL,
    event_name TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS channel_events_by_channel ON channel_events (channel, seq);

CREATE TABLE IF NOT EXISTS preferences (
    user_id TEXT NOT NULL,
    notification_type TEXT NOT NULL,
    realtime BIGINT NOT NULL,
    in_app BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, notification_type)
);

CREATE TABLE IF NOT EXISTS audit_entries (
    seq BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    broadcast_id TEXT,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_event ON audit_entries (event_id, seq);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit_entries (at);
