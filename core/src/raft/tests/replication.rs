//! Replication: pipelining, limits, backtracking, truncation, the commit rule, held acks.

use super::*;

// ----- 2. replication ----------------------------------------------------------------------------

#[test]
fn proposals_replicate_and_apply_in_order_everywhere() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    for i in 0..50u32 {
        c.propose(l, &i.to_le_bytes());
    }
    c.run(50);
    let want: StdVec<StdVec<u8>> = (0..50u32).map(|i| i.to_le_bytes().to_vec()).collect();
    for id in [1, 2, 3] {
        assert_eq!(c.commands(id), want, "node {}", id);
    }
    // The leader reported each of its proposals applied with the index it was given.
    assert_eq!(c.applied[&l].len(), 50);
}

#[test]
fn pipelining_respects_the_inflight_window_and_message_limits() {
    let mut c = Cluster::tuned(&[1, 2], |c| {
        c.max_inflight = 2;
        c.max_entries_per_message = 3;
    });
    let l = c.elect();
    let f = 3 - l;
    c.flush_all();
    c.wire.borrow_mut().clear();
    let now = c.now;
    for i in 0..20u8 {
        c.node(l).propose(now, &[i]).unwrap();
    }
    c.flush_all();
    let frames: StdVec<_> = c
        .wire
        .borrow()
        .iter()
        .filter(|(_, to, _)| *to == f)
        .map(|x| x.2.clone())
        .collect();
    let mut appends = 0;
    for fr in &frames {
        if let Some(Message::Append(Append { count, .. })) = raft_message(fr) {
            if count > 0 {
                appends += 1;
                assert!(count <= 3, "max_entries_per_message exceeded: {}", count);
            }
        }
    }
    assert_eq!(
        appends, 2,
        "exactly the window of 2 messages goes out before any ack"
    );
    c.deliver();
    c.run(20);
    assert_eq!(c.commands(f).len(), 20);
}

#[test]
fn a_byte_budget_smaller_than_the_batch_sends_fewer_entries() {
    let mut c = Cluster::tuned(&[1, 2], |c| c.max_bytes_per_message = 300);
    let l = c.elect();
    for i in 0..10u8 {
        c.propose(l, &[i; 100]);
    }
    c.run(100);
    assert_eq!(
        c.commands(3 - l).len(),
        10,
        "all entries still arrive, a few per message"
    );
}

#[test]
fn a_lagging_follower_is_repaired_by_fast_backtracking() {
    let (mut c, l, f) = Cluster::elected_three();
    c.isolate(f);
    for i in 0..30u8 {
        c.propose(l, &[i]);
        c.run(5);
    }
    c.heal();
    c.run(100);
    assert_eq!(c.commands(f), c.commands(l));
}

#[test]
fn conflicting_uncommitted_suffix_is_truncated() {
    let mut c = Cluster::new(&[1, 2, 3]);
    diverge(&mut c, 5, 3, |_, _| {});
    for id in [1, 2, 3] {
        assert_eq!(
            c.commands(id),
            vec![vec![0], vec![1], vec![2]],
            "node {}",
            id
        );
    }
}

#[test]
fn an_old_term_entry_is_not_committed_by_counting_replicas() {
    // Raft §5.4.2 (Figure 8): a new leader must not commit an entry of an earlier term just
    // because a majority holds it; only an entry of its own term commits it.
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    let now = c.now;
    let (idx, _) = c.node(l).propose(now, b"old").unwrap();
    let term = c.nodes[&l].raft().term();
    // Hand-craft the state: a leader of a later term whose log has the old entry replicated
    // to a quorum, but whose own no-op is not yet replicated.
    let r = &mut c.node(l).raft;
    r.term = term + 1;
    r.term_start_index = idx + 1;
    r.last_index = idx;
    r.persisted_index = idx;
    for p in r.progress.iter_mut() {
        p.match_index = idx;
    }
    let before = r.commit;
    r.maybe_commit();
    assert_eq!(
        r.commit, before,
        "an earlier-term entry must not commit by counting"
    );
    r.term_start_index = idx;
    r.maybe_commit();
    assert_eq!(
        r.commit, idx,
        "an entry of the current term commits by counting"
    );
}

#[test]
fn leader_replicates_before_its_own_sync() {
    let (mut c, l) = Cluster::elected(&[1, 2, 3]);
    c.flush_all();
    c.wire.borrow_mut().clear();
    let syncs = c.nodes[&l].storage().syncs;
    let now = c.now;
    c.node(l).propose(now, b"x").unwrap();
    // Raft alone (before the driver syncs) already queued the appends.
    let n = c.node(l);
    let r = &mut n.raft;
    r.flush(now, &mut n.store).unwrap();
    let queued = count_released(r, |m| matches!(m, Message::Append(Append { count: 1, .. })));
    assert_eq!(
        queued, 2,
        "appends leave before the leader's own write is durable"
    );
    assert_eq!(c.nodes[&l].storage().syncs, syncs);
}

#[test]
fn a_heartbeat_answered_in_the_same_batch_does_not_hide_an_append_ack() {
    let (mut c, l, f) = Cluster::elected_three();
    c.flush_all();
    c.wire.borrow_mut().clear();
    let now = c.now;
    let (index, _) = c.node(l).propose(now, b"x").unwrap();
    c.node(l).flush(now, &mut |_| {}).unwrap();
    // A heartbeat leaves before the follower has answered the append.
    let later = now + test_cfg().heartbeat_interval_ms;
    c.node(l).tick(later).unwrap();
    c.node(l).flush(later, &mut |_| {}).unwrap();
    let to_f: StdVec<StdVec<u8>> = c
        .wire
        .borrow_mut()
        .drain(..)
        .filter(|(_, to, _)| *to == f)
        .map(|(_, _, fr)| fr)
        .collect();
    let kinds: StdVec<(LogIndex, u32)> = to_f
        .iter()
        .filter_map(|fr| match raft_message(fr) {
            Some(Message::Append(Append {
                prev_index, count, ..
            })) => Some((prev_index, count)),
            _ => None,
        })
        .collect();
    assert!(
        kinds
            .iter()
            .any(|&(p, n)| n > 0 && p + u64::from(n) == index)
            && kinds.last().map(|&(p, n)| n == 0 && p < index) == Some(true),
        "an append carrying {index}, then a heartbeat behind it: {kinds:?}"
    );
    // The follower steps both in one batch (its log unsynced in between), then flushes once.
    for fr in &to_f {
        c.node(f).handle_frame(later, fr).unwrap();
    }
    c.node(f).flush(later, &mut |_| {}).unwrap();
    let acks: StdVec<LogIndex> = c
        .wire
        .borrow_mut()
        .drain(..)
        .filter_map(|(_, to, fr)| match raft_message(&fr) {
            Some(Message::AppendResp(AppendResp {
                success: true,
                match_index,
                ..
            })) if to == l => Some(match_index),
            _ => None,
        })
        .collect();
    assert_eq!(
        acks.iter().max(),
        Some(&index),
        "the follower's released answer must acknowledge the appended entry: {acks:?}"
    );
}

#[test]
fn acknowledgements_wait_for_sync() {
    let (mut c, l) = Cluster::elected(&[1, 2]);
    let f = 3 - l;
    let now = c.now;
    c.node(l).propose(now, b"x").unwrap();
    c.flush_all();
    c.deliver_only_to(f);
    // Before the follower's flush (its sync), its ack is held back.
    let r = &mut c.node(f).raft;
    assert!(r.needs_sync());
    let ack = |m: &Message<SnapshotRef>| {
        matches!(m, Message::AppendResp(AppendResp { success: true, .. }))
    };
    assert_eq!(
        count_released(r, ack),
        0,
        "no ack may leave before the entries are durable"
    );
    r.on_persisted(r.last_index());
    assert_eq!(count_released(r, ack), 1);
}

#[test]
fn a_pipelined_burst_larger_than_the_outbox_is_sent_in_rounds_not_dropped() {
    let mut c = Cluster::tuned(&[1, 2, 3, 4, 5], |c| {
        c.max_entries_per_message = 1;
        c.max_inflight = 32;
    });
    let l = c.elect();
    let lagging: StdVec<NodeId> = [1, 2, 3, 4, 5]
        .into_iter()
        .filter(|&x| x != l)
        .take(2)
        .collect();
    for &f in &lagging {
        c.isolate(f);
    }
    c.propose_each(l, 0..100);
    c.run(30);
    c.heal();
    // Two lagging peers with a window of 32 one-entry messages each: 64 appends, more than the
    // outbox holds. They must go out in rounds, never be dropped.
    c.run(200);
    assert_eq!(c.nodes[&l].raft().stats().dropped_messages, 0);
    for f in lagging {
        assert_eq!(c.commands(f).len(), 100, "node {}", f);
    }
}
