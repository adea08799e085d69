//! Group membership: voters, observers, and joint configurations for changes by joint consensus.
//!
//! A change goes prepare → joint → commit (or abort). While joint, a decision needs a majority
//! of the old voters *and* a majority of the new voters. Observers receive the log but never vote
//! and never count toward a quorum. This module only computes; it never decides when to change.

use crate::limits::MAX_MEMBERS;
use crate::types::{LogIndex, NodeId};
use heapless::Vec;
use serde::{Deserialize, Serialize};

/// A fixed-capacity set of node ids.
pub type NodeSet = Vec<NodeId, MAX_MEMBERS>;

/// Why a membership could not be built or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MembershipError {
    /// More distinct nodes than [`MAX_MEMBERS`].
    TooManyMembers,
    /// A configuration must keep at least one voter.
    NoVoters,
    /// Node id 0 is reserved.
    ReservedId,
    /// A node is listed twice, or as both voter and observer.
    Duplicate(NodeId),
}

impl core::fmt::Display for MembershipError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MembershipError::TooManyMembers => {
                write!(
                    f,
                    "more than {} members (voters and observers) in one group",
                    MAX_MEMBERS
                )
            }
            MembershipError::NoVoters => f.write_str("a configuration needs at least one voter"),
            MembershipError::ReservedId => f.write_str("node id 0 is reserved"),
            MembershipError::Duplicate(id) => write!(f, "node {} is listed twice", id),
        }
    }
}

/// One group's membership. When `joint` is true, `next_voters`/`next_observers` hold the target
/// configuration and decisions need majorities of both `voters` and `next_voters`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Membership {
    /// Voters of the current (or, while joint, the old) configuration.
    pub voters: NodeSet,
    /// Observers of the current (or old) configuration.
    pub observers: NodeSet,
    /// Whether this is a joint configuration.
    pub joint: bool,
    /// Voters of the target configuration (only while joint).
    pub next_voters: NodeSet,
    /// Observers of the target configuration (only while joint).
    pub next_observers: NodeSet,
}

fn set_from(ids: &[NodeId]) -> Result<NodeSet, MembershipError> {
    let mut s = NodeSet::new();
    for &id in ids {
        if id == 0 {
            return Err(MembershipError::ReservedId);
        }
        if s.contains(&id) {
            return Err(MembershipError::Duplicate(id));
        }
        s.push(id).map_err(|_| MembershipError::TooManyMembers)?;
    }
    sort_small(&mut s);
    Ok(s)
}

/// Insertion sort: the sets here hold at most `MAX_MEMBERS` ids, and the slice sort's generic
/// quicksort costs about 4 KiB of flash per element type on a board.
fn sort_small(s: &mut [u64]) {
    for i in 1..s.len() {
        let mut j = i;
        while j > 0 && s[j - 1] > s[j] {
            s.swap(j - 1, j);
            j -= 1;
        }
    }
}

fn disjoint(a: &NodeSet, b: &NodeSet) -> Result<(), MembershipError> {
    match a.iter().find(|id| b.contains(id)) {
        Some(&id) => Err(MembershipError::Duplicate(id)),
        None => Ok(()),
    }
}

/// Count of `ids` that satisfy `acked`, compared to a majority of `ids`. An empty set agrees.
fn majority(ids: &NodeSet, acked: &mut impl FnMut(NodeId) -> bool) -> bool {
    if ids.is_empty() {
        return true;
    }
    let n = ids.iter().filter(|&&id| acked(id)).count();
    n > ids.len() / 2
}

impl Membership {
    /// A simple (non-joint) configuration.
    pub fn new(voters: &[NodeId], observers: &[NodeId]) -> Result<Self, MembershipError> {
        let voters = set_from(voters)?;
        let observers = set_from(observers)?;
        if voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        disjoint(&voters, &observers)?;
        let m = Membership {
            voters,
            observers,
            joint: false,
            next_voters: NodeSet::new(),
            next_observers: NodeSet::new(),
        };
        if m.all_len() > MAX_MEMBERS {
            return Err(MembershipError::TooManyMembers);
        }
        Ok(m)
    }

    /// The joint configuration that moves from `self` (which must not be joint) to `target`.
    pub fn to_joint(&self, target: &Membership) -> Result<Self, MembershipError> {
        let mut m = self.clone();
        m.joint = true;
        m.next_voters = target.voters.clone();
        m.next_observers = target.observers.clone();
        if m.all_len() > MAX_MEMBERS {
            return Err(MembershipError::TooManyMembers);
        }
        Ok(m)
    }

    /// The target configuration of a joint one (commit).
    pub fn committed_target(&self) -> Self {
        Membership {
            voters: self.next_voters.clone(),
            observers: self.next_observers.clone(),
            joint: false,
            next_voters: NodeSet::new(),
            next_observers: NodeSet::new(),
        }
    }

    /// The old configuration of a joint one (abort).
    pub fn aborted_target(&self) -> Self {
        Membership {
            voters: self.voters.clone(),
            observers: self.observers.clone(),
            joint: false,
            next_voters: NodeSet::new(),
            next_observers: NodeSet::new(),
        }
    }

    /// Whether `id` votes in this configuration (in either half while joint).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || (self.joint && self.next_voters.contains(&id))
    }

    /// Whether `id` is named at all (voter or observer, either half).
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id)
            || self.observers.contains(&id)
            || (self.joint && self.next_observers.contains(&id))
    }

    /// Whether `id` is a voter in the configuration this one leads to (itself when not joint).
    pub fn is_final_voter(&self, id: NodeId) -> bool {
        if self.joint {
            self.next_voters.contains(&id)
        } else {
            self.voters.contains(&id)
        }
    }

    /// Every node named, each once, sorted.
    pub fn all(&self) -> NodeSet {
        let mut out = NodeSet::new();
        let halves: [&NodeSet; 4] = [
            &self.voters,
            &self.observers,
            &self.next_voters,
            &self.next_observers,
        ];
        for set in halves {
            for &id in set {
                if !out.contains(&id) {
                    // Capacity is checked when the membership is built.
                    let _ = out.push(id);
                }
            }
        }
        sort_small(&mut out);
        out
    }

    fn all_len(&self) -> usize {
        let mut n = 0;
        let halves: [&NodeSet; 4] = [
            &self.voters,
            &self.observers,
            &self.next_voters,
            &self.next_observers,
        ];
        for (i, set) in halves.iter().enumerate() {
            for id in set.iter() {
                if !halves[..i].iter().any(|s| s.contains(id)) {
                    n += 1;
                }
            }
        }
        n
    }

    /// Whether the nodes for which `acked` holds form a quorum (joint: a majority of both halves).
    pub fn has_quorum(&self, mut acked: impl FnMut(NodeId) -> bool) -> bool {
        if !majority(&self.voters, &mut acked) {
            return false;
        }
        !self.joint || majority(&self.next_voters, &mut acked)
    }

    /// The highest index replicated on a quorum, given each voter's match index.
    pub fn quorum_index(&self, mut match_of: impl FnMut(NodeId) -> LogIndex) -> LogIndex {
        let a = Self::half_quorum_index(&self.voters, &mut match_of);
        if self.joint {
            a.min(Self::half_quorum_index(&self.next_voters, &mut match_of))
        } else {
            a
        }
    }

    fn half_quorum_index(ids: &NodeSet, match_of: &mut impl FnMut(NodeId) -> LogIndex) -> LogIndex {
        if ids.is_empty() {
            return LogIndex::MAX;
        }
        let mut v: Vec<LogIndex, MAX_MEMBERS> = Vec::new();
        for &id in ids {
            let _ = v.push(match_of(id));
        }
        // The (n/2)-th highest: index n/2 of a descending order, n-1-n/2 of an ascending one.
        sort_small(&mut v);
        v[ids.len() - 1 - ids.len() / 2]
    }
}

/// The membership with the largest encoding: every node set full of the largest ids (not a
/// valid configuration, only the bound of one; for tests of the size maxima).
#[cfg(test)]
pub(crate) fn largest() -> Membership {
    let mut full = NodeSet::new();
    for i in 0..MAX_MEMBERS as u64 {
        full.push(u64::MAX - i)
            .expect("MAX_MEMBERS ids fit a node set");
    }
    Membership {
        voters: full.clone(),
        observers: full.clone(),
        joint: true,
        next_voters: full.clone(),
        next_observers: full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_simple_and_joint() {
        let m = Membership::new(&[1, 2, 3], &[4]).unwrap();
        assert!(m.has_quorum(|id| id == 1 || id == 2));
        assert!(!m.has_quorum(|id| id == 1 || id == 4));
        let j = m
            .to_joint(&Membership::new(&[3, 4, 5], &[]).unwrap())
            .unwrap();
        assert!(j.is_voter(5) && j.is_voter(1));
        // Majority of old {1,2,3} but not of new {3,4,5}.
        assert!(!j.has_quorum(|id| id == 1 || id == 2 || id == 3));
        assert!(j.has_quorum(|id| id == 2 || id == 3 || id == 4));
        assert_eq!(j.all().as_slice(), &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn quorum_index_takes_the_median_of_each_half() {
        let m = Membership::new(&[1, 2, 3], &[]).unwrap();
        let idx = |id| match id {
            1 => 10,
            2 => 7,
            3 => 3,
            _ => 0,
        };
        assert_eq!(m.quorum_index(idx), 7);
        let j = m
            .to_joint(&Membership::new(&[3, 4, 5], &[]).unwrap())
            .unwrap();
        let idx2 = |id| match id {
            1 => 10,
            2 => 7,
            3 => 3,
            4 => 2,
            5 => 9,
            _ => 0,
        };
        assert_eq!(j.quorum_index(idx2), 3);
    }

    #[test]
    fn quorum_index_is_the_highest_index_a_majority_holds_for_every_size() {
        // Against the definition: the largest index that at least a majority of voters have.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for n in 1..=MAX_MEMBERS as u64 {
            let ids: heapless::Vec<u64, MAX_MEMBERS> = (1..=n).rev().collect();
            let m = Membership::new(&ids, &[]).unwrap();
            for _ in 0..50 {
                let mut matched = [0u64; MAX_MEMBERS + 1];
                for slot in matched.iter_mut() {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    *slot = seed % 8;
                }
                let got = m.quorum_index(|id| matched[id as usize]);
                let majority = n as usize / 2 + 1;
                let want = (0..8u64)
                    .rev()
                    .find(|&i| (1..=n).filter(|&id| matched[id as usize] >= i).count() >= majority)
                    .unwrap();
                assert_eq!(
                    got,
                    want,
                    "{n} voters, matches {:?}",
                    &matched[1..=n as usize]
                );
            }
        }
        let sorted = Membership::new(&[5, 1, 9, 3], &[7, 2]).unwrap();
        assert_eq!(sorted.all().as_slice(), &[1, 2, 3, 5, 7, 9]);
    }

    #[test]
    fn bad_memberships_are_refused_by_cause() {
        assert_eq!(Membership::new(&[], &[1]), Err(MembershipError::NoVoters));
        assert_eq!(
            Membership::new(&[1, 1], &[]),
            Err(MembershipError::Duplicate(1))
        );
        assert_eq!(
            Membership::new(&[1], &[1]),
            Err(MembershipError::Duplicate(1))
        );
        assert_eq!(Membership::new(&[0], &[]), Err(MembershipError::ReservedId));
        assert_eq!(
            Membership::new(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], &[]),
            Err(MembershipError::TooManyMembers)
        );
        let m = Membership::new(&[1, 2, 3, 4, 5], &[]).unwrap();
        let t = Membership::new(&[6, 7, 8, 9, 10], &[]).unwrap();
        assert_eq!(m.to_joint(&t), Err(MembershipError::TooManyMembers));
    }

    #[test]
    fn commit_and_abort_of_joint() {
        let m = Membership::new(&[1, 2, 3], &[]).unwrap();
        let t = Membership::new(&[1, 2, 4], &[3]).unwrap();
        let j = m.to_joint(&t).unwrap();
        assert_eq!(j.committed_target(), t);
        assert_eq!(j.aborted_target(), m);
        assert!(j.is_final_voter(4) && !j.is_final_voter(3));
    }
}
