//! Cutting the log: a durable truncation of its tail (with an intent file, so that a crash
//! half-way is completed at recovery), whole-segment compaction of its head, and the reset a
//! snapshot that replaces the log asks for.
//!
//! Each starts with the only step that may be refused (writing the intent, creating the
//! replacement segment): refused there, nothing changed. Every later failure is fatal, since
//! the files are then half-way between two states the storage could vouch for.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Instant;

use shoal_core::record;
use shoal_core::storage::StorageError;
use shoal_core::types::LogIndex;

use super::super::fsutil::{self, DirHandle};
use super::super::ioerr;
use super::super::segment::{self, HEADER_BYTES};
use super::remove::{remove_in_background, RETIRED_SUFFIX};
use super::{Log, Segment};

/// Name of the truncation intent file inside the log dir.
pub const TRUNCATE_INTENT_FILE: &str = "truncate";
/// Magic bytes at the start of the truncation intent body.
const INTENT_MAGIC: &[u8; 8] = b"SHOALTRN";

/// The segment a reset will start the log with, made before anything is removed: its file
/// exists under a temporary name, its header durable. Dropped unused, its file goes.
pub(crate) struct Replacement {
    first_index: LogIndex,
    tmp: PathBuf,
    file: Option<File>,
    /// The log dir, opened while a refusal could still change nothing.
    dir: DirHandle,
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Log {
    /// Remove every entry ≥ `from` (the caller checked it is above the snapshot). The cut is
    /// durable before this returns whenever any cut byte already reached the OS (rule 5).
    pub(crate) fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.cuts += 1;
        let Some((si, k)) = self.locate(from) else {
            return Ok(()); // nothing at or after `from`
        };
        let off = u64::from(self.segs[si].offsets[k]);
        let last = self.segs.len() - 1;
        let seg = &self.segs[si];
        if si == last && off >= seg.written && off >= seg.journaled {
            // Only buffered bytes are cut, and none of them is in the sync journal (held
            // there, not yet in the segment): nothing on the OS side to undo. Held bytes go
            // the long way: written out and synced, a barrier in the journal (so neither a
            // wrap nor the replay writes them back), then cut like any written bytes.
            let seg = &mut self.segs[si];
            self.buf.truncate((off - self.buf_start) as usize);
            seg.truncate_entries(k);
            seg.end = off;
            return Ok(());
        }
        // Cut bytes reached the OS. Record the intent durably, so that a crash half-way is
        // completed at recovery, then zero the cut region and drop later segments.
        let dir = self.open_dir()?;
        self.journal_barrier()?;
        self.write_intent(&dir, from)?;
        self.buf.clear();
        let sync = self.cfg.sync();
        {
            let seg = &self.segs[si];
            let old_end = if si == last { seg.written } else { seg.end };
            fsutil::write_zeros(&seg.file, off, old_end - off)
                .and_then(|()| fsutil::sync_data(&seg.file, sync))
                .map_err(|e| ioerr::fatal(&seg.path, "truncate segment", e))?;
        }
        for seg in self.segs.drain(si + 1..).rev() {
            fs::remove_file(&seg.path).map_err(|e| ioerr::fatal(&seg.path, "remove segment", e))?;
        }
        self.sync_dir(&dir)?;
        let intent = self.dir.path().join(TRUNCATE_INTENT_FILE);
        fs::remove_file(&intent).map_err(|e| ioerr::fatal(&intent, "remove", e))?;
        self.sync_dir(&dir)?;
        let seg = &mut self.segs[si];
        seg.truncate_entries(k);
        seg.end = off;
        seg.written = off;
        seg.journaled = seg.journaled.min(off);
        if sync {
            seg.durable = off;
        }
        self.restart_buf();
        Ok(())
    }

    /// Write the truncation intent durably. Refused before it is in place, nothing changed.
    fn write_intent(&self, dir: &DirHandle, from: LogIndex) -> Result<(), StorageError> {
        let path = self.dir.path().join(TRUNCATE_INTENT_FILE);
        let tmp = fsutil::tmp_path(&path);
        let written = (|| {
            let f = fsutil::create_file(&tmp)?;
            fsutil::write_at(&f, &encode_intent(from), 0)?;
            fsutil::sync_data(&f, self.cfg.sync())?;
            fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(ioerr::refused(&self.space, 0, &path, "write", e));
        }
        self.sync_dir(dir)
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
        // Without a descriptor the segments wait for the next compaction (the refusal is logged).
        let Ok(dir) = self.open_dir() else {
            return Ok(());
        };
        // Renamed oldest first, so a crash leaves a contiguous log (an older segment back
        // in place is harmless: the snapshot covers it, as with `compact_delay`).
        for seg in self.segs.drain(..ready) {
            let mut retired = seg.path.as_os_str().to_os_string();
            retired.push(RETIRED_SUFFIX);
            let retired = PathBuf::from(retired);
            fs::rename(&seg.path, &retired)
                .map_err(|e| ioerr::fatal(&seg.path, "retire segment", e))?;
            remove_in_background(retired, seg.file);
        }
        self.sync_dir(&dir)
    }

    /// Make the segment a reset will start the log with at `next_index` (see
    /// [`Log::reset`]). Refused (full, no descriptor), nothing changed.
    pub(crate) fn prepare_replacement(
        &self,
        next_index: LogIndex,
    ) -> Result<Replacement, StorageError> {
        let path = self.dir.path().join(segment::segment_name(next_index));
        let tmp = fsutil::tmp_path(&path);
        let header = segment::encode_header(self.cfg.group, next_index);
        let dir = self.open_dir()?;
        let made = (|| {
            let f = fsutil::create_file(&tmp)?;
            fsutil::write_at(&f, &header, 0)?;
            fsutil::sync_data(&f, self.cfg.sync())?;
            Ok(f)
        })();
        match made {
            Ok(f) => Ok(Replacement {
                first_index: next_index,
                tmp,
                file: Some(f),
                dir,
            }),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(ioerr::refused(&self.space, 0, &path, "create segment", e))
            }
        }
    }

    /// Drop every entry and restart the log empty with the segment `with`, durably. Only
    /// fatal errors: the files are changing.
    pub(crate) fn reset(&mut self, mut with: Replacement) -> Result<(), StorageError> {
        self.journal_barrier()?;
        self.cuts += 1;
        self.buf.clear();
        // Delete newest first: a crash half-way leaves a prefix of the log, which recovery
        // recognises as an interrupted reset (it lacks the snapshot's entry) and finishes.
        while let Some(seg) = self.segs.pop() {
            fs::remove_file(&seg.path).map_err(|e| ioerr::fatal(&seg.path, "remove segment", e))?;
        }
        let path = self
            .dir
            .path()
            .join(segment::segment_name(with.first_index));
        let file = with.file.take().expect("a replacement is used once");
        fs::rename(&with.tmp, &path).map_err(|e| ioerr::fatal(&path, "create segment", e))?;
        self.sync_dir(&with.dir)?;
        // The space the old segments held is free now; without it the segment stays sparse
        // and takes its blocks as it is written (a refused write waits in the buffer).
        // The log grows again from the initial size while the group is busy.
        let bytes = self.next_capacity();
        if let Err(e) = fsutil::preallocate(&file, bytes) {
            log::warn!("{}: cannot reserve its space: {e}", path.display());
        }
        let mut seg = Segment::new(with.first_index, path, file, HEADER_BYTES as u64, bytes);
        seg.reserved = true;
        self.segs.push(seg);
        self.restart_buf();
        self.prepare_spare_if_grown(bytes);
        Ok(())
    }

    /// Restart the log empty at `next_index` (recovery finishing an interrupted reset).
    pub(super) fn reset_at(&mut self, next_index: LogIndex) -> Result<(), StorageError> {
        let with = self.prepare_replacement(next_index)?;
        self.reset(with)
    }
}

/// The bytes of a truncation intent naming `from`.
pub fn encode_intent(from: LogIndex) -> Vec<u8> {
    let mut body = [0u8; 16];
    body[..8].copy_from_slice(INTENT_MAGIC);
    body[8..].copy_from_slice(&from.to_le_bytes());
    let mut out = vec![0u8; body.len() + record::RECORD_OVERHEAD];
    record::encode(&body, &mut out).expect("the intent record fits its buffer");
    out
}

/// The index a truncation intent file names; `None` when absent or torn (then void).
pub(super) fn read_intent(path: &Path) -> Option<LogIndex> {
    decode_intent(&fs::read(path).ok()?).ok()
}

/// The first removed index an intent record names, or why the bytes are not an intent.
pub fn decode_intent(bytes: &[u8]) -> Result<LogIndex, String> {
    let (body, _) = record::decode(bytes).map_err(|e| e.to_string())?;
    if body.len() != 16 || &body[..8] != INTENT_MAGIC {
        return Err("not a truncation intent record".into());
    }
    let mut w = [0u8; 8];
    w.copy_from_slice(&body[8..]);
    Ok(u64::from_le_bytes(w))
}
