//! Herald's server: configuration, the WebSocket endpoint, the signed Pusher HTTP API and health
//! probes, wired into one axum router. Only this crate wires the sibling crates together.

mod admin;
mod api;
mod app;
mod authorize;
mod authorizer;
mod cluster;
pub mod config;
mod dashboard;
mod error;
mod guard;
mod http_metrics;
mod hub_driver;
mod inbox;
mod listener;
mod metrics;
mod notifications;
mod rates;
pub mod routes;
mod signed;
mod state;
pub mod status;
mod subscription_count;
mod tenant;
mod tls;
mod webhooks;
mod ws;

pub use app::{redact_url, router, App, Capacity};
pub use authorizer::Authorizer;
pub use config::{Config, ConfigError, EnvSource, Loaded, Overrides, ProcessEnv};
pub use error::ApiError;
pub use listener::raise_fd_limit;
pub use state::{SharedState, State};
pub use tenant::Tenant;
pub use tls::{CertFiles, TlsError, TlsReload};
pub use ws::conformance_echo_router;

/// Where this machine reaches a listener: a wildcard address (`0.0.0.0`, `::`) is reached on
/// 127.0.0.1; any other address as it is. The banner and the runtime file print these.
pub fn reachable(address: std::net::SocketAddr) -> std::net::SocketAddr {
    if address.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), address.port())
    } else {
        address
    }
}

/// The short block printed at start-up: addresses, apps (keys, never secrets) and the Echo
/// snippet a front end needs.
pub fn banner(
    config: &Config,
    address: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    capacity: Capacity,
) -> String {
    use std::fmt::Write as _;
    // A listener on all addresses is reached at localhost from this machine: print URLs one can open.
    let shown = reachable(address);
    let shown_host =
        if address.ip().is_unspecified() { "localhost".to_owned() } else { address.ip().to_string() };
    let mut text = String::new();
    let _ = writeln!(text, "Herald {} is ready", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(text, "  WebSocket  ws://{shown}/app/{{key}}");
    let tls = !config.server.tls_cert.is_empty();
    if tls {
        // Its own label, so that tools reading the `WebSocket  ws://` line still find it.
        let _ = writeln!(
            text,
            "  TLS        wss://{shown}/app/{{key}}, https://{shown}/apps/{{id}}/events (same port)"
        );
    }
    if shown != address {
        let _ = writeln!(text, "  Listening  {address} (every address of this machine)");
    }
    let _ = writeln!(text, "  HTTP API   http://{shown}/apps/{{id}}/events");
    let _ = writeln!(text, "  Auth       http://{shown}/broadcasting/auth (bearer tokens)");
    let notifications = &config.notifications;
    let driver = if notifications.driver == config::DriverName::Pusher
        && notifications.upstream.is_server_at(address)
    {
        "herald: the pusher upstream is this server".to_owned()
    } else {
        format!("BROADCAST_CONNECTION={}", notifications.driver.as_str())
    };
    let _ = writeln!(text, "  Events     http://{shown}/apps/{{id}}/domain-events ({driver})");
    let _ = writeln!(text, "  Database   {}", redact_url(&config.database.url));
    if config.cluster.enabled() {
        let urls: Vec<String> = config.cluster.urls().iter().map(|url| redact_url(url)).collect();
        let kind = if config.cluster.redis_cluster || urls.len() > 1 { "Redis Cluster" } else { "Redis" };
        let _ = writeln!(text, "  Cluster    {kind} {} (prefix {:?})", urls.join(","), config.cluster.prefix);
    }
    let _ = writeln!(text, "  Health     http://{shown}/up");
    let _ = writeln!(text, "  Admin      http://{admin}/metrics, http://{admin}/dashboard");
    if !config.admin.tls_cert.is_empty() {
        let _ = writeln!(text, "  Admin TLS  https://{admin}/metrics, https://{admin}/dashboard (same port)");
    }
    match capacity.fd_limit {
        Some(limit) => {
            let _ =
                writeln!(text, "  Capacity   {} connections (open-file limit {limit})", capacity.connections);
        }
        None => {
            let _ = writeln!(text, "  Capacity   {} connections", capacity.connections);
        }
    }
    for app in &config.apps {
        let state = if app.enabled { "" } else { " (disabled)" };
        let _ = writeln!(text, "  App        id {:?}, key {:?}{state}", app.id, app.key);
    }
    if let Some(app) = config.apps.first() {
        let _ = writeln!(text, "\nLaravel Echo:");
        let _ = writeln!(text, "  import Pusher from 'pusher-js'");
        let _ = writeln!(
            text,
            "  new Echo({{ broadcaster: 'pusher', Pusher, key: '{}', cluster: 'mt1',",
            app.key
        );
        let _ = writeln!(
            text,
            "    wsHost: '{shown_host}', wsPort: {port}, wssPort: {port},",
            port = address.port()
        );
        // httpHost/httpPort: pusher-js's HTTP fallback (xhr_streaming, xhr_polling) comes to
        // Herald too, not to its default host (hosted Pusher's).
        let _ = writeln!(
            text,
            "    httpHost: '{shown_host}', httpPort: {port}, httpsPort: {port},",
            port = address.port()
        );
        let _ = writeln!(text, "    forceTLS: {tls} }})");
    }
    text
}
