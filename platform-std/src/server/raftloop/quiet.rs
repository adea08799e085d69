//! Idle groups cost nearly nothing: the active set and node liveness.
//!
//! A group whose leader quiesced it (the core's `quiesce` feature) sends nothing and needs no
//! timer. The loop ticks and flushes only the groups in the **active set**: a group enters it
//! with any input (a peer frame, a client request, a finished sync or snapshot, a wake) and
//! leaves it only when its driver says it is idle ([`Node::is_idle`]: quiet, nothing to send,
//! sync, apply or read) and the loop holds nothing for it either ([`group_idle`]); one whose
//! snapshot falls due later by time is put back then ([`RaftLoop::wake_due`]). Group 0 (the
//! cluster's records) is always active.
//!
//! Liveness of a quiet group's members is kept by node, not by group: every heartbeat interval
//! this node pings every peer node ([`Body::Ping`]), and any frame from a node counts as word
//! from it. A node silent for an election timeout wakes every quiet group it is a member of, so
//! they elect (or find their leader) as a group that never slept would.

use super::*;
use shoal_core::io::Transport;
use std::collections::BTreeSet;
use wire::{Body, FrameHeader, WIRE_VERSION};

/// Node liveness for quiet groups.
#[derive(Default)]
pub(super) struct Liveness {
    /// When each peer node was last heard from (any frame).
    heard: HashMap<NodeId, u64>,
    /// Peers silent for an election timeout or more.
    silent: BTreeSet<NodeId>,
    /// Every other node some group here names (from [`RaftLoop::refresh_hello`]).
    pub(super) peers: Vec<NodeId>,
    last_ping: u64,
    last_sweep: u64,
}

/// Whether the loop may stop ticking and flushing `g` until an input arrives: it has nothing
/// to do ([`group_settled`]) and is not group 0.
pub(super) fn group_idle(g: &Group) -> bool {
    g.id != 0 && group_settled(g)
}

/// Whether `g` has nothing to do until an input arrives: it may let go of the memory it keeps
/// for a busy group, and write out what it held in the sync journal. Group 0 stays active even
/// then.
pub(super) fn group_settled(g: &Group) -> bool {
    g.frozen.is_none()
        && g.node.is_idle()
        && g.syncs_inflight == 0
        && g.pending_writes.is_empty()
        && g.pending_sys.is_empty()
        && g.index_reads.is_empty()
        && g.lease_reads.is_empty()
        && g.parked_reads.is_empty()
        && g.member_op.is_none()
        && g.node.snapshot_in_flight().is_none()
        // Leases expire by time, and the leader proposes their expiry.
        && g.node.state_machine().store().lease_count() == 0
}

impl Liveness {
    /// Whether node `id` was heard from within `ms` of `now`.
    pub(super) fn heard_within(&self, id: NodeId, now: u64, ms: u64) -> bool {
        self.heard
            .get(&id)
            .is_some_and(|at| now.saturating_sub(*at) < ms)
    }
}

impl RaftLoop {
    /// Put back in the active set the idle groups whose wake-up time (a snapshot due by
    /// time) has come.
    pub(super) fn wake_due(&mut self, now: u64) {
        while let Some(&(at, id)) = self.wake_at.first() {
            if at > now {
                break;
            }
            self.wake_at.pop_first();
            if self.groups.contains_key(&id) {
                self.active.insert(id);
            }
        }
    }

    /// Word from node `from` (any frame).
    pub(super) fn heard_from(&mut self, from: NodeId, now: u64) {
        self.live.heard.insert(from, now);
        if self.live.silent.remove(&from) {
            log::info!("node {from} is heard from again");
        }
    }

    /// Ping every peer node each heartbeat interval; wake the quiet groups of a node silent
    /// for an election timeout (and again every election timeout while it stays silent, for
    /// groups that went quiet meanwhile).
    pub(super) fn liveness(&mut self, now: u64) {
        let hb = self.cfg.raft.heartbeat_interval_ms;
        if now < self.live.last_ping + hb {
            return;
        }
        self.live.last_ping = now;
        let me = self.cfg.node_id;
        let mut buf = [0u8; wire::FRAME_PREFIX_RESERVE + 16];
        let mut transport = self.net.transport();
        for &to in &self.live.peers {
            let header = FrameHeader {
                version: WIRE_VERSION,
                cluster_id: self.cfg.cluster_id,
                group: 0,
                from: me,
                to,
            };
            if let Ok(n) = wire::encode(&header, &Body::Ping, &[], &mut buf) {
                // A full queue drops it: the peer is busy with frames from us anyway.
                let _ = transport.send(to, &buf[..n]);
            }
        }
        let timeout = self.cfg.raft.election_timeout_ms;
        let mut newly = Vec::new();
        for &p in &self.live.peers {
            let heard = self.live.heard.get(&p).copied().unwrap_or(0);
            if now.saturating_sub(heard) >= timeout && self.live.silent.insert(p) {
                log::info!(
                    "node {p} silent for {} ms: waking its quiet groups",
                    now - heard
                );
                newly.push(p);
            }
        }
        let sweep = !self.live.silent.is_empty() && now >= self.live.last_sweep + timeout;
        if newly.is_empty() && !sweep {
            return;
        }
        self.live.last_sweep = now;
        let silent: Vec<NodeId> = self.live.silent.iter().copied().collect();
        let mut woke = Vec::new();
        for g in self.groups.values_mut() {
            let r = g.node.raft();
            if g.frozen.is_none()
                && r.is_quiet()
                && r.membership().all().iter().any(|m| silent.contains(m))
            {
                g.node.wake(now);
                woke.push(g.id);
            }
        }
        if !woke.is_empty() {
            log::info!(
                "woke {} quiet groups of silent nodes {silent:?}",
                woke.len()
            );
        }
        self.active.extend(woke);
    }
}
