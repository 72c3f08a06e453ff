//! Delivery rates for `herald status`: a sample of the counters every second, kept for a
//! minute (61 samples, fixed memory), so rates can be read as "per second over the last minute".

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

const WINDOW: usize = 61;

/// The counters at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) at: Instant,
    pub(crate) accepted: u64,
    pub(crate) delivered: u64,
    pub(crate) failed: u64,
    pub(crate) messages_out: u64,
}

/// The last minute of counter samples.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    samples: Mutex<VecDeque<Sample>>,
}

impl Rates {
    /// Keeps `now`, forgetting the oldest sample past a minute (`admin::sample_rates` calls it
    /// every second).
    pub(crate) fn record(&self, now: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if samples.len() == WINDOW {
            samples.pop_front();
        }
        samples.push_back(now);
    }

    /// Per-second rates over the sampled window (up to a minute); zeros before two samples.
    pub(crate) fn read(&self, now: Sample) -> crate::status::Rates {
        let samples = self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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
