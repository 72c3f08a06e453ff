//! `GET /admin/api/stream`: the dashboard's Server-Sent Events. `status` (the `admin::snapshot`
//! document) every second, and `broadcast` for each delivery outcome the audit trail records.
//!
//! One poller per admin listener, started by the first subscriber and stopped after the last,
//! reads the store and fans its updates out through a bounded broadcast channel: a subscriber that
//! falls behind skips updates (and is told so) instead of buffering them. A new subscriber first
//! gets a snapshot and the latest outcomes, so a page that reconnects (after a server restart too)
//! catches up; the page drops the repeats by their audit `seq`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Extension;
use futures_util::Stream;
use herald_notify::AuditDetail;
use herald_notify::{AuditEntry, AuditFilter, AuditKind, Records, StoreError};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::admin::snapshot;
use crate::state::SharedState;

/// The audit entry kinds the feed shows.
const FEED_KINDS: [AuditKind; 4] =
    [AuditKind::Delivered, AuditKind::DeadLettered, AuditKind::AttemptFailed, AuditKind::Suppressed];
/// How long a browser waits before reconnecting.
const RETRY: Duration = Duration::from_millis(2000);
const AUDIT_EVERY: Duration = Duration::from_millis(500);
/// No store query may hold the poller longer than this.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Updates kept for slow subscribers; past it they skip.
const CHANNEL_CAPACITY: usize = 64;
/// Audit rows read per poll.
const AUDIT_LIMIT: i64 = 500;
/// Entries may become visible out of `seq` order (concurrent transactions): each poll reads back
/// this far behind the newest entry seen and skips those already sent.
const WINDOW_MS: i64 = 5_000;
/// Outcomes a new subscriber gets first.
const BACKFILL: usize = 50;
/// Routing details (channels, event name) kept for the entries that follow them.
const ROUTED_CACHE: usize = 1024;
/// Routing lookups one poll may make for entries whose routing is not in the cache.
const LOOKUPS_PER_POLL: usize = 50;

#[derive(Debug, Clone)]
enum Update {
    Status(Arc<str>),
    Broadcast(Arc<str>),
}

/// The updates every subscriber of one admin listener shares.
#[derive(Debug)]
pub(crate) struct Feed {
    updates: broadcast::Sender<Update>,
    /// Whether the poller runs; changed only under this lock, with the subscriber count.
    running: Mutex<bool>,
}

impl Feed {
    pub(crate) fn new() -> Feed {
        let (updates, _) = broadcast::channel(CHANNEL_CAPACITY);
        Feed { updates, running: Mutex::new(false) }
    }

    fn subscribe(self: &Arc<Self>, state: &SharedState) -> broadcast::Receiver<Update> {
        let mut running = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let receiver = self.updates.subscribe();
        if !*running {
            *running = true;
            tokio::spawn(poll(self.clone(), state.clone()));
        }
        receiver
    }

    /// True (and the poller marked stopped) once nobody listens.
    fn idle(&self) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.updates.receiver_count() == 0 {
            *running = false;
            return true;
        }
        false
    }
}

/// `GET /admin/api/stream`
pub(crate) async fn stream(
    State(state): State<SharedState>,
    Extension(feed): Extension<Arc<Feed>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribed before the backfill is read, so nothing falls between the two.
    let updates = feed.subscribe(&state);
    let mut first = VecDeque::with_capacity(BACKFILL + 1);
    let status = snapshot(&state, false).await.to_json();
    first.push_back(Event::default().retry(RETRY).event("status").data(status));
    match tokio::time::timeout(QUERY_TIMEOUT, backfill(&state)).await {
        Ok(Ok(items)) => {
            first.extend(items.iter().map(|item| Event::default().event("broadcast").data(item.to_string())))
        }
        Ok(Err(error)) => debug!(%error, "dashboard backfill failed"),
        Err(_) => debug!("dashboard backfill timed out"),
    }
    let subscriber = Subscriber { first, updates, shutdown: state.lifecycle().shutdown.clone() };
    Sse::new(futures_util::stream::unfold(subscriber, next_event)).keep_alive(KeepAlive::default())
}

struct Subscriber {
    first: VecDeque<Event>,
    updates: broadcast::Receiver<Update>,
    shutdown: CancellationToken,
}

/// The next event of one subscriber's stream; `None` ends it (server shutdown).
async fn next_event(mut subscriber: Subscriber) -> Option<(Result<Event, Infallible>, Subscriber)> {
    if let Some(event) = subscriber.first.pop_front() {
        return Some((Ok(event), subscriber));
    }
    let event = tokio::select! {
        biased;
        _ = subscriber.shutdown.cancelled() => return None,
        update = subscriber.updates.recv() => match update {
            Ok(Update::Status(data)) => Event::default().event("status").data(&*data),
            Ok(Update::Broadcast(data)) => Event::default().event("broadcast").data(&*data),
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                Event::default().event("lagged").data(skipped.to_string())
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        },
    };
    Some((Ok(event), subscriber))
}

/// The poller: status every second, new audit outcomes every 500 ms, until nobody listens or the
/// server shuts down.
async fn poll(feed: Arc<Feed>, state: SharedState) {
    let mut tail = AuditTail::new(herald_notify::now_ms());
    let mut ticker = tokio::time::interval(AUDIT_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Status goes out every other audit poll: once a second.
    let mut status_due = true;
    loop {
        tokio::select! {
            _ = state.lifecycle().shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if feed.idle() {
            return;
        }
        if status_due {
            if let Ok(status) = tokio::time::timeout(QUERY_TIMEOUT, snapshot(&state, false)).await {
                let _ = feed.updates.send(Update::Status(status.to_json().into()));
            }
        }
        status_due = !status_due;
        match tokio::time::timeout(QUERY_TIMEOUT, tail.poll(&state)).await {
            Ok(Ok(items)) => {
                for item in items {
                    let _ = feed.updates.send(Update::Broadcast(item.to_string().into()));
                }
            }
            Ok(Err(error)) => debug!(%error, "dashboard audit poll failed"),
            Err(_) => debug!("dashboard audit poll timed out"),
        }
    }
}

/// The audit trail read as a stream: entries not sent yet, in `seq` order.
struct AuditTail {
    /// Entries of the window already sent: `seq` → `at`.
    seen: HashMap<i64, i64>,
    /// The newest `at` seen (the window ends here).
    newest: i64,
    routed: RoutedCache,
}

impl AuditTail {
    fn new(now: i64) -> AuditTail {
        AuditTail { seen: HashMap::new(), newest: now, routed: RoutedCache::default() }
    }

    async fn poll(&mut self, state: &SharedState) -> Result<Vec<Value>, StoreError> {
        let filter =
            AuditFilter { since_ms: self.newest - WINDOW_MS, limit: AUDIT_LIMIT, ..Default::default() };
        let mut entries = state.records().audit(&filter).await?;
        entries.reverse();
        let mut items = Vec::new();
        let mut lookups = 0;
        for entry in entries {
            if self.seen.insert(entry.seq, entry.at_ms).is_some() {
                continue;
            }
            self.newest = self.newest.max(entry.at_ms);
            if entry.kind == AuditKind::Routed {
                self.routed.remember(&entry);
            } else if FEED_KINDS.contains(&entry.kind) {
                let routed = self.routed.find(state.records(), &entry, &mut lookups).await;
                items.push(feed_item(state, &entry, routed.as_ref()));
            }
        }
        let horizon = self.newest - WINDOW_MS;
        self.seen.retain(|_, at| *at >= horizon);
        Ok(items)
    }
}

/// The latest outcomes, oldest first, for a new subscriber.
async fn backfill(state: &SharedState) -> Result<Vec<Value>, StoreError> {
    let mut entries = Vec::new();
    for kind in FEED_KINDS {
        let filter = AuditFilter { kind: Some(kind), limit: BACKFILL as i64, ..Default::default() };
        entries.extend(state.records().audit(&filter).await?);
    }
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.seq));
    entries.truncate(BACKFILL);
    entries.reverse();
    let mut routed = RoutedCache::default();
    let mut lookups = 0;
    let mut items = Vec::with_capacity(entries.len());
    for entry in &entries {
        let found = routed.find(state.records(), entry, &mut lookups).await;
        items.push(feed_item(state, entry, found.as_ref()));
    }
    Ok(items)
}

/// The `routed` audit details (event name, channels, lane) by broadcast id, bounded.
#[derive(Default)]
struct RoutedCache {
    details: HashMap<String, Routing>,
    order: VecDeque<String>,
}

impl RoutedCache {
    fn remember(&mut self, entry: &AuditEntry) {
        let Some(broadcast_id) = &entry.broadcast_id else { return };
        if self.details.contains_key(broadcast_id) {
            return;
        }
        if self.order.len() >= ROUTED_CACHE {
            if let Some(oldest) = self.order.pop_front() {
                self.details.remove(&oldest);
            }
        }
        let Some(AuditDetail::Routed { event, channels, lane }) = entry.detail.clone() else {
            return;
        };
        self.details.insert(broadcast_id.clone(), Routing { event, channels, lane });
        self.order.push_back(broadcast_id.clone());
    }

    /// The routing of `entry`'s broadcast: cached, or looked up (at most `LOOKUPS_PER_POLL`).
    async fn find(&mut self, records: &Records, entry: &AuditEntry, lookups: &mut usize) -> Option<Routing> {
        let broadcast_id = entry.broadcast_id.as_ref()?;
        if let Some(detail) = self.details.get(broadcast_id) {
            return Some(detail.clone());
        }
        if *lookups >= LOOKUPS_PER_POLL {
            return None;
        }
        *lookups += 1;
        let filter = AuditFilter {
            event_id: entry.event_id.clone(),
            kind: Some(AuditKind::Routed),
            limit: 20,
            ..Default::default()
        };
        for routed in records.audit(&filter).await.ok()? {
            self.remember(&routed);
        }
        self.details.get(broadcast_id).cloned()
    }
}

/// Where a broadcast went, from its `routed` entry.
#[derive(Debug, Clone)]
struct Routing {
    event: String,
    /// Logical channel names.
    channels: Vec<String>,
    lane: String,
}

/// One row of the dashboard's feed.
fn feed_item(state: &SharedState, entry: &AuditEntry, routed: Option<&Routing>) -> Value {
    let detail = &entry.detail;
    let channels: Vec<String> = match (routed, detail) {
        (Some(routing), _) => routing.channels.clone(),
        (None, Some(AuditDetail::Suppressed { channel: Some(channel), .. })) => vec![channel.clone()],
        _ => Vec::new(),
    };
    let channels: Vec<String> =
        channels.iter().map(|channel| state.notify.notifier.wire_channel(channel)).collect();
    let lane = match detail {
        Some(AuditDetail::Delivered { lane, .. }) => Some(lane.clone()),
        _ => routed.map(|routing| routing.lane.clone()),
    };
    let latency_ms = match detail {
        Some(AuditDetail::Delivered { latency_ms, .. }) => Some(*latency_ms),
        _ => None,
    };
    json!({
        "seq": entry.seq,
        "at": herald_notify::rfc3339(entry.at_ms),
        "at_ms": entry.at_ms,
        "status": entry.kind.as_str(),
        "type": entry.event_type,
        "event": routed.map(|routing| routing.event.clone()),
        "event_id": entry.event_id,
        "broadcast_id": entry.broadcast_id,
        "channels": channels,
        "lane": lane,
        "latency_ms": latency_ms,
        "attempt": detail.as_ref().and_then(AuditDetail::attempt),
        "error": detail.as_ref().and_then(AuditDetail::error),
        "reason": detail.as_ref().and_then(AuditDetail::reason),
    })
}
