//! One measured run of `put`, `get`, `mixed` or `watch`: find the leader, prepare, start the
//! load connections (and watchers), sample the servers' memory while they run, merge what they
//! measured.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shoal_client::protocol::{Request, Response, WriteOp};

use crate::calls::{call_once, create_groups, find_leader, group_leaders, prefill};
use crate::cli::{Args, Workload};
use crate::cluster::{clock_ticks_per_sec, cpu_ticks, rss_kib, LocalCluster};
use crate::load::{run_conn, run_watcher, Route, Shared, Window};
use crate::report;
use crate::stats::OpStats;

/// How long a run waits for a leader, and for every watch to start.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// One run of `a.workload`, on a `--local` cluster of its own or on `--endpoints`, reported.
pub fn single(a: &Args, stop: &Arc<AtomicBool>) -> Result<(), String> {
    let cluster = match a.local {
        Some(n) => Some(LocalCluster::start(n, a.fsync, &a.shoald_args)?),
        None => None,
    };
    let result = run(a, cluster.as_ref(), stop);
    if let (Err(_), Some(c)) = (&result, &cluster) {
        eprintln!("shoald logs (last lines):\n{}", c.log_tail());
    }
    drop(cluster); // kills the local shoald processes
    let o = result?;
    report::print(|out| report::single(a, &o, out))
}

/// What one run measured.
pub struct Outcome {
    /// Load connections used.
    pub conns: usize,
    /// The leader's client address.
    pub leader: String,
    /// Measured seconds.
    pub secs: f64,
    /// Writes, reads, watch events.
    pub total: [OpStats; 3],
    /// The `--local` processes (none for remote endpoints).
    pub pids: Vec<u32>,
    /// Each process's (RSS, peak RSS) in KiB before the load.
    pub idle: Vec<Option<(u64, u64)>>,
    /// Each process's largest RSS sampled during the load, KiB.
    pub peak: Vec<u64>,
    /// Each process's (RSS, peak RSS) in KiB after the load.
    pub hwm: Vec<Option<(u64, u64)>>,
    /// CPU the servers and this load generator used over the measured window (None when the
    /// window could not be read, for example a server gone).
    pub cpu: Option<CpuUse>,
    /// Connections that failed, and why.
    pub failures: Vec<String>,
}

/// Run `a.workload` against `cluster` (or `--endpoints`) and measure it.
pub fn run(
    a: &Args,
    cluster: Option<&LocalCluster>,
    stop: &Arc<AtomicBool>,
) -> Result<Outcome, String> {
    let endpoints = match cluster {
        Some(c) => c.client_addrs.clone(),
        None => a.endpoints.clone(),
    };
    let leader = find_leader(&endpoints, SETUP_TIMEOUT, stop)?;
    let pids = cluster.map(|c| c.pids()).unwrap_or_default();
    // Let the followers settle, then take the idle RSS.
    std::thread::sleep(Duration::from_millis(300));
    let idle: Vec<Option<(u64, u64)>> = pids.iter().map(|&p| rss_kib(p)).collect();
    let routes = routes(a, &endpoints, &leader, stop)?;
    if matches!(a.workload, Workload::Get | Workload::Mixed) {
        let shards = shards_of(&routes);
        for r in &routes {
            for &g in &r.groups {
                let shard = shards.iter().position(|&s| s == g).unwrap_or(0) as u64;
                prefill(&r.addr, g, (shard, shards.len() as u64), a)?;
            }
        }
    }
    let conns = a.conns.min(a.clients) as usize;
    let epoch = Instant::now();
    let window: Window = Arc::new(OnceLock::new());
    let watchers = if a.workload == Workload::Watch {
        start_watchers(a, &endpoints, &leader, epoch, &window, stop)?
    } else {
        Vec::new()
    };
    let mut sh = shared(a, routes, a.workload, epoch, stop);
    if a.groups > 0 && endpoints.len() > 1 {
        // Leader balance may move groups while the load runs.
        sh.endpoints = endpoints.clone();
    }
    let sh = Arc::new(sh);
    let _ = window.set((sh.start_measure, sh.end));
    let loaders = start_loaders(a, &sh);
    let (peak, cpu) = sample_during(&pids, (sh.start_measure, sh.end), &loaders, &watchers);
    let hwm: Vec<Option<(u64, u64)>> = pids.iter().map(|&p| rss_kib(p)).collect();
    let (total, failures) = join_workers(loaders, watchers);
    let measured = (Instant::now().min(sh.end))
        .saturating_duration_since(sh.start_measure)
        .as_secs_f64()
        .max(1e-9);
    if !failures.is_empty() && total[0].ok + total[1].ok == 0 {
        return Err(format!("every connection failed: {}", failures[0]));
    }
    Ok(Outcome {
        conns,
        leader,
        secs: measured,
        total,
        pids,
        idle,
        peak,
        hwm,
        cpu,
        failures,
    })
}

/// What the load connections of a run of `workload` share: from now, `--warmup` then
/// `--duration`, along `routes`.
pub fn shared(
    a: &Args,
    routes: Vec<Route>,
    workload: Workload,
    epoch: Instant,
    stop: &Arc<AtomicBool>,
) -> Shared {
    let start = Instant::now();
    let watch = workload == Workload::Watch;
    Shared {
        shards: shards_of(&routes),
        routes,
        start_measure: start + a.warmup,
        end: start + a.warmup + a.duration,
        stop: stop.clone(),
        workload,
        read_mode: a.consistency.read_mode(),
        read_ratio: a.read_ratio,
        key_size: a.key_size,
        keyspace: a.keyspace,
        value: vec![b'v'; a.value_size],
        key_prefix: if watch { b"w.".to_vec() } else { Vec::new() },
        stamp: watch,
        epoch,
        endpoints: Vec::new(),
    }
}

/// Every group `routes` write, each once, in route order: the shards of the keyspace.
fn shards_of(routes: &[Route]) -> Vec<u32> {
    let mut shards: Vec<u32> = Vec::new();
    for g in routes.iter().flat_map(|r| &r.groups) {
        if !shards.contains(g) {
            shards.push(*g);
        }
    }
    shards
}

/// The `--clients` sessions spread over `--conns` load connections, a thread each.
pub fn start_loaders(a: &Args, sh: &Arc<Shared>) -> Vec<JoinHandle<Result<[OpStats; 2], String>>> {
    let conns = a.conns.min(a.clients) as usize;
    let (clients, pipeline) = (a.clients as usize, a.pipeline as usize);
    (0..conns)
        .map(|c| {
            let n = clients / conns + usize::from(c < clients % conns);
            let sh = sh.clone();
            std::thread::spawn(move || {
                let route = &sh.routes[c % sh.routes.len()];
                run_conn(&sh, route, n, pipeline)
            })
        })
        .collect()
}

/// Where the load goes: group 0's leader, or with `--groups N` groups `1..=N` (defined now
/// through group 0's leader with group 0's voters, if they are not yet) by the endpoint that
/// leads each.
fn routes(
    a: &Args,
    endpoints: &[String],
    leader: &str,
    stop: &AtomicBool,
) -> Result<Vec<Route>, String> {
    if a.groups == 0 {
        return Ok(vec![Route::group0(leader)]);
    }
    let groups: Vec<u32> = (1..=a.groups).collect();
    let voters = match call_once(leader, Request::Status)? {
        Response::Status(s) => s
            .members
            .iter()
            .filter(|m| m.role == "voter")
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        r => return Err(format!("status of group 0: {r:?}")),
    };
    create_groups(leader, &groups, &voters)?;
    let leaders = group_leaders(endpoints, &groups, SETUP_TIMEOUT, stop)?;
    Ok(Route::by_leader(leaders))
}

/// CPU time used over a run's measured window, as average cores (CPU seconds per second).
#[derive(Clone, Debug, PartialEq)]
pub struct CpuUse {
    /// Each `--local` server, in node order.
    pub servers: Vec<f64>,
    /// This load generator, every thread of it.
    pub bench: f64,
    /// Cores this machine has.
    pub cores: usize,
}

impl CpuUse {
    /// From CPU ticks (servers, then the bench) at the window's start and end, `secs` apart.
    pub fn from_ticks(t0: &[u64], t1: &[u64], secs: f64, hz: f64) -> CpuUse {
        let mut cores: Vec<f64> = t0
            .iter()
            .zip(t1)
            .map(|(a, b)| b.saturating_sub(*a) as f64 / hz / secs.max(1e-9))
            .collect();
        let bench = cores.pop().unwrap_or(0.0);
        CpuUse {
            servers: cores,
            bench,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// Server CPU per operation at `ops_per_sec`, µs, summed over the servers.
    pub fn server_us_per_op(&self, ops_per_sec: f64) -> f64 {
        self.servers.iter().sum::<f64>() * 1e6 / ops_per_sec.max(1e-9)
    }

    /// Whether the servers and the load generator kept nine tenths or more of the machine's
    /// cores busy: the run's figure is then bound by CPU that the load generator shares.
    pub fn cpu_bound(&self) -> bool {
        self.servers.iter().sum::<f64>() + self.bench >= 0.9 * self.cores as f64
    }
}

/// The CPU ticks of each of `pids`, then of this process; None if one is gone.
fn all_ticks(pids: &[u32]) -> Option<Vec<u64>> {
    let me = std::process::id();
    pids.iter().chain([&me]).map(|&p| cpu_ticks(p)).collect()
}

/// Until every loader and watcher has finished: the peak RSS of each of `pids`, sampled every
/// 100 ms, and the CPU each of them and this process used between the `window`'s instants.
fn sample_during<A, B>(
    pids: &[u32],
    (start, end): (Instant, Instant),
    loaders: &[std::thread::JoinHandle<A>],
    watchers: &[std::thread::JoinHandle<B>],
) -> (Vec<u64>, Option<CpuUse>) {
    let mut peak = vec![0u64; pids.len()];
    let mut first: Option<(Instant, Option<Vec<u64>>)> = None;
    let mut cpu = None;
    while loaders.iter().any(|h| !h.is_finished()) || watchers.iter().any(|h| !h.is_finished()) {
        for (i, &p) in pids.iter().enumerate() {
            if let Some((rss, _)) = rss_kib(p) {
                peak[i] = peak[i].max(rss);
            }
        }
        let now = Instant::now();
        if first.is_none() && now >= start {
            first = Some((now, all_ticks(pids)));
        } else if let (Some((t0, Some(ticks0))), None, true) = (&first, &cpu, now >= end) {
            cpu = all_ticks(pids).map(|ticks1| {
                let secs = now.duration_since(*t0).as_secs_f64();
                CpuUse::from_ticks(ticks0, &ticks1, secs, clock_ticks_per_sec())
            });
        }
        // Wake at the window's edges rather than up to 100 ms past them.
        let next = [start, end]
            .into_iter()
            .filter(|&t| t > now)
            .map(|t| t - now)
            .min()
            .unwrap_or(Duration::MAX);
        std::thread::sleep(next.min(Duration::from_millis(100)));
    }
    (peak, cpu)
}

/// The loaders' and watchers' statistics merged (puts, gets, events), and what failed.
pub fn join_workers(
    loaders: Vec<std::thread::JoinHandle<Result<[OpStats; 2], String>>>,
    watchers: Vec<std::thread::JoinHandle<Result<OpStats, String>>>,
) -> ([OpStats; 3], Vec<String>) {
    let mut total = [OpStats::new(), OpStats::new(), OpStats::new()];
    let mut failures = Vec::new();
    for h in loaders {
        match h.join() {
            Ok(Ok(st)) => {
                total[0].merge(&st[0]);
                total[1].merge(&st[1]);
            }
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("worker panicked".into()),
        }
    }
    for h in watchers {
        match h.join() {
            Ok(Ok(st)) => total[2].merge(&st),
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("watcher panicked".into()),
        }
    }
    (total, failures)
}

/// The watch workload's watchers: `Mkdir w`, then `--watchers` watches of `w` spread over
/// `--conns` connections per node; returns once every watch has started.
fn start_watchers(
    a: &Args,
    endpoints: &[String],
    leader: &str,
    epoch: Instant,
    window: &Window,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<JoinHandle<Result<OpStats, String>>>, String> {
    let mkdir = Request::Write {
        client_id: 0,
        seq: 0,
        op: WriteOp::Mkdir { key: b"w".to_vec() },
    };
    match call_once(leader, mkdir)? {
        Response::Written { .. } => {}
        r => return Err(format!("mkdir w: {r:?}")),
    }
    let started = Arc::new(AtomicUsize::new(0));
    let per_node = a.conns.min(a.watchers) as usize;
    let lanes = endpoints.len() * per_node;
    let w = a.watchers as usize;
    let mut handles = Vec::new();
    for lane in 0..lanes {
        let n = w / lanes + usize::from(lane < w % lanes);
        if n == 0 {
            continue;
        }
        let (addr, window, started, stop) = (
            endpoints[lane % endpoints.len()].clone(),
            window.clone(),
            started.clone(),
            stop.clone(),
        );
        handles.push(std::thread::spawn(move || {
            run_watcher(addr, n, epoch, window, started, stop)
        }));
    }
    let deadline = Instant::now() + SETUP_TIMEOUT;
    while started.load(Ordering::Relaxed) < w {
        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
            let _ = window.set((epoch, epoch)); // let the watchers finish
            return Err(format!(
                "only {} of {w} watches started",
                started.load(Ordering::Relaxed)
            ));
        }
        if handles.iter().any(|h| h.is_finished()) {
            let _ = window.set((epoch, epoch));
            return Err("a watch connection failed before the run".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(handles)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loader that keeps a core busy until `until`.
    fn spinner(until: Instant) -> JoinHandle<()> {
        std::thread::spawn(move || {
            let mut x = 0u64;
            while Instant::now() < until {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        })
    }

    #[test]
    fn cpu_is_read_over_the_window_and_only_if_the_run_reaches_its_end() {
        let t = Instant::now();
        let window = (
            t + Duration::from_millis(100),
            t + Duration::from_millis(400),
        );
        // This process stands in for a server: its figure and the bench's are the same
        // counters read together.
        let me = std::process::id();
        let loaders = [spinner(t + Duration::from_millis(450))];
        let (peak, cpu) = sample_during(&[me], window, &loaders, &[] as &[JoinHandle<()>]);
        assert!(peak[0] > 0, "this process's RSS was sampled");
        let cpu = cpu.expect("the run outlived its window");
        assert_eq!(cpu.servers.len(), 1);
        assert!(cpu.bench > 0.0, "a spinning loader used CPU: {cpu:?}");
        // One tick over a 0.3 s window is ~0.03 cores.
        assert!((cpu.servers[0] - cpu.bench).abs() < 0.1, "{cpu:?}");

        // Loaders that stop before the window ends leave no figure rather than a short one.
        let t = Instant::now();
        let window = (t, t + Duration::from_secs(30));
        let loaders = [spinner(t + Duration::from_millis(100))];
        let (_, cpu) = sample_during(&[me], window, &loaders, &[] as &[JoinHandle<()>]);
        assert_eq!(cpu, None);
        // A server gone: no figure.
        let window = (t, t + Duration::from_millis(50));
        let loaders = [spinner(Instant::now() + Duration::from_millis(200))];
        let (_, cpu) = sample_during(&[u32::MAX], window, &loaders, &[] as &[JoinHandle<()>]);
        assert_eq!(cpu, None);
    }
}
