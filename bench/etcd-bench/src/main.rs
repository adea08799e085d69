//! `etcd-bench`: the etcd side of `bench/compare-etcd.sh`.
//!
//! It drives an etcd cluster with the same closed-loop model as `shoal-bench`, so the two numbers
//! of a comparison row differ by the server, not by how the load is generated:
//!
//! - `--clients C` logical clients spread over `--conns K` connections (one gRPC/HTTP2 channel
//!   per connection, all to the leader, found with `Status` on every endpoint);
//! - each client has one request in flight and sends the next as soon as the answer arrives;
//! - keys are `k` + zero-padded decimal of `--key-size` bytes, picked uniformly from
//!   `--keyspace`, values are `--value-size` bytes;
//! - `get` first writes every key of the keyspace (transactions of 64 puts) so reads find them;
//! - only requests sent after `--warmup` and answered before the end of `--duration` are counted;
//!   latency goes into an `hdrhistogram` in µs;
//! - `--pids` names server processes whose memory is reported like `shoal-bench --local` does:
//!   `VmRSS` at the start (idle), the peak of `VmRSS` sampled every 100 ms, and `VmHWM` at the end.
//!
//! - `--cacert FILE` connects over TLS (`https://` endpoints) trusting that CA, presenting
//!   `--cert`/`--key` when given (for `etcd --client-cert-auth`), as `shoal-bench` does.
//!
//! `--json` prints one object whose `ops` and `servers` fields have the shape of
//! `shoal-bench --json`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod compare;

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, KvClient, TlsOptions, Txn, TxnOp,
};
use hdrhistogram::Histogram;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Put,
    Get,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Consistency {
    Linearizable,
    Serializable,
}

/// How `get` writes the keyspace before it reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Preload {
    /// 16 concurrent transactions of 64 puts: a burst of writes.
    Fast,
    /// One transaction of 32 puts every 10 ms (at most ~3200 keys/s). etcd 3.4 copies its
    /// backend read buffer, sized by the largest burst of writes seen in one batch interval
    /// (100 ms), on every read; a burst makes every later read slower (see docs/BENCHMARKS.md).
    Paced,
    None,
}

#[derive(Clone, Debug)]
struct Args {
    workload: Workload,
    endpoints: Vec<String>,
    clients: usize,
    conns: usize,
    key_size: usize,
    value_size: usize,
    keyspace: u64,
    consistency: Consistency,
    duration: Duration,
    warmup: Duration,
    pids: Vec<u32>,
    leader_timeout: Duration,
    preload: Preload,
    json: bool,
    /// CA of the servers' certificates: TLS when set.
    cacert: Option<String>,
    /// Client certificate and key (both or neither).
    cert: Option<String>,
    key: Option<String>,
}

impl Args {
    /// Connection options: `base`, with TLS when `--cacert` was given.
    fn connect_options(&self, base: ConnectOptions) -> Result<ConnectOptions, String> {
        let Some(ca) = &self.cacert else {
            return Ok(base);
        };
        let read = |p: &str| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(base.with_tls(tls))
    }
}

const USAGE: &str = "usage: etcd-bench <put|get> [--endpoints URL,..] [--clients C] [--conns K]
    [--key-size B] [--value-size B] [--keyspace N] [--consistency linearizable|serializable]
    [--duration D] [--warmup D] [--pids PID,..] [--leader-timeout D]
    [--preload paced|fast|none] [--cacert FILE [--cert FILE --key FILE]] [--json]
       etcd-bench report RESULTS_DIR   (the table of bench/compare-etcd.sh)
defaults: --endpoints http://127.0.0.1:2379 --clients 1 --conns 4 --key-size 16 --value-size 100
    --keyspace 10000 --consistency linearizable --duration 10s --warmup 1s --leader-timeout 20s
    --preload paced (how `get` writes the keyspace first)
durations: 500ms, 10s, 2m";

fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?} (examples: 500ms, 10s, 2m)");
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => return Err(bad()),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if !(secs.is_finite() && (0.0..=3600.0).contains(&secs)) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut it = argv.iter();
    let workload = match it.next().map(String::as_str) {
        Some("put") => Workload::Put,
        Some("get") => Workload::Get,
        Some(w) => return Err(format!("unknown workload {w:?}")),
        None => return Err("missing workload".into()),
    };
    let mut a = Args {
        workload,
        endpoints: vec!["http://127.0.0.1:2379".into()],
        clients: 1,
        conns: 4,
        key_size: 16,
        value_size: 100,
        keyspace: 10_000,
        consistency: Consistency::Linearizable,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        pids: Vec::new(),
        leader_timeout: Duration::from_secs(20),
        preload: Preload::Paced,
        json: false,
        cacert: None,
        cert: None,
        key: None,
    };
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        let v = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .as_str();
        let num = |v: &str| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("{flag}: not a number: {v:?}"))
        };
        match flag.as_str() {
            "--endpoints" => {
                a.endpoints = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "--cacert" => a.cacert = Some(v.to_string()),
            "--cert" => a.cert = Some(v.to_string()),
            "--key" => a.key = Some(v.to_string()),
            "--clients" => a.clients = num(v)? as usize,
            "--conns" => a.conns = num(v)? as usize,
            "--key-size" => a.key_size = num(v)? as usize,
            "--value-size" => a.value_size = num(v)? as usize,
            "--keyspace" => a.keyspace = num(v)?,
            "--consistency" => {
                a.consistency = match v {
                    "linearizable" => Consistency::Linearizable,
                    "serializable" => Consistency::Serializable,
                    _ => {
                        return Err(format!(
                            "--consistency: {v:?} is not linearizable|serializable"
                        ))
                    }
                }
            }
            "--preload" => {
                a.preload = match v {
                    "fast" => Preload::Fast,
                    "paced" => Preload::Paced,
                    "none" => Preload::None,
                    _ => return Err(format!("--preload: {v:?} is not fast|paced|none")),
                }
            }
            "--duration" => a.duration = parse_duration(v)?,
            "--warmup" => a.warmup = parse_duration(v)?,
            "--leader-timeout" => a.leader_timeout = parse_duration(v)?,
            "--pids" => {
                a.pids = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| num(s).map(|p| p as u32))
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    if a.endpoints.is_empty() {
        return Err("--endpoints is empty".into());
    }
    if a.cert.is_some() != a.key.is_some() || (a.cert.is_some() && a.cacert.is_none()) {
        return Err("--cert and --key go together, and with --cacert".into());
    }
    let scheme = if a.cacert.is_some() { "https" } else { "http" };
    for ep in &mut a.endpoints {
        if !ep.contains("://") {
            *ep = format!("{scheme}://{ep}");
        }
    }
    if a.clients == 0 || a.conns == 0 || a.keyspace == 0 {
        return Err("--clients, --conns and --keyspace must be at least 1".into());
    }
    let digits = a.keyspace.saturating_sub(1).max(1).ilog10() as usize + 1;
    if a.key_size < digits + 1 {
        return Err(format!(
            "--key-size {} cannot hold 'k' + {digits} digits of --keyspace {}",
            a.key_size, a.keyspace
        ));
    }
    if a.duration.is_zero() {
        return Err("--duration must be above 0".into());
    }
    Ok(a)
}

/// The key of index `i`: `k` followed by `i` zero-padded to `size - 1` digits (as shoal-bench).
fn key_of(i: u64, size: usize) -> Vec<u8> {
    format!("k{:0width$}", i, width = size - 1).into_bytes()
}

/// xorshift64*: a cheap per-client key picker; the key choice needs no cryptographic quality.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// (VmRSS, VmHWM) of a process in KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU seconds of a process (all threads), from `/proc/<pid>/stat`.
fn cpu_secs(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux target this runs on.
    Some(ticks as f64 / 100.0)
}

struct Stats {
    ok: u64,
    misses: u64,
    errors: BTreeMap<String, u64>,
    hist: Histogram<u64>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            ok: 0,
            misses: 0,
            errors: BTreeMap::new(),
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        }
    }
    fn merge(&mut self, o: Stats) {
        self.ok += o.ok;
        self.misses += o.misses;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.hist.add(&o.hist).expect("same histogram bounds");
    }
}

fn error_kind(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        etcd_client::Error::TransportError(_) => "transport".into(),
        other => {
            let s = format!("{other:?}");
            s.chars().take(60).collect()
        }
    }
}

/// Connects to every endpoint, asks each for its status, and returns the leader's endpoint once
/// every member has answered and one of them is the leader.
async fn find_leader(a: &Args) -> Result<String, String> {
    let deadline = Instant::now() + a.leader_timeout;
    let opts = a.connect_options(
        ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2)),
    )?;
    let mut last = String::from("no answer yet");
    loop {
        let mut ids = Vec::new();
        let mut leader = 0;
        for ep in &a.endpoints {
            match Client::connect([ep.as_str()], Some(opts.clone())).await {
                Ok(mut c) => match c.status().await {
                    Ok(st) => {
                        let id = st.header().map(|h| h.member_id()).unwrap_or(0);
                        ids.push((id, ep.clone()));
                        if st.leader() != 0 {
                            leader = st.leader();
                        }
                    }
                    Err(e) => last = format!("{ep}: {e}"),
                },
                Err(e) => last = format!("{ep}: {e}"),
            }
        }
        // Every member must answer: a run on a cluster with a member missing measures a
        // different cluster.
        let all = ids.len() == a.endpoints.len();
        if let Some((_, ep)) = ids
            .iter()
            .find(|(id, _)| all && leader != 0 && *id == leader)
        {
            return Ok(ep.clone());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no leader among {:?} within {:?} (last: {last})",
                a.endpoints, a.leader_timeout
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes every key of the keyspace so that reads find them.
async fn preload(kv: &[KvClient], a: &Args) -> Result<(), String> {
    let value = vec![b'v'; a.value_size];
    if a.preload == Preload::Paced {
        let mut kv = kv[0].clone();
        for first in (0..a.keyspace).step_by(32) {
            let ops: Vec<TxnOp> = (first..(first + 32).min(a.keyspace))
                .map(|i| TxnOp::put(key_of(i, a.key_size), value.clone(), None))
                .collect();
            kv.txn(Txn::new().and_then(ops))
                .await
                .map_err(|e| format!("preload: {e}"))?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        return Ok(());
    }
    let batches: Vec<u64> = (0..a.keyspace).step_by(64).collect();
    let mut tasks = Vec::new();
    for w in 0..16usize {
        let mut kv = kv[w % kv.len()].clone();
        let mine: Vec<u64> = batches.iter().copied().skip(w).step_by(16).collect();
        let (keyspace, key_size, value) = (a.keyspace, a.key_size, value.clone());
        tasks.push(tokio::spawn(async move {
            for first in mine {
                let ops: Vec<TxnOp> = (first..(first + 64).min(keyspace))
                    .map(|i| TxnOp::put(key_of(i, key_size), value.clone(), None))
                    .collect();
                kv.txn(Txn::new().and_then(ops))
                    .await
                    .map_err(|e| format!("preload: {e}"))?;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| format!("preload task: {e}"))??;
    }
    Ok(())
}

async fn client_loop(
    mut kv: KvClient,
    a: Arc<Args>,
    seed: u64,
    measure_from: Instant,
    end: Instant,
    stop: Arc<AtomicBool>,
) -> Stats {
    let mut st = Stats::new();
    let mut rng = Rng(seed | 1);
    let value = vec![b'v'; a.value_size];
    let get_opts = match a.consistency {
        Consistency::Linearizable => GetOptions::new(),
        Consistency::Serializable => GetOptions::new().with_serializable(),
    };
    loop {
        let t0 = Instant::now();
        if t0 >= end || stop.load(Ordering::Relaxed) {
            break;
        }
        let key = key_of(rng.next() % a.keyspace, a.key_size);
        let r = match a.workload {
            Workload::Put => kv.put(key, value.clone(), None).await.map(|_| true),
            Workload::Get => kv
                .get(key, Some(get_opts.clone()))
                .await
                .map(|r| !r.kvs().is_empty()),
        };
        let t1 = Instant::now();
        if t0 < measure_from || t1 > end {
            continue;
        }
        match r {
            Ok(found) => {
                st.ok += 1;
                if !found {
                    st.misses += 1;
                }
                let us = (t1 - t0).as_micros().max(1) as u64;
                st.hist.saturating_record(us);
            }
            Err(e) => *st.errors.entry(error_kind(&e)).or_default() += 1,
        }
    }
    st
}

async fn run(a: Args) -> Result<(), String> {
    let a = Arc::new(a);
    let leader = find_leader(&a).await?;
    let conns = a.conns.min(a.clients);
    let opts = a.connect_options(ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)))?;
    let mut kv = Vec::with_capacity(conns);
    for _ in 0..conns {
        // One `Client` per connection: each owns its own HTTP/2 connection to the leader.
        let c = Client::connect([leader.as_str()], Some(opts.clone()))
            .await
            .map_err(|e| format!("connect {leader}: {e}"))?;
        kv.push(c.kv_client());
    }
    if a.workload == Workload::Get && a.preload != Preload::None {
        preload(&kv, &a).await?;
    }

    let idle: Vec<Option<(u64, u64)>> = a.pids.iter().map(|&p| rss_kib(p)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let measure_from = start + a.warmup;
    let end = measure_from + a.duration;

    // Peak RSS sampler, as shoal-bench: every 100 ms until the end of the window.
    let sampler = {
        let pids = a.pids.clone();
        tokio::spawn(async move {
            let mut peak = vec![0u64; pids.len()];
            while Instant::now() < end {
                for (i, &p) in pids.iter().enumerate() {
                    if let Some((rss, _)) = rss_kib(p) {
                        peak[i] = peak[i].max(rss);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        })
    };
    // CPU of this process and of the servers over the measured window.
    let cpu_probe = {
        let pids = a.pids.clone();
        tokio::spawn(async move {
            let read = |pids: &[u32]| {
                let me = cpu_secs("self").unwrap_or(0.0);
                let srv: f64 = pids
                    .iter()
                    .map(|p| cpu_secs(&p.to_string()).unwrap_or(0.0))
                    .sum();
                (me, srv)
            };
            tokio::time::sleep_until(measure_from.into()).await;
            let (me0, srv0) = read(&pids);
            tokio::time::sleep_until(end.into()).await;
            let (me1, srv1) = read(&pids);
            (me1 - me0, srv1 - srv0)
        })
    };

    let mut tasks = Vec::with_capacity(a.clients);
    let base_seed = std::process::id() as u64 ^ (start.elapsed().as_nanos() as u64) << 20;
    for i in 0..a.clients {
        tasks.push(tokio::spawn(client_loop(
            kv[i % conns].clone(),
            a.clone(),
            base_seed.wrapping_add((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            measure_from,
            end,
            stop.clone(),
        )));
    }
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let mut total = Stats::new();
    let grace = end + Duration::from_secs(5);
    for t in tasks {
        match tokio::time::timeout_at(grace.into(), t).await {
            Ok(Ok(s)) => total.merge(s),
            Ok(Err(e)) => return Err(format!("client task: {e}")),
            // An answer still missing 5 s after the window: it could not have been counted.
            Err(_) => *total.errors.entry("unanswered at end".into()).or_default() += 1,
        }
    }
    let peak = sampler.await.map_err(|e| e.to_string())?;
    let (client_cpu, server_cpu) = cpu_probe.await.map_err(|e| e.to_string())?;
    let hwm: Vec<Option<(u64, u64)>> = a.pids.iter().map(|&p| rss_kib(p)).collect();
    report(
        &a,
        conns,
        &leader,
        &total,
        &idle,
        &peak,
        &hwm,
        (client_cpu, server_cpu),
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn report(
    a: &Args,
    conns: usize,
    leader: &str,
    s: &Stats,
    idle: &[Option<(u64, u64)>],
    peak: &[u64],
    hwm: &[Option<(u64, u64)>],
    cpu: (f64, f64),
) {
    let secs = a.duration.as_secs_f64();
    let pct = |q: f64| {
        if s.hist.is_empty() {
            0
        } else {
            s.hist.value_at_quantile(q)
        }
    };
    let op = match a.workload {
        Workload::Put => "put",
        Workload::Get => "get",
    };
    let consistency = match a.consistency {
        Consistency::Linearizable => "linearizable",
        Consistency::Serializable => "serializable",
    };
    if a.json {
        let servers: Vec<serde_json::Value> = a
            .pids
            .iter()
            .enumerate()
            .map(|(i, p)| {
                serde_json::json!({
                    "node": i + 1, "pid": p,
                    "idle_rss_kib": idle[i].map(|x| x.0),
                    "peak_rss_kib": peak[i],
                    "vm_hwm_kib": hwm[i].map(|x| x.1),
                })
            })
            .collect();
        let v = serde_json::json!({
            "system": "etcd",
            "workload": op, "leader": leader, "clients": a.clients, "conns": conns,
            "key_size": a.key_size, "value_size": a.value_size, "keyspace": a.keyspace,
            "consistency": consistency, "seconds": secs, "tls": a.cacert.is_some(),
            "preload": (a.workload == Workload::Get).then(|| format!("{:?}", a.preload).to_lowercase()),
            "total_ops_per_sec": s.ok as f64 / secs,
            "ops": [{
                "op": op, "ok": s.ok, "ops_per_sec": s.ok as f64 / secs,
                "misses": s.misses, "errors": s.errors,
                "latency_us": {
                    "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "p999": pct(0.999),
                    "max": s.hist.max(), "mean": s.hist.mean(),
                },
            }],
            "servers": servers,
            "client_cpu_s": cpu.0, "server_cpu_s": cpu.1,
        });
        println!("{v}");
        return;
    }
    println!(
        "etcd {op} ({consistency})  clients {}  conns {conns}  key {}B  value {}B  keyspace {}  leader {leader}",
        a.clients, a.key_size, a.value_size, a.keyspace
    );
    println!(
        "{:>10.0} ops/s  p50 {} µs  p90 {} µs  p99 {} µs  p99.9 {} µs  max {} µs  misses {}  errors {:?}",
        s.ok as f64 / secs,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        s.hist.max(),
        s.misses,
        s.errors
    );
    for (i, p) in a.pids.iter().enumerate() {
        let f = |x: Option<u64>| {
            x.map_or("n/a".to_string(), |k| {
                format!("{:.1} MiB", k as f64 / 1024.0)
            })
        };
        println!(
            "server {} (pid {p}): RSS idle {}  peak {}  VmHWM {}",
            i + 1,
            f(idle[i].map(|x| x.0)),
            f(Some(peak[i])),
            f(hwm[i].map(|x| x.1))
        );
    }
    println!(
        "CPU in the window: this client {:.2} s, servers {:.2} s ({secs:.1} s window)",
        cpu.0, cpu.1
    );
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if argv.first().map(String::as_str) == Some("report") {
        return match argv.get(1) {
            Some(dir) => match compare::print_table(std::path::Path::new(dir)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("etcd-bench report: {e}");
                    ExitCode::from(1)
                }
            },
            None => {
                eprintln!("usage: etcd-bench report RESULTS_DIR");
                ExitCode::from(2)
            }
        };
    }
    let a = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("etcd-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("etcd-bench: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_shoal_bench() {
        assert_eq!(key_of(42, 16), b"k000000000000042".to_vec());
        assert_eq!(key_of(9999, 16).len(), 16);
    }

    #[test]
    fn durations_and_flags() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("10").is_err());
        let argv: Vec<String> =
            "get --consistency serializable --clients 256 --endpoints 127.0.0.1:1,127.0.0.1:2"
                .split(' ')
                .map(String::from)
                .collect();
        let a = parse_args(&argv).unwrap();
        assert_eq!(a.workload, Workload::Get);
        assert_eq!(a.consistency, Consistency::Serializable);
        assert_eq!(a.clients, 256);
        assert_eq!(
            a.endpoints,
            vec!["http://127.0.0.1:1", "http://127.0.0.1:2"]
        );
        assert!(parse_args(&["put".into(), "--key-size".into(), "3".into()]).is_err());
        let tls: Vec<String> = "put --cacert ca.pem --endpoints 127.0.0.1:1"
            .split(' ')
            .map(String::from)
            .collect();
        assert_eq!(parse_args(&tls).unwrap().endpoints, vec!["https://127.0.0.1:1"]);
        let half: Vec<String> = "put --cacert ca.pem --cert c.pem"
            .split(' ')
            .map(String::from)
            .collect();
        assert!(parse_args(&half).is_err());
    }
}
