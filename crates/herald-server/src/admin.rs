//! The admin listener (default 127.0.0.1:9601): Prometheus `/metrics`, health probes, and the
//! admin API the `herald status` command and the dashboard use.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::state::SharedState;

/// Routes of the admin listener, behind `guard::guard` (Host allow-list, sign-in throttle). The
/// listener (`listener::serve`) gives every request its peer address (`ConnectInfo`) for the
/// throttle.
pub(crate) fn router(state: SharedState) -> Router {
    crate::routes::admin_router(&state)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::guard::guard))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::metrics::track))
        .with_state(state)
}

pub(crate) use crate::guard::authorize;

pub(crate) async fn metrics(State(state): State<SharedState>) -> Response {
    let body = crate::metrics::render(&state).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// Readiness: 200 while serving with the database answering; 503 while draining or when the
/// database is down.
pub(crate) async fn up(State(state): State<SharedState>) -> Response {
    if state.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "draining" }))).into_response();
    }
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Json(json!({ "status": "ok" })).into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "database unavailable" })))
            .into_response(),
    }
}

/// Liveness: 200 while the process answers.
pub(crate) async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct StatusQuery {
    #[serde(default)]
    check_deps: Option<String>,
}

/// `GET /admin/api/status[?check_deps=true]`: everything `herald status` shows.
pub(crate) async fn status(
    State(state): State<SharedState>,
    Query(query): Query<StatusQuery>,
) -> Json<Value> {
    Json(snapshot(&state, query.check_deps.as_deref() == Some("true")).await)
}

/// The status document (also the dashboard's periodic update).
pub(crate) async fn snapshot(state: &SharedState, check_deps: bool) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let apps: Vec<Value> = state
        .apps()
        .iter()
        .map(|app| {
            let stats = app.hub.stats();
            let channels: Map<String, Value> = stats
                .channels_by_kind
                .iter()
                .map(|(kind, count)| ((*kind).to_owned(), json!(count)))
                .collect();
            json!({
                "id": app.config.id, "key": app.config.key, "enabled": app.config.enabled,
                "connections": stats.connections, "subscriptions": stats.subscriptions, "channels": channels,
                "messages_in": app.messages_in.load(Relaxed), "messages_out": app.messages_out.load(Relaxed),
                "slow_consumer_disconnects": app.slow_consumers.load(Relaxed),
            })
        })
        .collect();
    let now = herald_store::now_ms();
    let lanes = state.store.lane_stats().await;
    let queue: Map<String, Value> = lanes
        .as_ref()
        .map(|lanes| {
            lanes
                .iter()
                .map(|lane| {
                    let age = lane.oldest_created_at.map(|at| (now - at).max(0) as f64 / 1000.0);
                    (lane.lane.name().to_owned(), json!({ "pending": lane.pending, "oldest_age_secs": age }))
                })
                .collect()
        })
        .unwrap_or_default();
    let dead_letters = state.store.dead_letter_count().await.ok();
    let errors = state
        .store
        .audit(&herald_store::AuditFilter { kind: "attempt_failed".into(), limit: 5, ..Default::default() })
        .await
        .unwrap_or_default();
    let dead = state
        .store
        .audit(&herald_store::AuditFilter { kind: "dead_lettered".into(), limit: 5, ..Default::default() })
        .await
        .unwrap_or_default();
    let mut recent: Vec<&herald_store::AuditEntry> = errors.iter().chain(dead.iter()).collect();
    recent.sort_by_key(|entry| std::cmp::Reverse(entry.at));
    let recent_errors: Vec<Value> =
        recent.into_iter().take(10).map(crate::notifications::audit_json).collect();
    let counters = &state.notifier.counters;
    let per_lane = |values: &[std::sync::atomic::AtomicU64; 2]| json!({ "critical-broadcasts": values[0].load(Relaxed), "broadcasts": values[1].load(Relaxed) });
    let mut document = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "draining": state.is_draining(),
        "driver": state.notifier.driver().name(),
        "listen": { "websocket": state.addresses.0.to_string(), "admin": state.addresses.1.to_string() },
        "database": { "backend": format!("{:?}", state.store.backend()).to_lowercase(), "up": lanes.is_ok() },
        "apps": apps,
        "queue": queue,
        "dead_letters": dead_letters,
        "delivery": {
            "accepted_events": counters.accepted.load(Relaxed),
            "ignored_events": counters.ignored.load(Relaxed),
            "delivered": per_lane(&counters.delivered),
            "retried": per_lane(&counters.retried),
            "dead_lettered": per_lane(&counters.dead_lettered),
            "suppressed": counters.suppressed.load(Relaxed),
        },
        "recent_errors": recent_errors,
        "rates": state.rates.json(state),
    });
    if let Some(gates) = state.gates.get() {
        let listener = |gate: &crate::listener::Gate| {
            let stats = gate.stats();
            json!({
                "open": stats.open, "capacity": stats.capacity,
                "refused": { "full": stats.refused_full, "per_ip": stats.refused_per_ip },
            })
        };
        document["connections"] = json!({ "main": listener(&gates[0]), "admin": listener(&gates[1]) });
    }
    if check_deps {
        document["deps"] = dependencies(state).await;
    }
    document
}

/// Checks the database and, with the `pusher` driver, the upstream API.
async fn dependencies(state: &SharedState) -> Value {
    let database = match tokio::time::timeout(Duration::from_secs(3), state.store.ping()).await {
        Ok(Ok(())) => json!({ "ok": true, "detail": "answers" }),
        Ok(Err(error)) => json!({ "ok": false, "detail": error.to_string() }),
        Err(_) => json!({ "ok": false, "detail": "no answer within 3 s" }),
    };
    let mut deps = json!({ "database": database });
    if let herald_notify::Driver::Pusher { upstream, client } = state.notifier.driver() {
        deps["upstream"] = match herald_notify::check_upstream(client, upstream).await {
            Ok(detail) => json!({ "ok": true, "detail": detail }),
            Err(detail) => json!({ "ok": false, "detail": detail }),
        };
    }
    deps
}
