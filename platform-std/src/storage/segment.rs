//! Log segment files: naming, the header record, and the record walk shared by recovery and by
//! the read-only scanner tools use.
//!
//! A segment is `GROUP_DIR/log/<first index, 20 digits>.log`, preallocated with zeros. It starts
//! with a header record (magic, segment format version, group, first index), followed by one
//! record per entry (`shoal_core::record` around `shoal_core::entry::encode`), back to back.
//! After the last record the file holds zeros up to its preallocated end.
//!
//! This module never decides what to do about damage; it classifies what it sees
//! ([`Tail`]) and leaves repair or refusal to the caller.

use std::path::{Path, PathBuf};

use shoal_core::entry::{self, EntryRef};
use shoal_core::record::{self, RECORD_VERSION};
use shoal_core::types::{EntryKind, GroupId, LogIndex, Term};

/// Magic bytes at the start of a segment header body.
pub const SEGMENT_MAGIC: &[u8; 8] = b"SHOALSEG";
/// Segment format version written by this build.
pub const SEGMENT_VERSION: u8 = 1;
/// Bytes of a segment header body: magic, version, group, first index.
const HEADER_BODY_BYTES: usize = 8 + 1 + 4 + 8;
/// Bytes of the whole header record.
pub const HEADER_BYTES: usize = HEADER_BODY_BYTES + record::RECORD_OVERHEAD;
/// Extension of segment files.
pub const SEGMENT_EXT: &str = "log";

/// The header at the start of every segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment format version.
    pub version: u8,
    /// The Raft group the segment belongs to.
    pub group: GroupId,
    /// Index of the first entry the segment holds (or will hold).
    pub first_index: LogIndex,
}

/// File name of the segment whose first entry is `first_index`.
pub fn segment_name(first_index: LogIndex) -> String {
    format!("{:020}.{}", first_index, SEGMENT_EXT)
}

/// The first index a segment file name announces, if it is a segment name.
pub fn parse_segment_name(name: &str) -> Option<LogIndex> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// A segment file found in a log dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    /// Its path.
    pub path: PathBuf,
    /// The first index its name announces.
    pub first_index: LogIndex,
}

/// The segment files of `log_dir`, in log order. Other files are ignored.
pub fn list_segments(log_dir: &Path) -> std::io::Result<Vec<SegmentFile>> {
    let mut out = Vec::new();
    for ent in std::fs::read_dir(log_dir)? {
        let ent = ent?;
        let name = ent.file_name();
        if let Some(first_index) = name.to_str().and_then(parse_segment_name) {
            out.push(SegmentFile {
                path: ent.path(),
                first_index,
            });
        }
    }
    out.sort_by_key(|s| s.first_index);
    Ok(out)
}

/// Encode a segment header record.
pub(crate) fn encode_header(group: GroupId, first_index: LogIndex) -> [u8; HEADER_BYTES] {
    let mut body = [0u8; HEADER_BODY_BYTES];
    body[..8].copy_from_slice(SEGMENT_MAGIC);
    body[8] = SEGMENT_VERSION;
    body[9..13].copy_from_slice(&group.to_le_bytes());
    body[13..21].copy_from_slice(&first_index.to_le_bytes());
    let mut out = [0u8; HEADER_BYTES];
    record::encode(&body, &mut out).expect("the header record fits its buffer");
    out
}

/// Decode the header record at the front of a segment's bytes.
pub fn decode_header(bytes: &[u8]) -> Result<SegmentHeader, String> {
    let (body, _) = record::decode(bytes).map_err(|e| format!("segment header: {}", e))?;
    if body.len() != HEADER_BODY_BYTES || &body[..8] != SEGMENT_MAGIC {
        return Err("not a Shoal log segment (bad header)".into());
    }
    let mut g = [0u8; 4];
    g.copy_from_slice(&body[9..13]);
    let mut f = [0u8; 8];
    f.copy_from_slice(&body[13..21]);
    Ok(SegmentHeader {
        version: body[8],
        group: u32::from_le_bytes(g),
        first_index: u64::from_le_bytes(f),
    })
}

/// How the bytes after the last valid record of a segment look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Only zeros (or nothing) follow: the records end cleanly.
    Clean,
    /// Bytes that cannot be a record follow, and no valid record comes after them: a torn,
    /// unsynced write. They span `start..end`.
    Torn {
        /// Offset of the first bad byte (the end of the last valid record).
        start: u64,
        /// One past the last non-zero byte.
        end: u64,
        /// What the first bad record looks like.
        detail: String,
    },
    /// Damage with valid data after it, or a record that is whole but wrong: corruption.
    Corrupt {
        /// Offset of the damaged record.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
}

/// What a walk over a segment's records found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    /// The header.
    pub header: SegmentHeader,
    /// End of the last valid record (where the next record would go).
    pub end: u64,
    /// What follows the last valid record.
    pub tail: Tail,
}

/// Walk the records of a segment's `bytes`, calling `on_entry(offset, entry)` for each valid
/// entry in order. Entry indices must run on from the header's first index; the callback may stop
/// the walk early by returning `Ok(false)` (the walk then ends `Clean` at that record's offset).
pub fn walk_segment(
    bytes: &[u8],
    mut on_entry: impl FnMut(u64, &EntryRef<'_>) -> bool,
) -> Result<Walk, (u64, String)> {
    let header = decode_header(bytes).map_err(|d| (0, d))?;
    if header.version != SEGMENT_VERSION {
        return Err((
            0,
            format!(
                "segment format version {} is not supported (this build reads {})",
                header.version, SEGMENT_VERSION
            ),
        ));
    }
    let mut pos = HEADER_BYTES;
    let mut next_index = header.first_index;
    loop {
        if pos >= bytes.len() {
            return Ok(Walk {
                header,
                end: pos as u64,
                tail: Tail::Clean,
            });
        }
        let rest = &bytes[pos..];
        let (body, used) = match record::decode(rest) {
            Ok(ok) => ok,
            Err(err) => {
                let tail = classify_tail(bytes, pos, next_index, &err.to_string());
                return Ok(Walk {
                    header,
                    end: pos as u64,
                    tail,
                });
            }
        };
        let corrupt = |detail: String| Walk {
            header,
            end: pos as u64,
            tail: Tail::Corrupt {
                offset: pos as u64,
                detail,
            },
        };
        let e = match entry::decode(body) {
            Ok((e, n)) if n == body.len() => e,
            Ok(_) => return Ok(corrupt("entry record has trailing bytes".into())),
            Err(err) => return Ok(corrupt(format!("entry does not decode: {}", err))),
        };
        if e.index != next_index {
            return Ok(corrupt(format!(
                "entry index {} where index {} was expected",
                e.index, next_index
            )));
        }
        if !on_entry(pos as u64, &e) {
            return Ok(Walk {
                header,
                end: pos as u64,
                tail: Tail::Clean,
            });
        }
        next_index += 1;
        pos += used;
    }
}

/// Judge the bad bytes at `pos`: torn when no valid entry record with index ≥ `next_index`
/// starts anywhere after them, corrupt otherwise.
fn classify_tail(bytes: &[u8], pos: usize, next_index: LogIndex, detail: &str) -> Tail {
    let Some(last_nonzero) = bytes[pos..].iter().rposition(|&b| b != 0) else {
        return Tail::Clean;
    };
    let end = pos + last_nonzero + 1;
    for q in pos + 1..end {
        if let Some(found) = valid_entry_at(bytes, q, next_index) {
            return Tail::Corrupt {
                offset: pos as u64,
                detail: format!(
                    "{}; a valid record (entry {}) follows at offset {}, so this is not a torn tail",
                    detail, found, q
                ),
            };
        }
    }
    Tail::Torn {
        start: pos as u64,
        end: end as u64,
        detail: detail.to_string(),
    }
}

/// The index of a valid entry record starting at `q` with index ≥ `min_index`, if there is one.
fn valid_entry_at(bytes: &[u8], q: usize, min_index: LogIndex) -> Option<LogIndex> {
    let rest = &bytes[q..];
    let total = record::peek_len(rest)?;
    // Cheap filters first: most positions fail on the length or version byte.
    if total <= 8 || total > rest.len() || rest[4] != RECORD_VERSION {
        return None;
    }
    let (body, _) = record::decode(rest).ok()?;
    let (e, n) = entry::decode(body).ok()?;
    (n == body.len() && e.index >= min_index).then_some(e.index)
}

/// An entry read by the scanner, owning its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedEntry {
    /// Position in the log.
    pub index: LogIndex,
    /// Term of the entry.
    pub term: Term,
    /// What the payload is.
    pub kind: EntryKind,
    /// The payload.
    pub data: Vec<u8>,
}
