//! Linearizable reads: ReadIndex rounds on the leader, reads a follower forwards to it, and
//! the leader lease. Their state is [`Reads`]; the decisions that need the rest of the group's
//! state (role, term, commit, quorum) are methods of [`Raft`].

use super::clock::ClockVerdict;
use super::{Envelope, Raft};
use crate::limits::{MAX_READ_ROUNDS, MAX_REMOTE_READS};
use crate::message::{ReadIndex, ReadIndexResp};
use crate::plant::Plant;
use crate::types::{LogIndex, NodeId, Role, NO_NODE};
use heapless::{Deque, Vec};

use super::error::ReadError;

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

/// Recent read-sequence send times, for the lease.
const SEQ_TIMES: usize = 16;
/// Read events waiting to be taken.
const READ_EVENT_CAPACITY: usize = 16;

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

/// The state of reads and of the lease.
pub(super) struct Reads {
    /// The newest read round this leader broadcast (every heartbeat is one).
    pub(super) read_seq: u64,
    /// When each recent round went out, by sequence: a quorum's echo extends the lease from
    /// there.
    seq_times: [(u64, u64); SEQ_TIMES],
    /// Rounds in flight, oldest first; the last may still be open (not yet broadcast).
    rounds: Deque<ReadRound, { MAX_READ_ROUNDS + 1 }>,
    /// Followers' forwarded requests waiting for a round.
    remote_reads: Vec<RemoteRead, MAX_REMOTE_READS>,
    next_ticket: u64,
    events: Deque<ReadEvent, READ_EVENT_CAPACITY>,
    /// A follower's highest ticket not yet forwarded, and the one forwarded and unanswered.
    fwd_pending_upto: u64,
    fwd_sent_upto: u64,
    fwd_sent_at_ms: u64,
    pub(super) lease_until_ms: u64,
    /// A term whose lease is void (a `TimeoutNow` went out in it).
    pub(super) lease_void_term: u64,
    /// When the newest round a quorum echoed went out (the lease's base, void or not): a
    /// leader heard by a quorum since then (see [`Raft::health`]).
    pub(super) quorum_heard_ms: Option<u64>,
}

impl Reads {
    pub(super) fn new() -> Self {
        Reads {
            read_seq: 0,
            seq_times: [(0, 0); SEQ_TIMES],
            rounds: Deque::new(),
            remote_reads: Vec::new(),
            next_ticket: 1,
            events: Deque::new(),
            fwd_pending_upto: 0,
            fwd_sent_upto: 0,
            fwd_sent_at_ms: 0,
            lease_until_ms: 0,
            lease_void_term: 0,
            quorum_heard_ms: None,
        }
    }

    /// No read round, forwarded read or follower's request under way.
    #[cfg(feature = "quiesce")]
    pub(super) fn idle(&self) -> bool {
        self.rounds.is_empty()
            && self.remote_reads.is_empty()
            && self.fwd_sent_upto == 0
            && self.fwd_pending_upto == 0
    }

    fn push_event(&mut self, ev: ReadEvent) {
        if self.events.is_full() {
            // Merge with the newest event: waiting for a higher index, or failing a read that
            // could have succeeded, are both safe; the client retries a failed read.
            let last = self.events.back_mut().expect("full deque has a back");
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
        let _ = self.events.push_back(ev);
    }

    /// Fail every forwarded ticket (the leader they went to is gone or silent).
    fn fail_forwarded(&mut self) {
        if self.fwd_sent_upto != 0 || self.fwd_pending_upto != 0 {
            let upto = self.fwd_pending_upto.max(self.fwd_sent_upto);
            self.push_event(ReadEvent::Failed { upto });
            self.fwd_sent_upto = 0;
            self.fwd_pending_upto = 0;
        }
    }
}

impl<P: Plant> Raft<P> {
    /// Start a linearizable read by ReadIndex. Returns a ticket; a [`ReadEvent`] later says when
    /// (at which applied index) every ticket up to it may be served. On a follower the read
    /// index is asked of the leader.
    pub fn read_index(&mut self, now_ms: u64) -> Result<u64, ReadError> {
        self.advance_clock(now_ms);
        #[cfg(feature = "quiesce")]
        self.wake_if_quiet();
        match self.role {
            Role::Leader => {
                if self.transfer.is_some() {
                    return Err(ReadError::Busy);
                }
                let ticket = self.reads.next_ticket;
                self.open_round(ticket, None)?;
                self.reads.next_ticket += 1;
                Ok(ticket)
            }
            _ => {
                if self.leader == NO_NODE {
                    return Err(ReadError::NoLeader);
                }
                let ticket = self.reads.next_ticket;
                self.reads.next_ticket += 1;
                self.reads.fwd_pending_upto = ticket;
                if self.reads.fwd_sent_upto == 0 {
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
        // Planted bug: the lease's end is never compared with the clock.
        let now_ms = if self.plant.lease_ignores_clock() {
            0
        } else {
            now_ms
        };
        if self.lease_valid(now_ms) {
            Ok(self.commit.max(self.term_start_index))
        } else {
            Err(ReadError::LeaseExpired)
        }
    }

    /// Whether this leader's lease holds at `now_ms` (never while the group is quiet).
    pub fn lease_valid(&self, now_ms: u64) -> bool {
        #[cfg(feature = "quiesce")]
        if self.quiesce.quiet {
            return false;
        }
        self.role == Role::Leader
            && self.transfer.is_none()
            && self.reads.lease_void_term != self.term
            && self.commit >= self.term_start_index
            && now_ms < self.reads.lease_until_ms
    }

    /// Take the next read outcome.
    pub fn pop_read_event(&mut self) -> Option<ReadEvent> {
        self.reads.events.pop_front()
    }

    /// Whether the open read round may be broadcast now: unless `max_read_rounds` are already
    /// in flight, it goes out; else it waits (collecting reads) until one is confirmed.
    pub(super) fn read_round_may_go(&self) -> bool {
        let rounds = &self.reads.rounds;
        let in_flight = rounds.iter().filter(|r| r.seq != 0).count();
        rounds.iter().any(|r| r.seq == 0) && in_flight < self.cfg.max_read_rounds
    }

    /// A follower asks for a read index.
    pub(super) fn handle_read_index(&mut self, from: NodeId, m: &ReadIndex) {
        if self.transfer.is_some() || self.open_round(0, Some((from, m.id))).is_err() {
            self.refuse_read_index(from, m.id);
        }
    }

    pub(super) fn refuse_read_index(&mut self, to: NodeId, id: u64) {
        let refusal = ReadIndexResp {
            term: self.term,
            id,
            index: None,
        };
        self.send(to, refusal);
    }

    /// Start a new read round sequence number and remember when it went out (for the lease).
    pub(super) fn bump_read_seq(&mut self) -> u64 {
        let r = &mut self.reads;
        r.read_seq += 1;
        let seq = r.read_seq;
        r.seq_times[(seq as usize) % SEQ_TIMES] = (seq, self.now_ms);
        for round in r.rounds.iter_mut() {
            if round.seq == 0 {
                round.seq = seq;
            }
        }
        for rr in r.remote_reads.iter_mut() {
            if rr.seq == 0 {
                rr.seq = seq;
            }
        }
        seq
    }

    /// Attach a local ticket (or a follower's request) to the round that will go out next.
    fn open_round(&mut self, ticket: u64, remote: Option<(NodeId, u64)>) -> Result<(), ReadError> {
        let index = self.commit.max(self.term_start_index);
        if self.plant.read_without_quorum() {
            // Planted bug: answer at once from local state without confirming leadership.
            match remote {
                None => self.reads.push_event(ReadEvent::Ready {
                    upto: ticket,
                    index: self.commit,
                }),
                Some((from, id)) => {
                    let answer = ReadIndexResp {
                        term: self.term,
                        id,
                        index: Some(self.commit),
                    };
                    self.send(from, answer);
                }
            }
            return Ok(());
        }
        let reads = &mut self.reads;
        let open = matches!(reads.rounds.back(), Some(r) if r.seq == 0);
        if !open {
            // Up to `max_read_rounds` in flight plus one waiting to go out.
            if reads.rounds.len() > self.cfg.max_read_rounds {
                return Err(ReadError::Busy);
            }
            let _ = reads.rounds.push_back(ReadRound {
                seq: 0,
                index,
                ticket_upto: 0,
            });
        }
        if let Some((from, id)) = remote {
            if reads
                .remote_reads
                .push(RemoteRead { from, id, seq: 0 })
                .is_err()
            {
                return Err(ReadError::Busy);
            }
        }
        let r = reads.rounds.back_mut().expect("a round was just ensured");
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
    pub(super) fn confirm_reads(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let acked = self.quorum_value(self.reads.read_seq, |p| p.read_seq_acked);
        if acked == 0 {
            return;
        }
        let (seq, sent) = self.reads.seq_times[(acked as usize) % SEQ_TIMES];
        if seq == acked {
            self.reads.quorum_heard_ms = self.reads.quorum_heard_ms.max(Some(sent));
        }
        self.extend_lease();
        // Reads wait until this leader has committed an entry of its own term.
        if self.commit < self.term_start_index {
            return;
        }
        while let Some(r) = self.reads.rounds.front().copied() {
            if r.seq == 0 || r.seq > acked {
                break;
            }
            self.reads.rounds.pop_front();
            if r.ticket_upto != 0 {
                self.reads.push_event(ReadEvent::Ready {
                    upto: r.ticket_upto,
                    index: r.index,
                });
            }
            self.answer_remote_reads(r.seq, r.index);
        }
    }

    /// Extend the lease from the newest round a quorum echoed, counting only the peers whose
    /// clocks the clock check found to agree with this leader's: their promise not to vote for
    /// anyone else lasts as long on the leader's clock as the lease does (see `clock.rs`).
    fn extend_lease(&mut self) {
        let acked = self.quorum_value(self.reads.read_seq, |p| {
            if p.clock.verdict() == ClockVerdict::Agree {
                p.read_seq_acked
            } else {
                0
            }
        });
        if acked == 0 {
            return;
        }
        let (seq, sent) = self.reads.seq_times[(acked as usize) % SEQ_TIMES];
        if seq == acked && self.reads.lease_void_term != self.term {
            let until = sent + self.cfg.election_timeout_ms - self.cfg.lease_drift_margin_ms;
            self.reads.lease_until_ms = self.reads.lease_until_ms.max(until);
        }
    }

    /// Answer every forwarded request that joined a round up to `seq`, confirmed at `index`.
    fn answer_remote_reads(&mut self, seq: u64, index: LogIndex) {
        let mut i = 0;
        while i < self.reads.remote_reads.len() {
            let rr = self.reads.remote_reads[i];
            if rr.seq != 0 && rr.seq <= seq {
                self.reads.remote_reads.swap_remove(i);
                let answer = ReadIndexResp {
                    term: self.term,
                    id: rr.id,
                    index: Some(index),
                };
                self.outbox_push(Envelope::new(rr.from, answer));
            } else {
                i += 1;
            }
        }
    }

    /// Leadership is lost or in transfer: every round in flight fails.
    pub(super) fn fail_all_rounds(&mut self) {
        let mut upto = 0;
        while let Some(r) = self.reads.rounds.pop_front() {
            upto = upto.max(r.ticket_upto);
        }
        if upto != 0 {
            self.reads.push_event(ReadEvent::Failed { upto });
        }
        for rr in core::mem::take(&mut self.reads.remote_reads) {
            self.refuse_read_index(rr.from, rr.id);
        }
    }

    fn send_forwarded_read(&mut self) {
        let id = self.reads.fwd_pending_upto;
        self.reads.fwd_sent_upto = id;
        self.reads.fwd_sent_at_ms = self.now_ms;
        let ask = ReadIndex {
            term: self.term,
            id,
        };
        self.send(self.leader, ask);
    }

    pub(super) fn fail_forwarded_reads(&mut self) {
        self.reads.fail_forwarded();
    }

    /// A forwarded read the leader has not answered within an election timeout fails.
    pub(super) fn expire_forwarded_read(&mut self) {
        let r = &self.reads;
        if r.fwd_sent_upto != 0 && self.now_ms >= r.fwd_sent_at_ms + self.cfg.election_timeout_ms {
            self.reads.fail_forwarded();
        }
    }

    pub(super) fn handle_read_index_resp(&mut self, id: u64, index: Option<LogIndex>) {
        let r = &mut self.reads;
        if r.fwd_sent_upto == 0 || id != r.fwd_sent_upto {
            return;
        }
        match index {
            Some(index) => r.push_event(ReadEvent::Ready { upto: id, index }),
            None => r.push_event(ReadEvent::Failed { upto: id }),
        }
        r.fwd_sent_upto = 0;
        if r.fwd_pending_upto > id {
            self.send_forwarded_read();
        } else {
            self.reads.fwd_pending_upto = 0;
        }
    }
}
