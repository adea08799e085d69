//! [`MemStorage`] as the [`Storage`] the raft core drives, and the [`LogView`] it reads.

use super::*;

impl LogView for MemStorage {
    fn snapshot_index(&self) -> LogIndex {
        self.disk.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    fn last_index(&self) -> LogIndex {
        match self.slots.len() {
            0 => self.snapshot_index(),
            n => self.first_index + n as u64 - 1,
        }
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if index == 0 {
            return Ok(0);
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable(index));
        }
        if let Some(slot) = self.slot(index) {
            return Ok(slot.term);
        }
        match &self.disk.snapshot {
            Some(s) if s.meta.index == index => Ok(s.meta.term),
            _ => Err(StorageError::Compacted(index)),
        }
    }
}

impl Storage for MemStorage {
    fn hard_state(&self) -> HardState {
        self.hard_state
    }

    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.hard_state = *hs;
        self.hard_state_dirty = true;
        self.disk.stats.hard_state_writes += 1;
        Ok(())
    }

    fn append(&mut self, e: &EntryRef<'_>) -> Result<(), StorageError> {
        StorageError::check_continues(self.last_index(), e.index)?;
        let body_len = e.encoded_len();
        if body_len > record::MAX_RECORD_BODY {
            // No record can frame it; the disk would be "full" for this entry.
            return Err(StorageError::Full);
        }
        let offset = self.live_end();
        let at = self.live.len();
        let total = body_len + record::RECORD_OVERHEAD;
        self.live.resize(at + total, 0);
        record::encode_with(&mut self.live[at..], body_len, |dst| {
            let n = entry::encode(e, dst).expect("the body is sized by encoded_len");
            debug_assert_eq!(n, dst.len());
        })
        .map_err(|_| StorageError::Full)?;
        let pending_at = self.pending_bytes.len();
        self.pending_bytes.extend_from_slice(&self.live[at..]);
        self.pending.push(PendingWrite::Append {
            at: pending_at,
            len: total,
        });
        if self.slots.is_empty() {
            self.first_index = e.index;
        }
        self.slots.push_back(Slot {
            term: e.term,
            offset,
            len: total as u32,
        });
        self.disk.stats.log_bytes_written += total as u64;
        Ok(())
    }

    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        if from <= self.snapshot_index() {
            // Entries at or below the snapshot are committed; truncating them is a caller bug.
            return Err(StorageError::Compacted(from));
        }
        if from > self.last_index() {
            return Ok(());
        }
        let k = (from - self.first_index) as usize;
        let to = self.slots[k].offset;
        self.slots.truncate(k);
        self.live.truncate((to - self.disk.log_start) as usize);
        self.read_flips.retain(|f| f.offset < to);
        self.pending.push(PendingWrite::Truncate { to });
        Ok(())
    }

    fn compact_prefix(&mut self, upto: LogIndex) -> Result<(), StorageError> {
        // Rule 7: never past the snapshot, whatever the caller asks; entries after it are live.
        let upto = upto.min(self.snapshot_index());
        if self.slots.is_empty() || upto < self.first_index {
            return Ok(());
        }
        let drop = ((upto - self.first_index + 1) as usize).min(self.slots.len());
        let new_start = self.slots.get(drop).map_or(self.live_end(), |s| s.offset);
        let cut = (new_start - self.disk.log_start) as usize;
        if self.disk.log.len() < cut {
            // Entries at or below the snapshot are durable since snapshot_finish; if that ever
            // changes, flush rather than leave the medium with a hole at its front.
            self.flush();
        }
        self.slots.drain(..drop);
        self.read_flips.retain(|f| f.offset >= new_start);
        self.first_index += drop as u64;
        self.live.drain(..cut);
        self.disk.log.drain(..cut);
        self.disk.log_start = new_start;
        Ok(())
    }

    fn read_entries(&self, lo: LogIndex, hi: LogIndex, buf: &mut [u8]) -> Result<ReadEntries> {
        self.read_records(lo, hi, buf, true)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.flush();
        self.disk.stats.syncs += 1;
        Ok(())
    }

    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.disk.snapshot.as_ref().map(|s| s.meta.clone())
    }

    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        // Reserve up to 1 MiB now; larger snapshots grow as chunks arrive.
        let reserve = meta.size_bytes.min(1 << 20) as usize;
        self.incoming = Some(SnapshotFile {
            meta: meta.clone(),
            data: Vec::with_capacity(reserve),
        });
        Ok(())
    }

    fn snapshot_write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let Some(incoming) = self.incoming.as_mut() else {
            return Err(StorageError::SnapshotState);
        };
        // Offsets arrive in order: anything else means a lost or repeated chunk.
        if offset != incoming.data.len() as u64
            || offset + data.len() as u64 > incoming.meta.size_bytes
        {
            return Err(StorageError::SnapshotState);
        }
        incoming.data.extend_from_slice(data);
        self.disk.stats.snapshot_bytes_written += data.len() as u64;
        Ok(())
    }

    fn snapshot_finish(&mut self) -> Result<(), StorageError> {
        let Some(incoming) = self.incoming.take() else {
            return Err(StorageError::SnapshotState);
        };
        if incoming.data.len() as u64 != incoming.meta.size_bytes {
            // Not all chunks arrived; keep it so that they still can.
            self.incoming = Some(incoming);
            return Err(StorageError::SnapshotState);
        }
        if CRC32C.checksum(&incoming.data) != incoming.meta.crc {
            // Damaged data must never become current; the location is an offset in the data.
            return Err(StorageError::Corrupt { location: 0 });
        }
        // The log must agree on the medium with what the snapshot keeps of it.
        self.flush();
        self.disk.stats.syncs += 1;
        let (index, term) = (incoming.meta.index, incoming.meta.term);
        if self.slot(index).map(|s| s.term) != Some(term) {
            // The log lacks the snapshot's last entry: it belongs to another history.
            let end = self.live_end();
            self.slots.clear();
            self.read_flips.clear();
            self.live.clear();
            self.disk.log.clear();
            self.disk.log_start = end;
        }
        self.disk.snapshot = Some(incoming);
        self.disk.stats.snapshots_installed += 1;
        Ok(())
    }

    fn snapshot_read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        let snap = self
            .disk
            .snapshot
            .as_ref()
            .ok_or(StorageError::NoSnapshot)?;
        let Ok(at) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(rest) = snap.data.get(at..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}
