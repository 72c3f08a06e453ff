-- The notification layer. Times are Unix epoch milliseconds; JSON is stored as text.

-- Every accepted domain event; `id` is the idempotency key, `outcome` what the ingest answered.
CREATE TABLE IF NOT EXISTS domain_events (
    id TEXT PRIMARY KEY NOT NULL,
    event_type TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL
);

-- The user inbox.
CREATE TABLE IF NOT EXISTS notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    notification_type TEXT NOT NULL,
    title TEXT NOT NULL,
    message TEXT NOT NULL,
    priority TEXT NOT NULL,
    data TEXT NOT NULL,
    action_url TEXT,
    created_at INTEGER NOT NULL,
    read_at INTEGER
);
CREATE INDEX IF NOT EXISTS notifications_by_user ON notifications (user_id, seq);

-- One row per broadcast: the queue job. lane 0 = critical-broadcasts, 1 = broadcasts.
CREATE TABLE IF NOT EXISTS broadcasts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL,
    event_name TEXT NOT NULL,
    channels TEXT NOT NULL,
    payload TEXT NOT NULL,
    lane INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_until INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX IF NOT EXISTS broadcasts_ready ON broadcasts (status, lane, next_attempt_at);

CREATE TABLE IF NOT EXISTS dead_letters (
    broadcast_id TEXT PRIMARY KEY NOT NULL,
    event_id TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    failed_at INTEGER NOT NULL
);

-- What each catalog channel was sent, for catch-up after a reconnect.
CREATE TABLE IF NOT EXISTS channel_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    broadcast_id TEXT NOT NULL,
    event_name TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS channel_events_by_channel ON channel_events (channel, seq);

CREATE TABLE IF NOT EXISTS preferences (
    user_id TEXT NOT NULL,
    notification_type TEXT NOT NULL,
    realtime INTEGER NOT NULL,
    in_app INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, notification_type)
);

CREATE TABLE IF NOT EXISTS audit_entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    broadcast_id TEXT,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_event ON audit_entries (event_id, seq);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit_entries (at);
