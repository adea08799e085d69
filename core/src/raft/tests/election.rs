//! Elections, PreVote, CheckQuorum, the lease, and votes made durable before they leave.

use super::*;

// ----- 1. elections, PreVote, CheckQuorum, lease ---------------------------------------------

#[test]
fn a_leader_is_elected_and_commits_its_noop() {
    let (c, l) = Cluster::elected(&[1, 2, 3]);
    let term = c.nodes[&l].raft().term();
    for n in c.nodes.values() {
        assert_eq!(n.raft().term(), term);
        assert_eq!(n.raft().leader(), l);
    }
    assert_eq!(c.nodes[&l].raft().stats().became_leader, 1);
}

#[test]
fn a_sole_voter_leads_at_its_first_tick_also_after_a_restart() {
    let mut c = Cluster::new(&[1]);
    let start = c.now;
    c.run(5);
    assert_eq!(
        c.leaders(),
        vec![1],
        "a fresh single-voter group leads at once"
    );
    c.propose(1, b"x");
    c.run(5);
    c.restart(1);
    let restarted = c.now;
    c.run(5);
    assert_eq!(c.leaders(), vec![1], "a restarted sole voter leads at once");
    assert!(c.now - restarted <= 5 && c.now - start < test_cfg().election_timeout_ms);
    // With more voters a restarted node still waits (it may be inside another leader's lease).
    let mut c = Cluster::new(&[1, 2, 3]);
    c.run(5);
    assert!(c.leaders().is_empty());
}

#[test]
fn election_timeouts_are_randomized_per_node() {
    let c = Cluster::new(&[1, 2, 3, 4, 5]);
    let deadlines: BTreeSet<u64> = c
        .nodes
        .values()
        .map(|n| n.raft().election_deadline_ms)
        .collect();
    assert!(
        deadlines.len() > 1,
        "all nodes drew the same election timeout"
    );
    for d in deadlines {
        assert!((100..200).contains(&d));
    }
}

#[test]
fn prevote_keeps_a_partitioned_node_from_raising_the_term() {
    let (mut c, l, f) = Cluster::elected_three();
    let term = c.nodes[&l].raft().term();
    c.isolate(f);
    c.run(1000);
    assert_eq!(
        c.nodes[&f].raft().term(),
        term,
        "pre-votes must not raise the term"
    );
    c.heal();
    c.run(200);
    assert_eq!(
        c.leader(),
        l,
        "the rejoining node must not depose the leader"
    );
    assert_eq!(c.nodes[&l].raft().term(), term);
}

#[test]
fn without_prevote_an_isolated_node_raises_its_term() {
    let mut c = Cluster::tuned(&[1, 2, 3], |c| c.pre_vote = false);
    let l = c.elect();
    let f = Cluster::follower_of(l);
    let term = c.nodes[&l].raft().term();
    c.isolate(f);
    c.run(1000);
    assert!(c.nodes[&f].raft().term() > term);
}

#[test]
fn check_quorum_steps_down_an_isolated_leader() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.isolate(l);
    c.run(300);
    assert_ne!(
        c.nodes[&l].raft().role(),
        Role::Leader,
        "isolated leader must step down"
    );
    let others: StdVec<_> = c.leaders();
    assert_eq!(others.len(), 1);
    assert_ne!(others[0], l);
}

#[test]
fn lease_is_granted_by_a_quorum_and_expires_without_one() {
    let (mut c, l, f) = Cluster::elected_three();
    c.run(40);
    assert_eq!(
        c.nodes[&l].read_lease(c.now),
        Err(ReadError::LeaseExpired),
        "a fresh leader has not yet checked its followers' clocks"
    );
    // One election timeout of answers shows the clocks agree.
    c.run(100);
    let now = c.now;
    let idx = c.nodes[&l]
        .read_lease(now)
        .expect("a leader with quorum contact and agreeing clocks holds the lease");
    assert!(idx >= c.nodes[&l].raft().term_start_index);
    assert_eq!(
        c.nodes[&f].read_lease(now),
        Err(ReadError::NotLeader { leader: l })
    );
    c.isolate(l);
    c.now += 95; // lease = election timeout (100) minus drift margin (10) since the last ack
    assert_eq!(c.nodes[&l].read_lease(c.now), Err(ReadError::LeaseExpired));
}

#[test]
fn followers_in_a_lease_ignore_disruptive_vote_requests() {
    let (mut c, l, f) = Cluster::elected_three();
    let term = c.nodes[&l].raft().term();
    let now = c.now;
    let vote = vote_request(term + 5, (1000, term + 4), false);
    c.node(f).receive(now, 3, &vote, &[]).unwrap();
    assert_eq!(
        c.nodes[&f].raft().term(),
        term,
        "vote request inside the lease must be ignored"
    );
}

// ----- 3. storage obligations: votes are durable before they are granted -------------------------

#[test]
fn a_vote_is_durable_before_the_grant_leaves_and_survives_restart() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let now = c.now + 1000;
    let vote = vote_request(5, (10, 4), true);
    let n = c.node(2);
    n.receive(now, 1, &vote, &[]).unwrap();
    // Raft wrote the hard state but holds the grant until a sync.
    assert_eq!(n.storage().hard_state().vote, 1);
    assert!(
        n.raft.pop_message().is_none(),
        "grant must wait for the sync"
    );
    c.restart(2);
    // After a restart the node remembers its vote and refuses another candidate in term 5.
    let other = vote_request(5, (10, 4), true);
    let n = c.node(2);
    n.receive(now, 3, &other, &[]).unwrap();
    n.flush(now, &mut |_| {}).unwrap();
    let frames: StdVec<_> = c.wire.borrow_mut().drain(..).collect();
    let granted = frames.iter().any(|(_, _, f)| {
        matches!(
            raft_message(f),
            Some(Message::VoteResp(VoteResp { granted: true, .. }))
        )
    });
    assert!(
        !granted,
        "a second vote in the same term was granted after restart"
    );
}

#[test]
fn a_restarted_node_honours_a_lease_it_may_have_granted() {
    let (mut c, l, f) = Cluster::elected_three();
    let term = c.nodes[&l].raft().term();
    c.restart(f);
    assert_eq!(
        c.nodes[&f].raft().leader(),
        NO_NODE,
        "a restarted node knows no leader"
    );
    // Straight after the restart, a disruptive candidate is ignored...
    let now = c.now;
    let vote = vote_request(term + 1, (100, term), false);
    c.node(f).receive(now, 3, &vote, &[]).unwrap();
    assert_eq!(
        c.nodes[&f].raft().term(),
        term,
        "vote inside a possible lease must be ignored"
    );
    // ...and heard once an election timeout has passed.
    let later = now + 200;
    c.node(f).receive(later, 3, &vote, &[]).unwrap();
    assert_eq!(c.nodes[&f].raft().term(), term + 1);
}
