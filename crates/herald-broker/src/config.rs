//! `BrokerConfig`: where Redis is, how this node names itself, and the timing of heartbeats,
//! reaping and commands.

use std::time::Duration;

/// How one Herald node reaches Redis (or Redis Cluster) and takes part in the cluster of nodes.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// `redis://` URLs. One URL is a single Redis; several (or `cluster = true`) are the seed
    /// nodes of a Redis Cluster.
    pub urls: Vec<String>,
    /// Redis Cluster even with a single seed URL.
    pub cluster: bool,
    /// Prefix of every key and pub/sub channel, so several Herald clusters can share one Redis
    /// (default `herald`). Must not contain `{` or `}`.
    pub prefix: String,
    /// Unique per process; the caller generates it. Must not contain `{` or `}`.
    pub node_id: String,
    /// What this node reports as its address in [`crate::NodeInfo`].
    pub address: String,
    /// The apps this node serves: their pub/sub channels are subscribed at connect, so there is
    /// no subscribe gap. Publishing for another app is [`crate::BrokerError::UnknownApp`].
    pub apps: Vec<String>,
    /// How often this node writes its heartbeat and looks for dead nodes (default 5 s).
    pub heartbeat: Duration,
    /// A node silent this long is dead and gets reaped (default 15 s). A dead node's
    /// registrations are gone at most `node_ttl + heartbeat` after its last heartbeat.
    pub node_ttl: Duration,
    /// Sharded pub/sub channels per app in cluster mode (default 16).
    pub shards: u16,
    /// Bound on every Redis command (default 2 s): past it the call is
    /// [`crate::Unavailable::Timeout`].
    pub command_timeout: Duration,
    /// Capacity of the [`crate::Inbound`] channel (default 4096). When it is full, messages from
    /// other nodes are dropped and counted ([`crate::Broker::dropped`]).
    pub inbound_capacity: usize,
}

impl BrokerConfig {
    /// A configuration with the documented defaults for one Redis at `url`.
    pub fn new(url: impl Into<String>, node_id: impl Into<String>, apps: Vec<String>) -> Self {
        Self {
            urls: vec![url.into()],
            cluster: false,
            prefix: "herald".to_owned(),
            node_id: node_id.into(),
            address: String::new(),
            apps,
            heartbeat: Duration::from_secs(5),
            node_ttl: Duration::from_secs(15),
            shards: 16,
            command_timeout: Duration::from_secs(2),
            inbound_capacity: 4096,
        }
    }

    /// Redis Cluster when asked for, or when several seed URLs are given.
    pub(crate) fn is_cluster(&self) -> bool {
        self.cluster || self.urls.len() > 1
    }
}
