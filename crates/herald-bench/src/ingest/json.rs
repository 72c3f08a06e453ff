//! The ingest phase as JSON (`--json`).

use serde_json::{json, Value};

use super::usage::Usage;
use super::{IngestConfig, IngestResults};
use crate::phases::percentile;

fn usage_json(usage: &Usage) -> Value {
    let round = |value: f64| (value * 100.0).round() / 100.0;
    json!({
        "server_cpu_seconds": round(usage.cpu.server),
        "bench_cpu_seconds": round(usage.cpu.bench),
        "postgres_backends_cpu_seconds": usage.postgres_backends.map(round),
        "postgres_wal_checkpoint_bgwriter_cpu_seconds": usage.postgres_aux.map(round),
        "other_processes_cpu_seconds": round(usage.others()),
        "wall_seconds": round(usage.cpu.wall),
        "server_threads_cpu_seconds": usage.threads.iter().map(|(name, secs)| json!([name, round(*secs)])).collect::<Vec<_>>(),
        "server_write_bytes": usage.write_bytes,
        "server_write_calls": usage.write_calls,
        "wal": usage.wal.map(|wal| json!({ "records": wal.records, "bytes": wal.bytes, "writes": wal.writes, "syncs": wal.syncs })),
    })
}

pub(crate) fn to_json(config: &IngestConfig, results: &IngestResults) -> Value {
    let backends: Vec<Value> = results
        .backends
        .iter()
        .map(|b| {
            let loads: Vec<Value> = b
                .loads
                .iter()
                .map(|l| {
                    json!({
                        "batch": l.batch,
                        "clients": l.clients,
                        "seconds": l.seconds,
                        "requests": l.requests,
                        "statuses": l.statuses,
                        "outcomes": l.outcomes,
                        "accepted": l.accepted,
                        "accepted_per_second": l.per_second(),
                        "latency_p50_us": percentile(&l.latencies_us, 50.0),
                        "latency_p99_us": percentile(&l.latencies_us, 99.0),
                        "delivered_in_window": l.delivered_in_window,
                        "delivered": l.delivered,
                        "delivered_per_second": l.delivered_per_second(),
                        "drain_seconds": l.drain_secs,
                        "subscriber_dropped": l.dropped,
                        "errors": l.errors,
                        "usage": usage_json(&l.usage),
                        "delivered_in_drain": l.delivered_in_drain,
                        "drain_usage": usage_json(&l.drain_usage),
                        "postgres_transactions": l.transactions.map(|(commits, rollbacks)| json!({ "commits": commits, "rollbacks": rollbacks })),
                    })
                })
                .collect();
            let latency = b.latency.as_ref().map(|l| {
                json!({
                    "events": l.events,
                    "warmup": l.warmup,
                    "interval_ms": l.interval_ms,
                    "samples": l.samples_us.len(),
                    "p50_us": percentile(&l.samples_us, 50.0),
                    "p99_us": percentile(&l.samples_us, 99.0),
                    "max_us": percentile(&l.samples_us, 100.0),
                    "ingest_call_p50_us": percentile(&l.post_us, 50.0),
                    "ingest_call_p99_us": percentile(&l.post_us, 99.0),
                    "statuses": l.statuses,
                    "outcomes": l.outcomes,
                    "missing": l.missing,
                    "worst": l.worst,
                    "subscriber_dropped": l.dropped,
                    "errors": l.errors,
                    "usage": usage_json(&l.usage),
                    "postgres_transactions": l.transactions.map(|(commits, rollbacks)| json!({ "commits": commits, "rollbacks": rollbacks })),
                })
            });
            json!({
                "backend": b.backend.label(),
                "skipped": b.skipped,
                "load_average_start": b.load_start,
                "load_average_end": b.load_end,
                "loads": loads,
                "latency": latency,
                "failures": b.failures.iter().map(|(step, error)| json!({ "step": step, "error": error })).collect::<Vec<_>>(),
                "server_log": { "warnings": b.log.warnings, "errors": b.log.errors, "panics": b.log.panics, "samples": b.log.samples },
            })
        })
        .collect();
    json!({
        "clients": config.clients,
        "duration": config.duration.as_secs_f64(),
        "batches": config.batches,
        "events": config.events,
        "drain_seconds": config.drain.as_secs_f64(),
        "interval_ms": config.interval.as_millis() as u64,
        "postgres_url": config.postgres_url,
        "backends": backends,
    })
}
