//! What the handlers share, cut by surface. Each surface's handlers take only their own part
//! (axum `FromRef` substates): the Pusher surface (WebSocket, HTTP API) cannot reach the
//! notification records, the users' API cannot reach the sessions. The admin surface reports on
//! everything and takes the whole `State`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::FromRef;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use herald_notify::{Notifier, Records};

use crate::authorizer::Authorizer;
use crate::config::{Config, ServerConfig};
use crate::tenant::{Fanout, Tenant};

/// The apps this server serves, each with its configuration and its hub, found by id or key.
#[derive(Debug)]
pub struct Tenants {
    by_id: HashMap<String, Arc<Tenant>>,
    by_key: HashMap<String, Arc<Tenant>>,
    all: Vec<Arc<Tenant>>,
}

impl Tenants {
    fn new(all: Vec<Arc<Tenant>>) -> Tenants {
        Tenants {
            by_id: all.iter().map(|app| (app.config.id.clone(), app.clone())).collect(),
            by_key: all.iter().map(|app| (app.config.key.clone(), app.clone())).collect(),
            all,
        }
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<Tenant>> {
        self.by_id.get(id)
    }

    pub fn by_key(&self, key: &str) -> Option<&Arc<Tenant>> {
        self.by_key.get(key)
    }

    pub fn all(&self) -> &[Arc<Tenant>] {
        &self.all
    }

    /// Sockets open on this node, across apps.
    pub fn connections(&self) -> usize {
        self.all.iter().map(|app| app.hub.connections()).sum()
    }
}

/// Where the node is in its life: serving, draining, stopping; and the sessions it waits for.
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    /// Cancelled when the server shuts down; every session watches it.
    pub shutdown: CancellationToken,
    /// Every WebSocket session, so shutdown can wait for them.
    pub sessions: TaskTracker,
}

impl Lifecycle {
    /// Set once shutdown starts: `/up` answers 503, the API 503 and new sockets get 4200.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// The Pusher surface: the WebSocket endpoint and the signed HTTP API.
#[derive(Debug, Clone)]
pub struct PusherState {
    pub tenants: Arc<Tenants>,
    /// This node alone, or one of a cluster through Redis.
    pub fanout: Fanout,
    pub lifecycle: Arc<Lifecycle>,
    pub server: Arc<ServerConfig>,
}

/// Channel authorization (`/broadcasting/*`) and its CORS.
#[derive(Debug, Clone)]
pub struct AuthState {
    /// Bearer tokens and channel policies.
    pub authorizer: Arc<Authorizer>,
    /// Where learnt campaign owners are.
    pub records: Records,
}

/// The notification layer's surfaces: signed ingest and audit, the users' inbox API.
#[derive(Debug, Clone)]
pub struct NotifyState {
    /// Ingest, queue workers, driver; and its records (`notifier.records()`).
    pub notifier: Arc<Notifier>,
    /// Bearer tokens and channel policies (the users' API, channel history).
    pub authorizer: Arc<Authorizer>,
    /// The app the notification layer belongs to.
    pub app_id: Arc<str>,
}

/// Everything the handlers share: the surfaces' parts, and what only the admin surface reads.
#[derive(Debug)]
pub struct State {
    pub pusher: PusherState,
    pub auth: AuthState,
    pub notify: NotifyState,
    pub(crate) http_metrics: crate::http_metrics::HttpMetrics,
    pub(crate) rates: crate::rates::Rates,
    /// Who may use the admin listener: token, sessions, Host allow-list, sign-in throttle.
    pub(crate) admin: crate::guard::AdminGuard,
    pub(crate) started: Instant,
    /// The main and the admin listener's connection gates, set once they are bound.
    pub(crate) gates: std::sync::OnceLock<[Arc<crate::listener::Gate>; 2]>,
    /// This node's live HTTP sessions (pusher-js's `xhr_streaming` and `xhr_polling`).
    pub(crate) http_sessions: Arc<crate::ws::http::HttpSessions>,
    /// How long a backlog found at start-up waits for clients to reconnect (`herald` driver).
    pub(crate) reconnect_grace: Duration,
    /// The webhook dispatcher and sender; `None` when no app has a receiver.
    pub(crate) webhooks: Option<Arc<crate::webhooks::WebhookService>>,
    /// The WebSocket/API listener and the admin listener.
    pub addresses: (std::net::SocketAddr, std::net::SocketAddr),
}

pub type SharedState = Arc<State>;

impl FromRef<SharedState> for PusherState {
    fn from_ref(state: &SharedState) -> PusherState {
        state.pusher.clone()
    }
}

impl FromRef<SharedState> for AuthState {
    fn from_ref(state: &SharedState) -> AuthState {
        state.auth.clone()
    }
}

impl FromRef<SharedState> for NotifyState {
    fn from_ref(state: &SharedState) -> NotifyState {
        state.notify.clone()
    }
}

impl State {
    /// `node` is this node's number: the first half of its socket ids, and its id in a cluster.
    pub fn new(
        config: &Config,
        records: Records,
        (node, fanout): (u64, Fanout),
        addresses: (std::net::SocketAddr, std::net::SocketAddr),
    ) -> anyhow::Result<State> {
        let webhooks = crate::webhooks::WebhookService::new(config, &records).map(Arc::new);
        let apps: Vec<Arc<Tenant>> = config
            .apps
            .iter()
            .map(|app| {
                let hooks = webhooks.as_ref().and_then(|service| service.app(&app.id));
                Arc::new(Tenant::new(app.clone(), node, config.server.outbox_capacity, fanout.clone(), hooks))
            })
            .collect();
        let authorizer = Arc::new(Authorizer::new(config, &apps)?);
        let notifier = crate::hub_driver::notifier(config, &apps, records.clone(), addresses.0)?;
        let notify_app_id = if config.notifications.app_id.is_empty() {
            config.apps.first().map(|app| app.id.clone()).unwrap_or_default()
        } else {
            config.notifications.app_id.clone()
        };
        Ok(State {
            pusher: PusherState {
                tenants: Arc::new(Tenants::new(apps)),
                fanout,
                lifecycle: Arc::new(Lifecycle::default()),
                server: Arc::new(config.server.clone()),
            },
            auth: AuthState { authorizer: authorizer.clone(), records },
            notify: NotifyState { notifier, authorizer, app_id: notify_app_id.into() },
            http_metrics: crate::http_metrics::HttpMetrics::default(),
            rates: crate::rates::Rates::default(),
            admin: crate::guard::AdminGuard::new(&config.admin),
            started: Instant::now(),
            gates: std::sync::OnceLock::new(),
            http_sessions: Arc::default(),
            reconnect_grace: match config.notifications.driver {
                crate::config::DriverName::Herald => {
                    Duration::from_secs(config.notifications.reconnect_grace_secs)
                }
                _ => Duration::ZERO,
            },
            webhooks,
            addresses,
        })
    }

    pub fn tenants(&self) -> &Tenants {
        &self.pusher.tenants
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.pusher.lifecycle
    }

    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notify.notifier
    }

    pub fn records(&self) -> &Records {
        self.notify.notifier.records()
    }

    /// `app`'s connections on this node by transport: its HTTP sessions, the rest WebSocket.
    pub fn transports(&self, app: &Tenant) -> crate::status::TransportCounts {
        let http = self.http_sessions.counts(Some(&app.config.id));
        let connections = app.hub.connections() as u64;
        crate::status::TransportCounts {
            ws: connections.saturating_sub(http.streaming + http.polling),
            xhr_streaming: http.streaming,
            xhr_polling: http.polling,
        }
    }

    pub fn authorizer(&self) -> &Authorizer {
        &self.auth.authorizer
    }
}
