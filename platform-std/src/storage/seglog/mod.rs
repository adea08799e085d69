//! The segmented entry log of one group: recovery, appends through a write buffer, reads by
//! `pread`, durable truncation and whole-segment compaction.
//!
//! In memory each segment keeps one `u32` record offset per entry and its terms as runs
//! (`(first index, term)`), so a million entries cost about 4 MB of index. Only the last
//! segment is written; every earlier one was fdatasynced when the log rolled over to the next,
//! so a torn tail can only be in the last segment.
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | the log and its segments in memory; reads |
//! | `open.rs` | recovery: walking the segments, cutting a torn tail, finishing a truncation |
//! | `write.rs` | appends, the write buffer, syncs (here and in the background), new segments |
//! | `spare.rs` | the zero-filled spare segment prepared off the raft thread |
//! | `cut.rs` | truncation (with its durable intent), compaction, reset |
//! | `remove.rs` | the background remover of retired segment files |
//!
//! A write the file system refuses before it changed anything (full, out of descriptors) is
//! refused with nothing changed and may be made again ([`super::ioerr`]); the log grows a
//! segment only where [`super::space::Space`] allows it.
//!
//! The write buffer keeps what it has written to the OS until it fills (`write_buffer_bytes`):
//! a round applies, and sends to followers, the entries it has just written, and copying them
//! from the buffer saves a `pread` per group per round. A full buffer, a cut, a reset or a
//! roll-over starts it empty; a group that falls idle frees it.
//!
//! Never: hold entry bytes anywhere but in the write buffer (reads copy from the file or the
//! buffer into the caller's buffer), or cut a damaged record it cannot prove to be a torn tail.

mod cut;
mod open;
mod remove;
mod spare;
mod write;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_core::record;
use shoal_core::storage::{ReadEntries, StorageError};
use shoal_core::types::{GroupId, LogIndex, Term};

use super::fsutil::{DirHandle, DirPath};
use super::ioerr;
use super::segment::HEADER_BYTES;
use super::space::Space;
use super::FsyncMode;

#[cfg(test)]
pub(crate) use cut::encode_intent;
pub use cut::{decode_intent, TRUNCATE_INTENT_FILE};
#[cfg(test)]
pub(crate) use remove::wait_for_removals;
#[cfg(test)]
pub(crate) use remove::RETIRED_SUFFIX;
pub use write::BackgroundSync;
#[cfg(test)]
pub(crate) use write::HOLD_BYTES;

/// Torn tails cut by recovery in this process (tests check that crash tests really tear).
#[cfg(test)]
pub(crate) static TORN_TAILS_CUT: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// One segment file and the in-memory index of its entries.
pub(crate) struct Segment {
    pub(crate) first_index: LogIndex,
    /// Shared with the background syncs that name it (no copy per sync).
    pub(crate) path: Arc<std::path::Path>,
    pub(crate) file: Arc<File>,
    /// Record offset of each entry `first_index + k`.
    offsets: Vec<u32>,
    /// Term runs: `(first index with this term, term)`, ascending.
    terms: Vec<(LogIndex, Term)>,
    /// Where the next record goes (including bytes still in the write buffer).
    pub(crate) end: u64,
    /// Bytes handed to the OS; `end - written` bytes sit in the write buffer.
    pub(crate) written: u64,
    /// Bytes known to be fdatasynced (exact in `always` mode; used by crash tests). Bytes made
    /// durable through the sync journal do not count: the file itself is not synced.
    pub(crate) durable: u64,
    /// Bytes copied into the sync journal ([`super::journal`]), from `durable` on.
    pub(crate) journaled: u64,
    /// When the segment first became eligible for compaction.
    eligible_since: Option<Instant>,
    /// Created by reserving its space (no spare was ready): it is left for a spare as soon as
    /// one is, rather than when full, since its fdatasyncs cost more.
    reserved: bool,
    /// The size it was made with: the log rolls over when the next record would pass it.
    /// Segments start at `initial_segment_bytes` and double at each roll-over up to
    /// `segment_bytes`, so a group's log takes disk in proportion to what it writes.
    pub(crate) capacity: u64,
}

impl Segment {
    /// An empty segment in `file` of `capacity` bytes, its records starting at `end`.
    fn new(first_index: LogIndex, path: PathBuf, file: File, end: u64, capacity: u64) -> Segment {
        Segment {
            first_index,
            path: path.into(),
            file: Arc::new(file),
            offsets: Vec::new(),
            terms: Vec::new(),
            end,
            written: end,
            durable: end,
            journaled: end,
            eligible_since: None,
            reserved: false,
            capacity,
        }
    }

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
    /// Size of a log's first segment, and of the segment a reset starts with.
    pub(crate) initial_segment_bytes: u64,
    pub(crate) write_buffer_bytes: usize,
    pub(crate) compact_delay: Duration,
    /// Zero-fill the next segment in the background ([`spare`]).
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
    /// The log dir: each change of its entries opens it first ([`Log::open_dir`]).
    pub(crate) dir: DirPath,
    cfg: LogConfig,
    /// The data dir's space policy (shared by every group).
    space: Arc<Space>,
    /// Never empty; the last one is the segment being written.
    pub(crate) segs: Vec<Segment>,
    /// Bytes `buf_start..end` of the last segment: those up to its `written` offset are on
    /// the OS side already (kept for reads), the rest are not yet written.
    buf: Vec<u8>,
    buf_start: u64,
    /// Reads that went to a file (tests check which reads the buffer serves).
    #[cfg(test)]
    pub(crate) file_reads: std::cell::Cell<u64>,
    /// Bumped by every truncation or reset: a background sync started before one must not
    /// mark bytes written after it durable.
    cuts: u64,
    /// The next segment's file, being zero-filled off the raft thread.
    spare: Option<spare::Spare>,
    /// The data dir's sync journal, when rounds of several groups sync through it.
    pub(crate) journal: Option<Arc<super::journal::Journal>>,
    /// A piece of this log went into the journal since it was opened: a cut or a reset must
    /// put a barrier there first.
    journaled_any: bool,
    /// The last segment's bytes from its `written` offset to its end are held: in the write
    /// buffer and the sync journal only ([`Log::write_for_shared_sync`]), not yet written to
    /// the segment.
    held: bool,
    /// Of the last background syncs handed out, how recently one went through the sync
    /// journal: [`JOURNALED_SYNCS`] after one did, one less after each that did not (0: the
    /// log syncs by itself). While above 0, a segment that is still growing gets no
    /// zero-filled spare (see [`spare`]).
    journaled_syncs: u8,
}

/// Background syncs by itself after which a log that synced through the sync journal counts
/// as syncing by itself again: a busy group among others syncs alone now and then (a round
/// in which it was the only one busy, its snapshot), which must not give it a spare.
pub(super) const JOURNALED_SYNCS: u8 = 64;

impl Log {
    // ----- reads ----------------------------------------------------------------------------

    /// Index of the oldest entry held (the next index when the log is empty).
    pub(crate) fn first_index(&self) -> LogIndex {
        self.segs[0].first_index
    }

    /// Index of the last entry (first_index - 1 when empty).
    pub(crate) fn last_index(&self) -> LogIndex {
        self.active().last_index()
    }

    /// The log dir.
    pub(crate) fn dir_path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A handle on the log dir for a change of its entries, opened before the change: refused
    /// (no descriptor), nothing changed.
    fn open_dir(&self) -> Result<DirHandle, StorageError> {
        self.dir
            .open()
            .map_err(|e| ioerr::refused(&self.space, 0, self.dir.path(), "open", e))
    }

    /// Make the log dir's entries durable through `dir` (a failure is fatal: entries changed).
    fn sync_dir(&self, dir: &DirHandle) -> Result<(), StorageError> {
        dir.sync(self.cfg.sync())
            .map_err(|e| ioerr::fatal(dir.path(), "sync", e))
    }

    /// Where the next record of the segment being written goes (tests).
    #[cfg(test)]
    pub(crate) fn active_end(&self) -> u64 {
        self.active().end
    }

    fn active(&self) -> &Segment {
        self.segs.last().expect("the log always has a segment")
    }

    /// Bytes the segment being written may hold before the log rolls over (tests).
    #[cfg(test)]
    pub(crate) fn active_capacity(&self) -> u64 {
        self.active().capacity.min(self.cfg.segment_bytes)
    }

    /// Size of the next segment: twice the one being written (the group filled it, so it is
    /// busy), within `initial_segment_bytes..=segment_bytes`; the first segment is the
    /// initial size.
    fn next_capacity(&self) -> u64 {
        let initial = self.cfg.initial_segment_bytes.min(self.cfg.segment_bytes);
        self.segs
            .last()
            .map_or(initial, |s| s.capacity.saturating_mul(2))
            .clamp(initial, self.cfg.segment_bytes)
            .max(HEADER_BYTES as u64)
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
        let mut got = ReadEntries { count: 0, bytes: 0 };
        let mut index = lo;
        let mut scratch = Vec::new();
        while index <= hi {
            let Some((si, k0)) = self.locate(index) else {
                return Err(StorageError::Unavailable(index));
            };
            let seg = &self.segs[si];
            let k = Self::fitting(seg, k0, hi, buf.len() - got.bytes);
            if k == k0 {
                if got.count == 0 {
                    let (a, b) = seg.record_range(k0);
                    return Err(StorageError::BufferTooSmall {
                        needed: (b - a) as usize - record::RECORD_OVERHEAD,
                    });
                }
                break;
            }
            self.copy_records(si, k0..k, buf, &mut got, &mut scratch)?;
            index = seg.first_index + k as u64;
            if index <= seg.last_index() {
                break; // the buffer is full
            }
        }
        Ok(got)
    }

    /// The end (exclusive) of the run of entries of `seg` from position `k0` on, up to index
    /// `hi`, whose bodies fit in `room` bytes.
    fn fitting(seg: &Segment, k0: usize, hi: LogIndex, mut room: usize) -> usize {
        let seg_hi = seg.last_index().min(hi);
        let mut k = k0;
        while seg.first_index + (k as u64) <= seg_hi {
            let (a, b) = seg.record_range(k);
            let body = (b - a) as usize - record::RECORD_OVERHEAD;
            if body > room {
                break;
            }
            room -= body;
            k += 1;
        }
        k
    }

    /// Copy the bodies of records `ks` of segment `si` into `buf` after `got`, checking each
    /// against its CRC and the length the index expects.
    fn copy_records(
        &self,
        si: usize,
        ks: std::ops::Range<usize>,
        buf: &mut [u8],
        got: &mut ReadEntries,
        scratch: &mut Vec<u8>,
    ) -> Result<(), StorageError> {
        let seg = &self.segs[si];
        let (start, _) = seg.record_range(ks.start);
        let (_, end) = seg.record_range(ks.end - 1);
        let bytes = self.record_bytes(si, start, end, scratch)?;
        for k in ks.clone() {
            let (a, b) = seg.record_range(k);
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
            buf[got.bytes..got.bytes + body.len()].copy_from_slice(body);
            got.bytes += body.len();
        }
        got.count += ks.len() as u32;
        Ok(())
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
        if is_active && start >= self.buf_start {
            let a = (start - self.buf_start) as usize;
            return Ok(&self.buf[a..a + (end - start) as usize]);
        }
        let file_end = if is_active { end.min(seg.written) } else { end };
        #[cfg(test)]
        self.file_reads.set(self.file_reads.get() + 1);
        scratch.clear();
        scratch.resize((end - start) as usize, 0);
        let split = (file_end - start) as usize;
        seg.file
            .read_exact_at(&mut scratch[..split], start)
            .map_err(|e| ioerr::fatal(&seg.path, "read segment", e))?;
        if split < scratch.len() {
            let a = (seg.written - self.buf_start) as usize;
            let n = scratch.len() - split;
            scratch[split..].copy_from_slice(&self.buf[a..a + n]);
        }
        Ok(scratch)
    }

    /// Start the write buffer empty at the last segment's end (everything before is written).
    fn restart_buf(&mut self) {
        debug_assert_eq!(self.active().written, self.active().end);
        self.buf.clear();
        self.buf_start = self.active().end;
    }

    /// Bytes of the last segment held for the sync journal, not yet written to it.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> u64 {
        let seg = self.active();
        if self.held {
            seg.end - seg.written
        } else {
            0
        }
    }

    /// Free the write buffer's memory if everything in it is written (the group fell idle).
    /// Bytes held for the sync journal are written out first: an idle group holds nothing.
    pub(crate) fn release_buffer(&mut self) {
        if self.held && self.write_out().is_err() {
            return;
        }
        if self.active().written == self.active().end {
            self.buf = Vec::new();
            self.buf_start = self.active().end;
        }
    }

    /// Crash tests: write the buffer out (no sync) and list each segment's durable and written
    /// lengths.
    #[cfg(test)]
    pub(crate) fn crash_image(&mut self) -> Vec<(PathBuf, u64, u64)> {
        let _ = self.write_out();
        self.segs
            .iter()
            .map(|s| (s.path.to_path_buf(), s.durable, s.written))
            .collect()
    }
}
