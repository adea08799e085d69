//! What status, health and lease listings report: a node's view of its groups, its health
//! and alarms, a cluster's rows and the leases DtKV holds.

use serde::{Deserialize, Serialize};
use shoal_core::{GroupId, LogIndex, NodeId, Term};

/// A lease as [`Response::Leases`](super::Response::Leases) reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// Its id (the raft index of its grant).
    pub id: LogIndex,
    /// Its time to live.
    pub ttl_ms: u64,
    /// When it ends unless kept alive (leader clock ms).
    pub deadline_ms: u64,
    /// What is left of it at the read: `deadline_ms` minus the replicated clock (the time of
    /// the last write applied).
    pub remaining_ms: u64,
    /// Nodes and locks tied to it.
    pub tied: u32,
    /// Their keys (asked for one lease only; empty in a list of all).
    pub keys: Vec<Vec<u8>>,
}

/// A member of a group as status reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node id.
    pub id: NodeId,
    /// Raft address.
    pub raft_addr: String,
    /// `voter` or `observer`.
    pub role: String,
    /// Match index as the leader sees it (leader only).
    pub match_index: Option<LogIndex>,
    /// Client address, empty when the member's record does not give one.
    pub client_addr: String,
}

/// A node's view of one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// This node.
    pub node_id: NodeId,
    /// The group.
    pub group: GroupId,
    /// `leader`, `follower`, `candidate`, `pre-candidate` or `observer`.
    pub role: String,
    /// Current term.
    pub term: Term,
    /// Known leader (0: none).
    pub leader: NodeId,
    /// Commit index.
    pub commit: LogIndex,
    /// Applied index.
    pub applied: LogIndex,
    /// Last log index.
    pub last_index: LogIndex,
    /// Snapshot index.
    pub snapshot_index: LogIndex,
    /// Members with their roles (and match index on the leader).
    pub members: Vec<MemberInfo>,
}

/// A node's health, as `/health` and `shoalctl health` report it: healthy when it is running,
/// every group it hosts has a leader it heard from within an election timeout (a leader: one a
/// quorum acknowledged within the lease window), and no alarm is raised. The default is an
/// unhealthy node 0 naming nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthInfo {
    /// This node.
    pub node_id: NodeId,
    /// Whether it is healthy (see above).
    pub healthy: bool,
    /// False once it is shutting down.
    pub running: bool,
    /// Each group it hosts.
    pub groups: Vec<GroupHealth>,
    /// Alarms raised (each makes the node unhealthy).
    pub alarms: Vec<AlarmInfo>,
}

impl HealthInfo {
    /// One line per reason the node is unhealthy, naming the group or alarm (empty when it is
    /// healthy).
    pub fn reasons(&self) -> Vec<String> {
        self.reasons_at_most(usize::MAX).0
    }

    /// [`HealthInfo::reasons`] naming at most `groups` unhealthy groups (a node may host
    /// thousands), and how many unhealthy groups it left out.
    pub fn reasons_at_most(&self, groups: usize) -> (Vec<String>, usize) {
        let mut out = Vec::new();
        if !self.running {
            out.push("shutting down".to_string());
        }
        if self.groups.is_empty() {
            out.push("hosts no group".to_string());
        }
        let mut unhealthy = self.groups.iter().filter(|g| !g.healthy);
        for g in unhealthy.by_ref().take(groups) {
            out.push(format!("group {}: {} ({})", g.group, g.reason, g.detail));
        }
        let left_out = unhealthy.count();
        for a in &self.alarms {
            out.push(format!("alarm {}: {}", a.name, a.detail));
        }
        (out, left_out)
    }
}

/// One group in [`HealthInfo`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupHealth {
    /// The group.
    pub group: GroupId,
    /// Whether this node can vouch for it.
    pub healthy: bool,
    /// This node's role in it.
    pub role: String,
    /// The leader it knows (0: none).
    pub leader: NodeId,
    /// `ok`, or why not: `not_member` (removed, or not yet added), `no_leader`,
    /// `leader_silent` (not heard from within an election timeout), `no_quorum` (a leader no
    /// quorum acknowledged within the lease window).
    pub reason: String,
    /// The same in words, with the times involved.
    pub detail: String,
}

/// A raised alarm in [`HealthInfo`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmInfo {
    /// `no_space` (the disk is full, or under the reserve) or `quota` (the data dir reached
    /// its quota).
    pub name: String,
    /// What it means, in words.
    pub detail: String,
}

/// One node's row of `shoalctl status --cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatusInfo {
    /// The node's view of the group.
    pub status: StatusInfo,
    /// Its raft address.
    pub raft_addr: String,
    /// Its client address.
    pub client_addr: String,
    /// Its build version (`shoald --version`).
    pub version: String,
    /// Bytes of the group's log segments on its disk.
    pub log_bytes: u64,
    /// Bytes of the group's snapshot files on its disk.
    pub snapshot_bytes: u64,
    /// Whether the group is in a joint configuration (a membership change between its
    /// prepare and commit steps).
    pub joint: bool,
    /// Its health.
    pub health: HealthInfo,
}
