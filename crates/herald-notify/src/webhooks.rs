//! Webhook delivery: the jobs of the durable queue's `webhooks` lane, POSTed to the receivers the
//! apps configured, signed with the app secret as Pusher signs its webhooks.
//!
//! Webhooks have workers of their own, so a slow or dead receiver never delays a broadcast; each
//! attempt has a timeout, so one receiver that hangs holds one worker for that long at most.
//! A 2xx answer is done; a 4xx other than 429 is refused for good (dead letter at once); anything
//! else (5xx, 429, a timeout, a refused connection) is retried with capped exponential backoff
//! and jitter until the retry window is spent, then dead-lettered, listed and replayable with
//! every other dead letter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_store::{now_ms, ClaimedJob, Lane, Lanes, NewBroadcast, Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, instrument, warn};

use crate::service::{capped_backoff_ms, jittered, new_id};

/// The event name webhook jobs carry in the queue (and in the dead-letter list).
pub const WEBHOOK_JOB: &str = "webhook";

/// One receiver of one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub app_id: String,
    pub app_key: String,
    pub app_secret: String,
    pub url: String,
    /// Extra headers the app configured for this receiver.
    pub headers: Vec<(String, String)>,
}

/// How webhook delivery behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    /// Deliveries in flight at once, across every receiver.
    pub workers: usize,
    /// One attempt's limit, connection and answer included.
    pub timeout: Duration,
    /// How long a failing webhook is retried before it is dead-lettered.
    pub retry_window_ms: i64,
    pub backoff_base_ms: i64,
    pub backoff_cap_ms: i64,
    pub lease_ms: i64,
    pub poll_interval_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            workers: 8,
            timeout: Duration::from_secs(5),
            retry_window_ms: 300_000,
            backoff_base_ms: 1_000,
            backoff_cap_ms: 60_000,
            lease_ms: 30_000,
            poll_interval_ms: 500,
        }
    }
}

/// Upper bounds (ms) of the delivery latency histogram's buckets.
pub const LATENCY_BUCKETS_MS: [u64; 10] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000];

/// Webhook counters since start.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    /// Webhooks a receiver accepted (2xx).
    pub sent: AtomicU64,
    /// Attempts that failed (any reason), retried or not.
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Attempts by latency bucket (`LATENCY_BUCKETS_MS`, then one for slower), their sum and count.
    pub latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    pub latency_sum_ms: AtomicU64,
    pub latency_count: AtomicU64,
}

impl WebhookCounters {
    fn observe(&self, took: Duration) {
        let ms = took.as_millis() as u64;
        let bucket =
            LATENCY_BUCKETS_MS.iter().position(|bound| ms <= *bound).unwrap_or(LATENCY_BUCKETS_MS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    Delivered,
    /// Worth another try (5xx, 429, a timeout, a connection that failed).
    Failed(String),
    /// The receiver refused it for good (4xx but 429), or it can no longer be sent.
    Refused(String),
}

/// The webhook sender of one node.
#[derive(Debug)]
pub struct Webhooks {
    store: Store,
    client: reqwest::Client,
    /// Receivers by `(app id, url)`: a job names both.
    targets: HashMap<(String, String), WebhookTarget>,
    settings: WebhookSettings,
    wake: Notify,
    /// Deliveries in flight per receiver URL: one receiver may hold at most half the workers,
    /// so a receiver that hangs leaves the others (other apps') room.
    in_flight: std::sync::Mutex<HashMap<String, usize>>,
    /// Held while a worker reads the busy receivers, claims and counts its claim in flight: two
    /// workers woken together must not both take the last share of one receiver.
    claiming: tokio::sync::Mutex<()>,
    pub counters: WebhookCounters,
}

impl Webhooks {
    pub fn new(records: &crate::Records, targets: Vec<WebhookTarget>, settings: WebhookSettings) -> Webhooks {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // A receiver's redirect is its mistake to fix; following it would re-send the body
            // somewhere the app never named.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with default TLS settings builds");
        Webhooks {
            store: records.store().clone(),
            client,
            targets: targets
                .into_iter()
                .map(|target| ((target.app_id.clone(), target.url.clone()), target))
                .collect(),
            settings,
            wake: Notify::new(),
            in_flight: std::sync::Mutex::new(HashMap::new()),
            claiming: tokio::sync::Mutex::new(()),
            counters: WebhookCounters::default(),
        }
    }

    /// Most deliveries one receiver may have in flight at once.
    fn per_receiver(&self) -> usize {
        (self.settings.workers / 2).max(1)
    }

    /// The receivers that have all the deliveries in flight they may have.
    fn busy_receivers(&self) -> Vec<String> {
        let cap = self.per_receiver();
        let in_flight = self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        in_flight.iter().filter(|(_, count)| **count >= cap).map(|(url, _)| url.clone()).collect()
    }

    /// Counts a delivery to `url` in flight until the guard drops.
    fn start_delivery(&self, url: &str) -> InFlight<'_> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *in_flight.entry(url.to_owned()).or_default() += 1;
        InFlight { webhooks: self, url: url.to_owned() }
    }

    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    /// Queues one webhook body per receiver, in one transaction: stored, or an error and none.
    pub async fn enqueue(&self, app_id: &str, bodies: &[(String, String)]) -> Result<(), StoreError> {
        let jobs: Vec<NewBroadcast> = bodies
            .iter()
            .map(|(url, body)| NewBroadcast {
                id: new_id(),
                event_name: WEBHOOK_JOB.to_owned(),
                channels: vec![url.clone()],
                payload: body.clone(),
                lane: Lane::Webhooks,
            })
            .collect();
        self.store.enqueue(&job_source(app_id), &jobs).await?;
        self.wake.notify_waiters();
        Ok(())
    }

    /// Starts the webhook workers; they stop claiming when `shutdown` is cancelled and finish
    /// the attempt in hand (bounded by the timeout).
    pub fn start_workers(self: &Arc<Self>, shutdown: CancellationToken, tracker: &TaskTracker) {
        for worker in 0..self.settings.workers {
            let webhooks = self.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move { webhooks.work(worker, shutdown).await });
        }
    }

    async fn work(self: Arc<Self>, worker: usize, shutdown: CancellationToken) {
        let idle = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        while !shutdown.is_cancelled() {
            let wake = self.wake.notified();
            let claimed = {
                let _turn = self.claiming.lock().await;
                let busy = self.busy_receivers();
                let lease = self.settings.lease_ms;
                self.store.claim_skipping(Lanes::Webhooks, 1, lease, &busy).await.map(|jobs| {
                    let counted = |job: ClaimedJob| {
                        let url = job.channels.first().cloned().unwrap_or_default();
                        (self.start_delivery(&url), job)
                    };
                    jobs.into_iter().map(counted).collect::<Vec<_>>()
                })
            };
            let pause = match claimed {
                Ok(jobs) if !jobs.is_empty() => {
                    for (_in_flight, job) in jobs {
                        self.deliver(job).await;
                    }
                    continue;
                }
                Ok(_) => idle,
                Err(error) => {
                    warn!(worker, %error, "cannot claim webhook jobs; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = wake => {}
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    #[instrument(skip_all, fields(webhook = %job.id, attempt = job.attempts))]
    async fn deliver(&self, job: ClaimedJob) {
        let started = Instant::now();
        let attempt = self.attempt(&job).await;
        self.counters.observe(started.elapsed());
        let outcome = match attempt {
            Attempt::Delivered => {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
                debug!("webhook delivered");
                self.store.complete(&job.id, job.attempts, "{}").await
            }
            Attempt::Failed(error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                match next_attempt_in(&self.settings, job.attempts) {
                    Some(delay) => {
                        self.counters.retried.fetch_add(1, Ordering::Relaxed);
                        info!(%error, delay_ms = delay, "webhook failed; will retry");
                        self.store.retry_later(&job.id, job.attempts, now_ms() + delay, &error, "{}").await
                    }
                    None => {
                        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        warn!(%error, "webhook failed for the whole retry window; dead-lettered");
                        self.store.dead_letter(&job.id, job.attempts, &error, "{}").await
                    }
                }
            }
            Attempt::Refused(error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                warn!(%error, "webhook refused; dead-lettered");
                self.store.dead_letter(&job.id, job.attempts, &error, "{}").await
            }
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => info!("a later attempt took this webhook over; its outcome is the one recorded"),
            Err(error) => warn!(%error, "cannot record the webhook outcome; it will be retried"),
        }
    }

    /// One POST of the job's body to its receiver.
    async fn attempt(&self, job: &ClaimedJob) -> Attempt {
        let app_id = job.event_id.strip_prefix(JOB_SOURCE_PREFIX).unwrap_or_default();
        let url = job.channels.first().map(String::as_str).unwrap_or_default();
        let Some(target) = self.targets.get(&(app_id.to_owned(), url.to_owned())) else {
            return Attempt::Refused(format!("app {app_id:?} has no webhook {url:?} configured any more"));
        };
        let signature = herald_protocol::hmac_sha256_hex(&target.app_secret, &job.payload);
        let mut request = self
            .client
            .post(&target.url)
            .header("Content-Type", "application/json")
            .header("X-Pusher-Key", &target.app_key)
            .header("X-Pusher-Signature", signature);
        for (name, value) in &target.headers {
            request = request.header(name, value);
        }
        match request.body(job.payload.clone()).send().await {
            Ok(response) => classify(response.status()),
            Err(error) if error.is_timeout() => {
                Attempt::Failed(format!("no answer within {} ms", self.settings.timeout.as_millis()))
            }
            Err(error) => Attempt::Failed(format!("cannot reach the receiver: {}", error_chain(&error))),
        }
    }
}

/// The delay before the attempt after `attempts` failed ones, or `None` when it would fall
/// outside the retry window (counted in scheduled delays, so a replayed dead letter gets a whole
/// window again).
fn next_attempt_in(settings: &WebhookSettings, attempts: i64) -> Option<i64> {
    let backoff = |attempt| capped_backoff_ms(settings.backoff_base_ms, settings.backoff_cap_ms, attempt);
    let spent: i64 = (1..attempts).map(backoff).sum();
    let next = backoff(attempts);
    (spent + next <= settings.retry_window_ms).then(|| jittered(next))
}

/// One delivery in flight to `url`, uncounted on drop.
struct InFlight<'a> {
    webhooks: &'a Webhooks,
    url: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.webhooks.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = in_flight.get_mut(&self.url) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(&self.url);
            }
        }
        // A worker may be idle because this receiver was full.
        self.webhooks.wake.notify_one();
    }
}

const JOB_SOURCE_PREFIX: &str = "webhook:";

/// What a webhook job carries in the event id column: the app it belongs to.
fn job_source(app_id: &str) -> String {
    format!("{JOB_SOURCE_PREFIX}{app_id}")
}

fn classify(status: reqwest::StatusCode) -> Attempt {
    if status.is_success() {
        Attempt::Delivered
    } else if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
        Attempt::Refused(format!("the receiver answered {status}"))
    } else {
        Attempt::Failed(format!("the receiver answered {status}"))
    }
}

/// An error with its causes: reqwest's own message alone rarely says what went wrong.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn answers_are_done_retried_or_refused_as_pusher_does() {
        assert_eq!(classify(StatusCode::OK), Attempt::Delivered);
        assert_eq!(classify(StatusCode::NO_CONTENT), Attempt::Delivered);
        assert!(matches!(classify(StatusCode::INTERNAL_SERVER_ERROR), Attempt::Failed(_)));
        assert!(matches!(classify(StatusCode::BAD_GATEWAY), Attempt::Failed(_)));
        assert!(matches!(classify(StatusCode::TOO_MANY_REQUESTS), Attempt::Failed(_)));
        assert!(matches!(classify(StatusCode::GONE), Attempt::Refused(_)));
        assert!(matches!(classify(StatusCode::UNAUTHORIZED), Attempt::Refused(_)));
        // A redirect is not followed, and not a success either.
        assert!(matches!(classify(StatusCode::MOVED_PERMANENTLY), Attempt::Failed(_)));
    }

    #[test]
    fn the_retry_window_bounds_the_attempts_and_the_gaps_grow() {
        let settings = WebhookSettings {
            backoff_base_ms: 1_000,
            backoff_cap_ms: 60_000,
            retry_window_ms: 300_000,
            ..WebhookSettings::default()
        };
        let mut gaps = Vec::new();
        let mut attempts = 1;
        while let Some(gap) = next_attempt_in(&settings, attempts) {
            gaps.push(gap);
            attempts += 1;
        }
        // 1 + 2 + 4 + 8 + 16 + 32 + 60 × 3 = 243 s; one more 60 s gap would pass 300 s.
        assert_eq!(gaps.len(), 9, "{gaps:?}");
        assert!(gaps.windows(2).take(5).all(|pair| pair[1] > pair[0]), "{gaps:?}");
        assert!(gaps.iter().all(|gap| *gap <= 72_000), "capped, jitter included: {gaps:?}");
    }
}
