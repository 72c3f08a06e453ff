//! The users' REST API (bearer token): inbox, read marks, preferences and channel history.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use herald_auth::Identity;
use herald_notify::{InboxPage, InboxQuery as Page, Preference, Preferences, StoreError};
use herald_protocol::ChannelName;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::error;

use crate::error::ApiError;
use crate::state::NotifyState;

fn identify(state: &NotifyState, headers: &HeaderMap) -> Result<Identity, ApiError> {
    state.authorizer.identify(headers)
}

fn unavailable(cause: StoreError) -> ApiError {
    error!(error = %cause, "storage failed");
    ApiError::BackendUnavailable
}

#[derive(Debug, Deserialize)]
pub(crate) struct InboxQuery {
    #[serde(default)]
    unread: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

fn limit_of(text: Option<&str>) -> Result<i64, ApiError> {
    match text {
        None => Ok(50),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "must be 1 to 100")),
    }
}

/// `GET /api/v1/notifications?unread=true&cursor=&after=&limit=`
pub(crate) async fn list(
    State(state): State<NotifyState>,
    headers: HeaderMap,
    Query(query): Query<InboxQuery>,
) -> Result<Json<InboxPage>, ApiError> {
    let identity = identify(&state, &headers)?;
    let unread = match query.unread.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => return Err(ApiError::invalid("unread", "must be true or false")),
    };
    let cursor = match query.cursor.as_deref() {
        None => None,
        Some(text) => Some(
            text.parse::<i64>()
                .map_err(|_| ApiError::invalid("cursor", "must be a cursor from next_cursor"))?,
        ),
    };
    let limit = limit_of(query.limit.as_deref())?;
    let page = Page { unread_only: unread, cursor, after: query.after.as_deref(), limit };
    let page = state.notifier.records().inbox(&identity.user_id, page).await.map_err(unavailable)?;
    Ok(Json(page))
}

/// `POST /api/v1/notifications/{id}/read`
pub(crate) async fn mark_read(
    State(state): State<NotifyState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let identity = identify(&state, &headers)?;
    if state.notifier.records().mark_read(&identity.user_id, &id).await.map_err(unavailable)? {
        Ok(Json(json!({ "id": id, "read": true })))
    } else {
        Err(ApiError::NotFound("notification"))
    }
}

/// `POST /api/v1/notifications/read-all`
pub(crate) async fn mark_all_read(
    State(state): State<NotifyState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let identity = identify(&state, &headers)?;
    let updated = state.notifier.records().mark_all_read(&identity.user_id).await.map_err(unavailable)?;
    Ok(Json(json!({ "updated": updated })))
}

/// `GET /api/v1/preferences`
pub(crate) async fn get_preferences(
    State(state): State<NotifyState>,
    headers: HeaderMap,
) -> Result<Json<Preferences>, ApiError> {
    let identity = identify(&state, &headers)?;
    let preferences = state.notifier.records().preferences(&identity.user_id).await.map_err(unavailable)?;
    Ok(Json(preferences))
}

/// `PUT /api/v1/preferences` with `{"preferences": [{"type", "realtime", "in_app"}]}`
pub(crate) async fn put_preferences(
    State(state): State<NotifyState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Preferences>, ApiError> {
    let identity = identify(&state, &headers)?;
    let value: Value =
        serde_json::from_slice(&body).map_err(|error| ApiError::MalformedJson(error.to_string()))?;
    let Some(Value::Array(items)) = value.get("preferences") else {
        return Err(ApiError::invalid("preferences", "is required and must be a list"));
    };
    if items.len() > 100 {
        return Err(ApiError::invalid("preferences", "at most 100 types"));
    }
    let mut preferences = Vec::with_capacity(items.len());
    for item in items {
        let notification_type = match item.get("type") {
            Some(Value::String(name)) if !name.is_empty() && name.len() <= 100 => name.clone(),
            _ => {
                return Err(ApiError::invalid(
                    "preferences",
                    "every entry needs a \"type\" string (1 to 100 characters)",
                ))
            }
        };
        let flag = |key: &str| match item.get(key) {
            None => Ok(true),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(_) => Err(ApiError::invalid("preferences", format!("{key} must be true or false"))),
        };
        preferences.push(Preference {
            notification_type,
            realtime: flag("realtime")?,
            in_app: flag("in_app")?,
        });
    }
    let stored = state
        .notifier
        .records()
        .set_preferences(&identity.user_id, &preferences)
        .await
        .map_err(unavailable)?;
    Ok(Json(stored))
}

#[derive(Debug, Deserialize)]
pub(crate) struct HistoryQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// `GET /api/v1/channels/{channel}/events?after=<seq>`: what a catalog channel was sent, for a
/// dashboard catching up after a reconnect. Authorized by the channel's subscription policy.
pub(crate) async fn channel_history(
    State(state): State<NotifyState>,
    headers: HeaderMap,
    Path(channel): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let authorizer = &state.authorizer;
    let identity = authorizer.identify(&headers)?;
    let logical = herald_notify::CatalogChannel::from_wire(&channel);
    let wire = state.notifier.wire_channel(logical.as_str());
    let wire =
        ChannelName::parse(&wire, 200).map_err(|error| ApiError::invalid("channel", error.to_string()))?;
    if wire.kind().requires_auth() {
        authorizer.decide(state.notifier.records(), &identity, &wire).await?;
    }
    let after = match query.after.as_deref() {
        None => 0,
        Some(text) => text.parse::<i64>().map_err(|_| ApiError::invalid("after", "must be an event seq"))?,
    };
    let limit = limit_of(query.limit.as_deref())?;
    let events = state
        .notifier
        .records()
        .channel_history(logical.as_str(), after, limit)
        .await
        .map_err(unavailable)?;
    let last = events.last().map(|event| event.seq);
    Ok(Json(json!({ "channel": wire.as_str(), "events": events, "next_after": last.unwrap_or(after) })))
}
