//! What an audit entry says beyond its kind: one typed detail per `AuditKind`, written by the
//! notification layer (and the queue's outcomes) and read back by every reader — the dashboard's
//! feed, the audit API, `herald audit` — instead of each picking fields out of JSON text.

use herald_store::AuditKind;
use serde::{Deserialize, Serialize};

/// The detail of one audit entry; its JSON is what the store keeps and the audit API shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum AuditDetail {
    /// `received`: the domain event's type.
    Received {
        #[serde(rename = "type")]
        event_type: String,
    },
    /// `ignored`: why nothing is sent.
    Ignored { reason: String },
    /// `suppressed`: a user's preference kept the inbox row (`what: inbox`) or the personal
    /// channel (`what: realtime`, with the channel) from them.
    Suppressed {
        what: String,
        user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        reason: String,
    },
    /// `routed`: the broadcast event, its logical channels and its lane.
    Routed { event: String, channels: Vec<String>, lane: String },
    /// `delivered`: which attempt, through which driver, how long it took and waited.
    Delivered { attempt: i64, driver: String, lane: String, took_ms: i64, latency_ms: i64 },
    /// `attempt_failed`: the error and when the next attempt is due (RFC 3339).
    AttemptFailed { attempt: i64, error: String, took_ms: i64, next_attempt_at: String },
    /// `dead_lettered`: attempts made and the last error.
    DeadLettered { attempts: i64, error: String, took_ms: i64 },
    /// `duplicate`, `replayed`: nothing more to say.
    Empty {},
}

impl AuditDetail {
    /// The detail stored for an entry of `kind`; `None` when the text is not that kind's shape
    /// (a row written by another version, or by hand).
    pub fn read(kind: AuditKind, text: &str) -> Option<AuditDetail> {
        let detail: AuditDetail = serde_json::from_str(text).ok()?;
        detail.kind_matches(kind).then_some(detail)
    }

    fn kind_matches(&self, kind: AuditKind) -> bool {
        matches!(
            (self, kind),
            (AuditDetail::Received { .. }, AuditKind::Received)
                | (AuditDetail::Ignored { .. }, AuditKind::Ignored)
                | (AuditDetail::Suppressed { .. }, AuditKind::Suppressed)
                | (AuditDetail::Routed { .. }, AuditKind::Routed)
                | (AuditDetail::Delivered { .. }, AuditKind::Delivered)
                | (AuditDetail::AttemptFailed { .. }, AuditKind::AttemptFailed)
                | (AuditDetail::DeadLettered { .. }, AuditKind::DeadLettered)
                | (AuditDetail::Empty {}, AuditKind::Duplicate | AuditKind::Replayed)
        )
    }

    /// The JSON text the store keeps.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an audit detail serializes")
    }

    /// The error of a failed attempt or a dead letter.
    pub fn error(&self) -> Option<&str> {
        match self {
            AuditDetail::AttemptFailed { error, .. } | AuditDetail::DeadLettered { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The attempt a delivery outcome records (the attempts made, for a dead letter).
    pub fn attempt(&self) -> Option<i64> {
        match self {
            AuditDetail::Delivered { attempt, .. } | AuditDetail::AttemptFailed { attempt, .. } => {
                Some(*attempt)
            }
            AuditDetail::DeadLettered { attempts, .. } => Some(*attempts),
            _ => None,
        }
    }

    /// Why nothing (or less) was sent.
    pub fn reason(&self) -> Option<&str> {
        match self {
            AuditDetail::Ignored { reason } | AuditDetail::Suppressed { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_detail_reads_back_under_its_own_kind_only() {
        let cases = [
            (AuditKind::Received, AuditDetail::Received { event_type: "security.alert".into() }),
            (AuditKind::Ignored, AuditDetail::Ignored { reason: "below the threshold".into() }),
            (
                AuditKind::Suppressed,
                AuditDetail::Suppressed {
                    what: "realtime".into(),
                    user_id: "42".into(),
                    channel: Some("user.notifications.42".into()),
                    reason: "off".into(),
                },
            ),
            (
                AuditKind::Routed,
                AuditDetail::Routed {
                    event: "x".into(),
                    channels: vec!["a".into()],
                    lane: "broadcasts".into(),
                },
            ),
            (
                AuditKind::Delivered,
                AuditDetail::Delivered {
                    attempt: 1,
                    driver: "herald".into(),
                    lane: "broadcasts".into(),
                    took_ms: 2,
                    latency_ms: 3,
                },
            ),
            (
                AuditKind::AttemptFailed,
                AuditDetail::AttemptFailed {
                    attempt: 1,
                    error: "503".into(),
                    took_ms: 2,
                    next_attempt_at: "2026-01-01T00:00:00.000Z".into(),
                },
            ),
            (
                AuditKind::DeadLettered,
                AuditDetail::DeadLettered { attempts: 5, error: "400".into(), took_ms: 1 },
            ),
            (AuditKind::Duplicate, AuditDetail::Empty {}),
            (AuditKind::Replayed, AuditDetail::Empty {}),
        ];
        for (kind, detail) in &cases {
            assert_eq!(AuditDetail::read(*kind, &detail.to_json()).as_ref(), Some(detail), "{kind}");
            for (other, _) in &cases {
                if other != kind && !(detail == &AuditDetail::Empty {}) {
                    assert_eq!(AuditDetail::read(*other, &detail.to_json()), None, "{kind} read as {other}");
                }
            }
        }
        assert_eq!(AuditDetail::read(AuditKind::Received, "not json"), None);
    }

    #[test]
    fn the_stored_json_keeps_its_documented_field_names() {
        let routed = AuditDetail::Routed { event: "e".into(), channels: vec![], lane: "broadcasts".into() };
        assert_eq!(routed.to_json(), r#"{"event":"e","channels":[],"lane":"broadcasts"}"#);
        assert_eq!(AuditDetail::Received { event_type: "t".into() }.to_json(), r#"{"type":"t"}"#);
        assert_eq!(AuditDetail::Empty {}.to_json(), "{}");
    }
}
