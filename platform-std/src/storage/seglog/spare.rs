//! The spare: a segment-sized file of written (not merely reserved) zeros, prepared by a thread
//! of its own so that the next segment starts ready.
//!
//! Why: on ext4 and XFS a reserved (`fallocate`d) range is "unwritten"; the first write to each
//! part of it changes the extent map, so every fdatasync of a fresh segment also commits file
//! system metadata. In a segment whose blocks were written once, an fdatasync flushes data
//! only — about twice the write rate of one node with fsync `always` on this page's machine
//! (docs/BENCHMARKS.md). The file is named `*.tmp` until it becomes a segment, so a crash
//! leaves nothing recovery keeps.
//!
//! Only a busy group has a spare: one whose segment being written is half full, or whose
//! segments have grown to full size (`segment_bytes`; it filled every smaller one). A new or
//! idle group's log is its small first segment alone, so a node with thousands of groups
//! holds kilobytes per idle group rather than two full segments (docs/DESIGN.md).
//!
//! A spare is only an optimisation, so it never takes the last free space: it is started only
//! if the file system keeps the reserve free after it ([`Space::spare_fits`]), and given up,
//! its file removed, if the free space falls under that while it is being filled.

use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::super::fsutil;
use super::super::segment::HEADER_BYTES;
use super::super::space::Space;
use super::Log;

/// Bytes of a spare segment zero-filled and flushed at a time.
const SPARE_STEP: u64 = 2 << 20;

/// A spare being prepared; see the [module docs](self).
pub(super) struct Spare {
    path: PathBuf,
    /// Its size: the capacity of the segment it becomes.
    len: u64,
    /// `None` while the thread is writing.
    done: Arc<Mutex<Option<std::io::Result<File>>>>,
}

/// Run the calling thread at the lowest CPU priority (Linux: `nice` is per thread): zero-filling
/// a spare segment must not take CPU from the raft thread or the peer threads.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls with integer arguments naming the calling thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

/// Write `len` zeros to a new file at `path` in steps, each flushed before the next (one flush
/// of the whole file would queue tens of MiB ahead of the raft thread's own small
/// fdatasyncs), giving up if the free space would fall under the reserve.
fn fill(path: &std::path::Path, len: u64, space: &Space) -> std::io::Result<File> {
    let f = fsutil::create_file(path)?;
    let mut at = 0;
    while at < len {
        if !space.above_reserve(len - at) {
            space.spare_given_up();
            return Err(std::io::Error::other(
                "the free space fell under the reserve (--space-reserve-mb)",
            ));
        }
        let n = (len - at).min(SPARE_STEP);
        fsutil::fill_zeros(&f, n)?;
        f.sync_data()?;
        at += n;
    }
    Ok(f)
}

impl Log {
    /// Start the next segment's spare if the segment being written is at least half full (the
    /// group is busy); called after every append and at open.
    pub(super) fn prepare_spare_if_busy(&mut self) {
        if self.spare.is_some() {
            return;
        }
        let active = self.active();
        if (active.end - HEADER_BYTES as u64) * 2 >= active.capacity.min(self.cfg.segment_bytes) {
            let len = self.next_capacity();
            self.prepare_spare(len);
        }
    }

    /// A new segment of `capacity` bytes was made: if the log has grown to full-size segments
    /// (a group busy for a while), start the next one's spare now, so it is ready a whole
    /// segment ahead, as it always was before segments started small.
    pub(super) fn prepare_spare_if_grown(&mut self, capacity: u64) {
        if capacity >= self.cfg.segment_bytes {
            self.prepare_spare(self.cfg.segment_bytes.max(HEADER_BYTES as u64));
        }
    }

    /// Start zero-filling a `len`-byte file for the next segment, unless one is under way,
    /// syncs are off (then a reserved range costs nothing more), prefilling is off, or the file
    /// system would keep less than the reserve free after it.
    fn prepare_spare(&mut self, len: u64) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if self.spare.is_some() || !self.cfg.sync() || !self.cfg.prefill {
            return;
        }
        if !self.space.spare_fits(len) {
            log::debug!(
                "{}: no spare segment: it would eat into the reserve",
                self.dir_path().display()
            );
            return;
        }
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .dir_path()
            .join(format!("spare-{}-{n}.tmp", std::process::id()));
        let done = Arc::new(Mutex::new(None));
        let (p, d, space) = (path.clone(), done.clone(), self.space.clone());
        let spawned = std::thread::Builder::new()
            .name("shoal-spare".into())
            .spawn(move || {
                crate::affinity::leave_raft_cpu();
                lower_priority();
                let made = fill(&p, len, &space);
                if made.is_err() {
                    let _ = fs::remove_file(&p);
                }
                *d.lock().unwrap_or_else(|e| e.into_inner()) = Some(made);
            });
        match spawned {
            Ok(_) => self.spare = Some(Spare { path, len, done }),
            Err(e) => log::warn!("cannot start a thread to prepare the next segment: {e}"),
        }
    }

    /// Whether a spare file is ready to become the next segment.
    pub(super) fn spare_is_ready(&self) -> bool {
        self.spare
            .as_ref()
            .is_some_and(|s| s.done.lock().unwrap_or_else(|e| e.into_inner()).is_some())
    }

    /// The spare file's path once it is ready to become the next segment (tests).
    #[cfg(test)]
    pub(crate) fn spare_ready(&self) -> Option<PathBuf> {
        let spare = self.spare.as_ref()?;
        let done = spare.done.lock().unwrap_or_else(|e| e.into_inner());
        matches!(*done, Some(Ok(_))).then(|| spare.path.clone())
    }

    /// Whether a spare is being prepared or ready (tests).
    #[cfg(test)]
    pub(crate) fn has_spare(&self) -> bool {
        self.spare.is_some()
    }

    /// The prepared spare file and its size, if it is ready (never waits for it).
    pub(super) fn take_spare(&mut self) -> Option<(PathBuf, File, u64)> {
        let made = self
            .spare
            .as_ref()?
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let spare = self.spare.take()?;
        match made {
            Ok(file) => Some((spare.path, file, spare.len)),
            Err(e) => {
                log::warn!(
                    "cannot prepare {}: {e}; the next segment is reserved instead",
                    spare.path.display()
                );
                None
            }
        }
    }

    /// The spare file once its preparer is done with it (ready, or given up: then `None`).
    /// Filling one segment ends, so this wait does too.
    pub(super) fn wait_spare(&mut self) -> Option<(PathBuf, File, u64)> {
        while self.spare.is_some() && !self.spare_is_ready() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.take_spare()
    }

    /// Give the spare back to the file system (its segment could not be made from it).
    pub(super) fn drop_spare_file(path: &std::path::Path) {
        if let Err(e) = fs::remove_file(path) {
            log::warn!("cannot remove the spare {}: {e}", path.display());
        }
    }
}
