//! Record bodies stored on flash and their tags.
//!
//! Every record is a `shoal_core::record` frame (length, version, body, CRC-32C) padded with
//! `0xFF` to a whole number of program words. The first body byte is a tag naming the record
//! kind; the rest is postcard, except for entries, whose rest is exactly
//! `shoal_core::entry::encode` output (so `read_entries` can copy it out unchanged).

use serde::{Deserialize, Serialize};
use shoal_core::types::{EntryKind, HardState, LogIndex, SnapshotMeta, Term};

/// Log: first record of every ring sector.
pub const TAG_SECTOR: u8 = 0x53;
/// Log: one entry.
pub const TAG_ENTRY: u8 = 0x45;
/// Log: "entries with index ≥ from are void".
pub const TAG_TRUNCATE: u8 = 0x54;
/// Hard-state sectors: one saved hard state.
pub const TAG_HARD_STATE: u8 = 0x48;
/// Snapshot slot: header at the slot's start.
pub const TAG_SNAP_HEADER: u8 = 0x50;
/// Snapshot slot: commit marker at the slot's end, written last.
pub const TAG_SNAP_COMMIT: u8 = 0x43;

/// Header of a log ring sector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorHeader {
    /// Sector sequence number: one more than the previous ring sector's.
    pub seq: u32,
    /// The oldest live sector's sequence number when this one was opened.
    pub head_seq: u32,
    /// The log's next index when this sector was opened.
    pub first_index: LogIndex,
    /// Where valid records end in the previous ring sector (a torn record may follow).
    pub prev_end: u32,
    /// The log was emptied (a snapshot replaced it): every earlier sector is void.
    pub reset: bool,
}

/// A truncation of the log's suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncate {
    /// First void index.
    pub from: LogIndex,
}

/// One saved hard state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardStateRecord {
    /// Save sequence number; the largest valid one wins.
    pub seq: u64,
    /// The hard state.
    pub hs: HardState,
}

/// Snapshot slot header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapHeader {
    /// Generation; the committed slot with the larger one is current.
    pub gen: u32,
    /// The snapshot's metadata.
    pub meta: SnapshotMeta,
}

/// Snapshot commit marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapCommit {
    /// Must equal the slot header's generation.
    pub gen: u32,
    /// CRC-32C of the data as read back from flash before committing.
    pub data_crc: u32,
}

/// The entry header exactly as `shoal_core::entry::encode` writes it (field order and types
/// mirror that private struct; a unit test checks the bytes agree). Having it here lets an
/// entry be streamed to flash without a buffer the size of the whole entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryHeader {
    /// Entry index.
    pub index: LogIndex,
    /// Entry term.
    pub term: Term,
    /// Entry kind.
    pub kind: EntryKind,
    /// Payload bytes.
    pub len: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::entry::{encode, EntryRef};

    #[test]
    fn entry_header_matches_the_core_encoding() {
        for (index, term, len) in [(1u64, 1u64, 0usize), (300, 7, 5), (u64::MAX, 1 << 40, 200)] {
            let data = [0xA5u8; 200];
            let e = EntryRef {
                index,
                term,
                kind: EntryKind::Config,
                data: &data[..len],
            };
            let mut full = [0u8; 300];
            let n = encode(&e, &mut full).unwrap();
            let mut head = [0u8; 40];
            let h = EntryHeader {
                index,
                term,
                kind: EntryKind::Config,
                len: len as u32,
            };
            let hn = postcard::to_slice(&h, &mut head).unwrap().len();
            assert_eq!(&full[..hn], &head[..hn]);
            assert_eq!(n, hn + len);
        }
    }
}
