//! The hard-state file: two alternating slots with sequence numbers, so a save costs one small
//! write and one fdatasync, and a torn write never loses the previous durable value.
//!
//! `GROUP_DIR/hardstate` is [`HS_FILE_BYTES`] long: slot 0 at offset 0 and slot 1 at
//! [`HS_SLOT_BYTES`]. Each slot is one record (length, version, CRC-32C) followed by zero
//! padding; an all-zero slot was never written. A save always goes to the slot that does *not*
//! hold the newest durable value, so a crash during the write leaves that value intact. On open
//! the valid slot with the higher sequence number wins.
//!
//! A damaged slot next to a valid (or never-written) one is read as a torn, unsynced save (it
//! cannot be told apart from damage) and the other slot is used; a warning is logged and
//! `shoal-inspect verify` reports the slot. Two damaged slots are corruption.

use std::fs::File;
use std::path::{Path, PathBuf};

use shoal_core::record;
use shoal_core::types::HardState;

use super::error::OpenError;
use super::fsutil;

/// Name of the hard-state file inside a group dir.
pub const HARD_STATE_FILE: &str = "hardstate";
/// Bytes of one slot.
pub const HS_SLOT_BYTES: usize = 64;
/// Bytes of the whole file (two slots).
pub const HS_FILE_BYTES: usize = 2 * HS_SLOT_BYTES;
/// Format version of the slot body written by this build.
pub const HS_VERSION: u8 = 1;
/// Bytes of a slot body: version, sequence, term, vote, commit.
const HS_BODY_BYTES: usize = 1 + 4 * 8;

/// One decoded slot of the hard-state file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// All zeros: never written.
    Empty,
    /// A valid save.
    Valid {
        /// Save sequence number (higher is newer).
        seq: u64,
        /// The saved state.
        state: HardState,
    },
    /// Damaged (or torn): what is wrong.
    Bad(String),
}

/// What the hard-state file holds, as tools show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HardStateFile {
    /// Both slots.
    pub slots: [Slot; 2],
    /// The slot whose value is current, if any.
    pub current: Option<usize>,
    /// The current hard state (the default when no slot was ever written).
    pub state: HardState,
    /// Sequence number of the current save (0 when none).
    pub seq: u64,
}

/// Encode one slot (record plus zero padding).
pub(crate) fn encode_slot(seq: u64, hs: &HardState) -> [u8; HS_SLOT_BYTES] {
    let mut body = [0u8; HS_BODY_BYTES];
    body[0] = HS_VERSION;
    body[1..9].copy_from_slice(&seq.to_le_bytes());
    body[9..17].copy_from_slice(&hs.term.to_le_bytes());
    body[17..25].copy_from_slice(&hs.vote.to_le_bytes());
    body[25..33].copy_from_slice(&hs.commit.to_le_bytes());
    let mut out = [0u8; HS_SLOT_BYTES];
    record::encode(&body, &mut out).expect("a hard-state record fits its slot");
    out
}

/// Decode one slot's bytes.
pub fn decode_slot(bytes: &[u8]) -> Slot {
    if bytes.iter().all(|&b| b == 0) {
        return Slot::Empty;
    }
    let body = match record::decode(bytes) {
        Ok((body, _)) => body,
        Err(e) => return Slot::Bad(e.to_string()),
    };
    if body.len() != HS_BODY_BYTES {
        return Slot::Bad(format!("slot body has {} bytes", body.len()));
    }
    if body[0] != HS_VERSION {
        return Slot::Bad(format!("unknown hard-state version {}", body[0]));
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&body[at..at + 8]);
        u64::from_le_bytes(w)
    };
    Slot::Valid {
        seq: word(1),
        state: HardState {
            term: word(9),
            vote: word(17),
            commit: word(25),
        },
    }
}

/// Decode a whole hard-state file; `Err` carries (offset, detail) of unusable damage.
pub(crate) fn decode_file(bytes: &[u8]) -> Result<HardStateFile, (u64, String)> {
    if bytes.len() != HS_FILE_BYTES {
        return Err((
            0,
            format!(
                "hard-state file has {} bytes, expected {}",
                bytes.len(),
                HS_FILE_BYTES
            ),
        ));
    }
    let slots = [
        decode_slot(&bytes[..HS_SLOT_BYTES]),
        decode_slot(&bytes[HS_SLOT_BYTES..]),
    ];
    let mut current: Option<(usize, u64, HardState)> = None;
    for (k, slot) in slots.iter().enumerate() {
        if let Slot::Valid { seq, state } = slot {
            if current.is_none_or(|(_, best, _)| *seq > best) {
                current = Some((k, *seq, *state));
            }
        }
    }
    // One bad slot next to a never-written one is the very first save, torn: nothing was ever
    // durable, so the default state is right. Two bad slots cannot come from one torn write.
    if let [Slot::Bad(detail), Slot::Bad(_)] = &slots {
        return Err((0, detail.clone()));
    }
    Ok(HardStateFile {
        current: current.map(|c| c.0),
        seq: current.map_or(0, |c| c.1),
        state: current.map_or(HardState::default(), |c| c.2),
        slots,
    })
}

/// Read the hard-state file of a group dir (read-only; for tools).
pub fn read_hard_state(group_dir: &Path) -> Result<HardStateFile, OpenError> {
    let path = group_dir.join(HARD_STATE_FILE);
    let bytes = std::fs::read(&path).map_err(|e| OpenError::io(&path, "read hard state", e))?;
    let data_dir = group_dir.parent().unwrap_or(group_dir);
    decode_file(&bytes)
        .map_err(|(offset, detail)| OpenError::corrupt(data_dir, &path, offset, detail))
}

/// The hard-state file of one group. It is open only from a save until that save is durable:
/// saves are rare (a term or vote change, the commit hint every few seconds), and a node with
/// thousands of idle groups would otherwise hold a descriptor per group for nothing.
pub(crate) struct HardStateStore {
    pub(crate) path: PathBuf,
    /// Open while a save waits for its sync.
    file: Option<File>,
    /// Sequence number of the newest save written to the file.
    seq: u64,
    /// Slot holding the newest value known durable; saves go to the other one.
    durable_slot: usize,
    /// A save written to the file but not yet fdatasynced: (slot, seq).
    pub(crate) unsynced: Option<usize>,
    /// A commit hint written to the file ([`HardStateStore::write_hint`]) that no sync asked
    /// for: its slot, made durable by the next sync if one comes first.
    hinted: Option<usize>,
}

impl HardStateStore {
    /// Open (creating if missing) the hard-state file; returns it and the current state.
    pub(crate) fn open(
        group_dir: &Path,
        data_dir: &Path,
        sync: bool,
    ) -> Result<(HardStateStore, HardState), OpenError> {
        let path = group_dir.join(HARD_STATE_FILE);
        if !path.exists() {
            fsutil::write_atomic(&path, &[0u8; HS_FILE_BYTES], sync)
                .map_err(|e| OpenError::io(&path, "create hard state", e))?;
        }
        let file = fsutil::open_existing(&path, true)
            .map_err(|e| OpenError::io(&path, "open hard state", e))?;
        let bytes =
            fsutil::read_from(&file, 0).map_err(|e| OpenError::io(&path, "read hard state", e))?;
        drop(file);
        let decoded = decode_file(&bytes)
            .map_err(|(offset, detail)| OpenError::corrupt(data_dir, &path, offset, detail))?;
        for (k, slot) in decoded.slots.iter().enumerate() {
            if let Slot::Bad(detail) = slot {
                log::warn!(
                    "{}: slot {} is damaged ({}); treating it as a torn unsynced save and using \
                     the other slot",
                    path.display(),
                    k,
                    detail
                );
            }
        }
        let store = HardStateStore {
            path,
            file: None,
            seq: decoded.seq,
            // With no valid slot yet, the first save goes to slot 0.
            durable_slot: decoded.current.unwrap_or(1),
            unsynced: None,
            hinted: None,
        };
        Ok((store, decoded.state))
    }

    /// Write `hs` into the slot that does not hold the newest durable value (no fdatasync).
    pub(crate) fn write(&mut self, hs: &HardState) -> std::io::Result<()> {
        let slot = 1 - self.durable_slot;
        self.seq += 1;
        let bytes = encode_slot(self.seq, hs);
        let file = match self.file.take() {
            Some(f) => f,
            None => fsutil::open_existing(&self.path, true)?,
        };
        let file = self.file.insert(file);
        fsutil::write_at(file, &bytes, (slot * HS_SLOT_BYTES) as u64)?;
        self.unsynced = Some(slot);
        Ok(())
    }

    /// Write a commit hint (storage rule 10: only the commit index moved, and the log is
    /// durable up to it): into the same slot as [`HardStateStore::write`], but it asks for no
    /// sync, and the file is closed again unless a save waits for its sync. The slot that
    /// holds the newest durable value is never touched, so a hint torn by a crash loses only
    /// itself.
    pub(crate) fn write_hint(&mut self, hs: &HardState) -> std::io::Result<()> {
        let waiting = self.unsynced;
        self.write(hs)?;
        if waiting.is_none() {
            self.hinted = self.unsynced.take();
            self.file = None;
        }
        Ok(())
    }

    /// Whether a hint was written that no sync has covered yet (tests).
    #[cfg(test)]
    pub(crate) fn hinted(&self) -> bool {
        self.hinted.is_some()
    }

    /// Whether the file is open now (tests).
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// The slot and bytes the next [`HardStateStore::write`] of `hs` would produce (crash tests).
    #[cfg(test)]
    pub(crate) fn next_write(&self, hs: &HardState) -> (usize, [u8; HS_SLOT_BYTES]) {
        (1 - self.durable_slot, encode_slot(self.seq + 1, hs))
    }

    /// A sync of the whole filesystem made the pending write durable.
    pub(crate) fn synced_elsewhere(&mut self) {
        let hinted = self.hinted.take();
        if let Some(slot) = self.unsynced.take().or(hinted) {
            self.durable_slot = slot;
        }
        self.file = None;
    }

    /// Whether a write waits for a sync.
    pub(crate) fn unsynced(&self) -> bool {
        self.unsynced.is_some()
    }

    /// fdatasync the file if a write is pending.
    /// A hint written without a sync ([`HardStateStore::write_hint`]) is made durable too.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        if let Some(slot) = self.unsynced {
            if let Some(f) = &self.file {
                fsutil::sync_data(f, true)?;
            }
            self.durable_slot = slot;
            self.unsynced = None;
            self.hinted = None;
        } else if let Some(slot) = self.hinted {
            let f = fsutil::open_existing(&self.path, true)?;
            fsutil::sync_data(&f, true)?;
            self.durable_slot = slot;
            self.hinted = None;
        }
        self.file = None;
        Ok(())
    }
}
