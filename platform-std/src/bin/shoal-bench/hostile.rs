//! `hostile`: the hostile clients of issue 14 all at once against one `--local 1` node, while a
//! normal client (the `mixed` load of `--clients`, `--conns` and `--pipeline`) measures its
//! latency, first alone, then under the attack. The node's RSS and threads are sampled all the
//! while; the run fails when the node exits or its peak RSS passes `--rss-limit-mb`.
//!
//! The attack, each part reopening what the node closes (once a second at most):
//! - 20 connections announcing 16 MiB request frames, and 20 announcing 1.9 MiB frames that
//!   never finish;
//! - 8 connections pipelining Gets of a 60 KB value and never reading an answer;
//! - BatchGets of 20,000 copies of a key holding 64 KiB, ten a second;
//! - 10 connections sending 20,000 watches each and never reading, while a writer puts 1 KB
//!   values to the watched key a hundred times a second;
//! - 2,000 client connections that send nothing;
//! - 500 connections to the raft port that never say Hello.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shoal_client::protocol::{
    self, ErrorCode, ReadMode, Request, RequestFrame, Response, WriteOp,
};

use crate::calls::{call_once, connect, find_leader, prefill, recv_batch};
use crate::cli::{Args, Workload};
use crate::cluster::{http_body, proc_status, LocalCluster};
use crate::load::Route;
use crate::report;
use crate::run::{join_workers, shared, start_loaders};
use crate::stats::OpStats;

/// How often the attackers look at their connections, and the RSS is sampled.
const TICK: Duration = Duration::from_millis(100);
/// A connection the node closed is opened again after this.
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// Client connections that send nothing.
const IDLE_CONNS: usize = 2_000;
/// How long the attack may take to be in place before the loaded run starts.
const RAMP: Duration = Duration::from_secs(60);

/// What one part of the attack did.
#[derive(Default)]
pub struct Tally {
    /// Connections opened.
    pub opened: AtomicU64,
    /// Connections the node closed (or refused).
    pub closed: AtomicU64,
    /// Requests the node refused with `LimitExceeded` (or `Unavailable`).
    pub refused: AtomicU64,
    /// Requests it answered otherwise.
    pub answered: AtomicU64,
}

/// One part of the attack, by name, and what it did.
pub struct Part {
    /// What it does.
    pub name: &'static str,
    /// Its counts.
    pub tally: Arc<Tally>,
}

/// What the run measured.
pub struct HostileOutcome {
    /// The node's process id.
    pub pid: u32,
    /// (RSS, threads) before anything was written.
    pub idle: (u64, u64),
    /// The normal client alone: writes and reads.
    pub unloaded: [OpStats; 2],
    /// The normal client under the attack.
    pub loaded: [OpStats; 2],
    /// Largest RSS sampled under the attack, KiB.
    pub peak_rss_kib: u64,
    /// Most threads sampled under the attack.
    pub peak_threads: u64,
    /// The node's `VmHWM` at the end: its peak RSS over the whole run, KiB.
    pub hwm_kib: u64,
    /// Client connections open once the attack was in place.
    pub client_connections: u64,
    /// The attack's parts.
    pub parts: Vec<Part>,
    /// `shoal_limit_hits_total` by limit at the end.
    pub hits: Vec<(String, u64)>,
    /// How the node exited, if it did.
    pub exited: Option<String>,
}

/// Run the attack and report it; an error when the node exited or passed `--rss-limit-mb`.
pub fn hostile(a: &Args, stop: &Arc<AtomicBool>) -> Result<(), String> {
    raise_fd_limit(8 * IDLE_CONNS as u64)?;
    let mut cluster = LocalCluster::start(1, a.fsync, &a.shoald_args)?;
    let result = run(a, &mut cluster, stop);
    if result.is_err() {
        eprintln!("shoald log (last lines):\n{}", cluster.log_tail());
    }
    drop(cluster);
    let o = result?;
    report::print(|out| report::hostile(a, &o, out))?;
    if let Some(how) = &o.exited {
        return Err(format!("the node exited under the attack: {how}"));
    }
    if o.hwm_kib > a.rss_limit_mb * 1024 {
        return Err(format!(
            "the node's peak RSS {} KiB passed --rss-limit-mb {}",
            o.hwm_kib, a.rss_limit_mb
        ));
    }
    Ok(())
}

fn run(
    a: &Args,
    cluster: &mut LocalCluster,
    stop: &Arc<AtomicBool>,
) -> Result<HostileOutcome, String> {
    let leader = find_leader(&cluster.client_addrs, Duration::from_secs(20), stop)?;
    let pid = cluster.pids()[0];
    let sample = || -> (u64, u64) {
        (
            proc_status(pid, "VmRSS:").unwrap_or(0),
            proc_status(pid, "Threads:").unwrap_or(0),
        )
    };
    let idle = sample();
    prefill(&leader, 0, (0, 1), a)?;
    for (key, len) in [("big60k", 60_000), ("big64k", 64 << 10), ("watched", 1)] {
        put(&leader, key, vec![b'b'; len])?;
    }
    let unloaded = normal_client(a, &leader, stop)?;

    let quit = Arc::new(AtomicBool::new(false));
    let (parts, attackers) = attack(&leader, cluster.raft_addr(0), a.attacker_nice, &quit)?;
    let admin = cluster.admin_addrs[0].clone();
    let ramp_end = Instant::now() + RAMP;
    let mut client_connections = 0;
    while client_connections < IDLE_CONNS as u64 && Instant::now() < ramp_end {
        std::thread::sleep(TICK);
        client_connections = metric(&admin, "shoal_client_connections").unwrap_or(0);
    }
    // Let the pipelines and watch floods fill the node's buffers.
    std::thread::sleep(Duration::from_secs(2));

    let (a2, leader2, stop2) = (a.clone(), leader.clone(), stop.clone());
    let measured = std::thread::spawn(move || normal_client(&a2, &leader2, &stop2));
    let (mut peak_rss_kib, mut peak_threads) = (0, 0);
    let mut exited = None;
    while !measured.is_finished() {
        let (rss, threads) = sample();
        peak_rss_kib = peak_rss_kib.max(rss);
        peak_threads = peak_threads.max(threads);
        exited = exited.or_else(|| cluster.exited());
        std::thread::sleep(TICK);
    }
    let loaded = measured.join().map_err(|_| "the normal client panicked")?;
    let hits = limit_hits(&admin);
    let hwm_kib = proc_status(pid, "VmHWM:").unwrap_or(0);
    exited = exited.or_else(|| cluster.exited());
    quit.store(true, Ordering::Relaxed);
    for h in attackers {
        let _ = h.join();
    }
    Ok(HostileOutcome {
        pid,
        idle,
        unloaded,
        loaded: loaded?,
        peak_rss_kib,
        peak_threads,
        hwm_kib,
        client_connections,
        parts,
        hits,
        exited,
    })
}

/// The normal client: `--clients` sessions doing `mixed` for `--warmup` + `--duration`.
fn normal_client(a: &Args, leader: &str, stop: &Arc<AtomicBool>) -> Result<[OpStats; 2], String> {
    let routes = vec![Route::group0(leader)];
    let sh = Arc::new(shared(a, routes, Workload::Mixed, Instant::now(), stop));
    let ([puts, gets, _], failures) = join_workers(start_loaders(a, &sh), Vec::new());
    match failures.first() {
        Some(e) => Err(format!("the normal client failed: {e}")),
        None => Ok([puts, gets]),
    }
}

fn put(addr: &str, key: &str, value: Vec<u8>) -> Result<(), String> {
    let op = WriteOp::Put {
        key: key.as_bytes().to_vec(),
        value,
    };
    let write = Request::Write {
        client_id: 0,
        seq: 0,
        op,
    };
    match call_once(addr, write)? {
        Response::Written { .. } => Ok(()),
        r => Err(format!("put {key}: {r:?}")),
    }
}

/// Start every part of the attack on `client` and `raft`, each on a thread of its own that
/// ends when `quit` is set.
fn attack(
    client: &str,
    raft: &str,
    nice: i32,
    quit: &Arc<AtomicBool>,
) -> Result<(Vec<Part>, Vec<JoinHandle<()>>), String> {
    let resolve = |addr: &str| -> Result<SocketAddr, String> {
        addr.to_socket_addrs()
            .map_err(|e| format!("{addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("{addr}: no address"))
    };
    let (client, raft) = (resolve(client)?, resolve(raft)?);
    let frames = |n: usize, request: &dyn Fn() -> Request| {
        let mut out = Vec::new();
        for id in 1..=n as u64 {
            let frame = RequestFrame::new(id, 0, request());
            protocol::encode(&frame, &mut out).expect("an attack's request fits in a frame");
        }
        out
    };
    let gets = frames(1_000, &|| Request::Get {
        key: b"big60k".to_vec(),
        mode: ReadMode::Lease,
    });
    let watches = frames(20_000, &|| Request::Watch {
        keys: vec![b"watched".to_vec()],
        from_index: 0,
    });
    let crowds: Vec<(&'static str, SocketAddr, usize, Vec<u8>, bool)> = vec![
        (
            "frames announcing 16 MiB",
            client,
            20,
            frame_prefix(16 << 20),
            false,
        ),
        (
            "frames of 1.9 MiB never finished",
            client,
            20,
            frame_prefix(1900 << 10),
            false,
        ),
        ("pipelined 60 KB Gets never read", client, 8, gets, true),
        ("20,000 watches never read", client, 10, watches, false),
        (
            "idle client connections",
            client,
            IDLE_CONNS,
            Vec::new(),
            false,
        ),
        ("raft-port strangers", raft, 500, Vec::new(), false),
    ];
    let mut parts = Vec::new();
    let mut handles = Vec::new();
    for (name, addr, n, bytes, repeat) in crowds {
        let tally = part(&mut parts, name);
        let quit = quit.clone();
        handles.push(std::thread::spawn(move || {
            lower_priority(nice);
            crowd(addr, n, &bytes, repeat, &tally, &quit)
        }));
    }
    let huge = part(&mut parts, "BatchGets of 20,000 keys");
    let (addr, q) = (client.to_string(), quit.clone());
    handles.push(std::thread::spawn(move || {
        lower_priority(nice);
        let keys = vec![b"big64k".to_vec(); 20_000];
        let batch = || Request::BatchGet {
            keys: keys.clone(),
            mode: ReadMode::Linearizable,
        };
        requester(&addr, Duration::from_millis(100), &batch, &huge, &q)
    }));
    let writes = part(&mut parts, "1 KB writes to the watched key");
    let (addr, q) = (client.to_string(), quit.clone());
    handles.push(std::thread::spawn(move || {
        lower_priority(nice);
        let mut seq = 0;
        let write = move || {
            seq += 1;
            Request::Write {
                client_id: 0xBAD,
                seq,
                op: WriteOp::Put {
                    key: b"watched".to_vec(),
                    value: vec![b'w'; 1000],
                },
            }
        };
        requester(&addr, Duration::from_millis(10), write, &writes, &q)
    }));
    Ok((parts, handles))
}

/// Give the calling thread (not the process: Linux keeps a nice value per thread) the nice
/// value `nice`, so the attack generator yields the cores to the node and the measured client.
fn lower_priority(nice: i32) {
    // SAFETY: gettid and setpriority take no pointers; they act on the calling thread only.
    let r = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice)
    };
    if r != 0 {
        eprintln!(
            "hostile: could not lower an attack thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A new part of the attack named `name` in `parts`; its tally.
fn part(parts: &mut Vec<Part>, name: &'static str) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    parts.push(Part {
        name,
        tally: tally.clone(),
    });
    tally
}

/// The first bytes of a request frame of `total` bytes: its length field and version, then
/// 16 bytes of its body (21 bytes, all a hostile client sends).
fn frame_prefix(total: usize) -> Vec<u8> {
    let mut real = Vec::new();
    let status = RequestFrame::new(0, 0, Request::Status);
    protocol::encode(&status, &mut real).expect("a Status request encodes");
    let len = u32::try_from(total - 8).expect("a frame length fits its field");
    let mut prefix = len.to_le_bytes().to_vec();
    prefix.push(real[4]);
    prefix.extend_from_slice(&[0; 16]);
    prefix
}

/// One connection of a crowd: its socket (none while closed), the bytes of `bytes` it wrote,
/// and when it was last opened.
struct Member {
    stream: Option<TcpStream>,
    written: usize,
    opened: Option<Instant>,
}

/// Keep `n` connections to `addr` open, each writing `bytes` (over and over if `repeat`) as
/// fast as the node reads them and never reading an answer; what the node closes is opened
/// again after [`REOPEN_AFTER`].
fn crowd(addr: SocketAddr, n: usize, bytes: &[u8], repeat: bool, t: &Tally, quit: &AtomicBool) {
    let mut members: Vec<Member> = (0..n)
        .map(|_| Member {
            stream: None,
            written: 0,
            opened: None,
        })
        .collect();
    let mut scratch = vec![0u8; 64 << 10];
    while !quit.load(Ordering::Relaxed) {
        for m in &mut members {
            if quit.load(Ordering::Relaxed) {
                break;
            }
            if m.stream.is_none() {
                if m.opened.is_some_and(|at| at.elapsed() < REOPEN_AFTER) {
                    continue;
                }
                m.opened = Some(Instant::now());
                m.written = 0;
                match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(s) if s.set_nonblocking(true).is_ok() => {
                        t.opened.fetch_add(1, Ordering::Relaxed);
                        m.stream = Some(s);
                    }
                    _ => {
                        t.closed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            let s = m.stream.as_mut().expect("opened above");
            let mut open = true;
            while open && m.written < bytes.len() {
                match s.write(&bytes[m.written..]) {
                    Ok(0) => open = false,
                    Ok(k) => {
                        m.written += k;
                        if repeat && m.written == bytes.len() {
                            m.written = 0;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => open = false,
                }
            }
            // Answers are read only to learn that the node closed the connection: a hostile
            // client that pipelines never takes them.
            if open && !repeat && bytes.len() < 64 {
                loop {
                    match s.read(&mut scratch) {
                        Ok(0) => open = false,
                        Ok(_) => continue,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => open = false,
                    }
                    break;
                }
            }
            if !open {
                t.closed.fetch_add(1, Ordering::Relaxed);
                m.stream = None;
            }
        }
        std::thread::sleep(TICK);
    }
}

/// Send `request()` on one connection every `every`, each after the last one's answer,
/// counting refusals and answers; a lost connection is opened again.
fn requester(
    addr: &str,
    every: Duration,
    mut request: impl FnMut() -> Request,
    t: &Tally,
    quit: &AtomicBool,
) {
    let mut id = 0;
    let mut batch = Vec::new();
    while !quit.load(Ordering::Relaxed) {
        let Ok(mut c) = connect(addr, Duration::from_secs(10)) else {
            t.closed.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(REOPEN_AFTER);
            continue;
        };
        t.opened.fetch_add(1, Ordering::Relaxed);
        while !quit.load(Ordering::Relaxed) {
            id += 1;
            let sent = c.writer.queue(&RequestFrame::new(id, 0, request()));
            if sent.and_then(|()| c.writer.flush_blocking()).is_err() {
                break;
            }
            match recv_batch(&mut c.reader, &mut batch) {
                Ok(true) => {
                    for f in batch.drain(..) {
                        let refused = matches!(
                            f.response,
                            Response::Error {
                                code: ErrorCode::LimitExceeded,
                                ..
                            } | Response::Unavailable { .. }
                        );
                        let n = if refused { &t.refused } else { &t.answered };
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => break,
            }
            std::thread::sleep(every);
        }
        if !quit.load(Ordering::Relaxed) {
            t.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A gauge or counter of the node's `/metrics` (a series name with its labels).
fn metric(admin: &str, series: &str) -> Option<u64> {
    let body = http_body(admin, "/metrics")?;
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Every limit's hits, from `/metrics`.
fn limit_hits(admin: &str) -> Vec<(String, u64)> {
    let body = http_body(admin, "/metrics").unwrap_or_default();
    body.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("shoal_limit_hits_total{limit=\"")?;
            let (flag, n) = rest.split_once("\"} ")?;
            Some((flag.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

/// Raise this process's open-file limit to `want` (its children, the node, inherit it).
fn raise_fd_limit(want: u64) -> Result<(), String> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return Err("getrlimit(RLIMIT_NOFILE) failed".into());
        }
        if l.rlim_cur >= want {
            return Ok(());
        }
        if l.rlim_max < want {
            return Err(format!(
                "the open-file limit is {} (hard); hostile needs {want}: raise it (ulimit -Hn)",
                l.rlim_max
            ));
        }
        l.rlim_cur = want;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
            return Err(format!("setrlimit(RLIMIT_NOFILE, {want}) failed"));
        }
    }
    Ok(())
}
