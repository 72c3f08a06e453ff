//! Delivery rates for `herald status`: a sample of the counters every second, kept for a
//! minute (61 samples, fixed memory), so rates can be read as "per second over the last minute".

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::state::SharedState;

const WINDOW: usize = 61;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    accepted: u64,
    delivered: u64,
    failed: u64,
    messages_out: u64,
}

/// The last minute of counter samples.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    samples: Mutex<VecDeque<Sample>>,
}

fn sample(state: &SharedState) -> Sample {
    let counters = &state.notifier.counters;
    Sample {
        at: Instant::now(),
        accepted: counters.accepted.load(Ordering::Relaxed),
        delivered: counters.delivered.load().total(),
        failed: counters.retried.load().total() + counters.dead_lettered.load().total(),
        messages_out: state.apps().iter().map(|app| app.messages_out.load(Ordering::Relaxed)).sum(),
    }
}

impl Rates {
    /// Samples every second until shutdown.
    pub(crate) async fn run(state: SharedState) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let now = sample(&state);
                    let mut samples = state.rates.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if samples.len() == WINDOW {
                        samples.pop_front();
                    }
                    samples.push_back(now);
                }
            }
        }
    }

    /// Per-second rates over the sampled window (up to a minute); zeros before two samples.
    pub(crate) fn read(&self, state: &SharedState) -> crate::status::Rates {
        let samples = self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = sample(state);
        let Some(first) = samples.front().copied() else { return crate::status::Rates::default() };
        let seconds = now.at.duration_since(first.at).as_secs_f64();
        if seconds < 0.5 {
            return crate::status::Rates::default();
        }
        let rate = |now: u64, then: u64| ((now.saturating_sub(then)) as f64 / seconds * 10.0).round() / 10.0;
        crate::status::Rates {
            window_secs: seconds.round(),
            accepted_events: rate(now.accepted, first.accepted),
            delivered: rate(now.delivered, first.delivered),
            failed_attempts: rate(now.failed, first.failed),
            messages_out: rate(now.messages_out, first.messages_out),
        }
    }
}
