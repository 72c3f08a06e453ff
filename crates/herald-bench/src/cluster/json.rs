//! The cluster phase as JSON (`--json`): each set-up with the latency and throughput objects of
//! phases 2 and 3, the latency on node A and on the other nodes, and the ratios to the single
//! node.

use serde_json::{json, Value};

use super::report::{on_first, on_others};
use super::{ClusterConfig, ClusterResults, Setup, SetupResult};
use crate::phases::percentile;
use crate::{latency_json, throughput_json};

fn setup_json(s: &SetupResult) -> Value {
    let round = |value: f64| (value * 100.0).round() / 100.0;
    let latency = s.latency.as_ref().map(|l| {
        let mut value = latency_json(l);
        let (first, others) = (on_first(l), on_others(l));
        value["node_a_p50_us"] = json!(percentile(&first, 50.0));
        value["node_a_p99_us"] = json!(percentile(&first, 99.0));
        // Null with one node: no subscriber is on another node.
        let on_others = |p: f64| (!others.is_empty()).then(|| percentile(&others, p));
        value["other_nodes_samples"] = json!(others.len());
        value["other_nodes_p50_us"] = json!(on_others(50.0));
        value["other_nodes_p99_us"] = json!(on_others(99.0));
        value["redis_cpu_seconds"] = json!(s.redis_cpu.latency.map(round));
        value
    });
    let throughput = s.throughput.as_ref().map(|t| {
        let mut value = throughput_json(t);
        value["node_delivered"] = json!(t.node_delivered);
        value["redis_cpu_seconds"] = json!(s.redis_cpu.throughput.map(round));
        value
    });
    json!({
        "setup": s.setup.key(),
        "label": s.label(),
        "nodes": s.nodes,
        "latency": latency,
        "throughput": throughput,
        "failures": s.failures,
        "load_average_start": s.load_start,
        "load_average_end": s.load_end,
        "server_log": {
            "warnings": s.log.warnings,
            "errors": s.log.errors,
            "panics": s.log.panics,
            "samples": s.log.samples,
        },
    })
}

/// `value / base`, rounded to 3 decimals; null unless both are positive.
fn ratio(base: f64, value: f64) -> Value {
    if base > 0.0 && value > 0.0 {
        json!(((value / base) * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

/// The ratios of set-up `s` to the baseline `base`.
fn ratios_json(base: &SetupResult, s: &SetupResult) -> Value {
    let mut value = json!({ "setup": s.setup.key() });
    if let (Some(b), Some(l)) = (&base.latency, &s.latency) {
        let at = |samples: &[u64], p: f64| percentile(samples, p) as f64;
        value["latency_p50"] = ratio(at(&b.samples_us, 50.0), at(&l.samples_us, 50.0));
        value["latency_p99"] = ratio(at(&b.samples_us, 99.0), at(&l.samples_us, 99.0));
        value["node_a_latency_p50"] = ratio(at(&b.samples_us, 50.0), at(&on_first(l), 50.0));
        value["node_a_latency_p99"] = ratio(at(&b.samples_us, 99.0), at(&on_first(l), 99.0));
        value["other_nodes_latency_p50"] = ratio(at(&b.samples_us, 50.0), at(&on_others(l), 50.0));
        value["other_nodes_latency_p99"] = ratio(at(&b.samples_us, 99.0), at(&on_others(l), 99.0));
        value["trigger_call_p50"] = ratio(at(&b.trigger_us, 50.0), at(&l.trigger_us, 50.0));
    }
    if let (Some(b), Some(t)) = (&base.throughput, &s.throughput) {
        value["deliveries_per_second"] = ratio(b.deliveries_per_second(), t.deliveries_per_second());
        value["requests_per_second"] = ratio(b.per_second(), t.per_second());
    }
    value
}

pub(crate) fn to_json(config: &ClusterConfig, results: &ClusterResults) -> Value {
    let base = results.setups.iter().find(|s| s.setup == Setup::Single);
    let ratios: Vec<Value> = match base {
        Some(base) => {
            results.setups.iter().filter(|s| s.setup != Setup::Single).map(|s| ratios_json(base, s)).collect()
        }
        None => Vec::new(),
    };
    json!({
        "arguments": {
            "nodes": config.nodes,
            "redis_url": config.redis_url,
            "subscribers": config.latency.subscribers,
            "rounds": config.latency.rounds,
            "warmup_rounds": config.latency.warmup_rounds,
            "pause_ms": config.latency.pause.as_millis() as u64,
            "throughput_subscribers": config.throughput.subscribers,
            "concurrency": config.throughput.concurrency,
            "duration": config.throughput.duration.as_secs_f64(),
        },
        "setups": results.setups.iter().map(setup_json).collect::<Vec<_>>(),
        "ratios_to_single_node": ratios,
        "skipped": results.skipped,
    })
}
