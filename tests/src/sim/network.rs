//! The simulated network: opaque frames between node ids, delivered on a simulated millisecond
//! clock with seeded loss, duplication, delay (hence reordering) and partitions.
//!
//! It owns only *links*: it never looks inside a frame and never decides anything about Raft.
//! Every random choice comes from its own [`Rng`], and in-flight frames live in a `BTreeMap`
//! keyed by (delivery time, send sequence), so one seed always gives one delivery order.

use shoal_core::rng::Rng;
use shoal_core::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// How hostile the links are right now. Rates are in per-mille so that small rates stay exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRates {
    /// Chance that a sent frame is silently lost, per mille (0..=1000).
    pub loss_per_mille: u32,
    /// Chance that a delivered frame is delivered a second time, per mille (0..=1000).
    pub dup_per_mille: u32,
    /// Smallest one-way delay in ms.
    pub delay_min_ms: u64,
    /// Largest one-way delay in ms (inclusive). A wide range reorders frames.
    pub delay_max_ms: u64,
}

impl FaultRates {
    /// A well-behaved network: nothing lost or duplicated, 1–5 ms delay.
    pub const QUIET: FaultRates = FaultRates {
        loss_per_mille: 0,
        dup_per_mille: 0,
        delay_min_ms: 1,
        delay_max_ms: 5,
    };

    /// Rates drawn from `rng` within the simulator's ranges: loss 0–30 %, duplication 0–20 %,
    /// delay 1 ms up to 1–200 ms.
    pub fn random(rng: &mut Rng) -> FaultRates {
        let delay_min_ms = rng.range(1, 10);
        FaultRates {
            loss_per_mille: rng.range(0, 301) as u32,
            dup_per_mille: rng.range(0, 201) as u32,
            delay_min_ms,
            delay_max_ms: delay_min_ms + rng.range(0, 200),
        }
    }
}

impl Default for FaultRates {
    fn default() -> Self {
        FaultRates::QUIET
    }
}

/// A frame handed to its receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// The frame's bytes, exactly as sent.
    pub frame: Vec<u8>,
    /// Simulated time at which the frame arrives.
    pub at_ms: u64,
}

/// What happened to one `send` (useful in verbose traces and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Queued once.
    Queued,
    /// Queued twice (duplicated).
    Duplicated,
    /// Lost to the loss rate.
    Lost,
    /// Dropped because the link is cut or a side is down.
    Blocked,
}

/// Counters for a run's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames given to `send`.
    pub sent: u64,
    /// Frames handed to a receiver (duplicates counted each time).
    pub delivered: u64,
    /// Frames lost to the loss rate.
    pub lost: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Frames dropped by a partition or a down node (at send or at arrival).
    pub blocked: u64,
}

/// The simulated network. See the module docs.
#[derive(Debug)]
pub struct Network {
    rng: Rng,
    rates: FaultRates,
    /// In-flight frames keyed by (arrival ms, send sequence): the sequence breaks ties in send
    /// order so that equal arrival times stay deterministic.
    in_flight: BTreeMap<(u64, u64), Delivery>,
    next_seq: u64,
    /// Directed links that are cut: `(from, to)` means `to` does not hear `from`.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Nodes that are down (crashed): nothing to or from them moves.
    down: BTreeSet<NodeId>,
    stats: NetStats,
}

impl Network {
    /// A quiet network whose random choices derive from `seed`.
    pub fn new(seed: u64) -> Network {
        Network {
            // Mix the seed so that the network's stream differs from other components seeded
            // with the same run seed.
            rng: Rng::new(seed ^ 0x6E65_7477_6F72_6B00),
            rates: FaultRates::QUIET,
            in_flight: BTreeMap::new(),
            next_seq: 0,
            cut: BTreeSet::new(),
            down: BTreeSet::new(),
            stats: NetStats::default(),
        }
    }

    /// Replace the loss, duplication and delay rates (affects frames sent from now on).
    pub fn set_fault_rates(&mut self, rates: FaultRates) {
        assert!(
            rates.loss_per_mille <= 1000 && rates.dup_per_mille <= 1000,
            "rates are per mille"
        );
        assert!(
            rates.delay_min_ms <= rates.delay_max_ms,
            "delay range is inverted"
        );
        self.rates = rates;
    }

    /// Send `frame` from `from` to `to` at simulated time `now_ms`.
    pub fn send(&mut self, from: NodeId, to: NodeId, frame: Vec<u8>, now_ms: u64) -> SendOutcome {
        self.stats.sent += 1;
        if !self.link_open(from, to) {
            self.stats.blocked += 1;
            return SendOutcome::Blocked;
        }
        if self.rng.chance(self.rates.loss_per_mille as u64, 1000) {
            self.stats.lost += 1;
            return SendOutcome::Lost;
        }
        let dup = self.rng.chance(self.rates.dup_per_mille as u64, 1000);
        if dup {
            self.stats.duplicated += 1;
            let at_ms = now_ms + self.delay();
            self.enqueue(Delivery {
                from,
                to,
                frame: frame.clone(),
                at_ms,
            });
        }
        let at_ms = now_ms + self.delay();
        self.enqueue(Delivery {
            from,
            to,
            frame,
            at_ms,
        });
        if dup {
            SendOutcome::Duplicated
        } else {
            SendOutcome::Queued
        }
    }

    fn delay(&mut self) -> u64 {
        self.rng
            .range(self.rates.delay_min_ms, self.rates.delay_max_ms + 1)
    }

    fn enqueue(&mut self, d: Delivery) {
        self.in_flight.insert((d.at_ms, self.next_seq), d);
        self.next_seq += 1;
    }

    /// Whether a frame from `from` would currently reach `to`.
    pub fn link_open(&self, from: NodeId, to: NodeId) -> bool {
        !self.cut.contains(&(from, to)) && !self.down.contains(&from) && !self.down.contains(&to)
    }

    /// Every frame due at or before `now_ms`, in arrival order. Frames whose link was cut (or
    /// whose receiver went down) while they were in flight are dropped here, as a real
    /// partition would drop them.
    pub fn deliver_due(&mut self, now_ms: u64) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some(d) = self.pop_due(now_ms) {
            out.push(d);
        }
        out
    }

    /// The next frame due at or before `now_ms`, if any (lets a runner interleave deliveries
    /// with the sends they cause).
    pub fn pop_due(&mut self, now_ms: u64) -> Option<Delivery> {
        loop {
            let (&key, _) = self.in_flight.first_key_value()?;
            if key.0 > now_ms {
                return None;
            }
            let d = self.in_flight.remove(&key).expect("key was just read");
            if self.arrival_allowed(&d) {
                self.stats.delivered += 1;
                return Some(d);
            }
            self.stats.blocked += 1;
        }
    }

    fn arrival_allowed(&self, d: &Delivery) -> bool {
        self.link_open(d.from, d.to)
    }

    /// Frames still in flight.
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// Symmetric partition: no frame crosses between `side_a` and `side_b` in either direction.
    /// Adds to cuts already in force; call [`Network::heal`] first to replace them.
    pub fn partition(&mut self, side_a: &[NodeId], side_b: &[NodeId]) {
        for &a in side_a {
            for &b in side_b {
                if a != b {
                    self.cut.insert((a, b));
                    self.cut.insert((b, a));
                }
            }
        }
    }

    /// Asymmetric partition: `listeners` still hear `speakers`, but `speakers` no longer hear
    /// `listeners` (frames from a listener to a speaker are dropped).
    pub fn partition_one_way(&mut self, speakers: &[NodeId], listeners: &[NodeId]) {
        for &s in speakers {
            for &l in listeners {
                if s != l {
                    self.cut.insert((l, s));
                }
            }
        }
    }

    /// Cut `node` off from every node in `all` in both directions.
    pub fn isolate(&mut self, node: NodeId, all: &[NodeId]) {
        self.partition(&[node], all);
    }

    /// Remove every cut (down nodes stay down).
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether any link is cut.
    pub fn is_partitioned(&self) -> bool {
        !self.cut.is_empty()
    }

    /// Mark a node crashed (`up == false`) or restarted. Frames in flight to a crashed node are
    /// dropped when they arrive, like packets to a dead host.
    pub fn set_node_up(&mut self, node: NodeId, up: bool) {
        if up {
            self.down.remove(&node);
        } else {
            self.down.insert(node);
        }
    }

    /// The final quiet phase: heal every partition and stop losing and duplicating frames, so a
    /// correct cluster must converge. Down nodes are the runner's to restart.
    pub fn quiesce(&mut self) {
        self.heal();
        self.rates = FaultRates::QUIET;
    }

    /// Counters so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: u8) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i]).collect()
    }

    #[test]
    fn quiet_network_delivers_everything_once_in_time() {
        let mut net = Network::new(1);
        for f in frames(50) {
            assert_eq!(net.send(1, 2, f, 100), SendOutcome::Queued);
        }
        assert!(net.deliver_due(100).is_empty(), "minimum delay is 1 ms");
        let got = net.deliver_due(105);
        assert_eq!(got.len(), 50);
        assert!(got
            .iter()
            .all(|d| d.from == 1 && d.to == 2 && (101..=105).contains(&d.at_ms)));
        assert!(
            got.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
            "arrival order"
        );
        assert_eq!(net.in_flight_len(), 0);
    }

    #[test]
    fn same_seed_same_deliveries_and_different_seed_differs() {
        let run = |seed| {
            let mut net = Network::new(seed);
            net.set_fault_rates(FaultRates {
                loss_per_mille: 200,
                dup_per_mille: 150,
                delay_min_ms: 1,
                delay_max_ms: 80,
            });
            for (i, f) in frames(200).into_iter().enumerate() {
                net.send(1 + (i as u64 % 3), 1 + ((i as u64 + 1) % 3), f, i as u64);
            }
            net.deliver_due(10_000)
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn rates_cause_loss_duplication_and_reordering() {
        let mut net = Network::new(3);
        net.set_fault_rates(FaultRates {
            loss_per_mille: 300,
            dup_per_mille: 200,
            delay_min_ms: 1,
            delay_max_ms: 100,
        });
        for f in frames(250) {
            net.send(1, 2, f, 0);
        }
        let got = net.deliver_due(1_000);
        let s = net.stats();
        assert!(s.lost > 40 && s.lost < 110, "about 30 % lost: {s:?}");
        assert!(s.duplicated > 15, "some duplicated: {s:?}");
        assert_eq!(got.len() as u64, s.delivered);
        let order: Vec<u8> = got.iter().map(|d| d.frame[0]).collect();
        assert!(
            order.windows(2).any(|w| w[0] > w[1]),
            "wide delay reorders frames"
        );
    }

    #[test]
    fn symmetric_asymmetric_isolate_and_heal() {
        let mut net = Network::new(4);
        let all = [1, 2, 3];
        net.partition(&[1], &[2, 3]);
        assert!(!net.link_open(1, 2) && !net.link_open(2, 1) && net.link_open(2, 3));
        net.heal();
        assert!(net.link_open(1, 2) && !net.is_partitioned());

        // 2 hears 1, but 1 does not hear 2.
        net.partition_one_way(&[1], &[2]);
        assert!(net.link_open(1, 2));
        assert!(!net.link_open(2, 1));
        assert_eq!(net.send(2, 1, vec![9], 0), SendOutcome::Blocked);
        assert_eq!(net.send(1, 2, vec![9], 0), SendOutcome::Queued);
        net.heal();

        net.isolate(3, &all);
        assert!(!net.link_open(3, 1) && !net.link_open(2, 3) && net.link_open(1, 2));
        net.quiesce();
        assert!(net.link_open(3, 1));
    }

    #[test]
    fn frames_in_flight_are_dropped_by_a_later_cut_or_crash() {
        let mut net = Network::new(5);
        net.send(1, 2, vec![1], 0);
        net.send(1, 3, vec![2], 0);
        net.partition(&[1], &[2]);
        net.set_node_up(3, false);
        assert!(net.deliver_due(100).is_empty());
        assert_eq!(net.stats().blocked, 2);
        net.set_node_up(3, true);
        net.heal();
        net.send(1, 3, vec![3], 100);
        assert_eq!(net.pop_due(u64::MAX).map(|d| d.frame), Some(vec![3]));
    }

    #[test]
    fn quiesce_stops_loss() {
        let mut net = Network::new(6);
        net.set_fault_rates(FaultRates {
            loss_per_mille: 1000,
            ..FaultRates::QUIET
        });
        assert_eq!(net.send(1, 2, vec![0], 0), SendOutcome::Lost);
        net.quiesce();
        assert_eq!(net.send(1, 2, vec![0], 0), SendOutcome::Queued);
    }
}
