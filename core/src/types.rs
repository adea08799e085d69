//! Plain identifiers and small value types shared by every module.

use serde::{Deserialize, Serialize};

/// A node's identity inside a cluster. `0` is reserved for "nobody".
pub type NodeId = u64;
/// A Raft term.
pub type Term = u64;
/// A position in the replicated log; the first entry has index 1, `0` means "before the log".
pub type LogIndex = u64;
/// A Raft group hosted by a node (multi-raft). Group `0` is the default group.
pub type GroupId = u32;
/// A cluster's identity; every frame carries it and a mismatch is refused.
pub type ClusterId = u64;

/// The node id that means "no node" (no vote cast, no known leader).
pub const NO_NODE: NodeId = 0;

/// The state Raft must make durable before acting on it (see [`crate::storage::Storage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, or [`NO_NODE`].
    pub vote: NodeId,
    /// The highest index known committed (a hint for faster restarts; never required for safety).
    pub commit: LogIndex,
}

/// What a log entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum EntryKind {
    /// An application command for the state machine.
    Normal = 0,
    /// An empty entry a new leader appends so that it can commit entries of earlier terms.
    Noop = 1,
    /// A membership configuration ([`crate::membership::Membership`], postcard-encoded).
    Config = 2,
}

/// The role a node plays in one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking for pre-votes: a trial election that does not raise the term.
    PreCandidate,
    /// Asking for votes in a new term.
    Candidate,
    /// Leads the group.
    Leader,
    /// Receives the log but never votes or campaigns.
    Observer,
}

impl Role {
    /// The role's name in status lines, logs and metrics, so that every platform says the same.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Observer => "observer",
        }
    }
}

/// Metadata describing a snapshot: the last log entry it covers and the membership at that point.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot covers.
    pub index: LogIndex,
    /// Term of that entry.
    pub term: Term,
    /// The membership in force at `index`.
    pub membership: crate::membership::Membership,
    /// Total size of the snapshot data in bytes.
    pub size_bytes: u64,
    /// CRC-32C of the whole snapshot data.
    pub crc: u32,
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn every_role_has_its_own_name() {
        let all = [
            Role::Follower,
            Role::PreCandidate,
            Role::Candidate,
            Role::Leader,
            Role::Observer,
        ];
        let names = all.map(Role::name);
        assert_eq!(
            names,
            [
                "follower",
                "pre-candidate",
                "candidate",
                "leader",
                "observer"
            ]
        );
    }
}
