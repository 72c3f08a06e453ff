//! `BrokerError`: what a broker call can fail with. `Unavailable` is Redis being out of reach
//! (the HTTP API answers 503); the other variants are bugs or bad input.

use std::time::{Duration, SystemTime};

/// The error of every fallible [`crate::Broker`] call.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Redis cannot take the call now; it is retried by the caller, or after [`crate::Inbound::Resync`].
    #[error("redis is unavailable")]
    Unavailable(#[from] Unavailable),
    /// Redis answered the command with an error (a bug, or a key of the wrong type).
    #[error("redis rejected {command}")]
    Command {
        /// The command or script that failed.
        command: &'static str,
        /// Redis's answer.
        #[source]
        source: redis::RedisError,
    },
    /// The configuration names no Redis URL.
    #[error("no redis url is configured")]
    NoUrl,
    /// A configured URL is not a Redis URL.
    #[error("invalid redis url {url:?}")]
    Url {
        /// The URL as configured.
        url: String,
        /// Why it was refused.
        #[source]
        source: redis::RedisError,
    },
    /// A name used inside keys holds a character that would break Redis Cluster hash tags.
    #[error("{what} {value:?} must not contain '{{' or '}}'")]
    InvalidName {
        /// Which name: prefix, node id, app or channel.
        what: &'static str,
        /// The name as given.
        value: String,
    },
    /// `publish` for an app that is not in [`crate::BrokerConfig::apps`]: no node listens to it.
    #[error("app {app:?} is not served by this broker")]
    UnknownApp {
        /// The app id as given.
        app: String,
    },
    /// A message could not be encoded.
    #[error("cannot encode a broker message")]
    Encode(#[source] serde_json::Error),
    /// Redis Cluster answered `CLUSTER SLOTS` with something this crate cannot read.
    #[error("unexpected cluster slots reply")]
    ClusterSlots,
    /// No cluster node owns the slot of a shard channel (the cluster is not fully covered).
    #[error("no redis cluster node owns slot {slot}")]
    SlotUncovered {
        /// The slot without an owner.
        slot: u16,
    },
}

/// Why Redis is out of reach.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The broker knows Redis is down and fails fast until it reconnects.
    #[error("redis has been down since {since:?}")]
    Down {
        /// When the broker noticed.
        since: SystemTime,
    },
    /// The command did not complete within [`crate::BrokerConfig::command_timeout`].
    #[error("{command} timed out after {after:?}")]
    Timeout {
        /// The command or script.
        command: &'static str,
        /// The bound that elapsed.
        after: Duration,
    },
    /// The connection failed or was lost while the command ran.
    #[error("{command} lost its connection")]
    Connection {
        /// The command or script.
        command: &'static str,
        /// The connection error.
        #[source]
        source: redis::RedisError,
    },
}

impl BrokerError {
    /// True when the call failed because Redis is out of reach (answer 503, retry later).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Sorts a Redis error into connection trouble (`Unavailable`) or a rejected command.
    pub(crate) fn from_redis(command: &'static str, source: redis::RedisError) -> Self {
        if is_connection_error(&source) {
            Self::Unavailable(Unavailable::Connection { command, source })
        } else {
            Self::Command { command, source }
        }
    }
}

/// Errors that mean the connection, not the command, is at fault.
pub(crate) fn is_connection_error(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || error.is_cluster_error()
}
