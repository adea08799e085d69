//! Reading a `shoald` data dir offline: one pass over a group's hard state, segments and
//! snapshots that collects what is there (for `summary` and `log`) and everything that looks
//! wrong (for `verify`), each finding with its file and byte offset.
//!
//! Everything here goes through `shoal_std::storage::scan`, which never opens a file for
//! writing: a data dir is never changed by reading it, even when it is damaged.

use std::path::{Path, PathBuf};

use serde::Serialize;
use shoal_core::membership::Membership;
use shoal_core::record;
use shoal_core::types::{GroupId, HardState, LogIndex, Term};
use shoal_std::storage::scan::{
    self, list_groups, list_segments, list_snapshots, read_hard_state, read_identity, scan_segment,
    verify_snapshot_data, Identity, ScanError, ScannedRecord, Slot, SnapshotInfo,
    TRUNCATE_INTENT_FILE,
};
use shoal_std::storage::{group_dir, OpenError};

use crate::problem::Problem;

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

/// One log segment as found.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentSummary {
    /// The file.
    pub file: String,
    /// First index, from the file name.
    pub first_index: LogIndex,
    /// Index of its last valid entry (`None` when it holds none).
    pub last_index: Option<LogIndex>,
    /// Valid entries read.
    pub entries: u64,
    /// File size in bytes (segments are preallocated).
    pub file_bytes: u64,
    /// Bytes used: the end of the last valid record.
    pub used_bytes: u64,
}

/// One snapshot file as found.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotSummary {
    /// The file.
    pub file: String,
    /// Last entry covered.
    pub index: LogIndex,
    /// Its term.
    pub term: Term,
    /// Data bytes.
    pub size_bytes: u64,
    /// CRC-32C of the data, from the metadata.
    pub crc: u32,
    /// Install sequence number (the highest is current).
    pub install_seq: u64,
    /// The membership at `index`, in words.
    pub members: String,
    /// Whether this is the group's current snapshot.
    pub current: bool,
    /// Whether the data was checked against its size and CRC (and passed).
    pub data_verified: Option<bool>,
}

/// Everything found about one group.
#[derive(Clone, Debug, Serialize)]
pub struct GroupScan {
    /// The group id.
    pub group: GroupId,
    /// Its directory.
    pub dir: String,
    /// The current hard state, when the file could be read.
    pub hard_state: Option<HardStateView>,
    /// Segments, in index order.
    pub segments: Vec<SegmentSummary>,
    /// Total size of the segment files.
    pub segment_bytes: u64,
    /// Snapshots, oldest install first.
    pub snapshots: Vec<SnapshotSummary>,
    /// First entry in the log files: (index, term).
    pub first: Option<(LogIndex, Term)>,
    /// Last entry in the log files: (index, term).
    pub last: Option<(LogIndex, Term)>,
    /// Valid entries read.
    pub entries: u64,
    /// Entries at or after this index are void (an interrupted truncation).
    pub void_from: Option<LogIndex>,
    /// What looks wrong.
    pub problems: Vec<Problem>,
    /// The current snapshot's full metadata (not serialized; see `snapshots`).
    #[serde(skip)]
    pub current_snapshot: Option<SnapshotInfo>,
}

/// The hard state as shown.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct HardStateView {
    /// Latest term seen.
    pub term: Term,
    /// Vote in that term (0 = none).
    pub vote: u64,
    /// Commit index hint.
    pub commit: LogIndex,
    /// Save sequence number.
    pub seq: u64,
}

impl HardStateView {
    /// As the core's type.
    pub fn state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.commit,
        }
    }
}

impl GroupScan {
    /// Index of the current snapshot (0 when none).
    pub fn snapshot_index(&self) -> LogIndex {
        self.current_snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    /// The last index the group holds: its last entry, or its snapshot's index.
    pub fn last_index(&self) -> LogIndex {
        self.last.map_or(0, |l| l.0).max(self.snapshot_index())
    }

    /// Membership at the current snapshot, if there is one.
    pub fn snapshot_membership(&self) -> Option<&Membership> {
        self.current_snapshot.as_ref().map(|s| &s.meta.membership)
    }
}

/// What to do while scanning.
pub struct ScanOptions<'a> {
    /// Check every snapshot's data against its size and CRC (reads whole files).
    pub verify_snapshots: bool,
    /// Called with each segment's file size before it is read (for a progress bar).
    pub on_segment: &'a mut dyn FnMut(u64),
    /// Called with each valid entry record, in index order (void entries excluded).
    pub on_record: &'a mut dyn FnMut(&Path, &ScannedRecord),
}

/// Read the truncation intent of a log dir, if one is present.
fn read_intent(path: &Path) -> Result<Option<LogIndex>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let (body, _) = record::decode(&bytes).map_err(|e| e.to_string())?;
    if body.len() != 16 || &body[..8] != b"SHOALTRN" {
        return Err("not a truncation intent record".into());
    }
    let mut w = [0u8; 8];
    w.copy_from_slice(&body[8..16]);
    Ok(Some(u64::from_le_bytes(w)))
}

/// Scan one group of `data_dir`. Never fails: what cannot be read becomes a finding.
pub fn scan_group(data_dir: &Path, group: GroupId, opts: &mut ScanOptions<'_>) -> GroupScan {
    let gdir = group_dir(data_dir, group);
    let mut g = GroupScan {
        group,
        dir: gdir.display().to_string(),
        hard_state: None,
        segments: Vec::new(),
        segment_bytes: 0,
        snapshots: Vec::new(),
        first: None,
        last: None,
        entries: 0,
        void_from: None,
        problems: Vec::new(),
        current_snapshot: None,
    };
    let hs_path = gdir.join(scan::HARD_STATE_FILE);
    match read_hard_state(&gdir) {
        Ok(hs) => {
            for (k, slot) in hs.slots.iter().enumerate() {
                if let Slot::Bad(detail) = slot {
                    g.problems.push(Problem::warning(
                        &hs_path,
                        Some(64 * k as u64),
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
                seq: hs.seq,
            });
        }
        Err(e) => g.problems.push(open_error_problem(&e, &hs_path)),
    }

    scan_snapshots(&gdir, &mut g, opts.verify_snapshots);
    let log_dir = scan::log_dir(&gdir);
    let intent_path = log_dir.join(TRUNCATE_INTENT_FILE);
    match read_intent(&intent_path) {
        Ok(Some(from)) => {
            g.void_from = Some(from);
            g.problems.push(Problem::warning(
                &intent_path,
                Some(0),
                format!(
                    "an interrupted truncation: entries ≥ {} are void; shoald completes the cut at \
                     its next start",
                    from
                ),
            ));
        }
        Ok(None) => {}
        Err(e) => g.problems.push(Problem::warning(
            &intent_path,
            Some(0),
            format!(
                "a torn truncation intent ({}); it is void and shoald removes it at its next start",
                e
            ),
        )),
    }
    scan_log(&log_dir, &mut g, opts);
    check_hard_state(&hs_path, &mut g);
    g
}

fn scan_snapshots(gdir: &Path, g: &mut GroupScan, verify: bool) {
    let sdir = scan::snap_dir(gdir);
    if !sdir.exists() {
        return;
    }
    let infos = match list_snapshots(&sdir) {
        Ok(i) => i,
        Err(e) => {
            g.problems.push(open_error_problem(&e, &sdir));
            return;
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
    for info in &infos {
        let data_verified = if verify {
            match verify_snapshot_data(info) {
                Ok(()) => Some(true),
                Err(e) => {
                    g.problems.push(open_error_problem(&e, &info.path));
                    Some(false)
                }
            }
        } else {
            None
        };
        let current = Some(info.install_seq) == current_seq;
        g.snapshots.push(SnapshotSummary {
            file: info.path.display().to_string(),
            index: info.meta.index,
            term: info.meta.term,
            size_bytes: info.meta.size_bytes,
            crc: info.meta.crc,
            install_seq: info.install_seq,
            members: crate::text::members(&info.meta.membership),
            current,
            data_verified,
        });
        if current {
            g.current_snapshot = Some(info.clone());
        }
    }
}

fn scan_log(log_dir: &Path, g: &mut GroupScan, opts: &mut ScanOptions<'_>) {
    if !log_dir.exists() {
        return;
    }
    let files = match list_segments(log_dir) {
        Ok(f) => f,
        Err(e) => {
            g.problems
                .push(Problem::error(log_dir, None, format!("cannot list: {}", e)));
            return;
        }
    };
    let snap_index = g.snapshot_index();
    let mut expected_next: Option<LogIndex> = None;
    let count = files.len();
    for (k, sf) in files.iter().enumerate() {
        let is_last = k + 1 == count;
        let file_bytes = std::fs::metadata(&sf.path).map(|m| m.len()).unwrap_or(0);
        g.segment_bytes += file_bytes;
        (opts.on_segment)(file_bytes);
        let mut summary = SegmentSummary {
            file: sf.path.display().to_string(),
            first_index: sf.first_index,
            last_index: None,
            entries: 0,
            file_bytes,
            used_bytes: 0,
        };
        let seg = match scan_segment(&sf.path) {
            Ok(s) => s,
            Err(e) => {
                g.problems.push(scan_problem(&e, is_last));
                g.segments.push(summary);
                expected_next = None;
                continue;
            }
        };
        if seg.header.first_index != sf.first_index {
            g.problems.push(
                Problem::error(
                    &sf.path,
                    Some(0),
                    "the segment header's first index does not match the file name",
                )
                .expected_found(sf.first_index, seg.header.first_index),
            );
        }
        if seg.header.group != g.group {
            g.problems.push(
                Problem::error(&sf.path, Some(0), "the segment header names another group")
                    .expected_found(g.group, seg.header.group),
            );
        }
        if k == 0 && seg.header.first_index > snap_index + 1 {
            g.problems.push(
                Problem::error(
                    &sf.path,
                    Some(0),
                    format!(
                        "the log starts after the snapshot (index {}): entries {}..={} are \
                         missing (a deleted segment?)",
                        snap_index,
                        snap_index + 1,
                        seg.header.first_index - 1
                    ),
                )
                .expected_found(
                    format!("first index ≤ {}", snap_index + 1),
                    seg.header.first_index,
                ),
            );
        }
        if let Some(exp) = expected_next {
            if seg.header.first_index != exp {
                let detail = if seg.header.first_index > exp {
                    format!(
                        "entries {}..={} are missing between the previous segment and this one \
                         (a deleted segment, or the previous one was cut short)",
                        exp,
                        seg.header.first_index - 1
                    )
                } else {
                    "this segment overlaps the previous one".to_string()
                };
                g.problems.push(
                    Problem::error(&sf.path, Some(0), detail)
                        .expected_found(format!("first index {}", exp), seg.header.first_index),
                );
            }
        }
        let path = seg.file.clone();
        let used = seg.end;
        let mut damaged = false;
        for item in seg {
            match item {
                Ok(rec) => {
                    if g.void_from.is_some_and(|v| rec.entry.index >= v) {
                        continue;
                    }
                    summary.entries += 1;
                    summary.last_index = Some(rec.entry.index);
                    g.entries += 1;
                    if g.first.is_none() {
                        g.first = Some((rec.entry.index, rec.entry.term));
                    }
                    if let Some((_, last_term)) = g.last {
                        if rec.entry.term < last_term {
                            g.problems.push(
                                Problem::error(
                                    &path,
                                    Some(rec.offset),
                                    format!(
                                        "entry {} has a lower term than the entry before it",
                                        rec.entry.index
                                    ),
                                )
                                .expected_found(format!("term ≥ {}", last_term), rec.entry.term),
                            );
                        }
                    }
                    g.last = Some((rec.entry.index, rec.entry.term));
                    (opts.on_record)(&path, &rec);
                }
                Err(e) => {
                    damaged = !matches!(e, ScanError::TornTail { .. }) || !is_last;
                    g.problems.push(scan_problem(&e, is_last));
                }
            }
        }
        summary.used_bytes = used;
        expected_next = if damaged {
            None
        } else {
            Some(summary.last_index.map_or(sf.first_index, |l| l + 1))
        };
        g.segments.push(summary);
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
        } => {
            if is_last {
                Problem::warning(
                    file,
                    Some(*offset),
                    format!(
                        "torn tail of {} bytes after the last valid record ({}): an unsynced \
                         write cut by a crash; shoald cuts it at its next start",
                        len, detail
                    ),
                )
            } else {
                Problem::error(
                    file,
                    Some(*offset),
                    format!(
                        "{} bad bytes end a segment that is not the last ({}); segments are \
                         synced before the log rolls over, so this is damage (or the file was \
                         cut short)",
                        len, detail
                    ),
                )
            }
        }
        ScanError::Corrupt {
            file,
            offset,
            detail,
        } => Problem::error(file, Some(*offset), format!("corrupt record: {}", detail)),
    }
}

fn check_hard_state(hs_path: &Path, g: &mut GroupScan) {
    let Some(hs) = g.hard_state else { return };
    let last = g.last_index();
    let torn = g
        .problems
        .iter()
        .any(|p| !p.is_error() && p.detail.starts_with("torn tail"));
    if hs.commit > last {
        let p = Problem::error(
            hs_path,
            None,
            "the commit index is past the last entry the group holds: committed entries are \
             missing",
        )
        .expected_found(format!("commit ≤ {}", last), hs.commit);
        g.problems.push(if torn {
            // In `async` fsync mode a power cut can lose a log suffix whose commit hint did
            // reach the disk: the cluster still has those entries.
            Problem {
                severity: crate::problem::Severity::Warning,
                detail: format!(
                    "{} (a torn tail was found: in async fsync mode a power cut can lose a \
                     log suffix; the other nodes still have it)",
                    p.detail
                ),
                ..p
            }
        } else {
            p
        });
    }
    if let Some((idx, term)) = g.last {
        if hs.term < term {
            g.problems.push(
                Problem::error(
                    hs_path,
                    None,
                    format!("the hard state's term is below that of entry {}", idx),
                )
                .expected_found(format!("term ≥ {}", term), hs.term),
            );
        }
    }
    if let Some(s) = &g.current_snapshot {
        if hs.term < s.meta.term {
            g.problems.push(
                Problem::error(
                    hs_path,
                    None,
                    "the hard state's term is below the snapshot's",
                )
                .expected_found(format!("term ≥ {}", s.meta.term), hs.term),
            );
        }
    }
}

/// Everything found in a data dir.
#[derive(Clone, Debug, Serialize)]
pub struct DirScan {
    /// The data dir.
    pub data_dir: String,
    /// Its identity, when readable.
    pub identity: Option<IdentityView>,
    /// Each group.
    pub groups: Vec<GroupScan>,
    /// Findings not tied to a group (identity, listing).
    pub problems: Vec<Problem>,
}

/// The identity as shown.
#[derive(Clone, Debug, Serialize)]
pub struct IdentityView {
    /// Cluster id.
    pub cluster_id: u64,
    /// Node id.
    pub node_id: u64,
    /// Raft address.
    pub raft_addr: String,
}

impl From<&Identity> for IdentityView {
    fn from(i: &Identity) -> Self {
        IdentityView {
            cluster_id: i.cluster_id,
            node_id: i.node_id,
            raft_addr: i.raft_addr.clone(),
        }
    }
}

impl DirScan {
    /// Every finding, the dir's and each group's.
    pub fn all_problems(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .chain(self.groups.iter().flat_map(|g| g.problems.iter()))
    }

    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.all_problems().any(Problem::is_error)
    }
}

/// Why a data dir cannot be read at all.
#[derive(Debug)]
pub struct NotADataDir(pub String);

impl std::fmt::Display for NotADataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Scan a whole data dir (every group, or only `only`). Fails only when `data_dir` is not a
/// directory; everything else becomes a finding.
pub fn scan_dir(
    data_dir: &Path,
    only: Option<GroupId>,
    opts: &mut ScanOptions<'_>,
) -> Result<DirScan, NotADataDir> {
    if !data_dir.is_dir() {
        return Err(NotADataDir(format!(
            "{} is not a directory (give the data dir of a stopped node)",
            data_dir.display()
        )));
    }
    let mut out = DirScan {
        data_dir: data_dir.display().to_string(),
        identity: None,
        groups: Vec::new(),
        problems: Vec::new(),
    };
    let id_path = data_dir.join(scan::IDENTITY_FILE);
    match read_identity(data_dir) {
        Ok(id) => out.identity = Some(IdentityView::from(&id)),
        Err(e) => out.problems.push(open_error_problem(&e, &id_path)),
    }
    let groups = match list_groups(data_dir) {
        Ok(g) => g,
        Err(e) => {
            out.problems.push(open_error_problem(&e, data_dir));
            Vec::new()
        }
    };
    if let Some(g) = only {
        if !groups.contains(&g) {
            return Err(NotADataDir(format!(
                "{} has no group {} (groups: {:?})",
                data_dir.display(),
                g,
                groups
            )));
        }
    }
    for g in groups {
        if only.is_some_and(|o| o != g) {
            continue;
        }
        out.groups.push(scan_group(data_dir, g, opts));
    }
    Ok(out)
}

/// Options that do nothing besides optional snapshot verification.
pub fn quiet_scan(
    data_dir: &Path,
    only: Option<GroupId>,
    verify: bool,
) -> Result<DirScan, NotADataDir> {
    let mut seg = |_: u64| {};
    let mut rec = |_: &Path, _: &ScannedRecord| {};
    scan_dir(
        data_dir,
        only,
        &mut ScanOptions {
            verify_snapshots: verify,
            on_segment: &mut seg,
            on_record: &mut rec,
        },
    )
}

/// The path of a group's directory (re-exported for the binary).
pub fn group_path(data_dir: &Path, group: GroupId) -> PathBuf {
    group_dir(data_dir, group)
}
