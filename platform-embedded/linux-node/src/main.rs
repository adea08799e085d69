//! `shoal-embedded-node`: the `shoal-embedded` runtime as a Linux process, speaking `shoald`'s
//! peer protocol over TCP, so that a node built from the microcontroller stack can be a voting
//! member of a cluster of `shoald` servers.
//!
//! What runs is the same code a board runs: [`Runtime`] with the core's driver, DtKV as state
//! machine, [`FlashStorage`] (here over a flash partition kept in a file, or in memory) and
//! plain framed links ([`Framing::Plain`]). Only the sockets are
//! Linux-specific, and they follow `shoald` (`platform-std/src/server/net.rs`):
//!
//! - connections are one-way: this node *dials* every peer to send to it and *reads* from the
//!   connections peers dialed;
//! - on a dialed connection the dialer sends a `Hello` naming the peer it expects and waits for
//!   the peer's accepting `Hello` (`expected_peer` = `NO_NODE`); the runtime drives that side
//!   (the reply is fed back into the link's receive half, the runtime's handshake checks it);
//! - on an accepted connection the first frame must be the peer's dialing `Hello`; this process
//!   checks it with [`handshake::check`] and answers on the same connection with an accepting
//!   `Hello` (or `HelloRefused`), then hands every later frame to the link's receive half;
//! - frames are `shoal_core::wire` frames back to back (a 4-byte little-endian body length
//!   first; length, version and CRC-32C add 8 bytes).
//!
//! Flags: `--node-id N --cluster-id N --listen HOST:PORT --peer ID=HOST:PORT ...` (one to
//! [`LINKS`] peers: group 0 is bootstrapped with the members `{self, peers}`),
//! optional `--election-timeout MS` (default 1000), `--heartbeat-interval MS` (default 100),
//! `--kv-max-nodes N` (default 4096), `--kv-arena-mb MIB` (default 4), `--report-dir KEY` and
//! `--flash-file PATH`: the flash partition (8 MiB) in a file, created erased and formatted on
//! the first start and recovered on every later one (without it the partition is in memory and
//! the state is lost when the process exits; see `file_flash`), and `--psk-file PATH`: the
//! cluster key (as `shoald --peer-psk-file` reads it); each TCP connection is then a sealed link
//! (`shoal-seal`), as in `shoald`, and refused ones are counted in `STATUS ... sealed_refused=`.
//!
//! Members added later are learned from the cluster's member records (`__shoal.members.<id>`
//! in DtKV, which this node applies like every replica): a member with a record and no link
//! gets a free link slot and is dialed at the record's raft address; a peer that has left the
//! configuration and whose record was removed gives its slot back.
//!
//! Output on stdout, one line each, read by tests: `BOOT node=.. formatted|recovered
//! last_index=.. term=..`, `READY`, `ROLE role=.. term=.. leader=..`, `LINK node=.. addr=..`
//! and `UNLINK node=..` as peers are learned and dropped,
//! every 200 ms `STATUS node=.. role=.. term=.. leader=.. commit=.. applied=.. nodes=..
//! digest=0x.. members=1,2,3 records=1,2,3 links=1,2` (DtKV node count and digest at the
//! applied index, the configuration's members, the member records, the peers whose link passed
//! its handshake) and, when `--report-dir` is given and the applied index moved, `ENTRY key
//! value` for each child of that directory followed by `ENTRIES n`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read as _, Write as _};
use std::mem::MaybeUninit;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use shoal_core::driver::{Event, NodeConfig};
use shoal_core::handshake::{self, Hello};
use shoal_core::limits::Config;
use shoal_core::membership::Membership;
use shoal_core::storage::{LogView, Storage};
use shoal_core::types::{NodeId, NO_NODE};
use shoal_core::wire::{self, Body, FrameHeader};
use shoal_embedded::flash::{FlashStorage, Layout};
use shoal_embedded::link::{FrameRx, FrameTx, Framing};
use shoal_embedded::runtime::{Mesh, Runtime};
use shoal_kv::system::{record_id, MemberRecord, MEMBERS_DIR};
use shoal_kv::{DtKv, Element, EventSlot, KvLimits, KvSlices, NodeSlot, SessionSlot, WaiterSlot};
use shoal_seal::{ClusterKey, Link, Nonce, Order, Received, HANDSHAKE_FRAME_BYTES};

mod conn;
mod file_flash;
use conn::{Conn, Pipe, Unsealed};
use file_flash::{Durable, FileFlash, SyncFile};

/// Link slots: the peers named by `--peer`, then members learned from their records (a group
/// of five at most).
const LINKS: usize = 4;
/// Send ring per link: the largest append `Config::server()` sends, with room.
const TX: usize = 2 << 20;
/// Receive buffer per link: the largest frame a `shoald` peer sends (1 MiB appends, 256 KiB
/// snapshot chunks) with room.
const RX: usize = 2 << 20;
/// Stand-in flash: sector size.
const SECTOR: usize = 64 << 10;
/// Stand-in flash: sectors (2 hard state, 2 snapshot slots of 8, the rest log ring).
const SECTORS: usize = 128;
/// The driver's frame buffer.
const FRAME_BYTES: usize = 2 << 20;
/// Largest frame read from a socket (`shoald`'s limit).
const MAX_FRAME: usize = 64 << 20;
/// Time between dial attempts to a peer that is down.
const REDIAL_MS: u64 = 200;

/// The storage type: `FlashStorage` over a flash partition in a file (`--flash-file`) or in
/// memory, synced to the disk at every storage sync.
type Store = Durable<SECTOR, 4, SECTORS>;
/// The runtime type.
type Rt = Runtime<'static, Store, Pipe, Pipe, LINKS, TX, RX>;

/// One link slot: its peer (`NO_NODE`: free) and where to dial it, the link's pipes, and the
/// two one-way connections.
struct Peer {
    id: NodeId,
    addr: String,
    tx: Pipe,
    rx: Pipe,
    dialed: Option<Conn>,
    /// Bytes taken from `tx` not yet written to `dialed`.
    out: VecDeque<u8>,
    accepted: Option<Conn>,
    next_dial_ms: u64,
}

impl Peer {
    fn new(id: NodeId, addr: String) -> Peer {
        Peer {
            id,
            addr,
            tx: Pipe::default(),
            rx: Pipe::default(),
            dialed: None,
            out: VecDeque::new(),
            accepted: None,
            next_dial_ms: 0,
        }
    }

    /// Give the slot to `id` at `addr` (`NO_NODE`: free it); its pipes stay the link's.
    fn rebind(&mut self, id: NodeId, addr: String) {
        self.id = id;
        self.addr = addr;
        self.dialed = None;
        self.accepted = None;
        self.out.clear();
        self.tx.0.borrow_mut().clear();
        self.rx.0.borrow_mut().clear();
        self.next_dial_ms = 0;
    }
}

/// Command-line options.
struct Args {
    node_id: NodeId,
    cluster_id: u64,
    listen: String,
    peers: Vec<(NodeId, String)>,
    election_ms: u64,
    heartbeat_ms: u64,
    kv_max_nodes: usize,
    kv_arena_mb: usize,
    report_dir: Option<String>,
    flash_file: Option<PathBuf>,
    psk_file: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        node_id: 0,
        cluster_id: 0,
        listen: String::new(),
        peers: Vec::new(),
        election_ms: 1000,
        heartbeat_ms: 100,
        kv_max_nodes: 4096,
        kv_arena_mb: 4,
        report_dir: None,
        flash_file: None,
        psk_file: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--node-id" => a.node_id = num(value()?)?,
            "--cluster-id" => a.cluster_id = num(value()?)?,
            "--listen" => a.listen = value()?,
            "--peer" => {
                let v = value()?;
                let (id, addr) = v
                    .split_once('=')
                    .ok_or(format!("--peer {v}: expected ID=HOST:PORT"))?;
                a.peers.push((num(id.to_string())?, addr.to_string()));
            }
            "--election-timeout" => a.election_ms = num(value()?)?,
            "--heartbeat-interval" => a.heartbeat_ms = num(value()?)?,
            "--kv-max-nodes" => a.kv_max_nodes = num(value()?)? as usize,
            "--kv-arena-mb" => a.kv_arena_mb = num(value()?)? as usize,
            "--report-dir" => a.report_dir = Some(value()?),
            "--flash-file" => a.flash_file = Some(PathBuf::from(value()?)),
            "--psk-file" => a.psk_file = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.node_id == 0 || a.listen.is_empty() || a.peers.is_empty() || a.peers.len() > LINKS {
        return Err(format!(
            "need --node-id, --listen and one to {LINKS} --peer ID=HOST:PORT"
        ));
    }
    Ok(a)
}

fn leak<T: Clone>(v: T, n: usize) -> &'static mut [T] {
    Vec::leak(vec![v; n])
}

/// DtKV in leaked heap buffers, at `shoald`'s limits with the given node count and arena.
fn dtkv(a: &Args) -> Result<DtKv<KvSlices<'static>>, String> {
    let mut limits = KvLimits::server();
    limits.max_nodes = a.kv_max_nodes;
    limits.arena_bytes = a.kv_arena_mb << 20;
    // As shoald sizes it (platform-std/src/server/raftloop.rs).
    limits.event_bytes = limits.event_bytes.min(
        limits
            .arena_bytes
            .max(limits.max_key_bytes + limits.max_value_bytes),
    );
    limits.validate().map_err(|e| format!("DtKV limits: {e}"))?;
    let mem = KvSlices {
        nodes: leak(NodeSlot::EMPTY, limits.nodes_len()),
        words: leak(0, limits.words_len()),
        bytes: leak(0, limits.bytes_len()),
        sessions: leak(SessionSlot::EMPTY, limits.sessions_len()),
        waiters: leak(WaiterSlot::EMPTY, limits.waiters_len()),
        events: leak(EventSlot::EMPTY, limits.events_len()),
    };
    DtKv::new(mem, limits).map_err(|e| format!("DtKV: {e}"))
}

/// Build the runtime in a leaked heap slot (it holds megabytes of link buffers).
fn start(a: &Args, peers: &[Peer]) -> Result<&'static mut Rt, String> {
    let layout = Layout::new(0, SECTORS as u32, 8);
    let (flash, existed) = match &a.flash_file {
        Some(path) => FileFlash::open(path, SECTOR * SECTORS)?,
        None => (FileFlash::in_memory(SECTOR * SECTORS), false),
    };
    let opened = if existed {
        FlashStorage::open(flash, layout)
    } else {
        FlashStorage::format(flash, layout)
    };
    let store = Durable::new(opened.map_err(|e| format!("flash: {e}"))?, SyncFile);
    println!(
        "BOOT node={} {} last_index={} term={}",
        a.node_id,
        if existed { "recovered" } else { "formatted" },
        store.last_index(),
        store.hard_state().term
    );
    let kv = dtkv(a)?;
    let mut raft = Config::server();
    raft.election_timeout_ms = a.election_ms;
    raft.heartbeat_interval_ms = a.heartbeat_ms;
    let cfg = NodeConfig {
        cluster_id: a.cluster_id,
        group: 0,
        node_id: a.node_id,
        raft,
        seed: a.node_id ^ Instant::now().elapsed().as_nanos() as u64 ^ std::process::id() as u64,
    };
    let mut ids: Vec<NodeId> = a.peers.iter().map(|p| p.0).collect();
    ids.push(a.node_id);
    ids.sort_unstable();
    let members = Membership::new(&ids, &[]).map_err(|e| format!("members: {e}"))?;
    let mesh = Mesh::new(
        core::array::from_fn(|i| peers[i].id),
        core::array::from_fn(|i| FrameTx::new(peers[i].tx.clone(), Framing::Plain)),
    );
    let rx = core::array::from_fn(|i| FrameRx::new(peers[i].rx.clone(), Framing::Plain));
    let layout = std::alloc::Layout::new::<MaybeUninit<Rt>>();
    // SAFETY: a non-zero-sized layout; the pointer is checked, never freed (the slot lives for
    // the process) and only used as an uninitialised slot.
    let slot = unsafe {
        let p = std::alloc::alloc(layout) as *mut MaybeUninit<Rt>;
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        &mut *p
    };
    let frame_buf = leak(0u8, FRAME_BYTES);
    let (mesh, rx) = (Box::leak(Box::new(mesh)), Box::leak(Box::new(rx)));
    Runtime::init(slot, cfg, store, kv, frame_buf, mesh, rx, 1, Some(&members))
        .map_err(|e| format!("start: {e}"))
}

fn encode(a: &Args, to: NodeId, body: &Body) -> Vec<u8> {
    let header = FrameHeader::new(a.cluster_id, 0, a.node_id, to);
    let mut buf = vec![0u8; 2048];
    let n = wire::encode(&header, body, &[], &mut buf).expect("a handshake frame fits 2 KiB");
    buf.truncate(n);
    buf
}

/// The accepting side of `shoald`'s handshake on a connection a peer dialed: `Some(peer index)`
/// once the peer's `Hello` passed and was answered.
fn accept_hello(a: &Args, rt: &Rt, peers: &[Peer], c: &mut Conn, frame: &[u8]) -> Option<usize> {
    let remote = match wire::decode(frame) {
        Ok((f, _)) => match f.body {
            Body::Hello(h) => h,
            _ => {
                eprintln!("accepted connection: the first frame was not a Hello");
                return None;
            }
        },
        Err(e) => {
            eprintln!("accepted connection: bad first frame: {e}");
            return None;
        }
    };
    let local = Hello {
        cluster_id: a.cluster_id,
        node_id: a.node_id,
        expected_peer: NO_NODE,
        group: 0,
        members: rt.node().raft().membership().all(),
    };
    let index = peers.iter().position(|p| p.id == remote.node_id);
    let answer = match (handshake::check(&local, &remote), index) {
        (Ok(()), Some(_)) => Body::Hello(local),
        (Err(e), _) => {
            eprintln!("refused the handshake of node {}: {e}", remote.node_id);
            Body::HelloRefused(reason(&e.to_string()))
        }
        (Ok(()), None) => {
            eprintln!("refused node {}: not a peer of this node", remote.node_id);
            Body::HelloRefused(reason("not a peer of this node"))
        }
    };
    let refused = matches!(answer, Body::HelloRefused(_));
    let mut out = VecDeque::new();
    c.seal_frames(&encode(a, remote.node_id, &answer), &mut out);
    let written = c.send_now(out.make_contiguous());
    if written.is_err() || refused {
        return None;
    }
    index
}

fn reason(s: &str) -> heapless::String<160> {
    let mut r = heapless::String::new();
    for ch in s.chars() {
        if r.push(ch).is_err() {
            break;
        }
    }
    r
}

fn run(a: Args) -> Result<(), String> {
    let listener =
        TcpListener::bind(&a.listen).map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    let mut peers: Vec<Peer> = (0..LINKS)
        .map(|i| match a.peers.get(i) {
            Some((id, addr)) => Peer::new(*id, addr.clone()),
            None => Peer::new(NO_NODE, String::new()),
        })
        .collect();
    let key = match &a.psk_file {
        Some(path) => {
            let text =
                std::fs::read(path).map_err(|e| format!("--psk-file {}: {e}", path.display()))?;
            Some(
                ClusterKey::from_hex(&text)
                    .map_err(|e| format!("--psk-file {}: {e}", path.display()))?,
            )
        }
        None => None,
    };
    let link_to = |peer: NodeId| {
        key.as_ref()
            .map(|k| Link::new(k.clone(), a.cluster_id, a.node_id, peer, Order::Stream))
    };
    let mut sealed_refused = 0u64;
    let rt = start(&a, &peers)?;
    println!("READY node={} listen={}", a.node_id, a.listen);
    let epoch = Instant::now();
    let mut pending: Vec<Conn> = Vec::new();
    let mut next_status_ms = 0;
    let mut reported_applied = u64::MAX;
    loop {
        let now = epoch.elapsed().as_millis() as u64 + 1;
        // Connections peers dialed: the first frame is their Hello.
        while let Ok((stream, _)) = listener.accept() {
            if let Ok(c) = Conn::new(stream, link_to(NO_NODE)) {
                pending.push(c);
            }
        }
        let mut still = Vec::new();
        'conns: for mut c in pending.drain(..) {
            let frames = match c.read_frames() {
                Ok(frames) => frames,
                Err(_) => continue,
            };
            // Through the sealed handshake (if any) to the first wire frame, the peer's Hello.
            let mut wire_frames = Vec::new();
            for f in frames {
                match c.unseal(f) {
                    Ok(Unsealed::Frame(w)) => wire_frames.push(w),
                    Ok(Unsealed::Handshake { .. }) => {}
                    Err(why) => {
                        sealed_refused += 1;
                        eprintln!("SEAL_REFUSED accepted connection: {why}");
                        continue 'conns;
                    }
                }
            }
            if wire_frames.is_empty() {
                still.push(c);
                continue;
            }
            if let Some(i) = accept_hello(&a, rt, &peers, &mut c, &wire_frames[0]) {
                let mut q = peers[i].rx.0.borrow_mut();
                for f in &wire_frames[1..] {
                    q.extend(f);
                }
                drop(q);
                peers[i].accepted = Some(c);
            }
        }
        pending = still;
        for (i, p) in peers.iter_mut().enumerate() {
            if p.id == NO_NODE {
                continue;
            }
            if p.dialed.is_none() && now >= p.next_dial_ms {
                p.next_dial_ms = now + REDIAL_MS;
                let addr = p.addr.to_socket_addrs().ok().and_then(|mut s| s.next());
                let dialed = addr
                    .and_then(|s| TcpStream::connect_timeout(&s, Duration::from_millis(200)).ok())
                    .and_then(|s| Conn::new(s, link_to(p.id)).ok())
                    .and_then(|mut c| c.dial_sealed().ok().map(|()| c));
                if let Some(c) = dialed {
                    // A new connection: the runtime sends a dialing Hello before any Raft frame.
                    p.out.clear();
                    p.tx.0.borrow_mut().clear();
                    rt.link_reset(i);
                    p.dialed = Some(c);
                }
            }
            // Only whole frames go into the link, from either connection, so they never mix.
            for conn in [&mut p.dialed, &mut p.accepted] {
                let Some(c) = conn else { continue };
                let frames = match c.read_frames() {
                    Ok(frames) => frames,
                    Err(_) => {
                        *conn = None;
                        continue;
                    }
                };
                for f in frames {
                    match c.unseal(f) {
                        Ok(Unsealed::Frame(w)) => p.rx.0.borrow_mut().extend(&w),
                        Ok(Unsealed::Handshake { opened: true }) => {
                            // The sealed link opened: the runtime's Hello goes first on it.
                            p.out.clear();
                            p.tx.0.borrow_mut().clear();
                            rt.link_reset(i);
                        }
                        Ok(Unsealed::Handshake { opened: false }) => {}
                        Err(why) => {
                            sealed_refused += 1;
                            eprintln!("SEAL_REFUSED node={}: {why}", p.id);
                            *conn = None;
                            break;
                        }
                    }
                }
            }
            if p.dialed.is_none() && rt.link_established(i) {
                rt.link_reset(i);
            }
        }
        let mut applied_event = false;
        rt.poll(now, &mut |ev| match ev {
            Event::RoleChanged { role, term, leader } => {
                println!("ROLE role={} term={term} leader={leader}", role.name());
            }
            Event::Applied { .. } => applied_event = true,
            _ => {}
        })
        .map_err(|e| format!("node stopped: {e}"))?;
        let mut sent = false;
        for p in peers.iter_mut() {
            let plain: Vec<u8> = p.tx.0.borrow_mut().drain(..).collect();
            match &mut p.dialed {
                Some(c) => {
                    c.seal_frames(&plain, &mut p.out);
                    let before = p.out.len();
                    if c.write_some(&mut p.out).is_err() {
                        p.dialed = None;
                    }
                    sent |= p.out.len() != before;
                }
                None => p.out.clear(),
            }
        }
        if now >= next_status_ms {
            next_status_ms = now + 200;
            learn_peers(&a, rt, &mut peers);
            report(&a, rt, &peers, &mut reported_applied, sealed_refused);
        }
        if !applied_event && !sent {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The member records in this node's DtKV: `(id, raft address)`, ascending by id.
fn member_records(rt: &Rt) -> Vec<(NodeId, String)> {
    let mut out = Vec::new();
    let _ = rt.node().state_machine().list(MEMBERS_DIR, |v| {
        let id = record_id(v.key, MEMBERS_DIR);
        match (id, MemberRecord::decode(v.value)) {
            (Some(id), Ok(r)) => out.push((id, r.raft_addr.to_string())),
            (_, r) => eprintln!(
                "ignoring {}: not a member record ({:?})",
                String::from_utf8_lossy(v.key),
                r.err()
            ),
        }
    });
    out.sort();
    out
}

/// Follow the member records: a member with a record and no link gets a free slot, dialed at
/// the record's raft address; a peer whose record moved is dialed at the new address; a slot
/// whose peer has neither a record nor a place in the configuration is freed.
fn learn_peers(a: &Args, rt: &mut Rt, peers: &mut [Peer]) {
    let mut records = member_records(rt);
    records.retain(|(id, _)| *id != a.node_id);
    let members = rt.node().raft().membership().all();
    for (i, p) in peers.iter_mut().enumerate() {
        if p.id == NO_NODE {
            continue;
        }
        match records.iter().find(|(id, _)| *id == p.id) {
            Some((id, addr)) if *addr != p.addr => {
                println!("LINK node={id} addr={addr}");
                p.rebind(*id, addr.clone());
                rt.assign_link(i, *id);
            }
            None if !members.contains(&p.id) => {
                println!("UNLINK node={}", p.id);
                p.rebind(NO_NODE, String::new());
                rt.assign_link(i, NO_NODE);
            }
            _ => {}
        }
    }
    for (id, addr) in records {
        if peers.iter().any(|p| p.id == id) {
            continue;
        }
        match peers.iter().position(|p| p.id == NO_NODE) {
            Some(i) => {
                println!("LINK node={id} addr={addr}");
                peers[i].rebind(id, addr);
                rt.assign_link(i, id);
            }
            None => {
                eprintln!("no free link for node {id}: this node links to {LINKS} peers at most")
            }
        }
    }
}

fn ids(list: impl IntoIterator<Item = NodeId>) -> String {
    list.into_iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Print `STATUS` and, when the applied index moved, the `--report-dir` listing.
fn report(a: &Args, rt: &mut Rt, peers: &[Peer], reported_applied: &mut u64, sealed_refused: u64) {
    let records = member_records(rt);
    let links: Vec<NodeId> = (0..LINKS)
        .filter(|&i| peers[i].id != NO_NODE && rt.link_established(i))
        .map(|i| peers[i].id)
        .collect();
    let node = rt.node();
    let raft = node.raft();
    let kv = node.state_machine();
    let mut out = io::stdout().lock();
    let _ = writeln!(
        out,
        "STATUS node={} role={} term={} leader={} commit={} applied={} nodes={} digest={:#018x} members={} records={} links={} sealed_refused={}",
        a.node_id,
        raft.role().name(),
        raft.term(),
        raft.leader(),
        raft.commit(),
        node.applied(),
        kv.node_count(),
        kv.digest(),
        ids(raft.membership().all()),
        ids(records.iter().map(|r| r.0)),
        ids(links),
        sealed_refused
    );
    if let Some(dir) = &a.report_dir {
        if *reported_applied != node.applied() {
            *reported_applied = node.applied();
            let n = kv.list(dir.as_bytes(), |v| {
                let _ = writeln!(
                    out,
                    "ENTRY {} {}",
                    String::from_utf8_lossy(v.key),
                    String::from_utf8_lossy(v.value)
                );
            });
            let _ = writeln!(out, "ENTRIES {}", n.unwrap_or(0));
        }
    }
    let _ = out.flush();
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shoal-embedded-node: {e}");
            std::process::exit(2);
        }
    };
    // The runtime's constructors hold the driver on the stack for a moment: give them room.
    let worker = std::thread::Builder::new()
        .name("shoal-embedded-node".into())
        .stack_size(256 << 20)
        .spawn(move || run(args));
    match worker.map(|h| h.join()) {
        Ok(Ok(Err(e))) => {
            eprintln!("shoal-embedded-node: {e}");
            std::process::exit(1);
        }
        Ok(Ok(Ok(()))) => {}
        _ => std::process::exit(1),
    }
}
