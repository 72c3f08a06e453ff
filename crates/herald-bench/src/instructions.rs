//! `--only instructions`: user-space instructions per delivery, counted by callgrind on a
//! scripted fan-out — a regression figure free of the machine's noise, not a timing.
//!
//! herald runs twice under `valgrind --tool=callgrind`, each time with `subscribers`
//! subscribers on one channel: once with no trigger (the baseline: start-up, handshakes,
//! subscriptions, shutdown), once with `events` triggers sent one after another, each awaited
//! at every subscriber. The server is stopped with SIGTERM so that callgrind writes its totals;
//! the difference of the two totals (`Ir`, every thread together) divided by the deliveries is
//! the figure. It includes each trigger's HTTP request and signature check, spread over the
//! subscribers.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{answer_ping, close, connect_subscribed, ws_url, Api};
use crate::server::Server;

const CHANNEL: &str = "bench-instructions";
const EVENT: &str = "bench-ir";

/// The result of the two runs.
pub(crate) struct Instructions {
    pub(crate) subscribers: usize,
    pub(crate) events: usize,
    pub(crate) baseline_ir: u64,
    pub(crate) run_ir: u64,
    pub(crate) deliveries: u64,
}

impl Instructions {
    pub(crate) fn per_delivery(&self) -> f64 {
        self.run_ir.saturating_sub(self.baseline_ir) as f64 / self.deliveries.max(1) as f64
    }

    pub(crate) fn per_trigger(&self) -> f64 {
        self.run_ir.saturating_sub(self.baseline_ir) as f64 / self.events.max(1) as f64
    }
}

/// The two runs.
pub(crate) async fn run(
    bin: &Path,
    subscribers: usize,
    events: usize,
    concurrency: usize,
    keep: Option<&Path>,
) -> anyhow::Result<Instructions> {
    let (baseline_ir, _) = one(bin, subscribers, 0, concurrency, keep).await?;
    let (run_ir, deliveries) = one(bin, subscribers, events, concurrency, keep).await?;
    let expected = (subscribers * events) as u64;
    if deliveries != expected {
        bail!("{deliveries} of {expected} deliveries arrived under callgrind");
    }
    Ok(Instructions { subscribers, events, baseline_ir, run_ir, deliveries })
}

/// One run under callgrind: (total instructions, deliveries).
/// The callgrind output is kept in `keep` when given (`callgrind.0.out`: the baseline,
/// `callgrind.N.out`: with N triggers; read them with `callgrind_annotate`).
async fn one(
    bin: &Path,
    subscribers: usize,
    events: usize,
    concurrency: usize,
    keep: Option<&Path>,
) -> anyhow::Result<(u64, u64)> {
    let out_dir = match keep {
        Some(dir) => dir.to_owned(),
        None => std::env::temp_dir().join(format!("herald-bench-callgrind-{}", std::process::id())),
    };
    std::fs::create_dir_all(&out_dir)?;
    let out = out_dir.join(format!("callgrind.{events}.out"));
    let wrapper = vec![
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        "--quiet".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
    ];
    // warn: the log lines cost instructions of their own.
    let server = Server::start_wrapped(bin, "warn", &[], None, &wrapper, Duration::from_secs(120))?;
    eprintln!(
        "instructions: herald under callgrind (pid {}), {subscribers} subscribers, {events} triggers",
        server.pid
    );
    let delivered = Arc::new(AtomicU64::new(0));
    let url = ws_url(server.port);
    let connections: Vec<_> = futures_util::stream::iter(0..subscribers)
        .map(|_| connect_subscribed(&url, Some(CHANNEL)))
        .buffer_unordered(concurrency.clamp(1, 50))
        .collect()
        .await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for connection in connections {
        let mut ws = connection.context("a subscriber under callgrind")?;
        let delivered = delivered.clone();
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    message = ws.next() => match message {
                        Some(Ok(Message::Text(text))) => {
                            if text.as_str().contains(EVENT) {
                                delivered.fetch_add(1, Ordering::Relaxed);
                            } else {
                                answer_ping(&mut ws, text.as_str()).await;
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                    _ = async { let _ = stopped.wait_for(|stop| *stop).await; } => {
                        close(ws).await;
                        return;
                    }
                }
            }
        }));
    }
    let api = Api::new(server.port)?;
    for event in 0..events {
        let status = api.trigger(CHANNEL, EVENT, &format!("{{\"n\":{event}}}")).await?;
        if status != 200 {
            bail!("trigger answered {status} under callgrind");
        }
        let want = ((event + 1) * subscribers) as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while delivered.load(Ordering::Relaxed) < want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    let deliveries = delivered.load(Ordering::Relaxed);
    if !server.terminate(Duration::from_secs(120)) {
        bail!("herald under callgrind did not exit on SIGTERM");
    }
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("no callgrind output at {}", out.display()))?;
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&out_dir);
    }
    let total = totals(&text).context("no `summary:` or `totals:` line in the callgrind output")?;
    eprintln!("instructions: {total} instructions, {deliveries} deliveries");
    Ok((total, deliveries))
}

/// The `Ir` total of a callgrind output file.
fn totals(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("summary:").or_else(|| line.strip_prefix("totals:")))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

pub(crate) fn to_markdown(result: &anyhow::Result<Instructions>) -> String {
    match result {
        Ok(r) => format!(
            "| Callgrind (user-space instructions, every thread) | Result |\n|---|---|\n\
             | Scripted fan-out | {} subscribers on one channel, {} triggers one at a time |\n\
             | Instructions: baseline (no trigger) / with the triggers | {} / {} |\n\
             | **Instructions per delivery** | **{:.0}** ({:.0} per trigger, {} deliveries) |\n",
            r.subscribers,
            r.events,
            r.baseline_ir,
            r.run_ir,
            r.per_delivery(),
            r.per_trigger(),
            r.deliveries
        ),
        Err(error) => format!("Callgrind fan-out failed: {error:#}\n"),
    }
}

pub(crate) fn to_json(result: &anyhow::Result<Instructions>) -> Value {
    match result {
        Ok(r) => json!({
            "subscribers": r.subscribers,
            "events": r.events,
            "baseline_instructions": r.baseline_ir,
            "run_instructions": r.run_ir,
            "deliveries": r.deliveries,
            "instructions_per_delivery": r.per_delivery().round(),
            "instructions_per_trigger": r.per_trigger().round(),
        }),
        Err(error) => json!({ "error": format!("{error:#}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::totals;

    #[test]
    fn reads_the_totals() {
        assert_eq!(totals("events: Ir\nfl=x\nsummary: 123456\ntotals: 123456\n"), Some(123456));
        assert_eq!(totals("events: Ir\n"), None);
    }
}
