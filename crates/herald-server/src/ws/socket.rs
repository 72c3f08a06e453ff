//! The server's WebSocket: its upgrade, and the socket the session reads and writes.
//!
//! tungstenite keeps its write buffer at the largest size it ever held (it empties it with
//! `Vec::drain`), so every connection that once got a burst kept that burst's bytes until it
//! closed. The upgrade is done here rather than by axum so that the socket can reach the stream
//! under tungstenite: the outbox's frames are framed here (server frames are unmasked, a header
//! and the payload) into a buffer made for that one write and dropped when it is done. Everything
//! else (reading, the session's own replies, pings, close frames) goes through tungstenite.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::{Buf as _, Bytes};
use futures_util::{Sink, Stream};
use herald_hub::Direct;
use herald_hub::Outbox;
use hyper::upgrade::OnUpgrade;
use tokio::io::AsyncWrite;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Role, WebSocketConfig};

use super::tcp::Io;

/// Frames written in one go (one flush) when the outbox holds several.
pub(super) const WRITE_BATCH: usize = 64;
/// Bytes of frames gathered for one write at most: the rest waits for the next write.
pub(super) const WRITE_BATCH_BYTES: usize = 16 * 1024;

/// A WebSocket upgrade request to `/app/{key}` (checked as axum checks it, with the same
/// rejections).
pub(crate) struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    config: WebSocketConfig,
}

fn header_eq(headers: &HeaderMap, name: HeaderName, value: &str) -> bool {
    headers.get(name).is_some_and(|header| header.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

fn header_contains(headers: &HeaderMap, name: HeaderName, value: &str) -> bool {
    headers
        .get(name)
        .and_then(|header| header.to_str().ok())
        .is_some_and(|header| header.to_ascii_lowercase().contains(value))
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Upgrade, Self::Rejection> {
        let reject = |status: StatusCode, body: &'static str| Err((status, body));
        if parts.method != Method::GET {
            return reject(StatusCode::METHOD_NOT_ALLOWED, "Request method must be `GET`");
        }
        if !header_contains(&parts.headers, header::CONNECTION, "upgrade") {
            return reject(StatusCode::BAD_REQUEST, "Connection header did not include 'upgrade'");
        }
        if !header_eq(&parts.headers, header::UPGRADE, "websocket") {
            return reject(StatusCode::BAD_REQUEST, "`Upgrade` header did not include 'websocket'");
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return reject(StatusCode::BAD_REQUEST, "`Sec-WebSocket-Key` header missing");
        };
        if !header_eq(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return reject(StatusCode::BAD_REQUEST, "`Sec-WebSocket-Version` header did not include '13'");
        }
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return reject(
                StatusCode::UPGRADE_REQUIRED,
                "WebSocket request couldn't be upgraded since no upgrade state was present",
            );
        };
        Ok(Upgrade { key, on_upgrade, config: WebSocketConfig::default() })
    }
}

impl Upgrade {
    /// The socket's tungstenite settings.
    pub(crate) fn config(mut self, configure: impl FnOnce(WebSocketConfig) -> WebSocketConfig) -> Upgrade {
        self.config = configure(self.config);
        self
    }

    /// Answers 101 and runs `callback` on the socket once the connection is upgraded.
    pub(crate) fn on_upgrade<C, Fut>(self, callback: C) -> Response
    where
        C: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Upgrade { key, on_upgrade, config } = self;
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let (stream, read_ahead) = Io::of(upgraded);
            let inner =
                WebSocketStream::from_partially_read(stream, read_ahead, Role::Server, Some(config)).await;
            callback(Socket { inner, unsent: Bytes::new(), own_queued: false }).await;
        });
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64"));
        response
    }
}

/// One upgraded connection.
pub(crate) struct Socket {
    inner: WebSocketStream<Io>,
    /// The rest of a framed write that was given up on midway (its write future dropped): written
    /// before anything else, so the stream never holds half a frame. Empty (no allocation) otherwise.
    unsent: Bytes,
    /// tungstenite may hold bytes of its own frames (a reply, an automatic pong, a close): set by
    /// every send and read through it, cleared by a flush. An outbox write flushes them first,
    /// and skips that when there can be none.
    own_queued: bool,
}

impl Socket {
    /// The writer the session may lend the hub (`Outbox::lend`): over plain TCP only.
    pub(super) fn direct(&self) -> Option<std::sync::Arc<dyn Direct<Utf8Bytes>>> {
        self.inner.get_ref().direct()
    }

    /// Whether nothing of the session's own waits to be written (tungstenite's frames flushed,
    /// no frame half written), so that the hub may write: flushes what it can without waiting.
    /// False over TLS, which has no such writer.
    pub(super) fn poll_idle(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.unsent.is_empty() || !self.inner.get_ref().lends() {
            return false;
        }
        !self.own_queued || matches!(Pin::new(&mut *self).poll_flush(cx), Poll::Ready(Ok(())))
    }

    /// Writes whatever is left of `unsent`, then releases it.
    fn poll_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.unsent.is_empty() {
            let written = ready!(Pin::new(self.inner.get_mut()).poll_write(cx, &self.unsent))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unsent.advance(written);
        }
        // An emptied `Bytes` still holds its buffer: drop it.
        self.unsent = Bytes::new();
        Poll::Ready(Ok(()))
    }

    /// Writes one outbox frame: its header, built on the stack, and its payload, the bytes shared
    /// by every subscriber, in one vectored write, with neither copied (a small frame is copied
    /// beside its header, `with_small_frame`). What the stream does not take at once is
    /// left in `unsent` (the payload's rest is a slice of the shared bytes).
    fn start_frame(&mut self, cx: &mut Context<'_>, text: Bytes) -> io::Result<()> {
        let mut header = [0; 10];
        let header = frame_header(&mut header, text.len());
        let stream = self.inner.get_mut();
        let small =
            with_small_frame(header, &text, |framed| match Pin::new(&mut *stream).poll_write(cx, framed) {
                Poll::Ready(written) => written,
                Poll::Pending => Ok(0),
            });
        let written = if let Some(written) = small {
            written?
        } else if stream.is_write_vectored() {
            let slices = [io::IoSlice::new(header), io::IoSlice::new(&text)];
            match Pin::new(stream).poll_write_vectored(cx, &slices) {
                Poll::Ready(written) => written?,
                Poll::Pending => 0,
            }
        } else {
            0
        };
        self.unsent = if written >= header.len() {
            text.slice(written - header.len()..)
        } else {
            let mut framed = Vec::with_capacity(header.len() + text.len() - written);
            framed.extend_from_slice(&header[written..]);
            framed.extend_from_slice(&text);
            Bytes::from(framed)
        };
        Ok(())
    }

    /// Writes `first` and whatever else `outbox` holds (up to a batch) straight to the stream,
    /// after anything tungstenite holds, and flushes: one frame goes out without being copied,
    /// several are framed into one buffer for that write. A plain poll over the socket's own
    /// state (`unsent`): the future is three words and a frame, small enough for the session to
    /// keep inline instead of allocating it per write. Without an outbox (the conformance echo),
    /// `first` alone, the same way.
    pub(super) fn write_text<'a>(
        &'a mut self,
        first: Utf8Bytes,
        mut outbox: Option<&'a mut Outbox<Utf8Bytes>>,
    ) -> impl Future<Output = Result<(), axum::Error>> + Send + 'a {
        let mut first = Some(first);
        poll_fn(move |cx| {
            // tungstenite's own frames (a reply, an automatic pong) go first, whole.
            if self.own_queued {
                ready!(Pin::new(&mut *self).poll_flush(cx))?;
            }
            if let Some(first) = first.take() {
                // Part of it may be out already (a direct write the socket did not take whole).
                let sent = outbox.as_deref_mut().map_or(0, Outbox::take_sent);
                if sent > 0 {
                    let mut framed = Vec::with_capacity(framed_len(first.as_bytes()));
                    frame_text(&mut framed, first.as_bytes());
                    self.unsent = Bytes::from(framed).slice(sent..);
                    ready!(self.poll_unsent(cx)).map_err(axum::Error::new)?;
                    return Pin::new(self.inner.get_mut()).poll_flush(cx).map_err(axum::Error::new);
                }
                // A second frame waiting makes it a batch.
                let more =
                    outbox.as_deref_mut().and_then(|outbox| Some((outbox.try_recv_more().ok()?, outbox)));
                match more {
                    Some((second, outbox)) => self.unsent = Bytes::from(frame_batch(first, second, outbox)),
                    None => self.start_frame(cx, Bytes::from(first)).map_err(axum::Error::new)?,
                }
            }
            ready!(self.poll_unsent(cx)).map_err(axum::Error::new)?;
            Pin::new(self.inner.get_mut()).poll_flush(cx).map_err(axum::Error::new)
        })
    }
}

/// The header of an unmasked, final text frame of `len` bytes (RFC 6455 5.2), written into
/// `header`: the part of it that is the header.
pub(super) fn frame_header(header: &mut [u8; 10], len: usize) -> &[u8] {
    header[0] = 0x81;
    match len {
        0..=125 => {
            header[1] = len as u8;
            &header[..2]
        }
        126..=0xFFFF => {
            header[1] = 126;
            header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            &header[..4]
        }
        _ => {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            &header[..10]
        }
    }
}

/// Frames up to this size (header included) are written from one buffer with one plain write: measured cheaper in the kernel than gathering the header and the payload
/// (docs/benchmarks.md, "Direct writes", step 7).
pub(super) const SMALL_FRAME: usize = 512;

/// Calls `write` with `header` and `payload` side by side in one buffer, when they fit in
/// `SMALL_FRAME`: the thread's own buffer, kept between calls (nothing to allocate or clear).
pub(super) fn with_small_frame<R>(
    header: &[u8],
    payload: &[u8],
    write: impl FnOnce(&[u8]) -> R,
) -> Option<R> {
    thread_local! {
        static FRAMED: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(SMALL_FRAME));
    }
    if header.len() + payload.len() > SMALL_FRAME {
        return None;
    }
    FRAMED.with(|framed| {
        let mut framed = framed.borrow_mut();
        framed.clear();
        framed.extend_from_slice(header);
        framed.extend_from_slice(payload);
        Some(write(&framed))
    })
}

/// Appends `text` as one unmasked, final text frame (RFC 6455 5.2).
pub(super) fn frame_text(buffer: &mut Vec<u8>, text: &[u8]) {
    let mut header = [0; 10];
    buffer.extend_from_slice(frame_header(&mut header, text.len()));
    buffer.extend_from_slice(text);
}

/// The bytes `text` takes as a frame.
fn framed_len(text: &[u8]) -> usize {
    let header = match text.len() {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    };
    header + text.len()
}

/// Frames `first`, `second` and whatever else the outbox holds (up to [`WRITE_BATCH`] frames and
/// about [`WRITE_BATCH_BYTES`]) into one buffer, sized for them.
pub(super) fn frame_batch(first: Utf8Bytes, second: Utf8Bytes, outbox: &mut Outbox<Utf8Bytes>) -> Vec<u8> {
    let (first, second) = (Bytes::from(first), Bytes::from(second));
    let mut bytes = framed_len(&first) + framed_len(&second);
    let mut frames = vec![first, second];
    while frames.len() < WRITE_BATCH && bytes < WRITE_BATCH_BYTES {
        let Ok(frame) = outbox.try_recv_more() else { break };
        let frame = Bytes::from(frame);
        bytes += framed_len(&frame);
        frames.push(frame);
    }
    let mut buffer = Vec::with_capacity(bytes);
    for frame in &frames {
        frame_text(&mut buffer, frame);
    }
    buffer
}

fn to_axum(message: tungstenite::Message) -> Option<Message> {
    Some(match message {
        tungstenite::Message::Text(text) => Message::Text(Utf8Bytes::try_from(Bytes::from(text)).ok()?),
        tungstenite::Message::Binary(bytes) => Message::Binary(bytes),
        tungstenite::Message::Ping(bytes) => Message::Ping(bytes),
        tungstenite::Message::Pong(bytes) => Message::Pong(bytes),
        tungstenite::Message::Close(frame) => Message::Close(frame.and_then(|frame| {
            Some(CloseFrame {
                code: frame.code.into(),
                reason: Utf8Bytes::try_from(Bytes::from(frame.reason)).ok()?,
            })
        })),
        tungstenite::Message::Frame(_) => return None,
    })
}

fn to_tungstenite(message: Message) -> Result<tungstenite::Message, axum::Error> {
    let text =
        |text: Utf8Bytes| tungstenite::Utf8Bytes::try_from(Bytes::from(text)).map_err(axum::Error::new);
    Ok(match message {
        Message::Text(text_) => tungstenite::Message::Text(text(text_)?),
        Message::Binary(bytes) => tungstenite::Message::Binary(bytes),
        Message::Ping(bytes) => tungstenite::Message::Ping(bytes),
        Message::Pong(bytes) => tungstenite::Message::Pong(bytes),
        Message::Close(frame) => tungstenite::Message::Close(match frame {
            Some(frame) => Some(tungstenite::protocol::CloseFrame {
                code: frame.code.into(),
                reason: text(frame.reason)?,
            }),
            None => None,
        }),
    })
}

impl Stream for Socket {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // tungstenite may write while reading (a pong, a close reply): never into half a frame.
        if let Err(error) = ready!(self.poll_unsent(cx)) {
            return Poll::Ready(Some(Err(axum::Error::new(error))));
        }
        // Reading may queue a reply (a pong, a close).
        self.own_queued = true;
        loop {
            match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
                Some(Ok(message)) => {
                    if let Some(message) = to_axum(message) {
                        return Poll::Ready(Some(Ok(message)));
                    }
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(axum::Error::new(error)))),
                None => return Poll::Ready(None),
            }
        }
    }
}

impl Sink<Message> for Socket {
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        ready!(self.poll_unsent(cx)).map_err(axum::Error::new)?;
        Pin::new(&mut self.inner).poll_ready(cx).map_err(axum::Error::new)
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), axum::Error> {
        self.own_queued = true;
        Pin::new(&mut self.inner).start_send(to_tungstenite(message)?).map_err(axum::Error::new)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        ready!(self.poll_unsent(cx)).map_err(axum::Error::new)?;
        ready!(Pin::new(&mut self.inner).poll_flush(cx)).map_err(axum::Error::new)?;
        self.own_queued = false;
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        ready!(self.poll_unsent(cx)).map_err(axum::Error::new)?;
        Pin::new(&mut self.inner).poll_close(cx).map_err(axum::Error::new)
    }
}

#[cfg(test)]
mod tests {
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::Frame;

    use super::*;

    /// The framing of every length class matches tungstenite's own (server frames: unmasked).
    #[test]
    fn text_frames_are_framed_as_tungstenite_frames_them() {
        for len in [0, 1, 125, 126, 127, 1000, 0xFFFF, 0x1_0000, 70_000] {
            let text = "x".repeat(len);
            let mut ours = Vec::new();
            frame_text(&mut ours, text.as_bytes());
            let mut theirs = Vec::new();
            Frame::message(text.clone().into_bytes(), OpCode::Data(Data::Text), true)
                .format(&mut theirs)
                .expect("formatted");
            assert_eq!(ours, theirs, "length {len}");
            assert_eq!(framed_len(text.as_bytes()), ours.len());
        }
    }
}
