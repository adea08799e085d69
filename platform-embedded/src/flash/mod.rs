//! `FlashStorage`: Shoal's [`Storage`] over a NOR-flash partition, with no heap.
//!
//! This module owns the on-flash layout of one Raft group's durable state and its recovery
//! after a power cut. It never allocates, never programs a word twice without an erase, and
//! never overwrites a live entry (a full ring is [`StorageError::Full`]).
//!
//! # Layout (one partition of whole erase sectors)
//!
//! ```text
//! sector 0, 1        hard state: records appended in the active sector; newest sequence wins
//! 2 .. 2+S           snapshot slot 0  [header | data ... | commit marker]
//! 2+S .. 2+2S        snapshot slot 1
//! 2+2S .. end        log ring: each sector = [sector header | records ...]
//! ```
//!
//! Every record is a `shoal_core::record` frame (length, version, body, CRC-32C) padded with
//! `0xFF` to whole program words; the body starts with a tag (see [`codec`]).
//!
//! # Durability
//!
//! Log writes (entries and truncation records) are programmed at once, in order, so a power cut
//! keeps a prefix of them and at most one torn record at the tail, which its CRC rejects (rules
//! 3–5 of [`shoal_core::storage`]). A truncation is a record of its own written before the
//! entries that replace the void ones. The hard state is kept in RAM by `save_hard_state` and
//! programmed by `sync` (rule 1). A snapshot is written to the slot that is not current and only
//! becomes current when its commit marker, written last, is valid (rule 6).
//!
//! # The ring
//!
//! Ring sectors carry consecutive sequence numbers and sit at consecutive positions (modulo the
//! ring size). A sector header names the oldest live sector (`head_seq`), the log's next index
//! when it was opened, and where the previous sector's valid records end. Recovery takes the
//! sector with the largest sequence number as the tail, reads the head from its header and
//! replays head to tail. One sector is always kept free (at most `n - 1` are live), which is
//! what makes erasing the next sector safe: it was already outside the durable head..tail range
//! when the current tail's header was written.

pub mod boot;
pub mod codec;
pub mod ram;
pub mod sim;

use core::cell::{Cell, RefCell};

use embedded_storage::nor_flash::{NorFlash, NorFlashError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_core::entry::{EntryRef, MAX_HEADER_BYTES};
use shoal_core::raft::MAX_CONFIG_BYTES;
use shoal_core::record::{self, CRC32C, RECORD_VERSION};
use shoal_core::storage::{LogView, ReadEntries, Result, Storage, StorageError};
use shoal_core::types::{HardState, LogIndex, SnapshotMeta, Term};

use codec::{
    EntryHeader, HardStateRecord, SectorHeader, SnapCommit, SnapHeader, Truncate, TAG_ENTRY,
    TAG_HARD_STATE, TAG_SECTOR, TAG_SNAP_COMMIT, TAG_SNAP_HEADER, TAG_TRUNCATE,
};

/// Largest `NorFlash::WRITE_SIZE` supported (sizes the RAM page buffer).
pub const MAX_WRITE_SIZE: usize = 64;
/// Largest `ReadNorFlash::READ_SIZE` supported.
pub const MAX_READ_SIZE: usize = 64;
/// Smallest `NorFlash::ERASE_SIZE` supported.
pub const MIN_ERASE_SIZE: usize = 256;
/// Largest framed small record (hard state, headers, truncations, snapshot header).
pub const MAX_SMALL_RECORD: usize = 512;
/// The tag byte in front of every record's body, naming its kind.
const TAG_BYTES: usize = 1;
/// Bytes of record framing around an entry's encoding: length, version, tag and CRC.
pub const ENTRY_RECORD_OVERHEAD: usize = record::RECORD_OVERHEAD + TAG_BYTES;

/// Bytes moved per flash call when streaming (a multiple of every supported write size).
const CHUNK: usize = 256;
/// Bytes read to see a record's framing and the start of its body.
const HEAD_BYTES: usize = 48;
/// Largest framed sector header: tag + postcard(SectorHeader) + framing.
const SECTOR_HEADER_MAX: usize = TAG_BYTES + (5 + 5 + 10 + 5 + 1) + record::RECORD_OVERHEAD;
/// Largest framed snapshot header: tag, generation and a `SnapshotMeta` with the largest
/// membership, plus framing.
const SNAP_HEADER_MAX: usize =
    TAG_BYTES + 5 + (10 + 10 + MAX_CONFIG_BYTES + 10 + 5) + record::RECORD_OVERHEAD;
/// Largest framed snapshot commit marker.
const COMMIT_MAX: usize = TAG_BYTES + 5 + 5 + record::RECORD_OVERHEAD;

const _: () = {
    // The layout of a snapshot slot depends on these sizes (they are padded and reserved in
    // it): a change moves where an existing flash image keeps its data.
    assert!(SECTOR_HEADER_MAX == 36 && SNAP_HEADER_MAX == 415 && COMMIT_MAX == 20);
    // Every small record is read whole into a `MAX_SMALL_RECORD` buffer.
    assert!(SECTOR_HEADER_MAX <= MAX_SMALL_RECORD);
    assert!(SNAP_HEADER_MAX <= MAX_SMALL_RECORD);
    assert!(COMMIT_MAX <= MAX_SMALL_RECORD);
    // Streaming moves whole write units of every supported size; a sector holds whole units.
    assert!(CHUNK % MAX_WRITE_SIZE == 0 && MIN_ERASE_SIZE % MAX_WRITE_SIZE == 0);
    // A head read sees a record's length, version and tag.
    assert!(HEAD_BYTES >= 4 + 1 + TAG_BYTES);
    // A sector fits its header and at least one entry of the largest header.
    assert!(SECTOR_HEADER_MAX + ENTRY_RECORD_OVERHEAD + MAX_HEADER_BYTES <= MIN_ERASE_SIZE);
};

/// Where in the flash the partition lies and how it is split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Layout {
    /// Start of the partition in the flash, a multiple of `ERASE_SIZE`.
    pub offset_bytes: u32,
    /// Sectors in the partition: 2 for the hard state, `2 * snapshot_slot_sectors` for the
    /// snapshot slots, the rest (at least 2) for the log ring.
    pub sectors: u32,
    /// Sectors per snapshot slot (at least 1).
    pub snapshot_slot_sectors: u32,
}

impl Layout {
    /// A layout of `sectors` sectors starting at `offset_bytes`.
    pub const fn new(offset_bytes: u32, sectors: u32, snapshot_slot_sectors: u32) -> Self {
        Layout {
            offset_bytes,
            sectors,
            snapshot_slot_sectors,
        }
    }

    /// Sectors left for the log ring.
    pub const fn log_sectors(&self) -> u32 {
        self.sectors
            .saturating_sub(2)
            .saturating_sub(2 * self.snapshot_slot_sectors)
    }
}

/// Why a [`Layout`] does not fit a flash part or this build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LayoutError {
    /// `WRITE_SIZE` is not a power of two up to [`MAX_WRITE_SIZE`].
    WriteSize(usize),
    /// `READ_SIZE` is not a power of two up to [`MAX_READ_SIZE`].
    ReadSize(usize),
    /// `ERASE_SIZE` is below [`MIN_ERASE_SIZE`] or not a multiple of the write and read sizes.
    EraseSize(usize),
    /// `offset_bytes` is not at a sector boundary.
    Misaligned(u32),
    /// The partition ends past the flash's capacity.
    PastEnd {
        /// First byte after the partition.
        end: u64,
        /// The flash's capacity.
        capacity: usize,
    },
    /// `snapshot_slot_sectors` is 0 or leaves no room for a snapshot.
    SnapshotSlot,
    /// Fewer than 2 sectors are left for the log ring.
    TooFewLogSectors(u32),
    /// More log sectors than the `LOG_SECTORS` capacity of this `FlashStorage` type.
    TooManyLogSectors {
        /// Log sectors in the layout.
        log_sectors: u32,
        /// The type's capacity.
        max: usize,
    },
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LayoutError::WriteSize(n) => write!(
                f,
                "flash WRITE_SIZE {} unsupported (power of two up to {})",
                n, MAX_WRITE_SIZE
            ),
            LayoutError::ReadSize(n) => write!(
                f,
                "flash READ_SIZE {} unsupported (power of two up to {})",
                n, MAX_READ_SIZE
            ),
            LayoutError::EraseSize(n) => write!(
                f,
                "flash ERASE_SIZE {} unsupported (at least {}, a multiple of the write size)",
                n, MIN_ERASE_SIZE
            ),
            LayoutError::Misaligned(o) => {
                write!(f, "partition offset {:#x} is not on a sector boundary", o)
            }
            LayoutError::PastEnd { end, capacity } => write!(
                f,
                "partition ends at {:#x}, past the flash capacity {:#x}",
                end, capacity
            ),
            LayoutError::SnapshotSlot => f.write_str("snapshot slots need at least one sector"),
            LayoutError::TooFewLogSectors(n) => {
                write!(f, "{} log sectors; the ring needs at least 2", n)
            }
            LayoutError::TooManyLogSectors { log_sectors, max } => write!(
                f,
                "{} log sectors exceed this build's LOG_SECTORS capacity {}",
                log_sectors, max
            ),
        }
    }
}

/// Why [`FlashStorage::open`] or [`FlashStorage::format`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OpenError {
    /// The layout does not fit the flash part or this build.
    Layout(LayoutError),
    /// Recovery failed: the medium is corrupt (with its address) or the device failed.
    Storage(StorageError),
}

impl From<StorageError> for OpenError {
    fn from(e: StorageError) -> Self {
        OpenError::Storage(e)
    }
}

impl From<LayoutError> for OpenError {
    fn from(e: LayoutError) -> Self {
        OpenError::Layout(e)
    }
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpenError::Layout(e) => write!(f, "bad flash layout: {}", e),
            OpenError::Storage(e) => write!(f, "flash recovery failed: {}", e),
        }
    }
}

/// How much of the log ring is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RingUsage {
    /// Sectors in the ring.
    pub sectors: u32,
    /// Sectors holding live data (head to tail).
    pub live_sectors: u32,
    /// Bytes still free in the tail sector.
    pub tail_free_bytes: u32,
}

/// Addresses derived from a checked [`Layout`].
#[derive(Clone, Copy, Debug)]
struct Geometry {
    sector: u32,
    hs: [u32; 2],
    slot: [u32; 2],
    slot_bytes: u32,
    log_base: u32,
    n: u32,
}

/// What RAM keeps about one log ring sector.
#[derive(Clone, Copy, Debug, Default)]
struct SectorInfo {
    seq: u32,
    /// Offset of the first record after the header.
    start: u32,
    /// Offset where valid records end.
    end: u32,
    /// First live index (meaningful when `count > 0`).
    first: LogIndex,
    /// Live entries, `first..first + count`.
    count: u32,
    /// A truncation record sits in this sector, so an index may appear more than once; the
    /// last copy is the live one.
    has_trunc: bool,
}

/// Head and tail of the ring.
#[derive(Clone, Copy, Debug)]
struct Ring {
    head_pos: u32,
    head_seq: u32,
    tail_pos: u32,
    tail_seq: u32,
    /// Offset in the tail sector where the next record goes (end of valid records).
    write_pos: u32,
    /// A torn record follows `write_pos`: the tail takes no more records.
    sealed: bool,
}

/// The current snapshot.
#[derive(Clone, Debug)]
struct CurrentSnap {
    slot: usize,
    meta: SnapshotMeta,
    data_off: u32,
}

/// A snapshot being written.
#[derive(Clone, Debug)]
struct PendingSnap {
    slot: usize,
    gen: u32,
    meta: SnapshotMeta,
    data_off: u32,
    /// Data bytes programmed (a multiple of `WRITE_SIZE`).
    flushed: u64,
    /// The RAM page buffer: data bytes not yet a whole program word.
    stage: [u8; MAX_WRITE_SIZE],
    staged: usize,
}

/// Where the last entry lookup ended, so that sequential reads do not rescan a sector.
#[derive(Clone, Copy, Debug)]
struct Hint {
    pos: u32,
    seq: u32,
    index: LogIndex,
    addr: u32,
}

/// How a sector's records end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Only erased bytes follow.
    Clean,
    /// A torn (never synced) record follows, then erased bytes.
    Torn,
}

/// A sector's position in the ring and its sequence number.
type SectorAt = (u32, u32);

/// A record's framing, read without checking its CRC.
struct Head {
    total: u32,
    padded: u32,
    tag: u8,
    bytes: [u8; HEAD_BYTES],
    n: usize,
}

impl Head {
    /// The body after the tag, as far as it was read.
    fn body(&self) -> &[u8] {
        let end = core::cmp::min(self.n, self.total as usize - 4);
        &self.bytes[6..end]
    }

    fn entry(&self, addr: u32) -> Result<EntryHeader, StorageError> {
        postcard::take_from_bytes::<EntryHeader>(self.body())
            .map(|(h, _)| h)
            .map_err(|_| StorageError::Corrupt {
                location: addr as u64,
            })
    }
}

/// Shoal's [`Storage`] over a NOR-flash partition. `LOG_SECTORS` is the most log ring sectors
/// this instance can track (RAM: about 32 bytes each).
///
/// Reads go through a `RefCell` because `ReadNorFlash::read` takes `&mut self` while
/// [`LogView`] reads take `&self`.
#[derive(Clone, Debug)]
pub struct FlashStorage<F, const LOG_SECTORS: usize> {
    flash: RefCell<F>,
    geo: Geometry,
    // Hard state.
    hs: HardState,
    hs_dirty: bool,
    hs_seq: u64,
    hs_active: usize,
    /// Next write offset in the active hard-state sector; `None` = rotate on the next save.
    hs_pos: Option<u32>,
    // Log.
    sectors: [SectorInfo; LOG_SECTORS],
    ring: Option<Ring>,
    next_index: LogIndex,
    first_index: LogIndex,
    reset_pending: bool,
    hint: Cell<Option<Hint>>,
    // Snapshot.
    snap: Option<CurrentSnap>,
    snap_gen: u32,
    writing: Option<PendingSnap>,
}

fn io_err<E: NorFlashError>(e: E) -> StorageError {
    let _ = e.kind();
    warn!("flash device error");
    StorageError::Io
}

fn corrupt(addr: u32) -> StorageError {
    error!("flash data corrupt at {}", addr);
    StorageError::Corrupt {
        location: addr as u64,
    }
}

impl<F: NorFlash, const LOG_SECTORS: usize> FlashStorage<F, LOG_SECTORS> {
    fn geometry(layout: &Layout, capacity: usize) -> Result<Geometry, LayoutError> {
        let w = F::WRITE_SIZE;
        let r = F::READ_SIZE;
        let e = F::ERASE_SIZE;
        if w == 0 || !w.is_power_of_two() || w > MAX_WRITE_SIZE {
            return Err(LayoutError::WriteSize(w));
        }
        if r == 0 || !r.is_power_of_two() || r > MAX_READ_SIZE {
            return Err(LayoutError::ReadSize(r));
        }
        if e < MIN_ERASE_SIZE || e % w != 0 || e % r != 0 || e > u32::MAX as usize / 4 {
            return Err(LayoutError::EraseSize(e));
        }
        if layout.offset_bytes as usize % e != 0 {
            return Err(LayoutError::Misaligned(layout.offset_bytes));
        }
        let end = layout.offset_bytes as u64 + layout.sectors as u64 * e as u64;
        if end > capacity as u64 || end > u32::MAX as u64 {
            return Err(LayoutError::PastEnd { end, capacity });
        }
        let s = layout.snapshot_slot_sectors;
        let slot_bytes = s as u64 * e as u64;
        if s == 0 || slot_bytes < (pad_to(SECTOR_HEADER_MAX, w) + pad_to(COMMIT_MAX, w)) as u64 {
            return Err(LayoutError::SnapshotSlot);
        }
        let n = layout.log_sectors();
        if layout.sectors < 2 + 2 * s + 2 {
            return Err(LayoutError::TooFewLogSectors(n));
        }
        if n as usize > LOG_SECTORS {
            return Err(LayoutError::TooManyLogSectors {
                log_sectors: n,
                max: LOG_SECTORS,
            });
        }
        let base = layout.offset_bytes;
        let sector = e as u32;
        Ok(Geometry {
            sector,
            hs: [base, base + sector],
            slot: [base + 2 * sector, base + (2 + s) * sector],
            slot_bytes: slot_bytes as u32,
            log_base: base + (2 + 2 * s) * sector,
            n,
        })
    }

    fn empty(flash: F, geo: Geometry) -> Self {
        FlashStorage {
            flash: RefCell::new(flash),
            geo,
            hs: HardState::default(),
            hs_dirty: false,
            hs_seq: 0,
            hs_active: 0,
            hs_pos: None,
            sectors: [SectorInfo::default(); LOG_SECTORS],
            ring: None,
            next_index: 1,
            first_index: 1,
            reset_pending: false,
            hint: Cell::new(None),
            snap: None,
            snap_gen: 0,
            writing: None,
        }
    }

    /// Erase the whole partition and open it empty. Not atomic: if power fails during a
    /// format, format again.
    pub fn format(mut flash: F, layout: Layout) -> Result<Self, OpenError> {
        let geo = Self::geometry(&layout, flash.capacity())?;
        let start = layout.offset_bytes;
        for k in 0..layout.sectors {
            let at = start + k * geo.sector;
            flash.erase(at, at + geo.sector).map_err(io_err)?;
        }
        info!("flash partition formatted: {} sectors", layout.sectors);
        Self::open(flash, layout)
    }

    /// Recover the storage from the partition: the newest valid hard state, the current
    /// snapshot, and the log ring from head to tail, dropping a torn record at the tail.
    /// An erased partition opens as an empty storage. Damage anywhere else is
    /// [`StorageError::Corrupt`] with the flash address. Opening never writes.
    pub fn open(flash: F, layout: Layout) -> Result<Self, OpenError> {
        let geo = Self::geometry(&layout, flash.capacity())?;
        let mut s = Self::empty(flash, geo);
        s.recover_hard_state()?;
        s.recover_snapshot()?;
        s.recover_log()?;
        if !s.log_matches_snapshot() {
            match &s.snap {
                Some(_) => s.reset_log_to_snapshot(),
                None => return Err(OpenError::Storage(corrupt(s.geo.log_base))),
            }
        }
        debug!(
            "flash storage open: log {}..={}, snapshot at {}",
            s.first_index,
            s.next_index - 1,
            s.snapshot_index()
        );
        Ok(s)
    }

    /// Give the flash back (the storage's RAM state is dropped; nothing is written).
    pub fn into_flash(self) -> F {
        self.flash.into_inner()
    }

    /// The flash, for statistics or test control (do not write to the partition through it).
    pub fn flash_mut(&mut self) -> &mut F {
        self.flash.get_mut()
    }

    /// Largest entry encoding (`shoal_core::entry::encode` output: header of up to
    /// `MAX_HEADER_BYTES` plus payload) that fits a ring sector. Larger appends fail with
    /// [`StorageError::BufferTooSmall`].
    pub fn max_entry_bytes(&self) -> usize {
        self.max_record() as usize - ENTRY_RECORD_OVERHEAD
    }

    /// Largest payload that always fits, whatever the entry's index and term.
    pub fn max_payload_bytes(&self) -> usize {
        self.max_entry_bytes() - MAX_HEADER_BYTES
    }

    /// Largest snapshot that fits a slot whatever the membership (the slot header holds the
    /// snapshot's membership; a small one leaves more room than this). 0 when a slot is too
    /// small for the largest header: such a layout still works for small memberships, and
    /// [`Storage::snapshot_begin`] answers [`StorageError::Full`] when a snapshot does not fit.
    pub fn max_snapshot_bytes(&self) -> u64 {
        (self.geo.slot_bytes as usize)
            .saturating_sub(pad_to(SNAP_HEADER_MAX, F::WRITE_SIZE))
            .saturating_sub(pad_to(COMMIT_MAX, F::WRITE_SIZE)) as u64
    }

    /// How much of the ring is in use.
    pub fn ring_usage(&self) -> RingUsage {
        match &self.ring {
            None => RingUsage {
                sectors: self.geo.n,
                live_sectors: 0,
                tail_free_bytes: 0,
            },
            Some(r) => RingUsage {
                sectors: self.geo.n,
                live_sectors: r.tail_seq - r.head_seq + 1,
                tail_free_bytes: if r.sealed {
                    0
                } else {
                    self.geo.sector - r.write_pos
                },
            },
        }
    }

    // ----- flash access ------------------------------------------------------------------------

    fn pad(&self, len: usize) -> u32 {
        pad_to(len, F::WRITE_SIZE) as u32
    }

    fn max_record(&self) -> u32 {
        self.geo.sector - pad_to(SECTOR_HEADER_MAX, F::WRITE_SIZE) as u32
    }

    fn sector_addr(&self, pos: u32) -> u32 {
        self.geo.log_base + pos * self.geo.sector
    }

    fn read(&self, addr: u32, buf: &mut [u8]) -> Result<(), StorageError> {
        let mut flash = self.flash.borrow_mut();
        let rs = F::READ_SIZE;
        if rs <= 1 || (addr as usize % rs == 0 && buf.len() % rs == 0) {
            return flash.read(addr, buf).map_err(io_err);
        }
        let mut bounce = [0u8; 2 * MAX_READ_SIZE];
        let mut done = 0;
        while done < buf.len() {
            let at = addr as usize + done;
            let start = at - at % rs;
            let skip = at - start;
            let want = core::cmp::min(buf.len() - done, bounce.len() - skip);
            let span = pad_to(skip + want, rs);
            flash
                .read(start as u32, &mut bounce[..span])
                .map_err(io_err)?;
            buf[done..done + want].copy_from_slice(&bounce[skip..skip + want]);
            done += want;
        }
        Ok(())
    }

    fn write(&self, addr: u32, data: &[u8]) -> Result<(), StorageError> {
        debug_assert!(addr as usize % F::WRITE_SIZE == 0 && data.len() % F::WRITE_SIZE == 0);
        self.flash.borrow_mut().write(addr, data).map_err(io_err)
    }

    fn erase(&self, addr: u32, len: u32) -> Result<(), StorageError> {
        self.flash
            .borrow_mut()
            .erase(addr, addr + len)
            .map_err(io_err)
    }

    fn all_erased(&self, from: u32, to: u32) -> Result<bool, StorageError> {
        let mut buf = [0u8; CHUNK];
        let mut at = from;
        while at < to {
            let n = core::cmp::min(CHUNK as u32, to - at) as usize;
            self.read(at, &mut buf[..n])?;
            if buf[..n].iter().any(|&b| b != 0xFF) {
                return Ok(false);
            }
            at += n as u32;
        }
        Ok(true)
    }

    /// The framing of the record at `addr`, if its length fits before `limit`.
    fn head(&self, addr: u32, limit: u32) -> Result<Option<Head>, StorageError> {
        let avail = (limit - addr) as usize;
        if avail < 10 {
            return Ok(None);
        }
        let n = core::cmp::min(HEAD_BYTES, avail);
        let mut bytes = [0u8; HEAD_BYTES];
        self.read(addr, &mut bytes[..n])?;
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len < 2 || len + 8 > avail {
            return Ok(None);
        }
        let total = len + 8;
        Ok(Some(Head {
            total: total as u32,
            padded: self.pad(total),
            tag: bytes[5],
            bytes,
            n: core::cmp::min(n, total),
        }))
    }

    /// Whether the record of `total` bytes at `addr` has the right version and CRC.
    fn record_valid(&self, addr: u32, total: u32) -> Result<bool, StorageError> {
        let mut buf = [0u8; CHUNK];
        let mut digest = CRC32C.digest();
        let body_end = addr + total - 4;
        let mut at = addr;
        while at < body_end {
            let n = core::cmp::min(CHUNK as u32, body_end - at) as usize;
            self.read(at, &mut buf[..n])?;
            if at == addr && buf[4] != RECORD_VERSION {
                return Ok(false);
            }
            digest.update(&buf[..n]);
            at += n as u32;
        }
        let mut crc = [0u8; 4];
        self.read(body_end, &mut crc)?;
        Ok(u32::from_le_bytes(crc) == digest.finalize())
    }

    /// A checked record at `addr` (framing, version and CRC), or `None`.
    fn valid_head(&self, addr: u32, limit: u32) -> Result<Option<Head>, StorageError> {
        match self.head(addr, limit)? {
            Some(h) if self.record_valid(addr, h.total)? => Ok(Some(h)),
            _ => Ok(None),
        }
    }

    /// Decode a small record of kind `tag` at `addr`; returns it and its padded length.
    fn read_small<T: DeserializeOwned>(
        &self,
        addr: u32,
        limit: u32,
        tag: u8,
    ) -> Result<Option<(T, u32)>, StorageError> {
        let mut buf = [0u8; MAX_SMALL_RECORD];
        let n = core::cmp::min(MAX_SMALL_RECORD, (limit - addr) as usize);
        self.read(addr, &mut buf[..n])?;
        match record::decode(&buf[..n]) {
            Ok((body, used)) if body.first() == Some(&tag) => {
                match postcard::from_bytes::<T>(&body[1..]) {
                    Ok(v) => Ok(Some((v, self.pad(used)))),
                    Err(_) => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }

    /// Frame a small record into `out`, padded; returns the padded length.
    fn encode_small<T: Serialize>(
        &self,
        tag: u8,
        v: &T,
        out: &mut [u8; MAX_SMALL_RECORD],
    ) -> Result<usize, StorageError> {
        let mut body = [0u8; MAX_SMALL_RECORD - record::RECORD_OVERHEAD];
        body[0] = tag;
        let n = postcard::to_slice(v, &mut body[1..])
            .map_err(|_| StorageError::BufferTooSmall {
                needed: MAX_SMALL_RECORD,
            })?
            .len();
        let total =
            record::encode(&body[..1 + n], out).map_err(|_| StorageError::BufferTooSmall {
                needed: MAX_SMALL_RECORD,
            })?;
        let padded = self.pad(total) as usize;
        if padded > out.len() {
            return Err(StorageError::BufferTooSmall { needed: padded });
        }
        out[total..padded].fill(0xFF);
        Ok(padded)
    }

    /// After the last valid record at `addr`: clean erased space, a torn record, or damage.
    fn classify_end(&self, addr: u32, limit: u32) -> Result<End, StorageError> {
        if self.all_erased(addr, limit)? {
            return Ok(End::Clean);
        }
        let w = F::WRITE_SIZE as u32;
        // A cut inside the first word: nothing after it was programmed.
        if addr + w <= limit && self.all_erased(addr + w, limit)? {
            return Ok(End::Torn);
        }
        // A cut later in the record: its length is intact and nothing follows it.
        let mut len = [0u8; 4];
        if limit - addr >= 4 {
            self.read(addr, &mut len)?;
            let total = u32::from_le_bytes(len) as u64 + 8;
            let padded = pad_to(total as usize, F::WRITE_SIZE) as u64;
            if total >= 10
                && addr as u64 + padded <= limit as u64
                && self.all_erased(addr + padded as u32, limit)?
            {
                return Ok(End::Torn);
            }
        }
        Err(corrupt(addr))
    }

    // ----- hard state ----------------------------------------------------------------------------

    /// Scan one hard-state sector: its newest record, where records end and how.
    #[allow(clippy::type_complexity)]
    fn scan_hard_state(
        &self,
        k: usize,
    ) -> Result<(Option<HardStateRecord>, u32, Result<End, StorageError>), StorageError> {
        let base = self.geo.hs[k];
        let limit = base + self.geo.sector;
        let mut at = base;
        let mut best: Option<HardStateRecord> = None;
        while at < limit {
            match self.read_small::<HardStateRecord>(at, limit, TAG_HARD_STATE)? {
                Some((rec, padded)) => {
                    if best.map_or(true, |b| rec.seq > b.seq) {
                        best = Some(rec);
                    }
                    at += padded;
                }
                None => break,
            }
        }
        let end = if at >= limit {
            Ok(End::Clean)
        } else {
            match self.classify_end(at, limit) {
                Err(StorageError::Corrupt { location }) => Err(StorageError::Corrupt { location }),
                Err(e) => return Err(e),
                Ok(e) => Ok(e),
            }
        };
        Ok((best, at - base, end))
    }

    fn recover_hard_state(&mut self) -> Result<(), StorageError> {
        let a = self.scan_hard_state(0)?;
        let b = self.scan_hard_state(1)?;
        let seq =
            |s: &(Option<HardStateRecord>, u32, Result<End, StorageError>)| s.0.map(|r| r.seq);
        let (k, win) = match (seq(&a), seq(&b)) {
            (None, None) => {
                // Nothing saved yet: write into sector 0 if it is blank, else rotate.
                self.hs_active = 0;
                self.hs_pos = match a.2 {
                    Ok(End::Clean) if a.1 == 0 => Some(0),
                    _ => None,
                };
                return Ok(());
            }
            (Some(x), Some(y)) if y > x => (1, b),
            (Some(_), _) => (0, a),
            (None, Some(_)) => (1, b),
        };
        // The losing sector is older or half erased; only the winner must be intact.
        let end = win.2?;
        let rec = win.0.expect("the winner has a record");
        self.hs = rec.hs;
        self.hs_seq = rec.seq;
        self.hs_active = k;
        self.hs_pos = match end {
            End::Clean => Some(win.1),
            End::Torn => {
                warn!("torn hard-state record dropped");
                None
            }
        };
        Ok(())
    }

    fn write_hard_state(&mut self) -> Result<(), StorageError> {
        let rec = HardStateRecord {
            seq: self.hs_seq + 1,
            hs: self.hs,
        };
        let mut buf = [0u8; MAX_SMALL_RECORD];
        let len = self.encode_small(TAG_HARD_STATE, &rec, &mut buf)?;
        let (k, pos) = match self.hs_pos {
            Some(pos) if pos as usize + len <= self.geo.sector as usize => (self.hs_active, pos),
            _ => {
                // Rotate: the other sector only holds older records (or a half-done erase).
                let other = 1 - self.hs_active;
                self.hs_pos = None;
                self.erase(self.geo.hs[other], self.geo.sector)?;
                self.hs_active = other;
                self.hs_pos = Some(0);
                (other, 0)
            }
        };
        if let Err(e) = self.write(self.geo.hs[k] + pos, &buf[..len]) {
            self.hs_pos = None;
            return Err(e);
        }
        self.hs_pos = Some(pos + len as u32);
        self.hs_seq = rec.seq;
        self.hs_dirty = false;
        Ok(())
    }

    // ----- snapshot ------------------------------------------------------------------------------

    fn commit_addr(&self, slot: usize) -> u32 {
        self.geo.slot[slot] + self.geo.slot_bytes - self.pad(COMMIT_MAX)
    }

    fn data_crc(&self, addr: u32, len: u64) -> Result<u32, StorageError> {
        let mut buf = [0u8; CHUNK];
        let mut digest = CRC32C.digest();
        let mut done = 0u64;
        while done < len {
            let n = core::cmp::min(CHUNK as u64, len - done) as usize;
            self.read(addr + done as u32, &mut buf[..n])?;
            digest.update(&buf[..n]);
            done += n as u64;
        }
        Ok(digest.finalize())
    }

    fn recover_snapshot(&mut self) -> Result<(), StorageError> {
        // The slot with the newest valid commit marker is current. The other slot may be
        // half erased (an interrupted `snapshot_begin`), so only the winner must be intact.
        let mut best: Option<(usize, SnapCommit)> = None;
        for slot in 0..2 {
            let commit_at = self.commit_addr(slot);
            let slot_end = self.geo.slot[slot] + self.geo.slot_bytes;
            if let Some((c, _)) =
                self.read_small::<SnapCommit>(commit_at, slot_end, TAG_SNAP_COMMIT)?
            {
                if best.map_or(true, |(_, b)| c.gen > b.gen) {
                    best = Some((slot, c));
                }
            }
        }
        let Some((slot, commit)) = best else {
            return Ok(());
        };
        let base = self.geo.slot[slot];
        let commit_at = self.commit_addr(slot);
        let Some((header, data_off)) =
            self.read_small::<SnapHeader>(base, commit_at, TAG_SNAP_HEADER)?
        else {
            return Err(corrupt(base));
        };
        if header.gen != commit.gen
            || data_off as u64 + header.meta.size_bytes > (commit_at - base) as u64
        {
            return Err(corrupt(base));
        }
        let at = base + data_off;
        if self.data_crc(at, header.meta.size_bytes)? != commit.data_crc {
            return Err(corrupt(at));
        }
        self.snap_gen = commit.gen;
        self.snap = Some(CurrentSnap {
            slot,
            meta: header.meta,
            data_off,
        });
        Ok(())
    }

    fn flush_stage(&mut self) -> Result<(), StorageError> {
        let w = F::WRITE_SIZE;
        let Some(p) = self.writing.as_mut() else {
            return Ok(());
        };
        if p.staged == 0 {
            return Ok(());
        }
        p.stage[p.staged..w].fill(0xFF);
        let at = self.geo.slot[p.slot] + p.data_off + p.flushed as u32;
        let word = p.stage;
        let r = self
            .flash
            .borrow_mut()
            .write(at, &word[..w])
            .map_err(io_err);
        let p = self.writing.as_mut().expect("checked above");
        p.flushed += w as u64;
        p.staged = 0;
        r
    }

    // ----- log ring ------------------------------------------------------------------------------

    /// Positions of the live sectors, head first.
    fn live(&self) -> impl Iterator<Item = u32> + '_ {
        let (head, count) = match &self.ring {
            Some(r) => (r.head_pos, r.tail_seq - r.head_seq + 1),
            None => (0, 0),
        };
        let n = self.geo.n;
        (0..count).map(move |k| (head + k) % n)
    }

    fn clip(&mut self, from: LogIndex) {
        let n = self.geo.n;
        if let Some(r) = self.ring {
            for k in 0..(r.tail_seq - r.head_seq + 1) {
                let s = &mut self.sectors[((r.head_pos + k) % n) as usize];
                if s.count > 0 {
                    if s.first >= from {
                        s.count = 0;
                    } else if s.first + s.count as u64 > from {
                        s.count = (from - s.first) as u32;
                    }
                }
            }
        }
    }

    /// Rebuilds the ring and the index map from flash: find the sectors in use, check that they
    /// form one unbroken sequence, then replay each sector's records from the head.
    fn recover_log(&mut self) -> Result<(), StorageError> {
        let (tail, valid) = self.scan_sector_headers()?;
        let Some((tail_pos, tail_seq)) = tail else {
            // An empty ring: the log starts after the snapshot.
            self.next_index = self.snapshot_index() + 1;
            self.first_index = self.next_index;
            return Ok(());
        };
        let ring = self.live_ring(tail_pos, tail_seq, &valid)?;
        let live = tail_seq - ring.head_seq + 1;
        self.ring = Some(ring);
        let mut next: LogIndex = 0;
        for k in 0..live {
            next = self.replay_sector(k, live, next)?;
        }
        self.next_index = next;
        let first = self
            .live()
            .map(|p| self.sectors[p as usize])
            .find(|s| s.count > 0)
            .map_or(next, |s| s.first);
        self.first_index = first;
        Ok(())
    }

    /// Reads every sector's header into `sectors` and returns the tail (the position and
    /// sequence number of the highest-numbered sector, if any) and which sectors hold a header.
    fn scan_sector_headers(
        &mut self,
    ) -> Result<(Option<SectorAt>, [bool; LOG_SECTORS]), StorageError> {
        let mut tail: Option<SectorAt> = None;
        let mut valid = [false; LOG_SECTORS];
        for pos in 0..self.geo.n {
            let at = self.sector_addr(pos);
            let limit = at + self.geo.sector;
            if let Some((h, start)) = self.read_small::<SectorHeader>(at, limit, TAG_SECTOR)? {
                self.sectors[pos as usize] = SectorInfo {
                    seq: h.seq,
                    start,
                    end: start,
                    first: 0,
                    count: 0,
                    has_trunc: false,
                };
                valid[pos as usize] = true;
                match tail {
                    Some((_, seq)) if seq == h.seq => return Err(corrupt(at)),
                    Some((_, seq)) if seq > h.seq => {}
                    _ => tail = Some((pos, h.seq)),
                }
            }
        }
        Ok((tail, valid))
    }

    /// The ring ending at the tail: its header names the head's sequence number, and every
    /// sector between head and tail must hold the next number in turn.
    fn live_ring(
        &self,
        tail_pos: u32,
        tail_seq: u32,
        valid: &[bool; LOG_SECTORS],
    ) -> Result<Ring, StorageError> {
        let n = self.geo.n;
        let tail_header = self.sector_header(tail_pos)?;
        let head_seq = tail_header.head_seq;
        if head_seq > tail_seq || tail_seq - head_seq + 1 > n - 1 {
            return Err(corrupt(self.sector_addr(tail_pos)));
        }
        let live = tail_seq - head_seq + 1;
        for j in 0..live {
            let pos = (tail_pos + n - j) % n;
            if !valid[pos as usize] || self.sectors[pos as usize].seq != tail_seq - j {
                return Err(corrupt(self.sector_addr(pos)));
            }
        }
        Ok(Ring {
            head_pos: (tail_pos + n - (live - 1)) % n,
            head_seq,
            tail_pos,
            tail_seq,
            write_pos: 0,
            sealed: false,
        })
    }

    fn sector_header(&self, pos: u32) -> Result<SectorHeader, StorageError> {
        let base = self.sector_addr(pos);
        self.read_small::<SectorHeader>(base, base + self.geo.sector, TAG_SECTOR)?
            .map(|(h, _)| h)
            .ok_or_else(|| corrupt(base))
    }

    /// Replays the `k`-th live sector (of `live`) whose first entry must be `next` (unless the
    /// sector starts a reset log), and returns the index after its last entry. The tail's end
    /// is classified: a torn record is dropped and seals the sector.
    fn replay_sector(
        &mut self,
        k: u32,
        live: u32,
        mut next: LogIndex,
    ) -> Result<LogIndex, StorageError> {
        let n = self.geo.n;
        let head_pos = self.ring.as_ref().expect("set by recover_log").head_pos;
        let pos = (head_pos + k) % n;
        let base = self.sector_addr(pos);
        let h = self.sector_header(pos)?;
        if h.reset {
            for j in 0..k {
                self.sectors[((head_pos + j) % n) as usize].count = 0;
            }
        }
        if k == 0 || h.reset {
            next = h.first_index;
        } else if h.first_index != next {
            return Err(corrupt(base));
        }
        let is_tail = k == live - 1;
        let limit = if is_tail {
            self.geo.sector
        } else {
            self.sector_header((pos + 1) % n)?.prev_end
        };
        let start = self.sectors[pos as usize].start;
        if limit < start || limit > self.geo.sector || limit as usize % F::WRITE_SIZE != 0 {
            return Err(corrupt(base));
        }
        let mut off = start;
        while off < limit {
            let addr = base + off;
            let Some(head) = self.valid_head(addr, base + limit)? else {
                if !is_tail {
                    return Err(corrupt(addr));
                }
                break;
            };
            next = self.replay_record(pos, addr, &head, next)?;
            off += head.padded;
        }
        if off > limit {
            return Err(corrupt(base + limit));
        }
        self.sectors[pos as usize].end = off;
        if is_tail {
            let end = if off < limit {
                self.classify_end(base + off, base + limit)?
            } else {
                End::Clean
            };
            if end == End::Torn {
                warn!("torn log record at {} dropped", base + off);
            }
            let r = self.ring.as_mut().expect("set by recover_log");
            r.write_pos = off;
            r.sealed = end == End::Torn;
        }
        Ok(next)
    }

    /// Applies one record of sector `pos` found at `addr`: an entry must carry index `next`; a
    /// truncation clips the entries from its index on. Returns the index expected next.
    fn replay_record(
        &mut self,
        pos: u32,
        addr: u32,
        head: &Head,
        next: LogIndex,
    ) -> Result<LogIndex, StorageError> {
        match head.tag {
            TAG_ENTRY => {
                let e = head.entry(addr)?;
                if e.index != next || e.len as u64 + 10 > head.total as u64 {
                    return Err(corrupt(addr));
                }
                let s = &mut self.sectors[pos as usize];
                if s.count == 0 {
                    s.first = e.index;
                }
                s.count += 1;
                Ok(next + 1)
            }
            TAG_TRUNCATE => {
                let t = postcard::from_bytes::<Truncate>(head.body()).map_err(|_| corrupt(addr))?;
                if t.from == 0 || t.from > next {
                    return Err(corrupt(addr));
                }
                self.clip(t.from);
                self.sectors[pos as usize].has_trunc = true;
                Ok(t.from)
            }
            _ => Err(corrupt(addr)),
        }
    }

    /// Whether the log continues the current snapshot (holds its last entry, or starts right
    /// after it). Without a snapshot the log must start at 1.
    fn log_matches_snapshot(&self) -> bool {
        let Some(s) = &self.snap else {
            return self.first_index == 1;
        };
        let si = s.meta.index;
        if self.first_index > si + 1 || self.next_index <= si {
            return false;
        }
        si < self.first_index || self.entry_term(si) == Ok(s.meta.term)
    }

    /// Empty the log so that it continues after the snapshot. The next log write opens a new
    /// sector flagged `reset`, which voids every earlier sector durably.
    fn reset_log_to_snapshot(&mut self) {
        let si = self.snapshot_index();
        for s in self.sectors.iter_mut() {
            s.count = 0;
        }
        self.next_index = si + 1;
        self.first_index = si + 1;
        self.reset_pending = true;
        self.hint.set(None);
        if let Some(r) = self.ring.as_mut() {
            r.head_pos = r.tail_pos;
            r.head_seq = r.tail_seq;
        }
    }

    /// Free whole sectors at the head whose entries are all compacted or void.
    fn advance_head(&mut self) {
        let n = self.geo.n;
        while let Some(r) = self.ring.as_mut() {
            if r.head_seq >= r.tail_seq {
                break;
            }
            let s = self.sectors[r.head_pos as usize];
            if s.count == 0 || s.first + s.count as u64 <= self.first_index {
                r.head_seq += 1;
                r.head_pos = (r.head_pos + 1) % n;
            } else {
                break;
            }
        }
    }

    /// Erase the next ring sector and write its header. Fails with `Full` when that would
    /// leave no free sector.
    fn open_sector(&mut self) -> Result<(), StorageError> {
        let n = self.geo.n;
        self.advance_head();
        let (pos, seq, prev_end, head) = match &self.ring {
            None => (0, 1, 0, None),
            Some(r) => (
                (r.tail_pos + 1) % n,
                r.tail_seq + 1,
                r.write_pos,
                Some((r.head_pos, r.head_seq)),
            ),
        };
        let reset = self.reset_pending || head.is_none();
        let (head_pos, head_seq) = match head {
            Some(h) if !reset => h,
            _ => (pos, seq),
        };
        if seq - head_seq + 1 > n - 1 {
            return Err(StorageError::Full);
        }
        let header = SectorHeader {
            seq,
            head_seq,
            first_index: self.next_index,
            prev_end,
            reset,
        };
        let mut buf = [0u8; MAX_SMALL_RECORD];
        let len = self.encode_small(TAG_SECTOR, &header, &mut buf)?;
        let at = self.sector_addr(pos);
        self.erase(at, self.geo.sector)?;
        self.write(at, &buf[..len])?;
        self.sectors[pos as usize] = SectorInfo {
            seq,
            start: len as u32,
            end: len as u32,
            first: self.next_index,
            count: 0,
            has_trunc: false,
        };
        self.ring = Some(Ring {
            head_pos,
            head_seq,
            tail_pos: pos,
            tail_seq: seq,
            write_pos: len as u32,
            sealed: false,
        });
        self.reset_pending = false;
        Ok(())
    }

    /// Make room for a record of `padded` bytes at the tail; returns its flash address.
    fn reserve(&mut self, padded: u32) -> Result<u32, StorageError> {
        let sector = self.geo.sector;
        let fits = move |r: &Ring| !r.sealed && r.write_pos + padded <= sector;
        let ok = !self.reset_pending && self.ring.as_ref().is_some_and(fits);
        if !ok {
            self.open_sector()?;
        }
        let r = self.ring.as_ref().expect("a tail exists after open_sector");
        if !fits(r) {
            return Err(StorageError::BufferTooSmall {
                needed: padded as usize,
            });
        }
        Ok(self.sector_addr(r.tail_pos) + r.write_pos)
    }

    /// Account a record written at the tail (or seal the tail if the write failed).
    fn finish_write(
        &mut self,
        padded: u32,
        result: Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let r = self
            .ring
            .as_mut()
            .expect("a record was reserved at the tail");
        match result {
            Ok(()) => {
                r.write_pos += padded;
                self.sectors[r.tail_pos as usize].end = r.write_pos;
                Ok(())
            }
            Err(e) => {
                r.sealed = true;
                Err(e)
            }
        }
    }

    fn sector_of(&self, index: LogIndex) -> Option<u32> {
        self.live().find(|&p| {
            let s = self.sectors[p as usize];
            s.count > 0 && s.first <= index && index < s.first + s.count as u64
        })
    }

    /// The live record of entry `index` (which must be in `first_index..next_index`).
    fn locate(&self, index: LogIndex) -> Result<(u32, Head), StorageError> {
        let pos = self
            .sector_of(index)
            .ok_or(StorageError::Unavailable(index))?;
        let s = self.sectors[pos as usize];
        let base = self.sector_addr(pos);
        let mut addr = base + s.start;
        if !s.has_trunc {
            if let Some(h) = self.hint.get() {
                if h.pos == pos && h.seq == s.seq && h.index <= index {
                    addr = h.addr;
                }
            }
        }
        let end = base + s.end;
        let mut found = None;
        while addr < end {
            let head = self.head(addr, end)?.ok_or_else(|| corrupt(addr))?;
            let padded = head.padded;
            if head.tag == TAG_ENTRY {
                let e = head.entry(addr)?;
                if e.index == index {
                    found = Some((addr, head));
                    if !s.has_trunc {
                        break;
                    }
                } else if !s.has_trunc && e.index > index {
                    break;
                }
            }
            addr += padded;
        }
        let (at, head) = found.ok_or_else(|| corrupt(base))?;
        if !s.has_trunc {
            self.hint.set(Some(Hint {
                pos,
                seq: s.seq,
                index,
                addr: at,
            }));
        }
        Ok((at, head))
    }

    /// The term of a log entry, from the log itself.
    fn entry_term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if index >= self.next_index {
            return Err(StorageError::Unavailable(index));
        }
        if index < self.first_index {
            return Err(StorageError::Compacted(index));
        }
        let (addr, head) = self.locate(index)?;
        Ok(head.entry(addr)?.term)
    }
}

/// Round `len` up to a multiple of `w` (a power of two).
const fn pad_to(len: usize, w: usize) -> usize {
    (len + w - 1) & !(w - 1)
}

impl<F: NorFlash, const LOG_SECTORS: usize> FlashStorage<F, LOG_SECTORS> {
    /// Program an entry record (`total` framed bytes) at `addr`, streaming it through a small
    /// buffer so that no RAM copy of the whole entry is needed.
    fn write_entry_record(
        &self,
        addr: u32,
        header: &[u8],
        data: &[u8],
        total: usize,
    ) -> Result<(), StorageError> {
        let len = (total - 8) as u32;
        let l = len.to_le_bytes();
        let prefix = [l[0], l[1], l[2], l[3], RECORD_VERSION, TAG_ENTRY];
        let mut digest = CRC32C.digest();
        digest.update(&prefix);
        digest.update(header);
        digest.update(data);
        let crc = digest.finalize().to_le_bytes();
        let mut buf = [0u8; CHUNK];
        let mut fill = 0usize;
        let mut at = addr;
        for part in [&prefix[..], header, data, &crc[..]] {
            let mut src = part;
            while !src.is_empty() {
                let n = core::cmp::min(CHUNK - fill, src.len());
                buf[fill..fill + n].copy_from_slice(&src[..n]);
                fill += n;
                src = &src[n..];
                if fill == CHUNK {
                    self.write(at, &buf)?;
                    at += CHUNK as u32;
                    fill = 0;
                }
            }
        }
        if fill > 0 {
            let padded = pad_to(fill, F::WRITE_SIZE);
            buf[fill..padded].fill(0xFF);
            self.write(at, &buf[..padded])?;
        }
        Ok(())
    }

    /// Write a small record at the tail of the log.
    fn append_small<T: Serialize>(&mut self, tag: u8, v: &T) -> Result<(), StorageError> {
        let mut buf = [0u8; MAX_SMALL_RECORD];
        let len = self.encode_small(tag, v, &mut buf)?;
        let addr = self.reserve(len as u32)?;
        let r = self.write(addr, &buf[..len]);
        self.finish_write(len as u32, r)
    }
}

impl<F: NorFlash, const LOG_SECTORS: usize> LogView for FlashStorage<F, LOG_SECTORS> {
    fn snapshot_index(&self) -> LogIndex {
        self.snap.as_ref().map_or(0, |s| s.meta.index)
    }

    fn last_index(&self) -> LogIndex {
        core::cmp::max(self.next_index - 1, self.snapshot_index())
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if index == 0 {
            return Ok(0);
        }
        if let Some(s) = &self.snap {
            if index == s.meta.index {
                return Ok(s.meta.term);
            }
        }
        self.entry_term(index)
    }
}

impl<F: NorFlash, const LOG_SECTORS: usize> Storage for FlashStorage<F, LOG_SECTORS> {
    fn hard_state(&self) -> HardState {
        self.hs
    }

    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        if *hs != self.hs {
            self.hs = *hs;
            self.hs_dirty = true;
        }
        Ok(())
    }

    fn append(&mut self, entry: &EntryRef<'_>) -> Result<(), StorageError> {
        if entry.index != self.next_index {
            return Err(StorageError::NotContiguous {
                expected: self.next_index,
                given: entry.index,
            });
        }
        let len = u32::try_from(entry.data.len()).map_err(|_| StorageError::BufferTooSmall {
            needed: entry.data.len(),
        })?;
        let header = EntryHeader {
            index: entry.index,
            term: entry.term,
            kind: entry.kind,
            len,
        };
        let mut hb = [0u8; MAX_HEADER_BYTES];
        let hn = postcard::to_slice(&header, &mut hb)
            .map_err(|_| StorageError::BufferTooSmall {
                needed: MAX_HEADER_BYTES,
            })?
            .len();
        let total = ENTRY_RECORD_OVERHEAD + hn + entry.data.len();
        if total > self.max_record() as usize {
            return Err(StorageError::BufferTooSmall { needed: total });
        }
        let padded = self.pad(total);
        let addr = self.reserve(padded)?;
        let r = self.write_entry_record(addr, &hb[..hn], entry.data, total);
        self.finish_write(padded, r)?;
        let tail = self
            .ring
            .as_ref()
            .expect("an entry was written at the tail")
            .tail_pos;
        let s = &mut self.sectors[tail as usize];
        if s.count == 0 {
            s.first = entry.index;
        }
        s.count += 1;
        self.next_index += 1;
        Ok(())
    }

    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        if from <= self.snapshot_index() || from == 0 {
            return Err(StorageError::Compacted(from));
        }
        if from >= self.next_index {
            return Ok(());
        }
        if from < self.first_index {
            return Err(StorageError::Compacted(from));
        }
        self.append_small(TAG_TRUNCATE, &Truncate { from })?;
        let tail = self
            .ring
            .as_ref()
            .expect("a truncation was written at the tail")
            .tail_pos;
        self.sectors[tail as usize].has_trunc = true;
        self.clip(from);
        self.next_index = from;
        self.hint.set(None);
        Ok(())
    }

    fn compact_prefix(&mut self, upto: LogIndex) -> Result<(), StorageError> {
        let upto = core::cmp::min(upto, self.snapshot_index());
        if upto >= self.first_index {
            self.first_index = core::cmp::min(upto + 1, self.next_index);
        }
        self.advance_head();
        Ok(())
    }

    fn read_entries(&self, lo: LogIndex, hi: LogIndex, buf: &mut [u8]) -> Result<ReadEntries> {
        if lo < self.first_index {
            return Err(StorageError::Compacted(lo));
        }
        if lo >= self.next_index || hi < lo {
            return Err(StorageError::Unavailable(lo));
        }
        let hi = core::cmp::min(hi, self.next_index - 1);
        let mut used = 0usize;
        let mut count = 0u32;
        for index in lo..=hi {
            let (addr, head) = self.locate(index)?;
            let elen = head.total as usize - ENTRY_RECORD_OVERHEAD;
            if elen > buf.len() - used {
                if count == 0 {
                    return Err(StorageError::BufferTooSmall { needed: elen });
                }
                break;
            }
            let dst = &mut buf[used..used + elen];
            self.read(addr + 6, dst)?;
            let mut crc = [0u8; 4];
            self.read(addr + head.total - 4, &mut crc)?;
            let mut digest = CRC32C.digest();
            digest.update(&head.bytes[..6]);
            digest.update(dst);
            let (e, n) = shoal_core::entry::decode(dst).map_err(|_| corrupt(addr))?;
            if digest.finalize() != u32::from_le_bytes(crc)
                || head.bytes[4] != RECORD_VERSION
                || n != elen
                || e.index != index
            {
                return Err(corrupt(addr));
            }
            used += elen;
            count += 1;
        }
        Ok(ReadEntries { count, bytes: used })
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        // Log records are programmed as they are written; only the hard state waits for sync.
        if self.hs_dirty {
            self.write_hard_state()?;
        }
        Ok(())
    }

    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.snap.as_ref().map(|s| s.meta.clone())
    }

    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.writing = None;
        let slot = self.snap.as_ref().map_or(0, |s| 1 - s.slot);
        let gen = self.snap_gen + 1;
        let header = SnapHeader {
            gen,
            meta: meta.clone(),
        };
        let mut buf = [0u8; MAX_SMALL_RECORD];
        let len = self.encode_small(TAG_SNAP_HEADER, &header, &mut buf)?;
        let capacity = (self.commit_addr(slot) - self.geo.slot[slot]) as u64 - len as u64;
        if meta.size_bytes > capacity {
            return Err(StorageError::Full);
        }
        self.erase(self.geo.slot[slot], self.geo.slot_bytes)?;
        self.write(self.geo.slot[slot], &buf[..len])?;
        self.writing = Some(PendingSnap {
            slot,
            gen,
            meta: meta.clone(),
            data_off: len as u32,
            flushed: 0,
            stage: [0xFF; MAX_WRITE_SIZE],
            staged: 0,
        });
        Ok(())
    }

    fn snapshot_write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let w = F::WRITE_SIZE;
        let Some(p) = self.writing.as_mut() else {
            return Err(StorageError::SnapshotState);
        };
        let written = p.flushed + p.staged as u64;
        if offset != written || written + data.len() as u64 > p.meta.size_bytes {
            return Err(StorageError::SnapshotState);
        }
        let mut src = data;
        // Top up the page buffer first.
        if p.staged > 0 {
            let n = core::cmp::min(w - p.staged, src.len());
            p.stage[p.staged..p.staged + n].copy_from_slice(&src[..n]);
            p.staged += n;
            src = &src[n..];
            if p.staged == w {
                if let Err(e) = self.flush_stage() {
                    self.writing = None;
                    return Err(e);
                }
            }
        }
        let p = self.writing.as_mut().expect("still writing");
        let whole = src.len() - src.len() % w;
        if whole > 0 {
            let at = self.geo.slot[p.slot] + p.data_off + p.flushed as u32;
            if let Err(e) = self
                .flash
                .borrow_mut()
                .write(at, &src[..whole])
                .map_err(io_err)
            {
                self.writing = None;
                return Err(e);
            }
            p.flushed += whole as u64;
            src = &src[whole..];
        }
        if !src.is_empty() {
            p.stage[..src.len()].copy_from_slice(src);
            p.staged = src.len();
        }
        Ok(())
    }

    fn snapshot_finish(&mut self) -> Result<(), StorageError> {
        let Some(p) = self.writing.as_ref() else {
            return Err(StorageError::SnapshotState);
        };
        if p.flushed + p.staged as u64 != p.meta.size_bytes {
            return Err(StorageError::SnapshotState);
        }
        let result = self.finish_inner();
        self.writing = None;
        result
    }

    fn snapshot_read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        let Some(s) = &self.snap else {
            return Err(StorageError::NoSnapshot);
        };
        if offset >= s.meta.size_bytes {
            return Ok(0);
        }
        let n = core::cmp::min(buf.len() as u64, s.meta.size_bytes - offset) as usize;
        self.read(
            self.geo.slot[s.slot] + s.data_off + offset as u32,
            &mut buf[..n],
        )?;
        Ok(n)
    }
}

impl<F: NorFlash, const LOG_SECTORS: usize> FlashStorage<F, LOG_SECTORS> {
    fn finish_inner(&mut self) -> Result<(), StorageError> {
        self.flush_stage()?;
        let p = self.writing.clone().expect("checked by snapshot_finish");
        let data_at = self.geo.slot[p.slot] + p.data_off;
        // Read the data back: the commit marker vouches for what is on flash, not in RAM.
        let data_crc = self.data_crc(data_at, p.meta.size_bytes)?;
        // Everything before the snapshot is durable before it becomes current.
        self.sync()?;
        let mut buf = [0u8; MAX_SMALL_RECORD];
        let commit = SnapCommit {
            gen: p.gen,
            data_crc,
        };
        let len = self.encode_small(TAG_SNAP_COMMIT, &commit, &mut buf)?;
        self.write(self.commit_addr(p.slot), &buf[..len])?;
        self.snap_gen = p.gen;
        self.snap = Some(CurrentSnap {
            slot: p.slot,
            meta: p.meta,
            data_off: p.data_off,
        });
        if !self.log_matches_snapshot() {
            self.reset_log_to_snapshot();
            // Write the reset sector now so the medium says plainly that the old log is void
            // (recovery would reach the same conclusion from the snapshot alone).
            self.open_sector()?;
        } else if self.first_index > self.snapshot_index() + 1 {
            self.first_index = self.snapshot_index() + 1;
        }
        Ok(())
    }
}
