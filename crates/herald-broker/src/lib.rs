//! The Redis half of a Herald cluster: several nodes share one Redis (or Redis Cluster) so that
//! every publication reaches subscribers on every node exactly once, presence, subscription
//! counts and app limits are cluster-wide, dead nodes are reaped, and Redis outages surface as
//! [`BrokerError::Unavailable`] and heal by themselves. No axum, no server types: the server
//! wires a [`Broker`] behind its one publish function and feeds [`Inbound`] into its hubs.
//!
//! # Design
//!
//! **Pub/sub.** A single Redis carries one plain channel per app, `{prefix}:{app}`
//! (PUBLISH/SUBSCRIBE). Redis Cluster carries `shards` sharded channels per app,
//! `{prefix:app:shard:N}` (SPUBLISH/SSUBSCRIBE), each its own hash tag so they spread over the
//! masters; a Pusher channel (or, for `TerminateUser`, a user id) picks its shard by FNV-1a, so
//! one channel's traffic touches one Redis shard. Every node subscribes every shard of every
//! configured app at connect, on one RESP3 connection per master that owns some (found with
//! `CLUSTER SLOTS` and the CRC16 slot of each channel name). Messages are compact JSON envelopes
//! `{"o": origin node, "a": app, "m": message}`; a node drops its own. The [`Inbound`] channel
//! is bounded: when the server falls behind, messages are dropped and counted
//! ([`Broker::dropped`]), never queued without bound.
//!
//! **Keys** (all under `prefix`; `{…}` is the Redis Cluster hash tag):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{p:app:channel}:sockets` | hash | `node/socket_id` → user id, or "" |
//! | `{p:app:channel}:users` | hash | user id → that user's sockets in the channel, cluster-wide |
//! | `{p:app:channel}:info` | hash | user id → user info (JSON text) |
//! | `{p:app}:channels` | set | the app's occupied channels |
//! | `{p:app}:connections` | hash | node id → the app's open connections on that node |
//! | `{p:app}:rate:SECOND` | string | API requests in that second (INCR, EXPIRE 2) |
//! | `{p:app}:removal:SUBJECT` | string | a webhook removal waiting out its delay: the filer's token (PX) |
//! | `{p:app}:online` | hash | user id → nodes where the user has a signed-in connection |
//! | `{p:app}:online:node:ID` | set | users with a signed-in connection on node ID |
//! | `{p}:apps` | set | every app any node served |
//! | `{p}:nodes` | hash | node id → [`NodeInfo`] JSON (the registry) |
//! | `{p:node:ID}:alive` | string | liveness, `SET … PX node_ttl` every heartbeat |
//! | `{p:node:ID}:registrations` | hash | `[app, channel, socket_id]` JSON → user id, or "" |
//! | `{p:node:ID}:reaping` | string | the claim of the one survivor reaping ID (`SET NX PX`) |
//! | `{p:node:ID}:reaped` | string | tombstone: ID was reaped, announce members on restore |
//!
//! **Scripts.** `join` and `leave` change the three hashes of one channel atomically (one
//! slot) and answer first/last-for-user and the counts; `leave` reads the socket's user from
//! the sockets hash, so running it twice for one socket reports nothing the second time. The
//! channel index and the node's registrations are in other slots and are written in an order
//! that keeps them right: the registration before the join script (a node dying in between
//! leaves nothing the reaper cannot find), the index after it; a leave that empties a channel
//! removes it from the index, then puts it back if a socket joined meanwhile. The connection
//! script sums the app's per-node counts and increments this node's only below the maximum.
//!
//! **Heartbeats and reaping.** Every `heartbeat` a node sets its liveness key (PX `node_ttl`,
//! with GET: a missing previous value means Redis lost it or this node was presumed dead, and
//! the server gets [`Inbound::Resync`]) and its registry entry, then looks at the registry: a
//! node whose liveness key is gone is dead. One survivor claims it, runs `leave` for each of its
//! registrations, publishes `MemberRemoved` for each user whose last socket was there to every
//! node including itself, clears its connection counts, leaves a tombstone and deletes its
//! records; its signed-in users are cleared too, and users online nowhere else are announced
//! (`UserOffline`). A dead node's registrations are gone at most `node_ttl + heartbeat` after its last
//! heartbeat (plus the reap's own run time).
//!
//! **Outages.** Every command is bounded by `command_timeout`. A lost connection marks the
//! broker Down ([`Health::Down`]); calls then fail at once with [`Unavailable::Down`] while the
//! supervisor reconnects with backoff (100 ms doubling to 5 s), resubscribes, writes a
//! heartbeat (health is Up again) and sends [`Inbound::Resync`]; the server answers with
//! [`Broker::restore`].

mod broker;
mod config;
mod error;
mod keys;
mod limits;
mod link;
mod message;
mod nodes;
mod presence;
mod removals;
mod scripts;
mod supervisor;
mod users;

pub use broker::{Broker, BrokerStats, Health};
pub use config::BrokerConfig;
pub use error::{BrokerError, Unavailable};
pub use message::{Inbound, Message};
pub use nodes::NodeInfo;
pub use presence::{ChannelCounts, Joined, Left, Member, Registration};
