//! Background syncs of a leader's own log (`Node::flush_deferred`).

use super::*;
use crate::driver::Pending;

// ----- background syncs (Node::flush_deferred) ---------------------------------------------------

fn deferred_flush(c: &mut Cluster, id: NodeId) -> Option<SyncPoint> {
    let now = c.now;
    c.node(id).flush_deferred(now, &mut |_| {}).unwrap()
}

#[test]
fn a_deferred_sync_holds_only_the_leaders_own_vote_until_it_is_reported() {
    let mut c = Cluster::new(&[1]);
    c.run(5);
    assert_eq!(c.leaders(), vec![1]);
    let syncs = c.nodes[&1].storage().syncs;
    let (a, _) = c.propose(1, b"a");
    let at = deferred_flush(&mut c, 1).expect("a sole leader's new entry is left to the caller");
    assert_eq!(at.index, a);
    assert_eq!(
        deferred_flush(&mut c, 1),
        Some(at),
        "asked again until reported"
    );
    assert!(
        c.nodes[&1].raft().commit() < a,
        "not durable here: not committed"
    );
    assert!(c.commands(1).is_empty());
    assert_eq!(c.nodes[&1].storage().syncs, syncs, "the flush did not sync");
    // A write after the sync started is not covered by it.
    let (b, _) = c.propose(1, b"b");
    c.node(1).log_persisted(at);
    assert_eq!(c.nodes[&1].raft().commit(), a);
    let next = deferred_flush(&mut c, 1).expect("b still waits");
    assert_eq!(next.index, b);
    assert_eq!(c.commands(1), vec![b"a".to_vec()], "a applies, b waits");
    c.node(1).log_persisted(next);
    assert_eq!(deferred_flush(&mut c, 1), None);
    assert_eq!(c.commands(1), vec![b"a".to_vec(), b"b".to_vec()]);
    // A stale report changes nothing.
    c.node(1).log_persisted(at);
    assert_eq!(c.nodes[&1].raft().persisted_index(), b);
}

#[test]
fn a_follower_never_defers_its_sync() {
    let (mut c, l, f) = Cluster::elected_three();
    c.propose(l, b"x");
    let now = c.now;
    c.node(l).flush(now, &mut |_| {}).unwrap();
    c.deliver_only_to(f);
    let syncs = c.nodes[&f].storage().syncs;
    assert!(c.nodes[&f].raft().needs_sync());
    assert_eq!(
        deferred_flush(&mut c, f),
        None,
        "an acknowledgement waits for the follower's own sync"
    );
    assert_eq!(c.nodes[&f].storage().syncs, syncs + 1);
    assert!(!c.nodes[&f].raft().needs_sync());
}

// ----- syncs shared by groups (Node::flush_shared) ------------------------------------------------

/// Frames `from` has put on the wire so far (not taken off).
fn sent_by(c: &Cluster, from: NodeId) -> usize {
    c.wire
        .borrow()
        .iter()
        .filter(|(f, _, _)| *f == from)
        .count()
}

#[test]
fn a_shared_flush_holds_a_followers_acknowledgement_until_the_caller_synced() {
    let (mut c, l, f) = Cluster::elected_three();
    let (x, _) = c.propose(l, b"x");
    let now = c.now;
    c.node(l).flush(now, &mut |_| {}).unwrap();
    c.deliver_only_to(f);
    let syncs = c.nodes[&f].storage().syncs;
    let at = match c.node(f).flush_shared(now, &mut |_| {}).unwrap() {
        Pending::Everything(at) => at,
        p => panic!("a follower's append waits for a full sync, got {p:?}"),
    };
    assert_eq!(at.index, x);
    assert_eq!(
        c.nodes[&f].storage().syncs,
        syncs,
        "the driver did not sync"
    );
    assert_eq!(
        sent_by(&c, f),
        0,
        "no acknowledgement before the entry is durable"
    );
    // The caller makes the storage durable (here: the test store's own sync) and says so.
    c.node(f).storage_mut().sync().unwrap();
    c.node(f).synced(at, now, &mut |_| {}).unwrap();
    assert!(!c.nodes[&f].raft().needs_sync());
    assert_eq!(c.nodes[&f].raft().persisted_index(), x);
    assert_eq!(sent_by(&c, f), 1, "the acknowledgement leaves once synced");
    c.deliver();
    assert_eq!(
        c.nodes[&l].raft().commit(),
        x,
        "and the leader commits with it"
    );
    c.run(50);
    assert_eq!(c.commands(f), vec![b"x".to_vec()]);
}

#[test]
fn a_shared_flush_with_nothing_to_sync_is_a_whole_flush() {
    let (mut c, l, f) = Cluster::elected_three();
    let now = c.now;
    assert_eq!(
        c.node(f).flush_shared(now, &mut |_| {}).unwrap(),
        Pending::Nothing
    );
    // A leader's own new entry may still sync in the background.
    let (x, _) = c.propose(l, b"x");
    match c.node(l).flush_shared(now, &mut |_| {}).unwrap() {
        Pending::OwnLog(at) => assert_eq!(at.index, x),
        p => panic!("a leader's own log is left to a background sync, got {p:?}"),
    }
}

#[test]
fn a_new_vote_waits_for_the_shared_sync_too() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let now = c.now + 1000;
    // A vote request for a higher term: granting it changes term and vote (hard state).
    let req = vote_request(5, (10, 4), true);
    c.node(2).receive(now, 1, &req, &[]).unwrap();
    let at = match c.node(2).flush_shared(now, &mut |_| {}).unwrap() {
        Pending::Everything(at) => at,
        p => panic!("a vote is held for a full sync, got {p:?}"),
    };
    assert_eq!(sent_by(&c, 2), 0, "the grant waits for the durable vote");
    c.node(2).storage_mut().sync().unwrap();
    c.node(2).synced(at, now, &mut |_| {}).unwrap();
    let granted = c.wire.borrow().iter().any(|(from, _, f)| {
        *from == 2
            && matches!(
                raft_message(f),
                Some(Message::VoteResp(VoteResp { granted: true, .. }))
            )
    });
    assert!(granted, "granted once the vote is durable");
    assert_eq!(c.nodes[&2].storage().hard_state().vote, 1);
}

#[test]
fn a_sync_started_before_the_log_was_cut_vouches_for_nothing() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let mut before_cut = None;
    let old = diverge(&mut c, 5, 8, |c, old| {
        before_cut = Some(c.nodes[&old].raft().sync_point());
    });
    let before_cut = before_cut.expect("seen before the heal");
    let r = &mut c.node(old).raft;
    assert!(r.last_index() >= before_cut.index, "the cut was refilled");
    assert_ne!(r.sync_point().epoch, before_cut.epoch);
    let durable = r.persisted_index();
    assert!(durable >= before_cut.index);
    // Pretend the tail since the cut is not durable yet: the old sync must not vouch for it.
    let low = before_cut.index - 3;
    r.persisted_index = low;
    assert!(
        !r.on_log_persisted(before_cut),
        "entries at those indexes are not the ones that sync covered"
    );
    assert_eq!(r.persisted_index(), low);
    let now_point = SyncPoint {
        index: durable,
        epoch: r.sync_point().epoch,
    };
    assert!(r.on_log_persisted(now_point));
    assert_eq!(r.persisted_index(), durable);
}

/// The commit index a node's storage holds, as a restarted node or an offline export reads it.
fn saved_commit(c: &mut Cluster, id: NodeId) -> LogIndex {
    c.node(id).storage().hard_state().commit
}

#[test]
fn the_commit_index_is_saved_once_per_hint_interval_while_it_advances() {
    let mut c = Cluster::tuned(&[1, 2, 3], |c| c.commit_hint_interval_ms = 1_000);
    let l = c.elect();
    c.run(1_100);
    let before = saved_commit(&mut c, l);
    c.propose_each(l, 0..5);
    c.run(50);
    let commit = c.node(l).raft().commit();
    assert!(commit > before, "the writes committed");
    // Within the interval the hint stays where it was: no hard-state write per batch.
    assert_eq!(saved_commit(&mut c, l), before);
    // Once the interval has passed, the next call saves it, on every member, with no new
    // write needed (the tick is enough).
    c.run(1_000);
    for id in [1, 2, 3] {
        assert_eq!(saved_commit(&mut c, id), commit, "node {id}");
    }
    // A restart applies up to it at once.
    let f = Cluster::follower_of(l);
    c.restart(f);
    assert_eq!(c.node(f).raft().commit(), commit);
}

#[test]
fn a_node_stopping_cleanly_saves_its_commit_index_whatever_the_interval() {
    let mut c = Cluster::tuned(&[1, 2, 3], |c| c.commit_hint_interval_ms = 0);
    let l = c.elect();
    let before = saved_commit(&mut c, l);
    c.propose_each(l, 0..5);
    c.run(2_000);
    let commit = c.node(l).raft().commit();
    // Off: only term, vote and snapshots carry it.
    assert_eq!(saved_commit(&mut c, l), before);
    assert!(c.node(l).save_commit_hint().unwrap());
    assert_eq!(saved_commit(&mut c, l), commit);
    // Nothing new to save: nothing written.
    assert!(!c.node(l).save_commit_hint().unwrap());
}

#[test]
fn a_commit_hint_the_durable_log_covers_waits_for_no_sync() {
    // A sole leader whose own log syncs in the background (as with many busy groups).
    let mut c = Cluster::tuned(&[1], |c| c.commit_hint_interval_ms = 1_000);
    c.run(5);
    assert_eq!(c.leaders(), vec![1]);
    let (a, _) = c.propose(1, b"a");
    let at = deferred_flush(&mut c, 1).expect("left to the caller");
    c.node(1).log_persisted(at);
    assert_eq!(deferred_flush(&mut c, 1), None, "a applied");
    assert_eq!(c.nodes[&1].raft().commit(), a);
    let (syncs, hints) = (c.nodes[&1].storage().syncs, c.nodes[&1].storage().hints);
    // The hint falls due on a tick: it covers only durable entries, so it is saved as a hint
    // and nothing waits for a sync of it.
    for _ in 0..250 {
        c.tick_all();
    }
    assert_eq!(saved_commit(&mut c, 1), a, "the hint was saved");
    assert_eq!(c.nodes[&1].storage().hints, hints + 1);
    assert!(!c.nodes[&1].raft().needs_sync(), "no sync waits for a hint");
    assert_eq!(deferred_flush(&mut c, 1), None);
    let now = c.now;
    assert!(matches!(
        c.node(1).flush_shared(now, &mut |_| {}).unwrap(),
        Pending::Nothing
    ));
    assert_eq!(c.nodes[&1].storage().syncs, syncs, "nothing synced for it");
}

#[test]
fn a_commit_hint_past_the_durable_log_is_saved_and_synced_as_the_hard_state() {
    // A leader of three whose followers acknowledged entries its own background sync has not
    // made durable yet: the commit index is past its durable log.
    let mut c = Cluster::tuned(&[1, 2, 3], |c| c.commit_hint_interval_ms = 1_000);
    let l = c.elect();
    c.run(1_100);
    let (x, _) = c.propose(l, b"x");
    let at = deferred_flush(&mut c, l).expect("the leader's own log is left to the caller");
    // Frames go by hand: the followers flush (and sync) as they take them, the leader never.
    for _ in 0..4 {
        let frames: StdVec<_> = c.wire.borrow_mut().drain(..).collect();
        let now = c.now;
        for (_, to, f) in frames {
            c.node(to).handle_frame(now, &f).unwrap();
        }
        for f in [1, 2, 3].into_iter().filter(|&f| f != l) {
            c.node(f).flush(now, &mut |_| {}).unwrap();
        }
        let _ = deferred_flush(&mut c, l);
    }
    assert_eq!(
        c.nodes[&l].raft().commit(),
        x,
        "the followers made it a quorum"
    );
    assert!(c.nodes[&l].raft().persisted_index() < x);
    let hints = c.nodes[&l].storage().hints;
    let now = c.now + 1_000;
    c.node(l).tick(now).unwrap();
    assert_eq!(saved_commit(&mut c, l), x, "saved with the hard state");
    assert_eq!(c.nodes[&l].storage().hints, hints, "not as a hint");
    assert!(
        !c.nodes[&l].raft().only_own_log_unsynced(),
        "the save waits for a whole sync, not the log's background one"
    );
    c.node(l).log_persisted(at);
}
