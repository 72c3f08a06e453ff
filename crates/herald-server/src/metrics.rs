//! Prometheus metrics: HTTP requests by matched route and status with latency histograms, and a
//! text rendering of every counter and gauge the server keeps. Labels are bounded: apps, lanes,
//! channel kinds, routes, statuses and policies — never a channel name or socket id.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use herald_notify::Lane;

use crate::http_metrics::{lock, BUCKETS};
use crate::state::SharedState;

/// Middleware: counts every request under its matched route (unmatched: `other`).
pub(crate) async fn track(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("other", |path| path.as_str()).to_owned();
    if route == "/app/{key}" {
        // WebSocket sessions last for hours; their handshakes are not request latencies.
        return next.run(request).await;
    }
    let started = Instant::now();
    let response = next.run(request).await;
    state.http_metrics.record(&route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

fn line(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (apps and policies are configuration, but quote them safely anyway).
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The broker's figures, with the cluster on.
fn cluster(out: &mut String, broker: &herald_broker::Broker) {
    let stats = broker.stats();
    let up = matches!(broker.health(), herald_broker::Health::Up { .. });
    header(out, "herald_redis_up", "gauge", "1 while this node reaches the cluster's Redis.");
    line(out, "herald_redis_up", "", u8::from(up));
    header(
        out,
        "herald_broker_publishes_total",
        "counter",
        "Messages this node sent to the other nodes, by outcome.",
    );
    line(out, "herald_broker_publishes_total", "outcome=\"ok\"", stats.published);
    line(out, "herald_broker_publishes_total", "outcome=\"failed\"", stats.publish_failures);
    header(out, "herald_broker_received_total", "counter", "Messages received from other nodes.");
    line(out, "herald_broker_received_total", "", stats.received);
    header(
        out,
        "herald_broker_dropped_total",
        "counter",
        "Messages from other nodes dropped because this node fell behind.",
    );
    line(out, "herald_broker_dropped_total", "", stats.dropped);
    header(
        out,
        "herald_broker_lag_seconds_sum",
        "counter",
        "Sum of the received messages' lag from publish on another node to receipt here (divide by herald_broker_received_total).",
    );
    line(out, "herald_broker_lag_seconds_sum", "", stats.lag_ms_sum as f64 / 1000.0);
}

/// The whole exposition. Queue figures come from the database; when it is down they are
/// omitted and `herald_database_up` is 0.
pub(crate) async fn render(state: &SharedState) -> String {
    let mut out = String::with_capacity(8 * 1024);
    header(&mut out, "herald_connections", "gauge", "Open connections (WebSocket and HTTP sessions).");
    for app in state.tenants().all() {
        line(
            &mut out,
            "herald_connections",
            &format!("app=\"{}\"", label(&app.config.id)),
            app.hub.connections(),
        );
    }
    header(
        &mut out,
        "herald_transport_connections",
        "gauge",
        "Open connections by transport (ws, xhr_streaming, xhr_polling).",
    );
    for app in state.tenants().all() {
        for (transport, count) in state.transports(app).named() {
            line(
                &mut out,
                "herald_transport_connections",
                &format!("app=\"{}\",transport=\"{transport}\"", label(&app.config.id)),
                count,
            );
        }
    }
    if let Some(gates) = state.gates.get() {
        let stats: Vec<(&str, crate::listener::GateStats)> =
            ["main", "admin"].into_iter().zip(gates.iter().map(|gate| gate.stats())).collect();
        header(
            &mut out,
            "herald_listener_connections",
            "gauge",
            "Open TCP connections (HTTP and WebSocket) and HTTP sessions.",
        );
        for (listener, stats) in &stats {
            line(&mut out, "herald_listener_connections", &format!("listener=\"{listener}\""), stats.open);
        }
        header(&mut out, "herald_listener_capacity", "gauge", "Connections the listener takes at once.");
        for (listener, stats) in &stats {
            line(&mut out, "herald_listener_capacity", &format!("listener=\"{listener}\""), stats.capacity);
        }
        header(
            &mut out,
            "herald_listener_refused_total",
            "counter",
            "Connections refused with 503: the listener was full, or the client address had too many.",
        );
        for (listener, stats) in &stats {
            for (reason, value) in [("full", stats.refused_full), ("per_ip", stats.refused_per_ip)] {
                line(
                    &mut out,
                    "herald_listener_refused_total",
                    &format!("listener=\"{listener}\",reason=\"{reason}\""),
                    value,
                );
            }
        }
    }
    header(&mut out, "herald_subscriptions", "gauge", "Channel subscriptions of open connections.");
    header(&mut out, "herald_channels", "gauge", "Occupied channels by kind.");
    let mut channel_lines = Vec::new();
    for app in state.tenants().all() {
        let stats = app.hub.stats();
        let app_label = format!("app=\"{}\"", label(&app.config.id));
        line(&mut out, "herald_subscriptions", &app_label, stats.subscriptions);
        for (kind, count) in stats.channels_by_kind {
            channel_lines.push((format!("{app_label},kind=\"{kind}\""), count));
        }
    }
    for (labels, count) in channel_lines {
        line(&mut out, "herald_channels", &labels, count);
    }
    for (name, help, pick) in [
        ("herald_messages_in_total", "Frames received from clients.", 0),
        ("herald_messages_out_total", "Frames queued for clients.", 1),
        ("herald_bytes_out_total", "Bytes of frames queued for clients.", 2),
        (
            "herald_slow_consumer_disconnects_total",
            "Connections closed with 4100 because their outbox was full.",
            3,
        ),
    ] {
        header(&mut out, name, "counter", help);
        for app in state.tenants().all() {
            let value = match pick {
                0 => app.messages_in.load(Ordering::Relaxed),
                1 => app.messages_out.load(Ordering::Relaxed),
                2 => app.bytes_out.load(Ordering::Relaxed),
                _ => app.slow_consumers.load(Ordering::Relaxed),
            };
            line(&mut out, name, &format!("app=\"{}\"", label(&app.config.id)), value);
        }
    }

    let counters = &state.notify.notifier.counters;
    header(&mut out, "herald_domain_events_total", "counter", "Domain events ingested, by outcome.");
    line(
        &mut out,
        "herald_domain_events_total",
        "status=\"accepted\"",
        counters.accepted.load(Ordering::Relaxed),
    );
    line(
        &mut out,
        "herald_domain_events_total",
        "status=\"ignored\"",
        counters.ignored.load(Ordering::Relaxed),
    );
    header(
        &mut out,
        "herald_broadcasts_total",
        "counter",
        "Broadcast delivery attempts by lane and outcome.",
    );
    let outcomes = [
        ("delivered", counters.delivered.load()),
        ("retried", counters.retried.load()),
        ("dead_lettered", counters.dead_lettered.load()),
    ];
    for lane in [Lane::Critical, Lane::Normal] {
        for (outcome, counts) in &outcomes {
            line(
                &mut out,
                "herald_broadcasts_total",
                &format!("lane=\"{}\",outcome=\"{outcome}\"", lane.name()),
                *counts.get(lane),
            );
        }
    }
    header(
        &mut out,
        "herald_broadcasts_suppressed_total",
        "counter",
        "Real-time broadcasts muted by user preference.",
    );
    line(&mut out, "herald_broadcasts_suppressed_total", "", counters.suppressed.load(Ordering::Relaxed));

    let lanes = state.records().lanes().await;
    let dead = state.records().dead_letter_count().await;
    header(&mut out, "herald_database_up", "gauge", "1 when the database answered this scrape.");
    line(&mut out, "herald_database_up", "", u8::from(lanes.is_ok() && dead.is_ok()));
    if let Ok(lanes) = lanes {
        header(&mut out, "herald_queue_depth", "gauge", "Pending broadcast jobs per lane.");
        for (lane, view) in lanes.iter() {
            line(&mut out, "herald_queue_depth", &format!("lane=\"{}\"", lane.name()), view.pending);
        }
        header(
            &mut out,
            "herald_queue_oldest_age_seconds",
            "gauge",
            "Age of the oldest pending job per lane.",
        );
        for (lane, view) in lanes.iter() {
            let age = view.oldest_age_secs.unwrap_or(0.0);
            line(&mut out, "herald_queue_oldest_age_seconds", &format!("lane=\"{}\"", lane.name()), age);
        }
    }
    if let Ok(dead) = dead {
        header(
            &mut out,
            "herald_dead_letters",
            "gauge",
            "Broadcasts that failed for good and wait for retry or purge.",
        );
        line(&mut out, "herald_dead_letters", "", dead);
    }

    if let crate::tenant::Fanout::Redis(broker) = &state.pusher.fanout {
        cluster(&mut out, broker);
    }
    if let Some(service) = &state.webhooks {
        webhooks(&mut out, service);
    }

    let authorizer = &state.auth.authorizer;
    header(&mut out, "herald_auth_decisions_total", "counter", "Channel authorization decisions by policy.");
    for (policy, allowed, denied) in authorizer.decision_counts() {
        let policy = label(&policy);
        line(
            &mut out,
            "herald_auth_decisions_total",
            &format!("policy=\"{policy}\",decision=\"allowed\""),
            allowed,
        );
        line(
            &mut out,
            "herald_auth_decisions_total",
            &format!("policy=\"{policy}\",decision=\"denied\""),
            denied,
        );
    }

    header(&mut out, "herald_http_requests_total", "counter", "HTTP requests by matched route and status.");
    for ((route, status), count) in lock(&state.http_metrics.requests).iter() {
        line(
            &mut out,
            "herald_http_requests_total",
            &format!("route=\"{}\",status=\"{status}\"", label(route)),
            count,
        );
    }
    header(
        &mut out,
        "herald_http_request_duration_seconds",
        "histogram",
        "HTTP request latency by matched route.",
    );
    for (route, histogram) in lock(&state.http_metrics.latency).iter() {
        let route = label(route);
        for (index, bound) in BUCKETS.iter().enumerate() {
            line(
                &mut out,
                "herald_http_request_duration_seconds_bucket",
                &format!("route=\"{route}\",le=\"{bound}\""),
                histogram.counts[index],
            );
        }
        line(
            &mut out,
            "herald_http_request_duration_seconds_bucket",
            &format!("route=\"{route}\",le=\"+Inf\""),
            histogram.count,
        );
        line(
            &mut out,
            "herald_http_request_duration_seconds_sum",
            &format!("route=\"{route}\""),
            histogram.sum,
        );
        line(
            &mut out,
            "herald_http_request_duration_seconds_count",
            &format!("route=\"{route}\""),
            histogram.count,
        );
    }
    out
}

/// Webhook events (queued, suppressed by a quick return, dropped) and deliveries.
fn webhooks(out: &mut String, service: &crate::webhooks::WebhookService) {
    let events = &service.counters;
    header(out, "herald_webhook_events_total", "counter", "Webhook events by fate: queued (per receiver), suppressed (a removal undone within the delay, with its return), dropped.");
    for (fate, count) in
        [("queued", &events.queued), ("suppressed", &events.suppressed), ("dropped", &events.dropped)]
    {
        line(out, "herald_webhook_events_total", &format!("fate=\"{fate}\""), count.load(Ordering::Relaxed));
    }
    let sent = &service.sender.counters;
    header(
        out,
        "herald_webhooks_total",
        "counter",
        "Webhook deliveries: sent (2xx), failed attempts, retries scheduled, dead-lettered.",
    );
    for (outcome, count) in [
        ("sent", &sent.sent),
        ("failed", &sent.failed),
        ("retried", &sent.retried),
        ("dead_lettered", &sent.dead_lettered),
    ] {
        line(out, "herald_webhooks_total", &format!("outcome=\"{outcome}\""), count.load(Ordering::Relaxed));
    }
    header(
        out,
        "herald_webhook_latency_seconds",
        "histogram",
        "Time one webhook attempt took, answer or not.",
    );
    let mut cumulative = 0;
    for (index, bound) in herald_notify::LATENCY_BUCKETS_MS.iter().enumerate() {
        cumulative += sent.latency_buckets[index].load(Ordering::Relaxed);
        let le = *bound as f64 / 1000.0;
        line(out, "herald_webhook_latency_seconds_bucket", &format!("le=\"{le}\""), cumulative);
    }
    let count = sent.latency_count.load(Ordering::Relaxed);
    line(out, "herald_webhook_latency_seconds_bucket", "le=\"+Inf\"", count);
    let sum = sent.latency_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    line(out, "herald_webhook_latency_seconds_sum", "", sum);
    line(out, "herald_webhook_latency_seconds_count", "", count);
}
