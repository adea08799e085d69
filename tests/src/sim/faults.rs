//! The fault schedule: what goes wrong, and when, in one simulated run — all drawn from the seed.
//!
//! The schedule is plain data. It never touches a node; the runner executes it (and resolves
//! targets such as "the current leader" at the moment an event fires). Runs have a faulty part
//! (changing fault rates, partitions cut, healed and re-cut, crashes and restarts, membership
//! changes and leader transfers at random times) followed by a final quiet part in which the
//! network is healed and quiet and every node is up, so a correct cluster must make progress.
//!
//! Clock and storage faults are drawn from a stream of their own, so they join a seed's
//! network, crash and membership schedule without changing it: a node's clock running at
//! another rate (never in the second before another event, so the leader's clock check has
//! had time to see it before anything else happens), reads of a record returning a flipped
//! bit, and damage to the disk of a node that is down.
//!
//! Pauses come from a third stream, so a seed that draws none runs exactly as before: a node
//! stops for a while without crashing (a stopped process, a long GC or VM stall) and resumes
//! with its memory, its timers late and the frames and requests sent to it meanwhile queued.

use super::network::{FaultRates, Network};
use crate::memstore::Damage;
use shoal_core::rng::Rng;
use shoal_core::NodeId;
use std::collections::BTreeSet;
use std::fmt;

/// Which node an event is aimed at; resolved by the runner when the event fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeTarget {
    /// This node.
    Node(NodeId),
    /// Whoever leads at that moment (skipped when nobody does).
    Leader,
    /// The node that has been down the longest (skipped when none is down).
    LongestDown,
    /// The node that went down most recently (skipped when none is down).
    LatestDown,
    /// The node paused the longest (skipped when none is paused).
    LongestPaused,
}

/// How the network is cut. Applying a partition first heals the previous one ("re-cut").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionSpec {
    /// No frame crosses between the sides, either way.
    Split {
        /// One side.
        a: Vec<NodeId>,
        /// The other side.
        b: Vec<NodeId>,
    },
    /// `listeners` still hear `speakers`, but `speakers` do not hear `listeners`.
    OneWay {
        /// Nodes whose frames still get through.
        speakers: Vec<NodeId>,
        /// Nodes whose frames to the speakers are lost.
        listeners: Vec<NodeId>,
    },
    /// Cut one node off from everyone.
    Isolate(NodeTarget),
}

/// One scheduled happening.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultEvent {
    /// Change loss, duplication and delay.
    SetRates(FaultRates),
    /// Heal the current partition and cut a new one.
    Partition(PartitionSpec),
    /// Heal every partition.
    Heal,
    /// Crash a node: it stops, and its storage loses whatever was not synced.
    Crash(NodeTarget),
    /// Restart a crashed node from its storage.
    Restart(NodeTarget),
    /// Ask the leader to move to this configuration (by joint consensus). The runner may find
    /// it refused (a change already in progress, no leader): that is fine and should be logged.
    ChangeMembership {
        /// Voters of the target configuration, sorted.
        voters: Vec<NodeId>,
        /// Observers of the target configuration, sorted.
        observers: Vec<NodeId>,
    },
    /// Ask the leader to hand leadership to a node.
    TransferLeader(NodeTarget),
    /// From now on a node's clock runs at `permille` thousandths of the global rate (the quiet
    /// part gives every clock its own rate back).
    ClockRate {
        /// Whose clock.
        target: NodeTarget,
        /// Its new rate, in thousandths of global time.
        permille: u64,
    },
    /// From now on reads of one of a live node's log records return one bit flipped (its
    /// medium keeps the good bytes): the node must notice at its next read of it.
    FlipOnRead {
        /// Whose reads.
        target: NodeTarget,
        /// Pick among the entries the node has not applied yet (otherwise anywhere in its log).
        unapplied: bool,
    },
    /// The medium of a node that is down is damaged: its restart must find the damage.
    DamageDisk {
        /// Whose disk (a node that is down).
        target: NodeTarget,
        /// What happens to it.
        damage: Damage,
    },
    /// Pause a live node: it gets no ticks, flushes or frames and answers no request until it
    /// resumes, but its clock runs on. Frames and requests sent to it meanwhile wait for it.
    Pause(NodeTarget),
    /// Resume a paused node: it sees its clock jump, and what waited for it arrives.
    Resume(NodeTarget),
    /// Multi-group runs only: retire the group at this index (never 0, the group that holds
    /// the others' records in `shoald`) on every node at once, and start in its place a new
    /// group with a fresh, never-used id and the same voters, as `shoald` does when `group
    /// remove` and `group create` apply.
    ReplaceGroup(usize),
    /// Start of the final quiet part: heal, quiet rates, restart every down node, resume every
    /// paused one.
    Quiesce,
}

impl fmt::Display for FaultEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultEvent::SetRates(r) => write!(
                f,
                "rates loss {}‰ dup {}‰ delay {}..={} ms",
                r.loss_per_mille, r.dup_per_mille, r.delay_min_ms, r.delay_max_ms
            ),
            FaultEvent::Partition(p) => write!(f, "partition {p:?}"),
            FaultEvent::Heal => f.write_str("heal"),
            FaultEvent::Crash(t) => write!(f, "crash {t:?}"),
            FaultEvent::Restart(t) => write!(f, "restart {t:?}"),
            FaultEvent::ChangeMembership { voters, observers } => {
                write!(
                    f,
                    "change membership to voters {voters:?} observers {observers:?}"
                )
            }
            FaultEvent::TransferLeader(t) => write!(f, "transfer leader to {t:?}"),
            FaultEvent::ClockRate { target, permille } => {
                write!(f, "clock of {target:?} runs at {permille}‰ of real time")
            }
            FaultEvent::FlipOnRead { target, unapplied } => write!(
                f,
                "reads of a record of {target:?}{} return a flipped bit",
                if *unapplied { " not yet applied" } else { "" }
            ),
            FaultEvent::DamageDisk { target, damage } => {
                write!(f, "disk of {target:?} (down): {damage:?}")
            }
            FaultEvent::Pause(t) => write!(f, "pause {t:?}"),
            FaultEvent::Resume(t) => write!(f, "resume {t:?}"),
            FaultEvent::ReplaceGroup(g) => {
                write!(
                    f,
                    "retire group index {g} and create a new group in its place"
                )
            }
            FaultEvent::Quiesce => {
                f.write_str("quiesce (heal, quiet network, restart and resume all)")
            }
        }
    }
}

/// An event and the global simulated time at which it fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledEvent {
    /// Global simulated ms.
    pub at_ms: u64,
    /// What happens.
    pub event: FaultEvent,
}

/// A whole run's plan. Events are sorted by time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSchedule {
    /// The seed it was drawn from.
    pub seed: u64,
    /// Initial voters `1..=cluster_size` (3 to 5).
    pub initial_voters: Vec<NodeId>,
    /// Every node the run may use: the initial voters plus one spare that membership changes
    /// may bring in. The runner creates them all; the spare starts outside the configuration.
    pub all_nodes: Vec<NodeId>,
    /// Events in time order.
    pub events: Vec<ScheduledEvent>,
    /// When the final quiet part starts (a `Quiesce` event fires then).
    pub quiet_from_ms: u64,
    /// When the run ends.
    pub end_ms: u64,
}

/// Shortest gap between two scheduled events, ms: long enough for an election to happen.
const MIN_GAP_MS: u64 = 100;
/// Longest gap between two scheduled events, ms.
const MAX_GAP_MS: u64 = 2_500;
/// A clock's rate changes at least this long before the next scheduled event: the leader's
/// clock check needs a few heartbeats to see it (a change in the same instant as a partition is
/// what no check can catch, and the lease's bound then decides).
const CLOCK_CHANGE_LEAD_MS: u64 = 1_000;
/// Rates a clock may be set to, in thousandths of global time: far off either way, and just
/// inside or outside the simulator's bound (election timeout 150 ms, margin 15 ms: 11 %).
const CLOCK_RATES: [u64; 6] = [250, 500, 900, 1_100, 2_000, 4_000];
/// How long a pause lasts, ms: a hiccup shorter than an election timeout (150 ms in the
/// simulator), a stall in which the others elect a new leader, or one so long that requests
/// sent to the paused node time out (clients give up after 1 s).
const PAUSE_MS: [(u64, u64); 3] = [(5, 140), (150, 1_000), (1_000, 2_500)];

impl FaultSchedule {
    /// Draw the schedule for `seed`, for a run of `duration_ms` global ms. The last quarter (at
    /// least 1 s, at most 10 s, never more than half the run) is quiet.
    pub fn generate(seed: u64, duration_ms: u64) -> FaultSchedule {
        let mut rng = Rng::new(seed ^ 0x6661_756C_7473_0000);
        let cluster_size = rng.range(3, 6);
        let initial_voters: Vec<NodeId> = (1..=cluster_size).collect();
        let all_nodes: Vec<NodeId> = (1..=cluster_size + 1).collect();
        let quiet_ms = (duration_ms / 4).clamp(1_000, 10_000).min(duration_ms / 2);
        let quiet_from_ms = duration_ms - quiet_ms;

        let mut plan = Planner {
            rng,
            all: all_nodes.clone(),
            voters: initial_voters.iter().copied().collect(),
            down: 0,
        };
        let mut events = vec![ScheduledEvent {
            at_ms: 0,
            event: FaultEvent::SetRates(FaultRates::random(&mut plan.rng)),
        }];
        let mut t = 0;
        loop {
            t += plan.rng.range(MIN_GAP_MS, MAX_GAP_MS + 1);
            if t >= quiet_from_ms {
                break;
            }
            if plan.down == 0 && plan.rng.chance(1, 6) {
                // A leader storm, faster than the log settles. Crash storms kill whoever leads
                // and bring the longest-down node back; isolation storms cut whoever leads off
                // (healing the previous one), so each deposed leader keeps a divergent suffix of
                // client writes. Short-lived leaders with partly replicated, conflicting logs are
                // what exposes commit-rule bugs (Raft §5.4.2, Figure 8).
                let crash = plan.rng.chance(1, 2);
                let rounds = plan.rng.range(3, 12);
                for _ in 0..rounds {
                    if t >= quiet_from_ms {
                        break;
                    }
                    if crash {
                        events.push(ScheduledEvent {
                            at_ms: t,
                            event: FaultEvent::Crash(NodeTarget::Leader),
                        });
                        t += plan.rng.range(150, 450);
                        if t >= quiet_from_ms {
                            // The quiet phase restarts every node itself.
                            break;
                        }
                        events.push(ScheduledEvent {
                            at_ms: t,
                            event: FaultEvent::Restart(NodeTarget::LongestDown),
                        });
                        t += plan.rng.range(20, 300);
                    } else {
                        let event =
                            FaultEvent::Partition(PartitionSpec::Isolate(NodeTarget::Leader));
                        events.push(ScheduledEvent { at_ms: t, event });
                        t += plan.rng.range(160, 500);
                    }
                }
                continue;
            }
            if let Some(event) = plan.next_event() {
                events.push(ScheduledEvent { at_ms: t, event });
            }
        }
        let extra = extra_events(seed, &events, all_nodes.len() as u64, quiet_from_ms);
        events.extend(extra);
        events.extend(pauses(seed, all_nodes.len() as u64, quiet_from_ms));
        // Stable: an extra event at the same time as a scheduled one fires after it.
        events.sort_by_key(|e| e.at_ms);
        events.push(ScheduledEvent {
            at_ms: quiet_from_ms,
            event: FaultEvent::Quiesce,
        });
        FaultSchedule {
            seed,
            initial_voters,
            all_nodes,
            events,
            quiet_from_ms,
            end_ms: duration_ms,
        }
    }
}

/// Clock and storage faults for `seed`, placed among the `scheduled` events (sorted) before
/// `quiet_from_ms`, from a stream of their own.
fn extra_events(
    seed: u64,
    scheduled: &[ScheduledEvent],
    nodes: u64,
    quiet_from_ms: u64,
) -> Vec<ScheduledEvent> {
    let mut rng = Rng::new(seed ^ 0x6469_736B_636C_6B00);
    let mut out = Vec::new();
    let any_node = |rng: &mut Rng| {
        if rng.chance(1, 2) {
            NodeTarget::Leader
        } else {
            NodeTarget::Node(rng.range(1, nodes + 1))
        }
    };
    if rng.chance(1, 3) {
        // One or two clock episodes, each in a quiet stretch of the schedule.
        let mut times: Vec<u64> = scheduled.iter().map(|e| e.at_ms).collect();
        times.push(quiet_from_ms);
        let gaps: Vec<(u64, u64)> = times
            .windows(2)
            .filter(|w| w[1] >= w[0] + CLOCK_CHANGE_LEAD_MS + 100)
            .map(|w| (w[0] + 50, w[1] - CLOCK_CHANGE_LEAD_MS))
            .collect();
        for _ in 0..rng.range(1, 3) {
            if gaps.is_empty() {
                break;
            }
            let (lo, hi) = gaps[rng.range(0, gaps.len() as u64) as usize];
            out.push(ScheduledEvent {
                at_ms: rng.range(lo, hi + 1),
                event: FaultEvent::ClockRate {
                    target: any_node(&mut rng),
                    permille: CLOCK_RATES[rng.range(0, CLOCK_RATES.len() as u64) as usize],
                },
            });
        }
    }
    if rng.chance(1, 2) {
        for _ in 0..rng.range(1, 4) {
            out.push(ScheduledEvent {
                at_ms: rng.range(MIN_GAP_MS, quiet_from_ms.max(MIN_GAP_MS + 1)),
                event: FaultEvent::FlipOnRead {
                    target: any_node(&mut rng),
                    unapplied: rng.chance(1, 2),
                },
            });
        }
    }
    let crashes: Vec<u64> = scheduled
        .iter()
        .filter(|e| matches!(e.event, FaultEvent::Crash(_)))
        .map(|e| e.at_ms)
        .collect();
    if !crashes.is_empty() && rng.chance(1, 3) {
        // At most one disk per run: a node whose disk is damaged stays down for good.
        let at = crashes[rng.range(0, crashes.len() as u64) as usize] + 1;
        out.push(ScheduledEvent {
            at_ms: at,
            event: FaultEvent::DamageDisk {
                target: NodeTarget::LatestDown,
                damage: Damage::ALL[rng.range(0, Damage::ALL.len() as u64) as usize],
            },
        });
    }
    out.retain(|e| e.at_ms < quiet_from_ms);
    out
}

/// Seeds whose pauses found a core bug, now fixed and kept as its regression test
/// (`a_deposed_leader_resuming_from_a_pause_keeps_serving` in `tests/sim_ci.rs`). A leader
/// resumes from a pause and takes one batch of inputs before its flush, as shoald's raft loop
/// does: the client writes that waited for it (appended to its log), its peers'
/// acknowledgements (it queues appends carrying those entries), the new leader's term (it
/// steps down) and the new leader's append (it cuts its log below the queued entries). The
/// flush read the cut entries to send the stale appends and stopped the node ("log index N is
/// past the end of the log"); the driver now drops an append queued in a term it no longer
/// leads.
pub const STALE_APPEND_KV: &[u64] = &[42, 50, 129, 223, 460, 469, 601, 649, 760, 817, 818, 885];
/// The same for the register workload.
pub const STALE_APPEND_REGISTER: &[u64] = &[45, 83];
/// DtKV seeds that found a replica restored from a snapshot emitting one lease's end in
/// another order than the others (its tied nodes' list rebuilt in snapshot order), now fixed
/// and kept as the regression test `a_restored_replica_ends_a_lease_in_the_same_order` in
/// `tests/sim_ci.rs`: a node that joined late installed a snapshot, then an `Expire` ended a
/// lease with two temporary nodes tied to it.
pub const RESTORED_LEASE_ORDER_KV: &[u64] = &[1209];

/// Adds group replacements to `schedule` for a run whose nodes host `groups` groups, from a
/// stream of their own (so a run with one group, or a seed that draws none, runs exactly as
/// before): half of the multi-group seeds retire one or two groups (never group 0) at random
/// times before the quiet part, each replaced at once by a new group.
pub fn add_group_replacements(schedule: &mut FaultSchedule, groups: usize) {
    if groups < 2 {
        return;
    }
    let mut rng = Rng::new(schedule.seed ^ 0x6772_6F75_7073_0000);
    if !rng.chance(1, 2) {
        return;
    }
    for _ in 0..rng.range(1, 3) {
        let at_ms = rng.range(MIN_GAP_MS, schedule.quiet_from_ms.max(MIN_GAP_MS + 1));
        let index = rng.range(1, groups as u64) as usize;
        schedule.events.push(ScheduledEvent {
            at_ms,
            event: FaultEvent::ReplaceGroup(index),
        });
    }
    // Stable: an event drawn for the same ms as a scheduled one comes after it.
    schedule.events.sort_by_key(|e| e.at_ms);
}

/// Pauses for `seed` before `quiet_from_ms`, from a stream of their own: a third of the seeds
/// draw one to three pauses, one after the other, two of three aimed at the leader. A pause
/// that would outlast the faulty part ends with it (`Quiesce` resumes every node).
fn pauses(seed: u64, nodes: u64, quiet_from_ms: u64) -> Vec<ScheduledEvent> {
    let mut rng = Rng::new(seed ^ 0x7061_7573_6573_0000);
    let mut out = Vec::new();
    if !rng.chance(1, 3) {
        return out;
    }
    let mut t = MIN_GAP_MS;
    for _ in 0..rng.range(1, 4) {
        t += rng.range(0, quiet_from_ms / 3 + 1);
        if t >= quiet_from_ms {
            break;
        }
        let target = if rng.chance(2, 3) {
            NodeTarget::Leader
        } else {
            NodeTarget::Node(rng.range(1, nodes + 1))
        };
        out.push(ScheduledEvent {
            at_ms: t,
            event: FaultEvent::Pause(target),
        });
        let (lo, hi) = PAUSE_MS[rng.range(0, PAUSE_MS.len() as u64) as usize];
        t += rng.range(lo, hi + 1);
        if t >= quiet_from_ms {
            break;
        }
        out.push(ScheduledEvent {
            at_ms: t,
            event: FaultEvent::Resume(NodeTarget::LongestPaused),
        });
    }
    out
}

/// Keeps the schedule plausible while drawing it: at most a minority of the initial voters
/// down at once (so progress is possible between faults) and membership targets of 3–5 voters.
struct Planner {
    rng: Rng,
    all: Vec<NodeId>,
    voters: BTreeSet<NodeId>,
    down: usize,
}

impl Planner {
    fn pick(&mut self, from: &[NodeId]) -> NodeId {
        from[self.rng.range(0, from.len() as u64) as usize]
    }

    fn target(&mut self) -> NodeTarget {
        if self.rng.chance(1, 3) {
            NodeTarget::Leader
        } else {
            let all = self.all.clone();
            NodeTarget::Node(self.pick(&all))
        }
    }

    fn next_event(&mut self) -> Option<FaultEvent> {
        let max_down = (self.voters.len().max(3) - 1) / 2;
        Some(match self.rng.range(0, 100) {
            0..=14 => FaultEvent::SetRates(FaultRates::random(&mut self.rng)),
            15..=34 => FaultEvent::Partition(self.partition()),
            35..=49 => FaultEvent::Heal,
            50..=64 if self.down < max_down => {
                self.down += 1;
                FaultEvent::Crash(self.target())
            }
            50..=74 if self.down > 0 => {
                self.down -= 1;
                FaultEvent::Restart(NodeTarget::LongestDown)
            }
            75..=86 => self.membership()?,
            87..=99 => FaultEvent::TransferLeader(NodeTarget::Node({
                let v: Vec<NodeId> = self.voters.iter().copied().collect();
                self.pick(&v)
            })),
            _ => return None,
        })
    }

    fn partition(&mut self) -> PartitionSpec {
        match self.rng.range(0, 3) {
            0 => PartitionSpec::Isolate(self.target()),
            kind => {
                let mut a = Vec::new();
                let mut b = Vec::new();
                for &id in &self.all {
                    if self.rng.chance(1, 2) {
                        a.push(id);
                    } else {
                        b.push(id);
                    }
                }
                if a.is_empty() {
                    a.push(b.pop().expect("all is not empty"));
                }
                if kind == 1 {
                    PartitionSpec::Split { a, b }
                } else {
                    PartitionSpec::OneWay {
                        speakers: a,
                        listeners: b,
                    }
                }
            }
        }
    }

    fn membership(&mut self) -> Option<FaultEvent> {
        let outside: Vec<NodeId> = self
            .all
            .iter()
            .copied()
            .filter(|id| !self.voters.contains(id))
            .collect();
        let inside: Vec<NodeId> = self.voters.iter().copied().collect();
        let grow = !outside.is_empty() && (inside.len() <= 3 || self.rng.chance(1, 2));
        if grow && inside.len() < 5 {
            let id = self.pick(&outside);
            self.voters.insert(id);
        } else if inside.len() > 3 {
            let id = self.pick(&inside);
            self.voters.remove(&id);
        } else if !outside.is_empty() {
            // Swap one voter for an outsider, keeping the size.
            let out = self.pick(&inside);
            let new = self.pick(&outside);
            self.voters.remove(&out);
            self.voters.insert(new);
        } else {
            return None;
        }
        let voters: Vec<NodeId> = self.voters.iter().copied().collect();
        // Any node outside the voters may come along as an observer.
        let observers = self
            .all
            .iter()
            .copied()
            .filter(|id| !self.voters.contains(id) && self.rng.chance(1, 2))
            .collect();
        Some(FaultEvent::ChangeMembership { voters, observers })
    }
}

/// Who the moving targets of events name right now; the runner fills it in when an event
/// fires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// Who leads (the live leader of the highest term).
    pub leader: Option<NodeId>,
    /// The node down the longest.
    pub longest_down: Option<NodeId>,
    /// The node that went down most recently.
    pub latest_down: Option<NodeId>,
    /// The node paused the longest.
    pub longest_paused: Option<NodeId>,
}

impl Targets {
    /// The node `target` names right now, if any.
    pub fn resolve(&self, target: NodeTarget) -> Option<NodeId> {
        match target {
            NodeTarget::Node(id) => Some(id),
            NodeTarget::Leader => self.leader,
            NodeTarget::LongestDown => self.longest_down,
            NodeTarget::LatestDown => self.latest_down,
            NodeTarget::LongestPaused => self.longest_paused,
        }
    }
}

/// Apply a network-only event (`SetRates`, `Partition`, `Heal`, and the network half of
/// `Quiesce`) to `net`, its targets resolved by `targets`. Returns false for events that are
/// not the network's (crash, restart, pause, membership, transfer, clocks, storage), which the
/// runner handles itself.
pub fn apply_network_event(
    event: &FaultEvent,
    net: &mut Network,
    all: &[NodeId],
    targets: &Targets,
) -> bool {
    match event {
        FaultEvent::SetRates(r) => net.set_fault_rates(*r),
        FaultEvent::Heal => net.heal(),
        FaultEvent::Quiesce => net.quiesce(),
        FaultEvent::Partition(spec) => {
            net.heal();
            match spec {
                PartitionSpec::Split { a, b } => net.partition(a, b),
                PartitionSpec::OneWay {
                    speakers,
                    listeners,
                } => net.partition_one_way(speakers, listeners),
                PartitionSpec::Isolate(t) => {
                    if let Some(id) = targets.resolve(*t) {
                        net.isolate(id, all);
                    }
                }
            }
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_per_seed() {
        assert_eq!(
            FaultSchedule::generate(5, 30_000),
            FaultSchedule::generate(5, 30_000)
        );
        assert_ne!(
            FaultSchedule::generate(5, 30_000),
            FaultSchedule::generate(6, 30_000)
        );
    }

    #[test]
    fn shape_of_many_schedules() {
        let mut sizes = BTreeSet::new();
        // Only counted, never iterated, so a HashSet cannot affect determinism.
        let mut kinds = std::collections::HashSet::new();
        for seed in 0..300 {
            let s = FaultSchedule::generate(seed, 40_000);
            let n = s.initial_voters.len();
            sizes.insert(n);
            assert!((3..=5).contains(&n));
            assert_eq!(s.all_nodes.len(), n + 1);
            assert!(
                s.events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
                "sorted"
            );
            let last = s.events.last().expect("has events");
            assert_eq!(last.event, FaultEvent::Quiesce);
            assert_eq!(last.at_ms, s.quiet_from_ms);
            assert!(s.quiet_from_ms < s.end_ms);
            // Never more than a minority down at once.
            let mut down: i64 = 0;
            for e in &s.events {
                match &e.event {
                    FaultEvent::Crash(_) => down += 1,
                    FaultEvent::Restart(_) => down -= 1,
                    FaultEvent::ChangeMembership { voters, .. } => {
                        assert!((3..=5).contains(&voters.len()));
                    }
                    _ => {}
                }
                assert!((0..=2).contains(&down));
                kinds.insert(std::mem::discriminant(&e.event));
            }
        }
        assert_eq!(sizes.len(), 3, "cluster sizes 3, 4 and 5 all occur");
        assert_eq!(kinds.len(), 13, "every kind of event occurs");
    }

    #[test]
    fn clock_changes_come_well_before_the_next_event_and_disk_damage_after_a_crash() {
        let (mut clocks, mut disks) = (0, 0);
        for seed in 0..300 {
            let s = FaultSchedule::generate(seed, 20_000);
            for (k, e) in s.events.iter().enumerate() {
                match e.event {
                    FaultEvent::ClockRate { .. } => {
                        clocks += 1;
                        // Pauses are a stream of their own: a paused node judges its lease by
                        // its own clock when it resumes, which a rate change does not fool.
                        let next = s.events[k + 1..]
                            .iter()
                            .find(|n| {
                                !matches!(
                                    n.event,
                                    FaultEvent::FlipOnRead { .. }
                                        | FaultEvent::ClockRate { .. }
                                        | FaultEvent::Pause(_)
                                        | FaultEvent::Resume(_)
                                )
                            })
                            .expect("Quiesce comes last");
                        assert!(
                            next.at_ms >= e.at_ms + CLOCK_CHANGE_LEAD_MS,
                            "seed {seed}: {} at {} then {} at {}",
                            e.event,
                            e.at_ms,
                            next.event,
                            next.at_ms
                        );
                    }
                    FaultEvent::DamageDisk { .. } => {
                        disks += 1;
                        assert!(s.events[..k]
                            .iter()
                            .any(|c| matches!(c.event, FaultEvent::Crash(_))
                                && c.at_ms + 1 == e.at_ms));
                    }
                    _ => {}
                }
            }
            let damaged = s
                .events
                .iter()
                .filter(|e| matches!(e.event, FaultEvent::DamageDisk { .. }))
                .count();
            assert!(
                damaged <= 1,
                "seed {seed}: one damaged disk per run at most"
            );
        }
        assert!(
            clocks > 50 && disks > 20,
            "clock changes {clocks}, damaged disks {disks}"
        );
    }

    #[test]
    fn a_third_of_the_seeds_pause_nodes_one_at_a_time_before_the_quiet_part() {
        let mut pausing = 0;
        let mut long = 0;
        for seed in 0..300 {
            let s = FaultSchedule::generate(seed, 20_000);
            let mut paused_at = None;
            for e in &s.events {
                match e.event {
                    FaultEvent::Pause(_) => {
                        assert_eq!(paused_at, None, "seed {seed}: pauses overlap");
                        assert!(e.at_ms < s.quiet_from_ms);
                        paused_at = Some(e.at_ms);
                    }
                    FaultEvent::Resume(t) => {
                        assert_eq!(t, NodeTarget::LongestPaused);
                        let at = paused_at.take().expect("a resume follows a pause");
                        long += u64::from(e.at_ms - at >= 1_000);
                    }
                    FaultEvent::Quiesce => paused_at = None,
                    _ => {}
                }
            }
            pausing += u64::from(
                s.events
                    .iter()
                    .any(|e| matches!(e.event, FaultEvent::Pause(_))),
            );
        }
        assert!((70..130).contains(&pausing), "{pausing} of 300 seeds pause");
        assert!(long > 20, "{long} pauses outlast a client's timeout");
    }

    #[test]
    fn half_of_the_multi_group_seeds_replace_groups_other_than_group_0_before_the_quiet_part() {
        let mut replacing = 0;
        for seed in 0..300 {
            let plain = FaultSchedule::generate(seed, 20_000);
            let mut one = plain.clone();
            add_group_replacements(&mut one, 1);
            assert_eq!(one, plain, "seed {seed}: a one-group run is unchanged");
            let mut s = plain.clone();
            add_group_replacements(&mut s, 4);
            let replaced: Vec<&ScheduledEvent> = s
                .events
                .iter()
                .filter(|e| matches!(e.event, FaultEvent::ReplaceGroup(_)))
                .collect();
            for e in &replaced {
                assert!(
                    e.at_ms < s.quiet_from_ms,
                    "seed {seed}: {} at {}",
                    e.event,
                    e.at_ms
                );
                assert!(
                    matches!(e.event, FaultEvent::ReplaceGroup(1..=3)),
                    "{}",
                    e.event
                );
            }
            assert!(replaced.len() <= 2);
            assert_eq!(s.events.len(), plain.events.len() + replaced.len());
            assert!(s.events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
            assert_eq!(
                s.events.last().map(|e| &e.event),
                Some(&FaultEvent::Quiesce)
            );
            replacing += u64::from(!replaced.is_empty());
        }
        assert!((110..190).contains(&replacing), "{replacing} of 300 seeds");
    }

    #[test]
    fn network_events_apply() {
        let mut net = Network::new(1);
        let all = [1, 2, 3];
        let iso = FaultEvent::Partition(PartitionSpec::Isolate(NodeTarget::Leader));
        let leader_2 = Targets {
            leader: Some(2),
            ..Targets::default()
        };
        assert!(apply_network_event(&iso, &mut net, &all, &leader_2));
        assert!(!net.link_open(2, 1) && net.link_open(1, 3));
        let one_way = FaultEvent::Partition(PartitionSpec::OneWay {
            speakers: vec![1],
            listeners: vec![2, 3],
        });
        apply_network_event(&one_way, &mut net, &all, &Targets::default());
        assert!(net.link_open(2, 3), "the re-cut healed the isolation of 2");
        assert!(!net.link_open(3, 1) && net.link_open(1, 3));
        assert!(!apply_network_event(
            &FaultEvent::Crash(NodeTarget::Leader),
            &mut net,
            &all,
            &Targets::default()
        ));
        apply_network_event(&FaultEvent::Quiesce, &mut net, &all, &Targets::default());
        assert!(!net.is_partitioned());
    }
}
