//! Operator views and copies: the whole cluster at a glance (`status --cluster`), and a
//! snapshot of a running node saved to a portable file (`snapshot save`).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use shoal_client::protocol::ErrorCode;
use shoal_client::{Client, ClientConfig, ClientError, MemberInfo, NodeStatusInfo};
use shoal_core::record::CRC32C;
use shoal_std::storage::export::{encode_header, publish, temp_path, ExportHeader};

/// Bytes asked for in each chunk of `snapshot save` (the node may send fewer): what either
/// side holds of the snapshot at a time.
pub const SAVE_CHUNK_BYTES: u64 = 1 << 20;

/// One member's row: what it answered, or why it did not.
pub struct Row {
    /// The member as the contacted node lists it.
    pub member: MemberInfo,
    /// Its own status, or why it could not be asked.
    pub answer: Result<NodeStatusInfo, String>,
}

impl Row {
    /// Whether the member answered and is healthy.
    pub fn healthy(&self) -> bool {
        matches!(&self.answer, Ok(s) if s.health.healthy)
    }
}

/// Ask each member the contacted node lists for its status, at its client address.
pub async fn cluster(client: &Client) -> Result<Vec<Row>, ClientError> {
    let members = client.members().await?;
    let mut rows = Vec::with_capacity(members.len());
    for member in members {
        let answer = if member.client_addr.is_empty() {
            Err("unreachable: no client address is known for it".to_string())
        } else {
            ask(client.config(), &member.client_addr)
                .await
                .map_err(|e| format!("unreachable: {e}"))
        };
        rows.push(Row { member, answer });
    }
    Ok(rows)
}

/// One node's status, asked at `addr` only (no other endpoint stands in for it).
async fn ask(base: &ClientConfig, addr: &str) -> Result<NodeStatusInfo, ClientError> {
    let per_node = base.timeout.min(Duration::from_secs(3));
    let config = ClientConfig {
        endpoints: vec![addr.to_string()],
        group: base.group,
        timeout: per_node,
        attempt_timeout: per_node,
        connect_timeout: base.connect_timeout.min(per_node),
        // Every member's client port is reached as the endpoints were (same CA, same client
        // certificate, same user).
        tls: base.tls.clone(),
        user: base.user.clone(),
        cluster: base.cluster,
    };
    Client::new(config)?.node_status().await
}

/// The rows as JSON.
pub fn cluster_json(rows: &[Row]) -> Value {
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            let m = &r.member;
            match &r.answer {
                Ok(s) => json!({
                    "id": m.id, "member_role": m.role, "reachable": true,
                    "raft_addr": s.raft_addr, "client_addr": s.client_addr,
                    "role": s.status.role, "term": s.status.term, "leader": s.status.leader,
                    "commit": s.status.commit, "applied": s.status.applied,
                    "last_index": s.status.last_index, "snapshot_index": s.status.snapshot_index,
                    "log_bytes": s.log_bytes, "snapshot_bytes": s.snapshot_bytes,
                    "version": s.version, "joint": s.joint, "healthy": s.health.healthy,
                    "reasons": s.health.reasons(),
                }),
                Err(e) => json!({
                    "id": m.id, "member_role": m.role, "reachable": false,
                    "raft_addr": m.raft_addr, "client_addr": m.client_addr,
                    "healthy": false, "error": e,
                }),
            }
        })
        .collect();
    let healthy = rows.iter().all(Row::healthy);
    json!({"ok": healthy, "healthy": healthy, "members": items})
}

/// Unhealthy groups a row of the table names (a node may host thousands; `health` against
/// the node, or `-o json`, names every one).
const HEALTH_REASONS_IN_ROW: usize = 3;

/// A member's health in its row: `healthy`, or why not, naming a few unhealthy groups.
fn health_cell(h: &shoal_client::protocol::HealthInfo) -> String {
    if h.healthy {
        return "healthy".to_string();
    }
    let (reasons, more) = h.reasons_at_most(HEALTH_REASONS_IN_ROW);
    let mut words = format!("unhealthy: {}", reasons.join("; "));
    if more > 0 {
        words.push_str(&format!("; and {more} more unhealthy groups"));
    }
    words
}

/// The rows as a table with a header.
pub fn cluster_table(rows: &[Row]) -> String {
    let header = [
        "ID",
        "RAFT ADDRESS",
        "CLIENT ADDRESS",
        "ROLE",
        "TERM",
        "LEADER",
        "COMMIT",
        "APPLIED",
        "LAST",
        "LOG",
        "SNAPSHOT",
        "VERSION",
        "HEALTH",
    ];
    let mut table = vec![header.map(String::from).to_vec()];
    for r in rows {
        let m = &r.member;
        table.push(match &r.answer {
            Ok(s) => {
                let st = &s.status;
                let health = health_cell(&s.health);
                let role = if s.joint {
                    format!("{} (joint)", st.role)
                } else {
                    st.role.clone()
                };
                vec![
                    m.id.to_string(),
                    s.raft_addr.clone(),
                    s.client_addr.clone(),
                    role,
                    st.term.to_string(),
                    st.leader.to_string(),
                    st.commit.to_string(),
                    st.applied.to_string(),
                    st.last_index.to_string(),
                    bytes(s.log_bytes),
                    bytes(s.snapshot_bytes),
                    s.version.clone(),
                    health,
                ]
            }
            Err(e) => {
                let or_dash = super::input::or_dash;
                let mut row = vec![
                    m.id.to_string(),
                    or_dash(&m.raft_addr),
                    or_dash(&m.client_addr),
                ];
                row.extend(std::iter::repeat_n("-".to_string(), 9));
                row.push(e.clone());
                row
            }
        });
    }
    super::input::table(&table)
}

/// A byte count for people (`512 B`, `3.1 MiB`).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// What `snapshot save` wrote.
pub struct Saved {
    /// The file's header.
    pub header: ExportHeader,
    /// Bytes of the file.
    pub file_bytes: u64,
}

/// Save a snapshot of the contacted node to `path` as a portable file: the node takes a
/// snapshot, then sends it chunk by chunk while this writes `path.tmp` and checks the data's
/// CRC-32C; only a complete, checked and synced file is renamed to `path`.
pub async fn save(client: &Client, path: &Path, force: bool) -> Result<Saved, ClientError> {
    // The file cannot be written, or what arrived is not the snapshot: exit 1.
    let fail = |message: String| ClientError::Refused {
        code: ErrorCode::Internal,
        message,
    };
    if path.exists() && !force {
        return Err(ClientError::BadRequest {
            message: format!(
                "{} already exists; choose another file or pass --force to replace it",
                path.display()
            ),
        });
    }
    let first = client.snapshot_chunk(0, 0, SAVE_CHUNK_BYTES).await?;
    let header = ExportHeader {
        cluster_id: first.cluster_id,
        source_node: first.node_id,
        group: first.group,
        index: first.index,
        term: first.term,
        membership: first.membership.clone(),
        digest: first.digest,
        data_bytes: first.data_bytes,
        data_crc: first.data_crc,
        created_unix_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let tmp = temp_path(path);
    let io = |what: &str, e: std::io::Error| fail(format!("cannot {what} {}: {e}", tmp.display()));
    let mut file = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
    let written = async {
        let head = encode_header(&header);
        file.write_all(&head).map_err(|e| io("write", e))?;
        let mut crc = CRC32C.digest();
        let mut chunk = first;
        let mut offset = 0u64;
        loop {
            if chunk.node_id != header.source_node || chunk.index != header.index || chunk.offset != offset {
                return Err(ClientError::Refused {
                    code: ErrorCode::Conflict,
                    message: format!(
                        "the snapshot changed under the save (node {} index {} offset {} instead of node {} index {} offset {offset}); save again",
                        chunk.node_id, chunk.index, chunk.offset, header.source_node, header.index
                    ),
                });
            }
            crc.update(&chunk.data);
            file.write_all(&chunk.data).map_err(|e| io("write", e))?;
            offset += chunk.data.len() as u64;
            if offset >= header.data_bytes {
                break;
            }
            if chunk.data.is_empty() {
                return Err(fail(format!("node {} sent an empty chunk at offset {offset} of {}", header.source_node, header.data_bytes)));
            }
            chunk = client.snapshot_chunk(header.index, offset, SAVE_CHUNK_BYTES).await?;
        }
        let got = crc.finalize();
        if got != header.data_crc || offset != header.data_bytes {
            return Err(fail(format!(
                "the saved data does not match the snapshot: {offset} bytes with CRC-32C {got:#010x}, the node's snapshot has {} bytes with {:#010x}",
                header.data_bytes, header.data_crc
            )));
        }
        file.sync_all().map_err(|e| io("fsync", e))?;
        Ok(head.len() as u64 + offset)
    }
    .await;
    drop(file);
    match written {
        Ok(file_bytes) => {
            publish(&tmp, path).map_err(fail)?;
            Ok(Saved { header, file_bytes })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_client::protocol::{AlarmInfo, GroupHealth, HealthInfo};

    #[test]
    fn a_rows_health_names_a_few_unhealthy_groups_and_counts_the_rest() {
        let group = |g: u32, healthy: bool| GroupHealth {
            group: g,
            healthy,
            role: "follower".into(),
            leader: 0,
            reason: if healthy { "ok" } else { "no_leader" }.into(),
            detail: "no leader".into(),
        };
        let mut h = HealthInfo {
            node_id: 2,
            healthy: false,
            running: true,
            groups: (0..1_000).map(|g| group(g, g % 10 != 0)).collect(),
            alarms: vec![AlarmInfo {
                name: "no_space".into(),
                detail: "full".into(),
            }],
        };
        assert_eq!(
            health_cell(&h),
            "unhealthy: group 0: no_leader (no leader); group 10: no_leader (no leader); \
             group 20: no_leader (no leader); alarm no_space: full; and 97 more unhealthy groups"
        );
        h.groups.truncate(25);
        assert_eq!(
            health_cell(&h),
            "unhealthy: group 0: no_leader (no leader); group 10: no_leader (no leader); \
             group 20: no_leader (no leader); alarm no_space: full"
        );
        h.healthy = true;
        assert_eq!(health_cell(&h), "healthy");
    }
}
