//! Recovery: open a group's log, walking each segment's records into the in-memory index,
//! cutting a torn tail of the last segment, finishing an interrupted truncation, and refusing
//! any other damage with [`OpenError::Corrupt`].

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shoal_core::storage::StorageError;
use shoal_core::types::LogIndex;

use super::super::error::OpenError;
use super::super::fsutil::{self, DirHandle, DirPath};
use super::super::segment::{self, SegmentFile, Tail, Walk};
use super::super::space::Space;
use super::cut::{read_intent, TRUNCATE_INTENT_FILE};
use super::remove::RETIRED_SUFFIX;
use super::{Log, LogConfig, Segment};

/// How recovery left one segment's end.
#[derive(Default)]
struct SegmentEnd {
    /// The walk reached the first entry an interrupted truncation removes.
    stopped: bool,
    /// Bytes to zero at the end: a torn tail, or what the truncation removes.
    cut: Option<(u64, u64)>,
}

/// What the walk over every segment found, before any repair.
struct Walked {
    segs: Vec<Segment>,
    /// Segments an interrupted truncation removes whole.
    doomed: Vec<PathBuf>,
    /// Whether the interrupted truncation cut into a segment.
    stopped: bool,
    /// Bytes to zero at the end of the last segment kept.
    cut: Option<(u64, u64)>,
}

impl Log {
    /// Open the log in `log_dir`, creating it (with one empty segment starting at `next_index`)
    /// if it holds no segment. Cuts a torn tail, completes an interrupted truncation, and
    /// refuses any other damage with [`OpenError::Corrupt`].
    pub(crate) fn open(
        data_dir: &Path,
        log_dir: &Path,
        cfg: LogConfig,
        space: Arc<Space>,
        next_index: LogIndex,
    ) -> Result<Log, OpenError> {
        let sync = cfg.sync();
        fsutil::ensure_dir(log_dir, sync).map_err(|e| OpenError::io(log_dir, "create", e))?;
        remove_leftovers(log_dir)?;
        let dir = DirHandle::open(log_dir).map_err(|e| OpenError::io(log_dir, "open", e))?;
        let intent_path = log_dir.join(TRUNCATE_INTENT_FILE);
        let intent = read_intent(&intent_path);
        let files = segment::list_segments(log_dir)
            .map_err(|e| OpenError::io(log_dir, "list segments in", e))?;
        let walked = walk_segments(data_dir, &cfg, files, intent)?;
        repair(&walked, sync)?;
        if let Some(from) = intent {
            if walked.stopped || !walked.doomed.is_empty() {
                log::info!(
                    "{}: completed an interrupted truncation of entries from index {}",
                    log_dir.display(),
                    from
                );
            }
        }
        if intent_path.exists() {
            // Done now, or torn (the truncation had not started, so it is void).
            dir.sync(sync)
                .and_then(|()| fs::remove_file(&intent_path))
                .and_then(|()| dir.sync(sync))
                .map_err(|e| OpenError::io(&intent_path, "remove", e))?;
        }
        drop(dir);
        let mut log = Log {
            data_dir: data_dir.to_path_buf(),
            dir: DirPath::new(log_dir),
            cfg,
            space,
            segs: walked.segs,
            buf: Vec::with_capacity(cfg.write_buffer_bytes),
            buf_start: 0,
            #[cfg(test)]
            file_reads: Default::default(),
            cuts: 0,
            spare: None,
            journal: None,
            journaled_any: false,
            held: false,
            journaled_syncs: 0,
        };
        if log.segs.is_empty() {
            let seg = log
                .create_segment(next_index)
                .map_err(|e| refused_at_open(log_dir, e))?;
            log.segs.push(seg);
        } else {
            log.prepare_spare_if_busy();
        }
        log.restart_buf();
        Ok(log)
    }

    /// Drop every entry and restart the log empty at `next_index` (recovery finishing an
    /// interrupted snapshot install).
    pub(crate) fn reset_at_open(&mut self, next_index: LogIndex) -> Result<(), OpenError> {
        self.reset_at(next_index)
            .map_err(|e| refused_at_open(self.dir.path(), e))
    }
}

/// An open that needed a segment and was refused: in words an operator can act on.
fn refused_at_open(log_dir: &Path, e: StorageError) -> OpenError {
    let detail = match e {
        StorageError::Full => "not enough free space above the reserve (--space-reserve-mb) or \
                               within the quota (--space-quota-mb); see the log"
            .to_string(),
        e => format!("{e} (see the log for the cause)"),
    };
    OpenError::io(
        log_dir,
        "create a segment in",
        std::io::Error::other(detail),
    )
}

/// Walk every segment in log order (see [`recover_segment`]).
fn walk_segments(
    data_dir: &Path,
    cfg: &LogConfig,
    files: Vec<SegmentFile>,
    intent: Option<LogIndex>,
) -> Result<Walked, OpenError> {
    let mut w = Walked {
        segs: Vec::with_capacity(files.len() + 1),
        doomed: Vec::new(),
        stopped: false,
        cut: None,
    };
    let nfiles = files.len();
    for (i, sf) in files.into_iter().enumerate() {
        if w.stopped {
            // An interrupted truncation removes every later segment.
            w.doomed.push(sf.path);
            continue;
        }
        let is_last = i + 1 == nfiles;
        let (seg, end) = recover_segment(data_dir, cfg, &sf, intent, w.segs.last(), is_last)?;
        w.stopped = end.stopped;
        if end.cut.is_some() {
            w.cut = end.cut;
        }
        w.segs.push(seg);
    }
    Ok(w)
}

/// Read one segment into a [`Segment`]: its entries (up to the first an interrupted
/// truncation removes), checked against its name and the segment before it.
fn recover_segment(
    data_dir: &Path,
    cfg: &LogConfig,
    sf: &SegmentFile,
    intent: Option<LogIndex>,
    prev: Option<&Segment>,
    is_last: bool,
) -> Result<(Segment, SegmentEnd), OpenError> {
    let corrupt =
        |offset: u64, detail: String| OpenError::corrupt(data_dir, &sf.path, offset, detail);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&sf.path)
        .map_err(|e| OpenError::io(&sf.path, "open segment", e))?;
    // The file's length is the size it was made with (preallocated or a spare's zeros); one
    // left sparse (its space could not be reserved) still holds at least the initial size.
    let capacity = file
        .metadata()
        .map_err(|e| OpenError::io(&sf.path, "stat segment", e))?
        .len()
        .max(cfg.initial_segment_bytes);
    let mut seg = Segment::new(sf.first_index, sf.path.clone(), file, 0, capacity);
    let (walk, stopped, bytes) = walk_records(&mut seg, intent)?;
    let walk = walk.map_err(|(offset, detail)| corrupt(offset, detail))?;
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
    check_continues(prev, sf).map_err(|d| corrupt(0, d))?;
    let mut end = SegmentEnd { stopped, cut: None };
    if stopped {
        let garbage_end = bytes
            .iter()
            .rposition(|&b| b != 0)
            .map_or(walk.end, |p| (p as u64 + 1).max(walk.end));
        end.cut = Some((walk.end, garbage_end));
    } else {
        end.cut = torn_tail(sf, &walk.tail, is_last).map_err(|(o, d)| corrupt(o, d))?;
    }
    seg.end = walk.end;
    seg.written = walk.end;
    seg.durable = walk.end;
    seg.journaled = walk.end;
    Ok((seg, end))
}

/// Walk the records of `seg`'s file into its index. First only the written part (up to the
/// last non-zero byte; the rest is the preallocation), so a fresh 64 MiB segment is not read
/// into memory whole. A walk over it ends exactly like one over the whole file when it ends
/// cleanly; otherwise (the last record might end in zero bytes, or the tail is damaged) the
/// whole file is read and walked again, so recovery decides on exactly the same bytes. Returns
/// the walk, whether it stopped at the intent, and the bytes walked.
#[allow(clippy::type_complexity)]
fn walk_records(
    seg: &mut Segment,
    intent: Option<LogIndex>,
) -> Result<(Result<Walk, (u64, String)>, bool, Vec<u8>), OpenError> {
    let mut bytes = fsutil::read_nonzero_prefix(&seg.file)
        .map_err(|e| OpenError::io(&seg.path, "read segment", e))?;
    let mut whole = false;
    loop {
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
            return Ok((walk, stopped, bytes));
        }
        bytes = fsutil::read_from(&seg.file, 0)
            .map_err(|e| OpenError::io(&seg.path, "read segment", e))?;
        whole = true;
    }
}

/// A segment must start where the one before it ends.
fn check_continues(prev: Option<&Segment>, sf: &SegmentFile) -> Result<(), String> {
    let Some(prev) = prev else {
        return Ok(());
    };
    let expected = prev.first_index + prev.count();
    if sf.first_index == expected {
        return Ok(());
    }
    Err(format!(
        "gap in the log: the previous segment {} ends at index {}, this one starts at index {}; \
         entries {}..={} are missing (a segment file was deleted or lost)",
        prev.path.display(),
        expected - 1,
        sf.first_index,
        expected,
        sf.first_index.saturating_sub(1)
    ))
}

/// What to cut after a segment's last valid record: a torn tail of the last segment; damage
/// anywhere else is corruption (`Err((offset, detail))`).
fn torn_tail(
    sf: &SegmentFile,
    tail: &Tail,
    is_last: bool,
) -> Result<Option<(u64, u64)>, (u64, String)> {
    match tail {
        Tail::Clean => Ok(None),
        Tail::Torn { start, end, detail } => {
            if !is_last {
                return Err((
                    *start,
                    format!(
                        "damaged record in a segment that was synced whole before the log moved \
                         on: {detail}"
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
            #[cfg(test)]
            super::TORN_TAILS_CUT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(Some((*start, *end)))
        }
        Tail::Corrupt { offset, detail } => Err((*offset, detail.clone())),
    }
}

/// Complete the repairs recovery is allowed to make, durably, before any new write: zero the
/// cut tail of the last segment kept and remove the segments a truncation dooms.
fn repair(w: &Walked, sync: bool) -> Result<(), OpenError> {
    if let (Some(seg), Some((start, end))) = (w.segs.last(), w.cut) {
        fsutil::write_zeros(&seg.file, start, end - start)
            .and_then(|()| fsutil::sync_data(&seg.file, sync))
            .map_err(|e| OpenError::io(&seg.path, "cut the torn tail of", e))?;
    }
    for path in w.doomed.iter().rev() {
        fs::remove_file(path).map_err(|e| OpenError::io(path, "remove segment", e))?;
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
