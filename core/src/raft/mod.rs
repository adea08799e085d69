//! The Raft consensus state machine of one group.
//!
//! [`Raft`] owns the protocol decisions: who votes for whom, which range of the log goes to which
//! peer, where a follower's log is cut, what is committed, when a read may be answered. It never
//! syncs storage, never sends a byte and never reads a clock:
//!
//! - time arrives as `now_ms` arguments, randomness from a seeded [`Rng`];
//! - log writes (append, truncate, hard state) go through the [`Storage`] handed to each call, as
//!   *buffered* writes; entry payloads are borrowed from the incoming frame, never copied here;
//! - outgoing messages are queued; messages that may only leave once everything written so far is
//!   durable (vote grants, append acknowledgements) are *held* until [`Raft::on_persisted`].
//!
//! The [`crate::driver::Node`] is the usual caller: it syncs, sends, applies and reports.

pub mod progress;

use crate::entry::{EntryIter, EntryRef};
use crate::limits::{
    Config, ConfigError, MAX_MEMBERS, MAX_PENDING_CONFIGS, MAX_REMOTE_READS, OUTBOX_CAPACITY,
};
use crate::membership::{Membership, MembershipError};
use crate::message::{Message, SnapshotHeader, SnapshotRef};
use crate::rng::Rng;
use crate::storage::{Storage, StorageError};
use crate::types::{EntryKind, HardState, LogIndex, NodeId, Role, SnapshotMeta, Term, NO_NODE};
use core::mem::MaybeUninit;
use heapless::{Deque, Vec};
use progress::{Progress, ProgressState};

/// A message for one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The receiver.
    pub to: NodeId,
    /// The message. For `Append`, `count` is the number of entries planned after `prev_index`;
    /// the platform reads them from storage and may send fewer (see [`Raft::sent_fewer`]). For
    /// `Snapshot`, `meta` names the snapshot only: the platform fills the full header from
    /// storage, reads the chunk at `offset` and sets `done`.
    pub msg: OutMessage,
}

/// Where a sync started now leaves durability: the last index written and the log's epoch
/// (see [`Raft::on_log_persisted`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncPoint {
    /// The last index written when the sync started.
    pub index: LogIndex,
    /// The log's epoch then; a cut since makes the sync vouch for nothing.
    pub epoch: u32,
}

/// A queued outgoing message: a [`Message`] whose snapshot chunks name their snapshot by
/// index and term only, so the outbox holds small fixed-size entries.
pub type OutMessage = Message<SnapshotRef>;

/// What a read request turned into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadEvent {
    /// Every read ticket ≤ `upto` may be served once the state machine has applied `index`.
    Ready {
        /// Highest ticket covered.
        upto: u64,
        /// Index to wait for.
        index: LogIndex,
    },
    /// Every read ticket ≤ `upto` that is not yet ready failed (leadership lost or timed out).
    Failed {
        /// Highest ticket covered.
        upto: u64,
    },
}

/// What a [`Raft::step`] asks of the caller beyond sending messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// Nothing more.
    Done,
    /// A snapshot was installed in storage: restore the state machine from it.
    SnapshotInstalled(SnapshotMeta),
}

/// Why a proposal was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProposeError {
    /// This node is not the leader; `leader` is the known leader or [`NO_NODE`].
    NotLeader {
        /// The leader this node knows of.
        leader: NodeId,
    },
    /// A leader transfer is in progress; retry on the new leader.
    TransferInProgress,
    /// Too many proposals are not yet committed (`max_pending_proposals`).
    Busy,
    /// The command is larger than one message may carry.
    TooLarge,
    /// A membership change is already in progress (or not in the state the request needs).
    ConfigChangeInProgress,
    /// The requested membership is invalid.
    BadMembership(MembershipError),
    /// Storage refused the write.
    Storage(StorageError),
}

impl core::fmt::Display for ProposeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProposeError::NotLeader { leader } if *leader == NO_NODE => f.write_str("not the leader; no leader known"),
            ProposeError::NotLeader { leader } => write!(f, "not the leader; the leader is node {}", leader),
            ProposeError::TransferInProgress => f.write_str("leader transfer in progress; retry shortly"),
            ProposeError::Busy => f.write_str("too many proposals pending; retry shortly"),
            ProposeError::TooLarge => f.write_str("command larger than max_bytes_per_message"),
            ProposeError::ConfigChangeInProgress => {
                f.write_str("a membership change is in progress or the group is not in the state this step needs")
            }
            ProposeError::BadMembership(e) => write!(f, "invalid membership: {}", e),
            ProposeError::Storage(e) => write!(f, "storage: {}", e),
        }
    }
}

/// Why a read could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReadError {
    /// No leader is known to forward the read to.
    NoLeader,
    /// Not the leader (lease reads are served by the leader only).
    NotLeader {
        /// The leader this node knows of.
        leader: NodeId,
    },
    /// The leader lease is not valid now; use a ReadIndex read.
    LeaseExpired,
    /// Too many read rounds are outstanding (`max_read_rounds` in flight and one more waiting,
    /// already sent by the periodic heartbeat: the peers are not answering).
    Busy,
}

impl core::fmt::Display for ReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReadError::NoLeader => f.write_str("no leader known"),
            ReadError::NotLeader { leader } => {
                write!(f, "not the leader; the leader is node {}", leader)
            }
            ReadError::LeaseExpired => f.write_str("leader lease not valid; use a ReadIndex read"),
            ReadError::Busy => f.write_str("too many reads outstanding; retry shortly"),
        }
    }
}

/// Why a leader transfer could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TransferError {
    /// Only the leader can transfer leadership.
    NotLeader,
    /// The target is not a voter of the group (or is this node).
    BadTarget,
    /// A transfer is already in progress.
    InProgress,
}

impl core::fmt::Display for TransferError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TransferError::NotLeader => "only the leader can transfer leadership",
            TransferError::BadTarget => "the target must be another voter of the group",
            TransferError::InProgress => "a leader transfer is already in progress",
        })
    }
}

/// A fatal error while stepping: storage failed or a peer broke the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RaftError {
    /// A storage call failed; the node must stop (its log may be half-written).
    Storage(StorageError),
    /// An entry in a message does not decode.
    MalformedEntries,
    /// A leader asked to truncate committed entries: the cluster's safety is broken.
    CommittedTruncation(LogIndex),
    /// A configuration entry does not decode.
    BadConfigEntry(LogIndex),
}

impl From<StorageError> for RaftError {
    fn from(e: StorageError) -> Self {
        RaftError::Storage(e)
    }
}

impl core::fmt::Display for RaftError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RaftError::Storage(e) => write!(f, "storage: {}", e),
            RaftError::MalformedEntries => f.write_str("append message carries malformed entries"),
            RaftError::CommittedTruncation(i) => {
                write!(f, "refusing to truncate committed entry {}", i)
            }
            RaftError::BadConfigEntry(i) => write!(f, "configuration entry {} does not decode", i),
        }
    }
}

/// A membership change step (joint consensus).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigChange {
    /// Enter the joint configuration that leads to this target.
    Prepare(Membership),
    /// Leave the joint configuration for its target.
    Commit,
    /// Leave the joint configuration back to the old one.
    Abort,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaftStats {
    /// Elections this node started (real, not pre-votes).
    pub elections: u64,
    /// Times this node became leader.
    pub became_leader: u64,
    /// Times the known leader changed.
    pub leader_changes: u64,
    /// Messages dropped because the outbox was full (as if lost by the network).
    pub dropped_messages: u64,
    /// Snapshots sent to followers (completed).
    pub snapshots_sent: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
}

#[derive(Clone, Copy, Debug)]
struct ReadRound {
    /// Read sequence echoed by peers that confirms this round; 0 while not yet broadcast.
    seq: u64,
    index: LogIndex,
    ticket_upto: u64,
}

#[derive(Clone, Copy, Debug)]
struct RemoteRead {
    from: NodeId,
    id: u64,
    seq: u64,
}

/// Outbox slots a burst of appends leaves free for replies and heartbeats.
const OUTBOX_HEADROOM: usize = 2 * MAX_MEMBERS;
/// Recent read-sequence send times, for the lease.
const SEQ_TIMES: usize = 16;
/// Held messages wait for the next persist; bounded like the outbox.
const HELD_CAPACITY: usize = 2 * MAX_MEMBERS + 2;
/// Read events waiting to be taken.
const READ_EVENT_CAPACITY: usize = 16;
/// Largest encoded membership (postcard of up to 4 × MAX_MEMBERS varints).
pub const MAX_CONFIG_BYTES: usize = 4 * (1 + MAX_MEMBERS * 10) + 1;

/// What the caller recovered from storage to start a group.
#[derive(Clone, Debug)]
pub struct Recovered {
    /// The durable hard state.
    pub hard_state: HardState,
    /// Snapshot index and term (0, 0 without one).
    pub snapshot: (LogIndex, Term),
    /// Membership at the snapshot (or the bootstrap membership).
    pub snapshot_membership: Membership,
    /// Last log index and its term.
    pub last: (LogIndex, Term),
}

/// The Raft state machine of one group. See the module docs.
pub struct Raft {
    id: NodeId,
    cfg: Config,
    rng: Rng,
    role: Role,
    term: Term,
    vote: NodeId,
    leader: NodeId,
    commit: LogIndex,
    applied: LogIndex,
    last_index: LogIndex,
    last_term: Term,
    persisted_index: LogIndex,
    /// Bumped whenever entries are cut from the log's tail (a conflict, or a snapshot that
    /// replaces the log): a background sync started before cannot vouch for what is there now.
    log_epoch: u32,
    snapshot_index: LogIndex,
    snapshot_term: Term,
    hs_saved: HardState,
    hs_unsynced: bool,
    membership: Membership,
    membership_index: LogIndex,
    configs: Vec<(LogIndex, Membership), MAX_PENDING_CONFIGS>,
    progress: Vec<Progress, MAX_MEMBERS>,
    votes: Vec<(NodeId, bool), MAX_MEMBERS>,
    outbox: Deque<Envelope, OUTBOX_CAPACITY>,
    held: Vec<Envelope, HELD_CAPACITY>,
    term_start_index: LogIndex,
    now_ms: u64,
    election_deadline_ms: u64,
    heartbeat_due_ms: u64,
    quorum_check_due_ms: u64,
    last_leader_contact_ms: u64,
    replicate_pending: bool,
    pending_noop: bool,
    // Reads.
    read_seq: u64,
    seq_times: [(u64, u64); SEQ_TIMES],
    rounds: Deque<ReadRound, { crate::limits::MAX_READ_ROUNDS + 1 }>,
    remote_reads: Vec<RemoteRead, MAX_REMOTE_READS>,
    next_ticket: u64,
    read_events: Deque<ReadEvent, READ_EVENT_CAPACITY>,
    fwd_pending_upto: u64,
    fwd_sent_upto: u64,
    fwd_sent_at_ms: u64,
    lease_until_ms: u64,
    lease_void_term: Term,
    // Transfer.
    transfer: Option<(NodeId, u64)>,
    // Snapshots.
    last_snapshot_ms: u64,
    receiving: Option<(LogIndex, Term, u64)>,
    stats: RaftStats,
}

impl Raft {
    /// A group member `id` starting at `now_ms` from recovered state.
    pub fn new(
        id: NodeId,
        cfg: Config,
        seed: u64,
        rec: Recovered,
        now_ms: u64,
    ) -> Result<Self, ConfigError> {
        crate::inplace::build(|slot| Self::init(slot, id, cfg, seed, rec, now_ms))
    }

    /// Like [`Raft::new`], but build the group member directly in `slot` (a `static` on a
    /// small board) and return it there: the struct is never assembled on the stack and moved,
    /// only written field by field. On error `slot` is left uninitialised.
    pub fn init(
        slot: &mut MaybeUninit<Self>,
        id: NodeId,
        cfg: Config,
        seed: u64,
        rec: Recovered,
        now_ms: u64,
    ) -> Result<&mut Self, ConfigError> {
        cfg.validate()?;
        let r = crate::write_fields!(
            slot,
            Self {
                id: id,
                rng: Rng::new(seed ^ id.wrapping_mul(0x9E37_79B9)),
                role: Role::Follower,
                term: rec.hard_state.term,
                vote: rec.hard_state.vote,
                leader: NO_NODE,
                commit: rec.hard_state.commit.max(rec.snapshot.0).min(rec.last.0),
                applied: rec.snapshot.0,
                last_index: rec.last.0,
                last_term: rec.last.1,
                persisted_index: rec.last.0,
                log_epoch: 0,
                snapshot_index: rec.snapshot.0,
                snapshot_term: rec.snapshot.1,
                hs_saved: rec.hard_state,
                hs_unsynced: false,
                membership_index: rec.snapshot.0,
                configs: Vec::new(),
                membership: rec.snapshot_membership,
                progress: Vec::new(),
                votes: Vec::new(),
                outbox: Deque::new(),
                held: Vec::new(),
                term_start_index: 0,
                now_ms: now_ms,
                election_deadline_ms: 0,
                heartbeat_due_ms: 0,
                quorum_check_due_ms: 0,
                // A restarted node may have acknowledged a leader whose lease still runs: it must
                // not vote for anyone else until that lease would have expired.
                last_leader_contact_ms: now_ms,
                replicate_pending: false,
                pending_noop: false,
                read_seq: 0,
                seq_times: [(0, 0); SEQ_TIMES],
                rounds: Deque::new(),
                remote_reads: Vec::new(),
                next_ticket: 1,
                read_events: Deque::new(),
                fwd_pending_upto: 0,
                fwd_sent_upto: 0,
                fwd_sent_at_ms: 0,
                lease_until_ms: 0,
                lease_void_term: 0,
                transfer: None,
                last_snapshot_ms: now_ms,
                receiving: None,
                stats: RaftStats::default(),
                cfg: cfg,
            }
        );
        let first = (r.snapshot_index, r.membership.clone());
        let _ = r.configs.push(first);
        r.refresh_role();
        r.reset_election_timer();
        Ok(r)
    }

    /// Recovery is complete (every configuration entry fed). A node that is the only voter of
    /// its group campaigns at its next tick instead of after an election timeout: no other
    /// node can lead its group, so there is no lease to wait out.
    pub fn recovered(&mut self) {
        let m = &self.membership;
        if self.role == Role::Follower && !m.joint && m.voters.as_slice() == [self.id] {
            self.election_deadline_ms = self.now_ms;
        }
    }

    /// Feed a configuration entry found in the log during recovery (in index order).
    pub fn recover_config(&mut self, index: LogIndex, membership: Membership) {
        self.add_config(index, membership);
        self.refresh_role();
    }

    // ----- accessors ---------------------------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }
    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }
    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }
    /// The known leader, or [`NO_NODE`].
    pub fn leader(&self) -> NodeId {
        self.leader
    }
    /// The commit index.
    pub fn commit(&self) -> LogIndex {
        self.commit
    }
    /// The applied index the caller reported.
    pub fn applied(&self) -> LogIndex {
        self.applied
    }
    /// The last log index (written, maybe not yet durable).
    pub fn last_index(&self) -> LogIndex {
        self.last_index
    }
    /// The term of the last log entry.
    pub fn last_term(&self) -> Term {
        self.last_term
    }
    /// The last index known durable.
    pub fn persisted_index(&self) -> LogIndex {
        self.persisted_index
    }
    /// The snapshot index known to the core.
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot_index
    }
    /// The membership in force (the latest in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
    /// The membership in force at `index`, if the core still remembers it.
    pub fn membership_at(&self, index: LogIndex) -> Option<Membership> {
        self.configs
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, m)| m.clone())
    }
    /// Index of the entry that set the membership in force.
    pub fn membership_index(&self) -> LogIndex {
        self.membership_index
    }
    /// The hard state as it should be durable.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.commit,
        }
    }
    /// The leader's view of each peer (empty unless leader).
    pub fn progress(&self) -> &[Progress] {
        &self.progress
    }
    /// Counters.
    pub fn stats(&self) -> RaftStats {
        self.stats
    }
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// The target of a leader transfer in progress.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.map(|t| t.0)
    }
    /// Whether appends are waiting for outbox room (call [`Raft::flush`] again after sending).
    pub fn has_pending_sends(&self) -> bool {
        self.replicate_pending && self.role == Role::Leader
    }
    /// Whether writes since the last [`Raft::on_persisted`] need a sync.
    pub fn needs_sync(&self) -> bool {
        self.hs_unsynced || self.persisted_index < self.last_index
    }

    // ----- outputs -----------------------------------------------------------------------------

    /// Whether the only write waiting for a sync is this leader's own log tail: the hard state
    /// is durable and no answer is held. Then the sync may run in the background while the
    /// leader goes on ([`Raft::sync_point`], [`Raft::on_log_persisted`]); nothing but the
    /// leader's own vote toward commits waits for it.
    pub fn only_own_log_unsynced(&self) -> bool {
        self.role == Role::Leader
            && !self.hs_unsynced
            && self.held.is_empty()
            && self.persisted_index < self.last_index
    }

    /// What a sync of everything written so far will make durable.
    pub fn sync_point(&self) -> SyncPoint {
        SyncPoint {
            index: self.last_index,
            epoch: self.log_epoch,
        }
    }

    /// A background sync that started at `at` finished: the entries up to `at.index` are
    /// durable, unless the log's tail was cut since (then nothing is learned). Unlike
    /// [`Raft::on_persisted`] it neither marks the hard state durable nor releases held answers
    /// (they may depend on writes after `at`). Returns whether it advanced anything.
    pub fn on_log_persisted(&mut self, at: SyncPoint) -> bool {
        if at.epoch != self.log_epoch {
            return false;
        }
        let index = at.index.min(self.last_index);
        if index <= self.persisted_index {
            return false;
        }
        self.persisted_index = index;
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        true
    }

    /// Take the next message that may be sent now.
    pub fn pop_message(&mut self) -> Option<Envelope> {
        self.outbox.pop_front()
    }

    /// Take the next read outcome.
    pub fn pop_read_event(&mut self) -> Option<ReadEvent> {
        self.read_events.pop_front()
    }

    /// Everything written so far up to `index` is durable (the caller synced). Releases held
    /// messages and lets the leader count itself toward commits.
    pub fn on_persisted(&mut self, index: LogIndex) {
        self.persisted_index = index
            .min(self.last_index)
            .max(self.persisted_index.min(self.last_index));
        self.hs_unsynced = false;
        for env in core::mem::take(&mut self.held) {
            self.push_out(env);
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// The caller sent fewer entries to `to` than planned (its send buffer filled).
    pub fn sent_fewer(&mut self, to: NodeId, planned_last: LogIndex, sent_last: LogIndex) {
        if let Some(p) = self.peer_mut(to) {
            p.on_sent_fewer(planned_last, sent_last);
        }
    }

    /// The state machine has applied up to `index`.
    pub fn set_applied(&mut self, index: LogIndex) {
        debug_assert!(index <= self.commit.max(self.snapshot_index));
        self.applied = index;
    }

    /// Whether a snapshot should be taken now (by entry count or interval).
    pub fn snapshot_due(&self, now_ms: u64) -> bool {
        let since = self.applied.saturating_sub(self.snapshot_index);
        if since == 0 {
            return false;
        }
        (self.cfg.snapshot_entries > 0 && since >= self.cfg.snapshot_entries)
            || (self.cfg.snapshot_interval_ms > 0
                && now_ms >= self.last_snapshot_ms + self.cfg.snapshot_interval_ms)
    }

    /// A snapshot covering `index` (term `term`) is now durable in storage.
    pub fn on_snapshot_taken(&mut self, now_ms: u64, index: LogIndex, term: Term) {
        // Writing a local snapshot replaced any partly received one in storage: a transfer in
        // progress must restart from offset 0 (the next chunk's reply says so).
        self.receiving = None;
        if index > self.snapshot_index {
            self.snapshot_index = index;
            self.snapshot_term = term;
            self.prune_configs();
        }
        self.last_snapshot_ms = now_ms;
    }

    // ----- time ----------------------------------------------------------------------------------

    /// Advance time: elections, heartbeats, CheckQuorum, retries.
    pub fn tick(&mut self, now_ms: u64, store: &mut impl Storage) -> Result<(), RaftError> {
        self.now_ms = now_ms.max(self.now_ms);
        let now = self.now_ms;
        match self.role {
            Role::Leader => {
                if self.cfg.check_quorum && now >= self.quorum_check_due_ms {
                    let id = self.id;
                    let active = {
                        let progress = &self.progress;
                        self.membership.has_quorum(|n| {
                            n == id || progress.iter().any(|p| p.id == n && p.recent_active)
                        })
                    };
                    for p in self.progress.iter_mut() {
                        p.recent_active = false;
                    }
                    self.quorum_check_due_ms = now + self.cfg.election_timeout_ms;
                    if !active {
                        info!(
                            "leader {} lost contact with a quorum; stepping down",
                            self.id
                        );
                        self.become_follower(self.term, NO_NODE);
                        self.finish_call(store)?;
                        return Ok(());
                    }
                }
                if let Some((_, deadline)) = self.transfer {
                    if now >= deadline {
                        info!("leader transfer timed out");
                        self.transfer = None;
                    }
                }
                if now >= self.heartbeat_due_ms {
                    self.broadcast_heartbeat(store);
                }
                self.retry_stalled(store);
            }
            Role::Follower | Role::PreCandidate | Role::Candidate => {
                if now >= self.election_deadline_ms {
                    if self.promotable() {
                        self.campaign(self.cfg.pre_vote, false);
                    } else {
                        self.reset_election_timer();
                    }
                }
                if self.fwd_sent_upto != 0
                    && now >= self.fwd_sent_at_ms + self.cfg.election_timeout_ms
                {
                    let upto = self.fwd_pending_upto.max(self.fwd_sent_upto);
                    self.push_read_event(ReadEvent::Failed { upto });
                    self.fwd_sent_upto = 0;
                    self.fwd_pending_upto = 0;
                }
            }
            Role::Observer => {}
        }
        self.finish_call(store)
    }

    // ----- client requests -------------------------------------------------------------------------

    /// Propose a command: append it to the leader's log as entry `(index, term)`. It is sent to
    /// followers by the next [`Raft::flush`].
    pub fn propose(
        &mut self,
        now_ms: u64,
        command: &[u8],
        store: &mut impl Storage,
    ) -> Result<(LogIndex, Term), ProposeError> {
        self.now_ms = now_ms.max(self.now_ms);
        self.check_can_propose()?;
        if command.len() + crate::entry::MAX_HEADER_BYTES > self.cfg.max_bytes_per_message {
            return Err(ProposeError::TooLarge);
        }
        self.append_own(EntryKind::Normal, command, store)
    }

    /// Propose a membership change step. Returns the entry's index and term and the membership
    /// it installs. Changes go one at a time: the previous one must be committed first.
    pub fn propose_config(
        &mut self,
        now_ms: u64,
        change: ConfigChange,
        store: &mut impl Storage,
    ) -> Result<(LogIndex, Term, Membership), ProposeError> {
        self.now_ms = now_ms.max(self.now_ms);
        self.check_can_propose()?;
        if self.membership_index > self.commit {
            return Err(ProposeError::ConfigChangeInProgress);
        }
        let next = match change {
            ConfigChange::Prepare(target) => {
                if self.membership.joint {
                    return Err(ProposeError::ConfigChangeInProgress);
                }
                let target = Membership::new(&target.voters, &target.observers)
                    .map_err(ProposeError::BadMembership)?;
                self.membership
                    .to_joint(&target)
                    .map_err(ProposeError::BadMembership)?
            }
            ConfigChange::Commit | ConfigChange::Abort if !self.membership.joint => {
                return Err(ProposeError::ConfigChangeInProgress);
            }
            ConfigChange::Commit => self.membership.committed_target(),
            ConfigChange::Abort => self.membership.aborted_target(),
        };
        let mut buf = [0u8; MAX_CONFIG_BYTES];
        let data = postcard::to_slice(&next, &mut buf).map_err(|_| ProposeError::TooLarge)?;
        let (index, term) = self.append_own(EntryKind::Config, data, store)?;
        Ok((index, term, next))
    }

    /// Start a linearizable read by ReadIndex. Returns a ticket; a [`ReadEvent`] later says when
    /// (at which applied index) every ticket up to it may be served. On a follower the read
    /// index is asked of the leader.
    pub fn read_index(&mut self, now_ms: u64) -> Result<u64, ReadError> {
        self.now_ms = now_ms.max(self.now_ms);
        match self.role {
            Role::Leader => {
                if self.transfer.is_some() {
                    return Err(ReadError::Busy);
                }
                let ticket = self.next_ticket;
                self.open_round(ticket, None)?;
                self.next_ticket += 1;
                Ok(ticket)
            }
            _ => {
                if self.leader == NO_NODE {
                    return Err(ReadError::NoLeader);
                }
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                self.fwd_pending_upto = ticket;
                if self.fwd_sent_upto == 0 {
                    self.send_forwarded_read();
                }
                Ok(ticket)
            }
        }
    }

    /// A lease read: if this leader's lease holds, the index to wait for before reading.
    pub fn read_lease(&self, now_ms: u64) -> Result<LogIndex, ReadError> {
        if self.role != Role::Leader {
            return Err(ReadError::NotLeader {
                leader: self.leader,
            });
        }
        if self.lease_valid(now_ms) {
            Ok(self.commit.max(self.term_start_index))
        } else {
            Err(ReadError::LeaseExpired)
        }
    }

    /// Whether this leader's lease holds at `now_ms`.
    pub fn lease_valid(&self, now_ms: u64) -> bool {
        self.role == Role::Leader
            && self.transfer.is_none()
            && self.lease_void_term != self.term
            && self.commit >= self.term_start_index
            && now_ms < self.lease_until_ms
    }

    /// Hand leadership to `target`: bring it up to date, then tell it to campaign at once.
    pub fn transfer_leader(&mut self, now_ms: u64, target: NodeId) -> Result<(), TransferError> {
        self.now_ms = now_ms.max(self.now_ms);
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader);
        }
        if target == self.id || !self.membership.is_voter(target) || self.peer(target).is_none() {
            return Err(TransferError::BadTarget);
        }
        if self.transfer.is_some() {
            return Err(TransferError::InProgress);
        }
        info!("leader {} transferring leadership to {}", self.id, target);
        self.transfer = Some((target, self.now_ms + self.cfg.election_timeout_ms));
        self.lease_until_ms = 0;
        self.fail_all_rounds();
        if self.peer(target).map(|p| p.match_index) == Some(self.last_index) {
            self.send_timeout_now(target);
        } else {
            self.replicate_pending = true;
        }
        Ok(())
    }

    /// Send what batched calls left pending: appends for new entries and read rounds.
    pub fn flush(&mut self, now_ms: u64, store: &mut impl Storage) -> Result<(), RaftError> {
        self.now_ms = now_ms.max(self.now_ms);
        if self.role == Role::Leader {
            // An open read round goes out now unless `max_read_rounds` are already in flight;
            // then it waits (collecting reads) until one of them is confirmed.
            let in_flight = self.rounds.iter().filter(|r| r.seq != 0).count();
            if self.rounds.iter().any(|r| r.seq == 0) && in_flight < self.cfg.max_read_rounds {
                self.broadcast_heartbeat(store);
            }
            if self.replicate_pending {
                self.replicate_pending = false;
                for i in 0..self.progress.len() {
                    let id = self.progress[i].id;
                    self.send_append(id, store);
                }
            }
        }
        self.finish_call(store)
    }

    // ----- messages ------------------------------------------------------------------------------

    /// Handle a message from `from`. `tail` holds an `Append`'s entries or a `Snapshot` chunk.
    pub fn step(
        &mut self,
        now_ms: u64,
        from: NodeId,
        msg: &Message,
        tail: &[u8],
        store: &mut impl Storage,
    ) -> Result<StepOutcome, RaftError> {
        self.now_ms = now_ms.max(self.now_ms);
        let outcome = self.step_inner(from, msg, tail, store)?;
        self.finish_call(store)?;
        Ok(outcome)
    }

    fn step_inner(
        &mut self,
        from: NodeId,
        msg: &Message,
        tail: &[u8],
        store: &mut impl Storage,
    ) -> Result<StepOutcome, RaftError> {
        let term = msg.term();
        match msg {
            Message::PreVote {
                term,
                last_index,
                last_term,
            } => {
                let granted = *term > self.term
                    && self.log_ok(*last_index, *last_term)
                    && !self.in_leader_lease()
                    && self.membership.is_voter(self.id);
                let reply = Message::PreVoteResp {
                    term: if granted { *term } else { self.term },
                    granted,
                };
                self.push_out(Envelope {
                    to: from,
                    msg: reply,
                });
                return Ok(StepOutcome::Done);
            }
            Message::Vote { transfer, .. }
                if term > self.term && !transfer && self.in_leader_lease() =>
            {
                // Leader stickiness: a node that hears from a live leader ignores disruptive
                // candidates. This is what keeps leader leases safe.
                return Ok(StepOutcome::Done);
            }
            Message::PreVoteResp { granted: true, .. } => {}
            _ if term > self.term => {
                let leader = match msg {
                    Message::Append { .. }
                    | Message::Snapshot { .. }
                    | Message::TimeoutNow { .. } => from,
                    _ => NO_NODE,
                };
                self.become_follower(term, leader);
            }
            _ if term < self.term => {
                // A stale leader learns of the newer term from the rejection.
                match msg {
                    Message::Append { .. } | Message::Snapshot { .. } => {
                        let reply = Message::AppendResp {
                            term: self.term,
                            success: false,
                            match_index: 0,
                            conflict_term: 0,
                            conflict_index: 0,
                            read_seq: 0,
                        };
                        self.push_out(Envelope {
                            to: from,
                            msg: reply,
                        });
                    }
                    Message::Vote { .. } => {
                        let reply = Message::VoteResp {
                            term: self.term,
                            granted: false,
                        };
                        self.push_out(Envelope {
                            to: from,
                            msg: reply,
                        });
                    }
                    _ => {}
                }
                return Ok(StepOutcome::Done);
            }
            _ => {}
        }

        match msg {
            Message::Vote {
                term,
                last_index,
                last_term,
                ..
            } => {
                let can_vote = self.vote == NO_NODE || self.vote == from;
                let granted =
                    can_vote && self.log_ok(*last_index, *last_term) && self.role != Role::Leader;
                if granted {
                    self.vote = from;
                    self.reset_election_timer();
                }
                let reply = Message::VoteResp {
                    term: *term,
                    granted,
                };
                self.respond(from, reply);
            }
            Message::VoteResp { granted, .. } => {
                if self.role == Role::Candidate {
                    self.record_vote(from, *granted, false);
                }
            }
            Message::PreVoteResp { term, granted } => {
                if self.role == Role::PreCandidate && *term == self.term + 1 {
                    self.record_vote(from, *granted, true);
                } else if !granted && *term > self.term {
                    self.become_follower(*term, NO_NODE);
                }
            }
            Message::Append {
                prev_index,
                prev_term,
                commit,
                count,
                read_seq,
                ..
            } => {
                self.accept_leader(from);
                self.handle_append(
                    from,
                    *prev_index,
                    *prev_term,
                    *commit,
                    *count,
                    *read_seq,
                    tail,
                    store,
                )?;
            }
            Message::AppendResp {
                success,
                match_index,
                conflict_term,
                conflict_index,
                read_seq,
                ..
            } => {
                if self.role == Role::Leader {
                    self.handle_append_resp(
                        from,
                        *success,
                        *match_index,
                        *conflict_term,
                        *conflict_index,
                        *read_seq,
                        store,
                    );
                }
            }
            Message::Snapshot {
                meta, offset, done, ..
            } => {
                self.accept_leader(from);
                return self.handle_snapshot(from, meta, *offset, *done, tail, store);
            }
            Message::SnapshotResp {
                index,
                next_offset,
                done,
                ..
            } => {
                if self.role == Role::Leader {
                    self.handle_snapshot_resp(from, *index, *next_offset, *done, store);
                }
            }
            Message::TimeoutNow { .. } => {
                if self.role != Role::Leader && self.membership.is_voter(self.id) {
                    info!("node {} campaigning at once (leader transfer)", self.id);
                    self.campaign(false, true);
                }
            }
            Message::ReadIndex { id, .. } => {
                if self.role == Role::Leader && self.transfer.is_none() {
                    if self.open_round(0, Some((from, *id))).is_err() {
                        let reply = Message::ReadIndexResp {
                            term: self.term,
                            id: *id,
                            index: None,
                        };
                        self.push_out(Envelope {
                            to: from,
                            msg: reply,
                        });
                    }
                } else {
                    let reply = Message::ReadIndexResp {
                        term: self.term,
                        id: *id,
                        index: None,
                    };
                    self.push_out(Envelope {
                        to: from,
                        msg: reply,
                    });
                }
            }
            Message::ReadIndexResp { id, index, .. } => self.handle_read_index_resp(*id, *index),
            Message::PreVote { .. } => {}
        }
        Ok(StepOutcome::Done)
    }

    // ----- elections ---------------------------------------------------------------------------

    fn promotable(&self) -> bool {
        self.membership.is_voter(self.id)
    }

    /// Whether this node promised a leader (or, after a restart, may have promised one) not to
    /// help elect anyone else yet. Start-up counts as leader contact: a crash must not shorten
    /// the promise a lease relies on.
    fn in_leader_lease(&self) -> bool {
        self.role == Role::Leader
            || self.now_ms < self.last_leader_contact_ms + self.cfg.election_timeout_ms
    }

    fn log_ok(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term || (last_term == self.last_term && last_index >= self.last_index)
    }

    fn reset_election_timer(&mut self) {
        let base = self.cfg.election_timeout_ms;
        self.election_deadline_ms = self.now_ms + self.rng.range(base, 2 * base);
    }

    fn campaign(&mut self, pre: bool, transfer: bool) {
        self.votes.clear();
        self.reset_election_timer();
        if pre {
            self.role = Role::PreCandidate;
            debug!(
                "node {} starts a pre-vote for term {}",
                self.id,
                self.term + 1
            );
        } else {
            self.role = Role::Candidate;
            self.term += 1;
            self.vote = self.id;
            self.set_leader(NO_NODE);
            self.stats.elections += 1;
            debug!("node {} campaigns in term {}", self.id, self.term);
        }
        let _ = self.votes.push((self.id, true));
        if self.election_won() {
            if pre {
                self.campaign(false, transfer);
            } else {
                self.become_leader();
            }
            return;
        }
        let term = if pre { self.term + 1 } else { self.term };
        for id in self.membership.all() {
            if id == self.id || !self.membership.is_voter(id) {
                continue;
            }
            let msg = if pre {
                Message::PreVote {
                    term,
                    last_index: self.last_index,
                    last_term: self.last_term,
                }
            } else {
                Message::Vote {
                    term,
                    last_index: self.last_index,
                    last_term: self.last_term,
                    transfer,
                }
            };
            // A vote request may only leave once our own term and vote are durable.
            self.respond(id, msg);
        }
    }

    fn record_vote(&mut self, from: NodeId, granted: bool, pre: bool) {
        if !self.votes.iter().any(|v| v.0 == from) {
            let _ = self.votes.push((from, granted));
        }
        if self.election_won() {
            if pre {
                self.campaign(false, false);
            } else {
                self.become_leader();
            }
        } else if self.election_lost() {
            self.become_follower(self.term, NO_NODE);
        }
    }

    fn election_won(&self) -> bool {
        let votes = &self.votes;
        self.membership
            .has_quorum(|id| votes.iter().any(|v| v.0 == id && v.1))
    }

    fn election_lost(&self) -> bool {
        let votes = &self.votes;
        // Lost when the voters not yet refusing cannot form a quorum any more.
        !self
            .membership
            .has_quorum(|id| !votes.iter().any(|v| v.0 == id && !v.1))
    }

    fn set_leader(&mut self, leader: NodeId) {
        if leader != self.leader {
            if leader != NO_NODE {
                self.stats.leader_changes += 1;
            }
            self.leader = leader;
            // Forwarded reads were addressed to the old leader.
            if self.fwd_sent_upto != 0 || self.fwd_pending_upto != 0 {
                let upto = self.fwd_pending_upto.max(self.fwd_sent_upto);
                self.push_read_event(ReadEvent::Failed { upto });
                self.fwd_sent_upto = 0;
                self.fwd_pending_upto = 0;
            }
        }
    }

    fn become_follower(&mut self, term: Term, leader: NodeId) {
        let was_leader = self.role == Role::Leader;
        if term > self.term {
            self.term = term;
            self.vote = NO_NODE;
        }
        self.set_leader(leader);
        self.refresh_role_force();
        self.progress.clear();
        self.transfer = None;
        self.lease_until_ms = 0;
        if was_leader {
            self.fail_all_rounds();
        }
        self.reset_election_timer();
    }

    fn become_leader(&mut self) {
        info!("node {} is leader of term {}", self.id, self.term);
        self.role = Role::Leader;
        self.set_leader(self.id);
        self.stats.became_leader += 1;
        self.progress.clear();
        for id in self.membership.all() {
            if id != self.id {
                let _ = self.progress.push(Progress::new(id, self.last_index));
            }
        }
        self.read_seq = 0;
        self.lease_until_ms = 0;
        self.transfer = None;
        self.quorum_check_due_ms = self.now_ms + self.cfg.election_timeout_ms;
        self.heartbeat_due_ms = self.now_ms;
        self.replicate_pending = true;
        // The no-op lets this leader commit entries of earlier terms (Raft §5.4.2).
        self.term_start_index = self.last_index + 1;
        self.pending_noop = true;
    }

    fn refresh_role(&mut self) {
        if matches!(self.role, Role::Follower | Role::Observer) {
            self.refresh_role_force();
        }
    }

    fn refresh_role_force(&mut self) {
        self.role = if self.membership.is_voter(self.id) {
            Role::Follower
        } else {
            Role::Observer
        };
    }

    fn check_can_propose(&self) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        if self.last_index.saturating_sub(self.commit) >= self.cfg.max_pending_proposals {
            return Err(ProposeError::Busy);
        }
        Ok(())
    }

    // ----- log writes ---------------------------------------------------------------------------

    fn append_own(
        &mut self,
        kind: EntryKind,
        data: &[u8],
        store: &mut impl Storage,
    ) -> Result<(LogIndex, Term), ProposeError> {
        self.write_noop_if_pending(store).map_err(|e| match e {
            RaftError::Storage(s) => ProposeError::Storage(s),
            _ => ProposeError::Storage(StorageError::Io),
        })?;
        let index = self.last_index + 1;
        let entry = EntryRef {
            index,
            term: self.term,
            kind,
            data,
        };
        store.append(&entry).map_err(ProposeError::Storage)?;
        self.last_index = index;
        self.last_term = self.term;
        if kind == EntryKind::Config {
            if let Ok(m) = postcard::from_bytes::<Membership>(data) {
                self.add_config(index, m);
                self.on_config_changed();
            }
        }
        self.replicate_pending = true;
        Ok((index, self.term))
    }

    fn write_noop_if_pending(&mut self, store: &mut impl Storage) -> Result<(), RaftError> {
        if self.pending_noop && self.role == Role::Leader {
            self.pending_noop = false;
            let index = self.last_index + 1;
            store.append(&EntryRef {
                index,
                term: self.term,
                kind: EntryKind::Noop,
                data: &[],
            })?;
            self.last_index = index;
            self.last_term = self.term;
            self.replicate_pending = true;
        }
        Ok(())
    }

    /// End of every public call: write the no-op of a new leader and the hard state if changed.
    fn finish_call(&mut self, store: &mut impl Storage) -> Result<(), RaftError> {
        self.write_noop_if_pending(store)?;
        if self.role == Role::Leader && self.replicate_pending && self.progress.is_empty() {
            // Single-voter group: nothing to send, commit follows persistence.
            self.replicate_pending = false;
        }
        // Only term and vote changes are saved: they are what safety needs. The commit index
        // rides along as a hint whenever they are written (and when a snapshot is taken), never
        // on its own, so a busy leader does not rewrite its hard state on every batch (that
        // would also wear out a flash hard-state sector in weeks).
        let hs = self.hard_state();
        if hs.term != self.hs_saved.term || hs.vote != self.hs_saved.vote {
            #[allow(unused_mut)]
            let mut to_save = hs;
            #[cfg(feature = "mutants")]
            if crate::mutants::active("vote-not-persisted") {
                to_save.vote = self.hs_saved.vote;
                if to_save.term != self.hs_saved.term {
                    to_save.vote = NO_NODE;
                }
            }
            store.save_hard_state(&to_save)?;
            self.hs_unsynced = true;
            self.hs_saved = hs;
        }
        Ok(())
    }

    fn add_config(&mut self, index: LogIndex, m: Membership) {
        self.prune_configs();
        if self.configs.is_full() {
            self.configs.remove(0);
        }
        let _ = self.configs.push((index, m.clone()));
        self.membership = m;
        self.membership_index = index;
    }

    /// Keep the newest config at or below the commit index and everything after it.
    fn prune_configs(&mut self) {
        let commit = self.commit.max(self.snapshot_index);
        while self.configs.len() > 1 && self.configs[1].0 <= commit {
            self.configs.remove(0);
        }
    }

    fn truncate_configs(&mut self, from: LogIndex) {
        while self.configs.len() > 1 && self.configs.last().map(|c| c.0 >= from).unwrap_or(false) {
            self.configs.pop();
        }
        if let Some((i, m)) = self.configs.last() {
            self.membership = m.clone();
            self.membership_index = *i;
        }
    }

    fn on_config_changed(&mut self) {
        self.refresh_role();
        if self.role == Role::Leader {
            // Track every member of the new configuration; drop those no longer named.
            let all = self.membership.all();
            self.progress.retain(|p| all.contains(&p.id));
            for id in all {
                if id != self.id && !self.progress.iter().any(|p| p.id == id) {
                    let mut p = Progress::new(id, self.last_index);
                    p.recent_active = true;
                    let _ = self.progress.push(p);
                }
            }
        }
    }

    // ----- replication (leader) ----------------------------------------------------------------

    fn peer(&self, id: NodeId) -> Option<&Progress> {
        self.progress.iter().find(|p| p.id == id)
    }

    fn peer_mut(&mut self, id: NodeId) -> Option<&mut Progress> {
        self.progress.iter_mut().find(|p| p.id == id)
    }

    fn retry_ms(&self) -> u64 {
        self.cfg.heartbeat_interval_ms * 2
    }

    /// Send as much as the peer's window allows.
    fn send_append(&mut self, to: NodeId, store: &mut impl Storage) {
        let now = self.now_ms;
        let retry = self.retry_ms();
        let max_inflight = self.cfg.max_inflight;
        loop {
            if self.outbox.len() + OUTBOX_HEADROOM >= OUTBOX_CAPACITY {
                // Leave room for replies; the rest of the window goes out at the next flush
                // instead of being dropped and found again by stall detection.
                self.replicate_pending = true;
                return;
            }
            let Some(p) = self.peer(to) else { return };
            if p.state == ProgressState::Snapshot {
                self.send_snapshot_chunk(to);
                return;
            }
            if !p.can_send(max_inflight, now, retry) {
                return;
            }
            let probing = p.state == ProgressState::Probe;
            let next = p.next_index;
            if probing && next > self.last_index + 1 {
                return;
            }
            if !probing && next > self.last_index {
                return;
            }
            let prev_index = next - 1;
            // Both the entry before the range and the first entry of it must still be in the
            // log (index 0 always "exists", so checking `prev` alone misses a compacted start).
            let first_gone = next <= self.last_index
                && matches!(store.term(next), Err(StorageError::Compacted(_)));
            let prev_term = match store.term(prev_index) {
                Ok(t) if !first_gone => t,
                Ok(_) | Err(StorageError::Compacted(_)) if self.snapshot_index > 0 => {
                    // The entries this peer needs were compacted: it needs the snapshot.
                    let (si, st) = (self.snapshot_index, self.snapshot_term);
                    if let Some(p) = self.peer_mut(to) {
                        p.become_snapshot(si, st);
                    }
                    self.send_snapshot_chunk(to);
                    return;
                }
                Ok(_) | Err(_) => return,
            };
            let count = (self.last_index - prev_index).min(self.cfg.max_entries_per_message);
            let msg = Message::Append {
                term: self.term,
                prev_index,
                prev_term,
                commit: self.commit,
                count: count as u32,
                read_seq: self.read_seq,
            };
            self.push_out(Envelope { to, msg });
            let p = self.peer_mut(to).expect("peer checked above");
            p.on_sent(prev_index + count, now);
            if probing || count == 0 {
                return;
            }
        }
    }

    /// Start a new read round sequence number and remember when it went out (for the lease).
    fn bump_read_seq(&mut self) -> u64 {
        self.read_seq += 1;
        let seq = self.read_seq;
        self.seq_times[(seq as usize) % SEQ_TIMES] = (seq, self.now_ms);
        for r in self.rounds.iter_mut() {
            if r.seq == 0 {
                r.seq = seq;
            }
        }
        for rr in self.remote_reads.iter_mut() {
            if rr.seq == 0 {
                rr.seq = seq;
            }
        }
        seq
    }

    fn broadcast_heartbeat(&mut self, store: &impl Storage) {
        let seq = self.bump_read_seq();
        self.heartbeat_due_ms = self.now_ms + self.cfg.heartbeat_interval_ms;
        if self.progress.is_empty() {
            self.confirm_reads();
            return;
        }
        for i in 0..self.progress.len() {
            let p = &self.progress[i];
            let to = p.id;
            // A heartbeat claims only what is known to match, so it never forces a probe.
            let (prev_index, prev_term) = match store.term(p.match_index) {
                Ok(t) => (p.match_index, t),
                Err(_) => (0, 0),
            };
            let msg = Message::Append {
                term: self.term,
                prev_index,
                prev_term,
                commit: self.commit,
                count: 0,
                read_seq: seq,
            };
            self.push_out(Envelope { to, msg });
        }
    }

    fn retry_stalled(&mut self, store: &mut impl Storage) {
        let now = self.now_ms;
        let retry = self.retry_ms();
        let stall_ms = self.cfg.election_timeout_ms / 2;
        for p in self.progress.iter_mut() {
            if p.stalled(now, stall_ms) {
                // Nothing acknowledged for a while: the window's messages were lost.
                let next = p.match_index + 1;
                p.become_probe(next);
            }
        }
        for i in 0..self.progress.len() {
            let p = &self.progress[i];
            let id = p.id;
            let stalled = match p.state {
                ProgressState::Probe => {
                    p.probe_sent_at_ms.map(|t| now >= t + retry).unwrap_or(true)
                }
                ProgressState::Replicate => {
                    p.next_index <= self.last_index && p.inflight.len() < self.cfg.max_inflight
                }
                ProgressState::Snapshot => p
                    .snapshot
                    .map(|s| s.sent_at_ms.map(|t| now >= t + retry).unwrap_or(true))
                    .unwrap_or(false),
            };
            if stalled {
                if let Some(p) = self.peer_mut(id) {
                    if p.state == ProgressState::Snapshot {
                        if let Some(s) = p.snapshot.as_mut() {
                            s.sent_at_ms = None;
                        }
                    }
                }
                self.send_append(id, store);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_append_resp(
        &mut self,
        from: NodeId,
        success: bool,
        match_index: LogIndex,
        conflict_term: Term,
        conflict_index: LogIndex,
        read_seq: u64,
        store: &mut impl Storage,
    ) {
        let last_index = self.last_index;
        let now = self.now_ms;
        let Some(p) = self.peer_mut(from) else { return };
        p.recent_active = true;
        if read_seq > p.read_seq_acked {
            p.read_seq_acked = read_seq;
        }
        if success {
            if p.on_ack(match_index.min(last_index), now) {
                self.maybe_commit();
            }
            if let Some((target, _)) = self.transfer {
                if target == from && self.peer(from).map(|p| p.match_index) == Some(self.last_index)
                {
                    self.send_timeout_now(from);
                }
            }
        } else if p.state != ProgressState::Snapshot && conflict_index > p.match_index {
            // Fast backtracking: skip the whole conflicting term at once.
            let next = if conflict_term > 0 {
                match self.last_index_of_term(conflict_term, store) {
                    Some(i) => i + 1,
                    None => conflict_index,
                }
            } else {
                conflict_index
            };
            let last = self.last_index;
            let p = self.peer_mut(from).expect("peer found above");
            p.become_probe(next.min(last + 1));
        }
        self.confirm_reads();
        self.send_append(from, store);
    }

    /// The last index holding `term` in our log, by binary search (terms never decrease).
    fn last_index_of_term(&self, term: Term, store: &impl Storage) -> Option<LogIndex> {
        let (mut lo, mut hi) = (self.snapshot_index, self.last_index);
        // Find the largest index in [lo, hi] with term(index) <= term.
        if store.term(lo).ok()? > term {
            return None;
        }
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            match store.term(mid) {
                Ok(t) if t <= term => lo = mid,
                Ok(_) => hi = mid - 1,
                Err(_) => return None,
            }
        }
        (store.term(lo).ok()? == term).then_some(lo)
    }

    /// The first index of `term` at or before `from`, by binary search.
    fn first_index_of_term(&self, term: Term, from: LogIndex, store: &impl Storage) -> LogIndex {
        let (mut lo, mut hi) = (self.snapshot_index + 1, from);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match store.term(mid) {
                Ok(t) if t >= term => hi = mid,
                _ => lo = mid + 1,
            }
        }
        lo.max(self.commit + 1).min(from)
    }

    /// The highest value a quorum of voters has reached, where this node counts with `own`
    /// and each peer with `of(progress)` (joint configurations need both majorities).
    fn quorum_value(&self, own: u64, of: impl Fn(&Progress) -> u64) -> u64 {
        self.membership.quorum_index(|n| {
            if n == self.id {
                own
            } else {
                self.progress
                    .iter()
                    .find(|p| p.id == n)
                    .map(&of)
                    .unwrap_or(0)
            }
        })
    }

    fn maybe_commit(&mut self) {
        let q = self.quorum_value(self.persisted_index, |p| p.match_index);
        if q <= self.commit || q > self.last_index {
            return;
        }
        // Raft §5.4.2: only an entry of the current term is committed by counting replicas;
        // earlier entries are committed through it.
        #[allow(unused_mut)]
        let mut current_term_only = true;
        #[cfg(feature = "mutants")]
        if crate::mutants::active("commit-by-counting") {
            current_term_only = false;
        }
        if current_term_only && q < self.term_start_index {
            return;
        }
        self.commit = q;
        self.prune_configs();
        self.confirm_reads();
        if !self.membership.joint
            && self.membership_index <= self.commit
            && !self.membership.is_voter(self.id)
        {
            info!(
                "leader {} is not a voter of the committed configuration; stepping down",
                self.id
            );
            self.become_follower(self.term, NO_NODE);
        }
    }

    fn send_timeout_now(&mut self, to: NodeId) {
        self.lease_void_term = self.term;
        self.push_out(Envelope {
            to,
            msg: Message::TimeoutNow { term: self.term },
        });
    }

    // ----- replication (follower) ----------------------------------------------------------------

    fn accept_leader(&mut self, from: NodeId) {
        if self.role != Role::Follower && self.role != Role::Observer {
            self.become_follower(self.term, from);
        }
        self.set_leader(from);
        self.last_leader_contact_ms = self.now_ms;
        self.reset_election_timer();
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: LogIndex,
        prev_term: Term,
        leader_commit: LogIndex,
        count: u32,
        read_seq: u64,
        tail: &[u8],
        store: &mut impl Storage,
    ) -> Result<(), RaftError> {
        let reject = |this: &mut Self, conflict_term: Term, conflict_index: LogIndex| {
            let msg = Message::AppendResp {
                term: this.term,
                success: false,
                match_index: 0,
                conflict_term,
                conflict_index,
                read_seq,
            };
            this.respond(from, msg);
        };
        if prev_index > self.last_index {
            reject(self, 0, self.last_index + 1);
            return Ok(());
        }
        if prev_index > self.snapshot_index {
            let t = store.term(prev_index)?;
            if t != prev_term {
                let first = self.first_index_of_term(t, prev_index, store);
                reject(self, t, first);
                return Ok(());
            }
        }
        // The log matches at prev_index. Walk the new entries: skip those we hold, cut at the
        // first conflict, append the rest. Payloads go from the frame to storage untouched.
        let mut truncated = false;
        for item in EntryIter::new(tail, count) {
            let e = item.map_err(|_| RaftError::MalformedEntries)?;
            if e.index <= self.snapshot_index {
                continue;
            }
            if e.index <= self.last_index && !truncated {
                let ours = store.term(e.index)?;
                if ours == e.term {
                    continue;
                }
                #[cfg(feature = "mutants")]
                if crate::mutants::active("skip-truncate") {
                    continue;
                }
                if e.index <= self.commit {
                    return Err(RaftError::CommittedTruncation(e.index));
                }
                store.truncate_suffix(e.index)?;
                self.last_index = e.index - 1;
                self.last_term = store.term(self.last_index)?;
                self.persisted_index = self.persisted_index.min(self.last_index);
                self.log_epoch = self.log_epoch.wrapping_add(1);
                self.truncate_configs(e.index);
                truncated = true;
            }
            if e.index != self.last_index + 1 {
                return Err(RaftError::MalformedEntries);
            }
            store.append(&e)?;
            self.last_index = e.index;
            self.last_term = e.term;
            if e.kind == EntryKind::Config {
                let m = postcard::from_bytes::<Membership>(e.data)
                    .map_err(|_| RaftError::BadConfigEntry(e.index))?;
                self.add_config(e.index, m);
                self.on_config_changed();
            }
        }
        let matched = prev_index + u64::from(count);
        let new_commit = leader_commit.min(matched);
        if new_commit > self.commit {
            self.commit = new_commit;
            self.prune_configs();
        }
        let msg = Message::AppendResp {
            term: self.term,
            success: true,
            match_index: matched,
            conflict_term: 0,
            conflict_index: 0,
            read_seq,
        };
        self.respond(from, msg);
        Ok(())
    }

    // ----- snapshots -------------------------------------------------------------------------------

    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let now = self.now_ms;
        let (si, st) = (self.snapshot_index, self.snapshot_term);
        let term = self.term;
        let Some(p) = self.peer_mut(to) else { return };
        let Some(mut s) = p.snapshot else { return };
        if s.index != si {
            // A newer snapshot replaced the one being sent: start over with it.
            s = progress::SnapshotSend {
                index: si,
                term: st,
                acked_offset: 0,
                sent_at_ms: None,
            };
        }
        if s.sent_at_ms.is_some() {
            p.snapshot = Some(s);
            return;
        }
        s.sent_at_ms = Some(now);
        p.snapshot = Some(s);
        let meta = SnapshotRef {
            index: s.index,
            term: s.term,
        };
        let msg = Message::Snapshot {
            term,
            meta,
            offset: s.acked_offset,
            done: false,
        };
        self.push_out(Envelope { to, msg });
    }

    fn handle_snapshot_resp(
        &mut self,
        from: NodeId,
        index: LogIndex,
        next_offset: u64,
        done: bool,
        store: &mut impl Storage,
    ) {
        let now = self.now_ms;
        let Some(p) = self.peer_mut(from) else { return };
        p.recent_active = true;
        let Some(mut s) = p.snapshot else { return };
        if s.index != index {
            return;
        }
        if done {
            p.become_probe(index + 1);
            p.on_ack(index, now);
            p.state = ProgressState::Probe;
            self.stats.snapshots_sent += 1;
            self.send_append(from, store);
            return;
        }
        s.acked_offset = next_offset;
        s.sent_at_ms = None;
        p.snapshot = Some(s);
        self.send_snapshot_chunk(from);
    }

    fn handle_snapshot(
        &mut self,
        from: NodeId,
        meta: &SnapshotHeader,
        offset: u64,
        done: bool,
        data: &[u8],
        store: &mut impl Storage,
    ) -> Result<StepOutcome, RaftError> {
        let reply = |this: &mut Self, next_offset: u64, done: bool| {
            let msg = Message::SnapshotResp {
                term: this.term,
                index: meta.index,
                next_offset,
                done,
            };
            this.respond(from, msg);
        };
        if meta.index <= self.commit {
            // Everything in it is already here.
            reply(self, 0, true);
            return Ok(StepOutcome::Done);
        }
        let expected = match self.receiving {
            Some((i, t, next)) if i == meta.index && t == meta.term => next,
            _ => 0,
        };
        if offset != expected {
            // A chunk was lost or duplicated: tell the leader where to resume.
            reply(self, expected, false);
            return Ok(StepOutcome::Done);
        }
        let full = SnapshotMeta {
            index: meta.index,
            term: meta.term,
            membership: meta.membership.clone(),
            size_bytes: meta.size_bytes,
            crc: meta.crc,
        };
        if offset == 0 {
            store.snapshot_begin(&full)?;
        }
        store.snapshot_write(offset, data)?;
        let next = offset + data.len() as u64;
        self.receiving = Some((meta.index, meta.term, next));
        if !done {
            reply(self, next, false);
            return Ok(StepOutcome::Done);
        }
        // Decide before finishing: afterwards the snapshot itself answers for its last index.
        // Storage applies the same rule (keep the log only if it holds that entry).
        let keep_log =
            self.last_index >= meta.index && store.term(meta.index).ok() == Some(meta.term);
        store.snapshot_finish()?;
        self.receiving = None;
        if !keep_log {
            self.last_index = meta.index;
            self.last_term = meta.term;
            self.persisted_index = meta.index;
            self.log_epoch = self.log_epoch.wrapping_add(1);
        }
        self.snapshot_index = meta.index;
        self.snapshot_term = meta.term;
        self.commit = self.commit.max(meta.index);
        self.applied = meta.index;
        self.configs.clear();
        let _ = self.configs.push((meta.index, meta.membership.clone()));
        self.membership = meta.membership.clone();
        self.membership_index = meta.index;
        if keep_log {
            // Configurations after the snapshot are still in the log; the caller rescans them.
        }
        self.refresh_role();
        self.stats.snapshots_installed += 1;
        info!(
            "node {} installed snapshot at index {}",
            self.id, meta.index
        );
        reply(self, next, true);
        Ok(StepOutcome::SnapshotInstalled(full))
    }

    // ----- reads ---------------------------------------------------------------------------------

    /// Attach a local ticket (or a follower's request) to the round that will go out next.
    fn open_round(&mut self, ticket: u64, remote: Option<(NodeId, u64)>) -> Result<(), ReadError> {
        let index = self.commit.max(self.term_start_index);
        #[cfg(feature = "mutants")]
        if crate::mutants::active("read-without-quorum") {
            // Planted bug: answer at once from local state without confirming leadership.
            match remote {
                None => self.push_read_event(ReadEvent::Ready {
                    upto: ticket,
                    index: self.commit,
                }),
                Some((from, id)) => self.push_out(Envelope {
                    to: from,
                    msg: Message::ReadIndexResp {
                        term: self.term,
                        id,
                        index: Some(self.commit),
                    },
                }),
            }
            return Ok(());
        }
        let open = matches!(self.rounds.back(), Some(r) if r.seq == 0);
        if !open {
            // Up to `max_read_rounds` in flight plus one waiting to go out.
            if self.rounds.len() > self.cfg.max_read_rounds {
                return Err(ReadError::Busy);
            }
            let _ = self.rounds.push_back(ReadRound {
                seq: 0,
                index,
                ticket_upto: 0,
            });
        }
        if let Some((from, id)) = remote {
            if self
                .remote_reads
                .push(RemoteRead { from, id, seq: 0 })
                .is_err()
            {
                return Err(ReadError::Busy);
            }
        }
        let r = self.rounds.back_mut().expect("a round was just ensured");
        r.index = r.index.max(index);
        if ticket != 0 {
            r.ticket_upto = ticket;
        }
        if self.progress.is_empty() {
            // A single voter confirms its own leadership.
            self.bump_read_seq();
            self.confirm_reads();
        }
        Ok(())
    }

    /// Confirm every read round acknowledged by a quorum, and extend the lease.
    fn confirm_reads(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let acked = self.quorum_value(self.read_seq, |p| p.read_seq_acked);
        if acked == 0 {
            return;
        }
        let (seq, sent) = self.seq_times[(acked as usize) % SEQ_TIMES];
        if seq == acked && self.lease_void_term != self.term {
            let until = sent + self.cfg.election_timeout_ms - self.cfg.lease_drift_margin_ms;
            self.lease_until_ms = self.lease_until_ms.max(until);
        }
        // Reads wait until this leader has committed an entry of its own term.
        if self.commit < self.term_start_index {
            return;
        }
        while let Some(r) = self.rounds.front().copied() {
            if r.seq == 0 || r.seq > acked {
                break;
            }
            self.rounds.pop_front();
            if r.ticket_upto != 0 {
                self.push_read_event(ReadEvent::Ready {
                    upto: r.ticket_upto,
                    index: r.index,
                });
            }
            let term = self.term;
            let mut i = 0;
            while i < self.remote_reads.len() {
                let rr = self.remote_reads[i];
                if rr.seq != 0 && rr.seq <= r.seq {
                    self.remote_reads.swap_remove(i);
                    let msg = Message::ReadIndexResp {
                        term,
                        id: rr.id,
                        index: Some(r.index),
                    };
                    self.push_out(Envelope { to: rr.from, msg });
                } else {
                    i += 1;
                }
            }
        }
    }

    fn fail_all_rounds(&mut self) {
        let mut upto = 0;
        while let Some(r) = self.rounds.pop_front() {
            upto = upto.max(r.ticket_upto);
        }
        if upto != 0 {
            self.push_read_event(ReadEvent::Failed { upto });
        }
        let term = self.term;
        for rr in core::mem::take(&mut self.remote_reads) {
            let msg = Message::ReadIndexResp {
                term,
                id: rr.id,
                index: None,
            };
            self.push_out(Envelope { to: rr.from, msg });
        }
    }

    fn send_forwarded_read(&mut self) {
        let id = self.fwd_pending_upto;
        self.fwd_sent_upto = id;
        self.fwd_sent_at_ms = self.now_ms;
        let msg = Message::ReadIndex {
            term: self.term,
            id,
        };
        self.push_out(Envelope {
            to: self.leader,
            msg,
        });
    }

    fn handle_read_index_resp(&mut self, id: u64, index: Option<LogIndex>) {
        if self.fwd_sent_upto == 0 || id != self.fwd_sent_upto {
            return;
        }
        match index {
            Some(index) => self.push_read_event(ReadEvent::Ready { upto: id, index }),
            None => self.push_read_event(ReadEvent::Failed { upto: id }),
        }
        self.fwd_sent_upto = 0;
        if self.fwd_pending_upto > id {
            self.send_forwarded_read();
        } else {
            self.fwd_pending_upto = 0;
        }
    }

    fn push_read_event(&mut self, ev: ReadEvent) {
        if self.read_events.is_full() {
            // Merge with the newest event: waiting for a higher index, or failing a read that
            // could have succeeded, are both safe; the client retries a failed read.
            let last = self.read_events.back_mut().expect("full deque has a back");
            *last = match (*last, ev) {
                (ReadEvent::Ready { index: a, .. }, ReadEvent::Ready { upto, index: b }) => {
                    ReadEvent::Ready {
                        upto,
                        index: a.max(b),
                    }
                }
                (_, ReadEvent::Failed { upto })
                | (ReadEvent::Failed { .. }, ReadEvent::Ready { upto, .. }) => {
                    ReadEvent::Failed { upto }
                }
            };
            return;
        }
        let _ = self.read_events.push_back(ev);
    }

    // ----- output plumbing -------------------------------------------------------------------------

    /// Queue a reply that must wait for durability when anything is unsynced.
    fn respond(&mut self, to: NodeId, msg: OutMessage) {
        #[cfg(feature = "mutants")]
        if crate::mutants::active("vote-not-persisted") && matches!(msg, Message::VoteResp { .. }) {
            self.push_out(Envelope { to, msg });
            return;
        }
        let hs_changed = {
            let hs = self.hard_state();
            hs.term != self.hs_saved.term || hs.vote != self.hs_saved.vote
        };
        if self.needs_sync() || hs_changed {
            if let Some(slot) = self
                .held
                .iter_mut()
                .find(|e| e.to == to && same_kind(&e.msg, &msg))
            {
                merge_held(&mut slot.msg, msg);
            } else if self.held.push(Envelope { to, msg }).is_err() {
                self.stats.dropped_messages += 1;
            }
        } else {
            self.push_out(Envelope { to, msg });
        }
    }

    fn push_out(&mut self, env: Envelope) {
        if self.outbox.push_back(env).is_err() {
            self.stats.dropped_messages += 1;
        }
    }
}

/// Fold a newer answer into a held one of the same kind to the same peer. Normally the newer
/// supersedes it. Two acknowledgements of appends in the same term merge instead: entries a
/// follower acknowledged to the leader of a term stay matched for the rest of that term, so the
/// higher `match_index` (and read round) stands. Otherwise the answer to a heartbeat stepped
/// after appends in the same batch (its `prev_index` is the leader's older view) would replace
/// their acknowledgement, and the leader would wait for its window to time out.
fn merge_held(held: &mut OutMessage, new: OutMessage) {
    if let (
        Message::AppendResp {
            term: held_term,
            success: true,
            match_index: held_match,
            read_seq: held_seq,
            ..
        },
        Message::AppendResp {
            term,
            success: true,
            match_index,
            read_seq,
            ..
        },
    ) = (&*held, &new)
    {
        if held_term == term {
            *held = Message::AppendResp {
                term: *term,
                success: true,
                match_index: (*match_index).max(*held_match),
                conflict_term: 0,
                conflict_index: 0,
                read_seq: (*read_seq).max(*held_seq),
            };
            return;
        }
    }
    *held = new;
}

fn same_kind(a: &OutMessage, b: &OutMessage) -> bool {
    core::mem::discriminant(a) == core::mem::discriminant(b)
}

#[cfg(test)]
mod tests;
