//! The file-backed [`Storage`] of the `shoald` server, and the offline reading API ([`scan`])
//! that `shoal-inspect` and other tools read a data dir with.
//!
//! # Data dir
//!
//! ```text
//! DATA_DIR/
//!   identity                      cluster id, node id, raft address (checked at every start)
//!   group-<N>/
//!     hardstate                   two alternating slots (term, vote, commit)
//!     log/<first index:020>.log   preallocated segments: header record, then one record per entry
//!     log/truncate                present only while a truncation is in progress
//!     snap/<index:020>-<term:020>.snap   metadata record, then the snapshot data
//!     addrbook                    members' raft and client addresses ([`addrbook`])
//! ```
//!
//! The byte layout is specified in `docs/FORMAT.md`. Open a data dir with [`DataDir::bootstrap`]
//! (first start) or [`DataDir::open`] (every later start), then each group with
//! [`DataDir::open_group`]. Tools read without opening for write through [`scan`], the
//! documented offline reading API.
//!
//! # Durability (the contract of `shoal_core::storage`, rule by rule)
//!
//! 1. The hard state is written to the slot that does not hold the newest durable value and
//!    fdatasynced by `sync` (`always`). In `async` mode a change of term or vote is still
//!    fdatasynced before `sync` returns; only a commit-hint change waits for a later sync.
//! 2. `sync` writes the write buffer and fdatasyncs the last segment (`always`: before it
//!    returns — one fdatasync covers every append before it, i.e. group commit; `async`: in the
//!    background at most `async_sync_interval` later; `never`: not at all).
//! 3. Appends land in the write buffer and are read from it at once.
//! 4. Writes within a segment are sequential; a torn last record fails its CRC and is cut at
//!    open. Every segment but the last is fdatasynced when the log rolls over, so only the last
//!    one can have a torn tail.
//! 5. A truncation that cuts bytes already handed to the OS writes a durable intent file, zeroes
//!    the cut bytes, fdatasyncs, deletes later segments and removes the intent before returning;
//!    recovery completes an interrupted one. New entries are only written after that.
//! 6. Snapshots are written to a temp file, fdatasynced, renamed and the directory fsynced.
//! 7. `compact_prefix` clamps to the snapshot index and deletes whole segments only.
//! 8. Damage other than a torn tail stops [`FileStorage::open`] with [`OpenError::Corrupt`].
//!
//! # What `async` mode can lose
//!
//! After a power failure (not a process crash: the OS keeps written data then), `async` mode can
//! lose log entries written by `sync` calls in the last `async_sync_interval` plus the duration
//! of one fdatasync, always as a suffix of the log, and the commit hint saved in that window.
//! Terms and votes are never lost, and a truncation or snapshot install is durable when it
//! returns. A follower may therefore have acknowledged entries it no longer has; a cluster stays
//! safe while fewer than a quorum of nodes lose power at the same moment.

pub mod addrbook;
mod datadir;
mod error;
pub mod export;
pub mod fs_sync;
mod fsutil;
mod hardstate;
mod identity;
mod ioerr;
pub mod journal;
mod lock;
pub mod scan;
mod seglog;
mod segment;
mod snapshot;
pub mod space;
mod syncer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_refusals;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shoal_core::driver::SnapshotPlan;
use shoal_core::entry::EntryRef;
use shoal_core::storage::{LogView, ReadEntries, Result, Storage, StorageError};
use shoal_core::types::{GroupId, HardState, LogIndex, SnapshotMeta, Term};

pub use datadir::{group_dir, DataDir};
pub use error::OpenError;
pub use identity::{Identity, IdentityCheck};
pub use lock::{DirLock, LOCK_FILE};

use self::hardstate::HardStateStore;
pub use self::seglog::BackgroundSync;
use self::seglog::{Log, LogConfig};
use self::snapshot::Snapshots;
pub use self::snapshot::{SnapshotJob, SnapshotJobError, WrittenSnapshot};
use self::space::{Space, SpaceLimits};
use self::syncer::Syncer;

/// When `sync` makes writes durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncMode {
    /// `sync` returns after fdatasync: nothing acknowledged is lost on power failure.
    #[default]
    Always,
    /// `sync` returns after handing the data to the OS; a background thread fdatasyncs at most
    /// [`StorageOptions::async_sync_interval`] later. See the module docs for what can be lost.
    Async,
    /// Never fdatasync (tests and benchmarks only): a power failure can lose anything.
    Never,
}

/// Default size of a log segment (64 MiB).
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Default size of a log's first segment (32 KiB).
pub const DEFAULT_INITIAL_SEGMENT_BYTES: u64 = 32 << 10;
/// Smallest segment size accepted (4 KiB).
pub const MIN_SEGMENT_BYTES: u64 = 4 << 10;
/// Largest segment size accepted (1 GiB; record offsets are kept as `u32`).
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// How one group's storage behaves. `Default` gives the production values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageOptions {
    /// When `sync` makes writes durable. Default [`FsyncMode::Always`].
    pub fsync: FsyncMode,
    /// Preallocated size of each log segment; a segment holds at least one entry, so an entry
    /// larger than this gets a segment of its own. Default 64 MiB; 4 KiB..=1 GiB.
    pub segment_bytes: u64,
    /// Size of a log's first segment (and of the one a log restarts with after a snapshot
    /// install); each next segment is twice the last, up to `segment_bytes`, and only a busy
    /// log gets a spare, so a new or idle group takes kilobytes of disk. Default 32 KiB;
    /// 4 KiB..=`segment_bytes` (larger is taken as `segment_bytes`).
    pub initial_segment_bytes: u64,
    /// Appends are collected in a buffer of this size and written with one `pwrite` when it
    /// fills or at `sync`. Default 256 KiB.
    pub write_buffer_bytes: usize,
    /// In [`FsyncMode::Async`], the longest time between a `sync` and its fdatasync.
    /// Default 10 ms.
    pub async_sync_interval: Duration,
    /// Finished snapshots kept on disk, the current one included (at least 1). Default 2.
    pub keep_snapshots: usize,
    /// How long a segment that `compact_prefix` made obsolete stays on disk before a later
    /// `compact_prefix` deletes it (for example to let a slow follower or a backup read it).
    /// Default 0: deleted by the call that made it obsolete.
    pub compact_delay: Duration,
    /// Zero-fill each next segment in the background (see FORMAT.md) so that fdatasyncs of a
    /// segment flush data only. Default true; turn it off where every byte written counts more
    /// than fdatasync latency (an SD card's wear), or with fsync `never`, where it is skipped.
    pub prefill_segments: bool,
    /// The data dir's space limits (reserve, quota; see [`space`]). A [`DataDir`] applies the
    /// limits of the first group it opens to all of them.
    pub space: SpaceLimits,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            fsync: FsyncMode::Always,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            initial_segment_bytes: DEFAULT_INITIAL_SEGMENT_BYTES,
            write_buffer_bytes: 256 << 10,
            async_sync_interval: Duration::from_millis(10),
            keep_snapshots: 2,
            compact_delay: Duration::ZERO,
            prefill_segments: true,
            space: SpaceLimits::default(),
        }
    }
}

impl StorageOptions {
    /// Check every value is in its allowed range.
    pub fn validate(&self) -> Result<(), OpenError> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(OpenError::BadOption {
                name: "segment_bytes",
                detail: format!(
                    "{} is outside {}..={}",
                    self.segment_bytes, MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES
                ),
            });
        }
        if self.initial_segment_bytes < MIN_SEGMENT_BYTES {
            return Err(OpenError::BadOption {
                name: "initial_segment_bytes",
                detail: format!(
                    "{} is below {}",
                    self.initial_segment_bytes, MIN_SEGMENT_BYTES
                ),
            });
        }
        if self.write_buffer_bytes == 0 {
            return Err(OpenError::BadOption {
                name: "write_buffer_bytes",
                detail: "must be at least 1".into(),
            });
        }
        if self.keep_snapshots == 0 {
            return Err(OpenError::BadOption {
                name: "keep_snapshots",
                detail: "must be at least 1 (the current snapshot)".into(),
            });
        }
        Ok(())
    }
}

/// One group's durable state in files. See the module docs.
pub struct FileStorage {
    group_dir: PathBuf,
    opts: StorageOptions,
    hs: HardStateStore,
    hard_state: HardState,
    /// Saved since the last sync.
    hs_dirty: bool,
    /// A commit hint saved ([`Storage::save_commit_hint`]) and not yet written: written with
    /// the next write of the log, synced by whatever sync comes next.
    hint_dirty: bool,
    /// The hard state last made durable.
    hs_durable: HardState,
    log: Log,
    snaps: Snapshots,
    syncer: Option<Syncer>,
    space: Arc<Space>,
    /// An IO error left the files in an unknown state: refuse further writes.
    poisoned: bool,
    /// Dropped by a simulated power cut: do not flush on drop.
    crashed: bool,
}

impl std::fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStorage")
            .field("group_dir", &self.group_dir)
            .field("snapshot_index", &self.snapshot_index())
            .field("first_index", &self.log.first_index())
            .field("last_index", &self.last_index())
            .field("segments", &self.log.segs.len())
            .field("fsync", &self.opts.fsync)
            .finish()
    }
}

impl FileStorage {
    /// Open (creating if new) the storage of `group` in `data_dir`, running recovery: partial
    /// snapshots are deleted, a torn log tail is cut, an interrupted truncation or snapshot
    /// install is completed, and any other damage is refused with [`OpenError::Corrupt`].
    ///
    /// This does not check the data dir's identity; use [`DataDir`] for that. The storage has
    /// a space policy of its own ([`DataDir::open_group`] shares one between groups).
    pub fn open(
        data_dir: &Path,
        group: GroupId,
        opts: &StorageOptions,
    ) -> Result<FileStorage, OpenError> {
        Self::open_in(data_dir, group, opts, Space::new(data_dir, opts.space))
    }

    fn open_in(
        data_dir: &Path,
        group: GroupId,
        opts: &StorageOptions,
        space: Arc<Space>,
    ) -> Result<FileStorage, OpenError> {
        opts.validate()?;
        let sync = opts.fsync != FsyncMode::Never;
        let gdir = group_dir(data_dir, group);
        fsutil::ensure_dir(&gdir, sync).map_err(|e| OpenError::io(&gdir, "create", e))?;
        let (hs, hard_state) = HardStateStore::open(&gdir, data_dir, sync)?;
        let snaps = Snapshots::open(&gdir.join("snap"), opts.keep_snapshots, sync, space.clone())?;
        let (snap_index, snap_term) = snaps.current().map_or((0, 0), |m| (m.index, m.term));
        let cfg = LogConfig {
            group,
            mode: opts.fsync,
            segment_bytes: opts.segment_bytes,
            initial_segment_bytes: opts.initial_segment_bytes,
            write_buffer_bytes: opts.write_buffer_bytes,
            compact_delay: opts.compact_delay,
            prefill: opts.prefill_segments,
        };
        let mut log = Log::open(
            data_dir,
            &gdir.join("log"),
            cfg,
            space.clone(),
            snap_index + 1,
        )?;
        let first = log.first_index();
        if first > snap_index + 1 {
            return Err(OpenError::corrupt(
                data_dir,
                &log.segs[0].path,
                0,
                format!(
                    "the log starts at index {} but the snapshot ends at index {}; entries {}..={} \
                     are missing",
                    first,
                    snap_index,
                    snap_index + 1,
                    first - 1
                ),
            ));
        }
        if snap_index > 0 && first <= snap_index && log.term(snap_index) != Some(snap_term) {
            // Only an interrupted snapshot_finish leaves a log without the snapshot's entry
            // (it renames the snapshot first, then empties the log): finish it.
            ::log::info!(
                "{}: completing an interrupted snapshot install at index {}",
                gdir.display(),
                snap_index
            );
            log.reset_at_open(snap_index + 1)?;
        }
        let syncer = match opts.fsync {
            FsyncMode::Async => Some(
                Syncer::start(format!("shoal-fsync-g{}", group), opts.async_sync_interval)
                    .map_err(|e| OpenError::io(&gdir, "start the fsync thread for", e))?,
            ),
            _ => None,
        };
        Ok(FileStorage {
            group_dir: gdir,
            opts: opts.clone(),
            hs,
            hard_state,
            hs_dirty: false,
            hint_dirty: false,
            hs_durable: hard_state,
            log,
            snaps,
            syncer,
            space,
            poisoned: false,
            crashed: false,
        })
    }

    /// The group's directory.
    pub fn group_dir(&self) -> &Path {
        &self.group_dir
    }

    /// The options it was opened with.
    pub fn options(&self) -> &StorageOptions {
        &self.opts
    }

    /// Index of the oldest entry still in the log files (it may lie below the snapshot).
    pub fn first_log_index(&self) -> LogIndex {
        self.log.first_index()
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.log.segs.len()
    }

    /// The data dir's space policy this storage follows.
    pub fn space(&self) -> &Arc<Space> {
        &self.space
    }

    fn check_writable(&self) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Io);
        }
        Ok(())
    }

    /// Run `f`; an IO failure poisons the storage (the files' state is then unknown).
    fn guard<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.check_writable()?;
        let r = f(self);
        if matches!(r, Err(StorageError::Io)) {
            ::log::error!(
                "{}: storage failed an IO operation and now refuses writes; restart the node",
                self.group_dir.display()
            );
            self.poisoned = true;
        }
        r
    }

    fn write_hard_state(&mut self) -> Result<(), StorageError> {
        if !self.hs_dirty {
            self.write_hint();
            return Ok(());
        }
        if let Err(e) = self.hs.write(&self.hard_state) {
            let refused = ioerr::refused(&self.space, 0, &self.hs.path, "write", e);
            // Only the commit hint changed: it waits for the next save (it stays dirty) rather
            // than stop the group's writes (the file is opened for each save, and a node out
            // of descriptors must go on with the groups it has).
            let hint_only = self.hard_state.term == self.hs_durable.term
                && self.hard_state.vote == self.hs_durable.vote;
            return if hint_only { Ok(()) } else { Err(refused) };
        }
        self.hs_dirty = false;
        self.hint_dirty = false;
        Ok(())
    }

    /// Write a saved commit hint to the hard-state file, asking for no sync (rule 10). A
    /// refused write (a full medium, no descriptor) leaves it for the next write.
    fn write_hint(&mut self) {
        if !self.hint_dirty {
            return;
        }
        match self.hs.write_hint(&self.hard_state) {
            Ok(()) => self.hint_dirty = false,
            Err(e) => ::log::debug!(
                "{}: writing the commit hint waits: {e}",
                self.hs.path.display()
            ),
        }
    }

    /// Start making the log durable off this thread: writes the buffered records out and
    /// returns the fdatasync to run elsewhere (`None` if nothing is pending, or the fsync mode
    /// is not `always`). Only for a sync the core left to the caller
    /// (`Node::flush_deferred`): the hard state is not touched, it is durable already then.
    ///
    /// With `journal` (a round in which several groups write), the bytes it covers are also
    /// copied into the data dir's sync journal attached by [`FileStorage::attach_journal`], so
    /// that one sync of the journal may stand in for this group's fdatasync
    /// ([`BackgroundSync::journaled`]).
    pub fn begin_background_sync(
        &mut self,
        journal: bool,
    ) -> Result<Option<BackgroundSync>, StorageError> {
        if self.opts.fsync != FsyncMode::Always {
            return Ok(None);
        }
        self.write_hint();
        self.guard(|s| s.log.begin_background_sync(journal))
    }

    /// Let rounds of several groups make this group's new log bytes durable through the data
    /// dir's sync journal ([`journal`]): the journal must have been replayed before this
    /// storage was opened, and the group's dir must be on the data dir's filesystem (the
    /// journal wraps with a sync of that filesystem).
    pub fn attach_journal(&mut self, journal: Arc<journal::Journal>) {
        self.log.journal = Some(journal);
    }

    /// Write everything out for one sync of the whole filesystem shared by several groups
    /// (fsync `always`): the log's buffer and the hard state go to the OS, nothing is synced.
    /// Returns whether anything waits for the device; after that sync succeeded, call
    /// [`FileStorage::shared_synced`] before writing anything else. A refusal (a full medium)
    /// changes nothing durable: the group then syncs by itself, which reports it.
    ///
    /// With `journal`, the log's new bytes are copied into the sync journal too; the second
    /// value says whether one sync of the journal may stand in for the filesystem sync: the
    /// log's bytes are all there and no hard-state save waits (a save is not journaled; it is
    /// rare, a term or vote change or the commit hint every few seconds).
    pub fn write_for_shared_sync(&mut self, journal: bool) -> Result<(bool, bool), StorageError> {
        if self.opts.fsync != FsyncMode::Always {
            return Ok((false, false));
        }
        self.guard(|s| {
            s.write_hard_state()?;
            let hs = s.hs.unsynced();
            let (log, journaled) = s.log.write_for_shared_sync(journal && !hs)?;
            Ok((log || hs, journaled))
        })
    }

    /// The filesystem sync after [`FileStorage::write_for_shared_sync`] succeeded: everything
    /// written is durable, as after [`Storage::sync`].
    ///
    /// `by_journal`: it was one sync of the sync journal, after a
    /// [`FileStorage::write_for_shared_sync`] that said it may be: the log's bytes are durable
    /// through the journal, not in their segment.
    pub fn shared_synced(&mut self, by_journal: bool) {
        if by_journal {
            return;
        }
        self.log.shared_synced();
        self.hs.synced_elsewhere();
        if !self.hs_dirty {
            self.hs_durable = self.hard_state;
        }
    }

    /// Begin a snapshot of the state at `plan` to be written off this thread
    /// ([`SnapshotJob::run`]): the log is written out to the OS here, and the job syncs it
    /// before the snapshot becomes durable. Nothing changes until
    /// [`FileStorage::finish_background_snapshot`]; a snapshot received meanwhile is
    /// unaffected (the job has its own temp file, and a received one begun later ranks
    /// above it).
    pub fn begin_background_snapshot(
        &mut self,
        plan: SnapshotPlan,
    ) -> Result<SnapshotJob, StorageError> {
        let log = self.guard(|s| s.log.begin_background_sync(false))?;
        Ok(self.snaps.background_job(plan, log))
    }

    /// A [`SnapshotJob`] finished: in place and durable, it is made known (current unless a
    /// snapshot received meanwhile is newer) and its metadata returned for
    /// `Node::snapshot_done`; failed, the error to report there (a refusal before the rename
    /// is retried later; a failure after it poisons the storage, as any failed sync does).
    pub fn finish_background_snapshot(
        &mut self,
        done: Result<WrittenSnapshot, SnapshotJobError>,
    ) -> Result<SnapshotMeta, StorageError> {
        match done {
            Ok(written) => {
                if let Some(log) = written.log_sync() {
                    self.log.background_synced(log);
                }
                let meta = written.meta().clone();
                self.snaps.adopt(written);
                Ok(meta)
            }
            Err(e) if e.fatal => {
                self.poisoned = true;
                Err(ioerr::fatal(&e.path, e.what, e.error))
            }
            Err(e) => Err(ioerr::refused(&self.space, 0, &e.path, e.what, e.error)),
        }
    }

    /// A background sync from [`FileStorage::begin_background_sync`] succeeded.
    pub fn background_synced(&mut self, done: &BackgroundSync) {
        self.log.background_synced(done);
    }

    /// Free the memory a busy group keeps for reads of what it just wrote (the group fell
    /// idle; reads go to the file again).
    pub fn release_idle_memory(&mut self) {
        self.log.release_buffer();
    }

    fn sync_hard_state(&mut self) -> Result<(), StorageError> {
        self.hs
            .sync()
            .map_err(|e| ioerr::fatal(&self.hs.path, "fdatasync", e))?;
        if !self.hs_dirty {
            self.hs_durable = self.hard_state;
        }
        Ok(())
    }

    fn sync_inner(&mut self) -> Result<(), StorageError> {
        match self.opts.fsync {
            FsyncMode::Always => {
                self.log.sync_now()?;
                self.write_hard_state()?;
                self.sync_hard_state()
            }
            FsyncMode::Async => {
                let syncer = self.syncer.as_ref().expect("async mode runs a syncer");
                self.log.sync_async(syncer)?;
                let election_changed = self.hard_state.term != self.hs_durable.term
                    || self.hard_state.vote != self.hs_durable.vote;
                self.write_hard_state()?;
                if election_changed {
                    // Rule 1 holds in async mode too: never forget a vote.
                    self.sync_hard_state()?;
                }
                Ok(())
            }
            FsyncMode::Never => {
                self.log.write_out()?;
                self.write_hard_state()
            }
        }
    }
}

impl Drop for FileStorage {
    fn drop(&mut self) {
        if self.crashed {
            return;
        }
        // A clean shutdown: hand everything to the OS and, unless in `never` mode, to the media.
        self.snaps.abandon_incoming();
        if self.poisoned {
            return;
        }
        let r = (|| {
            self.log.write_out()?;
            self.write_hard_state()?;
            if self.opts.fsync != FsyncMode::Never {
                self.log.sync_now()?;
                self.sync_hard_state()?;
            }
            Ok::<(), StorageError>(())
        })();
        if let Err(e) = r {
            ::log::error!("{}: flush at close failed: {}", self.group_dir.display(), e);
        }
    }
}

impl LogView for FileStorage {
    fn snapshot_index(&self) -> LogIndex {
        self.snaps.current().map_or(0, |m| m.index)
    }

    fn last_index(&self) -> LogIndex {
        let last = self.log.last_index();
        debug_assert!(
            last >= self.snapshot_index(),
            "the log ends before the snapshot"
        );
        last
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if index == 0 {
            return Ok(0);
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable(index));
        }
        if let Some(m) = self.snaps.current() {
            if m.index == index {
                return Ok(m.term);
            }
        }
        self.log.term(index).ok_or(StorageError::Compacted(index))
    }
}

impl Storage for FileStorage {
    fn hard_state(&self) -> HardState {
        self.hard_state
    }

    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.check_writable()?;
        self.hard_state = *hs;
        self.hs_dirty = true;
        Ok(())
    }

    /// Written with the next write of the log (or sync), but no sync waits for it: with many
    /// busy groups, a round with a hard-state save to sync cannot go through the sync journal
    /// and syncs the whole filesystem instead.
    fn save_commit_hint(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.check_writable()?;
        self.hard_state = *hs;
        if !self.hs_dirty {
            self.hint_dirty = true;
        }
        Ok(())
    }

    fn append(&mut self, entry: &EntryRef<'_>) -> Result<(), StorageError> {
        StorageError::check_continues(self.last_index(), entry.index)?;
        self.guard(|s| s.log.append(entry))
    }

    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        if from <= self.snapshot_index() {
            // Entries at or below the snapshot are committed; cutting them is a caller bug.
            return Err(StorageError::Compacted(from));
        }
        if from > self.last_index() {
            return Ok(());
        }
        self.guard(|s| s.log.truncate_suffix(from))
    }

    fn compact_prefix(&mut self, upto: LogIndex) -> Result<(), StorageError> {
        // Rule 7: never past the snapshot, whatever the caller asks.
        let upto = upto.min(self.snapshot_index());
        self.guard(|s| s.log.compact(upto))
    }

    fn read_entries(&self, lo: LogIndex, hi: LogIndex, buf: &mut [u8]) -> Result<ReadEntries> {
        let last = self.last_index();
        if lo > last || lo > hi {
            return Err(StorageError::Unavailable(lo));
        }
        if lo < self.log.first_index() {
            return Err(StorageError::Compacted(lo));
        }
        if hi > last {
            return Err(StorageError::Unavailable(hi));
        }
        self.log.read_entries(lo, hi, buf)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.guard(|s| s.sync_inner())
    }

    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.snaps.current().cloned()
    }

    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.guard(|s| s.snaps.begin(meta))
    }

    fn snapshot_write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.guard(|s| s.snaps.write(offset, data))
    }

    fn snapshot_finish(&mut self) -> Result<(), StorageError> {
        let finished = self.guard(|s| {
            let meta = s.snaps.incoming_meta()?;
            // The log lacks the snapshot's last entry: it belongs to another history, and is
            // replaced by a segment made now, while a refusal still changes nothing.
            let replace = match s.log.term(meta.index) != Some(meta.term) {
                true => Some(s.log.prepare_replacement(meta.index + 1)?),
                false => None,
            };
            // The log on disk must agree with what the snapshot keeps of it.
            s.log.sync_now()?;
            s.write_hard_state()?;
            if s.opts.fsync != FsyncMode::Never {
                s.sync_hard_state()?;
            }
            s.snaps.finish()?;
            match replace {
                Some(with) => s.log.reset(with),
                None => Ok(()),
            }
        });
        if finished.is_err() {
            // Refused (or failed) before it became current: discarded whole (rule 9).
            self.snaps.abandon_incoming();
        }
        finished
    }

    fn snapshot_read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        self.snaps.read(offset, buf)
    }
}

/// What a simulated power cut leaves to decide (crash tests only).
#[cfg(test)]
pub(crate) struct CrashImage {
    /// Each segment: path, durable length, written length.
    pub(crate) segments: Vec<(PathBuf, u64, u64)>,
    /// A hard-state save not yet written: the file, the slot it would go to, its bytes.
    pub(crate) hard_state: Option<(PathBuf, usize, [u8; hardstate::HS_SLOT_BYTES])>,
}

#[cfg(test)]
impl FileStorage {
    /// Bytes left in the segment being written (tests).
    pub(crate) fn active_segment_room(&self) -> u64 {
        self.log
            .active_capacity()
            .saturating_sub(self.log.active_end())
    }

    /// Kill the process: whatever the write buffer holds is lost, nothing is flushed or synced
    /// (what was handed to the OS stays).
    pub(crate) fn kill(mut self) {
        self.crashed = true;
        if let Some(s) = self.syncer.take() {
            s.abandon();
        }
        self.snaps.crash();
    }

    /// Bytes of the last segment held for the sync journal and not written to it (tests).
    pub(crate) fn held_bytes(&self) -> u64 {
        self.log.held_bytes()
    }

    /// Cut the power: hand the write buffer to the OS without syncing, forget the snapshot
    /// being written (its temp file stays) and stop without flushing. The caller then decides
    /// what of the unsynced bytes survives, using the returned image.
    pub(crate) fn power_cut(mut self) -> CrashImage {
        self.crashed = true;
        if let Some(s) = self.syncer.take() {
            s.abandon();
        }
        self.snaps.crash();
        let segments = self.log.crash_image();
        let hard_state = (self.hs_dirty || self.hint_dirty).then(|| {
            let (slot, bytes) = self.hs.next_write(&self.hard_state);
            (self.hs.path.clone(), slot, bytes)
        });
        CrashImage {
            segments,
            hard_state,
        }
    }
}
