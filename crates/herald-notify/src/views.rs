//! What the notification layer's records look like to their readers: the dashboard, the admin
//! API and the `herald` command render these same serializable shapes, so no reader rebuilds
//! them field by field (and none shows a logical channel name where another shows the wire one).

use herald_store::{AuditKind, ChannelEvent, DeadLetter, InboxNotification, Preference};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::AuditDetail;
use crate::catalog::CatalogChannel;
use crate::fields::rfc3339;

/// One notification in a user's inbox, as the users' API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxItem {
    pub id: String,
    #[serde(rename = "type")]
    pub notification_type: String,
    pub title: String,
    pub message: String,
    pub priority: String,
    /// The notification's data object (`null` when the stored text is not JSON).
    pub data: Value,
    pub action_url: Option<String>,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
    pub read_at: Option<String>,
}

impl InboxItem {
    pub(crate) fn new(item: &InboxNotification) -> InboxItem {
        InboxItem {
            id: item.id.clone(),
            notification_type: item.notification_type.clone(),
            title: item.title.clone(),
            message: item.message.clone(),
            priority: item.priority.clone(),
            data: serde_json::from_str(&item.data).unwrap_or(Value::Null),
            action_url: item.action_url.clone(),
            created_at: rfc3339(item.created_at),
            read_at: item.read_at.map(rfc3339),
        }
    }
}

/// A page of an inbox: `next_cursor` continues below the last item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxPage {
    pub data: Vec<InboxItem>,
    pub next_cursor: Option<String>,
}

/// One notification type's switches, as the users' API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferenceView {
    #[serde(rename = "type")]
    pub notification_type: String,
    pub realtime: bool,
    pub in_app: bool,
}

/// A user's stored preferences: `{"preferences": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    pub preferences: Vec<PreferenceView>,
}

impl Preferences {
    pub(crate) fn new(stored: &[Preference]) -> Preferences {
        Preferences {
            preferences: stored
                .iter()
                .map(|p| PreferenceView {
                    notification_type: p.notification_type.clone(),
                    realtime: p.realtime,
                    in_app: p.in_app,
                })
                .collect(),
        }
    }
}

/// One event a catalog channel was sent, for a client catching up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub seq: i64,
    pub event: String,
    pub data: Value,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
}

impl HistoryEvent {
    pub(crate) fn new(event: &ChannelEvent) -> HistoryEvent {
        HistoryEvent {
            seq: event.seq,
            event: event.event_name.clone(),
            data: serde_json::from_str(&event.payload).unwrap_or(Value::Null),
            created_at: rfc3339(event.created_at),
        }
    }
}

/// One lane's backlog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LaneView {
    pub pending: i64,
    /// Age of the oldest pending job, in seconds.
    pub oldest_age_secs: Option<f64>,
}

/// One audit entry as the notification layer reads it back: its kind and its typed detail.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub event_id: String,
    /// The domain event type.
    pub event_type: String,
    pub broadcast_id: Option<String>,
    pub kind: AuditKind,
    /// The kind's detail; `None` when the stored text is not this kind's shape (a row written by
    /// another version, or by hand: `raw_detail` keeps it).
    pub detail: Option<AuditDetail>,
    pub raw_detail: String,
}

impl AuditEntry {
    pub(crate) fn new(entry: herald_store::AuditEntry) -> AuditEntry {
        AuditEntry {
            detail: AuditDetail::read(entry.kind, &entry.detail),
            seq: entry.seq,
            at_ms: entry.at,
            event_id: entry.event_id,
            event_type: entry.event_type,
            broadcast_id: entry.broadcast_id,
            kind: entry.kind,
            raw_detail: entry.detail,
        }
    }

    /// The entry as every reader shows it.
    pub fn record(&self) -> AuditRecord {
        AuditRecord {
            seq: self.seq,
            at: rfc3339(self.at_ms),
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            broadcast_id: self.broadcast_id.clone(),
            status: self.kind.as_str().to_owned(),
            detail: match &self.detail {
                Some(detail) => serde_json::to_value(detail).unwrap_or(Value::Null),
                None => serde_json::from_str(&self.raw_detail).unwrap_or(Value::Null),
            },
        }
    }
}

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
    /// The stored dead letter with its channels on the wire (`[channels] admin_visibility`); a
    /// webhook's "channel" is its receiver's URL, shown as it is.
    pub fn new(letter: &DeadLetter, admin_channels_public: bool) -> DeadLetterView {
        let webhook = letter.event_name == crate::WEBHOOK_JOB;
        DeadLetterView {
            broadcast_id: letter.broadcast_id.clone(),
            event_id: letter.event_id.clone(),
            event: letter.event_name.clone(),
            channels: letter
                .channels
                .iter()
                .map(|channel| match webhook {
                    true => channel.clone(),
                    false => CatalogChannel::new(channel.as_str()).wire(admin_channels_public),
                })
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
        let record = AuditEntry::new(entry.clone()).record();
        assert_eq!(record.status, "attempt_failed");
        assert_eq!(record.error(), Some("upstream answered 503"));
        let json = serde_json::to_value(&record).expect("json");
        assert_eq!(json["type"], "payment.failed");
        assert_eq!(json["at"], "1970-01-01T00:00:00.000Z");
        entry.detail = "not json".into();
        assert_eq!(AuditEntry::new(entry).record().detail, serde_json::Value::Null);
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
    /// The error of a failed attempt or a dead letter, if the detail has one.
    pub fn error(&self) -> Option<&str> {
        self.detail.get("error").and_then(serde_json::Value::as_str)
    }
}
