//! The offline reading API: everything a tool needs to read a data dir without `shoald`.
//!
//! `shoal-inspect` and any other offline tool read a data dir through this module and nothing
//! else of the server's: the server's own code (`shoal_std::server`) is not part of it. Every
//! format it reads is specified in `docs/FORMAT.md`; the same decoders open the data dir at
//! `shoald`'s start, so a tool and the server never disagree on what a file holds.
//!
//! Nothing here opens a file for writing, repairs, or deletes: a tool can point these at the
//! data dir of a stopped node (or a copy of it) and report exactly what is on disk, record by
//! record, with the file and byte offset of each. (Building a data dir, as a restore does, goes
//! through the ordinary writing API: [`super::DataDir`], [`super::FileStorage`] and
//! [`super::addrbook::AddrBook`].)
//!
//! | what | where in the data dir | read with |
//! |---|---|---|
//! | layout | `identity`, `group-<N>/{hardstate,log,snap,addrbook}` | [`list_groups`], [`group_dir`], [`log_dir`], [`snap_dir`] |
//! | identity | `identity` | [`read_identity`] |
//! | hard state | `group-<N>/hardstate`, two slots of [`HS_SLOT_BYTES`] | [`read_hard_state`] |
//! | log | `group-<N>/log/*.log` | [`list_segments`], [`scan_segment`] (records with offsets, then how the segment ends) |
//! | truncation intent | `group-<N>/log/truncate` | [`read_truncate_intent`] |
//! | snapshots | `group-<N>/snap/*.snap` | [`list_snapshots`], [`read_snapshot_info`], [`verify_snapshot_data`] |
//! | address book | `group-<N>/addrbook`, and address entries in the log | [`read_address_book`], [`decode_addr_entry`] |
//!
//! Errors are [`OpenError`] (with the file and, for damage, the byte offset) or, for a segment,
//! [`ScanError`].

use std::path::{Path, PathBuf};

use shoal_core::types::{GroupId, LogIndex};

pub use super::addrbook::{decode_addr_entry, MemberAddr, ADDRBOOK_FILE, ADDR_ENTRY_TAG};
pub use super::error::OpenError;
pub use super::group_dir;
pub use super::hardstate::{
    decode_slot, read_hard_state, HardStateFile, Slot, HARD_STATE_FILE, HS_SLOT_BYTES,
};
pub use super::identity::{read_identity, Identity, IDENTITY_FILE};
pub use super::seglog::TRUNCATE_INTENT_FILE;
pub use super::segment::{
    decode_header, list_segments, parse_segment_name, segment_name, OwnedEntry, SegmentFile,
    SegmentHeader, Tail, HEADER_BYTES, SEGMENT_VERSION,
};
pub use super::snapshot::{
    list_snapshots, read_snapshot_info, snapshot_name, verify_snapshot_data, SnapshotInfo,
    SNAPSHOT_MAGIC,
};

use super::addrbook::AddrBook;
use super::segment::walk_segment;

/// The truncation intent in `log_dir`: `Ok(None)` when there is none, `Ok(Some(index))` when
/// an interrupted truncation voids the entries from `index` on, `Err` (why) when the file is
/// torn or not an intent (void: `shoald` removes it at its next start).
pub fn read_truncate_intent(log_dir: &Path) -> Result<Option<LogIndex>, String> {
    match std::fs::read(log_dir.join(TRUNCATE_INTENT_FILE)) {
        Ok(bytes) => super::seglog::decode_intent(&bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The address book of a group dir, by node id (empty when the file is absent).
pub fn read_address_book(group_dir: &Path) -> Result<Vec<MemberAddr>, String> {
    Ok(AddrBook::load(group_dir)?.map.into_values().collect())
}

/// The groups of a data dir (`group-<N>` directories), ascending.
pub fn list_groups(data_dir: &Path) -> Result<Vec<GroupId>, OpenError> {
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(data_dir).map_err(|e| OpenError::io(data_dir, "list data dir", e))?;
    for ent in entries {
        let ent = ent.map_err(|e| OpenError::io(data_dir, "list data dir", e))?;
        let name = ent.file_name();
        if let Some(g) = name
            .to_str()
            .and_then(|n| n.strip_prefix("group-"))
            .and_then(|n| n.parse::<GroupId>().ok())
        {
            out.push(g);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The log dir of a group dir.
pub fn log_dir(group_dir: &Path) -> PathBuf {
    group_dir.join("log")
}

/// The snapshot dir of a group dir.
pub fn snap_dir(group_dir: &Path) -> PathBuf {
    group_dir.join("snap")
}

/// One entry record found by [`scan_segment`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedRecord {
    /// Byte offset of the record in the segment file.
    pub offset: u64,
    /// Record length in bytes, framing included.
    pub len: u64,
    /// The entry it holds.
    pub entry: OwnedEntry,
}

/// What stopped a segment scan before a clean end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanError {
    /// The header or the first bytes are not a Shoal segment, or the file could not be read.
    Unreadable {
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the problem.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// Bytes after the last record that cannot be a record and have no valid record after
    /// them: a torn, unsynced write (normal after a power cut in the last segment; recovery
    /// cuts it).
    TornTail {
        /// The segment file.
        file: PathBuf,
        /// Byte offset where the torn bytes start.
        offset: u64,
        /// How many bytes up to the last non-zero one.
        len: u64,
        /// What the first bad record looks like.
        detail: String,
    },
    /// Damage followed by valid data, or a whole record that is wrong: corruption.
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the damaged record.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::Unreadable {
                file,
                offset,
                detail,
            } => write!(f, "{} at offset {}: {}", file.display(), offset, detail),
            ScanError::TornTail {
                file,
                offset,
                len,
                detail,
            } => write!(
                f,
                "{} at offset {}: torn tail of {} bytes ({})",
                file.display(),
                offset,
                len,
                detail
            ),
            ScanError::Corrupt {
                file,
                offset,
                detail,
            } => write!(
                f,
                "{} at offset {}: corrupt: {}",
                file.display(),
                offset,
                detail
            ),
        }
    }
}

impl std::error::Error for ScanError {}

/// A scanned segment: its header and its records in order, then at most one error.
#[derive(Clone, Debug)]
pub struct SegmentScan {
    /// The segment file.
    pub file: PathBuf,
    /// Its header.
    pub header: SegmentHeader,
    /// End of the last valid record.
    pub end: u64,
    records: std::vec::IntoIter<ScannedRecord>,
    error: Option<ScanError>,
}

impl Iterator for SegmentScan {
    type Item = Result<ScannedRecord, ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.records.next() {
            Some(r) => Some(Ok(r)),
            None => self.error.take().map(Err),
        }
    }
}

/// Read a segment file record by record (read-only). The header must be readable; records
/// then come in order, each with its offset, followed by a [`ScanError`] if the segment does
/// not end cleanly.
pub fn scan_segment(path: &Path) -> Result<SegmentScan, ScanError> {
    scan_segment_with(path, &[])
}

/// [`scan_segment`] of the file with `pieces` (offset, bytes) laid over what it holds first,
/// in order, as the sync journal's replay would write them back (read-only: the file is not
/// changed).
pub fn scan_segment_with(path: &Path, pieces: &[(u64, &[u8])]) -> Result<SegmentScan, ScanError> {
    let unreadable = |offset: u64, detail: String| ScanError::Unreadable {
        file: path.to_path_buf(),
        offset,
        detail,
    };
    let mut bytes = std::fs::read(path).map_err(|e| unreadable(0, e.to_string()))?;
    for (offset, piece) in pieces {
        let (at, end) = (*offset as usize, *offset as usize + piece.len());
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[at..end].copy_from_slice(piece);
    }
    let mut records = Vec::new();
    let mut last_offset: Option<u64> = None;
    let walk = walk_segment(&bytes, |offset, e| {
        records.push(ScannedRecord {
            offset,
            len: 0,
            entry: OwnedEntry {
                index: e.index,
                term: e.term,
                kind: e.kind,
                data: e.data.to_vec(),
            },
        });
        last_offset = Some(offset);
        true
    })
    .map_err(|(offset, detail)| unreadable(offset, detail))?;
    // Record lengths follow from the next record's offset (and the walk's end for the last).
    for k in 0..records.len() {
        let next = records.get(k + 1).map_or(walk.end, |r| r.offset);
        records[k].len = next - records[k].offset;
    }
    let file = path.to_path_buf();
    let error = match walk.tail {
        Tail::Clean => None,
        Tail::Torn { start, end, detail } => Some(ScanError::TornTail {
            file: file.clone(),
            offset: start,
            len: end - start,
            detail,
        }),
        Tail::Corrupt { offset, detail } => Some(ScanError::Corrupt {
            file: file.clone(),
            offset,
            detail,
        }),
    };
    Ok(SegmentScan {
        file,
        header: walk.header,
        end: walk.end,
        records: records.into_iter(),
        error,
    })
}
