//! The connection handshake ("raft ping"): before any Raft message, each end of a new connection
//! sends a [`Hello`] naming its cluster, itself, who it believes it dialed, and the members it
//! believes in. [`check`] refuses a mismatch with an error that names both sides' values, so an
//! operator sees at once which node is misconfigured.

use crate::membership::NodeSet;
use crate::types::{ClusterId, GroupId, NodeId, NO_NODE};
use serde::{Deserialize, Serialize};

/// What a node says about itself when a connection opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Hello {
    /// The sender's cluster.
    pub cluster_id: ClusterId,
    /// The sender's node id.
    pub node_id: NodeId,
    /// The node id the sender expects at the other end ([`NO_NODE`] when accepting).
    pub expected_peer: NodeId,
    /// The group whose membership is compared.
    pub group: GroupId,
    /// Every member (voter or observer) the sender believes the group has; empty for a node
    /// that is joining and knows no configuration yet.
    pub members: NodeSet,
}

/// Why a handshake was refused. Each variant carries both sides' values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HandshakeError {
    /// The clusters differ.
    #[error("cluster id mismatch: this node is in cluster {local}, the peer in cluster {remote}")]
    ClusterMismatch {
        /// Our cluster id.
        local: ClusterId,
        /// The peer's cluster id.
        remote: ClusterId,
    },
    /// The peer is not the node we dialed (an address now belongs to another node).
    #[error("wrong node at this address: expected node {expected}, found node {found} (did an address change?)")]
    WrongNode {
        /// The node id we expected at that address.
        expected: NodeId,
        /// The node id that answered.
        found: NodeId,
    },
    /// The peer claims our own node id.
    #[error("the peer claims this node's own id {0}")]
    SameNodeId(NodeId),
    /// The peer is not in our member configuration.
    #[error("node {remote} is not a member here (members: {:?})", .local_members.as_slice())]
    NotAMember {
        /// The peer's id.
        remote: NodeId,
        /// The members we believe in.
        local_members: NodeSet,
    },
    /// We are not in the peer's member configuration.
    #[error("this node ({local}) is not a member in the peer's configuration (peer's members: {:?})", .remote_members.as_slice())]
    UnknownToPeer {
        /// Our id.
        local: NodeId,
        /// The members the peer believes in.
        remote_members: NodeSet,
    },
}

/// Check a peer's [`Hello`] against our own. `local_members` empty means we are joining and
/// accept any configuration that names us.
pub fn check(local: &Hello, remote: &Hello) -> Result<(), HandshakeError> {
    if local.cluster_id != remote.cluster_id {
        return Err(HandshakeError::ClusterMismatch {
            local: local.cluster_id,
            remote: remote.cluster_id,
        });
    }
    if remote.node_id == local.node_id {
        return Err(HandshakeError::SameNodeId(remote.node_id));
    }
    if local.expected_peer != NO_NODE && local.expected_peer != remote.node_id {
        return Err(HandshakeError::WrongNode {
            expected: local.expected_peer,
            found: remote.node_id,
        });
    }
    if remote.expected_peer != NO_NODE && remote.expected_peer != local.node_id {
        return Err(HandshakeError::WrongNode {
            expected: remote.expected_peer,
            found: local.node_id,
        });
    }
    if !local.members.is_empty() && !local.members.contains(&remote.node_id) {
        return Err(HandshakeError::NotAMember {
            remote: remote.node_id,
            local_members: local.members.clone(),
        });
    }
    if !remote.members.is_empty() && !remote.members.contains(&local.node_id) {
        return Err(HandshakeError::UnknownToPeer {
            local: local.node_id,
            remote_members: remote.members.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    fn hello(cluster: u64, id: u64, expect: u64, members: &[u64]) -> Hello {
        Hello {
            cluster_id: cluster,
            node_id: id,
            expected_peer: expect,
            group: 0,
            members: NodeSet::from_slice(members).unwrap(),
        }
    }

    #[test]
    fn matching_peers_pass() {
        assert_eq!(
            check(&hello(1, 1, 2, &[1, 2, 3]), &hello(1, 2, 0, &[1, 2, 3])),
            Ok(())
        );
        // A joining node knows no members yet.
        assert_eq!(
            check(&hello(1, 1, 4, &[1, 2, 3, 4]), &hello(1, 4, 0, &[])),
            Ok(())
        );
    }

    #[test]
    fn every_mismatch_names_both_sides() {
        let e = check(&hello(1, 1, 2, &[1, 2]), &hello(9, 2, 0, &[1, 2])).unwrap_err();
        assert_eq!(
            e,
            HandshakeError::ClusterMismatch {
                local: 1,
                remote: 9
            }
        );
        assert!(e.to_string().contains("cluster 1") && e.to_string().contains("cluster 9"));

        let e = check(&hello(1, 1, 2, &[1, 2, 3]), &hello(1, 3, 0, &[1, 2, 3])).unwrap_err();
        assert_eq!(
            e,
            HandshakeError::WrongNode {
                expected: 2,
                found: 3
            }
        );
        assert!(e.to_string().contains("expected node 2, found node 3"));

        let e = check(&hello(1, 1, 0, &[1, 2]), &hello(1, 5, 0, &[1, 2, 5])).unwrap_err();
        assert!(matches!(e, HandshakeError::NotAMember { remote: 5, .. }));
        assert!(e.to_string().contains("node 5") && e.to_string().contains("[1, 2]"));

        let e = check(&hello(1, 1, 0, &[1, 2]), &hello(1, 2, 0, &[2, 3])).unwrap_err();
        assert!(matches!(e, HandshakeError::UnknownToPeer { local: 1, .. }));

        let e = check(&hello(1, 1, 0, &[1]), &hello(1, 1, 0, &[1])).unwrap_err();
        assert_eq!(e, HandshakeError::SameNodeId(1));
    }
}
