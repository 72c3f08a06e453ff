//! Channels, presence, client events, sign-in, user authentication and bad input over real sockets.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{auth_for, data_of, TestServer};

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_channel_receives_triggered_events_with_string_data() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let ok = client.subscribe("news").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(ok["channel"], "news");
    let (status, body) = server.trigger(&["news"], "story", r#"{"title":"hi"}"#).await;
    assert_eq!((status, body), (200, json!({})));
    let event = client.recv().await;
    assert_eq!(event, json!({ "event": "story", "channel": "news", "data": r#"{"title":"hi"}"# }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_channels_need_a_valid_signature() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let refused = client.subscribe("private-room").await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    assert_eq!(data_of(&refused)["status"], 401);
    assert_eq!(data_of(&refused)["type"], "AuthError");
    let wrong = auth_for("other", &client.socket_id, "private-room", None);
    client
        .send(json!({ "event": "pusher:subscribe", "data": { "channel": "private-room", "auth": wrong } }))
        .await;
    assert_eq!(client.recv().await["event"], "pusher:subscription_error");
    let someone_elses = auth_for("main", "1.1", "private-room", None);
    client.send(json!({ "event": "pusher:subscribe", "data": { "channel": "private-room", "auth": someone_elses } })).await;
    assert_eq!(client.recv().await["event"], "pusher:subscription_error");
    let ok = client.subscribe_signed("private-room", None).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    server.trigger(&["private-room"], "secret", "{}").await;
    assert_eq!(client.recv().await["event"], "secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_members_are_listed_and_announced_once_per_user() {
    let server = TestServer::start().await;
    let channel = "presence-room";
    let mut alice = server.client().await;
    let joined = alice.subscribe_signed(channel, Some(r#"{"user_id":1,"user_info":{"name":"Alice"}}"#)).await;
    let presence = &data_of(&joined)["presence"];
    assert_eq!(presence["ids"], json!(["1"]), "numeric ids become strings");
    assert_eq!(presence["hash"]["1"], json!({ "name": "Alice" }));
    assert_eq!(presence["count"], 1);

    let mut bob_phone = server.client().await;
    let bob = r#"{"user_id":"2","user_info":{"name":"Bob"}}"#;
    let snapshot = bob_phone.subscribe_signed(channel, Some(bob)).await;
    assert_eq!(data_of(&snapshot)["presence"]["count"], 2);
    let added = alice.recv().await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(data_of(&added), json!({ "user_id": "2", "user_info": { "name": "Bob" } }));

    let mut bob_laptop = server.client().await;
    bob_laptop.subscribe_signed(channel, Some(bob)).await;
    alice.expect_silence(QUIET).await;

    let (_, users) = server.signed("main", "GET", "/channels/presence-room/users", &[], None).await;
    assert_eq!(users, json!({ "users": [{ "id": "1" }, { "id": "2" }] }));
    let (_, info) = server
        .signed("main", "GET", "/channels/presence-room", &[("info", "user_count,subscription_count")], None)
        .await;
    assert_eq!(info, json!({ "occupied": true, "user_count": 2, "subscription_count": 3 }));

    drop(bob_phone);
    alice.expect_silence(QUIET).await;
    bob_laptop.send(json!({ "event": "pusher:unsubscribe", "data": { "channel": channel } })).await;
    let removed = alice.recv().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(data_of(&removed), json!({ "user_id": "2" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_subscriptions_need_valid_channel_data() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let auth = auth_for("main", &client.socket_id, "presence-x", None);
    client
        .send(json!({ "event": "pusher:subscribe", "data": { "channel": "presence-x", "auth": auth } }))
        .await;
    assert_eq!(data_of(&client.recv().await)["status"], 400);
    let refused = client.subscribe_signed("presence-x", Some(r#"{"user_info":{}}"#)).await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    let big = format!(r#"{{"user_id":"1","user_info":"{}"}}"#, "x".repeat(2000));
    assert_eq!(client.subscribe_signed("presence-x", Some(&big)).await["event"], "pusher:subscription_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_channels_refuse_past_their_member_limit() {
    let server = TestServer::with_config(|config| config.apps[0].limits.max_presence_members = 1).await;
    let mut first = server.client().await;
    first.subscribe_signed("presence-small", Some(r#"{"user_id":"1"}"#)).await;
    let mut second = server.client().await;
    let refused = second.subscribe_signed("presence-small", Some(r#"{"user_id":"2"}"#)).await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    assert_eq!(data_of(&refused)["status"], 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_channels_relay_ciphertext_and_refuse_client_events() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    assert_eq!(client.subscribe("private-encrypted-vault").await["event"], "pusher:subscription_error");
    client.subscribe_signed("private-encrypted-vault", None).await;
    // What the SDKs send: a 24-byte nonce and the ciphertext, base64.
    let sealed = r#"{"nonce":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYX","ciphertext":"c2VjcmV0"}"#;
    let (status, body) = server.trigger(&["private-encrypted-vault"], "sealed", sealed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(client.recv().await["data"], sealed);
    // An SDK without its encryption master key would send plaintext: refused, never relayed.
    for plaintext in [
        r#"{"message":"secret"}"#,
        "secret",
        r#"{"nonce":"bm9uY2U=","ciphertext":"c2VjcmV0"}"#,
        r#"{"nonce":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYX","ciphertext":"not base64!"}"#,
    ] {
        let (status, body) = server.trigger(&["private-encrypted-vault"], "leak", plaintext).await;
        assert_eq!((status, body["field"].as_str()), (400, Some("data")), "{plaintext}: {body}");
    }
    client.send(json!({ "event": "client-x", "channel": "private-encrypted-vault", "data": {} })).await;
    assert_eq!(client.recv().await["event"], "pusher:error");
    let (status, body) = server.trigger(&["private-encrypted-vault", "news"], "mixed", "{}").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_channels_replay_the_last_event_or_report_a_miss() {
    let server = TestServer::start().await;
    let mut early = server.client().await;
    early.subscribe("cache-prices").await;
    let miss = early.recv().await;
    assert_eq!(miss["event"], "pusher:cache_miss");
    assert_eq!(miss["channel"], "cache-prices");
    server.trigger(&["cache-prices"], "price", "1").await;
    server.trigger(&["cache-prices"], "price", "2").await;
    let mut late = server.client().await;
    late.subscribe("cache-prices").await;
    assert_eq!(late.recv().await, json!({ "event": "price", "channel": "cache-prices", "data": "2" }));
    let (_, info) = server.signed("main", "GET", "/channels/cache-prices", &[("info", "cache")], None).await;
    assert_eq!(info["cache"]["data"], "2");
    let mut private = server.client().await;
    private.subscribe_signed("private-cache-x", None).await;
    assert_eq!(private.recv().await["event"], "pusher:cache_miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_events_reach_other_members_but_never_the_sender() {
    let server = TestServer::start().await;
    let mut alice = server.client().await;
    let mut bob = server.client().await;
    alice.subscribe_signed("presence-chat", Some(r#"{"user_id":"a"}"#)).await;
    bob.subscribe_signed("presence-chat", Some(r#"{"user_id":"b"}"#)).await;
    alice.recv_event("pusher_internal:member_added").await;
    alice.send(json!({ "event": "client-typing", "channel": "presence-chat", "data": { "on": true } })).await;
    let typing = bob.recv().await;
    assert_eq!(typing["event"], "client-typing");
    assert_eq!(typing["user_id"], "a", "presence client events carry the sender's user id");
    assert_eq!(data_of(&typing), json!({ "on": true }));
    alice.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_events_are_refused_where_the_rules_say() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.subscribe("public").await;
    client.send(json!({ "event": "client-x", "channel": "public", "data": {} })).await;
    assert_eq!(client.recv().await["event"], "pusher:error");
    client.send(json!({ "event": "client-x", "channel": "private-unjoined", "data": {} })).await;
    assert_eq!(client.recv().await["event"], "pusher:error");
    client.subscribe_signed("private-a", None).await;
    let huge = "x".repeat(10 * 1024 + 1);
    client.send(json!({ "event": "client-x", "channel": "private-a", "data": huge })).await;
    assert_eq!(client.recv().await["event"], "pusher:error");

    let mut disabled = server.client_for("noclient-key").await;
    let auth = auth_for("noclient", &disabled.socket_id, "private-a", None);
    disabled
        .send(json!({ "event": "pusher:subscribe", "data": { "channel": "private-a", "auth": auth } }))
        .await;
    disabled.recv().await;
    disabled.send(json!({ "event": "client-x", "channel": "private-a", "data": {} })).await;
    let error = disabled.recv().await;
    assert_eq!(error["event"], "pusher:error");
    assert!(error["data"]["message"].as_str().expect("message").contains("not enabled"));
}

/// Over a real socket; the one-second window itself is timed under the paused clock in
/// `ws/tests`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_event_rate_limit_answers_4301_without_closing() {
    let server = TestServer::start().await;
    let mut sender = server.client().await;
    let mut receiver = server.client().await;
    sender.subscribe_signed("private-fast", None).await;
    receiver.subscribe_signed("private-fast", None).await;
    for index in 0..11 {
        sender.send(json!({ "event": "client-n", "channel": "private-fast", "data": { "i": index } })).await;
    }
    let error = sender.recv().await;
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(error["data"]["code"], 4301);
    for _ in 0..10 {
        assert_eq!(receiver.recv().await["event"], "client-n");
    }
    receiver.expect_silence(QUIET).await;
    sender.send(json!({ "event": "pusher:ping", "data": {} })).await;
    assert_eq!(sender.recv().await["event"], "pusher:pong", "still connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_users_get_their_own_channel_and_can_be_terminated() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.signin("main", r#"{"id":"42","name":"Ada"}"#).await;
    let success = client.recv().await;
    assert_eq!(success["event"], "pusher:signin_success");
    assert_eq!(data_of(&success)["user_data"], r#"{"id":"42","name":"Ada"}"#);
    assert_eq!(
        client.subscribe("#server-to-user-42").await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(client.subscribe("#server-to-user-43").await["event"], "pusher:subscription_error");
    assert_eq!(client.subscribe("#other").await["event"], "pusher:subscription_error");
    let (status, _) = server.trigger(&["#server-to-user-42"], "hello", "{}").await;
    assert_eq!(status, 200);
    assert_eq!(client.recv().await["event"], "hello");

    let mut bystander = server.client().await;
    let (status, _) =
        server.signed("main", "POST", "/users/42/terminate_connections", &[], Some(&json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(client.expect_close().await, 4009);
    bystander.send(json!({ "event": "pusher:ping", "data": {} })).await;
    assert_eq!(bystander.recv().await["event"], "pusher:pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_to_user_channels_need_a_sign_in() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let refused = client.subscribe("#server-to-user-42").await;
    assert_eq!(data_of(&refused)["status"], 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_sign_in_closes_with_4009() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.send(json!({ "event": "pusher:signin", "data": { "auth": "main-key:bad", "user_data": r#"{"id":"1"}"# } })).await;
    assert_eq!(client.expect_close().await, 4009);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchlist_over_100_ids_is_an_error_without_closing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let ids: Vec<String> = (0..101).map(|n| n.to_string()).collect();
    let user_data = json!({ "id": "7", "watchlist": ids }).to_string();
    client.signin("main", &user_data).await;
    let error = client.recv().await;
    assert_eq!(error["data"]["code"], 4302);
    assert_eq!(client.recv().await["event"], "pusher:signin_success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_requiring_sign_in_close_idle_connections_with_4009() {
    let server = TestServer::start().await;
    let mut idle = server.client_for("signin-key").await;
    let mut signed = server.client_for("signin-key").await;
    signed.signin("signin", r#"{"id":"1"}"#).await;
    assert_eq!(signed.recv().await["event"], "pusher:signin_success");
    assert_eq!(idle.expect_close().await, 4009);
    // `signed` connected just after `idle`: its own deadline has passed by the end of this.
    signed.expect_silence(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_unknown_events_are_rejected_not_relayed() {
    let server = TestServer::start().await;
    let mut attacker = server.client().await;
    let mut victim = server.client().await;
    victim.subscribe("news").await;
    attacker.subscribe("news").await;
    for event in
        ["pusher_internal:subscription_succeeded", "pusher_internal:member_added", "pusher:anything", "story"]
    {
        attacker.send(json!({ "event": event, "channel": "news", "data": "{}" })).await;
        let error = attacker.recv().await;
        assert_eq!(error["event"], "pusher:error", "{event}");
    }
    victim.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_errors_and_the_connection_survives() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let bad: [Message; 7] = [
        Message::Text("not json".into()),
        Message::Text("[1,2]".into()),
        Message::Text(r#"{"event":42}"#.into()),
        Message::Text(r#"{"event":"pusher:subscribe","data":{"channel":7}}"#.into()),
        Message::Text(r#"{"event":"pusher:subscribe","data":"nope"}"#.into()),
        Message::Text(r#"{"event":"pusher:signin","data":{"auth":1}}"#.into()),
        Message::Binary(vec![0, 1, 2].into()),
    ];
    for message in bad {
        client.send_raw(message).await;
        let error = client.recv().await;
        assert_eq!(error["event"], "pusher:error", "{error}");
        assert!(error["data"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    for name in ["bad channel", "", &"a".repeat(201), "naïve"] {
        let refused = client.subscribe(name).await;
        assert_eq!(refused["event"], "pusher:subscription_error", "{name:?}");
        assert_eq!(data_of(&refused)["status"], 400);
    }
    client.send(json!({ "event": "pusher:ping", "data": {} })).await;
    assert_eq!(client.recv().await["event"], "pusher:pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_close_with_1009_and_the_server_lives_on() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let huge = format!(r#"{{"event":"client-x","channel":"private-a","data":"{}"}}"#, "x".repeat(200 * 1024));
    client.send_raw(Message::Text(huge.into())).await;
    assert_eq!(client.expect_close().await, 1009);
    let mut next = server.client().await;
    next.send(json!({ "event": "pusher:ping", "data": {} })).await;
    assert_eq!(next.recv().await["event"], "pusher:pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_connection_are_capped() {
    let server =
        TestServer::with_config(|config| config.apps[0].limits.max_channels_per_connection = 2).await;
    let mut client = server.client().await;
    client.subscribe("a").await;
    client.subscribe("b").await;
    let refused = client.subscribe("c").await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    assert_eq!(
        client.subscribe("a").await["event"],
        "pusher_internal:subscription_succeeded",
        "resubscribe is fine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumers_are_disconnected_without_slowing_others() {
    let server = TestServer::with_config(|config| config.server.outbox_capacity = 64).await;
    let mut slow = server.client().await;
    slow.subscribe("firehose").await;
    let mut fast = server.client().await;
    fast.subscribe("firehose").await;
    let data = "x".repeat(10 * 1024);
    let batch: Vec<Value> =
        (0..10).map(|_| json!({ "channel": "firehose", "name": "blob", "data": data })).collect();
    let batch = json!({ "batch": batch });
    let mut received = 0;
    // The slow client never reads: the kernel buffers, then its outbox fill up (100 KB a round).
    for round in 0..1000 {
        let (status, _) = server.signed("main", "POST", "/batch_events", &[], Some(&batch)).await;
        assert_eq!(status, 200);
        while let Ok(frame) = tokio::time::timeout(Duration::from_millis(1), fast.recv()).await {
            assert_eq!(frame["event"], "blob");
            received += 1;
        }
        if round % 10 == 0 {
            let (_, info) = server
                .signed("main", "GET", "/channels/firehose", &[("info", "subscription_count")], None)
                .await;
            if info["subscription_count"] == 1 {
                break;
            }
        }
    }
    let (_, info) =
        server.signed("main", "GET", "/channels/firehose", &[("info", "subscription_count")], None).await;
    assert_eq!(info["subscription_count"], 1, "the slow consumer was removed");
    assert!(received > 0);
    server.trigger(&["firehose"], "last", "{}").await;
    assert_eq!(fast.recv_event("last").await["event"], "last", "the fast client is still served");
}

/// The Python SDK's `terminate_user_connections` posts to `/users/{id}/terminate_connections`
/// with no `/apps/{id}` prefix; the signed `auth_key` names the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_connections_without_the_app_prefix_finds_the_app_by_key() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.signin("main", r#"{"id":"7"}"#).await;
    // Signed in before the API call: the server handles the frame and the request apart.
    assert_eq!(client.recv().await["event"], "pusher:signin_success");
    let path = "/users/7/terminate_connections";
    let body = "{}";
    let timestamp = crate::harness::now();
    let sign = |key: &str, secret: &str| {
        herald_protocol::ApiSigner { key, secret }.query("POST", path, body.as_bytes(), timestamp, &[])
    };
    let server = &server;
    let post =
        |query: Vec<(String, String)>| async move { server.raw("POST", path, &query, body.into()).await };
    assert_eq!(post(sign("main-key", "wrong-secret")).await.0, 401);
    assert_eq!(post(sign("nobody-key", "x")).await.0, 401);
    let (status, reply) = post(sign("main-key", "main-secret")).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(client.expect_close().await, 4009);
}
