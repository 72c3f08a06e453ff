//! Removals that wait: a channel vacated, a member gone. Webhooks announce them only after a
//! delay, and not at all when the channel (or member) comes back meanwhile, on any node. The
//! node that sees the removal files it under a token; a node that sees the return takes it
//! back (and announces nothing either); when the delay is over the filer settles it, and
//! announces it only if it is still its own.

use std::time::Duration;

use crate::keys::check_name;
use crate::{Broker, BrokerError};

impl Broker {
    /// Files a removal of `subject` (a channel, or a channel and user) in `app` under `token`,
    /// replacing any earlier filing; it expires after `ttl` if never settled.
    pub async fn file_removal(
        &self,
        app: &str,
        subject: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        check_name("app", app)?;
        let key = self.inner.keys.pending_removal(app, subject);
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let cmd = redis::cmd("SET").arg(key).arg(token).arg("PX").arg(millis).to_owned();
        self.inner.query::<()>("SET", &cmd).await
    }

    /// A return of `subject`: takes back a removal filed for it. True when one was pending —
    /// then neither the removal nor the return is announced.
    pub async fn undo_removal(&self, app: &str, subject: &str) -> Result<bool, BrokerError> {
        check_name("app", app)?;
        let key = self.inner.keys.pending_removal(app, subject);
        let deleted: i64 = self.inner.query("DEL", redis::cmd("DEL").arg(key)).await?;
        Ok(deleted > 0)
    }

    /// The delay of a removal filed under `token` is over: true (and the filing cleared) when it
    /// is still this filing — nothing came back and no later removal replaced it.
    pub async fn settle_removal(&self, app: &str, subject: &str, token: &str) -> Result<bool, BrokerError> {
        check_name("app", app)?;
        let inner = &self.inner;
        let key = inner.keys.pending_removal(app, subject);
        let settled: i64 =
            inner.invoke("settle script", inner.scripts.settle_removal.key(key).arg(token)).await?;
        Ok(settled == 1)
    }
}
