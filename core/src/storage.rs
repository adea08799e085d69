//! The `Storage` trait: what the core needs kept, and exactly when it must be durable.
//!
//! # Durability contract
//!
//! The [`crate::driver::Node`] follows these steps; every implementation must make them true.
//! "Written" means visible to later reads through this trait; "durable" means it survives a
//! crash or power cut.
//!
//! 1. **Hard state before a vote.** A vote is granted, and a new term acted on, only after
//!    [`Storage::save_hard_state`] and a following [`Storage::sync`] returned `Ok`. A node that
//!    crashes after replying must come back with that term and vote, or it could vote twice.
//! 2. **Entries before an acknowledgement (sync mode).** A follower acknowledges an `Append` only
//!    after the entries (and any truncation before them) are durable via [`Storage::sync`]. A
//!    leader counts itself toward a commit quorum only for entries that are durable. In the
//!    platform's `async` fsync mode, `sync` may return before the data is on media; the platform
//!    documents the bounded loss window that follows.
//! 3. **Writes become visible at once.** [`Storage::append`], [`Storage::truncate_suffix`] and
//!    [`Storage::save_hard_state`] are visible to reads immediately, synced or not.
//! 4. **Order is kept.** A crash keeps a *prefix* of the writes made since the last `sync`: if an
//!    entry at index `i` survives, every write before it survives too. A torn last record is
//!    allowed and must be detected (by its CRC) and dropped at recovery, never returned.
//! 5. **Truncation is durable before the replacing entries.** After `truncate_suffix(i)` and a
//!    crash, the log must not contain the old entry `i` together with newer entries after it.
//! 6. **A snapshot is installed atomically.** After [`Storage::snapshot_finish`] returns `Ok`,
//!    a crash leaves either the old snapshot or the new one, complete, never a mix; a partly
//!    received snapshot is discarded at recovery.
//! 7. **Compaction never passes the snapshot.** [`Storage::compact_prefix`]`(i)` is only called
//!    with `i` ≤ the durable snapshot's index; entries after the snapshot are never dropped.
//! 8. **Corruption is reported, never repaired silently.** A record that fails its CRC anywhere
//!    but the torn tail of rule 4 makes recovery fail with [`StorageError::Corrupt`], naming
//!    where.
//! 9. **A refusal changes nothing.** A write refused with [`StorageError::Full`] or
//!    [`StorageError::NoResources`] (the degraded errors of [`crate::fault`]) left the storage
//!    as it was: no entry half-appended, no truncation half-done. `sync` refuses that way only
//!    when it failed *before* making anything durable (writing out a buffer, say); the writes
//!    stay pending and the next `sync` tries again. A failure of the device's own sync is
//!    [`StorageError::Io`] and fatal: what the device holds is then unknown, and a retry could
//!    report durable what is not. A snapshot refused half-way is discarded whole.
//! 10. **A commit hint may wait.** [`Storage::save_commit_hint`] is called only when the term
//!     and vote are those last saved and every entry up to the hint's commit index is durable
//!     already: nothing depends on the save, so it need not be durable after the next `sync`
//!     (a later `sync` covers it, or it is lost in a crash), but whenever it survives, it is
//!     whole, and the term and vote it carries are those of rule 1.
//!
//! A wrapper that changes a few calls of another storage (timing, recording, extra syncs) is a
//! [`Decorated`] storage with [`StorageHooks`]; it forwards every call it does not change.

use crate::entry::{CodecError, EntryRef};
use crate::fault::{Fault, Severity};
use crate::types::{HardState, LogIndex, SnapshotMeta, Term};

mod decorate;
pub use decorate::{Decorated, StorageHooks};

/// What the [`Storage`] calls return: a [`StorageError`] unless another error is named.
pub type Result<T, E = StorageError> = core::result::Result<T, E>;

/// A storage failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StorageError {
    /// The index was compacted away (it is at or before the snapshot).
    Compacted(LogIndex),
    /// The index is past the last entry.
    Unavailable(LogIndex),
    /// An append did not continue the log (expected index, given index).
    NotContiguous {
        /// The index the log expected next.
        expected: LogIndex,
        /// The index that was given.
        given: LogIndex,
    },
    /// The caller's buffer cannot hold even one entry or chunk.
    BufferTooSmall {
        /// Bytes the item needs.
        needed: usize,
    },
    /// The medium is full (flash ring or disk, or a space quota): nothing was written.
    Full,
    /// The platform is short of a resource other than space for now (file descriptors,
    /// memory): nothing was written, and the same call may succeed later.
    NoResources,
    /// Stored bytes are damaged: `location` is an implementation-defined offset (file offset or
    /// flash address) that tools such as `shoal-inspect verify` report too.
    Corrupt {
        /// Where the damage starts.
        location: u64,
    },
    /// A snapshot operation came out of order (for example a chunk without a begin).
    SnapshotState,
    /// No snapshot exists.
    NoSnapshot,
    /// The underlying device failed; the platform logs the detail.
    Io,
}

impl StorageError {
    /// How bad it is: a full medium or a resource the platform lacks for now degrades the
    /// node (the write is refused with nothing written, the node goes on); anything else means
    /// the node's own storage failed or disagrees with what the core knows it holds, and the
    /// node must stop.
    pub fn severity(&self) -> Severity {
        Severity::of(self.fault())
    }

    /// The cause it is counted under, unless it is fatal.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            StorageError::Full => Some(Fault::StorageFull),
            StorageError::NoResources => Some(Fault::NoResources),
            _ => None,
        }
    }

    /// The check every [`Storage::append`] starts with: an entry at `given` must continue a
    /// log whose last index is `last`.
    pub fn check_continues(last: LogIndex, given: LogIndex) -> Result<(), StorageError> {
        match last.checked_add(1) {
            Some(expected) if expected == given => Ok(()),
            _ => Err(StorageError::NotContiguous {
                expected: last.saturating_add(1),
                given,
            }),
        }
    }
}

/// Encode `entries` back to back into `buf`, as [`Storage::read_entries`] returns them: as
/// many as fit, stopping at the first that does not. Fails with `BufferTooSmall` only if not
/// even the first fits; no entries at all give a count of 0, which the caller turns into the
/// error for the range it was asked.
pub fn pack_entries<'a>(
    buf: &mut [u8],
    entries: impl IntoIterator<Item = EntryRef<'a>>,
) -> Result<ReadEntries, StorageError> {
    let mut got = ReadEntries { count: 0, bytes: 0 };
    for e in entries {
        match crate::entry::encode(&e, &mut buf[got.bytes..]) {
            Ok(n) => {
                got.bytes += n;
                got.count += 1;
            }
            Err(_) if got.count > 0 => break,
            Err(_) => {
                let needed = e.encoded_len();
                return Err(StorageError::BufferTooSmall { needed });
            }
        }
    }
    Ok(got)
}

impl From<CodecError> for StorageError {
    fn from(_: CodecError) -> Self {
        StorageError::Corrupt { location: 0 }
    }
}

impl core::fmt::Display for StorageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StorageError::Compacted(i) => {
                write!(f, "log index {} was compacted into a snapshot", i)
            }
            StorageError::Unavailable(i) => write!(f, "log index {} is past the end of the log", i),
            StorageError::NotContiguous { expected, given } => {
                write!(
                    f,
                    "append of index {} does not continue the log (expected {})",
                    given, expected
                )
            }
            StorageError::BufferTooSmall { needed } => {
                write!(f, "buffer too small: {} bytes needed", needed)
            }
            StorageError::Full => f.write_str("storage is full"),
            StorageError::NoResources => f.write_str(
                "the system is short of file descriptors or memory; nothing was written, retry later",
            ),
            StorageError::Corrupt { location } => {
                write!(
                    f,
                    "stored data is corrupt at offset {} (run `shoal-inspect verify`)",
                    location
                )
            }
            StorageError::SnapshotState => f.write_str("snapshot operation out of order"),
            StorageError::NoSnapshot => f.write_str("no snapshot stored"),
            StorageError::Io => f.write_str("device error"),
        }
    }
}

/// Read access to the log that the Raft state machine needs while deciding.
pub trait LogView {
    /// Index of the entry the current snapshot ends at (0 if there is none).
    fn snapshot_index(&self) -> LogIndex;
    /// Index of the last entry (the snapshot's index when the log is empty).
    fn last_index(&self) -> LogIndex;
    /// Term of the entry at `index`. `index == snapshot_index()` gives the snapshot's term;
    /// `index == 0` gives 0. Errors with `Compacted` or `Unavailable` outside the log.
    fn term(&self, index: LogIndex) -> Result<Term>;
}

/// Entries read by [`Storage::read_entries`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadEntries {
    /// Number of entries read (at least one when `Ok`).
    pub count: u32,
    /// Bytes of `buf` used, entries encoded back to back with [`crate::entry::encode`].
    pub bytes: usize,
}

/// One group's durable state: hard state, log and snapshot. See the module docs for the
/// durability contract every implementation must keep.
pub trait Storage: LogView {
    /// The hard state as last saved.
    fn hard_state(&self) -> HardState;
    /// Replace the hard state (durable after the next [`Storage::sync`]).
    fn save_hard_state(&mut self, hs: &HardState) -> Result<()>;
    /// Replace the hard state when only its commit index moved and every entry up to it is
    /// durable (rule 10): the save need not be durable with the next [`Storage::sync`], and a
    /// storage may write it whenever it is cheapest. By default a [`Storage::save_hard_state`].
    fn save_commit_hint(&mut self, hs: &HardState) -> Result<()> {
        self.save_hard_state(hs)
    }
    /// Append one entry; `entry.index` must be `last_index() + 1`. A refusal (`Full`,
    /// `NoResources`) leaves the log as it was (rule 9).
    fn append(&mut self, entry: &EntryRef<'_>) -> Result<()>;
    /// Remove every entry with index ≥ `from` (`from` > snapshot index).
    fn truncate_suffix(&mut self, from: LogIndex) -> Result<()>;
    /// Allow discarding every entry with index ≤ `upto` (≤ the snapshot index).
    fn compact_prefix(&mut self, upto: LogIndex) -> Result<()>;
    /// Copy entries `lo..=hi` into `buf`, stopping early at the first entry that does not fit.
    fn read_entries(&self, lo: LogIndex, hi: LogIndex, buf: &mut [u8]) -> Result<ReadEntries>;
    /// Make every write so far durable (hard state, entries, truncations). `Full` or
    /// `NoResources` means nothing was made durable and the writes still wait (rule 9).
    fn sync(&mut self) -> Result<()>;

    /// The current snapshot's metadata, if one exists.
    fn snapshot_meta(&self) -> Option<SnapshotMeta>;
    /// Start writing a new snapshot (replaces any partly written one).
    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<()>;
    /// Write `data` at `offset` of the snapshot being written (offsets arrive in order).
    fn snapshot_write(&mut self, offset: u64, data: &[u8]) -> Result<()>;
    /// Durably make the written snapshot current. Log entries after its index that match are
    /// kept; if the log does not contain the snapshot's last entry, the log is emptied.
    fn snapshot_finish(&mut self) -> Result<()>;
    /// Read snapshot data at `offset` into `buf`; returns bytes read (0 at the end).
    fn snapshot_read(&self, offset: u64, buf: &mut [u8]) -> Result<usize>;
}
