//! The background task of one broker: a heartbeat (and a look for dead nodes) every
//! `heartbeat`, and reconnection with backoff (100 ms doubling to 5 s) whenever a connection is
//! lost, followed by `Inbound::Resync`.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::broker::{error_chain, Inner};
use crate::{link, BrokerError, Inbound, Unavailable};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until the broker is cancelled (shutdown, abandon, or the last handle dropped).
pub(crate) async fn run(
    inner: Arc<Inner>,
    mut subscribers: Vec<MultiplexedConnection>,
    mut lost: mpsc::Receiver<u64>,
) {
    let mut tick = tokio::time::interval(inner.config.heartbeat);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await; // connect wrote the first heartbeat
    loop {
        let failure = tokio::select! {
            () = inner.cancel.cancelled() => return,
            Some(generation) = lost.recv() => {
                if generation != inner.generation() {
                    continue; // a connection of an earlier generation, already replaced
                }
                "a redis connection was lost".to_owned()
            }
            _ = tick.tick() => match beat(&inner, &mut subscribers).await {
                Ok(()) => continue,
                Err(error) => error_chain(&error),
            },
        };
        inner.mark_down(failure);
        subscribers.clear();
        match reconnect(&inner).await {
            Some(fresh) => subscribers = fresh,
            None => return,
        }
        tick.reset();
        resync(&inner);
    }
}

/// One tick: the subscribers answer, the heartbeat is written, dead nodes are looked for.
async fn beat(inner: &Arc<Inner>, subscribers: &mut [MultiplexedConnection]) -> Result<(), BrokerError> {
    let after = inner.config.command_timeout;
    for subscriber in subscribers.iter_mut() {
        match tokio::time::timeout(after, subscriber.send_packed_command(&redis::cmd("PING"))).await {
            Ok(Ok(_)) => {}
            Ok(Err(source)) => return Err(BrokerError::from_redis("PING", source)),
            Err(_) => return Err(Unavailable::Timeout { command: "PING", after }.into()),
        }
    }
    let mut commands =
        inner.commands_unchecked().ok_or(Unavailable::Timeout { command: "heartbeat", after })?;
    let was_alive = inner.beat(&mut commands).await?;
    if !was_alive {
        tracing::warn!("this node's liveness key had expired (redis lost it, or the node was presumed dead)");
        resync(inner);
    }
    inner.look_for_dead_nodes();
    Ok(())
}

/// Reconnects with backoff until it succeeds (`Some`) or the broker is cancelled (`None`).
async fn reconnect(inner: &Arc<Inner>) -> Option<Vec<MultiplexedConnection>> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        tokio::select! {
            () = inner.cancel.cancelled() => return None,
            () = tokio::time::sleep(backoff) => {}
        }
        let generation = inner.next_generation();
        match link::open(&inner.config, &inner.keys, &inner.receiver, generation).await {
            Ok(link) => {
                let mut commands = link.commands.clone();
                inner.set_commands(link.commands);
                // The heartbeat marks Redis up; whether our liveness key survived does not
                // matter, a resync follows anyway.
                match inner.beat(&mut commands).await {
                    Ok(_) => {
                        tracing::info!(generation, "redis connections restored");
                        return Some(link.subscribers);
                    }
                    Err(error) => {
                        tracing::debug!(error = %error_chain(&error), "heartbeat after reconnect failed")
                    }
                }
            }
            Err(error) => tracing::debug!(error = %error_chain(&error), "reconnect failed"),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Tells the server to restore its state, without blocking the supervisor on a full channel.
fn resync(inner: &Arc<Inner>) {
    let receiver = Arc::clone(&inner.receiver);
    tokio::spawn(async move { receiver.deliver(Inbound::Resync).await });
}
