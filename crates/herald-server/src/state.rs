//! The apps this server serves, each with its configuration and its hub, found by id or key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use herald_hub::Hub;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use herald_store::Store;

use crate::authorize::Authorizer;
use crate::config::{AppConfig, Config, ServerConfig};

/// A tenant: one configured Pusher app at run time (its hub, counters and API rate window).
/// The server as a whole is `app::App`.
#[derive(Debug)]
pub struct Tenant {
    pub config: AppConfig,
    pub hub: Hub<Utf8Bytes>,
    /// Start of the current one-second window and the API requests counted in it.
    api_window: Mutex<(Instant, u32)>,
    /// Sockets closed with 4100 because they did not read fast enough.
    pub slow_consumers: AtomicU64,
    /// Frames received from clients.
    pub messages_in: AtomicU64,
    /// Frames queued for sockets, and their bytes.
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Tenant {
    fn new(config: AppConfig, node: u64, outbox_capacity: usize) -> Tenant {
        Tenant {
            config,
            hub: Hub::with_outbox_capacity(node, outbox_capacity),
            api_window: Mutex::new((Instant::now(), 0)),
            slow_consumers: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }

    /// Publishes one event on one channel: encoded once, queued for every subscriber but the
    /// excluded socket, counted. `user_id` marks client events relayed on presence channels.
    /// Returns the sockets it was queued for.
    pub fn publish(
        &self,
        channel: &herald_protocol::ChannelName,
        event: &str,
        data: &str,
        except: Option<&str>,
        user_id: Option<&str>,
    ) -> usize {
        let frame = herald_protocol::encode_server_event(event, Some(channel.as_str()), data, user_id);
        let bytes = frame.len() as u64;
        let reached = self.hub.publish(channel, &Utf8Bytes::from(frame), data, except);
        self.messages_out.fetch_add(reached as u64, Ordering::Relaxed);
        self.bytes_out.fetch_add(reached as u64 * bytes, Ordering::Relaxed);
        reached
    }

    /// Counts one API request; false when the app is over `max_api_requests_per_second`.
    pub fn admit_api_request(&self) -> bool {
        let limit = self.config.max_api_requests_per_second;
        if limit == 0 {
            return true;
        }
        let mut window = self.api_window.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if now.duration_since(window.0) >= Duration::from_secs(1) {
            *window = (now, 0);
        }
        window.1 += 1;
        window.1 <= limit
    }
}

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
    pub(crate) http_metrics: crate::metrics::HttpMetrics,
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
        let notifier = crate::notifications::notifier(config, &apps, store.clone(), addresses.0)?;
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
            http_metrics: crate::metrics::HttpMetrics::default(),
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
