//! `App`: binds the listener, wires the routes, runs until the shutdown future resolves, then
//! drains (sessions close with 4200, `/up` answers 503) within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::ApiError;
use crate::listener::{Gate, ListenerLimits};
use crate::state::{SharedState, State as ServerState};
use crate::tenant::Fanout;
use crate::tls::{CertFiles, Tls, TlsReload};
use crate::ws;

/// Largest body the admin listener reads (a login form, a test broadcast).
const ADMIN_BODY_LIMIT: usize = 64 * 1024;

/// A bound, not yet running server.
pub struct App {
    state: SharedState,
    listener: TcpListener,
    admin_listener: TcpListener,
    address: SocketAddr,
    admin_address: SocketAddr,
    gate: Arc<Gate>,
    admin_gate: Arc<Gate>,
    capacity: Capacity,
    /// The certificates of the main and admin listeners, when they serve TLS.
    tls: Option<Tls>,
    admin_tls: Option<Tls>,
    /// What other nodes send, when this node is one of a cluster.
    inbound: Option<tokio::sync::mpsc::Receiver<herald_broker::Inbound>>,
}

/// How many connections the main listener takes, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Connections (HTTP and WebSocket) open at once on the main listener.
    pub connections: usize,
    /// The process's open-file limit it was derived from, where it could be read.
    pub fd_limit: Option<u64>,
}

impl Capacity {
    /// `server.max_connections`, bounded by what the file-descriptor limit leaves after the
    /// reserve and the admin listener's share.
    fn of(config: &Config, fd_limit: Option<u64>) -> Capacity {
        let kept = config.server.fd_reserve.saturating_add(config.admin.max_connections);
        let budget = fd_limit.map(|limit| usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(kept));
        let connections = match (config.server.max_connections, budget) {
            (0, Some(budget)) => budget,
            (0, None) => usize::MAX,
            (configured, Some(budget)) if configured > budget => {
                warn!(
                    configured,
                    budget,
                    "server.max_connections is above what the open-file limit allows; using the limit"
                );
                budget
            }
            (configured, _) => configured,
        };
        Capacity { connections: connections.max(1), fd_limit }
    }
}

impl App {
    /// Binds `server.host:server.port` (port 0 picks a free port, as tests do).
    pub async fn build(config: &Config) -> anyhow::Result<App> {
        use anyhow::Context as _;
        let address = format!("{}:{}", config.server.host, config.server.port);
        let listener =
            TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))?;
        let address = listener.local_addr().context("listener has no local address")?;
        let admin_address = format!("{}:{}", config.admin.host, config.admin.port);
        let admin_listener = TcpListener::bind(&admin_address)
            .await
            .with_context(|| format!("cannot listen on {admin_address} (admin.port; 0 picks a free port)"))?;
        let admin_address = admin_listener.local_addr().context("admin listener has no local address")?;
        let tls = listener_tls("server", &config.server.tls_cert, &config.server.tls_key)?;
        let admin_tls = listener_tls("admin", &config.admin.tls_cert, &config.admin.tls_key)?;
        let records = herald_notify::Records::open(&config.database.url)
            .await
            .with_context(|| format!("cannot open the database {}", redact_url(&config.database.url)))?;
        let node = u64::from(fastrand::u32(1..1_000_000_000));
        let (fanout, inbound) = match crate::cluster::connect(config, node, address).await? {
            Some((broker, inbound)) => (Fanout::Redis(broker), Some(inbound)),
            None => (Fanout::Local, None),
        };
        let state = ServerState::new(config, records, (node, fanout), (address, admin_address))?;
        let capacity = Capacity::of(config, crate::listener::fd_limit());
        let header_timeout = Duration::from_secs(config.server.header_timeout_secs);
        let drain_grace = Duration::from_secs(config.server.shutdown_grace_secs);
        let gate = Gate::new(ListenerLimits {
            max_connections: capacity.connections,
            max_per_ip: config.server.max_connections_per_ip,
            exempt_ips: config.server.ip_limit_exempt.clone(),
            header_timeout,
            drain_grace,
        });
        let admin_gate = Gate::new(ListenerLimits {
            max_connections: config.admin.max_connections,
            max_per_ip: 0,
            exempt_ips: Vec::new(),
            header_timeout,
            drain_grace,
        });
        let _ = state.gates.set([gate.clone(), admin_gate.clone()]);
        Ok(App {
            state: Arc::new(state),
            listener,
            admin_listener,
            address,
            admin_address,
            gate,
            admin_gate,
            capacity,
            tls,
            admin_tls,
            inbound,
        })
    }

    /// Rereads the listeners' certificates (SIGHUP in `herald serve`): usable while the server
    /// runs, from any task.
    pub fn tls_reload(&self) -> TlsReload {
        TlsReload::new(self.tls.iter().chain(&self.admin_tls).cloned())
    }

    /// Whether the main listener serves TLS (beside plain connections) itself.
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The connections the main listener takes at once.
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// The address of the admin listener (metrics, admin API, dashboard).
    pub fn admin_address(&self) -> SocketAddr {
        self.admin_address
    }

    /// The address the WebSocket + HTTP API listener is bound to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn state(&self) -> SharedState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then closes every socket with 4200 and waits for the
    /// sessions to end, at most `server.shutdown_grace_secs`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let state = self.state.clone();
        let router = router(state.clone());
        match state.notify.notifier.recover().await {
            Ok(0) => {}
            Ok(released) => info!(released, "resuming broadcasts a previous run had claimed"),
            Err(error) => warn!(%error, "cannot release old job leases; they resume when the leases expire"),
        }
        hold_backlog_for_reconnections(&state).await;
        let workers = tokio_util::task::TaskTracker::new();
        state.notify.notifier.start_workers(state.lifecycle().shutdown.clone(), &workers);
        // Webhooks: their own workers, and the dispatcher, which outlives the sessions so their
        // departures are stored.
        let sessions_done = tokio_util::sync::CancellationToken::new();
        let dispatcher = state.webhooks.clone().map(|service| {
            service.sender.start_workers(state.lifecycle().shutdown.clone(), &workers);
            let done = sessions_done.clone();
            tokio::spawn(async move { service.dispatch(done).await })
        });
        workers.close();
        tokio::spawn(crate::admin::sample_rates(state.clone()));
        if let (Fanout::Redis(broker), Some(inbound)) = (&state.pusher.fanout, self.inbound) {
            tokio::spawn(crate::cluster::follow(state.clone(), broker.clone(), inbound));
        }
        let drain = state.clone();
        let signal = tokio::spawn(async move {
            shutdown.await;
            info!("shutting down: closing connections with 4200");
            drain.lifecycle().start_draining();
            crate::ws::close_sessions(&drain.lifecycle().shutdown, drain.tenants().all());
        });
        let body_timeout = Duration::from_secs(state.pusher.server.body_timeout_secs);
        let admin_router = crate::routes::admin_listener(state.clone()).layer(axum::middleware::from_fn(
            move |request, next| read_body(ADMIN_BODY_LIMIT, body_timeout, request, next),
        ));
        let stop = state.lifecycle().shutdown.clone();
        tokio::join!(
            crate::listener::serve(self.listener, router, self.gate, acceptor(self.tls), stop.clone()),
            crate::listener::serve(
                self.admin_listener,
                admin_router,
                self.admin_gate,
                acceptor(self.admin_tls),
                stop
            ),
        );
        signal.abort();
        state.lifecycle().sessions.close();
        let grace = Duration::from_secs(state.pusher.server.shutdown_grace_secs);
        if tokio::time::timeout(grace, state.lifecycle().sessions.wait()).await.is_err() {
            warn!(
                remaining = state.lifecycle().sessions.len(),
                "sessions still open after the shutdown grace period"
            );
        }
        sessions_done.cancel();
        if let Some(dispatcher) = dispatcher {
            // Storing the last webhooks waits for the database at most this long.
            let _ = tokio::time::timeout(grace + Duration::from_secs(5), dispatcher).await;
        }
        if tokio::time::timeout(grace, workers.wait()).await.is_err() {
            warn!(
                "queue workers still delivering after the shutdown grace period; their jobs will be retried"
            );
        }
        if let Fanout::Redis(broker) = &state.pusher.fanout {
            // Goodbye: this node's remaining registrations go, announcing the users now gone.
            broker.shutdown().await;
        }
        state.records().close().await;
        Ok(())
    }
}

/// The TLS of a section with both `tls_cert` and `tls_key` set (the configuration check has read
/// them already; this reads them again in case they changed since).
fn listener_tls(section: &'static str, cert: &str, key: &str) -> anyhow::Result<Option<Tls>> {
    CertFiles::of(section, cert, key).map(Tls::new).transpose().map_err(anyhow::Error::from)
}

fn acceptor(tls: Option<Tls>) -> Option<tokio_rustls::TlsAcceptor> {
    tls.map(|tls| tls.acceptor)
}

/// A start that finds broadcasts waiting (a crash, a restart) holds them until the clients that
/// were connected before have had time to reconnect: delivered at once they would reach nobody.
/// Delivery resumes after `reconnect_grace`, or sooner once clients are back and no new one came
/// for [`RECONNECT_QUIET`].
async fn hold_backlog_for_reconnections(state: &SharedState) {
    let grace = state.reconnect_grace;
    if grace.is_zero() {
        return;
    }
    let backlog = match state.records().lanes().await {
        // Webhooks reach back ends, not the reconnecting sockets: only broadcasts wait.
        Ok(lanes) => lanes.critical.pending + lanes.normal.pending,
        Err(error) => {
            warn!(%error, "cannot read the queue depth; delivering without a reconnection grace");
            return;
        }
    };
    if backlog == 0 {
        return;
    }
    info!(backlog, grace_secs = grace.as_secs(), "holding the queued broadcasts while clients reconnect");
    state.notify.notifier.set_paused(true);
    let state = state.clone();
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut seen = state.tenants().connections();
        let mut last_change = started;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = state.lifecycle().shutdown.cancelled() => break,
            }
            let now = state.tenants().connections();
            if now != seen {
                seen = now;
                last_change = tokio::time::Instant::now();
            }
            if started.elapsed() >= grace || (seen > 0 && last_change.elapsed() >= RECONNECT_QUIET) {
                break;
            }
        }
        info!(
            connections = seen,
            waited_ms = started.elapsed().as_millis() as u64,
            "delivering the queued broadcasts"
        );
        state.notify.notifier.set_paused(false);
    });
}

/// How long the connection count must stay still before a held backlog is delivered.
const RECONNECT_QUIET: Duration = Duration::from_secs(1);

/// Every route of the main listener.
pub fn router(state: SharedState) -> Router {
    let body_limit = state
        .tenants()
        .all()
        .iter()
        .map(|app| app.config.limits.max_http_body_bytes)
        .max()
        .unwrap_or(herald_protocol::Limits::default().max_http_body_bytes);
    let body_timeout = Duration::from_secs(state.pusher.server.body_timeout_secs);
    crate::routes::main_router(&state)
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::metrics::track))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |request, next| {
            read_body(body_limit, body_timeout, request, next)
        }))
        .with_state(state)
}

/// How much of an oversized body is read (and dropped) before its 413 is sent. Closing a
/// connection whose request bytes were never read makes the kernel send a reset, which can reach
/// the client before the answer does, so a client that sent the whole body would see a network
/// error instead of the 413; past this much the connection is cut regardless.
const DRAIN_BYTES: u64 = 1 << 20;

/// Reads a request's body whole before any handler runs: a declared length over `limit` is 413
/// at once when the client waits for `100 Continue` (which is then never sent), else after the
/// body is read and dropped (up to [`DRAIN_BYTES`]); a body slower than `timeout` is 408, and
/// neither reaches a handler.
async fn read_body(
    limit: usize,
    timeout: Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::header;
    let headers = request.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    let waits_for_continue = headers
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let too_large = || ApiError::TooLarge { what: "request body", limit }.into_response();
    match declared {
        Some(length) if length > limit as u64 && (waits_for_continue || length > DRAIN_BYTES) => {
            return too_large();
        }
        Some(0) | None if !chunked => return next.run(request).await,
        _ => {}
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(timeout, read_capped(body, limit)).await {
        Err(_) => ApiError::BodyTimeout(timeout.as_secs()).into_response(),
        Ok(None) => too_large(),
        Ok(Some(bytes)) => {
            next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
        }
    }
}

/// The body if it is at most `limit` bytes; `None` if it is larger (read on and dropped up to
/// [`DRAIN_BYTES`]) or broken off. A body of one chunk is kept without a copy.
async fn read_capped(body: axum::body::Body, limit: usize) -> Option<bytes::Bytes> {
    use futures_util::StreamExt as _;
    let mut chunks = body.into_data_stream();
    let mut first: Option<bytes::Bytes> = None;
    let mut rest = bytes::BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.ok()?;
        seen += chunk.len() as u64;
        if seen > limit as u64 {
            first = None;
            rest = bytes::BytesMut::new();
            if seen > DRAIN_BYTES {
                return None;
            }
            continue;
        }
        match &first {
            None if rest.is_empty() => first = Some(chunk),
            _ => {
                if let Some(first) = first.take() {
                    rest.extend_from_slice(&first);
                }
                rest.extend_from_slice(&chunk);
            }
        }
    }
    if seen > limit as u64 {
        return None;
    }
    Some(first.unwrap_or_else(|| rest.freeze()))
}

/// A database URL for messages: the password, if any, replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Unknown routes: 404 JSON, or 4005 for a WebSocket upgrade on a path that is not `/app/{key}`.
async fn fallback(
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(upgrade) => ws::path_not_found(upgrade).await,
        Err(_) => ApiError::RouteNotFound.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_leaves_the_reserve_and_the_admin_share_of_the_fd_limit() {
        let config = Config::default();
        let capacity = Capacity::of(&config, Some(20_000));
        assert_eq!(capacity.connections, 20_000 - 128 - 64);
        let mut capped = Config::default();
        capped.server.max_connections = 500;
        assert_eq!(Capacity::of(&capped, Some(20_000)).connections, 500);
        capped.server.max_connections = 50_000;
        assert_eq!(Capacity::of(&capped, Some(20_000)).connections, 20_000 - 192, "never past the limit");
        assert_eq!(Capacity::of(&config, Some(100)).connections, 1, "a tiny limit still serves");
    }
}
