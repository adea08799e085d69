//! Snapshots: when one is due, what taking one changes, and the chunked transfer — the leader
//! sending one chunk at a time, the follower writing and installing it.

use super::{progress, Raft, RaftError, StepOutcome};
use crate::message::{Snapshot, SnapshotHeader, SnapshotRef, SnapshotResp};
use crate::raft::progress::ProgressState;
use crate::storage::Storage;
use crate::types::{LogIndex, NodeId, SnapshotMeta, Term};

impl Raft {
    /// Whether a snapshot should be taken now (by entry count or interval).
    pub fn snapshot_due(&self, now_ms: u64) -> bool {
        let since = self.applied.saturating_sub(self.snapshot_index);
        if since == 0 {
            return false;
        }
        (self.cfg.snapshot_entries > 0 && since >= self.cfg.snapshot_entries)
            || (self.cfg.snapshot_interval_ms > 0
                && now_ms >= self.last_snapshot_ms + self.cfg.snapshot_interval_ms)
    }

    /// A snapshot covering `index` (term `term`) is now durable in storage.
    pub fn on_snapshot_taken(&mut self, now_ms: u64, index: LogIndex, term: Term) {
        // Writing a local snapshot replaced any partly received one in storage: a transfer in
        // progress must restart from offset 0 (the next chunk's reply says so).
        self.receiving = None;
        if index > self.snapshot_index {
            self.snapshot_index = index;
            self.snapshot_term = term;
            self.prune_configs();
        }
        self.last_snapshot_ms = now_ms;
    }

    /// Send the next chunk to a peer in snapshot state, unless one is outstanding.
    pub(super) fn send_snapshot_chunk(&mut self, to: NodeId) {
        let now = self.now_ms;
        let (si, st) = (self.snapshot_index, self.snapshot_term);
        let term = self.term;
        let Some(p) = self.peer_mut(to) else { return };
        let Some(mut s) = p.snapshot else { return };
        if s.index != si {
            // A newer snapshot replaced the one being sent: start over with it.
            s = progress::SnapshotSend {
                index: si,
                term: st,
                acked_offset: 0,
                sent_at_ms: None,
            };
        }
        if s.sent_at_ms.is_some() {
            p.snapshot = Some(s);
            return;
        }
        s.sent_at_ms = Some(now);
        p.snapshot = Some(s);
        let chunk = Snapshot {
            term,
            meta: SnapshotRef {
                index: s.index,
                term: s.term,
            },
            offset: s.acked_offset,
            done: false,
        };
        self.send(to, chunk);
    }

    pub(super) fn handle_snapshot_resp(
        &mut self,
        from: NodeId,
        m: &SnapshotResp,
        store: &mut impl Storage,
    ) {
        let now = self.now_ms;
        let Some(p) = self.peer_mut(from) else { return };
        p.recent_active = true;
        let Some(mut s) = p.snapshot else { return };
        if s.index != m.index {
            return;
        }
        if m.done {
            p.become_probe(m.index + 1);
            p.on_ack(m.index, now);
            p.state = ProgressState::Probe;
            self.stats.snapshots_sent += 1;
            self.send_append(from, store);
            return;
        }
        s.acked_offset = m.next_offset;
        s.sent_at_ms = None;
        p.snapshot = Some(s);
        self.send_snapshot_chunk(from);
    }

    fn answer_chunk(&mut self, to: NodeId, index: LogIndex, next_offset: u64, done: bool) {
        let answer = SnapshotResp {
            term: self.term,
            index,
            next_offset,
            done,
        };
        self.respond(to, answer);
    }

    pub(super) fn handle_snapshot(
        &mut self,
        from: NodeId,
        m: &Snapshot,
        data: &[u8],
        store: &mut impl Storage,
    ) -> Result<StepOutcome, RaftError> {
        let meta = &m.meta;
        if meta.index <= self.commit {
            // Everything in it is already here.
            self.answer_chunk(from, meta.index, 0, true);
            return Ok(StepOutcome::Done);
        }
        let expected = match self.receiving {
            Some((i, t, next)) if i == meta.index && t == meta.term => next,
            _ => 0,
        };
        if m.offset != expected {
            // A chunk was lost or duplicated: tell the leader where to resume.
            self.answer_chunk(from, meta.index, expected, false);
            return Ok(StepOutcome::Done);
        }
        let full = full_meta(meta);
        if m.offset == 0 {
            store.snapshot_begin(&full)?;
        }
        store.snapshot_write(m.offset, data)?;
        let next = m.offset + data.len() as u64;
        self.receiving = Some((meta.index, meta.term, next));
        if !m.done {
            self.answer_chunk(from, meta.index, next, false);
            return Ok(StepOutcome::Done);
        }
        self.install_snapshot(meta, store)?;
        self.answer_chunk(from, meta.index, next, true);
        Ok(StepOutcome::SnapshotInstalled(full))
    }

    /// The last chunk arrived: make the snapshot current and forget what it replaces.
    fn install_snapshot(
        &mut self,
        meta: &SnapshotHeader,
        store: &mut impl Storage,
    ) -> Result<(), RaftError> {
        // Decide before finishing: afterwards the snapshot itself answers for its last index.
        // Storage applies the same rule (keep the log only if it holds that entry).
        let keep_log =
            self.last_index >= meta.index && store.term(meta.index).ok() == Some(meta.term);
        store.snapshot_finish()?;
        self.receiving = None;
        if !keep_log {
            self.last_index = meta.index;
            self.last_term = meta.term;
            self.persisted_index = meta.index;
            self.log_epoch = self.log_epoch.wrapping_add(1);
        }
        self.snapshot_index = meta.index;
        self.snapshot_term = meta.term;
        self.commit = self.commit.max(meta.index);
        self.applied = meta.index;
        // Configurations after the snapshot that a kept log holds are fed again by the caller.
        self.reset_configs(meta.index, meta.membership.clone());
        self.refresh_role();
        self.stats.snapshots_installed += 1;
        info!(
            "node {} installed snapshot at index {}",
            self.id, meta.index
        );
        Ok(())
    }
}

fn full_meta(h: &SnapshotHeader) -> SnapshotMeta {
    SnapshotMeta {
        index: h.index,
        term: h.term,
        membership: h.membership.clone(),
        size_bytes: h.size_bytes,
        crc: h.crc,
    }
}
