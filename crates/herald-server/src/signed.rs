//! Verification of signed HTTP API requests (auth_version 1.0), as `shared/PROTOCOL.md` says.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::{Method, Uri};
use herald_protocol::{api_string_to_sign, body_md5_hex, verify_hex_signature};

use crate::error::ApiError;
use crate::state::PusherState;
use crate::tenant::Tenant;

/// Seconds an `auth_timestamp` may differ from the server clock.
pub(crate) const TIMESTAMP_WINDOW_SECS: i64 = 600;

/// Whether `timestamp` (any `i64` a client sent) is within ±[`TIMESTAMP_WINDOW_SECS`] of `now`.
/// `abs_diff` cannot overflow, so `i64::MIN + now` and the like are refused, not wrapped.
fn within_window(now: u64, timestamp: i64) -> bool {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    now.abs_diff(timestamp) <= TIMESTAMP_WINDOW_SECS.unsigned_abs()
}

/// The parsed query of an API request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query(pub(crate) Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(uri: &Uri) -> Result<Query, ApiError> {
        let raw = uri.query().unwrap_or("");
        serde_urlencoded::from_str(raw)
            .map(Query)
            .map_err(|_| ApiError::invalid("query", "is not valid application/x-www-form-urlencoded"))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// A request of the Pusher HTTP API whose signature checked out: a handler that takes it never
/// runs for an unsigned, wrongly signed, stale, disabled, rate-limited or draining request.
///
/// The app is the path's `{app_id}`, or, on routes without one (the Python SDK's
/// `/users/{id}/terminate_connections`), the app whose key signed the query. The body is read
/// under the app's size cap; GET requests have none.
#[derive(Debug)]
pub(crate) struct Signed {
    pub(crate) app: Arc<Tenant>,
    pub(crate) query: Query,
    pub(crate) body: Bytes,
}

impl<S> FromRequest<S> for Signed
where
    S: Send + Sync,
    PusherState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Signed, ApiError> {
        let method = request.method().clone();
        let uri = request.uri().clone();
        let pusher = PusherState::from_ref(state);
        let (mut parts, body) = request.into_parts();
        let params = RawPathParams::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| ApiError::invalid("path", "is not valid UTF-8"))?;
        let app_id = match params.iter().find(|(name, _)| *name == "app_id") {
            Some((_, id)) => id.to_owned(),
            None => app_id_by_key(&pusher, &uri)?,
        };
        let body = if method == Method::GET || method == Method::HEAD {
            Bytes::new()
        } else {
            let bytes = Bytes::from_request(Request::from_parts(parts, body), state).await;
            body_of(&pusher, &app_id, bytes)?
        };
        let (app, query) = authenticate(&pusher, &app_id, &method, &uri, &body)?;
        if !app.admit_api_call().await {
            return Err(ApiError::RateLimited(app.config.max_api_requests_per_second));
        }
        Ok(Signed { app, query, body })
    }
}

/// The request body, refused with 413 past the app's `max_http_body_bytes` (the router's
/// `DefaultBodyLimit` already stopped reading past the largest app's).
fn body_of(
    state: &PusherState,
    app_id: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    let limit =
        state.tenants.by_id(app_id).map_or(herald_protocol::Limits::default().max_http_body_bytes, |app| {
            app.config.limits.max_http_body_bytes
        });
    let body = body.map_err(|_| ApiError::TooLarge { what: "request body", limit })?;
    if body.len() > limit {
        return Err(ApiError::TooLarge { what: "request body", limit });
    }
    Ok(body)
}

/// The app whose key signed the query, for routes without `{app_id}`.
fn app_id_by_key(state: &PusherState, uri: &Uri) -> Result<String, ApiError> {
    let query = Query::parse(uri)?;
    let key = query.get("auth_key").ok_or(ApiError::Unauthenticated("auth_key is missing"))?;
    state
        .tenants
        .by_key(key)
        .map(|app| app.config.id.clone())
        .ok_or(ApiError::Unauthenticated("auth_key does not belong to any app"))
}

/// Finds the app of the path and checks key, timestamp, body MD5 and signature.
fn authenticate(
    state: &PusherState,
    app_id: &str,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<(Arc<Tenant>, Query), ApiError> {
    let app = state.tenants.by_id(app_id).ok_or_else(|| ApiError::UnknownApp(app_id.to_owned()))?.clone();
    let query = Query::parse(uri)?;
    let key = query.get("auth_key").ok_or(ApiError::Unauthenticated("auth_key is missing"))?;
    let timestamp =
        query.get("auth_timestamp").ok_or(ApiError::Unauthenticated("auth_timestamp is missing"))?;
    let signature =
        query.get("auth_signature").ok_or(ApiError::Unauthenticated("auth_signature is missing"))?;
    if query.get("auth_version").is_some_and(|version| version != "1.0") {
        return Err(ApiError::Unauthenticated("auth_version must be 1.0"));
    }
    if key != app.config.key {
        return Err(ApiError::Unauthenticated("auth_key does not belong to the app in the path"));
    }
    let timestamp: i64 =
        timestamp.parse().map_err(|_| ApiError::Unauthenticated("auth_timestamp is not a number"))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    if !within_window(now, timestamp) {
        return Err(ApiError::Unauthenticated(
            "auth_timestamp is more than 600 seconds from the server clock",
        ));
    }
    match query.get("body_md5") {
        Some(md5) if !md5.eq_ignore_ascii_case(&body_md5_hex(body)) => {
            return Err(ApiError::Unauthenticated("body_md5 does not match the body"));
        }
        None if !body.is_empty() => return Err(ApiError::Unauthenticated("body_md5 is missing")),
        _ => {}
    }
    let signed = api_string_to_sign(
        method.as_str(),
        uri.path(),
        query.0.iter().map(|(key, value)| (key.as_str(), value.as_str())),
    );
    if !verify_hex_signature(&app.config.secret, &signed, signature) {
        return Err(ApiError::Unauthenticated("invalid signature"));
    }
    if !app.config.enabled {
        return Err(ApiError::AppDisabled);
    }
    if state.lifecycle.is_draining() {
        return Err(ApiError::Unavailable);
    }
    Ok((app, query))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_within_ten_minutes_pass_and_extremes_never_wrap() {
        let now = 1_764_000_000_u64;
        let at = now as i64;
        assert!(within_window(now, at));
        assert!(within_window(now, at - 600));
        assert!(within_window(now, at + 600));
        assert!(!within_window(now, at - 601));
        assert!(!within_window(now, at + 601));
        for hostile in [i64::MIN, i64::MIN + at, i64::MIN + at + 1, i64::MAX, i64::MAX - at, -at, 0, -1] {
            assert!(!within_window(now, hostile), "{hostile}");
        }
        assert!(!within_window(u64::MAX, i64::MIN));
    }
}
