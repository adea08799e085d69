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
use crate::entry::{self, EntryRef};
use crate::membership::Membership;
use crate::message::{Append, AppendResp};
use crate::plant::Plant;
use crate::storage::Storage;
use crate::types::{EntryKind, LogIndex, NodeId, Role, Term};

/// Entries of a checked tail kept decoded for the write that follows, so the usual append is
/// decoded once: on a server, as many as a typical batch; on a board, a few (stack is scarce).
#[cfg(target_pointer_width = "64")]
const KEPT_ENTRIES: usize = 64;
#[cfg(not(target_pointer_width = "64"))]
const KEPT_ENTRIES: usize = 8;

/// An `Append`'s tail that [`check_tail`] found sound, with its first entries kept decoded.
pub(super) struct CheckedTail<'a> {
    tail: &'a [u8],
    count: u32,
    kept: heapless::Vec<EntryRef<'a>, KEPT_ENTRIES>,
    /// Where the entries after the kept ones start in `tail`.
    kept_end: usize,
}

impl<'a> CheckedTail<'a> {
    /// The entries from position `from` on (position 0 is `prev_index + 1`). Entries past
    /// the kept ones are decoded again; they are known to decode.
    fn entries_from(&self, from: usize) -> impl Iterator<Item = EntryRef<'a>> + '_ {
        let kept = self.kept.get(from..).unwrap_or(&[]).iter().copied();
        kept.chain(self.decoded_from(from))
    }

    /// The entries past the kept ones, from position `from` on, decoded again.
    fn decoded_from(&self, from: usize) -> impl Iterator<Item = EntryRef<'a>> {
        let decoded = self.count as usize - self.kept.len();
        entry::EntryIter::new(&self.tail[self.kept_end..], decoded as u32)
            .map_while(Result::ok)
            .skip(from.saturating_sub(self.kept.len()))
    }
}

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
    /// Append the entries from position `from` of the tail on (0 is `prev_index + 1`), after
    /// cutting our log from there if `cut`.
    Write { from: usize, cut: bool },
}

/// Check an `Append`'s tail on its own: exactly `count` entries that decode, indexes
/// `prev_index + 1, + 2, ...`, terms between `prev_term` and the message's term that never
/// go down, no entry larger than `max_entry_bytes`, and configuration entries that decode.
pub(super) fn check_tail<'a>(
    m: &Append,
    tail: &'a [u8],
    max_entry_bytes: usize,
) -> Result<CheckedTail<'a>, RaftError> {
    let mut checked = CheckedTail {
        tail,
        count: m.count,
        kept: heapless::Vec::new(),
        kept_end: 0,
    };
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
        if checked.kept.push(e).is_ok() {
            checked.kept_end = at;
        }
    }
    if at != tail.len() {
        return Err(RaftError::EntryCount { declared: m.count });
    }
    Ok(checked)
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

    /// Compare a checked `Append` with our log, writing nothing.
    pub(super) fn plan_append(
        &self,
        m: &Append,
        tail: &CheckedTail<'_>,
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
        for (from, e) in tail.entries_from(0).enumerate() {
            if e.index > self.last_index {
                return Ok(AppendPlan::Write { from, cut: false });
            }
            if e.index > self.snapshot_index
                && store.term(e.index)? != e.term
                && !self.plant.skip_truncate()
            {
                if e.index <= self.commit {
                    return Err(RaftError::CommittedTruncation(e.index));
                }
                return Ok(AppendPlan::Write { from, cut: true });
            }
        }
        Ok(AppendPlan::Held)
    }

    /// Carry out a planned `Append`: cut, append, advance the commit index, answer.
    pub(super) fn handle_append(
        &mut self,
        from: NodeId,
        m: &Append,
        plan: AppendPlan,
        tail: &CheckedTail<'_>,
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
        if let AppendPlan::Write { from, cut } = plan {
            if cut {
                self.cut_log(m.prev_index + 1 + from as u64, store)?;
            }
            // Payloads go from the frame to storage untouched: first the entries kept
            // decoded, then the rest, decoded again.
            for e in tail.kept.get(from..).unwrap_or(&[]) {
                self.append_entry(e, store)?;
            }
            for e in tail.decoded_from(from) {
                self.append_entry(&e, store)?;
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
            echo_ms: m.clock_ms,
            clock_ms: self.clock_stamp(),
        };
        self.respond(from, ack);
        Ok(())
    }

    /// Append one entry of a leader's to our log.
    fn append_entry(
        &mut self,
        e: &EntryRef<'_>,
        store: &mut impl Storage,
    ) -> Result<(), RaftError> {
        store.append(e)?;
        self.last_index = e.index;
        self.last_term = e.term;
        if e.kind == EntryKind::Config {
            if let Ok(m) = postcard::from_bytes::<Membership>(e.data) {
                self.add_config(e.index, m);
                self.on_config_changed();
            }
        }
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
            echo_ms: m.clock_ms,
            clock_ms: self.clock_stamp(),
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
