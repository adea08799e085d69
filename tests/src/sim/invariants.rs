//! Raft's safety invariants, checked after every simulation step against plain snapshots of each
//! node's state ([`NodeView`]), with memory across the whole run.
//!
//! Checked: election safety (at most one leader per term, ever), log matching (entries with the
//! same index and term are the same entry with the same history), leader completeness (a leader
//! holds every entry committed before its term), state-machine safety (no two nodes apply, or
//! commit, different entries at one index, and restarts replay identically), and monotonic
//! term / commit / applied per node within one incarnation.
//!
//! It stays fast by never rescanning whole logs: it keeps a shadow copy of each node's log that
//! views update incrementally, and global maps of every (index, term) seen and every index
//! committed or applied. It knows nothing about how Raft is implemented.

use shoal_core::{LogIndex, NodeId, Term};
use std::collections::BTreeMap;
use std::fmt;

/// One log entry as the checker sees it: position, term and a hash of its payload (kind and
/// bytes). Use [`hash_bytes`] (or any fixed function) consistently for every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryView {
    /// Its index.
    pub index: LogIndex,
    /// Its term.
    pub term: Term,
    /// A hash of its payload.
    pub hash: u64,
}

/// A snapshot of one node's Raft state after a step.
///
/// `entries` is a contiguous, ascending run of the node's log ending at `last_index`. It must
/// cover at least every entry that changed since this node's previous view (appended, or
/// overwritten after a truncation); giving the whole log is always correct, only slower. On the
/// first view of a node and on the first view of a new `incarnation` (after a restart) it must
/// hold the whole log after `snapshot_index`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    /// The node.
    pub id: NodeId,
    /// Bumped by the runner on every restart; monotonicity is only required within one.
    pub incarnation: u64,
    /// Current term.
    pub term: Term,
    /// Whether the node believes it leads in `term`.
    pub is_leader: bool,
    /// Commit index.
    pub commit: LogIndex,
    /// Last applied index.
    pub applied: LogIndex,
    /// Entries up to here are compacted into a snapshot (0 if none).
    pub snapshot_index: LogIndex,
    /// Index of the last log entry.
    pub last_index: LogIndex,
    /// Log entries (see the type's docs for which).
    pub entries: Vec<EntryView>,
}

/// Which invariant broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum InvariantKind {
    /// Two leaders in one term.
    ElectionSafety,
    /// Same index and term but different entries or different histories.
    LogMatching,
    /// A leader lacks an entry committed before its term.
    LeaderCompleteness,
    /// Different entries committed or applied at one index, or a restart that applied something
    /// else.
    StateMachineSafety,
    /// Term, commit or applied went backwards within one incarnation.
    Monotonicity,
    /// The view contradicts itself (applied > commit, commit > last index, a gap in entries):
    /// a bug in the node or in the runner's view.
    ViewSanity,
}

impl InvariantKind {
    /// The name used in failure lines.
    pub fn name(self) -> &'static str {
        match self {
            InvariantKind::ElectionSafety => "election safety",
            InvariantKind::LogMatching => "log matching",
            InvariantKind::LeaderCompleteness => "leader completeness",
            InvariantKind::StateMachineSafety => "state-machine safety",
            InvariantKind::Monotonicity => "monotonicity",
            InvariantKind::ViewSanity => "view sanity",
        }
    }
}

/// A broken invariant, with words that say which nodes, terms and indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub kind: InvariantKind,
    /// What exactly.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)
    }
}

fn fail<T>(kind: InvariantKind, message: String) -> Result<T, Violation> {
    Err(Violation { kind, message })
}

/// FNV-1a, 64 bits: a fixed, dependency-free hash for entry payloads and commands.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// What the checker remembers of one (index, term) it has seen in any log.
#[derive(Clone, Copy, Debug)]
struct Seen {
    hash: u64,
    /// Term of the entry before it, when known (`None` right after a snapshot).
    prev_term: Option<Term>,
    node: NodeId,
}

/// An index some node reported committed.
#[derive(Clone, Copy, Debug)]
struct Committed {
    term: Term,
    hash: u64,
    node: NodeId,
    /// The observing node's term when first seen committed; the commit happened in this term
    /// or earlier, so leaders of later terms must hold the entry.
    seen_in_term: Term,
}

#[derive(Clone, Debug, Default)]
struct NodeTrack {
    incarnation: u64,
    term: Term,
    commit: LogIndex,
    applied: LogIndex,
    log: BTreeMap<LogIndex, (Term, u64)>,
    /// (term, committed index checked up to) of this node's current leadership.
    leader_checked: Option<(Term, LogIndex)>,
}

/// The invariant checker. Feed it every node's view after every step with [`Self::observe`],
/// and every applied entry with [`Self::record_applied`]; the first error is the failure.
#[derive(Debug, Default)]
pub struct InvariantChecker {
    leaders: BTreeMap<Term, NodeId>,
    seen: BTreeMap<(LogIndex, Term), Seen>,
    committed: BTreeMap<LogIndex, Committed>,
    applied: BTreeMap<LogIndex, (u64, NodeId)>,
    /// Per node: (incarnation, last index it applied in that incarnation).
    applied_events: BTreeMap<NodeId, (u64, Option<LogIndex>)>,
    nodes: BTreeMap<NodeId, NodeTrack>,
}

impl InvariantChecker {
    /// A checker that has seen nothing.
    pub fn new() -> InvariantChecker {
        InvariantChecker::default()
    }

    /// Check every view of one step, in the order given.
    pub fn observe_all(&mut self, views: &[NodeView]) -> Result<(), Violation> {
        views.iter().try_for_each(|v| self.observe(v))
    }

    /// Check one node's view and remember it.
    pub fn observe(&mut self, v: &NodeView) -> Result<(), Violation> {
        check_sanity(v)?;
        let fresh = self
            .nodes
            .get(&v.id)
            .is_none_or(|t| t.incarnation != v.incarnation);
        let mut track = self.nodes.remove(&v.id).unwrap_or_default();
        let result = self.observe_tracked(v, &mut track, fresh);
        self.nodes.insert(v.id, track);
        result
    }

    fn observe_tracked(
        &mut self,
        v: &NodeView,
        t: &mut NodeTrack,
        fresh: bool,
    ) -> Result<(), Violation> {
        if !fresh {
            for (what, before, now) in [
                ("term", t.term, v.term),
                ("commit", t.commit, v.commit),
                ("applied", t.applied, v.applied),
            ] {
                if now < before {
                    return fail(
                        InvariantKind::Monotonicity,
                        format!("node {} {what} went back from {before} to {now}", v.id),
                    );
                }
            }
        }
        let old_commit = if fresh { 0 } else { t.commit };
        if fresh {
            *t = NodeTrack {
                incarnation: v.incarnation,
                ..NodeTrack::default()
            };
        }

        // Update the shadow log, noting which indices changed.
        t.log
            .retain(|&i, _| i > v.snapshot_index && i <= v.last_index);
        let mut changed: Vec<LogIndex> = Vec::new();
        for e in &v.entries {
            if t.log.insert(e.index, (e.term, e.hash)) != Some((e.term, e.hash)) {
                changed.push(e.index);
            }
        }

        // Log matching: the same (index, term) must be the same payload with the same previous
        // term; by induction on the index that makes the two logs identical up to there.
        for &i in &changed {
            let (term, hash) = t.log[&i];
            let prev_term = if i == 1 {
                Some(0)
            } else {
                t.log.get(&(i - 1)).map(|p| p.0)
            };
            match self.seen.get_mut(&(i, term)) {
                None => {
                    self.seen.insert(
                        (i, term),
                        Seen {
                            hash,
                            prev_term,
                            node: v.id,
                        },
                    );
                }
                Some(s) => {
                    if s.hash != hash {
                        return fail(
                            InvariantKind::LogMatching,
                            format!("nodes {} and {} hold different entries at index {i} in term {term}", s.node, v.id),
                        );
                    }
                    match (s.prev_term, prev_term) {
                        (Some(a), Some(b)) if a != b => {
                            return fail(
                                InvariantKind::LogMatching,
                                format!(
                                    "nodes {} and {} agree on index {i} term {term} but differ before it (terms {a} and {b} at index {})",
                                    s.node,
                                    v.id,
                                    i - 1
                                ),
                            );
                        }
                        (None, Some(_)) => s.prev_term = prev_term,
                        _ => {}
                    }
                }
            }
        }

        // Commit: every index this node holds committed must agree with every other node's.
        // (An empty range when the commit did not move; BTreeMap::range panics on start > end.)
        let newly_committed = t
            .log
            .range(old_commit + 1..v.commit.max(old_commit) + 1)
            .map(|(&i, _)| i);
        let rewritten = changed
            .iter()
            .copied()
            .filter(|&i| i <= old_commit.min(v.commit));
        let to_check: Vec<LogIndex> = newly_committed.chain(rewritten).collect();
        for i in to_check {
            let (term, hash) = t.log[&i];
            match self.committed.get(&i) {
                None => {
                    self.committed.insert(
                        i,
                        Committed {
                            term,
                            hash,
                            node: v.id,
                            seen_in_term: v.term,
                        },
                    );
                }
                Some(c) if c.term != term || c.hash != hash => {
                    return fail(
                        InvariantKind::StateMachineSafety,
                        format!(
                            "index {i} committed as term {} on node {} but as term {term} (other payload) on node {}",
                            c.term, c.node, v.id
                        ),
                    );
                }
                Some(_) => {}
            }
        }

        if v.is_leader {
            self.check_leader(v, t)?;
        } else {
            t.leader_checked = None;
        }

        t.term = v.term;
        t.commit = v.commit;
        t.applied = v.applied;
        Ok(())
    }

    fn check_leader(&mut self, v: &NodeView, t: &mut NodeTrack) -> Result<(), Violation> {
        match self.leaders.get(&v.term) {
            Some(&other) if other != v.id => {
                return fail(
                    InvariantKind::ElectionSafety,
                    format!(
                        "two leaders in term {} (nodes {} and {})",
                        v.term,
                        other.min(v.id),
                        other.max(v.id)
                    ),
                );
            }
            Some(_) => {}
            None => {
                self.leaders.insert(v.term, v.id);
            }
        }
        // Check each committed index once per leadership: all of them when it starts, then
        // only the ones committed since.
        let from = match t.leader_checked {
            Some((term, upto)) if term == v.term => upto + 1,
            _ => 0,
        };
        let mut upto = from.saturating_sub(1);
        for (&i, c) in self.committed.range(from..) {
            upto = i;
            if c.seen_in_term >= v.term || i <= v.snapshot_index {
                continue;
            }
            if t.log.get(&i) != Some(&(c.term, c.hash)) {
                let has = match t.log.get(&i) {
                    Some((term, _)) => format!("holds term {term} there"),
                    None => "has no entry there".to_string(),
                };
                return fail(
                    InvariantKind::LeaderCompleteness,
                    format!(
                        "leader {} of term {} lacks index {i} (term {}) committed by term {} on node {}; it {has}",
                        v.id, v.term, c.term, c.seen_in_term, c.node
                    ),
                );
            }
        }
        t.leader_checked = Some((v.term, upto));
        Ok(())
    }

    /// Record that `node` applied the entry at `index` whose payload hashes to `hash` (the same
    /// hash as its [`EntryView`]). Indices must rise within one incarnation; across restarts a
    /// node may apply an index again, but only the same entry.
    pub fn record_applied(
        &mut self,
        node: NodeId,
        incarnation: u64,
        index: LogIndex,
        hash: u64,
    ) -> Result<(), Violation> {
        // Kept apart from the view tracking: the first event of a new incarnation can come
        // before that incarnation's first view.
        let last = self
            .applied_events
            .entry(node)
            .or_insert((incarnation, None));
        if last.0 != incarnation {
            *last = (incarnation, None);
        }
        if let Some(prev) = last.1 {
            if index <= prev {
                return fail(
                    InvariantKind::Monotonicity,
                    format!(
                        "node {node} applied index {index} after index {prev} in one incarnation"
                    ),
                );
            }
        }
        last.1 = Some(index);
        match self.applied.get(&index) {
            None => {
                self.applied.insert(index, (hash, node));
            }
            Some(&(h, other)) if h != hash => {
                return fail(
                    InvariantKind::StateMachineSafety,
                    format!("nodes {other} and {node} applied different commands at index {index}"),
                );
            }
            Some(_) => {}
        }
        if let Some(c) = self.committed.get(&index) {
            if c.hash != hash {
                return fail(
                    InvariantKind::StateMachineSafety,
                    format!("node {node} applied at index {index} something other than the committed entry"),
                );
            }
        }
        Ok(())
    }

    /// The highest index any node reported committed (for liveness checks and reports).
    pub fn max_committed(&self) -> LogIndex {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }

    /// The highest term that had a leader, and who.
    pub fn latest_leader(&self) -> Option<(Term, NodeId)> {
        self.leaders.iter().next_back().map(|(&t, &n)| (t, n))
    }
}

fn check_sanity(v: &NodeView) -> Result<(), Violation> {
    let bad = |what: String| fail(InvariantKind::ViewSanity, format!("node {}: {what}", v.id));
    if v.applied > v.commit {
        return bad(format!("applied {} is past commit {}", v.applied, v.commit));
    }
    if v.commit > v.last_index {
        return bad(format!(
            "commit {} is past the last index {}",
            v.commit, v.last_index
        ));
    }
    if v.snapshot_index > v.last_index {
        return bad(format!(
            "snapshot index {} is past the last index {}",
            v.snapshot_index, v.last_index
        ));
    }
    if let (Some(first), Some(last)) = (v.entries.first(), v.entries.last()) {
        if first.index <= v.snapshot_index || last.index != v.last_index {
            return bad(format!(
                "entries {}..={} do not end at last index {} or start inside the snapshot ({})",
                first.index, last.index, v.last_index, v.snapshot_index
            ));
        }
        if v.entries
            .windows(2)
            .any(|w| w[1].index != w[0].index + 1 || w[1].term < w[0].term)
        {
            return bad("entries are not contiguous with non-decreasing terms".to_string());
        }
        if v.entries.iter().any(|e| e.term > v.term) {
            return bad(format!(
                "an entry's term is past the node's term {}",
                v.term
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log from a list of terms, payload = (index, term, salt).
    fn log(terms: &[Term], salt: u64) -> Vec<EntryView> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &term)| {
                let index = i as u64 + 1;
                EntryView {
                    index,
                    term,
                    hash: hash_bytes(&[index as u8, term as u8, salt as u8]),
                }
            })
            .collect()
    }

    fn view(
        id: NodeId,
        term: Term,
        leader: bool,
        commit: LogIndex,
        entries: Vec<EntryView>,
    ) -> NodeView {
        NodeView {
            id,
            incarnation: 0,
            term,
            is_leader: leader,
            commit,
            applied: commit,
            snapshot_index: 0,
            last_index: entries.last().map_or(0, |e| e.index),
            entries,
        }
    }

    fn kind(r: Result<(), Violation>) -> InvariantKind {
        r.expect_err("a violation").kind
    }

    /// A fresh checker that has seen `views`, one after the other, each accepted.
    fn seen(views: &[NodeView]) -> InvariantChecker {
        let mut c = InvariantChecker::new();
        for v in views {
            c.observe(v).unwrap();
        }
        c
    }

    /// A fresh checker that has seen `first` finds invariant `broken` broken by `then`.
    #[track_caller]
    fn assert_breaks(first: &[NodeView], then: &NodeView, broken: InvariantKind) {
        assert_eq!(kind(seen(first).observe(then)), broken);
    }

    #[test]
    fn a_healthy_history_passes() {
        let mut c = InvariantChecker::new();
        c.observe_all(&[
            view(1, 1, true, 0, log(&[1], 0)),
            view(2, 1, false, 0, vec![]),
            view(3, 1, false, 0, vec![]),
        ])
        .unwrap();
        c.observe_all(&[
            view(1, 1, true, 2, log(&[1, 1], 0)),
            view(2, 1, false, 1, log(&[1, 1], 0)),
            view(3, 1, false, 0, vec![]),
        ])
        .unwrap();
        // Node 3 gets the entries late; node 2 takes over in term 2 with everything committed.
        c.observe_all(&[
            view(1, 2, false, 2, log(&[1, 1], 0)),
            view(2, 2, true, 2, log(&[1, 1, 2], 0)),
            view(3, 2, false, 2, log(&[1, 1, 2], 0)),
        ])
        .unwrap();
        c.record_applied(1, 0, 1, log(&[1], 0)[0].hash).unwrap();
        c.record_applied(2, 0, 1, log(&[1], 0)[0].hash).unwrap();
        assert_eq!(c.max_committed(), 2);
        assert_eq!(c.latest_leader(), Some((2, 2)));
    }

    #[test]
    fn two_leaders_in_one_term_even_at_different_times() {
        let mut c = seen(&[view(1, 7, true, 0, vec![]), view(1, 8, false, 0, vec![])]);
        let e = c.observe(&view(3, 7, true, 0, vec![])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "election safety: two leaders in term 7 (nodes 1 and 3)"
        );
    }

    #[test]
    fn log_matching_payload_and_history() {
        let first = [view(1, 2, false, 0, log(&[1, 2], 0))];
        // Same index and term, other payload.
        let other_payload = view(2, 2, false, 0, log(&[1, 2], 9));
        assert_breaks(&first, &other_payload, InvariantKind::LogMatching);
        // Same (2, term 2) but a different term at index 1 — a different history.
        let mut other = log(&[2, 2], 0);
        other[1] = log(&[1, 2], 0)[1];
        let other_history = view(2, 2, false, 0, other);
        assert_breaks(&first, &other_history, InvariantKind::LogMatching);
    }

    #[test]
    fn committed_entries_must_agree_and_never_be_overwritten() {
        let first = [view(1, 1, false, 2, log(&[1, 1], 0))];
        // Node 2 commits index 2 with a term-2 entry: two different entries committed.
        let other_commit = view(2, 2, false, 2, log(&[1, 2], 0));
        assert_breaks(&first, &other_commit, InvariantKind::StateMachineSafety);
        // A node overwrites its own committed entry after a truncation.
        let mut v = view(1, 3, false, 2, log(&[1, 3], 0));
        v.entries.remove(0); // only what changed
        assert_breaks(&first, &v, InvariantKind::StateMachineSafety);
    }

    #[test]
    fn a_leader_must_hold_every_entry_committed_before_its_term() {
        let mut c = seen(&[
            view(1, 1, true, 2, log(&[1, 1], 0)),
            view(2, 1, false, 0, log(&[1], 0)),
        ]);
        // Node 2 wins term 2 without index 2 (as if it had been elected by counting wrong).
        let e = c
            .observe(&view(2, 2, true, 0, log(&[1, 2], 0)))
            .unwrap_err();
        assert_eq!(e.kind, InvariantKind::LeaderCompleteness, "{e}");
        // A stale leader of an older term may lack entries committed later.
        seen(&[
            view(2, 3, false, 2, log(&[1, 3], 0)),
            view(1, 2, true, 0, log(&[1], 0)),
        ]);
    }

    #[test]
    fn leadership_is_checked_again_as_commits_arrive() {
        let mut c = seen(&[
            view(1, 1, false, 0, log(&[1], 0)),
            view(3, 3, true, 0, log(&[1, 2, 3], 0)),
        ]);
        // Index 2 (term 1) becomes known committed by a node in term 2, while node 3 — leader
        // since term 3 — holds a different entry there.
        c.observe(&view(1, 2, false, 2, log(&[1, 1], 0))).unwrap();
        assert_eq!(
            kind(c.observe(&view(3, 3, true, 0, log(&[1, 2, 3], 0)))),
            InvariantKind::LeaderCompleteness
        );
    }

    #[test]
    fn monotonic_within_an_incarnation_but_not_across_restarts() {
        let first = [view(1, 3, false, 2, log(&[1, 1], 0))];
        let older_term = view(1, 2, false, 2, log(&[1, 1], 0));
        assert_breaks(&first, &older_term, InvariantKind::Monotonicity);
        let lower_commit = view(1, 3, false, 1, log(&[1, 1], 0));
        assert_breaks(&first, &lower_commit, InvariantKind::Monotonicity);
        let mut restarted = view(1, 3, false, 0, log(&[1, 1], 0));
        restarted.incarnation = 1;
        seen(&[first[0].clone(), restarted]);
    }

    #[test]
    fn applied_entries_must_match_across_nodes_and_restarts() {
        let mut c = InvariantChecker::new();
        c.record_applied(1, 0, 1, 11).unwrap();
        c.record_applied(1, 0, 2, 22).unwrap();
        assert_eq!(
            kind(c.record_applied(1, 0, 2, 22)),
            InvariantKind::Monotonicity
        );
        assert_eq!(
            kind(c.record_applied(2, 0, 2, 23)),
            InvariantKind::StateMachineSafety
        );
        // After a restart node 1 replays from 1: same commands are fine, others are not.
        c.record_applied(1, 1, 1, 11).unwrap();
        assert_eq!(
            kind(c.record_applied(1, 1, 2, 99)),
            InvariantKind::StateMachineSafety
        );
        // An applied command must be the committed entry.
        let mut c = InvariantChecker::new();
        let l = log(&[1], 0);
        c.observe(&view(1, 1, false, 1, l.clone())).unwrap();
        assert_eq!(
            kind(c.record_applied(1, 0, 1, l[0].hash ^ 1)),
            InvariantKind::StateMachineSafety
        );
    }

    #[test]
    fn self_contradicting_views_are_reported() {
        let mut c = InvariantChecker::new();
        let mut v = view(1, 1, false, 1, log(&[1], 0));
        v.applied = 2;
        assert_eq!(kind(c.observe(&v)), InvariantKind::ViewSanity);
        let v = view(1, 1, false, 3, log(&[1], 0));
        assert_eq!(kind(c.observe(&v)), InvariantKind::ViewSanity);
        let mut v = view(1, 1, false, 0, log(&[1, 1, 1], 0));
        v.entries.remove(1);
        assert_eq!(kind(c.observe(&v)), InvariantKind::ViewSanity);
    }

    #[test]
    fn incremental_windows_and_compaction() {
        let mut c = seen(&[view(1, 1, true, 1, log(&[1, 1], 0))]);
        // Only the new entry is shown; the shadow keeps the rest.
        let full = log(&[1, 1, 1], 0);
        let mut v = view(1, 1, true, 3, full.clone());
        v.entries = full[2..].to_vec();
        c.observe(&v).unwrap();
        assert_eq!(c.max_committed(), 3);
        // Compaction drops entries from the shadow without complaint.
        let mut v = view(1, 1, true, 3, vec![]);
        v.snapshot_index = 2;
        v.last_index = 3;
        c.observe(&v).unwrap();
    }
}
