//! The connections to Redis: `Commands` (one multiplexed connection, or a Redis Cluster
//! connection) and the subscriber connections (RESP3, one per Redis, or one per master owning
//! shard channels) whose pushes `Receiver` turns into `Inbound` messages.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue, IntoConnectionInfo,
    ProtocolVersion, PushInfo, PushKind, RedisResult, ScriptInvocation, Value,
};
use tokio::sync::mpsc;

use crate::keys::{slot_of, Keys};
use crate::message::Envelope;
use crate::{BrokerConfig, BrokerError, Inbound};

/// Where commands go: a single Redis or a Redis Cluster. Cheap to clone.
#[derive(Clone)]
pub(crate) enum Commands {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Commands {
    pub(crate) async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Self::Single(connection) => cmd.query_async(connection).await,
            Self::Cluster(connection) => cmd.query_async(connection).await,
        }
    }

    pub(crate) async fn pipe<T: FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> RedisResult<T> {
        match self {
            Self::Single(connection) => pipe.query_async(connection).await,
            Self::Cluster(connection) => pipe.query_async(connection).await,
        }
    }

    pub(crate) async fn invoke<T: FromRedisValue>(
        &mut self,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self {
            Self::Single(connection) => invocation.invoke_async(connection).await,
            Self::Cluster(connection) => invocation.invoke_async(connection).await,
        }
    }
}

/// Turns pushes of the subscriber connections into `Inbound` messages, and connection losses
/// into a wake-up of the supervisor. Shared by the push callbacks of every connection.
pub(crate) struct Receiver {
    node_id: String,
    /// How this node's own envelopes begin (`{"o":"<node id>",`): they are dropped unread.
    own_prefix: Vec<u8>,
    inbound: mpsc::Sender<Inbound>,
    dropped: AtomicU64,
    received: AtomicU64,
    lag_ms_sum: AtomicU64,
    lost: mpsc::Sender<u64>,
}

impl Receiver {
    pub(crate) fn new(node_id: String, inbound: mpsc::Sender<Inbound>, lost: mpsc::Sender<u64>) -> Self {
        let own_prefix =
            format!("{{\"o\":{},", serde_json::to_string(&node_id).unwrap_or_default()).into_bytes();
        Self {
            node_id,
            own_prefix,
            inbound,
            dropped: AtomicU64::new(0),
            received: AtomicU64::new(0),
            lag_ms_sum: AtomicU64::new(0),
            lost,
        }
    }

    /// Messages dropped because the `Inbound` channel was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Messages received from other nodes, and the sum of their lag in milliseconds.
    pub(crate) fn received(&self) -> (u64, u64) {
        (self.received.load(Ordering::Relaxed), self.lag_ms_sum.load(Ordering::Relaxed))
    }

    /// Hands a message to the server without waiting; counts it when the channel is full.
    pub(crate) fn offer(&self, inbound: Inbound) {
        if self.inbound.try_send(inbound).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands a message to the server, waiting for room (resyncs and reaped members).
    pub(crate) async fn deliver(&self, inbound: Inbound) {
        if self.inbound.send(inbound).await.is_err() {
            tracing::debug!("broker inbound receiver is gone");
        }
    }

    /// Tells the supervisor that a connection of `generation` is gone.
    pub(crate) fn connection_lost(&self, generation: u64) {
        // A full channel already holds a wake-up: nothing is lost by dropping this one.
        let _ = self.lost.try_send(generation);
    }

    fn on_push(&self, generation: u64, push: PushInfo) {
        match push.kind {
            PushKind::Message | PushKind::SMessage => self.on_message(&push.data),
            // The broker never unsubscribes: an unsubscribe push is the server dropping a
            // subscription (a slot moved away), so everything is subscribed again.
            PushKind::Disconnection | PushKind::Unsubscribe | PushKind::SUnsubscribe => {
                self.connection_lost(generation)
            }
            _ => {}
        }
    }

    fn on_message(&self, data: &[Value]) {
        let Some(Value::BulkString(payload)) = data.get(1) else {
            tracing::warn!("broker pub/sub message without a payload");
            return;
        };
        // Every node hears its own publications back: skip them without decoding.
        if payload.starts_with(&self.own_prefix) {
            return;
        }
        match Envelope::decode(payload) {
            Ok(envelope) if envelope.origin == self.node_id => {}
            Ok(envelope) => {
                self.received.fetch_add(1, Ordering::Relaxed);
                if envelope.sent_ms > 0 {
                    let lag = crate::message::now_ms().saturating_sub(envelope.sent_ms);
                    self.lag_ms_sum.fetch_add(lag, Ordering::Relaxed);
                }
                self.offer(Inbound::Message {
                    app: envelope.app.into_owned(),
                    message: envelope.message.into_owned(),
                })
            }
            Err(error) => tracing::warn!(%error, "undecodable broker message dropped"),
        }
    }
}

/// One generation of connections: commands and subscribers, opened together.
pub(crate) struct Link {
    pub(crate) commands: Commands,
    pub(crate) subscribers: Vec<MultiplexedConnection>,
}

/// Opens commands and subscriber connections and subscribes every app's channels.
pub(crate) async fn open(
    config: &BrokerConfig,
    keys: &Keys,
    receiver: &Arc<Receiver>,
    generation: u64,
) -> Result<Link, BrokerError> {
    let seeds = seed_infos(config)?;
    let seed = seeds.first().ok_or(BrokerError::NoUrl)?.clone();
    let connection_config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.command_timeout))
        .set_response_timeout(Some(config.command_timeout));
    let push_config = {
        let receiver = Arc::clone(receiver);
        connection_config.clone().set_push_sender(move |push: PushInfo| {
            receiver.on_push(generation, push);
            Ok::<(), std::convert::Infallible>(())
        })
    };
    let connect = |info: ConnectionInfo, with_pushes: bool| {
        let config = if with_pushes { push_config.clone() } else { connection_config.clone() };
        async move {
            let client = Client::open(info).map_err(|e| BrokerError::from_redis("connect", e))?;
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| BrokerError::from_redis("connect", e))
        }
    };

    if !config.is_cluster() {
        let commands = Commands::Single(connect(seed.clone(), false).await?);
        let mut subscriber = connect(seed, true).await?;
        for app in &config.apps {
            subscriber
                .subscribe(keys.pubsub(app))
                .await
                .map_err(|e| BrokerError::from_redis("SUBSCRIBE", e))?;
        }
        return Ok(Link { commands, subscribers: vec![subscriber] });
    }

    let client = redis::cluster::ClusterClient::builder(seeds.clone())
        .retries(1)
        .connection_timeout(config.command_timeout)
        .response_timeout(config.command_timeout)
        .build()
        .map_err(|source| BrokerError::Url { url: config.urls.join(","), source })?;
    let cluster = client.get_async_connection().await.map_err(|e| BrokerError::from_redis("connect", e))?;
    let mut commands = Commands::Cluster(cluster);
    let slots: Value = commands
        .query(redis::cmd("CLUSTER").arg("SLOTS"))
        .await
        .map_err(|e| BrokerError::from_redis("CLUSTER SLOTS", e))?;
    let owners = parse_cluster_slots(&slots)?;

    // Shard channels grouped by the master that owns their slot.
    let mut by_owner: BTreeMap<(String, u16), Vec<String>> = BTreeMap::new();
    for app in &config.apps {
        for shard in 0..config.shards.max(1) {
            let channel = keys.shard_channel(app, shard);
            let slot = slot_of(&channel);
            let owner = owners
                .iter()
                .find(|range| range.start <= slot && slot <= range.end)
                .ok_or(BrokerError::SlotUncovered { slot })?;
            by_owner.entry((owner.host.clone(), owner.port)).or_default().push(channel);
        }
    }
    let mut subscribers = Vec::with_capacity(by_owner.len());
    for ((host, port), channels) in by_owner {
        let info = seed.clone().set_addr(ConnectionAddr::Tcp(host, port));
        let mut subscriber = connect(info, true).await?;
        for channel in channels {
            // One channel per SSUBSCRIBE: its single confirmation is the command's reply.
            subscriber
                .send_packed_command(redis::cmd("SSUBSCRIBE").arg(&channel))
                .await
                .map_err(|e| BrokerError::from_redis("SSUBSCRIBE", e))?;
        }
        subscribers.push(subscriber);
    }
    Ok(Link { commands, subscribers })
}

/// The configured URLs as RESP3 connection infos (pushes need RESP3).
fn seed_infos(config: &BrokerConfig) -> Result<Vec<ConnectionInfo>, BrokerError> {
    if config.urls.is_empty() {
        return Err(BrokerError::NoUrl);
    }
    config
        .urls
        .iter()
        .map(|url| {
            let info = url
                .as_str()
                .into_connection_info()
                .map_err(|source| BrokerError::Url { url: url.clone(), source })?;
            let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
            Ok(info.set_redis_settings(settings))
        })
        .collect()
}

/// One range of `CLUSTER SLOTS`: slots `start..=end` served by the master `host:port`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SlotRange {
    pub(crate) start: u16,
    pub(crate) end: u16,
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// Reads `CLUSTER SLOTS`: `[[start, end, [host, port, id, ...], replicas...], ...]`.
pub(crate) fn parse_cluster_slots(reply: &Value) -> Result<Vec<SlotRange>, BrokerError> {
    let Value::Array(ranges) = reply else { return Err(BrokerError::ClusterSlots) };
    ranges
        .iter()
        .map(|range| {
            let Value::Array(parts) = range else { return Err(BrokerError::ClusterSlots) };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                return Err(BrokerError::ClusterSlots);
            };
            let host = match master.first() {
                Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
                Some(Value::SimpleString(text)) => text.clone(),
                _ => return Err(BrokerError::ClusterSlots),
            };
            let Some(Value::Int(port)) = master.get(1) else { return Err(BrokerError::ClusterSlots) };
            let number = |value: i64| u16::try_from(value).map_err(|_| BrokerError::ClusterSlots);
            Ok(SlotRange { start: number(*start)?, end: number(*end)?, host, port: number(*port)? })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Envelope, Message};
    use std::borrow::Cow;

    #[test]
    fn a_nodes_own_envelopes_are_recognised_before_decoding() {
        let (inbound, _inbound_rx) = mpsc::channel(1);
        let (lost, _lost_rx) = mpsc::channel(1);
        let receiver = Receiver::new("node \"7\"".into(), inbound, lost);
        let envelope = |origin: &'static str| Envelope {
            origin: Cow::Borrowed(origin),
            app: Cow::Borrowed("app"),
            message: Cow::Owned(Message::TerminateUser { user_id: "1".into() }),
            sent_ms: 1,
        };
        let own = envelope("node \"7\"").encode().expect("encodes");
        let other = envelope("node \"70\"").encode().expect("encodes");
        assert!(own.starts_with(&receiver.own_prefix));
        assert!(!other.starts_with(&receiver.own_prefix));
    }

    #[test]
    fn cluster_slots_reply_is_read() {
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(7000),
                Value::BulkString(b"abc".to_vec()),
            ]),
        ])]);
        assert_eq!(
            parse_cluster_slots(&reply).unwrap(),
            vec![SlotRange { start: 0, end: 5460, host: "127.0.0.1".into(), port: 7000 }]
        );
        assert!(parse_cluster_slots(&Value::Nil).is_err());
    }
}
