//! The live admin dashboard on the admin listener, behind `guard::require_admin`: the page and its
//! embedded assets (no build step, nothing from another origin), a login form that opens a
//! server-side session (`guard`) kept in an HttpOnly cookie, the Server-Sent Events stream (`stream`), and the page's
//! actions: a test broadcast through the real pipeline, the dead letters and their retry.

mod stream;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use herald_notify::{Campaign, Donation, EventOutcome, IngestError, NotificationBroadcaster, Payment};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::error;

use crate::admin::{authorize, snapshot};
use crate::error::ApiError;
use crate::guard::{self, cross_origin, cross_origin_refused, session_of, ClientAddress};
use crate::listener::Transport;
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

/// Where the page's markup takes the sign-out button and the login form its message.
const LOGOUT_SLOT: &str = "<!--logout-->";
const ERROR_SLOT: &str = "<!--error-->";
/// Where the page takes the status snapshot it paints first.
const SNAPSHOT_SLOT: &str = "<!--snapshot-->";
/// How long the page may wait for the snapshot before it goes without (the stream brings it).
const SNAPSHOT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const LOGOUT_FORM: &str = "<form method=\"post\" action=\"/dashboard/logout\" class=\"logout\">\
     <button type=\"submit\" class=\"quiet\">Sign out</button></form>";

/// The event types "Send test broadcast" offers, the first being the default.
const TEST_TYPES: [&str; 7] =
    ["security", "maintenance", "donation", "milestone", "approval", "payment", "compliance"];

pub(crate) use stream::stream;

/// The updates the dashboards of one admin listener share.
pub(crate) fn feed() -> Arc<stream::Feed> {
    Arc::new(stream::Feed::new())
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
pub(crate) async fn page(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if authorize(&state, &headers).is_err() {
        let ended = session_of(&headers).is_some();
        return login_form(ended.then_some("Your session has ended: sign in again."));
    }
    let logout = if state.admin.requires_sign_in() { LOGOUT_FORM } else { "" };
    let snapshot = match tokio::time::timeout(SNAPSHOT_TIMEOUT, snapshot(&state, false)).await {
        Ok(status) => snapshot_block(&status.to_json()),
        Err(_) => String::new(),
    };
    let page = INDEX.replace(LOGOUT_SLOT, logout).replace(SNAPSHOT_SLOT, &snapshot);
    document(StatusCode::OK, "text/html; charset=utf-8", page)
}

/// The status as a JSON data block the page reads (`type="application/json"` is never run, so
/// the script policy allows it). `<` is escaped, so no value can close the element.
fn snapshot_block(json: &str) -> String {
    let json = json.replace('<', "\\u003c");
    format!("<script type=\"application/json\" id=\"snapshot\">{json}</script>")
}

/// The login form (401), with a fixed message (never text from the request).
fn login_form(problem: Option<&'static str>) -> Response {
    let message = problem.map(|text| format!("<p class=\"error\" role=\"alert\">{text}</p>"));
    let body = LOGIN.replace(ERROR_SLOT, message.as_deref().unwrap_or(""));
    document(StatusCode::UNAUTHORIZED, "text/html; charset=utf-8", body)
}

/// `GET /dashboard/app.js`
pub(crate) async fn script() -> Response {
    document(StatusCode::OK, "text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /dashboard/style.css`: open, since the login form uses it too (it holds nothing secret).
pub(crate) async fn style() -> Response {
    document(StatusCode::OK, "text/css; charset=utf-8", STYLE)
}

/// `GET /dashboard/icon.svg`: open, like the style sheet.
pub(crate) async fn icon() -> Response {
    document(StatusCode::OK, "image/svg+xml", ICON)
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /dashboard/login` (form field `token`): the admin token, or with `admin.allow_jwt` (and
/// no admin token) a platform bearer token with the `super_admin` role. Valid: a new server-side session whose
/// random id (never the token) goes into an HttpOnly, SameSite=Strict cookie limited to the
/// admin paths, and back to the page. Failures count towards the client's throttle.
pub(crate) async fn login(
    State(state): State<SharedState>,
    Extension(ClientAddress(client)): Extension<ClientAddress>,
    transport: Option<Extension<Transport>>,
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
    if !state.admin.requires_sign_in() {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/dashboard")]).into_response();
    }
    if !state.admin.accepts(&state.auth.authorizer, token) {
        state.admin.record_failure(client, "dashboard login");
        return login_form(Some("That token is not valid."));
    }
    let session = state.admin.open_session();
    let tls = transport.is_some_and(|Extension(transport)| transport.tls);
    let secure = if tls || over_tls(&headers) { "; Secure" } else { "" };
    let max_age = guard::SESSION_TTL.as_secs();
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/dashboard")]).into_response();
    for path in guard::SESSION_PATHS {
        let cookie = format!(
            "{}={session}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
            guard::SESSION_COOKIE
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Whether the browser reached a TLS-terminating proxy in front of the admin listener
/// (`X-Forwarded-Proto: https`); TLS to Herald itself is the listener's [`Transport`].
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// `POST /dashboard/logout`: revokes the session and forgets the cookie.
pub(crate) async fn logout(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if cross_origin(&headers) {
        return cross_origin_refused();
    }
    if let Some(session) = session_of(&headers) {
        state.admin.close_session(session);
    }
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/dashboard")]).into_response();
    for path in guard::SESSION_PATHS {
        let cookie = format!("{}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Strict", guard::SESSION_COOKIE);
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[derive(Debug, Default, Deserialize)]
struct TestBroadcast {
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// `POST /admin/api/test-broadcast` (`{"type": "security" | "maintenance" | ...}`, optional):
/// sends a sample domain event through the real pipeline (ingest, queue, driver) and answers
/// its outcome with 202, as the ingest does.
pub(crate) async fn test_broadcast(State(state): State<SharedState>, body: Bytes) -> Response {
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
    match send_sample(&NotificationBroadcaster::new(state.notify.notifier.clone()), kind).await {
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
            let when = herald_notify::rfc3339(herald_notify::now_ms() + 3_600_000);
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

fn storage_error(cause: herald_notify::StoreError) -> ApiError {
    error!(error = %cause, "dashboard query failed");
    ApiError::BackendUnavailable
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    limit: Option<String>,
}

/// `GET /admin/api/dead-letters[?limit=1..500]`: the newest dead letters and how many there are.
pub(crate) async fn dead_letters(
    State(state): State<SharedState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = match query.limit.as_deref() {
        None => 50,
        Some(limit) => limit
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "must be 1 to 500"))?,
    };
    let public = state.notifier().admin_channels_public();
    let letters = state.records().dead_letters(limit, public).await.map_err(storage_error)?;
    let total = state.records().dead_letter_count().await.map_err(storage_error)?;
    Ok(Json(json!({ "dead_letters": letters, "total": total })))
}

/// `POST /admin/api/dead-letters/{broadcast_id}/retry`: back in the queue, attempts reset.
pub(crate) async fn retry_dead_letter(
    State(state): State<SharedState>,
    Path(broadcast_id): Path<String>,
) -> Response {
    match state.records().replay(herald_notify::DeadLetters::One(&broadcast_id)).await {
        Ok(0) => ApiError::NotFound("dead letter").into_response(),
        Ok(replayed) => Json(json!({ "replayed": replayed, "broadcast_id": broadcast_id })).into_response(),
        Err(cause) => storage_error(cause).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_reference_only_this_origin() {
        for asset in [INDEX, LOGIN, SCRIPT, STYLE] {
            assert!(!asset.contains("http://") && !asset.contains("https://"), "external reference");
            assert!(!asset.contains(" style=\""), "inline styles are refused by the policy");
        }
        assert!(INDEX.contains(LOGOUT_SLOT) && LOGIN.contains(ERROR_SLOT) && INDEX.contains(SNAPSHOT_SLOT));
    }

    #[test]
    fn no_value_in_the_snapshot_can_close_its_element() {
        let block = snapshot_block(&json!({ "error": "</script><script>alert(1)</script><!--" }).to_string());
        assert_eq!(block.matches("</script>").count(), 1, "{block}");
        assert!(!block.contains("<!--"), "{block}");
        let json = block.trim_start_matches("<script type=\"application/json\" id=\"snapshot\">");
        let json = json.trim_end_matches("</script>");
        let value: Value = serde_json::from_str(json).expect("still JSON");
        assert_eq!(value["error"], "</script><script>alert(1)</script><!--");
    }
}
