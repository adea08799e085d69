//! A [`Storage`] wrapper that times every `sync` into the fsync latency histogram of
//! `/metrics`. Everything else is delegated unchanged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use shoal_core::entry::EntryRef;
use shoal_core::storage::{LogView, ReadEntries, Storage, StorageError};
use shoal_core::types::{HardState, LogIndex, SnapshotMeta, Term};

use crate::storage::FileStorage;

/// Upper bounds (µs) of the fsync latency histogram buckets (`+Inf` is implied).
pub const FSYNC_BUCKETS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// A latency histogram shared with the admin server.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Counts per bucket (`FSYNC_BUCKETS_US.len() + 1`, the last is `+Inf`).
    pub buckets: [AtomicU64; 13],
    /// Sum of observations in µs.
    pub sum_us: AtomicU64,
    /// Number of observations.
    pub count: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe_us(&self, us: u64) {
        let i = FSYNC_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(FSYNC_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// [`FileStorage`] with timed syncs.
pub struct TimedStorage {
    /// The storage.
    pub inner: FileStorage,
    hist: Arc<Histogram>,
}

impl TimedStorage {
    /// Wrap `inner`, recording into `hist`.
    pub fn new(inner: FileStorage, hist: Arc<Histogram>) -> Self {
        TimedStorage { inner, hist }
    }
}

impl LogView for TimedStorage {
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

impl Storage for TimedStorage {
    fn hard_state(&self) -> HardState {
        self.inner.hard_state()
    }
    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.inner.save_hard_state(hs)
    }
    fn append(&mut self, entry: &EntryRef<'_>) -> Result<(), StorageError> {
        self.inner.append(entry)
    }
    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.inner.truncate_suffix(from)
    }
    fn compact_prefix(&mut self, upto: LogIndex) -> Result<(), StorageError> {
        self.inner.compact_prefix(upto)
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
        let t = Instant::now();
        let r = self.inner.sync();
        self.hist.observe_us(t.elapsed().as_micros() as u64);
        r
    }
    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.inner.snapshot_meta()
    }
    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.inner.snapshot_begin(meta)
    }
    fn snapshot_write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.inner.snapshot_write(offset, data)
    }
    fn snapshot_finish(&mut self) -> Result<(), StorageError> {
        self.inner.snapshot_finish()
    }
    fn snapshot_read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        self.inner.snapshot_read(offset, buf)
    }
}
