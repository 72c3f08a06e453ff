//! Hostile domain events: every invalid field named in one 422, exact money amounts, links a
//! browser could run refused; nothing of a refused request is stored.

use herald_auth::mint_hs256;
use serde_json::{json, Value};

use crate::harness::{data_of, Client, TestServer, JWT_SECRET};

fn token(user: &str, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|role| (*role).to_owned()).collect();
    mint_hs256(JWT_SECRET, user, Some("7"), &roles, Some("Tester"), 3600).expect("token")
}

async fn nothing_stored(server: &TestServer) {
    let stored = server.store.audit(&herald_store::AuditFilter::default()).await.expect("audit");
    assert!(stored.is_empty(), "nothing of a refused request is stored: {stored:?}");
}

fn fields_of(body: &Value) -> Vec<&str> {
    body["errors"]
        .as_array()
        .expect("errors list")
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect()
}

fn donation(amount: Value) -> Value {
    json!({ "type": "donation.large_received", "data": {
        "donation_id": 1, "amount": amount, "currency": "EUR", "campaign_id": 3, "organization_id": 7 } })
}

fn notification(action_url: &str) -> Value {
    json!({ "type": "notification.created", "data": { "notification": {
        "user_id": 42, "type": "t", "title": "T", "message": "M", "action_url": action_url } } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_422_names_every_missing_or_invalid_field_of_every_event() {
    let server = TestServer::start().await;
    let bad_alert = json!({ "id": "bad id!", "type": "security.alert", "data": { "severity": "apocalyptic", "details": [] } });
    let bad_payment = json!({ "type": "payment.failed", "data": { "amount": "-0", "currency": "euro" } });
    let (status, body) = server.ingest(&json!({ "events": [bad_alert, bad_payment] })).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        fields_of(&body),
        [
            "events[0].id",
            "events[0].data.alert_type",
            "events[0].data.message",
            "events[0].data.severity",
            "events[0].data.details",
            "events[1].data.payment_id",
            "events[1].data.donation_id",
            "events[1].data.amount",
            "events[1].data.currency",
            "events[1].data.reason",
            "events[1].data.user_id",
            "events[1].data.organization_id",
        ]
    );
    // The top level stays what it was: the first error.
    assert_eq!(body["field"], "events[0].id");
    assert_eq!(body["error"], body["errors"][0]["error"]);
    assert!(body["error"].as_str().expect("error").starts_with("events[0].id: "), "{body}");
    assert!(body["errors"][7]["error"].as_str().expect("error").contains("negative"), "{body}");
    nothing_stored(&server).await;

    let (status, body) = server.ingest(&json!({ "events": [] })).await;
    assert_eq!((status, fields_of(&body)), (422, vec!["events"]), "every 422 has the list: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_out_of_exact_range_or_signed_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let digits38 = "12345678901234567890123456789012345678";
    let refused: Vec<Value> = vec![
        json!(digits38),
        serde_json::from_str(digits38).expect("a 38-digit JSON number"),
        json!("-0"),
        serde_json::from_str("-0").expect("JSON -0"),
        json!("-0.00"),
        json!(-5),
        json!("1000000000000000"),
        json!("1234.56789"),
        json!("1e6"),
        json!(1e300),
        json!("NaN"),
        json!(" "),
        json!(true),
    ];
    for amount in refused {
        let (status, body) = server.ingest(&donation(amount.clone())).await;
        assert_eq!(status, 422, "{amount}: {body}");
        assert_eq!(body["field"], "events[0].data.amount", "{amount}");
    }
    nothing_stored(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_amounts_reach_the_broadcast_and_the_inbox_digit_for_digit() {
    let server = TestServer::start().await;
    let mut dashboard = server.client().await;
    let channel = "private-admin-dashboard";
    let (status, answer) = server
        .post_form(
            "/broadcasting/auth",
            Some(&token("4", &["hr_manager"])),
            &[("socket_id", dashboard.socket_id.as_str()), ("channel_name", channel)],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    dashboard
        .send(json!({ "event": "pusher:subscribe", "data": { "channel": channel, "auth": answer["auth"] } }))
        .await;
    assert_eq!(dashboard.recv().await["event"], "pusher_internal:subscription_succeeded");

    for (sent, broadcast) in [
        (json!("99999999999.9999"), "99999999999.9999"),
        (json!("000123456789012345"), "123456789012345"),
        (json!("7500.10"), "7500.1"),
        (json!(2500.5), "2500.5"),
    ] {
        let (status, body) = server.ingest(&donation(sent.clone())).await;
        assert_eq!(status, 202, "{sent}: {body}");
        let frame = raw_event(&mut dashboard, "donation.large").await;
        assert!(frame.contains(&format!("\"amount\":{broadcast},")), "{sent} → {frame}");
    }

    let payment = json!({ "id": "p", "type": "payment.failed", "data": {
        "payment_id": "p-1", "donation_id": 9, "amount": "1234567.891", "currency": "usd",
        "reason": "card declined", "user_id": 42, "organization_id": 7 } });
    let (status, body) = server.ingest(&payment).await;
    assert_eq!(status, 202, "{body}");
    let (status, inbox) = server.with_token("GET", "/api/v1/notifications", &token("42", &[]), None).await;
    assert_eq!(status, 200, "{inbox}");
    let entry = &inbox["data"][0];
    assert_eq!(entry["message"], "Your payment of 1234567.891 USD failed: card declined", "{inbox}");
    assert_eq!(entry["data"]["amount"].to_string(), "1234567.891");
}

/// The next `event` frame's `data` string as sent on the wire (not re-encoded).
async fn raw_event(client: &mut Client, event: &str) -> String {
    let frame = client.recv_event(event).await;
    assert!(data_of(&frame).is_object());
    frame["data"].as_str().expect("data is a string").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_urls_other_than_http_https_or_a_path_are_refused() {
    let server = TestServer::start().await;
    let hostile = [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "\u{0}javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.example/phish",
        "/\\evil.example",
        "\\\\evil.example",
        "https://",
        "https:///evil.example",
        "ftp://files.example/x",
        "donations/1",
        "?next=javascript:alert(1)",
        "/ok path",
        "https://csr.example/\u{7f}",
    ];
    for url in hostile {
        let (status, body) = server.ingest(&notification(url)).await;
        assert_eq!(status, 422, "{url:?}: {body}");
        assert_eq!(body["field"], "events[0].data.notification.action_url", "{url:?}");
    }
    nothing_stored(&server).await;
    for url in ["/donations/9001/receipt", "https://csr.example/x?y=1#z", "HTTP://csr.example", "/"] {
        let (status, body) = server.ingest(&notification(url)).await;
        assert_eq!(status, 202, "{url:?}: {body}");
    }
}
