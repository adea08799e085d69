//! Leader transfer: bring the target up to date, then tell it to campaign at once.

use super::{Raft, TransferError};
use crate::message::TimeoutNow;
use crate::plant::Plant;
use crate::types::{NodeId, Role};

impl<P: Plant> Raft<P> {
    /// Hand leadership to `target`: bring it up to date, then tell it to campaign at once.
    pub fn transfer_leader(&mut self, now_ms: u64, target: NodeId) -> Result<(), TransferError> {
        self.advance_clock(now_ms);
        #[cfg(feature = "quiesce")]
        self.wake_if_quiet();
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader);
        }
        if target == self.id || !self.membership.is_voter(target) || self.peer(target).is_none() {
            return Err(TransferError::BadTarget);
        }
        if self.transfer.is_some() {
            return Err(TransferError::InProgress);
        }
        info!("leader {} transferring leadership to {}", self.id, target);
        self.transfer = Some((target, self.now_ms + self.cfg.election_timeout_ms));
        self.reads.lease_until_ms = 0;
        self.fail_all_rounds();
        if self.peer(target).map(|p| p.match_index) == Some(self.last_index) {
            self.send_timeout_now(target);
        } else {
            self.replicate_pending = true;
        }
        Ok(())
    }

    /// The target acknowledged entries: once it holds our whole log, it may take over.
    pub(super) fn transfer_if_caught_up(&mut self, from: NodeId) {
        if let Some((target, _)) = self.transfer {
            if target == from && self.peer(from).map(|p| p.match_index) == Some(self.last_index) {
                self.send_timeout_now(from);
            }
        }
    }

    /// A transfer that did not finish within an election timeout is abandoned.
    pub(super) fn expire_transfer(&mut self) {
        if let Some((_, deadline)) = self.transfer {
            if self.now_ms >= deadline {
                info!("leader transfer timed out");
                self.transfer = None;
            }
        }
    }

    fn send_timeout_now(&mut self, to: NodeId) {
        // Once the target may campaign, this term's lease promises nothing any more.
        self.reads.lease_void_term = self.term;
        self.send(to, TimeoutNow { term: self.term });
    }

    /// The leader asks this node to take over: campaign now, past any leader lease.
    pub(super) fn handle_timeout_now(&mut self) {
        if self.role != Role::Leader && self.membership.is_voter(self.id) {
            info!("node {} campaigning at once (leader transfer)", self.id);
            self.campaign(false, true);
        }
    }
}
