//! The load step: accepted events per second from concurrent signed clients, then the queue
//! draining the backlog.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::subscriber::{alert, Subscriber};
use super::usage::{Probe, Usage, UsageClock};
use super::{keep, IngestConfig};
use crate::client::Api;
use crate::server::Server;

pub(crate) struct LoadResult {
    pub(crate) batch: usize,
    pub(crate) clients: usize,
    pub(crate) seconds: f64,
    pub(crate) requests: u64,
    /// HTTP status codes (`error: ...` for requests without an answer).
    pub(crate) statuses: BTreeMap<String, u64>,
    /// Per-event `status` of the answers.
    pub(crate) outcomes: BTreeMap<String, u64>,
    pub(crate) accepted: u64,
    /// Request latency, microseconds, sorted.
    pub(crate) latencies_us: Vec<u64>,
    /// Broadcasts the subscriber had when the window closed, and in the end.
    pub(crate) delivered_in_window: u64,
    pub(crate) delivered: u64,
    /// Broadcasts received after the window, while the queue drained.
    pub(crate) delivered_in_drain: u64,
    /// From the start of the window to the last broadcast received.
    pub(crate) delivery_secs: f64,
    /// From the end of the window until everything accepted was delivered (or the wait ended).
    pub(crate) drain_secs: f64,
    pub(crate) usage: Usage,
    /// CPU and storage while the queue drained (no more ingest).
    pub(crate) drain_usage: Usage,
    pub(crate) errors: Vec<String>,
    pub(crate) dropped: bool,
    /// PostgreSQL: transactions (committed, rolled back) in the database over the whole step,
    /// window and drain, read after the server stopped.
    pub(crate) transactions: Option<(i64, i64)>,
}

impl LoadResult {
    pub(crate) fn per_second(&self) -> f64 {
        self.accepted as f64 / self.seconds.max(1e-9)
    }

    pub(crate) fn delivered_per_second(&self) -> f64 {
        self.delivered as f64 / self.delivery_secs.max(1e-9)
    }
}

#[derive(Default)]
struct LoadWorker {
    statuses: BTreeMap<String, u64>,
    outcomes: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
    errors: Vec<String>,
}

async fn load_worker(
    api: Api,
    run: String,
    batch: usize,
    worker: usize,
    deadline: Instant,
    max_requests: u64,
) -> LoadWorker {
    let mut out = LoadWorker::default();
    let mut sent = 0u64;
    while sent < max_requests && Instant::now() < deadline {
        let mut events: Vec<Value> = (0..batch)
            .map(|index| {
                let id = format!("{run}-b{batch}-w{worker}-r{sent}-e{index}");
                alert(&id, json!({ "w": worker, "r": sent, "e": index }))
            })
            .collect();
        let body =
            if batch == 1 { events.remove(0).to_string() } else { json!({ "events": events }).to_string() };
        let call = Instant::now();
        match api.domain_events(body).await {
            Ok((status, answer)) => {
                *out.statuses.entry(status.to_string()).or_default() += 1;
                let parsed: Option<Value> = serde_json::from_slice(&answer).ok();
                match parsed.as_ref().and_then(|answer| answer["events"].as_array()) {
                    Some(outcomes) if (200..300).contains(&status) => {
                        for outcome in outcomes {
                            let status = outcome["status"].as_str().unwrap_or("(none)");
                            *out.outcomes.entry(status.to_owned()).or_default() += 1;
                        }
                    }
                    _ => keep(
                        &mut out.errors,
                        format!(
                            "{status}: {}",
                            String::from_utf8_lossy(&answer).chars().take(200).collect::<String>()
                        ),
                    ),
                }
            }
            Err(error) => {
                *out.statuses.entry("error".to_owned()).or_default() += 1;
                keep(&mut out.errors, format!("{error:#}"));
            }
        }
        out.latencies_us.push(call.elapsed().as_micros() as u64);
        sent += 1;
    }
    out
}

pub(super) async fn run(
    server: &Server,
    postgres: Option<Probe<'_>>,
    config: &IngestConfig,
    batch: usize,
    label: &str,
) -> anyhow::Result<LoadResult> {
    let api = Api::new(server.port)?;
    let epoch = Instant::now();
    let subscriber = Subscriber::open(server, epoch, None).await?;
    let mut postgres = postgres;
    let clock = UsageClock::start(server, postgres.as_mut()).await;
    eprintln!(
        "ingest [{label}]: {} clients × batches of {batch} for {:.0} s",
        config.clients,
        config.duration.as_secs_f64()
    );
    let run = format!("p{}", std::process::id());
    let started = Instant::now();
    let deadline = started + config.duration;
    let max_requests = 1_000_000;
    let workers: Vec<JoinHandle<LoadWorker>> = (0..config.clients.max(1))
        .map(|worker| {
            tokio::spawn(load_worker(api.clone(), run.clone(), batch, worker, deadline, max_requests))
        })
        .collect();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies_us = Vec::new();
    let mut errors = Vec::new();
    let limit = tokio::time::Instant::now() + config.duration + Duration::from_secs(30);
    for worker in workers {
        let abort = worker.abort_handle();
        match tokio::time::timeout_at(limit, worker).await {
            Ok(Ok(output)) => {
                for (status, count) in output.statuses {
                    *statuses.entry(status).or_default() += count;
                }
                for (status, count) in output.outcomes {
                    *outcomes.entry(status).or_default() += count;
                }
                latencies_us.extend(output.latencies_us);
                for error in output.errors {
                    keep(&mut errors, error);
                }
            }
            Ok(Err(error)) => keep(&mut errors, format!("worker failed: {error}")),
            Err(_) => {
                abort.abort();
                keep(&mut errors, "worker still busy 30 s after the window".to_owned());
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let window_end = epoch.elapsed().as_nanos() as u64;
    let delivered_in_window = subscriber.delivered();
    let usage = clock.stop(server, postgres.as_mut()).await;
    latencies_us.sort_unstable();
    let requests: u64 = statuses.values().sum();
    let accepted = outcomes.get("accepted").copied().unwrap_or(0);
    eprintln!(
        "ingest [{label}]: {accepted} accepted in {seconds:.1} s ({:.0}/s); {delivered_in_window} delivered so far; \
         waiting up to {:.0} s for the rest",
        accepted as f64 / seconds.max(1e-9),
        config.drain.as_secs_f64()
    );
    // Let the queue deliver the backlog: until everything accepted arrived, the wait is over, or
    // nothing arrived for 10 s.
    let drain_clock = UsageClock::start(server, postgres.as_mut()).await;
    let drain_started = Instant::now();
    let drain_deadline = drain_started + config.drain;
    let mut last = (subscriber.delivered(), Instant::now());
    let mut next_report = Instant::now() + Duration::from_secs(10);
    while subscriber.delivered() < accepted && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = subscriber.delivered();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(10) {
            break;
        }
        if Instant::now() >= next_report {
            eprintln!("  [{label}] {now}/{accepted} delivered");
            next_report += Duration::from_secs(10);
        }
    }
    let drain_usage = drain_clock.stop(server, postgres.as_mut()).await;
    let delivered = subscriber.delivered();
    let last_ns = subscriber.last_ns.load(Ordering::Relaxed);
    let drain_secs = if delivered >= accepted {
        last_ns.saturating_sub(window_end) as f64 / 1e9
    } else {
        drain_started.elapsed().as_secs_f64()
    };
    let delivery_secs = last_ns.saturating_sub(started.duration_since(epoch).as_nanos() as u64) as f64 / 1e9;
    let dropped = subscriber.close().await;
    eprintln!(
        "ingest [{label}]: {delivered}/{accepted} delivered, the last {drain_secs:.1} s after the window"
    );
    Ok(LoadResult {
        batch,
        clients: config.clients,
        seconds,
        requests,
        statuses,
        outcomes,
        accepted,
        latencies_us,
        delivered_in_window,
        delivered,
        delivered_in_drain: delivered - delivered_in_window.min(delivered),
        delivery_secs,
        drain_secs: drain_secs.max(0.0),
        usage,
        errors,
        dropped,
        drain_usage,
        transactions: None,
    })
}
