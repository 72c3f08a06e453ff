//! `[cluster]`: several Herald nodes sharing Redis (fan-out, presence, counts, limits) and one
//! PostgreSQL database. Off unless `redis_url` (`REDIS_URL`) is set.

use serde::{Deserialize, Serialize};

/// How this node joins a cluster of nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://host:6379` for one Redis; several comma-separated URLs are the seed nodes of a
    /// Redis Cluster (`REDIS_URL`). Empty: one node, everything in process, no Redis.
    pub redis_url: String,
    /// Treat a single seed URL as a Redis Cluster (sharded pub/sub).
    pub redis_cluster: bool,
    /// Prefix of every Redis key and channel, so several Herald clusters can share one Redis.
    pub prefix: String,
    /// Seconds between a node's heartbeats (and its look for dead nodes).
    pub heartbeat_secs: u64,
    /// Seconds of silence after which a node is dead: its sockets' presence members and
    /// subscription counts are removed by another node within `node_ttl_secs + heartbeat_secs`.
    pub node_ttl_secs: u64,
    /// Sharded pub/sub channels per app on a Redis Cluster.
    pub shards: u16,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: String::new(),
            redis_cluster: false,
            prefix: "herald".into(),
            heartbeat_secs: 5,
            node_ttl_secs: 15,
            shards: 16,
        }
    }
}

impl ClusterConfig {
    /// Whether the cluster is on.
    pub fn enabled(&self) -> bool {
        !self.redis_url.trim().is_empty()
    }

    /// The Redis URLs, in the order given.
    pub fn urls(&self) -> Vec<String> {
        self.redis_url.split(',').map(str::trim).filter(|url| !url.is_empty()).map(str::to_owned).collect()
    }
}

pub(crate) fn validate(cluster: &ClusterConfig, database_url: &str, problems: &mut Vec<String>) {
    if !cluster.enabled() {
        return;
    }
    for url in cluster.urls() {
        if !url.starts_with("redis://") && !url.starts_with("rediss://") {
            problems.push(format!("cluster.redis_url: {:?} is not a redis:// URL", crate::redact_url(&url)));
        }
    }
    if database_url.starts_with("sqlite:") {
        problems.push(
            "cluster.redis_url: several nodes need one shared database for the inbox and the queue, \
             but database.url is SQLite (a file of this node's own); set DATABASE_URL=postgres://…"
                .into(),
        );
    }
    if cluster.prefix.is_empty() || cluster.prefix.contains(['{', '}', ' ']) {
        problems.push(format!(
            "cluster.prefix: {:?} must be non-empty, without braces or spaces",
            cluster.prefix
        ));
    }
    if cluster.heartbeat_secs == 0 {
        problems.push("cluster.heartbeat_secs: must be at least 1".into());
    }
    if cluster.node_ttl_secs < cluster.heartbeat_secs.saturating_mul(2) {
        problems.push(format!(
            "cluster.node_ttl_secs: must be at least twice cluster.heartbeat_secs ({}), or a live node could be taken for dead",
            cluster.heartbeat_secs
        ));
    }
    if !(1..=1024).contains(&cluster.shards) {
        problems.push("cluster.shards: must be 1 to 1024".into());
    }
}
