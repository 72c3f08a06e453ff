//! One connection's session: the hello, the loop that writes to its socket (or lends its writer
//! to the hub while it waits with nothing to write), its
//! timers (activity ping, pong deadline, sign-in deadline), its writes (each raced against the
//! kill switch, shutdown and the stall deadline) and the goodbye.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes};
use futures_util::{SinkExt as _, StreamExt as _};
use herald_hub::{Outbox, SocketHandle};
use herald_protocol::{encode_error, encode_server_event, ChannelName, CloseCode};
use serde_json::json;
use tokio::time::{sleep_until, Instant, Sleep};
use tracing::{instrument, warn};

use super::{close_message, finish_close, refuse, violation, Frames, SessionContext, CLOSE_WRITE_TIMEOUT};
use crate::tenant::{Departure, Tenant};

/// Why a write was given up on (4100).
const SLOW_CONSUMER: &str = "slow consumer: the client stopped reading";

/// Registers the connection, says hello (`pusher:connection_established`), runs the session and
/// leaves the hub when it ends.
///
/// An async block rather than an async fn: an async fn keeps its arguments twice (as captured
/// and as locals), and the socket is a few hundred bytes every connection carries for its whole
/// life.
#[allow(clippy::manual_async_fn, reason = "captures its arguments once (see above)")]
pub(super) fn start<S: Frames>(
    context: SessionContext,
    app: Arc<Tenant>,
    mut socket: S,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let context = &context;
        let max = (app.config.max_connections > 0).then_some(app.config.max_connections);
        let Some((handle, outbox)) = app.hub.register(max) else {
            Box::pin(refuse(&mut socket, CloseCode::OverConnectionQuota)).await;
            return;
        };
        // Shutdown closes every registered socket (`close_sessions`); one registering after that
        // sees the cancelled token here. Sessions never poll the token while they wait.
        if context.shutdown.is_cancelled() {
            handle.close(CloseCode::Reconnect);
        }
        // Scoped: a local still in scope would be carried (and its heap kept) by the task for the
        // connection's whole life. The hello itself moves into the boxed greeting.
        let hello = {
            let established = json!({
                "socket_id": handle.id.as_str(),
                "activity_timeout": context.activity_timeout.as_secs(),
            })
            .to_string();
            encode_server_event("pusher:connection_established", None, &established, None)
        };
        // In a cluster the app's connections are counted across nodes first. One boxed step, so
        // an idle session's task does not carry it.
        let greeted = Box::pin(async {
            if app.clustered() && !app.admit_connection().await {
                refuse(&mut socket, CloseCode::OverConnectionQuota).await;
                return Greeting::Full;
            }
            match tokio::time::timeout(context.pong_timeout, socket.send(Message::Text(hello.into()))).await {
                Ok(Ok(())) => Greeting::Sent,
                _ => {
                    app.connection_closed().await;
                    Greeting::Failed
                }
            }
        })
        .await;
        match greeted {
            Greeting::Sent => {
                let mut session = Session::new(context, app.clone(), handle);
                session.run(&mut socket, outbox).await;
                if let Some(departure) = session.finish() {
                    Box::pin(departure.tell()).await;
                }
            }
            Greeting::Failed => {
                app.hub.unregister(handle.key, std::iter::empty(), None);
            }
            Greeting::Full => app.hub.unregister(handle.key, std::iter::empty(), None),
        }
    }
}

/// What woke the session, in the order it looks: the kill switch, the outbox, the client, the
/// timer.
enum Wake {
    Closed(CloseCode),
    Frame(Utf8Bytes),
    Incoming(Option<Result<Message, axum::Error>>),
    Timer,
}

/// The session's sources besides the outbox and its kill switch, one bit each: polled again only
/// once their waker fired (`Outbox::source_waker`) or the session touched them.
const SOCKET: u8 = 1;
const TIMER: u8 = 2;

/// The wakers the socket and the timer are polled with: each marks its source and wakes the
/// session (two small allocations per connection, made once).
struct SourceWakers {
    socket: Waker,
    timer: Waker,
}

/// Waits for the next thing the session has to do. Hand-written rather than a `select!`: the
/// kill switch and the outbox are one lock in one cell (and one waker slot), nothing is built
/// or re-armed per wake, a frame waiting in the outbox is taken without polling the rest, and
/// the socket and the timer are polled only when `due` (their waker fired, or the session
/// touched them): a delivery does not read the socket or poll the timer.
fn wait<'a, S: Frames>(
    outbox: &'a mut Outbox<Utf8Bytes>,
    socket: &'a mut S,
    mut timer: Pin<&'a mut Sleep>,
    wakers: &'a SourceWakers,
    due: &'a mut u8,
) -> impl Future<Output = Wake> + 'a {
    poll_fn(move |cx| {
        // With nothing of its own left to write, the session lends its writer to senders until
        // its next poll, in the lock that finds the outbox empty; each poll takes it back before
        // the session touches the socket. (A flush that has to wait wakes the session through
        // the socket's waker.) While the writer is lent from the last poll, nothing of the
        // session's waits (it lent only so), so this check writes nothing then.
        let idle = socket.poll_idle(&mut Context::from_waker(&wakers.socket));
        match outbox.poll_recv_or_lend(cx, idle) {
            Poll::Ready(Ok(frame)) => return Poll::Ready(Wake::Frame(frame)),
            Poll::Ready(Err(code)) => return Poll::Ready(Wake::Closed(code)),
            Poll::Pending => {}
        }
        // After the registration above: a source firing from here on wakes the session.
        *due |= outbox.take_fired();
        // Whether the writer is lent now: taken back before anything that may write.
        let mut lent = idle;
        if *due & SOCKET != 0 {
            // Reading may write (tungstenite answers a ping or a close).
            if lent {
                outbox.reclaim();
            }
            match socket.poll_next_unpin(&mut Context::from_waker(&wakers.socket)) {
                // Still due: more frames may be buffered without another wake.
                Poll::Ready(incoming) => return Poll::Ready(Wake::Incoming(incoming)),
                Poll::Pending => *due &= !SOCKET,
            }
            lent = socket.poll_idle(&mut Context::from_waker(&wakers.socket));
            if lent {
                outbox.lend();
            }
        }
        if *due & TIMER != 0 {
            match timer.as_mut().poll(&mut Context::from_waker(&wakers.timer)) {
                Poll::Ready(()) => {
                    // The session's answer to its timer may write (a ping).
                    if lent {
                        outbox.reclaim();
                    }
                    return Poll::Ready(Wake::Timer);
                }
                Poll::Pending => *due &= !TIMER,
            }
        }
        Poll::Pending
    })
}

/// An outbox write (`Frames::write_batch`). A client that stops reading blocks it: it is raced
/// with the kill switch (which shutdown sets too) and the stall deadline, so a slow consumer is
/// still closed (4100) and its memory freed. A write the socket takes at once (the common case)
/// touches neither: the stall deadline is armed, on the session's one timer, only once the write
/// has to wait. A plain function over borrowed state, so the session's task carries no copy of it.
fn raced<'a, W: Future<Output = Result<(), axum::Error>>>(
    mut write: Pin<&'a mut W>,
    handle: &'a SocketHandle<Utf8Bytes>,
    stall: Duration,
    mut timer: Pin<&'a mut Sleep>,
    due: &'a mut u8,
) -> impl Future<Output = Next> + 'a {
    let mut stalled = false;
    poll_fn(move |cx| {
        if let Poll::Ready(sent) = write.as_mut().poll(cx) {
            return Poll::Ready(match sent {
                Ok(()) => Next::Continue,
                Err(_) => Next::End,
            });
        }
        if let Poll::Ready(code) = handle.poll_closed(cx) {
            return Poll::Ready(Next::Close(code));
        }
        if !stalled {
            stalled = true;
            timer.as_mut().reset(Instant::now() + stall);
            // Polled below with the task's waker, and moved back after the write.
            *due |= TIMER;
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Next::CloseBecause(CloseCode::OverCapacity, SLOW_CONSUMER.into())),
            Poll::Pending => Poll::Pending,
        }
    })
}

/// How the hello went.
enum Greeting {
    Sent,
    /// The client did not take it: it is gone.
    Failed,
    /// The app is at `max_connections` across the cluster: refused with 4004.
    Full,
}

/// What one connection knows about itself.
pub(super) struct Session<'a> {
    pub(super) context: &'a SessionContext,
    pub(super) app: Arc<Tenant>,
    pub(super) handle: SocketHandle<Utf8Bytes>,
    /// Subscribed channels; for presence channels, the user id the socket joined as.
    pub(super) channels: HashMap<ChannelName, Option<Arc<str>>>,
    /// Set by `pusher:signin`.
    pub(super) user_id: Option<String>,
    /// Signed in, or subscribed to a channel that needed auth.
    pub(super) authorized: bool,
    pub(super) last_seen: Instant,
    pub(super) ping_sent: Option<Instant>,
    pub(super) client_events_window: (Instant, u32),
    /// Messages of any kind received in the current one-second window.
    pub(super) messages_window: (Instant, u32),
}

/// What the session loop does after handling a frame.
pub(super) enum Next {
    Continue,
    Close(CloseCode),
    /// Close, explaining why in the `pusher:error` instead of the code's generic message.
    CloseBecause(CloseCode, String),
    /// End the session without a goodbye: the socket is gone.
    End,
    /// The client sent a close frame: send the reply the WebSocket library queued, then end.
    ClientClosed,
}

/// What a frame handler ends with; `Err` stops the handling early with what the loop must do.
pub(super) type Handled = Result<Next, Next>;

impl<'a> Session<'a> {
    fn new(context: &'a SessionContext, app: Arc<Tenant>, handle: SocketHandle<Utf8Bytes>) -> Session<'a> {
        let now = Instant::now();
        Session {
            context,
            app,
            handle,
            channels: HashMap::new(),
            user_id: None,
            authorized: false,
            last_seen: now,
            ping_sent: None,
            client_events_window: (now, 0),
            messages_window: (now, 0),
        }
    }

    fn next_deadline(&self, started: Instant) -> Instant {
        let mut deadline = match self.ping_sent {
            Some(sent) => sent + self.context.pong_timeout,
            None => self.last_seen + self.context.activity_timeout,
        };
        if self.app.config.user_authentication_required && !self.authorized {
            deadline =
                deadline.min(started + Duration::from_secs(self.app.config.user_authentication_timeout_secs));
        }
        deadline
    }

    // A debug-level span: at the default level it is disabled and costs an idle connection nothing.
    #[instrument(level = "debug", skip_all, fields(app = %self.app.config.id, socket = %self.handle.id))]
    async fn run<S: Frames>(&mut self, socket: &mut S, mut outbox: Outbox<Utf8Bytes>) {
        let started = Instant::now();
        // One timer for the session's life, moved only when its deadline does: a delivery does
        // not touch the timer wheel.
        // It lives in this block only, so the goodbye below does not carry it.
        let (code, reason) = {
            let mut timer = pin!(sleep_until(self.next_deadline(started)));
            let wakers =
                SourceWakers { socket: outbox.source_waker(SOCKET), timer: outbox.source_waker(TIMER) };
            let mut due = SOCKET | TIMER;
            // Over plain TCP, deliveries go straight to the socket while the session waits.
            if let Some(direct) = socket.direct() {
                outbox.set_direct(direct);
            }
            loop {
                let deadline = self.next_deadline(started);
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                    due |= TIMER;
                }
                let wake = wait(&mut outbox, socket, timer.as_mut(), &wakers, &mut due).await;
                if !matches!(wake, Wake::Frame(_)) {
                    // Handling anything else may poll the socket or the timer with the task's
                    // own waker: poll both with theirs next time.
                    due = SOCKET | TIMER;
                }
                let next = match wake {
                    Wake::Closed(code) => Next::Close(code),
                    Wake::Frame(frame) => {
                        // Inline, not boxed: no allocation per write (the server's socket's write
                        // is a few words).
                        let write = pin!(socket.write_batch(frame, &mut outbox));
                        raced(write, &self.handle, self.context.pong_timeout, timer.as_mut(), &mut due).await
                    }
                    // Boxed: the handling of a frame is rare next to waiting, and an idle connection should
                    // not carry its state inline.
                    Wake::Incoming(Some(Ok(message))) => {
                        let handled = Box::pin(self.on_message(socket, message)).await;
                        handled.unwrap_or_else(|stop| stop)
                    }
                    Wake::Incoming(Some(Err(error))) => match violation(error) {
                        Some(code) => Next::Close(code),
                        None => return,
                    },
                    Wake::Incoming(None) => return,
                    Wake::Timer => Box::pin(self.on_timer(socket, started)).await,
                };
                match next {
                    Next::Continue => continue,
                    Next::End => return,
                    Next::ClientClosed => {
                        // Boxed, like the goodbye: an idle session does not carry its timer.
                        Box::pin(finish_close(socket)).await;
                        return;
                    }
                    Next::Close(code) => break (code, None),
                    Next::CloseBecause(code, reason) => break (code, Some(reason)),
                }
            }
        };
        if code == CloseCode::OverCapacity {
            self.app.slow_consumers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            warn!(reason = reason.as_deref().unwrap_or("outbox full"), "closing with 4100");
        }
        // The peer may not be reading at all (a slow consumer): never wait long on it.
        let goodbye = async {
            if !code.is_websocket_level() {
                let message = reason.as_deref().unwrap_or(code.message());
                let error = encode_error(Some(code.code()), message);
                socket.send(Message::Text(error.into())).await?;
            }
            socket.send(close_message(code)).await
        };
        let _ = Box::pin(tokio::time::timeout(CLOSE_WRITE_TIMEOUT, goodbye)).await;
    }

    /// Writes a frame the session itself produces (a pong, an error, a subscription reply). A
    /// client that sends without reading cannot hold the session here: the write is raced
    /// against the kill switch (which shutdown sets too) and the stall deadline (`pong_timeout`, the same
    /// patience the heartbeat has).
    pub(super) async fn send<S: Frames>(
        &self,
        socket: &mut S,
        frame: impl Into<Utf8Bytes>,
    ) -> Result<(), Next> {
        tokio::select! {
            biased;
            code = self.handle.closed() => Err(Next::Close(code)),
            sent = tokio::time::timeout(self.context.pong_timeout, socket.send(Message::Text(frame.into()))) => {
                match sent {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(Next::End),
                    Err(_) => Err(Next::CloseBecause(CloseCode::OverCapacity, SLOW_CONSUMER.into())),
                }
            }
        }
    }

    pub(super) async fn send_error<S: Frames>(
        &self,
        socket: &mut S,
        code: Option<u16>,
        message: &str,
    ) -> Result<(), Next> {
        self.send(socket, encode_error(code, message)).await
    }

    pub(super) async fn send_subscription_error<S: Frames>(
        &self,
        socket: &mut S,
        channel: &str,
        kind: &str,
        error: &str,
        status: u16,
    ) -> Result<(), Next> {
        let data = json!({ "type": kind, "error": error, "status": status }).to_string();
        self.send(socket, encode_server_event("pusher:subscription_error", Some(channel), &data, None)).await
    }

    /// Leaves every channel and the user registry. When the tenant is observed (a cluster,
    /// webhooks), answers the socket id and what leaving each channel changed, to be told.
    fn finish(self) -> Option<Departure> {
        if !self.app.observed() {
            self.app.hub.unregister(self.handle.key, self.channels.keys(), self.user_id.as_deref());
            return None;
        }
        let key = self.handle.key;
        let channels = self
            .channels
            .into_iter()
            .filter_map(|(channel, user_id)| {
                let change = self.app.hub.unsubscribe(key, &channel)?;
                Some((channel, user_id, change.into()))
            })
            .collect();
        // On one node the hub tells the watchers itself; a cluster hears it from the departure.
        let user_gone_here = self.user_id.filter(|user_id| self.app.hub.unregister_user(key, user_id));
        self.app.hub.unregister(key, std::iter::empty(), None);
        Some(Departure {
            socket_id: self.handle.id.as_str().to_owned(),
            channels,
            user_gone_here,
            tenant: self.app,
        })
    }

    async fn on_timer<S: Frames>(&mut self, socket: &mut S, started: Instant) -> Next {
        let now = Instant::now();
        let config = &self.app.config;
        if config.user_authentication_required
            && !self.authorized
            && now >= started + Duration::from_secs(config.user_authentication_timeout_secs)
        {
            return Next::Close(CloseCode::Unauthorized);
        }
        match self.ping_sent {
            Some(sent) if now >= sent + self.context.pong_timeout => Next::Close(CloseCode::PongNotReceived),
            Some(_) => Next::Continue,
            None if now >= self.last_seen + self.context.activity_timeout => {
                self.ping_sent = Some(now);
                let ping = encode_server_event("pusher:ping", None, "{}", None);
                match self.send(socket, ping).await {
                    Ok(()) => Next::Continue,
                    Err(Next::End) => Next::Close(CloseCode::PongNotReceived),
                    Err(stop) => stop,
                }
            }
            None => Next::Continue,
        }
    }
}
