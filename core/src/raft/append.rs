//! The follower's side of replication: accepting a leader and writing what its `Append`
//! carries.

use super::{Raft, RaftError};
use crate::entry::EntryIter;
use crate::membership::Membership;
use crate::message::{Append, AppendResp};
use crate::storage::Storage;
use crate::types::{EntryKind, LogIndex, NodeId, Role, Term};

impl Raft {
    /// `from` leads our term: follow it, and hold off elections.
    pub(super) fn accept_leader(&mut self, from: NodeId) {
        if self.role != Role::Follower && self.role != Role::Observer {
            self.become_follower(self.term, from);
        }
        self.set_leader(from);
        self.last_leader_contact_ms = self.now_ms;
        self.reset_election_timer();
    }

    pub(super) fn handle_append(
        &mut self,
        from: NodeId,
        m: &Append,
        tail: &[u8],
        store: &mut impl Storage,
    ) -> Result<(), RaftError> {
        if m.prev_index > self.last_index {
            self.reject_append(from, m, 0, self.last_index + 1);
            return Ok(());
        }
        if m.prev_index > self.snapshot_index {
            let t = store.term(m.prev_index)?;
            if t != m.prev_term {
                let first = self.first_index_of_term(t, m.prev_index, store);
                self.reject_append(from, m, t, first);
                return Ok(());
            }
        }
        // The log matches at prev_index. Walk the new entries: skip those we hold, cut at the
        // first conflict, append the rest. Payloads go from the frame to storage untouched.
        let mut truncated = false;
        for item in EntryIter::new(tail, m.count) {
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
                self.cut_log(e.index, store)?;
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
        let matched = m.prev_index + u64::from(m.count);
        let new_commit = m.commit.min(matched);
        if new_commit > self.commit {
            self.commit = new_commit;
            self.prune_configs();
        }
        let ack = AppendResp {
            term: self.term,
            success: true,
            match_index: matched,
            conflict_term: 0,
            conflict_index: 0,
            read_seq: m.read_seq,
        };
        self.respond(from, ack);
        Ok(())
    }

    /// Cut the log's tail from `from` on (a conflicting suffix).
    fn cut_log(&mut self, from: LogIndex, store: &mut impl Storage) -> Result<(), RaftError> {
        store.truncate_suffix(from)?;
        self.last_index = from - 1;
        self.last_term = store.term(self.last_index)?;
        self.persisted_index = self.persisted_index.min(self.last_index);
        self.log_epoch = self.log_epoch.wrapping_add(1);
        self.truncate_configs(from);
        Ok(())
    }

    fn reject_append(&mut self, from: NodeId, m: &Append, term: Term, index: LogIndex) {
        let refusal = AppendResp {
            term: self.term,
            success: false,
            match_index: 0,
            conflict_term: term,
            conflict_index: index,
            read_seq: m.read_seq,
        };
        self.respond(from, refusal);
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
}
