//! What operators read off a running node beyond its status: the whole row of `shoalctl
//! status --cluster` ([`RaftLoop::node_status`]) and a snapshot streamed to the client in
//! chunks for `shoalctl snapshot save` ([`RaftLoop::snapshot_save`]). A chunk is read from
//! the snapshot file on disk when it is asked for, so the node holds one chunk per request.

use std::os::unix::fs::FileExt;

use shoal_client::protocol::{HealthInfo, NodeStatusInfo, SnapshotChunk};

use super::*;
use crate::storage::scan::{list_snapshots, snap_dir};

impl RaftLoop {
    /// This node's row of the cluster status for group `gid`, serialized: the node's health
    /// in it is the one judged for `Health` answers ([`RaftLoop::judged_health`]), or why
    /// there is no row.
    pub(super) fn node_status(&mut self, gid: GroupId) -> Result<EncodedResponse, Response> {
        let node_id = self.cfg.node_id;
        let Some(g) = self.groups.get(&gid) else {
            return Err(unknown_group(gid, node_id));
        };
        let (log_bytes, snapshot_bytes) = self.sizes.get(&gid).copied().unwrap_or((0, 0));
        let info = NodeStatusInfo {
            status: status(g, node_id),
            raft_addr: self.cfg.raft_addr.clone(),
            client_addr: self.cfg.advertise_client_addr.clone(),
            version: crate::VERSION.to_string(),
            log_bytes,
            snapshot_bytes,
            joint: g.node.raft().membership().joint,
            // Replaced by the judged health's bytes.
            health: HealthInfo::default(),
        };
        let health = &self.judged_health().encoded;
        EncodedResponse::node_status(info, health).map_err(|e| {
            error(
                ErrorCode::Internal,
                format!("the node status could not be encoded: {e}"),
            )
        })
    }

    /// One chunk of a snapshot of group `gid` (see [`Request::SnapshotSave`]).
    pub(super) fn snapshot_save(
        &mut self,
        gid: GroupId,
        index: LogIndex,
        offset: u64,
        max: u64,
    ) -> Response {
        let node_id = self.cfg.node_id;
        let now = self.now_ms();
        let cap = self.hub.limits().max_answer_bytes as u64;
        self.active.insert(gid);
        let Some(g) = self.groups.get_mut(&gid) else {
            return unknown_group(gid, node_id);
        };
        if g.frozen.is_some() {
            // A follower waiting a millisecond or so for its sync takes no input meanwhile.
            return unavailable("the group is syncing; retry");
        }
        let mut digest = 0;
        let index = if index == 0 {
            if let Err(refusal) = take_snapshot(g, now, node_id) {
                return refusal;
            }
            let taken = g.node.raft().snapshot_index();
            // Right after the snapshot the state is the snapshot's, unless nothing was taken
            // because the state had moved on without one (then the digest stays unknown).
            if g.node.applied() == taken {
                digest = g.node.state_machine().store().digest();
            }
            taken
        } else {
            index
        };
        if index == 0 {
            return error(
                ErrorCode::Conflict,
                format!("group {gid} on node {node_id} has applied nothing yet: there is no state to save"),
            );
        }
        let dir = snap_dir(&group_dir(self.data.path(), gid));
        let found =
            list_snapshots(&dir).map(|all| all.into_iter().rev().find(|s| s.meta.index == index));
        let info = match found {
            Ok(Some(info)) => info,
            Ok(None) => {
                return error(
                    ErrorCode::Conflict,
                    format!("node {node_id} no longer keeps the snapshot at index {index} of group {gid} (a newer one replaced it); save again"),
                )
            }
            Err(e) => return error(ErrorCode::Internal, format!("reading the snapshots of group {gid}: {e}")),
        };
        let size = info.meta.size_bytes;
        if offset > size {
            return error(
                ErrorCode::BadRequest,
                format!("offset {offset} is past the end of the snapshot's {size} bytes"),
            );
        }
        let want = if max == 0 { cap } else { max.min(cap) };
        let len = want.min(size - offset);
        let mut data = vec![0u8; len as usize];
        let read = std::fs::File::open(&info.path)
            .and_then(|f| f.read_exact_at(&mut data, info.data_offset + offset));
        if let Err(e) = read {
            return error(
                ErrorCode::Internal,
                format!("reading {}: {e}", info.path.display()),
            );
        }
        Response::SnapshotChunk(Box::new(SnapshotChunk {
            cluster_id: self.cfg.cluster_id,
            node_id,
            group: gid,
            index,
            term: info.meta.term,
            membership: info.meta.membership,
            digest,
            data_bytes: size,
            data_crc: info.meta.crc,
            offset,
            data,
        }))
    }
}

/// Take a snapshot of `g` now; the refusal to answer when it cannot be taken. A fatal storage
/// fault stops the node, as everywhere.
pub(super) fn take_snapshot(
    g: &mut Group,
    now: u64,
    node_id: NodeId,
) -> Result<LogIndex, Response> {
    match g.node.snapshot_now(now) {
        Ok(i) => Ok(i.unwrap_or_else(|| g.node.raft().snapshot_index())),
        Err(e) if e.severity() == Severity::Fatal => {
            log::error!("group {}: fatal: snapshot: {e}; stopping", g.id);
            std::process::exit(1);
        }
        Err(NodeError::Storage(s)) => Err(storage_refusal(node_id, s)
            .unwrap_or_else(|| error(ErrorCode::Internal, s.to_string()))),
        Err(e) => Err(error(ErrorCode::Internal, format!("snapshot: {e}"))),
    }
}

pub(super) fn unknown_group(gid: GroupId, node_id: NodeId) -> Response {
    error(
        ErrorCode::UnknownGroup,
        format!("group {gid} is not hosted on node {node_id}"),
    )
}
