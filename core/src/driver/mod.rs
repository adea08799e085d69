//! The node driver: binds one group's [`Raft`] to its [`Storage`], [`Transport`] and
//! [`StateMachine`]. Both platforms and the simulator run this same code; the example
//! `core/examples/single_node.rs` drives one by hand.
//!
//! A platform feeds inputs (`tick`, `handle_frame`, `propose`, `read_index`, ...) and then calls
//! [`Node::flush`] once per batch of inputs. `flush` keeps the IO contract of
//! [`crate::storage`] in these steps, in this order (docs/DESIGN.md lists the same steps, and a
//! test keeps the two lists equal):
//!
//! 1. **Queue.** `Raft::flush` queues appends for the entries the batch wrote and a heartbeat
//!    for the open read round.
//! 2. **Send.** Every message that may leave now is framed and sent, its entries read from
//!    storage straight into the send buffer; a burst larger than the outbox goes out in
//!    rounds. A leader sends its appends before its own sync, so replication overlaps the
//!    local disk write.
//! 3. **Sync.** If anything was written, `Storage::sync` runs once for the whole batch (group
//!    commit); then `Raft::on_persisted` releases the held messages (vote grants and requests,
//!    append acknowledgements) and they are sent. With `flush_deferred`, a leader whose only
//!    unsynced writes are its own new entries skips the sync and gets a `SyncPoint` to sync in
//!    the background instead; with `flush_shared`, a node waiting for any other sync stops
//!    here and the platform syncs many groups at once, then calls `synced` for steps 3 to 7.
//! 4. **Apply.** Committed entries are read back from storage and applied; `Event::Applied`
//!    carries each result with its index and term, which the platform matches against the
//!    `(index, term)` `propose` returned (another term at that index means the proposal was
//!    overwritten).
//! 5. **Reads.** Reads whose index is applied are reported ready (`Event::ReadReady`), failed
//!    ones as `Event::ReadFailed`.
//! 6. **Roles.** A change of role, term or leader is reported (`Event::RoleChanged`) and
//!    passed to `StateMachine::on_leadership`.
//! 7. **Snapshot.** A due snapshot is taken and the log behind it compacted
//!    (`Event::Snapshot`); messages the batch produced on the way (reads a commit confirmed)
//!    are sent.
//!
//! Every input and every step applies the failure policy of [`crate::fault`]: what a peer
//! sent wrong is dropped and counted, a full medium degrades, and only a local durability
//! fault is returned as an error (the node must stop).
//!
//! The driver never allocates: the platform hands in the one buffer used to frame messages and
//! to read entries for applying.

mod error;
mod input;
mod send;
mod snapshot;

pub use error::NodeError;
pub use snapshot::SnapshotPlan;

use crate::entry::{self, EntryIter};
use crate::fault::{FaultCounts, FaultLog};
use crate::io::{StateMachine, Transport};
use crate::limits::Config;
use crate::membership::Membership;
use crate::plant::{NoPlant, Plant};
use crate::raft::{
    ConfigChange, ProposeError, Raft, ReadError, ReadEvent, Recovered, SyncPoint, TransferError,
};
use crate::storage::{Storage, StorageError};
use crate::types::{ClusterId, EntryKind, GroupId, HardState, LogIndex, NodeId, Role, Term};
use crate::wire::FRAME_PREFIX_RESERVE;
use core::mem::MaybeUninit;
use heapless::Deque;
use snapshot::restore_from_store;

/// Identity and tuning of one group member.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The cluster this node belongs to.
    pub cluster_id: ClusterId,
    /// The group this driver runs.
    pub group: GroupId,
    /// This node's id.
    pub node_id: NodeId,
    /// Raft tuning.
    pub raft: Config,
    /// Seed for election jitter.
    pub seed: u64,
}

/// What [`Node::flush_shared`] left to its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// The flush is complete.
    Nothing,
    /// Complete but for this leader's own new entries: sync them in the background and report
    /// it with [`Node::log_persisted`] (as from [`Node::flush_deferred`]).
    OwnLog(SyncPoint),
    /// Nothing was synced and steps 3 to 7 wait: make everything written durable, then call
    /// [`Node::synced`] (or [`Node::flush`] to sync here) before any other input.
    Everything(SyncPoint),
}

/// What the driver reports from [`Node::flush`].
#[derive(Debug, PartialEq, Eq)]
pub enum Event<O> {
    /// The command at `index` (term `term`) was applied with this result. A proposal whose
    /// `(index, term)` does not match was overwritten and did not take effect.
    Applied {
        /// Entry index.
        index: LogIndex,
        /// Entry term.
        term: Term,
        /// The state machine's result.
        output: O,
    },
    /// Every read ticket ≤ `upto` may now be served from the state machine.
    ReadReady {
        /// Highest ticket covered.
        upto: u64,
        /// The index the reads are linearized at (already applied).
        index: LogIndex,
    },
    /// Every read ticket ≤ `upto` not yet ready failed; the client should retry.
    ReadFailed {
        /// Highest ticket covered.
        upto: u64,
    },
    /// The role, term or known leader changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The current term.
        term: Term,
        /// The known leader.
        leader: NodeId,
    },
    /// A snapshot was taken (or installed) at `index`.
    Snapshot {
        /// Index the snapshot covers.
        index: LogIndex,
    },
}

/// What a node is built from, and what it comes apart into: its storage, its transport, its
/// state machine, the one buffer it frames messages and reads entries with, and the planted
/// bugs it runs with ([`NoPlant`] unless a test plants one, see [`crate::plant`]).
pub struct NodeParts<S, T, M, B, P = NoPlant> {
    /// The group's durable state.
    pub store: S,
    /// Where frames to peers go.
    pub transport: T,
    /// What committed entries are applied to.
    pub sm: M,
    /// The node's one buffer (see [`Node::new`]).
    pub buf: B,
    /// Planted bugs.
    pub plant: P,
}

impl<S, T, M, B> NodeParts<S, T, M, B> {
    /// The parts of a node with no planted bug.
    pub fn new(store: S, transport: T, sm: M, buf: B) -> Self {
        NodeParts {
            store,
            transport,
            sm,
            buf,
            plant: NoPlant,
        }
    }
}

impl<S, T, M, B, P> NodeParts<S, T, M, B, P> {
    /// The same parts with `plant`'s bugs planted in the node (tests only).
    pub fn planted<Q: Plant>(self, plant: Q) -> NodeParts<S, T, M, B, Q> {
        NodeParts {
            store: self.store,
            transport: self.transport,
            sm: self.sm,
            buf: self.buf,
            plant,
        }
    }
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Frames sent.
    pub frames_out: u64,
    /// Frame bytes sent.
    pub bytes_out: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frame bytes received.
    pub bytes_in: u64,
    /// Frames the transport refused.
    pub send_failures: u64,
    /// Storage syncs.
    pub syncs: u64,
    /// Entries applied.
    pub applied_entries: u64,
    /// Snapshots taken locally.
    pub snapshots_taken: u64,
    /// Snapshots the node could not take (refused by storage); each is tried again after
    /// `snapshot_retry_ms`.
    pub snapshot_failures: u64,
    /// Inputs refused without stopping the node, by cause (see [`crate::fault`]).
    pub faults: FaultCounts,
}

/// The node's one buffer: any owned or borrowed byte slice (a `Vec<u8>`, a `&mut [u8]` into a
/// static, an array).
pub trait NodeBuffer: AsMut<[u8]> + AsRef<[u8]> {}

impl<B: AsMut<[u8]> + AsRef<[u8]>> NodeBuffer for B {}

/// Further rounds of "send what fits, then continue" per flush when a burst exceeds the outbox.
const MAX_SEND_ROUNDS: usize = 16;
/// Ready reads waiting for the state machine to catch up.
const WAITING_READS: usize = 16;

/// One group member: Raft plus its storage, transport, state machine and buffer. `P` is
/// where a test plants bugs ([`crate::plant`]); every real node runs [`NoPlant`].
pub struct Node<S, T, M, B, P: Plant = NoPlant> {
    cfg: NodeConfig,
    pub(crate) raft: Raft<P>,
    pub(crate) store: S,
    transport: T,
    sm: M,
    buf: B,
    waiting_reads: Deque<(u64, LogIndex), WAITING_READS>,
    reported: (Role, Term, NodeId),
    stats: NodeStats,
    faults: FaultLog,
    /// No snapshot is tried before this time (one was refused).
    snapshot_retry_at_ms: u64,
    /// The platform takes snapshots with [`Node::begin_snapshot`]: `flush` does not.
    background_snapshots: bool,
    /// The index of the snapshot the platform is writing now (see [`Node::begin_snapshot`]).
    snapshot_in_flight: Option<LogIndex>,
}

impl<S: Storage, T: Transport, M: StateMachine, B: NodeBuffer, P: Plant> Node<S, T, M, B, P> {
    /// Start a node from its storage. A fresh storage with `bootstrap` set starts a new group
    /// with that membership (every initial member must use the same one); a fresh storage
    /// without it starts a node that waits to be added by the leader (`--join`).
    ///
    /// `parts.buf` frames messages and reads entries; it must hold the largest entry plus
    /// [`FRAME_PREFIX_RESERVE`] + 16 bytes.
    pub fn new(
        cfg: NodeConfig,
        parts: NodeParts<S, T, M, B, P>,
        now_ms: u64,
        bootstrap: Option<&Membership>,
    ) -> Result<Self, NodeError> {
        crate::inplace::build(|slot| Self::init(slot, cfg, parts, now_ms, bootstrap))
    }

    /// Like [`Node::new`], but build the node directly in `slot` (a `static` on a small board)
    /// and return it there: neither the node nor its `Raft` is ever assembled on the stack and
    /// moved. If an error is returned after the node was built (a configuration entry in the
    /// log does not decode), its parts are not dropped.
    pub fn init<'s>(
        slot: &'s mut MaybeUninit<Self>,
        cfg: NodeConfig,
        parts: NodeParts<S, T, M, B, P>,
        now_ms: u64,
        bootstrap: Option<&Membership>,
    ) -> Result<&'s mut Self, NodeError> {
        cfg.raft.validate().map_err(NodeError::Config)?;
        let NodeParts {
            mut store,
            transport,
            mut sm,
            buf,
            plant,
        } = parts;
        let rec = recover(&mut store, &mut sm, bootstrap)?;
        let (id, raft_cfg, seed) = (cfg.node_id, cfg.raft.clone(), cfg.seed);
        let node = crate::write_fields!(slot, Self {
            raft in |s| Raft::init(s, id, raft_cfg, seed, rec, now_ms, plant),
            cfg: cfg,
            store: store,
            transport: transport,
            sm: sm,
            buf: buf,
            waiting_reads: Deque::new(),
            reported: (Role::Follower, 0, 0),
            stats: NodeStats::default(),
            faults: FaultLog::new(),
            snapshot_retry_at_ms: 0,
            background_snapshots: false,
            snapshot_in_flight: None,
        });
        node.reported = (node.raft.role(), node.raft.term(), node.raft.leader());
        node.rescan_configs(node.raft.snapshot_index() + 1)?;
        node.raft.recovered();
        Ok(node)
    }

    /// Feed every configuration entry from `from` to the end of the log to Raft.
    pub(super) fn rescan_configs(&mut self, from: LogIndex) -> Result<(), NodeError> {
        let last = self.store.last_index();
        let mut next = from;
        while next <= last {
            let got = self.store.read_entries(next, last, self.buf.as_mut())?;
            for item in EntryIter::new(&self.buf.as_ref()[..got.bytes], got.count) {
                let e =
                    item.map_err(|_| NodeError::Storage(StorageError::Corrupt { location: next }))?;
                if e.kind == EntryKind::Config {
                    let m = postcard::from_bytes::<Membership>(e.data)
                        .map_err(|_| NodeError::BadConfigEntry(e.index))?;
                    self.raft.recover_config(e.index, m);
                }
                next = e.index + 1;
            }
        }
        Ok(())
    }

    // ----- accessors ---------------------------------------------------------------------------

    /// The Raft state machine (role, term, leader, commit, progress...).
    pub fn raft(&self) -> &Raft<P> {
        &self.raft
    }
    /// The storage.
    pub fn storage(&self) -> &S {
        &self.store
    }
    /// The storage, mutably (tests and tools only: the driver relies on what it wrote).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.store
    }
    /// The state machine (for serving reads).
    pub fn state_machine(&self) -> &M {
        &self.sm
    }
    /// The state machine, mutably (for local, non-replicated bookkeeping such as watches).
    pub fn state_machine_mut(&mut self) -> &mut M {
        &mut self.sm
    }
    /// The transport.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }
    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }
    /// Counters.
    pub fn stats(&self) -> NodeStats {
        NodeStats {
            faults: self.faults.counts(),
            ..self.stats
        }
    }
    /// Take the node apart (to simulate a crash, or to shut down).
    pub fn into_parts(self) -> NodeParts<S, T, M, B, P> {
        NodeParts {
            store: self.store,
            transport: self.transport,
            sm: self.sm,
            buf: self.buf,
            plant: self.raft.plant,
        }
    }
    /// The applied index.
    pub fn applied(&self) -> LogIndex {
        self.raft.applied()
    }

    // ----- inputs --------------------------------------------------------------------------------

    /// Propose a command (leader only). The result arrives as [`Event::Applied`] with the same
    /// index and term.
    pub fn propose(
        &mut self,
        now_ms: u64,
        command: &[u8],
    ) -> Result<(LogIndex, Term), ProposeError> {
        let max = self
            .buf
            .as_ref()
            .len()
            .saturating_sub(FRAME_PREFIX_RESERVE + 64);
        if command.len() > max {
            return Err(ProposeError::TooLarge);
        }
        self.raft.propose(now_ms, command, &mut self.store)
    }

    /// Propose a membership change step (leader only).
    pub fn change_membership(
        &mut self,
        now_ms: u64,
        change: ConfigChange,
    ) -> Result<(LogIndex, Term, Membership), ProposeError> {
        self.raft.propose_config(now_ms, change, &mut self.store)
    }

    /// Start a ReadIndex read; see [`Event::ReadReady`].
    pub fn read_index(&mut self, now_ms: u64) -> Result<u64, ReadError> {
        self.raft.read_index(now_ms)
    }

    /// A lease read: the index to wait for (compare with [`Node::applied`]) if the lease holds.
    pub fn read_lease(&self, now_ms: u64) -> Result<LogIndex, ReadError> {
        self.raft.read_lease(now_ms)
    }

    /// Wake a quiet group (see [`Raft::wake`]): the platform's call when a member's node went
    /// silent.
    #[cfg(feature = "quiesce")]
    pub fn wake(&mut self, now_ms: u64) {
        self.raft.wake(now_ms);
    }

    /// Let this node quiesce the group when it leads it (see [`Raft::set_quiesce`]).
    #[cfg(feature = "quiesce")]
    pub fn set_quiesce(&mut self, on: bool) {
        self.raft.set_quiesce(on);
    }

    /// Whether this group has nothing to do until an input arrives: it is quiet, nothing
    /// waits to be sent, synced, applied, read or snapshotted. A platform hosting many groups
    /// ticks and flushes only the groups that are not idle (and those that got input).
    #[cfg(feature = "quiesce")]
    pub fn is_idle(&self) -> bool {
        let r = &self.raft;
        r.is_quiet()
            && !r.needs_sync()
            && !r.has_pending_sends()
            && !r.has_queued_messages()
            && r.applied() == r.commit()
            && self.waiting_reads.is_empty()
            && self.snapshot_in_flight.is_none()
    }

    /// Hand leadership to `target`.
    pub fn transfer_leader(&mut self, now_ms: u64, target: NodeId) -> Result<(), TransferError> {
        self.raft.transfer_leader(now_ms, target)
    }

    /// Take a snapshot now (if anything was applied since the last one). The error is the
    /// caller's to report; if its [`NodeError::severity`] is fatal, the node must stop.
    pub fn snapshot_now(&mut self, now_ms: u64) -> Result<Option<LogIndex>, NodeError> {
        self.take_snapshot(now_ms)
    }

    /// Save the commit index with the hard state if it advanced since it was last saved: a
    /// node stopping cleanly calls this, so its data dir (and an offline export of it) covers
    /// every write it committed. Durable with the next flush or [`Storage::sync`]; returns
    /// whether anything was written.
    pub fn save_commit_hint(&mut self) -> Result<bool, NodeError> {
        Ok(self.raft.save_commit_hint(&mut self.store)?)
    }

    // ----- the batch boundary --------------------------------------------------------------------

    /// Persist, send, apply and report everything the inputs since the last flush produced.
    pub fn flush(
        &mut self,
        now_ms: u64,
        on_event: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<(), NodeError> {
        self.flush_inner(now_ms, on_event, false).map(|_| ())
    }

    /// [`Node::flush`] for a platform that can make storage durable in the background (a file
    /// fdatasync on another thread). When the only unsynced writes are this leader's own new
    /// entries, it does not sync: it returns where a sync must reach, and the caller makes the
    /// storage durable up to there and reports it with [`Node::log_persisted`]; meanwhile the
    /// leader keeps taking writes and replicating, and only its own vote toward commits waits.
    /// Everything else (a follower's acknowledgements, a new term or vote, held answers) is
    /// synced here, exactly as by `flush`. `Some` is returned on every call until reported.
    pub fn flush_deferred(
        &mut self,
        now_ms: u64,
        on_event: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<Option<SyncPoint>, NodeError> {
        self.flush_inner(now_ms, on_event, true)
    }

    /// A background sync asked for by [`Node::flush_deferred`] finished: the storage is durable
    /// up to `at`. Commits it allows are acted on by the next flush.
    pub fn log_persisted(&mut self, at: SyncPoint) {
        if self.raft.on_log_persisted(at) {
            self.stats.syncs += 1;
        }
    }

    fn flush_inner(
        &mut self,
        now_ms: u64,
        on_event: &mut dyn FnMut(Event<M::Output>),
        defer: bool,
    ) -> Result<Option<SyncPoint>, NodeError> {
        self.send_pending(now_ms)?;
        let deferred = self.persist(now_ms, defer)?;
        self.finish(now_ms, on_event)?;
        Ok(deferred)
    }

    /// [`Node::flush`] for a platform that makes the storage of several groups durable with one
    /// sync (one filesystem sync for every group a batch wrote to, instead of a sync per group).
    /// Steps 1 and 2 run; then, if anything waits for a sync that only a full sync may cover
    /// (a follower's acknowledgements, a new term or vote, held answers), nothing is synced and
    /// [`Pending::Everything`] says where a sync must reach: the caller makes the whole storage
    /// durable (log and hard state) and calls [`Node::synced`], which runs steps 3 to 7, before
    /// this node takes any other input (so that sync covers every answer it releases). Or the
    /// caller calls [`Node::flush`], which syncs here. Otherwise it is [`Node::flush_deferred`]:
    /// [`Pending::OwnLog`] is a leader's own log left to a background sync, [`Pending::Nothing`]
    /// means the flush is complete.
    pub fn flush_shared(
        &mut self,
        now_ms: u64,
        on_event: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<Pending, NodeError> {
        self.send_pending(now_ms)?;
        if self.raft.needs_sync() && !self.raft.only_own_log_unsynced() {
            return Ok(Pending::Everything(self.raft.sync_point()));
        }
        let deferred = self.persist(now_ms, true)?;
        self.finish(now_ms, on_event)?;
        Ok(deferred.map_or(Pending::Nothing, Pending::OwnLog))
    }

    /// The caller made everything written up to `at` durable (log and hard state) after
    /// [`Node::flush_shared`] returned [`Pending::Everything`]: release the held answers and
    /// finish the flush (steps 3 to 7).
    pub fn synced(
        &mut self,
        at: SyncPoint,
        now_ms: u64,
        on_event: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<(), NodeError> {
        debug_assert!(
            at == self.raft.sync_point(),
            "no input may reach a node between flush_shared and synced"
        );
        self.stats.syncs += 1;
        self.raft.on_persisted(at.index);
        self.send_outbox(now_ms)?;
        self.finish(now_ms, on_event)
    }

    /// Steps 4 to 7 and the messages they produced.
    fn finish(
        &mut self,
        now_ms: u64,
        on_event: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<(), NodeError> {
        let applied = self.apply_committed(on_event);
        self.apply_policy(now_ms, applied)?;
        self.report_reads(on_event);
        self.report_role(on_event);
        if !self.background_snapshots && self.snapshot_wanted(now_ms) {
            match self.take_snapshot(now_ms) {
                Ok(Some(index)) => on_event(Event::Snapshot { index }),
                Ok(None) => {}
                Err(e) => self.snapshot_refused(now_ms, e)?,
            }
        }
        // Applying may have produced messages (a leader's commit advancing read rounds).
        self.send_outbox(now_ms)
    }

    /// Steps 1 and 2: what the batch left pending is queued, and every message that may
    /// leave at once is sent; a burst larger than the outbox goes out in rounds.
    fn send_pending(&mut self, now_ms: u64) -> Result<(), NodeError> {
        for _ in 0..=MAX_SEND_ROUNDS {
            let queued = self.raft.flush(now_ms, &mut self.store);
            self.apply_policy(now_ms, queued.map_err(NodeError::from))?;
            self.send_outbox(now_ms)?;
            if !self.raft.has_pending_sends() {
                break;
            }
        }
        Ok(())
    }

    /// Step 3: one sync for everything the batch wrote (unless a leader's own log may sync in
    /// the background: then where it must reach is returned), then the held answers leave.
    fn persist(&mut self, now_ms: u64, defer: bool) -> Result<Option<SyncPoint>, NodeError> {
        if !self.raft.needs_sync() {
            return Ok(None);
        }
        if defer && self.raft.only_own_log_unsynced() {
            return Ok(Some(self.raft.sync_point()));
        }
        if let Err(e) = self.store.sync() {
            // Refused before anything was made durable (a full medium): the held answers wait
            // for the next flush, which tries again. A failed device sync is fatal.
            self.apply_policy(now_ms, Err(NodeError::Sync(e)))?;
            return Ok(None);
        }
        self.stats.syncs += 1;
        self.raft.on_persisted(self.raft.last_index());
        self.send_outbox(now_ms)?;
        Ok(None)
    }

    /// Step 6: a change of role, term or leader is reported, and a state machine that
    /// proposes housekeeping is told when it gains or loses leadership.
    fn report_role(&mut self, on_event: &mut dyn FnMut(Event<M::Output>)) {
        let now = (self.raft.role(), self.raft.term(), self.raft.leader());
        if now == self.reported {
            return;
        }
        let was_leader = self.reported.0 == Role::Leader;
        let is_leader = now.0 == Role::Leader;
        if was_leader != is_leader || (is_leader && now.1 != self.reported.1) {
            self.sm.on_leadership(is_leader, now.1, now.2);
        }
        self.reported = now;
        on_event(Event::RoleChanged {
            role: now.0,
            term: now.1,
            leader: now.2,
        });
    }

    fn apply_committed(
        &mut self,
        on_event: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<(), NodeError> {
        let commit = self.raft.commit();
        let mut next = self.raft.applied() + 1;
        while next <= commit {
            let got = self.store.read_entries(next, commit, self.buf.as_mut())?;
            for item in EntryIter::new(&self.buf.as_ref()[..got.bytes], got.count) {
                let corrupt = NodeError::Storage(StorageError::Corrupt { location: next });
                let e = item.map_err(|_| corrupt.clone())?;
                if e.index != next {
                    // The storage answered with another entry than the one asked for.
                    return Err(corrupt);
                }
                match e.kind {
                    EntryKind::Normal => {
                        let output = self.sm.apply(e.index, e.term, e.data);
                        on_event(Event::Applied {
                            index: e.index,
                            term: e.term,
                            output,
                        });
                    }
                    EntryKind::Noop | EntryKind::Config => self.sm.skip(e.index),
                }
                self.stats.applied_entries += 1;
                next = e.index + 1;
            }
            self.raft.set_applied(next - 1);
        }
        Ok(())
    }

    fn report_reads(&mut self, on_event: &mut dyn FnMut(Event<M::Output>)) {
        while let Some(ev) = self.raft.pop_read_event() {
            match ev {
                ReadEvent::Ready { upto, index } => {
                    if self.waiting_reads.push_back((upto, index)).is_err() {
                        // Too many ready reads waiting for apply: fail this batch (clients retry).
                        on_event(Event::ReadFailed { upto });
                    }
                }
                ReadEvent::Failed { upto } => {
                    // Fail what waits too, so tickets are always reported in order.
                    while let Some((u, _)) = self.waiting_reads.pop_front() {
                        on_event(Event::ReadFailed { upto: u });
                    }
                    on_event(Event::ReadFailed { upto });
                }
            }
        }
        let applied = self.raft.applied();
        while let Some(&(upto, index)) = self.waiting_reads.front() {
            if index > applied {
                break;
            }
            self.waiting_reads.pop_front();
            on_event(Event::ReadReady { upto, index });
        }
    }
}

/// Bring a storage up for a group: write the bootstrap membership into a fresh one, restore
/// the state machine from the snapshot, and say what Raft starts from.
fn recover<S: Storage, M: StateMachine>(
    store: &mut S,
    sm: &mut M,
    bootstrap: Option<&Membership>,
) -> Result<Recovered, NodeError> {
    let fresh =
        store.last_index() == 0 && store.snapshot_meta().is_none() && store.hard_state().term == 0;
    if let (true, Some(m)) = (fresh, bootstrap) {
        let mut data = [0u8; crate::raft::MAX_CONFIG_BYTES];
        let data = postcard::to_slice(m, &mut data).map_err(|_| NodeError::NoMembership)?;
        store.append(&entry::EntryRef {
            index: 1,
            term: 1,
            kind: EntryKind::Config,
            data,
        })?;
        store.save_hard_state(&HardState {
            term: 1,
            vote: 0,
            commit: 0,
        })?;
        store.sync().map_err(NodeError::Sync)?;
    }
    let snap = store.snapshot_meta();
    if let Some(meta) = &snap {
        restore_from_store(store, sm, meta)?;
    }
    let (snapshot, snapshot_membership) = match snap {
        Some(m) => ((m.index, m.term), m.membership),
        None => ((0, 0), Membership::default()),
    };
    let last = store.last_index();
    let last_term = store.term(last)?;
    let mut hard_state = store.hard_state();
    if last_term > hard_state.term {
        // The log reached the medium and the hard state that went with it did not (two files,
        // no order between them before a sync): the node took up `last_term` from its leader
        // but the power went before that was durable. Nothing that needed the term durable
        // left the node (an acknowledgement or a vote waits for the sync that would have saved
        // it), so it is a follower of `last_term` that has not voted in it. Starting in the
        // older term would leave it holding entries of a term it has not reached, and campaign
        // in a term it knows a leader of.
        hard_state = HardState {
            term: last_term,
            vote: 0,
            commit: hard_state.commit,
        };
        store.save_hard_state(&hard_state)?;
        store.sync().map_err(NodeError::Sync)?;
    }
    Ok(Recovered {
        hard_state,
        snapshot,
        snapshot_membership,
        last: (last, last_term),
    })
}

#[cfg(test)]
mod tests {
    use std::string::String;
    use std::vec::Vec;

    /// The numbered steps of `flush` in `text` (lines after `prefix` is cut off): from the
    /// line that starts `1. **Queue.**` to the next blank line, as one line of words.
    fn steps(text: &str, prefix: &str) -> String {
        let lines = text
            .lines()
            .map(|l| l.strip_prefix(prefix).unwrap_or(l).trim());
        let words: Vec<&str> = lines
            .skip_while(|l| !l.starts_with("1. **Queue.**"))
            .take_while(|l| !l.is_empty())
            .flat_map(|l| l.split_whitespace())
            .collect();
        words.join(" ")
    }

    #[test]
    fn the_io_contract_is_the_same_here_and_in_design_md() {
        let here = steps(include_str!("mod.rs"), "//!");
        let design = steps(include_str!("../../../docs/DESIGN.md"), "");
        assert!(here.contains("7. **Snapshot.**"), "{here}");
        assert_eq!(
            here, design,
            "driver/mod.rs and docs/DESIGN.md list different steps"
        );
    }
}
