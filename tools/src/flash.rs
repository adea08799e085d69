//! A raw dump of an embedded node's flash partition as a [`Source`].
//!
//! The flash layout has no self-describing header, so the geometry comes from the operator
//! (`--geometry erase=4096,write=4,sectors=64,slot=4,offset=0`). The image is opened with the
//! node's own recovery code, `shoal_embedded::flash::FlashStorage::open`, over a read-only
//! RAM flash holding the file's bytes: what the tool reports is exactly what the node would
//! recover. Recovery drops a torn record at the ring's tail silently (by design, like the
//! file log), so a flash verify reports corruption (with its flash address) but cannot tell a
//! torn tail apart from a clean end.

use std::path::{Path, PathBuf};

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use serde::Serialize;
use shoal_core::entry::EntryIter;
use shoal_core::record::CRC32C;
use shoal_core::storage::{LogView, Storage, StorageError};
use shoal_core::types::{GroupId, HardState, LogIndex, SnapshotMeta, Term};
use shoal_embedded::flash::{FlashStorage, Layout, OpenError};

use crate::portable::{SnapshotFile, SnapshotSource};
use crate::problem::Problem;
use crate::report::{
    CurrentSnapshot, GroupReport, HardStateView, LogLayout, Report, SnapshotSummary, SourceInfo,
};
use crate::source::{LogEntry, ReadRequest, Source, SourceError, Visitor};
use crate::state::ReplayEntry;

/// Most ring sectors an image may have (the tool's `FlashStorage` is built for this many).
pub const MAX_LOG_SECTORS: usize = 4096;

/// The geometry of a flash image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Geometry {
    /// Erase sector size in bytes.
    pub erase: usize,
    /// Program word size in bytes.
    pub write: usize,
    /// Sectors in the partition (default: the image's size from `offset` on).
    pub sectors: u32,
    /// Sectors per snapshot slot.
    pub slot: u32,
    /// Byte offset of the partition in the image.
    pub offset: u32,
}

/// Parse `erase=4096,write=4,sectors=64,slot=4,offset=0` (`sectors` defaults to what the image
/// holds, `offset` to 0, `write` to 4, `slot` to 4).
pub fn parse_geometry(s: &str, image_len: usize) -> Result<Geometry, String> {
    let mut erase = None;
    let mut write = 4usize;
    let mut sectors = None;
    let mut slot = 4u32;
    let mut offset = 0u32;
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("geometry item `{}` is not NAME=VALUE", part))?;
        let n: u64 =
            parse_num(v).ok_or_else(|| format!("geometry `{}`: `{}` is not a number", k, v))?;
        match k.trim() {
            "erase" => erase = Some(n as usize),
            "write" => write = n as usize,
            "sectors" => sectors = Some(n as u32),
            "slot" | "snapshot_slot_sectors" => slot = n as u32,
            "offset" => offset = n as u32,
            other => {
                return Err(format!(
                    "unknown geometry item `{}` (use erase, write, sectors, slot, offset)",
                    other
                ))
            }
        }
    }
    let erase = erase.ok_or("the geometry needs erase=SECTOR_BYTES")?;
    if erase == 0 {
        return Err("erase=0 is not a sector size".into());
    }
    let sectors = sectors.unwrap_or(((image_len.saturating_sub(offset as usize)) / erase) as u32);
    Ok(Geometry {
        erase,
        write,
        sectors,
        slot,
        offset,
    })
}

fn parse_num(v: &str) -> Option<u64> {
    let v = v.trim();
    if let Some(h) = v.strip_prefix("0x") {
        return u64::from_str_radix(h, 16).ok();
    }
    if let Some(k) = v.strip_suffix(['k', 'K']) {
        return k.parse::<u64>().ok().map(|n| n * 1024);
    }
    v.parse().ok()
}

/// A flash image in RAM. Reads work; writes and erases fail (opening never writes).
pub struct ImageFlash<const ERASE: usize, const WRITE: usize> {
    bytes: Vec<u8>,
}

/// The only error an [`ImageFlash`] gives: the image is read-only (or out of bounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// A write or erase was attempted.
    ReadOnly,
    /// A read ran past the image.
    OutOfBounds,
}

impl NorFlashError for ImageError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            ImageError::ReadOnly => NorFlashErrorKind::Other,
            ImageError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
        }
    }
}

impl<const E: usize, const W: usize> ErrorType for ImageFlash<E, W> {
    type Error = ImageError;
}

impl<const E: usize, const W: usize> ReadNorFlash for ImageFlash<E, W> {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), ImageError> {
        let start = offset as usize;
        let end = start + bytes.len();
        let src = self.bytes.get(start..end).ok_or(ImageError::OutOfBounds)?;
        bytes.copy_from_slice(src);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.bytes.len()
    }
}

impl<const E: usize, const W: usize> NorFlash for ImageFlash<E, W> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;
    fn erase(&mut self, _from: u32, _to: u32) -> Result<(), ImageError> {
        Err(ImageError::ReadOnly)
    }
    fn write(&mut self, _offset: u32, _bytes: &[u8]) -> Result<(), ImageError> {
        Err(ImageError::ReadOnly)
    }
}

/// What an image holds.
#[derive(Clone, Debug)]
pub struct FlashImage {
    /// The geometry used.
    pub geometry: Geometry,
    /// Recovered hard state.
    pub hard_state: HardState,
    /// Current snapshot.
    pub snapshot: Option<SnapshotMeta>,
    /// Whether the snapshot's data matched its CRC (None: no snapshot).
    pub snapshot_crc_ok: Option<bool>,
    /// The current snapshot's data.
    pub snapshot_data: Vec<u8>,
    /// The log's entries, first to last.
    pub entries: Vec<ReplayEntry>,
    /// Ring sectors in use and in total.
    pub ring_live_sectors: u32,
    /// Ring sectors.
    pub ring_sectors: u32,
}

/// Why an image could not be read.
#[derive(Clone, Debug)]
pub enum FlashError {
    /// The geometry is not usable with this image or this build.
    Geometry(String),
    /// Recovery found damage at this flash address (relative to the image start).
    Corrupt {
        /// Address of the damage.
        address: u64,
        /// What recovery said.
        detail: String,
    },
    /// Recovery or a read failed otherwise.
    Failed(String),
}

impl std::fmt::Display for FlashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlashError::Geometry(s) | FlashError::Failed(s) => f.write_str(s),
            FlashError::Corrupt { address, detail } => {
                write!(f, "corrupt at flash address {:#x}: {}", address, detail)
            }
        }
    }
}

fn read_with<const E: usize, const W: usize>(
    bytes: Vec<u8>,
    geo: Geometry,
) -> Result<FlashImage, FlashError> {
    let layout = Layout::new(geo.offset, geo.sectors, geo.slot);
    let flash = ImageFlash::<E, W> { bytes };
    let st = match FlashStorage::<_, MAX_LOG_SECTORS>::open(flash, layout) {
        Ok(s) => Box::new(s),
        Err(OpenError::Layout(e)) => {
            return Err(FlashError::Geometry(format!(
                "the geometry does not fit: {}",
                e
            )))
        }
        Err(OpenError::Storage(StorageError::Corrupt { location })) => {
            return Err(FlashError::Corrupt {
                address: location,
                detail: "recovery found a damaged record".into(),
            })
        }
        Err(OpenError::Storage(e)) => {
            return Err(FlashError::Failed(format!("recovery failed: {}", e)))
        }
    };
    let snapshot = st.snapshot_meta();
    let mut snapshot_data = Vec::new();
    let snapshot_crc_ok = match &snapshot {
        None => None,
        Some(m) => {
            let mut buf = vec![0u8; 4096];
            let mut off = 0u64;
            while off < m.size_bytes {
                let n = st
                    .snapshot_read(off, &mut buf)
                    .map_err(|e| FlashError::Failed(format!("snapshot read at {}: {}", off, e)))?;
                if n == 0 {
                    break;
                }
                snapshot_data.extend_from_slice(&buf[..n]);
                off += n as u64;
            }
            Some(
                snapshot_data.len() as u64 == m.size_bytes
                    && CRC32C.checksum(&snapshot_data) == m.crc,
            )
        }
    };
    let last = st.last_index();
    // The first entry still in the ring: the smallest index whose term is known (entries form
    // one run, so a binary search finds it). It can lie below the snapshot.
    let mut probe = vec![0u8; geo.erase + 1024];
    let mut in_log = |i: LogIndex| match st.read_entries(i, i, &mut probe) {
        Ok(_) | Err(StorageError::BufferTooSmall { .. }) => true,
        Err(_) => false,
    };
    let mut lo = 1;
    let mut hi = last + 1;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if in_log(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut next = lo;
    while next <= last {
        let r = st
            .read_entries(next, last, &mut buf)
            .map_err(|e| FlashError::Failed(format!("reading entry {}: {}", next, e)))?;
        for e in EntryIter::new(&buf[..r.bytes], r.count) {
            let e = e.map_err(|e| FlashError::Failed(format!("entry {}: {}", next, e)))?;
            entries.push(ReplayEntry {
                index: e.index,
                term: e.term,
                kind: e.kind,
                data: e.data.to_vec(),
            });
            next = e.index + 1;
        }
        if r.count == 0 {
            break;
        }
    }
    let usage = st.ring_usage();
    Ok(FlashImage {
        geometry: geo,
        hard_state: st.hard_state(),
        snapshot,
        snapshot_crc_ok,
        snapshot_data,
        entries,
        ring_live_sectors: usage.live_sectors,
        ring_sectors: usage.sectors,
    })
}

macro_rules! dispatch {
    ($bytes:expr, $geo:expr, [$($e:literal),*], [$($w:literal),*]) => {{
        let geo: Geometry = $geo;
        dispatch!(@erase $bytes, geo, [$($e),*], [$($w),*])
    }};
    (@erase $bytes:expr, $geo:ident, [$($e:literal),*], $ws:tt) => {
        match $geo.erase {
            $($e => dispatch!(@write $bytes, $geo, $e, $ws),)*
            other => Err(FlashError::Geometry(format!(
                "erase sector size {} is not one this tool reads (256 B .. 256 KiB, powers of two)",
                other
            ))),
        }
    };
    (@write $bytes:expr, $geo:ident, $e:literal, [$($w:literal),*]) => {
        match $geo.write {
            $($w => read_with::<$e, $w>($bytes, $geo),)*
            other => Err(FlashError::Geometry(format!(
                "program word size {} is not one this tool reads (1, 2, 4, 8, 16, 32)",
                other
            ))),
        }
    };
}

/// Open an image with `geo` and read everything it holds.
pub fn read_image(bytes: Vec<u8>, geo: Geometry) -> Result<FlashImage, FlashError> {
    dispatch!(
        bytes,
        geo,
        [256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144],
        [1, 2, 4, 8, 16, 32]
    )
}

impl FlashImage {
    /// First and last entry (index, term).
    pub fn bounds(&self) -> Option<((LogIndex, Term), (LogIndex, Term))> {
        let f = self.entries.first()?;
        let l = self.entries.last()?;
        Some(((f.index, f.term), (l.index, l.term)))
    }
}

/// A flash image as a [`Source`]: one group, read whole when opened.
pub struct FlashSource {
    path: PathBuf,
    group: GroupId,
    image: FlashImage,
}

impl FlashSource {
    /// Read the image at `path` with `geometry` (see [`parse_geometry`]), calling its one group
    /// `group` (an image does not record its group id).
    pub fn open(path: &Path, geometry: &str, group: GroupId) -> Result<FlashSource, SourceError> {
        let bytes = std::fs::read(path)
            .map_err(|e| SourceError::Usage(format!("cannot read {}: {}", path.display(), e)))?;
        let geo = parse_geometry(geometry, bytes.len())
            .map_err(|e| SourceError::Usage(format!("--geometry: {}", e)))?;
        let image = read_image(bytes, geo).map_err(|e| match e {
            FlashError::Geometry(e) => SourceError::Usage(format!("--geometry: {}", e)),
            FlashError::Corrupt { address, detail } => {
                SourceError::Damaged(Problem::error(path, Some(address), detail))
            }
            FlashError::Failed(e) => SourceError::Failed(format!("{}: {}", path.display(), e)),
        })?;
        Ok(FlashSource {
            path: path.to_path_buf(),
            group,
            image,
        })
    }

    fn check_group(&self, group: GroupId) -> Result<(), SourceError> {
        if group == self.group {
            return Ok(());
        }
        Err(SourceError::Usage(format!(
            "{} is a flash image: it holds one group, read as group {} (--group names it)",
            self.path.display(),
            self.group
        )))
    }

    /// The flash address of the snapshot slot (slot 0; an image does not say which is live).
    fn slot_address(&self) -> u64 {
        self.image.geometry.offset as u64 + 2 * self.image.geometry.erase as u64
    }
}

impl Source for FlashSource {
    fn read(&self, req: ReadRequest, visitor: &mut dyn Visitor) -> Result<Report, SourceError> {
        if let Some(g) = req.group {
            self.check_group(g)?;
        }
        let img = &self.image;
        let mut g = GroupReport::new(
            self.group,
            LogLayout::Ring {
                ring_sectors: img.ring_sectors,
                ring_live_sectors: img.ring_live_sectors,
            },
        );
        let hs = img.hard_state;
        g.hard_state = Some(HardStateView {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
            seq: None,
        });
        if let Some(m) = &img.snapshot {
            let summary = SnapshotSummary {
                file: self.path.display().to_string(),
                index: m.index,
                term: m.term,
                size_bytes: m.size_bytes,
                crc: m.crc,
                install_seq: 0,
                members: crate::text::members(&m.membership),
                current: true,
                data_verified: img.snapshot_crc_ok,
            };
            g.snapshot = Some(CurrentSnapshot::new(&summary, &m.membership));
            g.snapshots.push(summary);
            if img.snapshot_crc_ok == Some(false) {
                g.problems.push(Problem::error(
                    &self.path,
                    Some(self.slot_address()),
                    "the current snapshot's data does not match its CRC",
                ));
            }
        }
        visitor.group_start(self.group, img.snapshot.as_ref());
        for e in &img.entries {
            if let Some(p) = g.count_entry(e.index, e.term, &self.path, None) {
                g.problems.push(p);
            }
            visitor.entry(
                self.group,
                &LogEntry {
                    index: e.index,
                    term: e.term,
                    kind: e.kind,
                    data: &e.data,
                    place: None,
                },
            );
        }
        // Recovery already dropped a torn tail silently: nothing here can tell one apart.
        g.check_hard_state(&self.path, None);
        visitor.group_end(&g);
        Ok(Report {
            source: SourceInfo::FlashImage {
                image: self.path.display().to_string(),
                geometry: img.geometry,
            },
            groups: vec![g],
            journal: None,
            problems: Vec::new(),
        })
    }

    fn snapshot(&self, group: GroupId) -> Result<Option<SnapshotFile>, SourceError> {
        self.check_group(group)?;
        let Some(meta) = &self.image.snapshot else {
            return Ok(None);
        };
        if self.image.snapshot_crc_ok != Some(true) {
            return Err(SourceError::Damaged(Problem::error(
                &self.path,
                Some(self.slot_address()),
                "the current snapshot's data does not match its CRC",
            )));
        }
        Ok(Some(SnapshotFile::new(
            &self.path,
            SnapshotSource::FlashImage,
            group,
            meta,
            self.image.snapshot_data.clone(),
        )))
    }

    fn log_bytes(&self) -> u64 {
        0
    }

    fn path(&self) -> &Path {
        &self.path
    }
}
