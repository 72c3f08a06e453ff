//! The audit trail: what happened to every domain event and its broadcasts, with timings.

use sqlx::Row;

use crate::{Store, StoreError};

/// What an audit entry records. Stored (and shown) by its `as_str` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// A domain event was accepted.
    Received,
    /// An event was valid but below its threshold: nothing is sent.
    Ignored,
    /// An event id seen before: nothing new is stored or sent.
    Duplicate,
    /// A recipient's preferences kept a broadcast from them.
    Suppressed,
    /// A broadcast was queued for its channels.
    Routed,
    /// The driver delivered a broadcast.
    Delivered,
    /// A delivery attempt failed; another follows.
    AttemptFailed,
    /// Delivery failed for good.
    DeadLettered,
    /// A dead letter was put back in the queue.
    Replayed,
}

impl AuditKind {
    pub const ALL: [AuditKind; 9] = [
        AuditKind::Received,
        AuditKind::Ignored,
        AuditKind::Duplicate,
        AuditKind::Suppressed,
        AuditKind::Routed,
        AuditKind::Delivered,
        AuditKind::AttemptFailed,
        AuditKind::DeadLettered,
        AuditKind::Replayed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Received => "received",
            AuditKind::Ignored => "ignored",
            AuditKind::Duplicate => "duplicate",
            AuditKind::Suppressed => "suppressed",
            AuditKind::Routed => "routed",
            AuditKind::Delivered => "delivered",
            AuditKind::AttemptFailed => "attempt_failed",
            AuditKind::DeadLettered => "dead_lettered",
            AuditKind::Replayed => "replayed",
        }
    }

    /// The kind named `name`, or the list of names to choose from.
    pub fn parse(name: &str) -> Result<AuditKind, String> {
        AuditKind::ALL.into_iter().find(|kind| kind.as_str() == name).ok_or_else(|| {
            let names: Vec<&str> = AuditKind::ALL.iter().map(|kind| kind.as_str()).collect();
            format!("must be one of {}", names.join(", "))
        })
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub broadcast_id: Option<String>,
    pub kind: AuditKind,
    /// JSON text.
    pub detail: String,
    pub at: i64,
}

/// Filters of `herald audit` and `GET /apps/{id}/audit`; empty strings, `None` and 0 mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub event_type: String,
    pub kind: Option<AuditKind>,
    pub event_id: String,
    pub since_ms: i64,
    pub limit: i64,
}

impl Store {
    /// Audit entries matching `filter`, newest first.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = if filter.limit <= 0 { 100 } else { filter.limit };
        let entries = with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT seq, event_id, event_type, broadcast_id, kind, detail, at FROM audit_entries \
                 WHERE ($1 = '' OR event_type = $1) AND ($2 = '' OR kind = $2) AND ($3 = '' OR event_id = $3) \
                 AND at >= $4 ORDER BY seq DESC LIMIT $5",
            )
            .bind(&filter.event_type)
            .bind(filter.kind.map_or("", AuditKind::as_str))
            .bind(&filter.event_id)
            .bind(filter.since_ms)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut entries = Vec::with_capacity(rows.len());
            for row in rows {
                entries.push(AuditEntry {
                    seq: row.try_get("seq")?,
                    event_id: row.try_get("event_id")?,
                    event_type: row.try_get("event_type")?,
                    broadcast_id: row.try_get("broadcast_id")?,
                    kind: {
                        let name: String = row.try_get("kind")?;
                        AuditKind::parse(&name).map_err(|problem| {
                            sqlx::Error::Decode(format!("audit kind {name:?}: {problem}").into())
                        })?
                    },
                    detail: row.try_get("detail")?,
                    at: row.try_get("at")?,
                });
            }
            entries
        });
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_stored_name() {
        for kind in AuditKind::ALL {
            assert_eq!(AuditKind::parse(kind.as_str()), Ok(kind));
        }
        let problem = AuditKind::parse("deliverd").expect_err("unknown");
        assert!(problem.contains("attempt_failed") && problem.contains("replayed"), "{problem}");
        assert_eq!(format!("[{:<12}]", AuditKind::Routed), "[routed      ]", "pads like a string");
    }
}
