//! The signed HTTP API: every status code of `PROTOCOL.md`, triggers, batches and channel queries.

use serde_json::{json, Value};

use crate::harness::{now, TestServer};

fn event(channels: &[&str]) -> Value {
    json!({ "name": "e", "channels": channels, "data": "{}" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_failures_answer_401() {
    let server = TestServer::start().await;
    let body = event(&["a"]);
    let cases: [(&str, &str, &str, u64); 4] = [
        ("main", "main-key", "wrong-secret", now()),
        ("main", "other-key", "main-secret", now()),
        ("main", "disabled-key", "disabled-secret", now()),
        ("main", "main-key", "main-secret", now() - 601),
    ];
    for (app, key, secret, timestamp) in cases {
        let (status, reply) =
            server.signed_with(app, key, secret, "POST", "/events", &[], Some(&body), timestamp).await;
        assert_eq!(status, 401, "{key} {secret} {timestamp}: {reply}");
        assert!(reply["error"].as_str().expect("error text").starts_with("authentication failed"));
    }
    let (status, _) = server
        .signed_with("main", "main-key", "main-secret", "POST", "/events", &[], Some(&body), now() + 590)
        .await;
    assert_eq!(status, 200, "inside the 600 s window");
    let (status, reply) = server.raw("POST", "/apps/main/events", &[], body.to_string()).await;
    assert_eq!(status, 401);
    assert_eq!(reply["error"], "authentication failed: auth_key is missing");
}

/// The query that signs `POST /apps/main/events` of `body` correctly, with any `auth_timestamp`.
fn events_query(body: &str, timestamp: &str) -> Vec<(String, String)> {
    let main = herald_protocol::ApiSigner { key: "main-key", secret: "main-secret" };
    main.query("POST", "/apps/main/events", body.as_bytes(), timestamp, &[])
}

async fn post_events(server: &TestServer, query: &[(String, String)], body: String) -> (u16, Value) {
    server.raw("POST", "/apps/main/events", query, body).await
}

/// Signs `POST /apps/main/events` correctly with any `auth_timestamp` text.
async fn trigger_signed_at(server: &TestServer, timestamp: &str) -> (u16, Value) {
    let body = event(&["a"]).to_string();
    post_events(server, &events_query(&body, timestamp), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correctly_signed_timestamps_far_from_now_answer_401_without_wrapping() {
    let server = TestServer::start().await;
    let now = now() as i64;
    let hostile =
        [i64::MIN + now, i64::MIN + now + 1, i64::MIN, i64::MAX, i64::MAX - now, 4_000_000_000_000, -now, 0];
    for timestamp in hostile {
        let (status, reply) = trigger_signed_at(&server, &timestamp.to_string()).await;
        assert_eq!(status, 401, "auth_timestamp {timestamp}: {reply}");
        assert_eq!(
            reply["error"],
            "authentication failed: auth_timestamp is more than 600 seconds from the server clock",
            "auth_timestamp {timestamp}"
        );
    }
    for beyond_i64 in ["9223372036854775808", "-9223372036854775809", "1e3", ""] {
        let (status, reply) = trigger_signed_at(&server, beyond_i64).await;
        assert_eq!(status, 401, "auth_timestamp {beyond_i64:?}: {reply}");
    }
    let (status, reply) = trigger_signed_at(&server, &now.to_string()).await;
    assert_eq!(status, 200, "the same request signed now: {reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_match_its_md5_is_refused() {
    let server = TestServer::start().await;
    let signed_body = event(&["a"]).to_string();
    let query = events_query(&signed_body, &now().to_string());
    let (status, _) = post_events(&server, &query, signed_body.clone()).await;
    assert_eq!(status, 200);
    let tampered = signed_body.replace("\"a\"", "\"b\"");
    let (status, reply) = post_events(&server, &query, tampered).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (401, Some("authentication failed: body_md5 does not match the body"))
    );
}

/// `params` signed for `POST /apps/main/events` with main's secret, as given (no parameter added).
fn signed_as_given(params: &[(&str, String)]) -> Vec<(String, String)> {
    let mut query: Vec<(String, String)> =
        params.iter().map(|(key, value)| ((*key).to_owned(), value.clone())).collect();
    let signed = herald_protocol::api_string_to_sign(
        "POST",
        "/apps/main/events",
        query.iter().map(|(key, value)| (key.as_str(), value.as_str())),
    );
    query.push(("auth_signature".to_owned(), herald_protocol::hmac_sha256_hex("main-secret", &signed)));
    query
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_auth_version_1_0_is_accepted_and_a_body_needs_its_md5() {
    let server = TestServer::start().await;
    let body = event(&["a"]).to_string();
    let md5 = herald_protocol::body_md5_hex(body.as_bytes());
    let base = [("auth_key", "main-key".to_owned()), ("auth_timestamp", now().to_string())];
    let with = |extra: &[(&'static str, String)]| [&base[..], extra].concat();
    let query = signed_as_given(&with(&[("auth_version", "1.0".into()), ("body_md5", md5.clone())]));
    let (status, reply) = post_events(&server, &query, body.clone()).await;
    assert_eq!(status, 200, "correctly signed: {reply}");
    let query = signed_as_given(&with(&[("auth_version", "2.0".into()), ("body_md5", md5.clone())]));
    let (status, reply) = post_events(&server, &query, body.clone()).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (401, Some("authentication failed: auth_version must be 1.0"))
    );
    let query = signed_as_given(&with(&[("auth_version", "1.0".into())]));
    let (status, reply) = post_events(&server, &query, body).await;
    assert_eq!((status, reply["error"].as_str()), (401, Some("authentication failed: body_md5 is missing")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_requests_with_the_empty_body_md5_are_accepted() {
    let server = TestServer::start().await;
    let empty_md5 = herald_protocol::body_md5_hex(b"");
    let (status, body) =
        server.signed("main", "GET", "/channels", &[("body_md5", empty_md5.as_str())], None).await;
    assert_eq!((status, body), (200, json!({ "channels": {} })));
}

/// A GET is signed without a body (no `body_md5`): a stray body a client sends along is not
/// read, so it cannot make a correctly signed query fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_is_signed_without_its_body() {
    let server = TestServer::start().await;
    let path = "/apps/main/channels";
    let query = herald_protocol::ApiSigner { key: "main-key", secret: "main-secret" }.query(
        "GET",
        path,
        b"",
        now(),
        &[],
    );
    let (status, reply) = server.raw("GET", path, &query, r#"{"stray":"body"}"#.into()).await;
    assert_eq!((status, reply), (200, json!({ "channels": {} })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_apps_and_routes_answer_404_and_disabled_apps_403() {
    let server = TestServer::start().await;
    let (status, reply) = server.signed("ghost", "POST", "/events", &[], Some(&event(&["a"]))).await;
    assert_eq!((status, reply["error"].as_str()), (404, Some("unknown app \"ghost\"")));
    let (status, _) = server.signed("main", "GET", "/nothing-here", &[], None).await;
    assert_eq!(status, 404);
    let (status, reply) = server.signed("disabled", "POST", "/events", &[], Some(&event(&["a"]))).await;
    assert_eq!((status, reply["error"].as_str()), (403, Some("app is disabled")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_triggers_answer_400_naming_the_field_and_publish_nothing() {
    let server = TestServer::start().await;
    let mut watcher = server.client().await;
    watcher.subscribe("a").await;
    let too_many: Vec<String> = (0..101).map(|n| format!("c{n}")).collect();
    let cases = [
        (json!({ "channels": ["a"], "data": "{}" }), "name"),
        (json!({ "name": "e", "channels": ["a"] }), "data"),
        (json!({ "name": "e", "data": "{}" }), "channels"),
        (json!({ "name": "e", "channels": "a", "data": "{}" }), "channels"),
        (json!({ "name": "e", "channels": too_many, "data": "{}" }), "channels"),
        (json!({ "name": "e", "channels": ["a", "bad channel"], "data": "{}" }), "channels"),
        (json!({ "name": "e", "channels": ["a"], "data": "{}", "socket_id": "abc" }), "socket_id"),
        (json!({ "name": "x".repeat(201), "channels": ["a"], "data": "{}" }), "name"),
        (json!({ "name": "e", "channels": ["a"], "data": "{}", "info": "everything" }), "info"),
    ];
    for (body, field) in cases {
        let (status, reply) = server.signed("main", "POST", "/events", &[], Some(&body)).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["field"], field, "{reply}");
    }
    let (status, reply) = server.signed("main", "POST", "/events", &[], Some(&json!([1]))).await;
    assert_eq!(status, 400, "{reply}");
    watcher.expect_silence(std::time::Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_answers_400() {
    let server = TestServer::start().await;
    let body = "{not json";
    let (status, reply) = post_events(&server, &events_query(body, &now().to_string()), body.into()).await;
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().expect("text").contains("not valid JSON"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_data_and_bodies_answer_413() {
    let server = TestServer::start().await;
    let big = "x".repeat(10 * 1024 + 1);
    let (status, reply) = server.trigger(&["a"], "e", &big).await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["error"], "event data is larger than 10240 bytes");
    let exactly = "x".repeat(10 * 1024);
    assert_eq!(server.trigger(&["a"], "e", &exactly).await.0, 200);
    let huge = "y".repeat(300 * 1024);
    let (status, _) = server.raw("POST", "/apps/main/events", &[], huge).await;
    assert_eq!(status, 413, "the body cap applies while reading, before authentication");
}

/// `max_http_body_bytes` is each app's: one smaller than the others' is enforced on its own
/// requests, up to its exact size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_with_a_smaller_body_limit_accepts_exactly_its_limit() {
    let server = TestServer::with_config(|config| {
        let mut small = crate::harness::app("small");
        small.limits.max_http_body_bytes = 200;
        config.apps.push(small);
    })
    .await;
    let sized = |len: usize| {
        let data = |padding: usize| json!({ "name": "e", "channels": ["a"], "data": "x".repeat(padding) });
        data(len - data(0).to_string().len())
    };
    assert_eq!(sized(200).to_string().len(), 200);
    let (status, reply) = server.signed("small", "POST", "/events", &[], Some(&sized(200))).await;
    assert_eq!(status, 200, "exactly the limit: {reply}");
    let (status, reply) = server.signed("small", "POST", "/events", &[], Some(&sized(201))).await;
    assert_eq!(status, 413, "a byte over: {reply}");
    let (status, reply) = server.signed("main", "POST", "/events", &[], Some(&sized(201))).await;
    assert_eq!(status, 200, "another app's limit: {reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_rate_limit_answers_429() {
    let server = TestServer::start().await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(server.signed("limited", "GET", "/channels", &[], None).await.0);
    }
    assert_eq!(&statuses[..2], &[200, 200]);
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_server_answers_503_to_triggers() {
    let server = TestServer::start().await;
    server.state.lifecycle().start_draining();
    let (status, reply) = server.trigger(&["a"], "e", "{}").await;
    assert_eq!(status, 503);
    assert!(reply["error"].as_str().expect("text").contains("shutting down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_channel_triggers_exclude_the_given_socket_and_report_info() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe("one").await;
    b.subscribe("two").await;
    b.subscribe("one").await;
    let body = json!({ "name": "e", "channels": ["one", "two"], "data": "d", "socket_id": b.socket_id, "info": "subscription_count" });
    let (status, reply) = server.signed("main", "POST", "/events", &[], Some(&body)).await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({ "channels": { "one": { "subscription_count": 2 }, "two": { "subscription_count": 1 } } })
    );
    assert_eq!(a.recv().await["channel"], "one");
    b.expect_silence(std::time::Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_triggers_publish_every_event_or_none() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.subscribe("x").await;
    client.subscribe("y").await;
    let batch = json!({ "batch": [
        { "channel": "x", "name": "first", "data": "1" },
        { "channel": "y", "name": "second", "data": "2", "info": "subscription_count" },
    ] });
    let (status, reply) = server.signed("main", "POST", "/batch_events", &[], Some(&batch)).await;
    assert_eq!(status, 200);
    assert_eq!(reply, json!({ "batch": [{}, { "subscription_count": 1 }] }));
    assert_eq!(client.recv().await["event"], "first");
    assert_eq!(client.recv().await["event"], "second");

    let eleven: Vec<Value> =
        (0..11).map(|n| json!({ "channel": "x", "name": "e", "data": n.to_string() })).collect();
    let (status, reply) =
        server.signed("main", "POST", "/batch_events", &[], Some(&json!({ "batch": eleven }))).await;
    assert_eq!((status, reply["field"].as_str()), (400, Some("batch")));
    let half_bad = json!({ "batch": [{ "channel": "x", "name": "ok", "data": "1" }, { "channel": "bad channel", "name": "e", "data": "1" }] });
    assert_eq!(server.signed("main", "POST", "/batch_events", &[], Some(&half_bad)).await.0, 400);
    client.expect_silence(std::time::Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_queries_report_occupied_channels() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.subscribe("news").await;
    client.subscribe_signed("presence-lobby", Some(r#"{"user_id":"5"}"#)).await;
    let (status, all) = server.signed("main", "GET", "/channels", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(all, json!({ "channels": { "news": {}, "presence-lobby": {} } }));
    let (_, presence) = server
        .signed(
            "main",
            "GET",
            "/channels",
            &[("filter_by_prefix", "presence-"), ("info", "user_count")],
            None,
        )
        .await;
    assert_eq!(presence, json!({ "channels": { "presence-lobby": { "user_count": 1 } } }));
    let (status, _) = server.signed("main", "GET", "/channels", &[("info", "user_count")], None).await;
    assert_eq!(status, 400, "user_count needs a presence prefix");
    let (_, news) =
        server.signed("main", "GET", "/channels/news", &[("info", "subscription_count")], None).await;
    assert_eq!(news, json!({ "occupied": true, "subscription_count": 1 }));
    let (_, empty) = server.signed("main", "GET", "/channels/empty", &[], None).await;
    assert_eq!(empty, json!({ "occupied": false }));
    let (status, _) = server.signed("main", "GET", "/channels/news", &[("info", "user_count")], None).await;
    assert_eq!(status, 400);
    let (status, _) = server.signed("main", "GET", "/channels/news/users", &[], None).await;
    assert_eq!(status, 400, "users are listed for presence channels only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_alone_is_not_a_channel_name() {
    let server = TestServer::start().await;
    for bare in ["private-", "presence-", "private-encrypted-", "cache-", "presence-cache-"] {
        let (status, body) = server.trigger(&[bare], "x", "{}").await;
        assert_eq!(status, 400, "{bare}: {body}");
        assert!(
            body["problem"].as_str().is_some_and(|problem| problem.contains("only the prefix")),
            "{body}"
        );
    }
    let (status, body) = server.trigger(&["#server-to-user-"], "x", "{}").await;
    assert_eq!(status, 400);
    assert!(body["problem"].as_str().is_some_and(|problem| problem.contains("needs the user id")), "{body}");
    let mut client = server.client().await;
    let refused = client.subscribe("private-").await;
    assert_eq!(refused["event"], "pusher:subscription_error");
}
