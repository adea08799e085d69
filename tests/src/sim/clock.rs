//! Per-node clocks with drift: each node reads a local millisecond time derived from the single
//! global simulated time, running a little fast or slow, so timeouts and leases are exercised
//! against clocks that disagree (as real crystals do).
//!
//! Local time is `offset + g + floor(g * drift_ppm / 1e6)` for global time `g`. Because
//! `|drift_ppm| < 1e6` it never goes backwards, which is all [`shoal_core::io::Clock`] promises.
//! A fault may change a clock's rate during a run ([`NodeClock::set_rate`]): the clock goes on
//! from where it stands at the new rate, as a process under a clock-scaling shim does.

use shoal_core::rng::Rng;
use shoal_core::NodeId;
use std::collections::BTreeMap;

/// The largest drift the simulator draws: ±1 % (10 000 parts per million).
pub const MAX_DRIFT_PPM: i64 = 10_000;

/// One node's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeClock {
    /// Rate error in parts per million; positive runs fast.
    pub drift_ppm: i64,
    /// Local time at global time `since_ms` (at 0: nodes do not agree on the epoch either).
    pub offset_ms: u64,
    /// Global time from which `drift_ppm` holds (0 unless the rate was changed).
    pub since_ms: u64,
}

impl NodeClock {
    /// A clock with the given drift and offset.
    pub fn new(drift_ppm: i64, offset_ms: u64) -> NodeClock {
        assert!(drift_ppm > -1_000_000, "a clock must move forward");
        NodeClock {
            drift_ppm,
            offset_ms,
            since_ms: 0,
        }
    }

    /// Local time at global time `global_ms` (not before the last rate change).
    pub fn local_ms(&self, global_ms: u64) -> u64 {
        let g = global_ms.saturating_sub(self.since_ms) as i128;
        let skew = (g * self.drift_ppm as i128).div_euclid(1_000_000);
        (self.offset_ms as i128 + g + skew) as u64
    }

    /// From global time `global_ms` on, run with rate error `drift_ppm`, going on from the
    /// local time it shows then.
    pub fn set_rate(&mut self, global_ms: u64, drift_ppm: i64) {
        assert!(drift_ppm > -1_000_000, "a clock must move forward");
        self.offset_ms = self.local_ms(global_ms);
        self.since_ms = global_ms;
        self.drift_ppm = drift_ppm;
    }
}

/// The clocks of a cluster, keyed by node id (a `BTreeMap` so iteration order is fixed).
#[derive(Clone, Debug, Default)]
pub struct Clocks {
    clocks: BTreeMap<NodeId, NodeClock>,
}

impl Clocks {
    /// Clocks for `nodes`, each with a drift in ±[`MAX_DRIFT_PPM`] and an offset up to 10 s,
    /// drawn from `seed`.
    pub fn random(seed: u64, nodes: &[NodeId]) -> Clocks {
        let mut rng = Rng::new(seed ^ 0x636C_6F63_6B73_0000);
        let mut clocks = BTreeMap::new();
        for &id in nodes {
            let drift = rng.range(0, 2 * MAX_DRIFT_PPM as u64 + 1) as i64 - MAX_DRIFT_PPM;
            clocks.insert(id, NodeClock::new(drift, rng.range(0, 10_000)));
        }
        Clocks { clocks }
    }

    /// Node `id`'s clock. Panics on an unknown node: that is a runner bug.
    pub fn get(&self, id: NodeId) -> NodeClock {
        *self
            .clocks
            .get(&id)
            .unwrap_or_else(|| panic!("no clock for node {id}"))
    }

    /// Node `id`'s local time at global time `global_ms`.
    pub fn local_ms(&self, id: NodeId, global_ms: u64) -> u64 {
        self.get(id).local_ms(global_ms)
    }

    /// Node `id`'s clock, to change its rate. Panics on an unknown node: that is a runner bug.
    pub fn get_mut(&mut self, id: NodeId) -> &mut NodeClock {
        self.clocks
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no clock for node {id}"))
    }

    /// Add (or replace) a node's clock, e.g. when a membership change brings a new node.
    pub fn insert(&mut self, id: NodeId, clock: NodeClock) {
        self.clocks.insert(id, clock);
    }

    /// Every node's clock in id order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, NodeClock)> + '_ {
        self.clocks.iter().map(|(&id, &c)| (id, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_bounded_and_monotonic() {
        let clocks = Clocks::random(11, &[1, 2, 3, 4, 5]);
        for (_, c) in clocks.iter() {
            assert!(c.drift_ppm.abs() <= MAX_DRIFT_PPM);
            let mut last = c.local_ms(0);
            for g in 1..50_000 {
                let l = c.local_ms(g);
                assert!(l >= last, "clock went backwards at {g}");
                last = l;
            }
            let elapsed = c.local_ms(100_000) - c.local_ms(0);
            assert!((98_999..=101_001).contains(&elapsed), "±1 %: {elapsed}");
        }
    }

    #[test]
    fn fast_and_slow_clocks() {
        let fast = NodeClock::new(10_000, 0);
        let slow = NodeClock::new(-10_000, 5);
        assert_eq!(fast.local_ms(1_000), 1_010);
        assert_eq!(slow.local_ms(1_000), 5 + 990);
    }

    #[test]
    fn a_rate_change_goes_on_from_where_the_clock_stands() {
        let mut c = NodeClock::new(0, 100);
        assert_eq!(c.local_ms(1_000), 1_100);
        c.set_rate(1_000, -750_000);
        assert_eq!(c.local_ms(1_000), 1_100, "no jump");
        assert_eq!(c.local_ms(1_400), 1_200, "a quarter of the global rate");
        c.set_rate(1_400, 0);
        assert_eq!(c.local_ms(1_500), 1_300);
    }

    #[test]
    fn seeded() {
        let a = Clocks::random(3, &[1, 2, 3]);
        let b = Clocks::random(3, &[1, 2, 3]);
        assert_eq!(a.get(2), b.get(2));
    }
}
