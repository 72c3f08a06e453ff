//! `App`: binds the listener, wires the routes, runs until the shutdown future resolves, then
//! drains (sessions close with 4200, `/up` answers 503) within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::ApiError;
use crate::state::{SharedState, State as ServerState};
use crate::{api, authorize, inbox, notifications, ws};

/// A bound, not yet running server.
pub struct App {
    state: SharedState,
    listener: TcpListener,
    admin_listener: TcpListener,
    address: SocketAddr,
    admin_address: SocketAddr,
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
        let store = herald_store::Store::connect(&config.database.url)
            .await
            .with_context(|| format!("cannot open the database {}", redact_url(&config.database.url)))?;
        let state = ServerState::new(config, store, (address, admin_address))?;
        Ok(App { state: Arc::new(state), listener, admin_listener, address, admin_address })
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
        let listener = self.listener.tap_io(|tcp| {
            // Pusher frames are small and latency matters more than packet count.
            let _ = tcp.set_nodelay(true);
        });
        match state.notifier.recover().await {
            Ok(0) => {}
            Ok(released) => info!(released, "resuming broadcasts a previous run had claimed"),
            Err(error) => warn!(%error, "cannot release old job leases; they resume when the leases expire"),
        }
        let workers = tokio_util::task::TaskTracker::new();
        state.notifier.start_workers(state.shutdown.clone(), &workers);
        workers.close();
        tokio::spawn(crate::rates::Rates::run(state.clone()));
        let drain = state.clone();
        let main = axum::serve(listener, router).with_graceful_shutdown(async move {
            shutdown.await;
            info!("shutting down: closing connections with 4200");
            drain.start_draining();
            drain.shutdown.cancel();
        });
        let admin_stop = state.shutdown.clone();
        let admin = axum::serve(self.admin_listener, crate::admin::router(state.clone()))
            .with_graceful_shutdown(async move { admin_stop.cancelled().await });
        let (main, admin) = tokio::join!(main, admin);
        main?;
        admin?;
        state.sessions.close();
        let grace = Duration::from_secs(state.server.shutdown_grace_secs);
        if tokio::time::timeout(grace, state.sessions.wait()).await.is_err() {
            warn!(remaining = state.sessions.len(), "sessions still open after the shutdown grace period");
        }
        if tokio::time::timeout(grace, workers.wait()).await.is_err() {
            warn!(
                "queue workers still delivering after the shutdown grace period; their jobs will be retried"
            );
        }
        state.store.close().await;
        Ok(())
    }
}

/// Every route of the main listener.
pub fn router(state: SharedState) -> Router {
    let body_limit = state
        .apps()
        .iter()
        .map(|app| app.config.limits.max_http_body_bytes)
        .max()
        .unwrap_or(herald_protocol::Limits::default().max_http_body_bytes);
    Router::new()
        .route("/app/{key}", get(ws::upgrade))
        .route("/apps/{app_id}/events", post(api::trigger))
        .route("/apps/{app_id}/batch_events", post(api::trigger_batch))
        .route("/apps/{app_id}/channels", get(api::list_channels))
        .route("/apps/{app_id}/channels/{channel}", get(api::channel_info))
        .route("/apps/{app_id}/channels/{channel}/users", get(api::channel_users))
        .route("/apps/{app_id}/users/{user_id}/terminate_connections", post(api::terminate_connections))
        .route("/apps/{app_id}/domain-events", post(notifications::ingest))
        .route("/apps/{app_id}/audit", get(notifications::audit))
        .merge(browser_routes(state.clone()))
        .route("/up", get(crate::admin::up))
        .route("/live", get(crate::admin::live))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::metrics::track))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Routes browsers call from the front end's origin, behind CORS.
fn browser_routes(state: SharedState) -> Router<SharedState> {
    Router::new()
        .route("/broadcasting/auth", post(authorize::channel_auth))
        .route("/broadcasting/user-auth", post(authorize::user_auth))
        .route("/api/v1/notifications", get(inbox::list))
        .route("/api/v1/notifications/read-all", post(inbox::mark_all_read))
        .route("/api/v1/notifications/{id}/read", post(inbox::mark_read))
        .route("/api/v1/preferences", get(inbox::get_preferences).put(inbox::put_preferences))
        .route("/api/v1/channels/{channel}/events", get(inbox::channel_history))
        .layer(axum::middleware::from_fn_with_state(state, authorize::cors))
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
