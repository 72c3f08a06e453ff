//! The audit trail: what happened to every domain event and its broadcasts, with timings.

use sqlx::Row;

use crate::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub broadcast_id: Option<String>,
    pub kind: String,
    /// JSON text.
    pub detail: String,
    pub at: i64,
}

/// Filters of `herald audit` and `GET /apps/{id}/audit`; empty strings and 0 mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub event_type: String,
    pub kind: String,
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
            .bind(&filter.kind)
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
                    kind: row.try_get("kind")?,
                    detail: row.try_get("detail")?,
                    at: row.try_get("at")?,
                });
            }
            entries
        });
        Ok(entries)
    }
}
