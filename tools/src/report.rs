//! What a source holds, as the commands report it. The same types describe a data dir and a
//! flash image: only [`SourceInfo`] (what was read) and [`LogLayout`] (how the log is stored)
//! say which, so `summary`, `verify` and `export` are written once over both.
//!
//! The JSON of a report is the serialization of these types; field names are part of
//! `shoal-inspect --json`'s contract with scripts.

use std::path::Path;

use serde::Serialize;
use shoal_core::membership::Membership;
use shoal_core::types::{GroupId, HardState, LogIndex, Term};

use crate::flash::Geometry;
use crate::journal::JournalView;
use crate::problem::{Problem, Severity};

/// What was read.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum SourceInfo {
    /// A `shoald` data dir.
    DataDir {
        /// Its path.
        data_dir: String,
        /// Its identity, when readable.
        identity: Option<IdentityView>,
    },
    /// A raw dump of an embedded node's flash partition.
    FlashImage {
        /// Its path.
        image: String,
        /// The geometry it was read with.
        geometry: Geometry,
    },
}

impl SourceInfo {
    /// The identity recorded with the state (a flash image records none).
    pub fn identity(&self) -> Option<&IdentityView> {
        match self {
            SourceInfo::DataDir { identity, .. } => identity.as_ref(),
            SourceInfo::FlashImage { .. } => None,
        }
    }

    /// Whether this is a flash image (one group, no group directories).
    pub fn is_image(&self) -> bool {
        matches!(self, SourceInfo::FlashImage { .. })
    }

    /// The path read, for messages.
    pub fn path(&self) -> &str {
        match self {
            SourceInfo::DataDir { data_dir, .. } => data_dir,
            SourceInfo::FlashImage { image, .. } => image,
        }
    }
}

/// The identity as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdentityView {
    /// Cluster id.
    pub cluster_id: u64,
    /// Node id.
    pub node_id: u64,
    /// Raft address.
    pub raft_addr: String,
}

/// Everything found in a source.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What was read.
    #[serde(flatten)]
    pub source: SourceInfo,
    /// Each group read.
    pub groups: Vec<GroupReport>,
    /// A data dir's sync journal, when it has one that parses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalView>,
    /// Findings not tied to a group (identity, listing).
    pub problems: Vec<Problem>,
}

impl Report {
    /// Every finding, the source's and each group's.
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

/// Everything found about one group.
#[derive(Clone, Debug, Serialize)]
pub struct GroupReport {
    /// The group id (a flash image does not record it: the one given, default 0).
    pub group: GroupId,
    /// The current hard state, when it could be read.
    pub hard_state: Option<HardStateView>,
    /// How the log is stored.
    #[serde(flatten)]
    pub layout: LogLayout,
    /// Snapshots, oldest install first.
    pub snapshots: Vec<SnapshotSummary>,
    /// The current snapshot.
    pub snapshot: Option<CurrentSnapshot>,
    /// First entry in the log: (index, term).
    pub first: Option<(LogIndex, Term)>,
    /// Last entry in the log: (index, term).
    pub last: Option<(LogIndex, Term)>,
    /// Valid entries read.
    pub entries: u64,
    /// What looks wrong.
    pub problems: Vec<Problem>,
}

impl GroupReport {
    /// A report with nothing found yet.
    pub fn new(group: GroupId, layout: LogLayout) -> GroupReport {
        GroupReport {
            group,
            hard_state: None,
            layout,
            snapshots: Vec::new(),
            snapshot: None,
            first: None,
            last: None,
            entries: 0,
            problems: Vec::new(),
        }
    }

    /// Index of the current snapshot (0 when none).
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(0, |s| s.index)
    }

    /// The last index the group holds: its last entry, or its snapshot's index.
    pub fn last_index(&self) -> LogIndex {
        self.last.map_or(0, |l| l.0).max(self.snapshot_index())
    }

    /// Membership at the current snapshot, if there is one.
    pub fn snapshot_membership(&self) -> Option<&Membership> {
        self.snapshot.as_ref().map(|s| &s.membership)
    }

    /// Count one valid entry read in log order. When its term is below the entry before it
    /// (damage: terms never decrease along a log), returns the finding to report at `file`,
    /// `offset`.
    pub fn count_entry(
        &mut self,
        index: LogIndex,
        term: Term,
        file: &Path,
        offset: Option<u64>,
    ) -> Option<Problem> {
        self.entries += 1;
        if self.first.is_none() {
            self.first = Some((index, term));
        }
        let before = self.last.replace((index, term));
        match before {
            Some((_, last_term)) if term < last_term => Some(
                Problem::error(
                    file,
                    offset,
                    format!("entry {} has a lower term than the entry before it", index),
                )
                .expected_found(format!("term ≥ {}", last_term), term),
            ),
            _ => None,
        }
    }

    /// The checks of the hard state (stored in `file`) against the log and the snapshot that
    /// every source shares: a commit index past the last entry, a term below the last entry's
    /// or the snapshot's. With `lost_tail` (why the log may lack a suffix that recovery deals
    /// with) a commit past the end is only a warning, and the reason is added to it.
    pub fn check_hard_state(&mut self, file: &Path, lost_tail: Option<LostTail>) {
        let Some(hs) = self.hard_state else { return };
        let last = self.last_index();
        if hs.commit > last {
            let mut p = Problem::error(
                file,
                None,
                "the commit index is past the last entry the group holds: committed entries \
                 are missing",
            )
            .expected_found(format!("commit ≤ {}", last), hs.commit);
            if let Some(why) = lost_tail {
                p.severity = Severity::Warning;
                p.detail.push_str(why.note());
            }
            self.problems.push(p);
        }
        // The log or the snapshot reached the medium and the hard state saved with it did not
        // (a power cut before their sync): the node takes up that term when it starts, as a
        // follower that has not voted in it, so this is reported, not refused.
        let behind = |what: String, term: Term| {
            Problem::warning(
                file,
                None,
                format!(
                    "the hard state's term is below {what}: a power cut kept the one and not \
                     the other; the node takes up term {term} when it starts"
                ),
            )
            .expected_found(format!("term ≥ {term}"), hs.term)
        };
        if let Some((idx, term)) = self.last.filter(|(_, term)| hs.term < *term) {
            self.problems
                .push(behind(format!("that of entry {idx}"), term));
        } else if let Some(s) = self.snapshot.as_ref().filter(|s| hs.term < s.term) {
            self.problems
                .push(behind("the snapshot's".to_string(), s.term));
        }
    }
}

/// Why a group's log may lack a suffix the hard state's commit hint counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostTail {
    /// The last segment ends in a torn write: in `async` fsync mode a power cut can lose a
    /// log suffix whose commit hint did reach the disk.
    Torn,
}

impl LostTail {
    fn note(self) -> &'static str {
        match self {
            LostTail::Torn => {
                " (a torn tail was found: in async fsync mode a power cut can lose a log \
                 suffix; the other nodes still have it)"
            }
        }
    }
}

/// How a group's log is stored.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum LogLayout {
    /// Segment files in a data dir's group directory.
    Segments {
        /// The group directory.
        dir: String,
        /// Segments, in index order.
        segments: Vec<SegmentSummary>,
        /// Total size of the segment files.
        segment_bytes: u64,
        /// Entries at or after this index are void (an interrupted truncation).
        void_from: Option<LogIndex>,
    },
    /// The erase-sector ring of a flash partition.
    Ring {
        /// Sectors in the ring.
        ring_sectors: u32,
        /// Sectors holding live entries.
        ring_live_sectors: u32,
    },
}

impl LogLayout {
    /// A label and a line for a summary: `segments  3 files, 12288 bytes`.
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            LogLayout::Segments {
                segments,
                segment_bytes,
                ..
            } => (
                "segments",
                format!("{} files, {} bytes", segments.len(), segment_bytes),
            ),
            LogLayout::Ring {
                ring_sectors,
                ring_live_sectors,
            } => (
                "ring",
                format!("{} of {} sectors live", ring_live_sectors, ring_sectors),
            ),
        }
    }

    /// What `verify` says it went through: `3 segments`, `2 of 18 ring sectors live`.
    pub fn checked(&self) -> String {
        match self {
            LogLayout::Segments { segments, .. } => format!("{} segments", segments.len()),
            LogLayout::Ring {
                ring_sectors,
                ring_live_sectors,
            } => format!(
                "{} of {} ring sectors live",
                ring_live_sectors, ring_sectors
            ),
        }
    }

    /// The same for `verify --json`: `{"segments": 3}`, `{"ring_sectors": .., ..}`.
    pub fn checked_json(&self) -> serde_json::Value {
        match self {
            LogLayout::Segments { segments, .. } => serde_json::json!({"segments": segments.len()}),
            LogLayout::Ring {
                ring_sectors,
                ring_live_sectors,
            } => serde_json::json!({"ring_sectors": ring_sectors,
                "ring_live_sectors": ring_live_sectors}),
        }
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

/// One snapshot as found.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotSummary {
    /// The file (a flash image: the image).
    pub file: String,
    /// Last entry covered.
    pub index: LogIndex,
    /// Its term.
    pub term: Term,
    /// Data bytes.
    pub size_bytes: u64,
    /// CRC-32C of the data, from the metadata.
    pub crc: u32,
    /// Install sequence number (the highest is current; 0 on flash, which keeps one).
    pub install_seq: u64,
    /// The membership at `index`, in words.
    pub members: String,
    /// Whether this is the group's current snapshot.
    pub current: bool,
    /// Whether the data was checked against its size and CRC (and passed).
    pub data_verified: Option<bool>,
}

/// The snapshot a group restores from.
#[derive(Clone, Debug, Serialize)]
pub struct CurrentSnapshot {
    /// Last entry covered.
    pub index: LogIndex,
    /// Its term.
    pub term: Term,
    /// Data bytes.
    pub size_bytes: u64,
    /// The membership at `index`, in words.
    pub members: String,
    /// Whether the data matched its size and CRC (`None`: not checked).
    pub crc_ok: Option<bool>,
    /// The membership at `index`.
    #[serde(skip)]
    pub membership: Membership,
}

impl CurrentSnapshot {
    /// The current snapshot described by `summary`, whose membership is `membership`.
    pub fn new(summary: &SnapshotSummary, membership: &Membership) -> CurrentSnapshot {
        CurrentSnapshot {
            index: summary.index,
            term: summary.term,
            size_bytes: summary.size_bytes,
            members: summary.members.clone(),
            crc_ok: summary.data_verified,
            membership: membership.clone(),
        }
    }
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
    /// Save sequence number (a data dir's alternating slots; flash does not show one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
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
