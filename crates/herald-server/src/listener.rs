//! The accept loop of both listeners: a connection cap per listener (within the process's
//! file-descriptor budget) and per client IP, quick refusals when full, HTTP/1 header and
//! keep-alive timeouts, and a drain on shutdown bounded by the grace period.
//!
//! A connection's place under the caps is held by its socket ([`Counted`]), so a WebSocket keeps
//! it after the upgrade until the socket closes.
//!
//! A listener with a certificate takes TLS and plain connections on the same port: the first
//! byte tells them apart (0x16 opens a TLS handshake; no HTTP request starts with it). The
//! sniff and the handshake happen in the connection's own task, within the header timeout, so a
//! slow or silent client never holds up the accept loop.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tracing::{debug, warn};

/// Refusals being written at once; past it a refused connection is simply closed.
const REFUSALS_IN_FLIGHT: usize = 64;
/// How long a refusal may take (write the 503, read what the client sent).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after an accept error such as EMFILE, so a full process does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// The first byte of a TLS record carrying a handshake (the ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How a request reached this listener, for the handlers (the WebSocket's `tls_only` check, the
/// dashboard's `Secure` cookie): put in every request's extensions beside `ConnectInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transport {
    /// Whether the connection to Herald itself is TLS.
    pub(crate) tls: bool,
}

/// The limits one listener enforces.
#[derive(Debug, Clone)]
pub(crate) struct ListenerLimits {
    /// Connections open at once (HTTP and WebSocket).
    pub(crate) max_connections: usize,
    /// Connections open at once from one IP address; 0: no per-IP limit.
    pub(crate) max_per_ip: usize,
    /// Addresses the per-IP limit does not apply to (a reverse proxy on this host).
    pub(crate) exempt_ips: Vec<IpAddr>,
    /// Time to receive a request's headers, counted from the connection's opening or the end of
    /// the previous response: also the keep-alive idle timeout.
    pub(crate) header_timeout: Duration,
    /// How long shutdown waits for HTTP requests in progress.
    pub(crate) drain_grace: Duration,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    ListenerFull,
    IpFull,
}

/// The open connections of one listener, in all and per client IP.
#[derive(Debug)]
pub(crate) struct Gate {
    limits: ListenerLimits,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    refusals: Arc<Semaphore>,
    refused_full: AtomicU64,
    refused_per_ip: AtomicU64,
}

/// A listener's figures for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GateStats {
    pub(crate) open: usize,
    pub(crate) capacity: usize,
    pub(crate) refused_full: u64,
    pub(crate) refused_per_ip: u64,
}

impl Gate {
    pub(crate) fn new(limits: ListenerLimits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            refusals: Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT)),
            refused_full: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
        })
    }

    pub(crate) fn stats(&self) -> GateStats {
        GateStats {
            open: self.open.load(Ordering::Relaxed),
            capacity: self.limits.max_connections,
            refused_full: self.refused_full.load(Ordering::Relaxed),
            refused_per_ip: self.refused_per_ip.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn admit(self: &Arc<Gate>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let ip = canonical(ip);
        let counted_per_ip = self.limits.max_per_ip > 0 && !self.limits.exempt_ips.contains(&ip);
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.limits.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::ListenerFull);
        }
        if counted_per_ip {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let count = per_ip.entry(ip).or_insert(0);
            if *count >= self.limits.max_per_ip {
                drop(per_ip);
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.refused_per_ip.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::IpFull);
            }
            *count += 1;
        }
        Ok(Ticket { gate: self.clone(), ip: counted_per_ip.then_some(ip) })
    }
}

/// An IPv4 peer seen through an IPv6 socket counts as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// A connection's place under the caps, given back when it is dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    ip: Option<IpAddr>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut per_ip = self.gate.per_ip.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(count) = per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A TCP stream that holds its ticket for as long as it lives (through a WebSocket upgrade too).
#[derive(Debug)]
pub(crate) struct Counted {
    tcp: TcpStream,
    _ticket: Ticket,
}

impl Counted {
    /// The stream, for a socket that reads and writes it through a shared reference.
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Accepts connections until `stop` is cancelled, then lets HTTP requests in progress finish
/// (kept-alive connections close) within the drain grace.
/// With `tls`, connections may be TLS or plain (see the module's comment).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    gate: Arc<Gate>,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if !is_per_connection_error(&error) {
                        // EMFILE / ENFILE / ENOMEM: the process is out of room; the caps
                        // should prevent it, and a pause keeps the loop from spinning.
                        warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        // Pusher frames are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        match gate.admit(peer.ip()) {
            Ok(ticket) => {
                let io = Counted { tcp, _ticket: ticket };
                let connection =
                    Connection { peer, router: router.clone(), gate: gate.clone(), stop: stop.clone() };
                connections.spawn(connection.serve(io, tls.clone()));
            }
            Err(refusal) => refuse(&gate, tcp, peer, refusal),
        }
    }
    connections.close();
    if tokio::time::timeout(gate.limits.drain_grace, connections.wait()).await.is_err() {
        debug!(remaining = connections.len(), "HTTP connections still open after the drain grace");
    }
}

/// What one connection's task needs besides its socket.
struct Connection {
    peer: SocketAddr,
    router: Router,
    gate: Arc<Gate>,
    stop: CancellationToken,
}

/// What the first byte of a connection said.
enum Opening {
    Tls,
    Plain,
    /// Closed, failed or silent past the header timeout: nothing to serve.
    Nothing,
}

impl Connection {
    /// Serves the connection: plain HTTP, or TLS first when the listener has a certificate and
    /// the client opens with a handshake.
    async fn serve(self, io: Counted, tls: Option<TlsAcceptor>) {
        let Some(acceptor) = tls else {
            return self.serve_http(io, false).await;
        };
        let timeout = self.gate.limits.header_timeout;
        match tokio::time::timeout(timeout, opening(&io.tcp)).await.unwrap_or(Opening::Nothing) {
            Opening::Plain => self.serve_http(io, false).await,
            Opening::Nothing => {}
            Opening::Tls => match tokio::time::timeout(timeout, acceptor.accept(io)).await {
                Ok(Ok(stream)) => self.serve_http(stream, true).await,
                Ok(Err(error)) => debug!(%error, peer = %self.peer, "TLS handshake failed"),
                Err(_) => debug!(peer = %self.peer, "TLS handshake timed out"),
            },
        }
    }

    /// HTTP/1 with upgrades over `io` (a `Counted` socket or TLS over one), until it ends or
    /// shutdown drains it.
    async fn serve_http<I>(self, io: I, tls: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection { peer, router, gate, stop } = self;
        let transport = Transport { tls };
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(transport);
            router.clone().oneshot(request.map(Body::new))
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(gate.limits.header_timeout).keep_alive(true);
        let connection = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
        let mut connection = std::pin::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            _ = stop.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = result {
            debug!(%error, %peer, "HTTP connection ended with an error");
        }
    }
}

/// Waits for the connection's first byte without taking it from the socket.
async fn opening(tcp: &TcpStream) -> Opening {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => Opening::Tls,
        Ok(1) => Opening::Plain,
        _ => Opening::Nothing,
    }
}

/// Answers 503 and closes, without holding the connection long; when many refusals are already
/// in flight the connection is closed at once.
fn refuse(gate: &Arc<Gate>, mut tcp: TcpStream, peer: SocketAddr, refusal: Refusal) {
    let Ok(permit) = gate.refusals.clone().try_acquire_owned() else {
        return;
    };
    debug!(%peer, ?refusal, "connection refused: listener at its connection limit");
    tokio::spawn(async move {
        let message = match refusal {
            Refusal::ListenerFull => "server is at its connection limit; retry later",
            Refusal::IpFull => "too many connections from this address; retry later",
        };
        let body = serde_json::json!({ "error": message }).to_string();
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = async {
            tcp.write_all(response.as_bytes()).await?;
            tcp.shutdown().await?;
            // Read what the client sent, so closing does not reset the connection before it
            // reads the answer.
            let mut sink = [0u8; 1024];
            while tcp.read(&mut sink).await? > 0 {}
            io::Result::Ok(())
        };
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, answer).await;
        drop(permit);
    });
}

/// Errors of one connection (the peer gave up during the handshake): nothing to wait for.
fn is_per_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Raises the soft limit of open files to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    rlimit::increase_nofile_limit(hard)
}

/// The soft limit of open files of this process (`None` where it cannot be read).
pub(crate) fn fd_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
}
