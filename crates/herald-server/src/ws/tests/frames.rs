//! The session's answers to the client's frames (`ws/frames.rs`), as `shared/PROTOCOL.md` states
//! them: refused subscriptions get `pusher:subscription_error` and the connection stays, sign-in
//! failures close 4009, 4302 and client-event refusals are errors that do not close.

use std::time::Duration;

use axum::extract::ws::Message;
use herald_protocol::{channel_auth_string, hmac_sha256_hex, CloseCode};
use serde_json::{json, Value};

use super::client::{data_of, Client};
use super::{context, drain, observer, tenant};
use crate::tenant::Tenant;

const SECOND: Duration = Duration::from_secs(1);

/// The `pusher:subscription_error` the session answered for `channel`: its data's type and status.
async fn refused(client: &mut Client, channel: &str) -> (String, u64) {
    let frame = client.event().await;
    assert_eq!(frame["event"], "pusher:subscription_error", "{frame}");
    assert_eq!(frame["channel"], channel, "{frame}");
    let data = data_of(&frame);
    assert!(data["error"].as_str().is_some_and(|error| !error.is_empty()), "{frame}");
    (data["type"].as_str().expect("a type").to_owned(), data["status"].as_u64().expect("a status"))
}

async fn succeeded(client: &mut Client, channel: &str) -> Value {
    let frame = client.event().await;
    assert_eq!(frame["event"], "pusher_internal:subscription_succeeded", "{frame}");
    assert_eq!(frame["channel"], channel, "{frame}");
    data_of(&frame)
}

/// A `pusher:error` without a code (not a close code: the connection stays); its message.
async fn error(client: &mut Client) -> String {
    let frame = client.event().await;
    assert_eq!(frame["event"], "pusher:error", "{frame}");
    assert_eq!(frame["data"]["code"], Value::Null, "{frame}");
    frame["data"]["message"].as_str().expect("a message").to_owned()
}

fn subscribe_presence(client: &Client, app: &Tenant, channel: &str, channel_data: &str) {
    let signed = channel_auth_string(&client.socket_id, channel, Some(channel_data));
    let auth = format!("{}:{}", app.config.key, hmac_sha256_hex(&app.config.secret, &signed));
    let data = json!({ "channel": channel, "auth": auth, "channel_data": channel_data });
    client.send(json!({ "event": "pusher:subscribe", "data": data }));
}

#[tokio::test(start_paused = true)]
async fn binary_frames_and_events_a_client_may_not_send_are_errors_that_keep_the_connection() {
    let app = tenant(|_| {});
    let mut client = Client::connect(&context(), &app).await;
    client.send_message(Message::Binary(vec![1, 2, 3].into()));
    assert!(error(&mut client).await.contains("binary"));
    client.send(json!({ "event": "pusher_internal:subscription_succeeded", "data": {} }));
    error(&mut client).await;
    // Pongs and WebSocket pings need no answer from the session.
    client.send(json!({ "event": "pusher:pong", "data": {} }));
    client.send_message(Message::Ping(vec![7].into()));
    client.silent_until(client.at(SECOND)).await;
    client.round_trip().await;
    assert_eq!(app.hub.connections(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_close_frame_from_the_client_ends_the_session_without_a_pusher_error() {
    let app = tenant(|_| {});
    let mut client = Client::connect(&context(), &app).await;
    client.subscribe("private-chat", &app);
    succeeded(&mut client, "private-chat").await;
    client.send_message(Message::Close(None));
    client.ended().await;
    assert_eq!(app.hub.connections(), 0);
    assert!(app.hub.channels().is_empty(), "the session left its channels");
}

#[tokio::test(start_paused = true)]
async fn a_subscription_to_an_invalid_name_is_refused_400() {
    let app = tenant(|_| {});
    let mut client = Client::connect(&context(), &app).await;
    for name in ["bad name", "#secret", &"a".repeat(201)] {
        client.send(json!({ "event": "pusher:subscribe", "data": { "channel": name } }));
        assert_eq!(refused(&mut client, name).await, ("InvalidChannel".into(), 400), "{name}");
    }
    client.round_trip().await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_subscribes_to_at_most_max_channels_per_connection() {
    let app = tenant(|config| config.limits.max_channels_per_connection = 2);
    let mut client = Client::connect(&context(), &app).await;
    for channel in ["one", "two"] {
        client.send(json!({ "event": "pusher:subscribe", "data": { "channel": channel } }));
        succeeded(&mut client, channel).await;
    }
    client.send(json!({ "event": "pusher:subscribe", "data": { "channel": "three" } }));
    assert_eq!(refused(&mut client, "three").await, ("LimitReached".into(), 400));
    // Subscribing again to a channel it has is not a new channel.
    client.send(json!({ "event": "pusher:subscribe", "data": { "channel": "two" } }));
    succeeded(&mut client, "two").await;
    // Leaving one makes room.
    client.send(json!({ "event": "pusher:unsubscribe", "data": { "channel": "one" } }));
    client.send(json!({ "event": "pusher:subscribe", "data": { "channel": "three" } }));
    succeeded(&mut client, "three").await;
}

#[tokio::test(start_paused = true)]
async fn private_and_presence_subscriptions_need_a_valid_auth() {
    let app = tenant(|_| {});
    let mut others = observer(&app, "private-chat");
    let mut client = Client::connect(&context(), &app).await;
    client.send(json!({ "event": "pusher:subscribe", "data": { "channel": "private-chat" } }));
    assert_eq!(refused(&mut client, "private-chat").await, ("AuthError".into(), 401), "no auth");
    let forged = format!("{}:{}", app.config.key, "0".repeat(64));
    client
        .send(json!({ "event": "pusher:subscribe", "data": { "channel": "private-chat", "auth": forged } }));
    assert_eq!(refused(&mut client, "private-chat").await, ("AuthError".into(), 401), "a wrong signature");
    // Another connection's signature is not this one's.
    let signed = channel_auth_string("1.1", "private-chat", None);
    let stolen = format!("{}:{}", app.config.key, hmac_sha256_hex(&app.config.secret, &signed));
    client
        .send(json!({ "event": "pusher:subscribe", "data": { "channel": "private-chat", "auth": stolen } }));
    assert_eq!(refused(&mut client, "private-chat").await, ("AuthError".into(), 401), "another socket's");
    // Refused, so not subscribed: client events on it are refused too.
    client.send(json!({ "event": "client-typing", "channel": "private-chat", "data": {} }));
    assert!(error(&mut client).await.contains("subscribed"));
    assert_eq!(drain(&mut others), 0);

    let presence = "presence-room";
    let auth = format!(
        "{}:{}",
        app.config.key,
        hmac_sha256_hex(&app.config.secret, &channel_auth_string(&client.socket_id, presence, None))
    );
    client.send(json!({ "event": "pusher:subscribe", "data": { "channel": presence, "auth": auth } }));
    assert_eq!(refused(&mut client, presence).await, ("AuthError".into(), 400), "no channel_data");
    subscribe_presence(&client, &app, presence, "not json");
    assert_eq!(refused(&mut client, presence).await, ("AuthError".into(), 400), "channel_data not JSON");
    subscribe_presence(&client, &app, presence, r#"{"user_id":"7","user_info":{"name":"Ada"}}"#);
    let data = succeeded(&mut client, presence).await;
    assert_eq!(data["presence"]["ids"], json!(["7"]));
    assert_eq!(data["presence"]["hash"]["7"], json!({ "name": "Ada" }));
    assert_eq!(data["presence"]["count"], 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_presence_channel_refuses_a_new_member_403() {
    let app = tenant(|config| config.limits.max_presence_members = 1);
    let context = context();
    let mut first = Client::connect(&context, &app).await;
    let mut second = Client::connect(&context, &app).await;
    subscribe_presence(&first, &app, "presence-room", r#"{"user_id":"1"}"#);
    succeeded(&mut first, "presence-room").await;
    subscribe_presence(&second, &app, "presence-room", r#"{"user_id":"2"}"#);
    assert_eq!(refused(&mut second, "presence-room").await, ("LimitReached".into(), 403));
    second.round_trip().await;
}

#[tokio::test(start_paused = true)]
async fn only_the_connection_signed_in_as_a_user_subscribes_to_its_server_to_user_channel() {
    let app = tenant(|_| {});
    let mut client = Client::connect(&context(), &app).await;
    client.send(json!({ "event": "pusher:subscribe", "data": { "channel": "#server-to-user-1" } }));
    assert_eq!(refused(&mut client, "#server-to-user-1").await, ("AuthError".into(), 403), "not signed in");
    client.signin(r#"{"id":"1"}"#, &app);
    assert_eq!(client.event().await["event"], "pusher:signin_success");
    client.send(json!({ "event": "pusher:subscribe", "data": { "channel": "#server-to-user-2" } }));
    assert_eq!(refused(&mut client, "#server-to-user-2").await, ("AuthError".into(), 403), "another user");
    client.send(json!({ "event": "pusher:subscribe", "data": { "channel": "#server-to-user-1" } }));
    succeeded(&mut client, "#server-to-user-1").await;
}

#[tokio::test(start_paused = true)]
async fn a_wrong_sign_in_closes_4009() {
    let app = tenant(|_| {});
    let context = context();
    let mut forged = Client::connect(&context, &app).await;
    let auth = format!("{}:{}", app.config.key, "0".repeat(64));
    forged.send(json!({ "event": "pusher:signin", "data": { "auth": auth, "user_data": r#"{"id":"1"}"# } }));
    forged.goodbye(CloseCode::Unauthorized).await;
    forged.ended().await;
    // Signed, but user_data without an id.
    let mut anonymous = Client::connect(&context, &app).await;
    anonymous.signin(r#"{"name":"Ada"}"#, &app);
    anonymous.goodbye(CloseCode::Unauthorized).await;
    anonymous.ended().await;
    assert_eq!(app.hub.connections(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_watchlist_over_100_ids_is_a_4302_error_and_the_sign_in_still_succeeds() {
    let app = tenant(|_| {});
    let mut client = Client::connect(&context(), &app).await;
    let user_data = |id: &str, ids: usize| json!({ "id": id, "watchlist": vec!["x"; ids] }).to_string();
    client.signin(&user_data("1", 100), &app);
    assert_eq!(client.event().await["event"], "pusher:signin_success", "100 ids are allowed");
    let first = client.event().await;
    assert_eq!(first["event"], "pusher_internal:watchlist_events", "100 ids are watched");
    assert_eq!(data_of(&first), json!({ "events": [{ "name": "online", "user_ids": [] }] }));
    client.signin(&user_data("2", 101), &app);
    let frame = client.event().await;
    let code = CloseCode::WatchlistLimit;
    assert_eq!(
        frame,
        json!({ "event": "pusher:error", "data": { "code": code.code(), "message": code.message() } })
    );
    let success = client.event().await;
    assert_eq!(success["event"], "pusher:signin_success");
    assert_eq!(data_of(&success)["user_data"], user_data("2", 101));
    // Signed in as 2 now, not as 1 any more.
    assert_eq!(app.hub.terminate_user("1"), 0);
    assert_eq!(app.hub.terminate_user("2"), 1);
    client.goodbye(CloseCode::Unauthorized).await;
}

#[tokio::test(start_paused = true)]
async fn client_events_are_refused_unless_enabled_on_a_private_or_presence_channel_it_joined() {
    let disabled = tenant(|config| config.client_events = false);
    let mut client = Client::connect(&context(), &disabled).await;
    client.subscribe("private-chat", &disabled);
    succeeded(&mut client, "private-chat").await;
    client.send(json!({ "event": "client-typing", "channel": "private-chat", "data": {} }));
    assert!(error(&mut client).await.contains("not enabled"));

    let app = tenant(|_| {});
    let mut news = observer(&app, "news");
    let mut client = Client::connect(&context(), &app).await;
    client.send(json!({ "event": "pusher:subscribe", "data": { "channel": "news" } }));
    succeeded(&mut client, "news").await;
    client.send(json!({ "event": "client-typing", "channel": "news", "data": {} }));
    assert!(error(&mut client).await.contains("private and presence"));
    client.round_trip().await;
    assert_eq!(drain(&mut news), 0);
}

#[tokio::test(start_paused = true)]
async fn client_event_names_and_data_are_limited_and_relayed_to_the_others_only() {
    let app = tenant(|config| {
        config.limits.max_event_name_len = 20;
        config.limits.max_event_data_bytes = 10;
    });
    let mut others = observer(&app, "private-chat");
    let mut client = Client::connect(&context(), &app).await;
    client.subscribe("private-chat", &app);
    succeeded(&mut client, "private-chat").await;
    let longest = format!("client-{}", "x".repeat(13));
    for (event, data) in [(longest.as_str(), json!("0123456789")), ("client-obj", json!({ "a": 1234 }))] {
        client.send(json!({ "event": event, "channel": "private-chat", "data": data }));
    }
    client.round_trip().await;
    let relayed: Vec<Value> = std::iter::from_fn(|| others.try_recv().ok())
        .map(|frame| serde_json::from_str(frame.as_str()).expect("JSON"))
        .collect();
    // String data is relayed as it is; other JSON as its text.
    assert_eq!(relayed.len(), 2, "{relayed:?}");
    assert_eq!((&relayed[0]["event"], &relayed[0]["data"]), (&json!(longest), &json!("0123456789")));
    assert_eq!((&relayed[1]["event"], &relayed[1]["data"]), (&json!("client-obj"), &json!(r#"{"a":1234}"#)));
    let too_long = format!("client-{}", "x".repeat(14));
    client.send(json!({ "event": too_long, "channel": "private-chat", "data": "" }));
    assert!(error(&mut client).await.contains("too long"));
    client.send(json!({ "event": "client-big", "channel": "private-chat", "data": "01234567890" }));
    assert!(error(&mut client).await.contains("10 bytes"));
    client.send(json!({ "event": "client-big", "channel": "private-chat", "data": { "a": 12345 } }));
    assert!(error(&mut client).await.contains("10 bytes"));
    client.round_trip().await;
    assert_eq!(drain(&mut others), 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_message_limit_a_connection_may_send_any_number() {
    let app = tenant(|config| config.limits.max_messages_per_second = 0);
    let mut client = Client::connect(&context(), &app).await;
    for _ in 0..1000 {
        client.round_trip().await;
    }
    assert_eq!(client.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_cache_channel_answers_its_last_event_or_a_cache_miss() {
    let app = tenant(|_| {});
    let mut client = Client::connect(&context(), &app).await;
    client.send(json!({ "event": "pusher:subscribe", "data": { "channel": "cache-news" } }));
    succeeded(&mut client, "cache-news").await;
    let miss = client.event().await;
    assert_eq!((&miss["event"], &miss["channel"]), (&json!("pusher:cache_miss"), &json!("cache-news")));
    let channel = herald_protocol::ChannelName::parse("cache-news", 200).expect("a channel name");
    app.publish(&channel, "headline", "\"hi\"", None, None).await.expect("published");
    assert_eq!(client.event().await["event"], "headline");
    let mut late = Client::connect(&context(), &app).await;
    late.send(json!({ "event": "pusher:subscribe", "data": { "channel": "cache-news" } }));
    succeeded(&mut late, "cache-news").await;
    let cached = late.event().await;
    assert_eq!((&cached["event"], &cached["data"]), (&json!("headline"), &json!("\"hi\"")));
}

#[tokio::test(start_paused = true)]
async fn joining_a_private_channel_is_the_authorization_an_app_requiring_sign_in_waits_for() {
    let app = tenant(|config| {
        config.user_authentication_required = true;
        config.user_authentication_timeout_secs = 5;
    });
    let context = context();
    let mut public = Client::connect(&context, &app).await;
    let mut private = Client::connect(&context, &app).await;
    public.send(json!({ "event": "pusher:subscribe", "data": { "channel": "news" } }));
    succeeded(&mut public, "news").await;
    private.subscribe("private-chat", &app);
    succeeded(&mut private, "private-chat").await;
    public.goodbye(CloseCode::Unauthorized).await;
    assert_eq!(public.elapsed(), 5 * SECOND);
    assert_eq!(private.event().await["event"], "pusher:ping");
    assert_eq!(private.elapsed(), super::ACTIVITY);
}
