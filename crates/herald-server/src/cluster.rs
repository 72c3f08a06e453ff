//! This node's part in a cluster of nodes (`[cluster] redis_url`): the broker's connection, the
//! loop that feeds other nodes' publications and presence changes into this node's hubs, and
//! the re-registration of this node's sockets when Redis lost them (a Redis restart, or this
//! node presumed dead during an outage).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use herald_broker::{Broker, BrokerConfig, Inbound, Message, Registration};
use herald_protocol::ChannelName;
use tokio::sync::mpsc::Receiver;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::state::SharedState;
use crate::tenant::{Change, Tenant};

/// Connects to Redis when the cluster is on; `None` for one node.
pub(crate) async fn connect(
    config: &Config,
    node: u64,
    address: SocketAddr,
) -> anyhow::Result<Option<(Broker, Receiver<Inbound>)>> {
    let cluster = &config.cluster;
    if !cluster.enabled() {
        return Ok(None);
    }
    let broker_config = BrokerConfig {
        urls: cluster.urls(),
        cluster: cluster.redis_cluster,
        prefix: cluster.prefix.clone(),
        node_id: node.to_string(),
        address: advertised(address),
        apps: config.apps.iter().map(|app| app.id.clone()).collect(),
        heartbeat: Duration::from_secs(cluster.heartbeat_secs),
        node_ttl: Duration::from_secs(cluster.node_ttl_secs),
        shards: cluster.shards,
        ..BrokerConfig::new(String::new(), String::new(), Vec::new())
    };
    let urls = cluster.urls().iter().map(|url| crate::redact_url(url)).collect::<Vec<_>>().join(",");
    let connected =
        Broker::connect(broker_config).await.with_context(|| format!("cannot reach Redis at {urls}"))?;
    info!(node, redis = %urls, "joined the cluster");
    Ok(Some(connected))
}

/// Applies what other nodes send until shutdown, and reports this node's connections to the
/// heartbeat every second.
pub(crate) async fn follow(state: SharedState, broker: Broker, mut inbound: Receiver<Inbound>) {
    let shutdown = state.lifecycle().shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => broker.set_connections(state.tenants().connections() as u64),
            received = inbound.recv() => match received {
                Some(Inbound::Message { app, message }) => match state.tenants().by_id(&app) {
                    Some(tenant) => apply(tenant, message),
                    None => debug!(app, "a message for an app this node does not serve"),
                },
                Some(Inbound::Resync) => restore(&state, &broker).await,
                Some(Inbound::Reaped { app, channel, user_id, left }) => {
                    if let (Some(tenant), Ok(channel)) =
                        (state.tenants().by_id(&app), ChannelName::parse(&channel, usize::MAX))
                    {
                        let change = Change { subscription_count: left.subscription_count, user_changed: left.last_for_user };
                        Box::pin(tenant.reaped(&channel, user_id.as_deref(), change)).await;
                    }
                }
                None => return,
            },
        }
    }
}

/// One message from another node, delivered to this node's sockets.
fn apply(tenant: &Tenant, message: Message) {
    match message {
        Message::Event { channel, event, data, except, user_id } => {
            if let Ok(channel) = ChannelName::parse(&channel, usize::MAX) {
                tenant.deliver(&channel, &event, &data, except.as_deref(), user_id.as_deref());
            }
        }
        Message::MemberAdded { channel, user_id, user_info } => {
            let info = serde_json::from_str(&user_info).unwrap_or(serde_json::Value::Null);
            let frame = herald_hub::member_added(&channel, &user_id, &info);
            tenant.hub.send_to_channel(&channel, &frame, None);
        }
        Message::MemberRemoved { channel, user_id } => {
            let frame = herald_hub::member_removed(&channel, &user_id);
            tenant.hub.send_to_channel(&channel, &frame, None);
        }
        Message::TerminateUser { user_id } => {
            tenant.hub.terminate_user(&user_id);
        }
        Message::SubscriptionCount { channel, subscription_count } => {
            tenant.deliver_count(&channel, subscription_count);
        }
        Message::UserOnline { user_id } => {
            tenant.hub.tell_watchers(&user_id, true);
        }
        Message::UserOffline { user_id } => {
            tenant.hub.tell_watchers(&user_id, false);
        }
        // Every node keeps a cache channel's last event from the `Event` itself.
        Message::CacheEvent { .. } => {}
    }
}

/// Registers every socket of this node again (Redis lost them), with the apps' connections.
async fn restore(state: &SharedState, broker: &Broker) {
    let mut registrations = Vec::new();
    let mut connections = Vec::new();
    for tenant in state.tenants().all() {
        let app = &tenant.config.id;
        connections.push((app.clone(), tenant.hub.connections() as u64));
        registrations.extend(tenant.hub.registrations().into_iter().map(|registration| Registration {
            app: app.clone(),
            channel: registration.channel,
            socket_id: registration.socket_id,
            member: registration.member.map(|(user_id, info)| (user_id, info.to_string())),
        }));
    }
    match broker.restore(&registrations, &connections).await {
        Ok(()) => {
            info!(subscriptions = registrations.len(), "registered this node's sockets with Redis again")
        }
        Err(error) => {
            warn!(%error, "cannot register this node's sockets with Redis yet; retrying on the next resync");
            return;
        }
    }
    for tenant in state.tenants().all() {
        let users: Vec<String> =
            tenant.hub.signed_in_users().into_iter().map(|(user_id, _)| user_id).collect();
        match broker.restore_users(&tenant.config.id, &users).await {
            Ok((online, offline)) => {
                for user_id in online {
                    tenant.hub.tell_watchers(&user_id, true);
                }
                for user_id in offline {
                    tenant.hub.tell_watchers(&user_id, false);
                }
            }
            Err(error) => warn!(%error, "cannot register this node's signed-in users with Redis yet"),
        }
    }
}

/// The address other nodes and operators see for this node: the host name when the listener
/// is on every address.
fn advertised(address: SocketAddr) -> String {
    if !address.ip().is_unspecified() {
        return address.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", address.port())
}
