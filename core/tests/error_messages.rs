//! The words an operator reads for each refusal: handshake, multi-group and frame errors.

use shoal_core::driver::NodeError;
use shoal_core::handshake::HandshakeError;
use shoal_core::membership::NodeSet;
use shoal_core::multi::MultiError;
use shoal_core::record::RecordError;
use shoal_core::wire::{WireError, WIRE_VERSION};

fn set(ids: &[u64]) -> NodeSet {
    NodeSet::from_slice(ids).expect("a few members")
}

#[test]
fn handshake_refusals_name_both_sides() {
    let cases = [
        (
            HandshakeError::ClusterMismatch {
                local: 7,
                remote: 9,
            },
            "cluster id mismatch: this node is in cluster 7, the peer in cluster 9",
        ),
        (
            HandshakeError::WrongNode {
                expected: 2,
                found: 3,
            },
            "wrong node at this address: expected node 2, found node 3 (did an address change?)",
        ),
        (
            HandshakeError::SameNodeId(4),
            "the peer claims this node's own id 4",
        ),
        (
            HandshakeError::NotAMember {
                remote: 5,
                local_members: set(&[1, 2, 3]),
            },
            "node 5 is not a member here (members: [1, 2, 3])",
        ),
        (
            HandshakeError::UnknownToPeer {
                local: 6,
                remote_members: set(&[1, 2]),
            },
            "this node (6) is not a member in the peer's configuration (peer's members: [1, 2])",
        ),
    ];
    for (e, words) in cases {
        assert_eq!(e.to_string(), words);
    }
}

#[test]
fn group_and_frame_errors_say_what_was_wrong() {
    let cases = [
        (
            MultiError::Full { max_groups: 8 }.to_string(),
            "this node already hosts its maximum of 8 groups",
        ),
        (
            MultiError::Exists(3).to_string(),
            "group 3 already exists on this node",
        ),
        (
            MultiError::UnknownGroup(4).to_string(),
            "group 4 is not hosted on this node",
        ),
        (
            MultiError::Node(5, NodeError::NotRaft).to_string(),
            "group 5: frame is not a raft message",
        ),
        (
            WireError::Record(RecordError::BadLength(70_000)).to_string(),
            "bad frame: impossible record length 70000",
        ),
        (
            WireError::Malformed.to_string(),
            "frame header or message does not decode",
        ),
        (
            WireError::BufferTooSmall.to_string(),
            "send buffer too small for the frame",
        ),
    ];
    for (shown, words) in cases {
        assert_eq!(shown, words);
    }
    assert_eq!(
        WireError::UnknownVersion(9).to_string(),
        format!("wire version 9 is not supported (this build speaks {WIRE_VERSION})")
    );
}
