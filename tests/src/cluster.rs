//! The Raft-driven seed runner: whole clusters of real [`Node`]s on simulated storage, network
//! and clocks, executing a seed's fault schedule while clients issue operations.
//!
//! After every simulated millisecond it feeds each live node's state to the invariant checker;
//! at the end it requires a leader and convergence once faults stop, and checks the client
//! history for linearizability.
//!
//! Storage faults follow the core's failure policy: a node that reads damaged bytes must
//! notice (its storage's CRC check fails the read) and stop; it restarts from its medium,
//! which still holds the good bytes, and catches up from its peers. A node whose disk was
//! damaged while it was down must refuse to start, and then stays down for good (an operator
//! replaces such a node). A stop that no injected damage explains, a damaged disk that starts,
//! or damaged bytes that reach a state machine or a peer (the checker compares replicas by the
//! log as it was written) fail the seed. The state machine and the client operations come from a
//! [`Workload`], so the same runner checks a plain register and DtKV.
//!
//! With `groups: K` every node hosts K Raft groups in a core [`MultiNode`], each with its own
//! storage, state machine and voters (group g's voters are the initial voters shifted by g
//! among all nodes). Frames carry their group id through the one simulated network, and the
//! host routes them; a crash, restart, clock change, flipped read or damaged disk of a node
//! hits every group it hosts. Clients spread their operations over the groups, and each group has its own
//! invariant checker and its own history for the linearizability check. Slots, checkers and
//! histories are indexed by group index; the schedule may retire the group at an index and
//! start a new one with a fresh id there (`Run::replace_group`), so an index maps to the id
//! of its current group (`Run::gid`).
//!
//! A paused node (all its groups) gets no ticks, flushes or frames while its clock runs on:
//! frames sent to it wait in its inbox, in order, and client requests sent to it wait with it.
//! Both reach it when it resumes: the requests first (they were first in its socket buffers,
//! one connection per client, found ready in an order drawn from the run), then the frames,
//! then its late timers. A client whose request waits past its timeout gives up on it
//! as on any slow request, and a crash of a paused node loses what waited for it.

use crate::linearizability::{self, Model, Operation, Outcome};
use crate::memstore::{Damage, Disk, MemStorage};
use crate::sim::cli::{
    check_groups, FailureCategory, RunOpts, SeedReport, SeedRunner, SimFailure, MAX_GROUPS,
};
use crate::sim::clock::Clocks;
use crate::sim::faults::{self, FaultEvent, FaultSchedule, NodeTarget, Targets};
use crate::sim::invariants::{hash_bytes, EntryView, InvariantChecker, InvariantKind, NodeView};
use crate::sim::network::{Delivery, Network};
use crate::sim::plant::{PlantedBug, SimPlant};
use shoal_core::driver::{Event, Node, NodeConfig, NodeError, NodeParts, Pending as Left};
use shoal_core::entry::EntryIter;
use shoal_core::fault::Fault;
use shoal_core::io::{
    SnapshotError, SnapshotReader, SnapshotWriter, StateMachine, Transport, TransportError,
};
use shoal_core::limits::Config;
use shoal_core::membership::Membership;
use shoal_core::message::{Message, VoteResp};
use shoal_core::multi::{MultiError, MultiNode};
use shoal_core::raft::{ConfigChange, RaftError, ReadError, SyncPoint};
use shoal_core::rng::Rng;
use shoal_core::storage::{LogView, StorageError};
use shoal_core::{EntryKind, GroupId, LogIndex, NodeId, Role, Term};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::rc::Rc;

/// What a simulated client asks of the cluster.
#[derive(Clone, Debug)]
pub enum ClientRequest<O> {
    /// A write: encoded as a command and proposed.
    Write {
        /// The command bytes.
        command: Vec<u8>,
        /// The operation for the history.
        op: O,
    },
    /// A write the history does not track (extra load: directories, temporary nodes, locks).
    Untracked {
        /// The command bytes.
        command: Vec<u8>,
    },
    /// A linearizable read, served once the read index is applied.
    Read {
        /// The operation for the history.
        op: O,
        /// Use the leader lease instead of ReadIndex.
        lease: bool,
    },
}

/// A state machine and the client operations to check it with.
pub trait Workload: Send + Sync {
    /// The replicated state machine.
    type Sm: StateMachine;
    /// The key operations are checked per.
    type Key: Ord + Clone + Debug;
    /// The sequential model of one key.
    type Model: Model;
    /// A fresh state machine.
    fn new_sm(&self) -> Self::Sm;
    /// The next operation of a client.
    fn next_request(
        &self,
        rng: &mut Rng,
        client: u64,
        seq: u64,
        now_ms: u64,
    ) -> (Self::Key, ClientRequest<<Self::Model as Model>::Op>);
    /// Whether a write whose answer was lost may be sent again unchanged (the state machine
    /// deduplicates it by client session). Without it, lost answers stay unknown.
    fn retries(&self) -> bool {
        false
    }
    /// A safety check of one replica's state after a batch of applies.
    fn check(&self, _sm: &Self::Sm) -> Result<(), String> {
        Ok(())
    }
    /// A check across replicas that have applied the same log (at the end of a run).
    fn converged(&self, _replicas: &[(NodeId, &Self::Sm)]) -> Result<(), String> {
        Ok(())
    }
    /// The history result of an applied write.
    fn write_result(
        &self,
        op: &<Self::Model as Model>::Op,
        output: &<Self::Sm as StateMachine>::Output,
    ) -> Option<<Self::Model as Model>::Ret>;
    /// Serve a read from a replica's state machine.
    fn read(
        &self,
        sm: &Self::Sm,
        key: &Self::Key,
        op: &<Self::Model as Model>::Op,
    ) -> <Self::Model as Model>::Ret;
    /// A final read of `key` for the end-of-run check.
    fn final_read(&self, key: &Self::Key) -> <Self::Model as Model>::Op;
    /// Every key the workload touches.
    fn keys(&self) -> Vec<Self::Key>;
    /// The model's initial state for a key.
    fn init(&self, key: &Self::Key) -> Self::Model;
    /// A digest of a replica's state, compared across replicas after convergence.
    fn digest(&self, sm: &Self::Sm) -> u64;
    /// Let the state machine propose housekeeping (e.g. expiry) on the leader, if it wants.
    fn housekeeping(&self, _sm: &Self::Sm, _now_ms: u64) -> Option<Vec<u8>> {
        None
    }
}

type Outbox = Rc<RefCell<Vec<(NodeId, NodeId, Vec<u8>)>>>;

/// The simulator's transport: frames go to the runner, which hands them to the network.
pub struct SimTransport {
    from: NodeId,
    out: Outbox,
}

impl Transport for SimTransport {
    fn send(&mut self, to: NodeId, frame: &[u8]) -> Result<(), TransportError> {
        self.out.borrow_mut().push((self.from, to, frame.to_vec()));
        Ok(())
    }
}

/// Wraps the workload's state machine and records a hash of every applied command, so the
/// invariant checker sees what each replica applied at each index. A bug planted in front of
/// the state machine (`kv-dedup-ignored`) changes the command here, after it was recorded.
pub struct Recorder<S> {
    /// The workload's state machine.
    pub inner: S,
    applied: Vec<(LogIndex, u64)>,
    plant: SimPlant,
}

impl<S: StateMachine> StateMachine for Recorder<S> {
    type Output = S::Output;
    fn apply(&mut self, index: LogIndex, term: Term, command: &[u8]) -> S::Output {
        self.applied.push((index, hash_bytes(command)));
        match self.plant.rewrite_command(index, command) {
            Some(planted) => self.inner.apply(index, term, &planted),
            None => self.inner.apply(index, term, command),
        }
    }
    fn skip(&mut self, index: LogIndex) {
        self.inner.skip(index)
    }
    fn applied_index(&self) -> LogIndex {
        self.inner.applied_index()
    }
    fn snapshot(&self, out: &mut dyn SnapshotWriter) -> Result<(), SnapshotError> {
        self.inner.snapshot(out)
    }
    fn restore(
        &mut self,
        index: LogIndex,
        src: &mut dyn SnapshotReader,
    ) -> Result<(), SnapshotError> {
        self.inner.restore(index, src)
    }
    fn on_leadership(&mut self, leader: bool, term: Term, leader_id: NodeId) {
        self.inner.on_leadership(leader, term, leader_id)
    }
}

type SimNode<W> = Node<MemStorage, SimTransport, Recorder<<W as Workload>::Sm>, Vec<u8>, SimPlant>;

/// One simulated node: its groups' drivers, hosted as shoald hosts them.
type SimHost<W> = MultiNode<
    MemStorage,
    SimTransport,
    Recorder<<W as Workload>::Sm>,
    Vec<u8>,
    MAX_GROUPS,
    SimPlant,
>;

/// A down node's medium for one group.
enum Medium {
    /// What survived the crash.
    Store(Box<MemStorage>),
    /// Damaged by the schedule while down (what, where): its restart must refuse it.
    Damaged(Box<Disk>, Damage, u64),
    /// The group was created while the node was down: it starts it empty when it comes back,
    /// bootstrapped if it is a member, as `shoald` creates a group whose record it finds.
    Fresh,
}

struct Slot<W: Workload> {
    node: Option<SimHost<W>>,
    /// A down node's media, one per group (empty while it runs, or once it failed for good).
    down: Vec<Medium>,
    /// Why the node is down for good (it refused to start on a damaged disk).
    failed: Option<String>,
    /// When a node that stopped on damaged data it read comes back (as a service manager
    /// restarts a process that exited).
    restart_at: Option<u64>,
    incarnation: u64,
    down_since: u64,
    /// The runner's view of each group the node hosts, by group index.
    groups: Vec<GroupSlot>,
    /// Since when (global ms) the node is paused, if it is.
    paused_since: Option<u64>,
    /// Frames that arrived while it was paused, in order.
    inbox: Vec<Delivery>,
}

/// What the runner tracks of one group on one node.
#[derive(Default)]
struct GroupSlot {
    /// Entries up to here were reported to the checker and cannot change any more.
    reported_commit: LogIndex,
    fresh_view: bool,
    /// The last term this node was seen leading the group, for the trace.
    led_term: Term,
    /// A background log sync in flight (runs with deferred syncs): where it vouches for, the
    /// storage's mark, and when it finishes.
    bg_sync: Option<(SyncPoint, u64, u64)>,
}

type Op<W> = <<W as Workload>::Model as Model>::Op;
type Ret<W> = <<W as Workload>::Model as Model>::Ret;
/// One group's client history.
type History<W> = Vec<Operation<<W as Workload>::Key, Op<W>, Ret<W>>>;

struct Pending<W: Workload> {
    /// The command, kept for retries.
    command: Vec<u8>,
    attempts: u32,
    client: u64,
    /// The group (index) it went to; `hist` indexes that group's history.
    group: usize,
    hist: usize,
    node: NodeId,
    incarnation: u64,
    key: W::Key,
    op: Op<W>,
    kind: PendingKind,
    deadline: u64,
}

enum PendingKind {
    /// Waiting in a paused node's queue; the node has not seen it yet.
    Held(Ask),
    Write {
        index: LogIndex,
        term: Term,
    },
    ReadTicket(u64),
    ReadAt(LogIndex),
}

/// What a tracked request asks of the node it reaches.
#[derive(Clone, Copy)]
enum Ask {
    Write,
    Read { lease: bool },
}

impl PendingKind {
    fn is_write(&self) -> bool {
        matches!(
            self,
            PendingKind::Write { .. } | PendingKind::Held(Ask::Write)
        )
    }
}

/// The run's tunables (Raft config scaled for the simulator).
fn sim_config(rng: &mut Rng) -> Config {
    let mut c = Config::server();
    c.election_timeout_ms = 150;
    c.heartbeat_interval_ms = 30;
    c.lease_drift_margin_ms = 15;
    if rng.chance(1, 3) {
        // A slow pipeline: one entry per message, one message in flight. A new leader's old
        // entries then travel apart from its no-op, the window where commit-rule bugs show.
        c.max_inflight = 1;
        c.max_entries_per_message = 1;
    } else {
        c.max_inflight = rng.range(1, 6) as usize;
        c.max_entries_per_message = rng.range(1, 16);
    }
    c.max_bytes_per_message = 4096;
    c.max_pending_proposals = 64;
    c.snapshot_entries = rng.range(20, 200);
    c.snapshot_interval_ms = 0;
    c.snapshot_keep_entries = rng.range(0, 20);
    c.snapshot_chunk_bytes = rng.range(32, 512) as usize;
    c
}

/// Runs seeds with a workload.
pub struct RaftRunner<W> {
    /// The workload.
    pub workload: W,
}

impl<W: Workload> SeedRunner for RaftRunner<W> {
    fn run(&self, seed: u64, opts: &RunOpts) -> Result<SeedReport, SimFailure> {
        Run::<W>::new(&self.workload, seed, opts)?.execute()
    }
}

struct Run<'w, W: Workload> {
    w: &'w W,
    seed: u64,
    opts: RunOpts,
    rng: Rng,
    schedule: FaultSchedule,
    net: Network,
    clocks: Clocks,
    cfg: Config,
    out: Outbox,
    slots: BTreeMap<NodeId, Slot<W>>,
    /// Groups every node hosts (`RunOpts::groups`).
    groups: usize,
    /// The id of the group at each index now ([`Self::gid`]): slots, checkers and histories
    /// are indexed by group index, and a retired group's index goes to its replacement.
    ids: Vec<GroupId>,
    /// The id the next new group gets: ids are never reused.
    next_gid: GroupId,
    /// Ids of the groups retired so far: their frames still in flight must be refused.
    retired_ids: Vec<GroupId>,
    /// Client operations of retired groups (checked at retirement), answered ones, and whether
    /// a retired group's linearizability check ran out of budget.
    retired_ops: (usize, usize, bool),
    /// One invariant checker per group.
    checkers: Vec<InvariantChecker>,
    /// One client history per group.
    history: Vec<History<W>>,
    pending: Vec<Pending<W>>,
    client_busy_until: BTreeMap<u64, u64>,
    client_seq: u64,
    now: u64,
    faults: u64,
    joint_seen: bool,
    /// Odd seeds run like `shoald` with fsync `always`: a leader's own log sync runs in the
    /// background and finishes 0-7 ms later, power cuts included, and every other sync is
    /// left to the platform (`Node::flush_shared`, then `Node::synced`).
    deferred_sync: bool,
    /// Seeds ≡ 2 (mod 4) run with quiescence, as `shoald` does: settled groups go quiet, and
    /// node liveness (pings through the simulated network) wakes them ([`Run::liveness`]).
    quiesce: bool,
    /// When each node last heard from each other node (its clock): `(listener, speaker)`.
    heard: BTreeMap<(NodeId, NodeId), u64>,
    /// The (node, group) pairs last traced as quiet.
    quiet_seen: Vec<(NodeId, usize)>,
    /// The planted bug every node of this run is built with, if any.
    plant: SimPlant,
    /// Each node's own clock rate error, given back to it when the quiet part starts.
    base_drift: BTreeMap<NodeId, i64>,
    /// What the clock and storage faults did, for the report.
    tally: Tally,
}

/// Counts of what clock and storage faults did in one run.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    clock_changes: u64,
    lease_fallbacks: u64,
    read_flips: u64,
    stops_on_damage: u64,
    disks_damaged: u64,
    /// Milliseconds nodes spent quiet (summed over nodes), and groups node liveness woke.
    quiet_ms: u64,
    liveness_wakes: u64,
    /// Pauses, and client requests that reached a paused node.
    pauses: u64,
    held_requests: u64,
    /// Groups retired and groups created in their place, and frames of retired groups the
    /// hosts refused.
    groups_retired: u64,
    groups_created: u64,
    stale_frames: u64,
}

impl Tally {
    /// The report's words for what happened (empty when nothing did).
    fn describe(&self) -> String {
        // Each kind of event: its count (named only when non-zero) and a count reported with it.
        let pairs = [
            (
                self.clock_changes,
                "clock rate changes",
                self.lease_fallbacks,
                "lease reads through ReadIndex",
            ),
            (
                self.read_flips,
                "flipped reads",
                self.stops_on_damage,
                "stops on damage",
            ),
            (
                self.quiet_ms,
                "node-ms quiet",
                self.liveness_wakes,
                "liveness wakes",
            ),
            (
                self.pauses,
                "pauses",
                self.held_requests,
                "requests waited for a paused node",
            ),
            (
                self.groups_retired,
                "groups retired",
                self.groups_created,
                "groups created",
            ),
        ];
        let mut out = String::new();
        for (n, what, m, with) in pairs.into_iter().filter(|p| p.0 > 0) {
            out += &format!(", {n} {what}, {m} {with}");
        }
        if self.groups_retired > 0 {
            out += &format!(", {} frames of retired groups refused", self.stale_frames);
        }
        if self.disks_damaged > 0 {
            out += &format!(", {} damaged disk refused", self.disks_damaged);
        }
        out
    }
}

const CLIENTS: u64 = 4;
const OP_TIMEOUT_MS: u64 = 1_000;
/// A client sends one write at most this many times.
const MAX_ATTEMPTS: u32 = 6;

impl<'w, W: Workload> Run<'w, W> {
    fn new(w: &'w W, seed: u64, opts: &RunOpts) -> Result<Self, SimFailure> {
        let plant = match opts.mutant.as_deref() {
            None => SimPlant(None),
            Some(name) => SimPlant(Some(PlantedBug::from_name(name).ok_or_else(|| {
                SimFailure::new(FailureCategory::Setup, format!("unknown mutant {name}"))
            })?)),
        };
        check_groups(opts.groups).map_err(|e| SimFailure::new(FailureCategory::Setup, e))?;
        let groups = opts.groups;
        let mut schedule = FaultSchedule::generate(seed, opts.steps);
        faults::add_group_replacements(&mut schedule, groups);
        let mut rng = Rng::new(seed ^ 0x5348_4F41_4C00);
        let cfg = sim_config(&mut rng);
        let mut run = Run {
            w,
            seed,
            opts: opts.clone(),
            net: Network::new(seed),
            clocks: Clocks::random(seed, &schedule.all_nodes),
            cfg,
            out: Rc::new(RefCell::new(Vec::new())),
            slots: BTreeMap::new(),
            groups,
            ids: (0..groups as GroupId).collect(),
            next_gid: groups as GroupId,
            retired_ids: Vec::new(),
            retired_ops: (0, 0, false),
            checkers: (0..groups).map(|_| InvariantChecker::new()).collect(),
            history: (0..groups).map(|_| Vec::new()).collect(),
            pending: Vec::new(),
            client_busy_until: BTreeMap::new(),
            client_seq: 0,
            now: 0,
            faults: 0,
            joint_seen: false,
            deferred_sync: seed % 2 == 1,
            quiesce: seed % 4 == 2,
            heard: BTreeMap::new(),
            quiet_seen: Vec::new(),
            plant,
            base_drift: BTreeMap::new(),
            tally: Tally::default(),
            rng,
            schedule,
        };
        run.base_drift = run.clocks.iter().map(|(id, c)| (id, c.drift_ppm)).collect();
        let members = (0..groups)
            .map(|g| run.members(g))
            .collect::<Result<Vec<_>, _>>()?;
        for id in run.schedule.all_nodes.clone() {
            let mut host = SimHost::<W>::new();
            for (g, members) in members.iter().enumerate() {
                let bootstrap = members.all().contains(&id).then_some(members);
                let started = run.start_node(id, g, MemStorage::new(), bootstrap);
                run.host_group(&mut host, id, g, started, FailureCategory::Setup, "start")?;
            }
            run.slots.insert(
                id,
                Slot {
                    node: Some(host),
                    down: Vec::new(),
                    failed: None,
                    restart_at: None,
                    incarnation: 0,
                    down_since: 0,
                    groups: (0..groups)
                        .map(|_| GroupSlot {
                            fresh_view: true,
                            ..GroupSlot::default()
                        })
                        .collect(),
                    paused_since: None,
                    inbox: Vec::new(),
                },
            );
        }
        Ok(run)
    }

    /// The id of the group at index `g` now.
    fn gid(&self, g: usize) -> GroupId {
        self.ids[g]
    }

    /// Group index `g`'s initial configuration: the initial voters shifted by `g` among all
    /// nodes (a group created in a retired one's place gets the same).
    fn members(&self, g: usize) -> Result<Membership, SimFailure> {
        let voters = self.group_nodes(g, &self.schedule.initial_voters);
        Membership::new(&voters, &[])
            .map_err(|e| SimFailure::new(FailureCategory::Setup, e.to_string()))
    }

    /// Node `id` of group 0's numbering as group `g` numbers it: shifted by `g` among all
    /// nodes, so each group has its own voters (and its own spare).
    fn group_node(&self, g: usize, id: NodeId) -> NodeId {
        let n = self.schedule.all_nodes.len() as u64;
        (id - 1 + g as u64) % n + 1
    }

    /// [`Self::group_node`] of each of `ids`, sorted.
    fn group_nodes(&self, g: usize, ids: &[NodeId]) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = ids.iter().map(|id| self.group_node(g, *id)).collect();
        out.sort_unstable();
        out
    }

    /// "node 3", or "node 3 group 1" when nodes host several groups (for messages).
    fn at(&self, id: NodeId, g: usize) -> String {
        if self.groups == 1 {
            format!("node {id}")
        } else {
            format!("node {id} group {}", self.gid(g))
        }
    }

    /// Group `g`'s driver on node `id`, if the node is up.
    fn group(&self, id: NodeId, g: usize) -> Option<&SimNode<W>> {
        self.slots
            .get(&id)
            .and_then(|s| s.node.as_ref())
            .and_then(|h| h.group(self.gid(g)))
    }

    /// Put group `g`'s node on `host` as [`Self::start_node`] returned it: a node that failed
    /// to `verb` ("start", "restart"), or that the host refuses, is a `category` failure.
    fn host_group(
        &self,
        host: &mut SimHost<W>,
        id: NodeId,
        g: usize,
        started: Result<SimNode<W>, NodeError>,
        category: FailureCategory,
        verb: &str,
    ) -> Result<(), SimFailure> {
        let node = started.map_err(|e| {
            SimFailure::new(
                category,
                format!("{} failed to {verb}: {e}", self.at(id, g)),
            )
        })?;
        host.add_group(self.gid(g), node)
            .map_err(|e| SimFailure::new(category, e.to_string()))
    }

    fn trace(&self, what: impl FnOnce() -> String) {
        if self.opts.verbose {
            println!("[{:>6} ms] {}", self.now, what());
        }
    }

    fn start_node(
        &self,
        id: NodeId,
        g: usize,
        mut store: MemStorage,
        bootstrap: Option<&Membership>,
    ) -> Result<SimNode<W>, NodeError> {
        store.set_unchecked_reads(self.plant.unchecked_reads());
        let nc = NodeConfig {
            cluster_id: 1,
            group: self.gid(g),
            node_id: id,
            raft: self.cfg.clone(),
            seed: group_seed(self.seed ^ id, self.gid(g) as usize),
        };
        let t = SimTransport {
            from: id,
            out: self.out.clone(),
        };
        let local = self.clocks.local_ms(id, self.now);
        let sm = Recorder {
            inner: self.w.new_sm(),
            applied: Vec::new(),
            plant: self.plant,
        };
        let parts = NodeParts::new(store, t, sm, vec![0u8; 16 * 1024]).planted(self.plant);
        let mut node = Node::new(nc, parts, local, bootstrap)?;
        node.set_quiesce(self.quiesce);
        Ok(node)
    }

    /// Node liveness for quiescence, as `shoald` keeps it: every heartbeat interval each live
    /// node pings every other through the network (so partitions, drops and crashes hit the
    /// pings too), and a node that heard nothing from another for an election timeout wakes
    /// its quiet group if that node is a member.
    fn liveness(&mut self) {
        if !self.quiesce {
            return;
        }
        let live = self.running_nodes();
        if self.now.is_multiple_of(self.cfg.heartbeat_interval_ms) {
            let mut out = self.out.borrow_mut();
            for &from in &live {
                for &to in self.schedule.all_nodes.iter().filter(|&&to| to != from) {
                    let header = shoal_core::wire::FrameHeader::new(1, 0, from, to);
                    let mut buf = [0u8; shoal_core::wire::FRAME_PREFIX_RESERVE + 16];
                    let body = shoal_core::wire::Body::Ping;
                    let n = shoal_core::wire::encode(&header, &body, &[], &mut buf)
                        .expect("a ping fits");
                    out.push((from, to, buf[..n].to_vec()));
                }
            }
        }
        let timeout = self.cfg.election_timeout_ms;
        if self.opts.verbose {
            let quiet: Vec<(NodeId, usize)> = live
                .iter()
                .flat_map(|&id| (0..self.groups).map(move |g| (id, g)))
                .filter(|&(id, g)| self.group(id, g).is_some_and(|n| n.raft().is_quiet()))
                .collect();
            if quiet != self.quiet_seen {
                self.trace(|| format!("quiet (node, group): {quiet:?}"));
                self.quiet_seen = quiet;
            }
        }
        for id in live {
            let now = self.local(id);
            for g in 0..self.groups {
                let Some(r) = self.group(id, g).map(|n| n.raft()) else {
                    continue;
                };
                let quiet = r.is_quiet();
                let silent = quiet
                    && r.membership().all().iter().any(|&m| {
                        let heard = self.heard.get(&(id, m)).copied().unwrap_or(0);
                        m != id && now.saturating_sub(heard) >= timeout
                    });
                self.tally.quiet_ms += u64::from(quiet);
                if silent {
                    self.trace(|| {
                        format!("node {id} group {g}: a member's node went silent; waking it")
                    });
                    self.tally.liveness_wakes += 1;
                    if let Some(n) = self.group_mut(id, g) {
                        n.wake(now);
                    }
                }
            }
        }
    }

    /// Group `g`'s leader.
    fn leader(&self, g: usize) -> Option<NodeId> {
        // The live leader with the highest term.
        self.slots
            .iter()
            .filter_map(|(id, s)| {
                s.node
                    .as_ref()
                    .and_then(|h| h.group(self.gid(g)))
                    .map(|n| (n.raft().term(), n.raft().role() == Role::Leader, *id))
            })
            .filter(|(_, leads, _)| *leads)
            .max()
            .map(|(_, _, id)| id)
    }

    /// The node down the longest, of those that may come back.
    fn longest_down(&self) -> Option<NodeId> {
        self.slots
            .iter()
            .filter(|(_, s)| s.node.is_none() && s.failed.is_none())
            .min_by_key(|(_, s)| s.down_since)
            .map(|(id, _)| *id)
    }

    /// The node paused the longest.
    fn longest_paused(&self) -> Option<NodeId> {
        self.slots
            .iter()
            .filter_map(|(id, s)| s.paused_since.map(|t| (t, *id)))
            .min()
            .map(|(_, id)| id)
    }

    /// Whether `id` is paused.
    fn paused(&self, id: NodeId) -> bool {
        self.slots
            .get(&id)
            .is_some_and(|s| s.paused_since.is_some())
    }

    /// The node that went down most recently, of those that may come back.
    fn latest_down(&self) -> Option<NodeId> {
        self.slots
            .iter()
            .filter(|(_, s)| s.node.is_none() && s.failed.is_none())
            .max_by_key(|(id, s)| (s.down_since, **id))
            .map(|(id, _)| *id)
    }

    /// Targets of node faults. "The leader" is the node that leads the most groups (ties go
    /// to group `g`'s leader): a storm of crashes or isolations keeps hitting leaders.
    fn targets(&self, g: usize) -> Targets {
        let leader = if self.groups == 1 {
            self.leader(0)
        } else {
            let leaders: Vec<Option<NodeId>> = (0..self.groups).map(|g| self.leader(g)).collect();
            let focus = leaders[g];
            leaders
                .iter()
                .flatten()
                .max_by_key(|l| {
                    let led = leaders.iter().filter(|o| **o == Some(**l)).count();
                    (led, Some(**l) == focus)
                })
                .copied()
        };
        Targets {
            leader,
            longest_down: self.longest_down(),
            latest_down: self.latest_down(),
            longest_paused: self.longest_paused(),
        }
    }

    fn execute(mut self) -> Result<SeedReport, SimFailure> {
        let end = self.schedule.end_ms;
        let quiet = self.schedule.quiet_from_ms;
        let clients_stop = quiet + (end - quiet) / 3;
        let mut ev_at = 0;
        while self.now < end {
            self.step(&mut ev_at, clients_stop)?;
        }
        self.finish()
    }

    /// One simulated millisecond: the schedule's events from `ev_at` that are due, then
    /// frames, ticks, clients (until `clients_stop`), flushes and the invariant checks.
    fn step(&mut self, ev_at: &mut usize, clients_stop: u64) -> Result<(), SimFailure> {
        self.now += 1;
        while *ev_at < self.schedule.events.len() && self.schedule.events[*ev_at].at_ms <= self.now
        {
            let ev = self.schedule.events[*ev_at].event.clone();
            *ev_at += 1;
            self.fire(&ev)?;
        }
        self.restart_stopped(false)?;
        self.commit_joint_changes();
        self.deliver()?;
        self.tick_all()?;
        self.liveness();
        // With quiescence, clients pause one second in every two, so that groups go quiet
        // while faults still strike.
        let paused = self.quiesce && (self.now / 1_000) % 2 == 1;
        if self.now < clients_stop && !paused {
            self.clients()?;
        }
        self.flush_all()?;
        self.expire_pending();
        self.observe()
    }

    /// One simulated millisecond after the faults and the clients stopped: frames, ticks,
    /// flushes and the invariant checks.
    fn quiet_step(&mut self) -> Result<(), SimFailure> {
        self.now += 1;
        self.deliver()?;
        self.tick_all()?;
        self.liveness();
        self.flush_all()?;
        self.observe()
    }

    fn fire(&mut self, ev: &FaultEvent) -> Result<(), SimFailure> {
        self.trace(|| format!("fault: {ev}"));
        self.faults += 1;
        // The group a leader transfer goes to, whose leader also breaks ties between nodes
        // leading equally many groups (the groups take turns). Whatever the event does to a
        // node, it does to every group the node hosts.
        let focus = ((self.faults - 1) % self.groups as u64) as usize;
        let all = self.schedule.all_nodes.clone();
        let targets = self.targets(focus);
        let leader = self.leader(focus);
        if faults::apply_network_event(ev, &mut self.net, &all, &targets) {
            if matches!(ev, FaultEvent::Quiesce) {
                // Every clock runs at its own rate again.
                for (id, drift) in self.base_drift.clone() {
                    let c = self.clocks.get_mut(id);
                    if c.drift_ppm != drift {
                        c.set_rate(self.now, drift);
                    }
                }
                let down: Vec<NodeId> = self
                    .slots
                    .iter()
                    .filter(|(_, s)| s.node.is_none())
                    .map(|(i, _)| *i)
                    .collect();
                for id in down {
                    self.restart(id)?;
                }
                while let Some(id) = self.longest_paused() {
                    self.resume(id);
                }
            }
            return Ok(());
        }
        match ev {
            FaultEvent::ClockRate { target, permille } => {
                if let Some(id) = targets.resolve(*target) {
                    let drift = (*permille as i64 - 1000) * 1000;
                    self.clocks.get_mut(id).set_rate(self.now, drift);
                    self.tally.clock_changes += 1;
                    self.trace(|| format!("node {id}'s clock runs at {permille}‰"));
                }
            }
            FaultEvent::FlipOnRead { target, unapplied } => {
                let seed = self.rng.next_u64();
                let Some(id) = targets.resolve(*target) else {
                    return Ok(());
                };
                // The node's medium returns flipped bits in every group's log.
                for g in 0..self.groups {
                    if let Some(n) = self.group_mut(id, g) {
                        let from = if *unapplied { n.applied() + 1 } else { 0 };
                        if let Some(index) = n.storage_mut().flip_on_read(from, group_seed(seed, g))
                        {
                            self.tally.read_flips += 1;
                            self.trace(|| {
                                format!("reads of {}'s entry {index} flip a bit", self.at(id, g))
                            });
                        }
                    }
                }
            }
            FaultEvent::DamageDisk { target, damage } => {
                let seed = self.rng.next_u64();
                if let Some(id) = targets.resolve(*target) {
                    self.damage_disk(id, *damage, seed);
                }
            }
            FaultEvent::Crash(t) => {
                if let Some(id) = targets.resolve(*t) {
                    self.crash(id);
                }
            }
            FaultEvent::Pause(t) => {
                if let Some(id) = targets.resolve(*t) {
                    self.pause(id);
                }
            }
            FaultEvent::Resume(t) => {
                if let Some(id) = targets.resolve(*t) {
                    self.resume(id);
                }
            }
            FaultEvent::Restart(t) => {
                if let Some(id) = targets.resolve(*t) {
                    if self
                        .slots
                        .get(&id)
                        .map(|s| s.node.is_none())
                        .unwrap_or(false)
                    {
                        self.restart(id)?;
                    }
                }
            }
            FaultEvent::ChangeMembership { voters, observers } => {
                // Every group moves to the configuration, in its own numbering.
                for g in 0..self.groups {
                    let Some(l) = self.leader(g).filter(|l| !self.paused(*l)) else {
                        continue;
                    };
                    let now = self.local(l);
                    let target = Membership::new(
                        &self.group_nodes(g, voters),
                        &self.group_nodes(g, observers),
                    );
                    if let (Some(n), Ok(target)) = (self.group_mut(l, g), target) {
                        let r = n.change_membership(now, ConfigChange::Prepare(target));
                        self.trace(|| format!("membership prepare on {}: {r:?}", self.at(l, g)));
                    }
                }
            }
            FaultEvent::ReplaceGroup(g) if *g < self.groups => self.replace_group(*g)?,
            FaultEvent::TransferLeader(t) => {
                let target = match t {
                    NodeTarget::Node(id) => Some(self.group_node(focus, *id)),
                    _ => targets.resolve(*t),
                };
                if let (Some(l), Some(target)) = (leader.filter(|l| !self.paused(*l)), target) {
                    let now = self.local(l);
                    if let Some(n) = self.group_mut(l, focus) {
                        let r = n.transfer_leader(now, target);
                        self.trace(|| format!("transfer {} -> {target}: {r:?}", self.at(l, focus)));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Retire the group at index `g` on every node at once and start a new group with a
    /// fresh id in its place, with the same voters, as `shoald` does when `group remove` and
    /// `group create` apply: live hosts (paused ones too) drop the old driver and bootstrap
    /// the new one, and down nodes find the new group when they come back. The retired group's
    /// requests in flight get no answer (a write's outcome stays unknown, a read did nothing),
    /// its history is checked for linearizability now, and its checker, which checked every
    /// step so far, is replaced by a fresh one.
    fn replace_group(&mut self, g: usize) -> Result<(), SimFailure> {
        let old = self.gid(g);
        let new = self.next_gid;
        self.next_gid += 1;
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].group == g {
                let p = self.pending.swap_remove(i);
                if !p.kind.is_write() {
                    self.drop_read(g, p.hist);
                }
            } else {
                i += 1;
            }
        }
        let history: History<W> = std::mem::take(&mut self.history[g])
            .into_iter()
            .filter(|o| o.invoke != u64::MAX)
            .collect();
        let (ops, answered) = (
            history.len(),
            history.iter().filter(|o| o.response.is_some()).count(),
        );
        self.retired_ops.0 += ops;
        self.retired_ops.1 += answered;
        self.retired_ops.2 |= self.check_history(g, &history)?;
        let commit = self.checkers[g].max_committed();
        self.checkers[g] = InvariantChecker::new();
        self.retired_ids.push(old);
        self.ids[g] = new;
        self.tally.groups_retired += 1;
        self.tally.groups_created += 1;
        self.trace(|| {
            format!(
                "group {old} retired (commit {commit}, {ops} ops, {answered} answered); \
                 group {new} created in its place"
            )
        });
        let members = self.members(g)?;
        for id in self.schedule.all_nodes.clone() {
            let slot = &self.slots[&id];
            let live = slot.node.is_some();
            let has_media = !slot.down.is_empty();
            let node = if live {
                let bootstrap = members.all().contains(&id).then_some(&members);
                Some(
                    self.start_node(id, g, MemStorage::new(), bootstrap)
                        .map_err(|e| {
                            SimFailure::new(
                                FailureCategory::Panic,
                                format!("{} failed to start: {e}", self.at(id, g)),
                            )
                        })?,
                )
            } else {
                None
            };
            let slot = self.slots.get_mut(&id).expect("id from all nodes");
            slot.groups[g] = GroupSlot {
                fresh_view: true,
                ..GroupSlot::default()
            };
            match (slot.node.as_mut(), node) {
                (Some(host), Some(node)) => {
                    let added = host
                        .remove_group(old)
                        .and_then(|_| host.add_group(new, node));
                    if let Err(e) = added {
                        return Err(SimFailure::new(
                            FailureCategory::Panic,
                            format!("node {id} replacing group {old} by {new}: {e}"),
                        ));
                    }
                }
                _ if has_media => slot.down[g] = Medium::Fresh,
                // Down for good: it never comes back.
                _ => {}
            }
        }
        Ok(())
    }

    /// Check group index `g`'s client `history` for linearizability. Returns whether the
    /// search ran out of budget on some key (the history is then not fully verified).
    fn check_history(&self, g: usize, history: &History<W>) -> Result<bool, SimFailure> {
        let w = self.w;
        match linearizability::check_per_key(
            history,
            |k| w.init(k),
            linearizability::DEFAULT_STEP_BUDGET,
        ) {
            Outcome::Linearizable => Ok(false),
            Outcome::NotLinearizable(v) => Err(SimFailure::new(
                FailureCategory::Linearizability,
                format!("{}{v}", self.group_prefix(g)),
            )),
            Outcome::Unknown { .. } => Ok(true),
        }
    }

    /// Finish joint configurations once they commit: usually commit, sometimes abort.
    fn commit_joint_changes(&mut self) {
        for g in 0..self.groups {
            let Some(l) = self.leader(g) else { continue };
            let now = self.local(l);
            let abort = self.rng.chance(1, 4);
            if self.paused(l) {
                continue;
            }
            let Some(n) = self.group_mut(l, g) else {
                continue;
            };
            let r = n.raft();
            if r.membership().joint && r.membership_index() <= r.commit() {
                let change = if abort {
                    ConfigChange::Abort
                } else {
                    ConfigChange::Commit
                };
                let res = n.change_membership(now, change.clone());
                self.joint_seen = true;
                self.trace(|| format!("membership {change:?} on {}: {res:?}", self.at(l, g)));
            }
        }
    }

    fn local(&self, id: NodeId) -> u64 {
        self.clocks.local_ms(id, self.now)
    }

    /// Group `g`'s driver on node `id`, mutably, if the node is up.
    fn group_mut(&mut self, id: NodeId, g: usize) -> Option<&mut SimNode<W>> {
        self.slots
            .get_mut(&id)
            .and_then(|s| s.node.as_mut())
            .and_then(|h| h.group_mut(self.ids[g]))
    }

    fn crash(&mut self, id: NodeId) {
        let seed = self.rng.next_u64();
        let ids = self.ids.clone();
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let Some(mut host) = slot.node.take() else {
            return;
        };
        // The power goes for every group at once; each group's storage loses what it had not
        // synced, and a background sync still running is lost with the power.
        slot.down = ids
            .iter()
            .map(|&gid| {
                let node = host
                    .remove_group(gid)
                    .expect("a live node hosts every group");
                Medium::Store(Box::new(
                    node.into_parts()
                        .store
                        .crash(group_seed(seed, gid as usize)),
                ))
            })
            .collect();
        for gs in &mut slot.groups {
            gs.bg_sync = None;
        }
        // A paused node that crashes is down; what waited for it is lost with it.
        slot.paused_since = None;
        slot.inbox.clear();
        slot.down_since = self.now;
        self.net.set_node_up(id, false);
        self.trace(|| format!("node {id} crashed"));
    }

    /// Pause `id` (if it is up and running): it stands still, its clock runs on.
    fn pause(&mut self, id: NodeId) {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        if slot.node.is_none() || slot.paused_since.is_some() {
            return;
        }
        slot.paused_since = Some(now);
        self.tally.pauses += 1;
        self.trace(|| format!("node {id} paused"));
    }

    /// Resume `id` (if it is paused): the client requests that waited for it reach it now, in
    /// an order drawn from the run, before the frames in its inbox (the next delivery) and its
    /// late timers (the next tick). A request it refuses did not happen; one whose client gave
    /// up on it while it waited was withdrawn.
    fn resume(&mut self, id: NodeId) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let Some(since) = slot.paused_since.take() else {
            return;
        };
        let incarnation = slot.incarnation;
        let mut held = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            if p.node == id
                && p.incarnation == incarnation
                && matches!(p.kind, PendingKind::Held(_))
            {
                held.push(self.pending.swap_remove(i));
            } else {
                i += 1;
            }
        }
        // Each client has its own connection, and the node finds them ready in any order.
        held.sort_by_key(|p| (self.history[p.group][p.hist].invoke, p.client));
        for i in (1..held.len()).rev() {
            held.swap(i, self.rng.range(0, i as u64 + 1) as usize);
        }
        self.trace(|| {
            format!(
                "node {id} resumes after {} ms; {} requests waited for it",
                self.now - since,
                held.len()
            )
        });
        for mut p in held {
            if self.submit(&mut p) {
                self.pending.push(p);
            } else if p.attempts > 1 {
                // A retry refused: an earlier attempt may still have happened, so the client
                // tries again shortly.
                p.deadline = self.now + 50;
                self.pending.push(p);
            } else {
                self.drop_read(p.group, p.hist);
            }
        }
    }

    /// The schedule damages the medium of `id`, which is down: its next start must find it.
    /// Every group's files on it are damaged.
    fn damage_disk(&mut self, id: NodeId, damage: Damage, seed: u64) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let mut damaged = Vec::new();
        for (g, medium) in slot.down.iter_mut().enumerate() {
            let store = match std::mem::replace(medium, Medium::Store(Box::default())) {
                Medium::Store(store) => *store,
                // Damaged already: its restart refuses it anyway. A group created while the
                // node was down has no files yet.
                other => {
                    *medium = other;
                    continue;
                }
            };
            let mut disk = store.shutdown();
            *medium = match disk.damage(damage, group_seed(seed, g)) {
                Some(at) => {
                    damaged.push((g, at));
                    Medium::Damaged(Box::new(disk), damage, at)
                }
                // Nothing of that kind to damage; the disk stays as it was.
                None => Medium::Store(Box::new(
                    MemStorage::recover(disk).expect("an undamaged disk"),
                )),
            };
        }
        if !damaged.is_empty() {
            self.tally.disks_damaged += 1;
        }
        for (g, at) in damaged {
            self.trace(|| format!("{}'s disk (down): {damage:?} at {at}", self.at(id, g)));
        }
    }

    /// Group `g` of node `id` stopped on `e`. Its storage's check failed on bytes the schedule
    /// flipped: the failure policy worked, and the node goes down like after a crash, all its
    /// groups with it (it restarts from its medium, which holds the good bytes). Anything else
    /// fails the seed with `what`.
    fn stopped(
        &mut self,
        id: NodeId,
        g: usize,
        e: NodeError,
        what: &str,
    ) -> Result<(), SimFailure> {
        let corrupt = matches!(
            e,
            NodeError::Storage(StorageError::Corrupt { .. })
                | NodeError::Raft(RaftError::Storage(StorageError::Corrupt { .. }))
        );
        let flipped = self
            .group(id, g)
            .is_some_and(|n| n.storage().read_flips() > 0);
        if corrupt && flipped {
            self.tally.stops_on_damage += 1;
            self.trace(|| format!("{} stopped on damaged data it read: {e}", self.at(id, g)));
            self.crash(id);
            let back = self.now + self.rng.range(50, 500);
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.restart_at = Some(back);
            }
            return Ok(());
        }
        Err(SimFailure::new(
            FailureCategory::Panic,
            format!("{} {what}: {e}", self.at(id, g)),
        ))
    }

    /// A group's driver stopped the host: see [`Self::stopped`].
    fn host_stopped(&mut self, id: NodeId, e: MultiError, what: &str) -> Result<(), SimFailure> {
        match e {
            MultiError::Node(gid, e) => {
                let g = index_of(&self.ids, gid);
                self.stopped(id, g, e, what)
            }
            e => Err(SimFailure::new(
                FailureCategory::Panic,
                format!("node {id} {what}: {e}"),
            )),
        }
    }

    fn restart(&mut self, id: NodeId) -> Result<(), SimFailure> {
        let Some(slot) = self.slots.get_mut(&id) else {
            return Ok(());
        };
        if slot.failed.is_some() || slot.node.is_some() || slot.down.is_empty() {
            return Ok(());
        }
        let down = std::mem::take(&mut slot.down);
        let mut host = SimHost::<W>::new();
        let mut refused = None;
        for (g, medium) in down.into_iter().enumerate() {
            let started = match medium {
                Medium::Store(store) => self.start_node(id, g, *store, None),
                Medium::Fresh => {
                    let members = self.members(g)?;
                    let bootstrap = members.all().contains(&id).then_some(&members);
                    self.start_node(id, g, MemStorage::new(), bootstrap)
                }
                Medium::Damaged(disk, damage, at) => {
                    let started = MemStorage::recover(*disk)
                        .map_err(|e| e.to_string())
                        .map(|store| self.start_node(id, g, store, None));
                    let why = match started {
                        Err(e) => e,
                        Ok(Err(e @ (NodeError::SnapshotChecksum { .. } | NodeError::Storage(_)))) => {
                            e.to_string()
                        }
                        Ok(Err(e)) => {
                            return Err(SimFailure::new(
                                FailureCategory::Panic,
                                format!("{} failed to restart: {e}", self.at(id, g)),
                            ))
                        }
                        Ok(Ok(_)) => {
                            return Err(SimFailure::new(
                                FailureCategory::Panic,
                                format!(
                                    "{} started on a damaged disk ({damage:?} at {at}) without noticing",
                                    self.at(id, g)
                                ),
                            ))
                        }
                    };
                    let what = if self.groups == 1 {
                        String::new()
                    } else {
                        format!(" of group {}", self.gid(g))
                    };
                    refused.get_or_insert(format!(
                        "refused its damaged disk{what} ({damage:?} at {at}): {why}"
                    ));
                    continue;
                }
            };
            self.host_group(&mut host, id, g, started, FailureCategory::Panic, "restart")?;
        }
        if let Some(why) = refused {
            return self.fail_for_good(id, why);
        }
        let slot = self.slots.get_mut(&id).expect("slot exists");
        slot.node = Some(host);
        slot.incarnation += 1;
        for gs in &mut slot.groups {
            gs.reported_commit = 0;
            gs.fresh_view = true;
        }
        let now = self.clocks.local_ms(id, self.now);
        for &other in &self.schedule.all_nodes {
            self.heard.insert((id, other), now);
        }
        self.net.set_node_up(id, true);
        self.trace(|| format!("node {id} restarted"));
        Ok(())
    }

    /// Restart the nodes that stopped on damaged data, once their time comes (`all`: now).
    fn restart_stopped(&mut self, all: bool) -> Result<(), SimFailure> {
        let due: Vec<NodeId> = self
            .slots
            .iter()
            .filter(|(_, s)| s.restart_at.is_some_and(|t| all || t <= self.now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.slots.get_mut(&id).expect("id from slots").restart_at = None;
            self.restart(id)?;
        }
        Ok(())
    }

    /// `id` refused to start on its damaged disk, as it must: it stays down for good.
    fn fail_for_good(&mut self, id: NodeId, why: String) -> Result<(), SimFailure> {
        self.trace(|| format!("node {id} {why}; it stays down"));
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.failed = Some(why);
        }
        Ok(())
    }

    /// Deliver the frames due. Every node applies the core's failure policy: a frame it
    /// refuses is dropped and counted, and only a local durability fault stops it. Every peer
    /// here is honest and the network delivers frames whole, so a refused frame is itself a
    /// failure: it can only come from a bug (a leader asking to cut a committed entry, say).
    fn deliver(&mut self) -> Result<(), SimFailure> {
        // Frames that waited for a node that has resumed come first, in the order they came.
        let mut due = Vec::new();
        for s in self.slots.values_mut() {
            if s.paused_since.is_none() {
                due.append(&mut s.inbox);
            }
        }
        due.extend(self.net.deliver_due(self.now));
        for d in due {
            if let Some(s) = self.slots.get_mut(&d.to) {
                if s.paused_since.is_some() {
                    s.inbox.push(d);
                    continue;
                }
            }
            let now = self.local(d.to);
            let gids = self.ids.clone();
            if self.quiesce && self.slots.get(&d.to).is_some_and(|s| s.node.is_some()) {
                self.heard.insert((d.to, d.from), now);
                let ping = matches!(
                    shoal_core::wire::decode(&d.frame),
                    Ok((f, _)) if f.body == shoal_core::wire::Body::Ping
                );
                if ping {
                    continue;
                }
            }
            let mut stopped = None;
            let mut refused = None;
            // A frame of a retired group (sent before it was retired) must be refused by the
            // host, never reach a group: its replacement must not see the old group's terms.
            let stale = shoal_core::wire::decode(&d.frame)
                .ok()
                .map(|(f, _)| f.header.group)
                .filter(|gid| self.retired_ids.contains(gid));
            if let Some(host) = self.slots.get_mut(&d.to).and_then(|s| s.node.as_mut()) {
                // Each group counts the frames it refuses, the host those it cannot route.
                let mut before = [None; MAX_GROUPS];
                for (b, &gid) in before.iter_mut().zip(&gids) {
                    *b = host.group(gid).map(|n| n.stats().faults);
                }
                let host_before = host.faults();
                let result = host.handle_frame(now, &d.frame);
                let wrong_group =
                    host.faults().get(Fault::WrongGroup) > host_before.get(Fault::WrongGroup);
                if let Some(gid) = stale {
                    if !wrong_group {
                        return Err(SimFailure::new(
                            FailureCategory::Invariant(InvariantKind::ViewSanity),
                            format!(
                                "node {} did not refuse a frame from {} of retired group {gid}",
                                d.to, d.from
                            ),
                        ));
                    }
                    self.tally.stale_frames += 1;
                } else if let Some((fault, _)) =
                    host.faults().iter().find(|(f, c)| *c > host_before.get(*f))
                {
                    refused = Some((None, fault.name()));
                }
                for (g, before) in before.iter().enumerate().take(gids.len()) {
                    let (Some(n), Some(before)) = (host.group(gids[g]), before) else {
                        continue;
                    };
                    if let Some((fault, _)) =
                        n.stats().faults.iter().find(|(f, c)| *c > before.get(*f))
                    {
                        refused.get_or_insert((Some(g), fault.name()));
                    }
                }
                if let Err(e) = result {
                    stopped = Some(e);
                    refused = None;
                }
            }
            if let Some((g, fault)) = refused {
                let frame = shoal_core::wire::decode(&d.frame)
                    .map(|(f, _)| format!("{:?}", f.body))
                    .unwrap_or_default();
                let (who, state) = match g.and_then(|g| self.group(d.to, g).map(|n| (g, n))) {
                    Some((g, n)) => (
                        self.at(d.to, g),
                        format!(
                            " [raft last {} commit {} snap {}; storage last {} snap {}]",
                            n.raft().last_index(),
                            n.raft().commit(),
                            n.raft().snapshot_index(),
                            n.storage().last_index(),
                            n.storage().snapshot_index()
                        ),
                    ),
                    None => (format!("node {}", d.to), String::new()),
                };
                return Err(SimFailure::new(
                    FailureCategory::RefusedFrame,
                    format!(
                        "{who} refused a frame ({fault}) from {} ({frame}){state}",
                        d.from
                    ),
                ));
            }
            if let Some(e) = stopped {
                self.host_stopped(d.to, e, &format!("stopped on a frame from {}", d.from))?;
            }
        }
        Ok(())
    }

    fn tick_all(&mut self) -> Result<(), SimFailure> {
        let w = self.w;
        let ids = self.ids.clone();
        for id in self.running_nodes() {
            let now = self.local(id);
            let mut stopped = None;
            if let Some(host) = self.slots.get_mut(&id).and_then(|s| s.node.as_mut()) {
                match host.tick(now) {
                    Err(e) => stopped = Some(e),
                    Ok(()) => {
                        for &gid in &ids {
                            let Some(n) = host.group_mut(gid) else {
                                continue;
                            };
                            if n.raft().role() == Role::Leader {
                                if let Some(cmd) = w.housekeeping(&n.state_machine().inner, now) {
                                    let _ = n.propose(now, &cmd);
                                }
                            }
                        }
                    }
                }
            }
            if let Some(e) = stopped {
                self.host_stopped(id, e, "tick")?;
            }
        }
        Ok(())
    }

    /// Each node's state in a few words, for a failure's message.
    fn describe_nodes(&self, g: usize) -> String {
        let mut out = Vec::new();
        for (id, s) in &self.slots {
            let what = match (
                s.node.as_ref().and_then(|h| h.group(self.gid(g))),
                &s.failed,
            ) {
                (Some(n), _) => {
                    let r = n.raft();
                    format!(
                        "{id}: {:?} term {} last {} commit {} {:?}",
                        r.role(),
                        r.term(),
                        r.last_index(),
                        r.commit(),
                        r.membership(),
                    )
                }
                (None, Some(why)) => format!("{id}: down for good ({why})"),
                (None, None) => format!("{id}: down"),
            };
            out.push(what);
        }
        out.join("; ")
    }

    /// Whether `id` is down for good (it refused to start on a damaged disk).
    fn failed(&self, id: NodeId) -> bool {
        self.slots.get(&id).is_some_and(|s| s.failed.is_some())
    }

    fn live_nodes(&self) -> Vec<NodeId> {
        self.slots
            .iter()
            .filter(|(_, s)| s.node.is_some())
            .map(|(i, _)| *i)
            .collect()
    }

    /// The live nodes that are not paused.
    fn running_nodes(&self) -> Vec<NodeId> {
        self.slots
            .iter()
            .filter(|(_, s)| s.node.is_some() && s.paused_since.is_none())
            .map(|(i, _)| *i)
            .collect()
    }

    /// Clients mostly talk to whoever they believe leads group `g`, sometimes to anyone.
    fn pick_target(&mut self, g: usize) -> Option<NodeId> {
        let live = self.live_nodes();
        if live.is_empty() {
            return None;
        }
        Some(match self.leader(g) {
            Some(l) if self.rng.chance(3, 4) => l,
            _ => live[self.rng.range(0, live.len() as u64) as usize],
        })
    }

    fn clients(&mut self) -> Result<(), SimFailure> {
        for client in 0..CLIENTS {
            if self.client_busy_until.get(&client).copied().unwrap_or(0) > self.now {
                continue;
            }
            if self.pending.iter().any(|p| p.client == client) {
                continue;
            }
            // Think time between operations.
            let think = self.rng.range(0, 20);
            self.client_busy_until.insert(client, self.now + think);
            // Each operation goes to one group, each group with its own keys.
            let g = if self.groups == 1 {
                0
            } else {
                self.rng.range(0, self.groups as u64) as usize
            };
            let Some(target) = self.pick_target(g) else {
                continue;
            };
            self.client_seq += 1;
            let now = self.local(target);
            let (key, req) = self
                .w
                .next_request(&mut self.rng, client, self.client_seq, now);
            self.issue(client, target, g, key, req);
        }
        Ok(())
    }

    fn issue(
        &mut self,
        client: u64,
        target: NodeId,
        g: usize,
        key: W::Key,
        req: ClientRequest<Op<W>>,
    ) {
        let (command, op, ask) = match req {
            ClientRequest::Untracked { command } => {
                // Extra load nobody waits for: a paused node's copy is simply lost.
                let now = self.local(target);
                if !self.paused(target) {
                    if let Some(n) = self.group_mut(target, g) {
                        let _ = n.propose(now, &command);
                    }
                }
                return;
            }
            ClientRequest::Write { command, op } => (command, op, Ask::Write),
            ClientRequest::Read { op, lease } => (Vec::new(), op, Ask::Read { lease }),
        };
        if self.group(target, g).is_none() {
            return;
        }
        let hist = self.history[g].len();
        self.history[g].push(Operation {
            client,
            key: key.clone(),
            op: op.clone(),
            invoke: self.now,
            response: None,
        });
        let mut p = Pending {
            command,
            attempts: 1,
            client,
            group: g,
            hist,
            node: target,
            incarnation: self.slots[&target].incarnation,
            key,
            op,
            kind: PendingKind::Held(ask),
            deadline: self.now + OP_TIMEOUT_MS,
        };
        if self.paused(target) {
            // It waits for the node, and its client for it.
            self.tally.held_requests += 1;
            self.pending.push(p);
        } else if self.submit(&mut p) {
            self.pending.push(p);
        } else {
            // Refused before it was appended or read: it certainly did not happen.
            self.history[g].pop();
        }
    }

    /// Hand a request that reached its (running) node to it. Returns false when the node
    /// refuses it (not appended, no read started).
    fn submit(&mut self, p: &mut Pending<W>) -> bool {
        let PendingKind::Held(ask) = p.kind else {
            return true;
        };
        let now = self.local(p.node);
        let Some(n) = self.group_mut(p.node, p.group) else {
            return false;
        };
        p.kind = match ask {
            Ask::Write => match n.propose(now, &p.command) {
                Ok((index, term)) => PendingKind::Write { index, term },
                Err(_) => return false,
            },
            Ask::Read { lease } => {
                let lease = if lease { Some(n.read_lease(now)) } else { None };
                match lease {
                    Some(Ok(index)) => PendingKind::ReadAt(index),
                    Some(Err(ReadError::NotLeader { .. })) => return false,
                    // No lease (expired, or a clock disagrees): through ReadIndex, as shoald.
                    Some(Err(_)) | None => {
                        let fallback = lease.is_some();
                        match n.read_index(now) {
                            Ok(t) => {
                                self.tally.lease_fallbacks += u64::from(fallback);
                                PendingKind::ReadTicket(t)
                            }
                            Err(_) => return false,
                        }
                    }
                }
            }
        };
        true
    }

    /// Send a write whose answer was lost again, unchanged (same session and sequence), to
    /// whoever leads now. Returns false when the client gives up: the outcome stays unknown.
    fn retry(&mut self, mut p: Pending<W>) -> bool {
        if !self.w.retries() || p.attempts >= MAX_ATTEMPTS {
            return false;
        }
        let g = p.group;
        let Some(target) = self.leader(g).or_else(|| self.pick_target(g)) else {
            return false;
        };
        if self.paused(target) {
            // The retry waits for the paused node like any request sent to it.
            p.kind = PendingKind::Held(Ask::Write);
            p.node = target;
            p.incarnation = self.slots[&target].incarnation;
            p.attempts += 1;
            p.deadline = self.now + OP_TIMEOUT_MS;
            self.tally.held_requests += 1;
            self.pending.push(p);
            return true;
        }
        let now = self.local(target);
        let incarnation = self.slots[&target].incarnation;
        let Some(n) = self.group_mut(target, g) else {
            return false;
        };
        match n.propose(now, &p.command) {
            Ok((index, term)) => {
                p.kind = PendingKind::Write { index, term };
                p.node = target;
                p.incarnation = incarnation;
                p.attempts += 1;
                p.deadline = self.now + OP_TIMEOUT_MS;
                self.trace(|| {
                    format!(
                        "client {} retries its write on node {target} (attempt {})",
                        p.client, p.attempts
                    )
                });
                self.pending.push(p);
                true
            }
            Err(_) => {
                // Not appended anywhere this time; try again a little later.
                p.attempts += 1;
                p.deadline = self.now + 50;
                self.pending.push(p);
                true
            }
        }
    }

    fn flush_all(&mut self) -> Result<(), SimFailure> {
        let groups = self.groups;
        let gids = self.ids.clone();
        let ids: Vec<NodeId> = self.slots.keys().copied().collect();
        for id in ids {
            if self.paused(id) {
                continue;
            }
            let now = self.local(id);
            let incarnation = self.slots[&id].incarnation;
            let mut events = Vec::new();
            let deferred = self.deferred_sync;
            let global = self.now;
            let mut delays = [0; MAX_GROUPS];
            if deferred {
                for d in delays.iter_mut().take(groups) {
                    *d = self.rng.range(0, 8);
                }
            }
            let mut stopped = None;
            if let Some(Slot {
                node: Some(host),
                groups: gslots,
                ..
            }) = self.slots.get_mut(&id)
            {
                if !deferred {
                    if let Err(e) =
                        host.flush(now, &mut |gid, e| events.push((index_of(&gids, gid), e)))
                    {
                        stopped = Some(e);
                    }
                } else {
                    for (g, gs) in gslots.iter_mut().enumerate() {
                        let n = host
                            .group_mut(gids[g])
                            .expect("a live node hosts every group");
                        if let Some((at, mark, due)) = gs.bg_sync {
                            if due <= global {
                                n.storage_mut().background_synced(mark);
                                n.log_persisted(at);
                                gs.bg_sync = None;
                            }
                        }
                        // As shoald flushes: a full sync is left to the platform, which
                        // makes the storage durable and calls `synced` (or, when that sync is
                        // refused, lets `flush` sync and apply the failure policy).
                        let mut push = |e| events.push((g, e));
                        let r = match n.flush_shared(now, &mut push) {
                            Ok(Left::Everything(at)) => {
                                match shoal_core::storage::Storage::sync(n.storage_mut()) {
                                    Ok(()) => n.synced(at, now, &mut push).map(|()| None),
                                    Err(_) => n.flush(now, &mut push).map(|()| None),
                                }
                            }
                            Ok(Left::OwnLog(at)) => Ok(Some(at)),
                            Ok(Left::Nothing) => Ok(None),
                            Err(e) => Err(e),
                        };
                        match r {
                            Err(e) => {
                                // The node stops: its other groups are not flushed.
                                stopped = Some(MultiError::Node(gids[g], e));
                                break;
                            }
                            Ok(want) => {
                                if let (Some(at), None) = (want, gs.bg_sync) {
                                    let mark = n.storage().begin_background_sync();
                                    gs.bg_sync = Some((at, mark, global + delays[g]));
                                }
                            }
                        }
                    }
                }
            }
            for g in 0..groups {
                let applied = self
                    .group_mut(id, g)
                    .map(|n| std::mem::take(&mut n.state_machine_mut().applied))
                    .unwrap_or_default();
                for (index, hash) in applied {
                    self.checkers[g]
                        .record_applied(id, incarnation, index, hash)
                        .map_err(|v| self.violation(g, v))?;
                }
            }
            for (g, ev) in events {
                self.on_event(id, g, incarnation, ev)?;
            }
            if let Some(e) = stopped {
                self.host_stopped(id, e, "flush")?;
            }
            for g in 0..groups {
                if let Some(n) = self.group(id, g) {
                    self.w.check(&n.state_machine().inner).map_err(|m| {
                        SimFailure::new(
                            FailureCategory::Invariant(
                                crate::sim::invariants::InvariantKind::StateMachineSafety,
                            ),
                            format!("{}: {m}", self.at(id, g)),
                        )
                    })?;
                }
            }
            // Reads served by the lease wait only for the apply.
            for g in 0..groups {
                self.serve_lease_reads(id, g, incarnation);
            }
        }
        let frames: Vec<_> = self.out.borrow_mut().drain(..).collect();
        for (from, to, f) in frames {
            self.check_promise(from, to, &f)?;
            self.net.send(from, to, f, self.now);
        }
        Ok(())
    }

    /// The durability contract seen from outside: a vote grant may leave a node only once the
    /// vote is durable (it would survive a power cut at this instant).
    fn check_promise(&self, from: NodeId, to: NodeId, frame: &[u8]) -> Result<(), SimFailure> {
        let Ok((f, _)) = shoal_core::wire::decode(frame) else {
            return Ok(());
        };
        if let shoal_core::wire::Body::Raft(Message::VoteResp(VoteResp {
            term,
            granted: true,
        })) = f.body
        {
            let Some(g) = self.ids.iter().position(|&gid| gid == f.header.group) else {
                return Ok(());
            };
            let Some(n) = self.group(from, g) else {
                return Ok(());
            };
            let hs = n.storage().disk().durable_hard_state();
            if hs.term < term || (hs.term == term && hs.vote != to) {
                return Err(SimFailure::new(
                    FailureCategory::Invariant(
                        crate::sim::invariants::InvariantKind::ElectionSafety,
                    ),
                    format!(
                        "{} granted its vote in term {term} to node {to} before it was durable \
                         (durable: term {}, vote {})",
                        self.at(from, g),
                        hs.term,
                        hs.vote
                    ),
                ));
            }
        }
        Ok(())
    }

    fn on_event(
        &mut self,
        id: NodeId,
        g: usize,
        incarnation: u64,
        ev: Event<<W::Sm as StateMachine>::Output>,
    ) -> Result<(), SimFailure> {
        match ev {
            Event::Applied {
                index,
                term,
                output,
            } => {
                let found = self.pending.iter().position(|p| {
                    p.node == id
                        && p.group == g
                        && p.incarnation == incarnation
                        && matches!(p.kind, PendingKind::Write { index: i, .. } if i == index)
                });
                if let Some(at) = found {
                    let p = self.pending.swap_remove(at);
                    let PendingKind::Write { term: t, .. } = p.kind else {
                        unreachable!("matched a write above")
                    };
                    // A lost answer (the client's connection dropped it) is simulated now and
                    // then, so retries hit the state machine's exactly-once table.
                    let answer_lost = self.w.retries() && self.rng.chance(1, 8);
                    if t == term && !answer_lost {
                        if let Some(ret) = self.w.write_result(&p.op, &output) {
                            self.history[g][p.hist].response = Some((self.now, ret));
                        }
                    } else {
                        // Overwritten (another term at that index) or answer lost: the
                        // client does not know whether it happened and sends it again.
                        self.retry(p);
                    }
                }
            }
            Event::ReadReady { upto, .. } => {
                self.serve_reads(
                    id,
                    g,
                    incarnation,
                    |k| matches!(k, PendingKind::ReadTicket(t) if *t <= upto),
                );
            }
            Event::ReadFailed { upto } => {
                // A failed read returned nothing and changed nothing: drop it from the history.
                let mut i = 0;
                while i < self.pending.len() {
                    let p = &self.pending[i];
                    if p.node == id
                        && p.group == g
                        && p.incarnation == incarnation
                        && matches!(p.kind, PendingKind::ReadTicket(t) if t <= upto)
                    {
                        let p = self.pending.swap_remove(i);
                        self.history[g][p.hist].response = None;
                        self.drop_read(g, p.hist);
                    } else {
                        i += 1;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Reads that never answered are removed from the history (they have no effect).
    fn drop_read(&mut self, g: usize, hist: usize) {
        self.history[g][hist].invoke = u64::MAX;
    }

    fn serve_lease_reads(&mut self, id: NodeId, g: usize, incarnation: u64) {
        let Some(applied) = self.group(id, g).map(|n| n.applied()) else {
            return;
        };
        self.serve_reads(
            id,
            g,
            incarnation,
            |k| matches!(k, PendingKind::ReadAt(x) if *x <= applied),
        );
    }

    /// Answer every pending read of group `g` on `id` that `ready` accepts, from its state
    /// machine now.
    fn serve_reads(
        &mut self,
        id: NodeId,
        g: usize,
        incarnation: u64,
        ready: impl Fn(&PendingKind) -> bool,
    ) {
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            if p.node == id && p.group == g && p.incarnation == incarnation && ready(&p.kind) {
                let p = self.pending.swap_remove(i);
                let sm = &self
                    .group(id, g)
                    .expect("node is live")
                    .state_machine()
                    .inner;
                let ret = self.w.read(sm, &p.key, &p.op);
                self.history[g][p.hist].response = Some((self.now, ret));
            } else {
                i += 1;
            }
        }
    }

    /// Give up on operations past their deadline or whose node crashed: their answers are lost.
    fn expire_pending(&mut self) {
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let node_gone = self
                .slots
                .get(&p.node)
                .map(|s| s.incarnation != p.incarnation || s.node.is_none())
                .unwrap_or(true);
            if p.deadline <= self.now || node_gone {
                let p = self.pending.swap_remove(i);
                if p.kind.is_write() {
                    self.retry(p);
                } else {
                    self.drop_read(p.group, p.hist);
                }
            } else {
                i += 1;
            }
        }
    }

    fn observe(&mut self) -> Result<(), SimFailure> {
        let ids: Vec<NodeId> = self.slots.keys().copied().collect();
        for id in ids {
            for g in 0..self.groups {
                self.observe_group(id, g)?;
            }
        }
        Ok(())
    }

    /// Feed group `g`'s checker the view of node `id`.
    fn observe_group(&mut self, id: NodeId, g: usize) -> Result<(), SimFailure> {
        let slot = self.slots.get(&id).expect("id from keys");
        let Some(n) = slot.node.as_ref().and_then(|h| h.group(self.gid(g))) else {
            return Ok(());
        };
        let gs = &slot.groups[g];
        let r = n.raft();
        let store = n.storage();
        let from = if gs.fresh_view {
            store.snapshot_index() + 1
        } else {
            gs.reported_commit.max(store.snapshot_index()) + 1
        };
        let entries = entry_views(store, from, store.last_index());
        let view = NodeView {
            id,
            incarnation: slot.incarnation,
            term: r.term(),
            is_leader: r.role() == Role::Leader,
            commit: r.commit(),
            applied: r.applied(),
            snapshot_index: store.snapshot_index(),
            last_index: store.last_index(),
            entries,
        };
        let commit = r.commit().min(store.last_index());
        if view.is_leader && gs.led_term != view.term {
            self.trace(|| format!("{} leads term {}", self.at(id, g), view.term));
        }
        self.checkers[g].observe(&view).map_err(|v| {
            self.trace(|| format!("violation at {}: {v:?}", self.at(id, g)));
            self.violation(g, v)
        })?;
        let gs = &mut self.slots.get_mut(&id).expect("id from keys").groups[g];
        gs.fresh_view = false;
        gs.reported_commit = commit;
        if view.is_leader {
            gs.led_term = view.term;
        }
        Ok(())
    }

    /// A checker's violation in group `g`, naming the group when there are several.
    fn violation(&self, g: usize, v: crate::sim::invariants::Violation) -> SimFailure {
        let mut f = SimFailure::from(v);
        f.message = format!("{}{}", self.group_prefix(g), f.message);
        f
    }

    /// "group 2: " in front of a failure's message when nodes host several groups.
    fn group_prefix(&self, g: usize) -> String {
        if self.groups == 1 {
            String::new()
        } else {
            format!("group {}: ", self.gid(g))
        }
    }

    fn finish(mut self) -> Result<SeedReport, SimFailure> {
        // A node that stopped on damaged data in the last moments is back, as after any stop.
        self.restart_stopped(true)?;
        // Faults stopped at `quiet_from_ms`; by now a leader must lead every live member, in
        // every group.
        let mut leaders = Vec::new();
        for g in 0..self.groups {
            let leader = self.leader(g).ok_or_else(|| {
                SimFailure::new(
                    FailureCategory::Liveness,
                    format!(
                        "{}no leader at the end of the quiet phase [{}]",
                        self.group_prefix(g),
                        self.describe_nodes(g)
                    ),
                )
            })?;
            leaders.push(leader);
        }
        // Final reads of every key through the leader, so a lost acknowledged write shows up.
        for (g, &leader) in leaders.iter().enumerate() {
            for key in self.w.keys() {
                let op = self.w.final_read(&key);
                self.issue(
                    u64::MAX,
                    leader,
                    g,
                    key,
                    ClientRequest::Read { op, lease: false },
                );
            }
        }
        for _ in 0..500 {
            self.quiet_step()?;
            if self.pending.is_empty() {
                break;
            }
        }
        if !self.pending.is_empty() {
            return Err(SimFailure::new(
                FailureCategory::Liveness,
                "final reads did not complete after faults stopped",
            ));
        }
        // Convergence: every member applied the leader's commit, with equal state. The last
        // read round may have advanced the leader's commit in its final step; followers learn
        // it from the next heartbeat, so give them a few heartbeat intervals of quiet.
        for _ in 0..500 {
            let converged = leaders
                .iter()
                .enumerate()
                .all(|(g, &leader)| self.converged(g, leader));
            if converged {
                break;
            }
            self.quiet_step()?;
        }
        let mut commits = Vec::new();
        for (g, &leader) in leaders.iter().enumerate() {
            commits.push(self.check_converged(g, leader)?);
        }
        // Retired groups' histories were checked when they were retired.
        let (mut ops, mut answered, mut unknown) = self.retired_ops;
        for g in 0..self.groups {
            let history: History<W> = self.history[g]
                .drain(..)
                .filter(|o| o.invoke != u64::MAX)
                .collect();
            ops += history.len();
            answered += history.iter().filter(|o| o.response.is_some()).count();
            unknown |= self.check_history(g, &history)?;
        }
        let commit = commits
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("/");
        let groups = if self.groups == 1 {
            String::new()
        } else {
            format!(" in {} groups (leaders {leaders:?})", self.groups)
        };
        Ok(SeedReport {
            steps: self.now,
            ops,
            linearizability_unknown: unknown,
            summary: format!(
                "{} nodes, {} faults, {} ops ({} answered), commit {}{}, joint change {}{}",
                self.schedule.initial_voters.len(),
                self.faults,
                ops,
                answered,
                commit,
                groups,
                if self.joint_seen { "yes" } else { "no" },
                self.tally.describe(),
            ),
        })
    }

    /// Whether every member of group `g` applied `leader`'s commit.
    fn converged(&self, g: usize, leader: NodeId) -> bool {
        let lr = self.group(leader, g).expect("leader is live");
        let commit = lr.raft().commit();
        lr.raft()
            .membership()
            .all()
            .iter()
            .all(|id| self.failed(*id) || self.group(*id, g).is_some_and(|n| n.applied() >= commit))
    }

    /// Group `g`'s members after the quiet phase: each live one applied `leader`'s commit and
    /// holds the same state. Returns that commit.
    fn check_converged(&self, g: usize, leader: NodeId) -> Result<LogIndex, SimFailure> {
        let lr = self.group(leader, g).expect("leader is live");
        let commit = lr.raft().commit();
        let members = lr.raft().membership().all();
        let want = self.w.digest(&lr.state_machine().inner);
        let lead = self.group_prefix(g);
        for id in members.iter().filter(|id| !self.failed(**id)) {
            let Some(n) = self.group(*id, g) else {
                return Err(SimFailure::new(
                    FailureCategory::Liveness,
                    format!("{lead}member {id} is down at the end"),
                ));
            };
            if n.applied() < commit {
                return Err(SimFailure::new(
                    FailureCategory::Liveness,
                    format!("{lead}member {id} applied {} of leader {leader}'s commit {commit} after faults stopped", n.applied()),
                ));
            }
            if n.applied() == commit && self.w.digest(&n.state_machine().inner) != want {
                return Err(SimFailure::new(
                    FailureCategory::Invariant(
                        crate::sim::invariants::InvariantKind::StateMachineSafety,
                    ),
                    format!("{lead}member {id}'s state differs from leader {leader}'s at index {commit}"),
                ));
            }
        }
        let replicas: Vec<(NodeId, &W::Sm)> = members
            .iter()
            .filter_map(|id| self.group(*id, g).map(|n| (*id, &n.state_machine().inner)))
            .collect();
        self.w.converged(&replicas).map_err(|m| {
            SimFailure::new(
                FailureCategory::Invariant(
                    crate::sim::invariants::InvariantKind::StateMachineSafety,
                ),
                format!("{}{m}", self.group_prefix(g)),
            )
        })?;
        Ok(commit)
    }
}

/// The index of the group whose id is `gid` in `ids` (the ids of the current groups).
fn index_of(ids: &[GroupId], gid: GroupId) -> usize {
    ids.iter()
        .position(|&g| g == gid)
        .expect("only a current group reports")
}

/// The seed of group `g`'s part of something drawn from `seed` (group 0 keeps `seed`, so a
/// run with one group draws exactly what it always drew).
fn group_seed(seed: u64, g: usize) -> u64 {
    seed ^ (g as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Term and payload hash of entries `lo..=hi` as they were written (bytes the node's reads
/// return flipped are the node's to notice, not a different log).
fn entry_views(store: &MemStorage, lo: LogIndex, hi: LogIndex) -> Vec<EntryView> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut next = lo;
    while next <= hi {
        let Ok(got) = store.read_entries_as_written(next, hi, &mut buf) else {
            break;
        };
        for e in EntryIter::new(&buf[..got.bytes], got.count).flatten() {
            let mut h = hash_bytes(e.data);
            h ^= (e.kind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            if e.kind != EntryKind::Normal {
                h = h.rotate_left(7);
            }
            out.push(EntryView {
                index: e.index,
                term: e.term,
                hash: h,
            });
            next = e.index + 1;
        }
        if got.count == 0 {
            break;
        }
    }
    out
}

// ----- the register workload ---------------------------------------------------------------------

/// A replicated map of a few registers: writes, compare-and-sets, ReadIndex and lease reads.
pub struct RegisterWorkload;

/// The register state machine.
#[derive(Default)]
pub struct RegisterSm {
    applied: LogIndex,
    values: BTreeMap<u8, u64>,
}

/// The result of applying a register command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOut {
    /// A write was done.
    Written,
    /// Whether a compare-and-set swapped.
    Swapped(bool),
    /// The command did not decode.
    Bad,
}

impl StateMachine for RegisterSm {
    type Output = RegisterOut;
    fn apply(&mut self, index: LogIndex, _term: Term, c: &[u8]) -> RegisterOut {
        self.applied = index;
        match c {
            [0, key, rest @ ..] if rest.len() == 8 => {
                self.values
                    .insert(*key, u64::from_le_bytes(rest.try_into().expect("8 bytes")));
                RegisterOut::Written
            }
            [1, key, has, rest @ ..] if rest.len() == 16 => {
                let expect =
                    (*has == 1).then(|| u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")));
                let new = u64::from_le_bytes(rest[8..].try_into().expect("8 bytes"));
                if self.values.get(key).copied() == expect {
                    self.values.insert(*key, new);
                    RegisterOut::Swapped(true)
                } else {
                    RegisterOut::Swapped(false)
                }
            }
            _ => RegisterOut::Bad,
        }
    }
    fn skip(&mut self, index: LogIndex) {
        self.applied = index;
    }
    fn applied_index(&self) -> LogIndex {
        self.applied
    }
    fn snapshot(&self, out: &mut dyn SnapshotWriter) -> Result<(), SnapshotError> {
        for (k, v) in &self.values {
            out.write(&[*k])?;
            out.write(&v.to_le_bytes())?;
        }
        Ok(())
    }
    fn restore(
        &mut self,
        index: LogIndex,
        src: &mut dyn SnapshotReader,
    ) -> Result<(), SnapshotError> {
        self.values.clear();
        while src.remaining() > 0 {
            let mut rec = [0u8; 9];
            src.read_exact(&mut rec)?;
            self.values.insert(
                rec[0],
                u64::from_le_bytes(rec[1..].try_into().expect("8 bytes")),
            );
        }
        self.applied = index;
        Ok(())
    }
}

use crate::linearizability::{Register, RegisterOp, RegisterRet};

impl Workload for RegisterWorkload {
    type Sm = RegisterSm;
    type Key = u8;
    type Model = Register;

    fn new_sm(&self) -> RegisterSm {
        RegisterSm::default()
    }

    fn next_request(
        &self,
        rng: &mut Rng,
        _client: u64,
        seq: u64,
        _now_ms: u64,
    ) -> (u8, ClientRequest<RegisterOp>) {
        let key = rng.range(0, 3) as u8;
        let req = match rng.range(0, 10) {
            0..=3 => {
                let v = seq;
                let mut c = vec![0, key];
                c.extend_from_slice(&v.to_le_bytes());
                ClientRequest::Write {
                    command: c,
                    op: RegisterOp::Write(v),
                }
            }
            4..=5 => {
                let expect = if rng.chance(1, 4) {
                    None
                } else {
                    Some(rng.range(0, seq + 1))
                };
                let new = seq;
                let mut c = vec![1, key, expect.is_some() as u8];
                c.extend_from_slice(&expect.unwrap_or(0).to_le_bytes());
                c.extend_from_slice(&new.to_le_bytes());
                ClientRequest::Write {
                    command: c,
                    op: RegisterOp::Cas { expect, new },
                }
            }
            6..=7 => ClientRequest::Read {
                op: RegisterOp::Read,
                lease: true,
            },
            _ => ClientRequest::Read {
                op: RegisterOp::Read,
                lease: false,
            },
        };
        (key, req)
    }

    fn write_result(&self, _op: &RegisterOp, out: &RegisterOut) -> Option<RegisterRet> {
        match out {
            RegisterOut::Written => Some(RegisterRet::Written),
            RegisterOut::Swapped(s) => Some(RegisterRet::Swapped(*s)),
            RegisterOut::Bad => None,
        }
    }

    fn read(&self, sm: &RegisterSm, key: &u8, _op: &RegisterOp) -> RegisterRet {
        RegisterRet::Value(sm.values.get(key).copied())
    }

    fn final_read(&self, _key: &u8) -> RegisterOp {
        RegisterOp::Read
    }

    fn keys(&self) -> Vec<u8> {
        vec![0, 1, 2]
    }

    fn init(&self, _key: &u8) -> Register {
        Register::default()
    }

    fn digest(&self, sm: &RegisterSm) -> u64 {
        let mut bytes = Vec::new();
        for (k, v) in &sm.values {
            bytes.push(*k);
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        hash_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of `seed` whose nodes host `groups` groups, with its fault schedule dropped: the
    /// test makes the faults itself.
    fn faultless(seed: u64, groups: usize) -> Run<'static, RegisterWorkload> {
        faultless_planted(seed, groups, None)
    }

    /// [`faultless`], every node built with `plant`.
    fn faultless_planted(
        seed: u64,
        groups: usize,
        plant: Option<PlantedBug>,
    ) -> Run<'static, RegisterWorkload> {
        let opts = RunOpts {
            groups,
            workload: "register".into(),
            mutant: plant.map(|b| b.name().to_string()),
            ..RunOpts::default()
        };
        let mut run = Run::new(&RegisterWorkload, seed, &opts).expect("run starts");
        run.schedule.events.clear();
        run
    }

    /// Run `ms` simulated ms with clients busy; every step is checked.
    fn steps(run: &mut Run<'_, RegisterWorkload>, ms: u64) {
        let mut ev_at = 0;
        for _ in 0..ms {
            run.step(&mut ev_at, u64::MAX)
                .expect("every step passes its checks");
        }
    }

    fn leaders(run: &Run<'_, RegisterWorkload>) -> Vec<Option<(NodeId, Term)>> {
        (0..run.groups)
            .map(|g| {
                run.leader(g)
                    .map(|l| (l, run.group(l, g).expect("leader is live").raft().term()))
            })
            .collect()
    }

    /// The highest commit any live node knows in group `g`.
    fn commit(run: &Run<'_, RegisterWorkload>, g: usize) -> LogIndex {
        run.live_nodes()
            .iter()
            .filter_map(|id| run.group(*id, g).map(|n| n.raft().commit()))
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn a_node_fault_hits_every_group_it_hosts_and_only_the_groups_it_led_elect_again() {
        let mut run = faultless(21, 4);
        steps(&mut run, 3_000);
        // Each group has its own voters, and its own election: not one node leads them all.
        let before = leaders(&run);
        assert!(
            before.iter().all(Option::is_some),
            "a group has no leader: {before:?}"
        );
        let voters: Vec<Vec<NodeId>> = (0..4)
            .map(|g| {
                let n = run.group(before[g].unwrap().0, g).unwrap();
                let mut v: Vec<NodeId> = n.raft().membership().all().iter().copied().collect();
                v.sort_unstable();
                v
            })
            .collect();
        assert_ne!(voters[0], voters[1], "groups 0 and 1 have the same voters");
        let distinct: std::collections::BTreeSet<_> = before.iter().map(|l| l.unwrap().0).collect();
        assert!(distinct.len() > 1, "one node leads every group: {before:?}");
        let committed: Vec<LogIndex> = (0..4).map(|g| commit(&run, g)).collect();
        assert!(
            committed.iter().all(|c| *c > 5),
            "groups did not commit: {committed:?}"
        );

        // Crash the node that leads group 0: it goes down in every group at once.
        let x = before[0].unwrap().0;
        let led: Vec<usize> = (0..4).filter(|g| before[*g].unwrap().0 == x).collect();
        run.crash(x);
        assert!((0..4).all(|g| run.group(x, g).is_none()));
        steps(&mut run, 2_000);
        let after = leaders(&run);
        for g in 0..4 {
            let (l, term) =
                after[g].unwrap_or_else(|| panic!("group {g} has no leader: {after:?}"));
            let (old, old_term) = before[g].unwrap();
            if led.contains(&g) {
                assert!(
                    l != x && term > old_term,
                    "group {g}: {before:?} -> {after:?}"
                );
            } else {
                // A group the node only followed in keeps its leader and its term.
                assert_eq!(
                    (l, term),
                    (old, old_term),
                    "group {g}: {before:?} -> {after:?}"
                );
            }
            assert!(commit(&run, g) > committed[g], "group {g} made no progress");
        }

        // Cut off the leader of group 1 from everyone: each group it led elects another.
        let (y, _) = after[1].unwrap();
        let led: Vec<usize> = (0..4).filter(|g| after[*g].unwrap().0 == y).collect();
        let all = run.schedule.all_nodes.clone();
        run.net.isolate(y, &all);
        steps(&mut run, 2_000);
        let cut = leaders(&run);
        for g in led {
            // The isolated node may still believe it leads an old term; the others moved on.
            let (l, term) = cut[g].unwrap();
            assert!(
                l != y && term > after[g].unwrap().1,
                "group {g}: {after:?} -> {cut:?}"
            );
        }
        run.net.heal();
        run.restart(x).expect("restarts");
        steps(&mut run, 2_000);
        // Every group kept what it committed: the final reads and the per-group
        // linearizability check run in `finish`, with convergence of all members.
        let report = run
            .finish()
            .expect("every group converges and is linearizable");
        assert!(report.summary.contains("in 4 groups"), "{}", report.summary);
    }

    /// Pause group 0's leader of seed `seed`'s run (its fault schedule dropped) for 1.2 s:
    /// clients give up on it after 1 s and write through the new leader. Send the paused node
    /// a lease read of every key, resume it, and finish the run; every node is built with
    /// `plant`.
    fn stale_leader_resumes(
        seed: u64,
        plant: Option<PlantedBug>,
    ) -> Result<SeedReport, SimFailure> {
        let mut run = faultless_planted(seed, 1, plant);
        steps(&mut run, 2_000);
        let (old, old_term) = leaders(&run)[0].expect("a leader");
        let before = run.group(old, 0).unwrap().raft().commit();
        run.pause(old);
        steps(&mut run, 1_200);
        // Standing still: it still believes it leads its term, and it missed what came since.
        let r = run.group(old, 0).unwrap().raft();
        assert_eq!(
            (r.role(), r.term(), r.commit()),
            (Role::Leader, old_term, before)
        );
        assert!(!run.slots[&old].inbox.is_empty(), "frames wait for it");
        let (new, new_term) = leaders(&run)[0].expect("a leader");
        assert!(new != old && new_term > old_term, "{old} -> {new}");
        assert!(commit(&run, 0) > before, "the new leader committed writes");
        for key in RegisterWorkload.keys() {
            let read = ClientRequest::Read {
                op: RegisterOp::Read,
                lease: true,
            };
            run.issue(100 + u64::from(key), old, 0, key, read);
        }
        steps(&mut run, 5);
        run.resume(old);
        steps(&mut run, 1_000);
        let r = run.group(old, 0).unwrap().raft();
        assert!(
            r.role() != Role::Leader && r.term() >= new_term,
            "it learnt of the new term"
        );
        run.finish()
    }

    #[test]
    fn a_paused_leader_resumes_behind_and_serves_no_stale_lease_read() {
        let mut caught = Vec::new();
        for seed in 1..=8 {
            let report = stale_leader_resumes(seed, None).expect("no stale read");
            assert!(report.summary.contains("1 pauses, "), "{}", report.summary);
            // A leader whose lease is not checked against its clock answers the reads from
            // what it knew before the pause when it resumes: not linearizable.
            if let Err(e) = stale_leader_resumes(seed, Some(PlantedBug::LeaseIgnoresClock)) {
                assert_eq!(e.category, FailureCategory::Linearizability, "{e}");
                caught.push(seed);
            }
        }
        assert!(
            caught.len() >= 4,
            "the planted bug was caught in seeds {caught:?} only"
        );
    }

    #[test]
    fn a_retired_group_gives_way_to_a_new_id_on_every_node_and_its_frames_are_refused() {
        let mut run = faultless(21, 3);
        steps(&mut run, 2_000);
        let before = leaders(&run);
        assert!(before.iter().all(Option::is_some), "{before:?}");
        // A node that leads no group goes down: it finds the new group when it comes back.
        let x = *run
            .schedule
            .all_nodes
            .iter()
            .find(|id| before.iter().all(|l| l.unwrap().0 != **id))
            .expect("a node leading no group");
        run.crash(x);
        let kept = (commit(&run, 0), commit(&run, 2));
        run.replace_group(1).expect("the group is replaced");
        assert_eq!(run.ids, vec![0, 3, 2], "group index 1 now runs group 3");
        for id in run.live_nodes() {
            let mut hosted: Vec<GroupId> =
                run.slots[&id].node.as_ref().unwrap().group_ids().collect();
            hosted.sort_unstable();
            assert_eq!(hosted, vec![0, 2, 3], "node {id}");
        }
        assert!(matches!(run.slots[&x].down[1], Medium::Fresh));
        assert!(run.pending.iter().all(|p| p.group != 1));
        assert!(run.history[1].is_empty() && run.retired_ops.0 > 0);
        steps(&mut run, 2_000);
        // Heartbeats and appends of group 1 were on the wire: every host refused them.
        assert!(run.tally.stale_frames > 0);
        assert!(leaders(&run)[1].is_some(), "the new group elected a leader");
        assert!(commit(&run, 1) > 0, "the new group commits");
        assert!(commit(&run, 0) > kept.0 && commit(&run, 2) > kept.1);
        run.restart(x).expect("restarts");
        assert!(run.group(x, 1).is_some(), "node {x} starts the new group");
        steps(&mut run, 2_000);
        let report = run
            .finish()
            .expect("every group converges and is linearizable");
        assert!(
            report
                .summary
                .contains("1 groups retired, 1 groups created"),
            "{}",
            report.summary
        );
    }

    #[test]
    fn a_frame_of_a_retired_group_that_reaches_a_group_fails_the_run() {
        let mut run = faultless(21, 2);
        steps(&mut run, 500);
        // As if group 1 had been retired but its id reused: its frames are routed, not
        // refused.
        run.retired_ids.push(run.gid(1));
        let mut ev_at = 0;
        let e = (0..500)
            .find_map(|_| run.step(&mut ev_at, u64::MAX).err())
            .expect("the frame that reached group 1 is caught");
        assert!(
            e.message.contains("did not refuse a frame") && e.message.contains("retired group 1"),
            "{e}"
        );
    }

    #[test]
    fn groups_out_of_range_are_refused_with_the_reason() {
        for groups in [0, MAX_GROUPS + 1] {
            let opts = RunOpts {
                groups,
                ..RunOpts::default()
            };
            let Err(e) = Run::new(&RegisterWorkload, 1, &opts) else {
                panic!("{groups} groups accepted");
            };
            assert_eq!(e.category, FailureCategory::Setup);
            assert!(
                e.message.contains("--groups must be between 1 and 8"),
                "{e}"
            );
        }
    }
}
