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
