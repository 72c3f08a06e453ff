//! The status document: what `GET /admin/api/status` answers, the dashboard's `status` update
//! and the page's first paint, and what `herald status` reads back. One typed shape for the
//! server that writes it and the command that reads it; every field has a default, so a command
//! of one version reads a server of another.

use std::collections::BTreeMap;

use herald_notify::{AuditRecord, LaneView, PerLane};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusDocument {
    pub version: String,
    pub uptime_secs: u64,
    pub draining: bool,
    /// The driver in force: `herald`, `pusher`, `log` or `null`.
    pub driver: String,
    pub listen: Listen,
    pub database: DatabaseStatus,
    pub apps: Vec<AppStatus>,
    /// Pending jobs per lane, by the lane's queue name; empty when the database is down.
    pub queue: BTreeMap<String, LaneView>,
    /// `None` when the database did not answer.
    pub dead_letters: Option<i64>,
    pub delivery: Delivery,
    /// The latest failed attempts and dead letters, newest first (audit entries as the audit API
    /// shows them).
    pub recent_errors: Vec<AuditRecord>,
    pub rates: Rates,
    /// Both listeners' connections against their caps (absent before they listen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<Connections>,
    /// With the cluster on: this node, Redis and the other nodes (absent on one node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
    /// With `?check_deps=true`: the database and, with the `pusher` driver, the upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deps: Option<BTreeMap<String, Dependency>>,
}

impl StatusDocument {
    /// The document as compact JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the status document serializes")
    }
}

/// This node's view of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node: String,
    pub redis: RedisStatus,
    /// Every node in the registry (empty while Redis is unreachable).
    pub nodes: Vec<NodeStatus>,
    /// Messages from other nodes dropped because this node fell behind.
    pub dropped: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisStatus {
    pub up: bool,
    /// Round trip of the last heartbeat, when up.
    pub latency_ms: Option<f64>,
    /// Why it is down.
    pub error: Option<String>,
}

/// One node as the registry reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    pub id: String,
    pub address: String,
    pub connections: u64,
    /// RFC 3339.
    pub last_heartbeat: String,
}

/// The listeners' bound addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Listen {
    pub websocket: String,
    pub admin: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseStatus {
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub up: bool,
}

/// One Pusher app on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppStatus {
    pub id: String,
    pub key: String,
    pub enabled: bool,
    pub connections: u64,
    /// The same connections by what carries them.
    pub transports: TransportCounts,
    pub subscriptions: u64,
    /// Occupied channels by kind (`public`, `private`, `presence`, …).
    pub channels: BTreeMap<String, u64>,
    pub messages_in: u64,
    pub messages_out: u64,
    pub slow_consumer_disconnects: u64,
}

/// Connections by transport: WebSocket, and pusher-js's HTTP fallbacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransportCounts {
    pub ws: u64,
    pub xhr_streaming: u64,
    pub xhr_polling: u64,
}

impl TransportCounts {
    /// `(name, count)` in a fixed order, as the metrics and `herald status` show them.
    pub fn named(&self) -> [(&'static str, u64); 3] {
        [("ws", self.ws), ("xhr_streaming", self.xhr_streaming), ("xhr_polling", self.xhr_polling)]
    }
}

/// The notification layer's counters since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Delivery {
    pub accepted_events: u64,
    pub ignored_events: u64,
    pub delivered: PerLane<u64>,
    pub retried: PerLane<u64>,
    pub dead_lettered: PerLane<u64>,
    pub suppressed: u64,
}

/// Per-second rates over the last minute; zeros and `window_secs` 0 before two samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rates {
    pub window_secs: f64,
    pub accepted_events: f64,
    pub delivered: f64,
    pub failed_attempts: f64,
    pub messages_out: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Connections {
    pub main: ListenerStatus,
    pub admin: ListenerStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListenerStatus {
    pub open: u64,
    pub capacity: u64,
    pub refused: Refused,
}

/// Connections refused since start: the listener was full, or the client's address was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Refused {
    pub full: u64,
    pub per_ip: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dependency {
    pub ok: bool,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_reads_back_as_written_and_a_partial_one_reads_with_defaults() {
        let mut document =
            StatusDocument { version: "1.2.3".into(), driver: "herald".into(), ..Default::default() };
        document.delivery.delivered = PerLane { critical: 2, normal: 5, webhooks: 1 };
        document.queue.insert("broadcasts".into(), LaneView { pending: 3, oldest_age_secs: Some(1.5) });
        let json = serde_json::to_value(&document).expect("serializes");
        assert_eq!(json["delivery"]["delivered"]["critical-broadcasts"], 2);
        assert!(json.get("deps").is_none() && json.get("connections").is_none());
        let back: StatusDocument = serde_json::from_value(json).expect("reads");
        assert_eq!(back, document);
        let partial: StatusDocument =
            serde_json::from_str(r#"{"version": "0.9", "future_field": 1}"#).expect("reads");
        assert_eq!(partial.version, "0.9");
        assert_eq!(partial.dead_letters, None);
    }
}
