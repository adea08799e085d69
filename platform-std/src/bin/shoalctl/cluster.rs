//! The cluster's shape and state from the shell: membership (`member`), leadership
//! (`leader`), snapshots (`snapshot`), a node's or every member's view (`status`), `health`,
//! and groups (`group`).

use clap::Subcommand;
use serde_json::{json, Value};
use shoal_client::{Client, ClientError};

use super::answer::{written, Answer};
use super::{input, ops};

/// `member`: the group's membership.
#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// List the members.
    List,
    /// Add a node (promoted to voter once caught up, unless --observer).
    Add {
        /// The node's id.
        id: u64,
        /// Its raft address (HOST:PORT).
        raft_addr: String,
        /// Keep it a non-voting observer.
        #[arg(long)]
        observer: bool,
    },
    /// Make an observer a voter.
    Promote {
        /// The node's id.
        id: u64,
    },
    /// Remove a node.
    Remove {
        /// The node's id.
        id: u64,
    },
    /// Abandon a membership change stuck between its prepare and commit steps: the group
    /// leaves its joint configuration for the one before the change.
    Abort,
}

/// `leader`: leadership.
#[derive(Subcommand, Debug)]
pub enum LeaderCommand {
    /// Move leadership to voter ID.
    Transfer {
        /// The target node's id.
        id: u64,
    },
}

/// `snapshot save`: a snapshot copied here.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Take a snapshot on the contacted node and copy it here as a portable file (as
    /// `shoal-inspect export` writes) that `shoal-inspect snapshot` checks and
    /// `shoal-inspect import` restores.
    Save {
        /// The file to write.
        file: std::path::PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// `group`: the groups of the cluster.
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List the groups on the contacted node.
    List,
    /// Define group --group for the whole cluster with these voters; every one of them
    /// creates it (the definition goes through group 0's leader).
    Create {
        /// Voters by node id, comma-separated (e.g. 1,2,3); each must be a member of group 0.
        members: String,
    },
    /// Remove group --group from the cluster: every member stops it and deletes its data after
    /// the servers' --group-remove-grace. Group 0 cannot be removed.
    Remove,
}

/// Run one `member` command.
pub async fn member(client: &Client, command: &MemberCommand) -> Result<Answer, ClientError> {
    Ok(match command {
        MemberCommand::List => {
            let members = client.members().await?;
            let text = input::member_table(&members);
            let items: Vec<Value> = members.iter().map(member_json).collect();
            Answer::new(json!({"ok": true, "members": items}), text)
        }
        MemberCommand::Add {
            id,
            raft_addr,
            observer,
        } => written(client.add_member(*id, raft_addr.clone(), *observer).await?),
        MemberCommand::Promote { id } => written(client.promote_member(*id).await?),
        MemberCommand::Remove { id } => written(client.remove_member(*id).await?),
        MemberCommand::Abort => written(client.abort_member_change().await?),
    })
}

/// Run one `leader` command.
pub async fn leader(client: &Client, command: &LeaderCommand) -> Result<Answer, ClientError> {
    let LeaderCommand::Transfer { id } = command;
    Ok(written(client.transfer_leader(*id).await?))
}

/// `snapshot` (take one on the contacted node) or `snapshot save FILE` (and copy it here).
pub async fn snapshot(
    client: &Client,
    action: Option<&SnapshotCommand>,
) -> Result<Answer, ClientError> {
    let Some(SnapshotCommand::Save { file, force }) = action else {
        return Ok(written(client.snapshot().await?));
    };
    let saved = ops::save(client, file, *force).await?;
    let h = &saved.header;
    Ok(Answer::new(
        json!({"ok": true, "file": file.display().to_string(), "node_id": h.source_node,
               "group": h.group, "index": h.index, "term": h.term,
               "data_bytes": h.data_bytes, "data_crc": format!("{:#010x}", h.data_crc),
               "file_bytes": saved.file_bytes}),
        format!(
            "saved the snapshot of node {} group {} at index {} (term {}) to {}: {} bytes, data CRC-32C {:#010x} checked",
            h.source_node, h.group, h.index, h.term, file.display(), saved.file_bytes, h.data_crc
        ),
    ))
}

/// `status`: the contacted node's view of the group; with `cluster`, every member's (exit 1
/// unless all answered and are healthy).
pub async fn status(client: &Client, cluster: bool) -> Result<Answer, ClientError> {
    if cluster {
        let rows = ops::cluster(client).await?;
        let all_well = rows.iter().all(ops::Row::healthy);
        return Ok(
            Answer::new(ops::cluster_json(&rows), ops::cluster_table(&rows))
                .with_code(if all_well { 0 } else { 1 }),
        );
    }
    let s = client.status().await?;
    let members: Vec<Value> = s.members.iter().map(member_json).collect();
    let j = json!({
        "ok": true,
        "node_id": s.node_id, "group": s.group, "role": s.role, "term": s.term,
        "leader": s.leader, "commit": s.commit, "applied": s.applied,
        "last_index": s.last_index, "snapshot_index": s.snapshot_index,
        "members": members,
    });
    let mut t = format!(
        "node {} group {}: {} term {} leader {} commit {} applied {} last {} snapshot {}",
        s.node_id,
        s.group,
        s.role,
        s.term,
        s.leader,
        s.commit,
        s.applied,
        s.last_index,
        s.snapshot_index
    );
    for m in &s.members {
        t.push_str(&format!("\n  {}\t{}\t{}", m.id, m.role, m.raft_addr));
    }
    Ok(Answer::new(j, t))
}

/// `health`: whether the contacted node vouches for every group it hosts (exit 1 if not).
pub async fn health(client: &Client) -> Result<Answer, ClientError> {
    let h = client.health().await?;
    let groups: Vec<Value> = h
        .groups
        .iter()
        .map(|g| {
            json!({"group": g.group, "healthy": g.healthy, "role": g.role,
                   "leader": g.leader, "reason": g.reason, "detail": g.detail})
        })
        .collect();
    let alarms: Vec<Value> = h
        .alarms
        .iter()
        .map(|a| json!({"alarm": a.name, "detail": a.detail}))
        .collect();
    let reasons = h.reasons();
    let j = json!({
        "ok": h.healthy, "healthy": h.healthy, "node_id": h.node_id,
        "running": h.running, "groups": groups, "alarms": alarms, "reasons": reasons,
    });
    let t = health_words(&h);
    Ok(Answer::new(j, t).with_code(if h.healthy { 0 } else { 1 }))
}

/// Groups `health` names one by one in words; past it, a healthy node's are counted by role
/// (a node may host thousands; `-o json` lists every one).
const HEALTH_GROUPS_NAMED: usize = 16;
/// Reasons an unhealthy node's `health` gives in words; past it, how many more there are.
const HEALTH_REASONS_SHOWN: usize = 64;

/// `health` in words: each group while they are few, else a count per role; when unhealthy,
/// each reason (an unhealthy group, an alarm), the first [`HEALTH_REASONS_SHOWN`] of them.
fn health_words(h: &shoal_client::protocol::HealthInfo) -> String {
    if h.healthy && h.groups.len() <= HEALTH_GROUPS_NAMED {
        let each: Vec<String> = h
            .groups
            .iter()
            .map(|g| format!("group {}: {}, leader {}", g.group, g.role, g.leader))
            .collect();
        return format!("healthy: node {}; {}", h.node_id, each.join("; "));
    }
    if h.healthy {
        let mut roles = std::collections::BTreeMap::<&str, usize>::new();
        for g in &h.groups {
            *roles.entry(g.role.as_str()).or_default() += 1;
        }
        let roles: Vec<String> = roles.iter().map(|(r, n)| format!("{n} {r}")).collect();
        return format!(
            "healthy: node {}; {} groups ({})",
            h.node_id,
            h.groups.len(),
            roles.join(", ")
        );
    }
    let reasons = h.reasons();
    let mut t = format!(
        "unhealthy: node {}\n  {}",
        h.node_id,
        reasons
            .iter()
            .take(HEALTH_REASONS_SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    if reasons.len() > HEALTH_REASONS_SHOWN {
        t.push_str(&format!(
            "\n  and {} more (-o json names every group)",
            reasons.len() - HEALTH_REASONS_SHOWN
        ));
    }
    t
}

/// Run one `group` command on the group `--group` names.
pub async fn group(client: &Client, command: &GroupCommand) -> Result<Answer, ClientError> {
    Ok(match command {
        GroupCommand::List => {
            let groups = client.groups().await?;
            let t = groups
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            Answer::new(json!({"ok": true, "groups": groups}), t)
        }
        GroupCommand::Create { members } => {
            let members =
                parse_members(members).map_err(|message| ClientError::BadRequest { message })?;
            written(client.create_group(client.config().group, members).await?)
        }
        GroupCommand::Remove => written(client.remove_group(client.config().group).await?),
    })
}

/// A member as JSON.
fn member_json(m: &shoal_client::MemberInfo) -> Value {
    json!({"id": m.id, "raft_addr": m.raft_addr, "client_addr": m.client_addr, "role": m.role,
           "match_index": m.match_index})
}

/// `group create`'s voters: node ids, comma separated.
fn parse_members(s: &str) -> Result<Vec<u64>, String> {
    let ids: Vec<u64> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p.contains('=') {
                return Err(format!(
                    "member `{p}`: name members by node id only (1,2,3); their addresses come from the cluster's member records"
                ));
            }
            p.parse::<u64>()
                .map_err(|_| format!("member `{p}` is not a node id"))
        })
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Err("name at least one member".into());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_client::protocol::{GroupHealth, HealthInfo};

    /// A node hosting `n` groups, even ones led here, the `bad` first ones unhealthy.
    fn node(n: u32, bad: u32) -> HealthInfo {
        HealthInfo {
            node_id: 4,
            healthy: bad == 0,
            running: true,
            groups: (0..n)
                .map(|g| GroupHealth {
                    group: g,
                    healthy: g >= bad,
                    role: if g % 2 == 0 { "leader" } else { "follower" }.into(),
                    leader: 4,
                    reason: if g >= bad { "ok" } else { "no_quorum" }.into(),
                    detail: "d".into(),
                })
                .collect(),
            alarms: Vec::new(),
        }
    }

    #[test]
    fn a_few_groups_are_named_and_thousands_counted_by_role() {
        assert_eq!(
            health_words(&node(2, 0)),
            "healthy: node 4; group 0: leader, leader 4; group 1: follower, leader 4"
        );
        assert_eq!(
            health_words(&node(1001, 0)),
            "healthy: node 4; 1001 groups (500 follower, 501 leader)"
        );
    }

    #[test]
    fn an_unhealthy_node_names_its_unhealthy_groups_up_to_a_bound() {
        let t = health_words(&node(1001, 2));
        assert_eq!(
            t,
            "unhealthy: node 4\n  group 0: no_quorum (d)\n  group 1: no_quorum (d)"
        );
        let t = health_words(&node(1001, 1000));
        assert_eq!(t.lines().count(), 1 + HEALTH_REASONS_SHOWN + 1, "{t}");
        assert!(t.contains("group 63: no_quorum"), "{t}");
        assert!(!t.contains("group 64:"), "{t}");
        assert!(
            t.ends_with("and 936 more (-o json names every group)"),
            "{t}"
        );
    }
}
