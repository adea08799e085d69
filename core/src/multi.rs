//! Multi-raft: one node hosts several groups. Every frame names its group; [`MultiNode`] routes
//! it to that group's driver. Groups are added and removed at run time, up to a fixed count.

use crate::driver::{Event, Node, NodeBuffer, NodeError};
use crate::fault::{Fault, FaultCounts, FaultLog};
use crate::io::{StateMachine, Transport};
use crate::plant::{NoPlant, Plant};
use crate::storage::Storage;
use crate::types::GroupId;
use crate::wire;
use heapless::Vec;

/// Why a group operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MultiError {
    /// The node already hosts its maximum number of groups.
    #[error("this node already hosts its maximum of {max_groups} groups")]
    Full {
        /// The capacity.
        max_groups: usize,
    },
    /// A group with this id is already hosted.
    #[error("group {0} already exists on this node")]
    Exists(GroupId),
    /// No group with this id is hosted here.
    #[error("group {0} is not hosted on this node")]
    UnknownGroup(GroupId),
    /// The group's driver failed.
    #[error("group {0}: {1}")]
    Node(GroupId, NodeError),
}

/// A hosted group: its id and its driver.
type Hosted<S, T, M, B, P> = (GroupId, Node<S, T, M, B, P>);

/// Up to `G` groups on one node, each with its own driver (and, in tests, planted bugs `P`).
pub struct MultiNode<S, T, M, B, const G: usize, P: Plant = NoPlant> {
    groups: Vec<Hosted<S, T, M, B, P>, G>,
    /// Frames refused before they reached a group (they did not decode, or name no group
    /// hosted here); each group counts its own.
    faults: FaultLog,
}

impl<S, T, M, B, const G: usize, P: Plant> Default for MultiNode<S, T, M, B, G, P> {
    fn default() -> Self {
        MultiNode {
            groups: Vec::new(),
            faults: FaultLog::new(),
        }
    }
}

impl<S: Storage, T: Transport, M: StateMachine, B: NodeBuffer, const G: usize, P: Plant>
    MultiNode<S, T, M, B, G, P>
{
    /// An empty host.
    pub fn new() -> Self {
        Self::default()
    }

    /// Host a group (its driver already built for `group`).
    pub fn add_group(
        &mut self,
        group: GroupId,
        node: Node<S, T, M, B, P>,
    ) -> Result<(), MultiError> {
        if self.groups.iter().any(|(g, _)| *g == group) {
            return Err(MultiError::Exists(group));
        }
        self.groups
            .push((group, node))
            .map_err(|_| MultiError::Full { max_groups: G })
    }

    /// Stop hosting a group; returns its driver so the caller can shut it down.
    pub fn remove_group(&mut self, group: GroupId) -> Result<Node<S, T, M, B, P>, MultiError> {
        let at = self
            .groups
            .iter()
            .position(|(g, _)| *g == group)
            .ok_or(MultiError::UnknownGroup(group))?;
        Ok(self.groups.swap_remove(at).1)
    }

    /// The ids of every hosted group.
    pub fn group_ids(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.iter().map(|(g, _)| *g)
    }

    /// One group's driver.
    pub fn group(&self, group: GroupId) -> Option<&Node<S, T, M, B, P>> {
        self.groups
            .iter()
            .find(|(g, _)| *g == group)
            .map(|(_, n)| n)
    }

    /// One group's driver, mutably.
    pub fn group_mut(&mut self, group: GroupId) -> Option<&mut Node<S, T, M, B, P>> {
        self.groups
            .iter_mut()
            .find(|(g, _)| *g == group)
            .map(|(_, n)| n)
    }

    /// Frames refused before they reached a group, by cause.
    pub fn faults(&self) -> FaultCounts {
        self.faults.counts()
    }

    /// Route a frame to the group its header names. A frame that does not decode or names no
    /// group hosted here is refused and counted ([`MultiNode::faults`]); within a group the
    /// group's driver applies the same policy. An error is returned only when a group must
    /// stop (see [`crate::fault`]).
    pub fn handle_frame(&mut self, now_ms: u64, bytes: &[u8]) -> Result<(), MultiError> {
        let Ok((frame, used)) = wire::decode(bytes) else {
            self.faults.refuse(now_ms, Fault::BadFrame);
            return Ok(());
        };
        let group = frame.header.group;
        let Some(node) = self.group_mut(group) else {
            self.faults.refuse(now_ms, Fault::WrongGroup);
            return Ok(());
        };
        node.handle_decoded(now_ms, &frame, used)
            .map_err(|e| MultiError::Node(group, e))
    }

    /// Tick every group.
    pub fn tick(&mut self, now_ms: u64) -> Result<(), MultiError> {
        for (g, n) in self.groups.iter_mut() {
            n.tick(now_ms).map_err(|e| MultiError::Node(*g, e))?;
        }
        Ok(())
    }

    /// Flush every group, reporting events with their group id.
    pub fn flush(
        &mut self,
        now_ms: u64,
        on_event: &mut dyn FnMut(GroupId, Event<M::Output>),
    ) -> Result<(), MultiError> {
        for (g, n) in self.groups.iter_mut() {
            let group = *g;
            n.flush(now_ms, &mut |ev| on_event(group, ev))
                .map_err(|e| MultiError::Node(group, e))?;
        }
        Ok(())
    }
}
