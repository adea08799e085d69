//! `shoal-bench`: a load generator for `shoald`, in the spirit of etcd's `benchmark` tool.
//!
//! It speaks the client protocol ([`shoal_client::protocol`]) directly over plain blocking TCP:
//! one thread per connection, each connection carrying `clients / conns` logical clients with
//! `--pipeline` requests in flight each (closed loop: a slot sends its next request when its
//! answer arrives). Workloads: `put`, `get`, `mixed`, and `watch` (fan-out: many watches of
//! one directory, writers stamping their send time into the values, delivery latency measured
//! per event). Latencies go into `hdrhistogram`s. With `--local N` it starts N `shoald`
//! processes on 127.0.0.1 (temporary data dirs), waits for a leader, runs, and always kills them
//! (also on error, Ctrl-C or SIGTERM; on Linux the children also get SIGKILL if the bench dies).
//! See docs/BENCHMARKS.md.

#[cfg(unix)]
fn main() {
    std::process::exit(bench::main());
}

#[cfg(not(unix))]
fn main() {
    eprintln!("shoal-bench runs on Unix-like systems only");
    std::process::exit(2);
}

#[cfg(unix)]
mod bench {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, Instant};

    use clap::{Parser, ValueEnum};
    use hdrhistogram::Histogram;
    use shoal_kv::WriteResult;
    use shoal_client::protocol::{
        self, ReadMode, Request, RequestFrame, Response, ResponseFrame, WriteOp, PROTOCOL_VERSION,
    };

    /// What the benchmark sends.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
    pub enum Workload {
        /// Writes (`Put`) of random keys in the keyspace.
        Put,
        /// Reads (`Get`) of random keys of a prefilled keyspace.
        Get,
        /// Reads with probability `--read-ratio`, else writes (keyspace prefilled).
        Mixed,
        /// `--watchers` watches on directory `w` spread over all endpoints, while `--clients`
        /// writers put keys `w.<key>` on the leader; measures event delivery latency.
        Watch,
        /// `put` at every `--sweep-clients` × `--sweep-values` point, each on a fresh `--local`
        /// cluster; prints one table (the keyspace shrinks so the live data stays within
        /// `--sweep-data-mb`).
        Sweep,
        /// For each `--recovery-entries` N: write N entries into a fresh `--local` cluster that
        /// never snapshots, kill it, restart it on the same data dirs, and time the restart
        /// until every node answers and until every node's `/health` is OK.
        Recovery,
    }

    /// Read consistency of `get` and `mixed`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
    pub enum Consistency {
        /// ReadIndex through the leader.
        Linearizable,
        /// Leader lease.
        Lease,
        /// The node's applied state (possibly stale).
        Local,
    }

    /// `--fsync` of the local `shoald` processes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
    pub enum Fsync {
        /// fdatasync before acknowledging (group commit).
        Always,
        /// Background fdatasync within 10 ms.
        Async,
        /// Never (tests only).
        Never,
    }

    /// Command-line flags.
    #[derive(Parser, Debug, Clone)]
    #[command(
        name = "shoal-bench",
        about = "Load generator for shoald: put, get and mixed workloads over pipelined connections"
    )]
    pub struct Args {
        /// Workload.
        #[arg(value_enum)]
        pub workload: Workload,
        /// Client addresses (host:port, comma-separated). Ignored with --local.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:7002")]
        pub endpoints: Vec<String>,
        /// Start N shoald processes on 127.0.0.1 with temporary data dirs, run, stop them.
        #[arg(long, value_name = "N")]
        pub local: Option<u32>,
        /// `--fsync` of the --local processes.
        #[arg(long, value_enum, default_value = "always")]
        pub fsync: Fsync,
        /// Total concurrent logical clients (each its own write session).
        #[arg(long, default_value_t = 1)]
        pub clients: u32,
        /// TCP connections the clients are spread over (capped at --clients).
        #[arg(long, default_value_t = 4)]
        pub conns: u32,
        /// Requests in flight per client.
        #[arg(long, default_value_t = 1)]
        pub pipeline: u32,
        /// Key size in bytes.
        #[arg(long, default_value_t = 16)]
        pub key_size: usize,
        /// Value size in bytes.
        #[arg(long, default_value_t = 100)]
        pub value_size: usize,
        /// Number of distinct keys.
        #[arg(long, default_value_t = 10_000)]
        pub keyspace: u64,
        /// Read consistency of get and mixed.
        #[arg(long, value_enum, default_value = "linearizable")]
        pub consistency: Consistency,
        /// Watches opened by the `watch` workload (spread over --conns connections per node).
        #[arg(long, default_value_t = 100)]
        pub watchers: u32,
        /// Fraction of reads in `mixed` (0.0..=1.0).
        #[arg(long, default_value_t = 0.5)]
        pub read_ratio: f64,
        /// Measured duration (e.g. 10s).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        pub duration: Duration,
        /// Load before measuring starts (not recorded).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
        pub warmup: Duration,
        /// Print one JSON object instead of text.
        #[arg(long)]
        pub json: bool,
        /// One more argument for every --local shoald; repeat for several
        /// (`--shoald-arg=--kv-event-mb=4 --shoald-arg=--snapshot-entries=0`).
        #[arg(long = "shoald-arg", value_name = "ARG", allow_hyphen_values = true)]
        pub shoald_args: Vec<String>,
        /// `sweep`: client counts.
        #[arg(long, value_delimiter = ',', default_value = "1,16,256,1024")]
        pub sweep_clients: Vec<u32>,
        /// `sweep`: value sizes in bytes.
        #[arg(long, value_delimiter = ',', default_value = "16,256,4096,65536")]
        pub sweep_values: Vec<usize>,
        /// `sweep`: most MiB of live keys and values per point (keyspace = min(--keyspace,
        /// this / (key + value size))).
        #[arg(long, default_value_t = 32)]
        pub sweep_data_mb: usize,
        /// `recovery`: log lengths to measure, in entries.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        pub recovery_entries: Vec<u64>,
    }

    impl Args {
        fn check(&self) -> Result<(), String> {
            if self.clients == 0 || self.conns == 0 || self.pipeline == 0 {
                return Err("--clients, --conns and --pipeline must be at least 1".into());
            }
            if self.keyspace == 0 {
                return Err("--keyspace must be at least 1".into());
            }
            let digits = (self.keyspace - 1).to_string().len();
            if self.key_size < digits + 1 {
                return Err(format!(
                    "--key-size {} is too small for --keyspace {} (needs {})",
                    self.key_size,
                    self.keyspace,
                    digits + 1
                ));
            }
            if self.workload == Workload::Watch && (self.value_size < 8 || self.watchers == 0) {
                return Err(
                    "watch needs --value-size >= 8 (a timestamp) and --watchers >= 1".into(),
                );
            }
            if !(0.0..=1.0).contains(&self.read_ratio) {
                return Err("--read-ratio must be within 0.0..=1.0".into());
            }
            if self.duration.is_zero() || self.duration > Duration::from_secs(3600) {
                return Err("--duration must be within (0, 1h]".into());
            }
            if matches!(self.local, Some(0) | Some(8..)) {
                return Err("--local takes 1..=7 nodes".into());
            }
            if matches!(self.workload, Workload::Sweep | Workload::Recovery) && self.local.is_none()
            {
                return Err("sweep and recovery start their own clusters: give --local N".into());
            }
            if self.workload == Workload::Sweep
                && (self.sweep_clients.contains(&0)
                    || self.sweep_clients.is_empty()
                    || self.sweep_values.is_empty()
                    || self.sweep_data_mb == 0)
            {
                return Err(
                    "--sweep-clients, --sweep-values and --sweep-data-mb must be non-zero".into(),
                );
            }
            if self.workload == Workload::Recovery
                && (self.recovery_entries.is_empty() || self.recovery_entries.contains(&0))
            {
                return Err("--recovery-entries must list log lengths of at least 1".into());
            }
            Ok(())
        }
    }

    /// The key of index `i`: `k` followed by `i` zero-padded to `size - 1` digits.
    pub fn key_of(i: u64, size: usize) -> Vec<u8> {
        format!("k{:0width$}", i, width = size - 1).into_bytes()
    }

    /// A latency in microseconds as text (`123us`, `1.23ms`, `1.234s`).
    pub fn fmt_us(us: u64) -> String {
        if us < 1_000 {
            format!("{us}us")
        } else if us < 1_000_000 {
            format!("{:.2}ms", us as f64 / 1e3)
        } else {
            format!("{:.3}s", us as f64 / 1e6)
        }
    }

    // ---------------------------------------------------------------- local cluster

    /// `shoald` processes started for the run; killed (SIGKILL) and their dirs removed on drop.
    struct LocalCluster {
        procs: Vec<Child>,
        client_addrs: Vec<String>,
        admin_addrs: Vec<String>,
        raft_addrs: Vec<String>,
        members: String,
        root: PathBuf,
        shoald: PathBuf,
        /// `--fsync` of the next (re)start.
        fsync: Fsync,
        extra: Vec<String>,
    }

    impl LocalCluster {
        fn pids(&self) -> Vec<u32> {
            self.procs.iter().map(|c| c.id()).collect()
        }

        fn log_tail(&self) -> String {
            let mut s = String::new();
            for i in 0..self.procs.len() {
                let p = self.root.join(format!("n{}.log", i + 1));
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                for l in &lines[lines.len().saturating_sub(10)..] {
                    s.push_str(&format!("  n{}: {l}\n", i + 1));
                }
            }
            s
        }

        /// Start `n` nodes with `--fsync fsync` and `extra` arguments.
        fn start(n: u32, fsync: Fsync, extra: &[String]) -> Result<LocalCluster, String> {
            let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
            let shoald = exe.with_file_name("shoald");
            if !shoald.is_file() {
                return Err(format!(
                    "shoald not found next to shoal-bench (looked for {}); build it with \
                     `cargo build --release --bin shoald`",
                    shoald.display()
                ));
            }
            let root = std::env::temp_dir().join(format!(
                "shoal-bench-{}-{}",
                std::process::id(),
                fastrand::u32(..)
            ));
            std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
            // Reserve 3 free ports per node (raft, client, admin); released just before spawn.
            let listeners: Vec<TcpListener> = (0..n * 3)
                .map(|_| TcpListener::bind("127.0.0.1:0"))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("reserving ports: {e}"))?;
            let ports: Vec<u16> = listeners
                .iter()
                .map(|l| l.local_addr().map(|a| a.port()))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("reserving ports: {e}"))?;
            drop(listeners);
            let addr = |i: u32, k: u32| format!("127.0.0.1:{}", ports[(i * 3 + k) as usize]);
            let members = (0..n)
                .map(|i| format!("{}={}/{}", i + 1, addr(i, 0), addr(i, 1)))
                .collect::<Vec<_>>()
                .join(",");
            let mut cluster = LocalCluster {
                procs: Vec::new(),
                client_addrs: (0..n).map(|i| addr(i, 1)).collect(),
                admin_addrs: (0..n).map(|i| addr(i, 2)).collect(),
                raft_addrs: (0..n).map(|i| addr(i, 0)).collect(),
                members,
                root,
                shoald,
                fsync,
                extra: extra.to_vec(),
            };
            cluster.spawn_all()?;
            Ok(cluster)
        }

        /// Start every node (again, on its data dir), appending to its log file.
        fn spawn_all(&mut self) -> Result<(), String> {
            let fsync = match self.fsync {
                Fsync::Always => "always",
                Fsync::Async => "async",
                Fsync::Never => "never",
            };
            for i in self.procs.len()..self.client_addrs.len() {
                let log = self.root.join(format!("n{}.log", i + 1));
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .map_err(|e| format!("log file: {e}"))?;
                let mut cmd = Command::new(&self.shoald);
                cmd.arg("--node-id")
                    .arg((i + 1).to_string())
                    .arg("--data-dir")
                    .arg(self.root.join(format!("n{}", i + 1)))
                    .args(["--raft-addr", &self.raft_addrs[i]])
                    .args(["--client-addr", &self.client_addrs[i]])
                    .args(["--admin-addr", &self.admin_addrs[i]])
                    .args(["--initial-members", &self.members])
                    .args(["--fsync", fsync])
                    .args(&self.extra)
                    .env("RUST_LOG", "warn")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log);
                #[cfg(target_os = "linux")]
                {
                    use std::os::unix::process::CommandExt;
                    // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL
                    // this child when the bench dies, so no shoald outlives a killed bench.
                    unsafe {
                        cmd.pre_exec(|| {
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                            Ok(())
                        });
                    }
                }
                let child = cmd
                    .spawn()
                    .map_err(|e| format!("spawning {}: {e}", self.shoald.display()))?;
                self.procs.push(child);
            }
            Ok(())
        }

        /// SIGKILL every node, keeping the data dirs.
        fn kill_all(&mut self) {
            for mut c in self.procs.drain(..) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    impl Drop for LocalCluster {
        fn drop(&mut self) {
            self.kill_all();
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    /// `VmRSS` and `VmHWM` of a process in KiB (None if it is gone).
    fn rss_kib(pid: u32) -> Option<(u64, u64)> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    // ---------------------------------------------------------------- protocol helpers

    fn resolve(addr: &str) -> Result<SocketAddr, String> {
        addr.to_socket_addrs()
            .map_err(|e| format!("{addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("{addr}: no address"))
    }

    /// One blocking request/answer on a fresh connection.
    fn call_once(addr: &str, request: Request) -> Result<Response, String> {
        let mut s = TcpStream::connect_timeout(&resolve(addr)?, Duration::from_secs(1))
            .map_err(|e| format!("{addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        protocol::encode(
            &RequestFrame {
                version: PROTOCOL_VERSION,
                id: 1,
                group: 0,
                request,
            },
            &mut out,
        )
        .map_err(|e| e.to_string())?;
        s.write_all(&out).map_err(|e| format!("{addr}: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some((f, _)) =
                protocol::decode::<ResponseFrame>(&buf).map_err(|e| e.to_string())?
            {
                return Ok(f.response);
            }
            let n = s.read(&mut chunk).map_err(|e| format!("{addr}: {e}"))?;
            if n == 0 {
                return Err(format!("{addr}: connection closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The endpoint that reports itself leader of group 0, waiting up to `timeout`.
    fn find_leader(
        endpoints: &[String],
        timeout: Duration,
        stop: &AtomicBool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        loop {
            for e in endpoints {
                match call_once(e, Request::Status) {
                    Ok(Response::Status(s)) if s.role == "leader" => return Ok(e.clone()),
                    Ok(Response::Status(s)) => {
                        last = format!("{e}: {} (leader {})", s.role, s.leader)
                    }
                    Ok(r) => last = format!("{e}: {r:?}"),
                    Err(err) => last = err,
                }
            }
            if stop.load(Ordering::Relaxed) {
                return Err("interrupted".into());
            }
            if Instant::now() >= deadline {
                return Err(format!("no leader within {timeout:?}; last: {last}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Write every key of the keyspace once (batches of 64, pipelined), so reads find them.
    fn prefill(addr: &str, a: &Args) -> Result<(), String> {
        let value = vec![b'v'; a.value_size];
        let batches: Vec<Vec<(Vec<u8>, Vec<u8>)>> = (0..a.keyspace)
            .collect::<Vec<_>>()
            .chunks(64)
            .map(|c| {
                c.iter()
                    .map(|&i| (key_of(i, a.key_size), value.clone()))
                    .collect()
            })
            .collect();
        pipelined_writes(addr, "prefill", batches.len() as u64, 32, 10, |i| {
            WriteOp::BatchPut {
                pairs: batches[i as usize].clone(),
            }
        })?;
        Ok(())
    }

    /// Send `count` session-less writes `make(0..count)` through one connection with `window`
    /// in flight, and wait for every answer; a refused write is an error naming `what`.
    /// Returns the raft index of the last write.
    fn pipelined_writes(
        addr: &str,
        what: &str,
        count: u64,
        window: u64,
        timeout_s: u64,
        make: impl Fn(u64) -> WriteOp,
    ) -> Result<u64, String> {
        let mut s = TcpStream::connect_timeout(&resolve(addr)?, Duration::from_secs(1))
            .map_err(|e| format!("{addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(timeout_s)))
            .map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        let (mut sent, mut done, mut last) = (0u64, 0u64, 0u64);
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        let mut out = Vec::new();
        while done < count {
            out.clear();
            while sent < count && sent - done < window {
                let f = RequestFrame {
                    version: PROTOCOL_VERSION,
                    id: sent,
                    group: 0,
                    request: Request::Write {
                        client_id: 0,
                        seq: 0,
                        op: make(sent),
                    },
                };
                protocol::encode(&f, &mut out).map_err(|e| e.to_string())?;
                sent += 1;
            }
            s.write_all(&out).map_err(|e| format!("{what}: {e}"))?;
            let n = s.read(&mut chunk).map_err(|e| format!("{what}: {e}"))?;
            if n == 0 {
                return Err(format!("{what}: connection closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut off = 0;
            while let Some((f, used)) =
                protocol::decode::<ResponseFrame>(&buf[off..]).map_err(|e| e.to_string())?
            {
                off += used;
                match f.response {
                    Response::Written {
                        result: WriteResult::Failed(e),
                        ..
                    } => return Err(format!("{what} write refused: {e:?}")),
                    Response::Written { index, .. } => {
                        done += 1;
                        last = last.max(index);
                    }
                    r => return Err(format!("{what} write refused: {r:?}")),
                }
            }
            buf.drain(..off);
        }
        Ok(last)
    }

    // ---------------------------------------------------------------- workers

    /// Per-operation-kind results of one connection (or merged).
    struct OpStats {
        hist: Histogram<u64>,
        ok: u64,
        misses: u64,
        errors: BTreeMap<String, u64>,
    }

    impl OpStats {
        fn new() -> OpStats {
            OpStats {
                hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
                ok: 0,
                misses: 0,
                errors: BTreeMap::new(),
            }
        }
        fn merge(&mut self, o: &OpStats) {
            self.hist.add(&o.hist).expect("same bounds");
            self.ok += o.ok;
            self.misses += o.misses;
            for (k, v) in &o.errors {
                *self.errors.entry(k.clone()).or_default() += v;
            }
        }
    }

    struct Shared {
        addr: SocketAddr,
        start_measure: Instant,
        end: Instant,
        stop: Arc<AtomicBool>,
        workload: Workload,
        read_mode: ReadMode,
        read_ratio: f64,
        key_size: usize,
        keyspace: u64,
        value: Vec<u8>,
        /// Prepended to every key (`w.` for the watch workload).
        key_prefix: Vec<u8>,
        /// Writes carry `micros since epoch` in their first 8 value bytes (watch workload).
        stamp: bool,
        epoch: Instant,
    }

    struct Slot {
        client: usize,
        sent: Instant,
        read: bool,
    }

    /// One connection: `clients` sessions × `pipeline` slots, closed loop until `end`.
    fn run_conn(sh: &Shared, clients: usize, pipeline: usize) -> Result<[OpStats; 2], String> {
        let mut s = TcpStream::connect_timeout(&sh.addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {}: {e}", sh.addr))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut rng = fastrand::Rng::new();
        let ids: Vec<u64> = (0..clients).map(|_| rng.u64(1..)).collect();
        let mut seqs = vec![0u64; clients];
        let now = Instant::now();
        let mut slots: Vec<Slot> = (0..clients * pipeline)
            .map(|i| Slot {
                client: i / pipeline,
                sent: now,
                read: false,
            })
            .collect();
        let mut stats = [OpStats::new(), OpStats::new()]; // [writes, reads]
        let mut out = Vec::with_capacity(64 * 1024);
        let mut issue = |i: usize, slots: &mut Vec<Slot>, out: &mut Vec<u8>, now: Instant| {
            let read = match sh.workload {
                Workload::Put | Workload::Watch | Workload::Sweep | Workload::Recovery => false,
                Workload::Get => true,
                Workload::Mixed => rng.f64() < sh.read_ratio,
            };
            let mut key = sh.key_prefix.clone();
            key.extend_from_slice(&key_of(rng.u64(0..sh.keyspace), sh.key_size));
            let slot = &mut slots[i];
            let request = if read {
                Request::Get {
                    key,
                    mode: sh.read_mode,
                }
            } else {
                seqs[slot.client] += 1;
                Request::Write {
                    client_id: ids[slot.client],
                    seq: seqs[slot.client],
                    op: WriteOp::Put {
                        key,
                        value: {
                            let mut v = sh.value.clone();
                            if sh.stamp {
                                let us = now.duration_since(sh.epoch).as_micros() as u64;
                                v[..8].copy_from_slice(&us.to_le_bytes());
                            }
                            v
                        },
                    },
                }
            };
            slot.sent = now;
            slot.read = read;
            let f = RequestFrame {
                version: PROTOCOL_VERSION,
                id: i as u64,
                group: 0,
                request,
            };
            protocol::encode(&f, out).expect("request encodes");
        };
        for i in 0..slots.len() {
            issue(i, &mut slots, &mut out, now);
        }
        let mut in_flight = slots.len();
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 17);
        let mut chunk = vec![0u8; 1 << 16];
        while in_flight > 0 {
            if !out.is_empty() {
                s.write_all(&out).map_err(|e| format!("write: {e}"))?;
                out.clear();
            }
            let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("server closed the connection".into());
            }
            let now = Instant::now();
            let more = now < sh.end && !sh.stop.load(Ordering::Relaxed);
            buf.extend_from_slice(&chunk[..n]);
            let mut off = 0;
            while let Some((f, used)) =
                protocol::decode::<ResponseFrame>(&buf[off..]).map_err(|e| e.to_string())?
            {
                off += used;
                let i = f.id as usize;
                let Some(slot) = slots.get(i) else {
                    return Err(format!("answer to unknown request id {}", f.id));
                };
                let counted = slot.sent >= sh.start_measure && now <= sh.end;
                if counted {
                    let st = &mut stats[slot.read as usize];
                    let outcome = match f.response {
                        Response::Written {
                            result: WriteResult::Failed(e),
                            ..
                        } => Err(format!("kv: {e:?}")),
                        Response::Written { .. } => Ok(false),
                        Response::Node { node: Some(_), .. } => Ok(false),
                        Response::Node { node: None, .. } => Ok(true),
                        Response::NotLeader { .. } => Err("not_leader".to_string()),
                        Response::Unavailable { message } => Err(format!("unavailable: {message}")),
                        Response::Error { code, message, .. } => {
                            Err(format!("{code:?}: {message}"))
                        }
                        other => Err(format!("unexpected: {other:?}")),
                    };
                    match outcome {
                        Ok(miss) => {
                            let us = now.duration_since(slot.sent).as_micros() as u64;
                            st.hist.saturating_record(us.max(1));
                            st.ok += 1;
                            st.misses += miss as u64;
                        }
                        Err(e) => *st.errors.entry(e).or_default() += 1,
                    }
                }
                if more {
                    issue(i, &mut slots, &mut out, now);
                } else {
                    in_flight -= 1;
                }
            }
            buf.drain(..off);
        }
        Ok(stats)
    }

    /// The measurement window `(start, end)`, set once every watch has started.
    type Window = Arc<OnceLock<(Instant, Instant)>>;

    /// One connection carrying `n` watches of directory `w`: counts `WatchStarted` into
    /// `started`, then records the delivery latency of every event whose write was stamped
    /// inside the window, until 2 s after the window ends.
    fn run_watcher(
        addr: SocketAddr,
        n: usize,
        epoch: Instant,
        window: Window,
        started: Arc<AtomicUsize>,
        stop: Arc<AtomicBool>,
    ) -> Result<OpStats, String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for id in 0..n {
            let f = RequestFrame {
                version: PROTOCOL_VERSION,
                id: id as u64,
                group: 0,
                request: Request::Watch {
                    keys: vec![b"w".to_vec()],
                    from_index: 0,
                },
            };
            protocol::encode(&f, &mut out).map_err(|e| e.to_string())?;
        }
        s.write_all(&out).map_err(|e| format!("watch: {e}"))?;
        let opened = Instant::now();
        let mut st = OpStats::new();
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 17);
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let now = Instant::now();
            match window.get() {
                Some(&(_, end)) if now > end + Duration::from_secs(2) => break,
                None if now > opened + Duration::from_secs(30) => {
                    return Err("the measurement never started".into())
                }
                _ => {}
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let n = match s.read(&mut chunk) {
                Ok(0) => return Err("server closed a watch connection".into()),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(format!("watch read: {e}")),
            };
            let now = Instant::now();
            buf.extend_from_slice(&chunk[..n]);
            let mut off = 0;
            while let Some((f, used)) =
                protocol::decode::<ResponseFrame>(&buf[off..]).map_err(|e| e.to_string())?
            {
                off += used;
                match f.response {
                    Response::WatchStarted => {
                        started.fetch_add(1, Ordering::Relaxed);
                    }
                    Response::Event(ev) if ev.value.len() >= 8 => {
                        let mut ts = [0u8; 8];
                        ts.copy_from_slice(&ev.value[..8]);
                        let sent = epoch + Duration::from_micros(u64::from_le_bytes(ts));
                        if let Some(&(start, end)) = window.get() {
                            if sent >= start && sent <= end {
                                let us = now.saturating_duration_since(sent).as_micros() as u64;
                                st.hist.saturating_record(us.max(1));
                                st.ok += 1;
                            }
                        }
                    }
                    Response::Event(_) => {}
                    Response::WatchCompacted { oldest } => {
                        *st.errors
                            .entry(format!("watch compacted (oldest {oldest})"))
                            .or_default() += 1
                    }
                    other => *st.errors.entry(format!("{other:?}")).or_default() += 1,
                }
            }
            buf.drain(..off);
        }
        Ok(st)
    }

    // ---------------------------------------------------------------- main

    /// Run the benchmark; returns the exit code.
    pub fn main() -> i32 {
        let args = Args::parse();
        if let Err(e) = args.check() {
            eprintln!("shoal-bench: {e}");
            return 2;
        }
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
                eprintln!("shoal-bench: signal handler: {e}");
                return 2;
            }
        }
        let result = match args.workload {
            Workload::Sweep => sweep(&args, &stop),
            Workload::Recovery => recovery(&args, &stop),
            _ => single(&args, &stop),
        };
        match result {
            Ok(()) if stop.load(Ordering::Relaxed) => {
                eprintln!("shoal-bench: interrupted (partial results above)");
                130
            }
            Ok(()) => 0,
            Err(e) => {
                eprintln!("shoal-bench: {e}");
                1
            }
        }
    }

    /// One run of `a.workload`, on a `--local` cluster of its own or on `--endpoints`.
    fn single(a: &Args, stop: &Arc<AtomicBool>) -> Result<(), String> {
        let cluster = match a.local {
            Some(n) => Some(LocalCluster::start(n, a.fsync, &a.shoald_args)?),
            None => None,
        };
        let result = run(a, cluster.as_ref(), stop);
        if let (Err(_), Some(c)) = (&result, &cluster) {
            eprintln!("shoald logs (last lines):\n{}", c.log_tail());
        }
        drop(cluster); // kills the local shoald processes
        report(a, &result?);
        Ok(())
    }

    /// What one run measured.
    struct Outcome {
        conns: usize,
        leader: String,
        /// Measured seconds.
        secs: f64,
        /// Writes, reads, watch events.
        total: [OpStats; 3],
        pids: Vec<u32>,
        idle: Vec<Option<(u64, u64)>>,
        peak: Vec<u64>,
        hwm: Vec<Option<(u64, u64)>>,
        failures: Vec<String>,
    }

    fn run(
        a: &Args,
        cluster: Option<&LocalCluster>,
        stop: &Arc<AtomicBool>,
    ) -> Result<Outcome, String> {
        let endpoints = match cluster {
            Some(c) => c.client_addrs.clone(),
            None => a.endpoints.clone(),
        };
        let leader = find_leader(&endpoints, Duration::from_secs(20), stop)?;
        let pids = cluster.map(|c| c.pids()).unwrap_or_default();
        // Let the followers settle, then take the idle RSS.
        std::thread::sleep(Duration::from_millis(300));
        let idle: Vec<Option<(u64, u64)>> = pids.iter().map(|&p| rss_kib(p)).collect();
        if matches!(a.workload, Workload::Get | Workload::Mixed) {
            prefill(&leader, a)?;
        }
        let conns = a.conns.min(a.clients) as usize;
        let clients = a.clients as usize;
        let epoch = Instant::now();
        let window: Window = Arc::new(OnceLock::new());
        let mut watch_handles = Vec::new();
        if a.workload == Workload::Watch {
            let mkdir = Request::Write {
                client_id: 0,
                seq: 0,
                op: WriteOp::Mkdir { key: b"w".to_vec() },
            };
            match call_once(&leader, mkdir)? {
                Response::Written { .. } => {}
                r => return Err(format!("mkdir w: {r:?}")),
            }
            let started = Arc::new(AtomicUsize::new(0));
            let per_node = a.conns.min(a.watchers) as usize;
            let targets: Vec<SocketAddr> = endpoints
                .iter()
                .map(|e| resolve(e))
                .collect::<Result<_, _>>()?;
            let lanes = targets.len() * per_node;
            let w = a.watchers as usize;
            for lane in 0..lanes {
                let n = w / lanes + usize::from(lane < w % lanes);
                if n == 0 {
                    continue;
                }
                let (addr, window, started, stop) = (
                    targets[lane % targets.len()],
                    window.clone(),
                    started.clone(),
                    stop.clone(),
                );
                watch_handles.push(std::thread::spawn(move || {
                    run_watcher(addr, n, epoch, window, started, stop)
                }));
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while started.load(Ordering::Relaxed) < w {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    let _ = window.set((epoch, epoch)); // let the watchers finish
                    return Err(format!(
                        "only {} of {w} watches started",
                        started.load(Ordering::Relaxed)
                    ));
                }
                if watch_handles.iter().any(|h| h.is_finished()) {
                    let _ = window.set((epoch, epoch));
                    return Err("a watch connection failed before the run".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let start = Instant::now();
        let sh = Arc::new(Shared {
            addr: resolve(&leader)?,
            start_measure: start + a.warmup,
            end: start + a.warmup + a.duration,
            stop: stop.clone(),
            workload: a.workload,
            read_mode: match a.consistency {
                Consistency::Linearizable => ReadMode::Linearizable,
                Consistency::Lease => ReadMode::Lease,
                Consistency::Local => ReadMode::Local,
            },
            read_ratio: a.read_ratio,
            key_size: a.key_size,
            keyspace: a.keyspace,
            value: vec![b'v'; a.value_size],
            key_prefix: if a.workload == Workload::Watch {
                b"w.".to_vec()
            } else {
                Vec::new()
            },
            stamp: a.workload == Workload::Watch,
            epoch,
        });
        let _ = window.set((sh.start_measure, sh.end));
        let pipeline = a.pipeline as usize;
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                let n = clients / conns + usize::from(c < clients % conns);
                let sh = sh.clone();
                std::thread::spawn(move || run_conn(&sh, n, pipeline))
            })
            .collect();
        // Sample server RSS while the load runs.
        let mut peak = vec![0u64; pids.len()];
        while handles.iter().any(|h| !h.is_finished())
            || watch_handles.iter().any(|h| !h.is_finished())
        {
            for (i, &p) in pids.iter().enumerate() {
                if let Some((rss, _)) = rss_kib(p) {
                    peak[i] = peak[i].max(rss);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let hwm: Vec<Option<(u64, u64)>> = pids.iter().map(|&p| rss_kib(p)).collect();
        let mut total = [OpStats::new(), OpStats::new(), OpStats::new()];
        let mut failures = Vec::new();
        for h in handles {
            match h.join() {
                Ok(Ok(st)) => {
                    total[0].merge(&st[0]);
                    total[1].merge(&st[1]);
                }
                Ok(Err(e)) => failures.push(e),
                Err(_) => failures.push("worker panicked".into()),
            }
        }
        for h in watch_handles {
            match h.join() {
                Ok(Ok(st)) => total[2].merge(&st),
                Ok(Err(e)) => failures.push(e),
                Err(_) => failures.push("watcher panicked".into()),
            }
        }
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
            failures,
        })
    }

    fn pct(h: &Histogram<u64>, q: f64) -> u64 {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(q)
        }
    }

    fn report(a: &Args, o: &Outcome) {
        let Outcome {
            conns,
            leader,
            secs,
            total,
            pids,
            idle,
            peak,
            hwm,
            failures,
        } = o;
        let (conns, secs) = (*conns, *secs);
        let kinds: Vec<(&str, &OpStats)> =
            [("put", &total[0]), ("get", &total[1]), ("event", &total[2])]
                .into_iter()
                .filter(|(_, s)| s.ok > 0 || !s.errors.is_empty())
                .collect();
        let mib = |k: u64| k as f64 / 1024.0;
        if a.json {
            let ops: Vec<serde_json::Value> = kinds
                .iter()
                .map(|(k, s)| {
                    serde_json::json!({
                        "op": k,
                        "ok": s.ok,
                        "ops_per_sec": s.ok as f64 / secs,
                        "misses": s.misses,
                        "errors": s.errors,
                        "latency_us": {
                            "p50": pct(&s.hist, 0.5), "p90": pct(&s.hist, 0.9),
                            "p99": pct(&s.hist, 0.99), "p999": pct(&s.hist, 0.999),
                            "max": s.hist.max(), "mean": s.hist.mean(),
                        },
                    })
                })
                .collect();
            let servers: Vec<serde_json::Value> = pids
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
                "workload": format!("{:?}", a.workload).to_lowercase(),
                "local": a.local, "fsync": a.local.map(|_| format!("{:?}", a.fsync).to_lowercase()),
                "leader": leader, "clients": a.clients, "conns": conns, "pipeline": a.pipeline,
                "key_size": a.key_size, "value_size": a.value_size, "keyspace": a.keyspace,
                "consistency": format!("{:?}", a.consistency).to_lowercase(),
                "read_ratio": a.read_ratio, "seconds": secs,
                "watchers": (a.workload == Workload::Watch).then_some(a.watchers),
                "total_ops_per_sec": (total[0].ok + total[1].ok) as f64 / secs,
                "ops": ops,
                "servers": if pids.is_empty() { serde_json::Value::String("n/a".into()) } else { servers.into() },
                "connection_failures": failures,
            });
            println!("{v}");
            return;
        }
        println!(
            "workload {:?}  clients {}  conns {}  pipeline {}  key {}B  value {}B  keyspace {}  leader {}{}",
            a.workload,
            a.clients,
            conns,
            a.pipeline,
            a.key_size,
            a.value_size,
            a.keyspace,
            leader,
            match a.local {
                Some(n) => format!("  local {n} node(s), fsync {:?}", a.fsync),
                None => String::new(),
            }
        );
        println!("measured {secs:.2}s after {:?} warmup", a.warmup);
        println!(
            "{:<5} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "op", "ops/s", "p50", "p90", "p99", "p99.9", "max", "errors"
        );
        for (k, s) in &kinds {
            let errs: u64 = s.errors.values().sum();
            println!(
                "{:<5} {:>12.0} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
                k,
                s.ok as f64 / secs,
                fmt_us(pct(&s.hist, 0.5)),
                fmt_us(pct(&s.hist, 0.9)),
                fmt_us(pct(&s.hist, 0.99)),
                fmt_us(pct(&s.hist, 0.999)),
                fmt_us(s.hist.max()),
                errs
            );
            if s.misses > 0 {
                println!("     {} reads found no key", s.misses);
            }
            for (e, n) in &s.errors {
                println!("     error x{n}: {e}");
            }
        }
        if a.workload == Workload::Watch {
            let expected = total[0].ok * u64::from(a.watchers);
            println!(
                "watch fan-out: {} watchers, {} events delivered of ~{} expected (writes x watchers)",
                a.watchers, total[2].ok, expected
            );
        }
        if pids.is_empty() {
            println!("server RSS: n/a (remote endpoints)");
        }
        for (i, p) in pids.iter().enumerate() {
            let f = |x: Option<u64>| x.map_or("gone".into(), |k| format!("{:.1} MiB", mib(k)));
            println!(
                "node {} (pid {p}): idle RSS {}, peak sampled RSS {:.1} MiB, VmHWM {}",
                i + 1,
                f(idle[i].map(|x| x.0)),
                mib(peak[i]),
                f(hwm[i].map(|x| x.1))
            );
        }
        for e in failures {
            println!("connection failed: {e}");
        }
    }

    // ---------------------------------------------------------------- sweep and recovery

    /// The keyspace of a sweep point: `--keyspace`, or fewer keys so that the live data
    /// (key + value per key) stays within `--sweep-data-mb`.
    pub fn sweep_keyspace(a: &Args, value_size: usize) -> u64 {
        let per_key = (a.key_size + value_size).max(1) as u64;
        a.keyspace
            .min(((a.sweep_data_mb as u64) << 20) / per_key)
            .max(1)
    }

    fn sweep(a: &Args, stop: &Arc<AtomicBool>) -> Result<(), String> {
        let n = a.local.expect("checked: sweep needs --local");
        let mut rows = Vec::new();
        'points: for &value_size in &a.sweep_values {
            for &clients in &a.sweep_clients {
                if stop.load(Ordering::Relaxed) {
                    break 'points;
                }
                let mut p = a.clone();
                p.workload = Workload::Put;
                p.clients = clients;
                p.value_size = value_size;
                p.keyspace = sweep_keyspace(a, value_size);
                let cluster = LocalCluster::start(n, a.fsync, &a.shoald_args)?;
                let result = run(&p, Some(&cluster), stop);
                if result.is_err() {
                    eprintln!("shoald logs (last lines):\n{}", cluster.log_tail());
                }
                drop(cluster);
                let o = result?;
                let w = &o.total[0];
                eprintln!(
                    "sweep: {clients} clients, {value_size} B values: {:.0} writes/s, p99 {}",
                    w.ok as f64 / o.secs,
                    fmt_us(pct(&w.hist, 0.99))
                );
                rows.push((clients, value_size, p.keyspace, o));
            }
        }
        let mib = |k: u64| k as f64 / 1024.0;
        if a.json {
            let points: Vec<serde_json::Value> = rows
                .iter()
                .map(|(c, v, keys, o)| {
                    let w = &o.total[0];
                    serde_json::json!({
                        "clients": c, "value_size": v, "keyspace": keys,
                        "ops_per_sec": w.ok as f64 / o.secs,
                        "errors": w.errors.values().sum::<u64>(),
                        "latency_us": {
                            "p50": pct(&w.hist, 0.5), "p99": pct(&w.hist, 0.99),
                            "p999": pct(&w.hist, 0.999), "max": w.hist.max(),
                        },
                        "peak_rss_kib": o.peak.iter().max(),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "workload": "sweep", "local": n,
                    "fsync": format!("{:?}", a.fsync).to_lowercase(),
                    "conns": a.conns, "pipeline": a.pipeline, "key_size": a.key_size,
                    "seconds": a.duration.as_secs_f64(), "points": points,
                })
            );
            return Ok(());
        }
        println!(
            "put sweep: {n} node(s), fsync {:?}, {} conns, pipeline {}, key {} B, {:?} per point",
            a.fsync, a.conns, a.pipeline, a.key_size, a.duration
        );
        println!(
            "| clients | value | keys | writes/s | MB/s | p50 | p99 | p99.9 | max | errors | peak RSS |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (c, v, keys, o) in &rows {
            let w = &o.total[0];
            let ops = w.ok as f64 / o.secs;
            println!(
                "| {c} | {v} B | {keys} | {ops:.0} | {:.1} | {} | {} | {} | {} | {} | {:.1} MiB |",
                ops * (*v + a.key_size) as f64 / 1e6,
                fmt_us(pct(&w.hist, 0.5)),
                fmt_us(pct(&w.hist, 0.99)),
                fmt_us(pct(&w.hist, 0.999)),
                fmt_us(w.hist.max()),
                w.errors.values().sum::<u64>(),
                mib(o.peak.iter().copied().max().unwrap_or(0))
            );
        }
        Ok(())
    }

    /// Write `count` puts through one connection (no session, `window` in flight, keys
    /// cycling through the keyspace). Returns the raft index of the last write.
    fn fill(addr: &str, a: &Args, count: u64, window: u64) -> Result<u64, String> {
        let value = vec![b'v'; a.value_size];
        pipelined_writes(addr, "fill", count, window, 30, |i| WriteOp::Put {
            key: key_of(i % a.keyspace, a.key_size),
            value: value.clone(),
        })
    }

    /// The HTTP status of `GET path` on `addr` (None if it does not answer).
    fn http_status(addr: &str, path: &str) -> Option<u16> {
        let mut s =
            TcpStream::connect_timeout(&resolve(addr).ok()?, Duration::from_millis(200)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    /// Bytes of the files under `dir`, recursively.
    fn dir_bytes(dir: &std::path::Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }

    fn recovery(a: &Args, stop: &Arc<AtomicBool>) -> Result<(), String> {
        let n = a.local.expect("checked: recovery needs --local");
        let mut rows = Vec::new();
        for &entries in &a.recovery_entries {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            // No snapshot at all, so the restart replays every entry; filled with fsync
            // `never` (fast), restarted with the chosen --fsync.
            let mut extra = a.shoald_args.clone();
            extra.extend([
                "--snapshot-entries=0".into(),
                "--snapshot-interval=0".into(),
            ]);
            let mut cluster = LocalCluster::start(n, Fsync::Never, &extra)?;
            let result = (|| -> Result<_, String> {
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
                let deadline = t0 + Duration::from_secs(600);
                let mut answering: Vec<Option<Duration>> = vec![None; n as usize];
                let mut healthy: Vec<Option<Duration>> = vec![None; n as usize];
                while healthy.iter().any(|h| h.is_none()) {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        return Err("the restarted cluster did not become healthy".into());
                    }
                    for i in 0..n as usize {
                        if answering[i].is_none()
                            && matches!(
                                call_once(&cluster.client_addrs[i], Request::Status),
                                Ok(Response::Status(_))
                            )
                        {
                            answering[i] = Some(t0.elapsed());
                        }
                        if healthy[i].is_none()
                            && http_status(&cluster.admin_addrs[i], "/health") == Some(200)
                        {
                            healthy[i] = Some(t0.elapsed());
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                let rss: Vec<u64> = cluster
                    .pids()
                    .iter()
                    .filter_map(|&p| rss_kib(p).map(|x| x.0))
                    .collect();
                let slowest = |v: &[Option<Duration>]| v.iter().flatten().max().copied();
                Ok((
                    last,
                    fill_secs,
                    disk,
                    slowest(&answering),
                    slowest(&healthy),
                    rss,
                ))
            })();
            if result.is_err() {
                eprintln!("shoald logs (last lines):\n{}", cluster.log_tail());
            }
            drop(cluster);
            let (last, fill_secs, disk, answering, healthy, rss) = result?;
            let answering = answering.unwrap_or_default();
            let healthy = healthy.unwrap_or_default();
            eprintln!(
                "recovery: {entries} writes (last index {last}, filled in {fill_secs:.1}s): \
                 answering after {answering:?}, healthy after {healthy:?}"
            );
            rows.push((entries, last, disk, answering, healthy, rss));
        }
        if a.json {
            let points: Vec<serde_json::Value> = rows
                .iter()
                .map(|(entries, last, disk, answering, healthy, rss)| {
                    serde_json::json!({
                        "writes": entries, "last_index": last, "data_dir_bytes": disk,
                        "answering_ms": answering.as_secs_f64() * 1e3,
                        "healthy_ms": healthy.as_secs_f64() * 1e3,
                        "rss_kib_after": rss,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "workload": "recovery", "local": n,
                    "fsync": format!("{:?}", a.fsync).to_lowercase(),
                    "value_size": a.value_size, "key_size": a.key_size, "keyspace": a.keyspace,
                    "points": points,
                })
            );
            return Ok(());
        }
        println!(
            "recovery: {n} node(s), no snapshots, {} B values over {} keys, restart with fsync {:?}",
            a.value_size, a.keyspace, a.fsync
        );
        println!("| log entries | data dir (node 1) | restart → answering | restart → /health OK | RSS after |");
        println!("|---:|---:|---:|---:|---:|");
        for (_, last, disk, answering, healthy, rss) in &rows {
            println!(
                "| {last} | {:.1} MiB | {} | {} | {:.1} MiB |",
                *disk as f64 / (1u64 << 20) as f64,
                fmt_us(answering.as_micros() as u64),
                fmt_us(healthy.as_micros() as u64),
                rss.iter().copied().max().unwrap_or(0) as f64 / 1024.0
            );
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn flags_parse_and_check() {
            let a = Args::try_parse_from([
                "shoal-bench",
                "mixed",
                "--local",
                "3",
                "--clients",
                "256",
                "--read-ratio",
                "0.9",
                "--duration",
                "2s",
                "--fsync",
                "async",
                "--consistency",
                "lease",
            ])
            .unwrap();
            assert_eq!(a.workload, Workload::Mixed);
            assert_eq!(a.local, Some(3));
            assert_eq!(a.fsync, Fsync::Async);
            assert_eq!(a.consistency, Consistency::Lease);
            assert_eq!(a.duration, Duration::from_secs(2));
            assert!(a.check().is_ok());
            let small = Args::try_parse_from(["shoal-bench", "put", "--key-size", "3"]).unwrap();
            assert!(small.check().is_err(), "10000 keys need 5-byte keys");
            assert_eq!(key_of(42, 16), b"k000000000000042".to_vec());
            let w = Args::try_parse_from(["shoal-bench", "watch", "--value-size", "4"]).unwrap();
            assert!(w.check().is_err(), "watch values carry an 8-byte timestamp");
        }

        #[test]
        fn shoald_args_sweep_and_recovery_flags() {
            let a = Args::try_parse_from([
                "shoal-bench",
                "put",
                "--local",
                "1",
                "--shoald-arg=--kv-event-mb=4",
                "--shoald-arg",
                "--snapshot-entries",
                "--shoald-arg",
                "0",
            ])
            .unwrap();
            assert_eq!(
                a.shoald_args,
                ["--kv-event-mb=4", "--snapshot-entries", "0"].map(String::from)
            );
            let s = Args::try_parse_from(["shoal-bench", "sweep", "--local", "3"]).unwrap();
            assert!(s.check().is_ok());
            assert_eq!(s.sweep_clients, [1, 16, 256, 1024]);
            assert_eq!(s.sweep_values, [16, 256, 4096, 65536]);
            // 32 MiB of live data: all 10000 keys of 256 B, 511 keys of 64 KiB.
            assert_eq!(sweep_keyspace(&s, 256), 10_000);
            assert_eq!(sweep_keyspace(&s, 65536), (32 << 20) / (65536 + 16));
            let remote = Args::try_parse_from(["shoal-bench", "sweep"]).unwrap();
            assert!(remote.check().unwrap_err().contains("--local"));
            let r = Args::try_parse_from([
                "shoal-bench",
                "recovery",
                "--local",
                "1",
                "--recovery-entries",
                "10,0",
            ])
            .unwrap();
            assert!(r.check().unwrap_err().contains("--recovery-entries"));
        }

        #[test]
        fn latencies_format() {
            assert_eq!(fmt_us(87), "87us");
            assert_eq!(fmt_us(1_234), "1.23ms");
            assert_eq!(fmt_us(2_500_000), "2.500s");
        }
    }
}
