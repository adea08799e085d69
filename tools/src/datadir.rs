//! A `shoald` data dir as a [`Source`]: one pass over each group's hard state, snapshots and
//! segments that reports every entry and everything that looks wrong, each finding with its
//! file and byte offset.
//!
//! Everything here reads through `shoal_std::storage::scan`, the storage's offline reading API
//! (the sync journal through `storage::journal`'s parser, see [`crate::journal`]), which never
//! opens a file for writing: a data dir is never changed by reading it, even when
//! it is damaged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use shoal_core::types::{GroupId, LogIndex};
use shoal_std::storage::scan::{
    self, group_dir, list_groups, list_segments, list_snapshots, read_hard_state, read_identity,
    read_truncate_intent, scan_segment_with, verify_snapshot_data, OpenError, ScanError,
    SegmentFile, Slot, HS_SLOT_BYTES,
};

use shoal_std::storage::journal::{JournalContents, JOURNAL_FILE};

use crate::journal::read_journal;
use crate::portable::{read_snapshot_file, SnapshotFile};
use crate::problem::Problem;
use crate::report::{
    CurrentSnapshot, GroupReport, HardStateView, IdentityView, LogLayout, LostTail, Report,
    SegmentSummary, SnapshotSummary, SourceInfo,
};
use crate::source::{LogEntry, Place, ReadRequest, Source, SourceError, Visitor};

/// Turn an [`OpenError`] into a finding, keeping its file and offset.
pub fn open_error_problem(e: &OpenError, fallback: &Path) -> Problem {
    match e {
        OpenError::Corrupt {
            file,
            offset,
            detail,
            ..
        } => Problem::error(file, Some(*offset), detail.clone()),
        OpenError::Io {
            path,
            action,
            source,
        } => Problem::error(path, None, format!("cannot {}: {}", action, source)),
        OpenError::UnknownVersion {
            file,
            found,
            supported,
        } => Problem::error(file, Some(0), "format version not supported by this build")
            .expected_found(supported, found),
        other => Problem::error(fallback, None, other.to_string()),
    }
}

/// The data dir of a stopped node.
pub struct DataDirSource {
    dir: PathBuf,
}

impl DataDirSource {
    /// Name `dir` as the source; it must be a directory.
    pub fn open(dir: &Path) -> Result<DataDirSource, SourceError> {
        if !dir.is_dir() {
            return Err(SourceError::Usage(format!(
                "{} is not a directory (give the data dir of a stopped node)",
                dir.display()
            )));
        }
        Ok(DataDirSource {
            dir: dir.to_path_buf(),
        })
    }

    /// The groups to read: every group, or `only` (which must exist), and a finding when the
    /// directory cannot be listed.
    fn groups(&self, only: Option<GroupId>) -> Result<(Vec<GroupId>, Vec<Problem>), SourceError> {
        let (groups, problems) = match list_groups(&self.dir) {
            Ok(g) => (g, Vec::new()),
            Err(e) => (Vec::new(), vec![open_error_problem(&e, &self.dir)]),
        };
        match only {
            Some(g) if !groups.contains(&g) => Err(SourceError::Usage(format!(
                "{} has no group {} (groups: {:?})",
                self.dir.display(),
                g,
                groups
            ))),
            Some(g) => Ok((vec![g], problems)),
            None => Ok((groups, problems)),
        }
    }

    fn segments(&self, group: GroupId) -> Vec<SegmentFile> {
        list_segments(&scan::log_dir(&group_dir(&self.dir, group))).unwrap_or_default()
    }
}

impl Source for DataDirSource {
    fn read(&self, req: ReadRequest, visitor: &mut dyn Visitor) -> Result<Report, SourceError> {
        let (groups, mut problems) = self.groups(req.group)?;
        let identity = match read_identity(&self.dir) {
            Ok(id) => Some(IdentityView {
                cluster_id: id.cluster_id,
                node_id: id.node_id,
                raft_addr: id.raft_addr,
            }),
            Err(e) => {
                let path = self.dir.join(scan::IDENTITY_FILE);
                problems.insert(0, open_error_problem(&e, &path));
                None
            }
        };
        let (journal, journal_problems) = read_journal(&self.dir);
        problems.extend(journal_problems);
        let pieces = journal.as_ref().map(|(_, c)| live_pieces(c));
        let pieces = pieces.unwrap_or_default();
        let journal = journal.map(|(view, _)| view);
        let groups = groups
            .into_iter()
            .map(|g| {
                let in_journal = journal
                    .as_ref()
                    .and_then(|j| j.group(g))
                    .is_some_and(|j| j.not_in_segments > 0);
                let pieces = pieces.get(&g).map_or(&[][..], Vec::as_slice);
                read_group(
                    &self.dir,
                    g,
                    req.verify_snapshots,
                    (in_journal, pieces),
                    visitor,
                )
            })
            .collect();
        Ok(Report {
            source: SourceInfo::DataDir {
                data_dir: self.dir.display().to_string(),
                identity,
            },
            groups,
            journal,
            problems,
        })
    }

    fn snapshot(&self, group: GroupId) -> Result<Option<SnapshotFile>, SourceError> {
        self.groups(Some(group))?;
        let sdir = scan::snap_dir(&group_dir(&self.dir, group));
        if !sdir.exists() {
            return Ok(None);
        }
        let infos = list_snapshots(&sdir)
            .map_err(|e| SourceError::Damaged(open_error_problem(&e, &sdir)))?;
        match infos.iter().max_by_key(|i| i.install_seq) {
            Some(current) => read_snapshot_file(&current.path)
                .map(Some)
                .map_err(SourceError::Damaged),
            None => Ok(None),
        }
    }

    fn log_bytes(&self) -> u64 {
        let groups = list_groups(&self.dir).unwrap_or_default();
        groups
            .into_iter()
            .flat_map(|g| self.segments(g))
            .filter_map(|s| std::fs::metadata(&s.path).ok())
            .map(|m| m.len())
            .sum()
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

/// Each group's live pieces in the data dir's sync journal (segment first index, offset,
/// bytes), in journal order: what `shoald` writes back into the segments at its next start.
fn live_pieces(contents: &JournalContents) -> HashMap<GroupId, Vec<Piece>> {
    let mut by_group: HashMap<GroupId, Vec<Piece>> = HashMap::new();
    for (group, segment, offset, bytes) in contents.live_pieces() {
        by_group
            .entry(group)
            .or_default()
            .push((segment, offset, bytes.to_vec()));
    }
    by_group
}

/// A live piece of the sync journal: its segment's first index, the offset, the bytes.
type Piece = (LogIndex, u64, Vec<u8>);

/// Read one group. Never fails: what cannot be read becomes a finding. `in_journal`: the sync
/// journal holds bytes of this group's log that its segments lack; `pieces`: the group's live
/// pieces, laid over its segments as they are read (the log as `shoald` will have it after
/// writing them back).
fn read_group(
    data_dir: &Path,
    group: GroupId,
    verify_snapshots: bool,
    (in_journal, pieces): (bool, &[Piece]),
    visitor: &mut dyn Visitor,
) -> GroupReport {
    let gdir = group_dir(data_dir, group);
    let log_dir = scan::log_dir(&gdir);
    let mut g = GroupReport::new(
        group,
        LogLayout::Segments {
            dir: gdir.display().to_string(),
            segments: Vec::new(),
            segment_bytes: 0,
            void_from: None,
        },
    );
    let hs_path = gdir.join(scan::HARD_STATE_FILE);
    match read_hard_state(&gdir) {
        Ok(hs) => {
            for (k, slot) in hs.slots.iter().enumerate() {
                if let Slot::Bad(detail) = slot {
                    g.problems.push(Problem::warning(
                        &hs_path,
                        Some((HS_SLOT_BYTES * k) as u64),
                        format!(
                            "hard-state slot {} is damaged ({}); a torn, unsynced save — the other \
                             slot is used",
                            k, detail
                        ),
                    ));
                }
            }
            g.hard_state = Some(HardStateView {
                term: hs.state.term,
                vote: hs.state.vote,
                commit: hs.state.commit,
                seq: Some(hs.seq),
            });
        }
        Err(e) => g.problems.push(open_error_problem(&e, &hs_path)),
    }
    let current_meta = read_snapshots(&gdir, &mut g, verify_snapshots);
    visitor.group_start(group, current_meta.as_ref());
    let void_from = read_intent(&log_dir, &mut g);
    let mut log = LogScan {
        group: &mut g,
        pieces,
        void_from,
        segments: Vec::new(),
        segment_bytes: 0,
        torn_tail: false,
    };
    log.read(&log_dir, visitor);
    let LogScan {
        segments,
        segment_bytes,
        torn_tail,
        ..
    } = log;
    g.layout = LogLayout::Segments {
        dir: gdir.display().to_string(),
        segments,
        segment_bytes,
        void_from,
    };
    if in_journal {
        g.problems.push(Problem::warning(
            &data_dir.join(JOURNAL_FILE),
            None,
            format!(
                "the sync journal holds log bytes of group {} that its segments lack (a power \
                 cut lost the page cache, or shoald stopped while busy groups held bytes in the \
                 journal): the log read here includes them, as shoald writes them back at its \
                 next start",
                group
            ),
        ));
    }
    let lost_tail = torn_tail.then_some(LostTail::Torn);
    g.check_hard_state(&hs_path, lost_tail);
    visitor.group_end(&g);
    g
}

/// Read the truncation intent: the index from which entries are void, if one is present.
fn read_intent(log_dir: &Path, g: &mut GroupReport) -> Option<LogIndex> {
    let intent_path = log_dir.join(scan::TRUNCATE_INTENT_FILE);
    match read_truncate_intent(log_dir) {
        Ok(Some(from)) => {
            g.problems.push(Problem::warning(
                &intent_path,
                Some(0),
                format!(
                    "an interrupted truncation: entries ≥ {} are void; shoald completes the cut at \
                     its next start",
                    from
                ),
            ));
            Some(from)
        }
        Ok(None) => None,
        Err(e) => {
            g.problems.push(Problem::warning(
                &intent_path,
                Some(0),
                format!(
                    "a torn truncation intent ({}); it is void and shoald removes it at its next \
                     start",
                    e
                ),
            ));
            None
        }
    }
}

/// List the group's snapshots into `g`; returns the current one's metadata.
fn read_snapshots(
    gdir: &Path,
    g: &mut GroupReport,
    verify: bool,
) -> Option<shoal_core::types::SnapshotMeta> {
    let sdir = scan::snap_dir(gdir);
    if !sdir.exists() {
        return None;
    }
    let infos = match list_snapshots(&sdir) {
        Ok(i) => i,
        Err(e) => {
            g.problems.push(open_error_problem(&e, &sdir));
            return None;
        }
    };
    if let Ok(rd) = std::fs::read_dir(&sdir) {
        for ent in rd.flatten() {
            let p = ent.path();
            if p.extension().and_then(|e| e.to_str()) == Some("tmp") {
                g.problems.push(Problem::warning(
                    &p,
                    None,
                    "a partly written snapshot (temp file); shoald deletes it at its next start",
                ));
            }
        }
    }
    let current_seq = infos.iter().map(|i| i.install_seq).max();
    let mut current_meta = None;
    for info in &infos {
        let data_verified = verify.then(|| match verify_snapshot_data(info) {
            Ok(()) => true,
            Err(e) => {
                g.problems.push(open_error_problem(&e, &info.path));
                false
            }
        });
        let current = Some(info.install_seq) == current_seq;
        let summary = SnapshotSummary {
            file: info.path.display().to_string(),
            index: info.meta.index,
            term: info.meta.term,
            size_bytes: info.meta.size_bytes,
            crc: info.meta.crc,
            install_seq: info.install_seq,
            members: crate::text::members(&info.meta.membership),
            current,
            data_verified,
        };
        if current {
            g.snapshot = Some(CurrentSnapshot::new(&summary, &info.meta.membership));
            current_meta = Some(info.meta.clone());
        }
        g.snapshots.push(summary);
    }
    current_meta
}

/// The log part of a group read: segments in order, each checked against its name, its group
/// and the one before it.
struct LogScan<'a> {
    group: &'a mut GroupReport,
    /// The group's live journal pieces, laid over the segments they name.
    pieces: &'a [Piece],
    void_from: Option<LogIndex>,
    segments: Vec<SegmentSummary>,
    segment_bytes: u64,
    torn_tail: bool,
}

impl LogScan<'_> {
    fn read(&mut self, log_dir: &Path, visitor: &mut dyn Visitor) {
        if !log_dir.exists() {
            return;
        }
        let files = match list_segments(log_dir) {
            Ok(f) => f,
            Err(e) => {
                self.problem(Problem::error(log_dir, None, format!("cannot list: {}", e)));
                return;
            }
        };
        let mut expected_next: Option<LogIndex> = None;
        let count = files.len();
        for (k, sf) in files.iter().enumerate() {
            expected_next = self.segment(sf, k == 0, k + 1 == count, expected_next, visitor);
        }
    }

    fn problem(&mut self, p: Problem) {
        self.group.problems.push(p);
    }

    /// Read one segment; returns the index the next segment must start at (`None` when this
    /// one is too damaged to say).
    fn segment(
        &mut self,
        sf: &SegmentFile,
        is_first: bool,
        is_last: bool,
        expected_next: Option<LogIndex>,
        visitor: &mut dyn Visitor,
    ) -> Option<LogIndex> {
        let file_bytes = std::fs::metadata(&sf.path).map_or(0, |m| m.len());
        self.segment_bytes += file_bytes;
        visitor.bytes(file_bytes);
        let mut summary = SegmentSummary {
            file: sf.path.display().to_string(),
            first_index: sf.first_index,
            last_index: None,
            entries: 0,
            file_bytes,
            used_bytes: 0,
        };
        let over: Vec<(u64, &[u8])> = self
            .pieces
            .iter()
            .filter(|(segment, _, _)| *segment == sf.first_index)
            .map(|(_, offset, bytes)| (*offset, bytes.as_slice()))
            .collect();
        let seg = match scan_segment_with(&sf.path, &over) {
            Ok(s) => s,
            Err(e) => {
                self.problem(scan_problem(&e, is_last));
                self.segments.push(summary);
                return None;
            }
        };
        self.check_header(sf, seg.header.first_index, seg.header.group, is_first);
        if let Some(exp) = expected_next {
            let first = seg.header.first_index;
            if first != exp {
                let detail = if first > exp {
                    format!(
                        "entries {}..={} are missing between the previous segment and this one \
                         (a deleted segment, or the previous one was cut short)",
                        exp,
                        first - 1
                    )
                } else {
                    "this segment overlaps the previous one".to_string()
                };
                self.problem(
                    Problem::error(&sf.path, Some(0), detail)
                        .expected_found(format!("first index {}", exp), first),
                );
            }
        }
        let path = seg.file.clone();
        summary.used_bytes = seg.end;
        let mut damaged = false;
        for item in seg {
            match item {
                Ok(rec) => {
                    let e = &rec.entry;
                    if self.void_from.is_some_and(|v| e.index >= v) {
                        continue;
                    }
                    summary.entries += 1;
                    summary.last_index = Some(e.index);
                    if let Some(p) =
                        self.group
                            .count_entry(e.index, e.term, &path, Some(rec.offset))
                    {
                        self.problem(p);
                    }
                    visitor.entry(
                        self.group.group,
                        &LogEntry {
                            index: e.index,
                            term: e.term,
                            kind: e.kind,
                            data: &e.data,
                            place: Some(Place {
                                file: &path,
                                offset: rec.offset,
                                len: rec.len,
                            }),
                        },
                    );
                }
                Err(e) => {
                    let torn = matches!(e, ScanError::TornTail { .. }) && is_last;
                    damaged = !torn;
                    self.torn_tail |= torn;
                    self.problem(scan_problem(&e, is_last));
                }
            }
        }
        let next = (!damaged).then(|| summary.last_index.map_or(sf.first_index, |l| l + 1));
        self.segments.push(summary);
        next
    }

    /// A header that names another first index or group, or a first segment that starts
    /// after the snapshot (a deleted segment).
    fn check_header(
        &mut self,
        sf: &SegmentFile,
        first_index: LogIndex,
        group: GroupId,
        is_first: bool,
    ) {
        if first_index != sf.first_index {
            self.problem(
                Problem::error(
                    &sf.path,
                    Some(0),
                    "the segment header's first index does not match the file name",
                )
                .expected_found(sf.first_index, first_index),
            );
        }
        if group != self.group.group {
            self.problem(
                Problem::error(&sf.path, Some(0), "the segment header names another group")
                    .expected_found(self.group.group, group),
            );
        }
        let snap_index = self.group.snapshot_index();
        if is_first && first_index > snap_index + 1 {
            self.problem(
                Problem::error(
                    &sf.path,
                    Some(0),
                    format!(
                        "the log starts after the snapshot (index {}): entries {}..={} are \
                         missing (a deleted segment?)",
                        snap_index,
                        snap_index + 1,
                        first_index - 1
                    ),
                )
                .expected_found(format!("first index ≤ {}", snap_index + 1), first_index),
            );
        }
    }
}

/// A scan error as a finding. A torn tail is a warning only in the last segment: every other
/// segment was fdatasynced before the log rolled over, so it cannot end in a torn write.
fn scan_problem(e: &ScanError, is_last: bool) -> Problem {
    match e {
        ScanError::Unreadable {
            file,
            offset,
            detail,
        } => Problem::error(
            file,
            Some(*offset),
            format!("unreadable segment: {}", detail),
        ),
        ScanError::TornTail {
            file,
            offset,
            len,
            detail,
        } if is_last => Problem::warning(
            file,
            Some(*offset),
            format!(
                "torn tail of {} bytes after the last valid record ({}): an unsynced write cut \
                 by a crash; shoald cuts it at its next start",
                len, detail
            ),
        ),
        ScanError::TornTail {
            file,
            offset,
            len,
            detail,
        } => Problem::error(
            file,
            Some(*offset),
            format!(
                "{} bad bytes end a segment that is not the last ({}); segments are synced \
                 before the log rolls over, so this is damage (or the file was cut short)",
                len, detail
            ),
        ),
        ScanError::Corrupt {
            file,
            offset,
            detail,
        } => Problem::error(file, Some(*offset), format!("corrupt record: {}", detail)),
    }
}
