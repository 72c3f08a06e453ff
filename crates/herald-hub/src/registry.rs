//! The sharded registry of one app: who is connected, who listens where, who is present.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

// tokio's clock, so the cache's 30 minutes can be tested under a paused clock.
use tokio::time::Instant;

use bytes::Bytes;
use herald_protocol::{encode_server_event, ChannelKind, ChannelName, CloseCode, SocketId};
use serde_json::{json, Map, Value};

use crate::socket::{Frame, Outbox, Pace, Recipient, Sent, SocketHandle, SocketKey};

const SHARDS: usize = 16;
/// A channel with more subscribers than this is written to after its shard's lock is released
/// (its frames queued under the lock, then drained): a delivery may be a socket write.
const DELIVER_UNDER_LOCK: usize = 32;
/// Socket keys are unique in the process, across every app's hub, so socket ids are too.
static NEXT_SOCKET_KEY: AtomicU64 = AtomicU64::new(1);
/// How long a cache channel keeps its last event.
const CACHE_TTL: Duration = Duration::from_secs(30 * 60);
/// Cache channels remembered per shard; past that, expired entries are dropped first.
const CACHE_ENTRIES_PER_SHARD: usize = 4096;

/// Counts of one channel, as the HTTP API reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelInfo {
    pub subscription_count: usize,
    /// Distinct users, for presence channels only.
    pub user_count: Option<usize>,
}

/// The presence part of `pusher_internal:subscription_succeeded`.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceSnapshot {
    pub ids: Vec<String>,
    pub hash: Map<String, Value>,
}

impl PresenceSnapshot {
    /// `{"presence": {"ids": [...], "hash": {...}, "count": n}}`
    pub fn to_data(&self) -> String {
        json!({ "presence": { "ids": self.ids, "hash": self.hash, "count": self.ids.len() } }).to_string()
    }
}

/// What a successful subscription hands back to the session.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeOutcome<F> {
    pub presence: Option<PresenceSnapshot>,
    /// For cache channels: the last event (already encoded), or `None` for a cache miss.
    pub cached: Option<F>,
    /// Sockets subscribed to the channel on this node, this one included (1: it was empty).
    pub subscription_count: usize,
    /// The presence user had no socket in the channel on this node before.
    pub first_for_user: bool,
}

/// What an unsubscription changed on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsubscribed {
    /// Sockets still subscribed to the channel on this node (0: it is empty now).
    pub subscription_count: usize,
    /// That was the presence user's last socket in the channel on this node.
    pub last_for_user: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The presence channel already has its maximum number of users.
    #[error("presence channel is full ({max} members)")]
    PresenceFull { max: usize },
    /// The socket is gone (closed while subscribing).
    #[error("connection is closed")]
    SocketGone,
}

/// Numbers for `herald status` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubStats {
    pub connections: usize,
    pub subscriptions: usize,
    pub channels_by_kind: Vec<(&'static str, usize)>,
}

#[derive(Debug)]
struct Subscriber<F> {
    handle: SocketHandle<F>,
    user_id: Option<Arc<str>>,
}

#[derive(Debug)]
struct Member {
    info: Value,
    sockets: u32,
}

#[derive(Debug)]
struct Channel<F> {
    subscribers: HashMap<SocketKey, Subscriber<F>>,
    members: HashMap<Arc<str>, Member>,
}

#[derive(Debug)]
struct Shard<F> {
    channels: HashMap<String, Channel<F>>,
    cache: HashMap<String, Cached<F>>,
}

#[derive(Debug)]
struct Cached<F> {
    frame: F,
    data: Arc<str>,
    at: Instant,
}

impl<F> Default for Channel<F> {
    fn default() -> Self {
        Channel { subscribers: HashMap::new(), members: HashMap::new() }
    }
}

impl<F> Default for Shard<F> {
    fn default() -> Self {
        Shard { channels: HashMap::new(), cache: HashMap::new() }
    }
}

/// Who watches whom (watchlist events) on this node: both directions, so that a closing socket
/// leaves in one step. Bounded by the sockets times their watchlists (100 ids each).
#[derive(Debug, Default)]
struct Watchlists {
    /// Watched user id → the sockets watching them.
    watchers: HashMap<Arc<str>, Vec<SocketKey>>,
    /// Socket → the user ids it watches.
    watched: HashMap<SocketKey, Vec<Arc<str>>>,
}

/// The connections whose keys fall in one shard.
type SocketShard<F> = HashMap<SocketKey, SocketHandle<F>>;

/// The registry of one app on this node.
#[derive(Debug)]
pub struct Hub<F = Bytes> {
    node: u64,
    outbox_capacity: usize,
    connections: AtomicUsize,
    hasher: RandomState,
    shards: Box<[Mutex<Shard<F>>]>,
    sockets: Box<[Mutex<SocketShard<F>>]>,
    users: Mutex<HashMap<String, Vec<SocketKey>>>,
    watchlists: Mutex<Watchlists>,
    /// Whether this hub announces `member_added` / `member_removed` and watchlist
    /// `online` / `offline` itself (one node). In a cluster, whether a user is new or gone is
    /// decided cluster-wide, and the server announces.
    announces_presence: bool,
}

/// One socket's subscription, as a cluster's registry needs it to rebuild this node's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub channel: String,
    pub socket_id: String,
    /// `(user_id, user_info)` on presence channels.
    pub member: Option<(String, Value)>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a hub lock leaves plain maps behind; they stay usable.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<F: Frame> Hub<F> {
    /// `node` becomes the first half of every socket id this hub hands out.
    pub fn new(node: u64) -> Self {
        Hub::with_outbox_capacity(node, crate::OUTBOX_CAPACITY)
    }

    /// A hub whose sockets may queue `outbox_capacity` frames before they count as slow.
    pub fn with_outbox_capacity(node: u64, outbox_capacity: usize) -> Self {
        Hub {
            node,
            outbox_capacity,
            connections: AtomicUsize::new(0),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            sockets: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            users: Mutex::new(HashMap::new()),
            watchlists: Mutex::new(Watchlists::default()),
            announces_presence: true,
        }
    }

    /// A hub whose presence announcements are made by the server (a cluster decides who is new
    /// or gone across nodes); it still keeps this node's members.
    pub fn without_presence_announcements(mut self) -> Self {
        self.announces_presence = false;
        self
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard<F>> {
        let index = (self.hasher.hash_one(channel) as usize) % SHARDS;
        lock(&self.shards[index])
    }

    fn socket_shard(&self, key: SocketKey) -> MutexGuard<'_, SocketShard<F>> {
        lock(&self.sockets[(key as usize) % SHARDS])
    }

    /// Registers a new connection, unless the app is at `max_connections`.
    pub fn register(&self, max_connections: Option<usize>) -> Option<(SocketHandle<F>, Outbox<F>)> {
        let previous = self.connections.fetch_add(1, Ordering::AcqRel);
        if max_connections.is_some_and(|max| previous >= max) {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let key = NEXT_SOCKET_KEY.fetch_add(1, Ordering::Relaxed);
        let (handle, outbox) =
            SocketHandle::new(key, SocketId::from_parts(self.node, key), self.outbox_capacity);
        self.socket_shard(key).insert(key, handle.clone());
        Some((handle, outbox))
    }

    /// Forgets a connection: its subscriptions (announcing departed presence members) and sign-in.
    pub fn unregister<'a>(
        &self,
        key: SocketKey,
        channels: impl IntoIterator<Item = &'a ChannelName>,
        user_id: Option<&str>,
    ) {
        for channel in channels {
            self.unsubscribe(key, channel);
        }
        if let Some(user_id) = user_id {
            self.unregister_user(key, user_id);
        }
        self.unwatch(key);
        if self.socket_shard(key).remove(&key).is_some() {
            self.connections.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Adds `handle` to `channel`. For presence channels `member` is the verified
    /// `(user_id, user_info)`; the first socket of a user announces `member_added` to the others.
    pub fn subscribe(
        &self,
        handle: &SocketHandle<F>,
        channel: &ChannelName,
        member: Option<(String, Value)>,
        max_presence_members: usize,
    ) -> Result<SubscribeOutcome<F>, SubscribeError> {
        if handle.close_requested().is_some() {
            return Err(SubscribeError::SocketGone);
        }
        let mut shard = self.shard(channel.as_str());
        let entry = shard.channels.entry(channel.as_str().to_owned()).or_default();
        let mut added: Option<F> = None;
        let mut first_for_user = false;
        let user_id: Option<Arc<str>> = member.as_ref().map(|(id, _)| Arc::from(id.as_str()));
        if let (Some((id, info)), Some(user_key)) = (member, user_id.as_ref()) {
            let already_subscribed = entry.subscribers.contains_key(&handle.key);
            if !already_subscribed {
                match entry.members.get_mut(user_key) {
                    Some(existing) => existing.sockets += 1,
                    None => {
                        if self.announces_presence && entry.members.len() >= max_presence_members {
                            if entry.subscribers.is_empty() {
                                shard.channels.remove(channel.as_str());
                            }
                            return Err(SubscribeError::PresenceFull { max: max_presence_members });
                        }
                        if self.announces_presence {
                            added = Some(member_added(channel.as_str(), &id, &info));
                        }
                        first_for_user = true;
                        entry.members.insert(user_key.clone(), Member { info, sockets: 1 });
                    }
                }
            }
        }
        entry.subscribers.insert(handle.key, Subscriber { handle: handle.clone(), user_id });
        let announced =
            added.map(|frame| entry.send(&frame, |subscriber| subscriber.handle.key == handle.key));
        let subscription_count = entry.subscribers.len();
        let presence = (channel.kind() == ChannelKind::Presence).then(|| {
            let mut ids: Vec<String> = entry.members.keys().map(|id| id.to_string()).collect();
            ids.sort();
            let hash =
                entry.members.iter().map(|(id, member)| (id.to_string(), member.info.clone())).collect();
            PresenceSnapshot { ids, hash }
        });
        let cached = if channel.is_cache() {
            match shard.cache.get(channel.as_str()) {
                Some(cached) if cached.at.elapsed() < CACHE_TTL => Some(cached.frame.clone()),
                _ => None,
            }
        } else {
            None
        };
        drop(shard);
        if let Some(announced) = announced {
            announced.finish();
        }
        Ok(SubscribeOutcome { presence, cached, subscription_count, first_for_user })
    }

    /// Removes `key` from `channel`; the last socket of a presence user announces `member_removed`.
    /// `None` when the socket was not subscribed.
    pub fn unsubscribe(&self, key: SocketKey, channel: &ChannelName) -> Option<Unsubscribed> {
        let mut shard = self.shard(channel.as_str());
        let entry = shard.channels.get_mut(channel.as_str())?;
        let subscriber = entry.subscribers.remove(&key)?;
        let mut last_for_user = false;
        let mut announced = None;
        if let Some(user_id) = subscriber.user_id {
            let gone = match entry.members.get_mut(&user_id) {
                Some(member) if member.sockets > 1 => {
                    member.sockets -= 1;
                    false
                }
                Some(_) => true,
                None => false,
            };
            if gone {
                last_for_user = true;
                entry.members.remove(&user_id);
                if self.announces_presence {
                    let frame = member_removed(channel.as_str(), &user_id);
                    announced = Some(entry.send(&frame, |_| false));
                }
            }
        }
        let subscription_count = entry.subscribers.len();
        if subscription_count == 0 {
            shard.channels.remove(channel.as_str());
        }
        drop(shard);
        if let Some(announced) = announced {
            announced.finish();
        }
        Some(Unsubscribed { subscription_count, last_for_user })
    }

    /// Delivers an encoded frame to every subscriber of `channel` but `except`; remembers it for
    /// cache channels. Returns the number of sockets it was queued for.
    /// `data` is the event's data, kept beside the frame for the API's `info=cache`.
    pub fn publish(&self, channel: &ChannelName, frame: &F, data: &str, except: Option<&str>) -> usize {
        let mut shard = self.shard(channel.as_str());
        if channel.is_cache() {
            let cached = Cached { frame: frame.clone(), data: Arc::from(data), at: Instant::now() };
            remember(&mut shard.cache, channel.as_str(), cached);
        }
        send_to(shard, channel.as_str(), frame, except)
    }

    /// Delivers a frame to every subscriber of `channel` but `except`, without touching the
    /// cache: presence announcements decided by a cluster.
    pub fn send_to_channel(&self, channel: &str, frame: &F, except: Option<&str>) -> usize {
        send_to(self.shard(channel), channel, frame, except)
    }

    /// Every subscription on this node, for a cluster registry that lost them.
    pub fn registrations(&self) -> Vec<Registration> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for (name, entry) in &shard.channels {
                for subscriber in entry.subscribers.values() {
                    let member = subscriber.user_id.as_ref().and_then(|user_id| {
                        let member = entry.members.get(user_id)?;
                        Some((user_id.to_string(), member.info.clone()))
                    });
                    all.push(Registration {
                        channel: name.clone(),
                        socket_id: subscriber.handle.id.as_str().to_owned(),
                        member,
                    });
                }
            }
        }
        all
    }

    /// Counts of one channel, `None` when nobody is subscribed.
    pub fn channel_info(&self, channel: &ChannelName) -> Option<ChannelInfo> {
        let shard = self.shard(channel.as_str());
        shard.channels.get(channel.as_str()).map(|entry| info_of(channel.kind(), entry))
    }

    /// A cache channel's unexpired last event data and the time it has left.
    pub fn cached_event(&self, channel: &ChannelName) -> Option<(Arc<str>, Duration)> {
        let shard = self.shard(channel.as_str());
        let cached = shard.cache.get(channel.as_str())?;
        let left = CACHE_TTL.checked_sub(cached.at.elapsed())?;
        Some((cached.data.clone(), left))
    }

    /// Every occupied channel with its counts, sorted by name.
    pub fn channels(&self) -> Vec<(ChannelName, ChannelInfo)> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for (name, entry) in &shard.channels {
                if let Ok(channel) = ChannelName::parse(name, usize::MAX) {
                    let info = info_of(channel.kind(), entry);
                    all.push((channel, info));
                }
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The user ids present in a presence channel, sorted.
    pub fn presence_users(&self, channel: &ChannelName) -> Vec<String> {
        let shard = self.shard(channel.as_str());
        let mut ids: Vec<String> = shard
            .channels
            .get(channel.as_str())
            .map(|entry| entry.members.keys().map(|id| id.to_string()).collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Records that socket `key` signed in as `user_id`. True when it is the user's first
    /// signed-in socket on this node; a hub that announces tells the user's watchers `online`.
    pub fn sign_in(&self, key: SocketKey, user_id: &str) -> bool {
        let mut users = lock(&self.users);
        let sockets = users.entry(user_id.to_owned()).or_default();
        if sockets.contains(&key) {
            return false;
        }
        sockets.push(key);
        let first = sockets.len() == 1;
        if first && self.announces_presence {
            // Told under the users lock, so an `online` and an `offline` keep their order.
            self.tell_watchers(user_id, true);
        }
        first
    }

    /// Forgets that socket `key` was signed in as `user_id`. True when that was the user's
    /// last signed-in socket on this node; a hub that announces tells the watchers `offline`.
    pub fn unregister_user(&self, key: SocketKey, user_id: &str) -> bool {
        let mut users = lock(&self.users);
        let Some(sockets) = users.get_mut(user_id) else { return false };
        let before = sockets.len();
        sockets.retain(|socket| *socket != key);
        let last = sockets.is_empty() && before > 0;
        if sockets.is_empty() {
            users.remove(user_id);
        }
        if last && self.announces_presence {
            self.tell_watchers(user_id, false);
        }
        last
    }

    /// The users with a signed-in socket on this node and how many each has, for a cluster
    /// registry that lost them.
    pub fn signed_in_users(&self) -> Vec<(String, usize)> {
        lock(&self.users).iter().map(|(user_id, sockets)| (user_id.clone(), sockets.len())).collect()
    }

    /// Whether `user_id` has a signed-in socket on this node.
    pub fn is_online(&self, user_id: &str) -> bool {
        lock(&self.users).contains_key(user_id)
    }

    /// Makes socket `key` watch `user_ids` (replacing what it watched before); returns those of
    /// them with a signed-in socket on this node, in the order given, without repeats.
    pub fn watch(&self, key: SocketKey, user_ids: &[String]) -> Vec<String> {
        self.unwatch(key);
        let mut unique: Vec<Arc<str>> = Vec::with_capacity(user_ids.len());
        for user_id in user_ids {
            if !unique.iter().any(|seen| **seen == **user_id) {
                unique.push(Arc::from(user_id.as_str()));
            }
        }
        if unique.is_empty() {
            return Vec::new();
        }
        {
            let mut watchlists = lock(&self.watchlists);
            for user_id in &unique {
                watchlists.watchers.entry(user_id.clone()).or_default().push(key);
            }
            watchlists.watched.insert(key, unique.clone());
        }
        let users = lock(&self.users);
        unique
            .iter()
            .filter(|user_id| users.contains_key(&***user_id))
            .map(|user_id| user_id.to_string())
            .collect()
    }

    /// Forgets socket `key`'s watchlist.
    pub fn unwatch(&self, key: SocketKey) {
        let mut watchlists = lock(&self.watchlists);
        let Some(watched) = watchlists.watched.remove(&key) else { return };
        for user_id in watched {
            if let Some(watchers) = watchlists.watchers.get_mut(&user_id) {
                watchers.retain(|watcher| *watcher != key);
                if watchers.is_empty() {
                    watchlists.watchers.remove(&user_id);
                }
            }
        }
    }

    /// Sends `pusher_internal:watchlist_events` (`online` or `offline` for `user_id`) to every
    /// socket on this node watching `user_id`; returns how many it was queued for.
    pub fn tell_watchers(&self, user_id: &str, online: bool) -> usize {
        let keys = match lock(&self.watchlists).watchers.get(user_id) {
            Some(keys) => keys.clone(),
            None => return 0,
        };
        let frame: F = watchlist_event(if online { "online" } else { "offline" }, &[user_id]);
        let mut told = 0;
        for key in keys {
            let handle = self.socket_shard(key).get(&key).cloned();
            if handle.is_some_and(|handle| handle.send(&frame)) {
                told += 1;
            }
        }
        told
    }

    /// Closes every connection signed in as `user_id` with 4009; returns how many.
    pub fn terminate_user(&self, user_id: &str) -> usize {
        let keys = lock(&self.users).get(user_id).cloned().unwrap_or_default();
        let mut closed = 0;
        for key in keys {
            let handle = self.socket_shard(key).get(&key).cloned();
            if let Some(handle) = handle {
                handle.close(CloseCode::Unauthorized);
                closed += 1;
            }
        }
        closed
    }

    /// Asks every connection to close with `code` (graceful shutdown uses 4200).
    pub fn close_all(&self, code: CloseCode) {
        for shard in self.sockets.iter() {
            let handles: Vec<SocketHandle<F>> = lock(shard).values().cloned().collect();
            for handle in handles {
                handle.close(code);
            }
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> HubStats {
        let mut by_kind: HashMap<&'static str, usize> = HashMap::new();
        let mut subscriptions = 0;
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for (name, entry) in &shard.channels {
                subscriptions += entry.subscribers.len();
                let kind = ChannelName::parse(name, usize::MAX).map_or("public", |c| c.kind().label());
                *by_kind.entry(kind).or_default() += 1;
            }
        }
        let mut channels_by_kind: Vec<(&'static str, usize)> = by_kind.into_iter().collect();
        channels_by_kind.sort();
        HubStats { connections: self.connections(), subscriptions, channels_by_kind }
    }
}

/// Sends `frame` to every subscriber of `channel` in `shard` but `except` (`Channel::send`); how
/// many it reached.
fn send_to<F: Frame>(
    shard: MutexGuard<'_, Shard<F>>,
    channel: &str,
    frame: &F,
    except: Option<&str>,
) -> usize {
    let Some(entry) = shard.channels.get(channel) else {
        return 0;
    };
    let sent = entry.send(frame, |subscriber| except.is_some_and(|id| subscriber.handle.id.as_str() == id));
    drop(shard);
    sent.finish()
}

/// What `Channel::send` did under the shard's lock; `finish` it once the lock is released.
#[must_use = "deferred sockets are written only by `finish`"]
struct Fanned<F: Frame> {
    reached: usize,
    deferred: Vec<Recipient<F>>,
}

impl<F: Frame> Fanned<F> {
    /// Writes the deferred sockets (`drain`); how many sockets the frame reached.
    fn finish(self) -> usize {
        if !self.deferred.is_empty() {
            drain(self.deferred);
        }
        self.reached
    }
}

impl<F: Frame> Channel<F> {
    /// Sends `frame` to every subscriber but those `skip` names, under the shard's lock (so
    /// concurrent publishers' frames reach every subscriber in one order). A small channel's
    /// frames are written at once where the socket's session lends its writer. A larger one's are
    /// queued, without waking the lending sessions, and those sockets are written after the lock
    /// is released (`Fanned::finish`) by `workers()` tasks in parallel: other channels of the
    /// shard do not wait for thousands of writes, nor does the caller (an HTTP request, say).
    /// Every socket's frames stay in order: they go through its queue.
    fn send(&self, frame: &F, skip: impl Fn(&Subscriber<F>) -> bool) -> Fanned<F> {
        let how = Pace { now: crate::socket::clock(), defer: self.subscribers.len() > DELIVER_UNDER_LOCK };
        let mut sent = Fanned { reached: 0, deferred: Vec::new() };
        for subscriber in self.subscribers.values().filter(|subscriber| !skip(subscriber)) {
            match subscriber.handle.send_as(frame, how) {
                Sent::Done => sent.reached += 1,
                Sent::Deferred => {
                    sent.reached += 1;
                    sent.deferred.push(subscriber.handle.recipient());
                }
                Sent::Refused => {}
            }
        }
        sent
    }
}

/// Sockets one drain task writes at most (a few milliseconds of writes), so that a huge channel's
/// drains share the worker threads with other tasks rather than holding one for long.
const DRAIN_CHUNK: usize = 512;

/// Writes the deferred sockets (`Recipient::drain`) from at least `workers()` tasks, or here
/// when there is no runtime to run them.
fn drain<F: Frame>(mut deferred: Vec<Recipient<F>>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        deferred.iter().for_each(Recipient::drain);
        return;
    };
    let share = deferred.len().div_ceil(workers()).clamp(1, DRAIN_CHUNK);
    while !deferred.is_empty() {
        let part = deferred.split_off(deferred.len().saturating_sub(share));
        runtime.spawn(async move { part.iter().for_each(Recipient::drain) });
    }
}

/// The threads a fan-out's writes are shared among: the runtime's workers, one per CPU.
fn workers() -> usize {
    static WORKERS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *WORKERS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `pusher_internal:member_added` for `user_id` on `channel`.
pub fn member_added<F: Frame>(channel: &str, user_id: &str, user_info: &Value) -> F {
    let data = json!({ "user_id": user_id, "user_info": user_info }).to_string();
    F::from(encode_server_event("pusher_internal:member_added", Some(channel), &data, None))
}

/// `pusher_internal:watchlist_events` with one event, `name` (`online` or `offline`), for
/// `user_ids`: `{"events": [{"name": ..., "user_ids": [...]}]}`, no channel.
pub fn watchlist_event<F: Frame>(name: &str, user_ids: &[&str]) -> F {
    let data = json!({ "events": [{ "name": name, "user_ids": user_ids }] }).to_string();
    F::from(encode_server_event("pusher_internal:watchlist_events", None, &data, None))
}

/// `pusher_internal:member_removed` for `user_id` on `channel`.
pub fn member_removed<F: Frame>(channel: &str, user_id: &str) -> F {
    let data = json!({ "user_id": user_id }).to_string();
    F::from(encode_server_event("pusher_internal:member_removed", Some(channel), &data, None))
}

fn info_of<F>(kind: ChannelKind, entry: &Channel<F>) -> ChannelInfo {
    ChannelInfo {
        subscription_count: entry.subscribers.len(),
        user_count: (kind == ChannelKind::Presence).then_some(entry.members.len()),
    }
}

fn remember<F>(cache: &mut HashMap<String, Cached<F>>, channel: &str, cached: Cached<F>) {
    if cache.len() >= CACHE_ENTRIES_PER_SHARD && !cache.contains_key(channel) {
        cache.retain(|_, entry| entry.at.elapsed() < CACHE_TTL);
        if cache.len() >= CACHE_ENTRIES_PER_SHARD {
            // Full of live entries: forget the oldest rather than grow without bound.
            let oldest = cache.iter().min_by_key(|(_, entry)| entry.at).map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                cache.remove(&oldest);
            }
        }
    }
    match cache.entry(channel.to_owned()) {
        Entry::Occupied(mut slot) => *slot.get_mut() = cached,
        Entry::Vacant(slot) => {
            slot.insert(cached);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name, 200).expect("valid channel")
    }

    #[tokio::test]
    async fn publish_reaches_subscribers_but_the_excluded_one() {
        let hub: Hub<Bytes> = Hub::new(1);
        let (a, mut a_out) = hub.register(None).expect("room");
        let (b, mut b_out) = hub.register(None).expect("room");
        let ch = channel("news");
        hub.subscribe(&a, &ch, None, 100).expect("subscribed");
        hub.subscribe(&b, &ch, None, 100).expect("subscribed");
        let frame = Bytes::from_static(b"hello");
        assert_eq!(hub.publish(&ch, &frame, "d", Some(b.id.as_str())), 1);
        assert_eq!(a_out.try_recv().expect("frame"), frame);
        assert!(b_out.try_recv().is_err());
    }

    #[tokio::test]
    async fn subscriptions_report_the_counts_and_users_they_changed() {
        let hub: Hub<Bytes> = Hub::new(1);
        let ch = channel("presence-room");
        let (a, _a_out) = hub.register(None).expect("room");
        let (b, _b_out) = hub.register(None).expect("room");
        let first = hub.subscribe(&a, &ch, Some(("7".into(), Value::Null)), 100).expect("ok");
        assert_eq!((first.subscription_count, first.first_for_user), (1, true));
        let second = hub.subscribe(&b, &ch, Some(("7".into(), Value::Null)), 100).expect("ok");
        assert_eq!((second.subscription_count, second.first_for_user), (2, false));
        let left = hub.unsubscribe(a.key, &ch).expect("was subscribed");
        assert_eq!((left.subscription_count, left.last_for_user), (1, false));
        let last = hub.unsubscribe(b.key, &ch).expect("was subscribed");
        assert_eq!((last.subscription_count, last.last_for_user), (0, true));
        assert_eq!(hub.unsubscribe(b.key, &ch), None, "not subscribed any more");
    }

    #[tokio::test]
    async fn presence_announces_once_per_user() {
        let hub: Hub<Bytes> = Hub::new(1);
        let ch = channel("presence-room");
        let (watcher, mut watcher_out) = hub.register(None).expect("room");
        hub.subscribe(&watcher, &ch, Some(("w".into(), Value::Null)), 100).expect("ok");
        let (first, _o1) = hub.register(None).expect("room");
        let (second, _o2) = hub.register(None).expect("room");
        hub.subscribe(&first, &ch, Some(("7".into(), json!({"n": 1}))), 100).expect("ok");
        let outcome = hub.subscribe(&second, &ch, Some(("7".into(), json!({"n": 1}))), 100).expect("ok");
        assert_eq!(outcome.presence.expect("presence").ids, vec!["7", "w"]);
        let added = watcher_out.try_recv().expect("member_added");
        assert!(std::str::from_utf8(&added).expect("utf8").contains("member_added"));
        assert!(watcher_out.try_recv().is_err(), "second socket of the same user is not announced");
        hub.unsubscribe(first.key, &ch);
        assert!(watcher_out.try_recv().is_err(), "user still present through another socket");
        hub.unsubscribe(second.key, &ch);
        let removed = watcher_out.try_recv().expect("member_removed");
        assert!(std::str::from_utf8(&removed).expect("utf8").contains("member_removed"));
        assert_eq!(hub.channel_info(&ch).expect("occupied").user_count, Some(1));
    }

    #[tokio::test]
    async fn presence_refuses_past_the_member_limit() {
        let hub: Hub<Bytes> = Hub::new(1);
        let ch = channel("presence-small");
        let (a, _oa) = hub.register(None).expect("room");
        let (b, _ob) = hub.register(None).expect("room");
        hub.subscribe(&a, &ch, Some(("1".into(), Value::Null)), 1).expect("ok");
        assert_eq!(
            hub.subscribe(&b, &ch, Some(("2".into(), Value::Null)), 1),
            Err(SubscribeError::PresenceFull { max: 1 })
        );
    }

    #[tokio::test]
    async fn slow_consumer_is_asked_to_close_with_4100() {
        let hub: Hub<Bytes> = Hub::new(1);
        let ch = channel("firehose");
        let (slow, _outbox_never_read) = hub.register(None).expect("room");
        hub.subscribe(&slow, &ch, None, 100).expect("ok");
        let frame = Bytes::from_static(b"x");
        for _ in 0..crate::OUTBOX_CAPACITY {
            hub.publish(&ch, &frame, "d", None);
        }
        assert_eq!(slow.close_requested(), None);
        hub.publish(&ch, &frame, "d", None);
        assert_eq!(slow.close_requested(), Some(CloseCode::OverCapacity));
    }

    #[tokio::test]
    async fn connection_quota_and_unregister() {
        let hub: Hub<Bytes> = Hub::new(1);
        let (a, _oa) = hub.register(Some(1)).expect("room");
        assert!(hub.register(Some(1)).is_none());
        let ch = channel("x");
        hub.subscribe(&a, &ch, None, 100).expect("ok");
        hub.unregister(a.key, [&ch], None);
        assert_eq!(hub.connections(), 0);
        assert!(hub.channel_info(&ch).is_none());
        assert!(hub.register(Some(1)).is_some());
    }

    #[tokio::test]
    async fn cache_channel_keeps_last_event() {
        let hub: Hub<Bytes> = Hub::new(1);
        let ch = channel("cache-prices");
        let (a, _oa) = hub.register(None).expect("room");
        assert_eq!(hub.subscribe(&a, &ch, None, 100).expect("ok").cached, None);
        hub.publish(&ch, &Bytes::from_static(b"one"), "one", None);
        hub.publish(&ch, &Bytes::from_static(b"two"), "two", None);
        let (b, _ob) = hub.register(None).expect("room");
        assert_eq!(hub.subscribe(&b, &ch, None, 100).expect("ok").cached, Some(Bytes::from_static(b"two")));
    }

    fn text(frame: &Bytes) -> Value {
        serde_json::from_slice(frame).expect("frames are JSON")
    }

    #[tokio::test]
    async fn member_added_goes_to_the_other_members_not_the_joiner() {
        let hub: Hub<Bytes> = Hub::new(1);
        let ch = channel("presence-room");
        let (watcher, mut watcher_out) = hub.register(None).expect("room");
        hub.subscribe(&watcher, &ch, Some(("w".into(), Value::Null)), 100).expect("ok");
        assert!(watcher_out.try_recv().is_err(), "nobody announces the first member to itself");
        let (joiner, mut joiner_out) = hub.register(None).expect("room");
        hub.subscribe(&joiner, &ch, Some(("7".into(), json!({"n": 1}))), 100).expect("ok");
        let added = text(&watcher_out.try_recv().expect("member_added"));
        assert_eq!(added["event"], "pusher_internal:member_added");
        assert_eq!(added["channel"], "presence-room");
        let data: Value = serde_json::from_str(added["data"].as_str().expect("string data")).expect("json");
        assert_eq!(data, json!({"user_id": "7", "user_info": {"n": 1}}));
        assert!(joiner_out.try_recv().is_err(), "the joiner learns the members from its snapshot");
    }

    #[test]
    fn presence_snapshots_have_the_protocol_shape() {
        let mut hash = Map::new();
        hash.insert("7".into(), json!({"n": 1}));
        hash.insert("w".into(), Value::Null);
        let snapshot = PresenceSnapshot { ids: vec!["7".into(), "w".into()], hash };
        let data: Value = serde_json::from_str(&snapshot.to_data()).expect("json");
        assert_eq!(
            data,
            json!({ "presence": { "ids": ["7", "w"], "hash": { "7": {"n": 1}, "w": null }, "count": 2 } })
        );
    }

    #[tokio::test]
    async fn cache_channels_keep_their_last_event_for_30_minutes() {
        let hub: Hub<Bytes> = Hub::new(1);
        let ch = channel("cache-prices");
        assert_eq!(hub.cached_event(&ch), None, "a cache miss before any event");
        hub.publish(&ch, &Bytes::from_static(b"frame"), "last", None);
        let (data, left) = hub.cached_event(&ch).expect("kept");
        assert_eq!(&*data, "last");
        assert!(left > Duration::from_secs(29 * 60) && left <= Duration::from_secs(30 * 60), "{left:?}");
        assert_eq!(hub.cached_event(&channel("news")), None, "only cache channels keep events");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_event_expires_after_30_minutes() {
        let hub: Hub<Bytes> = Hub::new(1);
        let ch = channel("cache-prices");
        hub.publish(&ch, &Bytes::from_static(b"frame"), "last", None);
        tokio::time::advance(Duration::from_secs(30 * 60 - 1)).await;
        let (_, left) = hub.cached_event(&ch).expect("still kept a second before");
        assert_eq!(left, Duration::from_secs(1));
        let (early, _early_out) = hub.register(None).expect("room");
        assert_eq!(
            hub.subscribe(&early, &ch, None, 100).expect("ok").cached,
            Some(Bytes::from_static(b"frame"))
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(hub.cached_event(&ch), None, "gone after 30 minutes");
        let (late, _late_out) = hub.register(None).expect("room");
        assert_eq!(hub.subscribe(&late, &ch, None, 100).expect("ok").cached, None, "no replay once expired");
    }

    #[tokio::test]
    async fn hundreds_of_connections_register_and_leave() {
        let hub: Hub<Bytes> = Hub::new(1);
        let sockets: Vec<_> = (0..300).map(|_| hub.register(None).expect("room")).collect();
        assert_eq!(hub.connections(), 300);
        let ids: std::collections::HashSet<&str> =
            sockets.iter().map(|(handle, _)| handle.id.as_str()).collect();
        assert_eq!(ids.len(), 300, "socket ids are unique");
        for (handle, _) in &sockets {
            hub.unregister(handle.key, [], None);
        }
        assert_eq!(hub.connections(), 0);
    }

    #[tokio::test]
    async fn publish_counts_every_socket_it_queued_for() {
        let hub: Hub<Bytes> = Hub::new(1);
        let ch = channel("news");
        let (a, mut a_out) = hub.register(None).expect("room");
        let (b, mut b_out) = hub.register(None).expect("room");
        hub.subscribe(&a, &ch, None, 100).expect("subscribed");
        hub.subscribe(&b, &ch, None, 100).expect("subscribed");
        let frame = Bytes::from_static(b"hello");
        assert_eq!(hub.publish(&ch, &frame, "d", None), 2);
        assert_eq!(a_out.try_recv().expect("a's frame"), frame);
        assert_eq!(b_out.try_recv().expect("b's frame"), frame);
        assert_eq!(hub.publish(&ch, &frame, "d", Some(a.id.as_str())), 1, "the excluded socket is skipped");
        assert!(a_out.try_recv().is_err());
        assert_eq!(b_out.try_recv().expect("b's second frame"), frame);
        assert_eq!(hub.publish(&channel("empty"), &frame, "d", None), 0);
    }

    #[tokio::test]
    async fn terminating_a_user_closes_each_of_their_sockets_with_4009() {
        let hub: Hub<Bytes> = Hub::new(1);
        let (phone, _o1) = hub.register(None).expect("room");
        let (laptop, _o2) = hub.register(None).expect("room");
        let (other, _o3) = hub.register(None).expect("room");
        hub.sign_in(phone.key, "ada");
        hub.sign_in(phone.key, "ada");
        hub.sign_in(laptop.key, "ada");
        hub.sign_in(other.key, "bob");
        assert_eq!(hub.terminate_user("ada"), 2, "two sockets, however often they signed in");
        assert_eq!(phone.close_requested(), Some(CloseCode::Unauthorized));
        assert_eq!(laptop.close_requested(), Some(CloseCode::Unauthorized));
        assert_eq!(other.close_requested(), None, "another user's socket stays");
        assert_eq!(hub.terminate_user("nobody"), 0);
    }

    #[tokio::test]
    async fn a_socket_that_left_is_not_terminated_with_its_user() {
        let hub: Hub<Bytes> = Hub::new(1);
        let (gone, _o1) = hub.register(None).expect("room");
        let (staying, _o2) = hub.register(None).expect("room");
        hub.sign_in(gone.key, "ada");
        hub.sign_in(staying.key, "ada");
        hub.unregister_user(gone.key, "ada");
        assert_eq!(hub.terminate_user("ada"), 1);
        assert_eq!(gone.close_requested(), None);
        assert_eq!(staying.close_requested(), Some(CloseCode::Unauthorized));
        hub.unregister(staying.key, [], Some("ada"));
        assert_eq!(hub.terminate_user("ada"), 0, "no signed-in socket left");
    }

    fn watchlist_data(frame: &Bytes) -> Value {
        let frame = text(frame);
        assert_eq!(frame["event"], "pusher_internal:watchlist_events");
        assert!(frame.get("channel").is_none(), "watchlist events have no channel");
        serde_json::from_str(frame["data"].as_str().expect("string data")).expect("json")
    }

    #[tokio::test]
    async fn watchers_hear_a_users_first_and_last_signed_in_socket_only() {
        let hub: Hub<Bytes> = Hub::new(1);
        let (watcher, mut watcher_out) = hub.register(None).expect("room");
        assert!(hub.watch(watcher.key, &["ada".into(), "bob".into(), "ada".into()]).is_empty());
        let (phone, _o1) = hub.register(None).expect("room");
        let (laptop, _o2) = hub.register(None).expect("room");
        assert!(hub.sign_in(phone.key, "ada"), "ada's first socket");
        assert_eq!(
            watchlist_data(&watcher_out.try_recv().expect("online")),
            json!({"events": [{"name": "online", "user_ids": ["ada"]}]})
        );
        assert!(!hub.sign_in(laptop.key, "ada"), "a second socket is not news");
        assert!(!hub.sign_in(phone.key, "ada"), "nor signing in twice");
        assert!(watcher_out.try_recv().is_err());
        assert!(!hub.unregister_user(phone.key, "ada"));
        assert!(watcher_out.try_recv().is_err(), "ada still has her laptop");
        hub.unregister(laptop.key, [], Some("ada"));
        assert_eq!(
            watchlist_data(&watcher_out.try_recv().expect("offline")),
            json!({"events": [{"name": "offline", "user_ids": ["ada"]}]})
        );
        let (other, _o3) = hub.register(None).expect("room");
        hub.sign_in(other.key, "carol");
        assert!(watcher_out.try_recv().is_err(), "carol is not watched");
    }

    #[tokio::test]
    async fn a_watchlist_answers_who_is_online_and_leaves_with_its_socket() {
        let hub: Hub<Bytes> = Hub::new(1);
        let (ada, _o1) = hub.register(None).expect("room");
        hub.sign_in(ada.key, "ada");
        let (watcher, mut watcher_out) = hub.register(None).expect("room");
        assert_eq!(hub.watch(watcher.key, &["bob".into(), "ada".into()]), vec!["ada".to_owned()]);
        hub.unregister(watcher.key, [], None);
        assert!(lock(&hub.watchlists).watchers.is_empty(), "no watcher left behind");
        assert!(lock(&hub.watchlists).watched.is_empty());
        hub.unregister(ada.key, [], Some("ada"));
        assert!(watcher_out.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_clustered_hub_leaves_watchlist_announcements_to_the_server() {
        let hub: Hub<Bytes> = Hub::new(1).without_presence_announcements();
        let (watcher, mut watcher_out) = hub.register(None).expect("room");
        hub.watch(watcher.key, &["ada".into()]);
        let (ada, _o1) = hub.register(None).expect("room");
        assert!(hub.sign_in(ada.key, "ada"));
        assert!(watcher_out.try_recv().is_err(), "the cluster decides who is new");
        assert_eq!(hub.tell_watchers("ada", true), 1);
        assert!(watcher_out.try_recv().is_ok());
        assert!(hub.unregister_user(ada.key, "ada"));
        assert!(watcher_out.try_recv().is_err());
    }

    #[tokio::test]
    async fn close_all_asks_every_connection_to_close_with_the_code() {
        let hub: Hub<Bytes> = Hub::new(1);
        let sockets: Vec<_> = (0..20).map(|_| hub.register(None).expect("room")).collect();
        hub.close_all(CloseCode::Reconnect);
        for (handle, _) in &sockets {
            assert_eq!(handle.close_requested(), Some(CloseCode::Reconnect));
            let closed = tokio::time::timeout(Duration::from_secs(5), handle.closed()).await;
            assert_eq!(closed, Ok(CloseCode::Reconnect));
        }
    }

    #[tokio::test]
    async fn stats_and_channel_lists_count_what_is_subscribed() {
        let hub: Hub<Bytes> = Hub::new(1);
        let (a, _oa) = hub.register(None).expect("room");
        let (b, _ob) = hub.register(None).expect("room");
        let presence = channel("presence-room");
        for name in ["news", "cache-prices", "private-orders"] {
            hub.subscribe(&a, &channel(name), None, 100).expect("ok");
        }
        hub.subscribe(&b, &channel("news"), None, 100).expect("ok");
        hub.subscribe(&a, &presence, Some(("7".into(), Value::Null)), 100).expect("ok");
        hub.subscribe(&b, &presence, Some(("3".into(), Value::Null)), 100).expect("ok");
        let stats = hub.stats();
        assert_eq!(stats.connections, 2);
        assert_eq!(stats.subscriptions, 6);
        assert_eq!(stats.channels_by_kind, vec![("presence", 1), ("private", 1), ("public", 2)]);
        let listed: Vec<(String, ChannelInfo)> =
            hub.channels().into_iter().map(|(name, info)| (name.to_string(), info)).collect();
        let info = |subscription_count, user_count| ChannelInfo { subscription_count, user_count };
        assert_eq!(
            listed,
            vec![
                ("cache-prices".into(), info(1, None)),
                ("news".into(), info(2, None)),
                ("presence-room".into(), info(2, Some(2))),
                ("private-orders".into(), info(1, None)),
            ]
        );
        assert_eq!(hub.presence_users(&presence), vec!["3", "7"]);
        assert!(hub.presence_users(&channel("presence-empty")).is_empty());
    }

    #[tokio::test]
    async fn cache_memory_is_bounded_and_keeps_the_most_recent_channels() {
        let hub: Hub<Bytes> = Hub::new(1);
        // More cache channels than the hub remembers: at least one shard overflows, most do.
        let bound = SHARDS * CACHE_ENTRIES_PER_SHARD;
        let names: Vec<ChannelName> =
            (0..bound + bound / 32).map(|i| channel(&format!("cache-{i}"))).collect();
        let frame = Bytes::from_static(b"x");
        for name in &names {
            hub.publish(name, &frame, "d", None);
        }
        let remembered =
            |names: &[ChannelName]| names.iter().filter(|name| hub.cached_event(name).is_some()).count();
        let kept = remembered(&names);
        assert!(kept <= bound, "{kept} cache entries, more than {bound}");
        let recent = &names[names.len() - CACHE_ENTRIES_PER_SHARD..];
        assert_eq!(remembered(recent), recent.len(), "a full shard forgets its oldest entry first");
        // Publishing again to channels it remembers forgets no other.
        for name in recent {
            hub.publish(name, &frame, "d", None);
        }
        assert_eq!(remembered(&names), kept);
    }
}
