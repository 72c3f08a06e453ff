//! What nodes tell each other: `Message`, carried in an `Envelope` that names its origin node and
//! app, as compact JSON on the app's pub/sub channel; and `Inbound`, what the server receives.

use serde::{Deserialize, Serialize};

/// One publication from one node to the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Message {
    /// A Pusher event for the subscribers of `channel`.
    Event {
        /// The Pusher channel.
        channel: String,
        /// The event name.
        event: String,
        /// The event's data, as the client will see it.
        data: String,
        /// The socket id to skip (`socket_id` of the HTTP API); it may be on any node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<String>,
        /// The user the event came from (client events on presence channels).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    /// A user's first socket anywhere joined a presence channel.
    MemberAdded {
        /// The presence channel.
        channel: String,
        /// The user.
        user_id: String,
        /// The user's info, JSON text.
        user_info: String,
    },
    /// A user's last socket anywhere left a presence channel.
    MemberRemoved {
        /// The presence channel.
        channel: String,
        /// The user.
        user_id: String,
    },
    /// Close every socket signed in as this user (`POST /users/{id}/terminate_connections`).
    TerminateUser {
        /// The user.
        user_id: String,
    },
    /// A channel's cluster-wide subscription count, decided (and paced) by the node whose
    /// subscription changed it: every node sends `pusher_internal:subscription_count` to its
    /// own subscribers of the channel.
    SubscriptionCount {
        /// The channel.
        channel: String,
        /// Its subscriptions across the cluster.
        subscription_count: u64,
    },
    /// A user's first signed-in connection anywhere: watchers hear `online`.
    UserOnline {
        /// The user.
        user_id: String,
    },
    /// A user's last signed-in connection anywhere closed: watchers hear `offline`.
    UserOffline {
        /// The user.
        user_id: String,
    },
    /// A cache channel's last event, which every node keeps.
    CacheEvent {
        /// The cache channel.
        channel: String,
        /// The event name.
        event: String,
        /// The event's data.
        data: String,
    },
}

impl Message {
    /// What picks the shard channel in cluster mode: the Pusher channel, or the user.
    pub(crate) fn routing_key(&self) -> &str {
        match self {
            Self::Event { channel, .. }
            | Self::MemberAdded { channel, .. }
            | Self::MemberRemoved { channel, .. }
            | Self::SubscriptionCount { channel, .. }
            | Self::CacheEvent { channel, .. } => channel,
            Self::TerminateUser { user_id }
            | Self::UserOnline { user_id }
            | Self::UserOffline { user_id } => user_id,
        }
    }
}

/// What the server receives from the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A publication of another node (or a `MemberRemoved` of a node this one reaped).
    Message {
        /// The app it belongs to.
        app: String,
        /// The publication.
        message: Message,
    },
    /// Redis came back, lost its data, or reaped this node while it was cut off: the server must
    /// call [`crate::Broker::restore`] with its local state.
    Resync,
    /// This node reaped a dead node's socket from `channel`: what that changed cluster-wide
    /// (`user_id`: the presence user it belonged to). Given to this node's server only, which
    /// alone speaks for the change (webhooks).
    Reaped { app: String, channel: String, user_id: Option<String>, left: crate::Left },
}

/// A message on the wire: its origin node (receivers drop their own), its app, and itself.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope<'a> {
    #[serde(rename = "o", borrow)]
    pub(crate) origin: std::borrow::Cow<'a, str>,
    #[serde(rename = "a", borrow)]
    pub(crate) app: std::borrow::Cow<'a, str>,
    #[serde(rename = "m")]
    pub(crate) message: std::borrow::Cow<'a, Message>,
    /// When it was published, milliseconds since the Unix epoch (for the lag the receivers see).
    #[serde(rename = "s", default)]
    pub(crate) sent_ms: u64,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

impl Envelope<'_> {
    /// Compact JSON.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Reads an envelope from a pub/sub payload.
    pub(crate) fn decode(payload: &[u8]) -> Result<Envelope<'_>, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn envelope_round_trips_and_is_compact() {
        let envelope = Envelope {
            origin: Cow::Borrowed("node-a"),
            app: Cow::Borrowed("app"),
            message: Cow::Owned(Message::Event {
                channel: "presence-room".into(),
                event: "client-typing".into(),
                data: "{\"x\":1}".into(),
                except: Some("1.2".into()),
                user_id: None,
            }),
            sent_ms: 1,
        };
        let bytes = envelope.encode().unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"o":"node-a","a":"app","m":{"t":"event","channel":"presence-room","event":"client-typing","data":"{\"x\":1}","except":"1.2"},"s":1}"#
        );
        let back = Envelope::decode(&bytes).unwrap();
        assert_eq!(back.origin, "node-a");
        assert_eq!(back.message, envelope.message);
    }
}
