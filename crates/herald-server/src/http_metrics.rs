//! HTTP request counts and latency histograms per matched route, as `/metrics` exposes them.
//! Bounded by the number of routes (unmatched requests count as `other`).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Upper bounds (seconds) of the request latency histogram.
pub(crate) const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Debug, Default)]
pub(crate) struct Histogram {
    pub(crate) counts: [u64; BUCKETS.len()],
    pub(crate) count: u64,
    pub(crate) sum: f64,
}

/// Request counts and latencies per matched route.
#[derive(Debug, Default)]
pub(crate) struct HttpMetrics {
    pub(crate) requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub(crate) latency: Mutex<BTreeMap<String, Histogram>>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl HttpMetrics {
    pub(crate) fn record(&self, route: &str, status: u16, seconds: f64) {
        *lock(&self.requests).entry((route.to_owned(), status)).or_default() += 1;
        let mut latency = lock(&self.latency);
        let histogram = latency.entry(route.to_owned()).or_default();
        for (index, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                histogram.counts[index] += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }
}
