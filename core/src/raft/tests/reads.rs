//! Leader transfer, ReadIndex on the leader and through followers, and read limits.

use super::*;

// ----- 6. leader transfer ------------------------------------------------------------------------

#[test]
fn leader_transfer_catches_the_target_up_then_hands_over() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    let t = if l == 3 { 2 } else { 3 };
    c.isolate(t);
    c.propose_each(l, 0..10);
    c.run(20);
    c.heal();
    let now = c.now;
    c.node(l).transfer_leader(now, t).unwrap();
    assert_eq!(
        c.node(l).propose(now, b"no"),
        Err(ProposeError::TransferInProgress)
    );
    c.run(100);
    assert_eq!(c.leader(), t);
    assert_eq!(c.commands(t).len(), 10);
    let now = c.now;
    assert_eq!(
        c.node(t).transfer_leader(now, t),
        Err(TransferError::BadTarget)
    );
}

// ----- 7. reads ----------------------------------------------------------------------------------

#[test]
fn read_index_on_the_leader_waits_for_a_quorum_round() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.propose(l, b"w");
    c.run(20);
    let now = c.now;
    let t1 = c.node(l).read_index(now).unwrap();
    let t2 = c.node(l).read_index(now).unwrap();
    c.flush_all();
    assert!(
        c.reads[&l].is_empty(),
        "no read is ready before a quorum confirms leadership"
    );
    c.deliver();
    let ready = c.reads[&l].iter().find_map(|e| match e {
        Event::ReadReady { upto, index } => Some((*upto, *index)),
        _ => None,
    });
    let (upto, index) = ready.expect("read became ready");
    assert!(upto >= t2 && t2 > t1, "both reads share one round");
    assert!(index >= 2);
}

#[test]
fn an_isolated_leader_cannot_serve_read_index() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.isolate(l);
    let now = c.now;
    c.node(l).read_index(now).unwrap();
    c.run(300);
    let ready = c.reads[&l]
        .iter()
        .any(|e| matches!(e, Event::ReadReady { .. }));
    let failed = c.reads[&l]
        .iter()
        .any(|e| matches!(e, Event::ReadFailed { .. }));
    assert!(!ready, "a deposed leader must not confirm a read");
    assert!(failed, "the read fails once the leader steps down");
}

#[test]
fn a_follower_serves_reads_through_the_leader() {
    let (mut c, l, f) = Cluster::elected_three();
    c.propose(l, b"w");
    c.run(20);
    let now = c.now;
    let t = c.node(f).read_index(now).unwrap();
    c.run(30);
    let got = c.reads[&f].iter().find_map(|e| match e {
        Event::ReadReady { upto, index } if *upto >= t => Some(*index),
        _ => None,
    });
    let index = got.expect("the follower's read became ready");
    assert!(c.nodes[&f].applied() >= index);
    assert!(index >= 3, "the read index covers the committed write");
}

#[test]
fn reads_without_a_leader_are_refused() {
    let mut c = Cluster::new(&[1, 2, 3]);
    assert_eq!(c.node(1).read_index(0), Err(ReadError::NoLeader));
}

#[test]
fn single_node_reads_are_immediate() {
    let (mut c, l) = Cluster::elected(&[1]);
    let now = c.now;
    c.node(l).read_index(now).unwrap();
    c.flush_all();
    assert!(c.reads[&l]
        .iter()
        .any(|e| matches!(e, Event::ReadReady { .. })));
}

// ----- 8. the lease and the clock check ------------------------------------------------------------

#[test]
fn a_leader_whose_clock_runs_slow_stops_using_its_lease_until_the_clocks_agree() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.run(150);
    assert!(c.nodes[&l].read_lease(c.local(l)).is_ok());
    assert_eq!(c.nodes[&l].raft().clock_drift_peers(), 0);
    // The leader's clock slows to a quarter: by its clock, its followers' run four times as
    // fast, so their promise not to vote ends long before its lease would.
    c.set_clock_rate(l, 250);
    c.run(200);
    let now = c.local(l);
    assert_eq!(c.nodes[&l].read_lease(now), Err(ReadError::LeaseExpired));
    let r = c.nodes[&l].raft();
    assert_eq!(r.clock_drift_peers(), 2);
    assert_eq!(r.stats().clock_drift_detected, 2);
    for p in r.progress() {
        assert_eq!(p.clock.verdict(), ClockVerdict::Drift);
        assert!(p.clock.rate_ppm().unwrap() > 500_000, "{:?}", p.clock);
    }
    // ReadIndex reads do not depend on clocks and go on.
    let t = c.node(l).read_index(now).unwrap();
    c.deliver();
    assert!(
        c.reads[&l]
            .iter()
            .any(|e| matches!(e, Event::ReadReady { upto, .. } if *upto >= t)),
        "{:?}",
        c.reads[&l]
    );
    // Once the rates agree again (two windows of answers), the lease is back.
    c.set_clock_rate(l, 1000);
    c.run(400);
    assert_eq!(c.nodes[&l].raft().clock_drift_peers(), 0);
    assert!(c.nodes[&l].read_lease(c.local(l)).is_ok());
}

#[test]
fn a_follower_whose_clock_runs_fast_is_left_out_of_the_lease() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.run(150);
    let f = Cluster::follower_of(l);
    c.set_clock_rate(f, 1500);
    c.run(300);
    let r = c.nodes[&l].raft();
    assert_eq!(r.clock_drift_peers(), 1);
    let drifting: StdVec<NodeId> = r
        .progress()
        .iter()
        .filter(|p| p.clock.verdict() == ClockVerdict::Drift)
        .map(|p| p.id)
        .collect();
    assert_eq!(drifting, [f]);
    // The other follower and the leader are still a quorum whose clocks agree.
    assert!(c.nodes[&l].read_lease(c.local(l)).is_ok());
    // Without it, no quorum agrees: the lease lapses.
    let other = (1..=3).find(|&n| n != l && n != f).unwrap();
    c.isolate(other);
    c.run(100);
    if c.nodes[&l].raft().role() == Role::Leader {
        assert_eq!(
            c.nodes[&l].read_lease(c.local(l)),
            Err(ReadError::LeaseExpired)
        );
    }
}

#[test]
fn a_slow_leader_cut_off_serves_no_stale_lease_read() {
    // The reproduction: the leader's clock at a quarter of real rate, then the leader cut off
    // while the others elect a new leader and commit a write.
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.run(150);
    c.set_clock_rate(l, 250);
    c.run(100);
    c.isolate(l);
    let mut new_leader = None;
    for _ in 0..100 {
        c.run(10);
        if let Some(&n) = c.leaders().iter().find(|&&n| n != l) {
            new_leader = Some(n);
            break;
        }
    }
    let n = new_leader.expect("the majority elects a new leader");
    let (index, _) = c.propose(n, b"newer");
    c.run(20);
    assert!(c.nodes[&n].raft().commit() >= index);
    // The old leader's clock says little time passed; without the clock check it would still
    // trust its lease here and serve a read that misses the committed write.
    if c.nodes[&l].raft().role() == Role::Leader {
        assert_eq!(
            c.nodes[&l].read_lease(c.local(l)),
            Err(ReadError::LeaseExpired)
        );
    }
}
