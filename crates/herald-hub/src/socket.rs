//! The hub's side of one connection: its outbox and the kill switch the session watches.
//!
//! Both wake the session through one waker slot in one shared cell: a delivery or a close costs
//! a lock, a store and at most one wake, with no notification machinery per connection. Only
//! one task (the session) may wait on a socket at a time (`Outbox::poll_recv`,
//! `SocketHandle::poll_closed`); anyone may send or close.
//!
//! A session whose socket can take bytes straight from another task (the server's plain TCP
//! sockets) gives the hub a [`Direct`] writer and lends it whenever it goes idle with nothing of
//! its own to write (`Outbox::lend`). While it is lent and the queue is empty, `send` writes the
//! frame to the socket itself, under the queue's lock: no wake-up, no task switch per delivery.
//! A large fan-out instead queues the frame without waking the session (`Sent::Deferred`) and
//! writes it afterwards from its drain tasks (`Recipient::drain`), the same way; a second frame
//! coming before the drain wakes the session, which writes both in one system call. Whatever the
//! socket does not take at once stays queued (with how much of it went out) and the session is
//! woken to finish it. A frame within `BATCH_WINDOW` of the socket's previous one is queued for
//! the session too, which writes a stream of frames several per system call. Every poll of the
//! session takes the writer back first, so one writer at a time touches the socket: the
//! session, or a sender holding the queue's lock while the session waits. Frames leave a queue
//! in order, whoever writes them.
//!
//! The outbox is a bounded queue that holds little memory while it is idle: a socket that never
//! received costs one small shared cell (no queue storage); once drained, a queue keeps room for
//! `KEPT_SLOTS` frames, so a steady stream costs no allocation per frame, and a burst's larger
//! storage is given back (docs/benchmarks.md, "Memory per connection").

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use herald_protocol::{CloseCode, SocketId};

/// A frame that follows the socket's previous one this closely is queued for its session rather
/// than written straight away: under a stream of frames the session writes several per system
/// call (docs/benchmarks.md, "Direct writes"), while a sparse frame is cheapest written at once.
/// Nanoseconds on the fan-out's `clock`: 2 ms.
pub(crate) const BATCH_WINDOW: u64 = 2_000_000;

/// The fan-out's clock: nanoseconds since its first reading, plus one (0 means never). Read once
/// per fan-out; compared per socket as integers.
pub(crate) fn clock() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

/// Default number of frames a socket may have queued before it counts as a slow consumer.
pub const OUTBOX_CAPACITY: usize = 1024;

/// Process-unique key of a connection inside the hub (cheaper to hash than its `SocketId`).
pub type SocketKey = u64;

/// What an outbox carries: an encoded frame, cheap to clone (shared bytes), made once per
/// broadcast. The server uses its WebSocket library's text type so no per-socket conversion is needed.
pub trait Frame: Clone + From<String> + Send + Sync + 'static {}

impl<T: Clone + From<String> + Send + Sync + 'static> Frame for T {}

/// Writes a frame straight to a socket without waiting (see the module's comment).
pub trait Direct<F>: Send + Sync {
    /// Writes as much of `frame` (framed for the wire) as the socket takes now, without
    /// waiting: `None` when all of it went out, else how many bytes did (0 on an error, which the
    /// session then meets itself).
    fn try_write(&self, frame: &F) -> Option<usize>;
}

/// A lent writer (`Debug` for the queue's sake).
struct Writer<F>(Arc<dyn Direct<F>>);

impl<F> std::fmt::Debug for Writer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

/// What one connection's handles and its outbox share: one allocation per connection.
#[derive(Debug)]
struct Shared<F> {
    queue: Mutex<Queue<F>>,
    /// Frames the queue may hold before the socket counts as a slow consumer.
    capacity: usize,
    /// The close code asked for (0: none yet); stored before the waiting session is woken.
    code: AtomicU16,
    /// The session's other sources (its socket, its timer: one bit each, see
    /// `Outbox::source_waker`) that woke it since it last looked.
    fired: AtomicU8,
    /// The session's last `poll_recv_or_closed` left frames in the queue (`try_recv_more`).
    /// Only the session reads and writes it.
    more: AtomicBool,
}

/// Slots a drained queue keeps (4 × a 32-byte frame handle), so a socket receiving one frame at a
/// time allocates its queue once, not per frame.
pub(crate) const KEPT_SLOTS: usize = 4;

#[derive(Debug)]
struct Queue<F> {
    /// Unallocated until the first frame; at most `KEPT_SLOTS` of room once drained.
    frames: VecDeque<F>,
    /// The session waiting for a frame or a close code (one slot: one waiting task).
    waker: Option<Waker>,
    /// The outbox was dropped: the session is gone and nobody will read.
    receiver_gone: bool,
    /// The session's writer for senders (`Outbox::set_direct`), dropped with the outbox.
    direct: Option<Writer<F>>,
    /// The session lent `direct`: it waits with nothing of its own to write.
    lent: bool,
    /// Bytes of the first queued frame a direct write already put on the wire.
    head_sent: usize,
    /// When the last frame was sent to this socket (by any way): one coming within
    /// `BATCH_WINDOW` of it is queued, so that a stream of frames is written in batches.
    /// On the fan-out's `clock`; 0: none yet.
    last_frame: u64,
}

impl<F> Shared<F> {
    fn queue(&self) -> MutexGuard<'_, Queue<F>> {
        // Plain data behind the lock: a panic while holding it leaves it usable.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes the waiting session, outside the lock. Whatever it should see (a close code, a
    /// fired source) is stored before this takes the lock it registers under: no wake is lost.
    fn wake_session(&self) {
        let waker = self.queue().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<F> Queue<F> {
    /// Remembers the task to wake (cloned only when it is another task's waker).
    fn wait(&mut self, cx: &Context<'_>) {
        match &mut self.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => self.waker = Some(cx.waker().clone()),
        }
    }

    /// The next frame, and how many of its bytes a direct write already sent; a queue it drains
    /// gives back the room a burst took beyond `KEPT_SLOTS`.
    fn pop(&mut self) -> Option<(F, usize)> {
        let frame = (self.frames.pop_front()?, std::mem::take(&mut self.head_sent));
        if self.frames.is_empty() && self.frames.capacity() > KEPT_SLOTS {
            self.frames = VecDeque::new();
        }
        Some(frame)
    }
}

/// The receiving half the session drains into its WebSocket (one per connection).
#[derive(Debug)]
pub struct Outbox<F> {
    shared: Arc<Shared<F>>,
    /// Bytes of the frame last taken that a direct write already sent (`take_sent`).
    sent: usize,
}

/// `Outbox::try_recv` found no frame waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Empty;

impl<F> Outbox<F> {
    /// Takes the next frame without waiting.
    pub fn try_recv(&mut self) -> Result<F, Empty> {
        let popped = self.shared.queue().pop();
        take(&mut self.sent, popped).ok_or(Empty)
    }

    /// How many bytes of the frame taken last (framed for the wire) a direct write already sent:
    /// the session writes only the rest. Zero unless the session lends a writer.
    pub fn take_sent(&mut self) -> usize {
        std::mem::take(&mut self.sent)
    }

    /// Gives senders `direct` to write with while the session lends it (`lend`).
    pub fn set_direct(&mut self, direct: Arc<dyn Direct<F>>) {
        self.shared.queue().direct = Some(Writer(direct));
    }

    /// Lends the direct writer to senders until the session's next poll of the outbox, when no
    /// frame waits: call it only with nothing of the session's own left to write to the socket.
    /// A no-op without a writer.
    pub fn lend(&mut self) {
        let mut queue = self.shared.queue();
        queue.lent = queue.direct.is_some() && queue.frames.is_empty();
    }

    /// Takes the direct writer back (every poll of the outbox does too): from here until the
    /// next `lend`, only the session writes to its socket.
    pub fn reclaim(&mut self) {
        self.shared.queue().lent = false;
    }

    /// The next frame, or `Pending` with the task registered to be woken by the next frame or
    /// close request (the one waker slot `SocketHandle::poll_closed` uses too).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<F> {
        let mut queue = self.shared.queue();
        queue.lent = false;
        match take(&mut self.sent, queue.pop()) {
            Some(frame) => Poll::Ready(frame),
            None => {
                queue.wait(cx);
                Poll::Pending
            }
        }
    }

    /// The close code once one was asked for, else the next frame, else `Pending` with the task
    /// registered to be woken by either: what a session waits on, in one lock. Takes the direct
    /// writer back.
    pub fn poll_recv_or_closed(&mut self, cx: &mut Context<'_>) -> Poll<Result<F, CloseCode>> {
        self.poll_recv_or_lend(cx, false)
    }

    /// `poll_recv_or_closed`, lending the direct writer with the same lock when it is `Pending`
    /// and `lend` says the session has nothing of its own to write (see `lend`).
    pub fn poll_recv_or_lend(&mut self, cx: &mut Context<'_>, lend: bool) -> Poll<Result<F, CloseCode>> {
        let mut queue = self.shared.queue();
        queue.lent = false;
        // Read under the lock `close` takes after storing its code: no wake is lost.
        if let Some(code) = CloseCode::from_code(self.shared.code.load(Ordering::Acquire)) {
            return Poll::Ready(Err(code));
        }
        match take(&mut self.sent, queue.pop()) {
            Some(frame) => {
                self.shared.more.store(!queue.frames.is_empty(), Ordering::Relaxed);
                Poll::Ready(Ok(frame))
            }
            None => {
                queue.wait(cx);
                // The queue is empty here.
                queue.lent = lend && queue.direct.is_some();
                Poll::Pending
            }
        }
    }

    /// The next frame of a batch started by `poll_recv_or_closed`: like `try_recv`, but without
    /// the lock when that poll took the last frame (frames queued since are the next poll's).
    pub fn try_recv_more(&mut self) -> Result<F, Empty> {
        if !self.shared.more.load(Ordering::Relaxed) {
            return Err(Empty);
        }
        let mut queue = self.shared.queue();
        let frame = take(&mut self.sent, queue.pop()).ok_or(Empty);
        self.shared.more.store(!queue.frames.is_empty(), Ordering::Relaxed);
        frame
    }

    /// A waker for another source the session waits on (its socket, its timer): waking it marks
    /// `source` (one bit) as fired and wakes the session through the one waker slot, so the
    /// session polls that source again only once it fired (`take_fired`).
    pub fn source_waker(&self, source: u8) -> Waker
    where
        F: Send + 'static,
    {
        Waker::from(Arc::new(SourceWaker { shared: self.shared.clone(), source }))
    }

    /// The sources whose wakers fired since the last call (bits of `source_waker`), cleared.
    /// Read after `poll_recv_or_closed` registered the session: a source firing later wakes it.
    pub fn take_fired(&self) -> u8 {
        self.shared.fired.swap(0, Ordering::AcqRel)
    }

    /// Waits for the next frame. Never `None` while a handle on the socket exists (the session
    /// keeps one), like a channel whose senders are all alive.
    pub async fn recv(&mut self) -> Option<F> {
        Some(poll_fn(|cx| self.poll_recv(cx)).await)
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.shared.queue().frames.len()
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A socket a fan-out deferred frames to (`Sent::Deferred`), to `drain` later.
pub(crate) struct Recipient<F>(Arc<Shared<F>>);

impl<F: Frame> Recipient<F> {
    /// Writes the frame a deferred send left (`Sent::Deferred`) straight to the socket, while its
    /// session still lends its writer; what the socket does not take is left to the session,
    /// woken. Nothing to do when the session took its writer back: it writes the frame itself.
    pub(crate) fn drain(&self) {
        let mut queue = self.0.queue();
        let mut woken = None;
        while queue.lent {
            let Some(front) = queue.frames.front() else { break };
            let sent = queue.direct.as_ref().map_or(Some(0), |direct| direct.0.try_write(front));
            match sent {
                None => {
                    queue.pop();
                }
                Some(sent) => {
                    queue.head_sent = sent;
                    queue.lent = false;
                    woken = queue.waker.take();
                }
            }
        }
        drop(queue);
        if let Some(waker) = woken {
            waker.wake();
        }
    }
}

/// How a fan-out sends one frame (`SocketHandle::send_as`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// When the fan-out started (`clock`, read once for all its sockets).
    pub(crate) now: u64,
    /// Whether a frame the socket could be sent at once is queued instead, without waking the
    /// session, for the fan-out to write later (`Recipient::drain`, from other threads).
    pub(crate) defer: bool,
}

/// What became of one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Written, or queued for a writer that will write it.
    Done,
    /// Queued for the fan-out to write (`Recipient::drain`): the session was not woken.
    Deferred,
    /// The socket is gone or too slow.
    Refused,
}

impl<F: Frame> Shared<F> {
    /// See `SocketHandle::send` and `Pace`. While the session lends its writer, a frame in its
    /// queue is a deferred one, which a fan-out's `drain` will write; a second frame wakes the
    /// session instead, which writes both in one system call.
    fn send(&self, frame: &F, how: Pace) -> Sent {
        let mut queue = self.queue();
        if queue.receiver_gone {
            return Sent::Refused;
        }
        let recent = queue.last_frame != 0 && how.now.saturating_sub(queue.last_frame) < BATCH_WINDOW;
        queue.last_frame = how.now;
        if queue.lent && queue.frames.is_empty() && !recent {
            if how.defer {
                // Still lent: the fan-out's drain writes it (the queue was empty: no capacity
                // to check).
                queue.frames.push_back(frame.clone());
                return Sent::Deferred;
            }
            let sent = queue.direct.as_ref().map_or(Some(0), |direct| direct.0.try_write(frame));
            let Some(sent) = sent else { return Sent::Done };
            // The socket is full (or failed): the session finishes the frame, and writes until it
            // lends again.
            queue.head_sent = sent;
        }
        if queue.frames.len() >= self.capacity {
            drop(queue);
            self.close(CloseCode::OverCapacity);
            return Sent::Refused;
        }
        queue.frames.push_back(frame.clone());
        // The session writes what is queued; it lends its writer again once the queue is empty.
        queue.lent = false;
        let waker = queue.waker.take();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
        Sent::Done
    }
}

impl<F> Shared<F> {
    /// See `SocketHandle::close`.
    fn close(&self, code: CloseCode) {
        if self.code.compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
            // Stored before the lock: a session registering after this sees the code.
            self.wake_session();
        }
    }
}

/// A popped frame, keeping in `sent` how much of it a direct write already sent.
fn take<F>(sent: &mut usize, popped: Option<(F, usize)>) -> Option<F> {
    let (frame, already) = popped?;
    *sent = already;
    Some(frame)
}

/// See `Outbox::source_waker`.
struct SourceWaker<F> {
    shared: Arc<Shared<F>>,
    source: u8,
}

impl<F: Send + 'static> Wake for SourceWaker<F> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Marked before the lock the session registers under: it sees the bit or is woken.
        self.shared.fired.fetch_or(self.source, Ordering::AcqRel);
        self.shared.wake_session();
    }
}

impl<F> Drop for Outbox<F> {
    fn drop(&mut self) {
        let mut queue = self.shared.queue();
        queue.receiver_gone = true;
        queue.waker = None;
        queue.lent = false;
        let direct = queue.direct.take();
        let frames = std::mem::take(&mut queue.frames);
        drop(queue);
        drop(frames);
        drop(direct);
    }
}

/// A cheap, clonable handle on a connection: send it frames, or ask its session to close it.
#[derive(Debug)]
pub struct SocketHandle<F> {
    pub key: SocketKey,
    pub id: Arc<SocketId>,
    shared: Arc<Shared<F>>,
}

impl<F: Frame> SocketHandle<F> {
    pub(crate) fn new(key: SocketKey, id: SocketId, capacity: usize) -> (SocketHandle<F>, Outbox<F>) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                frames: VecDeque::new(),
                waker: None,
                receiver_gone: false,
                direct: None,
                lent: false,
                head_sent: 0,
                last_frame: 0,
            }),
            capacity: capacity.max(1),
            code: AtomicU16::new(0),
            fired: AtomicU8::new(0),
            more: AtomicBool::new(false),
        });
        (SocketHandle { key, id: Arc::new(id), shared: shared.clone() }, Outbox { shared, sent: 0 })
    }

    /// Delivers a frame without waiting: straight to the socket while its session lends its
    /// writer and nothing waits before it, else (and for what the socket did not take) into the
    /// queue. Returns false when the socket is gone or too slow; a slow socket is asked to close
    /// with 4100.
    pub fn send(&self, frame: &F) -> bool {
        self.send_as(frame, Pace { now: clock(), defer: false }) != Sent::Refused
    }

    /// `send`, as one of a fan-out's sends.
    pub(crate) fn send_as(&self, frame: &F, how: Pace) -> Sent {
        self.shared.send(frame, how)
    }

    /// The part of the handle a fan-out's drain needs, cheaper to hold.
    pub(crate) fn recipient(&self) -> Recipient<F> {
        Recipient(self.shared.clone())
    }
}

impl<F> SocketHandle<F> {
    /// Asks the session to close the socket with `code`; the first code asked for wins.
    pub fn close(&self, code: CloseCode) {
        self.shared.close(code);
    }

    /// The close code once someone asked for this socket to be closed, or `Pending` with the task
    /// registered to be woken by the request (or by a frame: the outbox's waker slot).
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<CloseCode> {
        if let Some(code) = self.close_requested() {
            return Poll::Ready(code);
        }
        let mut queue = self.shared.queue();
        // Checked again under the lock `close` takes after storing its code: no wake is lost.
        if let Some(code) = self.close_requested() {
            return Poll::Ready(code);
        }
        queue.wait(cx);
        Poll::Pending
    }

    /// Resolves with the close code once someone asked for this socket to be closed.
    pub async fn closed(&self) -> CloseCode {
        poll_fn(|cx| self.poll_closed(cx)).await
    }

    /// The close code asked for, if any. Only `close` stores one (a `CloseCode`'s number), so
    /// every stored number reads back.
    pub fn close_requested(&self) -> Option<CloseCode> {
        CloseCode::from_code(self.shared.code.load(Ordering::Acquire))
    }
}

impl<F> Clone for SocketHandle<F> {
    fn clone(&self) -> Self {
        SocketHandle { key: self.key, id: self.id.clone(), shared: self.shared.clone() }
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

    #[test]
    fn a_full_outbox_refuses_the_frame_and_asks_for_4100() {
        let (socket, mut outbox) = SocketHandle::<Bytes>::new(1, SocketId::from_parts(1, 1), 2);
        let frame = Bytes::from_static(b"x");
        assert!(socket.send(&frame) && socket.send(&frame));
        assert!(!socket.send(&frame), "over capacity");
        assert_eq!(socket.close_requested(), Some(CloseCode::OverCapacity));
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox.try_recv(), Ok(frame.clone()));
        assert_eq!(outbox.try_recv(), Ok(frame));
        assert_eq!(outbox.try_recv(), Err(Empty));
    }

    #[test]
    fn the_queue_holds_storage_only_while_frames_wait() {
        let (socket, mut outbox) = SocketHandle::<Bytes>::new(1, SocketId::from_parts(1, 1), 64);
        assert_eq!(outbox.shared.queue().frames.capacity(), 0, "nothing allocated up front");
        for _ in 0..20 {
            assert!(socket.send(&Bytes::from_static(b"frame")));
        }
        assert!(outbox.shared.queue().frames.capacity() >= 20);
        while outbox.try_recv().is_ok() {}
        assert_eq!(outbox.shared.queue().frames.capacity(), 0, "given back once drained");
        // One frame at a time: the small room is kept, not allocated again for every frame.
        assert!(socket.send(&Bytes::from_static(b"frame")));
        assert_eq!(outbox.try_recv(), Ok(Bytes::from_static(b"frame")));
        let kept = outbox.shared.queue().frames.capacity();
        assert!((1..=KEPT_SLOTS).contains(&kept), "{kept}");
    }

    #[test]
    fn frames_to_a_dropped_outbox_are_refused_and_not_kept() {
        let (socket, outbox) = SocketHandle::<Bytes>::new(1, SocketId::from_parts(1, 1), 4);
        assert!(socket.send(&Bytes::from_static(b"queued")));
        drop(outbox);
        assert!(!socket.send(&Bytes::from_static(b"late")));
        assert_eq!(socket.shared.queue().frames.capacity(), 0);
        assert_eq!(socket.close_requested(), None, "a gone session is not a slow one");
    }

    #[tokio::test]
    async fn try_recv_more_takes_the_rest_of_what_the_poll_found_and_no_more() {
        let (socket, mut outbox) = SocketHandle::<Bytes>::new(1, SocketId::from_parts(1, 1), 8);
        assert_eq!(outbox.try_recv_more(), Err(Empty), "no poll yet");
        for frame in ["a", "b"] {
            assert!(socket.send(&Bytes::from(frame)));
        }
        let first = poll_fn(|cx| outbox.poll_recv_or_closed(cx)).await;
        assert_eq!(first, Ok(Bytes::from("a")));
        assert_eq!(outbox.try_recv_more(), Ok(Bytes::from("b")));
        assert!(socket.send(&Bytes::from("c")));
        assert_eq!(outbox.try_recv_more(), Err(Empty), "queued after: the next poll's");
        assert_eq!(poll_fn(|cx| outbox.poll_recv_or_closed(cx)).await, Ok(Bytes::from("c")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_waker_marks_its_source_and_wakes_the_session() {
        let (_socket, mut outbox) = SocketHandle::<Bytes>::new(1, SocketId::from_parts(1, 1), 4);
        let waker = outbox.source_waker(2);
        assert_eq!(outbox.take_fired(), 0);
        let woken = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            waker.wake_by_ref();
        });
        let waited = timeout(
            Duration::from_secs(10),
            poll_fn(|cx| match outbox.poll_recv_or_closed(cx) {
                Poll::Ready(_) => Poll::Ready(0),
                Poll::Pending => match outbox.take_fired() {
                    0 => Poll::Pending,
                    fired => Poll::Ready(fired),
                },
            }),
        )
        .await;
        assert_eq!(waited, Ok(2));
        assert_eq!(outbox.take_fired(), 0, "cleared once taken");
        woken.await.expect("waker task");
    }

    /// A socket that takes at most `room` bytes (then none until given more), as the kernel's
    /// buffer does.
    struct Wire {
        taken: Arc<Mutex<Vec<u8>>>,
        room: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Direct<Bytes> for Wire {
        fn try_write(&self, frame: &Bytes) -> Option<usize> {
            let room = self.room.load(Ordering::SeqCst);
            let taken = frame.len().min(room);
            self.room.fetch_sub(taken, Ordering::SeqCst);
            self.taken.lock().unwrap().extend_from_slice(&frame[..taken]);
            (taken < frame.len()).then_some(taken)
        }
    }

    /// A socket whose session has a `Wire` with `room` bytes of room as its direct writer.
    type Wired =
        (SocketHandle<Bytes>, Outbox<Bytes>, Arc<Mutex<Vec<u8>>>, Arc<std::sync::atomic::AtomicUsize>);
    fn wired(room: usize) -> Wired {
        let (socket, mut outbox) = SocketHandle::<Bytes>::new(1, SocketId::from_parts(1, 1), 8);
        let taken = Arc::new(Mutex::new(Vec::new()));
        let room = Arc::new(std::sync::atomic::AtomicUsize::new(room));
        outbox.set_direct(Arc::new(Wire { taken: taken.clone(), room: room.clone() }));
        (socket, outbox, taken, room)
    }

    #[tokio::test]
    async fn a_lent_writer_takes_frames_until_the_socket_is_full_then_the_session_finishes_them() {
        let (socket, mut outbox, taken, room) = wired(7);
        // Frames a batch window apart, each written straight away when it may be.
        let start = clock();
        let mut sent = 0;
        let mut send = |frame: &'static [u8]| {
            sent += 1;
            let now = start + BATCH_WINDOW * sent;
            socket.send_as(&Bytes::from_static(frame), Pace { now, defer: false }) == Sent::Done
        };
        // Not lent: queued for the session, as without a writer.
        assert!(send(b"q0"));
        assert_eq!(outbox.try_recv(), Ok(Bytes::from_static(b"q0")));
        assert_eq!(outbox.take_sent(), 0);
        // Lent: written at once, nothing queued, until a frame does not fit.
        outbox.lend();
        assert!(send(b"abc"));
        assert!(send(b"defgh"));
        assert!(send(b"ijk"));
        assert_eq!(&taken.lock().unwrap()[..], b"abcdefg");
        // The cut frame is the session's, with how much of it went out, and so is every frame
        // after it, until the session lends again.
        assert_eq!(outbox.len(), 2);
        let first = poll_fn(|cx| outbox.poll_recv_or_closed(cx)).await;
        assert_eq!((first, outbox.take_sent()), (Ok(Bytes::from_static(b"defgh")), 4));
        assert_eq!(outbox.try_recv_more(), Ok(Bytes::from_static(b"ijk")));
        assert_eq!(outbox.take_sent(), 0);
        room.store(100, Ordering::SeqCst);
        outbox.lend();
        assert!(send(b"lm"));
        assert!(outbox.is_empty());
        // A poll takes the writer back, even one that finds nothing.
        assert!(poll_fn(|cx| Poll::Ready(outbox.poll_recv_or_closed(cx).is_pending())).await);
        assert!(send(b"no"));
        assert_eq!(&taken.lock().unwrap()[..], b"abcdefglm");
        assert_eq!(outbox.try_recv(), Ok(Bytes::from_static(b"no")));
        // Lending with a frame waiting lends nothing: the frame goes first.
        assert!(send(b"w1"));
        outbox.lend();
        assert!(send(b"w2"));
        assert_eq!(outbox.len(), 2);
        // A dropped outbox drops its writer.
        drop(outbox);
        assert_eq!(Arc::strong_count(&taken), 1);
    }

    #[tokio::test]
    async fn frames_close_together_are_batched_and_deferred_frames_are_drained_in_order() {
        let (socket, mut outbox, taken, room) = wired(6);
        let start = clock();
        let frame = |text: &'static [u8]| Bytes::from_static(text);
        let at = |windows: u64, defer: bool| Pace { now: start + BATCH_WINDOW * windows, defer };
        outbox.lend();
        assert_eq!(socket.send_as(&frame(b"a"), at(0, false)), Sent::Done);
        // Within the batch window of the one before: queued for the session, so that a stream
        // is written in batches.
        let soon = Pace { now: start + BATCH_WINDOW / 2, defer: false };
        assert_eq!(socket.send_as(&frame(b"b"), soon), Sent::Done);
        assert_eq!(&taken.lock().unwrap()[..], b"a");
        assert_eq!(outbox.try_recv(), Ok(frame(b"b")));
        // Deferred: queued without waking the session; the drain writes it, and leaves what the
        // socket does not take, with how much of it went out, to the session.
        outbox.lend();
        assert_eq!(socket.send_as(&frame(b"cd"), at(10, true)), Sent::Deferred);
        assert_eq!(outbox.len(), 1);
        socket.recipient().drain();
        assert_eq!(&taken.lock().unwrap()[..], b"acd");
        outbox.lend();
        assert_eq!(socket.send_as(&frame(b"efgh"), at(20, true)), Sent::Deferred);
        socket.recipient().drain();
        assert_eq!(&taken.lock().unwrap()[..], b"acdefg");
        let rest = poll_fn(|cx| outbox.poll_recv_or_closed(cx)).await;
        assert_eq!((rest, outbox.take_sent()), (Ok(frame(b"efgh")), 3));
        // A second frame before the drain wakes the session, which writes both in one go; the
        // drain then has nothing to do.
        room.store(100, Ordering::SeqCst);
        outbox.lend();
        assert_eq!(socket.send_as(&frame(b"ij"), at(30, true)), Sent::Deferred);
        assert_eq!(socket.send_as(&frame(b"kl"), at(40, true)), Sent::Done);
        socket.recipient().drain();
        assert_eq!(&taken.lock().unwrap()[..], b"acdefg");
        assert_eq!(outbox.try_recv(), Ok(frame(b"ij")));
        assert_eq!(outbox.try_recv(), Ok(frame(b"kl")));
        // A drain after the session took its writer back does nothing: the session writes.
        outbox.lend();
        assert_eq!(socket.send_as(&frame(b"ij"), at(50, true)), Sent::Deferred);
        outbox.reclaim();
        socket.recipient().drain();
        assert_eq!(&taken.lock().unwrap()[..], b"acdefg");
        assert_eq!(outbox.try_recv(), Ok(frame(b"ij")));
    }

    #[tokio::test(start_paused = true)]
    async fn recv_waits_for_a_frame_and_wakes_when_one_is_queued() {
        let (socket, mut outbox) = SocketHandle::<Bytes>::new(1, SocketId::from_parts(1, 1), 4);
        assert!(timeout(Duration::from_secs(1), outbox.recv()).await.is_err(), "nothing yet");
        let sender = socket.clone();
        let sent = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            sender.send(&Bytes::from_static(b"later"))
        });
        assert_eq!(
            timeout(Duration::from_secs(10), outbox.recv()).await,
            Ok(Some(Bytes::from_static(b"later")))
        );
        assert!(sent.await.expect("sender task"));
    }
}
