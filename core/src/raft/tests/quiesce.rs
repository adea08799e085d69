//! Quiescence (the `quiesce` feature): a settled group goes quiet, sends nothing while it is,
//! wakes on any input, and leadership and leases stay correct.

use super::*;

/// Every node of `voters` with quiescence on, once a leader is elected.
fn quiet_cluster(voters: &[NodeId]) -> (Cluster, NodeId) {
    let mut c = Cluster::new(voters);
    for id in voters {
        c.node(*id).raft.set_quiesce(true);
    }
    let l = c.elect();
    (c, l)
}

impl Cluster {
    /// Like `run`, but counts the frames sent meanwhile.
    fn run_counting(&mut self, ms: u64) -> usize {
        let end = self.now + ms;
        let mut frames = 0;
        while self.now < end {
            self.tick_all();
            self.flush_all();
            frames += self.wire.borrow().len();
            self.deliver();
        }
        frames
    }

    /// Run until every node is quiet (at most `ms`); whether they all are.
    fn settle(&mut self, ms: u64) -> bool {
        let end = self.now + ms;
        while self.now < end {
            self.run(self.cfg.heartbeat_interval_ms);
            if self.nodes.values().all(|n| n.raft().is_quiet()) {
                return true;
            }
        }
        false
    }

    fn all_quiet_and_idle(&self) -> bool {
        self.nodes
            .values()
            .all(|n| n.raft().is_quiet() && n.is_idle())
    }
}

fn settle_ms(c: &Cluster) -> u64 {
    (u64::from(SETTLE_BEATS) + 3) * c.cfg.heartbeat_interval_ms
}

#[test]
fn a_settled_group_goes_quiet_and_sends_nothing_until_woken() {
    let (mut c, l) = quiet_cluster(&[1, 2, 3]);
    c.propose_each(l, 1..=3);
    c.run(10);
    assert!(c.settle(settle_ms(&c)), "the group never went quiet");
    assert!(c.all_quiet_and_idle());
    let term = c.nodes[&l].raft().term();
    // Ten election timeouts: no heartbeat, no election, nothing on the wire.
    let et = c.cfg.election_timeout_ms;
    assert_eq!(c.run_counting(10 * et), 0, "a quiet group sent frames");
    assert_eq!(c.leader(), l);
    for n in c.nodes.values() {
        assert_eq!(n.raft().term(), term);
        assert!(n.raft().is_quiet());
        assert_eq!(n.raft().commit(), c.nodes[&l].raft().commit());
        // Healthy: the platform watches a quiet group's nodes.
        assert!(n.raft().health(c.now).is_healthy());
    }
}

#[test]
fn without_the_switch_a_leader_keeps_heartbeating() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.run(settle_ms(&c) * 2);
    assert!(c.nodes.values().all(|n| !n.raft().is_quiet()));
    assert!(c.run_counting(c.cfg.election_timeout_ms) > 0);
    assert_eq!(c.leader(), l);
}

#[test]
fn a_write_wakes_the_group_commits_at_once_and_it_settles_again() {
    let (mut c, l) = quiet_cluster(&[1, 2, 3]);
    assert!(c.settle(settle_ms(&c)));
    let (index, term) = c.propose(l, b"x");
    assert!(
        !c.nodes[&l].raft().is_quiet(),
        "a proposal wakes the leader"
    );
    // One delivery round, no tick: the write commits and applies on the leader, and every
    // follower holds it (they learn the commit with the next heartbeat).
    c.deliver();
    assert_eq!(c.nodes[&l].applied(), index);
    for (id, n) in &c.nodes {
        assert_eq!(n.raft().last_index(), index, "node {id}");
        assert!(!n.raft().is_quiet(), "node {id} woke on the append");
    }
    assert_eq!(c.nodes[&l].raft().term(), term);
    assert!(c.settle(settle_ms(&c)), "quiet again once settled");
    assert_eq!(c.commands(Cluster::follower_of(l)).last().unwrap(), b"x");
}

#[test]
fn a_quiet_leader_has_no_lease_and_cut_off_cannot_serve_stale_reads() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.run(3 * c.cfg.election_timeout_ms);
    assert!(
        c.nodes[&l].read_lease(c.now).is_ok(),
        "awake, the lease holds"
    );
    for id in [1, 2, 3] {
        c.node(id).raft.set_quiesce(true);
    }
    assert!(c.settle(settle_ms(&c)));
    assert_eq!(
        c.nodes[&l].read_lease(c.now),
        Err(ReadError::LeaseExpired),
        "a quiet leader's lease is void"
    );
    // The old leader is cut off while quiet; the others learn its node went silent and wake.
    c.isolate(l);
    let et = c.cfg.election_timeout_ms;
    c.run(et);
    let others: StdVec<NodeId> = [1, 2, 3].into_iter().filter(|&x| x != l).collect();
    for &id in &others {
        let now = c.now;
        c.node(id).wake(now);
    }
    c.run(3 * et);
    let l2 = *others
        .iter()
        .find(|&&id| c.nodes[&id].raft().role() == Role::Leader)
        .expect("the woken followers elected a leader");
    let (index, _) = c.propose(l2, b"new");
    c.run(et);
    assert_eq!(c.nodes[&l2].raft().commit(), index);
    // The old leader never heard: still quiet, still leader in its mind. It serves no lease
    // read, and a ReadIndex (which wakes it) is never confirmed.
    assert_eq!(c.nodes[&l].raft().role(), Role::Leader);
    assert_eq!(c.nodes[&l].read_lease(c.now), Err(ReadError::LeaseExpired));
    let now = c.now;
    let t = c.node(l).read_index(now).unwrap();
    assert!(!c.nodes[&l].raft().is_quiet(), "a read wakes the leader");
    c.run(3 * et);
    assert_eq!(
        c.nodes[&l].read_lease(c.now),
        Err(ReadError::NotLeader { leader: NO_NODE })
    );
    let reads = c.reads.get(&l).map(|r| r.as_slice()).unwrap_or(&[]);
    assert!(
        !reads
            .iter()
            .any(|e| matches!(e, Event::ReadReady { upto, .. } if *upto >= t)),
        "a cut-off leader confirmed a read: {reads:?}"
    );
    assert!(reads.contains(&Event::ReadFailed { upto: t }), "{reads:?}");
}

#[test]
fn a_quiet_follower_refuses_votes_while_its_leader_lives() {
    let (mut c, l) = quiet_cluster(&[1, 2, 3]);
    assert!(c.settle(settle_ms(&c)));
    let term = c.nodes[&l].raft().term();
    let f1 = Cluster::follower_of(l);
    // f1 wrongly believes the leader's node is silent (cut from it only) and wakes.
    c.cut.insert((l, f1));
    c.cut.insert((f1, l));
    let now = c.now;
    c.node(f1).wake(now);
    let et = c.cfg.election_timeout_ms;
    c.run(10 * et);
    assert_eq!(
        c.leader(),
        l,
        "a quiet follower helped depose a live leader"
    );
    assert_eq!(c.nodes[&l].raft().term(), term);
    let f2 = [1, 2, 3].into_iter().find(|&x| x != l && x != f1).unwrap();
    assert_eq!(c.nodes[&f2].raft().term(), term);
    assert_eq!(c.nodes[&f2].raft().leader(), l);
}

#[test]
fn a_quiet_follower_answers_a_prevote_with_a_refusal() {
    let (mut c, l) = quiet_cluster(&[1, 2, 3]);
    assert!(c.settle(settle_ms(&c)));
    let f = Cluster::follower_of(l);
    let r = &c.nodes[&f].raft;
    let ask = Message::PreVote(crate::message::PreVote {
        term: r.term() + 1,
        last_index: r.last_index() + 10,
        last_term: r.last_term(),
    });
    let now = c.now + 10 * c.cfg.election_timeout_ms;
    let candidate = [1, 2, 3].into_iter().find(|&x| x != l && x != f).unwrap();
    let mut store = c.nodes[&f].storage().clone();
    let raft = &mut c.node(f).raft;
    raft.step(now, candidate, &ask, &[], &mut store).unwrap();
    let sent: StdVec<Envelope> = core::iter::from_fn(|| raft.pop_message()).collect();
    assert!(
        sent.iter().any(|e| e.to == candidate
            && matches!(e.msg, Message::PreVoteResp(VoteResp { granted: false, .. }))),
        "{sent:?}"
    );
    assert!(!raft.is_quiet(), "the pre-vote woke it");
    assert!(
        sent.iter()
            .any(|e| e.to == l && matches!(e.msg, Message::AppendResp(_))),
        "it tells its leader it woke: {sent:?}"
    );
    // It refuses for an election timeout from then, as after a heartbeat.
    raft.step(now + 1, candidate, &ask, &[], &mut store)
        .unwrap();
    let answer = raft.pop_message().unwrap();
    assert!(matches!(
        answer.msg,
        Message::PreVoteResp(VoteResp { granted: false, .. })
    ));
}

#[test]
fn when_the_leaders_node_goes_silent_the_woken_group_elects_and_serves_writes() {
    let (mut c, l) = quiet_cluster(&[1, 2, 3]);
    assert!(c.settle(settle_ms(&c)));
    let term = c.nodes[&l].raft().term();
    let old = c.crash(l);
    let et = c.cfg.election_timeout_ms;
    // Quiet, nobody notices by itself: the platform's node liveness is what wakes them.
    c.run(5 * et);
    assert!(c.leaders().is_empty());
    assert!(c.nodes.values().all(|n| n.raft().is_quiet()));
    for id in c.nodes.keys().copied().collect::<StdVec<_>>() {
        let now = c.now;
        c.node(id).wake(now);
    }
    let l2 = c.elect();
    assert_ne!(l2, l);
    assert!(c.nodes[&l2].raft().term() > term);
    let (index, _) = c.propose(l2, b"after");
    c.run(et);
    for n in c.nodes.values() {
        assert_eq!(n.applied(), index);
    }
    // The old leader comes back: messages wake what needs waking, and it follows.
    c.start(l, old, None);
    c.node(l).raft.set_quiesce(true);
    c.run(4 * et);
    assert_eq!(c.leader(), l2);
    assert_eq!(c.nodes[&l].applied(), index);
    assert!(c.settle(4 * et), "quiet again with every member back");
}

#[test]
fn a_follower_that_missed_quiet_wakes_the_leader_without_an_election() {
    let (mut c, l) = quiet_cluster(&[1, 2, 3]);
    let f = Cluster::follower_of(l);
    let term = c.nodes[&l].raft().term();
    // Every `Quiet` to f is lost.
    let mut went_quiet = false;
    for _ in 0..100 {
        c.tick_all();
        c.flush_all();
        c.wire.borrow_mut().retain(|(from, to, frame)| {
            let quiet = matches!(
                crate::wire::decode(frame).map(|(fr, _)| fr.body),
                Ok(Body::Raft(Message::Quiet(_)))
            );
            !(quiet && *from == l && *to == f)
        });
        c.deliver();
        if c.nodes[&l].raft().is_quiet() {
            went_quiet = true;
            break;
        }
    }
    assert!(went_quiet);
    assert!(!c.nodes[&f].raft().is_quiet());
    // f's election timer runs out; its pre-vote wakes the leader, which heartbeats again.
    let et = c.cfg.election_timeout_ms;
    c.run(3 * et);
    assert_eq!(c.leader(), l);
    for n in c.nodes.values() {
        assert_eq!(n.raft().term(), term, "no election");
    }
}

#[test]
fn a_single_voter_group_goes_quiet_and_a_write_still_commits() {
    let (mut c, l) = quiet_cluster(&[1]);
    assert!(c.settle(settle_ms(&c)));
    let (index, _) = c.propose(l, b"solo");
    c.deliver();
    assert_eq!(c.nodes[&l].applied(), index);
    assert!(c.settle(settle_ms(&c)));
}
