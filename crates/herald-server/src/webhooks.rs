//! Webhook events, from the moment a session changes something to the durable queue.
//!
//! Sessions and tenants *emit* events (`AppWebhooks::emit`: never blocks, never fails a socket);
//! one dispatcher task per node gathers them and decides what is sent:
//! - `channel_vacated` and `member_removed` wait `removal_delay` (3 s); an occupation or a join
//!   of the same channel (and user) within that time cancels both, so a page reload sends
//!   nothing at all;
//! - with `webhook_batching`, events gather for `batch_ms` and go in one body per receiver;
//! - each receiver gets the kinds it asked for, in bodies of at most [`MAX_EVENTS_PER_BODY`].
//!
//! Bodies are stored in the queue's `webhooks` lane (herald-notify's `Webhooks` delivers them),
//! so a receiver that is down, slow or restarting gets them later, after a crash too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_notify::{now_ms, WebhookSettings, WebhookTarget, Webhooks};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::{Config, WebhookConfig, WebhookKind};

/// Events waiting for the dispatcher, across apps; beyond it events are dropped and counted
/// (the database has been unreachable for that long).
pub(crate) const QUEUE_CAPACITY: usize = 65_536;
/// Most events in one webhook body.
pub(crate) const MAX_EVENTS_PER_BODY: usize = 100;

/// One event of a webhook body, as Pusher writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct WebhookEvent {
    pub name: WebhookKind,
    pub channel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_count: Option<u64>,
}

impl WebhookEvent {
    /// An event about `channel` alone (`channel_occupied`, `channel_vacated`, `cache_miss`).
    pub(crate) fn channel(name: WebhookKind, channel: &str) -> WebhookEvent {
        WebhookEvent {
            name,
            channel: channel.to_owned(),
            user_id: None,
            event: None,
            data: None,
            socket_id: None,
            subscription_count: None,
        }
    }

    /// `member_added` / `member_removed`.
    pub(crate) fn member(name: WebhookKind, channel: &str, user_id: &str) -> WebhookEvent {
        WebhookEvent { user_id: Some(user_id.to_owned()), ..WebhookEvent::channel(name, channel) }
    }

    /// `client_event`: `user_id` on presence channels.
    pub(crate) fn client_event(
        channel: &str,
        event: &str,
        data: &str,
        socket_id: &str,
        user_id: Option<&str>,
    ) -> WebhookEvent {
        WebhookEvent {
            event: Some(event.to_owned()),
            data: Some(data.to_owned()),
            socket_id: Some(socket_id.to_owned()),
            user_id: user_id.map(str::to_owned),
            ..WebhookEvent::channel(WebhookKind::ClientEvent, channel)
        }
    }

    /// `subscription_count`.
    pub(crate) fn subscription_count(channel: &str, count: u64) -> WebhookEvent {
        WebhookEvent {
            subscription_count: Some(count),
            ..WebhookEvent::channel(WebhookKind::SubscriptionCount, channel)
        }
    }

    /// What a delayed removal is cancelled by, and what cancels it: one key per channel (and user).
    fn key(&self) -> RemovalKey {
        (self.channel.clone(), self.user_id.clone())
    }
}

/// Webhook event counters since start.
#[derive(Debug, Default)]
pub(crate) struct EventCounters {
    /// Events stored for delivery (once per receiver that wants them).
    pub queued: AtomicU64,
    /// Removals cancelled by a return within the delay, each with the return it cancelled.
    pub suppressed: AtomicU64,
    /// Events dropped because the dispatcher's queue was full.
    pub dropped: AtomicU64,
}

/// What names a removal in Redis: the channel, and the user for `member_removed` (channel names
/// hold no space).
pub(crate) fn removal_subject(channel: &str, user_id: Option<&str>) -> String {
    match user_id {
        Some(user_id) => format!("{channel} {user_id}"),
        None => channel.to_owned(),
    }
}

/// A removal filed with the cluster: settled (and announced only if still this filing) when its
/// delay is over.
#[derive(Debug, Clone)]
pub(crate) struct Settle {
    pub(crate) broker: herald_broker::Broker,
    pub(crate) app: Arc<str>,
    pub(crate) subject: String,
    pub(crate) token: String,
}

/// The kind that undoes `kind` (an arrival and its removal), if any.
fn partner(kind: WebhookKind) -> Option<WebhookKind> {
    match kind {
        WebhookKind::ChannelOccupied => Some(WebhookKind::ChannelVacated),
        WebhookKind::ChannelVacated => Some(WebhookKind::ChannelOccupied),
        WebhookKind::MemberAdded => Some(WebhookKind::MemberRemoved),
        WebhookKind::MemberRemoved => Some(WebhookKind::MemberAdded),
        _ => None,
    }
}

/// One app's end of the dispatcher: which kinds any of its receivers wants, and the way in.
#[derive(Debug, Clone)]
pub(crate) struct AppWebhooks {
    app_id: Arc<str>,
    wanted: Vec<WebhookKind>,
    sender: mpsc::Sender<Emitted>,
    counters: Arc<EventCounters>,
    removal_delay: Duration,
}

impl AppWebhooks {
    /// Whether any receiver wants `kind` (callers skip building events nobody wants).
    pub(crate) fn wants(&self, kind: WebhookKind) -> bool {
        self.wanted.contains(&kind)
    }

    /// Whether `kind` or the kind that undoes it is wanted: both are then tracked, so that a
    /// reload is nothing to a receiver of either.
    pub(crate) fn pairs(&self, kind: WebhookKind) -> bool {
        self.wants(kind) || partner(kind).is_some_and(|partner| self.wants(partner))
    }

    /// Counts an arrival and the removal it undid, neither announced.
    pub(crate) fn suppressed(&self) {
        self.counters.suppressed.fetch_add(1, Ordering::Relaxed);
    }

    /// How long a removal filed with the cluster lives unsettled: its delay, and some margin.
    pub(crate) fn removal_ttl(&self) -> Duration {
        self.removal_delay + Duration::from_secs(30)
    }

    /// Hands an event to the dispatcher without waiting; a full queue drops it (counted, logged).
    /// `settle`: a removal filed with the cluster.
    pub(crate) fn emit(&self, event: WebhookEvent, settle: Option<Settle>) {
        if !self.pairs(event.name) {
            return;
        }
        let emitted = Emitted { app_id: self.app_id.clone(), event, settle };
        if self.sender.try_send(emitted).is_err()
            && self.counters.dropped.fetch_add(1, Ordering::Relaxed).is_multiple_of(1000)
        {
            warn!(app = %self.app_id, "webhook events are dropped: the dispatcher is behind (is the database reachable?)");
        }
    }
}

#[derive(Debug)]
struct Emitted {
    app_id: Arc<str>,
    event: WebhookEvent,
    settle: Option<Settle>,
}

/// An app's receivers and whether its events are batched.
#[derive(Debug)]
struct Receivers {
    hooks: Vec<WebhookConfig>,
    batching: bool,
}

/// The node's webhook machinery: each app's way in, the dispatcher, and the sender.
#[derive(Debug)]
pub(crate) struct WebhookService {
    apps: HashMap<String, AppWebhooks>,
    dispatcher: std::sync::Mutex<Option<Dispatcher>>,
    pub sender: Arc<Webhooks>,
    pub counters: Arc<EventCounters>,
}

impl WebhookService {
    /// `None` when no app has a receiver: nothing is built, nothing runs.
    pub(crate) fn new(config: &Config, records: &herald_notify::Records) -> Option<WebhookService> {
        let configured: Vec<_> = config.apps.iter().filter(|app| !app.webhooks.is_empty()).collect();
        if configured.is_empty() {
            return None;
        }
        let targets = configured
            .iter()
            .flat_map(|app| {
                app.webhooks.iter().map(|hook| WebhookTarget {
                    app_id: app.id.clone(),
                    app_key: app.key.clone(),
                    app_secret: app.secret.clone(),
                    url: hook.url.clone(),
                    headers: hook.headers.iter().map(|(name, value)| (name.clone(), value.clone())).collect(),
                })
            })
            .collect();
        let settings = &config.webhooks;
        let sender = Arc::new(Webhooks::new(
            records,
            targets,
            WebhookSettings {
                workers: settings.workers,
                timeout: Duration::from_secs(settings.timeout_secs),
                retry_window_ms: (settings.retry_window_secs as i64).saturating_mul(1000),
                backoff_base_ms: settings.backoff_base_ms as i64,
                backoff_cap_ms: settings.backoff_cap_ms as i64,
                lease_ms: (settings.timeout_secs as i64).saturating_mul(1000).saturating_add(30_000),
                poll_interval_ms: config.notifications.poll_interval_ms,
            },
        ));
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(EventCounters::default());
        let apps = configured
            .iter()
            .map(|app| {
                let mut wanted: Vec<WebhookKind> = WebhookKind::ALL
                    .into_iter()
                    .filter(|kind| app.webhooks.iter().any(|hook| hook.wants(*kind)))
                    .collect();
                wanted.dedup();
                let hooks = AppWebhooks {
                    app_id: app.id.as_str().into(),
                    wanted,
                    sender: tx.clone(),
                    counters: counters.clone(),
                    removal_delay: Duration::from_millis(settings.removal_delay_ms),
                };
                (app.id.clone(), hooks)
            })
            .collect();
        let receivers = configured
            .iter()
            .map(|app| {
                (app.id.clone(), Receivers { hooks: app.webhooks.clone(), batching: app.webhook_batching })
            })
            .collect();
        let dispatcher = Dispatcher {
            events: rx,
            receivers,
            removal_delay: Duration::from_millis(settings.removal_delay_ms),
            batch: Duration::from_millis(settings.batch_ms),
            pending: HashMap::new(),
            seq: 0,
            ready: HashMap::new(),
            sender: sender.clone(),
            counters: counters.clone(),
        };
        Some(WebhookService { apps, dispatcher: std::sync::Mutex::new(Some(dispatcher)), sender, counters })
    }

    /// The way in for one app, `None` when it has no receiver.
    pub(crate) fn app(&self, app_id: &str) -> Option<AppWebhooks> {
        self.apps.get(app_id).cloned()
    }

    /// Runs the dispatcher until `sessions_done` is cancelled (every session has ended), then
    /// stores what is left (pending removals included) and returns. Call once.
    pub(crate) async fn dispatch(&self, sessions_done: CancellationToken) {
        let dispatcher = self.dispatcher.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(dispatcher) = dispatcher {
            dispatcher.run(sessions_done).await;
        }
    }
}

/// What a removal is filed under: its channel, and its user for `member_removed`.
type RemovalKey = (String, Option<String>);

/// A removal waiting out the delay.
#[derive(Debug)]
struct Pending {
    due: Instant,
    /// Emission order, kept when removals become ready together (`member_removed` before
    /// `channel_vacated`).
    seq: u64,
    event: WebhookEvent,
    settle: Option<Settle>,
}

/// Events of one app ready to go, and when a batch of them is due.
#[derive(Debug, Default)]
struct Ready {
    events: Vec<WebhookEvent>,
    due: Option<Instant>,
}

#[derive(Debug)]
struct Dispatcher {
    events: mpsc::Receiver<Emitted>,
    receivers: HashMap<String, Receivers>,
    removal_delay: Duration,
    batch: Duration,
    /// Delayed removals by app, then channel (and user).
    pending: HashMap<Arc<str>, HashMap<RemovalKey, Pending>>,
    /// The next removal's `Pending::seq`.
    seq: u64,
    ready: HashMap<Arc<str>, Ready>,
    sender: Arc<Webhooks>,
    counters: Arc<EventCounters>,
}

impl Dispatcher {
    async fn run(mut self, sessions_done: CancellationToken) {
        loop {
            let wake_at = self.next_due();
            tokio::select! {
                emitted = self.events.recv() => match emitted {
                    Some(emitted) => self.take(emitted),
                    None => break,
                },
                _ = sleep_until(wake_at) => {}
                _ = sessions_done.cancelled() => break,
            }
            // Whatever else is already waiting, before anything is stored.
            while let Ok(emitted) = self.events.try_recv() {
                self.take(emitted);
            }
            self.promote(Instant::now()).await;
            self.store(Instant::now(), None).await;
        }
        // The last sessions' departures, then everything, removals included, at once.
        while let Ok(emitted) = self.events.try_recv() {
            self.take(emitted);
        }
        self.promote(Instant::now() + self.removal_delay).await;
        let far = Instant::now() + self.batch + self.removal_delay;
        self.store(far, Some(far)).await;
    }

    /// Files one event: a removal waits; a return cancels the removal it undoes (and itself).
    fn take(&mut self, Emitted { app_id, event, settle }: Emitted) {
        let pending = self.pending.entry(app_id.clone()).or_default();
        match event.name {
            WebhookKind::ChannelVacated | WebhookKind::MemberRemoved => {
                let due = Instant::now() + self.removal_delay;
                self.seq += 1;
                pending.insert(event.key(), Pending { due, seq: self.seq, event, settle });
                return;
            }
            WebhookKind::ChannelOccupied | WebhookKind::MemberAdded => {
                let undoes = match event.name {
                    WebhookKind::ChannelOccupied => WebhookKind::ChannelVacated,
                    _ => WebhookKind::MemberRemoved,
                };
                if pending.get(&event.key()).is_some_and(|waiting| waiting.event.name == undoes) {
                    pending.remove(&event.key());
                    self.counters.suppressed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            _ => {}
        }
        self.push_ready(app_id, event);
    }

    fn push_ready(&mut self, app_id: Arc<str>, event: WebhookEvent) {
        let batching = self.receivers.get(app_id.as_ref()).is_some_and(|receivers| receivers.batching);
        let ready = self.ready.entry(app_id).or_default();
        if ready.due.is_none() {
            ready.due = Some(if batching { Instant::now() + self.batch } else { Instant::now() });
        }
        ready.events.push(event);
    }

    /// Removals whose delay has run out (by `now`) become ready; one filed with the cluster only
    /// if it is still its filing (nothing came back on any node).
    async fn promote(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (app_id, pending) in &mut self.pending {
            let keys: Vec<RemovalKey> = pending
                .iter()
                .filter(|(_, waiting)| waiting.due <= now)
                .map(|(key, _)| key.clone())
                .collect();
            for key in keys {
                if let Some(waiting) = pending.remove(&key) {
                    due.push((app_id.clone(), waiting));
                }
            }
        }
        due.sort_by_key(|(_, waiting)| waiting.seq);
        for (app_id, waiting) in due {
            if let Some(settle) = &waiting.settle {
                match settle.broker.settle_removal(&settle.app, &settle.subject, &settle.token).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(error) => {
                        warn!(%error, "cannot settle a webhook removal with the cluster; announcing it")
                    }
                }
            }
            self.push_ready(app_id, waiting.event);
        }
    }

    /// The next moment something is due: a removal's delay or a batch.
    fn next_due(&self) -> Option<Instant> {
        let removals = self.pending.values().flat_map(|pending| pending.values().map(|waiting| waiting.due));
        let batches = self.ready.values().filter_map(|ready| ready.due);
        removals.chain(batches).min()
    }

    /// Stores every app's ready events that are due by `now`, as one job per receiver and body;
    /// retries while the database is unreachable (the events wait here meanwhile). `until`:
    /// give up retrying at that moment (shutdown).
    async fn store(&mut self, now: Instant, until: Option<Instant>) {
        let due_apps: Vec<Arc<str>> = self
            .ready
            .iter()
            .filter(|(_, ready)| ready.due.is_some_and(|due| due <= now))
            .map(|(app_id, _)| app_id.clone())
            .collect();
        for app_id in due_apps {
            let Some(ready) = self.ready.remove(&app_id) else { continue };
            let Some(receivers) = self.receivers.get(app_id.as_ref()) else { continue };
            let per_body = if receivers.batching { MAX_EVENTS_PER_BODY } else { 1 };
            let bodies = bodies(&receivers.hooks, &ready.events, per_body, now_ms());
            let count = bodies.iter().map(|(_, _, events)| *events as u64).sum::<u64>();
            let jobs: Vec<(String, String)> = bodies.into_iter().map(|(url, body, _)| (url, body)).collect();
            let mut delay = Duration::from_millis(200);
            loop {
                match self.sender.enqueue(&app_id, &jobs).await {
                    Ok(()) => {
                        self.counters.queued.fetch_add(count, Ordering::Relaxed);
                        break;
                    }
                    Err(error) if until.is_none_or(|until| Instant::now() + delay < until) => {
                        warn!(app = %app_id, %error, "cannot store webhooks; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                    Err(error) => {
                        self.counters.dropped.fetch_add(count, Ordering::Relaxed);
                        warn!(app = %app_id, %error, events = count, "webhooks lost at shutdown: the database is unreachable");
                        break;
                    }
                }
            }
        }
    }
}

/// Each receiver's bodies for `events`: the kinds it wants, at most `per_body` a body (1 without
/// batching), as `(url, body, events in it)`.
fn bodies(
    hooks: &[WebhookConfig],
    events: &[WebhookEvent],
    per_body: usize,
    time_ms: i64,
) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    for hook in hooks {
        let wanted: Vec<&WebhookEvent> = events.iter().filter(|event| hook.wants(event.name)).collect();
        for chunk in wanted.chunks(per_body.max(1)) {
            let body = serde_json::json!({ "time_ms": time_ms, "events": chunk });
            out.push((hook.url.clone(), body.to_string(), chunk.len()));
        }
    }
    out
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str, kinds: &[WebhookKind]) -> WebhookConfig {
        WebhookConfig { url: url.into(), event_types: kinds.to_vec(), headers: Default::default() }
    }

    #[test]
    fn events_are_written_as_pusher_writes_them() {
        let client =
            WebhookEvent::client_event("presence-room", "client-typing", "{\"a\":1}", "1.2", Some("7"));
        assert_eq!(
            serde_json::to_value(&client).expect("json"),
            serde_json::json!({
                "name": "client_event", "channel": "presence-room", "event": "client-typing",
                "data": "{\"a\":1}", "socket_id": "1.2", "user_id": "7"
            })
        );
        let count = WebhookEvent::subscription_count("news", 3);
        assert_eq!(
            serde_json::to_value(&count).expect("json"),
            serde_json::json!({"name": "subscription_count", "channel": "news", "subscription_count": 3})
        );
        let member = WebhookEvent::member(WebhookKind::MemberAdded, "presence-room", "7");
        assert_eq!(
            serde_json::to_value(&member).expect("json"),
            serde_json::json!({"name": "member_added", "channel": "presence-room", "user_id": "7"})
        );
    }

    #[test]
    fn each_receiver_gets_the_kinds_it_wants_in_bounded_bodies() {
        let hooks = [
            hook("http://a/", &[WebhookKind::ChannelOccupied]),
            hook("http://b/", &[]),
            hook("http://c/", &[WebhookKind::CacheMiss]),
        ];
        let mut events: Vec<WebhookEvent> =
            (0..150).map(|n| WebhookEvent::channel(WebhookKind::ChannelOccupied, &format!("c{n}"))).collect();
        events.push(WebhookEvent::channel(WebhookKind::ChannelVacated, "c0"));
        let out = bodies(&hooks, &events, MAX_EVENTS_PER_BODY, 42);
        assert_eq!(bodies(&hooks, &events[..2], 1, 42).len(), 2 + 2, "one event a body without batching");
        let shape: Vec<(&str, usize)> = out.iter().map(|(url, _, n)| (url.as_str(), *n)).collect();
        assert_eq!(shape, [("http://a/", 100), ("http://a/", 50), ("http://b/", 100), ("http://b/", 51)]);
        let body: serde_json::Value = serde_json::from_str(&out[3].1).expect("json");
        assert_eq!(body["time_ms"], 42);
        assert_eq!(body["events"][50]["name"], "channel_vacated");
    }
}
