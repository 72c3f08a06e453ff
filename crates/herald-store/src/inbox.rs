//! Users' side: the inbox (read/unread, cursor pages, catch-up), preferences, channel history.

use sqlx::Row;

use crate::records::now_ms;
use crate::{Store, StoreError};

/// One inbox notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxNotification {
    pub seq: i64,
    pub id: String,
    pub event_id: String,
    pub notification_type: String,
    pub title: String,
    pub message: String,
    pub priority: String,
    /// JSON text.
    pub data: String,
    pub action_url: Option<String>,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

/// A page of the inbox; `next_cursor` continues it when more remain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxPage {
    pub items: Vec<InboxNotification>,
    pub next_cursor: Option<i64>,
}

/// A user's choice for one notification type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preference {
    pub notification_type: String,
    pub realtime: bool,
    pub in_app: bool,
}

/// One event a channel was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelEvent {
    pub seq: i64,
    pub broadcast_id: String,
    pub event_name: String,
    pub payload: String,
    pub created_at: i64,
}

const INBOX_COLUMNS: &str =
    "seq, id, event_id, notification_type, title, message, priority, data, action_url, created_at, read_at";

macro_rules! inbox_row {
    ($row:expr) => {
        InboxNotification {
            seq: $row.try_get("seq")?,
            id: $row.try_get("id")?,
            event_id: $row.try_get("event_id")?,
            notification_type: $row.try_get("notification_type")?,
            title: $row.try_get("title")?,
            message: $row.try_get("message")?,
            priority: $row.try_get("priority")?,
            data: $row.try_get("data")?,
            action_url: $row.try_get("action_url")?,
            created_at: $row.try_get("created_at")?,
            read_at: $row.try_get("read_at")?,
        }
    };
}

impl Store {
    /// A page of `user_id`'s inbox. Newest first, continuing below `cursor`; or, with `after`
    /// (a notification id), everything newer than it, oldest first (catch-up after offline).
    pub async fn inbox(
        &self,
        user_id: &str,
        unread_only: bool,
        cursor: Option<i64>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<InboxPage, StoreError> {
        let unread = if unread_only { " AND read_at IS NULL" } else { "" };
        let (sql, position) = match after {
            Some(_) => (
                format!(
                    "SELECT {INBOX_COLUMNS} FROM notifications WHERE user_id = $1{unread} AND seq > \
                     COALESCE((SELECT seq FROM notifications WHERE id = $2 AND user_id = $1), 0) \
                     ORDER BY seq ASC LIMIT $3"
                ),
                after.unwrap_or_default().to_owned(),
            ),
            None => (
                format!(
                    "SELECT {INBOX_COLUMNS} FROM notifications WHERE user_id = $1{unread} AND seq < $2 \
                     ORDER BY seq DESC LIMIT $3"
                ),
                cursor.unwrap_or(i64::MAX).to_string(),
            ),
        };
        let items = with_pool!(self, pool => {
            let query = sqlx::query(&sql).bind(user_id);
            let query = match after {
                Some(_) => query.bind(position.clone()),
                None => query.bind(cursor.unwrap_or(i64::MAX)),
            };
            let rows = query.bind(limit + 1).fetch_all(pool).await?;
            let mut items = Vec::with_capacity(rows.len());
            for row in rows {
                items.push(inbox_row!(row));
            }
            items
        });
        let mut items = items;
        let more = items.len() as i64 > limit;
        items.truncate(limit.max(0) as usize);
        let next_cursor = if more && after.is_none() { items.last().map(|item| item.seq) } else { None };
        Ok(InboxPage { items, next_cursor })
    }

    /// Marks one notification read; false when the user has no such notification.
    pub async fn mark_read(&self, user_id: &str, notification_id: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let changed = with_pool!(self, pool => {
            sqlx::query("UPDATE notifications SET read_at = COALESCE(read_at, $1) WHERE id = $2 AND user_id = $3")
                .bind(now)
                .bind(notification_id)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed > 0)
    }

    /// Marks every unread notification of the user read; returns how many.
    pub async fn mark_all_read(&self, user_id: &str) -> Result<u64, StoreError> {
        let now = now_ms();
        let changed = with_pool!(self, pool => {
            sqlx::query("UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL")
                .bind(now)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed)
    }

    /// The user's stored preferences (types without a row use the defaults: both on).
    pub async fn preferences(&self, user_id: &str) -> Result<Vec<Preference>, StoreError> {
        let rows: Vec<(String, i64, i64)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT notification_type, realtime, in_app FROM preferences WHERE user_id = $1 ORDER BY notification_type",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(notification_type, realtime, in_app)| Preference {
                notification_type,
                realtime: realtime != 0,
                in_app: in_app != 0,
            })
            .collect())
    }

    /// Stores preferences (upsert per type), all or nothing.
    pub async fn set_preferences(&self, user_id: &str, preferences: &[Preference]) -> Result<(), StoreError> {
        let now = now_ms();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for preference in preferences {
                sqlx::query(
                    "INSERT INTO preferences (user_id, notification_type, realtime, in_app, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, notification_type) DO UPDATE SET \
                     realtime = excluded.realtime, in_app = excluded.in_app, updated_at = excluded.updated_at",
                )
                .bind(user_id)
                .bind(&preference.notification_type)
                .bind(i64::from(preference.realtime))
                .bind(i64::from(preference.in_app))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The preference in force for one user and type (defaults: both on).
    pub async fn preference(&self, user_id: &str, notification_type: &str) -> Result<Preference, StoreError> {
        let row: Option<(i64, i64)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT realtime, in_app FROM preferences WHERE user_id = $1 AND notification_type = $2")
                .bind(user_id)
                .bind(notification_type)
                .fetch_optional(pool)
                .await?
        });
        let (realtime, in_app) = row.map_or((true, true), |(realtime, in_app)| (realtime != 0, in_app != 0));
        Ok(Preference { notification_type: notification_type.to_owned(), realtime, in_app })
    }

    /// The preferences of many `(user id, notification type)` pairs at once (one query per 256
    /// users): each pair asked for is in the answer, the defaults (both on) where no row is stored.
    pub async fn preferences_of(
        &self,
        pairs: &[(&str, &str)],
    ) -> Result<std::collections::HashMap<(String, String), Preference>, StoreError> {
        let mut users: Vec<&str> = pairs.iter().map(|(user_id, _)| *user_id).collect();
        users.sort_unstable();
        users.dedup();
        let mut stored = std::collections::HashMap::new();
        for chunk in crate::records::chunks(&users, 1) {
            let sql = crate::records::rows_sql(
                "SELECT user_id, notification_type, realtime, in_app FROM preferences WHERE user_id IN (",
                "?",
                chunk.len(),
                ")",
                1,
            );
            let rows: Vec<(String, String, i64, i64)> = with_pool!(self, pool => {
                let mut query = sqlx::query_as(&sql);
                for user_id in chunk {
                    query = query.bind(*user_id);
                }
                query.fetch_all(pool).await?
            });
            for (user_id, notification_type, realtime, in_app) in rows {
                stored.insert((user_id, notification_type), (realtime != 0, in_app != 0));
            }
        }
        Ok(pairs
            .iter()
            .map(|&(user_id, notification_type)| {
                let key = (user_id.to_owned(), notification_type.to_owned());
                let (realtime, in_app) = stored.get(&key).copied().unwrap_or((true, true));
                (key, Preference { notification_type: notification_type.to_owned(), realtime, in_app })
            })
            .collect())
    }

    /// Events sent to a (logical) channel after `after_seq`, oldest first.
    pub async fn channel_events(
        &self,
        channel: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<ChannelEvent>, StoreError> {
        let events = with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT seq, broadcast_id, event_name, payload, created_at FROM channel_events \
                 WHERE channel = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3",
            )
            .bind(channel)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut events = Vec::with_capacity(rows.len());
            for row in rows {
                events.push(ChannelEvent {
                    seq: row.try_get("seq")?,
                    broadcast_id: row.try_get("broadcast_id")?,
                    event_name: row.try_get("event_name")?,
                    payload: row.try_get("payload")?,
                    created_at: row.try_get("created_at")?,
                });
            }
            events
        });
        Ok(events)
    }
}
