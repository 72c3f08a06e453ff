//! The notification layer end to end: signed ingest → queue → a real socket on each expected
//! channel receives the event; inbox, preferences, history, audit; retries and dead letters
//! against a local upstream; critical lane first; both SQLite and PostgreSQL.

use std::sync::atomic::Ordering;
use std::time::Duration;

use herald_auth::mint_hs256;
use herald_server::config::{Config, DriverName};
use serde_json::{json, Value};

use crate::harness::{data_of, Client, TestServer, JWT_SECRET};
use crate::upstream::{slow_upstream, upstream, Upstream};

fn token(user: &str, organization: Option<&str>, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|role| (*role).to_owned()).collect();
    mint_hs256(JWT_SECRET, user, organization, &roles, Some("Tester"), 3600).expect("token")
}

/// The audit entries of one kind, newest first.
async fn audit_of(server: &TestServer, kind: herald_store::AuditKind) -> Vec<herald_store::AuditEntry> {
    let filter = herald_store::AuditFilter { kind: Some(kind), ..Default::default() };
    server.store.audit(&filter).await.expect("audit")
}

/// A `notification.created` for user 42 of the notification type `kind`.
fn user_note(id: &str, kind: &str) -> Value {
    json!({ "id": id, "type": "notification.created", "data": { "notification": { "user_id": 42, "type": kind, "title": "T", "message": "M" } } })
}

/// A client subscribed to `channel` (wire name), authorized through Herald's own endpoint.
async fn listener(server: &TestServer, channel: &str, token: &str) -> Client {
    let mut client = server.client().await;
    let mut data = json!({ "channel": channel });
    if channel.starts_with("private-") {
        let (status, answer) = server
            .post_form(
                "/broadcasting/auth",
                Some(token),
                &[("socket_id", client.socket_id.as_str()), ("channel_name", channel)],
            )
            .await;
        assert_eq!(status, 200, "{channel}: {answer}");
        data["auth"] = answer["auth"].clone();
    }
    client.send(json!({ "event": "pusher:subscribe", "data": data })).await;
    assert_eq!(client.recv().await["event"], "pusher_internal:subscription_succeeded", "{channel}");
    client
}

/// Every catalog type: an example event, the expected broadcast name and wire channels.
fn catalog() -> Vec<(Value, &'static str, Vec<&'static str>)> {
    vec![
        (
            json!({ "type": "donation.large_received", "data": { "donation_id": 11, "amount": 5000, "currency": "EUR", "campaign_id": 3, "organization_id": 7, "donor_name": "Ada" } }),
            "donation.large",
            vec!["private-admin-dashboard", "private-organization.7", "private-campaign.3"],
        ),
        (
            json!({ "type": "campaign.milestone_reached", "data": { "campaign_id": 3, "campaign_title": "Clean water", "organization_id": 7, "milestone": 50, "amount_raised": 5000, "goal_amount": 10000, "currency": "EUR" } }),
            "campaign.milestone",
            vec!["private-admin-dashboard", "private-organization.7", "private-campaign.3"],
        ),
        (
            json!({ "type": "campaign.approval_needed", "data": { "campaign_id": 4, "campaign_title": "Trees", "organization_id": 7, "submitted_by": { "id": 9, "name": "Grace" } } }),
            "campaign.approval_needed",
            vec!["private-admin-dashboard", "private-admin-role-csr_admin", "private-admin-role-super_admin"],
        ),
        (
            json!({ "type": "payment.failed", "data": { "payment_id": "p1", "donation_id": 12, "amount": 25, "currency": "USD", "reason": "card declined", "user_id": 42, "organization_id": 7 } }),
            "payment.failed",
            vec![
                "private-payment-notifications",
                "private-admin-role-finance_admin",
                "private-user.notifications.42",
            ],
        ),
        (
            json!({ "type": "security.alert", "data": { "alert_type": "brute_force", "message": "50 failed logins", "severity": "high", "details": { "ip": "203.0.113.9" } } }),
            "security.alert",
            vec!["private-security-alerts"],
        ),
        (
            json!({ "type": "system.maintenance", "data": { "maintenance_type": "scheduled", "scheduled_for": "2026-12-01T02:00:00Z", "duration_minutes": 30, "affected_services": ["api", "dashboard"] } }),
            "system.maintenance",
            vec!["system-maintenance"],
        ),
        (
            json!({ "type": "compliance.issue", "data": { "issue_type": "kyc_missing", "severity": "medium", "message": "KYC documents missing", "organization_id": 7, "details": {} } }),
            "compliance.issue",
            vec!["private-compliance-notifications", "private-admin-role-csr_admin"],
        ),
        (
            json!({ "type": "notification.created", "data": { "notification": { "user_id": 42, "type": "donation_receipt", "title": "Thank you", "message": "Receipt ready", "priority": "normal", "action_url": "/receipts/1" } } }),
            "notification.created",
            vec!["private-user.notifications.42"],
        ),
    ]
}

async fn every_event_type_reaches_every_channel(server: &TestServer) {
    let all_roles = token("42", Some("7"), &["super_admin", "csr_admin", "finance_admin"]);
    server.store.learn_campaign("3", "7").await.expect("learn");
    for (index, (event, name, channels)) in catalog().into_iter().enumerate() {
        let mut listeners = Vec::new();
        for channel in &channels {
            listeners.push(listener(server, channel, &all_roles).await);
        }
        let mut event = event;
        event["id"] = json!(format!("evt-{index}"));
        let (status, body) = server.ingest(&event).await;
        assert_eq!(status, 202, "{name}: {body}");
        let outcome = &body["events"][0];
        assert_eq!(outcome["status"], "accepted", "{body}");
        assert_eq!(outcome["broadcasts_queued"], 1);
        for (client, channel) in listeners.iter_mut().zip(&channels) {
            let frame = client.recv().await;
            assert_eq!(frame["event"], *name, "{channel}");
            assert_eq!(frame["channel"], *channel);
            let payload = data_of(&frame);
            assert_eq!(payload["type"], *name);
            assert!(payload["id"].as_str().is_some_and(|id| id.len() == 36), "{payload}");
            assert!(payload["created_at"].as_str().is_some_and(|at| at.ends_with('Z')));
            assert!(["low", "normal", "high", "urgent"]
                .contains(&payload["priority"].as_str().expect("priority")));
        }
        let filter = herald_store::AuditFilter { event_id: format!("evt-{index}"), ..Default::default() };
        let kinds: Vec<String> = server
            .store
            .audit(&filter)
            .await
            .expect("audit")
            .into_iter()
            .rev()
            .map(|entry| entry.kind.as_str().to_owned())
            .collect();
        assert_eq!(kinds.first().map(String::as_str), Some("received"), "{kinds:?}");
        assert!(kinds.contains(&"routed".to_owned()), "{kinds:?}");
        // Delivered is audited right after the socket write; wait for it rather than assume.
        wait_for_audit(server, &format!("evt-{index}"), "delivered").await;
    }
    // payment.failed and notification.created land in user 42's inbox.
    let (status, inbox) =
        server.with_token("GET", "/api/v1/notifications", &token("42", None, &[]), None).await;
    assert_eq!(status, 200, "{inbox}");
    let types: Vec<&str> =
        inbox["data"].as_array().expect("list").iter().map(|n| n["type"].as_str().expect("type")).collect();
    assert_eq!(types, vec!["donation_receipt", "payment.failed"]);
}

async fn wait_for_audit(server: &TestServer, event_id: &str, kind: &str) {
    for _ in 0..200 {
        let filter = herald_store::AuditFilter {
            event_id: event_id.into(),
            kind: Some(herald_store::AuditKind::parse(kind).expect("a kind")),
            ..Default::default()
        };
        if !server.store.audit(&filter).await.expect("audit").is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no {kind} audit entry for {event_id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_end_to_end() {
    let server = TestServer::start().await;
    every_event_type_reaches_every_channel(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_event_type_end_to_end() {
    let Some(url) = crate::harness::postgres_database().await else { return };
    let server = TestServer::with_config(|config| config.database.url = url).await;
    every_event_type_reaches_every_channel(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_are_answered_with_the_original_outcome_and_not_broadcast() {
    let server = TestServer::start().await;
    let mut client = listener(&server, "system-maintenance", "").await;
    let event = json!({ "id": "once", "type": "system.maintenance", "data": { "maintenance_type": "started", "scheduled_for": "2026-12-01T02:00:00Z", "duration_minutes": 5, "affected_services": ["api"] } });
    let (_, first) = server.ingest(&event).await;
    assert_eq!(client.recv().await["event"], "system.maintenance");
    let (status, again) = server.ingest(&json!({ "events": [event.clone(), event] })).await;
    assert_eq!(status, 202);
    for outcome in again["events"].as_array().expect("list") {
        assert_eq!(outcome["status"], "duplicate");
        assert_eq!(outcome["id"], "once");
        assert_eq!(outcome["broadcasts_queued"], first["events"][0]["broadcasts_queued"]);
    }
    client.expect_silence(Duration::from_millis(400)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_answer_422_naming_the_field_and_store_nothing() {
    let server = TestServer::start().await;
    let good = json!({ "id": "good", "type": "security.alert", "data": { "alert_type": "x", "message": "m", "severity": "low" } });
    let cases = [
        (
            json!({ "id": "a", "type": "security.alert", "data": { "alert_type": "x", "message": "m", "severity": "apocalyptic" } }),
            "events[1].data.severity",
        ),
        (
            json!({ "id": "b", "type": "payment.failed", "data": { "payment_id": 1 } }),
            "events[1].data.donation_id",
        ),
        (json!({ "id": "c", "type": "mystery", "data": {} }), "events[1].type"),
        (json!({ "id": "d", "type": "security.alert" }), "events[1].data"),
        (
            json!({ "id": "e", "type": "security.alert", "occurred_at": "yesterday", "data": {} }),
            "events[1].occurred_at",
        ),
        (json!({ "id": "bad id!", "type": "security.alert", "data": {} }), "events[1].id"),
        (json!("not an object"), "events[1]"),
    ];
    for (bad, field) in cases {
        let (status, body) = server.ingest(&json!({ "events": [good.clone(), bad] })).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["field"], field, "{body}");
    }
    let huge = json!({ "id": "h", "type": "security.alert", "data": { "alert_type": "x", "message": "m", "severity": "low", "details": { "blob": "x".repeat(11_000) } } });
    let (status, body) = server.ingest(&huge).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("events[0].data")), "{body}");
    let too_many: Vec<Value> =
        (0..101).map(|n| json!({ "id": format!("m{n}"), "type": "security.alert", "data": {} })).collect();
    let (status, body) = server.ingest(&json!({ "events": too_many })).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("events")));
    let (status, _) = server.ingest(&json!({ "events": [] })).await;
    assert_eq!(status, 422);
    let stored = server.store.audit(&herald_store::AuditFilter::default()).await.expect("audit");
    assert!(stored.is_empty(), "nothing of a refused batch is stored: {stored:?}");
    let (status, _) = server.ingest(&good).await;
    assert_eq!(status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_needs_a_valid_signature() {
    let server = TestServer::start().await;
    let body = json!({ "type": "security.alert", "data": {} });
    let (status, _) = server
        .signed_with(
            "main",
            "main-key",
            "wrong",
            "POST",
            "/domain-events",
            &[],
            Some(&body),
            crate::harness::now(),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_donations_are_ignored_with_a_reason() {
    let server = TestServer::start().await;
    let event = json!({ "id": "small", "type": "donation.large_received", "data": { "donation_id": 1, "amount": 20, "currency": "EUR", "campaign_id": 5, "organization_id": 6 } });
    let (status, body) = server.ingest(&event).await;
    assert_eq!(status, 202);
    assert_eq!(body["events"][0]["status"], "ignored");
    assert!(body["events"][0]["reason"].as_str().expect("reason").contains("below"));
    assert_eq!(body["events"][0]["broadcasts_queued"], 0);
    let ignored = audit_of(&server, herald_store::AuditKind::Ignored).await;
    assert_eq!(ignored.len(), 1);
    assert_eq!(
        server.store.campaign_organization("5").await.expect("lookup").as_deref(),
        Some("6"),
        "campaign learnt anyway"
    );
}

/// `in_app: false` keeps a type out of the inbox (no row, audited as suppressed) while the
/// real-time broadcast still goes out; other types still reach the inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_app_switch_keeps_a_type_out_of_the_inbox_only() {
    let server = TestServer::start().await;
    let user = token("42", None, &[]);
    let (status, _) = server
        .with_token("PUT", "/api/v1/preferences", &user, Some(&json!({ "preferences": [{ "type": "donation_receipt", "realtime": true, "in_app": false }] })))
        .await;
    assert_eq!(status, 200);
    let mut personal = listener(&server, "private-user.notifications.42", &user).await;
    let (_, body) = server.ingest(&user_note("no-inbox", "donation_receipt")).await;
    assert_eq!(body["events"][0]["broadcasts_queued"], 1, "still broadcast: {body}");
    assert_eq!(body["events"][0]["notification_ids"], json!([]), "no inbox row: {body}");
    assert_eq!(data_of(&personal.recv().await)["notification"]["type"], "donation_receipt");
    let (_, body) = server.ingest(&user_note("to-inbox", "other_type")).await;
    assert_eq!(body["events"][0]["notification_ids"].as_array().expect("ids").len(), 1);
    let (status, inbox) = server.with_token("GET", "/api/v1/notifications", &user, None).await;
    assert_eq!(status, 200);
    let types: Vec<&str> =
        inbox["data"].as_array().expect("list").iter().map(|n| n["type"].as_str().expect("type")).collect();
    assert_eq!(types, ["other_type"]);
    let suppressed = audit_of(&server, herald_store::AuditKind::Suppressed).await;
    assert_eq!(suppressed.len(), 1);
    assert_eq!(suppressed[0].event_id, "no-inbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_mute_real_time_and_the_audit_says_so() {
    let server = TestServer::start().await;
    let user = token("42", None, &[]);
    let (status, prefs) = server
        .with_token("PUT", "/api/v1/preferences", &user, Some(&json!({ "preferences": [{ "type": "donation_receipt", "realtime": false, "in_app": true }] })))
        .await;
    assert_eq!(status, 200, "{prefs}");
    assert_eq!(
        prefs["preferences"][0],
        json!({ "type": "donation_receipt", "realtime": false, "in_app": true })
    );
    let mut personal = listener(&server, "private-user.notifications.42", &user).await;
    let (_, body) = server.ingest(&user_note("muted", "donation_receipt")).await;
    assert_eq!(body["events"][0]["broadcasts_queued"], 0);
    assert_eq!(body["events"][0]["notification_ids"].as_array().expect("ids").len(), 1, "still in the inbox");
    server.ingest(&user_note("loud", "other_type")).await;
    let frame = personal.recv().await;
    assert_eq!(data_of(&frame)["notification"]["type"], "other_type", "the muted one never arrived");
    let suppressed = audit_of(&server, herald_store::AuditKind::Suppressed).await;
    assert_eq!(suppressed[0].event_id, "muted");
    let (status, _) = server
        .with_token(
            "PUT",
            "/api/v1/preferences",
            &user,
            Some(&json!({ "preferences": [{ "realtime": false }] })),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_pages_catch_up_and_read_marks() {
    let server = TestServer::start().await;
    let user = token("7", None, &[]);
    for index in 0..5 {
        let event = json!({ "id": format!("n{index}"), "type": "notification.created", "data": { "notification": { "id": format!("note-{index}"), "user_id": 7, "type": "t", "title": format!("#{index}"), "message": "m" } } });
        assert_eq!(server.ingest(&event).await.0, 202);
    }
    let (_, page) = server.with_token("GET", "/api/v1/notifications?limit=2", &user, None).await;
    assert_eq!(page["data"].as_array().expect("list").len(), 2);
    assert_eq!(page["data"][0]["id"], "note-4");
    let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
    let (_, rest) =
        server.with_token("GET", &format!("/api/v1/notifications?cursor={cursor}"), &user, None).await;
    assert_eq!(rest["data"].as_array().expect("list").len(), 3);
    assert_eq!(rest["next_cursor"], Value::Null);
    let (_, missed) = server.with_token("GET", "/api/v1/notifications?after=note-2", &user, None).await;
    let ids: Vec<&str> =
        missed["data"].as_array().expect("list").iter().map(|n| n["id"].as_str().expect("id")).collect();
    assert_eq!(ids, vec!["note-3", "note-4"]);
    assert_eq!(server.with_token("POST", "/api/v1/notifications/note-4/read", &user, None).await.0, 200);
    assert_eq!(
        server.with_token("POST", "/api/v1/notifications/note-4/read", &token("8", None, &[]), None).await.0,
        404
    );
    let (_, unread) = server.with_token("GET", "/api/v1/notifications?unread=true", &user, None).await;
    assert_eq!(unread["data"].as_array().expect("list").len(), 4);
    let (_, all) = server.with_token("POST", "/api/v1/notifications/read-all", &user, None).await;
    assert_eq!(all["updated"], 4);
    assert_eq!(server.with_token("GET", "/api/v1/notifications", "bad-token", None).await.0, 401);
    assert_eq!(server.with_token("GET", "/api/v1/notifications?limit=1000", &user, None).await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_history_follows_the_subscription_policy() {
    let server = TestServer::start().await;
    for index in 0..3 {
        let event = json!({ "id": format!("s{index}"), "type": "security.alert", "data": { "alert_type": "x", "message": format!("m{index}"), "severity": "low" } });
        server.ingest(&event).await;
    }
    let admin = token("1", None, &["super_admin"]);
    let (status, history) =
        server.with_token("GET", "/api/v1/channels/private-security-alerts/events", &admin, None).await;
    assert_eq!(status, 200, "{history}");
    let events = history["events"].as_array().expect("list");
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["event"], "security.alert");
    let after = events[0]["seq"].as_i64().expect("seq");
    let (_, tail) = server
        .with_token("GET", &format!("/api/v1/channels/security-alerts/events?after={after}"), &admin, None)
        .await;
    assert_eq!(tail["events"].as_array().expect("list").len(), 2);
    let (status, _) = server
        .with_token("GET", "/api/v1/channels/security-alerts/events", &token("2", None, &["csr_admin"]), None)
        .await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_api_filters_by_type_and_status() {
    let server = TestServer::start().await;
    server.ingest(&json!({ "id": "a1", "type": "security.alert", "data": { "alert_type": "x", "message": "m", "severity": "low" } })).await;
    server.ingest(&json!({ "id": "d1", "type": "donation.large_received", "data": { "donation_id": 1, "amount": 1, "currency": "EUR", "campaign_id": 1, "organization_id": 1 } })).await;
    wait_for_audit(&server, "a1", "delivered").await;
    let (status, body) =
        server.signed("main", "GET", "/audit", &[("type", "security.alert"), ("since", "1h")], None).await;
    assert_eq!(status, 200, "{body}");
    let entries = body["entries"].as_array().expect("list");
    assert!(entries.iter().all(|entry| entry["type"] == "security.alert"));
    assert!(entries.iter().any(|entry| entry["status"] == "delivered"));
    let (_, ignored) = server.signed("main", "GET", "/audit", &[("status", "ignored")], None).await;
    assert_eq!(ignored["entries"][0]["event_id"], "d1");
    let (status, _) = server.signed("main", "GET", "/audit", &[("since", "last tuesday")], None).await;
    assert_eq!(status, 400);
    // A status that is not an audit kind is a mistake, not an empty answer.
    let (status, body) = server.signed("main", "GET", "/audit", &[("status", "deliverd")], None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "status", "{body}");
    assert!(body["error"].as_str().is_some_and(|error| error.contains("attempt_failed")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_since_out_of_range_answers_400_naming_since() {
    let server = TestServer::start().await;
    for since in ["9223372036854775807d", "9223372036854775807s", "99999999999999999999999h", "36500000d"] {
        let (status, body) = server.signed("main", "GET", "/audit", &[("since", since)], None).await;
        assert_eq!(status, 400, "{since}: {body}");
        assert_eq!(body["field"], "since", "{since}");
        assert!(body["problem"].as_str().expect("problem").contains("out of range"), "{body}");
    }
    let (status, body) = server.signed("main", "GET", "/audit", &[("since", "10000d")], None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_broadcasts_go_first_under_a_backlog() {
    let server = TestServer::with_config(|config| config.notifications.workers = 1).await;
    let admin = token("1", None, &["super_admin"]);
    let mut client = listener(&server, "private-security-alerts", &admin).await;
    server.state.notifier().set_paused(true);
    let alert = |id: String, severity: &str| json!({ "id": id, "type": "security.alert", "data": { "alert_type": "x", "message": "m", "severity": severity } });
    let normal: Vec<Value> = (0..20).map(|n| alert(format!("low-{n}"), "low")).collect();
    server.ingest(&json!({ "events": normal })).await;
    let critical: Vec<Value> = (0..3).map(|n| alert(format!("crit-{n}"), "critical")).collect();
    server.ingest(&json!({ "events": critical })).await;
    server.state.notifier().set_paused(false);
    let mut order = Vec::new();
    for _ in 0..23 {
        order.push(data_of(&client.recv().await)["severity"].as_str().expect("severity").to_owned());
    }
    assert_eq!(&order[..3], &["critical", "critical", "critical"], "{order:?}");
}

fn pusher_driver(config: &mut Config, port: u16, attempts: i64) {
    config.notifications.driver = DriverName::Pusher;
    config.notifications.upstream.host = "127.0.0.1".into();
    config.notifications.upstream.port = port;
    config.notifications.upstream.scheme = "http".into();
    config.notifications.max_attempts = attempts;
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition not reached in 5 s");
}

const ALERT: &str = r#"{"id": "up-1", "type": "security.alert", "data": {"alert_type": "x", "message": "m", "severity": "low"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_upstream_is_retried_until_it_succeeds() {
    let Upstream { port, calls } = upstream(2, 503).await;
    let server = TestServer::with_config(|config| pusher_driver(config, port, 5)).await;
    server.ingest(&serde_json::from_str(ALERT).expect("json")).await;
    wait_for_audit(&server, "up-1", "delivered").await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let failed = audit_of(&server, herald_store::AuditKind::AttemptFailed).await;
    assert_eq!(failed.len(), 2);
    assert!(failed[0].detail.contains("503"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_failed_attempt_dead_letters_and_replay_delivers() {
    let Upstream { port, calls } = upstream(3, 502).await;
    let server = TestServer::with_config(|config| pusher_driver(config, port, 3)).await;
    server.ingest(&serde_json::from_str(ALERT).expect("json")).await;
    wait_for_audit(&server, "up-1", "dead_lettered").await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let letters = server.store.dead_letters(10).await.expect("letters");
    assert_eq!(letters.len(), 1);
    assert!(letters[0].last_error.contains("502"));
    assert_eq!(server.store.replay_dead_letters(herald_store::DeadLetters::All).await.expect("replay"), 1);
    wait_for_audit(&server, "up-1", "delivered").await;
    let counted = calls.clone();
    wait_until(move || counted.load(Ordering::SeqCst) == 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_from_upstream_dead_letters_at_once() {
    let Upstream { port, calls } = upstream(100, 400).await;
    let server = TestServer::with_config(|config| pusher_driver(config, port, 5)).await;
    server.ingest(&serde_json::from_str(ALERT).expect("json")).await;
    wait_for_audit(&server, "up-1", "dead_lettered").await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let letters = server.store.dead_letters(1).await.expect("letters");
    assert!(letters[0].last_error.contains("upstream answered 400"), "{}", letters[0].last_error);
}

/// The `pusher` driver against another Herald, which checks its requests as it checks any SDK's:
/// the broadcast reaches a socket of the upstream and the credentials check (a signed
/// `GET /channels`) passes; signed with another secret, both are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pusher_driver_delivers_through_another_herald_that_checks_its_signatures() {
    let upstream = TestServer::start().await;
    let port = upstream.address.port();
    let mut client = listener(&upstream, "system-maintenance", "").await;
    let maintenance = |id: &str| json!({ "id": id, "type": "system.maintenance", "data": { "maintenance_type": "started", "scheduled_for": "2026-12-01T02:00:00Z", "duration_minutes": 5, "affected_services": ["api"] } });

    let server = TestServer::with_config(|config| pusher_driver(config, port, 1)).await;
    assert_eq!(server.state.notifier().driver().name(), "pusher");
    assert_eq!(server.ingest(&maintenance("through")).await.0, 202);
    let received = client.recv().await;
    assert_eq!(
        (received["event"].as_str(), received["channel"].as_str()),
        (Some("system.maintenance"), Some("system-maintenance"))
    );
    assert_eq!(data_of(&received)["maintenance_type"], "started", "{received}");
    let check = upstream_check(&server).await;
    assert_eq!(check, json!({ "ok": true, "detail": "127.0.0.1 accepts the credentials" }));

    let wrong = TestServer::with_config(|config| {
        pusher_driver(config, port, 1);
        config.notifications.upstream.secret = "not-main-secret".into();
    })
    .await;
    assert_eq!(wrong.ingest(&maintenance("refused")).await.0, 202);
    wait_for_audit(&wrong, "refused", "dead_lettered").await;
    let letters = wrong.store.dead_letters(1).await.expect("letters");
    assert!(letters[0].last_error.contains("401"), "{}", letters[0].last_error);
    client.expect_silence(Duration::from_millis(200)).await;
    let check = upstream_check(&wrong).await;
    assert_eq!(check["ok"], false, "{check}");
    assert!(check["detail"].as_str().expect("detail").contains("refused the credentials"), "{check}");
}

/// The admin status's verdict on the `pusher` driver's upstream.
async fn upstream_check(server: &TestServer) -> Value {
    let url = format!("http://{}/admin/api/status?check_deps=true", server.admin_address);
    let status: Value = server.http().get(url).send().await.expect("answered").json().await.expect("json");
    status["deps"]["upstream"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_outage_answers_503_to_ingest() {
    let server = TestServer::start().await;
    server.state.records().close().await;
    let (status, body) = server.ingest(&serde_json::from_str(ALERT).expect("json")).await;
    assert_eq!(status, 503, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_driver_writes_json_lines() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("broadcasts.log");
    let file = path.clone();
    let server = TestServer::with_config(move |config| {
        config.notifications.driver = DriverName::Log;
        config.notifications.log_file = file.display().to_string();
    })
    .await;
    server.ingest(&serde_json::from_str(ALERT).expect("json")).await;
    wait_for_audit(&server, "up-1", "delivered").await;
    let text = std::fs::read_to_string(&path).expect("log written");
    let line: Value = serde_json::from_str(text.lines().next().expect("a line")).expect("json line");
    assert_eq!(line["event"], "security.alert");
    assert_eq!(line["channels"], json!(["private-security-alerts"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_id_sent_twice_is_refused_with_422() {
    let server = TestServer::start().await;
    let note = |event: &str| json!({ "id": event, "type": "notification.created", "data": { "notification": { "id": "n1", "user_id": 42, "type": "t", "title": "T", "message": "M" } } });
    assert_eq!(server.ingest(&note("e1")).await.0, 202);
    let (status, body) = server.ingest(&note("e2")).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("events[0].data.notification.id")), "{body}");
    let (status, body) = server.ingest(&json!({ "events": [note("e3"), note("e4")] })).await;
    assert!(status == 422 || status == 409, "{status} {body}");
    // A retry of the stored event is still a duplicate, not a reuse.
    let (status, body) = server.ingest(&note("e1")).await;
    assert_eq!((status, body["events"][0]["status"].as_str()), (202, Some("duplicate")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_notification_app_may_ingest_or_read_the_audit() {
    let server = TestServer::start().await;
    let body: Value = serde_json::from_str(ALERT).expect("json");
    let (status, reply) = server.signed("noclient", "POST", "/domain-events", &[], Some(&body)).await;
    assert_eq!(status, 403, "{reply}");
    assert!(reply["error"].as_str().expect("text").contains("\"main\""));
    assert_eq!(server.signed("noclient", "GET", "/audit", &[], None).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_200_can_be_asked_for_the_php_sdk() {
    let server = TestServer::start().await;
    let body: Value = serde_json::from_str(ALERT).expect("json");
    let (status, reply) =
        server.signed("main", "POST", "/domain-events", &[("status", "200")], Some(&body)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["events"][0]["status"], "accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_is_audited_under_the_original_type() {
    let server = TestServer::start().await;
    server.ingest(&json!({ "id": "x", "type": "security.alert", "data": { "alert_type": "a", "message": "m", "severity": "low" } })).await;
    server.ingest(&json!({ "id": "x", "type": "compliance.issue", "data": { "issue_type": "i", "severity": "low", "message": "m" } })).await;
    let duplicates = audit_of(&server, herald_store::AuditKind::Duplicate).await;
    assert_eq!(duplicates[0].event_type, "security.alert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_reported_without_the_signed_url() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let server = TestServer::with_config(|config| pusher_driver(config, port, 1)).await;
    server.ingest(&serde_json::from_str(ALERT).expect("json")).await;
    wait_for_audit(&server, "up-1", "dead_lettered").await;
    let letters = server.store.dead_letters(1).await.expect("letters");
    assert!(letters[0].last_error.contains("upstream unreachable"), "{}", letters[0].last_error);
    assert!(!letters[0].last_error.contains("auth_signature"), "{}", letters[0].last_error);
}

/// The Laravel `.env` copied into Herald's environment: `BROADCAST_CONNECTION=pusher` with
/// `PUSHER_HOST`/`PUSHER_PORT` pointing at Herald itself. Herald delivers with its own driver
/// instead of forwarding to itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pusher_upstream_that_is_this_server_delivers_with_the_herald_driver() {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let server = TestServer::with_config(|config| {
        config.server.port = port;
        pusher_driver(config, port, 1);
        config.notifications.upstream.host = "localhost".into();
    })
    .await;
    assert_eq!(server.state.notifier().driver().name(), "herald");
    let mut client = listener(&server, "system-maintenance", "").await;
    let event = json!({ "id": "self", "type": "system.maintenance", "data": { "maintenance_type": "started", "scheduled_for": "2026-12-01T02:00:00Z", "duration_minutes": 5, "affected_services": ["api"] } });
    let (status, _) = server.ingest(&event).await;
    assert_eq!(status, 202);
    assert_eq!(client.recv().await["event"], "system.maintenance");
}

/// Graceful shutdown lets a worker finish the delivery in hand: the upstream is still answering
/// when shutdown starts, and the broadcast is recorded as delivered, not left leased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_delivery_in_hand() {
    let (Upstream { port, calls }, arrived) = slow_upstream(Duration::from_millis(800)).await;
    let mut server = TestServer::with_config(|config| pusher_driver(config, port, 5)).await;
    let waiting = arrived.notified();
    server.ingest(&serde_json::from_str(ALERT).expect("json")).await;
    tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the delivery reaches the upstream");
    server.shutdown().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "delivered once, not retried");
    let store = herald_store::Store::connect(&server.database_url).await.expect("database opens");
    let filter = herald_store::AuditFilter {
        event_id: "up-1".into(),
        kind: Some(herald_store::AuditKind::Delivered),
        ..Default::default()
    };
    assert_eq!(store.audit(&filter).await.expect("audit").len(), 1, "recorded as delivered before the exit");
    let pending: i64 = store.lane_stats().await.expect("lanes").iter().map(|lane| lane.pending).sum();
    assert_eq!(pending, 0);
}

/// An alert with its own id, as the benchmark sends them.
fn alert(id: &str) -> Value {
    json!({ "id": id, "type": "security.alert", "data": {"alert_type": "x", "message": "m", "severity": "low"} })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_events_are_each_committed_before_their_202() {
    let server = TestServer::start().await;
    // 64 at once, every fourth repeating the one before it: the repeats are duplicates answering
    // the original outcome, whichever request of the pair the group stores first.
    let ids: Vec<String> =
        (0..64).map(|n| if n % 4 == 3 { format!("cc-{}", n - 1) } else { format!("cc-{n}") }).collect();
    let events: Vec<Value> = ids.iter().map(|id| alert(id)).collect();
    let answers = futures_util::future::join_all(events.iter().map(|event| server.ingest(event))).await;
    let mut accepted = 0;
    for (id, (status, body)) in ids.iter().zip(&answers) {
        assert_eq!(*status, 202, "{body}");
        let outcome = &body["events"][0];
        assert_eq!(outcome["id"], json!(id), "{body}");
        match outcome["status"].as_str() {
            Some("accepted") => accepted += 1,
            Some("duplicate") => {}
            _ => panic!("unexpected outcome {body}"),
        }
        assert_eq!(outcome["broadcasts_queued"], json!(1), "a duplicate answers the original: {body}");
        assert!(server.store.event_exists(id).await.expect("query"), "{id} committed before its 202");
    }
    assert_eq!(accepted, 48, "each id accepted once");
    let received = audit_of(&server, herald_store::AuditKind::Received).await;
    assert_eq!(received.len(), 48, "one received entry per stored event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_during_concurrent_ingest_answers_503_and_leaves_nothing_half_written() {
    let server = TestServer::with_config(|config| config.notifications.workers = 0).await;
    let sent = std::sync::Mutex::new(Vec::<(Vec<String>, u16)>::new());
    let client = |client: usize| {
        let (server, sent) = (&server, &sent);
        async move {
            for round in 0..100_000 {
                let ids: Vec<String> = (0..2).map(|n| format!("out-{client}-{round}-{n}")).collect();
                let events: Vec<Value> = ids.iter().map(|id| alert(id)).collect();
                let (status, body) = server.ingest(&json!({ "events": events })).await;
                assert!(status == 202 || status == 503, "{status} {body}");
                sent.lock().expect("not poisoned").push((ids, status));
                if status == 503 {
                    return;
                }
            }
        }
    };
    let outage = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        server.state.records().close().await;
    };
    tokio::join!(futures_util::future::join_all((0..16).map(client)), outage);
    let sent = sent.into_inner().expect("not poisoned");
    let refused = sent.iter().filter(|(_, status)| *status == 503).count();
    assert_eq!(refused, 16, "every client ends on a 503");
    for (ids, status) in &sent {
        for id in ids {
            let stored = server.store.event_exists(id).await.expect("query");
            assert_eq!(stored, *status == 202, "{id} answered {status}");
        }
    }
    // No worker runs: every job of an accepted event is still queued, and nothing else is.
    let accepted = sent.iter().filter(|(_, status)| *status == 202).count() * 2;
    let stats = server.store.lane_stats().await.expect("stats");
    assert_eq!(stats.iter().map(|lane| lane.pending).sum::<i64>() as usize, accepted);
    let filter = herald_store::AuditFilter {
        kind: Some(herald_store::AuditKind::Received),
        limit: 1_000_000,
        ..Default::default()
    };
    assert_eq!(server.store.audit(&filter).await.expect("audit").len(), accepted);
}
