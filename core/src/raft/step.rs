//! The inputs of a group: a peer's message ([`Raft::step`]), the passing of time
//! ([`Raft::tick`]) and the end of a batch ([`Raft::flush`]).
//!
//! `step` checks the message's term once, here, and then hands it to the handler of the role
//! this node plays: a leader, a candidate (pre-vote or vote) or a follower (or observer).

use super::append::{check_tail, AppendPlan, CheckedTail};
use super::{Raft, RaftError, StepOutcome, MAX_CONFIG_BYTES};
use crate::message::{AppendResp, Message, VoteResp};
use crate::plant::Plant;
use crate::storage::Storage;
use crate::types::{NodeId, Role, Term, NO_NODE};

/// A configuration entry is accepted whatever `max_bytes_per_message` says: a group must be
/// able to change its membership.
const MAX_CONFIG_ENTRY_BYTES: usize = MAX_CONFIG_BYTES + crate::entry::MAX_HEADER_BYTES;

impl<P: Plant> Raft<P> {
    /// Handle a message from `from`. `tail` holds an `Append`'s entries or a `Snapshot` chunk.
    pub fn step(
        &mut self,
        now_ms: u64,
        from: NodeId,
        msg: &Message,
        tail: &[u8],
        store: &mut impl Storage,
    ) -> Result<StepOutcome, RaftError> {
        self.advance_clock(now_ms);
        let outcome = self.step_message(from, msg, tail, store)?;
        self.finish_call(store)?;
        Ok(outcome)
    }

    /// Advance time: elections, heartbeats, CheckQuorum, retries.
    pub fn tick(&mut self, now_ms: u64, store: &mut impl Storage) -> Result<(), RaftError> {
        self.advance_clock(now_ms);
        #[cfg(feature = "quiesce")]
        if self.quiesce.quiet {
            return self.finish_call(store);
        }
        match self.role {
            Role::Leader => self.tick_leader(store),
            Role::Follower | Role::PreCandidate | Role::Candidate => self.tick_follower(),
            // An observer campaigns only while a configuration that leaves it out is not
            // committed yet (see `promotable`).
            Role::Observer if self.promotable() => self.tick_follower(),
            Role::Observer => {}
        }
        self.finish_call(store)
    }

    /// Send what batched calls left pending: appends for new entries and read rounds.
    pub fn flush(&mut self, now_ms: u64, store: &mut impl Storage) -> Result<(), RaftError> {
        self.advance_clock(now_ms);
        if self.role == Role::Leader {
            self.flush_leader(store);
        }
        self.finish_call(store)
    }

    fn step_message(
        &mut self,
        from: NodeId,
        msg: &Message,
        tail: &[u8],
        store: &mut impl Storage,
    ) -> Stepped {
        // A peer's message is checked whole before it changes anything: a refused one leaves
        // this node exactly as it was.
        let append = self.admit(msg, tail, store)?;
        #[cfg(feature = "quiesce")]
        self.wake_for(from, msg);
        if let Message::PreVote(m) = msg {
            // Answered from our state as it is: a pre-vote never changes anyone's term.
            self.answer_pre_vote(from, m);
            return Ok(StepOutcome::Done);
        }
        if !self.check_term(from, msg) {
            return Ok(StepOutcome::Done);
        }
        if let Message::Vote(m) = msg {
            self.answer_vote(from, m);
            return Ok(StepOutcome::Done);
        }
        let m = Inbound {
            from,
            msg,
            tail,
            append: append.as_ref(),
        };
        match self.role {
            Role::Leader => self.step_leader(m, store),
            Role::PreCandidate | Role::Candidate => self.step_candidate(m, store),
            Role::Follower | Role::Observer => self.step_follower(m, store),
        }
    }

    /// Check what can be checked before acting on a message of our term or newer: an `Append`
    /// whole (its tail, and against our log, planned without writing), a snapshot chunk's
    /// header, size and, on its last chunk, checksum; and that no one else leads our term.
    fn admit<'t>(
        &self,
        msg: &Message,
        tail: &'t [u8],
        store: &impl Storage,
    ) -> Result<Option<Admitted<'t>>, RaftError> {
        match msg {
            Message::Append(a) if a.term >= self.term => {
                self.check_rival(a.term)?;
                let max_entry_bytes = self.cfg.max_bytes_per_message.max(MAX_CONFIG_ENTRY_BYTES);
                let tail = check_tail(a, tail, max_entry_bytes)?;
                let plan = self.plan_append(a, &tail, store)?;
                Ok(Some(Admitted { plan, tail }))
            }
            Message::Snapshot(s) if s.term >= self.term => {
                self.check_rival(s.term)?;
                self.check_chunk(s, tail)?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// A leader hears of another leader of its own term: one of the two is not what it says.
    fn check_rival(&self, term: Term) -> Result<(), RaftError> {
        if self.role == Role::Leader && term == self.term {
            return Err(RaftError::RivalLeader(term));
        }
        Ok(())
    }

    /// The one term check of every message: a newer term makes this node a follower of it, an
    /// older one is answered with a refusal that tells the sender. Returns whether the message
    /// is still to be handled.
    fn check_term(&mut self, from: NodeId, msg: &Message) -> bool {
        let term = msg.term();
        match msg {
            // Leader stickiness: a node that hears from a live leader ignores disruptive
            // candidates. This is what keeps leader leases safe.
            Message::Vote(v) if term > self.term && !v.transfer && self.in_leader_lease() => {
                return false;
            }
            // A granted pre-vote echoes the term asked about, which this node has not entered.
            Message::PreVoteResp(r) if r.granted => return true,
            _ => {}
        }
        if term > self.term {
            let leader = match msg {
                Message::Append(_) | Message::Snapshot(_) | Message::TimeoutNow(_) => from,
                _ => NO_NODE,
            };
            self.become_follower(term, leader);
        } else if term < self.term {
            self.answer_stale(from, msg);
            return false;
        }
        true
    }

    /// A stale leader or candidate learns of the newer term from the refusal.
    fn answer_stale(&mut self, from: NodeId, msg: &Message) {
        match msg {
            Message::Append(_) | Message::Snapshot(_) => {
                let refusal = AppendResp {
                    term: self.term,
                    success: false,
                    match_index: 0,
                    conflict_term: 0,
                    conflict_index: 0,
                    read_seq: 0,
                    echo_ms: 0,
                    clock_ms: 0,
                };
                self.send(from, refusal);
            }
            Message::Vote(_) => {
                let refusal = VoteResp {
                    term: self.term,
                    granted: false,
                };
                self.send(from, Message::VoteResp(refusal));
            }
            _ => {}
        }
    }

    fn step_leader(&mut self, m: Inbound<'_>, store: &mut impl Storage) -> Stepped {
        match m.msg {
            Message::AppendResp(r) => self.handle_append_resp(m.from, r, store),
            Message::SnapshotResp(r) => self.handle_snapshot_resp(m.from, r, store),
            Message::ReadIndex(r) => self.handle_read_index(m.from, r),
            _ => {}
        }
        Ok(StepOutcome::Done)
    }

    fn step_candidate(&mut self, m: Inbound<'_>, store: &mut impl Storage) -> Stepped {
        match m.msg {
            Message::VoteResp(r) if self.role == Role::Candidate => {
                self.record_vote(m.from, r.granted, false)
            }
            Message::PreVoteResp(r) if self.role == Role::PreCandidate => {
                if r.term == self.term + 1 {
                    self.record_vote(m.from, r.granted, true);
                }
            }
            Message::VoteResp(_) | Message::PreVoteResp(_) => {}
            // A leader of this term exists (or a transfer asks us to campaign): as a follower.
            _ => return self.step_follower(m, store),
        }
        Ok(StepOutcome::Done)
    }

    fn step_follower(&mut self, m: Inbound<'_>, store: &mut impl Storage) -> Stepped {
        match m.msg {
            Message::Append(a) => {
                let admitted = m.append.expect("admit plans every Append of our term");
                self.accept_leader(m.from);
                self.handle_append(m.from, a, admitted.plan, &admitted.tail, store)?;
            }
            Message::Snapshot(s) => {
                self.accept_leader(m.from);
                return self.handle_snapshot(m.from, s, m.tail, store);
            }
            Message::TimeoutNow(_) => self.handle_timeout_now(),
            Message::ReadIndex(r) => self.refuse_read_index(m.from, r.id),
            Message::ReadIndexResp(r) => self.handle_read_index_resp(r.id, r.index),
            #[cfg(feature = "quiesce")]
            Message::Quiet(q) => self.handle_quiet(m.from, q, store),
            _ => {}
        }
        Ok(StepOutcome::Done)
    }
}

/// An `Append` admitted: its tail checked, and what it asks of our log.
struct Admitted<'t> {
    plan: AppendPlan,
    tail: CheckedTail<'t>,
}

/// What a role's handler gets: the message, who sent it, the frame's tail, and for an
/// `Append` what admitting it found.
#[derive(Clone, Copy)]
struct Inbound<'a> {
    from: NodeId,
    msg: &'a Message,
    tail: &'a [u8],
    append: Option<&'a Admitted<'a>>,
}

type Stepped = Result<StepOutcome, RaftError>;
