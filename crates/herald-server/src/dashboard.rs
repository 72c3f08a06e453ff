//! The live admin dashboard on the admin listener, behind `admin::authorize`: the page and its
//! embedded assets (no build step, nothing from another origin), a login form that keeps the
//! token in an HttpOnly cookie, the Server-Sent Events stream (`stream`), and the page's
//! actions: a test broadcast through the real pipeline, the dead letters and their retry.

mod stream;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use herald_notify::{Campaign, Donation, EventOutcome, IngestError, NotificationBroadcaster, Payment};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::error;

use crate::admin::authorize;
use crate::error::ApiError;
use crate::state::SharedState;

const INDEX: &str = include_str!("../assets/dashboard/index.html");
const LOGIN: &str = include_str!("../assets/dashboard/login.html");
const SCRIPT: &str = include_str!("../assets/dashboard/app.js");
const STYLE: &str = include_str!("../assets/dashboard/style.css");
const ICON: &str = include_str!("../assets/dashboard/icon.svg");

/// Everything comes from this origin: no inline script or style, no frames, forms post here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The cookie `admin::authorize` reads.
const COOKIE: &str = "herald_admin";

/// Where the page's markup takes the sign-out button and the login form its message.
const LOGOUT_SLOT: &str = "<!--logout-->";
const ERROR_SLOT: &str = "<!--error-->";
const LOGOUT_FORM: &str = "<form method=\"post\" action=\"/dashboard/logout\" class=\"logout\">\
     <button type=\"submit\" class=\"quiet\">Sign out</button></form>";

/// The event types "Send test broadcast" offers, the first being the default.
const TEST_TYPES: [&str; 7] =
    ["security", "maintenance", "donation", "milestone", "approval", "payment", "compliance"];

/// The dashboard's routes, merged into the admin listener's router.
pub(crate) fn routes() -> Router<SharedState> {
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/app.js", get(script))
        .route("/dashboard/style.css", get(style))
        .route("/dashboard/icon.svg", get(icon))
        .route("/dashboard/login", post(login))
        .route("/dashboard/logout", post(logout))
        .route("/admin/api/stream", get(stream::stream))
        .route("/admin/api/test-broadcast", post(test_broadcast))
        .route("/admin/api/dead-letters", get(dead_letters))
        .route("/admin/api/dead-letters/{id}/retry", post(retry_dead_letter))
        .layer(Extension(Arc::new(stream::Feed::new())))
}

/// A dashboard document with its security headers.
fn document(status: StatusCode, content_type: &'static str, body: impl Into<String>) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not `no-referrer`: with it browsers send `Origin: null` on form posts, which `cross_origin` refuses.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Assets are compiled into the binary: revalidate so an upgrade is seen at once.
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (status, headers, body.into()).into_response()
}

/// `GET /dashboard`: the page, or the login form when a token is configured and not given.
async fn page(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if authorize(&state, &headers).is_err() {
        let ended = cookie_of(&headers).is_some();
        return login_form(ended.then_some("Your session has ended: sign in again."));
    }
    let logout = if state.admin_token.is_some() { LOGOUT_FORM } else { "" };
    document(StatusCode::OK, "text/html; charset=utf-8", INDEX.replace(LOGOUT_SLOT, logout))
}

/// The login form (401), with a fixed message (never text from the request).
fn login_form(problem: Option<&'static str>) -> Response {
    let message = problem.map(|text| format!("<p class=\"error\" role=\"alert\">{text}</p>"));
    let body = LOGIN.replace(ERROR_SLOT, message.as_deref().unwrap_or(""));
    document(StatusCode::UNAUTHORIZED, "text/html; charset=utf-8", body)
}

/// `GET /dashboard/app.js`
async fn script(State(state): State<SharedState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    Ok(document(StatusCode::OK, "text/javascript; charset=utf-8", SCRIPT))
}

/// `GET /dashboard/style.css`: open, since the login form uses it too (it holds nothing secret).
async fn style() -> Response {
    document(StatusCode::OK, "text/css; charset=utf-8", STYLE)
}

/// `GET /dashboard/icon.svg`: open, like the style sheet.
async fn icon() -> Response {
    document(StatusCode::OK, "image/svg+xml", ICON)
}

fn cookie_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("herald_admin="))
}

/// Whether a state-changing request comes from another site's page (the cookie is
/// `SameSite=Strict` already; this also covers browsers that ignore it). Requests without
/// `Origin` are not a browser's cross-site form or script.
fn cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return false };
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok());
    let origin = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")));
    origin.is_none() || origin != host
}

fn cross_origin_refused() -> Response {
    let body = json!({ "error": "cross-origin requests to the admin listener are refused" });
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// A token can live in the cookie only if it is made of cookie-value characters (RFC 6265);
/// the admin token is configuration, so it might not be.
fn cookie_safe(token: &str) -> bool {
    token.bytes().all(|byte| matches!(byte, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /dashboard/login` (form field `token`): the admin token or a platform bearer token with
/// the `super_admin` role. Valid: an HttpOnly, SameSite=Strict cookie and back to the page.
async fn login(
    State(state): State<SharedState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if cross_origin(&headers) {
        return cross_origin_refused();
    }
    let token = form.map(|Form(form)| form.token).unwrap_or_default();
    let token = token.trim();
    if token.is_empty() {
        return login_form(Some("Enter the admin token."));
    }
    if !cookie_safe(token) {
        return login_form(Some(
            "This token has characters a cookie cannot hold: use it in an Authorization header.",
        ));
    }
    let mut probe = HeaderMap::new();
    match HeaderValue::from_str(&format!("Bearer {token}")) {
        Ok(value) => probe.insert(header::AUTHORIZATION, value),
        Err(_) => return login_form(Some("That token is not valid.")),
    };
    if authorize(&state, &probe).is_err() {
        return login_form(Some("That token is not valid."));
    }
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/dashboard")]).into_response();
    if state.admin_token.is_some() {
        let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    response
}

/// `POST /dashboard/logout`: forgets the cookie.
async fn logout(headers: HeaderMap) -> Response {
    if cross_origin(&headers) {
        return cross_origin_refused();
    }
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/dashboard".to_owned()), (header::SET_COOKIE, cookie)])
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
struct TestBroadcast {
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// `POST /admin/api/test-broadcast` (`{"type": "security" | "maintenance" | ...}`, optional):
/// sends a sample domain event through the real pipeline (ingest, queue, driver) and answers
/// its outcome with 202, as the ingest does.
async fn test_broadcast(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(error) = authorize(&state, &headers) {
        return error.into_response();
    }
    if cross_origin(&headers) {
        return cross_origin_refused();
    }
    let request: TestBroadcast = if body.iter().all(u8::is_ascii_whitespace) {
        TestBroadcast::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(error) => return ApiError::MalformedJson(error.to_string()).into_response(),
        }
    };
    let kind = request.kind.as_deref().unwrap_or(TEST_TYPES[0]);
    if !TEST_TYPES.contains(&kind) {
        return ApiError::invalid("type", format!("must be one of {}", TEST_TYPES.join(", ")))
            .into_response();
    }
    match send_sample(&NotificationBroadcaster::new(state.notifier.clone()), kind).await {
        Ok(outcome) => (StatusCode::ACCEPTED, Json(json!({ "event": outcome }))).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// One sample event of each kind, marked as coming from the dashboard.
async fn send_sample(broadcaster: &NotificationBroadcaster, kind: &str) -> Result<EventOutcome, IngestError> {
    let campaign = Campaign {
        id: "dashboard-test-campaign".into(),
        title: "Dashboard test campaign".into(),
        organization_id: "dashboard-test-org".into(),
        goal_amount: 10_000.0,
        currency: "USD".into(),
    };
    let source = json!({ "source": "herald dashboard" });
    match kind {
        "maintenance" => {
            let when = herald_notify::rfc3339(herald_store::now_ms() + 3_600_000);
            broadcaster.maintenance("scheduled", &when, 30, &["dashboard test"]).await
        }
        "donation" => {
            let donation = Donation {
                id: herald_notify::new_id(),
                amount: 1_000_000.0,
                currency: "USD".into(),
                campaign_id: campaign.id.clone(),
                organization_id: campaign.organization_id.clone(),
                donor_name: Some("Dashboard test".into()),
            };
            broadcaster.large_donation_alert(&donation, None).await
        }
        "milestone" => broadcaster.campaign_milestone(&campaign, 50, 5_000.0).await,
        "approval" => broadcaster.approval_needed(&campaign, ("dashboard", "Herald dashboard")).await,
        "payment" => {
            let payment = Payment {
                id: herald_notify::new_id(),
                donation_id: herald_notify::new_id(),
                amount: 25.0,
                currency: "USD".into(),
                reason: "test broadcast from the dashboard".into(),
                user_id: "dashboard-test-user".into(),
                organization_id: campaign.organization_id.clone(),
            };
            broadcaster.payment_failed(&payment).await
        }
        "compliance" => {
            broadcaster
                .compliance_issue(
                    "dashboard_test",
                    "low",
                    "Test broadcast from the Herald dashboard",
                    None,
                    source,
                )
                .await
        }
        _ => {
            broadcaster
                .security_alert("dashboard_test", "Test broadcast from the Herald dashboard", "low", source)
                .await
        }
    }
}

fn storage_error(cause: herald_store::StoreError) -> ApiError {
    error!(error = %cause, "dashboard query failed");
    ApiError::BackendUnavailable
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    limit: Option<String>,
}

/// `GET /admin/api/dead-letters[?limit=1..500]`: the newest dead letters and how many there are.
async fn dead_letters(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let limit = match query.limit.as_deref() {
        None => 50,
        Some(limit) => limit
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "must be 1 to 500"))?,
    };
    let letters = state.store.dead_letters(limit).await.map_err(storage_error)?;
    let total = state.store.dead_letter_count().await.map_err(storage_error)?;
    let letters: Vec<Value> = letters
        .iter()
        .map(|letter| {
            let channels: Vec<String> =
                letter.channels.iter().map(|channel| state.notifier.wire_channel(channel)).collect();
            json!({
                "broadcast_id": letter.broadcast_id, "event_id": letter.event_id, "event": letter.event_name,
                "channels": channels, "attempts": letter.attempts, "last_error": letter.last_error,
                "failed_at": herald_notify::rfc3339(letter.failed_at),
            })
        })
        .collect();
    Ok(Json(json!({ "dead_letters": letters, "total": total })))
}

/// `POST /admin/api/dead-letters/{broadcast_id}/retry`: back in the queue, attempts reset.
async fn retry_dead_letter(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(broadcast_id): Path<String>,
) -> Response {
    if let Err(error) = authorize(&state, &headers) {
        return error.into_response();
    }
    if cross_origin(&headers) {
        return cross_origin_refused();
    }
    // The store reads an empty id as "every dead letter": never let one through.
    if broadcast_id.is_empty() {
        return ApiError::NotFound("dead letter").into_response();
    }
    match state.store.replay_dead_letters(Some(&broadcast_id)).await {
        Ok(0) => ApiError::NotFound("dead letter").into_response(),
        Ok(replayed) => Json(json!({ "replayed": replayed, "broadcast_id": broadcast_id })).into_response(),
        Err(cause) => storage_error(cause).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values_exclude_separators() {
        assert!(cookie_safe("s3cret-admin_token.v1~"));
        assert!(cookie_safe("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"));
        for bad in ["with space", "semi;colon", "quote\"", "comma,", "back\\slash", "é"] {
            assert!(!cookie_safe(bad), "{bad}");
        }
    }

    #[test]
    fn cross_origin_posts_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9601"));
        assert!(!cross_origin(&headers), "no Origin: not a browser's cross-site request");
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:9601"));
        assert!(!cross_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(cross_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_origin(&headers));
    }

    #[test]
    fn the_assets_reference_only_this_origin() {
        for asset in [INDEX, LOGIN, SCRIPT, STYLE] {
            assert!(!asset.contains("http://") && !asset.contains("https://"), "external reference");
            assert!(!asset.contains(" style=\""), "inline styles are refused by the policy");
        }
        assert!(INDEX.contains(LOGOUT_SLOT) && LOGIN.contains(ERROR_SLOT));
    }
}
