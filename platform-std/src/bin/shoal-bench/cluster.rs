//! The `--local` cluster: `shoald` processes on 127.0.0.1 with free ports and temporary data
//! dirs, always killed and removed; and what the bench reads about them (memory, data dir
//! size, admin health).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cli::Fsync;

/// `shoald` processes started for the run; killed (SIGKILL) and their dirs removed on drop.
pub struct LocalCluster {
    procs: Vec<Child>,
    /// Client port of each node, in node id order.
    pub client_addrs: Vec<String>,
    /// Admin (HTTP) port of each node.
    pub admin_addrs: Vec<String>,
    raft_addrs: Vec<String>,
    members: String,
    /// The temporary directory holding every node's data dir (`n1`, ...) and log.
    pub root: PathBuf,
    shoald: PathBuf,
    /// `--fsync` of the next (re)start.
    pub fsync: Fsync,
    extra: Vec<String>,
}

impl LocalCluster {
    /// The running nodes' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|c| c.id()).collect()
    }

    /// The raft address of node `i + 1`.
    pub fn raft_addr(&self, i: usize) -> &str {
        &self.raft_addrs[i]
    }

    /// How the first node that exited did (none while every node runs).
    pub fn exited(&mut self) -> Option<String> {
        self.procs.iter_mut().enumerate().find_map(|(i, c)| {
            let status = c.try_wait().ok()??;
            Some(format!("node {} {status}", i + 1))
        })
    }

    /// The last lines of every node's log, to show when a run fails.
    pub fn log_tail(&self) -> String {
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
    pub fn start(n: u32, fsync: Fsync, extra: &[String]) -> Result<LocalCluster, String> {
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
    pub fn spawn_all(&mut self) -> Result<(), String> {
        let fsync = self.fsync.as_flag();
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
                // `{id}` in a --shoald-arg is the node's id (its own certificate files).
                .args(
                    self.extra
                        .iter()
                        .map(|a| a.replace("{id}", &(i + 1).to_string())),
                )
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
    pub fn kill_all(&mut self) {
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
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    Some((proc_status(pid, "VmRSS:")?, proc_status(pid, "VmHWM:")?))
}

/// The number of a line of `/proc/PID/status` (`VmRSS:` in KiB, `Threads:`); None if the
/// process is gone.
pub fn proc_status(pid: u32, name: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The kernel's clock ticks per second, the unit of [`cpu_ticks`].
pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// User plus system CPU time of a process so far, in clock ticks (None if it is gone).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, so split after its `)`):
    // state is field 3, utime 14 and stime 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))
}

/// `GET path` on `addr`, its answer's stream at the first byte (None if it cannot be sent).
fn http_get(addr: &str, path: &str) -> Option<TcpStream> {
    let mut s =
        TcpStream::connect_timeout(&resolve(addr).ok()?, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    Some(s)
}

/// The HTTP status of `GET path` on `addr` (None if it does not answer).
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut head = [0u8; 12];
    http_get(addr, path)?.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The body of a 200 answer to `GET path` on `addr`.
pub fn http_body(addr: &str, path: &str) -> Option<String> {
    let mut all = String::new();
    http_get(addr, path)?.read_to_string(&mut all).ok()?;
    let (head, body) = all.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}

/// Bytes of disk the files and directories under `dir` take (their allocated blocks, so a
/// preallocated segment counts whole and a sparse one only for what it holds), recursively.
pub fn disk_blocks_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    sum_under(dir, &|m| m.blocks() * 512)
}

/// Bytes of the files under `dir`, recursively.
pub fn dir_bytes(dir: &Path) -> u64 {
    sum_under(dir, &|m| if m.is_dir() { 0 } else { m.len() })
}

/// `size` of everything under `dir` (directories included), recursively.
fn sum_under(dir: &Path, size: &dyn Fn(&std::fs::Metadata) -> u64) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => size(&m) + sum_under(&e.path(), size),
            Ok(m) => size(&m),
            Err(_) => 0,
        })
        .sum()
}
