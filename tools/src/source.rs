//! Where a command reads a node's durable state from: a `shoald` data dir
//! ([`crate::datadir::DataDirSource`]) or a raw dump of an embedded node's flash
//! ([`crate::flash::FlashSource`]). Every command is written once against [`Source`].
//!
//! A source is read in one pass ([`Source::read`]): it reports each group's snapshot, then
//! each valid log entry in index order, then the group's findings, to a [`Visitor`], and
//! returns the [`Report`]. A command that lists entries prints them as they stream past, so a
//! data dir of many gigabytes is never held in memory.

use std::path::Path;

use shoal_core::types::{EntryKind, GroupId, LogIndex, SnapshotMeta, Term};

use crate::portable::SnapshotFile;
use crate::problem::Problem;
use crate::report::{GroupReport, Report};
use crate::state::ReplayEntry;

/// One valid log entry as read, borrowed for the duration of a [`Visitor::entry`] call.
#[derive(Clone, Copy, Debug)]
pub struct LogEntry<'a> {
    /// Its index.
    pub index: LogIndex,
    /// Its term.
    pub term: Term,
    /// Its kind.
    pub kind: EntryKind,
    /// Its payload.
    pub data: &'a [u8],
    /// Where its record is, when the source can say (a segment file, not a flash image).
    pub place: Option<Place<'a>>,
}

/// Where an entry's record lies.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    /// The file.
    pub file: &'a Path,
    /// Byte offset of the record.
    pub offset: u64,
    /// Record length in bytes, framing included.
    pub len: u64,
}

/// What a read tells as it goes. Every method does nothing unless overridden.
pub trait Visitor {
    /// A group is about to be read; its current snapshot, if any, is already known.
    fn group_start(&mut self, _group: GroupId, _snapshot: Option<&SnapshotMeta>) {}
    /// One valid entry of `group`, in index order (void entries are not reported).
    fn entry(&mut self, _group: GroupId, _entry: &LogEntry<'_>) {}
    /// The group is read; `report` holds what was found, findings included.
    fn group_end(&mut self, _report: &GroupReport) {}
    /// `n` more bytes of log are about to be read (for a progress bar).
    fn bytes(&mut self, _n: u64) {}
}

/// A visitor that only wants the report.
impl Visitor for () {}

/// What to read.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadRequest {
    /// Only this group (default: every group).
    pub group: Option<GroupId>,
    /// Check every snapshot's data against its size and CRC (reads whole files).
    pub verify_snapshots: bool,
}

/// Why a source cannot be read at all (damage found while reading is a [`Problem`] in the
/// [`Report`], not an error).
#[derive(Clone, Debug)]
pub enum SourceError {
    /// The source was named wrongly (not a directory, no such group, a bad geometry).
    Usage(String),
    /// The source is too damaged to open; the finding says where.
    Damaged(Problem),
    /// Anything else (IO).
    Failed(String),
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::Usage(s) | SourceError::Failed(s) => f.write_str(s),
            SourceError::Damaged(p) => write!(f, "{}", p),
        }
    }
}

/// A node's durable state, readable offline.
pub trait Source {
    /// Read every group (or the one asked for), telling `visitor` as it goes.
    fn read(&self, req: ReadRequest, visitor: &mut dyn Visitor) -> Result<Report, SourceError>;

    /// The current snapshot of `group`, read whole and checked against its size and CRC
    /// (`Ok(None)`: the group has none; `Err(Damaged)`: it does not check out).
    fn snapshot(&self, group: GroupId) -> Result<Option<SnapshotFile>, SourceError>;

    /// Bytes of log a full read goes through (for a progress bar; 0 when unknown).
    fn log_bytes(&self) -> u64;

    /// The path read, for messages.
    fn path(&self) -> &Path;
}

/// Open the source a command names: a data dir, or a flash image with its geometry
/// (`erase=..,write=..`, see [`crate::flash::parse_geometry`]) whose one group is called
/// `image_group` (a flash image does not record its group id).
pub fn open(
    dir: Option<&Path>,
    flash: Option<(&Path, &str)>,
    image_group: GroupId,
) -> Result<Box<dyn Source>, SourceError> {
    match (dir, flash) {
        (_, Some((image, geometry))) => Ok(Box::new(crate::flash::FlashSource::open(
            image,
            geometry,
            image_group,
        )?)),
        (Some(dir), None) => Ok(Box::new(crate::datadir::DataDirSource::open(dir)?)),
        (None, None) => Err(SourceError::Usage(
            "give a data dir, or --flash FILE --geometry ...".into(),
        )),
    }
}

/// Collects every entry of one read, for a replay.
#[derive(Default)]
pub struct EntryCollector {
    /// The entries, in the order read.
    pub entries: Vec<ReplayEntry>,
}

impl Visitor for EntryCollector {
    fn entry(&mut self, _group: GroupId, e: &LogEntry<'_>) {
        self.entries.push(ReplayEntry::from(e));
    }
}
