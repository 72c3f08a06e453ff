//! The latency step: single events one at a time, each timed from its ingest call to its
//! broadcast at the subscriber.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::subscriber::{alert, Subscriber};
use super::usage::{Probe, Usage, UsageClock};
use super::{keep, IngestConfig};
use crate::client::Api;
use crate::server::Server;

/// How long the latency step waits for one event's broadcast.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct LatencyResult {
    pub(crate) events: usize,
    pub(crate) warmup: usize,
    pub(crate) interval_ms: u64,
    /// Ingest → broadcast received, microseconds, sorted.
    pub(crate) samples_us: Vec<u64>,
    /// The ingest call itself (until its 202), microseconds, sorted.
    pub(crate) post_us: Vec<u64>,
    pub(crate) statuses: BTreeMap<String, u64>,
    pub(crate) outcomes: BTreeMap<String, u64>,
    /// Events whose broadcast did not arrive within 5 s.
    pub(crate) missing: usize,
    /// The slowest samples: (event number, microseconds).
    pub(crate) worst: Vec<(u64, u64)>,
    pub(crate) usage: Usage,
    pub(crate) errors: Vec<String>,
    pub(crate) dropped: bool,
    pub(crate) transactions: Option<(i64, i64)>,
}

pub(super) async fn run(
    server: &Server,
    postgres: Option<Probe<'_>>,
    config: &IngestConfig,
    label: &str,
) -> anyhow::Result<LatencyResult> {
    let api = Api::new(server.port)?;
    let epoch = Instant::now();
    let (samples_in, mut samples) = mpsc::unbounded_channel();
    let subscriber = Subscriber::open(server, epoch, Some(samples_in)).await?;
    let mut postgres = postgres;
    let clock = UsageClock::start(server, postgres.as_mut()).await;
    let total = config.warmup + config.events;
    eprintln!(
        "ingest [{label}]: {} + {} warm-up single events, {} ms apart",
        config.events,
        config.warmup,
        config.interval.as_millis()
    );
    let run = format!("p{}", std::process::id());
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut samples_us = Vec::with_capacity(config.events);
    let mut post_us = Vec::with_capacity(config.events);
    let mut worst: Vec<(u64, u64)> = Vec::new();
    let mut errors = Vec::new();
    let mut missing = 0;
    for index in 0..total as u64 {
        let measured = index >= config.warmup as u64;
        let sent = epoch.elapsed().as_nanos() as u64;
        let body = alert(&format!("{run}-latency-{index}"), json!({ "n": index, "t": sent })).to_string();
        let call = Instant::now();
        let answer = api.domain_events(body).await;
        let took = call.elapsed().as_micros() as u64;
        let accepted = match answer {
            Ok((status, answer)) => {
                let outcome = serde_json::from_slice::<Value>(&answer)
                    .ok()
                    .and_then(|answer| answer["events"][0]["status"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "(none)".to_owned());
                let accepted = outcome == "accepted";
                if !accepted {
                    keep(
                        &mut errors,
                        format!(
                            "{status}: {}",
                            String::from_utf8_lossy(&answer).chars().take(200).collect::<String>()
                        ),
                    );
                }
                if measured {
                    *statuses.entry(status.to_string()).or_default() += 1;
                    *outcomes.entry(outcome).or_default() += 1;
                }
                accepted
            }
            Err(error) => {
                if measured {
                    *statuses.entry("error".to_owned()).or_default() += 1;
                }
                keep(&mut errors, format!("{error:#}"));
                false
            }
        };
        if measured {
            post_us.push(took);
        }
        if accepted {
            let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
            loop {
                match tokio::time::timeout_at(deadline, samples.recv()).await {
                    Ok(Some((n, nanos))) if n == index => {
                        if measured {
                            samples_us.push(nanos / 1000);
                            worst.push((index, nanos / 1000));
                        }
                        break;
                    }
                    // A late (or repeated) copy of an earlier event.
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => {
                        if measured {
                            missing += 1;
                        }
                        break;
                    }
                }
            }
        } else if measured {
            missing += 1;
        }
        if (index + 1) % 50 == 0 || index + 1 == total as u64 {
            eprintln!("  [{label}] {}/{total} events", index + 1);
        }
        tokio::time::sleep(config.interval).await;
    }
    let usage = clock.stop(server, postgres.as_mut()).await;
    let dropped = subscriber.close().await;
    samples_us.sort_unstable();
    post_us.sort_unstable();
    worst.sort_unstable_by_key(|&(_, micros)| std::cmp::Reverse(micros));
    worst.truncate(5);
    Ok(LatencyResult {
        events: config.events,
        warmup: config.warmup,
        interval_ms: config.interval.as_millis() as u64,
        samples_us,
        post_us,
        statuses,
        outcomes,
        missing,
        worst,
        usage,
        errors,
        dropped,
        transactions: None,
    })
}
