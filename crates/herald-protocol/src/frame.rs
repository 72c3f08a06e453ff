//! Frames: what a client may send, parsed and checked; what the server sends, encoded once.

use serde::Deserialize;
use serde_json::Value;

/// Why a client frame was refused. Each maps to a `pusher:error` the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message is not valid JSON")]
    InvalidJson,
    #[error("message must be a JSON object with a string \"event\"")]
    MissingEvent,
    #[error("\"{0}\" is missing or has the wrong type")]
    BadField(&'static str),
    #[error("event {0:?} may not be sent by clients")]
    ForbiddenEvent(String),
}

/// One message from a client, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    Ping,
    Pong,
    Subscribe(SubscribeData),
    Unsubscribe {
        channel: String,
    },
    Signin(SigninData),
    /// A `client-*` event; `data` is kept as the client sent it.
    Client {
        event: String,
        channel: String,
        data: Value,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SubscribeData {
    pub channel: String,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub channel_data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SigninData {
    pub auth: String,
    pub user_data: String,
}

#[derive(Deserialize)]
struct RawFrame {
    event: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    channel: Option<Value>,
}

impl ClientEvent {
    /// Parses a text frame and applies the rule that clients may send only `pusher:ping`,
    /// `pusher:pong`, `pusher:subscribe`, `pusher:unsubscribe`, `pusher:signin` and `client-*`.
    pub fn parse(text: &str) -> Result<ClientEvent, FrameError> {
        let value: Value = serde_json::from_str(text).map_err(|_| FrameError::InvalidJson)?;
        let raw: RawFrame = serde_json::from_value(value).map_err(|_| FrameError::MissingEvent)?;
        match raw.event.as_str() {
            "pusher:ping" => Ok(ClientEvent::Ping),
            "pusher:pong" => Ok(ClientEvent::Pong),
            "pusher:subscribe" => {
                let data = object_data(raw.data)?;
                let data: SubscribeData =
                    serde_json::from_value(data).map_err(|_| FrameError::BadField("data.channel"))?;
                Ok(ClientEvent::Subscribe(data))
            }
            "pusher:unsubscribe" => {
                let data = object_data(raw.data)?;
                let channel = data
                    .get("channel")
                    .and_then(Value::as_str)
                    .ok_or(FrameError::BadField("data.channel"))?;
                Ok(ClientEvent::Unsubscribe { channel: channel.to_owned() })
            }
            "pusher:signin" => {
                let data = object_data(raw.data)?;
                let data: SigninData = serde_json::from_value(data)
                    .map_err(|_| FrameError::BadField("data.auth/data.user_data"))?;
                Ok(ClientEvent::Signin(data))
            }
            name if name.starts_with("client-") => {
                let channel = match raw.channel {
                    Some(Value::String(channel)) => channel,
                    _ => return Err(FrameError::BadField("channel")),
                };
                Ok(ClientEvent::Client { event: raw.event, channel, data: raw.data })
            }
            _ => Err(FrameError::ForbiddenEvent(raw.event)),
        }
    }
}

/// pusher-js sends `data` of `pusher:*` events as an object; some clients send it JSON-encoded.
fn object_data(data: Value) -> Result<Value, FrameError> {
    match data {
        Value::Object(_) => Ok(data),
        Value::String(text) => match serde_json::from_str::<Value>(&text) {
            Ok(value @ Value::Object(_)) => Ok(value),
            _ => Err(FrameError::BadField("data")),
        },
        _ => Err(FrameError::BadField("data")),
    }
}

/// A presence subscription's `channel_data`: `{"user_id": ..., "user_info": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceChannelData {
    /// Numeric ids are turned into strings.
    pub user_id: String,
    pub user_info: Value,
}

impl PresenceChannelData {
    pub fn parse(text: &str, max_id_len: usize, max_info_bytes: usize) -> Result<Self, FrameError> {
        let value: Value = serde_json::from_str(text).map_err(|_| FrameError::BadField("channel_data"))?;
        let user_id = match value.get("user_id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => return Err(FrameError::BadField("channel_data.user_id")),
        };
        if user_id.len() > max_id_len {
            return Err(FrameError::BadField("channel_data.user_id"));
        }
        let user_info = value.get("user_info").cloned().unwrap_or(Value::Null);
        if user_info.to_string().len() > max_info_bytes {
            return Err(FrameError::BadField("channel_data.user_info"));
        }
        Ok(PresenceChannelData { user_id, user_info })
    }
}

/// `pusher:signin` user data: a non-empty string `id`, optional `watchlist`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UserData {
    pub id: Value,
    #[serde(default)]
    pub watchlist: Option<Vec<Value>>,
}

/// User data after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedUserData {
    pub id: String,
    /// Entries of `watchlist`, however many (over 100 is refused with 4302 by the server).
    pub watchlist_len: usize,
    /// The watched user ids, numbers turned into strings; entries of other types are skipped.
    pub watchlist: Vec<String>,
}

impl UserData {
    pub fn parse(text: &str) -> Result<ValidatedUserData, FrameError> {
        let data: UserData = serde_json::from_str(text).map_err(|_| FrameError::BadField("user_data"))?;
        let id = match data.id {
            Value::String(id) if !id.is_empty() && id.len() <= 200 => id,
            _ => return Err(FrameError::BadField("user_data.id")),
        };
        let entries = data.watchlist.unwrap_or_default();
        let watchlist_len = entries.len();
        let watchlist = entries
            .into_iter()
            .filter_map(|entry| match entry {
                Value::String(id) if !id.is_empty() => Some(id),
                Value::Number(number) => Some(number.to_string()),
                _ => None,
            })
            .collect();
        Ok(ValidatedUserData { id, watchlist_len, watchlist })
    }
}

/// Encodes a server event. `data` is sent as a JSON-encoded string, as the protocol says;
/// `user_id` is set on client events relayed from a presence channel.
pub fn encode_server_event(event: &str, channel: Option<&str>, data: &str, user_id: Option<&str>) -> String {
    let mut frame = serde_json::Map::with_capacity(4);
    frame.insert("event".into(), Value::String(event.to_owned()));
    if let Some(channel) = channel {
        frame.insert("channel".into(), Value::String(channel.to_owned()));
    }
    frame.insert("data".into(), Value::String(data.to_owned()));
    if let Some(user_id) = user_id {
        frame.insert("user_id".into(), Value::String(user_id.to_owned()));
    }
    Value::Object(frame).to_string()
}

/// A `pusher:error` frame.
pub fn encode_error(code: Option<u16>, message: &str) -> String {
    let data = serde_json::json!({ "code": code, "message": message });
    serde_json::json!({ "event": "pusher:error", "data": data }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_allowed_events() {
        assert_eq!(ClientEvent::parse(r#"{"event":"pusher:ping","data":{}}"#), Ok(ClientEvent::Ping));
        let sub = ClientEvent::parse(r#"{"event":"pusher:subscribe","data":{"channel":"a","auth":"k:s"}}"#);
        assert!(
            matches!(sub, Ok(ClientEvent::Subscribe(SubscribeData { ref channel, .. })) if channel == "a")
        );
        let encoded = ClientEvent::parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"b\"}"}"#);
        assert!(matches!(encoded, Ok(ClientEvent::Subscribe(_))));
        let client = ClientEvent::parse(r#"{"event":"client-x","channel":"private-a","data":{"a":1}}"#);
        assert!(matches!(client, Ok(ClientEvent::Client { .. })));
    }

    #[test]
    fn refuses_bad_frames() {
        assert_eq!(ClientEvent::parse("nope"), Err(FrameError::InvalidJson));
        assert_eq!(ClientEvent::parse("[1]"), Err(FrameError::MissingEvent));
        assert_eq!(ClientEvent::parse(r#"{"event":5}"#), Err(FrameError::MissingEvent));
        assert_eq!(
            ClientEvent::parse(r#"{"event":"pusher_internal:subscription_succeeded","channel":"a"}"#),
            Err(FrameError::ForbiddenEvent("pusher_internal:subscription_succeeded".into()))
        );
        assert!(matches!(
            ClientEvent::parse(r#"{"event":"pusher:other"}"#),
            Err(FrameError::ForbiddenEvent(_))
        ));
        assert_eq!(
            ClientEvent::parse(r#"{"event":"pusher:subscribe","data":{"channel":5}}"#),
            Err(FrameError::BadField("data.channel"))
        );
        assert_eq!(
            ClientEvent::parse(r#"{"event":"client-x","data":{}}"#),
            Err(FrameError::BadField("channel"))
        );
    }

    #[test]
    fn presence_data_normalises_numeric_ids() {
        let data = PresenceChannelData::parse(r#"{"user_id":10,"user_info":{"name":"x"}}"#, 128, 1024)
            .expect("valid");
        assert_eq!(data.user_id, "10");
        assert!(PresenceChannelData::parse(r#"{"user_info":{}}"#, 128, 1024).is_err());
        let big = format!(r#"{{"user_id":"1","user_info":"{}"}}"#, "x".repeat(2000));
        assert!(PresenceChannelData::parse(&big, 128, 1024).is_err());
    }

    #[test]
    fn user_data_needs_a_string_id() {
        assert_eq!(UserData::parse(r#"{"id":"12"}"#).expect("valid").id, "12");
        assert!(UserData::parse(r#"{"id":12}"#).is_err());
        assert!(UserData::parse(r#"{"id":""}"#).is_err());
    }

    #[test]
    fn server_events_carry_string_data() {
        let frame = encode_server_event("e", Some("c"), r#"{"a":1}"#, None);
        let value: Value = serde_json::from_str(&frame).expect("json");
        assert_eq!(value["data"], Value::String(r#"{"a":1}"#.into()));
    }

    #[test]
    fn pong_is_a_frame_clients_may_send() {
        assert_eq!(ClientEvent::parse(r#"{"event":"pusher:pong","data":{}}"#), Ok(ClientEvent::Pong));
    }

    #[test]
    fn presence_user_ids_are_required_and_at_most_the_limit() {
        let data = |id: &str| format!(r#"{{"user_id":{id},"user_info":{{}}}}"#);
        let parsed = PresenceChannelData::parse(&data(r#""ada""#), 128, 1024).expect("string id");
        assert_eq!(parsed.user_id, "ada");
        assert_eq!(
            PresenceChannelData::parse(&data(r#""""#), 128, 1024),
            Err(FrameError::BadField("channel_data.user_id")),
            "an empty id names no user"
        );
        let longest = format!(r#""{}""#, "u".repeat(128));
        assert!(PresenceChannelData::parse(&data(&longest), 128, 1024).is_ok(), "128 is the limit itself");
        let too_long = format!(r#""{}""#, "u".repeat(129));
        assert_eq!(
            PresenceChannelData::parse(&data(&too_long), 128, 1024),
            Err(FrameError::BadField("channel_data.user_id"))
        );
    }

    #[test]
    fn presence_user_info_may_fill_its_limit_exactly() {
        // `{"n":"…"}` is 8 bytes of JSON around the string.
        let info = |len: usize| format!(r#"{{"user_id":"1","user_info":{{"n":"{}"}}}}"#, "x".repeat(len - 8));
        assert!(PresenceChannelData::parse(&info(1024), 128, 1024).is_ok());
        assert_eq!(
            PresenceChannelData::parse(&info(1025), 128, 1024),
            Err(FrameError::BadField("channel_data.user_info"))
        );
    }

    #[test]
    fn errors_are_pusher_error_frames_with_code_and_message() {
        let frame: Value =
            serde_json::from_str(&encode_error(Some(4001), "app does not exist")).expect("json");
        assert_eq!(frame["event"], "pusher:error");
        assert_eq!(frame["data"]["code"], 4001);
        assert_eq!(frame["data"]["message"], "app does not exist");
        let without_code: Value = serde_json::from_str(&encode_error(None, "bad frame")).expect("json");
        assert_eq!(without_code["data"]["code"], Value::Null);
        assert_eq!(without_code["data"]["message"], "bad frame");
    }
}
