//! One sync for many groups (`--shared-sync`, issue 17 item 2): with eight groups written at
//! once on three nodes, the nodes make several groups' writes durable with one sync of the
//! data dir's filesystem (a follower's acknowledgements wait for it), every acknowledged write
//! is there after every node was killed and restarted, and with the flag off no such sync is
//! made. Followers whose bytes went to the sync journal wait for its sync on a sync thread,
//! their groups frozen meanwhile, and what they acknowledged survives kill -9 of every node.
//! Busy groups' commit hints do not take their rounds out of the sync journal.
#![cfg(unix)]

use shoal_client::protocol::ReadMode;
use shoal_std::storage::journal;
use shoal_testkit::Cluster;

const GROUPS: u32 = 8;
const WRITES: u64 = 120;

/// A 3-node cluster with `GROUPS` groups of all three, written at once, one writer per group;
/// the shared syncs the nodes made while.
fn written(shared: bool) -> (Cluster, u64) {
    let flag = if shared { "true" } else { "false" };
    written_with(&["--shared-sync", flag])
}

/// [`written`] with the nodes started with `args`.
fn written_with(args: &[&str]) -> (Cluster, u64) {
    let mut c = Cluster::builder().args(args).build();
    c.start_all();
    c.wait_leader(0);
    c.create_groups(1..=GROUPS, "1,2,3");
    let shared_syncs = |c: &Cluster| -> u64 {
        c.ids()
            .iter()
            .map(|&id| c.gauge(id, "shoal_shared_syncs_total") as u64)
            .sum()
    };
    let before = shared_syncs(&c);
    std::thread::scope(|s| {
        for g in 1..=GROUPS {
            let c = &c;
            s.spawn(move || {
                for i in 0..WRITES {
                    let (key, value) = (format!("k{i}"), format!("v{g}.{i}"));
                    c.put(g, 100 + u64::from(g), i + 1, &key, &value);
                }
            });
        }
    });
    let after = shared_syncs(&c);
    (c, after - before)
}

/// Every write of [`written`] reads back, in every group.
fn every_write_reads_back(c: &Cluster) {
    for g in 1..=GROUPS {
        c.wait_leader(g);
        for i in 0..WRITES {
            let got = c.get_any(g, &format!("k{i}"), ReadMode::Linearizable);
            assert_eq!(
                got.as_deref(),
                Some(format!("v{g}.{i}").as_bytes()),
                "group {g}, key k{i}"
            );
        }
    }
}

#[test]
fn groups_written_at_once_share_syncs_and_keep_every_acknowledged_write() {
    let (mut c, shared) = written(true);
    assert!(
        shared > 0,
        "eight groups written at once never shared a filesystem sync"
    );
    for id in c.ids() {
        c.kill(id);
    }
    c.start_all();
    every_write_reads_back(&c);
}

#[test]
fn without_shared_syncs_each_group_syncs_by_itself() {
    let (_c, shared) = written(false);
    assert_eq!(shared, 0);
}

/// Every node's live journal pieces: the segment file each belongs to, its offset there and
/// its bytes (what a replay would write back).
fn live_pieces(c: &Cluster) -> Vec<(std::path::PathBuf, u64, Vec<u8>)> {
    let mut pieces = Vec::new();
    for id in c.ids() {
        let dir = &c.node(id).dir;
        let Some(contents) = journal::read(dir).expect("read the journal") else {
            continue;
        };
        for (group, segment, offset, bytes) in contents.live_pieces() {
            let path = journal::segment_path(dir, group, segment);
            pieces.push((path, offset, bytes.to_vec()));
        }
    }
    pieces
}

/// Zero, in every node's segments, what only the sync journal holds for sure: the pieces a
/// replay would write back (as a power cut that took the page cache would leave them). How
/// many pieces there were.
fn lose_what_only_the_journal_holds(c: &Cluster) -> usize {
    use std::os::unix::fs::FileExt;
    let mut lost = 0;
    for (path, offset, bytes) in live_pieces(c) {
        let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) else {
            continue; // compacted since
        };
        f.write_all_at(&vec![0u8; bytes.len()], offset)
            .expect("zero the piece");
        lost += 1;
    }
    lost
}

#[test]
fn acknowledged_writes_only_the_sync_journal_held_come_back_at_the_next_start() {
    let (mut c, _) = written(true);
    assert!(
        journal_syncs(&c) > 0,
        "eight groups written at once never synced through the journal"
    );
    // Followers' acknowledgements waited for journal syncs on the sync threads (their groups
    // frozen meanwhile), not on the raft thread.
    assert!(
        follower_background_syncs(&c) > 0,
        "no follower's sync ran off the raft thread"
    );
    for id in c.ids() {
        c.kill(id);
    }
    assert!(lose_what_only_the_journal_holds(&c) > 0, "no piece to lose");
    c.start_all();
    every_write_reads_back(&c);
}

/// Follower flushes whose sync ran on a sync thread, counted on every node.
fn follower_background_syncs(c: &Cluster) -> u64 {
    c.ids()
        .iter()
        .map(|&id| c.gauge(id, "shoal_follower_background_syncs_total") as u64)
        .sum()
}

/// Journal syncs counted on every node.
fn journal_syncs(c: &Cluster) -> u64 {
    c.ids()
        .iter()
        .map(|&id| c.gauge(id, "shoal_journal_syncs_total") as u64)
        .sum()
}

#[test]
fn busy_groups_hold_their_bytes_in_the_journal_and_write_them_out_once_idle() {
    let (c, _) = written(true);
    let sum = |name: &str| -> u64 { c.ids().iter().map(|&id| c.gauge(id, name) as u64).sum() };
    assert!(
        sum("shoal_journal_held_pieces_total") > 0,
        "eight groups written at once never held their bytes in the journal"
    );
    // Idle groups write what they held to their segments.
    let written_out = shoal_testkit::poll(shoal_testkit::WAIT, || {
        (sum("shoal_journal_held_bytes") == 0).then_some(())
    });
    assert!(
        written_out.is_some(),
        "idle groups still hold {} bytes only the journal has",
        sum("shoal_journal_held_bytes")
    );
    // Written out for real: every piece the journal has is in its segment file already, with
    // no start (and so no replay) in between.
    let mut c = c;
    for id in c.ids() {
        c.kill(id);
    }
    assert_eq!(pieces_not_in_their_segments(&c), 0);
    c.start_all();
    every_write_reads_back(&c);
}

/// Live journal pieces, on every node, whose bytes their segment file does not have.
fn pieces_not_in_their_segments(c: &Cluster) -> usize {
    use std::os::unix::fs::FileExt;
    let in_segment = |(path, offset, bytes): &(std::path::PathBuf, u64, Vec<u8>)| {
        let Ok(f) = std::fs::File::open(path) else {
            return true; // compacted since
        };
        let mut on_disk = vec![0u8; bytes.len()];
        f.read_exact_at(&mut on_disk, *offset).is_ok() && on_disk == *bytes
    };
    live_pieces(c).iter().filter(|p| !in_segment(p)).count()
}

#[test]
fn without_the_journal_shared_syncs_are_filesystem_syncs() {
    let (c, shared) = written_with(&["--sync-journal", "false"]);
    assert!(shared > 0, "the groups still share syncs");
    assert_eq!(journal_syncs(&c), 0);
    // Followers' shared syncs still run on the sync threads, as filesystem syncs.
    assert!(follower_background_syncs(&c) > 0);
    for id in c.ids() {
        let dir = &c.node(id).dir;
        assert!(
            journal::read(dir).expect("read").is_none(),
            "node {id} made a journal file"
        );
    }
}

/// A group that only answers reads from its local state has nothing to flush: it does not
/// count as busy, so a lone writer's rounds keep syncing its own segment, with no shared sync
/// of the journal or the filesystem.
#[test]
fn a_group_that_only_answers_local_reads_leaves_a_lone_writer_to_sync_alone() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    let mut c = Cluster::builder().voters([1]).build();
    c.start(1);
    c.wait_leader(0);
    c.create_groups([1, 2], "1");
    c.put(2, 7, 1, "k", "v");
    shoal_testkit::wait_for("every group quiet", shoal_testkit::WAIT, || {
        c.gauge(1, "shoal_groups_quiet") >= 3
    });
    let shared = |c: &Cluster| c.gauge(1, "shoal_shared_syncs_total");
    let before = shared(&c);
    let (done, reads) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Relaxed) {
                let got = c.get(1, 2, "k", ReadMode::Local);
                assert_eq!(got.as_deref(), Some(&b"v"[..]));
                reads.fetch_add(1, Relaxed);
            }
        });
        // One write at a time: one sync in flight, never two of this group to share.
        for i in 0..300 {
            c.put(1, 8, i + 1, &format!("k{i}"), "v");
        }
        done.store(true, Relaxed);
    });
    assert!(reads.load(Relaxed) > 0, "no read ran alongside the writes");
    assert_eq!(
        shared(&c) - before,
        0,
        "reads made the writer's rounds share a sync"
    );
}

/// Filesystem syncs a node made for rounds (shared syncs that were neither a journal sync nor
/// a switch of its halves).
fn filesystem_syncs(c: &Cluster, id: u64) -> i64 {
    let g = |name: &str| c.gauge(id, name) as i64;
    g("shoal_shared_syncs_total") - g("shoal_journal_syncs_total") - g("shoal_journal_wraps_total")
}

#[test]
fn busy_groups_commit_hints_keep_their_rounds_in_the_sync_journal() {
    // One node, its groups' commit hints due every 100 ms: each hint used to make its round
    // wait for a whole sync, which the journal cannot stand in for (a `syncfs` with several).
    let mut c = Cluster::builder()
        .voters([1])
        .args(&["--commit-hint-interval", "100ms"])
        .build();
    c.start_all();
    c.wait_leader(0);
    c.create_groups(1..=GROUPS, "1");
    for g in 1..=GROUPS {
        c.wait_leader(g);
    }
    let (fs_before, journal_before) = (
        filesystem_syncs(&c, 1),
        c.gauge(1, "shoal_journal_syncs_total"),
    );
    let until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    std::thread::scope(|s| {
        for g in 1..=GROUPS {
            let c = &c;
            s.spawn(move || {
                for i in 0..20_000u64 {
                    if std::time::Instant::now() >= until {
                        break;
                    }
                    c.put(g, 200 + u64::from(g), i + 1, &format!("k{i}"), "v");
                }
            });
        }
    });
    assert!(
        c.gauge(1, "shoal_journal_syncs_total") > journal_before,
        "the groups' rounds never synced through the journal"
    );
    // About 15 hints of each group fell due meanwhile; none took its round out of the journal.
    // (A margin of two for a round the test does not control, such as one a new group's
    // first term still waited in.)
    let fs = filesystem_syncs(&c, 1) - fs_before;
    assert!(
        fs <= 2,
        "{fs} rounds synced the filesystem instead of the journal while {GROUPS} groups wrote"
    );
}
