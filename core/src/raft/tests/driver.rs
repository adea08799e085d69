//! The driver: multi-raft hosting, refused frames, capacities, restart and in-place building.

use super::*;

// ----- 8. multi-raft -------------------------------------------------------------------------------

#[test]
fn one_host_runs_several_groups_added_and_removed_at_runtime() {
    use crate::multi::{MultiError, MultiNode};
    let wire: Wire = Rc::new(RefCell::new(StdVec::new()));
    let m = Membership::new(&[1], &[]).unwrap();
    let mut host: MultiNode<VecStore, Net, LogSm, StdVec<u8>, 2> = MultiNode::new();
    let group = |g| {
        let nc = NodeConfig {
            cluster_id: 7,
            group: g,
            node_id: 1,
            raft: test_cfg(),
            seed: 1,
        };
        let net = Net {
            from: 1,
            wire: wire.clone(),
        };
        Node::new(nc, parts(VecStore::default(), net), 0, Some(&m)).unwrap()
    };
    for g in [10, 20] {
        host.add_group(g, group(g)).unwrap();
    }
    let extra = group(30);
    assert_eq!(
        host.add_group(30, extra).err(),
        Some(MultiError::Full { max_groups: 2 })
    );
    for t in 1..100 {
        host.tick(t * 5).unwrap();
        host.flush(t * 5, &mut |_, _| {}).unwrap();
    }
    host.group_mut(10).unwrap().propose(500, b"ten").unwrap();
    host.group_mut(20).unwrap().propose(500, b"twenty").unwrap();
    let mut seen = StdVec::new();
    host.flush(500, &mut |g, e| {
        if let Event::Applied { .. } = e {
            seen.push(g)
        }
    })
    .unwrap();
    seen.sort();
    assert_eq!(seen, vec![10, 20]);
    assert_eq!(host.group(10).unwrap().state_machine().cmds[0].1, b"ten");
    // A frame for a group this host does not run is refused and counted.
    let bytes = frame_in(99, 2, 1, timeout_now_body(), &[]);
    assert_eq!(host.handle_frame(500, &bytes), Ok(()));
    assert_eq!(host.faults().get(Fault::WrongGroup), 1);
    assert_eq!(
        host.handle_frame(500, &bytes[..bytes.len() - 1]),
        Ok(()),
        "a torn frame"
    );
    assert_eq!(host.faults().get(Fault::BadFrame), 1);
    host.remove_group(10).unwrap();
    assert!(host.group(10).is_none());
    assert_eq!(host.group_ids().collect::<StdVec<_>>(), vec![20]);
}

#[test]
fn frames_for_another_cluster_group_or_node_are_refused() {
    let mut c = Cluster::new(&[1, 2]);
    let mut send = |cluster, group, to| {
        let bytes = frame_of(cluster, group, (2, to), timeout_now_body(), &[]);
        c.node(1).handle_frame(0, &bytes)
    };
    // Each is dropped and counted under its own cause; the node goes on.
    assert_eq!(send(8, 0, 1), Ok(()));
    assert_eq!(send(7, 3, 1), Ok(()));
    assert_eq!(send(7, 0, 5), Ok(()));
    let faults = c.nodes[&1].stats().faults;
    for f in [Fault::WrongCluster, Fault::WrongGroup, Fault::WrongNode] {
        assert_eq!(faults.get(f), 1, "{}", f.name());
    }
    assert_eq!(faults.total(), 3);
    assert_eq!(
        c.nodes[&1].raft().term(),
        1,
        "the TimeoutNow in them was not acted on"
    );
}

// ----- 10. capacities -----------------------------------------------------------------------------

#[test]
fn pending_proposal_limit_returns_busy() {
    let mut c = Cluster::tuned(&[1, 2, 3], |c| c.max_pending_proposals = 4);
    let l = c.elect();
    c.isolate(l);
    let now = c.now;
    let mut ok = 0;
    let err = loop {
        match c.node(l).propose(now, b"p") {
            Ok(_) => ok += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, ProposeError::Busy);
    assert_eq!(ok, 4);
}

#[test]
fn reads_beyond_the_round_limit_wait_in_one_round_then_busy() {
    let mut c = Cluster::tuned(&[1, 2, 3], |c| c.max_read_rounds = 2);
    let l = c.elect();
    c.isolate(l);
    let mut tickets = StdVec::new();
    for _ in 0..4 {
        let now = c.now;
        // Two rounds go out (one per flush); the third round waits and the fourth read joins it.
        tickets.push(c.node(l).read_index(now).expect("the read is queued"));
        c.flush_all();
    }
    // The periodic heartbeat sends the waiting round too: now nothing can take another read.
    c.run(test_cfg().heartbeat_interval_ms + 5);
    let now = c.now;
    assert_eq!(c.node(l).read_index(now), Err(ReadError::Busy));
    // Once the peers answer, every queued read is served.
    c.heal();
    c.run(50);
    let served = c.reads[&l]
        .iter()
        .filter_map(|e| match e {
            Event::ReadReady { upto, .. } => Some(*upto),
            _ => None,
        })
        .max();
    assert_eq!(served, tickets.last().copied());
}

#[test]
fn oversize_commands_are_refused() {
    let mut c = Cluster::tuned(&[1], |c| c.max_bytes_per_message = 128);
    let l = c.elect();
    let now = c.now;
    assert_eq!(
        c.node(l).propose(now, &[0u8; 200]),
        Err(ProposeError::TooLarge)
    );
}

#[test]
fn proposals_on_a_follower_name_the_leader() {
    let (mut c, l, f) = Cluster::elected_three();
    let now = c.now;
    assert_eq!(
        c.node(f).propose(now, b"x"),
        Err(ProposeError::NotLeader { leader: l })
    );
}

// ----- 12. the driver: restart recovers state and replays the log ---------------------------------

#[test]
fn restart_recovers_membership_and_replays_committed_entries() {
    let (mut c, l, f) = Cluster::elected_three();
    c.propose_each(l, 0..5);
    c.run(40);
    c.restart(f);
    assert_eq!(
        c.nodes[&f].raft().membership().voters.as_slice(),
        &[1, 2, 3]
    );
    c.run(60);
    assert_eq!(c.commands(f).len(), 5);
    assert_eq!(c.commands(f), c.commands(l));
}

/// Found by the simulator with 8 groups a node (seeds 80189 and 80968): a node crashed while a
/// group had just taken up a new leader's term and entries; the entries reached the medium, the
/// hard state with the new term did not, and the group came back in the old term holding
/// entries of the newer one.
#[test]
fn a_log_that_outran_its_hard_state_brings_the_term_up_at_restart() {
    let (mut c, l, f) = Cluster::elected_three();
    c.propose_each(l, 0..3);
    c.run(40);
    let term = c.nodes[&l].raft().term();
    assert!(term >= 2, "the election moved past the bootstrap term");
    let mut store = c.crash(f);
    assert_eq!(store.term(store.last_index()).unwrap(), term);
    // The hard state as it was before the follower heard from the leader of `term`.
    let commit = store.hs.commit;
    store.hs = HardState {
        term: term - 1,
        vote: 9,
        commit,
    };
    let syncs = store.syncs;
    c.start(f, store, None);
    let r = c.nodes[&f].raft();
    assert_eq!(
        (r.term(), r.vote),
        (term, 0),
        "the term of its last entry, not voted in"
    );
    let saved = c.nodes[&f].storage();
    assert_eq!(
        saved.hs,
        HardState {
            term,
            vote: 0,
            commit
        },
        "the raised term is saved"
    );
    assert!(saved.syncs > syncs, "and made durable before the node runs");
    // A hard state that kept up is left alone.
    let store = c.crash(f);
    let syncs = store.syncs;
    c.start(f, store, None);
    assert_eq!(c.nodes[&f].storage().syncs, syncs);
    c.propose_each(l, 3..6);
    c.run(60);
    assert_eq!(c.nodes[&l].raft().term(), term, "the leader kept its term");
    assert_eq!(c.commands(f), c.commands(l));
    assert_eq!(c.commands(f).len(), 6);
}

#[test]
fn restart_from_a_snapshot_restores_the_state_machine() {
    let (mut c, l) = snapshotting(&[1], 4, 9);
    let store = c.crash(l);
    assert!(store.snapshot_index() > 0);
    c.start(l, store, None);
    c.run(300);
    assert_eq!(c.commands(l).len(), 9);
}

#[test]
fn a_node_built_in_place_recovers_exactly_like_one_built_by_value() {
    let mut cfg = test_cfg();
    cfg.snapshot_entries = 4;
    let mut c = Cluster::with(&[1, 2, 3], &[], cfg.clone());
    let l = c.elect();
    for i in 0..10u8 {
        c.propose(l, &[i; 4]);
        c.run(5);
    }
    let f = Cluster::follower_of(l);
    let store = c.crash(f);
    assert!(
        store.snapshot_index() > 0,
        "recovery must go through a snapshot"
    );
    let nc = NodeConfig {
        cluster_id: 7,
        group: 0,
        node_id: f,
        raft: cfg,
        seed: 5,
    };
    let net = || Net {
        from: f,
        wire: c.wire.clone(),
    };
    let by_value = Node::new(nc.clone(), parts(store.clone(), net()), c.now, None).unwrap();
    // A slot that already held a node (as a reused static would) is simply overwritten.
    let mut slot = std::boxed::Box::new(core::mem::MaybeUninit::<TNode>::uninit());
    let first = Node::init(
        &mut slot,
        nc.clone(),
        parts(VecStore::default(), net()),
        c.now,
        Some(&Membership::new(&[f], &[]).unwrap()),
    )
    .unwrap();
    assert_eq!(first.raft().membership().voters.as_slice(), &[f]);
    let in_place = Node::init(&mut slot, nc, parts(store, net()), c.now, None).unwrap();
    let (a, b) = (by_value.raft(), in_place.raft());
    assert_eq!(
        (
            a.term(),
            a.commit(),
            a.applied(),
            a.last_index(),
            a.last_term()
        ),
        (
            b.term(),
            b.commit(),
            b.applied(),
            b.last_index(),
            b.last_term()
        )
    );
    assert_eq!(a.snapshot_index(), b.snapshot_index());
    assert_eq!(a.membership(), b.membership());
    assert_eq!(a.membership().voters.as_slice(), &[1, 2, 3]);
    assert_eq!(a.role(), b.role());
    assert_eq!(
        by_value.state_machine().cmds,
        in_place.state_machine().cmds,
        "both restored the state machine from the snapshot"
    );
    assert!(!in_place.state_machine().cmds.is_empty());
}

#[test]
fn a_configuration_that_does_not_validate_is_refused_before_anything_is_built() {
    let mut bad = test_cfg();
    bad.max_inflight = 0;
    let mut slot = core::mem::MaybeUninit::<TNode>::uninit();
    let net = Net {
        from: 9,
        wire: Rc::new(RefCell::new(StdVec::new())),
    };
    let nc = NodeConfig {
        cluster_id: 7,
        group: 0,
        node_id: 9,
        raft: bad,
        seed: 1,
    };
    let err = Node::init(&mut slot, nc, parts(VecStore::default(), net), 0, None).err();
    assert_eq!(
        err,
        Some(crate::driver::NodeError::Config(ConfigError::MaxInflight))
    );
}
