//! Membership changes by joint consensus, observers, and a removed leader.

use super::*;

#[test]
fn the_largest_membership_encodes_within_max_config_bytes() {
    let m = crate::membership::largest();
    let mut buf = [0u8; MAX_CONFIG_BYTES];
    let n = postcard::to_slice(&m, &mut buf).unwrap().len();
    assert_eq!(n, MAX_CONFIG_BYTES, "the bound is exact");
}

// ----- 5. membership -----------------------------------------------------------------------------

#[test]
fn joint_consensus_adds_a_node_through_prepare_and_commit() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.propose(l, b"before");
    c.run(30);
    c.start(4, VecStore::default(), None);
    assert_eq!(
        c.nodes[&4].raft().role(),
        Role::Observer,
        "a joining node waits as observer"
    );
    prepare(&mut c, l, &[1, 2, 3, 4]);
    assert!(c.nodes[&l].raft().membership().joint);
    change(&mut c, l, ConfigChange::Commit);
    for id in [1, 2, 3, 4] {
        let m = c.nodes[&id].raft().membership();
        assert!(
            !m.joint && m.voters.as_slice() == [1, 2, 3, 4],
            "node {} has {:?}",
            id,
            m
        );
    }
    assert_eq!(c.commands(4), vec![b"before".to_vec()]);
    assert_eq!(c.nodes[&4].raft().role(), Role::Follower);
}

#[test]
fn a_node_added_as_voter_helps_elect_before_it_has_the_entry_that_says_so() {
    // Node 4 misses the joint entry; then the leader is lost for good. The joint
    // configuration needs three of [1, 2, 3, 4]: the two others and node 4, which still
    // thinks itself an observer and must answer their pre-votes all the same.
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.start(4, VecStore::default(), None);
    c.isolate(4);
    change(
        &mut c,
        l,
        ConfigChange::Prepare(Membership::new(&[1, 2, 3, 4], &[]).unwrap()),
    );
    assert!(c.nodes[&l].raft().membership().joint);
    assert_eq!(c.nodes[&4].raft().role(), Role::Observer);
    c.crash(l);
    c.heal();
    let nl = c.elect();
    assert_ne!(nl, l);
    change(&mut c, nl, ConfigChange::Commit);
    assert_eq!(c.nodes[&4].raft().role(), Role::Follower);
}

#[test]
fn joint_decisions_need_both_majorities() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.start(4, VecStore::default(), None);
    c.start(5, VecStore::default(), None);
    let others: StdVec<NodeId> = [1, 2, 3].into_iter().filter(|&x| x != l).collect();
    prepare(&mut c, l, &[l, 4, 5]);
    // Cut the new half's other members: the old majority alone cannot commit.
    c.isolate(4);
    c.isolate(5);
    let before = c.nodes[&l].raft().commit();
    c.propose(l, b"needs both halves");
    c.run(60);
    assert_eq!(
        c.nodes[&l].raft().commit(),
        before,
        "old majority {:?} alone must not commit",
        others
    );
    c.heal();
    c.run(60);
    assert!(c.nodes[&l].raft().commit() > before);
}

#[test]
fn abort_returns_to_the_old_configuration() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.start(4, VecStore::default(), None);
    prepare(&mut c, l, &[1, 2, 3, 4]);
    let now = c.now;
    assert_eq!(
        c.node(l)
            .change_membership(
                now,
                ConfigChange::Prepare(Membership::new(&[1], &[]).unwrap())
            )
            .unwrap_err(),
        ProposeError::ConfigChangeInProgress
    );
    change(&mut c, l, ConfigChange::Abort);
    for id in [1, 2, 3] {
        assert_eq!(
            c.nodes[&id].raft().membership(),
            &Membership::new(&[1, 2, 3], &[]).unwrap()
        );
    }
}

#[test]
fn observers_receive_the_log_but_never_vote_and_can_be_promoted() {
    let mut c = Cluster::with(&[1, 2, 3], &[4], test_cfg());
    let l = c.elect();
    assert_eq!(c.nodes[&4].raft().role(), Role::Observer);
    c.propose(l, b"x");
    c.run(30);
    assert_eq!(c.commands(4), vec![b"x".to_vec()]);
    // The observer never campaigns, even when cut off for long.
    c.isolate(4);
    c.run(1000);
    assert_eq!(c.nodes[&4].raft().role(), Role::Observer);
    assert_eq!(c.nodes[&4].raft().stats().elections, 0);
    c.heal();
    c.run(100);
    let l = c.leader();
    reconfigure(&mut c, l, &[1, 2, 3, 4]);
    assert_eq!(
        c.nodes[&4].raft().role(),
        Role::Follower,
        "promoted observer votes"
    );
}

#[test]
fn a_removed_leader_steps_down() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    let rest: StdVec<NodeId> = [1, 2, 3].into_iter().filter(|&x| x != l).collect();
    reconfigure(&mut c, l, &rest);
    assert_ne!(c.nodes[&l].raft().role(), Role::Leader);
    c.run(500);
    let nl = c.leaders().into_iter().find(|x| rest.contains(x));
    assert!(nl.is_some(), "the remaining members elect a leader");
}

#[test]
fn a_node_left_out_by_an_uncommitted_configuration_still_campaigns() {
    // The leader of {1,2,3,4} appends the final configuration of a change that removes it,
    // and loses its followers before anyone else has the entry; one old voter then dies for
    // good. The survivors are still joint: the old half needs 3 of 4, so it needs the old
    // leader, whose longer log makes it refuse their votes. Unless the old leader campaigns
    // (under the final configuration, which it holds) nobody can ever be elected.
    let (mut c, l) = Cluster::elected(&[1, 2, 3, 4]);
    c.start(5, VecStore::default(), None);
    let others: StdVec<NodeId> = [1, 2, 3, 4].into_iter().filter(|&x| x != l).collect();
    let mut target = others.clone();
    target.push(5);
    prepare(&mut c, l, &target);
    let dead = others[0];
    c.crash(dead);
    c.isolate(l);
    let now = c.now;
    let (idx, _, _) = c
        .node(l)
        .change_membership(now, ConfigChange::Commit)
        .unwrap();
    c.run(2000);
    assert_ne!(
        c.nodes[&l].raft().role(),
        Role::Leader,
        "cut off, it stepped down"
    );
    assert!(
        c.leaders().is_empty(),
        "nobody leads while the old leader is cut off"
    );
    c.heal();
    c.run(3000);
    let leaders = c.leaders();
    assert!(
        leaders.len() == 1 && target.contains(&leaders[0]),
        "a member of the final configuration leads: {leaders:?}"
    );
    let nl = leaders[0];
    assert!(c.nodes[&nl].raft().commit() >= idx);
    assert_eq!(
        c.nodes[&nl].raft().membership(),
        &Membership::new(&target, &[]).unwrap()
    );
    assert_eq!(c.nodes[&l].raft().role(), Role::Observer);
}
