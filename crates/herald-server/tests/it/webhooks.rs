//! Webhooks as a receiver sees them: a local HTTP receiver that checks every request's signature
//! (HMAC-SHA256 of the raw body with the app secret, as Pusher signs) and answers as scripted.
//! The Node suite checks the same bodies with the official `pusher` SDK's `webhook()`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use herald_protocol::verify_hex_signature;
use herald_server::config::{Config, WebhookConfig, WebhookKind};
use serde_json::{json, Value};

use crate::cluster::two_nodes_with;
use crate::harness::{TestServer, WAIT};

/// How the receiver answers: the scripted statuses in turn, then `then`; `hang` never answers.
#[derive(Clone)]
struct Script {
    first: Vec<u16>,
    then: u16,
    hang: bool,
}

impl Script {
    fn ok() -> Script {
        Script { first: Vec::new(), then: 200, hang: false }
    }
}

/// One request as received.
#[derive(Clone, Debug)]
struct Call {
    at: Instant,
    body: Value,
    /// The signature verified with `main`'s secret, the key header was `main`'s.
    signed: bool,
    header: Option<String>,
    status: u16,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Receiver {
    async fn start(script: Script) -> Receiver {
        let calls = Arc::new(Mutex::new(Vec::<Call>::new()));
        let log = calls.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let log = log.clone();
                let script = script.clone();
                async move {
                    if script.hang {
                        tokio::time::sleep(Duration::from_secs(600)).await;
                    }
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let header = |name: &str| {
                        headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned)
                    };
                    let signed = header("x-pusher-key").as_deref() == Some("main-key")
                        && header("content-type").as_deref() == Some("application/json")
                        && header("x-pusher-signature")
                            .is_some_and(|signature| verify_hex_signature("main-secret", &text, &signature));
                    let mut calls = log.lock().expect("calls");
                    let status = script.first.get(calls.len()).copied().unwrap_or(script.then);
                    calls.push(Call {
                        at: Instant::now(),
                        body: serde_json::from_str(&text).unwrap_or(Value::Null),
                        signed,
                        header: header("x-receiver-token"),
                        status,
                    });
                    (StatusCode::from_u16(status).expect("status"), "{}")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, calls }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    /// Every event of every accepted (2xx) request, in order.
    fn events(&self) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|call| (200..300).contains(&call.status))
            .flat_map(|call| call.body["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The `name` (and `channel`) of each accepted event.
    fn names(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|event| {
                format!(
                    "{} {}",
                    event["name"].as_str().unwrap_or("?"),
                    event["channel"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }

    /// `names()` sorted: requests are delivered by parallel workers, in any order.
    fn sorted_names(&self) -> Vec<String> {
        let mut names = self.names();
        names.sort();
        names
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&Receiver) -> bool, within: Duration) {
        let deadline = Instant::now() + within;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; received {:?}", self.calls());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A member joins `presence-room` on `first`, reloads onto `second` within the removal delay
/// (`RELOAD_DELAY_MS`: nothing is sent), then leaves for good (one `member_removed`, one
/// `channel_vacated`, after the delay).
/// The kinds a page reload would change.
const OCCUPANCY: [WebhookKind; 4] = [
    WebhookKind::ChannelOccupied,
    WebhookKind::ChannelVacated,
    WebhookKind::MemberAdded,
    WebhookKind::MemberRemoved,
];

/// The removal delay of the reload tests: room for a reconnection on a busy machine.
const RELOAD_DELAY_MS: u64 = 2_000;

async fn reload_then_leave(receiver: &Receiver, first: &TestServer, second: &TestServer, user: &str) {
    let mut before = first.client().await;
    before.subscribe_signed("presence-room", Some(&member(user))).await;
    receiver.wait_for("the occupation", |r| r.events().len() == 2, WAIT).await;

    // The reload: the socket goes, a new one comes back well within the delay.
    drop(before);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut after = second.client().await;
    after.subscribe_signed("presence-room", Some(&member(user))).await;
    tokio::time::sleep(Duration::from_millis(RELOAD_DELAY_MS + 800)).await;
    assert_eq!(receiver.sorted_names(), ["channel_occupied presence-room", "member_added presence-room"]);

    // Gone for good: exactly one removal of each kind, after the delay.
    let left = Instant::now();
    drop(after);
    receiver.wait_for("the removal", |r| r.events().len() == 4, WAIT).await;
    assert!(left.elapsed() >= Duration::from_millis(RELOAD_DELAY_MS - 100), "removals wait out the delay");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.sorted_names(),
        [
            "channel_occupied presence-room",
            "channel_vacated presence-room",
            "member_added presence-room",
            "member_removed presence-room",
        ]
    );
}

/// The server's dead letters once there is one, within `within`.
async fn dead_letters_within(
    server: &TestServer,
    receiver: &Receiver,
    within: Duration,
) -> Vec<herald_store::DeadLetter> {
    let deadline = Instant::now() + within;
    loop {
        let letters = server.store.dead_letters(10).await.expect("dead letters");
        if !letters.is_empty() {
            return letters;
        }
        assert!(Instant::now() < deadline, "never dead-lettered: {:?}", receiver.calls());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `herald_webhook*` lines of the server's metrics.
async fn webhook_metrics(server: &TestServer) -> Vec<String> {
    let url = format!("http://{}/metrics", server.admin_address);
    let text = server.http().get(url).send().await.expect("metrics").text().await.expect("text");
    text.lines().filter(|line| line.starts_with("herald_webhook")).map(str::to_owned).collect()
}

fn hook(url: &str, kinds: &[WebhookKind]) -> WebhookConfig {
    WebhookConfig { url: url.into(), event_types: kinds.to_vec(), headers: Default::default() }
}

/// Quick removals and retries, the receivers on `main`.
fn with_hooks(hooks: Vec<WebhookConfig>, batching: bool) -> impl Fn(&mut Config) + Clone {
    move |config: &mut Config| {
        config.webhooks.removal_delay_ms = 300;
        config.webhooks.backoff_base_ms = 100;
        config.webhooks.backoff_cap_ms = 400;
        config.webhooks.batch_ms = 200;
        config.webhooks.timeout_secs = 1;
        let main = config.apps.iter_mut().find(|app| app.id == "main").expect("main app");
        main.webhooks = hooks.clone();
        main.webhook_batching = batching;
        main.subscription_count = true;
    }
}

fn member(user_id: &str) -> String {
    json!({ "user_id": user_id, "user_info": { "name": user_id } }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_reaches_the_receiver_signed_and_in_pusher_s_shape() {
    let receiver = Receiver::start(Script::ok()).await;
    let mut with_token = hook(&receiver.url, &[]);
    with_token.headers.insert("X-Receiver-Token".into(), "t0ken".into());
    let server = TestServer::with_config(with_hooks(vec![with_token], false)).await;

    let mut alice = server.client().await;
    let reply = alice.subscribe_signed("presence-room", Some(&member("alice"))).await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded", "{reply}");
    alice.subscribe_signed("private-chat", None).await;
    alice.send(json!({ "event": "client-typing", "channel": "presence-room", "data": { "on": true } })).await;
    // Subscription counts come in between (the app counts subscriptions): wait for the events.
    alice.send(json!({ "event": "pusher:subscribe", "data": { "channel": "cache-prices" } })).await;
    alice.recv_event("pusher:cache_miss").await;
    alice.send(json!({ "event": "pusher:unsubscribe", "data": { "channel": "presence-room" } })).await;

    let expected = [
        "channel_occupied presence-room",
        "member_added presence-room",
        "channel_occupied private-chat",
        "client_event presence-room",
        "channel_occupied cache-prices",
        "cache_miss cache-prices",
        "member_removed presence-room",
        "channel_vacated presence-room",
    ];
    receiver.wait_for("every kind", |r| r.events().len() >= expected.len() + 4, WAIT).await;
    // One request each, delivered by parallel workers: in any order (as Pusher's; `time_ms` orders).
    let names: Vec<String> =
        receiver.sorted_names().into_iter().filter(|name| !name.starts_with("subscription_count")).collect();
    let mut expected = expected.map(str::to_owned).to_vec();
    expected.sort();
    assert_eq!(names, expected);
    let calls = receiver.calls();
    assert!(calls.iter().all(|call| call.signed), "every request is signed with main's secret: {calls:?}");
    assert!(calls.iter().all(|call| call.header.as_deref() == Some("t0ken")), "the configured header");
    assert!(calls.iter().all(|call| call.body["events"].as_array().is_some_and(|events| events.len() == 1)));
    assert!(calls[0].body["time_ms"].as_i64().is_some_and(|ms| ms > 1_600_000_000_000));

    let events = receiver.events();
    let find = |name: &str| events.iter().find(|event| event["name"] == name).cloned().expect(name);
    assert_eq!(
        find("member_added"),
        json!({"name": "member_added", "channel": "presence-room", "user_id": "alice"})
    );
    assert_eq!(
        find("client_event"),
        json!({
            "name": "client_event", "channel": "presence-room", "event": "client-typing",
            "data": "{\"on\":true}", "socket_id": alice.socket_id, "user_id": "alice"
        })
    );
    // One per channel and change, delivered by the workers in any order.
    let joined = json!({"name": "subscription_count", "channel": "presence-room", "subscription_count": 1});
    assert!(events.contains(&joined), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_within_the_delay_sends_nothing_and_staying_away_sends_one_removal() {
    let receiver = Receiver::start(Script::ok()).await;
    let kinds = OCCUPANCY;
    let url = receiver.url.clone();
    let server = TestServer::with_config(move |config| {
        with_hooks(vec![hook(&url, &kinds)], false)(config);
        config.webhooks.removal_delay_ms = RELOAD_DELAY_MS;
    })
    .await;
    reload_then_leave(&receiver, &server, &server, "bob").await;
    let hooks = webhook_metrics(&server).await;
    assert!(
        hooks.iter().any(|line| line == "herald_webhook_events_total{fate=\"suppressed\"} 2"),
        "{hooks:?}"
    );
    assert!(hooks.iter().any(|line| line == "herald_webhooks_total{outcome=\"sent\"} 4"), "{hooks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_puts_events_that_happen_together_in_one_body() {
    let receiver = Receiver::start(Script::ok()).await;
    let server =
        TestServer::with_config(with_hooks(vec![hook(&receiver.url, &[WebhookKind::ChannelOccupied])], true))
            .await;
    let mut client = server.client().await;
    for channel in ["a", "b", "c"] {
        client.subscribe(channel).await;
    }
    receiver.wait_for("three occupations", |r| r.events().len() == 3, WAIT).await;
    let calls = receiver.calls();
    assert_eq!(calls.len(), 1, "one body: {calls:?}");
    assert_eq!(receiver.names(), ["channel_occupied a", "channel_occupied b", "channel_occupied c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_webhook_once_after_a_retry() {
    let receiver = Receiver::start(Script { first: vec![500], then: 200, hang: false }).await;
    let server = TestServer::with_config(with_hooks(
        vec![hook(&receiver.url, &[WebhookKind::ChannelOccupied])],
        false,
    ))
    .await;
    let mut client = server.client().await;
    client.subscribe("news").await;
    receiver.wait_for("the retry", |r| r.calls().len() == 2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = receiver.calls();
    assert_eq!(calls.iter().map(|call| call.status).collect::<Vec<_>>(), [500, 200], "{calls:?}");
    assert_eq!(calls[0].body, calls[1].body, "the same body again");
    assert_eq!(receiver.names(), ["channel_occupied news"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_keeps_failing_is_retried_with_growing_gaps_then_dead_lettered() {
    let receiver = Receiver::start(Script { first: Vec::new(), then: 503, hang: false }).await;
    let url = receiver.url.clone();
    let server = TestServer::with_config(move |config| {
        with_hooks(vec![hook(&url, &[WebhookKind::ChannelOccupied])], false)(config);
        // Gaps of 300 + 600 + 1 200 ms fit in the 3 s window; a fourth (1 200 ms) would not.
        // (Wide gaps: their growth shows through a busy machine's scheduling noise.)
        config.webhooks.backoff_base_ms = 300;
        config.webhooks.backoff_cap_ms = 1_200;
        config.webhooks.retry_window_secs = 3;
    })
    .await;
    let mut client = server.client().await;
    client.subscribe("news").await;
    let letters = dead_letters_within(&server, &receiver, Duration::from_secs(10)).await;
    let calls = receiver.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    let gaps: Vec<Duration> = calls.windows(2).map(|pair| pair[1].at - pair[0].at).collect();
    assert!(gaps[1] > gaps[0] && gaps[2] > gaps[0], "the gaps grow: {gaps:?}");
    assert_eq!(
        (letters[0].event_name.as_str(), letters[0].channels.clone()),
        ("webhook", vec![receiver.url.clone()])
    );
    assert!(letters[0].last_error.contains("503"), "{}", letters[0].last_error);

    // Retried from the dead letters once the receiver is fixed? It still fails here: one more call.
    let replayed = server.store.replay_dead_letters(herald_store::DeadLetters::All).await.expect("replay");
    assert_eq!(replayed, 1);
    receiver.wait_for("the replayed attempt", |r| r.calls().len() >= 5, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_dead_lettered_at_once() {
    let receiver = Receiver::start(Script { first: Vec::new(), then: 410, hang: false }).await;
    let server = TestServer::with_config(with_hooks(
        vec![hook(&receiver.url, &[WebhookKind::ChannelOccupied])],
        false,
    ))
    .await;
    let mut client = server.client().await;
    client.subscribe("news").await;
    dead_letters_within(&server, &receiver, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.calls().len(), 1, "a 410 is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_times_out_and_holds_up_no_one_else() {
    let hanging = Receiver::start(Script { first: Vec::new(), then: 200, hang: true }).await;
    let healthy = Receiver::start(Script::ok()).await;
    let kinds = [WebhookKind::ChannelOccupied];
    let server = TestServer::with_config(with_hooks(
        vec![hook(&hanging.url, &kinds), hook(&healthy.url, &kinds)],
        false,
    ))
    .await;
    let mut client = server.client().await;
    for channel in ["a", "b", "c", "d"] {
        client.subscribe(channel).await;
    }
    healthy.wait_for("every occupation", |r| r.events().len() == 4, Duration::from_secs(3)).await;
    // The socket is as responsive as ever meanwhile.
    client.send(json!({ "event": "pusher:ping", "data": {} })).await;
    assert_eq!(client.recv_event("pusher:pong").await["event"], "pusher:pong");
    // Each attempt on the hanging receiver ends at the 1 s timeout and is retried.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let hooks = webhook_metrics(&server).await;
    let retried = hooks
        .iter()
        .find_map(|line| line.strip_prefix("herald_webhooks_total{outcome=\"retried\"} "))
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(retried >= 4, "timed-out attempts are retried: {hooks:?}");
}

#[test]
fn bad_receivers_are_named_in_the_configuration_errors() {
    let toml = r#"
        [[apps]]
        id = "main"
        key = "main-key"
        secret = "main-secret"
        [[apps.webhooks]]
        url = "ftp://example.com/"
        event_types = ["channel_occupied", "channel_exploded"]
    "#;
    let problems = Config::from_toml(toml).expect_err("refused").problems;
    assert!(problems.iter().any(|problem| problem.contains("channel_exploded")), "{problems:?}");
    let toml = toml.replace(", \"channel_exploded\"", "");
    let problems = Config::from_toml(&toml).expect_err("refused").problems;
    assert_eq!(
        problems,
        ["apps[0].webhooks[0].url: \"ftp://example.com/\" is not an http:// or https:// URL"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_two_nodes_one_occupation_and_one_vacation_for_the_whole_cluster() {
    let receiver = Receiver::start(Script::ok()).await;
    let kinds = [WebhookKind::ChannelOccupied, WebhookKind::ChannelVacated];
    let Some((a, b)) = two_nodes_with(with_hooks(vec![hook(&receiver.url, &kinds)], false)).await else {
        return;
    };
    let mut on_a = a.client().await;
    let mut on_b = b.client().await;
    on_a.subscribe("news").await;
    on_b.subscribe("news").await;
    receiver.wait_for("the occupation", |r| !r.events().is_empty(), WAIT).await;
    drop(on_a);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.names(), ["channel_occupied news"], "a socket is still on B");
    drop(on_b);
    receiver.wait_for("the vacation", |r| r.events().len() == 2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.sorted_names(), ["channel_occupied news", "channel_vacated news"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_onto_the_other_node_sends_nothing_either() {
    let receiver = Receiver::start(Script::ok()).await;
    let kinds = OCCUPANCY;
    let hooks = with_hooks(vec![hook(&receiver.url, &kinds)], false);
    let Some((a, b)) = two_nodes_with(move |config| {
        hooks(config);
        config.webhooks.removal_delay_ms = RELOAD_DELAY_MS;
    })
    .await
    else {
        return;
    };
    reload_then_leave(&receiver, &a, &b, "carol").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_takes_at_most_half_the_workers_so_other_apps_go_on() {
    let hanging = Receiver::start(Script { first: Vec::new(), then: 200, hang: true }).await;
    let healthy = Receiver::start(Script::ok()).await;
    let kinds = [WebhookKind::ChannelOccupied];
    let (hanging_url, healthy_url) = (hanging.url.clone(), healthy.url.clone());
    let server = TestServer::with_config(move |config| {
        with_hooks(vec![hook(&hanging_url, &kinds)], false)(config);
        config.webhooks.workers = 2;
        config.webhooks.timeout_secs = 10;
        let other = config.apps.iter_mut().find(|app| app.id == "noclient").expect("another app");
        other.webhooks = vec![hook(&healthy_url, &kinds)];
    })
    .await;
    // Three webhooks for the hanging receiver: with two workers, one would be enough to block
    // both without a per-receiver share.
    let mut on_main = server.client().await;
    for channel in ["a", "b", "c"] {
        on_main.subscribe(channel).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut on_other = server.client_for("noclient-key").await;
    on_other.subscribe("elsewhere").await;
    // Without a per-receiver share both workers would hang for the 10 s timeout first.
    healthy.wait_for("the other app's webhook", |r| r.events().len() == 1, Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(hanging.calls().is_empty(), "the hanging receiver never answered");
}
