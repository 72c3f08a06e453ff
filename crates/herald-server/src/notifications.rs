//! The notification layer's HTTP side: the signed ingest `POST /apps/{id}/domain-events` and the
//! signed `GET /apps/{id}/audit`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_notify::{AuditFilter, AuditKind};
use herald_notify::{AuditRecord, IngestError};
use serde_json::{json, Value};
use tracing::error;

use crate::error::ApiError;
use crate::signed::Signed;
use crate::state::NotifyState;

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::Storage(cause) => {
                error!(error = %cause, "ingest could not be stored");
                ApiError::BackendUnavailable
            }
            IngestError::Conflict(cause) => {
                tracing::info!(error = %cause, "ingest conflict");
                ApiError::Conflict(
                    "two events of the batch name the same notification id; nothing was stored".into(),
                )
            }
            IngestError::Invalid { .. } => ApiError::UnprocessableFields(error.field_errors()),
            other => ApiError::Unprocessable {
                field: other.field().unwrap_or_default(),
                problem: other.to_string(),
            },
        }
    }
}

/// The notification layer belongs to one app (`notifications.app_id`); other apps' credentials
/// may not feed it or read its audit trail.
fn notification_app(state: &NotifyState, app_id: &str) -> Result<(), ApiError> {
    if *state.app_id == *app_id {
        Ok(())
    } else {
        Err(ApiError::WrongApp(format!(
            "the notification layer belongs to app {:?} (notifications.app_id); sign with its credentials",
            state.app_id
        )))
    }
}

/// `POST /apps/{app_id}/domain-events`: one event or `{"events": [...]}` (at most 100).
/// 202 once every event and its jobs are committed.
pub(crate) async fn ingest(
    State(state): State<NotifyState>,
    Signed { app, query, body }: Signed,
) -> Result<Response, ApiError> {
    notification_app(&state, &app.config.id)?;
    // The Pusher PHP SDK's post() treats anything but 200 as an error: `status=200` (signed like
    // every parameter) asks for 200 instead of 202.
    let status = match query.get("status") {
        None | Some("202") => StatusCode::ACCEPTED,
        Some("200") => StatusCode::OK,
        Some(_) => return Err(ApiError::invalid("status", "must be 200 or 202")),
    };
    let value: Value =
        serde_json::from_slice(&body).map_err(|error| ApiError::MalformedJson(error.to_string()))?;
    let events = match value {
        Value::Object(mut object) if object.contains_key("events") => match object.remove("events") {
            Some(Value::Array(events)) => events,
            _ => {
                return Err(ApiError::Unprocessable {
                    field: "events".into(),
                    problem: "events: must be a list".into(),
                })
            }
        },
        event @ Value::Object(_) => vec![event],
        _ => {
            return Err(ApiError::Unprocessable {
                field: "events".into(),
                problem: "body must be an event object or {\"events\": [...]}".into(),
            })
        }
    };
    let outcomes = state.notifier.ingest(&events).await?;
    Ok((status, Json(json!({ "events": outcomes }))).into_response())
}

/// `GET /apps/{app_id}/audit?type=&status=&event_id=&since=&limit=`
pub(crate) async fn audit(
    State(state): State<NotifyState>,
    Signed { app, query, .. }: Signed,
) -> Result<Json<Value>, ApiError> {
    notification_app(&state, &app.config.id)?;
    let since_ms = match query.get("since") {
        Some(since) => {
            herald_notify::parse_since(since).map_err(|problem| ApiError::invalid("since", problem))?
        }
        None => 0,
    };
    let limit = match query.get("limit") {
        Some(limit) => limit
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "must be 1 to 1000"))?,
        None => 100,
    };
    let filter = AuditFilter {
        event_type: query.get("type").unwrap_or("").to_owned(),
        kind: match query.get("status") {
            None | Some("") => None,
            Some(name) => {
                Some(AuditKind::parse(name).map_err(|problem| ApiError::invalid("status", problem))?)
            }
        },
        event_id: query.get("event_id").unwrap_or("").to_owned(),
        since_ms,
        limit,
    };
    let entries = state.notifier.records().audit(&filter).await.map_err(|cause| {
        error!(error = %cause, "audit query failed");
        ApiError::BackendUnavailable
    })?;
    let entries: Vec<AuditRecord> = entries.iter().map(herald_notify::AuditEntry::record).collect();
    Ok(Json(json!({ "entries": entries })))
}
