//! The `groups` workload: what many groups cost on a fresh `--local` cluster. It defines
//! `--groups` N groups through group 0's leader, times until every one has a leader, measures
//! what the idle groups add to each node (RSS, disk blocks, CPU over `--idle`, against the same
//! figures before they existed), then runs `put` over each `--groups-active` count of them
//! in turn (writes/s and the nodes' fdatasyncs/s).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_client::protocol::{Request, Response};

use crate::calls::{call_once, create_groups, find_leader, group_leaders};
use crate::cli::{Args, Workload};
use crate::cluster::{
    clock_ticks_per_sec, cpu_ticks, disk_blocks_bytes, http_body, rss_kib, LocalCluster,
};
use crate::report;
use crate::run::run;

/// How long the groups may take to elect leaders: a minute plus 100 ms per group.
fn leaders_timeout(groups: u32) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(100) * groups
}

/// What one node holds and spends, for the idle figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeCost {
    /// RSS in KiB.
    pub rss_kib: u64,
    /// Disk blocks of its data dir, in bytes.
    pub disk_bytes: u64,
    /// CPU used over the idle window, in percent of one core.
    pub cpu_pct: f64,
}

/// One active-groups point: `put` over groups `1..=groups`.
#[derive(Clone, Debug)]
pub struct ActivePoint {
    /// Groups written.
    pub groups: u32,
    /// Acknowledged writes per second.
    pub writes_per_sec: f64,
    /// fdatasyncs per second, summed over the nodes.
    pub fsyncs_per_sec: f64,
    /// p99 write latency, µs.
    pub p99_us: u64,
    /// Server CPU per acknowledged write over the measured window, µs, summed over the nodes
    /// (None if it could not be read).
    pub server_us_per_write: Option<f64>,
    /// The servers and the load generator kept the machine's cores busy over the window.
    pub cpu_bound: bool,
    /// Writes/s of each repetition, in the order they ran (`--groups-repeat`; one with one).
    pub runs_writes_per_sec: Vec<f64>,
    /// Writes/s against the first point's: the median over the repetitions of this point's
    /// writes/s divided by the first point's in the same repetition.
    pub ratio_to_first: f64,
}

/// The median of `xs` (the mean of the middle two for an even count); 0 for none.
fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    match xs.len() % 2 {
        1 => xs[m],
        _ => (xs[m - 1] + xs[m]) / 2.0,
    }
}

/// One point per active-group count from every repetition's runs (`runs[r][i]`: repetition
/// `r`, the `i`-th count): each figure the median of its runs, the ratio to the first count
/// the median of the per-repetition ratios.
pub fn combine(runs: &[Vec<ActivePoint>]) -> Vec<ActivePoint> {
    let Some(first_rep) = runs.first() else {
        return Vec::new();
    };
    let reps = || runs.iter().filter(|rep| rep.len() == first_rep.len());
    (0..first_rep.len())
        .map(|i| {
            let all: Vec<&ActivePoint> = reps().map(|rep| &rep[i]).collect();
            let med = |f: &dyn Fn(&ActivePoint) -> f64| median(all.iter().map(|p| f(p)).collect());
            let cpu: Vec<f64> = all.iter().filter_map(|p| p.server_us_per_write).collect();
            ActivePoint {
                groups: first_rep[i].groups,
                writes_per_sec: med(&|p| p.writes_per_sec),
                fsyncs_per_sec: med(&|p| p.fsyncs_per_sec),
                p99_us: med(&|p| p.p99_us as f64) as u64,
                server_us_per_write: (!cpu.is_empty()).then(|| median(cpu)),
                cpu_bound: all.iter().filter(|p| p.cpu_bound).count() * 2 > all.len(),
                runs_writes_per_sec: all.iter().map(|p| p.writes_per_sec).collect(),
                ratio_to_first: median(
                    reps()
                        .filter(|rep| rep[0].writes_per_sec > 0.0)
                        .map(|rep| rep[i].writes_per_sec / rep[0].writes_per_sec)
                        .collect(),
                ),
            }
        })
        .collect()
}

/// Everything the workload measured.
#[derive(Clone, Debug)]
pub struct GroupsOutcome {
    /// Groups created.
    pub groups: u32,
    /// From the first definition sent until every definition was committed.
    pub create: Duration,
    /// From the first definition sent until every group had a leader.
    pub all_leaders: Duration,
    /// Each node before the groups, and with them idle.
    pub before: Vec<NodeCost>,
    /// Each node with the groups idle.
    pub after: Vec<NodeCost>,
    /// Idle window, seconds.
    pub idle_secs: f64,
    /// The active-groups points.
    pub active: Vec<ActivePoint>,
}

impl GroupsOutcome {
    /// Per idle group on the node that grew most: (RSS KiB, disk bytes).
    pub fn per_group(&self) -> (f64, f64) {
        let n = f64::from(self.groups.max(1));
        let worst = |f: &dyn Fn(&NodeCost) -> u64| {
            self.before
                .iter()
                .zip(&self.after)
                .map(|(b, a)| f(a).saturating_sub(f(b)))
                .max()
                .unwrap_or(0) as f64
                / n
        };
        (worst(&|c| c.rss_kib), worst(&|c| c.disk_bytes))
    }
}

/// Run the workload on a fresh cluster and print its report.
pub fn groups(a: &Args, stop: &Arc<AtomicBool>) -> Result<(), String> {
    let n = a.local.expect("checked: groups needs --local");
    let cluster = LocalCluster::start(n, a.fsync, &a.shoald_args)?;
    let result = measure(a, &cluster, stop);
    if result.is_err() {
        eprintln!("shoald logs (last lines):\n{}", cluster.log_tail());
    }
    drop(cluster);
    let o = result?;
    report::print(|out| report::groups(a, n, &o, out))?;
    crate::plot::when_asked(a.plot.as_deref(), "groups", |path| {
        crate::plot::groups(path, n, &o)
    })
}

/// Each node's RSS, disk and CPU over `idle`.
fn costs(cluster: &LocalCluster, idle: Duration) -> Vec<NodeCost> {
    let pids = cluster.pids();
    let ticks0: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p).unwrap_or(0)).collect();
    let t0 = Instant::now();
    std::thread::sleep(idle);
    let secs = t0.elapsed().as_secs_f64();
    let hz = clock_ticks_per_sec();
    pids.iter()
        .enumerate()
        .map(|(i, &p)| NodeCost {
            rss_kib: rss_kib(p).map_or(0, |r| r.0),
            disk_bytes: disk_blocks_bytes(&cluster.root.join(format!("n{}", i + 1))),
            cpu_pct: cpu_ticks(p).unwrap_or(0).saturating_sub(ticks0[i]) as f64 / hz / secs * 100.0,
        })
        .collect()
}

/// fdatasyncs so far, summed over the nodes (`shoal_fsync_seconds_count`).
fn fsyncs(cluster: &LocalCluster) -> u64 {
    cluster
        .admin_addrs
        .iter()
        .filter_map(|addr| http_body(addr, "/metrics"))
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("shoal_fsync_seconds_count "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

fn measure(
    a: &Args,
    cluster: &LocalCluster,
    stop: &Arc<AtomicBool>,
) -> Result<GroupsOutcome, String> {
    let leader = find_leader(&cluster.client_addrs, Duration::from_secs(20), stop)?;
    let voters = match call_once(&leader, Request::Status)? {
        Response::Status(s) => s.members.iter().map(|m| m.id).collect::<Vec<_>>(),
        r => return Err(format!("status of group 0: {r:?}")),
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = costs(cluster, a.idle);
    let groups: Vec<u32> = (1..=a.groups).collect();
    let t0 = Instant::now();
    create_groups(&leader, &groups, &voters)?;
    let create = t0.elapsed();
    eprintln!("groups: {} defined in {create:.1?}", a.groups);
    group_leaders(
        &cluster.client_addrs,
        &groups,
        leaders_timeout(a.groups),
        stop,
    )?;
    let all_leaders = t0.elapsed();
    eprintln!("groups: every group has a leader after {all_leaders:.1?}");
    // Let elections' traffic and the first entries' syncs settle before the idle window.
    std::thread::sleep(Duration::from_secs(2));
    let after = costs(cluster, a.idle);
    let mut reps: Vec<Vec<ActivePoint>> = Vec::new();
    for rep in 0..a.groups_repeat {
        let mut active = Vec::new();
        for &k in &a.groups_active {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let mut p = a.clone();
            p.workload = Workload::Put;
            p.groups = k;
            let f0 = fsyncs(cluster);
            let o = run(&p, Some(cluster), stop)?;
            let f1 = fsyncs(cluster);
            let w = &o.total[0];
            // The fsync count covers warmup and setup too: taken over the same span as the run.
            let span = (a.warmup + a.duration).as_secs_f64();
            let point = ActivePoint {
                groups: k,
                writes_per_sec: w.ok as f64 / o.secs,
                fsyncs_per_sec: f1.saturating_sub(f0) as f64 / span,
                p99_us: w.pct(0.99),
                server_us_per_write: o
                    .cpu
                    .as_ref()
                    .map(|c| c.server_us_per_op(w.ok as f64 / o.secs)),
                cpu_bound: o.cpu.as_ref().is_some_and(|c| c.cpu_bound()),
                runs_writes_per_sec: Vec::new(),
                ratio_to_first: 0.0,
            };
            eprintln!(
                "groups: {k} active{}: {:.0} writes/s, {:.0} fsyncs/s, {} server CPU per write",
                match a.groups_repeat {
                    1 => String::new(),
                    n => format!(" (repetition {} of {n})", rep + 1),
                },
                point.writes_per_sec,
                point.fsyncs_per_sec,
                point
                    .server_us_per_write
                    .map_or("n/a".into(), |us| format!("{us:.2} µs"))
            );
            active.push(point);
        }
        reps.push(active);
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    let active = combine(&reps);
    Ok(GroupsOutcome {
        groups: a.groups,
        create,
        all_leaders,
        before,
        after,
        idle_secs: a.idle.as_secs_f64(),
        active,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(groups: u32, writes: f64, cpu: Option<f64>) -> ActivePoint {
        ActivePoint {
            groups,
            writes_per_sec: writes,
            fsyncs_per_sec: writes / 100.0,
            p99_us: writes as u64 / 1000,
            server_us_per_write: cpu,
            cpu_bound: groups > 1,
            runs_writes_per_sec: Vec::new(),
            ratio_to_first: 0.0,
        }
    }

    #[test]
    fn repetitions_give_medians_and_the_median_of_each_repetitions_own_ratio() {
        // The machine slowed down by half in the second repetition and sped up in the third;
        // each repetition's own ratio stays near 0.8.
        let runs = vec![
            vec![point(1, 400.0, Some(2.0)), point(64, 320.0, Some(5.0))],
            vec![point(1, 200.0, None), point(64, 150.0, Some(6.0))],
            vec![point(1, 500.0, Some(3.0)), point(64, 410.0, Some(4.0))],
        ];
        let c = combine(&runs);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].groups, 64);
        assert_eq!(c[0].writes_per_sec, 400.0);
        assert_eq!(c[1].writes_per_sec, 320.0);
        assert_eq!(c[1].runs_writes_per_sec, [320.0, 150.0, 410.0]);
        assert_eq!(c[0].ratio_to_first, 1.0);
        // Each repetition's own ratio: 0.8, 0.75, 0.82; their median is 0.8.
        assert!((c[1].ratio_to_first - 0.8).abs() < 1e-9, "{}", c[1].ratio_to_first);
        // Two CPU readings for one group (the mean of the middle two), three for 64.
        assert_eq!(c[0].server_us_per_write, Some(2.5));
        assert_eq!(c[1].server_us_per_write, Some(5.0));
        assert!(c[1].cpu_bound && !c[0].cpu_bound);
    }

    #[test]
    fn the_ratio_is_taken_within_repetitions_not_across_them() {
        // One group fast in the first repetition only, 64 groups fast in the second only:
        // medians of each point would give 300/300 = 1.0; the repetitions each say 0.5.
        let runs = vec![
            vec![point(1, 600.0, None), point(64, 300.0, None)],
            vec![point(1, 300.0, None), point(64, 150.0, None)],
        ];
        let c = combine(&runs);
        assert!((c[1].ratio_to_first - 0.5).abs() < 1e-9, "{}", c[1].ratio_to_first);
        // A repetition cut short (Ctrl-C) is left out.
        let mut cut = runs.clone();
        cut.push(vec![point(1, 100.0, None)]);
        assert_eq!(combine(&cut)[1].runs_writes_per_sec, [300.0, 150.0]);
        assert!(combine(&[]).is_empty());
    }
}
