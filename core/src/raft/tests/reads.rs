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
