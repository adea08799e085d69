//! A [`Storage`] decorator that times every `sync` into the fsync latency histogram of
//! `/metrics`. Everything else is forwarded unchanged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use shoal_core::storage::{Decorated, Storage, StorageError, StorageHooks};

use crate::storage::{FileStorage, FsyncMode};

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
    /// Of the observations, syncs of the data dir's filesystem that covered several groups
    /// (`--shared-sync`).
    pub shared: AtomicU64,
    /// Of the `shared` syncs, those made by one fdatasync of the sync journal.
    pub journal: AtomicU64,
    /// Times the sync journal was full and wrapped (with a sync of the filesystem).
    pub journal_wraps: AtomicU64,
    /// The syncs the sync threads are running now.
    pub running: SyncsRunning,
    /// When the raft loop last published the node's view.
    pub loop_beat: LoopBeat,
}

/// When the raft loop last published the node's view (every 100 ms while it runs), kept apart
/// from the view so that the admin port reads it without the view's lock: a loop stuck while it
/// holds that lock must not hold up `/health` too.
#[derive(Debug, Default)]
pub struct LoopBeat {
    /// Microseconds of [`now_us`]; zero before the first view.
    at_us: AtomicU64,
    node_id: AtomicU64,
    /// Shutdown started: a stopping node may take its time and is not called stalled.
    stopping: std::sync::atomic::AtomicBool,
}

impl LoopBeat {
    /// The loop published a view of node `node_id` now.
    pub fn beat(&self, node_id: u64, running: bool) {
        self.beat_ago(node_id, running, std::time::Duration::ZERO);
    }

    /// The loop published its last view `ago` (tests: a loop stuck for a while).
    pub(crate) fn beat_ago(&self, node_id: u64, running: bool, ago: std::time::Duration) {
        self.node_id.store(node_id, Ordering::Relaxed);
        self.stopping.store(!running, Ordering::Relaxed);
        let at = now_us().saturating_sub(ago.as_micros() as u64);
        self.at_us.store(at, Ordering::Relaxed);
    }

    /// Time since the last view, if one was published.
    pub fn age(&self) -> Option<std::time::Duration> {
        let at = self.at_us.load(Ordering::Relaxed);
        (at != 0).then(|| std::time::Duration::from_micros(now_us().saturating_sub(at)))
    }

    /// The node the views are of.
    pub fn node_id(&self) -> u64 {
        self.node_id.load(Ordering::Relaxed)
    }

    /// Milliseconds since the last view once that is past `after`, unless shutdown started.
    pub fn stalled_ms(&self, after: std::time::Duration) -> Option<u64> {
        if self.stopping.load(Ordering::Relaxed) {
            return None;
        }
        let age = self.age()?;
        (age > after).then_some(age.as_millis() as u64)
    }
}

/// When each sync thread's current sync started, so that the admin port can tell a disk that
/// stopped answering (a sync that does not return) also while the raft loop goes on.
#[derive(Debug, Default)]
pub struct SyncsRunning {
    /// Per sync thread: when its sync started ([`now_us`]); zero while it runs
    /// none.
    since: [AtomicU64; 4],
}

impl SyncsRunning {
    /// Sync thread `slot` starts a sync.
    pub fn start(&self, slot: usize) {
        self.started_ago(slot, std::time::Duration::ZERO);
    }

    /// Sync thread `slot` started a sync `ago` (tests: a sync that has run for a while).
    pub(crate) fn started_ago(&self, slot: usize, ago: std::time::Duration) {
        let us = now_us().saturating_sub(ago.as_micros() as u64);
        self.since[slot % self.since.len()].store(us, Ordering::Relaxed);
    }

    /// Sync thread `slot`'s sync returned.
    pub fn end(&self, slot: usize) {
        self.since[slot % self.since.len()].store(0, Ordering::Relaxed);
    }

    /// How long the oldest sync running now has run, if one is.
    pub fn oldest(&self) -> Option<std::time::Duration> {
        let now = now_us();
        let first = self
            .since
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|s| *s != 0)
            .min()?;
        Some(std::time::Duration::from_micros(now.saturating_sub(first)))
    }
}

/// Microseconds since [`epoch`], from an hour on: never zero (zero means "none" in
/// [`SyncsRunning`] and [`LoopBeat`]), and a time an hour back can be told.
fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64 + 3_600_000_000
}

/// The instant [`now_us`] counts from (its first use).
fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

impl Histogram {
    /// Count a shared sync made through the sync journal, by how it went.
    pub fn journal_sync(&self, how: crate::storage::journal::JournalSync) {
        use crate::storage::journal::JournalSync;
        let count = match how {
            JournalSync::Synced => &self.journal,
            JournalSync::Wrapped => &self.journal_wraps,
            JournalSync::Filesystem => return,
        };
        count.fetch_add(1, Ordering::Relaxed);
    }

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
        if inner.options().fsync == FsyncMode::Never {
            // Hands the writes to the OS and syncs nothing: not an fsync to count.
            return inner.sync();
        }
        let t = Instant::now();
        let r = inner.sync();
        self.observe_us(t.elapsed().as_micros() as u64);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageOptions;

    /// Only a sync that reaches the device is an fsync on `/metrics`.
    #[test]
    fn syncs_are_timed_unless_nothing_is_synced() {
        for (fsync, counted) in [(FsyncMode::Always, 1), (FsyncMode::Never, 0)] {
            let dir = tempfile::tempdir().unwrap();
            let opts = StorageOptions {
                fsync,
                ..StorageOptions::default()
            };
            let hist = Arc::new(Histogram::default());
            let store = FileStorage::open(dir.path(), 1, &opts).unwrap();
            let mut timed = TimedStorage::new(store, hist.clone());
            timed.sync().unwrap();
            assert_eq!(hist.count.load(Ordering::Relaxed), counted, "{fsync:?}");
        }
    }
}
