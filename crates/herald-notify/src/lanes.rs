//! A value per queue lane, indexed by the lane itself (never by a number): the delivery counters,
//! and their reading in the status document as `{"critical-broadcasts": …, "broadcasts": …}`.

use std::sync::atomic::{AtomicU64, Ordering};

use herald_store::Lane;
use serde::{Deserialize, Serialize};

/// One `T` for each lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PerLane<T> {
    #[serde(rename = "critical-broadcasts")]
    pub critical: T,
    #[serde(rename = "broadcasts")]
    pub normal: T,
    pub webhooks: T,
}

impl<T> PerLane<T> {
    pub fn get(&self, lane: Lane) -> &T {
        match lane {
            Lane::Critical => &self.critical,
            Lane::Normal => &self.normal,
            Lane::Webhooks => &self.webhooks,
        }
    }

    pub fn get_mut(&mut self, lane: Lane) -> &mut T {
        match lane {
            Lane::Critical => &mut self.critical,
            Lane::Normal => &mut self.normal,
            Lane::Webhooks => &mut self.webhooks,
        }
    }

    /// Each lane with its value, critical first.
    pub fn iter(&self) -> impl Iterator<Item = (Lane, &T)> {
        Lane::ALL.into_iter().map(|lane| (lane, self.get(lane)))
    }
}

impl PerLane<AtomicU64> {
    /// Counts one more in `lane`.
    pub fn add(&self, lane: Lane) {
        self.get(lane).fetch_add(1, Ordering::Relaxed);
    }

    /// The counts as they are now.
    pub fn load(&self) -> PerLane<u64> {
        PerLane {
            critical: self.critical.load(Ordering::Relaxed),
            normal: self.normal.load(Ordering::Relaxed),
            webhooks: self.webhooks.load(Ordering::Relaxed),
        }
    }
}

impl PerLane<u64> {
    /// Every lane's count.
    pub fn total(&self) -> u64 {
        self.critical.saturating_add(self.normal).saturating_add(self.webhooks)
    }

    /// The two broadcast lanes' count (webhooks apart).
    pub fn broadcasts(&self) -> u64 {
        self.critical.saturating_add(self.normal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lane_counts_apart_and_reads_under_its_queue_name() {
        let counters = PerLane::<AtomicU64>::default();
        counters.add(Lane::Critical);
        counters.add(Lane::Normal);
        counters.add(Lane::Normal);
        counters.add(Lane::Webhooks);
        let counts = counters.load();
        assert_eq!((counts.critical, counts.normal, counts.webhooks), (1, 2, 1));
        assert_eq!((counts.broadcasts(), counts.total()), (3, 4));
        assert_eq!(
            serde_json::to_value(counts).expect("json"),
            serde_json::json!({"critical-broadcasts": 1, "broadcasts": 2, "webhooks": 1})
        );
        let lanes: Vec<&str> = counts.iter().map(|(lane, _)| lane.name()).collect();
        assert_eq!(lanes, ["critical-broadcasts", "broadcasts", "webhooks"]);
    }
}
