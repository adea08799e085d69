//! `MemStorage`: the simulator's [`Storage`], a model of a disk that can lose power.
//!
//! It keeps what a real storage keeps, the way a real storage keeps it, so that the simulator
//! tests recovery code paths rather than a convenient in-memory map:
//!
//! - **The log is bytes.** Each entry is an [`entry`] encoding framed by [`record`] (length,
//!   version, CRC-32C), appended to one log "file". An in-memory index maps log indices to record
//!   offsets. Offsets are *logical*: they keep counting across compaction, like positions in a
//!   stream of segment files, so a `Corrupt { location }` names one place for the whole run.
//! - **Durable and written are apart.** [`Disk`] is the medium: only what it holds survives a
//!   power cut. Writes land in the visible log at once (rule 3) and in a queue of pending writes;
//!   [`Storage::sync`] applies the queue to the disk. [`MemStorage::power_cut`] applies only a
//!   random *prefix* of the queue (rule 4) and may tear the last write it keeps, either cutting
//!   it short or leaving its tail zeroed, as when a file's size reached the disk before its data.
//! - **Recovery scans records** ([`MemStorage::recover`]) exactly as the file storage must: a
//!   record that ends early, or fails its CRC while reaching exactly to the end of the log, is a
//!   torn tail and is cut off, unless a whole valid record follows it (then its length field
//!   rotted); any other bad record is [`StorageError::Corrupt`] at its offset.
//!   A consequence shared with every real log: bit rot inside the very last record cannot be
//!   told from a torn write, so it is dropped as one. [`Disk::corrupt_bit`] documents this.
//! - **The hard state is a small file replaced atomically**: after a crash it is either the
//!   synced one or the last one saved, never a mix.
//! - **Snapshots are atomic.** A snapshot being written lives outside the disk and is lost at a
//!   crash or restart; [`Storage::snapshot_finish`] checks its size and CRC, syncs pending writes
//!   and replaces the current snapshot in one step (rule 6).
//! - **Reads check what they return**, as the file storage does: every record read back for
//!   [`Storage::read_entries`] must pass its CRC, or the read fails with `Corrupt` at the
//!   record's offset. The simulator can make reads of a record return a flipped bit
//!   ([`MemStorage::flip_on_read`]: a bad read, or a page of the cache that rotted; the medium
//!   keeps the good bytes) and damage a stopped node's medium ([`Disk::damage`]: bit rot, a
//!   lost or a torn write, a rotten hard-state file or snapshot). The checker reads the log as
//!   it was written ([`MemStorage::read_entries_as_written`]), so what it sees is the truth the
//!   node's reads are held to.
//!
//! Costs: appends and reads are O(entry), `sync` is O(bytes written since the last sync),
//! compaction O(bytes kept) and recovery O(log bytes), so thousands of simulator seeds stay cheap.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;

use shoal_core::entry::{self, EntryRef};
use shoal_core::record::{self, RecordError, CRC32C};
use shoal_core::rng::Rng;
use shoal_core::storage::{LogView, ReadEntries, Result, Storage, StorageError};
use shoal_core::types::{HardState, LogIndex, SnapshotMeta, Term};

/// Bytes of a hard-state record body: term, vote and commit as little-endian `u64`s.
const HARD_STATE_BODY_BYTES: usize = 24;

/// Counters the simulator reads to report and to check fault injection really happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls to `sync`, plus the sync inside each `snapshot_finish`.
    pub syncs: u64,
    /// Log bytes written (records, framing included).
    pub log_bytes_written: u64,
    /// Hard-state saves.
    pub hard_state_writes: u64,
    /// Snapshot data bytes written (including snapshots later abandoned).
    pub snapshot_bytes_written: u64,
    /// Snapshots made current by `snapshot_finish`.
    pub snapshots_installed: u64,
    /// Power cuts.
    pub crashes: u64,
    /// Power cuts that tore the last log write they kept.
    pub torn_writes: u64,
    /// Unsynced log writes (appends and truncations) that power cuts dropped.
    pub writes_lost: u64,
    /// Torn tails that recovery found and cut off.
    pub torn_tails_recovered: u64,
}

/// A fault-injection request that names no durable byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// `offset` is outside the durable log bytes `durable`.
    OutOfRange {
        /// The logical offset asked for.
        offset: u64,
        /// The logical offsets the durable log covers.
        durable: Range<u64>,
    },
    /// The bit number is not in `0..8`.
    BadBit(u8),
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultError::OutOfRange { offset, durable } => {
                write!(
                    f,
                    "offset {} is not a durable log byte (durable log is {:?})",
                    offset, durable
                )
            }
            FaultError::BadBit(b) => write!(f, "bit {} is not in 0..8", b),
        }
    }
}

impl std::error::Error for FaultError {}

/// A finished (or, while receiving, partly written) snapshot.
#[derive(Clone)]
struct SnapshotFile {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The medium: everything that survives a power cut, and nothing else.
#[derive(Clone, Default)]
pub struct Disk {
    /// Log records; byte 0 is at logical offset `log_start`.
    log: Vec<u8>,
    /// Logical offset of `log[0]`: bytes before it were compacted away.
    log_start: u64,
    /// The hard-state file: one record, or empty if never synced.
    hard_state: Vec<u8>,
    /// The current snapshot.
    snapshot: Option<SnapshotFile>,
    /// Counters; kept here so that they run on across crashes.
    stats: Stats,
}

/// What the simulator can do to a stopped node's medium ([`Disk::damage`]). Each kind leaves
/// damage that the node's recovery must find: a record that fails its CRC (or its length) with
/// whole records after it, a hard-state file that does not decode, snapshot data that does not
/// match its checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// One bit of a log record flips (bit rot).
    BitRot,
    /// A log write the device acknowledged never reached the medium: the record reads as zeros.
    LostWrite,
    /// A log write reached the medium only in part: the record's tail reads as zeros.
    TornWrite,
    /// One bit of the hard-state file flips.
    HardState,
    /// One bit of the current snapshot's data flips.
    Snapshot,
}

impl Damage {
    /// Every kind, in the order the fault schedule draws them.
    pub const ALL: [Damage; 5] = [
        Damage::BitRot,
        Damage::LostWrite,
        Damage::TornWrite,
        Damage::HardState,
        Damage::Snapshot,
    ];
}

impl Disk {
    /// Damage the medium as `kind` says, at a place drawn from `seed`. A log record is chosen
    /// among every record but the last: damage there is a torn tail to any log (see
    /// [`Disk::corrupt_bit`]) and dropping it is correct. Returns where (a logical log offset,
    /// or 0 for the hard state and the snapshot), or `None` when there is nothing of that
    /// kind to damage (fewer than two records, no hard state, an empty snapshot).
    pub fn damage(&mut self, kind: Damage, seed: u64) -> Option<u64> {
        let mut rng = Rng::new(seed);
        match kind {
            Damage::BitRot => self.corrupt_random_bit(seed),
            Damage::LostWrite | Damage::TornWrite => {
                let starts = self.record_starts();
                if starts.len() < 2 {
                    return None;
                }
                let k = rng.range(0, starts.len() as u64 - 1) as usize;
                let (lo, hi) = (starts[k], starts[k + 1]);
                let from = if kind == Damage::LostWrite {
                    lo
                } else {
                    // At least the length field and one more byte landed.
                    rng.range(lo + 5, hi)
                };
                let (a, b) = (
                    (from - self.log_start) as usize,
                    (hi - self.log_start) as usize,
                );
                self.log[a..b].fill(0);
                Some(lo)
            }
            Damage::HardState => {
                if self.hard_state.is_empty() {
                    return None;
                }
                let at = rng.range(0, self.hard_state.len() as u64) as usize;
                self.hard_state[at] ^= 1 << rng.range(0, 8);
                Some(0)
            }
            Damage::Snapshot => {
                let snap = self.snapshot.as_mut().filter(|s| !s.data.is_empty())?;
                let at = rng.range(0, snap.data.len() as u64) as usize;
                snap.data[at] ^= 1 << rng.range(0, 8);
                Some(0)
            }
        }
    }

    /// The hard state that would survive a power cut now (the default if none was synced).
    pub fn durable_hard_state(&self) -> HardState {
        decode_hard_state(&self.hard_state).unwrap_or_default()
    }

    /// Logical offsets of the durable log bytes.
    pub fn durable_log_range(&self) -> Range<u64> {
        self.log_start..self.log_start + self.log.len() as u64
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Flip bit `bit` of the durable log byte at logical `offset` (bit rot on the medium).
    ///
    /// Recovery then fails with `Corrupt` at the start of the damaged record, unless the record
    /// is the last one in the log: damage there looks exactly like a torn write (rule 4) and is
    /// dropped as one, as any real log would. Use [`Disk::corrupt_random_bit`] to avoid that.
    pub fn corrupt_bit(&mut self, offset: u64, bit: u8) -> Result<(), FaultError> {
        if bit >= 8 {
            return Err(FaultError::BadBit(bit));
        }
        let durable = self.durable_log_range();
        if !durable.contains(&offset) {
            return Err(FaultError::OutOfRange { offset, durable });
        }
        self.log[(offset - self.log_start) as usize] ^= 1 << bit;
        Ok(())
    }

    /// Flip one random bit in a durable record other than the last, so that recovery must report
    /// `Corrupt`. Returns the logical offset of the damaged record, or `None` when the durable
    /// log has fewer than two records.
    pub fn corrupt_random_bit(&mut self, seed: u64) -> Option<u64> {
        let starts = self.record_starts();
        if starts.len() < 2 {
            return None;
        }
        let mut rng = Rng::new(seed);
        let k = rng.range(0, starts.len() as u64 - 1) as usize;
        let (lo, hi) = (starts[k], starts[k + 1]);
        let offset = rng.range(lo, hi);
        let bit = rng.range(0, 8) as u8;
        self.corrupt_bit(offset, bit)
            .expect("the offset lies inside a durable record");
        Some(lo)
    }

    /// Logical start offsets of the durable records, found by their length fields alone.
    fn record_starts(&self) -> Vec<u64> {
        let mut starts = Vec::new();
        let mut pos = 0;
        while let Some(total) = record::peek_len(&self.log[pos..]) {
            if pos + total > self.log.len() {
                break;
            }
            starts.push(self.log_start + pos as u64);
            pos += total;
        }
        starts
    }
}

impl fmt::Debug for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Disk")
            .field("log", &self.durable_log_range())
            .field("hard_state_bytes", &self.hard_state.len())
            .field(
                "snapshot",
                &self
                    .snapshot
                    .as_ref()
                    .map(|s| (s.meta.index, s.meta.term, s.data.len())),
            )
            .field("stats", &self.stats)
            .finish()
    }
}

/// A log write not yet synced.
#[derive(Clone, Copy, Debug)]
enum PendingWrite {
    /// Bytes `pending_bytes[at..at + len]` appended at the end of the log.
    Append { at: usize, len: usize },
    /// The log cut at logical offset `to`.
    Truncate { to: u64 },
}

/// A bit that reads of the log return flipped, while the medium and the cache keep it.
#[derive(Clone, Copy, Debug)]
struct ReadFlip {
    /// Logical offset of the byte.
    offset: u64,
    /// The bit, as a mask.
    mask: u8,
}

/// Where one entry's record sits.
#[derive(Clone, Copy, Debug)]
struct Slot {
    term: Term,
    /// Logical offset of the record.
    offset: u64,
    /// Total record bytes, framing included.
    len: u32,
}

/// The simulator's storage; see the module docs for what it models.
#[derive(Clone, Default)]
pub struct MemStorage {
    disk: Disk,
    /// The log as reads see it (the page cache); starts at `disk.log_start` too.
    live: Vec<u8>,
    /// Log writes since the last sync, in order.
    pending: Vec<PendingWrite>,
    /// Log writes made durable so far (`pending[0]` is write number `synced_writes`).
    synced_writes: u64,
    /// Bytes of the pending appends (the live log may have truncated them since).
    pending_bytes: Vec<u8>,
    /// One slot per entry in the log, `first_index` first.
    slots: VecDeque<Slot>,
    /// Index of `slots[0]`; meaningless while `slots` is empty.
    first_index: LogIndex,
    /// The hard state as last saved.
    hard_state: HardState,
    /// Whether `hard_state` was saved since the last sync.
    hard_state_dirty: bool,
    /// The snapshot being received or taken, if any.
    incoming: Option<SnapshotFile>,
    /// Bits reads return flipped (gone at a restart, which reads the medium afresh).
    read_flips: Vec<ReadFlip>,
    /// A planted bug: reads skip their CRC check and hand back whatever the bytes are.
    unchecked_reads: bool,
}

impl fmt::Debug for MemStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemStorage")
            .field("snapshot_index", &self.snapshot_index())
            .field("last_index", &self.last_index())
            .field("hard_state", &self.hard_state)
            .field("unsynced_writes", &self.pending.len())
            .field("read_flips", &self.read_flips.len())
            .field("disk", &self.disk)
            .finish()
    }
}

impl MemStorage {
    /// An empty storage on a blank disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters so far (they survive crashes).
    pub fn stats(&self) -> Stats {
        self.disk.stats
    }

    /// Log writes (appends and truncations) made since the last sync.
    pub fn unsynced_writes(&self) -> usize {
        self.pending.len()
    }

    /// The durable medium, for inspection.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// From now on every read of one record of entries `from..` (of the whole log when there
    /// are none) returns one bit flipped, chosen by `seed`; the medium keeps the good bytes.
    /// Returns the entry whose record is affected, or `None` when the log is empty.
    pub fn flip_on_read(&mut self, from: LogIndex, seed: u64) -> Option<LogIndex> {
        let last = self.last_index();
        if self.slots.is_empty() {
            return None;
        }
        let mut rng = Rng::new(seed);
        let lo = if from.max(self.first_index) <= last {
            from.max(self.first_index)
        } else {
            self.first_index
        };
        let index = rng.range(lo, last + 1);
        let slot = *self.slot(index).expect("index lies inside the log");
        self.read_flips.push(ReadFlip {
            offset: slot.offset + rng.range(0, u64::from(slot.len)),
            mask: 1 << rng.range(0, 8),
        });
        Some(index)
    }

    /// How many flipped bits reads of the log would return now.
    pub fn read_flips(&self) -> usize {
        self.read_flips.len()
    }

    /// A planted bug: reads stop checking the CRC of what they return.
    pub fn set_unchecked_reads(&mut self, unchecked: bool) {
        self.unchecked_reads = unchecked;
    }

    /// Entries `lo..=hi` as they were written, with neither the flips of
    /// [`MemStorage::flip_on_read`] nor a CRC check: what the simulator's checker compares
    /// replicas by. Otherwise like [`Storage::read_entries`].
    pub fn read_entries_as_written(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        buf: &mut [u8],
    ) -> Result<ReadEntries, StorageError> {
        self.read_records(lo, hi, buf, false)
    }

    /// Logical offset of the record holding entry `index`, if the log holds it.
    pub fn record_offset(&self, index: LogIndex) -> Option<u64> {
        self.slot(index).map(|s| s.offset)
    }

    /// Flip a bit of a durable log byte; see [`Disk::corrupt_bit`]. The visible log (the page
    /// cache) keeps its good copy: the damage shows at the next recovery.
    pub fn corrupt_bit(&mut self, offset: u64, bit: u8) -> Result<(), FaultError> {
        self.disk.corrupt_bit(offset, bit)
    }

    /// Flip a random bit of a durable record other than the last; see [`Disk::corrupt_random_bit`].
    pub fn corrupt_random_bit(&mut self, seed: u64) -> Option<u64> {
        self.disk.corrupt_random_bit(seed)
    }

    /// A clean shutdown: every write reaches the disk (the OS flushes its cache when a process
    /// exits), a partly written snapshot is abandoned.
    pub fn shutdown(mut self) -> Disk {
        self.flush();
        self.disk
    }

    /// Start a background sync of the log (a platform's fdatasync on another thread): returns
    /// the mark [`MemStorage::background_synced`] takes when it finishes. It covers the log
    /// writes made so far, not the hard state.
    pub fn begin_background_sync(&self) -> u64 {
        self.synced_writes + self.pending.len() as u64
    }

    /// The background sync that began at `mark` finished: the log writes before it are durable
    /// (those after it, and the hard state, still wait).
    pub fn background_synced(&mut self, mark: u64) {
        let k = mark
            .saturating_sub(self.synced_writes)
            .min(self.pending.len() as u64) as usize;
        for write in self.pending.drain(..k) {
            apply_write(&mut self.disk, &self.pending_bytes, write);
        }
        self.synced_writes += k as u64;
        if self.pending.is_empty() {
            self.pending_bytes.clear();
        }
        self.disk.stats.syncs += 1;
    }

    /// A clean shutdown and restart: [`MemStorage::shutdown`] then [`MemStorage::recover`].
    pub fn reopen(self) -> Result<MemStorage, StorageError> {
        Self::recover(self.shutdown())
    }

    /// Cut the power. The disk keeps its durable bytes plus a random prefix of the unsynced log
    /// writes, in order; the last write kept may be torn. An unsynced hard state is either kept
    /// or lost whole. The partly written snapshot, if any, is lost. `seed` decides everything.
    pub fn power_cut(self, seed: u64) -> Disk {
        let mut rng = Rng::new(seed);
        let MemStorage {
            mut disk,
            pending,
            pending_bytes,
            hard_state,
            hard_state_dirty,
            ..
        } = self;
        disk.stats.crashes += 1;
        let keep = rng.range(0, pending.len() as u64 + 1) as usize;
        disk.stats.writes_lost += (pending.len() - keep) as u64;
        for write in &pending[..keep] {
            apply_write(&mut disk, &pending_bytes, *write);
        }
        if let Some(PendingWrite::Append { len, .. }) = keep.checked_sub(1).map(|k| pending[k]) {
            if rng.chance(1, 2) {
                // Only `cut` bytes of the last write reached the medium.
                let cut = rng.range(0, len as u64) as usize;
                let record_at = disk.log.len() - len;
                if cut >= 4 && rng.chance(1, 2) {
                    // The file grew but the data did not land: the tail reads back as zeros.
                    disk.log[record_at + cut..].fill(0);
                } else {
                    disk.log.truncate(record_at + cut);
                }
                disk.stats.torn_writes += 1;
            }
        }
        if hard_state_dirty && rng.chance(1, 2) {
            disk.hard_state = encode_hard_state(&hard_state);
        }
        disk
    }

    /// [`MemStorage::power_cut`] then [`MemStorage::recover`].
    pub fn try_crash(self, seed: u64) -> Result<MemStorage, StorageError> {
        Self::recover(self.power_cut(seed))
    }

    /// Power cut and recovery. Recovery cannot fail unless a test damaged the disk on purpose
    /// (then use [`MemStorage::try_crash`]), so a failure here is a bug and panics with it.
    pub fn crash(self, seed: u64) -> MemStorage {
        match self.try_crash(seed) {
            Ok(s) => s,
            Err(e) => panic!(
                "MemStorage: recovery after power cut (seed {}) failed: {}",
                seed, e
            ),
        }
    }

    /// Open a storage from its disk: read the hard state, then scan the log records, cutting
    /// off a torn tail and reporting any other damage as `Corrupt { location }` (a logical log
    /// offset; 0 for a damaged hard-state file).
    pub fn recover(mut disk: Disk) -> Result<MemStorage, StorageError> {
        let hard_state = decode_hard_state(&disk.hard_state)?;
        let snapshot = disk.snapshot.as_ref().map(|s| (s.meta.index, s.meta.term));
        let snapshot_index = snapshot.map_or(0, |(i, _)| i);
        let mut slots: VecDeque<Slot> = VecDeque::new();
        let mut first_index = 0;
        let mut pos = 0;
        while pos < disk.log.len() {
            let rest = &disk.log[pos..];
            let location = disk.log_start + pos as u64;
            let (body, used) = match record::decode(rest) {
                Ok(ok) => ok,
                Err(RecordError::Truncated) if is_torn_tail(rest) => break,
                Err(RecordError::BadCrc { .. })
                    if record::peek_len(rest) == Some(rest.len()) && is_torn_tail(rest) =>
                {
                    break
                }
                Err(_) => return Err(StorageError::Corrupt { location }),
            };
            let (e, n) = entry::decode(body).map_err(|_| StorageError::Corrupt { location })?;
            if n != body.len() {
                return Err(StorageError::Corrupt { location });
            }
            let expected = if slots.is_empty() {
                e.index
            } else {
                first_index + slots.len() as u64
            };
            // The first record may lie behind the snapshot (kept entries) but never past its end.
            let gap = slots.is_empty() && (e.index == 0 || e.index > snapshot_index + 1);
            if e.index != expected || gap {
                return Err(StorageError::Corrupt { location });
            }
            if slots.is_empty() {
                first_index = e.index;
            }
            slots.push_back(Slot {
                term: e.term,
                offset: location,
                len: used as u32,
            });
            pos += used;
        }
        if pos < disk.log.len() {
            // Cut the torn tail off the medium, so that new records never follow garbage.
            disk.log.truncate(pos);
            disk.stats.torn_tails_recovered += 1;
        }
        if let Some((index, term)) = snapshot {
            if let Some(last) = slots.len().checked_sub(1) {
                let last_index = first_index + last as u64;
                // A log kept by snapshot_finish holds the snapshot's entry with its term.
                let holds = first_index <= index && index <= last_index;
                let at = if holds {
                    (index - first_index) as usize
                } else {
                    0
                };
                if (first_index <= index && !holds) || (holds && slots[at].term != term) {
                    return Err(StorageError::Corrupt {
                        location: slots[at].offset,
                    });
                }
            }
        }
        let live = disk.log.clone();
        Ok(MemStorage {
            disk,
            live,
            pending: Vec::new(),
            synced_writes: 0,
            pending_bytes: Vec::new(),
            slots,
            first_index,
            hard_state,
            hard_state_dirty: false,
            incoming: None,
            read_flips: Vec::new(),
            unchecked_reads: false,
        })
    }

    fn slot(&self, index: LogIndex) -> Option<&Slot> {
        let k = index.checked_sub(self.first_index)?;
        self.slots.get(usize::try_from(k).ok()?)
    }

    /// Logical offset where the visible log ends.
    fn live_end(&self) -> u64 {
        self.disk.log_start + self.live.len() as u64
    }

    /// The record bytes of `slot` in the visible log.
    fn record_bytes(&self, slot: &Slot) -> &[u8] {
        let at = (slot.offset - self.disk.log_start) as usize;
        &self.live[at..at + slot.len as usize]
    }

    /// The body of `read_entries`: as the node reads (`as_read`: with the flips, and checked
    /// unless the planted bug says otherwise) or as written.
    fn read_records(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        buf: &mut [u8],
        as_read: bool,
    ) -> Result<ReadEntries, StorageError> {
        if lo > self.last_index() || lo > hi {
            return Err(StorageError::Unavailable(lo));
        }
        if self.slot(lo).is_none() {
            return Err(StorageError::Compacted(lo));
        }
        if hi > self.last_index() {
            return Err(StorageError::Unavailable(hi));
        }
        let mut count = 0u32;
        let mut used = 0;
        let mut flipped = Vec::new();
        for index in lo..=hi {
            let slot = self.slot(index).expect("lo..=hi lies inside the log");
            let mut rec = self.record_bytes(slot);
            let end = slot.offset + u64::from(slot.len);
            if as_read
                && self
                    .read_flips
                    .iter()
                    .any(|f| (slot.offset..end).contains(&f.offset))
            {
                flipped.clear();
                flipped.extend_from_slice(rec);
                for f in self.read_flips.iter() {
                    if (slot.offset..end).contains(&f.offset) {
                        flipped[(f.offset - slot.offset) as usize] ^= f.mask;
                    }
                }
                rec = &flipped;
            }
            let body = if as_read && !self.unchecked_reads {
                // Check what the medium returned, as the file storage does.
                match record::decode(rec) {
                    Ok((body, n)) if n == rec.len() => body,
                    _ => {
                        return Err(StorageError::Corrupt {
                            location: slot.offset,
                        })
                    }
                }
            } else {
                &rec[5..rec.len() - 4]
            };
            if used + body.len() > buf.len() {
                if count == 0 {
                    return Err(StorageError::BufferTooSmall { needed: body.len() });
                }
                break;
            }
            buf[used..used + body.len()].copy_from_slice(body);
            used += body.len();
            count += 1;
        }
        Ok(ReadEntries { count, bytes: used })
    }

    /// Make every write durable (the body of `sync`).
    fn flush(&mut self) {
        self.synced_writes += self.pending.len() as u64;
        for write in self.pending.drain(..) {
            apply_write(&mut self.disk, &self.pending_bytes, write);
        }
        self.pending_bytes.clear();
        debug_assert_eq!(
            self.disk.log.len(),
            self.live.len(),
            "durable and visible logs diverged after a flush"
        );
        if self.hard_state_dirty {
            self.disk.hard_state = encode_hard_state(&self.hard_state);
            self.hard_state_dirty = false;
        }
    }
}

/// Whether the bad bytes `rest` at the end of the log can be one torn write.
///
/// A torn write leaves part of one record, so no whole valid record starts inside it. A record
/// whose length field rotted, by contrast, claims to run past the end (or exactly to it) while
/// the records after it are still there and still pass their CRC: that is corruption, and
/// dropping it as a tail would silently lose synced entries. A payload that itself contains a
/// valid framed record would be misjudged as corruption; with CRC-32C framing inside payloads
/// being absent in Shoal's entries, that is accepted.
fn is_torn_tail(rest: &[u8]) -> bool {
    (1..rest.len()).all(|p| record::decode(&rest[p..]).is_err())
}

/// Apply one pending write to the medium.
fn apply_write(disk: &mut Disk, pending_bytes: &[u8], write: PendingWrite) {
    match write {
        PendingWrite::Append { at, len } => {
            disk.log.extend_from_slice(&pending_bytes[at..at + len])
        }
        PendingWrite::Truncate { to } => {
            let keep = to.saturating_sub(disk.log_start) as usize;
            disk.log.truncate(keep);
        }
    }
}

fn encode_hard_state(hs: &HardState) -> Vec<u8> {
    let mut body = [0u8; HARD_STATE_BODY_BYTES];
    body[..8].copy_from_slice(&hs.term.to_le_bytes());
    body[8..16].copy_from_slice(&hs.vote.to_le_bytes());
    body[16..].copy_from_slice(&hs.commit.to_le_bytes());
    let mut out = vec![0u8; HARD_STATE_BODY_BYTES + record::RECORD_OVERHEAD];
    record::encode(&body, &mut out).expect("the buffer is sized for the record");
    out
}

fn decode_hard_state(file: &[u8]) -> Result<HardState, StorageError> {
    if file.is_empty() {
        return Ok(HardState::default());
    }
    let corrupt = StorageError::Corrupt { location: 0 };
    let (body, used) = record::decode(file).map_err(|_| corrupt)?;
    if used != file.len() || body.len() != HARD_STATE_BODY_BYTES {
        return Err(corrupt);
    }
    let word =
        |k: usize| u64::from_le_bytes(body[k * 8..k * 8 + 8].try_into().expect("eight bytes"));
    Ok(HardState {
        term: word(0),
        vote: word(1),
        commit: word(2),
    })
}

mod storage;
#[cfg(test)]
mod tests;
