//! `/broadcasting/auth` and `/broadcasting/user-auth`: tokens, every default policy (through the
//! endpoint and through a real subscription), CORS, and the outage answer.

use std::time::{SystemTime, UNIX_EPOCH};

use herald_auth::mint_hs256;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use crate::harness::{data_of, TestServer, FRONT_END, JWT_SECRET};

fn token(user: &str, organization: Option<&str>, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|role| (*role).to_owned()).collect();
    mint_hs256(JWT_SECRET, user, organization, &roles, Some("Ada"), 3600).expect("token minted")
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

async fn auth(server: &TestServer, token: &str, channel: &str) -> (u16, Value) {
    server
        .post_form("/broadcasting/auth", Some(token), &[("socket_id", "123.456"), ("channel_name", channel)])
        .await
}

/// Asks the endpoint as a real socket would, then subscribes with the answer.
async fn subscribe_as(server: &TestServer, token: &str, channel: &str) -> Value {
    let mut client = server.client().await;
    let (status, answer) = server
        .post_form(
            "/broadcasting/auth",
            Some(token),
            &[("socket_id", client.socket_id.as_str()), ("channel_name", channel)],
        )
        .await;
    let mut data = json!({ "channel": channel });
    if status == 200 {
        data["auth"] = answer["auth"].clone();
        if let Some(channel_data) = answer.get("channel_data") {
            data["channel_data"] = channel_data.clone();
        }
    }
    client.send(json!({ "event": "pusher:subscribe", "data": data })).await;
    client.recv().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_default_policy_allows_and_denies() {
    let server = TestServer::start().await;
    server.store.learn_campaign("3", "7").await.expect("campaign learnt");
    let member = token("42", Some("7"), &[]);
    let outsider = token("43", Some("8"), &[]);
    let super_admin = token("1", None, &["super_admin"]);
    let csr = token("2", None, &["csr_admin"]);
    let finance = token("3", None, &["finance_admin"]);
    let hr = token("4", None, &["hr_manager"]);
    let cases: Vec<(&str, &str, u16)> = vec![
        ("private-user.notifications.42", &member, 200),
        ("private-user.notifications.42", &outsider, 403),
        ("private-user.notifications.42", &super_admin, 403),
        ("private-organization.7", &member, 200),
        ("private-organization.7", &outsider, 403),
        ("private-organization.7", &csr, 200),
        ("private-organization.7", &finance, 403),
        ("private-campaign.3", &member, 200),
        ("private-campaign.3", &outsider, 403),
        ("private-campaign.3", &super_admin, 200),
        ("private-campaign.99", &member, 403),
        ("private-campaign.99", &csr, 200),
        ("private-admin-dashboard", &hr, 200),
        ("private-admin-dashboard", &member, 403),
        ("private-admin-role-finance_admin", &finance, 200),
        ("private-admin-role-finance_admin", &super_admin, 403),
        ("private-security-alerts", &super_admin, 200),
        ("private-security-alerts", &csr, 403),
        ("private-compliance-notifications", &csr, 200),
        ("private-compliance-notifications", &finance, 403),
        ("private-payment-notifications", &finance, 200),
        ("private-payment-notifications", &hr, 403),
        ("private-unknown-channel", &super_admin, 403),
    ];
    for (channel, token, expected) in cases {
        let (status, body) = auth(&server, token, channel).await;
        assert_eq!(status, expected, "{channel}: {body}");
        let frame = subscribe_as(&server, token, channel).await;
        let event = if expected == 200 {
            "pusher_internal:subscription_succeeded"
        } else {
            "pusher:subscription_error"
        };
        assert_eq!(frame["event"], event, "{channel} over a real socket");
        if expected == 403 {
            assert!(body["error"].as_str().expect("error").contains("polic"), "{body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_policy() {
    let server = TestServer::start().await;
    let (status, body) = auth(&server, &token("43", Some("8"), &[]), "private-organization.7").await;
    assert_eq!(status, 403);
    assert_eq!(body["policy"], "organization.{organizationId}");
    let (_, body) = auth(&server, &token("1", None, &["super_admin"]), "private-nothing").await;
    assert_eq!(body, json!({ "error": "no policy allows this channel", "policy": null }));
    let counts = server.state.authorizer().decision_counts();
    assert!(counts
        .iter()
        .any(|(policy, _, denied)| policy == "organization.{organizationId}" && *denied == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_answers_carry_the_user_and_configured_claims() {
    let server = TestServer::start().await;
    let (status, body) = auth(&server, &token("42", Some("7"), &[]), "presence-organization.7").await;
    assert_eq!(status, 200, "{body}");
    let channel_data: Value =
        serde_json::from_str(body["channel_data"].as_str().expect("string")).expect("json");
    assert_eq!(channel_data, json!({ "user_id": "42", "user_info": { "name": "Ada" } }));
    let joined = subscribe_as(&server, &token("42", Some("7"), &[]), "presence-organization.7").await;
    assert_eq!(data_of(&joined)["presence"]["hash"]["42"], json!({ "name": "Ada" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_user_info_over_the_limit_is_refused_before_it_is_signed() {
    let server = TestServer::with_config(|config| {
        config.apps[0].limits.max_presence_user_info_bytes = 40;
        config.apps[0].limits.max_presence_user_id_len = 4;
    })
    .await;
    let named = |user: &str, name: &str| {
        mint_hs256(JWT_SECRET, user, Some("7"), &[], Some(name), 3600).expect("token minted")
    };
    // {"name":"…"} is 11 bytes of JSON around the name.
    let at_limit = named("42", &"a".repeat(29));
    let (status, body) = auth(&server, &at_limit, "presence-organization.7").await;
    assert_eq!(status, 200, "{body}");
    let joined = subscribe_as(&server, &at_limit, "presence-organization.7").await;
    assert_eq!(joined["event"], "pusher_internal:subscription_succeeded", "{joined}");

    let (status, body) = auth(&server, &named("42", &"a".repeat(30)), "presence-organization.7").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "user_info");
    let error = body["error"].as_str().expect("error text");
    assert!(error.contains("41 bytes") && error.contains("limits.max_presence_user_info_bytes"), "{error}");

    let (status, body) = auth(&server, &named("12345", "Ada"), "presence-organization.7").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "user_id");
    assert!(body["error"].as_str().expect("error text").contains("limits.max_presence_user_id_len"));

    let (status, body) = auth(&server, &named("12345", "Ada"), "private-organization.7").await;
    assert_eq!(status, 200, "private channels carry no user: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_channels_get_a_shared_secret_when_a_master_key_is_configured() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let key = [7u8; 32];
    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
    let server = TestServer::with_config(|config| config.auth.encryption_master_key_base64 = encoded).await;
    let channel = "private-encrypted-user.notifications.42";
    let (status, body) = auth(&server, &token("42", None, &[]), channel).await;
    assert_eq!(status, 200, "{body}");
    let mut hasher = sha2::Sha256::new();
    hasher.update(channel.as_bytes());
    hasher.update(key);
    let expected = base64::engine::general_purpose::STANDARD.encode(hasher.finalize());
    assert_eq!(body["shared_secret"], expected);

    let plain = TestServer::start().await;
    let (status, body) = auth(&plain, &token("42", None, &[]), channel).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_authentication_signs_in_with_the_token_identity() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (status, body) = server
        .post_form(
            "/broadcasting/user-auth",
            Some(&token("42", None, &[])),
            &[("socket_id", client.socket_id.as_str())],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let user_data = body["user_data"].as_str().expect("string");
    assert_eq!(
        serde_json::from_str::<Value>(user_data).expect("json"),
        json!({ "id": "42", "user_info": { "name": "Ada" } })
    );
    client
        .send(json!({ "event": "pusher:signin", "data": { "auth": body["auth"], "user_data": user_data } }))
        .await;
    assert_eq!(client.recv().await["event"], "pusher:signin_success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_are_accepted_too() {
    let server = TestServer::start().await;
    let response = server
        .http()
        .post(format!("http://{}/broadcasting/auth", server.address))
        .bearer_auth(token("42", None, &[]))
        .json(&json!({ "socket_id": "1.2", "channel_name": "private-user.notifications.42" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_attacks_answer_401() {
    let server = TestServer::start().await;
    let channel = "private-user.notifications.42";
    let claims = |exp: u64| json!({ "sub": "42", "exp": exp });
    let sign = |claims: &Value, secret: &str| {
        encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes())).expect("encodes")
    };
    use base64::Engine as _;
    let b64 = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims(now() + 60).to_string()));
    let future = json!({ "sub": "42", "exp": now() + 600, "nbf": now() + 300 });
    let cases: Vec<(String, &str)> = vec![
        (sign(&claims(now() - 3600), JWT_SECRET), "token has expired"),
        (sign(&claims(now() + 60), "wrong-secret"), "token signature is invalid"),
        (sign(&future, JWT_SECRET), "token is not valid yet"),
        (sign(&json!({ "exp": now() + 60 }), JWT_SECRET), "token lacks the sub claim"),
        (sign(&json!({ "sub": "42" }), JWT_SECRET), "token lacks the exp claim"),
        (none, "token is malformed"),
        ("a.b.c".into(), "token is malformed"),
        ("x".repeat(9000), "token is longer than 8192 bytes"),
    ];
    for (token, message) in cases {
        let (status, body) = auth(&server, &token, channel).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some(message)),
            "{}",
            &token[..token.len().min(40)]
        );
    }
    let (status, body) = server
        .post_form("/broadcasting/auth", None, &[("socket_id", "1.2"), ("channel_name", channel)])
        .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("no bearer token")));
    let huge = "y".repeat(200 * 1024);
    let response = server
        .http()
        .post(format!("http://{}/broadcasting/auth", server.address))
        .header("authorization", format!("Bearer {huge}"))
        .form(&[("socket_id", "1.2"), ("channel_name", channel)])
        .send()
        .await
        .expect("sent");
    assert!(response.status().is_client_error(), "oversized header refused: {}", response.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_fields_answer_400() {
    let server = TestServer::start().await;
    let good = token("42", None, &[]);
    for (form, field) in [
        (vec![("channel_name", "private-user.notifications.42")], "socket_id"),
        (vec![("socket_id", "abc"), ("channel_name", "private-user.notifications.42")], "socket_id"),
        (vec![("socket_id", "1.2")], "channel_name"),
        (vec![("socket_id", "1.2"), ("channel_name", "private-bad name")], "channel_name"),
        (vec![("socket_id", "1.2"), ("channel_name", "public-news")], "channel_name"),
    ] {
        let (status, body) = server.post_form("/broadcasting/auth", Some(&good), &form).await;
        assert_eq!((status, body["field"].as_str()), (400, Some(field)), "{form:?}: {body}");
    }
}

/// A browser's CORS preflight for a bearer-token POST to `/broadcasting/auth` from `origin`.
async fn preflight(server: &TestServer, origin: &str) -> reqwest::Response {
    server
        .http()
        .request(reqwest::Method::OPTIONS, format!("http://{}/broadcasting/auth", server.address))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("preflight sent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_allow_the_configured_front_end_only() {
    let server = TestServer::start().await;
    let url = format!("http://{}/broadcasting/auth", server.address);
    let allowed = preflight(&server, FRONT_END).await;
    assert_eq!(allowed.status(), 204);
    assert_eq!(allowed.headers()["access-control-allow-origin"], FRONT_END);
    assert!(allowed.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .contains("authorization"));
    let refused = preflight(&server, "https://evil.example").await;
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    let post = server
        .http()
        .post(&url)
        .header("origin", FRONT_END)
        .bearer_auth(token("42", None, &[]))
        .form(&[("socket_id", "1.2"), ("channel_name", "private-user.notifications.42")])
        .send()
        .await
        .expect("sent");
    assert_eq!(post.status(), 200);
    assert_eq!(post.headers()["access-control-allow-origin"], FRONT_END);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_outage_answers_503_for_decisions_that_need_it() {
    let server = TestServer::start().await;
    server.state.records().close().await;
    let (status, body) = auth(&server, &token("42", Some("7"), &[]), "private-campaign.3").await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = auth(&server, &token("42", Some("7"), &[]), "private-organization.7").await;
    assert_eq!(status, 200, "decisions that need no storage still work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_wildcard_allows_any_origin_without_credentials() {
    let server = TestServer::with_config(|config| {
        config.auth.cors_origins = vec!["*".into(), FRONT_END.into()];
    })
    .await;
    let url = format!("http://{}/broadcasting/auth", server.address);
    let any = preflight(&server, "https://evil.example").await;
    assert_eq!(any.status(), 204);
    assert_eq!(any.headers()["access-control-allow-origin"], "*");
    assert!(any.headers().get("access-control-allow-credentials").is_none(), "{:?}", any.headers());
    let named = preflight(&server, FRONT_END).await;
    assert_eq!(named.headers()["access-control-allow-origin"], FRONT_END);
    assert_eq!(named.headers()["access-control-allow-credentials"], "true");
    let post = server
        .http()
        .post(&url)
        .header("origin", "https://evil.example")
        .bearer_auth(token("42", None, &[]))
        .form(&[("socket_id", "1.2"), ("channel_name", "private-user.notifications.42")])
        .send()
        .await
        .expect("sent");
    assert_eq!(post.status(), 200);
    assert_eq!(post.headers()["access-control-allow-origin"], "*");
    assert!(post.headers().get("access-control-allow-credentials").is_none());
}
