//! A data dir's sync journal (`shoal_std::storage::journal`) as found: its epoch, its records,
//! and per group the live pieces `shoald` writes back into the segments at its next start,
//! with how many of them hold bytes the segments do not (yet) have.
//!
//! Read-only, like the rest of the tool: the file is parsed with the storage's own
//! `journal::parse_detailed`, and segments are only read to compare a piece with what is there.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::Serialize;
use shoal_core::types::{GroupId, LogIndex};
use shoal_std::storage::journal::{self, JournalContents, JournalRecord, JOURNAL_FILE};
use shoal_std::storage::scan::{decode_header, HEADER_BYTES};

use crate::problem::Problem;

/// The journal as shown by `summary` and `verify`.
#[derive(Clone, Debug, Serialize)]
pub struct JournalView {
    /// The file.
    pub file: String,
    /// The newest epoch its halves' headers name; records of it and of the epoch before (its
    /// half not reused yet) count.
    pub epoch: u64,
    /// The epochs whose records count, oldest first: the newest, and the one before while its
    /// half is not reused.
    pub epochs: Vec<u64>,
    /// Records of those epochs: pieces and barriers.
    pub records: usize,
    /// Barrier records among them.
    pub barriers: usize,
    /// Pieces a replay writes back (each group's pieces after its last barrier).
    pub live_pieces: usize,
    /// Bytes those pieces hold.
    pub live_bytes: u64,
    /// The live pieces per group, by group id.
    pub groups: Vec<JournalGroupView>,
}

/// One group's live pieces.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JournalGroupView {
    /// The group.
    pub group: GroupId,
    /// Live pieces of this group.
    pub live_pieces: usize,
    /// Bytes they hold.
    pub live_bytes: u64,
    /// Live pieces whose bytes are not in their segment (a power cut lost the page cache, or
    /// shoald stopped while busy groups held those bytes in the journal):
    /// their segments lack them until the replay (the tool reads the log with them laid over).
    pub not_in_segments: usize,
    /// Live pieces whose segment is gone (or is another file): a replay skips them.
    pub segment_gone: usize,
}

impl JournalView {
    /// The group's live pieces, if it has any.
    pub fn group(&self, group: GroupId) -> Option<&JournalGroupView> {
        self.groups.iter().find(|g| g.group == group)
    }
}

/// Read the journal of `data_dir`: its view and what it holds, `None` when there is no
/// journal file (or it does not parse), and the findings. No header that reads is a warning (a
/// journal torn while it was made, when every piece was durable: `shoald` starts it afresh); a
/// record that does not parse is an error at its offset (`shoald` refuses to start on it).
pub fn read_journal(data_dir: &Path) -> (Option<(JournalView, JournalContents)>, Vec<Problem>) {
    let path = data_dir.join(JOURNAL_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (None, Vec::new()),
        Err(e) => {
            let p = Problem::error(&path, None, format!("cannot read the sync journal: {e}"));
            return (None, vec![p]);
        }
    };
    match journal::parse_detailed(&bytes) {
        Ok(contents) => {
            let view = view(data_dir, &path, &contents);
            (Some((view, contents)), Vec::new())
        }
        Err(e) if e.in_header() => {
            let p = Problem::warning(
                &path,
                Some(0),
                format!(
                    "no header of the sync journal reads ({}): torn while the journal was \
                     made or switched halves, when every piece was durable; shoald starts it \
                     afresh at its next start",
                    e.detail
                ),
            );
            (None, vec![p])
        }
        Err(e) => {
            let p = Problem::error(
                &path,
                Some(e.offset),
                format!(
                    "sync journal: {}; shoald refuses to start on it (its replay stops there)",
                    e.detail
                ),
            );
            (None, vec![p])
        }
    }
}

fn view(data_dir: &Path, path: &Path, contents: &JournalContents) -> JournalView {
    let mut groups: BTreeMap<GroupId, JournalGroupView> = BTreeMap::new();
    let mut segments = SegmentReader::default();
    for (group, segment, offset, bytes) in contents.live_pieces() {
        let g = groups.entry(group).or_insert_with(|| JournalGroupView {
            group,
            ..JournalGroupView::default()
        });
        g.live_pieces += 1;
        g.live_bytes += bytes.len() as u64;
        match segments.holds(data_dir, group, segment, offset, bytes) {
            None => g.segment_gone += 1,
            Some(false) => g.not_in_segments += 1,
            Some(true) => {}
        }
    }
    let groups: Vec<JournalGroupView> = groups.into_values().collect();
    JournalView {
        file: path.display().to_string(),
        epoch: contents.epoch,
        epochs: contents.epochs.clone(),
        records: contents.records.len(),
        barriers: contents
            .records
            .iter()
            .filter(|r| matches!(r, JournalRecord::Barrier { .. }))
            .count(),
        live_pieces: groups.iter().map(|g| g.live_pieces).sum(),
        live_bytes: groups.iter().map(|g| g.live_bytes).sum(),
        groups,
    }
}

/// Segment files opened to compare pieces with, each once; `None` for a segment a replay
/// would skip (missing, or its header names another group or first index).
#[derive(Default)]
struct SegmentReader {
    open: BTreeMap<(GroupId, LogIndex), Option<std::fs::File>>,
}

impl SegmentReader {
    /// Whether the segment holds `bytes` at `offset` (`None`: a replay skips the piece).
    fn holds(
        &mut self,
        data_dir: &Path,
        group: GroupId,
        segment: LogIndex,
        offset: u64,
        bytes: &[u8],
    ) -> Option<bool> {
        let file = self
            .open
            .entry((group, segment))
            .or_insert_with(|| open_segment(data_dir, group, segment))
            .as_ref()?;
        let mut there = vec![0u8; bytes.len()];
        Some(file.read_exact_at(&mut there, offset).is_ok() && there == bytes)
    }
}

/// The segment a piece names, when it is there and its header says it is that segment (what
/// `journal::replay` checks before writing a piece back).
fn open_segment(data_dir: &Path, group: GroupId, first: LogIndex) -> Option<std::fs::File> {
    let f = std::fs::File::open(journal::segment_path(data_dir, group, first)).ok()?;
    let mut head = [0u8; HEADER_BYTES];
    f.read_exact_at(&mut head, 0).ok()?;
    decode_header(&head)
        .ok()
        .filter(|h| h.group == group && h.first_index == first)
        .map(|_| f)
}
