//! The `[notifications]` section: where broadcasts go (`BROADCAST_CONNECTION`) and how the
//! durable queue behaves.

use serde::{Deserialize, Serialize};

/// `BROADCAST_CONNECTION`: where the notification layer delivers broadcasts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverName {
    /// This server's own channels.
    #[default]
    Herald,
    /// An upstream Pusher-compatible HTTP API (hosted Pusher, or any host).
    Pusher,
    /// JSON lines in `log_file`, no sockets: the development mode.
    Log,
    /// Nowhere.
    Null,
}

impl DriverName {
    /// The `BROADCAST_CONNECTION` value.
    pub fn as_str(self) -> &'static str {
        match self {
            DriverName::Herald => "herald",
            DriverName::Pusher => "pusher",
            DriverName::Log => "log",
            DriverName::Null => "null",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    pub driver: DriverName,
    /// The app whose channels the `herald` driver publishes to (and whose credentials sign for
    /// the upstream by default); empty = the first app.
    pub app_id: String,
    /// Queue workers on this node.
    pub workers: usize,
    /// Attempts before a broadcast becomes a dead letter.
    pub max_attempts: i64,
    /// First retry delay; doubles each attempt up to `backoff_cap_ms` (±20 % jitter).
    pub backoff_base_ms: i64,
    pub backoff_cap_ms: i64,
    /// How long a claimed job stays invisible to other workers (PostgreSQL, several nodes).
    pub lease_secs: u64,
    /// How often idle workers look for jobs other nodes queued.
    pub poll_interval_ms: u64,
    /// Donations below this amount (when the event has no `threshold`) are not broadcast.
    pub large_donation_threshold: f64,
    /// File the `log` driver appends JSON lines to.
    pub log_file: String,
    /// After a start that finds a backlog (a crash or a restart), seconds the `herald` driver
    /// waits for clients to reconnect before delivering it; it starts sooner once clients are
    /// back and no new connection came for a second. 0: deliver at once. The default covers
    /// pusher-js: it retries one second after a drop and, when the server is not back yet, again
    /// only after its 15 s connection timeout.
    pub reconnect_grace_secs: u64,
    pub upstream: UpstreamConfig,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            driver: DriverName::Herald,
            app_id: String::new(),
            workers: 4,
            max_attempts: 8,
            backoff_base_ms: 1_000,
            backoff_cap_ms: 300_000,
            lease_secs: 30,
            poll_interval_ms: 500,
            large_donation_threshold: 1000.0,
            log_file: "herald-broadcasts.log".into(),
            reconnect_grace_secs: 20,
            upstream: UpstreamConfig::default(),
        }
    }
}

/// The upstream of the `pusher` driver (`PUSHER_HOST`, `PUSHER_PORT`, `PUSHER_SCHEME`,
/// `PUSHER_APP_CLUSTER`); credentials default to the notification app's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Empty = `api-{cluster}.pusher.com`.
    pub host: String,
    /// 0 = 443 for https, 80 for http.
    pub port: u16,
    pub scheme: String,
    pub cluster: String,
    pub app_id: String,
    pub key: String,
    pub secret: String,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            host: String::new(),
            port: 0,
            scheme: "https".into(),
            cluster: "mt1".into(),
            app_id: String::new(),
            key: String::new(),
            secret: String::new(),
        }
    }
}

impl UpstreamConfig {
    /// `(scheme, host, port)` with the defaults applied.
    pub fn address(&self) -> (String, String, u16) {
        let host =
            if self.host.is_empty() { format!("api-{}.pusher.com", self.cluster) } else { self.host.clone() };
        let port = match (self.port, self.scheme.as_str()) {
            (0, "http") => 80,
            (0, _) => 443,
            (port, _) => port,
        };
        (self.scheme.clone(), host, port)
    }

    /// Whether this upstream is the server listening on `listen` itself (the Laravel `.env`
    /// copied into Herald's environment points `PUSHER_HOST`/`PUSHER_PORT` at Herald): a loopback,
    /// unspecified or the listener's own address, on the listener's port.
    pub fn is_server_at(&self, listen: std::net::SocketAddr) -> bool {
        let (_, host, port) = self.address();
        if port != listen.port() {
            return false;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip.is_unspecified() || ip == listen.ip(),
            Err(_) => host.eq_ignore_ascii_case("localhost"),
        }
    }
}

pub(crate) fn validate(config: &NotificationsConfig, app_ids: &[&str], problems: &mut Vec<String>) {
    if !config.app_id.is_empty() && !app_ids.contains(&config.app_id.as_str()) {
        problems.push(format!("notifications.app_id: {:?} is not one of the configured apps", config.app_id));
    }
    if config.max_attempts < 1 {
        problems.push("notifications.max_attempts: must be at least 1".into());
    }
    if config.backoff_base_ms < 1 || config.backoff_cap_ms < config.backoff_base_ms {
        problems.push("notifications.backoff_base_ms/backoff_cap_ms: need 1 ≤ base ≤ cap".into());
    }
    if config.lease_secs == 0 {
        problems.push("notifications.lease_secs: must be at least 1".into());
    }
    if config.workers > 256 {
        problems.push("notifications.workers: at most 256".into());
    }
    if !config.large_donation_threshold.is_finite() || config.large_donation_threshold < 0.0 {
        problems.push("notifications.large_donation_threshold: must be a number ≥ 0".into());
    } else if let Err(problem) = herald_notify::Amount::parse(&config.large_donation_threshold.to_string()) {
        problems.push(format!("notifications.large_donation_threshold: {problem}"));
    }
    if config.driver == DriverName::Log && config.log_file.is_empty() {
        problems.push("notifications.log_file: required with the log driver".into());
    }
    if !matches!(config.upstream.scheme.as_str(), "http" | "https") {
        problems.push(format!(
            "notifications.upstream.scheme: {:?} must be http or https (PUSHER_SCHEME)",
            config.upstream.scheme
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_on_this_servers_port_and_a_local_address_is_the_server_itself() {
        let listen: std::net::SocketAddr = "0.0.0.0:6001".parse().expect("address");
        let upstream = |host: &str, port: u16| UpstreamConfig {
            host: host.into(),
            port,
            scheme: "http".into(),
            ..UpstreamConfig::default()
        };
        for host in ["127.0.0.1", "localhost", "LOCALHOST", "[::1]", "0.0.0.0"] {
            assert!(upstream(host, 6001).is_server_at(listen), "{host}");
        }
        assert!(!upstream("127.0.0.1", 6002).is_server_at(listen), "another port");
        assert!(!upstream("pusher.example", 6001).is_server_at(listen), "another host");
        assert!(!upstream("", 0).is_server_at(listen), "hosted Pusher");
    }
}
