//! A disk that stops answering, met by real `shoald` processes: the node whose file system is
//! frozen (`fsfreeze`; every write and sync to it blocks) says it is stalled on `/health`,
//! `/status/node` and `/metrics` within a few seconds (its raft loop is stuck in a write, so the
//! last view it published cannot be vouched for), the others write on without it, and once the
//! disk answers again it is healthy, catches up and holds every write acknowledged meanwhile.
//!
//! A disk whose writes land but whose flushes hang is the other stall: a preload shim
//! (`tests/kit/shims/synchold.c`) holds a leader's log syncs while its raft loop runs, and its
//! `/health` says `sync_stalled`; holding a follower's syncs and snapshot writers, a snapshot
//! that finishes while its group waits for the held sync is taken once the sync returns; and
//! holding a node's snapshot writers, snapshots due in many groups at once are written four
//! at a time.
//!
//! The disk is a small ext4 image on a loop device (the test needs root, as CI has; it fails,
//! not skips, without it).
#![cfg(unix)]

use std::time::{Duration, Instant};

use shoal_client::protocol::{ReadMode, Request, Response, WriteOp, WriteResult};
use shoal_testkit::client;
use shoal_testkit::disk::{SyncHold, MIB};
use shoal_testkit::{poll, Cluster, WAIT};

/// The node whose disk stalls.
const STALLED: u64 = 3;

/// Nodes 1, 2 and 3, started, node 3's data dir on a file system of its own that the test
/// can freeze (a loop device, small segments and reserve).
fn stalling_cluster() -> Cluster {
    let mut c = Cluster::builder().election_timeout_ms(400).build();
    c.on_loop_fs(STALLED, 64 * MIB);
    c.node_mut(STALLED).args = ["--segment-mb", "4", "--space-reserve-mb", "4"]
        .map(String::from)
        .to_vec();
    c.start_all();
    c
}

#[test]
fn a_node_whose_disk_stalls_says_so_and_catches_up_once_it_answers() {
    let c = stalling_cluster();
    if c.wait_leader(0) == STALLED {
        c.make_leader(1, 0);
    }
    // Only through the others while the disk stalls: a call to the stalled node waits.
    let others = c.clients_of(&[1, 2]);
    let key = |i: u64| format!("key{i}");
    let value = |i: u64| format!("value {i}");
    for i in 0..10 {
        client::put(&others, 0, 7, i + 1, &key(i), &value(i));
    }
    assert_eq!(c.wait_health(STALLED, 200)["status"], "ok");
    assert_eq!(c.gauge(STALLED, "shoal_raft_loop_stalled"), 0);
    assert_eq!(c.gauge(STALLED, "shoal_healthy"), 1);

    // (Freezing blocks writes first, then syncs what is written: the node may stall before
    // the command returns.)
    let frozen_at = Instant::now();
    c.loop_fs(STALLED).freeze();
    // The cluster writes on with the other two; the first append that reaches the stalled
    // node's disk blocks its raft loop.
    let mut last = 0;
    for i in 10..60 {
        last = client::put(&others, 0, 7, i + 1, &key(i), &value(i));
    }
    let body = c.wait_health(STALLED, 503);
    let stalled_ms = body["stalled_ms"].as_u64().unwrap_or(0);
    assert!(stalled_ms >= 2_000, "stalled for over 2 s: {body}");
    // (Counted from its last view, published up to 100 ms before it stalled.)
    assert!(
        frozen_at.elapsed() + Duration::from_millis(500) > Duration::from_millis(stalled_ms),
        "it stalled after the disk did: {body}"
    );
    let reason = body["reasons"][0].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("stalled: the raft loop has not reported for"),
        "{body}"
    );
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(c.gauge(STALLED, "shoal_raft_loop_stalled"), 1);
    assert_eq!(c.gauge(STALLED, "shoal_healthy"), 0);
    let (code, node) = c.http_get(STALLED, "/status/node").expect("/status/node");
    assert_eq!(code, 200);
    assert!(node.contains("stalled: the raft loop"), "{node}");
    for id in [1, 2] {
        let (code, body) = c.admin_health(id);
        assert_eq!(code, 200, "node {id} is not stalled: {body}");
    }
    // Still stalled while the disk is: a write now still goes through the others.
    last = last.max(client::put(&others, 0, 7, 61, &key(60), &value(60)));
    assert_eq!(c.admin_health(STALLED).0, 503);

    c.loop_fs(STALLED).thaw();
    assert_eq!(c.wait_health(STALLED, 200)["status"], "ok");
    assert_eq!(c.gauge(STALLED, "shoal_raft_loop_stalled"), 0);
    assert_eq!(c.gauge(STALLED, "shoal_healthy"), 1);
    wait_applied(&c, STALLED, 0, last);
    for i in 0..=60 {
        assert_eq!(
            c.get(STALLED, 0, &key(i), ReadMode::Local).as_deref(),
            Some(value(i).as_bytes()),
            "{} on node {STALLED}",
            key(i)
        );
    }
    // A full member again: it can lead and take writes.
    c.make_leader(STALLED, 0);
    client::put(&c.clients_of(&[STALLED]), 0, 7, 62, &key(61), &value(61));
    c.assert_reads(1, 0, &key(61), &value(61));
}

#[test]
fn a_leader_whose_disk_stalls_loses_the_lead_and_its_pending_write_happens_once() {
    let c = stalling_cluster();
    c.make_leader(STALLED, 0);
    let term = c.status(STALLED, 0).expect("the leader's status").term;
    let all = c.clients();
    let key = |i: u64| format!("key{i}");
    let value = |i: u64| format!("value {i}");
    for i in 0..10 {
        client::put(&all, 0, 7, i + 1, &key(i), &value(i));
    }

    let frozen_at = Instant::now();
    c.loop_fs(STALLED).freeze();
    // A write to the stalled leader: it waits with the leader's loop. A create (compare and
    // set on an absent key) succeeds only once: applied twice, the second would fail.
    let create = WriteOp::CompareAndSet {
        key: b"pending".to_vec(),
        expect: None,
        value: b"once".to_vec(),
    };
    let leader_addr = c.node(STALLED).client.clone();
    let request = Request::Write {
        client_id: 8,
        seq: 1,
        op: create.clone(),
    };
    let pending = std::thread::spawn(move || {
        let mut conn = client::Conn::open(&leader_addr).expect("connect to the stalled leader");
        conn.call(0, request).map_err(|e| e.to_string())
    });
    // The other two elect a leader of a later term and write on.
    let others = c.clients_of(&[1, 2]);
    let new_leader = poll(WAIT, || {
        [1, 2].into_iter().find(|id| {
            c.status(*id, 0)
                .is_some_and(|s| s.role == "leader" && s.term > term)
        })
    });
    let new_leader = new_leader.expect("nodes 1 and 2 elect a leader while node 3 stalls");
    let mut last = 0;
    for i in 10..30 {
        last = client::put(&others, 0, 7, i + 1, &key(i), &value(i));
    }
    // Stalled in its loop (blocked in a write), or with its loop running and a sync that does
    // not return; which one depends on where the freeze caught it.
    let mut seen = None;
    let stalled = poll(WAIT, || {
        let (code, body) = c.admin_health(STALLED);
        let reason = body["reasons"][0].as_str().unwrap_or_default().to_string();
        seen = Some((code, body));
        (code == 503 && (reason.starts_with("stalled:") || reason.starts_with("sync_stalled:")))
            .then_some(reason)
    });
    let stalled = stalled.unwrap_or_else(|| panic!("node {STALLED} never said stalled: {seen:?}"));
    assert_eq!(c.admin_health(new_leader).0, 200);

    c.loop_fs(STALLED).thaw();
    let stalled_for = frozen_at.elapsed();
    assert_eq!(c.wait_health(STALLED, 200)["status"], "ok");
    let s = poll(WAIT, || c.status(STALLED, 0).filter(|s| s.applied >= last))
        .unwrap_or_else(|| panic!("node {STALLED} caught up to {last}"));
    assert_eq!(s.role, "follower", "the stalled leader stepped down");
    // Its pending write is answered once the loop goes on: written, or a refusal that leaves
    // the outcome to the session. Either way the same session's retry through the cluster
    // applies it once and answers as the first time.
    let answer = pending.join().expect("the pending writer");
    // (`write` insists on success: a second application of the create would have failed.)
    client::write(&all, 0, 8, 1, create);
    let get = Request::Get {
        key: b"pending".to_vec(),
        mode: ReadMode::Linearizable,
    };
    let created = match c.call_any(0, get, "a read of the pending key") {
        Response::Node { node: Some(n), .. } => n.create_index,
        other => panic!("the pending key: {other:?}"),
    };
    // Acknowledged by the stalled leader: it is the entry that created the key.
    if let Ok(Response::Written { index, result }) = &answer {
        assert_eq!(*result, WriteResult::Done, "{answer:?}");
        assert_eq!(
            *index, created,
            "the key was created by the acknowledged entry"
        );
    }
    assert_eq!(
        c.get_any(0, "pending", ReadMode::Linearizable).as_deref(),
        Some(&b"once"[..]),
        "after {answer:?} (stalled {stalled_for:?})"
    );
    eprintln!("the stalled leader: {stalled}; its pending write: {answer:?}; {stalled_for:?}");
    for i in 0..30 {
        assert_eq!(
            c.get(STALLED, 0, &key(i), ReadMode::Local).as_deref(),
            Some(value(i).as_bytes()),
            "{} on node {STALLED}",
            key(i)
        );
    }
}

/// Nodes 1, 2 and 3, started, node `held` under the sync-hold shim and with `args`; the shim's
/// dir (kept while the node may restart) and its switch. No leader balance: its moves write
/// entries these tests do not expect, and a group's leader stays where a test put it.
fn held_cluster(held: u64, args: &[&str]) -> (tempfile::TempDir, SyncHold, Cluster) {
    let shim_dir = tempfile::tempdir().expect("a dir for the shim");
    let hold = SyncHold::build(shim_dir.path());
    let mut c = Cluster::builder()
        .election_timeout_ms(400)
        .args(&["--leader-balance-interval", "0"])
        .build();
    c.node_mut(held).env = hold.env();
    c.node_mut(held).args = args.iter().map(|a| a.to_string()).collect();
    c.start_all();
    (shim_dir, hold, c)
}

/// A leader whose log syncs hang while its writes land (the preload shim holds its sync
/// threads' fdatasyncs; its raft loop runs): `/health` says `sync_stalled`, not `stalled`,
/// within a few seconds, its groups go on with the followers' acks, and once the syncs return
/// the node is healthy again with every acknowledged write. Two groups are written at once, so
/// the syncs it holds are the sync journal's.
#[test]
fn a_leader_whose_syncs_hang_says_sync_stalled_while_its_followers_carry_the_writes() {
    const LEADER: u64 = 1;
    let (_shim_dir, hold, c) = held_cluster(LEADER, &[]);
    c.make_leader(LEADER, 0);
    c.create_groups([1], "1,2,3");
    c.make_leader(LEADER, 1);
    let through_leader = c.clients_of(&[LEADER]);
    let key = |i: u64| format!("key{i}");
    let value = |g: u32, i: u64| format!("value {g}.{i}");
    for i in 0..10 {
        client::put(&through_leader, 0, 7, i + 1, &key(i), &value(0, i));
    }
    assert_eq!(c.wait_health(LEADER, 200)["status"], "ok");
    assert_eq!(c.gauge(LEADER, "shoal_sync_stalled"), 0);

    let held_at = Instant::now();
    hold.hold();
    // Writes go on through the leader while its own syncs hang: the followers' two acks are
    // a majority. Group 1 is written alongside until the stall is seen.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (mut last, mut i, body, group_1) = std::thread::scope(|s| {
        let group_1 = s.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                client::put(&through_leader, 1, 8, n + 1, &key(n), &value(1, n));
                n += 1;
            }
            n
        });
        let mut i = 10;
        let mut last;
        let body = loop {
            last = client::put(&through_leader, 0, 7, i + 1, &key(i), &value(0, i));
            i += 1;
            // (A 503 for group 1's first election is not what this waits for.)
            let (code, body) = c.admin_health(LEADER);
            if code == 503 && body.get("sync_stalled_ms").is_some() {
                break body;
            }
            assert!(
                held_at.elapsed() < WAIT,
                "no sync_stalled in /health: {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (
            last,
            i,
            body,
            group_1.join().expect("the writes to group 1"),
        )
    });
    assert!(held_at.elapsed() >= Duration::from_secs(2), "{body}");
    assert!(
        body["sync_stalled_ms"].as_u64().unwrap_or(0) >= 2_000,
        "{body}"
    );
    assert!(body.get("stalled_ms").is_none(), "the loop runs: {body}");
    let reason = body["reasons"][0].as_str().unwrap_or_default();
    assert!(reason.starts_with("sync_stalled: a log sync"), "{body}");
    assert_eq!(c.gauge(LEADER, "shoal_sync_stalled"), 1);
    assert_eq!(c.gauge(LEADER, "shoal_raft_loop_stalled"), 0);
    assert_eq!(c.gauge(LEADER, "shoal_healthy"), 0);
    let (_, status) = c.http_get(LEADER, "/status").expect("/status");
    assert!(status.contains("sync_stalled: a log sync"), "{status}");
    // Still the leader, still writing.
    assert_eq!(c.wait_leader(0), LEADER);
    last = last.max(client::put(
        &through_leader,
        0,
        7,
        i + 1,
        &key(i),
        &value(0, i),
    ));
    i += 1;

    hold.release();
    assert_eq!(c.wait_health(LEADER, 200)["status"], "ok");
    assert_eq!(c.gauge(LEADER, "shoal_sync_stalled"), 0);
    for id in [1, 2, 3] {
        wait_applied(&c, id, 0, last);
    }
    for j in 0..i {
        c.assert_reads(LEADER, 0, &key(j), &value(0, j));
    }
    for j in 0..group_1 {
        c.assert_reads(LEADER, 1, &key(j), &value(1, j));
    }
}

/// Wait until node `id` has applied `group` up to `upto`.
fn wait_applied(c: &Cluster, id: u64, group: u32, upto: u64) {
    let applied = poll(WAIT, || c.status(id, group).filter(|s| s.applied >= upto));
    assert!(
        applied.is_some(),
        "node {id} applied group {group} up to {upto}"
    );
}

/// How many threads of process `pid` have a name starting with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// Group `group`'s figure `field` in node `id`'s `/status/group/<group>`.
fn group_figure(c: &Cluster, id: u64, group: u32, field: &str) -> u64 {
    let (code, body) = c
        .http_get(id, &format!("/status/group/{group}"))
        .expect("the admin port answers");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// Whether node `id` answers a status request for `group` within `within`.
fn answers_within(c: &Cluster, id: u64, group: u32, within: Duration) -> bool {
    let Ok(mut conn) = client::Conn::open(&c.node(id).client) else {
        return false;
    };
    conn.set_timeout(within).expect("a timeout");
    conn.call(group, Request::Status).is_ok()
}

/// A follower's group frozen while its sync is held (its bytes went to the sync journal) sees
/// its background snapshot finish meanwhile: the snapshot is kept, not acted on, until the
/// sync returns, and taken then; the follower catches up and restarts from it.
#[test]
fn a_snapshot_that_finishes_while_its_group_waits_for_a_sync_is_taken_once_the_sync_returns() {
    const FOLLOWER: u64 = 3;
    // (No commit hints: one saved with the hard state while the syncs are held would freeze
    // the group that saves it, group 2 too.)
    let (_shim_dir, hold, mut c) = held_cluster(
        FOLLOWER,
        &["--snapshot-entries", "50", "--commit-hint-interval", "0"],
    );
    c.make_leader(1, 0);
    c.create_groups([1, 2], "1,2,3");
    c.make_leader(1, 1);
    c.make_leader(1, 2);
    let pid = c.node_mut(FOLLOWER).proc_mut().expect("running").pid();
    let others = c.clients_of(&[1, 2]);
    let key = |i: u64| format!("key{i}");
    let value = |g: u32, i: u64| format!("value {g}.{i}");

    // The follower's snapshots of groups 1 and 2 start and wait in their syncs. (A group with
    // a snapshot under way is never idle: with two, every round of the follower's flushes
    // several groups, so their new bytes go to the sync journal.)
    hold.hold_snapshots();
    let mut last = [0; 3];
    for g in [1u32, 2] {
        for i in 0..60 {
            last[g as usize] = client::put(&others, g, 7, i + 1, &key(i), &value(g, i));
        }
        let thread = format!("shoal-snap-{g}");
        let writing = poll(WAIT, || (threads_named(pid, &thread) > 0).then_some(()));
        assert!(
            writing.is_some(),
            "no snapshot of group {g} started on the follower"
        );
    }

    // Its log syncs held too; group 1 written: its bytes go to the journal and it waits for
    // the held sync, frozen. (Group 2, not written, goes on: the follower has all of it
    // first.)
    for g in [1u32, 2] {
        wait_applied(&c, FOLLOWER, g, last[g as usize]);
    }
    hold.hold();
    let writes = 80;
    for i in 60..writes {
        last[1] = client::put(&others, 1, 7, i + 1, &key(i), &value(1, i));
    }
    let mut seen = None;
    let sync_stalled = poll(WAIT, || {
        let (_, body) = c.admin_health(FOLLOWER);
        let stalled = body["sync_stalled_ms"].as_u64().is_some();
        seen = Some(body);
        stalled.then_some(())
    });
    assert!(sync_stalled.is_some(), "no sync_stalled: {seen:?}");
    // A frozen group holds a request until its sync returns; the other answers.
    let quick = Duration::from_millis(500);
    assert!(
        !answers_within(&c, FOLLOWER, 1, quick),
        "group 1 is not frozen"
    );
    assert!(answers_within(&c, FOLLOWER, 2, quick), "group 2 is frozen");

    // The snapshots finish meanwhile: group 2's is taken, group 1's kept.
    hold.release_snapshots();
    let done = poll(WAIT, || {
        (threads_named(pid, "shoal-snap") == 0).then_some(())
    });
    assert!(done.is_some(), "the snapshot threads did not finish");
    let taken = |g: u32| {
        let line = format!("group {g}: snapshot taken at index");
        move |c: &Cluster| c.node(FOLLOWER).log().contains(&line)
    };
    let group_2_taken = poll(WAIT, || taken(2)(&c).then_some(()));
    assert!(group_2_taken.is_some(), "group 2's snapshot was not taken");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !taken(1)(&c),
        "group 1's snapshot was taken while the group was frozen"
    );

    // The sync returns: the group takes its snapshot, then what reached it meanwhile.
    hold.release();
    let logged = poll(WAIT, || taken(1)(&c).then_some(()));
    assert!(logged.is_some(), "group 1's kept snapshot was never taken");
    assert_eq!(c.wait_health(FOLLOWER, 200)["status"], "ok");
    let caught_up = |c: &Cluster| {
        for g in [1u32, 2] {
            wait_applied(c, FOLLOWER, g, last[g as usize]);
        }
    };
    caught_up(&c);
    assert!(group_figure(&c, FOLLOWER, 1, "snapshot_index") >= 50);
    let check = |c: &Cluster| {
        for (g, n) in [(1u32, writes), (2, 60)] {
            for i in 0..n {
                let got = c.get(FOLLOWER, g, &key(i), ReadMode::Local);
                assert_eq!(
                    got.as_deref(),
                    Some(value(g, i).as_bytes()),
                    "group {g} {}",
                    key(i)
                );
            }
        }
    };
    check(&c);
    // It starts again from that snapshot.
    c.kill(FOLLOWER);
    c.start(FOLLOWER);
    caught_up(&c);
    check(&c);
}

/// Snapshots that fall due in many groups at once are written a few at a time: with the
/// snapshot writers' syncs held, eight groups due one after another get four writers
/// (threads, and `shoal_snapshot_writers`), the others wait for one to end, and once the
/// syncs return every group's snapshot is taken.
#[test]
fn snapshots_due_in_many_groups_at_once_are_written_four_at_a_time() {
    let shim_dir = tempfile::tempdir().expect("a dir for the shim");
    let hold = SyncHold::build(shim_dir.path());
    let mut c = Cluster::builder()
        .voters([1])
        .args(&["--snapshot-entries", "20", "--leader-balance-interval", "0"])
        .build();
    c.node_mut(1).env = hold.env();
    c.start_all();
    let groups: Vec<u32> = (1..=8).collect();
    c.create_groups(groups.clone(), "1");
    for &g in &groups {
        c.wait_leader(g);
    }
    let pid = c.node_mut(1).proc_mut().expect("running").pid();
    let clients = c.clients();
    hold.hold_snapshots();
    for &g in &groups {
        for i in 0..25 {
            client::put(&clients, g, 7, i + 1, &format!("key{i}"), "value");
        }
    }
    let writers = |c: &Cluster| {
        (
            threads_named(pid, "shoal-snap"),
            c.gauge(1, "shoal_snapshot_writers"),
        )
    };
    let four = poll(WAIT, || (writers(&c) == (4, 4)).then_some(()));
    assert!(
        four.is_some(),
        "not four snapshot writers: {:?}",
        writers(&c)
    );
    // Every group is due, and stays so while the four are held.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        writers(&c),
        (4, 4),
        "more writers began while four were held"
    );
    let taken = |g: u32| format!("group {g}: snapshot taken at index");
    assert!(
        groups.iter().all(|&g| !c.node(1).log().contains(&taken(g))),
        "a snapshot was taken while its writer's syncs were held"
    );

    hold.release_snapshots();
    for &g in &groups {
        let logged = poll(WAIT, || c.node(1).log().contains(&taken(g)).then_some(()));
        assert!(logged.is_some(), "group {g}'s snapshot was never taken");
        // (The view is published every 100 ms.)
        let index = poll(WAIT, || {
            (group_figure(&c, 1, g, "snapshot_index") >= 20).then_some(())
        });
        assert!(index.is_some(), "group {g}'s status shows no snapshot");
    }
    let done = poll(WAIT, || (writers(&c) == (0, 0)).then_some(()));
    assert!(done.is_some(), "writers left: {:?}", writers(&c));
}
