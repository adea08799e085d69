//! The invariants of one group's state, asserted where it changes, in every build.
//!
//! The log's markers stay in order (snapshot ≤ applied ≤ commit ≤ last, persisted ≤ last),
//! the term and the commit index never go back, a leader knows itself as leader, and its view
//! of each peer is consistent (match < next ≤ last + 1). The checks are a few comparisons,
//! made at the end of every call that changes state, so a bug shows where it happens rather
//! than as a wrong answer much later.

use super::Raft;
use crate::plant::Plant;
use crate::types::{LogIndex, Role, Term, NO_NODE};

impl<P: Plant> Raft<P> {
    /// Check every invariant of the group's state (see the module docs).
    pub(super) fn assert_invariants(&self) {
        // The log's markers in order: snapshot <= applied <= commit <= last, persisted <= last.
        in_order(self.snapshot_index, "snapshot", self.applied, "applied");
        in_order(self.applied, "applied", self.commit, "commit");
        in_order(self.commit, "commit", self.last_index, "last");
        in_order(self.persisted_index, "persisted", self.last_index, "last");
        invariant!(
            self.hs_saved.term <= self.term,
            "the saved term {} is newer than the term {}",
            self.hs_saved.term,
            self.term
        );
        if self.role == Role::Leader {
            self.assert_leader_invariants();
        }
    }

    fn assert_leader_invariants(&self) {
        invariant!(
            self.leader == self.id,
            "leader {} knows {} as leader",
            self.id,
            self.leader
        );
        for p in self.progress.iter() {
            invariant!(
                p.id != self.id,
                "leader {} tracks itself as a peer",
                self.id
            );
            invariant!(
                p.match_index < p.next_index && p.next_index <= self.last_index + 1,
                "peer {}: match {} next {} with last index {}",
                p.id,
                p.match_index,
                p.next_index,
                self.last_index
            );
            invariant!(
                p.inflight.len() <= self.cfg.max_inflight,
                "peer {}: {} appends in flight",
                p.id,
                p.inflight.len()
            );
        }
    }

    /// Raise the commit index to `to`: never lowered, never past the log.
    pub(super) fn advance_commit(&mut self, to: LogIndex) {
        moves_forward("commit", self.commit, to, "last index", self.last_index);
        self.commit = to;
        self.prune_configs();
    }

    /// Enter the newer `term`, with no vote cast in it yet.
    pub(super) fn enter_term(&mut self, term: Term) {
        invariant!(
            term > self.term,
            "term moved from {} to {}",
            self.term,
            term
        );
        self.term = term;
        self.vote = NO_NODE;
    }
}

/// Log marker `lo` (named `lo_name`) is not past marker `hi`.
fn in_order(lo: LogIndex, lo_name: &str, hi: LogIndex, hi_name: &str) {
    invariant!(
        lo <= hi,
        "{} {} is past the {} index {}",
        lo_name,
        lo,
        hi_name,
        hi
    );
}

/// Log marker `what` moves from `from` to `to`: never back, never past `limit` (named
/// `limit_name`).
pub(super) fn moves_forward(
    what: &str,
    from: LogIndex,
    to: LogIndex,
    limit_name: &str,
    limit: LogIndex,
) {
    invariant!(
        to >= from && to <= limit,
        "{} moved from {} to {} with {} {}",
        what,
        from,
        to,
        limit_name,
        limit
    );
}
