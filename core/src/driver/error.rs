//! Why the driver failed, and how bad that is ([`NodeError::severity`], the failure policy of
//! [`crate::fault`]).

use crate::fault::{Fault, Severity};
use crate::io::SnapshotError;
use crate::limits::ConfigError;
use crate::raft::RaftError;
use crate::storage::StorageError;
use crate::types::{ClusterId, GroupId, LogIndex, NodeId};
use crate::wire::WireError;

/// Why the driver failed. The driver's inputs return only fatal ones (the node must stop):
/// the rest are absorbed by the failure policy, counted in [`super::NodeStats::faults`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeError {
    /// A storage call failed (see [`StorageError::severity`]).
    Storage(StorageError),
    /// Making writes durable failed. Fatal, unless the storage refused before anything was
    /// synced (`Full`, `NoResources`: the writes wait and the next flush tries again); after a
    /// failed device sync what the page cache or the device holds is unknown, and a retry
    /// could report durable what is not.
    Sync(StorageError),
    /// Raft refused a peer's message, or its storage failed (see [`RaftError::severity`]).
    Raft(RaftError),
    /// A frame did not decode.
    Wire(WireError),
    /// A frame from another cluster.
    WrongCluster {
        /// Our cluster.
        local: ClusterId,
        /// The frame's cluster.
        remote: ClusterId,
    },
    /// A frame for another group.
    WrongGroup {
        /// Our group.
        local: GroupId,
        /// The frame's group.
        remote: GroupId,
    },
    /// A frame addressed to another node.
    WrongNode {
        /// Our node id.
        local: NodeId,
        /// The frame's destination.
        remote: NodeId,
    },
    /// A frame that is not a Raft message (handshakes belong to the transport).
    NotRaft,
    /// The state machine could not write or restore a snapshot.
    Snapshot(SnapshotError),
    /// The snapshot in this node's storage does not match its checksum.
    SnapshotChecksum {
        /// CRC recorded in the metadata.
        expected: u32,
        /// CRC of the data read.
        found: u32,
    },
    /// A configuration value is out of range.
    Config(ConfigError),
    /// The storage holds no configuration and none was given to bootstrap with.
    NoMembership,
    /// The log holds a configuration entry that does not decode.
    BadConfigEntry(LogIndex),
}

impl NodeError {
    /// How bad it is. This is the failure policy (see [`crate::fault`]): a peer's bad frame
    /// is [`Severity::Peer`], a full medium [`Severity::Degraded`], and only a local
    /// durability fault [`Severity::Fatal`].
    pub fn severity(&self) -> Severity {
        Severity::of(self.fault())
    }

    /// The cause it is counted under, unless it is fatal.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            NodeError::Storage(e) | NodeError::Sync(e) => e.fault(),
            NodeError::Raft(e) => e.fault(),
            NodeError::Wire(_) => Some(Fault::BadFrame),
            NodeError::WrongCluster { .. } => Some(Fault::WrongCluster),
            NodeError::WrongGroup { .. } => Some(Fault::WrongGroup),
            NodeError::WrongNode { .. } => Some(Fault::WrongNode),
            NodeError::NotRaft => Some(Fault::NotRaft),
            NodeError::Snapshot(_)
            | NodeError::SnapshotChecksum { .. }
            | NodeError::Config(_)
            | NodeError::NoMembership
            | NodeError::BadConfigEntry(_) => None,
        }
    }
}

/// `impl From<$error> for NodeError` for each `$variant($error)`: the error wrapped in that
/// variant, so `?` lifts the driver's sources into it.
macro_rules! node_error_from {
    ($($variant:ident($error:ty)),* $(,)?) => {
        $(impl From<$error> for NodeError {
            fn from(e: $error) -> Self {
                NodeError::$variant(e)
            }
        })*
    };
}

node_error_from!(
    Storage(StorageError),
    Raft(RaftError),
    Config(ConfigError),
    Wire(WireError),
);

impl core::fmt::Display for NodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NodeError::Storage(e) => write!(f, "storage: {}", e),
            NodeError::Sync(e) => write!(f, "storage sync failed: {}", e),
            NodeError::Raft(e) => write!(f, "raft: {}", e),
            NodeError::Wire(e) => write!(f, "wire: {}", e),
            NodeError::WrongCluster { local, remote } => {
                write!(
                    f,
                    "frame from cluster {} refused: this node is in cluster {}",
                    remote, local
                )
            }
            NodeError::WrongGroup { local, remote } => {
                write!(f, "frame for group {} delivered to group {}", remote, local)
            }
            NodeError::WrongNode { local, remote } => {
                write!(
                    f,
                    "frame addressed to node {} delivered to node {}",
                    remote, local
                )
            }
            NodeError::NotRaft => f.write_str("frame is not a raft message"),
            NodeError::Snapshot(e) => write!(f, "state machine snapshot: {:?}", e),
            NodeError::SnapshotChecksum { expected, found } => {
                write!(
                    f,
                    "snapshot checksum mismatch: metadata says {:#010x}, data gives {:#010x}",
                    expected, found
                )
            }
            NodeError::Config(e) => write!(f, "config: {}", e),
            NodeError::NoMembership => {
                f.write_str("no membership in storage and none given to bootstrap")
            }
            NodeError::BadConfigEntry(i) => write!(f, "configuration entry {} does not decode", i),
        }
    }
}
