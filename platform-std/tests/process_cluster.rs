//! Real `shoald` processes on 127.0.0.1, driven through the client protocol: writes and reads,
//! `kill -9` of the leader with every acknowledged write surviving, restart and catch-up, a
//! node joining (`--join`) and being promoted, removal, leader transfer, a second group, a
//! corrupt segment refused at start, a no-flags single-node dev server with SIGTERM, and
//! malformed peer frames written to a node's raft port (refused, counted, the node serves on).
//!
//! Every child runs inside a [`Proc`] guard that kills it on drop, also when a test panics.
//! Each test takes its own port range; every wait is bounded.
#![cfg(unix)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shoal_std::protocol::{
    self, MemberChange, ReadMode, Request, RequestFrame, Response, ResponseFrame, WriteOp,
    PROTOCOL_VERSION,
};

const SHOALD: &str = env!("CARGO_BIN_EXE_shoald");

/// A child process that is killed (SIGKILL) when dropped.
struct Proc {
    child: Option<Child>,
    stderr: PathBuf,
}

impl Proc {
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let text = self.stderr_text();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(40);
            eprintln!("--- {} (last lines) ---", self.stderr.display());
            for l in &lines[from..] {
                eprintln!("{l}");
            }
        }
    }
}

struct NodeSpec {
    id: u64,
    raft: String,
    client: String,
    admin: String,
    dir: PathBuf,
}

fn spec(base: u16, id: u64, root: &Path) -> NodeSpec {
    let p = base + 10 * id as u16;
    NodeSpec {
        id,
        raft: format!("127.0.0.1:{}", p + 1),
        client: format!("127.0.0.1:{}", p + 2),
        admin: format!("127.0.0.1:{}", p + 3),
        dir: root.join(format!("n{id}")),
    }
}

fn start(n: &NodeSpec, members: &str, extra: &[&str], root: &Path, tag: &str) -> Proc {
    let stderr = root.join(format!("n{}-{tag}.log", n.id));
    let f = std::fs::File::create(&stderr).expect("log file");
    let mut cmd = Command::new(SHOALD);
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
        "--election-timeout",
        "400",
        "--heartbeat-interval",
        "50",
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

/// A minimal blocking client for the protocol.
struct Conn {
    s: TcpStream,
    next_id: u64,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: &str) -> std::io::Result<Conn> {
        let s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            s,
            next_id: 1,
            buf: Vec::new(),
        })
    }

    fn call(&mut self, group: u32, request: Request) -> std::io::Result<Response> {
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
        .unwrap();
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

fn call(addr: &str, group: u32, req: Request) -> Option<Response> {
    Conn::open(addr).ok()?.call(group, req).ok()
}

/// Ask each node until one answers definitely (not NotLeader / Unavailable / unreachable).
fn call_any(addrs: &[&str], group: u32, req: Request, what: &str) -> Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for a in addrs {
            match call(a, group, req.clone()) {
                Some(Response::NotLeader { .. }) | None => {}
                Some(Response::Unavailable { message }) => eprintln!("{what}: {a}: {message}"),
                Some(r) => return r,
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no node answered in 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn put(addrs: &[&str], group: u32, client_id: u64, seq: u64, key: &str, value: &str) {
    let r = call_any(
        addrs,
        group,
        Request::Write {
            client_id,
            seq,
            op: WriteOp::Put {
                key: key.into(),
                value: value.into(),
            },
        },
        &format!("put {key}"),
    );
    assert!(
        matches!(
            r,
            Response::Written {
                result: shoal_kv::WriteResult::Done,
                ..
            }
        ),
        "put {key}: {r:?}"
    );
}

fn get(addr: &str, group: u32, key: &str, mode: ReadMode) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match call(
            addr,
            group,
            Request::Get {
                key: key.into(),
                mode,
            },
        ) {
            Some(Response::Node { node, .. }) => return node.map(|n| n.value),
            other => {
                assert!(Instant::now() < deadline, "get {key} on {addr}: {other:?}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn status(addr: &str, group: u32) -> Option<protocol::StatusInfo> {
    match call(addr, group, Request::Status)? {
        Response::Status(s) => Some(s),
        _ => None,
    }
}

/// Wait until some node reports itself leader; returns its id.
fn wait_leader(addrs: &[(u64, &str)], group: u32) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for (id, a) in addrs {
            if let Some(s) = status(a, group) {
                if s.role == "leader" {
                    return *id;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader of group {group} in 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((code, body))
}

#[test]
fn three_nodes_survive_kill_restart_transfer_groups_and_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let base = 23000;
    let n: Vec<NodeSpec> = (1..=4).map(|i| spec(base, i, root)).collect();
    let members: String = n[..3]
        .iter()
        .map(|s| format!("{}={}", s.id, s.raft))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs: Vec<Option<Proc>> = (0..3)
        .map(|i| Some(start(&n[i], &members, &[], root, "a")))
        .collect();
    procs.push(None);
    let all: Vec<(u64, &str)> = n.iter().map(|s| (s.id, s.client.as_str())).collect();
    let leader = wait_leader(&all[..3], 0);

    // Writes through any node (followers redirect), then reads in every mode.
    let addrs3: Vec<&str> = all[..3].iter().map(|a| a.1).collect();
    for i in 0..20u64 {
        put(&addrs3, 0, 42, i + 1, &format!("k{i}"), &format!("v{i}"));
    }
    let follower = all[..3].iter().find(|a| a.0 != leader).unwrap().1;
    assert_eq!(
        get(follower, 0, "k7", ReadMode::Linearizable),
        Some(b"v7".to_vec())
    );
    let leader_addr = all[(leader - 1) as usize].1;
    assert_eq!(
        get(leader_addr, 0, "k8", ReadMode::Lease),
        Some(b"v8".to_vec())
    );
    // A write to a follower names the leader's client address.
    match call(
        follower,
        0,
        Request::Write {
            client_id: 0,
            seq: 0,
            op: WriteOp::Put {
                key: b"x".to_vec(),
                value: b"y".to_vec(),
            },
        },
    ) {
        Some(Response::NotLeader {
            leader: l,
            leader_addr: Some(a),
        }) => {
            assert_eq!(l, leader);
            assert_eq!(a, leader_addr);
        }
        other => panic!("write on a follower: {other:?}"),
    }
    // A retried write (same session and seq) is answered from the dedup table.
    put(&addrs3, 0, 42, 20, "k19", "v19");

    // kill -9 the leader: a new leader, nothing acknowledged lost.
    procs[(leader - 1) as usize].as_mut().unwrap().kill9();
    let rest: Vec<(u64, &str)> = all[..3].iter().copied().filter(|a| a.0 != leader).collect();
    let new_leader = wait_leader(&rest, 0);
    assert_ne!(new_leader, leader);
    let rest_addrs: Vec<&str> = rest.iter().map(|a| a.1).collect();
    for i in 0..20u64 {
        let v = get(rest_addrs[0], 0, &format!("k{i}"), ReadMode::Linearizable);
        assert_eq!(
            v,
            Some(format!("v{i}").into_bytes()),
            "k{i} after the leader died"
        );
    }
    for i in 20..25u64 {
        put(
            &rest_addrs,
            0,
            42,
            i + 1,
            &format!("k{i}"),
            &format!("v{i}"),
        );
    }

    // The killed node restarts and catches up.
    let old = (leader - 1) as usize;
    procs[old] = Some(start(&n[old], &members, &[], root, "b"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(all[old].1, 0, "k24", ReadMode::Local) != Some(b"v24".to_vec()) {
        assert!(Instant::now() < deadline, "restarted node did not catch up");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Leader transfer to a follower.
    let live: Vec<(u64, &str)> = all[..3].to_vec();
    let live_addrs: Vec<&str> = live.iter().map(|a| a.1).collect();
    let leader = wait_leader(&live, 0);
    let target = [1u64, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    let r = call(
        all[(leader - 1) as usize].1,
        0,
        Request::TransferLeader { to: target },
    );
    assert!(matches!(r, Some(Response::Done { .. })), "transfer: {r:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(all[(target - 1) as usize].1, 0).map(|s| s.role) != Some("leader".into()) {
        assert!(
            Instant::now() < deadline,
            "node {target} did not become leader"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A second group on the live nodes.
    let gmembers: Vec<(u64, String)> = live
        .iter()
        .map(|a| (a.0, n[(a.0 - 1) as usize].raft.clone()))
        .collect();
    for a in &live_addrs {
        let r = call(
            a,
            7,
            Request::GroupCreate {
                members: gmembers.clone(),
            },
        );
        assert!(
            matches!(r, Some(Response::Done { .. })),
            "group create on {a}: {r:?}"
        );
    }
    wait_leader(&live, 7);
    put(&live_addrs, 7, 43, 1, "g7key", "in-group-7");
    assert_eq!(
        get(live_addrs[0], 7, "g7key", ReadMode::Linearizable),
        Some(b"in-group-7".to_vec())
    );
    assert_eq!(get(live_addrs[0], 0, "g7key", ReadMode::Linearizable), None);
    match call(live_addrs[0], 0, Request::GroupList) {
        Some(Response::Groups(g)) => assert_eq!(g, vec![0, 7]),
        other => panic!("group list: {other:?}"),
    }

    // Admin port.
    // Health turns 200 once every group on the node knows its leader.
    let admin = &n[(target - 1) as usize].admin;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = http_get(admin, "/health").expect("health");
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "health stayed {code}: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, body) = http_get(&n[(target - 1) as usize].admin, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(body.contains("shoal_fsync_seconds_bucket"), "{body}");
    assert!(
        body.contains("shoal_dropped_messages_total{group=\"0\"}"),
        "{body}"
    );

    // Corruption in a stopped node's segment stops it at start, naming the spot.
    let victim = [1u64, 2, 3].into_iter().find(|&i| i != target).unwrap();
    procs[(victim - 1) as usize].as_mut().unwrap().kill9();
    let seg_dir = n[(victim - 1) as usize].dir.join("group-0").join("log");
    let seg = std::fs::read_dir(&seg_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("a segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    let hdr = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize + 8;
    let first = u32::from_le_bytes(bytes[hdr..hdr + 4].try_into().unwrap()) as usize + 8;
    let at = hdr + first / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    let vi = (victim - 1) as usize;
    let mut p = start(&n[vi], &members, &[], root, "corrupt");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = p.child.as_mut().unwrap().try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "a corrupt node kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let err = p.stderr_text();
    let name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        err.contains("corrupt") && err.contains(&name) && err.contains("offset"),
        "{err}"
    );
    drop(procs);
}

#[test]
fn no_flags_single_node_dev_server_serves_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("stderr.log");
    // No flags at all. If someone else on this machine holds the default ports, move this
    // server with SHOAL_* variables (still no flags) rather than talk to a stranger.
    let (raft, client, admin) = if std::net::TcpListener::bind("127.0.0.1:7001").is_ok()
        && std::net::TcpListener::bind("127.0.0.1:7002").is_ok()
        && std::net::TcpListener::bind("127.0.0.1:7003").is_ok()
    {
        ("127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003")
    } else {
        eprintln!("default ports busy; moving the dev server with SHOAL_* variables");
        ("127.0.0.1:23901", "127.0.0.1:23902", "127.0.0.1:23903")
    };
    let mut cmd = Command::new(SHOALD);
    if raft != "127.0.0.1:7001" {
        cmd.env("SHOAL_RAFT_ADDR", raft)
            .env("SHOAL_CLIENT_ADDR", client)
            .env("SHOAL_ADMIN_ADDR", admin);
    }
    let mut p = Proc {
        child: Some(
            cmd.current_dir(tmp.path())
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("spawn shoald"),
        ),
        stderr: log,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((200, _)) = http_get(admin, "/health") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no healthy dev server: {}",
            p.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    put(&[client], 0, 7, 1, "name", "shoal");
    assert_eq!(
        get(client, 0, "name", ReadMode::Linearizable),
        Some(b"shoal".to_vec())
    );
    assert!(tmp.path().join("shoal-data").join("identity").exists());
    let pid = p.child.as_ref().unwrap().id() as i32;
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = p.child.as_mut().unwrap().try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "shoald ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        st.success(),
        "exit after SIGTERM: {st:?}\n{}",
        p.stderr_text()
    );
}

/// A fourth node started empty with `--join` is added as an observer, catches up, is promoted,
/// and an old voter is removed; writes go on through the new configuration.
#[test]
fn a_joining_node_is_added_promoted_and_an_old_one_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let base = 24000;
    let n: Vec<NodeSpec> = (1..=4).map(|i| spec(base, i, root)).collect();
    let members: String = n[..3]
        .iter()
        .map(|s| format!("{}={}", s.id, s.raft))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs: Vec<Option<Proc>> = (0..3)
        .map(|i| Some(start(&n[i], &members, &[], root, "a")))
        .collect();
    procs.push(None);
    let all: Vec<(u64, &str)> = n.iter().map(|s| (s.id, s.client.as_str())).collect();
    wait_leader(&all[..3], 0);
    let addrs3: Vec<&str> = all[..3].iter().map(|a| a.1).collect();
    put(&addrs3, 0, 42, 1, "k24", "v24");
    // A fourth node joins as observer and is promoted; then an old node is removed.
    let hints = format!("{members},4={}", n[3].raft);
    procs[3] = Some(start(&n[3], &hints, &["--join"], root, "a"));
    let addrs: Vec<&str> = all[..3].iter().map(|a| a.1).collect();
    let r = call_any(
        &addrs,
        0,
        Request::ChangeMembers(MemberChange::Add {
            id: 4,
            raft_addr: n[3].raft.clone(),
            observer: false,
        }),
        "add node 4",
    );
    assert!(matches!(r, Response::Done { .. }), "add node 4: {r:?}");
    assert_eq!(
        get(all[3].1, 0, "k24", ReadMode::Linearizable),
        Some(b"v24".to_vec())
    );
    let leader = wait_leader(&all, 0);
    let s = status(all[(leader - 1) as usize].1, 0).unwrap();
    let m4 = s.members.iter().find(|m| m.id == 4).expect("node 4 listed");
    assert_eq!(m4.role, "voter", "{s:?}");
    let victim = [1u64, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    let r = call_any(
        &addrs,
        0,
        Request::ChangeMembers(MemberChange::Remove { id: victim }),
        "remove",
    );
    assert!(matches!(r, Response::Done { .. }), "remove {victim}: {r:?}");
    let s = status(all[(leader - 1) as usize].1, 0).unwrap();
    assert!(s.members.iter().all(|m| m.id != victim), "{s:?}");
    procs[(victim - 1) as usize].as_mut().unwrap().kill9();
    let live: Vec<(u64, &str)> = all.iter().copied().filter(|a| a.0 != victim).collect();
    let live_addrs: Vec<&str> = live.iter().map(|a| a.1).collect();
    put(&live_addrs, 0, 42, 26, "after-remove", "ok");

    drop(procs);
}

fn gauge(admin: &str, name: &str) -> usize {
    let (_, body) = http_get(admin, "/metrics").expect("metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

#[test]
fn a_client_that_leaves_its_answers_unread_is_not_read_either_and_bad_frames_are_refused() {
    const OUT_HIGH_WATER: usize = 4 << 20;
    const READ_BUFFER: usize = 64 << 10;
    const N: u64 = 100_000;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node = spec(24500, 1, root);
    let members = format!("1={}", node.raft);
    let _p = start(&node, &members, &[], root, "a");
    wait_leader(&[(1, node.client.as_str())], 0);
    let value = "v".repeat(1024);
    put(&[node.client.as_str()], 0, 7, 1, "big", &value);

    // 100 000 pipelined reads of a 1 KiB value (~100 MiB of answers), none of them read yet.
    let mut burst = Vec::new();
    for id in 1..=N {
        let get = Request::Get {
            key: b"big".to_vec(),
            mode: ReadMode::Lease,
        };
        protocol::encode(
            &RequestFrame {
                version: PROTOCOL_VERSION,
                id,
                group: 0,
                request: get,
            },
            &mut burst,
        )
        .unwrap();
    }
    let request_len = burst.len() / N as usize;
    let mut c = Conn::open(&node.client).unwrap();
    let mut w = c.s.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&burst));
    // The server answers until a connection holds 4 MiB of unread answers, then stops reading
    // it: at most one read buffer of requests more is answered.
    let answer_len = value.len() + 64;
    let bound = OUT_HIGH_WATER + (READ_BUFFER / request_len + 1) * answer_len;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut peak, mut stable_since, mut last) = (0, Instant::now(), usize::MAX);
    loop {
        let pending = gauge(&node.admin, "shoal_client_answer_bytes_pending");
        peak = peak.max(pending);
        if pending != last {
            (last, stable_since) = (pending, Instant::now());
        }
        if pending > OUT_HIGH_WATER && stable_since.elapsed() > Duration::from_millis(500) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "unread answers never settled above the mark: now {pending}, peak {peak}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        peak <= bound,
        "unread answers reached {peak} bytes; the bound is {bound}"
    );
    assert!(gauge(&node.admin, "shoal_client_requests_queued") <= READ_BUFFER / request_len + 1);
    // Reading the answers lets the rest of the burst in; every read is answered, in order.
    for id in 1..=N {
        let f = c.next_frame().unwrap();
        assert_eq!(f.id, id);
        match f.response {
            Response::Node { node: Some(n), .. } => assert_eq!(n.value.len(), value.len()),
            other => panic!("answer {id}: {other:?}"),
        }
    }
    writer.join().unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while gauge(&node.admin, "shoal_client_answer_bytes_pending") != 0 {
        assert!(Instant::now() < deadline, "answers stayed pending");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A frame that fails its checksum is answered with what was wrong, then the connection is
    // closed (the stream is out of step); the server goes on serving everyone else.
    let mut bad = Vec::new();
    protocol::encode(
        &RequestFrame {
            version: PROTOCOL_VERSION,
            id: 9,
            group: 0,
            request: Request::Status,
        },
        &mut bad,
    )
    .unwrap();
    let last_byte = bad.len() - 1;
    bad[last_byte] ^= 0xff;
    let mut b = Conn::open(&node.client).unwrap();
    b.s.write_all(&bad).unwrap();
    let f = b.next_frame().unwrap();
    match f.response {
        Response::Error { code, message, .. } => {
            assert_eq!(code, protocol::ErrorCode::BadRequest);
            assert!(message.contains("request frame refused"), "{message}");
            assert!(message.contains("CRC"), "{message}");
        }
        other => panic!("bad frame answered with {other:?}"),
    }
    assert_eq!(
        b.next_frame().map_err(|e| e.kind()).unwrap_err(),
        std::io::ErrorKind::UnexpectedEof
    );
    assert_eq!(
        get(&node.client, 0, "big", ReadMode::Linearizable),
        Some(value.into_bytes())
    );
    drop((c, b));
    let deadline = Instant::now() + Duration::from_secs(5);
    while gauge(&node.admin, "shoal_client_connections") != 0 {
        assert!(
            Instant::now() < deadline,
            "closed connections still counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Peer frames as an attacker on the raft port would write them: after a valid handshake
/// (claiming to be the leader), every kind of malformed frame the core refuses.
mod forged {
    use shoal_core::entry::{self, EntryRef};
    use shoal_core::handshake::Hello;
    use shoal_core::membership::{Membership, NodeSet};
    use shoal_core::message::{Append, Message, Snapshot, SnapshotHeader};
    use shoal_core::record::CRC32C;
    use shoal_core::wire::{self, Body, FrameHeader, WIRE_VERSION};
    use shoal_core::EntryKind;

    /// A term far above any the cluster reached: the frames are refused before it matters.
    pub const TERM: u64 = 1 << 40;

    pub fn frame(cluster_id: u64, from: u64, to: u64, body: Body, tail: &[u8]) -> Vec<u8> {
        let h = FrameHeader {
            version: WIRE_VERSION,
            cluster_id,
            group: 0,
            from,
            to,
        };
        let mut buf = vec![0u8; tail.len() + 1024];
        let n = wire::encode(&h, &body, tail, &mut buf).expect("a frame fits");
        buf.truncate(n);
        buf
    }

    pub fn hello(me: u64, to: u64, members: &[u64]) -> Body {
        Body::Hello(Hello {
            cluster_id: 1,
            node_id: me,
            expected_peer: to,
            group: 0,
            members: NodeSet::from_slice(members).expect("a few members"),
        })
    }

    pub fn append(count: u32) -> Body {
        Body::Raft(Message::Append(Append {
            term: TERM,
            prev_index: 0,
            prev_term: 0,
            commit: 0,
            count,
            read_seq: 0,
        }))
    }

    pub fn entries(list: &[(u64, u64, EntryKind, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(index, term, kind, data) in list {
            let e = EntryRef {
                index,
                term,
                kind,
                data,
            };
            let mut buf = vec![0u8; e.encoded_len()];
            entry::encode(&e, &mut buf).expect("sized to fit");
            out.extend_from_slice(&buf);
        }
        out
    }

    /// A one-chunk snapshot whose header's CRC does not match its data.
    pub fn corrupt_snapshot(members: &[u64], data: &[u8]) -> Body {
        Body::Raft(Message::Snapshot(Snapshot {
            term: TERM,
            meta: SnapshotHeader {
                index: 1 << 30,
                term: TERM,
                membership: Membership::new(members, &[]).expect("valid members"),
                size_bytes: data.len() as u64,
                crc: CRC32C.checksum(data) ^ 1,
            },
            offset: 0,
            done: true,
        }))
    }
}

fn refused(admin: &str, cause: &str) -> u64 {
    let (_, body) = http_get(admin, "/metrics").expect("metrics");
    let label = format!("shoal_refused_inputs_total{{group=\"0\",cause=\"{cause}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&label)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {label} in the metrics"))
}

#[test]
fn malformed_peer_frames_are_refused_and_the_node_keeps_serving() {
    use shoal_core::EntryKind;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let n: Vec<NodeSpec> = (1..=3).map(|i| spec(25500, i, root)).collect();
    let members: String = n
        .iter()
        .map(|s| format!("{}={}", s.id, s.raft))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs: Vec<Proc> = n
        .iter()
        .map(|s| start(s, &members, &[], root, "a"))
        .collect();
    let all: Vec<(u64, &str)> = n.iter().map(|s| (s.id, s.client.as_str())).collect();
    let addrs: Vec<&str> = all.iter().map(|a| a.1).collect();
    let leader = wait_leader(&all, 0);
    put(&addrs, 0, 9, 1, "before", "1");
    let target = n.iter().find(|s| s.id != leader).unwrap();

    // Claim to be the leader on the target's raft port: the handshake checks membership only.
    let mut s = TcpStream::connect(&target.raft).unwrap();
    let hello = forged::hello(leader, target.id, &[1, 2, 3]);
    s.write_all(&forged::frame(1, leader, target.id, hello, &[]))
        .unwrap();
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    let mut rest = vec![0u8; u32::from_le_bytes(head) as usize + 4];
    s.read_exact(&mut rest).unwrap();
    let to = target.id;
    let config = forged::entries(&[(1, 1, EntryKind::Config, &[0xFF])]);
    let skip = forged::entries(&[
        (1, 1, EntryKind::Normal, b"a"),
        (3, 1, EntryKind::Normal, b"b"),
    ]);
    let future = forged::entries(&[(1, forged::TERM + 1, EntryKind::Normal, b"a")]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // The frame of issue 13: one entry declared, none sent. It used to stop shoald.
        (
            "entry_count",
            forged::frame(1, leader, to, forged::append(1), &[]),
        ),
        (
            "bad_config_entry",
            forged::frame(1, leader, to, forged::append(1), &config),
        ),
        (
            "not_contiguous",
            forged::frame(1, leader, to, forged::append(2), &skip),
        ),
        (
            "impossible_term",
            forged::frame(1, leader, to, forged::append(1), &future),
        ),
        (
            "snapshot_checksum",
            forged::frame(
                1,
                leader,
                to,
                forged::corrupt_snapshot(&[1, 2, 3], b"x"),
                b"x",
            ),
        ),
        (
            "wrong_cluster",
            forged::frame(2, leader, to, forged::append(0), &[]),
        ),
        (
            "wrong_node",
            forged::frame(1, leader, 99, forged::append(0), &[]),
        ),
    ];
    for (cause, bytes) in &cases {
        assert_eq!(refused(&target.admin, cause), 0, "{cause} before");
        s.write_all(bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while refused(&target.admin, cause) == 0 {
            assert!(Instant::now() < deadline, "{cause} was never counted");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // A frame that does not even decode (its CRC is wrong) is dropped as well.
    let mut torn = forged::frame(1, leader, to, forged::append(0), &[]);
    let last = torn.len() - 1;
    torn[last] ^= 0xFF;
    s.write_all(&torn).unwrap();

    // The target is alive, never took the forged frames' term, and serves reads and writes.
    for p in procs.iter_mut() {
        let exited = p.child.as_mut().unwrap().try_wait().unwrap();
        assert!(
            exited.is_none(),
            "a node stopped: {exited:?}\n{}",
            p.stderr_text()
        );
    }
    put(&addrs, 0, 9, 2, "after", "2");
    assert_eq!(
        get(&target.client, 0, "after", ReadMode::Linearizable),
        Some(b"2".to_vec())
    );
    assert!(status(&target.client, 0).unwrap().term < forged::TERM);
    drop(s);
    drop(procs);
}
