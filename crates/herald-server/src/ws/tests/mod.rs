//! The session's timers and windows under tokio's paused clock, through an in-memory connection
//! (client.rs) with a real `Tenant` and hub: every deadline asserted to the millisecond it is due.

mod client;
mod frames;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::Socket;
use herald_hub::Outbox;
use herald_protocol::{ChannelName, CloseCode};
use serde_json::json;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use self::client::{data_of, Client, WIRE_FRAMES};
use super::{connection, SessionContext};
use crate::config::AppConfig;
use crate::tenant::{Fanout, Tenant};

/// The server's defaults (`activity_timeout_secs`, `pong_timeout_secs`): paused time makes them free.
const ACTIVITY: Duration = Duration::from_secs(120);
const PONG: Duration = Duration::from_secs(30);
const SECOND: Duration = Duration::from_secs(1);
const MILLISECOND: Duration = Duration::from_millis(1);

fn context() -> SessionContext {
    SessionContext { activity_timeout: ACTIVITY, pong_timeout: PONG, shutdown: CancellationToken::new() }
}

fn tenant(configure: impl FnOnce(&mut AppConfig)) -> Arc<Tenant> {
    let mut config = AppConfig {
        id: "test".into(),
        key: "test-key".into(),
        secret: "test-secret".into(),
        ..AppConfig::default()
    };
    configure(&mut config);
    Arc::new(Tenant::new(config, 1, herald_hub::OUTBOX_CAPACITY, Fanout::Local, None))
}

/// A bare hub socket subscribed to `channel`: what other connections would receive.
fn observer(app: &Tenant, channel: &str) -> Outbox<axum::extract::ws::Utf8Bytes> {
    let (socket, outbox) = app.hub.register(None).expect("no connection limit");
    let channel = ChannelName::parse(channel, 200).expect("a channel name");
    app.hub.subscribe(&socket, &channel, None, 100).expect("subscribed");
    outbox
}

fn drain(outbox: &mut Outbox<axum::extract::ws::Utf8Bytes>) -> usize {
    std::iter::from_fn(|| outbox.try_recv().ok()).count()
}

/// Lets every woken task run (time does not move while a task is ready) until `done`.
async fn settle(done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never settled");
}

/// The size of the connection task's future, from its type alone.
fn size_of_task<F>(_: fn(SessionContext, Option<Arc<Tenant>>, Option<CloseCode>, Socket) -> F) -> usize {
    std::mem::size_of::<F>()
}

/// Every open connection carries this future for its whole life (docs/benchmarks.md, "bytes per
/// connection"): it must not grow unnoticed. Test profile: 2064 bytes before the session was
/// made generic over its frames, 2048 after, 2032 with the lazily allocated outbox, 2008 on
/// Herald's own socket (without axum's protocol header), 1224 once the socket was stored once
/// (it was stored three times: by the task's async wrapper, and as `start`'s argument and local),
/// 1176 with the hand-written wait (no `select!` state, no `Notify` or cancellation futures; the
/// goodbye boxed), the two source wakers and the outbox write kept inline instead of boxed, 1160
/// with the socket shared with its direct writer (a TLS stream boxed).
#[test]
fn the_connection_task_stays_small() {
    let size = size_of_task(connection::<Socket>);
    assert!(size <= 1160, "the connection task grew to {size} bytes");
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_pinged_after_the_activity_timeout_and_closed_4201_without_a_pong() {
    let app = tenant(|_| {});
    let mut client = Client::connect(&context(), &app).await;
    assert_eq!(client.event().await["event"], "pusher:ping");
    assert_eq!(client.elapsed(), ACTIVITY);
    client.goodbye(CloseCode::PongNotReceived).await;
    assert_eq!(client.elapsed(), ACTIVITY + PONG);
    client.ended().await;
    assert_eq!(app.hub.connections(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_pong_before_the_deadline_keeps_the_connection_and_restarts_the_activity_timer() {
    let app = tenant(|_| {});
    let mut client = Client::connect(&context(), &app).await;
    assert_eq!(client.event().await["event"], "pusher:ping");
    client.silent_until(client.at(ACTIVITY + PONG - MILLISECOND)).await;
    client.send(json!({ "event": "pusher:pong", "data": {} }));
    let answered = client.elapsed();
    client.silent_until(client.at(answered + ACTIVITY - MILLISECOND)).await;
    assert_eq!(client.event().await["event"], "pusher:ping");
    assert_eq!(client.elapsed(), answered + ACTIVITY);
    client.goodbye(CloseCode::PongNotReceived).await;
    assert_eq!(client.elapsed(), answered + ACTIVITY + PONG);
}

#[tokio::test(start_paused = true)]
async fn any_frame_postpones_the_ping_by_a_whole_activity_timeout() {
    let app = tenant(|_| {});
    let mut client = Client::connect(&context(), &app).await;
    client.silent_until(client.at(ACTIVITY - SECOND)).await;
    client.send(json!({ "event": "pusher:subscribe", "data": { "channel": "news" } }));
    assert_eq!(client.event().await["event"], "pusher_internal:subscription_succeeded");
    client.silent_until(client.at(2 * ACTIVITY - SECOND - MILLISECOND)).await;
    assert_eq!(client.event().await["event"], "pusher:ping");
    assert_eq!(client.elapsed(), 2 * ACTIVITY - SECOND);
}

#[tokio::test(start_paused = true)]
async fn an_app_requiring_sign_in_closes_4009_after_its_timeout_unless_signed_in() {
    let app = tenant(|config| {
        config.user_authentication_required = true;
        config.user_authentication_timeout_secs = 5;
    });
    let context = context();
    let mut idle = Client::connect(&context, &app).await;
    let mut signed = Client::connect(&context, &app).await;
    signed.signin(r#"{"id":"1"}"#, &app);
    assert_eq!(signed.event().await["event"], "pusher:signin_success");
    idle.goodbye(CloseCode::Unauthorized).await;
    assert_eq!(idle.elapsed(), Duration::from_secs(5));
    idle.ended().await;
    // The signed-in connection stays: the next thing it hears is the activity ping.
    assert_eq!(signed.event().await["event"], "pusher:ping");
    assert_eq!(signed.elapsed(), ACTIVITY);
}

#[tokio::test(start_paused = true)]
async fn client_events_are_limited_per_one_second_window() {
    let app = tenant(|_| {});
    let limit = app.config.limits.client_events_per_second as usize;
    let mut others = observer(&app, "private-chat");
    let mut client = Client::connect(&context(), &app).await;
    client.subscribe("private-chat", &app);
    assert_eq!(client.event().await["event"], "pusher_internal:subscription_succeeded");
    let event = json!({ "event": "client-typing", "channel": "private-chat", "data": {} });
    let refused = || {
        let code = CloseCode::ClientEventRateLimit;
        json!({ "event": "pusher:error", "data": { "code": code.code(), "message": code.message() } })
    };
    for _ in 0..=limit {
        client.send(event.clone());
    }
    assert_eq!(client.event().await, refused(), "the event after the limit");
    assert_eq!(drain(&mut others), limit);
    // Still the same window a millisecond before its second ends…
    sleep_until(client.at(SECOND - MILLISECOND)).await;
    client.send(event.clone());
    assert_eq!(client.event().await, refused(), "the same second");
    client.round_trip().await;
    assert_eq!(drain(&mut others), 0);
    // …and a fresh one when it has.
    sleep_until(client.at(SECOND)).await;
    for _ in 0..=limit {
        client.send(event.clone());
    }
    assert_eq!(client.event().await, refused(), "the event after the limit, next second");
    assert_eq!(drain(&mut others), limit);
    assert_eq!(client.elapsed(), SECOND);
}

#[tokio::test(start_paused = true)]
async fn messages_over_the_limit_of_a_one_second_window_close_4100() {
    let app = tenant(|config| config.limits.max_messages_per_second = 5);
    let mut client = Client::connect(&context(), &app).await;
    for window in [Duration::ZERO, SECOND] {
        sleep_until(client.at(window)).await;
        for _ in 0..5 {
            client.round_trip().await;
        }
    }
    // The sixth message of the window that began at one second, a millisecond before it ends.
    sleep_until(client.at(2 * SECOND - MILLISECOND)).await;
    client.send(json!({ "event": "pusher:ping", "data": {} }));
    let reason = client.goodbye(CloseCode::OverCapacity).await;
    assert_eq!(reason, "more than 5 messages per second");
    assert_eq!(client.elapsed(), 2 * SECOND - MILLISECOND);
    client.ended().await;
}

/// Publishes more ticks on `news` than the wire holds: the session's write waits for the client.
async fn fill_the_wire(app: &Tenant) {
    let news = ChannelName::parse("news", 200).expect("a channel name");
    for tick in 0..=WIRE_FRAMES {
        app.publish(&news, "tick", &tick.to_string(), None, None).await.expect("a local publication");
    }
}

async fn subscribed_to_news(app: &Arc<Tenant>) -> Client {
    let mut client = Client::connect(&context(), app).await;
    client.send(json!({ "event": "pusher:subscribe", "data": { "channel": "news" } }));
    assert_eq!(client.event().await["event"], "pusher_internal:subscription_succeeded");
    client
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_closed_4100_after_the_write_stall_and_told_why() {
    let app = tenant(|_| {});
    let mut client = subscribed_to_news(&app).await;
    fill_the_wire(&app).await;
    // Reading nothing meanwhile (reading would make room on the wire).
    sleep_until(client.at(PONG - MILLISECOND)).await;
    assert_eq!(app.slow_consumers.load(Ordering::Relaxed), 0, "still waiting on the client");
    sleep_until(client.at(PONG)).await;
    settle(|| app.slow_consumers.load(Ordering::Relaxed) == 1).await;
    assert_eq!(client.elapsed(), PONG);
    // It reads again: the ticks the wire held, then the goodbye that says why.
    for tick in 0..WIRE_FRAMES {
        let frame = client.event().await;
        assert_eq!((&frame["event"], data_of(&frame)), (&json!("tick"), json!(tick)));
    }
    let reason = client.goodbye(CloseCode::OverCapacity).await;
    assert_eq!(reason, "slow consumer: the client stopped reading");
    assert_eq!(client.elapsed(), PONG);
    client.ended().await;
    assert_eq!(app.hub.connections(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_again_is_dropped_after_the_goodbye_deadline() {
    let app = tenant(|_| {});
    let client = subscribed_to_news(&app).await;
    fill_the_wire(&app).await;
    let stalled = Instant::now();
    client.ended().await;
    assert_eq!(stalled.elapsed(), PONG + super::CLOSE_WRITE_TIMEOUT);
    assert_eq!(app.slow_consumers.load(Ordering::Relaxed), 1);
    assert_eq!(app.hub.connections(), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_every_session_with_4200() {
    let app = tenant(|_| {});
    let context = context();
    let mut first = Client::connect(&context, &app).await;
    let mut second = Client::connect(&context, &app).await;
    sleep_until(first.at(10 * SECOND)).await;
    super::close_sessions(&context.shutdown, [&app]);
    for client in [&mut first, &mut second] {
        client.goodbye(CloseCode::Reconnect).await;
        assert_eq!(client.elapsed(), 10 * SECOND);
    }
    first.ended().await;
    second.ended().await;
    assert_eq!(app.hub.connections(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_session_registering_after_shutdown_began_is_closed_with_4200_too() {
    let app = tenant(|_| {});
    let context = context();
    super::close_sessions(&context.shutdown, [&app]);
    let mut late = Client::connect(&context, &app).await;
    late.goodbye(CloseCode::Reconnect).await;
    assert_eq!(late.elapsed(), Duration::ZERO);
    late.ended().await;
    assert_eq!(app.hub.connections(), 0);
}

/// Deliveries wake the session without reading the client or polling its timer: the client's
/// frames are still read and the ping still comes exactly one activity timeout after them.
#[tokio::test(start_paused = true)]
async fn deliveries_leave_the_client_s_frames_and_the_ping_on_time() {
    let app = tenant(|_| {});
    let mut client = subscribed_to_news(&app).await;
    let news = ChannelName::parse("news", 200).expect("a channel name");
    let deliver = async |client: &mut Client, ticks: std::ops::Range<u32>| {
        for tick in ticks {
            sleep_until(Instant::now() + SECOND).await;
            app.publish(&news, "tick", &tick.to_string(), None, None).await.expect("a local publication");
            let frame = client.event().await;
            assert_eq!((&frame["event"], data_of(&frame)), (&json!("tick"), json!(tick)));
        }
    };
    deliver(&mut client, 0..3).await;
    client.round_trip().await;
    let answered = client.elapsed();
    deliver(&mut client, 3..6).await;
    client.round_trip().await;
    let answered_again = client.elapsed();
    assert_eq!(answered_again, answered + 3 * SECOND);
    deliver(&mut client, 6..9).await;
    client.silent_until(client.at(answered_again + ACTIVITY - MILLISECOND)).await;
    assert_eq!(client.event().await["event"], "pusher:ping");
    assert_eq!(client.elapsed(), answered_again + ACTIVITY);
}

#[tokio::test(start_paused = true)]
async fn refusals_are_an_error_then_a_close_frame() {
    let app = tenant(|config| config.max_connections = 1);
    let context = context();
    let mut unknown = Client::open(&context, None, None);
    unknown.goodbye(CloseCode::AppNotFound).await;
    let mut draining = Client::open(&context, Some(&app), Some(CloseCode::Reconnect));
    draining.goodbye(CloseCode::Reconnect).await;
    let _connected = Client::connect(&context, &app).await;
    let mut over = Client::open(&context, Some(&app), None);
    over.goodbye(CloseCode::OverConnectionQuota).await;
    over.ended().await;
    assert_eq!(app.hub.connections(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_sign_in_timeout_longer_than_the_activity_timeout_still_pings_first() {
    let app = tenant(|config| {
        config.user_authentication_required = true;
        config.user_authentication_timeout_secs = 200;
    });
    let mut client = Client::connect(&context(), &app).await;
    assert_eq!(client.event().await["event"], "pusher:ping");
    assert_eq!(client.elapsed(), ACTIVITY);
    client.send(json!({ "event": "pusher:pong", "data": {} }));
    client.goodbye(CloseCode::Unauthorized).await;
    assert_eq!(client.elapsed(), Duration::from_secs(200));
    client.ended().await;
}
