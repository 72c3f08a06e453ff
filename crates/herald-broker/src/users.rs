//! Cluster-wide signed-in users, for watchlist events: which users have a signed-in connection
//! on which node. One hash per app, user id → the number of nodes where the user is online, and
//! one set per (app, node) of the users online there, both in the app's slot so that one script
//! changes them together. A node counts a user once (the server tells it only about a user's
//! first and last socket on that node), so a dead node is cleared by its set alone.

use crate::broker::{error_chain, Inner};
use crate::keys::check_name;
use crate::{Broker, BrokerError, Inbound, Message};

impl Broker {
    /// `user_id` has a signed-in connection on this node now. True when they were online on no
    /// node before: the caller tells the watchers (here, and the others with `UserOnline`).
    pub async fn user_online(&self, app: &str, user_id: &str) -> Result<bool, BrokerError> {
        check_name("app", app)?;
        let inner = &self.inner;
        let node = &inner.config.node_id;
        let mut script = inner.scripts.user_online.key(inner.keys.online_users(app));
        script.key(inner.keys.node_users(app, node)).arg(user_id);
        let first: u8 = inner.invoke("user online script", &script).await?;
        Ok(first == 1)
    }

    /// `user_id`'s last signed-in connection on this node closed. True when they are online on
    /// no node any more: the caller tells the watchers (here, and the others with `UserOffline`).
    pub async fn user_offline(&self, app: &str, user_id: &str) -> Result<bool, BrokerError> {
        check_name("app", app)?;
        let inner = &self.inner;
        let node = &inner.config.node_id;
        let mut script = inner.scripts.user_offline.key(inner.keys.online_users(app));
        script.key(inner.keys.node_users(app, node)).arg(user_id);
        let last: u8 = inner.invoke("user offline script", &script).await?;
        Ok(last == 1)
    }

    /// Which of `user_ids` have a signed-in connection on some node.
    pub async fn online_users(&self, app: &str, user_ids: &[String]) -> Result<Vec<String>, BrokerError> {
        check_name("app", app)?;
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let counts: Vec<Option<u64>> =
            inner.query("HMGET", redis::cmd("HMGET").arg(inner.keys.online_users(app)).arg(user_ids)).await?;
        Ok(user_ids
            .iter()
            .zip(counts)
            .filter(|(_, count)| count.is_some_and(|count| count > 0))
            .map(|(user_id, _)| user_id.clone())
            .collect())
    }

    /// Makes this node's online users of `app` exactly `user_ids` (after [`Inbound::Resync`]).
    /// Users that came online or went offline everywhere are announced to the other nodes;
    /// returned as `(online, offline)` for the caller to tell this node's watchers.
    pub async fn restore_users(
        &self,
        app: &str,
        user_ids: &[String],
    ) -> Result<(Vec<String>, Vec<String>), BrokerError> {
        check_name("app", app)?;
        let inner = &self.inner;
        let (online, offline) = inner.set_node_users(&inner.config.node_id, app, user_ids).await?;
        for user_id in &online {
            inner.publish(app, &Message::UserOnline { user_id: user_id.clone() }).await?;
        }
        for user_id in &offline {
            inner.publish(app, &Message::UserOffline { user_id: user_id.clone() }).await?;
        }
        Ok((online, offline))
    }
}

impl Inner {
    async fn set_node_users(
        &self,
        node: &str,
        app: &str,
        user_ids: &[String],
    ) -> Result<(Vec<String>, Vec<String>), BrokerError> {
        let mut script = self.scripts.set_node_users.key(self.keys.online_users(app));
        script.key(self.keys.node_users(app, node));
        for user_id in user_ids {
            script.arg(user_id);
        }
        self.invoke("node users script", &script).await
    }

    /// Clears `node`'s online users in every app (a dead node, or this one saying goodbye) and
    /// announces the users now offline everywhere: to the other nodes, and to this node's own
    /// server when `here`.
    pub(crate) async fn forget_node_users(
        &self,
        node: &str,
        apps: &[String],
        here: bool,
    ) -> Result<(), BrokerError> {
        for app in apps {
            let (_, offline) = self.set_node_users(node, app, &[]).await?;
            for user_id in offline {
                let message = Message::UserOffline { user_id };
                if let Err(error) = self.publish(app, &message).await {
                    tracing::warn!(app, error = %error_chain(&error), "watchlist offline not published");
                }
                if here {
                    self.receiver.deliver(Inbound::Message { app: app.clone(), message }).await;
                }
            }
        }
        Ok(())
    }
}
