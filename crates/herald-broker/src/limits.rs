//! Cluster-wide limits: connections per app (one hash field per node, checked and counted by one
//! script) and the API rate (a per-app per-second counter).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::keys::check_name;
use crate::{Broker, BrokerError};

impl Broker {
    /// Counts a new connection of `app` on this node unless the app's cluster-wide total has
    /// reached `max`. `false` means refused, and nothing was counted.
    pub async fn connection_opened(&self, app: &str, max: Option<u64>) -> Result<bool, BrokerError> {
        check_name("app", app)?;
        let inner = &self.inner;
        if !inner.config.apps.iter().any(|served| served == app) {
            // Reaping clears a dead node's counts in every app of this set.
            inner.query::<()>("SADD", redis::cmd("SADD").arg(inner.keys.apps()).arg(app)).await?;
        }
        let max = max.map_or(-1, |max| i64::try_from(max).unwrap_or(i64::MAX));
        let counted: i64 = inner
            .invoke(
                "connection script",
                inner
                    .scripts
                    .connection_opened
                    .key(inner.keys.connections(app))
                    .arg(&inner.config.node_id)
                    .arg(max),
            )
            .await?;
        Ok(counted == 1)
    }

    /// Uncounts a connection of `app` on this node (one that `connection_opened` admitted).
    pub async fn connection_closed(&self, app: &str) -> Result<(), BrokerError> {
        check_name("app", app)?;
        let inner = &self.inner;
        inner
            .invoke::<()>(
                "connection script",
                inner.scripts.connection_closed.key(inner.keys.connections(app)).arg(&inner.config.node_id),
            )
            .await
    }

    /// Admits one HTTP API request of `app` if the app's cluster-wide count for the current
    /// second stays within `per_second`.
    pub async fn admit_api_request(&self, app: &str, per_second: u32) -> Result<bool, BrokerError> {
        check_name("app", app)?;
        let second = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
        let key = self.inner.keys.api_rate(app, second);
        let mut pipe = redis::pipe();
        pipe.atomic().incr(&key, 1).expire(&key, 2).ignore();
        let (count,): (u64,) = self.inner.pipe("INCR", &pipe).await?;
        Ok(count <= u64::from(per_second))
    }
}
