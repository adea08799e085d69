//! A [`Storage`] decorator that times every `sync` into the fsync latency histogram of
//! `/metrics`. Everything else is forwarded unchanged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use shoal_core::storage::{Decorated, Storage, StorageError, StorageHooks};

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

/// [`FileStorage`] whose syncs are timed into the shared fsync histogram (the histogram is the
/// decorator's only hook); build it with `TimedStorage::new(storage, histogram)`.
pub type TimedStorage = Decorated<FileStorage, Arc<Histogram>>;

impl StorageHooks<FileStorage> for Arc<Histogram> {
    #[inline]
    fn sync(&mut self, inner: &mut FileStorage) -> Result<(), StorageError> {
        let t = Instant::now();
        let r = inner.sync();
        self.observe_us(t.elapsed().as_micros() as u64);
        r
    }
}
