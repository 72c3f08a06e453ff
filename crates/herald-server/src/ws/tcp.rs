//! The stream under a WebSocket, and the writer its session lends the hub.
//!
//! A plain-TCP connection's stream is shared (`Arc`) between the session's WebSocket, which
//! reads and writes it through a shared reference (readiness, then a non-blocking call), and
//! the hub, which writes with it (`Counted` is a `herald_hub::Direct` writer) while the
//! session waits with nothing of its own to write: a broadcast then goes from the publishing
//! task straight into the socket, one non-blocking write of the frame's header and its shared
//! payload (copied into one buffer when small), with no task woken. Which of the two writes is
//! decided under the outbox's lock (`Outbox::poll_recv_or_lend`), so they never write at once. A TLS connection (or anything hyper does not hand back as our socket) keeps
//! the upgraded stream and its session writes everything.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::extract::ws::Utf8Bytes;
use herald_hub::Direct;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::socket::{frame_header, with_small_frame};
use crate::listener::Counted;

/// What a WebSocket runs over.
pub(super) enum Io {
    /// A plain TCP connection, shared with the writer its session lends.
    Tcp(SharedTcp),
    /// Anything else hyper upgraded (TLS); boxed, so a plain connection's task does not carry
    /// its size.
    Upgraded(Box<TokioIo<Upgraded>>),
}

impl Io {
    /// The upgraded connection: our plain socket when hyper hands it back (with any bytes it
    /// read past the request, which the WebSocket reads first), else the upgraded stream.
    pub(super) fn of(upgraded: Upgraded) -> (Io, Vec<u8>) {
        match upgraded.downcast::<TokioIo<Counted>>() {
            Ok(parts) => (Io::Tcp(SharedTcp(Arc::new(parts.io.into_inner()))), parts.read_buf.to_vec()),
            Err(upgraded) => (Io::Upgraded(Box::new(TokioIo::new(upgraded))), Vec::new()),
        }
    }

    /// Whether there is a writer to lend (`direct`).
    pub(super) fn lends(&self) -> bool {
        matches!(self, Io::Tcp(_))
    }

    /// The writer a session may lend the hub: only over plain TCP.
    pub(super) fn direct(&self) -> Option<Arc<dyn Direct<Utf8Bytes>>> {
        match self {
            Io::Tcp(tcp) => Some(tcp.0.clone()),
            Io::Upgraded(_) => None,
        }
    }
}

/// A TCP stream read and written through a shared reference.
pub(super) struct SharedTcp(Arc<Counted>);

/// The connection itself is the writer the session lends the hub (see the module's comment):
/// one allocation shared by the WebSocket and the hub, one pointer from the outbox to the stream.
impl Direct<Utf8Bytes> for Counted {
    fn try_write(&self, frame: &Utf8Bytes) -> Option<usize> {
        let mut header = [0; 10];
        let header = frame_header(&mut header, frame.len());
        let payload = frame.as_str().as_bytes();
        let written = with_small_frame(header, payload, |framed| self.tcp().try_write(framed))
            .unwrap_or_else(|| self.tcp().try_write_vectored(&[IoSlice::new(header), IoSlice::new(payload)]));
        match written {
            Ok(written) if written == header.len() + frame.len() => None,
            Ok(written) => Some(written),
            // Would block, or failed: the session writes it, or meets the error itself.
            Err(_) => Some(0),
        }
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let tcp = self.0.tcp();
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            match tcp.try_read(buf.initialize_unfilled()) {
                Ok(read) => {
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                // The readiness was stale (and is now cleared): wait for the next.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl SharedTcp {
    fn poll_written(
        &self,
        cx: &mut Context<'_>,
        write: impl Fn(&tokio::net::TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let tcp = self.0.tcp();
        loop {
            ready!(tcp.poll_write_ready(cx))?;
            match write(tcp) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_written(cx, |tcp| tcp.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_written(cx, |tcp| tcp.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(self.0.tcp()).shutdown(std::net::Shutdown::Write))
    }
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Io::Upgraded(io) => Pin::new(&mut **io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Io::Upgraded(io) => Pin::new(&mut **io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Io::Upgraded(io) => Pin::new(&mut **io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Tcp(tcp) => tcp.is_write_vectored(),
            Io::Upgraded(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Io::Upgraded(io) => Pin::new(&mut **io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Io::Upgraded(io) => Pin::new(&mut **io).poll_shutdown(cx),
        }
    }
}
