//! Elections: the election timer, PreVote, votes, campaigns and the role changes they cause.

use super::Raft;
use crate::message::{Message, PreVote, Vote, VoteResp};
use crate::plant::Plant;
use crate::raft::progress::Progress;
use crate::types::{LogIndex, NodeId, Role, Term, NO_NODE};

impl<P: Plant> Raft<P> {
    /// A follower's (or candidate's) tick: campaign when the election timer ran out, and give
    /// up on a forwarded read the leader never answered.
    pub(super) fn tick_follower(&mut self) {
        if self.now_ms >= self.election_deadline_ms {
            if self.promotable() {
                self.campaign(self.cfg.pre_vote, false);
            } else {
                self.reset_election_timer();
            }
        }
        self.expire_forwarded_read();
    }

    /// Whether this node may campaign: a voter of its latest configuration, or of one that
    /// configuration has not yet superseded for good. A node that appended a configuration
    /// leaving it out is still needed until that configuration commits (Raft thesis §4.2.2):
    /// its log may hold the only copy a quorum of the configuration before can elect — it
    /// holds the newer entry, so it refuses to vote for the others — and if it did not
    /// campaign, no one could be elected. Elected, it leads until the configuration commits,
    /// then steps down (`maybe_commit`).
    pub(super) fn promotable(&self) -> bool {
        if self.membership.is_voter(self.id) {
            return true;
        }
        if self.membership_index <= self.commit {
            return false;
        }
        let committed = self
            .configs
            .iter()
            .rposition(|(i, _)| *i <= self.commit)
            .unwrap_or(0);
        self.configs[committed..]
            .iter()
            .any(|(_, m)| m.is_voter(self.id))
    }

    /// Whether this node promised a leader (or, after a restart, may have promised one) not to
    /// help elect anyone else yet. Start-up counts as leader contact: a crash must not shorten
    /// the promise a lease relies on.
    pub(super) fn in_leader_lease(&self) -> bool {
        self.role == Role::Leader
            || self.now_ms < self.last_leader_contact_ms + self.cfg.election_timeout_ms
    }

    /// Whether a candidate's log is at least as up to date as ours (Raft §5.4.1).
    fn log_ok(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term || (last_term == self.last_term && last_index >= self.last_index)
    }

    pub(super) fn reset_election_timer(&mut self) {
        let base = self.cfg.election_timeout_ms;
        self.election_deadline_ms = self.now_ms + self.rng.range(base, 2 * base);
    }

    /// Answer a pre-vote. Whether this node is a voter does not matter, as for a vote: a
    /// node added as a voter may not have the entry that says so yet, and the candidate, whose
    /// configuration has it, needs its answer (only a candidate's own voters are counted).
    pub(super) fn answer_pre_vote(&mut self, from: NodeId, m: &PreVote) {
        let granted =
            m.term > self.term && self.log_ok(m.last_index, m.last_term) && !self.in_leader_lease();
        let answer = VoteResp {
            term: if granted { m.term } else { self.term },
            granted,
        };
        self.send(from, Message::PreVoteResp(answer));
    }

    /// Answer a vote request of our term (the term check already ran).
    pub(super) fn answer_vote(&mut self, from: NodeId, m: &Vote) {
        let can_vote = self.vote == NO_NODE || self.vote == from;
        let granted =
            can_vote && self.log_ok(m.last_index, m.last_term) && self.role != Role::Leader;
        if granted {
            self.vote = from;
            self.reset_election_timer();
        }
        let answer = VoteResp {
            term: m.term,
            granted,
        };
        // A grant leaves only once the vote is durable.
        self.respond(from, Message::VoteResp(answer));
    }

    pub(super) fn campaign(&mut self, pre: bool, transfer: bool) {
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
            self.enter_term(self.term + 1);
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
            let (last_index, last_term) = (self.last_index, self.last_term);
            let msg = if pre {
                Message::PreVote(PreVote {
                    term,
                    last_index,
                    last_term,
                })
            } else {
                Message::Vote(Vote {
                    term,
                    last_index,
                    last_term,
                    transfer,
                })
            };
            // A vote request may only leave once our own term and vote are durable.
            self.respond(id, msg);
        }
    }

    pub(super) fn record_vote(&mut self, from: NodeId, granted: bool, pre: bool) {
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

    pub(super) fn set_leader(&mut self, leader: NodeId) {
        if leader != self.leader {
            if leader != NO_NODE {
                self.stats.leader_changes += 1;
            }
            self.leader = leader;
            // Forwarded reads were addressed to the old leader.
            self.fail_forwarded_reads();
        }
    }

    pub(super) fn become_follower(&mut self, term: Term, leader: NodeId) {
        let was_leader = self.role == Role::Leader;
        #[cfg(feature = "quiesce")]
        self.quiesce_reset();
        if term > self.term {
            self.enter_term(term);
        }
        self.set_leader(leader);
        self.refresh_role_force();
        self.progress.clear();
        self.transfer = None;
        self.reads.lease_until_ms = 0;
        if was_leader {
            self.fail_all_rounds();
        }
        self.reset_election_timer();
    }

    pub(super) fn become_leader(&mut self) {
        info!("node {} is leader of term {}", self.id, self.term);
        #[cfg(feature = "quiesce")]
        self.quiesce_reset();
        self.role = Role::Leader;
        self.set_leader(self.id);
        self.stats.became_leader += 1;
        self.progress.clear();
        for id in self.membership.all() {
            if id != self.id {
                let _ = self.progress.push(Progress::new(id, self.last_index));
            }
        }
        self.reads.read_seq = 0;
        self.reads.lease_until_ms = 0;
        self.reads.quorum_heard_ms = None;
        self.transfer = None;
        self.quorum_check_due_ms = self.now_ms + self.cfg.election_timeout_ms;
        self.heartbeat_due_ms = self.now_ms;
        self.replicate_pending = true;
        // The no-op lets this leader commit entries of earlier terms (Raft §5.4.2).
        self.term_start_index = self.last_index + 1;
        self.pending_noop = true;
    }

    /// A follower or observer takes the role its membership gives it.
    pub(super) fn refresh_role(&mut self) {
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

    /// CheckQuorum: every election timeout the leader checks it heard from a quorum since the
    /// last check, else steps down. Returns whether it still leads.
    pub(super) fn check_quorum(&mut self) -> bool {
        if !self.cfg.check_quorum || self.now_ms < self.quorum_check_due_ms {
            return true;
        }
        let id = self.id;
        let active = {
            let progress = &self.progress;
            self.membership
                .has_quorum(|n| n == id || progress.iter().any(|p| p.id == n && p.recent_active))
        };
        for p in self.progress.iter_mut() {
            p.recent_active = false;
        }
        self.quorum_check_due_ms = self.now_ms + self.cfg.election_timeout_ms;
        if !active {
            info!(
                "leader {} lost contact with a quorum; stepping down",
                self.id
            );
            self.become_follower(self.term, NO_NODE);
        }
        active
    }
}
