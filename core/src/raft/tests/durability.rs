//! Background syncs of a leader's own log (`Node::flush_deferred`).

use super::*;

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
