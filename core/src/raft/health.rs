//! Whether this node can vouch for its group now: the answer a health check gives.
//!
//! A node is healthy in a group when it has a leader it heard from within an election timeout;
//! a leader counts as one only while a quorum acknowledged it within the lease window (the
//! newest heartbeat round a quorum echoed went out less than
//! `election_timeout_ms - lease_drift_margin_ms` ago). So a leader cut off from its quorum
//! turns unhealthy within one lease window, long before CheckQuorum makes it step down; a
//! follower whose leader went silent turns unhealthy within one election timeout; a node the
//! configuration does not name (removed, or not yet added) is never healthy.
//!
//! These are reads of state the protocol keeps anyway; nothing here changes the node.

use super::Raft;
use crate::plant::Plant;
use crate::types::{NodeId, Role, NO_NODE};

/// How this node stands in its group, as a health check sees it ([`Raft::health`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Health {
    /// Healthy: it leads, and a quorum acknowledged it within the lease window.
    Leading,
    /// Healthy: it follows `leader` and heard from it within an election timeout.
    Following {
        /// The leader.
        leader: NodeId,
    },
    /// The group's configuration does not name this node: it was removed, or has not been
    /// added yet.
    NotMember,
    /// It knows no leader: an election is under way, or cannot succeed from here.
    NoLeader,
    /// It follows `leader` but has not heard from it for `silent_ms` (an election timeout or
    /// more).
    LeaderSilent {
        /// The leader it last followed.
        leader: NodeId,
        /// Milliseconds since it last heard from it.
        silent_ms: u64,
    },
    /// It leads, but no quorum acknowledged it within the lease window.
    NoQuorum {
        /// Milliseconds since the newest round a quorum echoed went out (`None`: no round of
        /// this term was echoed yet).
        silent_ms: Option<u64>,
    },
}

impl Health {
    /// Whether the node can vouch for the group (it leads with a quorum, or follows a live
    /// leader).
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Leading | Health::Following { .. })
    }

    /// A short name for logs, metrics and JSON: `ok` when healthy, else why not.
    pub fn reason(&self) -> &'static str {
        match self {
            Health::Leading | Health::Following { .. } => "ok",
            Health::NotMember => "not_member",
            Health::NoLeader => "no_leader",
            Health::LeaderSilent { .. } => "leader_silent",
            Health::NoQuorum { .. } => "no_quorum",
        }
    }
}

impl<P: Plant> Raft<P> {
    /// How long a leader counts as one after the newest heartbeat round a quorum echoed went
    /// out: the lease's length.
    pub fn lease_window_ms(&self) -> u64 {
        self.cfg
            .election_timeout_ms
            .saturating_sub(self.cfg.lease_drift_margin_ms)
    }

    /// A leader's last word from a quorum: when the newest heartbeat round a quorum echoed in
    /// this term went out (`None` unless leader, or before the first echo).
    pub fn quorum_contact_ms(&self) -> Option<u64> {
        if self.role != Role::Leader {
            return None;
        }
        self.reads.quorum_heard_ms
    }

    /// A follower's last word from its leader: when it last heard from the leader it follows
    /// (`None` when it knows no leader, or leads itself).
    pub fn leader_contact_ms(&self) -> Option<u64> {
        if self.leader == NO_NODE || self.leader == self.id {
            return None;
        }
        Some(self.last_leader_contact_ms)
    }

    /// Whether this node can vouch for its group at `now_ms`, and if not, why (see the
    /// [module docs](self)).
    pub fn health(&self, now_ms: u64) -> Health {
        let m = &self.membership;
        if !m.contains(self.id) {
            return Health::NotMember;
        }
        let health = self.health_as_member(now_ms);
        // A node the joint configuration drops never hears that it was dropped (the final
        // configuration goes to the remaining members only): once its leader is gone too, it
        // is out of the group.
        let leaving = m.joint && !m.committed_target().contains(self.id);
        if leaving && !health.is_healthy() {
            return Health::NotMember;
        }
        health
    }

    fn health_as_member(&self, now_ms: u64) -> Health {
        // A quiet group's liveness is the platform's (by node): it wakes the group when the
        // leader's node, or a follower's, goes silent.
        #[cfg(feature = "quiesce")]
        if self.quiesce.quiet {
            return match self.role {
                Role::Leader => Health::Leading,
                _ => Health::Following {
                    leader: self.leader,
                },
            };
        }
        if self.role == Role::Leader {
            let me = self.id;
            if self.membership.has_quorum(|id| id == me) {
                // A sole voter is its own quorum: no one else's word is needed.
                return Health::Leading;
            }
            let silent_ms = self
                .quorum_contact_ms()
                .map(|sent| now_ms.saturating_sub(sent));
            return match silent_ms {
                Some(ms) if ms < self.lease_window_ms() => Health::Leading,
                _ => Health::NoQuorum { silent_ms },
            };
        }
        let Some(heard) = self.leader_contact_ms() else {
            return Health::NoLeader;
        };
        let silent_ms = now_ms.saturating_sub(heard);
        if silent_ms < self.cfg.election_timeout_ms {
            Health::Following {
                leader: self.leader,
            }
        } else {
            Health::LeaderSilent {
                leader: self.leader,
                silent_ms,
            }
        }
    }
}
