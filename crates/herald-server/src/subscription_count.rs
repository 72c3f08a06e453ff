//! Subscription counting (`subscription_count = true`): when to send a channel's subscribers
//! `pusher_internal:subscription_count`. Channels of up to `EVERY_CHANGE_UP_TO` subscribers
//! hear every change at once; bigger ones at most once per `LARGE_CHANNEL_INTERVAL`, and the
//! last value of a burst is always sent when the interval is over (a per-channel trailing timer).
//! Only channels above the threshold, or with a timer armed, keep an entry: memory is bounded by
//! the large channels, and an entry goes when its channel drops to the threshold or empties.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Channels with at most this many subscribers hear every change of their count.
pub(crate) const EVERY_CHANGE_UP_TO: u64 = 100;
/// Bigger channels hear their count at most this often (and always the last one).
pub(crate) const LARGE_CHANNEL_INTERVAL: Duration = Duration::from_secs(5);

/// What to do about one change of a channel's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Send this count now.
    Send(u64),
    /// Arm the channel's timer for this instant; then ask `due`.
    Later(Instant),
    /// Nothing now: the channel is empty, or its armed timer will send the latest count.
    Wait,
}

/// The rate state of the large channels of one app.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionCounts {
    channels: Mutex<HashMap<String, Pacing>>,
}

#[derive(Debug)]
struct Pacing {
    last_sent: Instant,
    /// The latest count not sent yet; the armed timer sends it.
    pending: Option<u64>,
    timer_armed: bool,
}

impl SubscriptionCounts {
    /// `channel` now has `count` subscriptions (at `now`): send, wait for the timer, or arm it.
    pub(crate) fn changed(&self, channel: &str, count: u64, now: Instant) -> Decision {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if count <= EVERY_CHANGE_UP_TO {
            match channels.get_mut(channel) {
                // The armed timer finds nothing to send and removes the entry.
                Some(pacing) if pacing.timer_armed => {
                    pacing.pending = None;
                    pacing.last_sent = now;
                }
                Some(_) => {
                    channels.remove(channel);
                }
                None => {}
            }
            return if count == 0 { Decision::Wait } else { Decision::Send(count) };
        }
        match channels.entry(channel.to_owned()) {
            Entry::Vacant(slot) => {
                slot.insert(Pacing { last_sent: now, pending: None, timer_armed: false });
                Decision::Send(count)
            }
            Entry::Occupied(mut slot) => {
                let pacing = slot.get_mut();
                if pacing.timer_armed {
                    pacing.pending = Some(count);
                    return Decision::Wait;
                }
                let due = pacing.last_sent + LARGE_CHANNEL_INTERVAL;
                if now >= due {
                    pacing.last_sent = now;
                    Decision::Send(count)
                } else {
                    pacing.pending = Some(count);
                    pacing.timer_armed = true;
                    Decision::Later(due)
                }
            }
        }
    }

    /// The timer armed by `Decision::Later` fired: the count to send, if one is still pending.
    pub(crate) fn due(&self, channel: &str, now: Instant) -> Option<u64> {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let pacing = channels.get_mut(channel)?;
        pacing.timer_armed = false;
        match pacing.pending.take() {
            Some(count) => {
                pacing.last_sent = now;
                Some(count)
            }
            None => {
                channels.remove(channel);
                None
            }
        }
    }

    /// Channels with rate state (for tests: memory stays bounded).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.channels.lock().expect("not poisoned in tests").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_channels_hear_every_change_and_keep_no_state() {
        let counts = SubscriptionCounts::default();
        let now = Instant::now();
        for count in [1, 2, 3, 100, 99] {
            assert_eq!(counts.changed("news", count, now), Decision::Send(count));
        }
        assert_eq!(counts.changed("news", 0, now), Decision::Wait, "nobody left to tell");
        assert_eq!(counts.tracked(), 0);
    }

    #[test]
    fn large_channels_hear_at_most_once_per_interval_and_always_the_last_count() {
        let counts = SubscriptionCounts::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(counts.changed("big", 101, at(0)), Decision::Send(101), "the first change goes out");
        let due = at(0) + LARGE_CHANNEL_INTERVAL;
        assert_eq!(counts.changed("big", 102, at(10)), Decision::Later(due));
        assert_eq!(counts.changed("big", 103, at(20)), Decision::Wait, "the timer is armed");
        assert_eq!(counts.changed("big", 104, at(30)), Decision::Wait);
        assert_eq!(counts.due("big", due), Some(104), "the trailing count");
        assert_eq!(
            counts.changed("big", 105, due + Duration::from_secs(1)),
            Decision::Later(due + LARGE_CHANNEL_INTERVAL)
        );
        assert_eq!(counts.due("big", due + LARGE_CHANNEL_INTERVAL), Some(105));
        let later = due + LARGE_CHANNEL_INTERVAL * 3;
        assert_eq!(counts.changed("big", 106, later), Decision::Send(106), "a quiet channel hears at once");
        assert_eq!(counts.tracked(), 1);
    }

    #[test]
    fn a_large_channel_that_shrinks_hears_at_once_and_forgets_its_state() {
        let counts = SubscriptionCounts::default();
        let start = Instant::now();
        assert_eq!(counts.changed("big", 101, start), Decision::Send(101));
        let due = start + LARGE_CHANNEL_INTERVAL;
        assert_eq!(counts.changed("big", 102, start + Duration::from_millis(5)), Decision::Later(due));
        assert_eq!(counts.changed("big", 100, start + Duration::from_millis(6)), Decision::Send(100));
        assert_eq!(counts.due("big", due), None, "nothing pending: 100 went out");
        assert_eq!(counts.tracked(), 0, "the entry went with the timer");
        assert_eq!(counts.changed("big", 101, due), Decision::Send(101));
        assert_eq!(counts.changed("big", 0, due), Decision::Wait);
        assert_eq!(counts.tracked(), 0, "an emptied channel keeps nothing");
    }
}
