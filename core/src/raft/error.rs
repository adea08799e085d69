//! Why a call into [`super::Raft`] was refused or failed.

use crate::fault::{Fault, Severity};
use crate::membership::MembershipError;
use crate::storage::StorageError;
use crate::types::{LogIndex, NodeId, Term, NO_NODE};

/// Why a proposal was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProposeError {
    /// This node is not the leader; `leader` is the known leader or [`NO_NODE`].
    NotLeader {
        /// The leader this node knows of.
        leader: NodeId,
    },
    /// A leader transfer is in progress; retry on the new leader.
    TransferInProgress,
    /// Too many proposals are not yet committed (`max_pending_proposals`).
    Busy,
    /// The command is larger than one message may carry.
    TooLarge,
    /// A membership change is already in progress (or not in the state the request needs).
    ConfigChangeInProgress,
    /// The requested membership is invalid.
    BadMembership(MembershipError),
    /// Storage refused the write.
    Storage(StorageError),
}

impl core::fmt::Display for ProposeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProposeError::NotLeader { leader } if *leader == NO_NODE => f.write_str("not the leader; no leader known"),
            ProposeError::NotLeader { leader } => write!(f, "not the leader; the leader is node {}", leader),
            ProposeError::TransferInProgress => f.write_str("leader transfer in progress; retry shortly"),
            ProposeError::Busy => f.write_str("too many proposals pending; retry shortly"),
            ProposeError::TooLarge => f.write_str("command larger than max_bytes_per_message"),
            ProposeError::ConfigChangeInProgress => {
                f.write_str("a membership change is in progress or the group is not in the state this step needs")
            }
            ProposeError::BadMembership(e) => write!(f, "invalid membership: {}", e),
            ProposeError::Storage(e) => write!(f, "storage: {}", e),
        }
    }
}

/// Why a read could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReadError {
    /// No leader is known to forward the read to.
    NoLeader,
    /// Not the leader (lease reads are served by the leader only).
    NotLeader {
        /// The leader this node knows of.
        leader: NodeId,
    },
    /// The leader lease is not valid now; use a ReadIndex read.
    LeaseExpired,
    /// Too many read rounds are outstanding (`max_read_rounds` in flight and one more waiting,
    /// already sent by the periodic heartbeat: the peers are not answering).
    Busy,
}

impl core::fmt::Display for ReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReadError::NoLeader => f.write_str("no leader known"),
            ReadError::NotLeader { leader } => {
                write!(f, "not the leader; the leader is node {}", leader)
            }
            ReadError::LeaseExpired => f.write_str("leader lease not valid; use a ReadIndex read"),
            ReadError::Busy => f.write_str("too many reads outstanding; retry shortly"),
        }
    }
}

/// Why a leader transfer could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TransferError {
    /// Only the leader can transfer leadership.
    NotLeader,
    /// The target is not a voter of the group (or is this node).
    BadTarget,
    /// A transfer is already in progress.
    InProgress,
}

impl core::fmt::Display for TransferError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TransferError::NotLeader => "only the leader can transfer leadership",
            TransferError::BadTarget => "the target must be another voter of the group",
            TransferError::InProgress => "a leader transfer is already in progress",
        })
    }
}

/// Why a call into Raft failed: its storage failed, or a peer's message broke the protocol
/// (and was refused before it changed anything). [`RaftError::severity`] says which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RaftError {
    /// A storage call failed (see [`StorageError::severity`]).
    Storage(StorageError),
    /// An entry in an `Append` does not decode.
    MalformedEntries,
    /// An `Append`'s tail does not hold exactly the `declared` number of entries.
    EntryCount {
        /// The count the message declares.
        declared: u32,
    },
    /// An `Append`'s entry is not the one after the entry before it.
    NotContiguous {
        /// The index that entry must have.
        expected: LogIndex,
        /// The index it has.
        found: LogIndex,
    },
    /// A term no honest leader sends: an entry newer than the message's term or older than the
    /// entry before it.
    ImpossibleTerm {
        /// Where.
        index: LogIndex,
        /// The term found there.
        term: Term,
    },
    /// An entry larger than any message this node accepts (`max_bytes_per_message`).
    EntryTooLarge {
        /// Where.
        index: LogIndex,
        /// Its encoded size.
        bytes: usize,
    },
    /// A configuration entry does not decode.
    BadConfigEntry(LogIndex),
    /// A leader asked to cut an entry this node knows committed.
    CommittedTruncation(LogIndex),
    /// A snapshot chunk runs past the snapshot's size, or the last chunk ends short of it.
    SnapshotSize {
        /// The size the snapshot's header declares.
        size_bytes: u64,
        /// Where the chunk ends.
        end: u64,
    },
    /// A received snapshot's data does not match the CRC in its header.
    SnapshotChecksum {
        /// CRC the header declares.
        expected: u32,
        /// CRC of the data received.
        found: u32,
    },
    /// A snapshot that cannot exist: index or term 0, or a term newer than its sender's.
    ImpossibleSnapshot {
        /// The snapshot's index.
        index: LogIndex,
        /// The snapshot's term.
        term: Term,
    },
    /// An `Append` or snapshot chunk of this leader's own term from another node: two leaders
    /// of one term cannot exist.
    RivalLeader(Term),
}

impl From<StorageError> for RaftError {
    fn from(e: StorageError) -> Self {
        RaftError::Storage(e)
    }
}

impl RaftError {
    /// How bad it is: a storage error as its own severity says, anything else a peer's fault.
    pub fn severity(&self) -> Severity {
        Severity::of(self.fault())
    }

    /// The cause it is counted under, unless it is fatal.
    pub fn fault(&self) -> Option<Fault> {
        Some(match self {
            RaftError::Storage(e) => return e.fault(),
            RaftError::MalformedEntries => Fault::MalformedEntries,
            RaftError::EntryCount { .. } => Fault::EntryCount,
            RaftError::NotContiguous { .. } => Fault::NotContiguous,
            RaftError::ImpossibleTerm { .. } => Fault::ImpossibleTerm,
            RaftError::EntryTooLarge { .. } => Fault::EntryTooLarge,
            RaftError::BadConfigEntry(_) => Fault::BadConfigEntry,
            RaftError::CommittedTruncation(_) => Fault::CommittedTruncation,
            RaftError::SnapshotSize { .. } => Fault::SnapshotSize,
            RaftError::SnapshotChecksum { .. } => Fault::SnapshotChecksum,
            RaftError::ImpossibleSnapshot { .. } => Fault::ImpossibleSnapshot,
            RaftError::RivalLeader(_) => Fault::RivalLeader,
        })
    }
}

impl core::fmt::Display for RaftError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RaftError::Storage(e) => write!(f, "storage: {}", e),
            RaftError::MalformedEntries => f.write_str("append message carries malformed entries"),
            RaftError::EntryCount { declared } => {
                write!(f, "append message declares {} entries but carries another number", declared)
            }
            RaftError::NotContiguous { expected, found } => {
                write!(f, "append message carries entry {} where {} must come", found, expected)
            }
            RaftError::ImpossibleTerm { index, term } => {
                write!(f, "append message carries entry {} with impossible term {}", index, term)
            }
            RaftError::EntryTooLarge { index, bytes } => write!(
                f,
                "entry {} of {} bytes is larger than max_bytes_per_message",
                index, bytes
            ),
            RaftError::BadConfigEntry(i) => write!(f, "configuration entry {} does not decode", i),
            RaftError::CommittedTruncation(i) => {
                write!(f, "refusing to truncate committed entry {}", i)
            }
            RaftError::SnapshotSize { size_bytes, end } => write!(
                f,
                "snapshot chunk ends at byte {} of a snapshot of {} bytes",
                end, size_bytes
            ),
            RaftError::SnapshotChecksum { expected, found } => write!(
                f,
                "received snapshot does not match its checksum: header says {:#010x}, data gives {:#010x}",
                expected, found
            ),
            RaftError::ImpossibleSnapshot { index, term } => {
                write!(f, "snapshot at index {} term {} cannot exist", index, term)
            }
            RaftError::RivalLeader(t) => {
                write!(f, "another node claims to lead term {}, which this node leads", t)
            }
        }
    }
}
