//! What the notification layer's records look like to their readers: the dashboard, the admin
//! API and the `herald` command render these same serializable shapes, so no reader rebuilds
//! them field by field (and none shows a logical channel name where another shows the wire one).

use herald_store::DeadLetter;
use serde::{Deserialize, Serialize};

use crate::catalog::wire_channel;
use crate::fields::rfc3339;

/// A broadcast that failed for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterView {
    pub broadcast_id: String,
    pub event_id: String,
    /// The broadcast event name (`payment.failed`).
    pub event: String,
    /// The channels as clients subscribe to them (`private-payment-notifications`).
    pub channels: Vec<String>,
    pub attempts: i64,
    pub last_error: String,
    /// RFC 3339, UTC, milliseconds.
    pub failed_at: String,
}

impl DeadLetterView {
    /// The stored dead letter with its channels on the wire (`[channels] admin_visibility`).
    pub fn new(letter: &DeadLetter, admin_channels_public: bool) -> DeadLetterView {
        DeadLetterView {
            broadcast_id: letter.broadcast_id.clone(),
            event_id: letter.event_id.clone(),
            event: letter.event_name.clone(),
            channels: letter
                .channels
                .iter()
                .map(|channel| wire_channel(channel, admin_channels_public))
                .collect(),
            attempts: letter.attempts,
            last_error: letter.last_error.clone(),
            failed_at: rfc3339(letter.failed_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_record_names_its_kind_and_keeps_its_detail() {
        let mut entry = herald_store::AuditEntry {
            seq: 7,
            event_id: "e1".into(),
            event_type: "payment.failed".into(),
            broadcast_id: Some("b1".into()),
            kind: herald_store::AuditKind::AttemptFailed,
            detail: r#"{"attempt":1,"error":"upstream answered 503","took_ms":3,"next_attempt_at":"x"}"#
                .into(),
            at: 0,
        };
        let record = AuditRecord::new(&entry);
        assert_eq!(record.status, "attempt_failed");
        assert_eq!(record.error(), Some("upstream answered 503"));
        let json = serde_json::to_value(&record).expect("json");
        assert_eq!(json["type"], "payment.failed");
        assert_eq!(json["at"], "1970-01-01T00:00:00.000Z");
        entry.detail = "not json".into();
        assert_eq!(AuditRecord::new(&entry).detail, serde_json::Value::Null);
    }

    #[test]
    fn a_dead_letter_shows_its_wire_channels() {
        let letter = DeadLetter {
            broadcast_id: "b1".into(),
            event_id: "e1".into(),
            event_name: "payment.failed".into(),
            channels: vec!["payment-notifications".into(), "user.notifications.42".into()],
            attempts: 5,
            last_error: "upstream answered 500".into(),
            failed_at: 0,
        };
        let view = DeadLetterView::new(&letter, false);
        assert_eq!(view.channels, ["private-payment-notifications", "private-user.notifications.42"]);
        assert_eq!(view.failed_at, "1970-01-01T00:00:00.000Z");
        assert_eq!(DeadLetterView::new(&letter, true).channels[0], "payment-notifications");
    }
}

/// One audit entry as every reader shows it: the audit API, `herald audit --json`, the status
/// document's recent errors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditRecord {
    pub seq: i64,
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    pub event_id: String,
    /// The domain event type.
    #[serde(rename = "type")]
    pub event_type: String,
    pub broadcast_id: Option<String>,
    /// The entry's kind (`AuditKind` name: `delivered`, `attempt_failed`, …).
    pub status: String,
    /// The kind's detail as stored (`AuditDetail` when written by this version; `null` when the
    /// stored text is not JSON).
    pub detail: serde_json::Value,
}

impl AuditRecord {
    pub fn new(entry: &herald_store::AuditEntry) -> AuditRecord {
        AuditRecord {
            seq: entry.seq,
            at: rfc3339(entry.at),
            event_id: entry.event_id.clone(),
            event_type: entry.event_type.clone(),
            broadcast_id: entry.broadcast_id.clone(),
            status: entry.kind.as_str().to_owned(),
            detail: serde_json::from_str(&entry.detail).unwrap_or(serde_json::Value::Null),
        }
    }

    /// The error of a failed attempt or a dead letter, if the detail has one.
    pub fn error(&self) -> Option<&str> {
        self.detail.get("error").and_then(serde_json::Value::as_str)
    }
}
