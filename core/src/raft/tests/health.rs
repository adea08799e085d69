//! What a health check reads from the core: a leader is healthy while a quorum acknowledges it
//! within the lease window, a follower while it hears from its leader within an election
//! timeout, and a node the configuration does not name never is.

use super::*;

fn health(c: &Cluster, id: NodeId) -> Health {
    c.nodes[&id].raft().health(c.now)
}

#[test]
fn a_settled_group_is_healthy_on_every_node() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.run(50);
    assert_eq!(health(&c, l), Health::Leading);
    for id in [1, 2, 3].into_iter().filter(|&x| x != l) {
        assert_eq!(health(&c, id), Health::Following { leader: l });
        assert!(health(&c, id).is_healthy());
    }
}

#[test]
fn a_node_that_lost_its_quorum_turns_unhealthy_within_two_election_timeouts() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.run(50);
    let et = c.cfg.election_timeout_ms;
    // Cut the two others off each other and off the leader: nobody has a quorum.
    c.isolate(1);
    c.isolate(2);
    c.isolate(3);
    c.run(2 * et);
    for id in [1, 2, 3] {
        let h = health(&c, id);
        assert!(!h.is_healthy(), "node {id} (leader was {l}) says {h:?}");
    }
    // The leader knew it first: within one lease window it stopped counting as one.
    c.heal();
    let l2 = c.elect();
    c.run(50);
    assert_eq!(health(&c, l2), Health::Leading);
    c.isolate(l2);
    let window = c.nodes[&l2].raft().lease_window_ms();
    c.run(window + c.cfg.heartbeat_interval_ms);
    let h = health(&c, l2);
    assert!(
        matches!(h, Health::NoQuorum { .. } | Health::NoLeader),
        "cut off for a lease window, the leader says {h:?}"
    );
    assert!(
        c.nodes[&l2].raft().role() == Role::Leader || h == Health::NoLeader,
        "either it still leads (CheckQuorum has not run) or it stepped down"
    );
}

#[test]
fn a_follower_whose_leader_went_silent_says_so_and_names_it() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.run(50);
    let f = Cluster::follower_of(l);
    // Only the leader's frames to `f` are lost.
    c.cut.insert((l, f));
    c.run(c.cfg.election_timeout_ms);
    match health(&c, f) {
        Health::LeaderSilent { leader, silent_ms } => {
            assert_eq!(leader, l);
            assert!(silent_ms >= c.cfg.election_timeout_ms);
        }
        // The follower's election timer may have run out already: it campaigns.
        Health::NoLeader => {}
        h => panic!("follower {f} of a silent leader says {h:?}"),
    }
}

#[test]
fn a_removed_node_and_a_joining_one_are_not_members() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.start(4, VecStore::default(), None);
    assert_eq!(health(&c, 4), Health::NotMember, "not added yet");
    let gone = Cluster::follower_of(l);
    let rest: StdVec<NodeId> = [1, 2, 3].into_iter().filter(|&x| x != gone).collect();
    change(
        &mut c,
        l,
        ConfigChange::Prepare(Membership::new(&rest, &[]).unwrap()),
    );
    change(&mut c, l, ConfigChange::Commit);
    // The final configuration reaches the remaining members only; the removed node learns
    // nothing more, and once its leader has been silent for an election timeout it says so.
    c.run(2 * c.cfg.election_timeout_ms);
    assert_eq!(health(&c, gone), Health::NotMember);
    assert_eq!(health(&c, gone).reason(), "not_member");
    assert_eq!(health(&c, l), Health::Leading);
}

#[test]
fn a_sole_voter_that_leads_is_its_own_quorum() {
    let (mut c, l) = Cluster::elected(&[1]);
    c.run(10 * c.cfg.election_timeout_ms);
    assert_eq!(health(&c, l), Health::Leading);
}
