//! `/broadcasting/auth` and `/broadcasting/user-auth`: Herald signs subscriptions and sign-ins
//! itself, for users holding a platform bearer token, following the channel policies. Shapes are
//! Laravel's, so Echo's `authEndpoint` and `userAuthentication` work unchanged.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use herald_auth::Identity;
use herald_protocol::{
    channel_auth_string, signin_auth_string, ChannelKind, ChannelName, Limits, PresenceChannelData, SocketId,
};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::authorizer::{Authorizer, CorsGrant};
use crate::error::ApiError;
use crate::state::AuthState;

/// Reads `socket_id`, `channel_name` (and others) from a form-encoded or JSON body.
fn fields(body: &[u8]) -> Result<BTreeMap<String, String>, ApiError> {
    let trimmed =
        body.iter().position(|b| !b.is_ascii_whitespace()).map_or(&body[..0], |start| &body[start..]);
    if trimmed.first() == Some(&b'{') {
        let value: Map<String, Value> =
            serde_json::from_slice(trimmed).map_err(|error| ApiError::MalformedJson(error.to_string()))?;
        Ok(value
            .into_iter()
            .filter_map(|(key, value)| match value {
                Value::String(text) => Some((key, text)),
                Value::Number(number) => Some((key, number.to_string())),
                _ => None,
            })
            .collect())
    } else {
        serde_urlencoded::from_bytes(body)
            .map_err(|_| ApiError::invalid("body", "is neither form-encoded nor JSON"))
    }
}

fn socket_id(fields: &BTreeMap<String, String>) -> Result<SocketId, ApiError> {
    let text = fields.get("socket_id").ok_or_else(|| ApiError::invalid("socket_id", "is required"))?;
    SocketId::parse(text)
        .ok_or_else(|| ApiError::invalid("socket_id", format!("{text:?} is not a socket id")))
}

/// What both endpoints start from.
struct AuthRequest<'a> {
    authorizer: &'a Authorizer,
    fields: BTreeMap<String, String>,
    identity: Identity,
    socket_id: SocketId,
}

/// Reads the body's fields, verifies the caller's token and the socket id.
fn request<'a>(state: &'a AuthState, headers: &HeaderMap, body: &[u8]) -> Result<AuthRequest<'a>, ApiError> {
    let authorizer = &state.authorizer;
    let fields = fields(body)?;
    let identity = authorizer.identify(headers)?;
    let socket_id = socket_id(&fields)?;
    Ok(AuthRequest { authorizer, fields, identity, socket_id })
}

/// `POST /broadcasting/auth` with `socket_id` and `channel_name`.
pub(crate) async fn channel_auth(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let AuthRequest { authorizer, fields, identity, socket_id } = request(&state, &headers, &body)?;
    let name = fields.get("channel_name").ok_or_else(|| ApiError::invalid("channel_name", "is required"))?;
    let max_len = authorizer.app.config.limits.max_channel_name_len;
    let channel = ChannelName::parse(name, max_len)
        .map_err(|error| ApiError::invalid("channel_name", format!("{name:?}: {error}")))?;
    let kind = channel.kind();
    if !kind.requires_auth() {
        return Err(ApiError::invalid(
            "channel_name",
            "only private, encrypted and presence channels are authorized",
        ));
    }
    let shared_secret = match (kind, &authorizer.master_key) {
        (ChannelKind::PrivateEncrypted, None) => {
            return Err(ApiError::invalid(
                "channel_name",
                "encrypted channels need auth.encryption_master_key_base64 on the server",
            ))
        }
        (ChannelKind::PrivateEncrypted, Some(key)) => {
            let mut hasher = Sha256::new();
            hasher.update(channel.as_str().as_bytes());
            hasher.update(key);
            Some(base64::engine::general_purpose::STANDARD.encode(hasher.finalize()))
        }
        _ => None,
    };
    authorizer.decide(&state.records, &identity, &channel).await?;
    let body = if kind == ChannelKind::Presence {
        let channel_data = presence_channel_data(
            &authorizer.app.config.limits,
            &identity.user_id,
            authorizer.user_info(&identity),
        )?;
        let auth =
            authorizer.sign(&channel_auth_string(socket_id.as_str(), channel.as_str(), Some(&channel_data)));
        json!({ "auth": auth, "channel_data": channel_data })
    } else {
        let auth = authorizer.sign(&channel_auth_string(socket_id.as_str(), channel.as_str(), None));
        match shared_secret {
            Some(secret) => json!({ "auth": auth, "shared_secret": secret }),
            None => json!({ "auth": auth }),
        }
    };
    Ok(Json(body))
}

/// The presence `channel_data` for a user, refused (422 naming `user_id` or `user_info`) when
/// the subscription would refuse it: signing it would only move the error to the socket.
fn presence_channel_data(limits: &Limits, user_id: &str, user_info: Value) -> Result<String, ApiError> {
    if user_id.len() > limits.max_presence_user_id_len {
        return Err(ApiError::Unprocessable {
            field: "user_id".into(),
            problem: format!(
                "user_id: the token's user id is {} bytes; presence channels allow at most {} (limits.max_presence_user_id_len)",
                user_id.len(),
                limits.max_presence_user_id_len
            ),
        });
    }
    let info_bytes = user_info.to_string().len();
    if info_bytes > limits.max_presence_user_info_bytes {
        return Err(ApiError::Unprocessable {
            field: "user_info".into(),
            problem: format!(
                "user_info: the claims in auth.user_info_claims make {info_bytes} bytes of JSON; presence channels allow at most {} (limits.max_presence_user_info_bytes)",
                limits.max_presence_user_info_bytes
            ),
        });
    }
    let channel_data = json!({ "user_id": user_id, "user_info": user_info }).to_string();
    // The socket's own check, so the two can never disagree.
    PresenceChannelData::parse(
        &channel_data,
        limits.max_presence_user_id_len,
        limits.max_presence_user_info_bytes,
    )
    .map_err(|error| ApiError::Unprocessable {
        field: "channel_data".into(),
        problem: format!("channel_data: {error}"),
    })?;
    Ok(channel_data)
}

/// `POST /broadcasting/user-auth` with `socket_id`: the answer pusher-js sends as `pusher:signin`.
pub(crate) async fn user_auth(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let AuthRequest { authorizer, identity, socket_id, .. } = request(&state, &headers, &body)?;
    let user_data =
        json!({ "id": identity.user_id, "user_info": authorizer.user_info(&identity) }).to_string();
    let auth = authorizer.sign(&signin_auth_string(socket_id.as_str(), &user_data));
    Ok(Json(json!({ "auth": auth, "user_data": user_data })))
}

/// CORS for the browser-facing routes: answers preflights, and allows configured origins.
pub(crate) async fn cors(State(state): State<AuthState>, request: Request, next: Next) -> Response {
    let origin =
        request.headers().get(header::ORIGIN).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let grant = origin.as_deref().and_then(|origin| state.authorizer.cors_grant(origin));
    let mut response = if request.method() == Method::OPTIONS {
        if grant.is_some() {
            StatusCode::NO_CONTENT.into_response()
        } else {
            ApiError::Forbidden { policy: None }.into_response()
        }
    } else {
        next.run(request).await
    };
    if let (Some(grant), Some(origin)) = (grant, origin) {
        let headers = response.headers_mut();
        match grant {
            CorsGrant::Exact => {
                if let Ok(origin) = HeaderValue::from_str(&origin) {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                }
                headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            }
            CorsGrant::Any => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            }
        }
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "authorization, content-type, x-csrf-token, x-socket-id, x-requested-with",
            ),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_accept_forms_and_json() {
        let form = fields(b"socket_id=1.2&channel_name=private-a").expect("form");
        assert_eq!(form.get("channel_name").map(String::as_str), Some("private-a"));
        let json = fields(br#" {"socket_id":"1.2","channel_name":"private-a"}"#).expect("json");
        assert_eq!(json.get("socket_id").map(String::as_str), Some("1.2"));
        assert!(fields(b"{nope").is_err());
    }
}
