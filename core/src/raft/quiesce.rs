//! Quiescence: a group with nothing to do costs nothing (the `quiesce` feature).
//!
//! A leader whose group is *settled* — every peer's match is the last index, which is the commit
//! index and is applied and durable; no proposal, read round, transfer, membership change or
//! snapshot under way — for [`SETTLE_BEATS`] heartbeat intervals in a row, and once every peer
//! echoed a heartbeat sent in that spell (so it is alive and knows the commit index), sends
//! [`Quiet`] to its peers instead of the next heartbeat and stops heartbeating. A follower that gets `Quiet` from the leader it follows, in its term, with its
//! log ending at that commit index (of that term), goes quiet too: it stops its election timer.
//!
//! **Waking.** Any peer message, a proposal, a read, a membership change, a transfer, or
//! [`Raft::wake`] (the platform's call when a member's node went silent) wakes the group: a
//! woken leader heartbeats at once and restarts CheckQuorum's window; a woken follower restarts
//! its election timer from now, randomised, and unless its leader woke it, tells its leader (an
//! acknowledgement of its log), which wakes and heartbeats.
//!
//! **Who watches the leader.** Nobody in the group: while quiet, liveness is the platform's, by
//! node, not by group — nodes ping each other, and a node that hears nothing from another for an
//! election timeout wakes every quiet group that node is a member of. Until then a quiet member
//! refuses (pre)votes: a (pre)vote that reaches a quiet member counts as word from its leader
//! (the leader's node is alive, or the platform had woken the group), so it is refused and the
//! member refuses others for an election timeout from then, as after a heartbeat.
//!
//! **Leases.** A quiet leader's lease is void ([`Raft::lease_valid`] is false): a lease read
//! fails over to ReadIndex, which wakes the group, and the lease is earned again by heartbeats
//! echoed after the wake. Nothing in quiescence shortens a follower's promise: the time of its
//! last leader contact only moves forward, so every lease a quorum's echoes granted still ends
//! before any of those followers votes for someone else.

use super::progress::ProgressState;
use super::Raft;
use crate::message::{AppendResp, Message, Quiet};
use crate::plant::Plant;
use crate::storage::Storage;
use crate::types::{NodeId, Role, NO_NODE};

/// Heartbeat intervals a leader's group stays settled before it goes quiet.
pub const SETTLE_BEATS: u8 = 3;

/// Quiescence state of one group member.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Quiesce {
    /// Whether this node, leading, quiesces its group (followers obey `Quiet` either way).
    pub(super) enabled: bool,
    /// Quiet now.
    pub(super) quiet: bool,
    /// Heartbeat intervals in a row the group was found settled (leader).
    settled: u8,
    /// The first heartbeat round sent while settled: every peer must echo it (or a later one).
    since_seq: u64,
    /// A woken leader heartbeats at the next flush.
    beat_now: bool,
}

impl<P: Plant> Raft<P> {
    /// Let this node quiesce the groups it leads (off by default).
    pub fn set_quiesce(&mut self, on: bool) {
        self.quiesce.enabled = on;
        if !on {
            self.wake_if_quiet();
        }
    }

    /// Whether the group is quiet here: no heartbeats (leader) or no election timer (follower).
    pub fn is_quiet(&self) -> bool {
        self.quiesce.quiet
    }

    /// Wake the group: a leader heartbeats at its next flush, a follower restarts its election
    /// timer. The platform calls this when a member's node went silent.
    pub fn wake(&mut self, now_ms: u64) {
        self.advance_clock(now_ms);
        self.wake_if_quiet();
    }

    pub(super) fn wake_if_quiet(&mut self) {
        if !self.quiesce.quiet {
            return;
        }
        self.quiesce.quiet = false;
        self.quiesce.settled = 0;
        if self.role == Role::Leader {
            self.quiesce.beat_now = true;
            self.heartbeat_due_ms = self.now_ms;
            // CheckQuorum counts from now: the quiet spell was no silence of the followers.
            self.quorum_check_due_ms = self.now_ms + self.cfg.election_timeout_ms;
            for p in self.progress.iter_mut() {
                p.recent_active = true;
                p.progress_at_ms = self.now_ms;
            }
        } else {
            self.reset_election_timer();
            self.poke_leader();
        }
    }

    /// A follower woken by anything but its leader tells its leader, which wakes and
    /// heartbeats: the group's members hear from it again well within an election timeout. The
    /// word is an acknowledgement of what the follower holds, which the leader knew already.
    fn poke_leader(&mut self) {
        if self.leader == NO_NODE || self.leader == self.id {
            return;
        }
        let ack = AppendResp {
            term: self.term,
            success: true,
            match_index: self.last_index,
            conflict_term: 0,
            conflict_index: 0,
            read_seq: 0,
            echo_ms: 0,
            clock_ms: 0,
        };
        self.send(self.leader, ack);
    }

    /// A peer's message reaches this node (checked, about to be handled): wake. A (pre)vote
    /// reaching a quiet follower counts as word from its leader (see the module docs).
    pub(super) fn wake_for(&mut self, from: NodeId, msg: &Message) {
        if !self.quiesce.quiet {
            return;
        }
        let vote = match msg {
            Message::PreVote(_) => true,
            Message::Vote(v) => !v.transfer,
            _ => false,
        };
        if vote && self.role != Role::Leader && from != self.leader {
            self.last_leader_contact_ms = self.now_ms;
        }
        if from == self.leader && self.role != Role::Leader {
            // The leader's own word needs no poke back.
            let leader = core::mem::replace(&mut self.leader, NO_NODE);
            self.wake_if_quiet();
            self.leader = leader;
        } else {
            self.wake_if_quiet();
        }
    }

    /// Role changed: whatever was quiet is not any more.
    pub(super) fn quiesce_reset(&mut self) {
        self.quiesce.quiet = false;
        self.quiesce.settled = 0;
        self.quiesce.beat_now = false;
    }

    /// A leader's heartbeat is due: count the settled intervals and, after [`SETTLE_BEATS`],
    /// go quiet instead of heartbeating. Returns whether the group went quiet.
    pub(super) fn maybe_quiesce(&mut self, store: &mut impl Storage) -> bool {
        if !self.quiesce.enabled || !self.settled() {
            self.quiesce.settled = 0;
            return false;
        }
        if self.quiesce.settled == 0 {
            // The heartbeat that goes out now is the first of the settled spell.
            self.quiesce.since_seq = self.reads.read_seq + 1;
        }
        self.quiesce.settled = self.quiesce.settled.saturating_add(1);
        let since = self.quiesce.since_seq;
        if self.quiesce.settled < SETTLE_BEATS
            || self.progress.iter().any(|p| p.read_seq_acked < since)
        {
            return false;
        }
        let quiet = Quiet {
            term: self.term,
            commit: self.commit,
        };
        for i in 0..self.progress.len() {
            let to = self.progress[i].id;
            self.send(to, quiet);
        }
        self.quiesce.quiet = true;
        self.reads.lease_until_ms = 0;
        // The data dir says how far the group committed while it sleeps.
        self.save_quiet_commit(store);
        true
    }

    /// Whether messages wait in the outbox, or held for a sync.
    pub fn has_queued_messages(&self) -> bool {
        !self.outbox.is_empty() || !self.held.is_empty()
    }

    /// Whether a woken leader owes its heartbeat (taken by the flush).
    pub(super) fn take_beat_now(&mut self) -> bool {
        core::mem::take(&mut self.quiesce.beat_now)
    }

    /// Whether the leader's group has nothing to do (see the module docs).
    fn settled(&self) -> bool {
        let last = self.last_index;
        self.role == Role::Leader
            && self.transfer.is_none()
            && !self.pending_noop
            && !self.replicate_pending
            && self.commit == last
            && self.commit >= self.term_start_index
            && self.applied == last
            && self.persisted_index == last
            && !self.hs_unsynced
            && !self.hard_state_changed()
            && !self.membership.joint
            && self.membership_index <= self.commit
            && self.held.is_empty()
            && self.reads.idle()
            && self.progress.iter().all(|p| {
                p.match_index == last
                    && p.state == ProgressState::Replicate
                    && p.inflight.is_empty()
                    && p.snapshot.is_none()
            })
    }

    /// A follower hears `Quiet` from `from`: go quiet if it is the leader we follow in this
    /// term and our log ends where its commit does (then our log is its log: every entry was
    /// acknowledged to it in this term).
    pub(super) fn handle_quiet(&mut self, from: NodeId, m: &Quiet, store: &mut impl Storage) {
        if from != self.leader
            || m.term != self.term
            || self.last_index != m.commit
            || self.last_term != self.term
            || self.receiving.is_some()
            || !self.reads.idle()
        {
            return;
        }
        if m.commit > self.commit {
            self.advance_commit(m.commit);
        }
        self.quiesce.quiet = true;
        self.save_quiet_commit(store);
    }

    fn save_quiet_commit(&mut self, store: &mut impl Storage) {
        if self.commit > self.hs_saved.commit {
            // Refused (a full medium): the hint is saved with the next hard state instead.
            let _ = self.write_hard_state(store);
        }
    }
}
