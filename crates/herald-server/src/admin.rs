//! The admin listener (default 127.0.0.1:9601): Prometheus `/metrics`, health probes, the admin
//! API the `herald status` command and the dashboard use, and the middleware that guards it with
//! `guard::AdminGuard` (Host allow-list, admin credential, sign-in throttle).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::status::{
    AppStatus, ClusterStatus, Connections, DatabaseStatus, Delivery, Dependency, Listen, ListenerStatus,
    NodeStatus, RedisStatus, Refused, StatusDocument,
};

use crate::error::ApiError;
use crate::guard::{
    bearer, cross_origin, cross_origin_refused, session_of, too_many_failures, ClientAddress,
};
use crate::state::SharedState;
use crate::tenant::Fanout;

/// Checks admin access: with no credential configured the listener is loopback-only and open;
/// otherwise the credential in `Authorization: Bearer` (the admin token; or, with
/// `admin.allow_jwt` and no admin token, a platform JWT with `super_admin`) or a dashboard
/// session opened with it.
pub(crate) fn authorize(state: &SharedState, headers: &HeaderMap) -> Result<(), ApiError> {
    let guard = &state.admin;
    if !guard.requires_sign_in() {
        return Ok(());
    }
    if let Some(given) = bearer(headers) {
        if guard.accepts(&state.auth.authorizer, given) {
            return Ok(());
        }
        return Err(ApiError::Unauthenticated("invalid admin token"));
    }
    match session_of(headers) {
        Some(id) if guard.session_valid(id) => Ok(()),
        Some(_) => Err(ApiError::Unauthenticated("the dashboard session has ended: sign in again")),
        None => Err(ApiError::Unauthenticated("admin token required")),
    }
}

/// Middleware of the admin listener: refuses a `Host` not on the allow-list (every route but
/// the `/up` and `/live` probes), throttles clients that failed to sign in too often, and counts
/// a wrong bearer token as a failed sign-in.
pub(crate) async fn guard(State(state): State<SharedState>, mut request: Request, next: Next) -> Response {
    let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    request.extensions_mut().insert(ClientAddress(client));
    let path = request.uri().path();
    if path == "/up" || path == "/live" {
        return next.run(request).await;
    }
    let host = request.headers().get(header::HOST).and_then(|value| value.to_str().ok());
    match host {
        Some(host) if state.admin.host_allowed(host) => {}
        _ => {
            let shown = host.map_or_else(|| "(none)".to_owned(), |host| format!("{host:?}"));
            let body = json!({
                "error": format!("the admin listener does not answer to the Host {shown}: add it to admin.allowed_hosts"),
                "host": host,
            });
            return (StatusCode::MISDIRECTED_REQUEST, Json(body)).into_response();
        }
    }
    let presents_token = state.admin.requires_sign_in() && bearer(request.headers()).is_some();
    if presents_token || (path == "/dashboard/login" && request.method() == axum::http::Method::POST) {
        if let Some(retry_after) = state.admin.throttled(client) {
            return too_many_failures(retry_after);
        }
    }
    if presents_token && authorize(&state, request.headers()).is_err() {
        state.admin.record_failure(client, "bearer token");
    }
    next.run(request).await
}

/// Layer of every admin route (`routes::Access::Admin`): the admin token or a dashboard session,
/// and no state-changing request from another site's page. The handlers behind it never check.
pub(crate) async fn require_admin(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(error) = authorize(&state, request.headers()) {
        return error.into_response();
    }
    let reads = matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    if !reads && cross_origin(request.headers()) {
        return cross_origin_refused();
    }
    next.run(request).await
}

pub(crate) async fn metrics(State(state): State<SharedState>) -> Response {
    let body = crate::metrics::render(&state).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// Readiness: 200 while serving with the database answering; 503 while draining or when the
/// database is down.
pub(crate) async fn up(State(state): State<SharedState>) -> Response {
    if state.lifecycle().is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "draining" }))).into_response();
    }
    match tokio::time::timeout(Duration::from_secs(2), state.records().ping()).await {
        // Sockets stay up and local delivery goes on while Redis is away: the node is degraded,
        // not out of service (taking every node out would end every connection).
        Ok(Ok(())) if !redis_up(&state) => {
            Json(json!({ "status": "degraded", "reason": "Redis unreachable" })).into_response()
        }
        Ok(Ok(())) => Json(json!({ "status": "ok" })).into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "database unavailable" })))
            .into_response(),
    }
}

/// False when this node is one of a cluster and Redis is out of reach.
fn redis_up(state: &SharedState) -> bool {
    match &state.pusher.fanout {
        Fanout::Local => true,
        Fanout::Redis(broker) => matches!(broker.health(), herald_broker::Health::Up { .. }),
    }
}

/// This node's view of the cluster, for the status document.
async fn cluster_status(state: &SharedState) -> Option<ClusterStatus> {
    let Fanout::Redis(broker) = &state.pusher.fanout else { return None };
    let redis = match broker.health() {
        herald_broker::Health::Up { latency } => {
            RedisStatus { up: true, latency_ms: Some(latency.as_secs_f64() * 1000.0), error: None }
        }
        herald_broker::Health::Down { error, .. } => {
            RedisStatus { up: false, latency_ms: None, error: Some(error) }
        }
    };
    let nodes = broker
        .nodes()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|node| NodeStatus {
            id: node.id,
            address: node.address,
            connections: node.connections,
            last_heartbeat: herald_notify::rfc3339(i64::try_from(node.last_heartbeat).unwrap_or(i64::MAX)),
        })
        .collect();
    Some(ClusterStatus { node: broker.node_id().to_owned(), redis, nodes, dropped: broker.dropped() })
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
) -> Json<StatusDocument> {
    Json(snapshot(&state, query.check_deps.as_deref() == Some("true")).await)
}

/// The status document (also the dashboard's periodic update).
pub(crate) async fn snapshot(state: &SharedState, check_deps: bool) -> StatusDocument {
    use std::sync::atomic::Ordering::Relaxed;
    let apps = state
        .tenants()
        .all()
        .iter()
        .map(|app| {
            let stats = app.hub.stats();
            AppStatus {
                id: app.config.id.clone(),
                key: app.config.key.clone(),
                enabled: app.config.enabled,
                connections: stats.connections as u64,
                transports: state.transports(app),
                subscriptions: stats.subscriptions as u64,
                channels: stats
                    .channels_by_kind
                    .iter()
                    .map(|(kind, count)| ((*kind).to_owned(), *count as u64))
                    .collect(),
                messages_in: app.messages_in.load(Relaxed),
                messages_out: app.messages_out.load(Relaxed),
                slow_consumer_disconnects: app.slow_consumers.load(Relaxed),
            }
        })
        .collect();
    let records = state.records();
    let lanes = records.lanes().await;
    let queue = lanes
        .as_ref()
        .map(|lanes| lanes.iter().map(|(lane, view)| (lane.name().to_owned(), *view)).collect())
        .unwrap_or_default();
    let dead_letters = records.dead_letter_count().await.ok();
    let latest = |kind| herald_notify::AuditFilter { kind: Some(kind), limit: 5, ..Default::default() };
    let errors = records.audit(&latest(herald_notify::AuditKind::AttemptFailed)).await.unwrap_or_default();
    let dead = records.audit(&latest(herald_notify::AuditKind::DeadLettered)).await.unwrap_or_default();
    let mut recent: Vec<&herald_notify::AuditEntry> = errors.iter().chain(dead.iter()).collect();
    recent.sort_by_key(|entry| std::cmp::Reverse(entry.at_ms));
    let counters = &state.notify.notifier.counters;
    let connections = state.gates.get().map(|gates| {
        let listener = |gate: &crate::listener::Gate| {
            let stats = gate.stats();
            ListenerStatus {
                open: stats.open as u64,
                capacity: stats.capacity as u64,
                refused: Refused { full: stats.refused_full, per_ip: stats.refused_per_ip },
            }
        };
        Connections { main: listener(&gates[0]), admin: listener(&gates[1]) }
    });
    StatusDocument {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_secs: state.started.elapsed().as_secs(),
        draining: state.lifecycle().is_draining(),
        driver: state.notify.notifier.driver().name().to_owned(),
        listen: Listen { websocket: state.addresses.0.to_string(), admin: state.addresses.1.to_string() },
        database: DatabaseStatus { backend: records.backend().to_owned(), up: lanes.is_ok() },
        apps,
        queue,
        dead_letters,
        delivery: Delivery {
            accepted_events: counters.accepted.load(Relaxed),
            ignored_events: counters.ignored.load(Relaxed),
            delivered: counters.delivered.load(),
            retried: counters.retried.load(),
            dead_lettered: counters.dead_lettered.load(),
            suppressed: counters.suppressed.load(Relaxed),
        },
        recent_errors: recent.into_iter().take(10).map(|entry| entry.record()).collect(),
        rates: state.rates.read(rate_sample(state)),
        connections,
        cluster: cluster_status(state).await,
        deps: if check_deps { Some(dependencies(state).await) } else { None },
    }
}

/// The counters the rates follow, now.
fn rate_sample(state: &SharedState) -> crate::rates::Sample {
    use std::sync::atomic::Ordering::Relaxed;
    let counters = &state.notify.notifier.counters;
    crate::rates::Sample {
        at: std::time::Instant::now(),
        accepted: counters.accepted.load(Relaxed),
        delivered: counters.delivered.load().total(),
        failed: counters.retried.load().total() + counters.dead_lettered.load().total(),
        messages_out: state.tenants().all().iter().map(|app| app.messages_out.load(Relaxed)).sum(),
    }
}

/// Samples the rates' counters every second until shutdown.
pub(crate) async fn sample_rates(state: SharedState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = state.lifecycle().shutdown.cancelled() => return,
            _ = tick.tick() => state.rates.record(rate_sample(&state)),
        }
    }
}

/// Checks the database and, with the `pusher` driver, the upstream API.
async fn dependencies(state: &SharedState) -> BTreeMap<String, Dependency> {
    let database = match tokio::time::timeout(Duration::from_secs(3), state.records().ping()).await {
        Ok(Ok(())) => Dependency { ok: true, detail: "answers".into() },
        Ok(Err(error)) => Dependency { ok: false, detail: error.to_string() },
        Err(_) => Dependency { ok: false, detail: "no answer within 3 s".into() },
    };
    let mut deps = BTreeMap::from([("database".to_owned(), database)]);
    if let herald_notify::Driver::Pusher { upstream, client } = state.notify.notifier.driver() {
        let upstream = match herald_notify::check_upstream(client, upstream).await {
            Ok(detail) => Dependency { ok: true, detail },
            Err(detail) => Dependency { ok: false, detail },
        };
        deps.insert("upstream".to_owned(), upstream);
    }
    deps
}
