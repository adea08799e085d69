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
use shoal_core::storage::{LogView, ReadEntries, Storage, StorageError};
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

impl LogView for MemStorage {
    fn snapshot_index(&self) -> LogIndex {
        self.disk.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    fn last_index(&self) -> LogIndex {
        match self.slots.len() {
            0 => self.snapshot_index(),
            n => self.first_index + n as u64 - 1,
        }
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if index == 0 {
            return Ok(0);
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable(index));
        }
        if let Some(slot) = self.slot(index) {
            return Ok(slot.term);
        }
        match &self.disk.snapshot {
            Some(s) if s.meta.index == index => Ok(s.meta.term),
            _ => Err(StorageError::Compacted(index)),
        }
    }
}

impl Storage for MemStorage {
    fn hard_state(&self) -> HardState {
        self.hard_state
    }

    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.hard_state = *hs;
        self.hard_state_dirty = true;
        self.disk.stats.hard_state_writes += 1;
        Ok(())
    }

    fn append(&mut self, e: &EntryRef<'_>) -> Result<(), StorageError> {
        StorageError::check_continues(self.last_index(), e.index)?;
        let body_len = e.encoded_len();
        if body_len > record::MAX_RECORD_BODY {
            // No record can frame it; the disk would be "full" for this entry.
            return Err(StorageError::Full);
        }
        let offset = self.live_end();
        let at = self.live.len();
        let total = body_len + record::RECORD_OVERHEAD;
        self.live.resize(at + total, 0);
        record::encode_with(&mut self.live[at..], body_len, |dst| {
            let n = entry::encode(e, dst).expect("the body is sized by encoded_len");
            debug_assert_eq!(n, dst.len());
        })
        .map_err(|_| StorageError::Full)?;
        let pending_at = self.pending_bytes.len();
        self.pending_bytes.extend_from_slice(&self.live[at..]);
        self.pending.push(PendingWrite::Append {
            at: pending_at,
            len: total,
        });
        if self.slots.is_empty() {
            self.first_index = e.index;
        }
        self.slots.push_back(Slot {
            term: e.term,
            offset,
            len: total as u32,
        });
        self.disk.stats.log_bytes_written += total as u64;
        Ok(())
    }

    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        if from <= self.snapshot_index() {
            // Entries at or below the snapshot are committed; truncating them is a caller bug.
            return Err(StorageError::Compacted(from));
        }
        if from > self.last_index() {
            return Ok(());
        }
        let k = (from - self.first_index) as usize;
        let to = self.slots[k].offset;
        self.slots.truncate(k);
        self.live.truncate((to - self.disk.log_start) as usize);
        self.read_flips.retain(|f| f.offset < to);
        self.pending.push(PendingWrite::Truncate { to });
        Ok(())
    }

    fn compact_prefix(&mut self, upto: LogIndex) -> Result<(), StorageError> {
        // Rule 7: never past the snapshot, whatever the caller asks; entries after it are live.
        let upto = upto.min(self.snapshot_index());
        if self.slots.is_empty() || upto < self.first_index {
            return Ok(());
        }
        let drop = ((upto - self.first_index + 1) as usize).min(self.slots.len());
        let new_start = self.slots.get(drop).map_or(self.live_end(), |s| s.offset);
        let cut = (new_start - self.disk.log_start) as usize;
        if self.disk.log.len() < cut {
            // Entries at or below the snapshot are durable since snapshot_finish; if that ever
            // changes, flush rather than leave the medium with a hole at its front.
            self.flush();
        }
        self.slots.drain(..drop);
        self.read_flips.retain(|f| f.offset >= new_start);
        self.first_index += drop as u64;
        self.live.drain(..cut);
        self.disk.log.drain(..cut);
        self.disk.log_start = new_start;
        Ok(())
    }

    fn read_entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        buf: &mut [u8],
    ) -> Result<ReadEntries, StorageError> {
        self.read_records(lo, hi, buf, true)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.flush();
        self.disk.stats.syncs += 1;
        Ok(())
    }

    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.disk.snapshot.as_ref().map(|s| s.meta.clone())
    }

    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        // Reserve up to 1 MiB now; larger snapshots grow as chunks arrive.
        let reserve = meta.size_bytes.min(1 << 20) as usize;
        self.incoming = Some(SnapshotFile {
            meta: meta.clone(),
            data: Vec::with_capacity(reserve),
        });
        Ok(())
    }

    fn snapshot_write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let Some(incoming) = self.incoming.as_mut() else {
            return Err(StorageError::SnapshotState);
        };
        // Offsets arrive in order: anything else means a lost or repeated chunk.
        if offset != incoming.data.len() as u64
            || offset + data.len() as u64 > incoming.meta.size_bytes
        {
            return Err(StorageError::SnapshotState);
        }
        incoming.data.extend_from_slice(data);
        self.disk.stats.snapshot_bytes_written += data.len() as u64;
        Ok(())
    }

    fn snapshot_finish(&mut self) -> Result<(), StorageError> {
        let Some(incoming) = self.incoming.take() else {
            return Err(StorageError::SnapshotState);
        };
        if incoming.data.len() as u64 != incoming.meta.size_bytes {
            // Not all chunks arrived; keep it so that they still can.
            self.incoming = Some(incoming);
            return Err(StorageError::SnapshotState);
        }
        if CRC32C.checksum(&incoming.data) != incoming.meta.crc {
            // Damaged data must never become current; the location is an offset in the data.
            return Err(StorageError::Corrupt { location: 0 });
        }
        // The log must agree on the medium with what the snapshot keeps of it.
        self.flush();
        self.disk.stats.syncs += 1;
        let (index, term) = (incoming.meta.index, incoming.meta.term);
        if self.slot(index).map(|s| s.term) != Some(term) {
            // The log lacks the snapshot's last entry: it belongs to another history.
            let end = self.live_end();
            self.slots.clear();
            self.read_flips.clear();
            self.live.clear();
            self.disk.log.clear();
            self.disk.log_start = end;
        }
        self.disk.snapshot = Some(incoming);
        self.disk.stats.snapshots_installed += 1;
        Ok(())
    }

    fn snapshot_read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        let snap = self
            .disk
            .snapshot
            .as_ref()
            .ok_or(StorageError::NoSnapshot)?;
        let Ok(at) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(rest) = snap.data.get(at..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::types::EntryKind;

    fn append(s: &mut MemStorage, index: LogIndex, term: Term, data: &[u8]) {
        s.append(&EntryRef {
            index,
            term,
            kind: EntryKind::Normal,
            data,
        })
        .expect("append in a test");
    }

    /// What describes a snapshot of `data` at `index` of term 1.
    fn meta_of(index: u64, data: &[u8]) -> SnapshotMeta {
        SnapshotMeta {
            index,
            term: 1,
            size_bytes: data.len() as u64,
            crc: CRC32C.checksum(data),
            ..SnapshotMeta::default()
        }
    }

    /// Save the hard state (`term`, `vote`, `commit`) and sync it.
    fn save_and_sync(s: &mut MemStorage, term: u64, vote: u64, commit: u64) {
        s.save_hard_state(&HardState { term, vote, commit })
            .expect("save");
        s.sync().expect("sync");
    }

    /// A storage with entries `1..=n` of term 1, all synced.
    fn synced_log(n: u64) -> MemStorage {
        let mut s = MemStorage::new();
        for i in 1..=n {
            append(&mut s, i, 1, &[i as u8; 40]);
        }
        s.sync().expect("sync");
        s
    }

    #[test]
    fn torn_tail_cut_short_is_dropped_not_corrupt() {
        let s = synced_log(5);
        let last_at = s.record_offset(5).expect("entry 5 exists");
        let disk = s.shutdown();
        for cut in 0..(disk.durable_log_range().end - last_at) {
            let mut d = disk.clone();
            d.log.truncate((last_at + cut - d.log_start) as usize);
            let r = MemStorage::recover(d).expect("a torn tail is not corruption");
            assert_eq!(r.last_index(), 4, "cut {} bytes into the last record", cut);
            assert_eq!(
                r.disk().durable_log_range().end,
                last_at,
                "recovery cuts the tail off the medium"
            );
        }
        // Unharmed, all five come back.
        assert_eq!(
            MemStorage::recover(disk).expect("clean log").last_index(),
            5
        );
    }

    #[test]
    fn torn_tail_with_zeroed_data_is_dropped_not_corrupt() {
        let s = synced_log(5);
        let last_at = s.record_offset(5).expect("entry 5 exists");
        let disk = s.shutdown();
        let end = disk.durable_log_range().end;
        for from in last_at + 4..end {
            let mut d = disk.clone();
            let k = (from - d.log_start) as usize;
            d.log[k..].fill(0);
            let r = MemStorage::recover(d).expect("a zeroed tail is a torn write");
            assert_eq!(r.last_index(), 4, "zeroed from offset {}", from);
        }
    }

    #[test]
    fn damage_before_the_last_record_is_corrupt_with_its_offset() {
        let s = synced_log(6);
        for index in 1..=5 {
            let at = s.record_offset(index).expect("entry exists");
            for byte in [0, 3, 4, 9, 30] {
                let mut d = s.clone().shutdown();
                d.corrupt_bit(at + byte, (byte % 8) as u8)
                    .expect("durable byte");
                assert_eq!(
                    MemStorage::recover(d).map(|r| r.last_index()),
                    Err(StorageError::Corrupt { location: at }),
                    "entry {} byte {}",
                    index,
                    byte
                );
            }
        }
    }

    #[test]
    fn random_bit_rot_is_always_reported() {
        for seed in 0..200 {
            let mut s = synced_log(8);
            let at = s.corrupt_random_bit(seed).expect("eight records");
            assert_eq!(
                s.try_crash(seed).map(|r| r.last_index()),
                Err(StorageError::Corrupt { location: at }),
                "seed {}",
                seed
            );
        }
    }

    #[test]
    fn corrupt_location_is_a_logical_offset_after_compaction() {
        let mut s = synced_log(30);
        let meta = meta_of(20, &[]);
        s.snapshot_begin(&meta).expect("begin");
        s.snapshot_finish().expect("finish");
        s.compact_prefix(20).expect("compact");
        let at = s.record_offset(25).expect("entry 25 kept");
        assert!(
            s.disk().durable_log_range().start > 0,
            "compaction dropped bytes"
        );
        s.corrupt_bit(at + 7, 2).expect("durable byte");
        assert_eq!(
            s.try_crash(1).map(|r| r.last_index()),
            Err(StorageError::Corrupt { location: at })
        );
    }

    #[test]
    fn fault_requests_outside_the_durable_log_are_refused() {
        let mut s = synced_log(2);
        let end = s.disk().durable_log_range().end;
        assert_eq!(
            s.corrupt_bit(end, 0),
            Err(FaultError::OutOfRange {
                offset: end,
                durable: 0..end
            })
        );
        assert_eq!(s.corrupt_bit(0, 8), Err(FaultError::BadBit(8)));
        let mut one = synced_log(1);
        assert_eq!(
            one.corrupt_random_bit(3),
            None,
            "the only record cannot be told from a torn one"
        );
    }

    #[test]
    fn a_flipped_read_fails_its_check_and_the_medium_keeps_the_good_bytes() {
        let mut buf = vec![0u8; 4096];
        for seed in 0..100 {
            let mut s = synced_log(6);
            let index = s.flip_on_read(3, seed).expect("a log to flip");
            assert!((3..=6).contains(&index), "seed {seed}: {index}");
            let at = s.record_offset(index).expect("entry exists");
            assert_eq!(
                s.read_entries(1, 6, &mut buf),
                Err(StorageError::Corrupt { location: at }),
                "seed {seed}"
            );
            if index > 1 {
                let before = s
                    .read_entries(1, index - 1, &mut buf)
                    .expect("intact entries");
                assert_eq!(before.count as u64, index - 1);
            }
            let written = s
                .read_entries_as_written(1, 6, &mut buf)
                .expect("as written");
            assert_eq!(written.count, 6);
            // A restart reads the medium afresh: the flip is gone.
            let r = s.crash(seed);
            assert_eq!(r.read_flips(), 0);
            assert_eq!(r.read_entries(1, 6, &mut buf).map(|g| g.count), Ok(6));
        }
    }

    #[test]
    fn unchecked_reads_hand_back_damaged_payloads() {
        let mut buf = vec![0u8; 4096];
        let mut damaged = 0;
        for seed in 0..100 {
            let mut s = synced_log(4);
            s.set_unchecked_reads(true);
            s.flip_on_read(1, seed).expect("a log to flip");
            let got = s.read_entries(1, 4, &mut buf).expect("no check, no error");
            let mut good = vec![0u8; 4096];
            let want = s
                .read_entries_as_written(1, 4, &mut good)
                .expect("as written");
            if buf[..got.bytes] != good[..want.bytes] {
                damaged += 1;
            }
        }
        assert!(damaged > 50, "most flips land in the body: {damaged}");
    }

    #[test]
    fn flips_go_with_the_records_they_damage() {
        let mut buf = vec![0u8; 4096];
        let mut s = synced_log(6);
        // Entries 5 and 6 only, then cut them off: reads are clean again.
        s.flip_on_read(5, 1).expect("flip");
        s.truncate_suffix(5).expect("cut");
        assert_eq!(s.read_flips(), 0);
        assert_eq!(s.read_entries(1, 4, &mut buf).map(|g| g.count), Ok(4));
    }

    #[test]
    fn every_kind_of_damage_to_a_stopped_disk_is_found_at_recovery() {
        for kind in Damage::ALL {
            for seed in 0..50 {
                let mut s = synced_log(8);
                let data = b"the state";
                let meta = meta_of(2, data);
                s.snapshot_begin(&meta).expect("begin");
                s.snapshot_write(0, data).expect("write");
                s.snapshot_finish().expect("finish");
                save_and_sync(&mut s, 1, 1, 8);
                let mut disk = s.shutdown();
                let at = disk.damage(kind, seed).expect("something to damage");
                let found = MemStorage::recover(disk);
                match kind {
                    Damage::Snapshot => {
                        // The log is fine; the data no longer matches its checksum, which the
                        // driver checks when it restores the state machine from it.
                        let r = found.expect("the log recovers");
                        let mut data = vec![0u8; 64];
                        let n = r.snapshot_read(0, &mut data).expect("read");
                        assert_ne!(
                            CRC32C.checksum(&data[..n]),
                            r.snapshot_meta().expect("snapshot").crc
                        );
                    }
                    _ => assert_eq!(
                        found.map(|r| r.last_index()),
                        Err(StorageError::Corrupt { location: at }),
                        "{kind:?} seed {seed}"
                    ),
                }
            }
        }
    }

    #[test]
    fn damaged_hard_state_file_is_corrupt() {
        let mut s = MemStorage::new();
        save_and_sync(&mut s, 4, 2, 1);
        let mut disk = s.shutdown();
        disk.hard_state[7] ^= 0x10;
        assert_eq!(
            MemStorage::recover(disk).map(|r| r.hard_state()),
            Err(StorageError::Corrupt { location: 0 })
        );
    }

    #[test]
    fn power_cuts_keep_a_prefix_and_sometimes_tear() {
        let mut torn = 0;
        let mut lengths = std::collections::BTreeSet::new();
        for seed in 0..300 {
            let mut s = synced_log(10);
            for i in 11..=20 {
                append(&mut s, i, 2, &[7; 100]);
            }
            let r = s.crash(seed);
            let last = r.last_index();
            assert!((10..=20).contains(&last), "seed {}: last {}", seed, last);
            assert_eq!(r.term(last), Ok(if last > 10 { 2 } else { 1 }));
            torn += r.stats().torn_writes;
            lengths.insert(last);
            assert_eq!(r.stats().crashes, 1);
        }
        assert!(torn > 50, "tearing must actually happen ({} of 300)", torn);
        assert_eq!(lengths.len(), 11, "every prefix length should occur");
    }

    #[test]
    fn counters_count() {
        let mut s = MemStorage::new();
        append(&mut s, 1, 1, b"abc");
        save_and_sync(&mut s, 1, 1, 0);
        let st = s.stats();
        assert_eq!(st.syncs, 1);
        assert_eq!(st.hard_state_writes, 1);
        assert_eq!(st.log_bytes_written, s.disk().durable_log_range().end);
        assert_eq!(s.unsynced_writes(), 0);
        append(&mut s, 2, 1, b"d");
        assert_eq!(s.unsynced_writes(), 1);
    }

    #[test]
    fn snapshot_with_wrong_size_or_crc_is_refused() {
        let mut s = MemStorage::new();
        let data = b"state machine bytes";
        let meta = meta_of(3, data);
        s.snapshot_begin(&meta).expect("begin");
        s.snapshot_write(0, &data[..5]).expect("write");
        assert_eq!(
            s.snapshot_finish(),
            Err(StorageError::SnapshotState),
            "finish before every byte arrived"
        );
        s.snapshot_write(5, &data[5..]).expect("write");
        assert_eq!(
            s.snapshot_write(data.len() as u64, b"x"),
            Err(StorageError::SnapshotState),
            "past size_bytes"
        );
        s.snapshot_finish().expect("complete snapshot");
        let bad = SnapshotMeta {
            crc: meta.crc ^ 1,
            index: 4,
            ..meta.clone()
        };
        s.snapshot_begin(&bad).expect("begin");
        s.snapshot_write(0, data).expect("write");
        assert_eq!(
            s.snapshot_finish(),
            Err(StorageError::Corrupt { location: 0 })
        );
        assert_eq!(
            s.snapshot_meta(),
            Some(meta),
            "the bad snapshot must not become current"
        );
    }

    #[test]
    fn long_logs_stay_linear() {
        // 50k appends with periodic syncs, crashes and compactions: quadratic code would crawl.
        let mut s = MemStorage::new();
        let mut last = 0;
        for round in 0..10u64 {
            for _ in 0..5000 {
                last += 1;
                append(&mut s, last, 1, &[3; 64]);
                if last % 64 == 0 {
                    s.sync().expect("sync");
                }
            }
            s = s.crash(round);
            last = s.last_index();
            if round % 3 == 2 {
                let meta = meta_of(last, &[]);
                s.snapshot_begin(&meta).expect("begin");
                s.snapshot_finish().expect("finish");
                s.compact_prefix(last - 100).expect("compact");
            }
        }
        assert!(s.disk().durable_log_range().start > 0);
    }
}
