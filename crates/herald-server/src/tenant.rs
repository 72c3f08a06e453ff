//! A tenant: one configured Pusher app at run time, with its hub, its counters and its API rate
//! window. Every surface (sessions, the HTTP API, authorization, the notification driver) finds
//! tenants through `State`, but a tenant knows nothing of the server around it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use herald_hub::Hub;

use crate::config::AppConfig;

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
    pub(crate) fn new(config: AppConfig, node: u64, outbox_capacity: usize) -> Tenant {
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
