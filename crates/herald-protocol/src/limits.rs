//! The protocol's limits, with Pusher's defaults; each app may override them.

use serde::{Deserialize, Serialize};

/// Limits enforced on one app's traffic. Defaults are Pusher's (see `shared/PROTOCOL.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest event `data`, in UTF-8 bytes, over HTTP and from clients.
    pub max_event_data_bytes: usize,
    /// Channels one trigger may name.
    pub max_channels_per_trigger: usize,
    /// Events in one batch trigger.
    pub max_batch_events: usize,
    /// Longest channel name.
    pub max_channel_name_len: usize,
    /// Longest event name.
    pub max_event_name_len: usize,
    /// Client events one connection may send per second.
    pub client_events_per_second: u32,
    /// Messages of any kind (WebSocket pings included) one connection may send per second;
    /// over it the connection is closed with 4100. 0 means no limit.
    pub max_messages_per_second: u32,
    /// Users in one presence channel.
    pub max_presence_members: usize,
    /// Largest presence `user_info`, in bytes of JSON.
    pub max_presence_user_info_bytes: usize,
    /// Longest presence `user_id`.
    pub max_presence_user_id_len: usize,
    /// Channels one connection may be subscribed to at once.
    pub max_channels_per_connection: usize,
    /// Largest WebSocket message a client may send; larger ones close the socket with 1009.
    pub max_ws_message_bytes: usize,
    /// Largest HTTP request body, capped while it is read.
    pub max_http_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_data_bytes: 10 * 1024,
            max_channels_per_trigger: 100,
            max_batch_events: 10,
            max_channel_name_len: 200,
            max_event_name_len: 200,
            client_events_per_second: 10,
            max_messages_per_second: 200,
            max_presence_members: 100,
            max_presence_user_info_bytes: 1024,
            max_presence_user_id_len: 128,
            max_channels_per_connection: 100,
            max_ws_message_bytes: 64 * 1024,
            max_http_body_bytes: 256 * 1024,
        }
    }
}
