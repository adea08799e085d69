//! Groups flushed on several threads (`--raft-threads`, issue 17 item 4): with eight groups
//! written at once on three nodes started with two flush threads (the raft thread and one
//! more), each node shares its busy groups' flushes with the second thread
//! (`shoal_group_flushes_total`), every acknowledged write reads back, and
//! after every node was killed and restarted each group recovers all of them. With one thread
//! the raft thread flushes every group itself. A single node spreads its groups as well.
#![cfg(unix)]

use shoal_client::protocol::ReadMode;
use shoal_testkit::client::{series_value, Conn};
use shoal_testkit::{wait_for, Cluster, WAIT};

const GROUPS: u32 = 8;
/// Writes per group, sent as pipelined batches so many groups have work in one round.
const BATCHES: u64 = 10;
const BATCH: u64 = 40;

/// Flushes node `id` ran on each of its `threads` flush threads, as `/metrics` reports them:
/// the raft thread's first, then one more series than the threads asked for (which must be
/// absent).
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

/// A cluster of `nodes` started with `--raft-threads threads` and `--fsync fsync`, and
/// `GROUPS` groups of every node, each written by its own client at once.
/// Returns the cluster, each group's leader and each node's flushes per thread before the
/// writes began.
fn written(nodes: u64, fsync: &str, threads: &str) -> (Cluster, Vec<u64>, Vec<Vec<Option<u64>>>) {
    written_with(nodes, fsync, threads, &[])
}

/// [`written`], every node started with `args` too.
fn written_with(
    nodes: u64,
    fsync: &str,
    threads: &str,
    args: &[&str],
) -> (Cluster, Vec<u64>, Vec<Vec<Option<u64>>>) {
    // Leaders stay where the groups elected them: the writes go to the leaders found here.
    let mut c = Cluster::builder()
        .voters(1..=nodes)
        .fsync(fsync)
        .args(&["--raft-threads", threads, "--leader-balance-interval", "0"])
        .args(args)
        .build();
    c.start_all();
    c.wait_leader(0);
    let members = (1..=nodes)
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let leaders = c.create_groups(1..=GROUPS, &members);
    // Settled first, as groups are when load arrives: a quiet leader wakes for its writes.
    for id in c.ids() {
        wait_for(&format!("node {id}: every group quiet"), WAIT * 2, || {
            c.gauge(id, "shoal_groups_quiet") == GROUPS as usize + 1
        });
    }
    let threads: usize = threads.parse().expect("a thread count");
    let before = c.ids().iter().map(|&id| flushes(&c, id, threads)).collect();
    write_every_group(&c, &leaders, 0, "b");
    (c, leaders, before)
}

/// `BATCHES` pipelined batches of `BATCH` puts to every group at once, one client (with a
/// session of its own for each `round`) per group, under keys `{prefix}{batch}k{i}`.
fn write_every_group(c: &Cluster, leaders: &[u64], round: u64, prefix: &str) {
    std::thread::scope(|s| {
        for (g, &leader) in (1..=GROUPS).zip(leaders) {
            let addr = c.clients_of(&[leader]).remove(0);
            s.spawn(move || {
                let mut conn = Conn::open(&addr).expect("connect to the group's leader");
                for b in 0..BATCHES {
                    let value = format!("v{g}");
                    let first = b * BATCH;
                    conn.pipelined_puts(
                        g,
                        (100 + round * 100 + u64::from(g), first + 1),
                        &format!("{prefix}{b}k"),
                        value.as_bytes(),
                        BATCH,
                    );
                }
            });
        }
    });
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

/// The second flush thread ran flushes on every node while the groups were written (elections
/// and group creation before may use it too), and there is no third.
///
/// On a loaded machine the raft thread can take a whole round's groups before the other
/// thread wakes, so while the count falls short every group is written again (a bounded number
/// of times, each under its own keys): a pool that never gets busy groups fails all the same.
fn assert_both_flush_threads_ran(c: &Cluster, leaders: &[u64], before: &[Vec<Option<u64>>]) {
    for id in c.ids() {
        assert_eq!(c.gauge(id, "shoal_raft_threads"), 2, "node {id}");
    }
    // Groups with nothing but timers stay on the raft thread; busy ones are shared out between
    // it and flush-0. (The admin view is published every 100 ms: wait for it.)
    let short = |last: &mut Vec<Vec<Option<u64>>>| -> Vec<u64> {
        *last = c.ids().iter().map(|&id| flushes(c, id, 2)).collect();
        c.ids()
            .into_iter()
            .zip(last.iter().zip(before))
            .filter(|(_, (now, before))| {
                now[1].unwrap_or(0) - before[1].unwrap_or(0) < u64::from(GROUPS)
            })
            .map(|(id, _)| id)
            .collect()
    };
    let mut last = Vec::new();
    let mut rounds = 0;
    loop {
        let ok = shoal_testkit::poll(std::time::Duration::from_secs(2), || {
            short(&mut last).is_empty().then_some(())
        });
        if ok.is_some() {
            break;
        }
        assert!(
            rounds < 10,
            "nodes {:?}: busy groups were not shared with the other flush thread after {} \
             rounds of writes: {last:?} (before the writes {before:?})",
            short(&mut last),
            rounds + 1
        );
        rounds += 1;
        write_every_group(c, leaders, rounds, &format!("r{rounds}-"));
    }
    for (id, last) in c.ids().into_iter().zip(&last) {
        assert_eq!(last[2], None, "node {id}: a third flush thread: {last:?}");
    }
}

#[test]
fn busy_groups_flush_on_every_flush_thread_and_keep_every_write() {
    let (mut c, leaders, before) = written(3, "always", "2");
    assert_both_flush_threads_ran(&c, &leaders, &before);
    assert_every_write(&c);
    for id in c.ids() {
        c.kill(id);
    }
    c.start_all();
    assert_every_write(&c);
}

/// A single node's leaders look settled to the driver between rounds (nothing to replicate, no
/// sync with fsync `never`): their input alone must make them busy.
#[test]
fn a_single_node_spreads_its_busy_groups_too() {
    let (c, leaders, before) = written(1, "never", "2");
    assert_both_flush_threads_ran(&c, &leaders, &before);
    assert_every_write(&c);
}

#[test]
fn with_one_thread_the_raft_thread_flushes_every_group() {
    let (c, _, _) = written(3, "never", "1");
    for id in c.ids() {
        assert_eq!(c.gauge(id, "shoal_raft_threads"), 1, "node {id}");
        assert_eq!(
            raft_cpu_metric(&c, id),
            -1,
            "node {id}: pinned without --raft-cpu"
        );
        let f = flushes(&c, id, 1);
        assert!(f[0] > Some(0), "node {id}: no flushes counted: {f:?}");
        assert_eq!(
            f[1], None,
            "node {id}: a flush thread with one thread: {f:?}"
        );
    }
    assert_every_write(&c);
}

/// The CPUs in a `Cpus_allowed_list` line's value (`0-1`, `0,2-3`).
fn parse_cpu_list(list: &str) -> Vec<usize> {
    list.trim()
        .split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![part.parse().unwrap()],
        })
        .collect()
}

/// The CPUs task `task` of process `pid` may run on.
fn cpus_of(pid: u32, task: &str) -> Vec<usize> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/task/{task}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(parse_cpu_list)
        .unwrap_or_default()
}

/// `shoal_raft_cpu` of node `id` (-1 when not pinned).
fn raft_cpu_metric(c: &Cluster, id: u64) -> i64 {
    let (_, body) = c.http_get(id, "/metrics").expect("/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix("shoal_raft_cpu "))
        .and_then(|v| v.trim().parse().ok())
        .expect("shoal_raft_cpu is exported")
}

/// `--raft-cpu auto`: on every node the raft thread (the process's main thread) runs on the
/// CPU it took (`shoal_raft_cpu`, one this process may use; which one is the unit tests'
/// concern) alone and every other thread on the other CPUs: the flush and sync threads, the
/// peer threads, and those the raft thread started while the groups were created and written
/// (with fsync `async`, each group's syncer thread).
#[test]
fn with_raft_cpu_the_raft_thread_has_a_cpu_of_its_own() {
    let me = std::process::id().to_string();
    let allowed = cpus_of(std::process::id(), &me);
    assert!(!allowed.is_empty(), "our own CPUs are readable");
    if allowed.len() < 2 {
        eprintln!("skipped: this test process may use one CPU only ({allowed:?})");
        return;
    }
    let (mut c, leaders, before) = written_with(3, "async", "2", &["--raft-cpu", "auto"]);
    assert_both_flush_threads_ran(&c, &leaders, &before);
    for id in c.ids() {
        let raft = raft_cpu_metric(&c, id);
        assert!(
            allowed.iter().any(|&a| a as i64 == raft),
            "node {id}: pinned to CPU {raft}, not one of {allowed:?}"
        );
        let raft = raft as usize;
        let others: Vec<usize> = allowed.iter().copied().filter(|&a| a != raft).collect();
        let pid = c.running_proc(id).pid();
        let mut seen = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let task = task.unwrap().file_name().into_string().unwrap();
            let name = std::fs::read_to_string(format!("/proc/{pid}/task/{task}/comm"))
                .unwrap_or_default()
                .trim()
                .to_string();
            let cpus = cpus_of(pid, &task);
            if cpus.is_empty() {
                continue; // the thread ended while we looked
            }
            let want = if task == pid.to_string() {
                vec![raft]
            } else {
                others.clone()
            };
            assert_eq!(cpus, want, "node {id}: thread {name} ({task})");
            seen.push(name);
        }
        for t in ["shoal-flush-1", "shoal-fsync-0", "shoal-admin"] {
            assert!(
                seen.iter().any(|n| n == t),
                "node {id}: no {t} among {seen:?}"
            );
        }
        assert!(
            seen.iter()
                .any(|n| n.starts_with("shoal-peer") || n.starts_with("shoal-dial")),
            "node {id}: no peer thread among {seen:?}"
        );
    }
    assert_every_write(&c);
}
