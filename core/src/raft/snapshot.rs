//! Snapshots: when one is due, what taking one changes, and the chunked transfer — the leader
//! sending one chunk at a time, the follower writing and installing it.

use super::{progress, Raft, RaftError, StepOutcome};
use crate::message::{Snapshot, SnapshotHeader, SnapshotRef, SnapshotResp};
use crate::plant::Plant;
use crate::raft::progress::ProgressState;
use crate::record::{Crc32cDigest, CRC32C};
use crate::storage::Storage;
use crate::types::{LogIndex, NodeId, SnapshotMeta, Term};

/// A snapshot being received: which one, the offset its next chunk must start at, and the
/// CRC of the data so far (checked against its header before it is installed).
#[derive(Clone)]
pub(super) struct Receiving {
    index: LogIndex,
    term: Term,
    next: u64,
    digest: Crc32cDigest,
}

impl<P: Plant> Raft<P> {
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

    /// The time (ms) at which [`Raft::snapshot_due`] turns true with no further input: `None`
    /// when nothing was applied since the last snapshot (new entries are input) or only an
    /// entry count would make it due; a time already past when it is due now.
    pub fn snapshot_due_at(&self) -> Option<u64> {
        let since = self.applied.saturating_sub(self.snapshot_index);
        if since == 0 {
            return None;
        }
        if self.cfg.snapshot_entries > 0 && since >= self.cfg.snapshot_entries {
            return Some(0);
        }
        (self.cfg.snapshot_interval_ms > 0)
            .then(|| self.last_snapshot_ms + self.cfg.snapshot_interval_ms)
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
        self.assert_invariants();
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

    /// The offset the next chunk of snapshot `h` must start at.
    fn chunk_expected(&self, h: &SnapshotHeader) -> u64 {
        match &self.receiving {
            Some(r) if r.index == h.index && r.term == h.term => r.next,
            _ => 0,
        }
    }

    /// Check a chunk before acting on it: the snapshot can exist, the chunk stays within its
    /// size, and a last chunk ends it exactly and completes data matching its checksum.
    pub(super) fn check_chunk(&self, m: &Snapshot, data: &[u8]) -> Result<(), RaftError> {
        let h = &m.meta;
        if h.index == 0 || h.term == 0 || h.term > m.term {
            return Err(RaftError::ImpossibleSnapshot {
                index: h.index,
                term: h.term,
            });
        }
        let end = m.offset.saturating_add(data.len() as u64);
        if end > h.size_bytes || (m.done && end != h.size_bytes) {
            return Err(RaftError::SnapshotSize {
                size_bytes: h.size_bytes,
                end,
            });
        }
        let installs = m.done && h.index > self.commit && m.offset == self.chunk_expected(h);
        if installs {
            let mut digest = match &self.receiving {
                Some(r) if m.offset > 0 => r.digest.clone(),
                _ => CRC32C.digest(),
            };
            digest.update(data);
            let found = digest.finalize();
            if found != h.crc {
                return Err(RaftError::SnapshotChecksum {
                    expected: h.crc,
                    found,
                });
            }
        }
        Ok(())
    }

    /// Write a chunk (checked by [`Raft::check_chunk`]); the last one installs the snapshot.
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
        let expected = self.chunk_expected(meta);
        if m.offset != expected {
            // A chunk was lost or duplicated: tell the leader where to resume.
            self.answer_chunk(from, meta.index, expected, false);
            return Ok(StepOutcome::Done);
        }
        let full = full_meta(meta);
        if m.offset == 0 {
            self.receiving = None;
        }
        let written = if m.offset == 0 {
            store
                .snapshot_begin(&full)
                .and_then(|()| store.snapshot_write(0, data))
        } else {
            store.snapshot_write(m.offset, data)
        };
        if let Err(e) = written {
            // Storage discards a snapshot it refused half-way (a full medium): the next chunk
            // is answered with offset 0, and the transfer starts again.
            self.receiving = None;
            return Err(e.into());
        }
        let next = m.offset + data.len() as u64;
        let mut digest = match self.receiving.take() {
            Some(r) => r.digest,
            None => CRC32C.digest(),
        };
        digest.update(data);
        self.receiving = Some(Receiving {
            index: meta.index,
            term: meta.term,
            next,
            digest,
        });
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
        // Nothing may fail after the install (the caller must restore its state machine from
        // it): a term this chunk raised is saved first.
        self.save_hard_state(store)?;
        // Decide before finishing: afterwards the snapshot itself answers for its last index.
        // Storage applies the same rule (keep the log only if it holds that entry).
        let keep_log =
            self.last_index >= meta.index && store.term(meta.index).ok() == Some(meta.term);
        // Refused, the snapshot is discarded whole, and so is the transfer.
        let finished = store.snapshot_finish();
        self.receiving = None;
        finished?;
        if !keep_log {
            self.last_index = meta.index;
            self.last_term = meta.term;
            self.persisted_index = meta.index;
            self.log_epoch = self.log_epoch.wrapping_add(1);
        }
        self.snapshot_index = meta.index;
        self.snapshot_term = meta.term;
        self.advance_commit(self.commit.max(meta.index));
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
