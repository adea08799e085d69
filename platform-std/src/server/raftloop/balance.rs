//! Leader balance: a node that leads more than its share of the groups it hosts hands some of
//! them to members that lead fewer.
//!
//! Without it a node that restarts comes back leading nothing (its groups elected leaders
//! among the others while it was down), a first election may leave one node leading most
//! groups, and the nodes that lead do every group's client work, syncs and replication while
//! the others idle. With 300 groups on three nodes, one of them restarted led 0 and the other
//! two 142 and 159 until something else moved them (docs/DESIGN.md, *Leader balance*).
//!
//! Every `--leader-balance-interval` (give or take a quarter, so that two nodes rarely act on
//! the same view), a node counts, over the groups it hosts, how many each node leads (a voter
//! of one of them that leads none counts 0). The share is the groups led over the nodes
//! counted. A node leading more than the share, rounded up, hands away at most its excess (and
//! at most [`MAX_PER_PASS`] a pass), each group to the voter of that group that leads fewest,
//! if that voter leads less than the share rounded down (or at least two fewer than this
//! node, while this node is over the share rounded up) — one it heard from within an election
//! timeout and whose log is within [`MAX_LAG`] entries of the leader's. Only a leader gives,
//! and only its excess, so groups are not passed back and forth; a view two nodes acted on at
//! once can overfill a node by a few, which its next pass gives back.
//!
//! A pass does nothing while any group it hosts has no leader (an election or a restart under
//! way) or the node is shutting down, and leaves out groups whose membership is changing or
//! that are already transferring. A transfer is the core's ([`Node::transfer_leader`]): the
//! target is brought up to date, then campaigns at once; writes meanwhile are refused as
//! retryable and leader leases are voided, as for `shoalctl leader transfer`.

use super::*;

/// Most transfers one node starts in one pass.
pub(super) const MAX_PER_PASS: usize = 64;
/// Most entries a target's log may lag the leader's to be handed a group (the transfer
/// brings it the rest before it campaigns).
pub(super) const MAX_LAG: LogIndex = 256;

/// A group this node leads, and the members it may hand it to.
#[derive(Debug)]
pub(super) struct Movable {
    pub(super) group: GroupId,
    pub(super) to: Vec<NodeId>,
}

/// The transfers (group, new leader) node `me` should start, given how many groups each node
/// leads (`counts`, which it updates as if they were done). See the [module docs](self).
pub(super) fn plan(
    me: NodeId,
    counts: &mut BTreeMap<NodeId, usize>,
    movable: &[Movable],
    max: usize,
) -> Vec<(GroupId, NodeId)> {
    let nodes = counts.len();
    let total: usize = counts.values().sum();
    let mut out = Vec::new();
    if nodes < 2 || !counts.contains_key(&me) {
        return out;
    }
    let (floor, ceil) = (total / nodes, total.div_ceil(nodes));
    for m in movable {
        let mine = counts[&me];
        if out.len() >= max || mine <= floor {
            break;
        }
        let fewest =
            m.to.iter()
                .filter(|t| **t != me)
                .filter_map(|t| counts.get(t).map(|c| (*c, *t)))
                .min();
        let Some((theirs, to)) = fewest else {
            continue;
        };
        if theirs + 2 <= mine && (mine > ceil || theirs < floor) {
            *counts.get_mut(&me).expect("counted") -= 1;
            *counts.get_mut(&to).expect("counted") += 1;
            out.push((m.group, to));
        }
    }
    out
}

impl RaftLoop {
    /// One pass of leader balance when its time has come (see the [module docs](self)).
    pub(super) fn balance_leaders(&mut self, now: u64) {
        let Some(every) = self.cfg.leader_balance_interval else {
            return;
        };
        if now < self.balance.next_at {
            return;
        }
        // Give or take a quarter of the interval.
        let every = every.as_millis() as u64;
        self.balance.rng ^= self.balance.rng << 13;
        self.balance.rng ^= self.balance.rng >> 7;
        self.balance.rng ^= self.balance.rng << 17;
        self.balance.next_at = now + every * 3 / 4 + self.balance.rng % (every / 2 + 1);
        if self.draining || self.balance.handoff_until.is_some() {
            return;
        }
        let mut counts = BTreeMap::<NodeId, usize>::new();
        for g in self.groups.values() {
            let r = g.node.raft();
            let m = r.membership();
            for v in m.all() {
                if m.is_voter(v) && m.is_final_voter(v) {
                    counts.entry(v).or_default();
                }
            }
            match r.leader() {
                NO_NODE => return,
                l => *counts.entry(l).or_default() += 1,
            }
        }
        let me = self.cfg.node_id;
        let led = counts.get(&me).copied().unwrap_or(0);
        if led <= counts.values().sum::<usize>() / counts.len().max(1) {
            // At most the share rounded down: `plan` would hand nothing away.
            return;
        }
        let movable: Vec<Movable> = self
            .groups
            .values()
            .filter_map(|g| {
                let to: Vec<NodeId> = self.successors(g, now).map(|(id, _)| id).collect();
                (!to.is_empty()).then_some(Movable { group: g.id, to })
            })
            .collect();
        let moves = plan(me, &mut counts, &movable, MAX_PER_PASS);
        if moves.is_empty() {
            return;
        }
        let mut started: BTreeMap<NodeId, usize> = BTreeMap::new();
        for (id, to) in moves {
            let Some(g) = self.groups.get_mut(&id) else {
                continue;
            };
            match g.node.transfer_leader(now, to) {
                Ok(()) => {
                    *started.entry(to).or_default() += 1;
                    self.active.insert(id);
                }
                Err(e) => log::warn!("group {id}: leader balance: transfer to node {to}: {e}"),
            }
        }
        let n: usize = started.values().sum();
        self.balance.transfers += n as u64;
        let total: usize = counts.values().sum();
        log::info!(
            "leader balance: node {me} led {led} of the {total} groups led here over {} nodes; \
             handing {n} to {started:?} (node: groups)",
            counts.len()
        );
    }

    /// The members this node may hand group `g` to now, with their match indexes: none unless
    /// it leads `g` with no transfer running and no membership change under way; then its
    /// final voters heard from within an election timeout whose logs are within [`MAX_LAG`]
    /// entries of its own.
    fn successors<'a>(
        &'a self,
        g: &'a Group,
        now: u64,
    ) -> impl Iterator<Item = (NodeId, LogIndex)> + 'a {
        let r = g.node.raft();
        let m = r.membership();
        let settled = r.role() == Role::Leader
            && r.transfer_target().is_none()
            && g.member_op.is_none()
            && r.membership_index() <= r.commit();
        let timeout = self.cfg.raft.election_timeout_ms;
        let me = self.cfg.node_id;
        r.progress()
            .iter()
            .filter(move |p| {
                settled
                    && p.id != me
                    && m.is_voter(p.id)
                    && m.is_final_voter(p.id)
                    && p.match_index + MAX_LAG >= r.last_index()
                    && self.live.heard_within(p.id, now, timeout)
            })
            .map(|p| (p.id, p.match_index))
    }

    /// On the way down (SIGTERM): hand each group this node leads to its most caught-up
    /// member, so that its writes go on at once instead of after an election timeout. True
    /// once no group is led here any more (or none can be handed), or an election timeout
    /// after the first handing; a group whose leadership comes back meanwhile (another node's
    /// leader balance) is handed again.
    pub(super) fn handed_off(&mut self, now: u64) -> bool {
        let mut handing = Vec::new();
        let mut led = 0;
        for g in self.groups.values() {
            if g.node.raft().role() != Role::Leader {
                continue;
            }
            led += 1;
            let best = self.successors(g, now).max_by_key(|(id, at)| (*at, *id));
            if let Some((to, _)) = best {
                handing.push((g.id, to));
            }
        }
        for &(id, to) in &handing {
            if let Some(g) = self.groups.get_mut(&id) {
                if let Err(e) = g.node.transfer_leader(now, to) {
                    log::warn!("group {id}: handing leadership to node {to} before stopping: {e}");
                }
                self.active.insert(id);
            }
        }
        let until = *self.balance.handoff_until.get_or_insert_with(|| {
            if led > 0 {
                log::info!(
                    "stopping: handing the leadership of {} of the {led} groups led here to \
                     their members first",
                    handing.len()
                );
            }
            now + self.cfg.raft.election_timeout_ms
        });
        let transferring = self.groups.values().any(|g| {
            let r = g.node.raft();
            r.role() == Role::Leader && r.transfer_target().is_some()
        });
        !transferring || now >= until
    }
}

/// Leader balance's state ([`RaftLoop::balance_leaders`]).
pub(super) struct Balance {
    /// When the next pass runs (ms).
    pub(super) next_at: u64,
    /// Jitter of the passes (xorshift).
    pub(super) rng: u64,
    /// Transfers started since start.
    pub(super) transfers: u64,
    /// Set on the way down: until when groups are handed off ([`RaftLoop::handed_off`]).
    pub(super) handoff_until: Option<u64>,
}

impl Balance {
    pub(super) fn new(node: NodeId) -> Balance {
        Balance {
            next_at: 0,
            rng: (wall_ms() ^ node.rotate_left(32)) | 1,
            transfers: 0,
            handoff_until: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(c: &[(NodeId, usize)]) -> BTreeMap<NodeId, usize> {
        c.iter().copied().collect()
    }

    /// Node `me` leads groups `1..=n`, each of which it may hand to `to`.
    fn leads(n: u32, to: &[NodeId]) -> Vec<Movable> {
        (1..=n)
            .map(|group| Movable {
                group,
                to: to.to_vec(),
            })
            .collect()
    }

    #[test]
    fn a_node_back_from_a_restart_is_handed_the_share_of_both_others() {
        // 300 groups: node 3 restarted and leads none.
        let mut c = counts(&[(1, 142), (2, 158), (3, 0)]);
        let moves = plan(2, &mut c, &leads(158, &[1, 3]), usize::MAX);
        assert_eq!(moves.len(), 58, "node 2 gives its excess over 100");
        assert!(moves.iter().all(|(_, to)| *to == 3), "{moves:?}");
        assert_eq!(c, counts(&[(1, 142), (2, 100), (3, 58)]));
        let moves = plan(1, &mut c, &leads(142, &[2, 3]), usize::MAX);
        assert_eq!(moves.len(), 42);
        assert!(moves.iter().all(|(_, to)| *to == 3), "{moves:?}");
        assert_eq!(c, counts(&[(1, 100), (2, 100), (3, 100)]));
        // Balanced: nobody moves anything.
        for me in 1..=3 {
            assert!(plan(me, &mut c, &leads(100, &[1, 2, 3]), usize::MAX).is_empty());
        }
    }

    #[test]
    fn nothing_moves_within_one_of_the_share_and_a_pass_is_capped() {
        for (c, me) in [
            (vec![(1, 2), (2, 1), (3, 1)], 1),
            (vec![(1, 34), (2, 33), (3, 33)], 1),
            (vec![(1, 1), (2, 1), (3, 2)], 3),
            (vec![(1, 5), (2, 0)], 2),
        ] {
            let mut c = counts(&c);
            let before = c.clone();
            assert!(
                plan(me, &mut c, &leads(50, &[1, 2, 3]), 64).is_empty(),
                "{c:?}"
            );
            assert_eq!(c, before);
        }
        // Two of three nodes at 2, one at 0: one group moves (a node over the share's floor
        // gives to one under it), and then no more.
        let mut c = counts(&[(1, 2), (2, 2), (3, 0)]);
        assert_eq!(plan(1, &mut c, &leads(2, &[2, 3]), 64), [(1, 3)]);
        assert!(plan(2, &mut c, &leads(2, &[1, 3]), 64).is_empty(), "{c:?}");
        // At most `max` a pass.
        let mut c = counts(&[(1, 1000), (2, 0)]);
        assert_eq!(plan(1, &mut c, &leads(1000, &[2]), 64).len(), 64);
    }

    #[test]
    fn a_group_goes_only_to_one_of_its_own_candidates_leading_fewest() {
        // Node 1 leads 6 of 9 over 3 nodes; its groups 1-3 may go only to node 2 (leading 3:
        // it takes group 1, then is not two fewer than node 1), groups 4-6 to 2 or 3 (node 3,
        // leading fewest, takes two, and node 1 is down to the share).
        let mut c = counts(&[(1, 6), (2, 3), (3, 0)]);
        let mut m = leads(3, &[2]);
        m.extend((4..=6).map(|group| Movable {
            group,
            to: vec![2, 3],
        }));
        let moves = plan(1, &mut c, &m, 64);
        assert_eq!(moves, [(1, 2), (4, 3), (5, 3)]);
        assert_eq!(c, counts(&[(1, 3), (2, 4), (3, 2)]));
        // Node 2's next pass evens it out.
        assert_eq!(plan(2, &mut c, &leads(4, &[1, 3]), 64), [(1, 3)]);
        assert_eq!(c, counts(&[(1, 3), (2, 3), (3, 3)]));
        // A group with no candidate (none caught up or alive) is skipped, not a reason to stop.
        let mut c = counts(&[(1, 4), (2, 0)]);
        let m = [
            Movable {
                group: 7,
                to: vec![],
            },
            Movable {
                group: 8,
                to: vec![2],
            },
        ];
        assert_eq!(plan(1, &mut c, &m, 64), [(8, 2)]);
        // A node not counted (it leads nothing here and is a voter of nothing here) is not a
        // target; nor is the node itself.
        let mut c = counts(&[(1, 4), (2, 4)]);
        assert!(plan(1, &mut c, &leads(4, &[1, 9]), 64).is_empty());
    }

    #[test]
    fn nodes_acting_at_once_on_one_view_end_within_one_of_the_share_after_a_second_pass() {
        // Five nodes, each planning from the same counts at once (the worst case the jitter
        // makes rare); the transfers all happen; then every node plans again from the result.
        let start = [(1, 400), (2, 400), (3, 0), (4, 100), (5, 100)];
        let mut now = counts(&start);
        for _ in 0..2 {
            let view = now.clone();
            for me in 1..=5u64 {
                let mut mine = view.clone();
                let to: Vec<NodeId> = (1..=5).filter(|n| *n != me).collect();
                let n = view[&me] as u32;
                for (_, t) in plan(me, &mut mine, &leads(n, &to), usize::MAX) {
                    *now.get_mut(&me).unwrap() -= 1;
                    *now.get_mut(&t).unwrap() += 1;
                }
            }
        }
        assert_eq!(now.values().sum::<usize>(), 1000);
        let (lo, hi) = (now.values().min().unwrap(), now.values().max().unwrap());
        assert!(hi - lo <= 1, "{now:?}");
    }
}
