//! The sync journal: one file per data dir through which one fdatasync makes many groups' new
//! log bytes durable at once.
//!
//! A round in which several groups wrote (fsync `always`, `--shared-sync`) used to end with a
//! `syncfs` of the data dir: every group's segment has its own dirty pages, and syncing them
//! all cost several times one file's fdatasync. Now each such group copies what it has just
//! written to its last segment — the bytes, and where they went — into this journal, and the
//! round's sync is one `pwrite` and one fdatasync of the journal. The segments themselves stay
//! unsynced until they are synced by themselves (a roll-over, a truncation, a lone round) or
//! the half of the journal their pieces are in is retired (below).
//!
//! Once the file exists, a group may *hold* its new bytes instead of writing them to its
//! segment ([`Journal::add_held`]): they stay in its write buffer and here, in memory too,
//! until the group writes them ([`Journal::written`]). Such a group is always synced through
//! the journal, and a retire writes the held pieces to their segments before its `syncfs`.
//!
//! The lock guards only the journal's memory. Writing the records and switching halves run
//! under a second, writer lock and outside the first ([`Journal::write_pending`]), so the
//! groups' flushes go on adding pieces while the device works.
//!
//! The file (`journal` in the data dir) has two halves of a fixed size each ([`JOURNAL_BYTES`]),
//! zero-filled when first needed so its fdatasyncs change no metadata. Each half starts with a
//! header page naming its epoch (epoch `e` always in the same half: odd epochs in the first,
//! even in the second); records ([`shoal_core::record`] framing) follow it, each stamped with
//! the epoch:
//!
//! - a *piece*: group, the segment's first index, an offset and the bytes written there;
//! - a *barrier*: the group's segments are durable by themselves (fdatasynced), and what the
//!   group does next changes them other than by appending (a truncation, a reset by a
//!   snapshot): its earlier pieces must not be written back.
//!
//! When the next write does not fit its half, the journal *switches*: the other half's header
//! names the next epoch and the records go on after it, the header written just before them
//! and made durable by the same fdatasync, so a sync waits for nothing more than one more
//! small write. The half left
//! behind is then *retired* on a thread of its own: the held pieces are written to their
//! segments and a `syncfs` of the data dir makes every segment byte that any of its pieces
//! describes durable. Until then its records stay valid, and a replay writes back the older
//! half's pieces and then the newer's, as one journal. A half is written to again (its header
//! naming an epoch two on) only once its retire has ended; a switch that finds it still running
//! waits for it (`shoal_journal_switch_waits_total`). A barrier also waits for a running retire,
//! which must not write a group's old bytes back after the change the barrier announces.
//! (Before the halves, the one-half journal *wrapped* in place: every sync waited for the
//! write-back and the `syncfs`, which stalled every group's commits for tens of milliseconds
//! twice a second at 64 busy groups. A journal of that layout is replayed and replaced.)
//!
//! At start, before any group opens its storage, [`replay`] writes the pieces of both halves'
//! epochs back into their segments (skipping a group's pieces before its last barrier, and
//! segments that are gone), fdatasyncs those segments, names a new epoch in one half and clears
//! the other's header, so nothing is written back twice. Writing a piece back puts the same
//! bytes where they already are unless the machine lost its page cache, so a replay after a
//! clean stop or a crash of the process changes nothing.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use shoal_core::record;
use shoal_core::types::{GroupId, LogIndex};

use super::datadir::group_dir;
use super::fs_sync::FsSync;
use super::fsutil;
use super::segment::{decode_header, segment_name, HEADER_BYTES};

/// The journal's file name in the data dir.
pub const JOURNAL_FILE: &str = "journal";
/// Size of each half of the journal file: at ~130 bytes a write, ~120,000 writes before the
/// journal switches to its other half. The file holds two.
pub const JOURNAL_BYTES: u64 = 16 << 20;
/// Pieces kept in memory before they are written to the file without a sync.
const PENDING_WRITE_BYTES: usize = 256 << 10;
/// How long after failing to make the journal file the next try waits.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);
/// The header page; records start after it.
const HEADER_PAGE: u64 = 4096;
/// The header of a half.
const MAGIC: &[u8; 8] = b"SHOALJH2";
/// The header of a journal of one half, as made before the halves (replayed, then replaced).
const MAGIC_ONE_HALF: &[u8; 8] = b"SHOALJNL";
/// Bytes of a header (magic, epoch, CRC).
const HEADER_BYTES_USED: usize = 20;
const PIECE: u8 = 1;
const BARRIER: u8 = 2;
/// Kind, epoch, group, segment first index, offset.
const RECORD_HEAD: usize = 1 + 8 * 4;

/// One record of the journal, as [`read`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalRecord {
    /// `bytes` were written at `offset` of group `group`'s segment starting at `segment`.
    Piece {
        /// The group.
        group: GroupId,
        /// First index of the segment (its file name).
        segment: LogIndex,
        /// Byte offset in the segment file.
        offset: u64,
        /// What was written there.
        bytes: Vec<u8>,
    },
    /// The group's earlier pieces are durable in its segments and must not be written back.
    Barrier {
        /// The group.
        group: GroupId,
    },
}

/// The records of the journal's current epoch.
#[derive(Clone, Debug, Default)]
pub struct JournalContents {
    /// The epoch the header names (0: no journal file).
    pub epoch: u64,
    /// Its records, oldest first: those of the other half when it holds the epoch before
    /// (not yet reused), then this epoch's; in each half up to the first record that is torn,
    /// of another epoch or absent.
    pub records: Vec<JournalRecord>,
    /// False for a journal of one half, as made before the halves.
    pub halves: bool,
    /// The epochs whose records these are, oldest first (one or two).
    pub epochs: Vec<u64>,
}

impl JournalContents {
    /// The pieces a replay writes back: every group's pieces after its last barrier.
    pub fn live_pieces(&self) -> impl Iterator<Item = (GroupId, LogIndex, u64, &[u8])> {
        let mut last_barrier: HashMap<GroupId, usize> = HashMap::new();
        for (i, r) in self.records.iter().enumerate() {
            if let JournalRecord::Barrier { group } = r {
                last_barrier.insert(*group, i);
            }
        }
        self.records
            .iter()
            .enumerate()
            .filter_map(move |(i, r)| match r {
                JournalRecord::Piece {
                    group,
                    segment,
                    offset,
                    bytes,
                } if last_barrier.get(group).is_none_or(|&b| i > b) => {
                    Some((*group, *segment, *offset, bytes.as_slice()))
                }
                _ => None,
            })
    }
}

/// Where the half that holds `epoch` starts, in a file of halves of `half` bytes: odd epochs
/// (the first is 1) in the first half, even ones in the second.
fn half_at(epoch: u64, half: u64) -> u64 {
    (epoch.wrapping_add(1) % 2) * half
}

fn encode_header(epoch: u64) -> [u8; HEADER_BYTES_USED] {
    let mut h = [0u8; HEADER_BYTES_USED];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&epoch.to_le_bytes());
    let crc = record::CRC32C.checksum(&h[..16]);
    h[16..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn decode_header_page(h: &[u8], magic: &[u8; 8]) -> Result<u64, String> {
    if h.len() < HEADER_BYTES_USED || &h[..8] != magic {
        return Err("not a Shoal sync journal (bad magic)".into());
    }
    let crc = u32::from_le_bytes(h[16..20].try_into().expect("4 bytes"));
    if record::CRC32C.checksum(&h[..16]) != crc {
        return Err("the journal header's CRC does not match".into());
    }
    Ok(u64::from_le_bytes(h[8..16].try_into().expect("8 bytes")))
}

fn encode_record(
    out: &mut Vec<u8>,
    kind: u8,
    epoch: u64,
    group: GroupId,
    segment: LogIndex,
    offset: u64,
    bytes: &[u8],
) {
    let body_len = RECORD_HEAD + bytes.len();
    let at = out.len();
    out.resize(at + body_len + record::RECORD_OVERHEAD, 0);
    record::encode_with(&mut out[at..], body_len, |b| {
        b[0] = kind;
        b[1..9].copy_from_slice(&epoch.to_le_bytes());
        b[9..17].copy_from_slice(&u64::from(group).to_le_bytes());
        b[17..25].copy_from_slice(&segment.to_le_bytes());
        b[25..33].copy_from_slice(&offset.to_le_bytes());
        b[33..].copy_from_slice(bytes);
    })
    .expect("the record is sized to fit");
}

/// Where and why a journal's bytes do not parse ([`parse_detailed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the file: 0 for the header page, else the start of the record.
    pub offset: u64,
    /// What is wrong, as [`parse`] says it.
    pub detail: String,
}

impl ParseError {
    /// Whether the header page is what does not read ([`replay`] then starts the journal
    /// afresh; any other error stops it).
    pub fn in_header(&self) -> bool {
        self.offset == 0
    }
}

/// Parse a journal file's bytes: the header's epoch and the records of that epoch.
pub fn parse(bytes: &[u8]) -> Result<JournalContents, String> {
    parse_detailed(bytes).map_err(|e| e.detail)
}

/// [`parse`], with the byte offset of what does not parse (for offline tools). A header that
/// does not read is an error at offset 0 only when no half's header reads: a half whose header
/// was never written, was cleared by a replay, or was torn while the journal switched to it
/// holds no live record.
pub fn parse_detailed(bytes: &[u8]) -> Result<JournalContents, ParseError> {
    let header_error = |detail: String| ParseError { offset: 0, detail };
    if bytes.starts_with(MAGIC_ONE_HALF) {
        let epoch = decode_header_page(bytes, MAGIC_ONE_HALF).map_err(header_error)?;
        let mut records = Vec::new();
        parse_half(bytes, 0, epoch, &mut records)?;
        return Ok(JournalContents {
            epoch,
            records,
            halves: false,
            epochs: vec![epoch],
        });
    }
    let half = bytes.len() / 2;
    if !bytes.len().is_multiple_of(2) || (half as u64) < HEADER_PAGE {
        return Err(header_error(format!(
            "not a Shoal sync journal ({} bytes: not two halves)",
            bytes.len()
        )));
    }
    let heads = [0, half].map(|at| (at, decode_header_page(&bytes[at..], MAGIC)));
    let Some(top) = heads
        .iter()
        .filter_map(|(_, h)| h.as_ref().ok())
        .max()
        .copied()
    else {
        let (_, first) = &heads[0];
        return Err(header_error(first.clone().expect_err("no header reads")));
    };
    let mut records = Vec::new();
    let mut epochs = Vec::new();
    // The epoch before first (its half not reused yet), then the current one.
    for epoch in [top.wrapping_sub(1), top] {
        let at = half_at(epoch, half as u64) as usize;
        if heads.iter().any(|(h_at, h)| *h_at == at && *h == Ok(epoch)) {
            parse_half(&bytes[..at + half], at, epoch, &mut records)?;
            epochs.push(epoch);
        }
    }
    Ok(JournalContents {
        epoch: top,
        records,
        halves: true,
        epochs,
    })
}

/// Add the records of `epoch` in the half of `bytes` that starts at `start` (and ends with
/// `bytes`) to `records`.
fn parse_half(
    bytes: &[u8],
    start: usize,
    epoch: u64,
    records: &mut Vec<JournalRecord>,
) -> Result<(), ParseError> {
    let at_error = |at: usize, detail: String| ParseError {
        offset: at as u64,
        detail,
    };
    let mut at = start + HEADER_PAGE as usize;
    while at < bytes.len() {
        let Ok((body, used)) = record::decode(&bytes[at..]) else {
            break;
        };
        if body.len() < RECORD_HEAD {
            break;
        }
        let word = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().expect("8 bytes"));
        if word(1) != epoch {
            break;
        }
        let Ok(group) = GroupId::try_from(word(9)) else {
            return Err(at_error(
                at,
                format!("record at byte {at} names no possible group"),
            ));
        };
        let (segment, offset) = (word(17), word(25));
        records.push(match body[0] {
            PIECE => JournalRecord::Piece {
                group,
                segment,
                offset,
                bytes: body[RECORD_HEAD..].to_vec(),
            },
            BARRIER => JournalRecord::Barrier { group },
            k => {
                return Err(at_error(
                    at,
                    format!("record at byte {at} has an unknown kind {k}"),
                ))
            }
        });
        at += used;
    }
    Ok(())
}

/// `pending`'s records (all whole) stamped with `epoch` instead of the one they were added
/// under: they go to the half the journal switched to.
fn restamp(pending: &[u8], epoch: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(pending.len());
    let mut at = 0;
    while at < pending.len() {
        let (body, used) = record::decode(&pending[at..]).expect("pending records are whole");
        let start = out.len();
        out.resize(start + used, 0);
        record::encode_with(&mut out[start..], body.len(), |b| {
            b.copy_from_slice(body);
            b[1..9].copy_from_slice(&epoch.to_le_bytes());
        })
        .expect("the same size as before");
        at += used;
    }
    out
}

/// Read the journal of `data_dir` (`None` if there is none).
pub fn read(data_dir: &Path) -> Result<Option<JournalContents>, String> {
    let path = data_dir.join(JOURNAL_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => parse(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// What [`replay`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// The epoch the journal continues with (0: there is no journal file).
    pub epoch: u64,
    /// Pieces written back into their segments.
    pub pieces: usize,
    /// Pieces skipped: their segment (or group) is gone.
    pub skipped: usize,
    /// Segment files written to (and fdatasynced).
    pub segments: usize,
}

/// Write the journal's live pieces back into their segments, make those durable, and move the
/// journal to a new epoch. Run at start, before any group's storage opens. A journal none of
/// whose headers read (torn while it was made or switched halves, when every piece of the
/// epochs before was durable) is started afresh; so is a journal of one half (the layout
/// before the halves), once replayed.
pub fn replay(data_dir: &Path) -> Result<Replayed, String> {
    let path = data_dir.join(JOURNAL_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Replayed::default()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let remove = || -> Result<(), String> {
        std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        fsutil::fsync_dir(data_dir, true).map_err(|e| format!("{}: {e}", data_dir.display()))
    };
    let contents = match parse_detailed(&bytes) {
        Ok(c) => c,
        Err(e) if e.in_header() => {
            // A header is written only once the records of the epochs before it are durable
            // in their segments. The file goes: its epochs are unknown, so none of its records
            // may ever match again.
            log::warn!(
                "{}: {}; starting the journal afresh (its pieces were synced when it switched \
                 halves)",
                path.display(),
                e.detail
            );
            remove()?;
            return Ok(Replayed {
                epoch: 1,
                ..Replayed::default()
            });
        }
        Err(e) => return Err(format!("{}: {}", path.display(), e.detail)),
    };
    let half = bytes.len() as u64 / 2;
    drop(bytes);
    let mut done = Replayed::default();
    let mut files: HashMap<PathBuf, File> = HashMap::new();
    let mut refused: HashSet<PathBuf> = HashSet::new();
    for (group, segment, offset, bytes) in contents.live_pieces() {
        let seg = segment_path(data_dir, group, segment);
        if refused.contains(&seg) {
            done.skipped += 1;
            continue;
        }
        if !files.contains_key(&seg) {
            match open_segment(&seg, group, segment) {
                Ok(Some(f)) => {
                    files.insert(seg.clone(), f);
                }
                Ok(None) => {
                    refused.insert(seg);
                    done.skipped += 1;
                    continue;
                }
                Err(e) => return Err(format!("{}: replaying the journal: {e}", seg.display())),
            }
        }
        let f = &files[&seg];
        fsutil::write_at(f, bytes, offset)
            .map_err(|e| format!("{}: replaying the journal: {e}", seg.display()))?;
        done.pieces += 1;
    }
    for (seg, f) in &files {
        fsutil::sync_data(f, true)
            .map_err(|e| format!("{}: replaying the journal: {e}", seg.display()))?;
    }
    done.segments = files.len();
    done.epoch = contents.epoch + 1;
    if !contents.halves {
        // (The journal makes a file of two halves at its first sync.)
        remove()?;
        return Ok(done);
    }
    // The new epoch goes to the half of the epoch before the last, then the last's half is
    // cleared: a crash between the two replays that half again, which writes what is there.
    let file =
        fsutil::open_existing(&path, true).map_err(|e| format!("{}: {e}", path.display()))?;
    let at = |epoch: u64| half_at(epoch, half);
    write_epoch(&file, at(done.epoch), done.epoch)
        .and_then(|()| clear_header(&file, at(contents.epoch)))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(done)
}

/// The file of group `group`'s segment starting at `first`, in `data_dir` (what a piece names).
pub fn segment_path(data_dir: &Path, group: GroupId, first: LogIndex) -> PathBuf {
    group_dir(data_dir, group)
        .join("log")
        .join(segment_name(first))
}

/// The segment a piece names, if it is still there and is that group's segment.
fn open_segment(seg: &Path, group: GroupId, first: LogIndex) -> io::Result<Option<File>> {
    let f = match fsutil::open_existing(seg, true) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut head = [0u8; HEADER_BYTES];
    use std::os::unix::fs::FileExt;
    if f.read_exact_at(&mut head, 0).is_err() {
        return Ok(None);
    }
    Ok(decode_header(&head)
        .ok()
        .filter(|h| h.group == group && h.first_index == first)
        .map(|_| f))
}

/// Retire a half: write the runs groups held in it back into their segments, then sync the
/// data dir's filesystem, which makes every segment byte its pieces describe durable.
fn retire_half(
    data_dir: &Path,
    fs: &FsSync,
    held: HashMap<GroupId, Vec<HeldRun>>,
) -> Result<(), String> {
    write_back_held(data_dir, held)?;
    fs.run()
}

/// Write the held runs of a half being retired into their segments, as a replay would: a
/// segment that is gone or renamed is skipped (its group was removed or cut it, after writing
/// what it held). The groups write the same bytes there again later; one that writes them
/// meanwhile writes the same bytes.
fn write_back_held(data_dir: &Path, held: HashMap<GroupId, Vec<HeldRun>>) -> Result<(), String> {
    for (group, runs) in held {
        let mut open: Option<(LogIndex, Option<File>)> = None;
        for HeldRun {
            segment,
            offset,
            bytes,
        } in runs
        {
            let seg = segment_path(data_dir, group, segment);
            let failed = |e: io::Error| {
                format!(
                    "sync journal: writing a held run back into {}: {e}",
                    seg.display()
                )
            };
            if open.as_ref().is_none_or(|(s, _)| *s != segment) {
                let f = open_segment(&seg, group, segment).map_err(failed)?;
                open = Some((segment, f));
            }
            if let Some((_, Some(f))) = &open {
                fsutil::write_at(f, &bytes, offset).map_err(failed)?;
            }
        }
    }
    Ok(())
}

/// Name `epoch` in the header of the half at `at`, durably.
fn write_epoch(file: &File, at: u64, epoch: u64) -> io::Result<()> {
    fsutil::write_at(file, &encode_header(epoch), at)?;
    fsutil::sync_data(file, true)
}

/// Clear the header of the half at `at` (it holds no live record), durably.
fn clear_header(file: &File, at: u64) -> io::Result<()> {
    fsutil::write_at(file, &[0; HEADER_BYTES_USED], at)?;
    fsutil::sync_data(file, true)
}

/// How [`Journal::sync`] made the pending pieces durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalSync {
    /// One write and one fdatasync of the journal.
    Synced,
    /// The half in use was full: the records went to the other half, under a new epoch
    /// (or, when they could not fit there either, a `syncfs` of the data dir covered them).
    Wrapped,
    /// The journal file could not be made (a full disk): a `syncfs` of the data dir.
    Filesystem,
}

/// The data dir's sync journal (see the module docs). Shared by the groups' flushes, which add
/// pieces, and the sync threads, which make them durable.
pub struct Journal {
    path: PathBuf,
    fs: Arc<FsSync>,
    capacity: u64,
    inner: Mutex<Inner>,
    /// Held by the one thread writing records to the file or wrapping it
    /// ([`Journal::write_pending`]); taken before `inner`, never while holding it.
    writer: Mutex<()>,
    /// Syncs of the filesystem run ahead of a half's retire ([`SyncAhead`]).
    ahead: SyncAhead,
    /// The retires of the halves the journal left ([`Retires`]).
    retires: Arc<Retires>,
    /// Tests: the next write, switch or opening of the file waits for a message here once it
    /// has taken its work.
    #[cfg(test)]
    write_gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// Tests: the next retire waits for a message here before it writes anything (`false`:
    /// it never does, as if the process died).
    #[cfg(test)]
    retire_gate: Mutex<Option<std::sync::mpsc::Receiver<bool>>>,
}

/// The retires of the halves the journal switched away from (module docs), one at a time and
/// in order: retire `n` starts once retire `n - 1` has ended.
#[derive(Default)]
struct Retires {
    state: Mutex<RetireState>,
    ended: std::sync::Condvar,
}

#[derive(Default)]
struct RetireState {
    /// Retires asked for: each switch, when it takes the held runs (under the journal's lock,
    /// so that a barrier after it waits for the retire that writes them).
    asked: u64,
    /// Retires that have ended.
    ended: u64,
    /// A retire failed: the pieces of its half may not be durable in their segments, so its
    /// half must not be reused, and the journal's next sync fails.
    failed: Option<String>,
    /// Switches that had to wait for the retire before them.
    waits: u64,
}

impl Retires {
    fn lock(&self) -> MutexGuard<'_, RetireState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A switch takes the held runs: the number of its retire.
    fn ask(&self) -> u64 {
        let mut st = self.lock();
        st.asked += 1;
        st.asked
    }

    /// Wait until retire `n` has ended; `count`: a wait is counted (a switch's). Fails when
    /// any retire failed.
    fn wait_for(&self, n: u64, count: bool) -> Result<(), String> {
        let mut st = self.lock();
        if st.ended < n && st.failed.is_none() && count {
            st.waits += 1;
        }
        while st.ended < n && st.failed.is_none() {
            st = self.ended.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        match &st.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Retire `n` ended, with `result`.
    fn end(&self, n: u64, result: Result<(), String>) {
        let mut st = self.lock();
        debug_assert_eq!(st.ended + 1, n, "retires end in order");
        st.ended = st.ended.max(n);
        if let Err(e) = result {
            log::error!("{e}");
            st.failed.get_or_insert(e);
        }
        drop(st);
        self.ended.notify_all();
    }

    fn failed(&self) -> Option<String> {
        self.lock().failed.clone()
    }
}

/// Syncs of the filesystem each epoch runs ahead of its wrap, one each time the records pass
/// another `1 / AHEAD_SYNCS` of the file.
const AHEAD_SYNCS: u64 = 4;

/// A sync of the data dir's filesystem run on a thread of its own while the journal fills: a
/// wrap's `syncfs` then finds most segment bytes (and the extents that writing them changed)
/// durable already, and the journal's own syncs, which wait for a wrap, wait less. Nothing
/// waits for it; at most one runs at a time (a start while one runs is dropped).
///
/// It syncs through a descriptor of the data dir of its own: the kernel reports a write-back
/// error to each open descriptor's `syncfs` once, so through the shared one it could take the
/// error from a sync that acknowledges writes (a wrap's, a round's). Its own failure is kept
/// and fails the journal's next sync too.
#[derive(Default)]
struct SyncAhead {
    /// Its descriptor of the data dir, opened by the first sync ahead (`None` inside: it could
    /// not be opened, and there are no syncs ahead).
    fs: std::sync::OnceLock<Option<Arc<FsSync>>>,
    running: Arc<std::sync::atomic::AtomicBool>,
    failed: Arc<Mutex<Option<String>>>,
    /// Syncs finished since start (`/metrics`).
    done: Arc<std::sync::atomic::AtomicU64>,
}

impl SyncAhead {
    fn start(&self, data_dir: &Path) {
        use std::sync::atomic::Ordering;
        let opened = self.fs.get_or_init(|| match FsSync::open(data_dir) {
            Ok(fs) => Some(Arc::new(fs)),
            Err(e) => {
                log::warn!(
                    "{}: cannot open for syncs ahead of the sync journal's wraps: {e}",
                    data_dir.display()
                );
                None
            }
        });
        let Some(fs) = opened.clone() else {
            return;
        };
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let (running, failed) = (self.running.clone(), self.failed.clone());
        let done = self.done.clone();
        let spawned = std::thread::Builder::new()
            .name("shoal-sync-ahead".into())
            .stack_size(64 << 10)
            .spawn(move || {
                crate::affinity::leave_raft_cpu();
                if let Err(e) = fs.run() {
                    log::error!("{e}");
                    failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
                done.fetch_add(1, Ordering::Relaxed);
                running.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.running.store(false, Ordering::Release);
        }
    }

    fn failed(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What [`Journal::prepare_write`] left for the writer to do outside `inner`.
enum Prepared {
    /// Nothing to write: the file to fdatasync (if any), and how the pieces were covered.
    Done(Option<Arc<File>>, JournalSync),
    /// Write these records at `at` of the half that starts at `half`.
    Write {
        file: Arc<File>,
        bytes: Vec<u8>,
        half: u64,
        at: u64,
    },
    /// Switch halves: once retire `retire - 1` has ended, name `epoch` in the header of its
    /// half and write these records (restamped with it) after the header; then retire the
    /// half left, writing these held runs to their segments (retire `retire`).
    Switch {
        file: Arc<File>,
        held: HashMap<GroupId, Vec<HeldRun>>,
        bytes: Vec<u8>,
        epoch: u64,
        retire: u64,
    },
    /// The pending records do not fit even an empty half: retire the half in use here (with
    /// these held runs; its `syncfs` covers the records too, which are dropped), then name
    /// `epoch` in the other half.
    Wrap {
        file: Arc<File>,
        held: HashMap<GroupId, Vec<HeldRun>>,
        epoch: u64,
        retire: u64,
    },
    /// No file yet: open (or make) it with the header of `epoch`, then prepare again.
    Open { epoch: u64 },
    /// No file, and none to be made before a retry: one sync of the filesystem covers the
    /// pieces taken off the pending list.
    Filesystem,
}

struct Inner {
    /// Opened (and zero-filled if new) by the first sync.
    file: Option<Arc<File>>,
    epoch: u64,
    /// Where the next records go.
    at: u64,
    /// Records added since the last write.
    pending: Vec<u8>,
    /// The buffer of the last write, kept for the next records (its allocation).
    spare: Vec<u8>,
    /// A failed write or sync: the journal's state on the device is unknown.
    failed: Option<String>,
    /// The file could not be made: syncs of the filesystem stand in until then.
    retry_at: Option<std::time::Instant>,
    /// Bytes not in their segments yet ([`Journal::add_held`]), by group, a group's pieces
    /// that follow one another in a segment merged into one run. A wrap writes them there
    /// first, one write per run.
    held: HashMap<GroupId, Vec<HeldRun>>,
    /// Bytes in `held`.
    held_bytes: usize,
    /// Allocations of runs their groups wrote out, emptied, for the next runs: a busy group
    /// holds a run, writes it, holds the next, and growing each from nothing again (a
    /// reallocation and fresh pages every few pieces) cost more than copying the bytes in.
    /// Their capacities stay within a quarter of the journal, as the held bytes do, and they
    /// are let go when no group holds anything.
    spare_runs: Vec<Vec<u8>>,
    /// The capacity of `spare_runs`.
    spare_run_bytes: usize,
    /// Pieces ever held ([`Journal::add_held`] that said yes), for `/metrics`.
    held_total: u64,
}

/// Held bytes of one group for one stretch of one segment ([`Journal::add_held`]).
struct HeldRun {
    /// The segment's first index.
    segment: LogIndex,
    /// Where in the segment the bytes start.
    offset: u64,
    bytes: Vec<u8>,
}

impl Journal {
    /// The journal of `data_dir`, continuing at `epoch` (from [`replay`]); its file is made
    /// when first synced. `fs` syncs the data dir's filesystem when a half is retired.
    pub fn new(data_dir: &Path, fs: Arc<FsSync>, epoch: u64) -> Journal {
        Self::with_capacity(data_dir, fs, epoch, JOURNAL_BYTES)
    }

    /// [`Journal::new`] with halves of `capacity` bytes (tests fill them quickly).
    pub fn with_capacity(data_dir: &Path, fs: Arc<FsSync>, epoch: u64, capacity: u64) -> Journal {
        Journal {
            path: data_dir.join(JOURNAL_FILE),
            fs,
            capacity: capacity.max(2 * HEADER_PAGE),
            inner: Mutex::new(Inner {
                file: None,
                epoch: epoch.max(1),
                at: HEADER_PAGE,
                pending: Vec::new(),
                spare: Vec::new(),
                failed: None,
                retry_at: None,
                held: HashMap::new(),
                held_bytes: 0,
                held_total: 0,
                spare_runs: Vec::new(),
                spare_run_bytes: 0,
            }),
            writer: Mutex::new(()),
            ahead: SyncAhead::default(),
            retires: Arc::default(),
            #[cfg(test)]
            write_gate: Mutex::new(None),
            #[cfg(test)]
            retire_gate: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The data dir the journal file is in.
    fn data_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Add a piece: `bytes` were just written (not synced) at `offset` of `group`'s segment
    /// starting at `segment`. False if the piece is too large for the journal (the group's
    /// round is then synced otherwise).
    pub fn add(&self, group: GroupId, segment: LogIndex, offset: u64, bytes: &[u8]) -> bool {
        if (bytes.len() + RECORD_HEAD + record::RECORD_OVERHEAD) as u64 > self.capacity / 4 {
            return false;
        }
        let full = {
            let mut i = self.lock();
            let epoch = i.epoch;
            encode_record(&mut i.pending, PIECE, epoch, group, segment, offset, bytes);
            i.pending.len() >= PENDING_WRITE_BYTES
        };
        // Rounds whose groups then synced by themselves leave their pieces here unsynced:
        // written out past a bound, so memory does not grow with them (a later sync of the
        // journal covers them, a wrap makes them moot).
        if full {
            self.write_pending_if_free();
        }
        true
    }

    /// Write the pending records without a sync, unless another thread is writing or
    /// wrapping (then its caller, a group's flush, does not wait for it: the records stay
    /// for the next write). A failure is remembered: the next sync reports it.
    fn write_pending_if_free(&self) {
        let writer = match self.writer.try_lock() {
            Ok(w) => w,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if let Err(e) = self.write_pending_as_writer(&writer) {
            log::error!("{e}");
        }
    }

    /// Add a piece whose bytes are *not* written to the segment yet: the group holds them in
    /// its write buffer until a later write ([`Journal::written`]), and a sync of the journal
    /// is what makes them durable. False (the group writes them out first, as for
    /// [`Journal::add`]) when the journal file is not open yet, or the held bytes of every
    /// group would pass a quarter of the journal.
    pub fn add_held(&self, group: GroupId, segment: LogIndex, offset: u64, bytes: &[u8]) -> bool {
        if (bytes.len() + RECORD_HEAD + record::RECORD_OVERHEAD) as u64 > self.capacity / 4 {
            return false;
        }
        let mut i = self.lock();
        if i.file.is_none()
            || i.failed.is_some()
            || (i.held_bytes + bytes.len()) as u64 > self.capacity / 4
        {
            return false;
        }
        let epoch = i.epoch;
        encode_record(&mut i.pending, PIECE, epoch, group, segment, offset, bytes);
        // A busy group's rounds append to its segment one after another: one growing run.
        let inner = &mut *i;
        let runs = inner.held.entry(group).or_default();
        let run = match runs.last_mut() {
            Some(r) if r.segment == segment && r.offset + r.bytes.len() as u64 == offset => r,
            _ => {
                let bytes = inner.spare_runs.pop().unwrap_or_default();
                inner.spare_run_bytes -= bytes.capacity();
                runs.push(HeldRun {
                    segment,
                    offset,
                    bytes,
                });
                runs.last_mut().expect("just pushed")
            }
        };
        run.bytes.extend_from_slice(bytes);
        // The group's next piece (one run per busy group: see `shoal_core::prefetch`).
        let spare = run.bytes.spare_capacity_mut();
        shoal_core::prefetch::for_write_spare(spare.as_ptr().cast(), spare.len());
        i.held_bytes += bytes.len();
        i.held_total += 1;
        let full = i.pending.len() >= PENDING_WRITE_BYTES;
        drop(i);
        if full {
            self.write_pending_if_free();
        }
        true
    }

    /// `group` wrote every byte it held ([`Journal::add_held`]) to its segment.
    pub fn written(&self, group: GroupId) {
        let mut i = self.lock();
        if let Some(runs) = i.held.remove(&group) {
            i.held_bytes -= runs.iter().map(|r| r.bytes.len()).sum::<usize>();
            let keep = self.capacity as usize / 4;
            for mut r in runs {
                if i.spare_run_bytes + r.bytes.capacity() <= keep {
                    r.bytes.clear();
                    i.spare_run_bytes += r.bytes.capacity();
                    i.spare_runs.push(r.bytes);
                }
            }
        }
        // No group holds anything (the last busy group wrote out, or fell idle): nothing to
        // lend to, and an idle node keeps no memory for it.
        if i.held.is_empty() {
            i.spare_runs = Vec::new();
            i.spare_run_bytes = 0;
        }
    }

    /// Bytes held by groups and not yet in their segments (what a wrap would write first).
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.held_stats().0 as usize
    }

    /// [`Journal::held_bytes`], and the pieces held since start (`/metrics`).
    pub fn held_stats(&self) -> (u64, u64) {
        let i = self.lock();
        (i.held_bytes as u64, i.held_total)
    }

    /// Syncs of the filesystem run ahead of a retire since start (`/metrics`).
    pub fn ahead_syncs(&self) -> u64 {
        self.ahead.done.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Switches of half since start, and those of them that waited for the retire of the half
    /// before (`/metrics`).
    pub fn switch_stats(&self) -> (u64, u64) {
        let st = self.retires.lock();
        (st.asked, st.waits)
    }

    /// Make every piece added so far durable. The error names the file; it is fatal, as a
    /// failed fdatasync is.
    pub fn sync(&self) -> Result<JournalSync, String> {
        let (file, how) = self.write_pending()?;
        if let Some(file) = file {
            fsutil::sync_data(&file, true).map_err(|e| self.fail(e))?;
        }
        Ok(how)
    }

    /// The group's segments were fdatasynced and are about to change other than by appending:
    /// its earlier pieces must never be written back. Durable when this returns.
    pub fn barrier(&self, group: GroupId) -> Result<(), String> {
        // A retire running may write the group's held runs back to its segments: not after
        // the change this barrier announces.
        let asked = self.retires.lock().asked;
        self.retires.wait_for(asked, false)?;
        {
            let mut i = self.lock();
            let epoch = i.epoch;
            encode_record(&mut i.pending, BARRIER, epoch, group, 0, 0, &[]);
        }
        self.sync().map(|_| ())
    }

    /// Write the pending records, switching halves if they do not fit. Returns the file to
    /// fdatasync, which then covers every record added before the call.
    ///
    /// One writer at a time (`writer`): records reach the file in the order they were added,
    /// and a writer's fdatasync after its write covers every earlier writer's. The write runs
    /// outside `inner`, so the groups' flushes on the raft thread go on adding pieces meanwhile
    /// instead of waiting for the device, and a retire runs outside both.
    fn write_pending(&self) -> Result<(Option<Arc<File>>, JournalSync), String> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.write_pending_as_writer(&writer)
    }

    /// [`Journal::write_pending`] for the thread that holds `writer`.
    fn write_pending_as_writer(
        &self,
        _writer: &MutexGuard<'_, ()>,
    ) -> Result<(Option<Arc<File>>, JournalSync), String> {
        // What touches the disk runs outside `inner` (the raft thread's flushes and its view
        // take it): making the file writes 32 MiB and syncs twice, a slow or hung disk would
        // otherwise hold up the whole node with it.
        let step = loop {
            let prepared = self.prepare_write(&mut self.lock())?;
            let epoch = match prepared {
                Prepared::Open { epoch } => epoch,
                Prepared::Filesystem => {
                    if let Err(e) = self.fs.run() {
                        self.lock().failed.get_or_insert(e.clone());
                        return Err(e);
                    }
                    return Ok((None, JournalSync::Filesystem));
                }
                step => break step,
            };
            #[cfg(test)]
            self.wait_at_gate();
            let made = self.create(epoch);
            let mut i = self.lock();
            match made {
                Ok(f) => {
                    i.file = Some(Arc::new(f));
                    i.at = HEADER_PAGE;
                }
                Err(e) => {
                    // A full disk or no descriptor to spare: the node goes on with syncs of
                    // the filesystem, and tries again later.
                    log::warn!(
                        "cannot make the sync journal {}: {e}; syncing the filesystem instead \
                         (trying again in {} s)",
                        self.path.display(),
                        RETRY_AFTER.as_secs()
                    );
                    i.retry_at = Some(std::time::Instant::now() + RETRY_AFTER);
                }
            }
        };
        #[cfg(test)]
        if !matches!(step, Prepared::Done(..)) {
            self.wait_at_gate();
        }
        match step {
            Prepared::Done(file, how) => Ok((file, how)),
            Prepared::Write {
                file,
                bytes,
                half,
                at,
            } => {
                let written = fsutil::write_at(&file, &bytes, half + at);
                self.wrote(written, bytes, at)?;
                Ok((Some(file), JournalSync::Synced))
            }
            Prepared::Switch {
                file,
                held,
                bytes,
                epoch,
                retire,
            } => {
                // The half switched to is written once its last epoch's pieces are durable in
                // their segments.
                self.retires.wait_for(retire - 1, true)?;
                let at = half_at(epoch, self.capacity);
                let written = fsutil::write_at(&file, &encode_header(epoch), at)
                    .and_then(|()| fsutil::write_at(&file, &bytes, at + HEADER_PAGE));
                if let Err(e) = self.wrote(written, bytes, HEADER_PAGE) {
                    // (Nothing writes to the journal after this: waiting barriers learn why.)
                    self.retires.end(retire, Err(e.clone()));
                    return Err(e);
                }
                self.retire(retire, held);
                Ok((Some(file), JournalSync::Wrapped))
            }
            Prepared::Wrap {
                file,
                held,
                epoch,
                retire,
            } => {
                self.retires.wait_for(retire - 1, true)?;
                let ended = retire_half(self.data_dir(), &self.fs, held);
                self.retires.end(retire, ended.clone());
                ended?;
                write_epoch(&file, half_at(epoch, self.capacity), epoch)
                    .map_err(|e| self.fail(e))?;
                Ok((None, JournalSync::Wrapped))
            }
            Prepared::Open { .. } | Prepared::Filesystem => {
                unreachable!("a journal is opened, or the filesystem synced, before this")
            }
        }
    }

    /// After writing `bytes` at `at` of the half in use: keep the buffer for the next records
    /// and start a sync ahead when the half passed another quarter.
    fn wrote(&self, written: io::Result<()>, mut bytes: Vec<u8>, at: u64) -> Result<(), String> {
        let mut i = self.lock();
        written.map_err(|e| self.fail_in(&mut i, e))?;
        let quarter = |x: u64| x * AHEAD_SYNCS / self.capacity;
        let ahead = quarter(at + bytes.len() as u64) > quarter(at);
        bytes.clear();
        if bytes.capacity() <= PENDING_WRITE_BYTES {
            i.spare = bytes;
        }
        // Outside `inner`: the first one opens the data dir, each starts a thread.
        drop(i);
        if ahead {
            self.ahead.start(self.data_dir());
        }
        Ok(())
    }

    /// Retire `n`: on a thread of its own, write the `held` runs of the half just left to
    /// their segments and sync the data dir's filesystem (here, should no thread start).
    fn retire(&self, n: u64, held: HashMap<GroupId, Vec<HeldRun>>) {
        let data_dir = self.data_dir().to_path_buf();
        let (fs, retires) = (self.fs.clone(), self.retires.clone());
        let job = Arc::new(Mutex::new(Some(held)));
        #[cfg(test)]
        let gate = self.retire_gate.lock().expect("the gate").take();
        let run = {
            let job = job.clone();
            move || {
                #[cfg(test)]
                if let Some(gate) = gate {
                    if gate.recv() != Ok(true) {
                        return;
                    }
                }
                let held = job.lock().unwrap_or_else(|p| p.into_inner()).take();
                let Some(held) = held else { return };
                retires.end(n, retire_half(&data_dir, &fs, held));
            }
        };
        let spawned = std::thread::Builder::new()
            .name("shoal-journal-retire".into())
            .stack_size(256 << 10)
            .spawn(move || {
                crate::affinity::leave_raft_cpu();
                run()
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a thread to retire a half of the sync journal: {e}");
            let held = job.lock().unwrap_or_else(|p| p.into_inner()).take();
            let ended = retire_half(self.data_dir(), &self.fs, held.unwrap_or_default());
            self.retires.end(n, ended);
        }
    }

    /// Under `inner` (and `writer`): say what the write is, or that the file is to be opened
    /// first.
    /// A switch starts here: the held runs are taken (the retire of the half left writes them
    /// to their segments), the pending records are stamped with the next epoch, and the epoch
    /// moves on, so that pieces added while the switch runs belong to the new one.
    fn prepare_write(&self, i: &mut Inner) -> Result<Prepared, String> {
        if let Some(e) = self.ahead.failed().or_else(|| self.retires.failed()) {
            i.failed.get_or_insert(e);
        }
        if let Some(e) = &i.failed {
            return Err(e.clone());
        }
        let file = match &i.file {
            Some(f) => f.clone(),
            None if i.retry_at.is_some_and(|t| std::time::Instant::now() < t) => {
                // No journal: a sync of the filesystem covers every pending piece's bytes
                // (and no barrier is needed where no piece was ever written).
                i.pending.clear();
                return Ok(Prepared::Filesystem);
            }
            None => return Ok(Prepared::Open { epoch: i.epoch }),
        };
        if i.at + i.pending.len() as u64 > self.capacity {
            let held = std::mem::take(&mut i.held);
            i.held_bytes = 0;
            i.epoch += 1;
            let epoch = i.epoch;
            let retire = self.retires.ask();
            let bytes = restamp(&i.pending, epoch);
            i.pending.clear();
            i.at = HEADER_PAGE;
            if HEADER_PAGE + bytes.len() as u64 > self.capacity {
                return Ok(Prepared::Wrap {
                    file,
                    held,
                    epoch,
                    retire,
                });
            }
            i.at += bytes.len() as u64;
            return Ok(Prepared::Switch {
                file,
                held,
                bytes,
                epoch,
                retire,
            });
        }
        if i.pending.is_empty() {
            return Ok(Prepared::Done(Some(file), JournalSync::Synced));
        }
        let spare = std::mem::take(&mut i.spare);
        let bytes = std::mem::replace(&mut i.pending, spare);
        let at = i.at;
        i.at += bytes.len() as u64;
        Ok(Prepared::Write {
            file,
            bytes,
            half: half_at(i.epoch, self.capacity),
            at,
        })
    }

    /// Open the journal file, zero-filled to its size (reused if it has that size already),
    /// with the header of `epoch` durable in its half and the other half's cleared.
    fn create(&self, epoch: u64) -> io::Result<File> {
        let (size, half) = (2 * self.capacity, self.capacity);
        if let Ok(f) = fsutil::open_existing(&self.path, true) {
            if f.metadata()?.len() == size {
                clear_header(&f, half_at(epoch + 1, half))?;
                write_epoch(&f, half_at(epoch, half), epoch)?;
                return Ok(f);
            }
        }
        let tmp = fsutil::tmp_path(&self.path);
        let f = fsutil::create_file(&tmp)?;
        fsutil::fill_zeros(&f, size)?;
        write_epoch(&f, half_at(epoch, half), epoch)?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            fsutil::fsync_dir(dir, true)?;
        }
        Ok(f)
    }

    /// Tests: hold the next retire before it writes anything; send `true` to let it go,
    /// `false` to drop it as a process that dies would.
    #[cfg(test)]
    pub(crate) fn gate_next_retire(&self) -> std::sync::mpsc::Sender<bool> {
        let (open, gate) = std::sync::mpsc::channel();
        *self.retire_gate.lock().expect("the gate") = Some(gate);
        open
    }

    /// Tests: wait until every retire asked for has ended (or one failed).
    #[cfg(test)]
    pub(crate) fn wait_retired(&self) -> Result<(), String> {
        let asked = self.retires.lock().asked;
        self.retires.wait_for(asked, false)
    }

    /// Tests: wait here if a test set the gate ([`Journal::write_gate`]).
    #[cfg(test)]
    fn wait_at_gate(&self) {
        // Taken out first: the gate's lock is not held while waiting.
        let gate = self.write_gate.lock().expect("the gate").take();
        if let Some(gate) = gate {
            let _ = gate.recv();
        }
    }

    fn fail(&self, e: io::Error) -> String {
        let mut i = self.lock();
        self.fail_in(&mut i, e)
    }

    fn fail_in(&self, i: &mut Inner, e: io::Error) -> String {
        let msg = format!("sync journal {}: {e}", self.path.display());
        i.failed.get_or_insert(msg.clone());
        msg
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    fn journal_in(dir: &Path, capacity: u64) -> Journal {
        let fs = Arc::new(FsSync::open(dir).expect("open the dir for syncs"));
        Journal::with_capacity(dir, fs, replay(dir).expect("replay").epoch, capacity)
    }

    fn pieces_of(dir: &Path) -> Vec<(GroupId, LogIndex, u64, Vec<u8>)> {
        let c = read(dir).expect("read").expect("a journal");
        c.live_pieces()
            .map(|(g, s, o, b)| (g, s, o, b.to_vec()))
            .collect()
    }

    /// Group 4's segment 1 (8 KiB, its header and zeros) in `dir`.
    fn segment_of_group_4(dir: &Path) -> PathBuf {
        segment_of(dir, 4)
    }

    /// Group `group`'s segment 1 (8 KiB, its header and zeros) in `dir`.
    fn segment_of(dir: &Path, group: GroupId) -> PathBuf {
        let log = group_dir(dir, group).join("log");
        std::fs::create_dir_all(&log).expect("mkdir");
        let seg = log.join(segment_name(1));
        let mut head = super::super::segment::encode_header(group, 1).to_vec();
        head.resize(8192, 0);
        std::fs::write(&seg, &head).expect("write a segment");
        seg
    }

    /// Add 1,000-byte pieces of group 1 and sync, until a sync switches the (small) journal
    /// to its other half.
    fn fill_until_it_wraps(j: &Journal) {
        fill_until_it_switches(j, 1);
    }

    /// Add 1,000-byte pieces of `group` and sync, until a sync switches the (small) journal
    /// to its other half; the pieces added.
    fn fill_until_it_switches(j: &Journal, group: GroupId) -> u64 {
        for i in 0..8u64 {
            assert!(j.add(group, 1, i * 1000, &[7u8; 1000]));
            if j.sync().expect("sync") == JournalSync::Wrapped {
                return i + 1;
            }
        }
        panic!("eight pages of pieces did not fill a half of the journal");
    }

    #[test]
    fn pieces_read_back_in_order_and_a_barrier_hides_only_its_groups_earlier_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let j = journal_in(dir.path(), JOURNAL_BYTES);
        assert!(
            read(dir.path()).expect("read").is_none(),
            "made when first synced"
        );
        assert!(j.add(1, 1, 64, b"one"));
        assert!(j.add(2, 1, 64, b"two"));
        assert_eq!(j.sync(), Ok(JournalSync::Synced));
        j.barrier(1).expect("barrier");
        assert!(j.add(1, 5, 128, b"three"));
        j.sync().expect("sync");
        let c = read(dir.path()).expect("read").expect("a journal");
        assert_eq!(c.records.len(), 4);
        assert_eq!(
            pieces_of(dir.path()),
            vec![(2, 1, 64, b"two".to_vec()), (1, 5, 128, b"three".to_vec())]
        );
        let len = std::fs::metadata(dir.path().join(JOURNAL_FILE))
            .expect("stat")
            .len();
        assert_eq!(len, 2 * JOURNAL_BYTES, "two halves, zero-filled when made");
    }

    /// Run `j.sync()` on a thread of its own; the flag says when it has returned.
    fn sync_on_a_thread(
        j: &Arc<Journal>,
    ) -> (
        std::thread::JoinHandle<Result<JournalSync, String>>,
        Arc<AtomicBool>,
    ) {
        let done = Arc::new(AtomicBool::new(false));
        let (j, d) = (j.clone(), done.clone());
        let t = std::thread::spawn(move || {
            let r = j.sync();
            d.store(true, Ordering::SeqCst);
            r
        });
        (t, done)
    }

    /// Hold the next write or wrap once it has taken its work; send to the sender to let it go.
    fn gate_next_write(j: &Journal) -> std::sync::mpsc::Sender<()> {
        let (open, gate) = std::sync::mpsc::channel();
        *j.write_gate.lock().unwrap() = Some(gate);
        open
    }

    /// After a moment, the sync that sets `done` has still not returned.
    fn still_waiting(done: &AtomicBool, what: &str) {
        std::thread::sleep(Duration::from_millis(200));
        assert!(!done.load(Ordering::SeqCst), "{what}");
    }

    /// Wait (20 s at most) until `cond` holds.
    fn until(what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(20), "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn pieces_are_added_while_a_write_runs_and_a_later_sync_waits_for_that_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let j = Arc::new(journal_in(dir.path(), JOURNAL_BYTES));
        assert!(j.add(1, 1, 64, b"one"));
        j.sync().expect("the first sync makes the file");
        let open = gate_next_write(&j);
        assert!(j.add(1, 1, 67, b"two"));
        let (first, _) = sync_on_a_thread(&j);
        until("the first sync takes its piece", || {
            j.lock().pending.is_empty()
        });
        // It is held before writing "two": pieces go on being added, held ones too.
        assert!(j.add(2, 1, 64, b"three"));
        assert!(j.add_held(3, 1, 64, b"four"));
        // A second sync must not report "three" durable before "two" is written (a replay
        // stops at the first record missing): it waits for the first write.
        let (second, second_done) = sync_on_a_thread(&j);
        still_waiting(
            &second_done,
            "the second sync returned while the first had not written",
        );
        open.send(()).expect("let the first write go");
        assert_eq!(first.join().expect("first"), Ok(JournalSync::Synced));
        assert_eq!(second.join().expect("second"), Ok(JournalSync::Synced));
        assert_eq!(
            pieces_of(dir.path()),
            vec![
                (1, 1, 64, b"one".to_vec()),
                (1, 1, 67, b"two".to_vec()),
                (2, 1, 64, b"three".to_vec()),
                (3, 1, 64, b"four".to_vec()),
            ]
        );
    }

    /// Making the file (16 MiB written and synced) does not hold the lock the groups' flushes
    /// and the node's view take: on a slow or hung disk it held up the whole node.
    #[test]
    fn pieces_are_added_while_the_first_sync_makes_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let j = Arc::new(journal_in(dir.path(), JOURNAL_BYTES));
        assert!(j.add(1, 1, 64, b"one"));
        let open = gate_next_write(&j);
        let (first, first_done) = sync_on_a_thread(&j);
        until("the first sync begins to make the file", || {
            j.write_gate.lock().unwrap().is_none()
        });
        let adding = {
            let j = j.clone();
            std::thread::spawn(move || {
                assert!(j.add(2, 1, 64, b"two"));
                j.held_stats()
            })
        };
        until("a piece was added while the file is made", || {
            adding.is_finished()
        });
        assert_eq!(adding.join().expect("adding"), (0, 0));
        still_waiting(
            &first_done,
            "the first sync returned before the file was made",
        );
        open.send(()).expect("let the file be made");
        assert_eq!(first.join().expect("first"), Ok(JournalSync::Synced));
        assert_eq!(
            pieces_of(dir.path()),
            vec![(1, 1, 64, b"one".to_vec()), (2, 1, 64, b"two".to_vec())]
        );
    }

    #[test]
    fn a_full_half_switches_to_the_other_and_syncs_do_not_wait_for_its_retire() {
        let dir = tempfile::tempdir().expect("temp dir");
        let seg = segment_of_group_4(dir.path());
        let j = Arc::new(journal_in(dir.path(), 3 * HEADER_PAGE));
        j.sync().expect("the first sync makes the file");
        let before = j.lock().epoch;
        assert!(j.add_held(4, 1, 4096, &[1; 100]));
        let retire = j.gate_next_retire();
        fill_until_it_wraps(&j);
        assert_eq!(j.lock().epoch, before + 1);
        assert_eq!(
            j.held_bytes(),
            0,
            "the switch took the held run for the retire"
        );
        // The retire is held: pieces are added and synced in the new half meanwhile, a group
        // holding bytes right after the ones the retire writes back.
        assert!(j.add(2, 1, 64, b"during"));
        assert!(j.add_held(4, 1, 4196, &[2; 50]));
        assert_eq!(j.sync(), Ok(JournalSync::Synced));
        // Both halves are live, the older first.
        let c = read(dir.path()).expect("read").expect("a journal");
        assert_eq!((c.epoch, c.halves), (before + 1, true));
        let pieces = pieces_of(dir.path());
        assert_eq!(pieces.first(), Some(&(4, 1, 4096, vec![1; 100])));
        assert_eq!(
            pieces[pieces.len() - 2..],
            [(2, 1, 64, b"during".to_vec()), (4, 1, 4196, vec![2; 50])]
        );
        let on_disk = std::fs::read(&seg).expect("read the segment");
        assert!(
            on_disk[4096..4196].iter().all(|&b| b == 0),
            "not yet retired"
        );
        retire.send(true).expect("let the retire go");
        j.wait_retired().expect("the retire");
        let on_disk = std::fs::read(&seg).expect("read the segment");
        assert_eq!(
            &on_disk[4096..4196],
            &[1u8; 100],
            "the retire wrote the held run"
        );
        assert_eq!(j.held_bytes(), 50, "the new half's run is still held");
        assert_eq!(j.switch_stats(), (1, 0));
    }

    #[test]
    fn a_half_is_reused_only_once_retired_and_then_its_old_records_no_longer_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let j = Arc::new(journal_in(dir.path(), 3 * HEADER_PAGE));
        let before = j.lock().epoch;
        let retire = j.gate_next_retire();
        let first = fill_until_it_switches(&j, 1);
        assert!(first > 1);
        // Filling the second half switches back to the first, whose retire is held: that
        // switch (and its sync) waits for it.
        let filling = {
            let j = j.clone();
            std::thread::spawn(move || fill_until_it_switches(&j, 2))
        };
        until("the second switch waits for the first retire", || {
            j.switch_stats() == (2, 1)
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !filling.is_finished(),
            "a switch did not wait for the retire"
        );
        assert_eq!(
            j.lock().epoch,
            before + 2,
            "the epoch moved when it was taken"
        );
        let c = read(dir.path()).expect("read").expect("a journal");
        assert_eq!(
            c.epoch,
            before + 1,
            "the first half still names the first epoch"
        );
        retire.send(true).expect("let the retire go");
        filling.join().expect("filling");
        j.wait_retired().expect("the retires");
        let c = read(dir.path()).expect("read").expect("a journal");
        assert_eq!(c.epoch, before + 2);
        let of_group = |g: GroupId| pieces_of(dir.path()).iter().filter(|p| p.0 == g).count();
        assert_eq!(
            of_group(1),
            1,
            "of group 1's {first} pieces, only the one the first switch carried over"
        );
        assert!(of_group(2) >= 2);
    }

    #[test]
    fn a_barrier_waits_for_a_running_retire() {
        let dir = tempfile::tempdir().expect("temp dir");
        let j = Arc::new(journal_in(dir.path(), 3 * HEADER_PAGE));
        let retire = j.gate_next_retire();
        fill_until_it_wraps(&j);
        let done = Arc::new(AtomicBool::new(false));
        let barrier = {
            let (j, done) = (j.clone(), done.clone());
            std::thread::spawn(move || {
                let r = j.barrier(1);
                done.store(true, Ordering::SeqCst);
                r
            })
        };
        still_waiting(
            &done,
            "a barrier returned while a retire could still write back",
        );
        retire.send(true).expect("let the retire go");
        barrier.join().expect("barrier").expect("the barrier");
    }

    #[test]
    fn records_no_half_can_hold_are_covered_by_a_filesystem_sync() {
        let dir = tempfile::tempdir().expect("temp dir");
        let seg = segment_of_group_4(dir.path());
        let j = journal_in(dir.path(), 3 * HEADER_PAGE);
        j.sync().expect("the first sync makes the file");
        let before = j.lock().epoch;
        assert!(j.add_held(4, 1, 4096, &[1; 100]));
        // More than a half holds, added without a sync.
        for n in 0..4u64 {
            assert!(j.add(1, 1, n * 2500, &[7; 2500]));
        }
        assert_eq!(j.sync(), Ok(JournalSync::Wrapped));
        assert_eq!(j.lock().epoch, before + 1);
        let on_disk = std::fs::read(&seg).expect("read the segment");
        assert_eq!(
            &on_disk[4096..4196],
            &[1u8; 100],
            "written back before the sync"
        );
        let c = read(dir.path()).expect("read").expect("a journal");
        assert_eq!(c.epoch, before + 1);
        assert!(c.records.is_empty(), "the records were dropped");
        assert!(j.add(3, 9, 0, b"after"));
        j.sync().expect("sync");
        assert_eq!(pieces_of(dir.path()), vec![(3, 9, 0, b"after".to_vec())]);
    }

    #[test]
    fn a_failed_retire_fails_the_next_sync_and_barrier() {
        let dir = tempfile::tempdir().expect("temp dir");
        let seg = segment_of_group_4(dir.path());
        let j = journal_in(dir.path(), 3 * HEADER_PAGE);
        j.sync().expect("the first sync makes the file");
        assert!(j.add_held(4, 1, 4096, &[1; 100]));
        // The segment cannot be written back into: a directory where it was.
        std::fs::remove_file(&seg).expect("rm");
        std::fs::create_dir(&seg).expect("mkdir");
        fill_until_it_wraps(&j);
        let e = j.wait_retired().expect_err("the retire failed");
        assert!(
            e.contains("writing a held run back") && e.contains(&seg.display().to_string()),
            "{e}"
        );
        assert!(j.add(1, 1, 0, b"x"));
        assert_eq!(j.sync(), Err(e.clone()), "the next sync");
        assert_eq!(j.barrier(1), Err(e));
    }

    #[test]
    fn a_replay_writes_back_both_halves_in_order_and_only_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let seg = segment_of_group_4(dir.path());
        let six = segment_of(dir.path(), 6);
        let j = journal_in(dir.path(), 3 * HEADER_PAGE);
        j.sync().expect("the first sync makes the file");
        assert!(j.add(4, 1, 4096, b"old"));
        assert!(j.add(6, 1, 4096, b"six"));
        let fillers = fill_until_it_switches(&j, 1);
        j.wait_retired().expect("the retire");
        // Group 6 changes its segment other than by appending, after its piece (which a
        // replay must not write back); group 4 appends.
        j.barrier(6).expect("barrier");
        assert!(j.add(4, 1, 4099, b"new"));
        j.sync().expect("sync");
        drop(j);
        let done = replay(dir.path()).expect("replay");
        assert_eq!(
            (done.pieces, done.skipped, done.segments),
            (2, fillers as usize, 1),
            "group 4's pieces of both halves; group 1 has no segment"
        );
        let bytes = std::fs::read(&seg).expect("read");
        assert_eq!(&bytes[4096..4102], b"oldnew");
        let bytes = std::fs::read(&six).expect("read");
        assert!(bytes[4096..].iter().all(|&b| b == 0), "the barrier held");
        let again = replay(dir.path()).expect("replay again");
        assert_eq!((again.pieces, again.epoch), (0, done.epoch + 1));
        let c = read(dir.path()).expect("read").expect("a journal");
        assert!(c.records.is_empty() && c.halves);
    }

    #[test]
    fn a_journal_of_one_half_is_replayed_then_replaced_by_one_of_two() {
        let dir = tempfile::tempdir().expect("temp dir");
        let seg = segment_of_group_4(dir.path());
        // A journal as made before the halves: one header, then the records of its epoch.
        let mut bytes = vec![0u8; 4 * HEADER_PAGE as usize];
        let mut head = encode_header(7);
        head[..8].copy_from_slice(MAGIC_ONE_HALF);
        let crc = record::CRC32C.checksum(&head[..16]);
        head[16..].copy_from_slice(&crc.to_le_bytes());
        bytes[..HEADER_BYTES_USED].copy_from_slice(&head);
        let mut records = Vec::new();
        encode_record(&mut records, PIECE, 7, 4, 1, 4096, b"kept");
        encode_record(&mut records, PIECE, 6, 4, 1, 4100, b"older");
        let at = HEADER_PAGE as usize;
        bytes[at..at + records.len()].copy_from_slice(&records);
        let path = dir.path().join(JOURNAL_FILE);
        std::fs::write(&path, &bytes).expect("write");
        let c = read(dir.path()).expect("read").expect("a journal");
        assert_eq!((c.epoch, c.records.len(), c.halves), (7, 1, false));
        let done = replay(dir.path()).expect("replay");
        assert_eq!((done.pieces, done.epoch), (1, 8));
        assert_eq!(&std::fs::read(&seg).expect("read")[4096..4100], b"kept");
        assert!(!path.exists(), "replaced");
        let fs = Arc::new(FsSync::open(dir.path()).expect("open the dir for syncs"));
        let j = Journal::with_capacity(dir.path(), fs, done.epoch, 3 * HEADER_PAGE);
        assert!(j.add(4, 1, 4100, b"two"));
        j.sync().expect("sync");
        let c = read(dir.path()).expect("read").expect("a journal");
        assert_eq!((c.epoch, c.halves), (8, true));
        assert_eq!(pieces_of(dir.path()), vec![(4, 1, 4100, b"two".to_vec())]);
    }

    #[test]
    fn a_journal_file_that_cannot_be_made_gives_way_to_a_filesystem_sync() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A directory where the file should go: neither opened nor replaced.
        std::fs::create_dir(dir.path().join(JOURNAL_FILE)).expect("mkdir");
        std::fs::write(dir.path().join(JOURNAL_FILE).join("x"), b"x").expect("fill it");
        let fs = Arc::new(FsSync::open(dir.path()).expect("open the dir for syncs"));
        let j = Journal::new(dir.path(), fs, 1);
        assert!(j.add(1, 1, 64, b"one"));
        assert_eq!(j.sync(), Ok(JournalSync::Filesystem));
        assert!(
            j.lock().pending.is_empty(),
            "the filesystem sync covered the piece"
        );
        // Not tried again at once (a zero-fill of the file per round would be ruinous).
        assert!(j.add(1, 1, 67, b"two"));
        assert_eq!(j.sync(), Ok(JournalSync::Filesystem));
        j.barrier(1).expect("no journal file: nothing to bar");
        assert!(dir.path().join(JOURNAL_FILE).is_dir());
    }

    #[test]
    fn pieces_no_sync_asks_for_are_written_out_past_a_bound() {
        let dir = tempfile::tempdir().expect("temp dir");
        let j = journal_in(dir.path(), JOURNAL_BYTES);
        let piece = [5u8; 1000];
        for n in 0..1000u64 {
            assert!(j.add(1, 1, n * 1000, &piece));
            assert!(j.lock().pending.len() < PENDING_WRITE_BYTES, "piece {n}");
        }
        // Written without a sync; the next sync covers every one.
        j.sync().expect("sync");
        assert_eq!(pieces_of(dir.path()).len(), 1000);
    }

    #[test]
    fn the_filesystem_is_synced_ahead_as_the_journal_fills_and_a_failure_there_fails_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let j = journal_in(dir.path(), 16 * HEADER_PAGE);
        let ahead_done = |j: &Journal| {
            until("the sync ahead to end", || {
                !j.ahead.running.load(std::sync::atomic::Ordering::Acquire)
            });
            j.ahead_syncs()
        };
        // Less than a quarter of the file: nothing ahead.
        for i in 0..8u64 {
            assert!(j.add(1, 1, i * 1000, &[7u8; 1000]));
            assert_eq!(j.sync().expect("sync"), JournalSync::Synced);
        }
        assert_eq!(
            ahead_done(&j),
            0,
            "a sync ahead before a quarter of the file"
        );
        // Past the first and the second quarter: one each (each waited for here; one started
        // while another runs is dropped).
        for i in 8..40u64 {
            assert!(j.add(1, 1, i * 1000, &[7u8; 1000]));
            assert_eq!(j.sync().expect("sync"), JournalSync::Synced);
            ahead_done(&j);
        }
        assert_eq!(ahead_done(&j), 2, "syncs ahead past two quarters");
        // Through a descriptor of its own, not the one whose syncs acknowledge writes.
        let own = j
            .ahead
            .fs
            .get()
            .cloned()
            .flatten()
            .expect("its own descriptor");
        assert!(!Arc::ptr_eq(&own, &j.fs));
        // A failed sync ahead fails the journal's next sync, and every one after it (the
        // kernel reports a write-back error once: the wrap's own sync would not see it).
        j.ahead
            .failed
            .lock()
            .unwrap()
            .get_or_insert("syncfs: injected".into());
        assert!(j.add(1, 1, 40_000, &[7u8; 10]));
        let e = j.sync().expect_err("the failure ahead fails the sync");
        assert!(e.contains("injected"), "{e}");
        assert!(j.sync().is_err(), "and the next");
    }

    #[test]
    fn a_groups_held_pieces_merge_into_runs_and_a_retire_writes_them_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let seg = segment_of_group_4(dir.path());
        let j = journal_in(dir.path(), 3 * HEADER_PAGE);
        assert!(!j.add_held(4, 1, 4096, &[1; 100]), "no journal file yet");
        j.sync().expect("the first sync makes the file");
        // Three rounds one after another: one run.
        for (n, at) in [(1u8, 4096u64), (2, 4196), (3, 4296)] {
            assert!(j.add_held(4, 1, at, &[n; 100]));
        }
        assert_eq!(j.lock().held[&4].len(), 1);
        // A rewrite further back (a cut tail written again) starts a run of its own.
        assert!(j.add_held(4, 1, 4196, &[4; 50]));
        assert_eq!(j.lock().held[&4].len(), 2);
        assert_eq!(j.held_bytes(), 350);
        fill_until_it_wraps(&j);
        assert_eq!(j.held_bytes(), 0, "the switch took every run");
        j.wait_retired().expect("the retire");
        let on_disk = std::fs::read(&seg).expect("read the segment");
        let want: Vec<u8> = [[1u8; 100].as_slice(), &[4; 50], &[2; 50], &[3; 100]].concat();
        assert_eq!(
            &on_disk[4096..4396],
            want.as_slice(),
            "the retire wrote the runs in order"
        );
    }

    #[test]
    fn a_run_written_out_lends_its_allocation_to_the_next_and_what_is_kept_is_bounded_and_let_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let j = journal_in(dir.path(), 64 * HEADER_PAGE);
        j.sync().expect("the first sync makes the file");
        // Group 3 goes on holding throughout, as another busy group does.
        assert!(j.add_held(3, 1, 4096, &[9; 10]));
        assert!(j.add_held(4, 1, 4096, &[1; 3000]));
        let (ptr, cap) = {
            let i = j.lock();
            (i.held[&4][0].bytes.as_ptr(), i.held[&4][0].bytes.capacity())
        };
        j.written(4);
        assert_eq!(j.held_bytes(), 10);
        assert_eq!(j.lock().spare_run_bytes, cap, "kept, emptied");
        // Another group's next run takes it, and a piece that fits needs no new allocation.
        assert!(j.add_held(5, 1, 4096, &[2; 1000]));
        {
            let i = j.lock();
            assert_eq!(i.held[&5][0].bytes.as_ptr(), ptr, "the same allocation");
            assert_eq!(
                i.held[&5][0].bytes,
                vec![2u8; 1000],
                "holding only the new bytes"
            );
            assert_eq!((i.spare_runs.len(), i.spare_run_bytes), (0, 0));
        }
        j.written(5);
        // Runs written out beyond a quarter of the journal are let go, not kept: ten runs
        // held at once whose allocations grew (a sixteenth, then one byte more) past it.
        let quarter = (64 * HEADER_PAGE / 4) as usize;
        let mut grown = 0;
        for g in 10..20 {
            assert!(j.add_held(g, 1, 4096, &vec![3; quarter / 16]));
            assert!(j.add_held(g, 1, 4096 + quarter as u64 / 16, &[4]));
            grown += j.lock().held[&g][0].bytes.capacity();
        }
        assert!(
            grown > quarter,
            "the runs' allocations pass a quarter: {grown}"
        );
        for g in 10..20 {
            j.written(g);
        }
        {
            let i = j.lock();
            assert!(!i.spare_runs.is_empty());
            assert!(i.spare_run_bytes <= quarter, "{} kept", i.spare_run_bytes);
            let kept: usize = i.spare_runs.iter().map(|r| r.capacity()).sum();
            assert_eq!(kept, i.spare_run_bytes);
            assert!(i.spare_runs.iter().all(|r| r.is_empty()));
        }
        // The last holder writes out: nothing is kept for an idle node.
        j.written(3);
        assert_eq!(j.held_bytes(), 0);
        let i = j.lock();
        assert_eq!((i.spare_runs.capacity(), i.spare_run_bytes), (0, 0));
    }

    #[test]
    fn a_replay_skips_pieces_of_segments_that_are_gone_or_are_another_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Group 4's segment 1 exists, but its header names group 4, first index 1 only.
        let seg = segment_of_group_4(dir.path());
        let misnamed = seg.with_file_name(segment_name(100));
        std::fs::copy(&seg, misnamed).expect("a misnamed copy");
        let j = journal_in(dir.path(), JOURNAL_BYTES);
        assert!(j.add(4, 1, 4096, b"kept"));
        assert!(j.add(4, 100, 4096, b"not its file"));
        assert!(j.add(9, 1, 4096, b"no such group"));
        j.sync().expect("sync");
        drop(j);
        let done = replay(dir.path()).expect("replay");
        assert_eq!((done.pieces, done.skipped, done.segments), (1, 2, 1));
        let bytes = std::fs::read(&seg).expect("read");
        assert_eq!(&bytes[4096..4100], b"kept");
        let other = std::fs::read(seg.with_file_name(segment_name(100))).expect("read");
        assert!(
            other[4096..].iter().all(|&b| b == 0),
            "the misnamed file is untouched"
        );
    }

    #[test]
    fn a_journal_whose_header_does_not_read_is_started_afresh() {
        let dir = tempfile::tempdir().expect("temp dir");
        let j = journal_in(dir.path(), JOURNAL_BYTES);
        assert!(j.add(1, 1, 64, b"x"));
        j.sync().expect("sync");
        drop(j);
        let path = dir.path().join(JOURNAL_FILE);
        let f = fsutil::open_existing(&path, true).expect("open");
        fsutil::write_at(&f, b"torn", 8).expect("tear the header");
        let done = replay(dir.path()).expect("replay");
        assert_eq!((done.epoch, done.pieces), (1, 0));
        assert!(!path.exists(), "its records may never match an epoch again");
    }

    #[test]
    fn a_record_of_an_unknown_kind_stops_the_replay_with_its_offset() {
        let dir = tempfile::tempdir().expect("temp dir");
        let j = journal_in(dir.path(), JOURNAL_BYTES);
        {
            let mut i = j.lock();
            let epoch = i.epoch;
            encode_record(&mut i.pending, 9, epoch, 1, 1, 0, b"?");
        }
        j.sync().expect("sync");
        drop(j);
        let e = replay(dir.path()).expect_err("refused");
        assert!(
            e.contains("unknown kind 9") && e.contains("byte 4096"),
            "{e}"
        );
        let bytes = std::fs::read(dir.path().join(JOURNAL_FILE)).expect("read");
        let e = parse_detailed(&bytes).expect_err("refused");
        assert_eq!((e.offset, e.in_header()), (HEADER_PAGE, false), "{e:?}");
    }
}
