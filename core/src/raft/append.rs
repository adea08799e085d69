//! The follower's side of replication: accepting a leader and writing what its `Append`
//! carries.
//!
//! An `Append` is handled in three steps, and only the last one writes: [`check_tail`] checks
//! the whole tail without looking at our state (every entry decodes, the indexes run on from
//! `prev_index + 1`, the count is exact, terms are possible, configurations decode);
//! [`Raft::plan_append`] compares it with our log (does it match at `prev_index`, which
//! entries do we hold, where does it conflict, would that cut a committed entry); then
//! [`Raft::handle_append`] cuts and appends. A frame refused by the first two changes nothing.

use super::{Raft, RaftError};
use crate::entry;
use crate::membership::Membership;
use crate::message::{Append, AppendResp};
use crate::plant::Plant;
use crate::storage::Storage;
use crate::types::{EntryKind, LogIndex, NodeId, Role, Term};

/// What an `Append` asks of our log, decided before anything is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AppendPlan {
    /// Our log does not match at `prev_index`: refuse, telling the leader where to look.
    Reject {
        conflict_term: Term,
        conflict_index: LogIndex,
    },
    /// Our log matches and already holds every entry.
    Held,
    /// Append the entries from `index` on (at byte `at` of the tail), after cutting our log
    /// from `index` on if `cut`.
    Write {
        index: LogIndex,
        at: usize,
        cut: bool,
    },
}

/// Check an `Append`'s tail on its own: exactly `count` entries that decode, indexes
/// `prev_index + 1, + 2, ...`, terms between `prev_term` and the message's term that never
/// go down, no entry larger than `max_entry_bytes`, and configuration entries that decode.
pub(super) fn check_tail(m: &Append, tail: &[u8], max_entry_bytes: usize) -> Result<(), RaftError> {
    let mut expected = m.prev_index;
    let mut floor = m.prev_term;
    if m.prev_term > m.term {
        return Err(RaftError::ImpossibleTerm {
            index: m.prev_index,
            term: m.prev_term,
        });
    }
    let mut at = 0;
    for _ in 0..m.count {
        if at == tail.len() {
            return Err(RaftError::EntryCount { declared: m.count });
        }
        let (e, used) = entry::decode(&tail[at..]).map_err(|_| RaftError::MalformedEntries)?;
        expected = expected.checked_add(1).ok_or(RaftError::NotContiguous {
            expected,
            found: e.index,
        })?;
        if e.index != expected {
            return Err(RaftError::NotContiguous {
                expected,
                found: e.index,
            });
        }
        if e.term < floor || e.term > m.term {
            return Err(RaftError::ImpossibleTerm {
                index: e.index,
                term: e.term,
            });
        }
        if used > max_entry_bytes {
            return Err(RaftError::EntryTooLarge {
                index: e.index,
                bytes: used,
            });
        }
        if e.kind == EntryKind::Config && postcard::from_bytes::<Membership>(e.data).is_err() {
            return Err(RaftError::BadConfigEntry(e.index));
        }
        floor = e.term;
        at += used;
    }
    if at != tail.len() {
        return Err(RaftError::EntryCount { declared: m.count });
    }
    Ok(())
}

impl<P: Plant> Raft<P> {
    /// `from` leads our term: follow it, and hold off elections.
    pub(super) fn accept_leader(&mut self, from: NodeId) {
        if self.role != Role::Follower && self.role != Role::Observer {
            self.become_follower(self.term, from);
        }
        self.set_leader(from);
        self.last_leader_contact_ms = self.now_ms;
        self.reset_election_timer();
    }

    /// Compare a checked `Append` (see [`check_tail`]) with our log, writing nothing.
    pub(super) fn plan_append(
        &self,
        m: &Append,
        tail: &[u8],
        store: &impl Storage,
    ) -> Result<AppendPlan, RaftError> {
        if m.prev_index > self.last_index {
            return Ok(AppendPlan::Reject {
                conflict_term: 0,
                conflict_index: self.last_index + 1,
            });
        }
        if m.prev_index > self.snapshot_index {
            let t = store.term(m.prev_index)?;
            if t != m.prev_term {
                return Ok(AppendPlan::Reject {
                    conflict_term: t,
                    conflict_index: self.first_index_of_term(t, m.prev_index, store),
                });
            }
        }
        // The log matches at prev_index: skip the entries we hold, find the first we lack or
        // that conflicts with ours.
        let mut at = 0;
        for _ in 0..m.count {
            let (e, used) = entry::decode(&tail[at..]).map_err(|_| RaftError::MalformedEntries)?;
            if e.index > self.last_index {
                return Ok(AppendPlan::Write {
                    index: e.index,
                    at,
                    cut: false,
                });
            }
            if e.index > self.snapshot_index
                && store.term(e.index)? != e.term
                && !self.plant.skip_truncate()
            {
                if e.index <= self.commit {
                    return Err(RaftError::CommittedTruncation(e.index));
                }
                return Ok(AppendPlan::Write {
                    index: e.index,
                    at,
                    cut: true,
                });
            }
            at += used;
        }
        Ok(AppendPlan::Held)
    }

    /// Carry out a planned `Append`: cut, append, advance the commit index, answer.
    pub(super) fn handle_append(
        &mut self,
        from: NodeId,
        m: &Append,
        plan: AppendPlan,
        tail: &[u8],
        store: &mut impl Storage,
    ) -> Result<(), RaftError> {
        if let AppendPlan::Reject {
            conflict_term,
            conflict_index,
        } = plan
        {
            self.reject_append(from, m, conflict_term, conflict_index);
            return Ok(());
        }
        if let AppendPlan::Write { index, at, cut } = plan {
            if cut {
                self.cut_log(index, store)?;
            }
            // Payloads go from the frame to storage untouched.
            let count = m.count - (index - m.prev_index - 1) as u32;
            for item in entry::EntryIter::new(&tail[at..], count) {
                let e = item.map_err(|_| RaftError::MalformedEntries)?;
                store.append(&e)?;
                self.last_index = e.index;
                self.last_term = e.term;
                if e.kind == EntryKind::Config {
                    if let Ok(m) = postcard::from_bytes::<Membership>(e.data) {
                        self.add_config(e.index, m);
                        self.on_config_changed();
                    }
                }
            }
        }
        let matched = m.prev_index + u64::from(m.count);
        let new_commit = m.commit.min(matched);
        if new_commit > self.commit {
            self.advance_commit(new_commit);
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
