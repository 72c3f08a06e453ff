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
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: &'static str, limit: usize },
    #[error("too many requests: the app allows {0} API requests per second")]
    RateLimited(u32),
    #[error("server is shutting down; retry on another node")]
    Unavailable,
}

impl ApiError {
    pub fn invalid(field: &'static str, problem: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            field,
            problem: problem.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownApp(_) | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::AppDisabled => StatusCode::FORBIDDEN,
            ApiError::Invalid { .. } | ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self {
            ApiError::Invalid { field, problem } => {
                json!({ "error": self.to_string(), "field": field, "problem": problem })
            }
            _ => json!({ "error": self.to_string() }),
        };
        (self.status(), Json(body)).into_response()
    }
}
