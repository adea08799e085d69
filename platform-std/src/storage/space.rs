//! The data dir's disk space: the reserve the log never takes, the quota, and the `NoSpace`
//! alarm. One [`Space`] is shared by every group of a data dir.
//!
//! The log grows a whole segment at a time (a new segment file, or the zero-filled spare made
//! ahead of it), so that is where space is checked: a segment is created only if the file
//! system keeps at least `reserve_bytes` free after it, and the data dir stays within
//! `quota_bytes`. Otherwise the write that needed the segment is refused with
//! [`StorageError::Full`], which the server answers as `NoSpace`, and the alarm is raised.
//! Writes that fit the segment at hand go on. A real `ENOSPC` anywhere raises the alarm too.
//!
//! The reserve is what keeps a full node working: snapshots, the hard state and truncation
//! intents may use it, so a node whose log cannot grow still votes, and still takes the
//! snapshot that lets it drop old segments. The spare segment is made only above the reserve
//! and stops if the free space falls under it while it is being filled.
//!
//! The alarm clears by itself: once raised, free space is measured again every `recheck`
//! (by [`Space::recheck`], which the server calls periodically, and by the next write that
//! needs a segment), and the alarm drops when a segment fits again. Between checks a write
//! that needs a segment is refused without a system call.
//!
//! Never: refuse a write that fits the current segment, or refuse a snapshot for the quota
//! (a snapshot is how a full log frees space).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use shoal_core::storage::StorageError;

/// Default free space the log leaves on the file system (`--space-reserve-mb`).
pub const DEFAULT_RESERVE_BYTES: u64 = 128 << 20;
/// Default time between free-space checks while the alarm is raised
/// (`--space-recheck-interval`).
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(1);

/// The space limits of a data dir. `Default` gives the production values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaceLimits {
    /// Free bytes the log never takes: a segment (or spare) is created only if at least this
    /// much stays free after it. Default 128 MiB.
    pub reserve_bytes: u64,
    /// Most bytes of files in the data dir (logs, snapshots, spares); 0 is no quota. A new
    /// segment that would pass it is refused. Default 0.
    pub quota_bytes: u64,
    /// While the alarm is raised, how often free space is measured again. Default 1 s.
    pub recheck: Duration,
}

impl Default for SpaceLimits {
    fn default() -> Self {
        SpaceLimits {
            reserve_bytes: DEFAULT_RESERVE_BYTES,
            quota_bytes: 0,
            recheck: DEFAULT_RECHECK,
        }
    }
}

/// Why writes that need space are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpaceAlarm {
    /// The file system is full, or would keep less than the reserve free.
    NoSpace,
    /// The data dir reached its quota.
    Quota,
}

impl SpaceAlarm {
    /// A short name for JSON and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            SpaceAlarm::NoSpace => "no_space",
            SpaceAlarm::Quota => "quota",
        }
    }

    fn code(alarm: Option<SpaceAlarm>) -> u8 {
        match alarm {
            None => 0,
            Some(SpaceAlarm::NoSpace) => 1,
            Some(SpaceAlarm::Quota) => 2,
        }
    }

    fn from_code(c: u8) -> Option<SpaceAlarm> {
        match c {
            1 => Some(SpaceAlarm::NoSpace),
            2 => Some(SpaceAlarm::Quota),
            _ => None,
        }
    }
}

/// What [`Space::stats`] reports (for `/status`, `/health` and `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SpaceStats {
    /// The alarm, if raised.
    pub alarm: Option<SpaceAlarm>,
    /// Free bytes on the file system at the last measurement.
    pub free_bytes: u64,
    /// Bytes of files in the data dir at the last measurement (measured when a quota is set,
    /// and by [`Space::recheck`]).
    pub used_bytes: u64,
    /// The limits in force.
    pub reserve_bytes: u64,
    /// The quota (0: none).
    pub quota_bytes: u64,
    /// How often a raised alarm measures again, in milliseconds.
    pub recheck_ms: u64,
    /// Times the alarm was raised.
    pub alarms_raised: u64,
    /// Writes refused because a segment did not fit (or the file system said `ENOSPC`).
    pub refused_writes: u64,
    /// Spare segments not made (or given up) because they would have eaten into the reserve.
    pub spares_skipped: u64,
}

/// Measurements and the next time to take them.
#[derive(Debug)]
struct Measured {
    /// Bytes the refused growth needed (what must fit for the alarm to clear).
    need_bytes: u64,
    /// While the alarm is raised: no measurement before this.
    next_check: Option<Instant>,
    free_bytes: u64,
    used_bytes: u64,
    /// When `used_bytes` was last measured by walking the data dir.
    used_at: Option<Instant>,
}

/// How often [`Space::recheck`] walks the whole data dir to refresh the used bytes it reports:
/// the walk stats every file of every group, a cost that grows with the groups hosted.
pub const USED_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

/// The space policy of one data dir; see the [module docs](self).
#[derive(Debug)]
pub struct Space {
    root: PathBuf,
    limits: SpaceLimits,
    /// `SpaceAlarm::code` of the alarm: read without the lock on every check.
    alarm: AtomicU8,
    measured: Mutex<Measured>,
    alarms_raised: AtomicU64,
    refused_writes: AtomicU64,
    spares_skipped: AtomicU64,
}

impl Space {
    /// The space policy of the data dir at `root`.
    pub fn new(root: &Path, limits: SpaceLimits) -> Arc<Space> {
        Arc::new(Space {
            root: root.to_path_buf(),
            limits,
            alarm: AtomicU8::new(0),
            measured: Mutex::new(Measured {
                need_bytes: 0,
                next_check: None,
                free_bytes: 0,
                used_bytes: 0,
                used_at: None,
            }),
            alarms_raised: AtomicU64::new(0),
            refused_writes: AtomicU64::new(0),
            spares_skipped: AtomicU64::new(0),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> SpaceLimits {
        self.limits
    }

    /// The alarm, if raised.
    pub fn alarm(&self) -> Option<SpaceAlarm> {
        SpaceAlarm::from_code(self.alarm.load(Ordering::Relaxed))
    }

    /// Counters and the last measurements.
    pub fn stats(&self) -> SpaceStats {
        let m = self.lock();
        SpaceStats {
            alarm: self.alarm(),
            free_bytes: m.free_bytes,
            used_bytes: m.used_bytes,
            reserve_bytes: self.limits.reserve_bytes,
            quota_bytes: self.limits.quota_bytes,
            recheck_ms: self.limits.recheck.as_millis() as u64,
            alarms_raised: self.alarms_raised.load(Ordering::Relaxed),
            refused_writes: self.refused_writes.load(Ordering::Relaxed),
            spares_skipped: self.spares_skipped.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Measured> {
        // Plain numbers behind the lock: a panic elsewhere cannot leave them half-written.
        self.measured.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May the log grow by `bytes` (a new segment)? Refused with [`StorageError::Full`] (and
    /// the alarm raised) when the reserve or the quota would be passed; while the alarm is
    /// raised and not due for a new measurement, refused without a system call.
    pub(crate) fn check_grow(&self, bytes: u64) -> Result<(), StorageError> {
        let mut m = self.lock();
        if self.alarm().is_some() && m.next_check.is_some_and(|t| Instant::now() < t) {
            drop(m);
            self.refused_writes.fetch_add(1, Ordering::Relaxed);
            return Err(StorageError::Full);
        }
        match self.measure(&mut m, bytes) {
            None => {
                self.clear(&mut m);
                Ok(())
            }
            Some(alarm) => {
                self.raise(&mut m, alarm, bytes, "a new log segment does not fit");
                drop(m);
                self.refused_writes.fetch_add(1, Ordering::Relaxed);
                Err(StorageError::Full)
            }
        }
    }

    /// Whether the log could grow by `bytes` now, asked without raising the alarm or counting
    /// a refusal.
    pub(crate) fn fits(&self, bytes: u64) -> bool {
        self.alarm().is_none() && self.measure(&mut self.lock(), bytes).is_none()
    }

    /// May a spare segment of `bytes` be made? Never raises the alarm (a spare only saves
    /// time); a refusal is counted.
    pub(crate) fn spare_fits(&self, bytes: u64) -> bool {
        if self.alarm().is_some() {
            self.spares_skipped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let fits = self.measure(&mut self.lock(), bytes).is_none();
        if !fits {
            self.spares_skipped.fetch_add(1, Ordering::Relaxed);
        }
        fits
    }

    /// Whether `bytes` more can still be written above the reserve (a spare being filled asks
    /// before each step; the caller counts a refusal with [`Space::spare_given_up`]).
    pub(crate) fn above_reserve(&self, bytes: u64) -> bool {
        match free_bytes(&self.root) {
            Ok(free) => free >= bytes.saturating_add(self.limits.reserve_bytes),
            Err(_) => true,
        }
    }

    /// A spare being filled was given up (the free space fell under the reserve).
    pub(crate) fn spare_given_up(&self) {
        self.spares_skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// The file system answered `ENOSPC` (or `EDQUOT`) to a write at `path`: raise the alarm;
    /// it clears once a segment of `need_bytes` fits again.
    pub(crate) fn out_of_space(&self, path: &Path, need_bytes: u64) {
        self.refused_writes.fetch_add(1, Ordering::Relaxed);
        let mut m = self.lock();
        let why = format!("the file system is full (writing {})", path.display());
        self.raise(&mut m, SpaceAlarm::NoSpace, need_bytes, &why);
    }

    /// Measure again if the alarm is raised and a check is due; clear it when the growth it
    /// waits for fits. Also refreshes the figures [`Space::stats`] reports (the used bytes at
    /// most every [`USED_REFRESH`]).
    pub fn recheck(&self) {
        let mut m = self.lock();
        let due = m.next_check.is_none_or(|t| Instant::now() >= t);
        if self.alarm().is_none() || !due {
            if let Ok(free) = free_bytes(&self.root) {
                m.free_bytes = free;
            }
            if m.used_at.is_none_or(|t| t.elapsed() >= USED_REFRESH) {
                m.used_bytes = dir_bytes(&self.root);
                m.used_at = Some(Instant::now());
            }
            return;
        }
        let need = m.need_bytes;
        match self.measure(&mut m, need) {
            None => self.clear(&mut m),
            Some(_) => m.next_check = Some(Instant::now() + self.limits.recheck),
        }
    }

    /// Which limit `bytes` more would pass, if any (measuring free space, and usage when a
    /// quota is set). A file system that cannot be measured is not held against the write.
    fn measure(&self, m: &mut Measured, bytes: u64) -> Option<SpaceAlarm> {
        if let Ok(free) = free_bytes(&self.root) {
            m.free_bytes = free;
            if free < bytes.saturating_add(self.limits.reserve_bytes) {
                return Some(SpaceAlarm::NoSpace);
            }
        }
        if self.limits.quota_bytes > 0 {
            m.used_bytes = dir_bytes(&self.root);
            m.used_at = Some(Instant::now());
            if m.used_bytes.saturating_add(bytes) > self.limits.quota_bytes {
                return Some(SpaceAlarm::Quota);
            }
        }
        None
    }

    fn raise(&self, m: &mut Measured, alarm: SpaceAlarm, need_bytes: u64, why: &str) {
        let was = self
            .alarm
            .swap(SpaceAlarm::code(Some(alarm)), Ordering::Relaxed);
        m.need_bytes = m.need_bytes.max(need_bytes);
        m.next_check = Some(Instant::now() + self.limits.recheck);
        if was == 0 {
            self.alarms_raised.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "{}: space alarm `{}`: {why}; {} bytes free, reserve {} (--space-reserve-mb), \
                 {} bytes used, quota {} (--space-quota-mb, 0: none). Writes that need a new log \
                 segment are refused with NoSpace until space returns; reads, votes and \
                 snapshots go on",
                self.root.display(),
                alarm.name(),
                m.free_bytes,
                self.limits.reserve_bytes,
                m.used_bytes,
                self.limits.quota_bytes
            );
        }
    }

    fn clear(&self, m: &mut Measured) {
        m.need_bytes = 0;
        m.next_check = None;
        if self.alarm.swap(0, Ordering::Relaxed) != 0 {
            log::info!(
                "{}: space returned ({} bytes free): the space alarm is cleared and writes are \
                 taken again",
                self.root.display(),
                m.free_bytes
            );
        }
    }
}

/// Free bytes for an unprivileged writer on the file system holding `path`.
pub(crate) fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path holds a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path that outlives the call, and `st` is a properly
    // sized, writable statvfs the kernel fills in before it is read.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    // The field types are 32 bits wide on some targets.
    #[allow(clippy::useless_conversion)]
    let (blocks, size) = (u64::from(st.f_bavail), u64::from(st.f_frsize));
    Ok(blocks.saturating_mul(size))
}

/// Bytes of the files under `dir` (a data dir is three levels deep: group, log or snap, file).
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    fn walk(dir: &Path, depth: u32) -> u64 {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return 0;
        };
        rd.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() && depth > 0 => walk(&e.path(), depth - 1),
                Ok(m) if m.is_file() => m.len(),
                _ => 0,
            })
            .sum()
    }
    walk(dir, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(reserve_bytes: u64, quota_bytes: u64) -> SpaceLimits {
        SpaceLimits {
            reserve_bytes,
            quota_bytes,
            recheck: Duration::ZERO,
        }
    }

    #[test]
    fn growth_is_refused_under_the_reserve_and_the_alarm_clears_when_it_fits() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        // A reserve larger than the disk: nothing fits.
        let s = Space::new(dir.path(), limits(free + (1 << 30), 0));
        assert_eq!(s.check_grow(1 << 20), Err(StorageError::Full));
        assert_eq!(s.alarm(), Some(SpaceAlarm::NoSpace));
        assert!(!s.spare_fits(1 << 20), "no spare under an alarm");
        let st = s.stats();
        assert_eq!(
            (st.alarms_raised, st.refused_writes, st.spares_skipped),
            (1, 1, 1)
        );
        // The same limits with no reserve: the next check clears it.
        let s = Space::new(dir.path(), limits(0, 0));
        s.out_of_space(dir.path(), 1 << 20);
        assert_eq!(s.alarm(), Some(SpaceAlarm::NoSpace));
        s.recheck();
        assert_eq!(
            s.alarm(),
            None,
            "space is there: the alarm clears by itself"
        );
        assert_eq!(s.check_grow(1 << 20), Ok(()));
    }

    #[test]
    fn the_quota_counts_every_file_of_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("group-0").join("log");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::write(log.join("a.log"), vec![1u8; 3000]).unwrap();
        let s = Space::new(dir.path(), limits(0, 4000));
        assert_eq!(s.check_grow(900), Ok(()));
        assert_eq!(s.check_grow(1001), Err(StorageError::Full));
        assert_eq!(s.alarm(), Some(SpaceAlarm::Quota));
        std::fs::remove_file(log.join("a.log")).unwrap();
        s.recheck();
        assert_eq!(s.alarm(), None);
    }

    #[test]
    fn while_the_alarm_waits_for_its_recheck_writes_are_refused_without_measuring() {
        let dir = tempfile::tempdir().unwrap();
        let s = Space::new(
            dir.path(),
            SpaceLimits {
                recheck: Duration::from_secs(3600),
                ..limits(0, 0)
            },
        );
        s.out_of_space(dir.path(), 1);
        // Space is there, but the next measurement is an hour away.
        assert_eq!(s.check_grow(1), Err(StorageError::Full));
        s.recheck();
        assert_eq!(s.alarm(), Some(SpaceAlarm::NoSpace));
    }
}
