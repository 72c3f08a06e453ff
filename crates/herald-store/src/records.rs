//! What the notification layer stores for one accepted domain event, and the ingest transaction.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Store, StoreError};

/// Now, in Unix epoch milliseconds (the unit of every stored time).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64)
}

/// The queue lanes. The two broadcast lanes share the broadcast workers, critical always served
/// first; webhooks have workers of their own, so a slow receiver never delays a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    Critical,
    Normal,
    Webhooks,
}

impl Lane {
    /// Every lane, in the order workers serve them.
    pub const ALL: [Lane; 3] = [Lane::Critical, Lane::Normal, Lane::Webhooks];

    /// The queue names (the broadcast lanes' are the original module's).
    pub fn name(self) -> &'static str {
        match self {
            Lane::Critical => "critical-broadcasts",
            Lane::Normal => "broadcasts",
            Lane::Webhooks => "webhooks",
        }
    }

    pub(crate) fn code(self) -> i64 {
        match self {
            Lane::Critical => 0,
            Lane::Normal => 1,
            Lane::Webhooks => 2,
        }
    }

    pub(crate) fn from_code(code: i64) -> Lane {
        match code {
            0 => Lane::Critical,
            2 => Lane::Webhooks,
            _ => Lane::Normal,
        }
    }
}

/// Which lanes a worker claims from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lanes {
    /// `critical-broadcasts`, then `broadcasts`.
    Broadcasts,
    Webhooks,
}

impl Lanes {
    /// The lane codes, first and last, the claim reads.
    pub(crate) fn codes(self) -> (i64, i64) {
        match self {
            Lanes::Broadcasts => (Lane::Critical.code(), Lane::Normal.code()),
            Lanes::Webhooks => (Lane::Webhooks.code(), Lane::Webhooks.code()),
        }
    }
}

/// One queue job, as every enqueue writes it: `$1` id, `$2` event id, `$3` event name, `$4`
/// channels (JSON), `$5` payload, `$6` lane, `$7` now.
pub(crate) const INSERT_JOB: &str =
    "INSERT INTO broadcasts (id, event_id, event_name, channels, payload, lane, status, \
     attempts, next_attempt_at, locked_until, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, 0, $7)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub id: String,
    pub event_type: String,
    pub occurred_at: i64,
    pub payload: String,
    /// `accepted` or `ignored`.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub id: String,
    pub user_id: String,
    pub notification_type: String,
    pub title: String,
    pub message: String,
    pub priority: String,
    pub data: String,
    pub action_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBroadcast {
    pub id: String,
    pub event_name: String,
    /// Logical channel names (`user.notifications.42`), as a JSON list when stored.
    pub channels: Vec<String>,
    pub payload: String,
    pub lane: Lane,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    pub broadcast_id: Option<String>,
    pub kind: crate::AuditKind,
    pub detail: String,
}

/// Everything one accepted event stores, in one transaction with its siblings of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub event: NewEvent,
    pub notifications: Vec<NewNotification>,
    pub broadcasts: Vec<NewBroadcast>,
    pub audits: Vec<NewAudit>,
    /// The JSON the ingest answers for this event; a repeat of the id answers it again.
    pub outcome: String,
    /// `(campaign_id, organization_id)` learnt from a campaign event, stored in the same transaction.
    pub campaign: Option<(String, String)>,
}

/// The ingest's answer for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestResult {
    Stored,
    /// The id was seen before: its original outcome JSON.
    Duplicate {
        outcome: String,
    },
}

impl Store {
    /// Whether a notification or broadcast with this id exists (the platform may name its own
    /// notification ids, which become the broadcast's id).
    pub async fn notification_exists(&self, id: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = with_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT CAST(1 AS BIGINT) FROM notifications WHERE id = $1 \
                 UNION ALL SELECT CAST(1 AS BIGINT) FROM broadcasts WHERE id = $1 LIMIT 1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }

    /// Whether a domain event with this id was accepted before.
    pub async fn event_exists(&self, id: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM domain_events WHERE id = $1").bind(id).fetch_optional(pool).await?
        });
        Ok(found.is_some())
    }

    /// Stores a batch in one transaction: each event with its notifications, broadcast jobs,
    /// channel history and audit entries, unless its id is already known. Nothing of the batch
    /// is stored if any statement fails. (The server goes through [`crate::IngestQueue`], which
    /// commits the batches of concurrent requests together.)
    pub async fn ingest(&self, records: &[EventRecord]) -> Result<Vec<IngestResult>, StoreError> {
        let now = now_ms();
        let _writing = self.writing().await;
        let results = with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let results = store_records!(tx, records, now).await?;
            tx.commit().await?;
            results
        });
        Ok(results)
    }
}

/// Stores `$records` (a slice of [`EventRecord`]) in the open transaction `$tx`, one after the
/// other, as if each were alone: an id stored earlier (in this transaction too) is a duplicate
/// answering its original outcome. An async block: `Result<Vec<IngestResult>, sqlx::Error>`.
macro_rules! store_records {
    ($tx:ident, $records:expr, $now:expr) => {
        async {
            let now: i64 = $now;
            let records: &[$crate::EventRecord] = $records;
            let mut results = Vec::with_capacity(records.len());
            for record in records {
                let event = &record.event;
                let inserted = sqlx::query(
                    "INSERT INTO domain_events (id, event_type, occurred_at, received_at, payload, status, outcome) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&event.id)
                .bind(&event.event_type)
                .bind(event.occurred_at)
                .bind(now)
                .bind(&event.payload)
                .bind(&event.status)
                .bind(&record.outcome)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    let outcome: String = sqlx::query_scalar("SELECT outcome FROM domain_events WHERE id = $1")
                        .bind(&event.id)
                        .fetch_one(&mut *$tx)
                        .await?;
                    sqlx::query(
                        "INSERT INTO audit_entries (event_id, event_type, broadcast_id, kind, detail, at) \
                         SELECT id, event_type, NULL, $3, '{}', $1 FROM domain_events WHERE id = $2",
                    )
                    .bind(now)
                    .bind(&event.id)
                    .bind($crate::AuditKind::Duplicate.as_str())
                    .execute(&mut *$tx)
                    .await?;
                    results.push($crate::IngestResult::Duplicate { outcome });
                    continue;
                }
                if let Some((campaign, organization)) = &record.campaign {
                    sqlx::query(
                        "INSERT INTO campaign_organizations (campaign_id, organization_id) VALUES ($1, $2) \
                         ON CONFLICT (campaign_id) DO UPDATE SET organization_id = excluded.organization_id",
                    )
                    .bind(campaign)
                    .bind(organization)
                    .execute(&mut *$tx)
                    .await?;
                }
                for notification in &record.notifications {
                    sqlx::query(
                        "INSERT INTO notifications (id, user_id, event_id, notification_type, title, message, \
                         priority, data, action_url, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(&notification.id)
                    .bind(&notification.user_id)
                    .bind(&event.id)
                    .bind(&notification.notification_type)
                    .bind(&notification.title)
                    .bind(&notification.message)
                    .bind(&notification.priority)
                    .bind(&notification.data)
                    .bind(&notification.action_url)
                    .bind(now)
                    .execute(&mut *$tx)
                    .await?;
                }
                for broadcast in &record.broadcasts {
                    let channels = $crate::records::serde_json_list(&broadcast.channels);
                    sqlx::query($crate::records::INSERT_JOB)
                        .bind(&broadcast.id)
                        .bind(&event.id)
                        .bind(&broadcast.event_name)
                        .bind(&channels)
                        .bind(&broadcast.payload)
                        .bind(broadcast.lane.code())
                        .bind(now)
                        .execute(&mut *$tx)
                        .await?;
                    for channel in &broadcast.channels {
                        sqlx::query(
                            "INSERT INTO channel_events (channel, broadcast_id, event_name, payload, created_at) \
                             VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(channel)
                        .bind(&broadcast.id)
                        .bind(&broadcast.event_name)
                        .bind(&broadcast.payload)
                        .bind(now)
                        .execute(&mut *$tx)
                        .await?;
                    }
                }
                for audit in &record.audits {
                    sqlx::query(
                        "INSERT INTO audit_entries (event_id, event_type, broadcast_id, kind, detail, at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&event.id)
                    .bind(&event.event_type)
                    .bind(&audit.broadcast_id)
                    .bind(audit.kind.as_str())
                    .bind(&audit.detail)
                    .bind(now)
                    .execute(&mut *$tx)
                    .await?;
                }
                results.push($crate::IngestResult::Stored);
            }
            Ok::<_, sqlx::Error>(results)
        }
    };
}
pub(crate) use store_records;

/// A list of names as a JSON array.
pub(crate) fn serde_json_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("a list of strings serializes")
}

/// Parses a list stored by [`serde_json_list`]; a damaged row yields no names.
pub(crate) fn parse_json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}
