//! The leader's side of replication: proposals, the per-peer progress, sending appends and
//! heartbeats, the answers to them, and the commit index.

use super::clock::{ClockSample, ClockVerdict};
use super::{Envelope, ProposeError, Raft, RaftError, OUTBOX_HEADROOM};
use crate::entry::EntryRef;
use crate::limits::OUTBOX_CAPACITY;
use crate::membership::Membership;
use crate::message::{Append, AppendResp};
use crate::plant::Plant;
use crate::raft::progress::{Progress, ProgressState};
use crate::storage::{Storage, StorageError};
use crate::types::{EntryKind, LogIndex, NodeId, Role, Term, NO_NODE};

impl<P: Plant> Raft<P> {
    /// Propose a command: append it to the leader's log as entry `(index, term)`. It is sent to
    /// followers by the next [`Raft::flush`].
    pub fn propose(
        &mut self,
        now_ms: u64,
        command: &[u8],
        store: &mut impl Storage,
    ) -> Result<(LogIndex, Term), ProposeError> {
        self.advance_clock(now_ms);
        #[cfg(feature = "quiesce")]
        self.wake_if_quiet();
        self.check_can_propose()?;
        if command.len() + crate::entry::MAX_HEADER_BYTES > self.cfg.max_bytes_per_message {
            return Err(ProposeError::TooLarge);
        }
        self.append_own(EntryKind::Normal, command, store)
    }

    /// The caller sent fewer entries to `to` than planned (its send buffer filled).
    pub fn sent_fewer(&mut self, to: NodeId, planned_last: LogIndex, sent_last: LogIndex) {
        if let Some(p) = self.peer_mut(to) {
            p.on_sent_fewer(planned_last, sent_last);
        }
    }

    /// A leader's tick: CheckQuorum, the transfer's deadline, heartbeats, stalled peers.
    pub(super) fn tick_leader(&mut self, store: &mut impl Storage) {
        if !self.check_quorum() {
            return;
        }
        self.expire_transfer();
        if self.now_ms >= self.heartbeat_due_ms {
            #[cfg(feature = "quiesce")]
            if self.maybe_quiesce(store) {
                return;
            }
            self.broadcast_heartbeat(store);
        }
        self.retry_stalled(store);
    }

    /// A leader's batch boundary: the open read round and the appends for new entries go out.
    pub(super) fn flush_leader(&mut self, store: &mut impl Storage) {
        #[cfg(feature = "quiesce")]
        if self.take_beat_now() && !self.read_round_may_go() {
            self.broadcast_heartbeat(store);
        }
        if self.read_round_may_go() {
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

    pub(super) fn check_can_propose(&self) -> Result<(), ProposeError> {
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

    /// Append an entry of this leader's term to its own log.
    pub(super) fn append_own(
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

    /// A new leader's first entry, written at the end of the call that elected it.
    pub(super) fn write_noop_if_pending(
        &mut self,
        store: &mut impl Storage,
    ) -> Result<(), RaftError> {
        if self.pending_noop && self.role == Role::Leader {
            let index = self.last_index + 1;
            // Refused by a full medium, the no-op is tried again at the end of the next call.
            store.append(&EntryRef {
                index,
                term: self.term,
                kind: EntryKind::Noop,
                data: &[],
            })?;
            self.pending_noop = false;
            self.last_index = index;
            self.last_term = self.term;
            self.replicate_pending = true;
        }
        Ok(())
    }

    pub(super) fn peer(&self, id: NodeId) -> Option<&Progress> {
        self.progress.iter().find(|p| p.id == id)
    }

    pub(super) fn peer_mut(&mut self, id: NodeId) -> Option<&mut Progress> {
        self.progress.iter_mut().find(|p| p.id == id)
    }

    fn retry_ms(&self) -> u64 {
        self.cfg.heartbeat_interval_ms * 2
    }

    /// Send as much as the peer's window allows.
    pub(super) fn send_append(&mut self, to: NodeId, store: &mut impl Storage) {
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
            if (probing && next > self.last_index + 1) || (!probing && next > self.last_index) {
                return;
            }
            let Some(prev_term) = self.prev_term_or_snapshot(to, next, store) else {
                return;
            };
            let prev_index = next - 1;
            let count = (self.last_index - prev_index).min(self.cfg.max_entries_per_message);
            let append = Append {
                term: self.term,
                prev_index,
                prev_term,
                commit: self.commit,
                count: count as u32,
                read_seq: self.reads.read_seq,
                clock_ms: self.clock_stamp(),
            };
            self.send(to, append);
            let p = self.peer_mut(to).expect("peer checked above");
            p.on_sent(prev_index + count, now);
            if probing || count == 0 {
                return;
            }
        }
    }

    /// The term of the entry before `next`, if the entries from `next` on are still in the
    /// log. If they were compacted, the peer is moved to snapshot state and sent a chunk.
    fn prev_term_or_snapshot(
        &mut self,
        to: NodeId,
        next: LogIndex,
        store: &impl Storage,
    ) -> Option<Term> {
        // Both the entry before the range and the first entry of it must still be in the
        // log (index 0 always "exists", so checking `prev` alone misses a compacted start).
        let first_gone =
            next <= self.last_index && matches!(store.term(next), Err(StorageError::Compacted(_)));
        match store.term(next - 1) {
            Ok(t) if !first_gone => Some(t),
            Ok(_) | Err(StorageError::Compacted(_)) if self.snapshot_index > 0 => {
                // The entries this peer needs were compacted: it needs the snapshot.
                let (si, st) = (self.snapshot_index, self.snapshot_term);
                if let Some(p) = self.peer_mut(to) {
                    p.become_snapshot(si, st);
                }
                self.send_snapshot_chunk(to);
                None
            }
            Ok(_) | Err(_) => None,
        }
    }

    /// A heartbeat to every peer, opening a new read round (which also extends the lease).
    pub(super) fn broadcast_heartbeat(&mut self, store: &impl Storage) {
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
            let heartbeat = Append {
                term: self.term,
                prev_index,
                prev_term,
                commit: self.commit,
                count: 0,
                read_seq: seq,
                clock_ms: self.clock_stamp(),
            };
            self.outbox_push(Envelope::new(to, heartbeat));
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
                let p = &mut self.progress[i];
                if p.state == ProgressState::Snapshot {
                    if let Some(s) = p.snapshot.as_mut() {
                        // The outstanding chunk is lost: send it again.
                        s.sent_at_ms = None;
                    }
                }
                self.send_append(id, store);
            }
        }
    }

    pub(super) fn handle_append_resp(
        &mut self,
        from: NodeId,
        m: &AppendResp,
        store: &mut impl Storage,
    ) {
        let last_index = self.last_index;
        let now = self.now_ms;
        self.check_clock(from, m);
        let Some(p) = self.peer_mut(from) else { return };
        p.recent_active = true;
        if m.read_seq > p.read_seq_acked {
            p.read_seq_acked = m.read_seq;
        }
        if m.success {
            if p.on_ack(m.match_index.min(last_index), now) {
                self.maybe_commit();
            }
            self.transfer_if_caught_up(from);
        } else if p.state != ProgressState::Snapshot && m.conflict_index > p.match_index {
            // Fast backtracking: skip the whole conflicting term at once.
            let next = if m.conflict_term > 0 {
                match self.last_index_of_term(m.conflict_term, store) {
                    Some(i) => i + 1,
                    None => m.conflict_index,
                }
            } else {
                m.conflict_index
            };
            let p = self.peer_mut(from).expect("peer found above");
            p.become_probe(next.min(last_index + 1));
        }
        self.confirm_reads();
        self.send_append(from, store);
    }

    /// Feed an answer's clocks to the peer's clock check. A peer that stops agreeing takes its
    /// echoes out of the lease at once: the lease is recomputed from the peers that still do.
    fn check_clock(&mut self, from: NodeId, m: &AppendResp) {
        if m.echo_ms == 0 || m.clock_ms == 0 {
            return;
        }
        let now = self.now_ms;
        let back = u64::from((now as u32).wrapping_sub(m.echo_ms));
        if back > now || back > u64::from(u32::MAX / 2) {
            return;
        }
        let sample = ClockSample {
            sent_ms: now - back,
            recv_ms: now,
            peer_ms: m.clock_ms,
        };
        let (window, bound) = (self.cfg.election_timeout_ms, self.cfg.clock_bound_ppm());
        let Some(p) = self.peer_mut(from) else { return };
        let before = p.clock.verdict();
        let after = p.clock.observe(sample, window, bound);
        let rate = p.clock.rate_ppm().unwrap_or(0);
        if after == before {
            return;
        }
        if after == ClockVerdict::Drift {
            self.stats.clock_drift_detected += 1;
            warn!(
                "node {}'s clock rate differs from this leader's by {} ppm, beyond the lease's bound of {} ppm: lease reads go through ReadIndex until the clocks agree",
                from,
                rate,
                bound
            );
        }
        if before == ClockVerdict::Agree {
            self.reads.lease_until_ms = 0;
            self.confirm_reads();
        }
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

    /// The highest value a quorum of voters has reached, where this node counts with `own`
    /// and each peer with `of(progress)` (joint configurations need both majorities).
    pub(super) fn quorum_value(&self, own: u64, of: impl Fn(&Progress) -> u64) -> u64 {
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

    pub(super) fn maybe_commit(&mut self) {
        let q = self.quorum_value(self.persisted_index, |p| p.match_index);
        if q <= self.commit || q > self.last_index {
            return;
        }
        // Raft §5.4.2: only an entry of the current term is committed by counting replicas;
        // earlier entries are committed through it.
        if q < self.term_start_index && !self.plant.commit_by_counting() {
            return;
        }
        self.advance_commit(q);
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
}
