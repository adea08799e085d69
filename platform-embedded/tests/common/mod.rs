//! Test support: a `Storage` wrapper that remembers every write since the last durable point,
//! so that a power cut can be placed anywhere inside that unsynced tail and replayed exactly.
#![allow(dead_code)]

use embedded_storage::nor_flash::NorFlash;
use shoal_core::entry::EntryRef;
use shoal_core::storage::{Decorated, Storage, StorageError, StorageHooks};
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

/// A `FlashStorage` (`inner`) plus a copy of itself (RAM and flash) taken at the last durable
/// point (`sync` or `snapshot_finish` returning `Ok`) and the writes made since (`hooks`).
pub type Recorded<F, const N: usize> = Decorated<FlashStorage<F, N>, Recorder<F, N>>;

/// Start recording `inner`: its present state is the first checkpoint.
pub fn recorded<F: NorFlash + Clone, const N: usize>(inner: FlashStorage<F, N>) -> Recorded<F, N> {
    let checkpoint = inner.clone();
    Decorated::new(
        inner,
        Recorder {
            checkpoint,
            ops: Vec::new(),
        },
    )
}

/// The recording half of a [`Recorded`] storage.
#[derive(Clone)]
pub struct Recorder<F, const N: usize> {
    pub checkpoint: FlashStorage<F, N>,
    pub ops: Vec<Op>,
}

impl<F: NorFlash + Clone, const N: usize> Recorder<F, N> {
    fn record(&mut self, inner: &mut Flash<F, N>, op: Op) -> Written {
        let r = apply(inner, &op);
        let durable = matches!(op, Op::Sync | Op::SnapFinish) && r.is_ok();
        if durable {
            self.checkpoint = inner.clone();
            self.ops.clear();
        } else {
            self.ops.push(op);
        }
        r
    }
}

/// The storage a [`Recorder`] wraps, and what each of its writes returns (for short hooks).
type Flash<F, const N: usize> = FlashStorage<F, N>;
type Written = Result<(), StorageError>;

impl<F: NorFlash + Clone, const N: usize> StorageHooks<Flash<F, N>> for Recorder<F, N> {
    fn save_hard_state(&mut self, inner: &mut Flash<F, N>, hs: &HardState) -> Written {
        self.record(inner, Op::SaveHardState(*hs))
    }
    fn append(&mut self, inner: &mut Flash<F, N>, e: &EntryRef<'_>) -> Written {
        let op = Op::Append {
            index: e.index,
            term: e.term,
            kind: e.kind,
            data: e.data.to_vec(),
        };
        self.record(inner, op)
    }
    fn truncate_suffix(&mut self, inner: &mut Flash<F, N>, from: LogIndex) -> Written {
        self.record(inner, Op::Truncate(from))
    }
    fn compact_prefix(&mut self, inner: &mut Flash<F, N>, upto: LogIndex) -> Written {
        self.record(inner, Op::Compact(upto))
    }
    fn sync(&mut self, inner: &mut Flash<F, N>) -> Written {
        self.record(inner, Op::Sync)
    }
    fn snapshot_begin(&mut self, inner: &mut Flash<F, N>, meta: &SnapshotMeta) -> Written {
        self.record(inner, Op::SnapBegin(meta.clone()))
    }
    fn snapshot_write(&mut self, inner: &mut Flash<F, N>, offset: u64, data: &[u8]) -> Written {
        self.record(inner, Op::SnapWrite(offset, data.to_vec()))
    }
    fn snapshot_finish(&mut self, inner: &mut Flash<F, N>) -> Written {
        self.record(inner, Op::SnapFinish)
    }
}

/// splitmix64, for test randomness without a dependency.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
