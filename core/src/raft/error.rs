//! Why a call into [`super::Raft`] was refused or failed.

use crate::membership::MembershipError;
use crate::storage::StorageError;
use crate::types::{LogIndex, NodeId, NO_NODE};

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

/// A fatal error while stepping: storage failed or a peer broke the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RaftError {
    /// A storage call failed; the node must stop (its log may be half-written).
    Storage(StorageError),
    /// An entry in a message does not decode.
    MalformedEntries,
    /// A leader asked to truncate committed entries: the cluster's safety is broken.
    CommittedTruncation(LogIndex),
    /// A configuration entry does not decode.
    BadConfigEntry(LogIndex),
}

impl From<StorageError> for RaftError {
    fn from(e: StorageError) -> Self {
        RaftError::Storage(e)
    }
}

impl core::fmt::Display for RaftError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RaftError::Storage(e) => write!(f, "storage: {}", e),
            RaftError::MalformedEntries => f.write_str("append message carries malformed entries"),
            RaftError::CommittedTruncation(i) => {
                write!(f, "refusing to truncate committed entry {}", i)
            }
            RaftError::BadConfigEntry(i) => write!(f, "configuration entry {} does not decode", i),
        }
    }
}
