//! Snapshots on the driver's side: taking one from the state machine into storage, and
//! restoring the state machine from the one in storage (checking its CRC as it streams).

use super::{Node, NodeError};
use crate::io::{SnapshotError, SnapshotReader, SnapshotWriter, StateMachine};
use crate::plant::Plant;
use crate::record::CRC32C;
use crate::storage::{Storage, StorageError};
use crate::types::{LogIndex, SnapshotMeta};

impl<S: Storage, T, M: StateMachine, B, P: Plant> Node<S, T, M, B, P> {
    /// Take a snapshot of what is applied, if anything was since the last one, and compact
    /// the log behind it.
    pub(super) fn take_snapshot(&mut self, now_ms: u64) -> Result<Option<LogIndex>, NodeError> {
        let index = self.raft.applied();
        if index <= self.raft.snapshot_index() {
            return Ok(None);
        }
        let Some(membership) = self.raft.membership_at(index) else {
            return Ok(None);
        };
        let term = self.store.term(index)?;
        // Pass 1 sizes and checksums the data so the metadata is complete before writing.
        let mut probe = CountingWriter {
            len: 0,
            digest: CRC32C.digest(),
        };
        self.sm.snapshot(&mut probe).map_err(NodeError::Snapshot)?;
        let meta = SnapshotMeta {
            index,
            term,
            membership,
            size_bytes: probe.len,
            crc: probe.digest.finalize(),
        };
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
        // Raft learns of the snapshot at once: whatever fails after this, it is in storage.
        self.raft.on_snapshot_taken(now_ms, index, term);
        self.stats.snapshots_taken += 1;
        // Refresh the commit hint alongside the snapshot (Raft saves it only with term or vote).
        self.store.save_hard_state(&self.raft.hard_state())?;
        let upto = index.saturating_sub(self.cfg.raft.snapshot_keep_entries);
        if upto > 0 {
            self.store.compact_prefix(upto)?;
        }
        Ok(Some(index))
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
