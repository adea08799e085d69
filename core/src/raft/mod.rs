//! The Raft consensus state machine of one group.
//!
//! [`Raft`] owns the protocol decisions: who votes for whom, which range of the log goes to which
//! peer, where a follower's log is cut, what is committed, when a read may be answered. It never
//! syncs storage, never sends a byte and never reads a clock:
//!
//! - time arrives as `now_ms` arguments, randomness from a seeded [`Rng`];
//! - log writes (append, truncate, hard state) go through the [`Storage`](crate::storage::Storage) handed to each call, as
//!   *buffered* writes; entry payloads are borrowed from the incoming frame, never copied here;
//! - outgoing messages are queued; messages that may only leave once everything written so far is
//!   durable (vote grants, append acknowledgements) are *held* until [`Raft::on_persisted`].
//!
//! The [`crate::driver::Node`] is the usual caller: it syncs, sends, applies and reports.
//!
//! One type, its `impl` spread over one file per concern:
//!
//! | file | concern |
//! |---|---|
//! | `step.rs` | the inputs: `step` (term check once, then dispatch by role), `tick`, `flush` |
//! | `election.rs` | PreVote, votes, campaigns, role changes, the election timer |
//! | `replication.rs` | the leader: proposals, progress, sending appends, commit |
//! | `append.rs` | the follower: accepting a leader, checking and writing an `Append` |
//! | `snapshot.rs` | snapshots: due, taken, sent in chunks, received and installed |
//! | `read.rs` | ReadIndex rounds, forwarded reads and the lease ([`read::Reads`]) |
//! | `health.rs` | whether this node can vouch for its group now ([`Health`]) |
//! | `transfer.rs` | leader transfer |
//! | `config.rs` | membership changes and the configurations the log holds |
//! | `durability.rs` | what is written and what is durable: hard state, persisted index |
//! | `outbox.rs` | outgoing messages: sent at once, or held until durable |
//! | `progress.rs` | the leader's view of one peer |
//! | `clock.rs` | the clock check: whether each follower's clock runs at the leader's rate |
//! | `quiesce.rs` | quiescence (`quiesce` feature): settled groups stop heartbeats and timers |

mod append;
pub mod clock;
mod config;
mod durability;
mod election;
mod error;
mod health;
mod invariants;
mod outbox;
pub mod progress;
#[cfg(feature = "quiesce")]
mod quiesce;
mod read;
mod replication;
mod snapshot;
mod step;
mod transfer;

pub use clock::{ClockCheck, ClockVerdict};
pub use error::{ProposeError, RaftError, ReadError, TransferError};
pub use health::Health;
pub use read::ReadEvent;

use crate::limits::{Config, ConfigError, MAX_MEMBERS, MAX_PENDING_CONFIGS, OUTBOX_CAPACITY};
use crate::membership::Membership;
use crate::message::{Message, SnapshotRef};
use crate::plant::{NoPlant, Plant};
use crate::rng::Rng;
use crate::types::{HardState, LogIndex, NodeId, Role, SnapshotMeta, Term, NO_NODE};
use core::mem::MaybeUninit;
use heapless::{Deque, Vec};
use progress::Progress;
use read::Reads;

#[cfg(feature = "quiesce")]
use quiesce::Quiesce;
#[cfg(feature = "quiesce")]
pub use quiesce::SETTLE_BEATS;
/// Without the `quiesce` feature a group keeps no quiescence state.
#[cfg(not(feature = "quiesce"))]
type Quiesce = ();

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

impl Envelope {
    /// `msg` (any payload struct of [`Message`]) for `to`.
    pub fn new(to: NodeId, msg: impl Into<OutMessage>) -> Self {
        Envelope {
            to,
            msg: msg.into(),
        }
    }
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

/// What a [`Raft::step`] asks of the caller beyond sending messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// Nothing more.
    Done,
    /// A snapshot was installed in storage: restore the state machine from it.
    SnapshotInstalled(SnapshotMeta),
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
    /// Times the clock check found a follower's clock drifting beyond the lease's bound (each
    /// time one turned to [`ClockVerdict::Drift`]).
    pub clock_drift_detected: u64,
}

/// Outbox slots a burst of appends leaves free for replies and heartbeats.
const OUTBOX_HEADROOM: usize = 2 * MAX_MEMBERS;
/// Held messages wait for the next persist; bounded like the outbox.
const HELD_CAPACITY: usize = 2 * MAX_MEMBERS + 2;
/// Largest encoded membership: four node sets, each a one-byte length and up to
/// `MAX_MEMBERS` ids of at most ten varint bytes, and the `joint` flag.
pub const MAX_CONFIG_BYTES: usize = 4 * (1 + MAX_MEMBERS * 10) + 1;

const _: () = {
    // A burst of appends stops short of the outbox's end, and what it leaves is enough for a
    // heartbeat and an answer to every peer.
    assert!(OUTBOX_HEADROOM < OUTBOX_CAPACITY);
    assert!(OUTBOX_HEADROOM >= 2 * (MAX_MEMBERS - 1));
    // One held answer of each kind (a vote, an append) to every peer fits.
    assert!(HELD_CAPACITY >= 2 * (MAX_MEMBERS - 1));
    // A membership change can be replicated by a group of boards: the configuration entry
    // fits the smallest profile's messages.
    let config_entry = MAX_CONFIG_BYTES + crate::entry::MAX_HEADER_BYTES;
    assert!(config_entry <= Config::embedded().max_bytes_per_message);
};

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

/// The Raft state machine of one group. See the module docs. `P` is where a test build
/// plants bugs ([`crate::plant`]); every node of a real cluster runs [`NoPlant`].
pub struct Raft<P: Plant = NoPlant> {
    id: NodeId,
    pub(crate) plant: P,
    cfg: Config,
    rng: Rng,
    stats: RaftStats,
    // Role and term.
    role: Role,
    term: Term,
    vote: NodeId,
    leader: NodeId,
    votes: Vec<(NodeId, bool), MAX_MEMBERS>,
    // The log, as far as the core tracks it.
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
    /// When the commit index was last saved with the hard state.
    hint_saved_ms: u64,
    // Configurations.
    membership: Membership,
    membership_index: LogIndex,
    configs: Vec<(LogIndex, Membership), MAX_PENDING_CONFIGS>,
    // Leader.
    progress: Vec<Progress, MAX_MEMBERS>,
    term_start_index: LogIndex,
    replicate_pending: bool,
    pending_noop: bool,
    transfer: Option<(NodeId, u64)>,
    // Messages.
    outbox: Deque<Envelope, OUTBOX_CAPACITY>,
    held: Vec<Envelope, HELD_CAPACITY>,
    // Time.
    now_ms: u64,
    election_deadline_ms: u64,
    heartbeat_due_ms: u64,
    quorum_check_due_ms: u64,
    last_leader_contact_ms: u64,
    // Reads and the lease.
    reads: Reads,
    // Snapshots.
    last_snapshot_ms: u64,
    receiving: Option<snapshot::Receiving>,
    // Quiescence (nothing without the `quiesce` feature).
    quiesce: Quiesce,
}

impl<P: Plant> Raft<P> {
    /// A group member `id` starting at `now_ms` from recovered state.
    pub fn new(
        id: NodeId,
        cfg: Config,
        seed: u64,
        rec: Recovered,
        now_ms: u64,
        plant: P,
    ) -> Result<Self, ConfigError> {
        crate::inplace::build(|slot| Self::init(slot, id, cfg, seed, rec, now_ms, plant))
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
        plant: P,
    ) -> Result<&mut Self, ConfigError> {
        cfg.validate()?;
        let r = crate::write_fields!(
            slot,
            Self {
                id: id,
                plant: plant,
                rng: Rng::new(seed ^ id.wrapping_mul(0x9E37_79B9)),
                stats: RaftStats::default(),
                role: Role::Follower,
                term: rec.hard_state.term,
                vote: rec.hard_state.vote,
                leader: NO_NODE,
                votes: Vec::new(),
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
                hint_saved_ms: now_ms,
                membership_index: rec.snapshot.0,
                configs: Vec::new(),
                membership: rec.snapshot_membership,
                progress: Vec::new(),
                term_start_index: 0,
                replicate_pending: false,
                pending_noop: false,
                transfer: None,
                outbox: Deque::new(),
                held: Vec::new(),
                now_ms: now_ms,
                election_deadline_ms: 0,
                heartbeat_due_ms: 0,
                quorum_check_due_ms: 0,
                // A restarted node may have acknowledged a leader whose lease still runs: it must
                // not vote for anyone else until that lease would have expired.
                last_leader_contact_ms: now_ms,
                reads: Reads::new(),
                last_snapshot_ms: now_ms,
                receiving: None,
                quiesce: Default::default(),
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
    /// Peers whose clocks the clock check found drifting beyond the lease's bound (0 unless
    /// leader). While any voter's does, its echoes do not count toward the lease.
    pub fn clock_drift_peers(&self) -> usize {
        self.progress
            .iter()
            .filter(|p| p.clock.verdict() == ClockVerdict::Drift)
            .count()
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

    /// The state machine has applied up to `index`.
    pub fn set_applied(&mut self, index: LogIndex) {
        invariants::moves_forward("applied", self.applied, index, "commit", self.commit);
        self.applied = index;
        self.assert_invariants();
    }

    /// This node's clock as messages carry it: the low 32 bits of its milliseconds, never 0
    /// (which says "no clock").
    fn clock_stamp(&self) -> u32 {
        (self.now_ms as u32).max(1)
    }

    /// Advance the clock the core was given (it never goes back).
    fn advance_clock(&mut self, now_ms: u64) {
        self.now_ms = now_ms.max(self.now_ms);
    }
}

#[cfg(test)]
mod tests;
