//! Groups flushed on several threads (`--raft-threads`, issue 17 item 4): with eight groups
//! written at once on three nodes started with two flush threads, each node's flushes run on
//! both flush threads (`shoal_group_flushes_total`), every acknowledged write reads back, and
//! after every node was killed and restarted each group recovers all of them. With one thread
//! the raft thread flushes every group itself.
#![cfg(unix)]

use shoal_client::protocol::ReadMode;
use shoal_testkit::client::{series_value, Conn};
use shoal_testkit::Cluster;

const GROUPS: u32 = 8;
/// Writes per group, sent as pipelined batches so many groups have work in one round.
const BATCHES: u64 = 10;
const BATCH: u64 = 40;

/// Flushes node `id` ran on each thread, as `/metrics` reports them: the raft thread's first.
fn flushes(c: &Cluster, id: u64, threads: usize) -> Vec<Option<u64>> {
    let (_, body) = c.http_get(id, "/metrics").expect("/metrics");
    let mut names = vec!["raft".to_string()];
    names.extend((0..threads).map(|i| format!("flush-{i}")));
    names
        .iter()
        .map(|t| {
            series_value(
                &body,
                &format!("shoal_group_flushes_total{{thread=\"{t}\"}}"),
            )
        })
        .collect()
}

/// A 3-node cluster started with `--raft-threads threads` and `GROUPS` groups of all three,
/// each written by its own client at once.
fn written(threads: &str) -> Cluster {
    let mut c = Cluster::builder()
        .args(&["--raft-threads", threads])
        .build();
    c.start_all();
    c.wait_leader(0);
    for g in 1..=GROUPS {
        c.ctl(&["--group", &g.to_string(), "group", "create", "1,2,3"])
            .ok();
    }
    let leaders: Vec<u64> = (1..=GROUPS).map(|g| c.wait_leader(g)).collect();
    std::thread::scope(|s| {
        for (g, leader) in (1..=GROUPS).zip(leaders) {
            let addr = c.clients_of(&[leader]).remove(0);
            s.spawn(move || {
                let mut conn = Conn::open(&addr).expect("connect to the group's leader");
                for b in 0..BATCHES {
                    let value = format!("v{g}");
                    let first = b * BATCH;
                    conn.pipelined_puts(
                        g,
                        (100 + u64::from(g), first + 1),
                        &format!("b{b}k"),
                        value.as_bytes(),
                        BATCH,
                    );
                }
            });
        }
    });
    c
}

/// Every write of every group reads back (linearizably, from the group's leader).
fn assert_every_write(c: &Cluster) {
    for g in 1..=GROUPS {
        c.wait_leader(g);
        for b in 0..BATCHES {
            for i in [0, BATCH / 2, BATCH - 1] {
                let key = format!("b{b}k{i}");
                let got = c.get_any(g, &key, ReadMode::Linearizable);
                assert_eq!(
                    got.as_deref(),
                    Some(format!("v{g}").as_bytes()),
                    "group {g}, {key}"
                );
            }
        }
    }
}

#[test]
fn busy_groups_flush_on_every_flush_thread_and_keep_every_write() {
    let mut c = written("2");
    for id in c.ids() {
        assert_eq!(c.gauge(id, "shoal_raft_threads"), 2, "node {id}");
        let f = flushes(&c, id, 2);
        assert!(
            f.iter().all(Option::is_some),
            "node {id}: a thread has no flush series: {f:?}"
        );
        // Groups with nothing but timers stay on the raft thread; busy ones went to both
        // flush threads.
        assert!(
            f[1] > Some(0) && f[2] > Some(0),
            "node {id}: busy groups did not flush on both flush threads: {f:?}"
        );
    }
    assert_every_write(&c);
    for id in c.ids() {
        c.kill(id);
    }
    c.start_all();
    assert_every_write(&c);
}

#[test]
fn with_one_thread_the_raft_thread_flushes_every_group() {
    let c = written("1");
    for id in c.ids() {
        assert_eq!(c.gauge(id, "shoal_raft_threads"), 1, "node {id}");
        let f = flushes(&c, id, 1);
        assert!(f[0] > Some(0), "node {id}: no flushes counted: {f:?}");
        assert_eq!(
            f[1], None,
            "node {id}: a flush thread with one thread: {f:?}"
        );
    }
    assert_every_write(&c);
}
