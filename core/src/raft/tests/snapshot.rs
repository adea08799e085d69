//! Snapshots: taken by count and interval, sent in chunks, installed over a stale log.

use super::*;

// ----- 4. snapshots ------------------------------------------------------------------------------

#[test]
fn snapshots_trigger_by_entry_count_and_compact_the_log() {
    let (c, _) = snapshotting(&[1, 2, 3], 10, 25);
    for id in [1, 2, 3] {
        let n = &c.nodes[&id];
        assert!(
            n.storage().snapshot_index() >= 20,
            "node {} snapshot at {}",
            id,
            n.storage().snapshot_index()
        );
        assert!(
            n.storage().entries.first().map(|e| e.0).unwrap_or(u64::MAX) > 10,
            "log compacted behind the snapshot"
        );
    }
}

#[test]
fn snapshots_trigger_by_interval() {
    let mut c = Cluster::tuned(&[1], |c| c.snapshot_interval_ms = 200);
    let l = c.elect();
    let snapshot_index = |c: &Cluster| c.nodes[&l].storage().snapshot_index();
    c.propose(l, b"a");
    let mut waited = 0;
    while snapshot_index(&c) == 0 {
        c.run(5);
        waited += 5;
        assert!(waited <= 250, "no snapshot within the interval");
    }
    let first = snapshot_index(&c);
    // Nothing applied since: no snapshot is due however long the node waits.
    assert_eq!(c.nodes[&l].snapshot_due_at(), None);
    c.propose(l, b"b");
    c.run(150);
    assert_eq!(
        snapshot_index(&c),
        first,
        "no snapshot before the interval passes"
    );
    // A platform that stops flushing an idle node knows when to wake it.
    let due = c.nodes[&l]
        .snapshot_due_at()
        .expect("an entry waits for a snapshot");
    assert!(
        due > c.now && due <= c.now + 100,
        "due at {due}, now {}",
        c.now
    );
    c.run(100);
    assert!(snapshot_index(&c) > first);
    assert_eq!(c.nodes[&l].snapshot_due_at(), None);
}

/// Three voters that snapshot every 5 entries and send snapshots in 16-byte chunks, with a
/// follower isolated while the leader writes 30 entries: healed, the follower (still cut off
/// when this returns) can catch up only by a snapshot of many chunks. Returns the cluster, the
/// leader and that follower.
fn follower_behind_a_chunked_snapshot() -> (Cluster, NodeId, NodeId) {
    let mut c = Cluster::tuned(&[1, 2, 3], |c| {
        c.snapshot_entries = 5;
        c.snapshot_chunk_bytes = 16; // many chunks
    });
    let l = c.elect();
    let f = Cluster::follower_of(l);
    c.isolate(f);
    for i in 0..30u8 {
        c.propose(l, &[i; 8]);
        c.run(5);
    }
    (c, l, f)
}

#[test]
fn a_follower_too_far_behind_gets_a_chunked_snapshot_and_resumes_after_a_lost_chunk() {
    let (mut c, l, f) = follower_behind_a_chunked_snapshot();
    assert!(c.nodes[&l].storage().snapshot_index() > 0);
    c.heal();
    // Drop exactly one snapshot chunk on the way to the follower.
    let mut dropped = false;
    let mut chunks = 0;
    for _ in 0..200 {
        let now = c.tick_all();
        c.flush_all();
        let frames: StdVec<_> = c.wire.borrow_mut().drain(..).collect();
        for (from, to, fr) in frames {
            let msg = raft_message(&fr);
            // The outbox queues chunks by snapshot index only: the frame must carry the whole
            // stored header (membership, size, checksum), filled in by the driver.
            if let Some(Message::Snapshot(Snapshot { meta, .. })) = &msg {
                let stored = c.nodes[&from].storage().snapshot_meta().unwrap();
                assert_eq!(meta.index, stored.index);
                assert_eq!(meta.term, stored.term);
                assert_eq!(meta.membership, stored.membership);
                assert_eq!(meta.membership.voters.as_slice(), &[1, 2, 3]);
                assert_eq!((meta.size_bytes, meta.crc), (stored.size_bytes, stored.crc));
                chunks += 1;
            }
            if !dropped && to == f {
                if let Some(Message::Snapshot(Snapshot { offset, .. })) = msg {
                    if offset > 0 {
                        dropped = true;
                        continue;
                    }
                }
            }
            let _ = from;
            c.node(to).handle_frame(now, &fr).unwrap();
        }
    }
    assert!(dropped, "the test must have dropped a chunk");
    assert!(chunks > 2, "the snapshot went in several chunks");
    assert_eq!(c.nodes[&f].raft().stats().snapshots_installed, 1);
    assert_eq!(
        c.nodes[&f].storage().snapshot_meta().unwrap().membership,
        c.nodes[&l].raft().membership().clone()
    );
    assert_eq!(c.commands(f), c.commands(l));
}

#[test]
fn a_snapshot_transfer_refused_half_way_for_space_starts_again_when_space_returns() {
    let (mut c, l, f) = follower_behind_a_chunked_snapshot();
    c.heal();
    // Deliver by hand; the medium fills when the second chunk arrives, for 100 ms.
    let mut full_since = None;
    for _ in 0..200 {
        let now = c.tick_all();
        c.flush_all();
        if full_since.is_some_and(|t| now >= t + 100) {
            c.node(f).storage_mut().fail_writes = None;
        }
        let frames: StdVec<_> = c.wire.borrow_mut().drain(..).collect();
        for (_, to, fr) in frames {
            let body = crate::wire::decode(&fr).unwrap().0.body;
            if let crate::wire::Body::Raft(Message::Snapshot(Snapshot { offset, .. })) = body {
                if to == f && offset > 0 && full_since.is_none() {
                    full_since = Some(now);
                    c.node(f).storage_mut().fail_writes = Some(StorageError::Full);
                }
            }
            c.node(to)
                .handle_frame(now, &fr)
                .expect("a refused chunk never stops the node");
        }
    }
    assert!(
        full_since.is_some(),
        "the medium filled during the transfer"
    );
    assert!(c.nodes[&f].stats().faults.get(Fault::StorageFull) > 0);
    assert_eq!(c.nodes[&f].raft().stats().snapshots_installed, 1);
    assert_eq!(c.commands(f), c.commands(l));
}

#[test]
fn a_node_joining_after_compaction_gets_the_snapshot() {
    // Found by the simulator: the probe of an empty node uses prev_index 0, whose term is always
    // known, so the leader must also check that the first entry it would send still exists.
    let (mut c, l) = snapshotting(&[1, 2, 3], 5, 20);
    assert_eq!(
        c.nodes[&l].storage().term(1),
        Err(StorageError::Compacted(1)),
        "entry 1 was compacted"
    );
    c.start(4, VecStore::default(), None);
    reconfigure(&mut c, l, &[1, 2, 3, 4]);
    c.run(100);
    assert_eq!(c.nodes[&4].raft().stats().snapshots_installed, 1);
    assert_eq!(c.commands(4), c.commands(l));
}

#[test]
fn installing_a_snapshot_past_a_conflicting_log_forgets_that_log() {
    // Found by the simulator: whether to keep the log must be decided before the snapshot is
    // finished, or the snapshot's own term makes every log look like it matches.
    let mut c = Cluster::new(&[1, 2]);
    let now = c.now;
    let n = c.node(2);
    // Node 2 holds entries 2..=4 of term 1 that the snapshot (index 3, term 2) contradicts.
    for i in 2..=4u64 {
        let e = EntryRef::normal(i, 1, b"old");
        n.store.append(&e).unwrap();
    }
    c.restart(2);
    let mut sm = LogSm::default();
    sm.cmds.push((3, b"new".to_vec()));
    let mut data = StdVec::new();
    struct W<'a>(&'a mut StdVec<u8>);
    impl SnapshotWriter for W<'_> {
        fn write(&mut self, d: &[u8]) -> Result<(), SnapshotError> {
            self.0.extend_from_slice(d);
            Ok(())
        }
    }
    sm.snapshot(&mut W(&mut data)).unwrap();
    let meta = SnapshotHeader {
        index: 3,
        term: 2,
        membership: Membership::new(&[1, 2], &[]).unwrap(),
        size_bytes: data.len() as u64,
        crc: crate::record::CRC32C.checksum(&data),
    };
    let msg = Message::Snapshot(Snapshot {
        term: 2,
        meta,
        offset: 0,
        done: true,
    });
    c.node(2).receive(now, 1, &msg, &data).unwrap();
    let n = &c.nodes[&2];
    assert_eq!(
        n.raft().last_index(),
        3,
        "the contradicted suffix is gone from Raft's view"
    );
    assert_eq!(n.storage().last_index(), 3, "and from storage");
    assert_eq!(n.state_machine().cmds, vec![(3, b"new".to_vec())]);
}

#[test]
fn a_damaged_snapshot_is_refused_at_start_by_its_checksum_whatever_the_damage() {
    let (mut c, l) = snapshotting(&[1, 2, 3], 10, 25);
    let f = Cluster::follower_of(l);
    let store = c.crash(f);
    let (meta, data) = store.snap.clone().expect("a snapshot was taken");
    // Each byte in turn: the damage may keep the state machine's decoder happy (only the
    // checksum sees it) or make it trip; either way the start is refused for the checksum.
    for at in 0..data.len() {
        let mut damaged = store.clone();
        damaged.snap.as_mut().expect("snapshot").1[at] ^= 0x40;
        let got = c.build(f, damaged, None).map(|_| ());
        assert!(
            matches!(got, Err(crate::driver::NodeError::SnapshotChecksum { expected, .. }) if expected == meta.crc),
            "byte {at}: {got:?}"
        );
    }
}
