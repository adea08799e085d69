//! Writing the log: appends through the write buffer, syncs (on this thread, in the
//! background, or by the `async` mode's syncer), and new segments.
//!
//! Every write here is either done or refused with nothing changed: an append that needs a
//! segment the space policy or the file system refuses is not appended; a write buffer the
//! file system refuses stays buffered, to be written again at the same offset. Only a failed
//! fdatasync is fatal.

use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;

use shoal_core::entry::{self, EntryRef};
use shoal_core::record;
use shoal_core::storage::StorageError;
use shoal_core::types::LogIndex;

use super::super::fsutil;
use super::super::ioerr;
use super::super::segment::{self, HEADER_BYTES};
use super::super::syncer::Syncer;
use super::{Log, Segment};

/// The most bytes a log holds for the sync journal before it writes them to its segment.
pub(crate) const HOLD_BYTES: u64 = 64 << 10;

/// An fdatasync to run off the raft thread: the file, and the end of what was written before
/// it started (what it makes durable).
#[derive(Clone, Debug)]
pub struct BackgroundSync {
    file: Arc<File>,
    path: Arc<Path>,
    upto: u64,
    cuts: u64,
    /// What it covers was copied into the sync journal.
    journaled: bool,
    /// The journal's sync made it durable rather than this fdatasync (set by the sync thread).
    by_journal: bool,
}

impl BackgroundSync {
    /// Run the fdatasync (on any thread). The error names the file.
    pub fn run(&self) -> Result<(), String> {
        fsutil::sync_data(&self.file, true)
            .map_err(|e| format!("fdatasync {}: {e}", self.path.display()))
    }

    /// Whether what it covers is in the sync journal, so a journal sync may stand in for it.
    pub fn journaled(&self) -> bool {
        self.journaled
    }

    /// The journal's sync made it durable: its segment file is not synced by it.
    pub fn covered_by_journal(&mut self) {
        debug_assert!(
            self.journaled,
            "only a journaled sync is covered by the journal"
        );
        self.by_journal = true;
    }
}

impl Log {
    /// Append one entry (the caller checked contiguity). Refused (`Full`, `NoResources`), the
    /// log is as it was.
    pub(crate) fn append(&mut self, e: &EntryRef<'_>) -> Result<(), StorageError> {
        let body_len = e.encoded_len();
        if body_len > record::MAX_RECORD_BODY {
            return Err(StorageError::Full);
        }
        let total = body_len + record::RECORD_OVERHEAD;
        // A full buffer is written out before the entry joins it, so that a refusal of that
        // write refuses this entry rather than leave it half-taken.
        if self.buf.len() >= self.cfg.write_buffer_bytes {
            self.write_out()?;
            self.restart_buf();
        }
        let active = self.active();
        if active.count() > 0
            && (active.end + total as u64 > active.capacity.min(self.cfg.segment_bytes)
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
        // The next entry's bytes (one write buffer per group: see `shoal_core::prefetch`).
        let spare = self.buf.spare_capacity_mut();
        shoal_core::prefetch::for_write_spare(spare.as_ptr().cast(), spare.len());
        let seg = self.segs.last_mut().expect("the log always has a segment");
        let offset = seg.end;
        seg.push(offset, e.index, e.term);
        seg.end += total as u64;
        self.prepare_spare_if_busy();
        Ok(())
    }

    /// Hand the write buffer to the OS (no fdatasync). Refused, the buffer is kept whole and
    /// the next call writes it again at the same offset.
    pub(crate) fn write_out(&mut self) -> Result<(), StorageError> {
        let seg = self.segs.last_mut().expect("the log always has a segment");
        if seg.written == seg.end {
            return Ok(());
        }
        let pending = &self.buf[(seg.written - self.buf_start) as usize..];
        if let Err(e) = fsutil::write_at(&seg.file, pending, seg.written) {
            let need = seg.capacity;
            return Err(ioerr::refused(
                &self.space,
                need,
                &seg.path,
                "write segment",
                e,
            ));
        }
        seg.written = seg.end;
        if std::mem::take(&mut self.held) {
            if let Some(journal) = &self.journal {
                journal.written(self.cfg.group);
            }
        }
        Ok(())
    }

    /// Hold the last segment's new bytes for the sync journal instead of writing them to the
    /// segment: copy everything not yet durable or journaled, up to the segment's end, into
    /// the journal as a piece the journal keeps until this log writes it
    /// ([`Journal::add_held`](super::super::journal::Journal::add_held)). A round of many busy
    /// groups then costs one write (the journal's) rather than one per group; the segment is
    /// written once its held bytes reach [`HOLD_BYTES`], or by the next write out (a lone
    /// round, a roll-over, a cut, an idle group, a close). Whether the bytes are held now.
    fn hold_for_journal(&mut self) -> bool {
        let Some(journal) = self.journal.as_ref() else {
            return false;
        };
        let seg = self.active();
        let from = seg.journaled.max(seg.durable);
        // Only bytes still in the write buffer can be held (and a wrap written back).
        if !self.cfg.sync() || seg.end - seg.written > HOLD_BYTES || from < self.buf_start {
            return false;
        }
        if from >= seg.end {
            return true;
        }
        let bytes =
            &self.buf[(from - self.buf_start) as usize..(seg.end - self.buf_start) as usize];
        if !journal.add_held(self.cfg.group, seg.first_index, from, bytes) {
            return false;
        }
        let seg = self.segs.last_mut().expect("the log always has a segment");
        seg.journaled = seg.end;
        self.journaled_any = true;
        self.held = seg.written < seg.end;
        true
    }

    /// Write the buffer and fdatasync the last segment now.
    pub(crate) fn sync_now(&mut self) -> Result<(), StorageError> {
        self.write_out()?;
        if !self.cfg.sync() {
            return Ok(());
        }
        let seg = self.segs.last_mut().expect("the log always has a segment");
        if seg.durable < seg.written {
            fsutil::sync_data(&seg.file, true)
                .map_err(|e| ioerr::fatal(&seg.path, "fdatasync segment", e))?;
            seg.durable = seg.written;
        }
        Ok(())
    }

    /// Write the buffer out and name what a background fdatasync must cover: the last segment
    /// (every earlier one is durable whole) up to its written end. `None` if it is durable.
    /// With `journal`, what is not yet in the sync journal is copied there too.
    pub(crate) fn begin_background_sync(
        &mut self,
        journal: bool,
    ) -> Result<Option<BackgroundSync>, StorageError> {
        let held = journal && self.hold_for_journal();
        if !held {
            self.write_out()?;
        }
        let seg = self.active();
        if !self.cfg.sync() || seg.durable >= seg.end {
            return Ok(None);
        }
        let journaled = held || (journal && self.journal_piece()?);
        self.journaled_syncs = match journaled {
            true => super::JOURNALED_SYNCS,
            false => self.journaled_syncs.saturating_sub(1),
        };
        let seg = self.active();
        Ok(Some(BackgroundSync {
            file: seg.file.clone(),
            path: seg.path.clone(),
            upto: seg.written,
            cuts: self.cuts,
            journaled,
            by_journal: false,
        }))
    }

    /// Copy the last segment's written bytes that are neither durable nor journaled into the
    /// sync journal; whether all of them are there now.
    fn journal_piece(&mut self) -> Result<bool, StorageError> {
        let Some(journal) = self.journal.clone() else {
            return Ok(false);
        };
        let group = self.cfg.group;
        let seg = self.active();
        let (from, to) = (seg.journaled.max(seg.durable), seg.written);
        if from >= to {
            return Ok(true);
        }
        let added = if from >= self.buf_start {
            let bytes = &self.buf[(from - self.buf_start) as usize..(to - self.buf_start) as usize];
            journal.add(group, seg.first_index, from, bytes)
        } else {
            // The write buffer started over since (it filled): read the bytes back.
            let mut bytes = vec![0u8; (to - from) as usize];
            use std::os::unix::fs::FileExt;
            seg.file
                .read_exact_at(&mut bytes, from)
                .map_err(|e| ioerr::fatal(&seg.path, "read back for the sync journal", e))?;
            journal.add(group, seg.first_index, from, &bytes)
        };
        if added {
            self.segs
                .last_mut()
                .expect("the log always has a segment")
                .journaled = to;
            self.journaled_any = true;
        }
        Ok(added)
    }

    /// Before a change of the log other than an append (a cut, a reset): make its segments
    /// durable by themselves and tell the sync journal that its earlier pieces of this log
    /// must not be written back. Nothing to do when none went there.
    pub(crate) fn journal_barrier(&mut self) -> Result<(), StorageError> {
        let Some(journal) = self.journal.clone().filter(|_| self.journaled_any) else {
            return Ok(());
        };
        self.sync_now()?;
        journal.barrier(self.cfg.group).map_err(|e| {
            ::log::error!("{e}");
            StorageError::Io
        })?;
        self.journaled_any = false;
        Ok(())
    }

    /// Write the buffer out for a sync of the whole filesystem; whether the last segment has
    /// bytes that are not durable yet, and (with `journal`) whether they are all in the sync
    /// journal too.
    pub(crate) fn write_for_shared_sync(
        &mut self,
        journal: bool,
    ) -> Result<(bool, bool), StorageError> {
        let held = journal && self.hold_for_journal();
        if !held {
            self.write_out()?;
        }
        let seg = self.active();
        if !(self.cfg.sync() && seg.durable < seg.end) {
            return Ok((false, journal));
        }
        Ok((true, held || (journal && self.journal_piece()?)))
    }

    /// A sync of the whole filesystem finished after [`Log::write_for_shared_sync`], with
    /// nothing written in between: the last segment is durable to its written end.
    pub(crate) fn shared_synced(&mut self) {
        let seg = self.segs.last_mut().expect("the log always has a segment");
        seg.durable = seg.written;
    }

    /// A background fdatasync of `done` finished: record what it made durable (if its segment
    /// is still the one being written).
    pub(crate) fn background_synced(&mut self, done: &BackgroundSync) {
        if done.cuts != self.cuts || done.by_journal {
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

    /// Finish the last segment (durably) and start a new one at `next_index`. Refused, the
    /// log is as it was (its last segment synced).
    fn roll_over(&mut self, next_index: LogIndex) -> Result<(), StorageError> {
        // Every segment but the last is synced whole: a torn tail can only be in the last.
        self.sync_now()?;
        let seg = self.create_segment(next_index)?;
        self.segs.push(seg);
        self.restart_buf();
        Ok(())
    }

    /// Create an empty segment whose header is durable before its name appears: the spare if
    /// one is ready, else a preallocated file of the next size ([`Log::next_capacity`]) within
    /// the space limits. Refused, nothing is left behind.
    pub(super) fn create_segment(
        &mut self,
        first_index: LogIndex,
    ) -> Result<Segment, StorageError> {
        let path = self.dir_path().join(segment::segment_name(first_index));
        let header = segment::encode_header(self.cfg.group, first_index);
        let len = self.next_capacity();
        let dir = self.open_dir()?;
        let spare = match self.take_spare() {
            // The spare being prepared holds the space a segment needs on a nearly full disk:
            // waiting for it beats refusing the write (and raising the alarm) while there is
            // room after all.
            None if self.spare.is_some() && !self.space.fits(len) => self.wait_spare(),
            ready => ready,
        };
        let (file, reserved, capacity) = match spare {
            Some((spare, file, spare_len)) => {
                let file = self.segment_of_spare(&spare, file, &path, &header, spare_len)?;
                (file, false, spare_len)
            }
            None => {
                // No spare ready (the first segment, a burst outran the preparer, or no room
                // for one): reserve the space instead; the segment works the same, its syncs
                // cost more.
                (self.reserve_segment(&path, &header, len)?, true, len)
            }
        };
        self.sync_dir(&dir)?;
        drop(dir);
        self.prepare_spare_if_grown(capacity);
        let mut seg = Segment::new(first_index, path, file, HEADER_BYTES as u64, capacity);
        seg.reserved = reserved;
        Ok(seg)
    }

    /// Turn the ready spare into the segment at `path`.
    fn segment_of_spare(
        &self,
        spare: &Path,
        file: File,
        path: &Path,
        header: &[u8],
        need: u64,
    ) -> Result<File, StorageError> {
        let made = (|| {
            fsutil::write_at(&file, header, 0)?;
            fsutil::sync_data(&file, self.cfg.sync())?;
            fs::rename(spare, path)
        })();
        match made {
            Ok(()) => Ok(file),
            Err(e) => {
                Self::drop_spare_file(spare);
                Err(ioerr::refused(&self.space, need, path, "create segment", e))
            }
        }
    }

    /// Create the segment at `path` by reserving its `bytes`, within the space limits.
    fn reserve_segment(
        &self,
        path: &Path,
        header: &[u8],
        bytes: u64,
    ) -> Result<File, StorageError> {
        self.space.check_grow(bytes)?;
        let tmp = fsutil::tmp_path(path);
        let made = (|| {
            let file = fsutil::create_file(&tmp)?;
            fsutil::preallocate(&file, bytes)?;
            fsutil::write_at(&file, header, 0)?;
            fsutil::sync_data(&file, self.cfg.sync())?;
            fs::rename(&tmp, path)?;
            Ok(file)
        })();
        made.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            ioerr::refused(&self.space, bytes, path, "create segment", e)
        })
    }
}
