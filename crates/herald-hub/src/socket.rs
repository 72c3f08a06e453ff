//! The hub's side of one connection: its outbox sender and the kill switch the session watches.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use herald_protocol::{CloseCode, SocketId};
use tokio::sync::{mpsc, Notify};

/// Default number of frames a socket may have queued before it counts as a slow consumer.
pub const OUTBOX_CAPACITY: usize = 1024;

/// Process-unique key of a connection inside the hub (cheaper to hash than its `SocketId`).
pub type SocketKey = u64;

/// The receiving half the session drains into its WebSocket.
pub type Outbox<F> = mpsc::Receiver<F>;

/// What an outbox carries: an encoded frame, cheap to clone (shared bytes), made once per
/// broadcast. The server uses its WebSocket library's text type so no per-socket conversion is needed.
pub trait Frame: Clone + From<String> + Send + Sync + 'static {}

impl<T: Clone + From<String> + Send + Sync + 'static> Frame for T {}

#[derive(Debug)]
struct KillSwitch {
    code: AtomicU16,
    notify: Notify,
}

/// A cheap, clonable handle on a connection: send it frames, or ask its session to close it.
#[derive(Debug)]
pub struct SocketHandle<F> {
    pub key: SocketKey,
    pub id: Arc<SocketId>,
    sender: mpsc::Sender<F>,
    kill: Arc<KillSwitch>,
}

impl<F: Frame> SocketHandle<F> {
    pub(crate) fn new(key: SocketKey, id: SocketId, capacity: usize) -> (SocketHandle<F>, Outbox<F>) {
        let (sender, outbox) = mpsc::channel(capacity.max(1));
        let kill = Arc::new(KillSwitch { code: AtomicU16::new(0), notify: Notify::new() });
        (SocketHandle { key, id: Arc::new(id), sender, kill }, outbox)
    }

    /// Queues a frame without waiting. Returns false when the socket is gone or too slow;
    /// a slow socket is asked to close with 4100.
    pub fn send(&self, frame: &F) -> bool {
        match self.sender.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(CloseCode::OverCapacity);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Asks the session to close the socket with `code`; the first code asked for wins.
    pub fn close(&self, code: CloseCode) {
        if self.kill.code.compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.kill.notify.notify_one();
        }
    }

    /// Resolves with the close code once someone asked for this socket to be closed.
    pub async fn closed(&self) -> CloseCode {
        loop {
            if let Some(code) = self.close_requested() {
                return code;
            }
            self.kill.notify.notified().await;
        }
    }

    /// The close code asked for, if any. Only `close` stores one (a `CloseCode`'s number), so
    /// every stored number reads back.
    pub fn close_requested(&self) -> Option<CloseCode> {
        CloseCode::from_code(self.kill.code.load(Ordering::Acquire))
    }
}

impl<F> Clone for SocketHandle<F> {
    fn clone(&self) -> Self {
        SocketHandle {
            key: self.key,
            id: self.id.clone(),
            sender: self.sender.clone(),
            kill: self.kill.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::time::timeout;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn closed_resolves_once_a_close_is_asked_for_with_the_first_code() {
        let (socket, _outbox) = SocketHandle::<Bytes>::new(1, SocketId::from_parts(1, 1), 4);
        assert!(timeout(Duration::from_secs(1), socket.closed()).await.is_err(), "still open");
        socket.close(CloseCode::PongNotReceived);
        socket.close(CloseCode::Reconnect);
        assert_eq!(timeout(Duration::from_secs(1), socket.closed()).await, Ok(CloseCode::PongNotReceived));
        assert_eq!(socket.close_requested(), Some(CloseCode::PongNotReceived));
    }
}
