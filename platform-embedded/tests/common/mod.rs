//! Test support: a `Storage` wrapper that remembers every write since the last durable point,
//! so that a power cut can be placed anywhere inside that unsynced tail and replayed exactly.
#![allow(dead_code)]

use embedded_storage::nor_flash::NorFlash;
use shoal_core::entry::EntryRef;
use shoal_core::storage::{LogView, ReadEntries, Storage, StorageError};
use shoal_core::types::{EntryKind, HardState, LogIndex, SnapshotMeta, Term};
use shoal_embedded::flash::FlashStorage;

/// One storage call that changes the medium.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Op {
    Append {
        index: LogIndex,
        term: Term,
        kind: EntryKind,
        data: Vec<u8>,
    },
    Truncate(LogIndex),
    SaveHardState(HardState),
    Compact(LogIndex),
    SnapBegin(SnapshotMeta),
    SnapWrite(u64, Vec<u8>),
    SnapFinish,
    Sync,
}

/// Apply `op` to `s`, returning what the call returned.
pub fn apply<S: Storage>(s: &mut S, op: &Op) -> Result<(), StorageError> {
    match op {
        Op::Append {
            index,
            term,
            kind,
            data,
        } => s.append(&EntryRef {
            index: *index,
            term: *term,
            kind: *kind,
            data,
        }),
        Op::Truncate(from) => s.truncate_suffix(*from),
        Op::SaveHardState(hs) => s.save_hard_state(hs),
        Op::Compact(upto) => s.compact_prefix(*upto),
        Op::SnapBegin(meta) => s.snapshot_begin(meta),
        Op::SnapWrite(offset, data) => s.snapshot_write(*offset, data),
        Op::SnapFinish => s.snapshot_finish(),
        Op::Sync => s.sync(),
    }
}

/// A `FlashStorage` plus a copy of itself (RAM and flash) taken at the last durable point
/// (`sync` or `snapshot_finish` returning `Ok`) and the writes made since.
#[derive(Clone)]
pub struct Recorded<F, const N: usize> {
    pub inner: FlashStorage<F, N>,
    pub checkpoint: FlashStorage<F, N>,
    pub ops: Vec<Op>,
}

impl<F: NorFlash + Clone, const N: usize> Recorded<F, N> {
    pub fn new(inner: FlashStorage<F, N>) -> Self {
        Recorded {
            checkpoint: inner.clone(),
            inner,
            ops: Vec::new(),
        }
    }

    fn record(&mut self, op: Op) -> Result<(), StorageError> {
        let r = apply(&mut self.inner, &op);
        let durable = matches!(op, Op::Sync | Op::SnapFinish) && r.is_ok();
        if durable {
            self.checkpoint = self.inner.clone();
            self.ops.clear();
        } else {
            self.ops.push(op);
        }
        r
    }
}

impl<F: NorFlash + Clone, const N: usize> LogView for Recorded<F, N> {
    fn snapshot_index(&self) -> LogIndex {
        self.inner.snapshot_index()
    }
    fn last_index(&self) -> LogIndex {
        self.inner.last_index()
    }
    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        self.inner.term(index)
    }
}

impl<F: NorFlash + Clone, const N: usize> Storage for Recorded<F, N> {
    fn hard_state(&self) -> HardState {
        self.inner.hard_state()
    }
    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.record(Op::SaveHardState(*hs))
    }
    fn append(&mut self, e: &EntryRef<'_>) -> Result<(), StorageError> {
        self.record(Op::Append {
            index: e.index,
            term: e.term,
            kind: e.kind,
            data: e.data.to_vec(),
        })
    }
    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.record(Op::Truncate(from))
    }
    fn compact_prefix(&mut self, upto: LogIndex) -> Result<(), StorageError> {
        self.record(Op::Compact(upto))
    }
    fn read_entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        buf: &mut [u8],
    ) -> Result<ReadEntries, StorageError> {
        self.inner.read_entries(lo, hi, buf)
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        self.record(Op::Sync)
    }
    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.inner.snapshot_meta()
    }
    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.record(Op::SnapBegin(meta.clone()))
    }
    fn snapshot_write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.record(Op::SnapWrite(offset, data.to_vec()))
    }
    fn snapshot_finish(&mut self) -> Result<(), StorageError> {
        self.record(Op::SnapFinish)
    }
    fn snapshot_read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        self.inner.snapshot_read(offset, buf)
    }
}

/// splitmix64, for test randomness without a dependency.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
