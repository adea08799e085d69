//! Input from peers and from time, and the failure policy applied to it: an error a peer's
//! frame caused is counted and dropped here, so only a fatal one ever reaches the platform.

use super::{Node, NodeError};
use crate::io::{StateMachine, Transport};
use crate::message::Message;
use crate::plant::Plant;
use crate::raft::StepOutcome;
use crate::storage::Storage;
use crate::types::NodeId;
use crate::wire::{self, Body};

impl<S, T, M, B, P> Node<S, T, M, B, P>
where
    S: Storage,
    T: Transport,
    M: StateMachine,
    B: AsMut<[u8]> + AsRef<[u8]>,
    P: Plant,
{
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
        let r = match wire::decode(bytes) {
            Ok((frame, used)) => self.check_and_receive(now_ms, &frame, used),
            Err(e) => Err(e.into()),
        };
        self.apply_policy(now_ms, r)
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
        let r = self.check_and_receive(now_ms, frame, frame_bytes);
        self.apply_policy(now_ms, r)
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
        let r = self.step(now_ms, from, msg, tail);
        self.apply_policy(now_ms, r)
    }

    fn check_and_receive(
        &mut self,
        now_ms: u64,
        frame: &wire::Frame<'_>,
        frame_bytes: usize,
    ) -> Result<(), NodeError> {
        self.stats.frames_in += 1;
        self.stats.bytes_in += frame_bytes as u64;
        let h = &frame.header;
        if h.cluster_id != self.cfg.cluster_id {
            return Err(NodeError::WrongCluster {
                local: self.cfg.cluster_id,
                remote: h.cluster_id,
            });
        }
        if h.group != self.cfg.group {
            return Err(NodeError::WrongGroup {
                local: self.cfg.group,
                remote: h.group,
            });
        }
        if h.to != self.cfg.node_id {
            return Err(NodeError::WrongNode {
                local: self.cfg.node_id,
                remote: h.to,
            });
        }
        match &frame.body {
            Body::Raft(msg) => self.step(now_ms, h.from, msg, frame.tail),
            _ => Err(NodeError::NotRaft),
        }
    }

    fn step(
        &mut self,
        now_ms: u64,
        from: NodeId,
        msg: &Message,
        tail: &[u8],
    ) -> Result<(), NodeError> {
        match self.raft.step(now_ms, from, msg, tail, &mut self.store)? {
            StepOutcome::Done => Ok(()),
            StepOutcome::SnapshotInstalled(meta) => {
                super::snapshot::restore_from_store(&self.store, &mut self.sm, &meta)?;
                self.waiting_reads.clear();
                self.rescan_configs(meta.index + 1)
            }
        }
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
