//! The segmented entry log of one group: recovery, appends through a write buffer, reads by
//! `pread`, durable truncation and whole-segment compaction.
//!
//! In memory each segment keeps one `u32` record offset per entry and its terms as runs
//! (`(first index, term)`), so a million entries cost about 4 MB of index. Only the last
//! segment is written; every earlier one was fdatasynced when the log rolled over to the next,
//! so a torn tail can only be in the last segment.
//!
//! Never: hold entry bytes anywhere but in the write buffer (reads copy from the file or the
//! buffer into the caller's buffer), or cut a damaged record it cannot prove to be a torn tail.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use shoal_core::entry::{self, EntryRef};
use shoal_core::record;
use shoal_core::storage::{ReadEntries, StorageError};
use shoal_core::types::{GroupId, LogIndex, Term};

use super::error::OpenError;
use super::fsutil;
use super::segment::{self, Tail, HEADER_BYTES};
use super::syncer::Syncer;
use super::FsyncMode;

/// Name of the truncation intent file inside the log dir.
pub const TRUNCATE_INTENT_FILE: &str = "truncate";
/// Torn tails cut by recovery in this process (tests check that crash tests really tear).
#[cfg(test)]
pub(crate) static TORN_TAILS_CUT: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// Suffix added to a segment file that compaction retired. The file is renamed on the caller's
/// thread and unlinked by a background thread: unlinking a preallocated 64 MiB segment took up
/// to 75 ms on ext4 mounted with `discard` (the benchmark machine), all of it a stall of the
/// raft loop. A retired file left by a crash is removed at the next open.
pub const RETIRED_SUFFIX: &str = ".retired";

enum Removal {
    /// Unlink the path, then close the file: closing the last handle of an unlinked file
    /// frees its pages (milliseconds for a large segment), so that happens here too.
    File(PathBuf, Arc<File>),
    /// Answered once every removal queued before it is done (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Done(mpsc::Sender<()>),
}

/// The process's background remover of retired segment files, started on first use.
fn remover() -> Option<&'static Mutex<mpsc::Sender<Removal>>> {
    static REMOVER: OnceLock<Option<Mutex<mpsc::Sender<Removal>>>> = OnceLock::new();
    REMOVER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Removal>();
            let spawned = std::thread::Builder::new()
                .name("shoal-remove".into())
                .stack_size(64 << 10)
                .spawn(move || {
                    for r in rx {
                        match r {
                            Removal::File(p, file) => {
                                // NotFound: a later open already removed it as a leftover.
                                if let Err(e) = fs::remove_file(&p).or_else(|e| match e.kind() {
                                    std::io::ErrorKind::NotFound => Ok(()),
                                    _ => Err(e),
                                }) {
                                    log::warn!(
                                        "cannot remove retired segment {}: {e}",
                                        p.display()
                                    );
                                }
                                drop(file);
                            }
                            Removal::Done(ack) => {
                                let _ = ack.send(());
                            }
                        }
                    }
                });
            spawned.ok().map(|_| Mutex::new(tx))
        })
        .as_ref()
}

/// Unlink `path` and close `file` in the background (inline if no remover thread could be
/// started).
fn remove_in_background(path: PathBuf, file: Arc<File>) {
    let mut job = Some(Removal::File(path.clone(), file));
    if let Some(m) = remover() {
        if let Ok(tx) = m.lock() {
            if let Err(back) = tx.send(job.take().expect("not sent yet")) {
                job = Some(back.0);
            }
        }
    }
    if job.is_some() {
        if let Err(e) = fs::remove_file(&path) {
            log::warn!("cannot remove retired segment {}: {e}", path.display());
        }
    }
}

/// Wait until every retired segment queued so far is removed (tests).
#[cfg(test)]
pub(crate) fn wait_for_removals() {
    let (tx, rx) = mpsc::channel();
    if let Some(m) = remover() {
        if m.lock()
            .expect("remover lock")
            .send(Removal::Done(tx))
            .is_ok()
        {
            let _ = rx.recv();
        }
    }
}

/// Magic bytes at the start of the truncation intent body.
const INTENT_MAGIC: &[u8; 8] = b"SHOALTRN";

/// Create (or empty) the file at `path` for reading and writing.
fn new_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Bytes of a spare segment zero-filled and flushed at a time.
const SPARE_STEP: u64 = 2 << 20;

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

/// An fdatasync to run off the raft thread: the file, and the end of what was written before
/// it started (what it makes durable).
#[derive(Clone, Debug)]
pub struct BackgroundSync {
    file: Arc<File>,
    path: PathBuf,
    upto: u64,
    cuts: u64,
}

impl BackgroundSync {
    /// Run the fdatasync (on any thread). The error names the file.
    pub fn run(&self) -> Result<(), String> {
        self.file
            .sync_data()
            .map_err(|e| format!("fdatasync {}: {e}", self.path.display()))
    }
}

/// One segment file and the in-memory index of its entries.
pub(crate) struct Segment {
    pub(crate) first_index: LogIndex,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<File>,
    /// Record offset of each entry `first_index + k`.
    offsets: Vec<u32>,
    /// Term runs: `(first index with this term, term)`, ascending.
    terms: Vec<(LogIndex, Term)>,
    /// Where the next record goes (including bytes still in the write buffer).
    pub(crate) end: u64,
    /// Bytes handed to the OS; `end - written` bytes sit in the write buffer.
    pub(crate) written: u64,
    /// Bytes known to be fdatasynced (exact in `always` mode; used by crash tests).
    pub(crate) durable: u64,
    /// When the segment first became eligible for compaction.
    eligible_since: Option<Instant>,
    /// Created by reserving its space (no spare was ready): it is left for a spare as soon as
    /// one is, rather than when full, since its fdatasyncs cost more.
    reserved: bool,
}

impl Segment {
    fn count(&self) -> u64 {
        self.offsets.len() as u64
    }

    fn last_index(&self) -> LogIndex {
        self.first_index + self.count() - 1
    }

    fn contains(&self, index: LogIndex) -> bool {
        index >= self.first_index && index - self.first_index < self.count()
    }

    fn term_at(&self, index: LogIndex) -> Term {
        let k = self.terms.partition_point(|&(first, _)| first <= index);
        self.terms[k - 1].1
    }

    /// Byte range of entry `first_index + k`'s record.
    fn record_range(&self, k: usize) -> (u64, u64) {
        let start = u64::from(self.offsets[k]);
        let end = self.offsets.get(k + 1).map_or(self.end, |&o| u64::from(o));
        (start, end)
    }

    fn push(&mut self, offset: u64, index: LogIndex, term: Term) {
        debug_assert_eq!(index, self.first_index + self.count());
        self.offsets
            .push(u32::try_from(offset).expect("segment offsets are bounded below 4 GiB"));
        if self.terms.last().is_none_or(|&(_, t)| t != term) {
            self.terms.push((index, term));
        }
    }

    /// Keep only the first `k` entries.
    fn truncate_entries(&mut self, k: usize) {
        let cut_index = self.first_index + k as u64;
        self.offsets.truncate(k);
        let runs = self.terms.partition_point(|&(first, _)| first < cut_index);
        self.terms.truncate(runs);
    }
}

/// Settings the log needs from the storage options.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogConfig {
    pub(crate) group: GroupId,
    pub(crate) mode: FsyncMode,
    pub(crate) segment_bytes: u64,
    pub(crate) write_buffer_bytes: usize,
    pub(crate) compact_delay: Duration,
    /// Zero-fill the next segment in the background ([`Spare`]).
    pub(crate) prefill: bool,
}

impl LogConfig {
    fn sync(&self) -> bool {
        self.mode != FsyncMode::Never
    }
}

/// The log of one group.
pub(crate) struct Log {
    pub(crate) data_dir: PathBuf,
    pub(crate) dir: PathBuf,
    cfg: LogConfig,
    /// Never empty; the last one is the segment being written.
    pub(crate) segs: Vec<Segment>,
    /// Records not yet written to the last segment, starting at its `written` offset.
    buf: Vec<u8>,
    /// Bumped by every truncation or reset: a background sync started before one must not
    /// mark bytes written after it durable.
    cuts: u64,
    /// The next segment's file, being zero-filled off the raft thread.
    spare: Option<Spare>,
}

/// A segment-sized file of written (not merely reserved) zeros, prepared by a thread of its own
/// so that the next segment starts ready.
///
/// Why: on ext4 and XFS a reserved (`fallocate`d) range is "unwritten"; the first write to each
/// part of it changes the extent map, so every fdatasync of a fresh segment also commits file
/// system metadata. In a segment whose blocks were written once, an fdatasync flushes data
/// only — about twice the write rate of one node with fsync `always` on this page's machine
/// (docs/BENCHMARKS.md). The file is named `*.tmp` until it becomes a segment, so a crash
/// leaves nothing recovery keeps.
struct Spare {
    path: PathBuf,
    /// `None` while the thread is writing.
    done: Arc<Mutex<Option<std::io::Result<File>>>>,
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> StorageError {
    log::error!("{} {}: {}", what, path.display(), e);
    StorageError::Io
}

impl Log {
    // ----- recovery ------------------------------------------------------------------------

    /// Open the log in `log_dir`, creating it (with one empty segment starting at `next_index`)
    /// if it holds no segment. Cuts a torn tail, completes an interrupted truncation, and
    /// refuses any other damage with [`OpenError::Corrupt`].
    pub(crate) fn open(
        data_dir: &Path,
        log_dir: &Path,
        cfg: LogConfig,
        next_index: LogIndex,
    ) -> Result<Log, OpenError> {
        let sync = cfg.sync();
        fsutil::ensure_dir(log_dir, sync).map_err(|e| OpenError::io(log_dir, "create", e))?;
        remove_leftovers(log_dir)?;
        let intent_path = log_dir.join(TRUNCATE_INTENT_FILE);
        let intent = read_intent(&intent_path);
        let files = segment::list_segments(log_dir)
            .map_err(|e| OpenError::io(log_dir, "list segments in", e))?;
        let mut segs: Vec<Segment> = Vec::with_capacity(files.len() + 1);
        let mut doomed: Vec<PathBuf> = Vec::new();
        let mut cut_at: Option<u64> = None;
        let mut torn: Option<(u64, u64)> = None;
        let nfiles = files.len();
        for (i, sf) in files.into_iter().enumerate() {
            if cut_at.is_some() {
                // An interrupted truncation removes every later segment.
                doomed.push(sf.path);
                continue;
            }
            let corrupt = |offset: u64, detail: String| {
                OpenError::corrupt(data_dir, &sf.path, offset, detail)
            };
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&sf.path)
                .map_err(|e| OpenError::io(&sf.path, "open segment", e))?;
            // First only the written part (up to the last non-zero byte; the rest is the
            // preallocation), so a fresh 64 MiB segment is not read into memory whole. A walk
            // over it ends exactly like one over the whole file when it ends cleanly; otherwise
            // (the last record might end in zero bytes, or the tail is damaged) the whole file
            // is read and walked again, so recovery decides on exactly the same bytes.
            let mut bytes = fsutil::read_nonzero_prefix(&file)
                .map_err(|e| OpenError::io(&sf.path, "read segment", e))?;
            let mut seg = Segment {
                first_index: sf.first_index,
                path: sf.path.clone(),
                file: Arc::new(file),
                offsets: Vec::new(),
                terms: Vec::new(),
                end: 0,
                written: 0,
                durable: 0,
                eligible_since: None,
                reserved: false,
            };
            let mut whole = false;
            let (walk, stopped) = loop {
                seg.offsets.clear();
                seg.terms.clear();
                let mut stopped = false;
                let walk = segment::walk_segment(&bytes, |offset, e| {
                    if intent.is_some_and(|from| e.index >= from) {
                        stopped = true;
                        return false;
                    }
                    seg.push(offset, e.index, e.term);
                    true
                });
                let clean = matches!(walk, Ok(ref w) if w.tail == Tail::Clean);
                if clean || whole {
                    break (
                        walk.map_err(|(offset, detail)| corrupt(offset, detail))?,
                        stopped,
                    );
                }
                bytes = fsutil::read_from(&seg.file, 0)
                    .map_err(|e| OpenError::io(&sf.path, "read segment", e))?;
                whole = true;
            };
            if walk.header.group != cfg.group {
                return Err(corrupt(
                    0,
                    format!(
                        "segment belongs to group {}, this is group {}",
                        walk.header.group, cfg.group
                    ),
                ));
            }
            if walk.header.first_index != sf.first_index {
                return Err(corrupt(
                    0,
                    format!(
                        "segment header says first index {}, its name says {}",
                        walk.header.first_index, sf.first_index
                    ),
                ));
            }
            if let Some(prev) = segs.last() {
                let expected = prev.first_index + prev.count();
                if sf.first_index != expected {
                    return Err(corrupt(
                        0,
                        format!(
                            "gap in the log: the previous segment {} ends at index {}, this one \
                             starts at index {}; entries {}..={} are missing (a segment file was \
                             deleted or lost)",
                            prev.path.display(),
                            expected - 1,
                            sf.first_index,
                            expected,
                            sf.first_index.saturating_sub(1)
                        ),
                    ));
                }
            }
            let is_last = i + 1 == nfiles;
            if stopped {
                let garbage_end = bytes
                    .iter()
                    .rposition(|&b| b != 0)
                    .map_or(walk.end, |p| (p as u64 + 1).max(walk.end));
                cut_at = Some(walk.end);
                torn = Some((walk.end, garbage_end));
            } else {
                match walk.tail {
                    Tail::Clean => {}
                    Tail::Torn { start, end, detail } => {
                        if !is_last {
                            return Err(corrupt(
                                start,
                                format!(
                                    "damaged record in a segment that was synced whole before the \
                                     log moved on: {}",
                                    detail
                                ),
                            ));
                        }
                        log::warn!(
                            "{}: cutting a torn tail at offset {} ({} bytes: {})",
                            sf.path.display(),
                            start,
                            end - start,
                            detail
                        );
                        torn = Some((start, end));
                        #[cfg(test)]
                        TORN_TAILS_CUT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Tail::Corrupt { offset, detail } => return Err(corrupt(offset, detail)),
                }
            }
            seg.end = walk.end;
            seg.written = walk.end;
            seg.durable = walk.end;
            segs.push(seg);
        }
        // Complete the repairs recovery is allowed to make, durably, before any new write.
        if let (Some(seg), Some((start, end))) = (segs.last(), torn) {
            fsutil::write_zeros(&seg.file, start, end - start)
                .and_then(|()| if sync { seg.file.sync_data() } else { Ok(()) })
                .map_err(|e| OpenError::io(&seg.path, "cut the torn tail of", e))?;
        }
        for path in doomed.iter().rev() {
            fs::remove_file(path).map_err(|e| OpenError::io(path, "remove segment", e))?;
        }
        if let Some(from) = intent {
            if cut_at.is_some() || !doomed.is_empty() {
                log::info!(
                    "{}: completed an interrupted truncation of entries from index {}",
                    log_dir.display(),
                    from
                );
            }
            fsutil::fsync_dir(log_dir, sync).map_err(|e| OpenError::io(log_dir, "sync", e))?;
            remove_intent(&intent_path, sync)
                .map_err(|e| OpenError::io(&intent_path, "remove", e))?;
        } else if intent_path.exists() {
            // A torn intent: the truncation had not started, so it is void.
            remove_intent(&intent_path, sync)
                .map_err(|e| OpenError::io(&intent_path, "remove", e))?;
        }
        let mut log = Log {
            data_dir: data_dir.to_path_buf(),
            dir: log_dir.to_path_buf(),
            cfg,
            segs,
            buf: Vec::with_capacity(cfg.write_buffer_bytes),
            cuts: 0,
            spare: None,
        };
        if log.segs.is_empty() {
            let seg = log
                .create_segment(next_index)
                .map_err(|e| OpenError::io(log_dir, "create a segment in", e))?;
            log.segs.push(seg);
        } else {
            log.prepare_spare();
        }
        Ok(log)
    }

    // ----- reads ----------------------------------------------------------------------------

    /// Index of the oldest entry held (the next index when the log is empty).
    pub(crate) fn first_index(&self) -> LogIndex {
        self.segs[0].first_index
    }

    /// Index of the last entry (first_index - 1 when empty).
    pub(crate) fn last_index(&self) -> LogIndex {
        self.active().last_index()
    }

    fn active(&self) -> &Segment {
        self.segs.last().expect("the log always has a segment")
    }

    fn locate(&self, index: LogIndex) -> Option<(usize, usize)> {
        let si = self
            .segs
            .partition_point(|s| s.first_index <= index)
            .checked_sub(1)?;
        let seg = &self.segs[si];
        seg.contains(index)
            .then(|| (si, (index - seg.first_index) as usize))
    }

    /// The term of `index` if the log holds it.
    pub(crate) fn term(&self, index: LogIndex) -> Option<Term> {
        let (si, _) = self.locate(index)?;
        Some(self.segs[si].term_at(index))
    }

    /// Copy entries `lo..=hi` (all held by the log) into `buf`.
    pub(crate) fn read_entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        buf: &mut [u8],
    ) -> Result<ReadEntries, StorageError> {
        let mut count = 0u32;
        let mut used = 0usize;
        let mut index = lo;
        let mut scratch = Vec::new();
        while index <= hi {
            let Some((si, k0)) = self.locate(index) else {
                return Err(StorageError::Unavailable(index));
            };
            let seg = &self.segs[si];
            // Pick the entries of this segment that fit.
            let mut k = k0;
            let mut room = buf.len() - used;
            let seg_hi = seg.last_index().min(hi);
            while seg.first_index + (k as u64) <= seg_hi {
                let (a, b) = seg.record_range(k);
                let body = (b - a) as usize - record::RECORD_OVERHEAD;
                if body > room {
                    break;
                }
                room -= body;
                k += 1;
            }
            if k == k0 {
                if count == 0 {
                    let (a, b) = seg.record_range(k0);
                    return Err(StorageError::BufferTooSmall {
                        needed: (b - a) as usize - record::RECORD_OVERHEAD,
                    });
                }
                break;
            }
            let (start, _) = seg.record_range(k0);
            let (_, end) = seg.record_range(k - 1);
            let bytes = self.record_bytes(si, start, end, &mut scratch)?;
            for kk in k0..k {
                let (a, b) = seg.record_range(kk);
                let rec = &bytes[(a - start) as usize..(b - start) as usize];
                let damaged = |detail: String| {
                    log::error!(
                        "{}: record at offset {} is damaged: {} (run `shoal-inspect verify {}`)",
                        seg.path.display(),
                        a,
                        detail,
                        self.data_dir.display()
                    );
                    StorageError::Corrupt { location: a }
                };
                // Re-check what the disk returns: the CRC, and that the record is the one the
                // index expects (same length, so it fits the room reserved for it).
                let (body, n) = record::decode(rec).map_err(|e| damaged(e.to_string()))?;
                if n != rec.len() {
                    return Err(damaged(format!(
                        "record is {} bytes, the index expects {}",
                        n,
                        rec.len()
                    )));
                }
                buf[used..used + body.len()].copy_from_slice(body);
                used += body.len();
            }
            count += (k - k0) as u32;
            index = seg.first_index + k as u64;
            if index <= seg.last_index() {
                break; // the buffer is full
            }
        }
        Ok(ReadEntries { count, bytes: used })
    }

    /// The bytes `start..end` of segment `si`, from the file and/or the write buffer.
    fn record_bytes<'a>(
        &'a self,
        si: usize,
        start: u64,
        end: u64,
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], StorageError> {
        let seg = &self.segs[si];
        let is_active = si + 1 == self.segs.len();
        if is_active && start >= seg.written {
            let a = (start - seg.written) as usize;
            return Ok(&self.buf[a..a + (end - start) as usize]);
        }
        let file_end = if is_active { end.min(seg.written) } else { end };
        scratch.clear();
        scratch.resize((end - start) as usize, 0);
        let split = (file_end - start) as usize;
        seg.file
            .read_exact_at(&mut scratch[..split], start)
            .map_err(|e| io_err(&seg.path, "read segment", e))?;
        if split < scratch.len() {
            let n = scratch.len() - split;
            scratch[split..].copy_from_slice(&self.buf[..n]);
        }
        Ok(scratch)
    }

    // ----- writes ---------------------------------------------------------------------------

    /// Append one entry (the caller checked contiguity).
    pub(crate) fn append(&mut self, e: &EntryRef<'_>) -> Result<(), StorageError> {
        let body_len = e.encoded_len();
        if body_len > record::MAX_RECORD_BODY {
            return Err(StorageError::Full);
        }
        let total = body_len + record::RECORD_OVERHEAD;
        let active = self.active();
        if active.count() > 0
            && (active.end + total as u64 > self.cfg.segment_bytes
                || (active.reserved && self.spare_is_ready()))
        {
            self.roll_over(e.index)?;
        }
        let at = self.buf.len();
        self.buf.resize(at + total, 0);
        let encoded = record::encode_with(&mut self.buf[at..], body_len, |dst| {
            let n = entry::encode(e, dst).expect("the body is sized by encoded_len");
            debug_assert_eq!(n, dst.len());
        });
        if encoded.is_err() {
            self.buf.truncate(at);
            return Err(StorageError::Full);
        }
        let seg = self.segs.last_mut().expect("the log always has a segment");
        let offset = seg.end;
        seg.push(offset, e.index, e.term);
        seg.end += total as u64;
        if self.buf.len() >= self.cfg.write_buffer_bytes {
            self.write_out()?;
        }
        Ok(())
    }

    /// Hand the write buffer to the OS (no fdatasync).
    pub(crate) fn write_out(&mut self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let seg = self.segs.last_mut().expect("the log always has a segment");
        seg.file
            .write_all_at(&self.buf, seg.written)
            .map_err(|e| io_err(&seg.path, "write segment", e))?;
        seg.written += self.buf.len() as u64;
        debug_assert_eq!(seg.written, seg.end);
        self.buf.clear();
        Ok(())
    }

    /// Write the buffer and fdatasync the last segment now.
    pub(crate) fn sync_now(&mut self) -> Result<(), StorageError> {
        self.write_out()?;
        if !self.cfg.sync() {
            return Ok(());
        }
        let seg = self.segs.last_mut().expect("the log always has a segment");
        if seg.durable < seg.written {
            seg.file
                .sync_data()
                .map_err(|e| io_err(&seg.path, "fdatasync segment", e))?;
            seg.durable = seg.written;
        }
        Ok(())
    }

    /// Write the buffer out and name what a background fdatasync must cover: the last segment
    /// (every earlier one is durable whole) up to its written end. `None` if it is durable.
    pub(crate) fn begin_background_sync(&mut self) -> Result<Option<BackgroundSync>, StorageError> {
        self.write_out()?;
        let seg = self.active();
        if !self.cfg.sync() || seg.durable >= seg.written {
            return Ok(None);
        }
        Ok(Some(BackgroundSync {
            file: seg.file.clone(),
            path: seg.path.clone(),
            upto: seg.written,
            cuts: self.cuts,
        }))
    }

    /// A background fdatasync of `done` finished: record what it made durable (if its segment
    /// is still the one being written).
    pub(crate) fn background_synced(&mut self, done: &BackgroundSync) {
        if done.cuts != self.cuts {
            return;
        }
        let seg = self.segs.last_mut().expect("the log always has a segment");
        if Arc::ptr_eq(&seg.file, &done.file) && seg.durable < done.upto {
            seg.durable = done.upto.min(seg.written);
        }
    }

    /// Write the buffer and hand the last segment to the background syncer.
    pub(crate) fn sync_async(&mut self, syncer: &Syncer) -> Result<(), StorageError> {
        self.write_out()?;
        let seg = self.active();
        syncer.request(&seg.file).map_err(|e| {
            log::error!("{}: background fdatasync failed: {}", seg.path.display(), e);
            StorageError::Io
        })
    }

    /// Finish the last segment (durably) and start a new one at `next_index`.
    fn roll_over(&mut self, next_index: LogIndex) -> Result<(), StorageError> {
        // Every segment but the last is synced whole: a torn tail can only be in the last.
        self.sync_now()?;
        let seg = self
            .create_segment(next_index)
            .map_err(|e| io_err(&self.dir, "create a segment in", e))?;
        self.segs.push(seg);
        Ok(())
    }

    /// Create an empty, preallocated segment whose header is durable before its name appears.
    fn create_segment(&mut self, first_index: LogIndex) -> std::io::Result<Segment> {
        let sync = self.cfg.sync();
        let path = self.dir.join(segment::segment_name(first_index));
        let header = segment::encode_header(self.cfg.group, first_index);
        let mut reserved = false;
        let file = match self.take_spare() {
            Some((spare, file)) => {
                file.write_all_at(&header, 0)?;
                if sync {
                    file.sync_data()?;
                }
                fs::rename(&spare, &path)?;
                file
            }
            None => {
                // No spare ready (the first segment, or a burst outran the preparer): reserve
                // the space instead; the segment works the same, its syncs cost more.
                reserved = true;
                let tmp = fsutil::tmp_path(&path);
                let file = new_file(&tmp)?;
                fsutil::preallocate(&file, self.cfg.segment_bytes.max(HEADER_BYTES as u64))?;
                file.write_all_at(&header, 0)?;
                if sync {
                    file.sync_data()?;
                }
                fs::rename(&tmp, &path)?;
                file
            }
        };
        fsutil::fsync_dir(&self.dir, sync)?;
        self.prepare_spare();
        let end = HEADER_BYTES as u64;
        Ok(Segment {
            first_index,
            path,
            file: Arc::new(file),
            offsets: Vec::new(),
            terms: Vec::new(),
            end,
            written: end,
            durable: end,
            eligible_since: None,
            reserved,
        })
    }

    /// Start zero-filling the next segment's file, unless one is under way (or syncs are off:
    /// then a reserved range costs nothing more).
    fn prepare_spare(&mut self) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if self.spare.is_some() || !self.cfg.sync() || !self.cfg.prefill {
            return;
        }
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .dir
            .join(format!("spare-{}-{n}.tmp", std::process::id()));
        let len = self.cfg.segment_bytes.max(HEADER_BYTES as u64);
        let done = Arc::new(Mutex::new(None));
        let (p, d) = (path.clone(), done.clone());
        let spawned = std::thread::Builder::new()
            .name("shoal-spare".into())
            .spawn(move || {
                lower_priority();
                let made = (|| {
                    let f = new_file(&p)?;
                    // In steps, each flushed before the next: one flush of the whole file would
                    // queue tens of MiB ahead of the raft thread's own small fdatasyncs.
                    let mut at = 0;
                    while at < len {
                        let n = (len - at).min(SPARE_STEP);
                        fsutil::fill_zeros(&f, n)?;
                        f.sync_data()?;
                        at += n;
                    }
                    Ok(f)
                })();
                *d.lock().unwrap_or_else(|e| e.into_inner()) = Some(made);
            });
        match spawned {
            Ok(_) => self.spare = Some(Spare { path, done }),
            Err(e) => log::warn!("cannot start a thread to prepare the next segment: {e}"),
        }
    }

    /// Whether a spare file is ready to become the next segment.
    fn spare_is_ready(&self) -> bool {
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

    /// The prepared spare file, if it is ready (never waits for it).
    fn take_spare(&mut self) -> Option<(PathBuf, File)> {
        let made = self
            .spare
            .as_ref()?
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let spare = self.spare.take()?;
        match made {
            Ok(file) => Some((spare.path, file)),
            Err(e) => {
                log::warn!(
                    "cannot prepare {}: {e}; the next segment is reserved instead",
                    spare.path.display()
                );
                let _ = fs::remove_file(&spare.path);
                None
            }
        }
    }

    /// Remove every entry ≥ `from` (the caller checked it is above the snapshot). The cut is
    /// durable before this returns whenever any cut byte already reached the OS (rule 5).
    pub(crate) fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.cuts += 1;
        let Some((si, k)) = self.locate(from) else {
            return Ok(()); // nothing at or after `from`
        };
        let off = u64::from(self.segs[si].offsets[k]);
        let last = self.segs.len() - 1;
        if si == last && off >= self.segs[si].written {
            // Only buffered bytes are cut: nothing on the OS side to undo.
            let seg = &mut self.segs[si];
            self.buf.truncate((off - seg.written) as usize);
            seg.truncate_entries(k);
            seg.end = off;
            return Ok(());
        }
        // Cut bytes reached the OS. Record the intent durably, so that a crash half-way is
        // completed at recovery, then zero the cut region and drop later segments.
        self.buf.clear();
        let sync = self.cfg.sync();
        let intent_path = self.dir.join(TRUNCATE_INTENT_FILE);
        fsutil::write_atomic(&intent_path, &encode_intent(from), sync)
            .map_err(|e| io_err(&intent_path, "write", e))?;
        {
            let seg = &self.segs[si];
            let old_end = if si == last { seg.written } else { seg.end };
            fsutil::write_zeros(&seg.file, off, old_end - off)
                .and_then(|()| if sync { seg.file.sync_data() } else { Ok(()) })
                .map_err(|e| io_err(&seg.path, "truncate segment", e))?;
        }
        for seg in self.segs.drain(si + 1..).rev() {
            fs::remove_file(&seg.path).map_err(|e| io_err(&seg.path, "remove segment", e))?;
        }
        fsutil::fsync_dir(&self.dir, sync).map_err(|e| io_err(&self.dir, "sync", e))?;
        remove_intent(&intent_path, sync).map_err(|e| io_err(&intent_path, "remove", e))?;
        let seg = &mut self.segs[si];
        seg.truncate_entries(k);
        seg.end = off;
        seg.written = off;
        if sync {
            seg.durable = off;
        }
        Ok(())
    }

    /// Delete whole segments whose entries all lie at or below `upto`, once they have been
    /// eligible for `compact_delay`. The last segment is never deleted.
    pub(crate) fn compact(&mut self, upto: LogIndex) -> Result<(), StorageError> {
        let now = Instant::now();
        let mut eligible = 0;
        while eligible + 1 < self.segs.len() && self.segs[eligible + 1].first_index - 1 <= upto {
            self.segs[eligible].eligible_since.get_or_insert(now);
            eligible += 1;
        }
        // Delete oldest first, so the segments left are always contiguous.
        let ready = self.segs[..eligible]
            .iter()
            .take_while(|s| {
                s.eligible_since
                    .is_some_and(|t| now.duration_since(t) >= self.cfg.compact_delay)
            })
            .count();
        if ready == 0 {
            return Ok(());
        }
        // Renamed oldest first, so a crash leaves a contiguous log (an older segment back
        // in place is harmless: the snapshot covers it, as with `compact_delay`).
        for seg in self.segs.drain(..ready) {
            let mut retired = seg.path.clone().into_os_string();
            retired.push(RETIRED_SUFFIX);
            let retired = PathBuf::from(retired);
            fs::rename(&seg.path, &retired).map_err(|e| io_err(&seg.path, "retire segment", e))?;
            remove_in_background(retired, seg.file);
        }
        fsutil::fsync_dir(&self.dir, self.cfg.sync()).map_err(|e| io_err(&self.dir, "sync", e))
    }

    /// Drop every entry and restart the log empty at `next_index`, durably.
    pub(crate) fn reset(&mut self, next_index: LogIndex) -> Result<(), StorageError> {
        self.cuts += 1;
        self.buf.clear();
        // Delete newest first: a crash half-way leaves a prefix of the log, which recovery
        // recognises as an interrupted reset (it lacks the snapshot's entry) and finishes.
        while let Some(seg) = self.segs.pop() {
            fs::remove_file(&seg.path).map_err(|e| io_err(&seg.path, "remove segment", e))?;
        }
        fsutil::fsync_dir(&self.dir, self.cfg.sync()).map_err(|e| io_err(&self.dir, "sync", e))?;
        let seg = self
            .create_segment(next_index)
            .map_err(|e| io_err(&self.dir, "create a segment in", e))?;
        self.segs.push(seg);
        Ok(())
    }

    /// Crash tests: write the buffer out (no sync) and list each segment's durable and written
    /// lengths.
    #[cfg(test)]
    pub(crate) fn crash_image(&mut self) -> Vec<(PathBuf, u64, u64)> {
        let _ = self.write_out();
        self.segs
            .iter()
            .map(|s| (s.path.clone(), s.durable, s.written))
            .collect()
    }
}

pub(crate) fn encode_intent(from: LogIndex) -> Vec<u8> {
    let mut body = [0u8; 16];
    body[..8].copy_from_slice(INTENT_MAGIC);
    body[8..].copy_from_slice(&from.to_le_bytes());
    let mut out = vec![0u8; body.len() + record::RECORD_OVERHEAD];
    record::encode(&body, &mut out).expect("the intent record fits its buffer");
    out
}

/// The index a truncation intent file names; `None` when absent or torn (then void).
fn read_intent(path: &Path) -> Option<LogIndex> {
    decode_intent(&fs::read(path).ok()?).ok()
}

/// The first removed index an intent record names, or why the bytes are not an intent.
pub(crate) fn decode_intent(bytes: &[u8]) -> Result<LogIndex, String> {
    let (body, _) = record::decode(bytes).map_err(|e| e.to_string())?;
    if body.len() != 16 || &body[..8] != INTENT_MAGIC {
        return Err("not a truncation intent record".into());
    }
    let mut w = [0u8; 8];
    w.copy_from_slice(&body[8..]);
    Ok(u64::from_le_bytes(w))
}

fn remove_intent(path: &Path, sync: bool) -> std::io::Result<()> {
    fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        fsutil::fsync_dir(dir, sync)?;
    }
    Ok(())
}

/// Remove `*.tmp` files left by a crash while a segment or the intent was being created, and
/// retired segments a crash kept from being removed.
fn remove_leftovers(dir: &Path) -> Result<(), OpenError> {
    let entries = fs::read_dir(dir).map_err(|e| OpenError::io(dir, "list", e))?;
    for ent in entries {
        let ent = ent.map_err(|e| OpenError::io(dir, "list", e))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") || name.ends_with(RETIRED_SUFFIX) {
            let p = ent.path();
            match fs::remove_file(&p) {
                // The background remover may have got there first.
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(OpenError::io(&p, "remove leftover", e));
                }
                _ => {}
            }
        }
    }
    Ok(())
}
