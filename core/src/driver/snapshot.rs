//! Snapshots on the driver's side: taking one from the state machine into storage, and
//! restoring the state machine from the one in storage (checking its CRC as it streams).

use super::{Node, NodeError};
use crate::io::{SnapshotError, SnapshotReader, SnapshotWriter, StateMachine};
use crate::membership::Membership;
use crate::plant::Plant;
use crate::record::CRC32C;
use crate::storage::{Storage, StorageError};
use crate::types::{LogIndex, SnapshotMeta, Term};

/// What a snapshot begun with [`Node::begin_snapshot`] covers: the platform completes its
/// [`SnapshotMeta`] (size and CRC of the data) once the data is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotPlan {
    /// Index of the last applied entry the snapshot covers.
    pub index: LogIndex,
    /// Term of that entry.
    pub term: Term,
    /// The membership in force at `index`.
    pub membership: Membership,
}

impl SnapshotPlan {
    /// The snapshot's metadata, once its data (`size_bytes` bytes with CRC-32C `crc`) is known.
    pub fn meta(&self, size_bytes: u64, crc: u32) -> SnapshotMeta {
        SnapshotMeta {
            index: self.index,
            term: self.term,
            membership: self.membership.clone(),
            size_bytes,
            crc,
        }
    }
}

impl<S: Storage, T, M: StateMachine, B, P: Plant> Node<S, T, M, B, P> {
    /// Whether a snapshot is due and not held back by a recent refusal.
    pub(super) fn snapshot_wanted(&self, now_ms: u64) -> bool {
        now_ms >= self.snapshot_retry_at_ms && self.raft.snapshot_due(now_ms)
    }

    /// When this node will want a snapshot with no further input (see
    /// [`Raft::snapshot_due_at`](crate::raft::Raft::snapshot_due_at)), not before a refused
    /// one may be tried again: a platform that stops flushing an idle group wakes it then.
    pub fn snapshot_due_at(&self) -> Option<u64> {
        self.raft
            .snapshot_due_at()
            .map(|t| t.max(self.snapshot_retry_at_ms))
    }

    /// A snapshot was refused (a full medium, no descriptor to spare): try again after
    /// `snapshot_retry_ms` rather than at every flush, since each try serialises the whole
    /// state. The error passes the failure policy (a durability fault is returned).
    pub(super) fn snapshot_refused(&mut self, now_ms: u64, e: NodeError) -> Result<(), NodeError> {
        self.snapshot_retry_at_ms = now_ms.saturating_add(self.cfg.raft.snapshot_retry_ms);
        self.stats.snapshot_failures += 1;
        self.apply_policy(now_ms, Err(e))
    }

    /// What a snapshot now would cover: `None` if nothing was applied since the last one.
    fn snapshot_plan(&self) -> Result<Option<SnapshotPlan>, NodeError> {
        let index = self.raft.applied();
        if index <= self.raft.snapshot_index() {
            return Ok(None);
        }
        let Some(membership) = self.raft.membership_at(index) else {
            return Ok(None);
        };
        let term = self.store.term(index)?;
        Ok(Some(SnapshotPlan {
            index,
            term,
            membership,
        }))
    }

    /// Take a snapshot of what is applied, if anything was since the last one, and compact
    /// the log behind it.
    pub(super) fn take_snapshot(&mut self, now_ms: u64) -> Result<Option<LogIndex>, NodeError> {
        let Some(plan) = self.snapshot_plan()? else {
            return Ok(None);
        };
        // Pass 1 sizes and checksums the data so the metadata is complete before writing.
        let mut probe = CountingWriter {
            len: 0,
            digest: CRC32C.digest(),
        };
        self.sm.snapshot(&mut probe).map_err(NodeError::Snapshot)?;
        let meta = plan.meta(probe.len, probe.digest.finalize());
        self.store.snapshot_begin(&meta)?;
        let mut w = StoreWriter {
            store: &mut self.store,
            offset: 0,
            err: None,
        };
        let res = self.sm.snapshot(&mut w);
        if let Some(e) = w.err {
            return Err(NodeError::Storage(e));
        }
        res.map_err(NodeError::Snapshot)?;
        self.store.snapshot_finish()?;
        self.snapshot_durable(now_ms, plan.index, plan.term)?;
        Ok(Some(plan.index))
    }

    /// A snapshot at `index` is durable and current in storage: Raft learns of it at once
    /// (whatever fails after this, it is in storage), and the log behind it is compacted.
    fn snapshot_durable(
        &mut self,
        now_ms: u64,
        index: LogIndex,
        term: Term,
    ) -> Result<(), NodeError> {
        self.raft.on_snapshot_taken(now_ms, index, term);
        self.stats.snapshots_taken += 1;
        // Refresh the commit hint alongside the snapshot (Raft saves it only with term or vote).
        self.store.save_hard_state(&self.raft.hard_state())?;
        let upto = index.saturating_sub(self.cfg.raft.snapshot_keep_entries);
        if upto > 0 {
            self.store.compact_prefix(upto)?;
        }
        Ok(())
    }

    /// Leave snapshots to the platform: [`Node::flush`] no longer takes a due one; the
    /// platform asks [`Node::begin_snapshot`] instead and writes it elsewhere (shoald writes
    /// them off its raft thread). The boards and the simulator keep `flush` taking them.
    pub fn set_background_snapshots(&mut self, on: bool) {
        self.background_snapshots = on;
    }

    /// Whether a snapshot begun with [`Node::begin_snapshot`] is not finished yet.
    pub fn snapshot_in_flight(&self) -> Option<LogIndex> {
        self.snapshot_in_flight
    }

    /// Begin a snapshot the platform writes outside the driver, if one is due (or `force`d)
    /// and none is in flight: `view` takes what the platform needs of the state machine,
    /// which is exactly at the plan's index now (nothing else may be applied in between, so
    /// it runs here). Until [`Node::snapshot_done`] reports it, Raft does not know of it: it
    /// is never sent to a follower, the log is not compacted behind it, and no second one
    /// begins.
    pub fn begin_snapshot<V>(
        &mut self,
        now_ms: u64,
        force: bool,
        view: impl FnOnce(&M) -> Result<V, crate::io::SnapshotError>,
    ) -> Result<Option<(SnapshotPlan, V)>, NodeError> {
        if self.snapshot_in_flight.is_some() || !(force || self.snapshot_wanted(now_ms)) {
            return Ok(None);
        }
        let Some(plan) = self.snapshot_plan()? else {
            return Ok(None);
        };
        let v = match view(&self.sm) {
            Ok(v) => v,
            Err(e) => {
                return self
                    .snapshot_refused(now_ms, NodeError::Snapshot(e))
                    .map(|()| None)
            }
        };
        self.snapshot_in_flight = Some(plan.index);
        Ok(Some((plan, v)))
    }

    /// The snapshot from [`Node::begin_snapshot`] finished: `Ok` with its metadata once it is
    /// durable and current in storage (the platform made it so), or the error that stopped
    /// it (retried after `snapshot_retry_ms`, as a refused snapshot is; a durability fault is
    /// returned). Only now is the log compacted behind it. Returns the snapshot's index if
    /// it was taken.
    pub fn snapshot_done(
        &mut self,
        now_ms: u64,
        result: Result<SnapshotMeta, NodeError>,
    ) -> Result<Option<LogIndex>, NodeError> {
        let Some(index) = self.snapshot_in_flight.take() else {
            return Err(NodeError::Storage(StorageError::SnapshotState));
        };
        let meta = match result {
            Ok(meta) => meta,
            Err(e) => return self.snapshot_refused(now_ms, e).map(|()| None),
        };
        let current = self.store.snapshot_meta().map_or(0, |m| m.index);
        if meta.index != index || current < index {
            // Not what was begun, or storage does not hold it: compacting would lose entries.
            return Err(NodeError::Storage(StorageError::SnapshotState));
        }
        self.snapshot_durable(now_ms, meta.index, meta.term)?;
        Ok(Some(meta.index))
    }
}

/// Restore `sm` from the snapshot in `store`, checking its CRC as it streams.
pub(super) fn restore_from_store<S: Storage, M: StateMachine>(
    store: &S,
    sm: &mut M,
    meta: &SnapshotMeta,
) -> Result<(), NodeError> {
    let mut r = StoreReader {
        store,
        offset: 0,
        size: meta.size_bytes,
        expected: meta.crc,
        digest: CRC32C.digest(),
        err: None,
    };
    let res = sm.restore(meta.index, &mut r);
    if let Some(e) = r.err {
        return Err(NodeError::Storage(e));
    }
    if let Err(e) = res {
        // The state machine could not make sense of the data: damaged data is the likely
        // cause, and then the checksum is the error to report, not what the decoder tripped
        // over.
        return Err(r.damaged().unwrap_or(NodeError::Snapshot(e)));
    }
    let found = r.digest.finalize();
    if found != meta.crc || r.offset != meta.size_bytes {
        return Err(NodeError::SnapshotChecksum {
            expected: meta.crc,
            found,
        });
    }
    Ok(())
}

struct CountingWriter {
    len: u64,
    digest: crate::record::Crc32cDigest,
}

impl SnapshotWriter for CountingWriter {
    fn write(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        self.len += data.len() as u64;
        self.digest.update(data);
        Ok(())
    }
}

struct StoreWriter<'a, S> {
    store: &'a mut S,
    offset: u64,
    err: Option<StorageError>,
}

impl<S: Storage> SnapshotWriter for StoreWriter<'_, S> {
    fn write(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        match self.store.snapshot_write(self.offset, data) {
            Ok(()) => {
                self.offset += data.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.err = Some(e);
                Err(SnapshotError::Io)
            }
        }
    }
}

struct StoreReader<'a, S> {
    store: &'a S,
    offset: u64,
    size: u64,
    /// The CRC the metadata promises.
    expected: u32,
    digest: crate::record::Crc32cDigest,
    err: Option<StorageError>,
}

impl<S: Storage> StoreReader<'_, S> {
    /// Read the rest of the snapshot into the checksum: the error to report if the data does
    /// not match it (`None` when it does, or when the rest cannot be read).
    fn damaged(mut self) -> Option<NodeError> {
        let mut buf = [0u8; 64];
        while self.offset < self.size {
            let n = match self.store.snapshot_read(self.offset, &mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => n.min((self.size - self.offset) as usize),
            };
            self.digest.update(&buf[..n]);
            self.offset += n as u64;
        }
        let found = self.digest.finalize();
        (found != self.expected).then_some(NodeError::SnapshotChecksum {
            expected: self.expected,
            found,
        })
    }
}

impl<S: Storage> SnapshotReader for StoreReader<'_, S> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        if self.offset + buf.len() as u64 > self.size {
            return Err(SnapshotError::Malformed);
        }
        let mut done = 0;
        while done < buf.len() {
            match self.store.snapshot_read(self.offset, &mut buf[done..]) {
                Ok(0) => return Err(SnapshotError::Malformed),
                Ok(n) => {
                    self.digest.update(&buf[done..done + n]);
                    done += n;
                    self.offset += n as u64;
                }
                Err(e) => {
                    self.err = Some(e);
                    return Err(SnapshotError::Io);
                }
            }
        }
        Ok(())
    }

    fn remaining(&self) -> u64 {
        self.size - self.offset
    }
}
