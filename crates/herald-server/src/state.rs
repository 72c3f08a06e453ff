//! The apps this server serves, each with its configuration and its hub, found by id or key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use herald_store::Store;

use crate::authorizer::Authorizer;
use crate::config::{Config, ServerConfig};
use crate::tenant::Tenant;

/// Everything the handlers share.
#[derive(Debug)]
pub struct State {
    pub server: ServerConfig,
    by_id: HashMap<String, Arc<Tenant>>,
    by_key: HashMap<String, Arc<Tenant>>,
    apps: Vec<Arc<Tenant>>,
    draining: AtomicBool,
    /// Cancelled when the server shuts down; every session watches it.
    pub shutdown: CancellationToken,
    /// Every WebSocket session, so shutdown can wait for them.
    pub sessions: TaskTracker,
    /// Where notifications, queues and learnt campaign owners live.
    pub store: Store,
    /// Bearer tokens and channel policies: `/broadcasting/*` and the users' API.
    pub authorizer: Authorizer,
    /// The notification layer: ingest, queue workers, driver.
    pub notifier: Arc<herald_notify::Notifier>,
    /// The app the notification layer belongs to.
    pub notify_app_id: String,
    pub(crate) http_metrics: crate::http_metrics::HttpMetrics,
    pub(crate) rates: crate::rates::Rates,
    /// Who may use the admin listener: token, sessions, Host allow-list, sign-in throttle.
    pub(crate) admin: crate::guard::AdminGuard,
    pub(crate) started: Instant,
    /// The main and the admin listener's connection gates, set once they are bound.
    pub(crate) gates: std::sync::OnceLock<[Arc<crate::listener::Gate>; 2]>,
    /// How long a backlog found at start-up waits for clients to reconnect (`herald` driver).
    pub(crate) reconnect_grace: Duration,
    /// The WebSocket/API listener and the admin listener.
    pub addresses: (std::net::SocketAddr, std::net::SocketAddr),
}

pub type SharedState = Arc<State>;

impl State {
    pub fn new(
        config: &Config,
        store: Store,
        addresses: (std::net::SocketAddr, std::net::SocketAddr),
    ) -> anyhow::Result<State> {
        let node = u64::from(fastrand::u32(1..1_000_000_000));
        let apps: Vec<Arc<Tenant>> = config
            .apps
            .iter()
            .map(|app| Arc::new(Tenant::new(app.clone(), node, config.server.outbox_capacity)))
            .collect();
        let authorizer = Authorizer::new(config, &apps)?;
        let notifier = crate::hub_driver::notifier(config, &apps, store.clone(), addresses.0)?;
        Ok(State {
            server: config.server.clone(),
            by_id: apps.iter().map(|app| (app.config.id.clone(), app.clone())).collect(),
            by_key: apps.iter().map(|app| (app.config.key.clone(), app.clone())).collect(),
            apps,
            draining: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
            store,
            authorizer,
            notifier,
            notify_app_id: if config.notifications.app_id.is_empty() {
                config.apps.first().map(|app| app.id.clone()).unwrap_or_default()
            } else {
                config.notifications.app_id.clone()
            },
            http_metrics: crate::http_metrics::HttpMetrics::default(),
            rates: crate::rates::Rates::default(),
            admin: crate::guard::AdminGuard::new(&config.admin),
            started: Instant::now(),
            gates: std::sync::OnceLock::new(),
            reconnect_grace: match config.notifications.driver {
                crate::config::DriverName::Herald => {
                    Duration::from_secs(config.notifications.reconnect_grace_secs)
                }
                _ => Duration::ZERO,
            },
            addresses,
        })
    }

    pub fn app_by_id(&self, id: &str) -> Option<&Arc<Tenant>> {
        self.by_id.get(id)
    }

    pub fn app_by_key(&self, key: &str) -> Option<&Arc<Tenant>> {
        self.by_key.get(key)
    }

    pub fn apps(&self) -> &[Arc<Tenant>] {
        &self.apps
    }

    /// Set once shutdown starts: `/up` answers 503 and new connections are refused with 4200.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Sockets open on this node, across apps.
    pub fn connections(&self) -> usize {
        self.apps.iter().map(|app| app.hub.connections()).sum()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
