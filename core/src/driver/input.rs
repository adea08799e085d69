//! Input from peers and from time, and the failure policy applied to it: an error a peer's
//! frame caused is counted and dropped here, so only a fatal one ever reaches the platform.

use super::{Node, NodeBuffer, NodeError};
use crate::io::{StateMachine, Transport};
use crate::message::Message;
use crate::plant::Plant;
use crate::raft::StepOutcome;
use crate::storage::Storage;
use crate::types::{NodeId, SnapshotMeta};
use crate::wire::{self, Body};

impl<S: Storage, T: Transport, M: StateMachine, B: NodeBuffer, P: Plant> Node<S, T, M, B, P> {
    /// Advance time. Returns an error only when the node must stop.
    pub fn tick(&mut self, now_ms: u64) -> Result<(), NodeError> {
        let r = self.raft.tick(now_ms, &mut self.store);
        self.apply_policy(now_ms, r.map_err(NodeError::from))
    }

    /// Decode and handle one frame from the network. A frame that is refused (it does not
    /// decode, is for another cluster, group or node, or breaks the protocol) changes nothing
    /// and is counted in [`super::NodeStats::faults`]; an error is returned only when the node
    /// must stop (see [`crate::fault`]).
    pub fn handle_frame(&mut self, now_ms: u64, bytes: &[u8]) -> Result<(), NodeError> {
        match wire::decode(bytes) {
            Ok((frame, used)) => self.handle_decoded(now_ms, &frame, used),
            Err(e) => self.apply_policy(now_ms, Err(e.into())),
        }
    }

    /// Handle a frame the platform already decoded (to route it to its group, say) with the
    /// same checks and the same policy as [`Node::handle_frame`], without decoding and
    /// checksumming it again. `frame_bytes` is its encoded length, for the byte counters.
    pub fn handle_decoded(
        &mut self,
        now_ms: u64,
        frame: &wire::Frame<'_>,
        frame_bytes: usize,
    ) -> Result<(), NodeError> {
        self.stats.frames_in += 1;
        self.stats.bytes_in += frame_bytes as u64;
        let h = &frame.header;
        let refused = if h.cluster_id != self.cfg.cluster_id {
            Err(NodeError::WrongCluster {
                local: self.cfg.cluster_id,
                remote: h.cluster_id,
            })
        } else if h.group != self.cfg.group {
            Err(NodeError::WrongGroup {
                local: self.cfg.group,
                remote: h.group,
            })
        } else if h.to != self.cfg.node_id {
            Err(NodeError::WrongNode {
                local: self.cfg.node_id,
                remote: h.to,
            })
        } else if let Body::Raft(msg) = &frame.body {
            return self.receive(now_ms, h.from, msg, frame.tail);
        } else {
            Err(NodeError::NotRaft)
        };
        self.apply_policy(now_ms, refused)
    }

    /// Handle one decoded message (platforms that decode and check frames themselves call
    /// this), under the same policy as [`Node::handle_frame`].
    pub fn receive(
        &mut self,
        now_ms: u64,
        from: NodeId,
        msg: &Message,
        tail: &[u8],
    ) -> Result<(), NodeError> {
        let stepped = match self.raft.step(now_ms, from, msg, tail, &mut self.store) {
            Ok(StepOutcome::Done) => Ok(()),
            Ok(StepOutcome::SnapshotInstalled(meta)) => self.restore_installed(&meta),
            Err(e) => Err(e.into()),
        };
        self.apply_policy(now_ms, stepped)
    }

    /// Raft installed a snapshot from the leader: the state machine follows.
    fn restore_installed(&mut self, meta: &SnapshotMeta) -> Result<(), NodeError> {
        super::snapshot::restore_from_store(&self.store, &mut self.sm, meta)?;
        self.waiting_reads.clear();
        self.rescan_configs(meta.index + 1)
    }
}

impl<S, T, M, B, P: Plant> Node<S, T, M, B, P> {
    /// Apply the failure policy to an error met on this node's behalf, such as a frame the
    /// platform could not decode before routing it here: a peer's fault or a full medium is
    /// counted, logged at most once per cause per interval, and absorbed; a fatal error is
    /// handed back, and the node must stop.
    pub fn apply_policy(&mut self, now_ms: u64, r: Result<(), NodeError>) -> Result<(), NodeError> {
        match r {
            Ok(()) => Ok(()),
            Err(e) => self.faults.absorb(now_ms, e.fault(), e),
        }
    }
}
