//! The apps this server serves, each with its configuration and its hub, found by id or key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use herald_hub::Hub;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{AppConfig, Config, ServerConfig};

/// One app at run time.
#[derive(Debug)]
pub struct App {
    pub config: AppConfig,
    pub hub: Hub<Utf8Bytes>,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct State {
    pub server: ServerConfig,
    by_id: HashMap<String, Arc<App>>,
    by_key: HashMap<String, Arc<App>>,
    apps: Vec<Arc<App>>,
    draining: AtomicBool,
    /// Cancelled when the server shuts down; every session watches it.
    pub shutdown: CancellationToken,
    /// Every WebSocket session, so shutdown can wait for them.
    pub sessions: TaskTracker,
}

pub type SharedState = Arc<State>;

impl State {
    pub fn new(config: &Config) -> State {
        let node = u64::from(fastrand::u32(1..1_000_000_000));
        let apps: Vec<Arc<App>> = config
            .apps
            .iter()
            .map(|app| Arc::new(App { config: app.clone(), hub: Hub::new(node) }))
            .collect();
        State {
            server: config.server.clone(),
            by_id: apps.iter().map(|app| (app.config.id.clone(), app.clone())).collect(),
            by_key: apps.iter().map(|app| (app.config.key.clone(), app.clone())).collect(),
            apps,
            draining: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
        }
    }

    pub fn app_by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.by_id.get(id)
    }

    pub fn app_by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.by_key.get(key)
    }

    pub fn apps(&self) -> &[Arc<App>] {
        &self.apps
    }

    /// Set once shutdown starts: `/up` answers 503 and new connections are refused with 4200.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
