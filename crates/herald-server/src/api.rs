//! The Pusher HTTP API: trigger, batch trigger, channel queries, terminate user connections.
//!
//! Handlers validate everything before publishing anything, so bad input changes nothing.
//! They never write to sockets: they publish to the app's hub.

use axum::extract::Path;
use axum::Json;
use herald_protocol::{valid_event_name, ChannelKind, ChannelName, SocketId};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::signed::Signed;
use crate::tenant::Tenant;

type ApiResult = Result<Json<Value>, ApiError>;

/// A trigger after validation: ready to publish.
struct Trigger {
    name: String,
    data: String,
    channels: Vec<ChannelName>,
    except: Option<SocketId>,
    info: Info,
}

/// Which counts the caller asked for with `info=`.
#[derive(Debug, Clone, Copy, Default)]
struct Info {
    subscription_count: bool,
    user_count: bool,
    cache: bool,
}

impl Info {
    fn parse(text: Option<&str>, allowed: &[&str]) -> Result<Info, ApiError> {
        let mut info = Info::default();
        for attribute in text.unwrap_or("").split(',').map(str::trim).filter(|a| !a.is_empty()) {
            if !allowed.contains(&attribute) {
                return Err(ApiError::invalid(
                    "info",
                    format!("unknown attribute {attribute:?}; allowed: {}", allowed.join(", ")),
                ));
            }
            match attribute {
                "subscription_count" => info.subscription_count = true,
                "user_count" => info.user_count = true,
                _ => info.cache = true,
            }
        }
        Ok(info)
    }

    fn any(self) -> bool {
        self.subscription_count || self.user_count || self.cache
    }
}

fn parse_json(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::invalid("body", "must be a JSON object")),
        Err(error) => Err(ApiError::MalformedJson(error.to_string())),
    }
}

/// Validates one event object (`name`, `data`, `channel`/`channels`, `socket_id`, `info`).
fn parse_trigger(
    app: &Tenant,
    object: &Map<String, Value>,
    query_info: Option<&str>,
) -> Result<Trigger, ApiError> {
    let limits = &app.config.limits;
    let name = match object.get("name") {
        Some(Value::String(name)) if valid_event_name(name, limits.max_event_name_len) => name.clone(),
        Some(Value::String(_)) => {
            return Err(ApiError::invalid(
                "name",
                format!("must be 1 to {} characters", limits.max_event_name_len),
            ))
        }
        _ => return Err(ApiError::invalid("name", "is required and must be a string")),
    };
    let data = match object.get("data") {
        Some(Value::String(data)) => data.clone(),
        Some(Value::Null) | None => return Err(ApiError::invalid("data", "is required")),
        Some(other) => other.to_string(),
    };
    if data.len() > limits.max_event_data_bytes {
        return Err(ApiError::TooLarge { what: "event data", limit: limits.max_event_data_bytes });
    }
    let names: Vec<&str> = match (object.get("channels"), object.get("channel")) {
        (Some(Value::Array(list)), None) => list
            .iter()
            .map(|value| {
                value.as_str().ok_or_else(|| ApiError::invalid("channels", "must be a list of strings"))
            })
            .collect::<Result<_, _>>()?,
        (Some(_), None) => return Err(ApiError::invalid("channels", "must be a list of strings")),
        (None, Some(Value::String(channel))) => vec![channel.as_str()],
        (None, Some(_)) => return Err(ApiError::invalid("channel", "must be a string")),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("channels", "give either channel or channels, not both"))
        }
        (None, None) => return Err(ApiError::invalid("channels", "is required")),
    };
    if names.is_empty() {
        return Err(ApiError::invalid("channels", "must name at least one channel"));
    }
    if names.len() > limits.max_channels_per_trigger {
        return Err(ApiError::invalid(
            "channels",
            format!("at most {} channels per trigger", limits.max_channels_per_trigger),
        ));
    }
    let mut channels = Vec::with_capacity(names.len());
    for name in names {
        let channel = ChannelName::parse(name, limits.max_channel_name_len)
            .map_err(|error| ApiError::invalid("channels", format!("{name:?}: {error}")))?;
        if !channels.contains(&channel) {
            channels.push(channel);
        }
    }
    if channels.len() > 1 && channels.iter().any(|channel| channel.kind() == ChannelKind::PrivateEncrypted) {
        return Err(ApiError::invalid("channels", "an encrypted channel must be triggered alone"));
    }
    if channels.iter().any(|channel| channel.kind() == ChannelKind::PrivateEncrypted) {
        check_encrypted_payload(&data)?;
    }
    let except = match object.get("socket_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(
            SocketId::parse(id)
                .ok_or_else(|| ApiError::invalid("socket_id", format!("{id:?} is not a socket id")))?,
        ),
        Some(_) => return Err(ApiError::invalid("socket_id", "must be a string")),
    };
    let info_text = match object.get("info") {
        Some(Value::String(info)) => Some(info.as_str()),
        Some(_) => return Err(ApiError::invalid("info", "must be a comma-separated string")),
        None => query_info,
    };
    let info = Info::parse(info_text, &["subscription_count", "user_count"])?;
    Ok(Trigger { name, data, channels, except, info })
}

/// An encrypted channel only relays what the SDKs' end-to-end encryption produces:
/// `{"nonce": base64 of 24 bytes, "ciphertext": base64}`. Anything else is refused, so a
/// misconfigured SDK (no encryption master key) never sends plaintext to the sockets.
fn check_encrypted_payload(data: &str) -> Result<(), ApiError> {
    use base64::Engine as _;
    const EXPECTED: &str = "must be the {\"nonce\", \"ciphertext\"} the SDKs produce for an encrypted \
         channel (is the SDK's encryption master key set?)";
    let decoded = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
    };
    let payload: Value = serde_json::from_str(data).map_err(|_| ApiError::invalid("data", EXPECTED))?;
    match (decoded(payload.get("nonce")), decoded(payload.get("ciphertext"))) {
        (Some(nonce), Some(ciphertext)) if nonce.len() == 24 && !ciphertext.is_empty() => Ok(()),
        _ => Err(ApiError::invalid("data", EXPECTED)),
    }
}

/// Publishes a validated trigger; returns the per-channel info the caller asked for.
async fn publish(app: &Tenant, trigger: &Trigger) -> Result<Map<String, Value>, ApiError> {
    let except = trigger.except.as_ref().map(SocketId::as_str);
    let mut info = Map::new();
    for channel in &trigger.channels {
        app.publish(channel, &trigger.name, &trigger.data, except, None).await?;
        if trigger.info.any() {
            let attributes = channel_attributes(app, channel, trigger.info).await?;
            info.insert(channel.to_string(), Value::Object(attributes));
        }
    }
    Ok(info)
}

async fn channel_attributes(
    app: &Tenant,
    channel: &ChannelName,
    info: Info,
) -> Result<Map<String, Value>, ApiError> {
    let counts =
        if info.subscription_count || info.user_count { app.channel_info(channel).await? } else { None };
    let mut attributes = Map::new();
    if info.subscription_count {
        attributes.insert("subscription_count".into(), json!(counts.map_or(0, |c| c.subscription_count)));
    }
    if info.user_count && channel.kind() == ChannelKind::Presence {
        attributes.insert("user_count".into(), json!(counts.and_then(|c| c.user_count).unwrap_or(0)));
    }
    if info.cache && channel.is_cache() {
        if let Some((data, ttl)) = app.hub.cached_event(channel) {
            attributes.insert("cache".into(), json!({ "data": &*data, "ttl": ttl.as_secs() }));
        }
    }
    Ok(attributes)
}

/// `POST /apps/{app_id}/events`
pub(crate) async fn trigger(Signed { app, query, body }: Signed) -> ApiResult {
    let trigger = parse_trigger(&app, &parse_json(&body)?, query.get("info"))?;
    let info = publish(&app, &trigger).await?;
    Ok(Json(if trigger.info.any() { json!({ "channels": info }) } else { json!({}) }))
}

/// `POST /apps/{app_id}/batch_events`
pub(crate) async fn trigger_batch(Signed { app, body, .. }: Signed) -> ApiResult {
    let object = parse_json(&body)?;
    let Some(Value::Array(batch)) = object.get("batch") else {
        return Err(ApiError::invalid("batch", "is required and must be a list of events"));
    };
    let max = app.config.limits.max_batch_events;
    if batch.len() > max {
        return Err(ApiError::invalid("batch", format!("at most {max} events per batch")));
    }
    let mut triggers = Vec::with_capacity(batch.len());
    for event in batch {
        let Value::Object(event) = event else {
            return Err(ApiError::invalid("batch", "every event must be a JSON object"));
        };
        if event.contains_key("channels") {
            return Err(ApiError::invalid(
                "channels",
                "batch events name one channel each, with \"channel\"",
            ));
        }
        triggers.push(parse_trigger(&app, event, None)?);
    }
    let mut results = Vec::with_capacity(triggers.len());
    for trigger in &triggers {
        let info = publish(&app, trigger).await?;
        results.push(info.into_iter().next().map_or(json!({}), |(_, attributes)| attributes));
    }
    let asked = triggers.iter().any(|trigger| trigger.info.any());
    Ok(Json(if asked { json!({ "batch": results }) } else { json!({}) }))
}

/// `GET /apps/{app_id}/channels`
pub(crate) async fn list_channels(Signed { app, query, .. }: Signed) -> ApiResult {
    let prefix = query.get("filter_by_prefix").unwrap_or("");
    let info = Info::parse(query.get("info"), &["user_count", "subscription_count"])?;
    if info.user_count && !prefix.starts_with("presence-") {
        return Err(ApiError::invalid("info", "user_count needs filter_by_prefix=presence-"));
    }
    let mut channels = Map::new();
    for (channel, counts) in app.channels(prefix).await? {
        if channel.kind() == ChannelKind::ServerToUser {
            continue;
        }
        let mut attributes = Map::new();
        if info.user_count {
            attributes.insert("user_count".into(), json!(counts.user_count.unwrap_or(0)));
        }
        if info.subscription_count {
            attributes.insert("subscription_count".into(), json!(counts.subscription_count));
        }
        channels.insert(channel.to_string(), Value::Object(attributes));
    }
    Ok(Json(json!({ "channels": channels })))
}

fn channel_from_path(app: &Tenant, name: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse(name, app.config.limits.max_channel_name_len)
        .map_err(|error| ApiError::invalid("channel", format!("{name:?}: {error}")))
}

/// `GET /apps/{app_id}/channels/{channel}`
pub(crate) async fn channel_info(
    Path(ChannelPath { channel }): Path<ChannelPath>,
    Signed { app, query, .. }: Signed,
) -> ApiResult {
    let channel = channel_from_path(&app, &channel)?;
    let info = Info::parse(query.get("info"), &["subscription_count", "user_count", "cache"])?;
    if info.user_count && channel.kind() != ChannelKind::Presence {
        return Err(ApiError::invalid("info", "user_count is only available for presence channels"));
    }
    let occupied = app.channel_info(&channel).await?.is_some();
    let mut body = channel_attributes(&app, &channel, info).await?;
    body.insert("occupied".into(), json!(occupied));
    Ok(Json(Value::Object(body)))
}

/// `GET /apps/{app_id}/channels/{channel}/users`
pub(crate) async fn channel_users(
    Path(ChannelPath { channel }): Path<ChannelPath>,
    Signed { app, .. }: Signed,
) -> ApiResult {
    let channel = channel_from_path(&app, &channel)?;
    if channel.kind() != ChannelKind::Presence {
        return Err(ApiError::invalid("channel", "users can only be listed for presence channels"));
    }
    let users: Vec<Value> =
        app.presence_users(&channel).await?.into_iter().map(|id| json!({ "id": id })).collect();
    Ok(Json(json!({ "users": users })))
}

/// `POST /apps/{app_id}/users/{user_id}/terminate_connections`, and the same without the
/// `/apps/{id}` prefix, as the Python SDK sends it (the signed query's `auth_key` names the app).
pub(crate) async fn terminate_connections(
    Path(UserPath { user_id }): Path<UserPath>,
    Signed { app, .. }: Signed,
) -> ApiResult {
    if user_id.is_empty() || user_id.len() > 200 {
        return Err(ApiError::invalid("user_id", "must be 1 to 200 characters"));
    }
    app.terminate_user(&user_id).await?;
    Ok(Json(json!({})))
}

/// The `{channel}` of a route (beside `{app_id}`, which `Signed` reads).
#[derive(Debug, Deserialize)]
pub(crate) struct ChannelPath {
    channel: String,
}

/// The `{user_id}` of a route.
#[derive(Debug, Deserialize)]
pub(crate) struct UserPath {
    user_id: String,
}
