//! Helpers for the process tests: locate `shoald` / `shoalctl` next to this test's executable,
//! run them under a kill-on-drop guard on 127.0.0.1 with unique ports, talk the client protocol,
//! and run `shoal-inspect`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use shoal_client::protocol::{
    self, ReadMode, Request, RequestFrame, Response, ResponseFrame, StatusInfo, WriteOp,
    PROTOCOL_VERSION,
};

/// `shoal-inspect`, built for this package's tests.
pub const INSPECT: &str = env!("CARGO_BIN_EXE_shoal-inspect");

/// The `shoald` and `shoalctl` binaries of shoal-std. `cargo test --workspace` builds every
/// binary of the workspace into the same directory as this package's `shoal-inspect`
/// (`target/<profile>/`), which is also the parent of the directory holding this test executable
/// (`target/<profile>/deps/`). Returns `None`, after saying why, when they are not there (for
/// example under `cargo test -p shoal-tools` alone, which does not build shoal-std's binaries).
pub fn server_bins() -> Option<(PathBuf, PathBuf)> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = Path::new(INSPECT).parent() {
        dirs.push(d.to_path_buf());
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent().and_then(Path::parent) {
            dirs.push(d.to_path_buf());
        }
    }
    let exe = |name: &str| format!("{name}{}", std::env::consts::EXE_SUFFIX);
    for d in &dirs {
        let shoald = d.join(exe("shoald"));
        let shoalctl = d.join(exe("shoalctl"));
        if shoald.is_file() && shoalctl.is_file() {
            return Some((shoald, shoalctl));
        }
    }
    eprintln!(
        "SKIPPED: shoald/shoalctl not found in {:?}; build them first (`cargo build -p shoal-std \
         --bins`, or run `cargo test --workspace`, which builds every binary)",
        dirs
    );
    None
}

/// A child process killed (SIGKILL) when dropped, also when a test panics; its stderr goes to a
/// file that is printed (last lines) if the test panics.
pub struct Proc {
    /// The child, until it has been waited for.
    pub child: Option<Child>,
    /// Where its stderr goes.
    pub stderr: PathBuf,
}

impl Proc {
    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn sigterm(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        // kill(1): no libc binding needed; the child has not been reaped, so the pid is ours.
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "ignored SIGTERM: {}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let text = self.stderr_text();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(30);
            eprintln!("--- {} (last lines) ---", self.stderr.display());
            for l in &lines[from..] {
                eprintln!("{l}");
            }
        }
    }
}

/// One node's addresses and data dir. Ports: raft `base + 10*id + 1`, client `+2` (the default
/// raft port + 1), admin `+3`.
#[derive(Clone, Debug)]
pub struct Node {
    /// Node id.
    pub id: u64,
    /// Raft address.
    pub raft: String,
    /// Client address.
    pub client: String,
    /// Admin HTTP address.
    pub admin: String,
    /// Data dir.
    pub dir: PathBuf,
}

/// The node `id` of a port range.
pub fn node(base: u16, id: u64, root: &Path, dir_name: &str) -> Node {
    let p = base + 10 * id as u16;
    Node {
        id,
        raft: format!("127.0.0.1:{}", p + 1),
        client: format!("127.0.0.1:{}", p + 2),
        admin: format!("127.0.0.1:{}", p + 3),
        dir: root.join(dir_name),
    }
}

/// `id=raft,...` for these nodes.
pub fn members(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.raft))
        .collect::<Vec<_>>()
        .join(",")
}

/// Start `shoald` for `n` with `--fsync never` and short timeouts, plus `extra` flags.
pub fn start(shoald: &Path, n: &Node, members: &str, extra: &[&str], tag: &str) -> Proc {
    let stderr = n
        .dir
        .parent()
        .unwrap()
        .join(format!("shoald-{}-{tag}.log", n.id));
    let f = std::fs::File::create(&stderr).expect("log file");
    let mut cmd = Command::new(shoald);
    cmd.args([
        "--node-id",
        &n.id.to_string(),
        "--data-dir",
        n.dir.to_str().unwrap(),
        "--raft-addr",
        &n.raft,
        "--client-addr",
        &n.client,
        "--admin-addr",
        &n.admin,
        "--initial-members",
        members,
        "--fsync",
        "never",
        "--election-timeout",
        "800",
        "--heartbeat-interval",
        "80",
    ])
    .args(extra)
    .env("RUST_LOG", "info")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(f);
    Proc {
        child: Some(cmd.spawn().expect("spawn shoald")),
        stderr,
    }
}

/// Run a command to completion with a deadline (killed past it); returns (code, stdout, stderr).
pub fn run_bounded(mut cmd: Command, secs: u64) -> (i32, String, String) {
    let out_dir = tempfile::tempdir().unwrap();
    let (o, e) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran longer than {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(&o).unwrap_or_default(),
        std::fs::read_to_string(&e).unwrap_or_default(),
    )
}

/// `shoal-inspect ARGS`.
pub fn inspect(args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(INSPECT);
    c.args(args);
    run_bounded(c, 60)
}

/// `shoal-inspect --json ARGS`, parsed.
pub fn inspect_json(args: &[&str]) -> (i32, serde_json::Value) {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let (code, out, err) = inspect(&a);
    let v = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("shoal-inspect {a:?}: {e}\n{out}\n{err}"));
    (code, v)
}

/// `shoalctl --endpoints E ARGS`.
pub fn ctl(shoalctl: &Path, endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(shoalctl);
    c.arg("--endpoints").arg(endpoints).args(args);
    run_bounded(c, 30)
}

/// `shoalctl` that must succeed; returns stdout.
pub fn ctl_ok(shoalctl: &Path, endpoints: &str, args: &[&str]) -> String {
    let (code, out, err) = ctl(shoalctl, endpoints, args);
    assert_eq!(code, 0, "shoalctl {args:?}: {out}{err}");
    out
}

/// A minimal blocking client for the protocol.
pub struct Conn {
    s: TcpStream,
    next_id: u64,
    buf: Vec<u8>,
}

impl Conn {
    /// Connect.
    pub fn open(addr: &str) -> std::io::Result<Conn> {
        let s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            s,
            next_id: 1,
            buf: Vec::new(),
        })
    }

    /// One request, its answer.
    pub fn call(&mut self, group: u32, request: Request) -> std::io::Result<Response> {
        let id = self.next_id;
        self.next_id += 1;
        let mut out = Vec::new();
        protocol::encode(
            &RequestFrame {
                version: PROTOCOL_VERSION,
                id,
                group,
                request,
            },
            &mut out,
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.s.write_all(&out)?;
        loop {
            let f = self.next_frame()?;
            if f.id == id {
                return Ok(f.response);
            }
        }
    }

    fn next_frame(&mut self) -> std::io::Result<ResponseFrame> {
        loop {
            match protocol::decode::<ResponseFrame>(&self.buf) {
                Ok(Some((f, used))) => {
                    self.buf.drain(..used);
                    return Ok(f);
                }
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// One request on a fresh connection.
pub fn call(addr: &str, group: u32, req: Request) -> Option<Response> {
    Conn::open(addr).ok()?.call(group, req).ok()
}

/// Send a write to each node until one applies it; panics unless it is `Written { Done }`.
pub fn write(addrs: &[&str], client_id: u64, seq: u64, op: WriteOp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for a in addrs {
            match call(
                a,
                0,
                Request::Write {
                    client_id,
                    seq,
                    op: op.clone(),
                },
            ) {
                Some(Response::NotLeader { .. }) | Some(Response::Unavailable { .. }) | None => {}
                Some(Response::Written {
                    result: shoal_kv::WriteResult::Done,
                    ..
                }) => return,
                Some(Response::Written {
                    result: shoal_kv::WriteResult::Batch(items),
                    ..
                }) if items.iter().all(|r| r.is_ok()) => return,
                Some(other) => panic!("write seq {seq}: {other:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "write seq {seq}: no node took it"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A linearizable read on any node that answers; the value or `None` if absent.
pub fn get(addrs: &[&str], key: &str) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for a in addrs {
            if let Some(Response::Node { node, .. }) = call(
                a,
                0,
                Request::Get {
                    key: key.into(),
                    mode: ReadMode::Linearizable,
                },
            ) {
                return node.map(|n| n.value);
            }
        }
        assert!(Instant::now() < deadline, "get {key}: no answer in 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The node's view of group 0.
pub fn status(addr: &str) -> Option<StatusInfo> {
    match call(addr, 0, Request::Status)? {
        Response::Status(s) => Some(s),
        _ => None,
    }
}

/// Wait (20 s at most) until one of the nodes is leader of group 0; returns its id.
pub fn wait_leader(nodes: &[&Node]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for n in nodes {
            if let Some(s) = status(&n.client) {
                if s.role == "leader" {
                    return n.id;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader in 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait (20 s at most) until `until` holds.
pub fn wait_for(what: &str, secs: u64, mut until: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !until() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET path` on the admin port: (status code, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((code, body))
}

/// The segment files of group 0, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("group-0/log"))
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A path as `&str`.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
