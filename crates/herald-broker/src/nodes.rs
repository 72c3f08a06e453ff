//! Nodes: heartbeats, the registry, reaping dead nodes, restore after a resync, and goodbye.
//!
//! A node is dead when its liveness key (`SET … PX node_ttl` on every heartbeat) is gone. Every
//! node looks at the registry on each tick; exactly one survivor claims a dead node
//! (`SET reaping NX PX`), runs the leave script for each of its registrations and publishes
//! `MemberRemoved` for every user whose last socket was there, to every node including itself.
//! The leave script reports a user's departure once however often it runs, so racing reapers
//! (or a reaper and a returning node) never announce one twice.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::broker::Inner;
use crate::link::Commands;
use crate::presence::{parse_registration_field, registration_field};
use crate::{Broker, BrokerError, Inbound, Member, Message, Registration};

/// How long a reaped node's tombstone stays, telling it to announce its members when it returns.
const TOMBSTONE: Duration = Duration::from_secs(600);

/// A node as the registry reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node id.
    pub id: String,
    /// The address it reports.
    pub address: String,
    /// Its connections, as of its last heartbeat.
    pub connections: u64,
    /// Its last heartbeat, milliseconds since the Unix epoch.
    pub last_heartbeat: u64,
}

impl Broker {
    /// Every node in the registry, sorted by id (a dead node stays until it is reaped).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, BrokerError> {
        let inner = &self.inner;
        let registry: HashMap<String, String> =
            inner.query("HGETALL", redis::cmd("HGETALL").arg(inner.keys.nodes())).await?;
        let mut nodes: Vec<NodeInfo> = registry
            .values()
            .filter_map(|json| match serde_json::from_str(json) {
                Ok(node) => Some(node),
                Err(error) => {
                    tracing::warn!(%error, "unreadable node registry entry");
                    None
                }
            })
            .collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    /// This node's connection count, reported in the next heartbeat.
    pub fn set_connections(&self, connections: u64) {
        self.inner.connections.store(connections, Ordering::Relaxed);
    }

    /// Re-registers this node's whole local state after [`Inbound::Resync`]: every
    /// subscription, and every app's connection count on this node. Registrations Redis still
    /// holds for this node but the server no longer has are removed (announcing users that
    /// are gone). After this node was reaped, users that are back are announced with
    /// `MemberAdded` to the other nodes.
    pub async fn restore(
        &self,
        registrations: &[Registration],
        connections: &[(String, u64)],
    ) -> Result<(), BrokerError> {
        self.inner.restore(registrations, connections).await
    }

    /// Goodbye on graceful shutdown: stops heartbeats, removes this node's registrations
    /// (publishing `MemberRemoved` for users that are gone), its connection counts and its
    /// registry entry. Errors are logged: the node is leaving either way, and reaping covers
    /// what a failed goodbye leaves behind.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        if let Err(error) = self.inner.goodbye().await {
            tracing::warn!(error = %crate::broker::error_chain(&error), "broker goodbye failed; the node will be reaped");
        }
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Inner {
    /// Writes this node's liveness key and registry entry. Returns whether the liveness key was
    /// still there: `false` after a Redis restart, or when this node was presumed dead.
    pub(crate) async fn beat(&self, commands: &mut Commands) -> Result<bool, BrokerError> {
        let node = &self.config.node_id;
        let started = Instant::now();
        let previous: Option<String> = self
            .probe(
                commands,
                "SET",
                redis::cmd("SET")
                    .arg(self.keys.alive(node))
                    .arg(node)
                    .arg("PX")
                    .arg(millis(self.config.node_ttl))
                    .arg("GET"),
            )
            .await?;
        let latency = started.elapsed();
        let info = NodeInfo {
            id: node.clone(),
            address: self.config.address.clone(),
            connections: self.connections.load(Ordering::Relaxed),
            last_heartbeat: now_millis(),
        };
        let info = serde_json::to_string(&info).map_err(BrokerError::Encode)?;
        self.probe::<()>(commands, "HSET", redis::cmd("HSET").arg(self.keys.nodes()).arg(node).arg(info))
            .await?;
        self.mark_up(latency);
        Ok(previous.is_some())
    }

    /// The first heartbeat, at connect.
    pub(crate) async fn heartbeat(&self) -> Result<(), BrokerError> {
        let mut commands =
            self.commands_unchecked().ok_or(crate::Unavailable::Down { since: SystemTime::now() })?;
        self.beat(&mut commands).await.map(|_| ())
    }

    /// Starts a look for dead nodes unless one is running on this node.
    pub(crate) fn look_for_dead_nodes(self: &Arc<Self>) {
        if self.reaping.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(error) = inner.reap_dead_nodes().await {
                tracing::warn!(error = %crate::broker::error_chain(&error), "looking for dead nodes failed");
            }
            inner.reaping.store(false, Ordering::SeqCst);
        });
    }

    async fn reap_dead_nodes(&self) -> Result<(), BrokerError> {
        let registry: HashMap<String, String> =
            self.query("HGETALL", redis::cmd("HGETALL").arg(self.keys.nodes())).await?;
        for node in registry.keys().filter(|node| **node != self.config.node_id) {
            let alive: bool = self.query("EXISTS", redis::cmd("EXISTS").arg(self.keys.alive(node))).await?;
            if !alive {
                self.reap(node).await?;
            }
        }
        Ok(())
    }

    /// Removes a dead node, if this node wins the claim on it.
    pub(crate) async fn reap(&self, node: &str) -> Result<(), BrokerError> {
        let claim = self.keys.reaping(node);
        let claimed: Option<String> = self
            .query(
                "SET",
                redis::cmd("SET")
                    .arg(&claim)
                    .arg(&self.config.node_id)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(self.config.node_ttl.max(Duration::from_secs(10)))),
            )
            .await?;
        if claimed.is_none() {
            return Ok(());
        }
        let alive: bool = self.query("EXISTS", redis::cmd("EXISTS").arg(self.keys.alive(node))).await?;
        if alive {
            self.query::<()>("DEL", redis::cmd("DEL").arg(&claim)).await?;
            return Ok(());
        }
        tracing::info!(node, "reaping a dead node");
        let registrations: HashMap<String, String> =
            self.query("HGETALL", redis::cmd("HGETALL").arg(self.keys.registrations(node))).await?;
        let mut gone = 0_usize;
        for field in registrations.keys() {
            let Some((app, channel, socket_id)) = parse_registration_field(field) else {
                tracing::warn!(node, "unreadable registration skipped");
                continue;
            };
            let removal = self.remove(node, &app, &channel, &socket_id).await?;
            if removal.left.last_for_user || removal.left.subscription_count == 0 {
                let user_id = (!removal.user_id.is_empty()).then(|| removal.user_id.clone());
                let reaped = Inbound::Reaped {
                    app: app.clone(),
                    channel: channel.clone(),
                    user_id,
                    left: removal.left,
                };
                self.receiver.deliver(reaped).await;
            }
            if removal.left.last_for_user {
                gone += 1;
                self.member_gone(&app, channel, removal.user_id, true).await;
            }
        }
        self.forget_node_counts(node).await?;
        let apps: Vec<String> = self.query("SMEMBERS", redis::cmd("SMEMBERS").arg(self.keys.apps())).await?;
        self.forget_node_users(node, &apps, true).await?;
        self.query::<()>(
            "SET",
            redis::cmd("SET")
                .arg(self.keys.reaped(node))
                .arg(&self.config.node_id)
                .arg("PX")
                .arg(millis(TOMBSTONE)),
        )
        .await?;
        self.query::<()>("DEL", redis::cmd("DEL").arg(self.keys.registrations(node))).await?;
        self.query::<()>("HDEL", redis::cmd("HDEL").arg(self.keys.nodes()).arg(node)).await?;
        self.query::<()>("DEL", redis::cmd("DEL").arg(&claim)).await?;
        tracing::info!(node, registrations = registrations.len(), users_gone = gone, "dead node reaped");
        Ok(())
    }

    /// Removes `node`'s share of every app's connection count.
    async fn forget_node_counts(&self, node: &str) -> Result<(), BrokerError> {
        let apps: Vec<String> = self.query("SMEMBERS", redis::cmd("SMEMBERS").arg(self.keys.apps())).await?;
        for app in apps {
            self.query::<()>("HDEL", redis::cmd("HDEL").arg(self.keys.connections(&app)).arg(node)).await?;
        }
        Ok(())
    }

    /// Announces that a user's last socket left `channel`: to the other nodes, and to this
    /// node's own server when `here` (its clients need the event too).
    async fn member_gone(&self, app: &str, channel: String, user_id: String, here: bool) {
        let message = Message::MemberRemoved { channel, user_id };
        if let Err(error) = self.publish(app, &message).await {
            tracing::warn!(app, error = %crate::broker::error_chain(&error), "member_removed not published");
        }
        if here {
            self.receiver.deliver(Inbound::Message { app: app.to_owned(), message }).await;
        }
    }

    async fn restore(
        &self,
        registrations: &[Registration],
        connections: &[(String, u64)],
    ) -> Result<(), BrokerError> {
        let node = &self.config.node_id;
        // A survivor may be reaping this node right now: let it finish first.
        let deadline = Instant::now() + self.config.node_ttl.max(Duration::from_secs(10));
        while self.query::<bool>("EXISTS", redis::cmd("EXISTS").arg(self.keys.reaping(node))).await?
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let reaped: u64 = self.query("DEL", redis::cmd("DEL").arg(self.keys.reaped(node))).await?;

        let wanted: HashSet<String> = registrations
            .iter()
            .map(|registration| {
                registration_field(&registration.app, &registration.channel, &registration.socket_id)
            })
            .collect();
        let held: HashMap<String, String> =
            self.query("HGETALL", redis::cmd("HGETALL").arg(self.keys.registrations(node))).await?;
        for field in held.keys().filter(|field| !wanted.contains(*field)) {
            if let Some((app, channel, socket_id)) = parse_registration_field(field) {
                let removal = self.remove(node, &app, &channel, &socket_id).await?;
                if removal.left.last_for_user {
                    self.member_gone(&app, channel, removal.user_id, true).await;
                }
            }
            self.query::<()>("HDEL", redis::cmd("HDEL").arg(self.keys.registrations(node)).arg(field))
                .await?;
        }

        for registration in registrations {
            let member =
                registration.member.as_ref().map(|(user_id, user_info)| Member { user_id, user_info });
            let joined =
                self.join(&registration.app, &registration.channel, &registration.socket_id, member).await?;
            if let (true, true, Some((user_id, user_info))) =
                (reaped > 0, joined.first_for_user, &registration.member)
            {
                let message = Message::MemberAdded {
                    channel: registration.channel.clone(),
                    user_id: user_id.clone(),
                    user_info: user_info.clone(),
                };
                self.publish(&registration.app, &message).await?;
            }
        }

        let mut apps: HashSet<String> =
            self.query("SMEMBERS", redis::cmd("SMEMBERS").arg(self.keys.apps())).await?;
        apps.extend(self.config.apps.iter().cloned());
        apps.extend(connections.iter().map(|(app, _)| app.clone()));
        for app in &apps {
            let count = connections.iter().find(|(named, _)| named == app).map_or(0, |(_, count)| *count);
            let key = self.keys.connections(app);
            if count == 0 {
                self.query::<()>("HDEL", redis::cmd("HDEL").arg(key).arg(node)).await?;
            } else {
                self.query::<()>("HSET", redis::cmd("HSET").arg(key).arg(node).arg(count)).await?;
            }
        }
        if !apps.is_empty() {
            let apps: Vec<String> = apps.into_iter().collect();
            self.query::<()>("SADD", redis::cmd("SADD").arg(self.keys.apps()).arg(apps)).await?;
        }
        Ok(())
    }

    async fn goodbye(&self) -> Result<(), BrokerError> {
        let node = &self.config.node_id;
        let held: HashMap<String, String> =
            self.query("HGETALL", redis::cmd("HGETALL").arg(self.keys.registrations(node))).await?;
        for field in held.keys() {
            if let Some((app, channel, socket_id)) = parse_registration_field(field) {
                let removal = self.remove(node, &app, &channel, &socket_id).await?;
                if removal.left.last_for_user {
                    self.member_gone(&app, channel, removal.user_id, false).await;
                }
            }
        }
        self.forget_node_counts(node).await?;
        let apps: Vec<String> = self.query("SMEMBERS", redis::cmd("SMEMBERS").arg(self.keys.apps())).await?;
        self.forget_node_users(node, &apps, false).await?;
        self.query::<()>("DEL", redis::cmd("DEL").arg(self.keys.registrations(node))).await?;
        self.query::<()>("HDEL", redis::cmd("HDEL").arg(self.keys.nodes()).arg(node)).await?;
        self.query::<()>("DEL", redis::cmd("DEL").arg(self.keys.alive(node))).await?;
        Ok(())
    }
}
