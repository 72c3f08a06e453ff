//! The notification service: validates and routes domain events, stores them with their jobs in
//! one transaction, and runs the queue workers that deliver them through the driver.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_store::{
    now_ms, AuditKind, ClaimedJob, Delivered, EventRecord, IngestQueue, IngestResult, Lanes, NewAudit,
    NewBroadcast, NewEvent, NewNotification, Preference, Store, StoreError,
};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, instrument, warn};

use crate::audit::AuditDetail;
use crate::catalog::{plan, CatalogSettings, Plan};
use crate::driver::{DeliveryError, Driver};
use crate::fields::{rfc3339, Check, FieldError, Fields};
use crate::lanes::PerLane;

/// Most events one ingest request may carry.
pub const MAX_BATCH: usize = 100;
/// Largest broadcast payload: Pusher's event data limit, so every driver can deliver it.
pub const MAX_PAYLOAD_BYTES: usize = 10 * 1024;

/// How the queue behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySettings {
    pub catalog: CatalogSettings,
    pub workers: usize,
    pub max_attempts: i64,
    pub backoff_base_ms: i64,
    pub backoff_cap_ms: i64,
    pub lease_ms: i64,
    pub poll_interval_ms: u64,
    /// `channels.admin_visibility = "public"`: admin channels keep their original public names.
    pub admin_channels_public: bool,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            catalog: CatalogSettings::default(),
            workers: 4,
            max_attempts: 8,
            backoff_base_ms: 1_000,
            backoff_cap_ms: 300_000,
            lease_ms: 30_000,
            poll_interval_ms: 500,
            admin_channels_public: false,
        }
    }
}

/// Most broadcast jobs a worker claims at once (one round trip), delivers, and records as
/// delivered in one transaction.
pub const CLAIM_BATCH: usize = 16;

/// Most field errors one refusal lists (a batch of 100 bad events stays a bounded answer).
pub const MAX_FIELD_ERRORS: usize = 100;

/// Why an ingest was refused. `Invalid` and `TooMany` are the caller's (422); `Storage` is ours (503).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Every field at fault (at least one, at most [`MAX_FIELD_ERRORS`]) with its event's index,
    /// in request order; the message is the first one's.
    #[error("{}", first_invalid(.errors))]
    Invalid { errors: Vec<(usize, FieldError)> },
    #[error("events: at most {MAX_BATCH} events per request")]
    TooMany,
    #[error("events: the batch is empty")]
    Empty,
    #[error("storage is unavailable")]
    Storage(StoreError),
    /// The batch collides with stored records (two events naming one notification id at once).
    #[error("events: {0}")]
    Conflict(StoreError),
}

impl From<StoreError> for IngestError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(_) => IngestError::Conflict(error),
            other => IngestError::Storage(other),
        }
    }
}

impl IngestError {
    /// The field at fault, as `events[2].data.amount`.
    pub fn field(&self) -> Option<String> {
        match self {
            IngestError::Invalid { errors } => {
                errors.first().map(|(index, error)| event_field(*index, &error.field))
            }
            IngestError::TooMany | IngestError::Empty | IngestError::Conflict(_) => Some("events".into()),
            IngestError::Storage(_) => None,
        }
    }
}

impl IngestError {
    /// One invalid field of event `index`.
    fn invalid(index: usize, field: &str, problem: String) -> IngestError {
        IngestError::Invalid { errors: vec![(index, FieldError { field: field.into(), problem })] }
    }

    /// Every `(field, problem)` at fault, fields as `events[2].data.amount`; empty for other errors.
    pub fn field_errors(&self) -> Vec<(String, String)> {
        match self {
            IngestError::Invalid { errors } => errors
                .iter()
                .map(|(index, error)| (event_field(*index, &error.field), error.problem.clone()))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// `events[2].data.amount: is required`: the message of the first invalid field.
fn first_invalid(errors: &[(usize, FieldError)]) -> String {
    match errors.first() {
        Some((index, error)) => format!("{}: {}", event_field(*index, &error.field), error.problem),
        None => "events: invalid".to_owned(),
    }
}

/// `events[2].data.amount`, or `events[2]` for the event itself.
fn event_field(index: usize, field: &str) -> String {
    if field.is_empty() {
        format!("events[{index}]")
    } else {
        format!("events[{index}].{field}")
    }
}

/// What the ingest answers for one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EventOutcome {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// `accepted`, `duplicate` or `ignored`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    pub notification_ids: Vec<String>,
    pub broadcasts_queued: usize,
}

/// Delivery counters since start (bounded: per lane and outcome).
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    pub delivered: PerLane<AtomicU64>,
    pub retried: PerLane<AtomicU64>,
    pub dead_lettered: PerLane<AtomicU64>,
    pub suppressed: AtomicU64,
    pub ignored: AtomicU64,
    pub accepted: AtomicU64,
}

/// The notification layer of one node.
#[derive(Debug)]
pub struct Notifier {
    store: Store,
    /// Ingest goes through the group-commit writers; everything else through `store`.
    writer: IngestQueue,
    records: crate::Records,
    driver: Driver,
    settings: NotifySettings,
    wake: Notify,
    /// Workers between waking and going idle again (claiming, delivering, claiming again).
    busy: AtomicUsize,
    /// Set by every ingest that queued jobs, cleared by a worker before it claims: a worker whose
    /// claim found nothing looks at it before it waits, so a commit that raced its claim (and
    /// woke nobody, a worker being busy) is not left waiting for the poll.
    queued_since_claim: AtomicBool,
    /// New jobs not yet claimed, as this node counts them (a hint for how many workers to wake).
    backlog: AtomicI64,
    paused: AtomicBool,
    pub counters: DeliveryCounters,
}

/// A fresh id for a notification or broadcast: 128 random bits, UUID-formatted.
pub fn new_id() -> String {
    let bits = fastrand::u128(..);
    let bits = (bits & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

impl Notifier {
    pub fn new(records: crate::Records, driver: Driver, settings: NotifySettings) -> Notifier {
        Notifier {
            store: records.store().clone(),
            writer: IngestQueue::new(records.store().clone()),
            records,
            driver,
            settings,
            wake: Notify::new(),
            busy: AtomicUsize::new(0),
            queued_since_claim: AtomicBool::new(false),
            backlog: AtomicI64::new(0),
            paused: AtomicBool::new(false),
            counters: DeliveryCounters::default(),
        }
    }

    /// The records this notifier writes, for their readers.
    pub fn records(&self) -> &crate::Records {
        &self.records
    }

    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    pub fn settings(&self) -> &NotifySettings {
        &self.settings
    }

    /// Stops (or resumes) claiming jobs; ingest keeps accepting. Used by operators and tests.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        self.wake.notify_waiters();
    }

    /// The channel name on the wire: Pusher's `private-` prefix on private channels.
    /// `[channels] admin_visibility = "public"`: admin channels go without `private-`.
    pub fn admin_channels_public(&self) -> bool {
        self.settings.admin_channels_public
    }

    pub fn wire_channel(&self, logical: &str) -> String {
        crate::CatalogChannel::new(logical).wire(self.settings.admin_channels_public)
    }

    /// Validates every event of the batch, then stores the accepted ones with their jobs in one
    /// transaction. Nothing is stored when any event is invalid.
    pub async fn ingest(&self, events: &[Value]) -> Result<Vec<EventOutcome>, IngestError> {
        if events.is_empty() {
            return Err(IngestError::Empty);
        }
        if events.len() > MAX_BATCH {
            return Err(IngestError::TooMany);
        }
        let mut planned = Vec::with_capacity(events.len());
        let mut invalid = Vec::new();
        for (index, event) in events.iter().enumerate() {
            match parse_envelope(event, &self.settings.catalog) {
                Ok(envelope) => planned.push(envelope),
                Err(errors) => invalid.extend(errors.into_iter().map(|error| (index, error))),
            }
        }
        if !invalid.is_empty() {
            invalid.truncate(MAX_FIELD_ERRORS);
            return Err(IngestError::Invalid { errors: invalid });
        }
        // Every preference the batch needs, in one query.
        let pairs: Vec<(&str, &str)> = planned
            .iter()
            .flat_map(|envelope| {
                let inbox = envelope
                    .plan
                    .notification
                    .as_ref()
                    .map(|n| (n.user_id.as_str(), n.notification_type.as_str()));
                let personal = envelope.plan.broadcast.as_ref().and_then(|b| b.personal.as_ref());
                inbox.into_iter().chain(personal.map(|(user_id, kind)| (user_id.as_str(), kind.as_str())))
            })
            .collect();
        let preferences =
            if pairs.is_empty() { HashMap::new() } else { self.store.preferences_of(&pairs).await? };
        let mut records = Vec::with_capacity(planned.len());
        let mut outcomes: Vec<EventOutcome> = Vec::with_capacity(planned.len());
        let mut first_of_id: HashMap<String, usize> = HashMap::new();
        let mut record_of: Vec<Option<usize>> = Vec::with_capacity(planned.len());
        for (index, envelope) in planned.into_iter().enumerate() {
            if let Some(&first) = first_of_id.get(&envelope.id) {
                let mut repeat = outcomes[first].clone();
                repeat.status = "duplicate".into();
                outcomes.push(repeat);
                record_of.push(None);
                continue;
            }
            first_of_id.insert(envelope.id.clone(), index);
            let (record, outcome) = self.record_for(index, envelope, &preferences).await?;
            record_of.push(Some(records.len()));
            records.push(record);
            outcomes.push(outcome);
        }
        let record_jobs: Vec<usize> = records.iter().map(|record| record.broadcasts.len()).collect();
        let results = self.writer.ingest(records).await?;
        for (outcome, record) in outcomes.iter_mut().zip(&record_of) {
            let Some(record) = record else { continue };
            match &results[*record] {
                IngestResult::Stored => {
                    if outcome.status == "ignored" {
                        self.counters.ignored.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                IngestResult::Duplicate { outcome: original } => {
                    if let Ok(mut stored) = serde_json::from_str::<EventOutcome>(original) {
                        stored.status = "duplicate".into();
                        *outcome = stored;
                    } else {
                        outcome.status = "duplicate".into();
                    }
                }
            }
        }
        let queued = results
            .iter()
            .zip(&record_jobs)
            .filter(|(result, _)| **result == IngestResult::Stored)
            .map(|(_, jobs)| jobs)
            .sum();
        self.wake_workers(queued);
        Ok(outcomes)
    }

    /// Builds what one event stores, applying the user's preferences (read for the whole batch).
    async fn record_for(
        &self,
        index: usize,
        envelope: Envelope,
        preferences: &HashMap<(String, String), Preference>,
    ) -> Result<(EventRecord, EventOutcome), IngestError> {
        let Envelope { id, event_type, occurred_at, raw, plan } = envelope;
        let Plan { broadcast, notification, ignored, campaign } = plan;
        let created_at = rfc3339(now_ms());
        let mut audits = vec![NewAudit {
            broadcast_id: None,
            kind: AuditKind::Received,
            detail: AuditDetail::Received { event_type: event_type.clone() }.to_json(),
        }];
        let mut notifications = Vec::new();
        let mut broadcasts = Vec::new();
        let notification_id = notification.as_ref().and_then(|n| n.id.clone()).unwrap_or_else(new_id);
        if let Some(reason) = &ignored {
            audits.push(NewAudit {
                broadcast_id: None,
                kind: AuditKind::Ignored,
                detail: AuditDetail::Ignored { reason: reason.clone() }.to_json(),
            });
        }
        // A repeat of a stored event is answered by the store with its original outcome; only a
        // new event may not reuse a notification id.
        // (Asked only for an event naming its notification id: one round trip less for the rest.)
        if let Some(given) = notification.as_ref().and_then(|n| n.id.as_deref()) {
            if !self.store.event_exists(&id).await? && self.store.notification_exists(given).await? {
                let problem = format!("notification {given:?} was already sent by another event; give each notification its own id");
                return Err(IngestError::invalid(index, "data.notification.id", problem));
            }
        }
        if let Some(planned) = notification {
            let key = (planned.user_id.clone(), planned.notification_type.clone());
            if preferences.get(&key).is_none_or(|preference| preference.in_app) {
                notifications.push(NewNotification {
                    id: notification_id.clone(),
                    user_id: planned.user_id,
                    notification_type: planned.notification_type,
                    title: planned.title,
                    message: planned.message,
                    priority: planned.priority,
                    data: planned.data.to_string(),
                    action_url: planned.action_url,
                });
            } else {
                audits.push(NewAudit {
                    broadcast_id: None,
                    kind: AuditKind::Suppressed,
                    detail: AuditDetail::Suppressed {
                        what: "inbox".into(),
                        user_id: planned.user_id,
                        channel: None,
                        reason: "in-app notifications are off for this type".into(),
                    }
                    .to_json(),
                });
            }
        }
        if let Some(mut planned) = broadcast {
            let broadcast_id = notification_id.clone();
            if let Some((user_id, notification_type)) = &planned.personal {
                let key = (user_id.clone(), notification_type.clone());
                if preferences.get(&key).is_some_and(|preference| !preference.realtime) {
                    let channel = crate::CatalogChannel::user(user_id).into_string();
                    planned.channels.retain(|name| *name != channel);
                    audits.push(NewAudit {
                        broadcast_id: Some(broadcast_id.clone()),
                        kind: AuditKind::Suppressed,
                        detail: AuditDetail::Suppressed {
                            what: "realtime".into(),
                            user_id: user_id.clone(),
                            channel: Some(channel.clone()),
                            reason: "real-time notifications are off for this type".into(),
                        }
                        .to_json(),
                    });
                    self.counters.suppressed.fetch_add(1, Ordering::Relaxed);
                }
            }
            if !planned.channels.is_empty() {
                let mut payload = json!({
                    "id": broadcast_id, "type": planned.event_name, "priority": planned.priority, "created_at": created_at,
                });
                if let Value::Object(payload) = &mut payload {
                    for (key, value) in planned.fields {
                        payload.insert(key, value);
                    }
                    if let Some(Value::Object(inner)) = payload.get_mut("notification") {
                        inner.insert("id".into(), Value::String(broadcast_id.clone()));
                    }
                }
                audits.push(NewAudit {
                    broadcast_id: Some(broadcast_id.clone()),
                    kind: AuditKind::Routed,
                    detail: AuditDetail::Routed {
                        event: planned.event_name.to_owned(),
                        channels: planned.channels.clone(),
                        lane: planned.lane.name().to_owned(),
                    }
                    .to_json(),
                });
                let payload = payload.to_string();
                if payload.len() > MAX_PAYLOAD_BYTES {
                    let problem = format!(
                        "the broadcast would carry {} bytes; Pusher channels accept at most {MAX_PAYLOAD_BYTES}",
                        payload.len()
                    );
                    return Err(IngestError::invalid(index, "data", problem));
                }
                broadcasts.push(NewBroadcast {
                    id: broadcast_id,
                    event_name: planned.event_name.to_owned(),
                    channels: planned.channels,
                    payload,
                    lane: planned.lane,
                });
            }
        }
        let outcome = EventOutcome {
            id: id.clone(),
            event_type: event_type.clone(),
            status: if ignored.is_some() { "ignored".into() } else { "accepted".into() },
            reason: ignored,
            notification_ids: notifications.iter().map(|n| n.id.clone()).collect(),
            broadcasts_queued: broadcasts.len(),
        };
        let record = EventRecord {
            event: NewEvent {
                id,
                event_type,
                occurred_at,
                payload: raw.to_string(),
                status: outcome.status.clone(),
            },
            notifications,
            broadcasts,
            audits,
            outcome: serde_json::to_string(&outcome).expect("outcomes serialize"),
            campaign,
        };
        Ok((record, outcome))
    }

    /// Starts the queue workers; they stop claiming when `shutdown` is cancelled and finish the
    /// job in hand.
    pub fn start_workers(self: &Arc<Self>, shutdown: CancellationToken, tracker: &TaskTracker) {
        for worker in 0..self.settings.workers {
            let notifier = self.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move { notifier.work(worker, shutdown).await });
        }
    }

    async fn work(self: Arc<Self>, worker: usize, shutdown: CancellationToken) {
        let idle = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        let mut busy = false;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let wake = self.wake.notified();
            if self.paused.load(Ordering::Acquire) {
                self.set_busy(&mut busy, false);
                tokio::select! {
                    _ = wake => {}
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(idle) => {}
                }
                continue;
            }
            self.set_busy(&mut busy, true);
            self.queued_since_claim.store(false, Ordering::SeqCst);
            let jobs =
                match self.store.claim(Lanes::Broadcasts, CLAIM_BATCH as i64, self.settings.lease_ms).await {
                    Ok(jobs) => jobs,
                    Err(error) => {
                        self.set_busy(&mut busy, false);
                        warn!(worker, %error, "cannot claim broadcast jobs; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                };
            if jobs.len() < CLAIM_BATCH {
                // Nothing more was due: the count starts again (jobs other nodes claimed, or
                // retries, leave no drift behind).
                self.backlog.store(0, Ordering::Relaxed);
            } else {
                self.backlog.fetch_sub(jobs.len() as i64, Ordering::Relaxed);
            }
            if jobs.is_empty() {
                self.set_busy(&mut busy, false);
                if self.queued_since_claim.swap(false, Ordering::SeqCst) {
                    // Jobs were committed while this claim ran, and maybe nobody was woken.
                    continue;
                }
                tokio::select! {
                    _ = wake => {}
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(idle) => {}
                }
                continue;
            }
            let mut delivered = Vec::with_capacity(jobs.len());
            for job in jobs {
                delivered.extend(self.deliver(job).await);
            }
            self.record_delivered(&delivered).await;
        }
    }

    /// Counts this worker busy (awake: claiming, delivering, claiming again) or idle.
    fn set_busy(&self, busy: &mut bool, now: bool) {
        if *busy != now {
            *busy = now;
            if now {
                self.busy.fetch_add(1, Ordering::SeqCst);
            } else {
                self.busy.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// After `jobs` new jobs were committed: wakes as many idle workers as the backlog needs (one
    /// per claim batch) beyond those already awake, who claim again when they finish. Under a
    /// stream of small groups one awake worker takes them all, claiming up to a batch at a time,
    /// instead of every group waking a worker for its one job (a claim and a record each).
    fn wake_workers(&self, jobs: usize) {
        if jobs == 0 {
            return;
        }
        let backlog = self.backlog.fetch_add(jobs as i64, Ordering::Relaxed) + jobs as i64;
        self.queued_since_claim.store(true, Ordering::SeqCst);
        let wanted = (backlog.max(jobs as i64) as usize).div_ceil(CLAIM_BATCH).min(self.settings.workers);
        for _ in 0..wanted.saturating_sub(self.busy.load(Ordering::SeqCst)) {
            self.wake.notify_one();
        }
    }

    /// Records a claim's deliveries in one transaction.
    async fn record_delivered(&self, delivered: &[Delivered]) {
        if delivered.is_empty() {
            return;
        }
        match self.store.complete_all(delivered).await {
            Ok(recorded) => {
                let stale = recorded.iter().filter(|recorded| !**recorded).count();
                if stale > 0 {
                    // Those workers' leases ran out before they finished and another attempt
                    // took the jobs: that attempt's outcome is the one recorded.
                    info!(stale, "a later attempt took these jobs over; its outcome is the one recorded");
                }
            }
            // The leases will expire and the jobs be delivered again: at-least-once.
            Err(error) => {
                warn!(%error, jobs = delivered.len(), "cannot record the deliveries; the jobs will be retried")
            }
        }
    }

    #[instrument(skip_all, fields(broadcast = %job.id, event = %job.event_name, attempt = job.attempts))]
    /// Delivers one job; a delivery is returned to be recorded with its claim's others, a failure
    /// is recorded here.
    async fn deliver(&self, job: ClaimedJob) -> Option<Delivered> {
        let channels: Vec<String> = job.channels.iter().map(|channel| self.wire_channel(channel)).collect();
        let started = Instant::now();
        let result = self.driver.deliver(&channels, &job.event_name, &job.payload).await;
        let took_ms = started.elapsed().as_millis() as i64;
        let outcome = match result {
            Ok(()) => {
                let detail = AuditDetail::Delivered {
                    attempt: job.attempts,
                    driver: self.driver.name().to_owned(),
                    lane: job.lane.name().to_owned(),
                    took_ms,
                    latency_ms: now_ms() - job.created_at,
                };
                self.counters.delivered.add(job.lane);
                debug!("delivered");
                return Some(Delivered { job_id: job.id, attempt: job.attempts, detail: detail.to_json() });
            }
            Err(DeliveryError::Retryable(error)) if job.attempts < self.settings.max_attempts => {
                let next = now_ms() + backoff_ms(&self.settings, job.attempts);
                let detail = AuditDetail::AttemptFailed {
                    attempt: job.attempts,
                    error: error.clone(),
                    took_ms,
                    next_attempt_at: rfc3339(next),
                };
                self.counters.retried.add(job.lane);
                info!(?error, "delivery failed; will retry");
                self.store.retry_later(&job.id, job.attempts, next, &error, &detail.to_json()).await
            }
            Err(error) => {
                let error = error.to_string();
                let detail =
                    AuditDetail::DeadLettered { attempts: job.attempts, error: error.clone(), took_ms };
                self.counters.dead_lettered.add(job.lane);
                warn!(?error, "delivery failed for good; dead-lettered");
                self.store.dead_letter(&job.id, job.attempts, &error, &detail.to_json()).await
            }
        };
        match outcome {
            Ok(true) => {}
            // This worker's lease ran out before it finished and another attempt took the job:
            // that attempt's outcome is the one recorded.
            Ok(false) => info!("a later attempt took this job over; its outcome is the one recorded"),
            // The lease will expire and the job be delivered again: at-least-once.
            Err(error) => warn!(%error, "cannot record the delivery outcome; the job will be retried"),
        }
        None
    }

    /// Releases crashed workers' leases (single-node SQLite only: no other node can hold them).
    pub async fn recover(&self) -> Result<u64, StoreError> {
        match self.store.backend() {
            herald_store::Backend::Sqlite => self.store.release_leases().await,
            herald_store::Backend::Postgres => Ok(0),
        }
    }
}

/// Capped exponential backoff with ±20 % jitter, for the attempt that just failed (1-based).
pub fn backoff_ms(settings: &NotifySettings, attempt: i64) -> i64 {
    jittered(capped_backoff_ms(settings.backoff_base_ms, settings.backoff_cap_ms, attempt))
}

/// ±20 % jitter, so jobs (or receivers) that failed together are not retried together.
pub(crate) fn jittered(delay_ms: i64) -> i64 {
    ((delay_ms as f64) * (0.8 + fastrand::f64() * 0.4)) as i64
}

/// `base × 2^(attempt − 1)`, at most `cap`, without jitter: the schedule both queues follow.
pub(crate) fn capped_backoff_ms(base: i64, cap: i64, attempt: i64) -> i64 {
    let exponent = (attempt - 1).clamp(0, 30) as u32;
    base.saturating_mul(1_i64 << exponent).min(cap)
}

/// A validated event envelope with its plan.
struct Envelope {
    id: String,
    event_type: String,
    occurred_at: i64,
    raw: Value,
    plan: Plan,
}

fn parse_envelope(event: &Value, catalog: &CatalogSettings) -> Result<Envelope, Vec<FieldError>> {
    let fields = Fields::new(event, "").map_err(|error| vec![error])?;
    let mut check = Check::default();
    let id = check.take(fields.optional_id("id"));
    let event_type = check.ok(fields.string("type"));
    let occurred_at = check.take(fields.optional_timestamp("occurred_at"));
    let data = check.ok(fields.raw("data").ok_or_else(|| fields.error("data", "is required")));
    let plan = match (&event_type, data) {
        (Some(event_type), Some(data)) => {
            plan(event_type, data, catalog).map_err(|errors| check.extend(errors)).ok()
        }
        _ => None,
    };
    check.finish()?;
    // A missing type, data or plan has recorded an error above; never panic on input.
    let (Some(event_type), Some(plan)) = (event_type, plan) else {
        return Err(vec![FieldError { field: "data".into(), problem: "is invalid".into() }]);
    };
    Ok(Envelope {
        id: id.unwrap_or_else(new_id),
        event_type,
        occurred_at: occurred_at.unwrap_or_else(now_ms),
        raw: event.clone(),
        plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let settings =
            NotifySettings { backoff_base_ms: 100, backoff_cap_ms: 1000, ..NotifySettings::default() };
        let first = backoff_ms(&settings, 1);
        assert!((80..=120).contains(&first), "{first}");
        let third = backoff_ms(&settings, 3);
        assert!((320..=480).contains(&third), "{third}");
        assert!(backoff_ms(&settings, 20) <= 1200);
    }

    #[test]
    fn ids_look_like_uuids() {
        let id = new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(new_id(), id);
    }
}
