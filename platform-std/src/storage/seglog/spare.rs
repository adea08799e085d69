//! The spare: a segment-sized file of written (not merely reserved) zeros, prepared off the
//! raft thread (by the process's one spare thread, [`make_spare`]) so that the next segment
//! starts ready.
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
//! Nor, while its segments still grow, does a group whose rounds sync through the sync
//! journal (it did within its last [`JOURNALED_SYNCS`](super::JOURNALED_SYNCS) background
//! syncs): its segment is fdatasynced at roll-overs and wraps only, so a reserved range costs
//! it nothing per write, and groups written at the same rate double their segments together,
//! so that their spares, each the next size, came to 1-2 GiB of zeros in a row and took the
//! device from every group for seconds. Its full-size segments get spares as before.
//!
//! A spare is only an optimisation, so it never takes the last free space: it is started only
//! if the file system keeps the reserve free after it ([`Space::spare_fits`]), and given up,
//! its file removed, if the free space falls under that while it is being filled.

use std::collections::VecDeque;
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

/// A spare for the maker thread to fill ([`make_spare`]).
struct SpareJob {
    path: PathBuf,
    len: u64,
    space: Arc<Space>,
    done: Arc<Mutex<Option<std::io::Result<File>>>>,
}

/// The spares waiting to be filled, oldest first, and whether the maker thread runs.
struct Maker {
    queue: VecDeque<SpareJob>,
    running: bool,
}

static MAKER: Mutex<Maker> = Mutex::new(Maker {
    queue: VecDeque::new(),
    running: false,
});

/// Queue a spare for the process's one maker thread, starting it if it is not running.
///
/// One thread fills every group's spares, one after another: the groups of a node that are
/// written at the same rate reach their roll-overs together, and a thread for each, all
/// zero-filling and flushing at once (64 groups: a GiB), filled the device's queue for
/// seconds, so that the groups' own log syncs waited behind them and the node's writes all
/// but stopped. A group whose spare is still queued when its segment is full reserves the
/// next one instead ([`Log::take_spare`] never waits), as it did when a burst outran its own
/// preparer.
fn make_spare(job: SpareJob) {
    let mut m = MAKER.lock().unwrap_or_else(|e| e.into_inner());
    m.queue.push_back(job);
    if m.running {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("shoal-spare".into())
        .spawn(|| {
            crate::affinity::leave_raft_cpu();
            lower_priority();
            // Ends when the queue is empty (checked under the lock that queues).
            while let Some(job) = {
                let mut m = MAKER.lock().unwrap_or_else(|e| e.into_inner());
                let job = m.queue.pop_front();
                m.running = job.is_some();
                job
            } {
                // Its log was closed (its group removed or stopped) while it waited: no file.
                if Arc::strong_count(&job.done) == 1 {
                    continue;
                }
                #[cfg(test)]
                let _filling = tests::Filling::start();
                let made = fill(&job.path, job.len, &job.space);
                if made.is_err() {
                    let _ = fs::remove_file(&job.path);
                }
                *job.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(made);
            }
        });
    match spawned {
        Ok(_) => m.running = true,
        Err(e) => {
            // Every queued spare is given up (its group reserves segments instead).
            log::warn!("cannot start a thread to prepare the next segments: {e}");
            for job in m.queue.drain(..) {
                *job.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(Err(
                    std::io::Error::other(format!("no thread to fill it: {e}")),
                ));
            }
        }
    }
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
    /// syncs are off (then a reserved range costs nothing more), prefilling is off, the log
    /// syncs through the sync journal and `len` is not full size yet (see the module docs), or
    /// the file system would keep less than the reserve free after it.
    fn prepare_spare(&mut self, len: u64) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if self.spare.is_some() || !self.cfg.sync() || !self.cfg.prefill {
            return;
        }
        if self.journaled_syncs > 0 && len < self.cfg.segment_bytes {
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
        make_spare(SpareJob {
            path: path.clone(),
            len,
            space: self.space.clone(),
            done: done.clone(),
        });
        self.spare = Some(Spare { path, len, done });
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// Spares being filled now, and the most ever filled at once.
    static FILLING: AtomicUsize = AtomicUsize::new(0);
    static MOST_AT_ONCE: AtomicUsize = AtomicUsize::new(0);

    /// Counts a fill while it lives.
    pub(super) struct Filling;

    impl Filling {
        pub(super) fn start() -> Filling {
            let now = FILLING.fetch_add(1, Ordering::SeqCst) + 1;
            MOST_AT_ONCE.fetch_max(now, Ordering::SeqCst);
            Filling
        }
    }

    impl Drop for Filling {
        fn drop(&mut self) {
            FILLING.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn spares_are_filled_one_after_another_and_not_for_a_closed_log() {
        let root = tempfile::tempdir().expect("temp dir");
        let space = Space::new(root.path(), Default::default());
        let len = 3 * SPARE_STEP;
        let dones: Vec<_> = (0..6)
            .map(|i| {
                let done = Arc::new(Mutex::new(None));
                make_spare(SpareJob {
                    path: root.path().join(format!("spare-{i}.tmp")),
                    len,
                    space: space.clone(),
                    done: done.clone(),
                });
                done
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        for (i, done) in dones.iter().enumerate() {
            let made = loop {
                if let Some(made) = done.lock().unwrap().take() {
                    break made;
                }
                assert!(Instant::now() < deadline, "spare {i} was never filled");
                std::thread::sleep(Duration::from_millis(2));
            };
            let file = made.expect("filled");
            assert_eq!(file.metadata().unwrap().len(), len);
            let bytes = std::fs::read(root.path().join(format!("spare-{i}.tmp"))).unwrap();
            assert!(bytes.iter().all(|&b| b == 0), "spare {i} is written zeros");
        }
        // A spare whose log closed before its turn (nothing but the job holds its result)
        // makes no file.
        let dropped_path = root.path().join("gone.tmp");
        make_spare(SpareJob {
            path: dropped_path.clone(),
            len,
            space: space.clone(),
            done: Arc::new(Mutex::new(None)),
        });
        // (The thread takes jobs in order: once a later one is done, the dropped one was seen.)
        let later = Arc::new(Mutex::new(None));
        make_spare(SpareJob {
            path: root.path().join("later.tmp"),
            len: SPARE_STEP,
            space: space.clone(),
            done: later.clone(),
        });
        while later.lock().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the later spare was never filled"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(!dropped_path.exists(), "a spare of a closed log was made");
        // (Other tests' spares go through the same thread, so the bound holds for them too.)
        assert_eq!(
            MOST_AT_ONCE.load(Ordering::SeqCst),
            1,
            "spares were filled several at once"
        );
    }
}
