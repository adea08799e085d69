//! The `recovery` workload: for each log length, fill a fresh `--local` cluster that never
//! snapshots, kill it, restart it on the same data dirs, and time the restart until every node
//! answers and until every node's `/health` is OK.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_client::protocol::{Request, Response};

use crate::calls::{call_once, fill, find_leader};
use crate::cli::{Args, Fsync};
use crate::cluster::{dir_bytes, http_status, rss_kib, LocalCluster};
use crate::report;

/// Longest a restarted cluster may take to become healthy.
const RESTART_TIMEOUT: Duration = Duration::from_secs(600);

/// One measured log length.
pub struct RecoveryPoint {
    /// Writes made.
    pub entries: u64,
    /// Raft index of the last write.
    pub last: u64,
    /// Bytes of node 1's data dir before the restart.
    pub disk: u64,
    /// From the restart until the slowest node answered `Status`.
    pub answering: Duration,
    /// From the restart until the slowest node's `/health` was OK.
    pub healthy: Duration,
    /// Each node's RSS after the restart, KiB.
    pub rss: Vec<u64>,
}

/// Measure every `--recovery-entries` length (until interrupted) and print one table.
pub fn recovery(a: &Args, stop: &Arc<AtomicBool>) -> Result<(), String> {
    let n = a.local.expect("checked: recovery needs --local");
    let mut points = Vec::new();
    for &entries in &a.recovery_entries {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // No snapshot at all, so the restart replays every entry; filled with fsync `never`
        // (fast), restarted with the chosen --fsync.
        let mut extra = a.shoald_args.clone();
        extra.extend([
            "--snapshot-entries=0".into(),
            "--snapshot-interval=0".into(),
        ]);
        let mut cluster = LocalCluster::start(n, Fsync::Never, &extra)?;
        let result = measure(a, &mut cluster, entries, stop);
        if result.is_err() {
            eprintln!("shoald logs (last lines):\n{}", cluster.log_tail());
        }
        drop(cluster);
        points.push(result?);
    }
    report::print(|out| report::recovery(a, n, &points, out))
}

/// Fill `cluster` with `entries` writes, restart it and time its recovery.
fn measure(
    a: &Args,
    cluster: &mut LocalCluster,
    entries: u64,
    stop: &AtomicBool,
) -> Result<RecoveryPoint, String> {
    let n = cluster.client_addrs.len();
    let leader = find_leader(&cluster.client_addrs, Duration::from_secs(20), stop)?;
    let filled = Instant::now();
    let last = fill(&leader, a, entries, 512)?;
    let fill_secs = filled.elapsed().as_secs_f64();
    // Let the followers apply what the leader committed.
    std::thread::sleep(Duration::from_millis(500));
    let disk = dir_bytes(&cluster.root.join("n1"));
    cluster.kill_all();
    cluster.fsync = a.fsync;
    let t0 = Instant::now();
    cluster.spawn_all()?;
    let mut answering: Vec<Option<Duration>> = vec![None; n];
    let mut healthy: Vec<Option<Duration>> = vec![None; n];
    while healthy.iter().any(|h| h.is_none()) {
        if stop.load(Ordering::Relaxed) || t0.elapsed() > RESTART_TIMEOUT {
            return Err("the restarted cluster did not become healthy".into());
        }
        for i in 0..n {
            if answering[i].is_none()
                && matches!(
                    call_once(&cluster.client_addrs[i], Request::Status),
                    Ok(Response::Status(_))
                )
            {
                answering[i] = Some(t0.elapsed());
            }
            if healthy[i].is_none() && http_status(&cluster.admin_addrs[i], "/health") == Some(200)
            {
                healthy[i] = Some(t0.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let rss = cluster
        .pids()
        .iter()
        .filter_map(|&p| rss_kib(p).map(|x| x.0))
        .collect();
    let slowest = |v: &[Option<Duration>]| v.iter().flatten().max().copied().unwrap_or_default();
    let point = RecoveryPoint {
        entries,
        last,
        disk,
        answering: slowest(&answering),
        healthy: slowest(&healthy),
        rss,
    };
    eprintln!(
        "recovery: {entries} writes (last index {last}, filled in {fill_secs:.1}s): \
         answering after {:?}, healthy after {:?}",
        point.answering, point.healthy
    );
    Ok(point)
}
