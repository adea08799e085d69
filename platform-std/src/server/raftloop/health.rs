//! The node's health and disk space as the raft thread sees them: the verdict `/health` and
//! `Request::Health` answer with, and what a refused write says.

use super::*;
use crate::server::health;
use shoal_client::protocol::{EncodedHealth, HealthInfo};
use shoal_core::storage::StorageError;

/// The node's health judged for clients' answers ([`RaftLoop::judged_health`]).
pub(super) struct JudgedHealth {
    /// When it was judged.
    at: u64,
    /// The health, serialized (a `NodeStatus` answer carries it).
    pub(super) encoded: EncodedHealth,
    /// The answer to a `Health` request.
    answer: EncodedResponse,
}

impl RaftLoop {
    /// The health in the admin view, judged again only for the groups whose health can have
    /// changed: awake ones, and those flushed since (`dirty`). A quiet, idle group's stands (it
    /// is healthy while quiet), so thousands of idle groups cost no words each publish.
    pub(super) fn publish_health(
        &self,
        v: &mut crate::server::admin::AdminView,
        dirty: &std::collections::BTreeSet<GroupId>,
    ) {
        let same_groups = v.health.as_ref().is_some_and(|h| {
            h.groups
                .iter()
                .map(|g| g.group)
                .eq(self.groups.keys().copied())
        });
        let Some(h) = v.health.as_mut().filter(|_| same_groups) else {
            v.health = Some(self.health());
            return;
        };
        let now = self.now_ms();
        for (gh, g) in h.groups.iter_mut().zip(self.groups.values()) {
            if dirty.contains(&g.id) || !g.node.raft().is_quiet() {
                *gh = health::group_health(g.id, g.node.raft(), now);
            }
        }
        let space = self.data.space().map(|s| s.stats());
        let groups = std::mem::take(&mut h.groups);
        *h = health::verdict(
            self.cfg.node_id,
            !self.draining,
            groups,
            health::alarms(space.as_ref()),
        );
    }

    /// The answer to a client's `Health` request, serialized ([`RaftLoop::judged_health`]).
    pub(super) fn health_answer(&mut self) -> &EncodedResponse {
        self.health_counts.0 += 1;
        &self.judged_health().answer
    }

    /// The node's health for clients' answers, serialized: judged again once it is
    /// [`HEALTH_ANSWER_MS`] old, and reused until then. It names every group: judged and
    /// serialized for each request (~0.25 ms of the raft thread at 1,000 groups), one client
    /// asking again and again (`Health`, or `NodeStatus`, which needs no login either) took
    /// the thread from every other client.
    pub(super) fn judged_health(&mut self) -> &JudgedHealth {
        let now = self.now_ms();
        let fresh = |j: &JudgedHealth| now < j.at + HEALTH_ANSWER_MS;
        if !self.health_answer.as_ref().is_some_and(fresh) {
            self.health_counts.1 += 1;
            let health = self.health();
            let judged = EncodedHealth::new(&health)
                .and_then(|encoded| {
                    let answer = EncodedResponse::health(&encoded)?;
                    Ok((encoded, answer))
                })
                .unwrap_or_else(|e| {
                    // Not expected (serializing into memory does not fail): `NodeStatus`
                    // answers then carry an unhealthy health naming nothing, `Health` answers
                    // an error that says why.
                    let short = HealthInfo {
                        node_id: health.node_id,
                        running: health.running,
                        ..HealthInfo::default()
                    };
                    log::error!("the node's health could not be encoded: {e}");
                    let encoded = EncodedHealth::new(&short).expect("an empty health encodes");
                    let answer = EncodedResponse::new(&error(
                        ErrorCode::Internal,
                        format!("the health answer could not be encoded: {e}"),
                    ))
                    .expect("an error answer encodes");
                    (encoded, answer)
                });
            self.health_answer = Some(JudgedHealth {
                at: now,
                encoded: judged.0,
                answer: judged.1,
            });
        }
        self.health_answer.as_ref().expect("set above")
    }

    /// Whether this node can vouch for every group it hosts, and why not.
    pub(super) fn health(&self) -> HealthInfo {
        let now = self.now_ms();
        let groups = self
            .groups
            .values()
            .map(|g| health::group_health(g.id, g.node.raft(), now))
            .collect();
        let space = self.data.space().map(|s| s.stats());
        health::verdict(
            self.cfg.node_id,
            !self.draining,
            groups,
            health::alarms(space.as_ref()),
        )
    }
}

/// The answer to a write the storage refused, or `None` when the refusal is fatal (the
/// failure policy then stops the node).
pub(super) fn storage_refusal(node_id: NodeId, e: StorageError) -> Option<Response> {
    match e {
        StorageError::Full => Some(error(
            ErrorCode::NoSpace,
            format!(
                "node {node_id} refused the write: its disk is full (or its data dir at its \
                 quota), and nothing of the write was applied; reads are still served, and \
                 writes are taken again once space returns (see /health)"
            ),
        )),
        StorageError::NoResources => Some(unavailable(&format!(
            "node {node_id} is short of file descriptors or memory for the moment; nothing \
             was applied; retry"
        ))),
        e if e.severity() != Severity::Fatal => Some(error(ErrorCode::Internal, e.to_string())),
        _ => None,
    }
}

/// Stop the node on a fatal storage error met outside the driver's own inputs (a proposal).
pub(super) fn stop_on_fatal(group: GroupId, e: &ProposeError) {
    if let ProposeError::Storage(s) = e {
        if s.severity() == Severity::Fatal {
            log::error!("group {group}: fatal: {e}; stopping");
            std::process::exit(1);
        }
    }
}
