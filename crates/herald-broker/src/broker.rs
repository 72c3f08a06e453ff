//! `Broker`: the handle the server holds. Connects, publishes, reports health, and runs every
//! command through one bounded, fail-fast path (`Inner::query` and friends).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use redis::{Cmd, FromRedisValue, RedisResult, ScriptInvocation};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::keys::{check_name, shard_of, Keys};
use crate::link::{self, Commands, Receiver};
use crate::message::Envelope;
use crate::scripts::Scripts;
use crate::{supervisor, BrokerConfig, BrokerError, Inbound, Message, Unavailable};

/// Whether Redis is reachable, as last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Connected; `latency` is the round trip of the last heartbeat.
    Up {
        /// Round trip of the last heartbeat write.
        latency: Duration,
    },
    /// Out of reach since `since`; calls fail fast with [`BrokerError::Unavailable`] until the
    /// broker reconnects by itself.
    Down {
        /// When the broker noticed.
        since: SystemTime,
        /// What went wrong, for status pages and logs.
        error: String,
    },
}

/// The cluster-wide half of one Herald node. Cheap to clone; background work (heartbeats,
/// reaping, reconnects) stops when the last clone is dropped, or at [`Broker::shutdown`].
#[derive(Clone)]
pub struct Broker {
    pub(crate) inner: Arc<Inner>,
    _stop: Arc<DropGuard>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("node_id", &self.node_id()).finish_non_exhaustive()
    }
}

/// What every clone and the background tasks share.
pub(crate) struct Inner {
    pub(crate) config: BrokerConfig,
    pub(crate) keys: Keys,
    pub(crate) scripts: Scripts,
    pub(crate) receiver: Arc<Receiver>,
    commands: Mutex<Option<Commands>>,
    health: Mutex<Health>,
    /// Incremented on every reconnect; pushes of older connections are ignored.
    generation: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) cancel: CancellationToken,
    /// Set while a reap runs on this node, so ticks do not start a second one.
    pub(crate) reaping: std::sync::atomic::AtomicBool,
    published: AtomicU64,
    publish_failures: AtomicU64,
}

/// What this node's broker has done since start, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Messages Redis took from this node.
    pub published: u64,
    /// Messages Redis did not take (the publisher was told: 503, a retried job).
    pub publish_failures: u64,
    /// Messages received from other nodes.
    pub received: u64,
    /// Of those, dropped because this node fell behind.
    pub dropped: u64,
    /// Sum of the received messages' lag (publish to receipt), milliseconds.
    pub lag_ms_sum: u64,
}

impl Broker {
    /// Connects to Redis, subscribes every configured app's channels, writes the first
    /// heartbeat and starts the background work. Fails when Redis cannot be reached.
    pub async fn connect(config: BrokerConfig) -> Result<(Broker, mpsc::Receiver<Inbound>), BrokerError> {
        check_name("prefix", &config.prefix)?;
        check_name("node id", &config.node_id)?;
        for app in &config.apps {
            check_name("app", app)?;
        }
        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_capacity.max(1));
        let (lost_tx, lost_rx) = mpsc::channel(16);
        let keys = Keys::new(&config.prefix);
        let receiver = Arc::new(Receiver::new(config.node_id.clone(), inbound_tx, lost_tx));
        let started = Instant::now();
        let link = link::open(&config, &keys, &receiver, 0).await?;
        let inner = Arc::new(Inner {
            keys,
            scripts: Scripts::new(),
            receiver,
            commands: Mutex::new(Some(link.commands)),
            health: Mutex::new(Health::Up { latency: started.elapsed() }),
            generation: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            cancel: CancellationToken::new(),
            reaping: std::sync::atomic::AtomicBool::new(false),
            published: AtomicU64::new(0),
            publish_failures: AtomicU64::new(0),
            config,
        });
        if !inner.config.apps.is_empty() {
            inner
                .query::<()>("SADD", redis::cmd("SADD").arg(inner.keys.apps()).arg(&inner.config.apps))
                .await?;
        }
        inner.heartbeat().await?;
        let stop = inner.cancel.clone().drop_guard();
        tokio::spawn(supervisor::run(Arc::clone(&inner), link.subscribers, lost_rx));
        Ok((Broker { inner, _stop: Arc::new(stop) }, inbound_rx))
    }

    /// Fans `message` out to every other node (the caller delivers locally itself). Fails when
    /// Redis cannot take it; never waits longer than the command timeout.
    pub async fn publish(&self, app: &str, message: &Message) -> Result<(), BrokerError> {
        self.inner.publish(app, message).await
    }

    /// Whether Redis is reachable, as last seen by a heartbeat or a command.
    pub fn health(&self) -> Health {
        self.inner.health_now()
    }

    /// Counters since start.
    pub fn stats(&self) -> BrokerStats {
        use std::sync::atomic::Ordering::Relaxed;
        let (received, lag_ms_sum) = self.inner.receiver.received();
        BrokerStats {
            published: self.inner.published.load(Relaxed),
            publish_failures: self.inner.publish_failures.load(Relaxed),
            received,
            dropped: self.inner.receiver.dropped(),
            lag_ms_sum,
        }
    }

    /// Messages from other nodes dropped because the [`Inbound`] channel was full.
    pub fn dropped(&self) -> u64 {
        self.inner.receiver.dropped()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    /// Stops heartbeats and pub/sub and drops the connections without removing anything from
    /// Redis, as a crash would: the other nodes reap this one after `node_ttl`. For tests, and
    /// for a server that must fence itself off.
    pub fn abandon(&self) {
        self.inner.cancel.cancel();
        *lock(&self.inner.commands) = None;
        self.inner.mark_down("abandoned".to_owned());
    }
}

impl Inner {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub(crate) fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(crate) fn health_now(&self) -> Health {
        lock(&self.health).clone()
    }

    pub(crate) fn mark_down(&self, error: String) {
        let mut health = lock(&self.health);
        if matches!(*health, Health::Up { .. }) {
            tracing::warn!(%error, "redis is down");
            *health = Health::Down { since: SystemTime::now(), error };
        }
    }

    pub(crate) fn mark_up(&self, latency: Duration) {
        let mut health = lock(&self.health);
        if matches!(*health, Health::Down { .. }) {
            tracing::info!("redis is up again");
        }
        *health = Health::Up { latency };
    }

    /// Installs the command connection of a new generation (the supervisor, after a reconnect).
    pub(crate) fn set_commands(&self, commands: Commands) {
        *lock(&self.commands) = Some(commands);
    }

    /// The command connection, or `Unavailable::Down` at once while Redis is known to be down.
    fn commands(&self) -> Result<Commands, BrokerError> {
        if let Health::Down { since, .. } = *lock(&self.health) {
            return Err(Unavailable::Down { since }.into());
        }
        lock(&self.commands).clone().ok_or_else(|| Unavailable::Down { since: SystemTime::now() }.into())
    }

    /// The command connection even while Down (the supervisor probes with it).
    pub(crate) fn commands_unchecked(&self) -> Option<Commands> {
        lock(&self.commands).clone()
    }

    /// Bounds one call by the command timeout and sorts its failure. A lost connection marks
    /// Redis down and wakes the supervisor, which reconnects.
    async fn bounded<T>(
        &self,
        command: &'static str,
        call: impl std::future::Future<Output = RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        let after = self.config.command_timeout;
        match tokio::time::timeout(after, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => {
                let error = BrokerError::from_redis(command, source);
                if error.is_unavailable() {
                    self.mark_down(error_chain(&error));
                    self.receiver.connection_lost(self.generation());
                }
                Err(error)
            }
            Err(_) => Err(Unavailable::Timeout { command, after }.into()),
        }
    }

    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        command: &'static str,
        cmd: &Cmd,
    ) -> Result<T, BrokerError> {
        let mut commands = self.commands()?;
        self.bounded(command, commands.query(cmd)).await
    }

    pub(crate) async fn pipe<T: FromRedisValue>(
        &self,
        command: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T, BrokerError> {
        let mut commands = self.commands()?;
        self.bounded(command, commands.pipe(pipe)).await
    }

    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        command: &'static str,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, BrokerError> {
        let mut commands = self.commands()?;
        self.bounded(command, commands.invoke(invocation)).await
    }

    /// A command on a given connection, bounded but not gated by health (supervisor probes).
    pub(crate) async fn probe<T: FromRedisValue>(
        &self,
        commands: &mut Commands,
        command: &'static str,
        cmd: &Cmd,
    ) -> Result<T, BrokerError> {
        let after = self.config.command_timeout;
        match tokio::time::timeout(after, commands.query(cmd)).await {
            Ok(result) => result.map_err(|source| BrokerError::from_redis(command, source)),
            Err(_) => Err(Unavailable::Timeout { command, after }.into()),
        }
    }

    pub(crate) async fn publish(&self, app: &str, message: &Message) -> Result<(), BrokerError> {
        if !self.config.apps.iter().any(|served| served == app) {
            return Err(BrokerError::UnknownApp { app: app.to_owned() });
        }
        let envelope = Envelope {
            origin: self.config.node_id.as_str().into(),
            app: app.into(),
            message: std::borrow::Cow::Borrowed(message),
            sent_ms: crate::message::now_ms(),
        };
        let payload = envelope.encode().map_err(BrokerError::Encode)?;
        let published = if self.config.is_cluster() {
            let channel = self.keys.shard_channel(app, shard_of(message.routing_key(), self.config.shards));
            self.query::<()>("SPUBLISH", redis::cmd("SPUBLISH").arg(channel).arg(payload)).await
        } else {
            self.query::<()>("PUBLISH", redis::cmd("PUBLISH").arg(self.keys.pubsub(app)).arg(payload)).await
        };
        let counter = if published.is_ok() { &self.published } else { &self.publish_failures };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        published
    }
}

/// An error with its causes, for health reports and logs.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Locks a mutex that is never held across an await or a panic-prone call.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
