//! Errors the HTTP API answers with: each a status code and a JSON body naming the problem.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Why an API request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("unknown app {0:?}")]
    UnknownApp(String),
    #[error("no such route")]
    RouteNotFound,
    #[error("authentication failed: {0}")]
    Unauthenticated(&'static str),
    #[error("app is disabled")]
    AppDisabled,
    #[error("{field}: {problem}")]
    Invalid { field: &'static str, problem: String },
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: &'static str, limit: usize },
    #[error("request body not received within {0} seconds")]
    BodyTimeout(u64),
    #[error("too many requests: the app allows {0} API requests per second")]
    RateLimited(u32),
    #[error("server is shutting down; retry on another node")]
    Unavailable,
    /// The main listener's connection caps (in all, or for the client's IP) are reached.
    #[error("too many connections; retry later")]
    ConnectionsFull,
    #[error("{0}")]
    Token(herald_auth::TokenError),
    #[error("{}", match .policy { Some(policy) => format!("the {policy:?} policy refused this channel"), None => "no policy allows this channel".to_owned() })]
    Forbidden { policy: Option<String> },
    #[error("storage is unavailable; retry later")]
    BackendUnavailable,
    /// The cluster's Redis did not take a publication or a cluster-wide read: nothing was sent.
    #[error("the cluster's Redis is unreachable; nothing was delivered, retry later")]
    ClusterUnavailable,
    #[error("{problem}")]
    Unprocessable { field: String, problem: String },
    /// Several fields at fault: `(field, problem)`, never empty; answered like `Unprocessable`
    /// for the first, with every one under `errors`.
    #[error("{}", first_field_error(.0))]
    UnprocessableFields(Vec<(String, String)>),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    WrongApp(String),
}

fn first_field_error(errors: &[(String, String)]) -> String {
    errors
        .first()
        .map_or_else(|| "invalid fields".to_owned(), |(field, problem)| format!("{field}: {problem}"))
}

impl ApiError {
    pub fn invalid(field: &'static str, problem: impl Into<String>) -> ApiError {
        ApiError::Invalid { field, problem: problem.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownApp(_) | ApiError::RouteNotFound | ApiError::NotFound(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Unprocessable { .. } | ApiError::UnprocessableFields(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::WrongApp(_) => StatusCode::FORBIDDEN,
            ApiError::Unauthenticated(_) | ApiError::Token(_) => StatusCode::UNAUTHORIZED,
            ApiError::AppDisabled | ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Invalid { .. } | ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable
            | ApiError::ConnectionsFull
            | ApiError::BackendUnavailable
            | ApiError::ClusterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self {
            ApiError::Invalid { field, problem } => {
                json!({ "error": self.to_string(), "field": field, "problem": problem })
            }
            ApiError::Unprocessable { field, .. } => {
                let error = self.to_string();
                json!({ "error": error, "field": field, "errors": [{ "error": error, "field": field }] })
            }
            ApiError::UnprocessableFields(errors) => {
                let all: Vec<_> = errors
                    .iter()
                    .map(|(field, problem)| json!({ "error": format!("{field}: {problem}"), "field": field }))
                    .collect();
                let field = errors.first().map(|(field, _)| field.as_str());
                json!({ "error": self.to_string(), "field": field, "errors": all })
            }
            ApiError::Forbidden { policy } => {
                json!({ "error": self.to_string(), "policy": policy })
            }
            _ => json!({ "error": self.to_string() }),
        };
        (self.status(), Json(body)).into_response()
    }
}

impl From<herald_broker::BrokerError> for ApiError {
    fn from(error: herald_broker::BrokerError) -> ApiError {
        tracing::warn!(%error, "cluster operation failed");
        ApiError::ClusterUnavailable
    }
}
