//! Whether this node can vouch for its groups: the one verdict behind `/health`, the health
//! metrics and `shoalctl health` ([`HealthInfo`]).
//!
//! A node is healthy when it is running, every group it hosts is healthy by the core's
//! definition ([`shoal_core::raft::Health`]: a leader it heard from within an election
//! timeout, a leader being one a quorum acknowledged within the lease window), and no alarm is
//! raised (a full disk refuses writes: traffic belongs elsewhere until it clears). Every
//! refusal names the group and the reason, in a word and in words.

use shoal_client::protocol::{AlarmInfo, GroupHealth, HealthInfo};
use shoal_core::raft::{Health, Raft};
use shoal_core::{GroupId, NodeId};

use crate::storage::space::{SpaceAlarm, SpaceStats};

/// The health of group `group`, whose Raft state is `raft`, at `now_ms` (the core's clock).
pub fn group_health<P: shoal_core::plant::Plant>(
    group: GroupId,
    raft: &Raft<P>,
    now_ms: u64,
) -> GroupHealth {
    let h = raft.health(now_ms);
    GroupHealth {
        group,
        healthy: h.is_healthy(),
        role: raft.role().name().to_string(),
        leader: raft.leader(),
        reason: h.reason().to_string(),
        detail: describe(h, raft),
    }
}

/// `h` in words, with the timeouts it was measured against.
fn describe<P: shoal_core::plant::Plant>(h: Health, raft: &Raft<P>) -> String {
    let et = raft.config().election_timeout_ms;
    let window = raft.lease_window_ms();
    match h {
        Health::Leading => {
            format!("leads; a quorum acknowledged it within the lease window ({window} ms)")
        }
        Health::Following { leader } => {
            format!("follows node {leader}, heard from within the election timeout ({et} ms)")
        }
        Health::NotMember => "this node is not in the group's configuration: it was removed, \
                              or has not been added yet"
            .to_string(),
        Health::NoLeader => "no leader known: an election is under way, or cannot succeed \
                             (no quorum of voters reachable)"
            .to_string(),
        Health::LeaderSilent { leader, silent_ms } => format!(
            "follows node {leader} but has not heard from it for {silent_ms} ms (election \
             timeout {et} ms)"
        ),
        Health::NoQuorum {
            silent_ms: Some(ms),
        } => format!(
            "leads, but no quorum acknowledged it for {ms} ms (lease window {window} ms): it is \
             cut off from a majority"
        ),
        Health::NoQuorum { silent_ms: None } => {
            "leads, but no quorum acknowledged it yet in this term".to_string()
        }
    }
}

/// The alarms the space policy raised.
pub fn alarms(space: Option<&SpaceStats>) -> Vec<AlarmInfo> {
    let Some(st) = space else {
        return Vec::new();
    };
    let Some(alarm) = st.alarm else {
        return Vec::new();
    };
    let detail = match alarm {
        SpaceAlarm::NoSpace => format!(
            "the disk is full or under the reserve ({} bytes free, reserve {} bytes, \
             --space-reserve-mb): writes that need a new log segment are refused with NoSpace; \
             reads go on; writes are taken again once space returns",
            st.free_bytes, st.reserve_bytes
        ),
        SpaceAlarm::Quota => format!(
            "the data dir reached its quota ({} of {} bytes, --space-quota-mb): writes that \
             need a new log segment are refused with NoSpace; reads go on",
            st.used_bytes, st.quota_bytes
        ),
    };
    vec![AlarmInfo {
        name: alarm.name().to_string(),
        detail,
    }]
}

/// The node's verdict from its groups' and alarms.
pub fn verdict(
    node_id: NodeId,
    running: bool,
    groups: Vec<GroupHealth>,
    alarms: Vec<AlarmInfo>,
) -> HealthInfo {
    let healthy =
        running && !groups.is_empty() && groups.iter().all(|g| g.healthy) && alarms.is_empty();
    HealthInfo {
        node_id,
        healthy,
        running,
        groups,
        alarms,
    }
}
