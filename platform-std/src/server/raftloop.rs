//! The raft thread: owns every group (driver, storage, DtKV, pending client requests) and runs
//! the batch loop — wait for one input, drain every input that is ready, tick, then `flush` each
//! group **once** (group commit) and answer whatever the flush decided.
//!
//! Client connections are served on this thread too ([`super::clients`]): their reader tasks
//! run on a local executor between batches and queue decoded requests in the hub; answers are
//! encoded into each connection's buffer and written once per batch. Peer frames arrive through
//! a channel from the peer threads ([`super::net`]). The only blocking call is the storage sync
//! of a flush, and while it runs the kernel keeps gathering the next batch in socket buffers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_io::{Async, Timer};
use futures_lite::StreamExt;
use smol::channel::{Receiver, Sender};
use smol::LocalExecutor;

use shoal_client::protocol::{
    ErrorCode, MemberChange, MemberInfo, NodeInfo, ReadMode, Request, RequestFrame, Response,
    StatusInfo, WatchEvent, WriteOp, PROTOCOL_VERSION,
};
use shoal_core::driver::{Event, Node, NodeConfig, NodeError, NodeParts};
use shoal_core::fault::{Fault, FaultLog, Severity};
use shoal_core::membership::{Membership, NodeSet};
use shoal_core::raft::{ConfigChange, ProposeError, ReadError, SyncPoint};
use shoal_core::wire;
use shoal_core::{GroupId, LogIndex, NodeId, Role, Term, NO_NODE};
use shoal_kv::{in_subtree, Command, EventKind, Keys, KvError, NodeView, Op, Pairs, WatchError};

use super::addrbook::AddrBook;
use super::admin::{AdminView, GroupView, PeerView};
use super::clients::{self, ClientInput, Hub, Reply};
use super::config::{parse_addr_pair, ServerConfig};
use super::kvsm::{encode_addr_entry, GroupOutput, KvSm, MemberAddr};
use super::net::{Net, PeerFrame, PeerTransport};
use super::timed::{Histogram, TimedStorage};
use crate::storage::{group_dir, BackgroundSync, DataDir, FsyncMode, StorageOptions};

type GroupNode = Node<TimedStorage, PeerTransport, KvSm, Vec<u8>>;

/// Bytes of each group's frame/apply buffer: the largest entry plus framing.
const NODE_BUF_BYTES: usize = (1 << 20) + 8192;
/// Shortest time between two expiry proposals of one group.
const EXPIRE_EVERY_MS: u64 = 50;
/// Background log fdatasyncs one group may have running at once (and threads running them).
const MAX_SYNCS_INFLIGHT: usize = 2;
/// Milliseconds between two ticks of every group.
const TICK_MS: u64 = 5;
/// Most inputs handled before a flush (bounds latency under a flood).
const MAX_BATCH_INPUTS: usize = 16384;
/// Events of one flush above which the freed heap is handed back to the OS afterwards (a
/// catch-up applying a long log at once; ~170 bytes each).
const TRIM_AFTER_EVENTS: usize = 20_000;

enum ReadReq {
    Get(Vec<u8>),
    BatchGet(Vec<Vec<u8>>),
    List(Vec<u8>),
}

struct Watch {
    reply: Reply,
    keys: Vec<Vec<u8>>,
    next: LogIndex,
}

#[derive(Clone, Copy, Debug)]
enum Step {
    AddObserver(NodeId),
    Promote(NodeId),
    Remove(NodeId),
    Commit,
    CatchUp(NodeId),
}

struct MemberOp {
    reply: Reply,
    steps: VecDeque<Step>,
    waiting: Option<(LogIndex, Term)>,
    /// The last step's committed index: a new member has caught up once it matches it.
    done_index: LogIndex,
    started: Instant,
}

struct Group {
    id: GroupId,
    node: GroupNode,
    book: AddrBook,
    pending_writes: HashMap<LogIndex, (Term, Reply)>,
    index_reads: VecDeque<(u64, Reply, ReadReq)>,
    lease_reads: Vec<(LogIndex, Reply, ReadReq)>,
    watches: Vec<Watch>,
    member_op: Option<MemberOp>,
    last_expire_ms: u64,
    expire_index: LogIndex,
    proposals: u64,
    /// Background fdatasyncs of this group's log running now.
    syncs_inflight: usize,
    /// The last index a background sync was started for.
    sync_started_upto: LogIndex,
    dir: PathBuf,
}

/// An fdatasync the raft thread hands to the sync thread.
struct SyncJob {
    group: GroupId,
    at: SyncPoint,
    sync: BackgroundSync,
}

/// A finished [`SyncJob`].
struct SyncDone {
    job: SyncJob,
    result: Result<(), String>,
}

/// Start the threads that run the leaders' log fdatasyncs (fsync `always`), so a leader keeps
/// taking and replicating writes while its disk syncs the previous batches.
fn start_sync_thread(
    hist: Arc<Histogram>,
) -> Result<(Sender<SyncJob>, Receiver<SyncDone>), String> {
    let (job_tx, job_rx) = smol::channel::unbounded::<SyncJob>();
    let (done_tx, done_rx) = smol::channel::unbounded::<SyncDone>();
    for i in 0..MAX_SYNCS_INFLIGHT {
        let (job_rx, done_tx, hist) = (job_rx.clone(), done_tx.clone(), hist.clone());
        std::thread::Builder::new()
            .name(format!("shoal-fsync-{i}"))
            .spawn(move || {
                while let Ok(job) = job_rx.recv_blocking() {
                    let t = Instant::now();
                    let result = job.sync.run();
                    hist.observe_us(t.elapsed().as_micros() as u64);
                    if done_tx.send_blocking(SyncDone { job, result }).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| format!("cannot start an fsync thread: {e}"))?;
    }
    Ok((job_tx, done_rx))
}

/// Everything the raft thread owns.
pub struct RaftLoop {
    cfg: ServerConfig,
    data: DataDir,
    net: Arc<Net>,
    rx: Receiver<PeerFrame>,
    /// Client connections and their queued requests.
    hub: Rc<Hub>,
    /// Log fdatasyncs for the sync threads, and their results.
    sync_jobs: Sender<SyncJob>,
    synced: Receiver<SyncDone>,
    /// Boxed (and built in the box): a `Group` holds its driver inline (tens of KiB), and a
    /// B-tree node of inline values made every insert/remove use a stack frame of hundreds of
    /// KiB.
    groups: BTreeMap<GroupId, Box<Group>>,
    start: Instant,
    fsync_hist: Arc<Histogram>,
    admin: Arc<Mutex<AdminView>>,
    last_view: Instant,
    last_sizes: Instant,
    sizes: HashMap<GroupId, (u64, u64)>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    draining: bool,
    /// Peer frames refused before they reached a group (they do not decode, or name a group
    /// this node does not host); each group's driver counts its own.
    peer_faults: FaultLog,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn unavailable(msg: &str) -> Response {
    Response::Unavailable {
        message: msg.to_string(),
    }
}

fn error(code: ErrorCode, message: String) -> Response {
    Response::Error {
        code,
        kv: None,
        message,
    }
}

fn kv_error(e: KvError) -> Response {
    Response::Error {
        code: ErrorCode::Kv,
        kv: Some(e),
        message: e.to_string(),
    }
}

fn node_info(v: &NodeView<'_>) -> NodeInfo {
    NodeInfo {
        key: v.key.to_vec(),
        kind: v.kind,
        value: v.value.to_vec(),
        create_index: v.create_index,
        update_index: v.update_index,
        owner: v.owner,
        deadline_ms: v.deadline_ms,
        fence: v.fence,
        count: v.count,
    }
}

fn event_kind_name(k: EventKind) -> &'static str {
    match k {
        EventKind::Put => "put",
        EventKind::Remove => "remove",
        EventKind::Mkdir => "mkdir",
        EventKind::Expired => "expire",
        EventKind::TtlUpdated => "ttl-updated",
        EventKind::LockAcquired => "lock-acquired",
        EventKind::LockQueued => "lock-queued",
        EventKind::LockReleased => "lock-released",
        EventKind::LockExpired => "lock-expired",
        EventKind::LockWaitDropped => "lock-wait-dropped",
        EventKind::LeaseUpdated => "lease-updated",
    }
}

/// The role name used by status and metrics.
pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
        Role::Observer => "observer",
    }
}

fn serve_read(sm: &KvSm, req: &ReadReq) -> Response {
    let kv = sm.store();
    let index = kv.applied_index_public();
    match req {
        ReadReq::Get(key) => match kv.get(key) {
            Ok(v) => Response::Node {
                index,
                node: Some(node_info(&v)),
            },
            Err(KvError::NotFound) => Response::Node { index, node: None },
            Err(e) => kv_error(e),
        },
        ReadReq::BatchGet(keys) => {
            let mut nodes = Vec::with_capacity(keys.len());
            let mut failed = None;
            kv.batch_get(keys.iter().map(|k| k.as_slice()), |_, r| match r {
                Ok(v) => nodes.push(Some(node_info(&v))),
                Err(KvError::NotFound) => nodes.push(None),
                Err(e) => {
                    failed.get_or_insert(e);
                    nodes.push(None)
                }
            });
            match failed {
                Some(e) => kv_error(e),
                None => Response::Nodes { index, nodes },
            }
        }
        ReadReq::List(key) => {
            let mut children = Vec::new();
            match kv.list(key, |v| children.push(node_info(&v))) {
                Ok(_) => Response::Children { index, children },
                Err(e) => kv_error(e),
            }
        }
    }
}

/// `applied_index` through the trait, under a name that does not need the trait in scope.
trait AppliedIndex {
    fn applied_index_public(&self) -> LogIndex;
}
impl<M: shoal_kv::KvMemory> AppliedIndex for shoal_kv::DtKv<M> {
    fn applied_index_public(&self) -> LogIndex {
        shoal_core::io::StateMachine::applied_index(self)
    }
}

impl RaftLoop {
    /// Open every group in the data dir (creating group 0 on first start).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        cfg: ServerConfig,
        data: DataDir,
        net: Arc<Net>,
        rx: Receiver<PeerFrame>,
        fsync_hist: Arc<Histogram>,
        admin: Arc<Mutex<AdminView>>,
        stopping: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<RaftLoop, String> {
        let (sync_jobs, synced) = start_sync_thread(fsync_hist.clone())?;
        let mut me = RaftLoop {
            sync_jobs,
            synced,
            cfg,
            data,
            net,
            rx,
            hub: Hub::new(),
            groups: BTreeMap::new(),
            start: Instant::now(),
            fsync_hist,
            admin,
            last_view: Instant::now() - Duration::from_secs(10),
            last_sizes: Instant::now() - Duration::from_secs(10),
            sizes: HashMap::new(),
            stopping,
            draining: false,
            peer_faults: FaultLog::new(),
        };
        let mut ids = vec![0];
        let entries = std::fs::read_dir(me.data.path())
            .map_err(|e| format!("cannot list {}: {e}", me.data.path().display()))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(n) = name.strip_prefix("group-") {
                if let Ok(g) = n.parse::<GroupId>() {
                    if g != 0 {
                        ids.push(g);
                    }
                }
            }
        }
        for g in ids {
            let members: Vec<MemberAddr> = if g == 0 {
                me.cfg
                    .initial_members
                    .iter()
                    .map(|m| MemberAddr {
                        id: m.id,
                        raft_addr: m.raft_addr.clone(),
                        client_addr: m.client_addr.clone(),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let bootstrap = g == 0 && !me.cfg.join;
            me.open_group(g, &members, bootstrap)?;
        }
        me.refresh_hello();
        Ok(me)
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    fn open_group(
        &mut self,
        g: GroupId,
        members: &[MemberAddr],
        bootstrap: bool,
    ) -> Result<(), String> {
        let opts = StorageOptions {
            fsync: self.cfg.fsync,
            keep_snapshots: self.cfg.keep_snapshots,
            compact_delay: self.cfg.compact_delay,
            prefill_segments: self.cfg.prefill_segments,
            ..StorageOptions::default()
        };
        let store = self.data.open_group(g, &opts).map_err(|e| e.to_string())?;
        let dir = group_dir(self.data.path(), g);
        let mut book = AddrBook::load(&dir)?;
        for m in members {
            book.upsert(m.clone())?;
        }
        for a in book.map.values() {
            self.net.ensure_peer(a.id, &a.raft_addr);
        }
        let raft = self.cfg.raft.clone();
        let ncfg = NodeConfig {
            cluster_id: self.cfg.cluster_id,
            group: g,
            node_id: self.cfg.node_id,
            raft,
            seed: wall_ms() ^ (self.cfg.node_id << 32) ^ u64::from(g),
        };
        let limits = self.cfg.kv;
        let sm = KvSm::new(limits).map_err(|e| format!("group {g}: DtKV limits: {e}"))?;
        let membership = if bootstrap {
            let ids: Vec<NodeId> = members.iter().map(|m| m.id).collect();
            Some(Membership::new(&ids, &[]).map_err(|e| format!("group {g}: members: {e}"))?)
        } else {
            None
        };
        let store = TimedStorage::new(store, self.fsync_hist.clone());
        let transport = self.net.transport();
        let now = self.now_ms();
        // Built where it lives: a `Node` returned by value took ~190 KiB of stack frames
        // (`open_group` + `Node::new`), resident for the life of the main thread.
        let mut slot: Box<MaybeUninit<Group>> = Box::new_uninit();
        let init = |slot: &mut MaybeUninit<Group>| -> Result<(), NodeError> {
            shoal_core::write_fields!(slot, Group {
                id: g,
                node in |n| Node::init(
                    n,
                    ncfg,
                    NodeParts::new(store, transport, sm, vec![0u8; NODE_BUF_BYTES]),
                    now,
                    membership.as_ref(),
                ),
                book: book,
                pending_writes: HashMap::new(),
                index_reads: VecDeque::new(),
                lease_reads: Vec::new(),
                watches: Vec::new(),
                member_op: None,
                last_expire_ms: 0,
                expire_index: 0,
                proposals: 0,
                syncs_inflight: 0,
                sync_started_upto: 0,
                dir: dir,
            });
            Ok(())
        };
        init(&mut slot).map_err(|e| format!("group {g}: cannot start: {e}"))?;
        // SAFETY: `init` returned Ok, so `write_fields!` wrote every field of the slot.
        let group = unsafe { slot.assume_init() };
        let node = &group.node;
        log::info!(
            "group {g}: started at term {}, last index {}, members {:?}",
            node.raft().term(),
            node.raft().last_index(),
            node.raft().membership().all().as_slice()
        );
        self.groups.insert(g, group);
        Ok(())
    }

    /// Serve client connections from `clients` and run until shutdown. Returns the process
    /// exit code.
    pub fn run(mut self, clients: Async<std::net::TcpListener>) -> i32 {
        let ex = Rc::new(LocalExecutor::new());
        ex.spawn(clients::accept_loop(self.hub.clone(), ex.clone(), clients))
            .detach();
        async_io::block_on(self.serve(&ex))
    }

    /// The batch loop: run the connection tasks that are ready, take every queued input, tick,
    /// flush each group once, write the answers; wait only when there is nothing to do.
    async fn serve(&mut self, ex: &LocalExecutor<'static>) -> i32 {
        let mut last_tick = 0;
        let mut ticker = Timer::interval(Duration::from_millis(TICK_MS));
        loop {
            while ex.try_tick() {}
            let mut n = self.take_inputs();
            let mut now = self.now_ms();
            if n == 0 && now < last_tick + TICK_MS {
                // Nothing to do: wait for a connection task to become ready (a request was
                // read), a peer frame or the tick. The reactor is polled only here and after
                // each batch.
                enum Woke {
                    Task,
                    Peer(Option<PeerFrame>),
                    Synced(Option<SyncDone>),
                    Tick,
                }
                let (rx, synced) = (&self.rx, &self.synced);
                let woke = futures_lite::future::or(
                    futures_lite::future::or(
                        async {
                            ex.tick().await;
                            Woke::Task
                        },
                        async { Woke::Peer(rx.recv().await.ok()) },
                    ),
                    futures_lite::future::or(
                        async { Woke::Synced(synced.recv().await.ok()) },
                        async {
                            ticker.next().await;
                            Woke::Tick
                        },
                    ),
                )
                .await;
                match woke {
                    Woke::Peer(Some(frame)) => {
                        self.peer_frame(frame);
                        n += 1;
                    }
                    Woke::Synced(Some(done)) => {
                        self.sync_done(done);
                        n += 1;
                    }
                    Woke::Peer(None) | Woke::Synced(None) | Woke::Task => continue,
                    Woke::Tick => {}
                }
                now = self.now_ms();
            }
            if now >= last_tick + TICK_MS {
                last_tick = now;
                for g in self.groups.values_mut() {
                    if let Err(e) = g.node.tick(now) {
                        log::error!("group {}: tick failed: {e}; stopping", g.id);
                        return 1;
                    }
                }
            }
            if let Err(code) = self.flush_all() {
                return code;
            }
            self.hub.write_out();
            if self.stopping.load(Ordering::Relaxed) && !self.draining {
                return self.shutdown(ex).await;
            }
            // Let the reactor see the sockets (one non-blocking poll) before the next batch.
            futures_lite::future::yield_now().await;
        }
    }

    /// Handle every queued peer frame and client request (up to [`MAX_BATCH_INPUTS`]).
    fn take_inputs(&mut self) -> usize {
        let mut n = 0;
        while let Ok(done) = self.synced.try_recv() {
            self.sync_done(done);
            n += 1;
        }
        while n < MAX_BATCH_INPUTS {
            let mut took = false;
            if let Ok(frame) = self.rx.try_recv() {
                self.peer_frame(frame);
                n += 1;
                took = true;
            }
            if let Some(input) = self.hub.pop() {
                self.handle_client_input(input);
                n += 1;
                took = true;
            }
            if !took {
                break;
            }
        }
        n
    }

    async fn shutdown(&mut self, ex: &LocalExecutor<'static>) -> i32 {
        log::info!("shutting down: refusing new requests, failing in-flight ones");
        self.draining = true;
        self.net.stopping.store(true, Ordering::Relaxed);
        self.hub.stop_accepting();
        let now = self.now_ms();
        let snapshot = self.cfg.snapshot_on_shutdown;
        for g in self.groups.values_mut() {
            fail_all(g, "shutting down");
            if snapshot {
                match g.node.snapshot_now(now) {
                    Ok(Some(i)) => log::info!("group {}: snapshot at index {i}", g.id),
                    Ok(None) => {}
                    Err(e) => log::error!("group {}: snapshot on shutdown failed: {e}", g.id),
                }
            }
        }
        // Answer what is still queued, and let the answers leave.
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline {
            while ex.try_tick() {}
            let n = self.take_inputs();
            self.hub.write_out();
            if n == 0 {
                Timer::after(Duration::from_millis(10)).await;
            } else {
                futures_lite::future::yield_now().await;
            }
        }
        for (_, g) in std::mem::take(&mut self.groups) {
            let mut store = g.node.into_parts().store;
            if let Err(e) = shoal_core::storage::Storage::sync(&mut store) {
                log::error!("group {}: final sync failed: {e}", g.id);
                return 1;
            }
        }
        log::info!("stopped cleanly");
        0
    }

    fn refresh_hello(&self) {
        let mut all = NodeSet::new();
        let mut joining = false;
        for g in self.groups.values() {
            let m = g.node.raft().membership().all();
            if m.is_empty() {
                joining = true;
            }
            for id in m {
                if !all.contains(&id) && all.push(id).is_err() {
                    joining = true;
                }
            }
        }
        if joining {
            all.clear();
        }
        let mut h = self.net.hello.lock().expect("hello lock");
        if h.members != all {
            h.members = all;
        }
    }

    // ----- inputs --------------------------------------------------------------------------------

    /// A background fdatasync finished: the group's leader may count its own log now.
    fn sync_done(&mut self, done: SyncDone) {
        let SyncDone { job, result } = done;
        let Some(g) = self.groups.get_mut(&job.group) else {
            return;
        };
        g.syncs_inflight -= 1;
        if let Err(e) = result {
            // The page cache's state is unknown after a failed fdatasync; retrying is unsafe.
            log::error!("group {}: fatal: {e}; stopping", g.id);
            std::process::exit(1);
        }
        g.node.storage_mut().inner.background_synced(&job.sync);
        g.node.log_persisted(job.at);
    }

    fn handle_client_input(&mut self, input: ClientInput) {
        match input {
            ClientInput::Request(conn, frame) => self.handle_client(conn, frame),
            ClientInput::Closed(conn) => {
                for g in self.groups.values_mut() {
                    g.watches.retain(|w| w.reply.conn.id != conn);
                }
            }
        }
    }

    /// A peer frame the peer threads handed over: make room for more, then handle it.
    fn peer_frame(&mut self, frame: PeerFrame) {
        self.net.taken(frame.len());
        self.handle_peer(&frame);
    }

    fn handle_peer(&mut self, bytes: &[u8]) {
        // Decoded (and checksummed) once: the header routes it, the group's driver takes it.
        // A frame that is refused is counted and dropped (the core's failure policy); only a
        // local durability fault stops the node.
        let now = self.now_ms();
        let (frame, used) = match wire::decode(bytes) {
            Ok(decoded) => decoded,
            Err(_) => return self.peer_faults.refuse(now, Fault::BadFrame),
        };
        let group = frame.header.group;
        let Some(g) = self.groups.get_mut(&group) else {
            return self.peer_faults.refuse(now, Fault::WrongGroup);
        };
        if let Err(e) = g.node.handle_decoded(now, &frame, used) {
            log::error!("group {group}: fatal: {e}; stopping");
            std::process::exit(1);
        }
    }

    fn handle_client(&mut self, conn: Rc<clients::Conn>, frame: RequestFrame) {
        let reply = Reply { conn, id: frame.id };
        if frame.version != PROTOCOL_VERSION {
            reply.send(Response::Error {
                code: ErrorCode::UnsupportedVersion,
                kv: None,
                message: format!(
                    "protocol version {} is not supported; this server speaks {}",
                    frame.version, PROTOCOL_VERSION
                ),
            });
            return;
        }
        if self.draining {
            reply.send(unavailable("shutting down"));
            return;
        }
        let gid = frame.group;
        match frame.request {
            Request::GroupList => {
                reply.send(Response::Groups(self.groups.keys().copied().collect()));
                return;
            }
            Request::GroupCreate { members } => {
                self.group_create(gid, members, reply);
                return;
            }
            Request::GroupRemove => {
                self.group_remove(gid, reply);
                return;
            }
            _ => {}
        }
        let now = self.now_ms();
        let node_id = self.cfg.node_id;
        let Some(g) = self.groups.get_mut(&gid) else {
            reply.send(error(
                ErrorCode::UnknownGroup,
                format!("group {gid} is not hosted on node {node_id}"),
            ));
            return;
        };
        match frame.request {
            Request::Write { client_id, seq, op } => write(g, now, client_id, seq, op, reply),
            Request::Get { key, mode } => read(g, now, mode, ReadReq::Get(key), reply),
            Request::BatchGet { keys, mode } => read(g, now, mode, ReadReq::BatchGet(keys), reply),
            Request::List { key, mode } => read(g, now, mode, ReadReq::List(key), reply),
            Request::Watch { keys, from_index } => {
                let kv = g.node.state_machine().store();
                let applied = g.node.applied();
                let next = if from_index == 0 {
                    applied + 1
                } else {
                    from_index
                };
                if from_index != 0 && from_index < kv.oldest_event_index() && from_index <= applied
                {
                    reply.send(Response::WatchCompacted {
                        oldest: kv.oldest_event_index(),
                    });
                    return;
                }
                reply.send(Response::WatchStarted);
                g.watches.push(Watch { reply, keys, next });
            }
            Request::Unwatch { watch_id } => {
                g.watches
                    .retain(|w| !(w.reply.conn.id == reply.conn.id && w.reply.id == watch_id));
                reply.send(Response::Done { index: 0 });
            }
            Request::Status => {
                reply.send(Response::Status(status(g, node_id)));
            }
            Request::MemberList => {
                reply.send(Response::Members(status(g, node_id).members));
            }
            Request::ChangeMembers(change) => member_change(g, now, change, reply),
            Request::TransferLeader { to } => {
                match g.node.transfer_leader(now, to) {
                    Ok(()) => reply.send(Response::Done { index: 0 }),
                    Err(shoal_core::raft::TransferError::NotLeader) => reply.send(not_leader(g)),
                    Err(e) => reply.send(error(ErrorCode::Conflict, e.to_string())),
                };
            }
            Request::Snapshot => {
                match g.node.snapshot_now(now) {
                    Ok(i) => reply.send(Response::Done {
                        index: i.unwrap_or_else(|| g.node.raft().snapshot_index()),
                    }),
                    Err(e) if e.severity() == Severity::Fatal => {
                        log::error!("group {}: fatal: snapshot: {e}; stopping", g.id);
                        std::process::exit(1);
                    }
                    Err(e) => reply.send(error(ErrorCode::Internal, format!("snapshot: {e}"))),
                };
            }
            Request::GroupList | Request::GroupCreate { .. } | Request::GroupRemove => {
                unreachable!("handled above")
            }
        }
    }

    fn group_create(&mut self, gid: GroupId, members: Vec<(NodeId, String)>, reply: Reply) {
        if self.groups.contains_key(&gid) {
            reply.send(error(
                ErrorCode::Conflict,
                format!("group {gid} already exists on this node"),
            ));
            return;
        }
        let mut addrs = Vec::new();
        for (id, addr) in members {
            match parse_addr_pair(id, &addr) {
                Ok(m) => addrs.push(MemberAddr {
                    id: m.id,
                    raft_addr: m.raft_addr,
                    client_addr: m.client_addr,
                }),
                Err(e) => {
                    reply.send(error(ErrorCode::BadRequest, e));
                    return;
                }
            }
        }
        if addrs.is_empty() {
            reply.send(error(
                ErrorCode::BadRequest,
                "a group needs at least one member".into(),
            ));
            return;
        }
        let bootstrap = addrs.iter().any(|a| a.id == self.cfg.node_id);
        match self.open_group(gid, &addrs, bootstrap) {
            Ok(()) => {
                log::info!("group {gid} created");
                self.refresh_hello();
                reply.send(Response::Done { index: 0 });
            }
            Err(e) => {
                reply.send(error(ErrorCode::Internal, format!("group {gid}: {e}")));
            }
        }
    }

    fn group_remove(&mut self, gid: GroupId, reply: Reply) {
        let Some(mut g) = self.groups.remove(&gid) else {
            reply.send(error(
                ErrorCode::UnknownGroup,
                format!("group {gid} is not hosted on this node"),
            ));
            return;
        };
        fail_all(&mut g, "the group was removed from this node");
        let dir = g.dir.clone();
        drop(g);
        let to = self
            .data
            .path()
            .join(format!("removed-group-{gid}-{}", wall_ms()));
        match std::fs::rename(&dir, &to) {
            Ok(()) => {
                log::info!("group {gid} removed; its data moved to {}", to.display());
                self.refresh_hello();
                reply.send(Response::Done { index: 0 });
            }
            Err(e) => {
                reply.send(error(
                    ErrorCode::Internal,
                    format!(
                        "group {gid} stopped but {} could not be moved: {e}",
                        dir.display()
                    ),
                ));
            }
        }
    }

    // ----- the batch boundary ----------------------------------------------------------------------

    fn flush_all(&mut self) -> Result<(), i32> {
        let now = self.now_ms();
        let wall = wall_ms();
        let mut new_peers: Vec<MemberAddr> = Vec::new();
        let mut members_changed = false;
        let mut big_batch = false;
        let defer = self.cfg.fsync == FsyncMode::Always;
        let jobs = &self.sync_jobs;
        for g in self.groups.values_mut() {
            let mut events = Vec::new();
            let before = g.node.raft().membership().clone();
            if let Err(e) = flush_group(g, now, defer, jobs, &mut events) {
                log::error!("group {}: fatal: {e}; stopping", g.id);
                return Err(1);
            }
            big_batch |= events.len() > TRIM_AFTER_EVENTS;
            for ev in events {
                match ev {
                    Event::Applied {
                        index,
                        term,
                        output,
                    } => match output {
                        GroupOutput::Kv(applied) => {
                            if let Some((t, reply)) = g.pending_writes.remove(&index) {
                                if t == term {
                                    reply.send(Response::Written {
                                        index,
                                        result: applied.result,
                                    });
                                } else {
                                    reply.send(unavailable(
                                        "the write was overwritten by a new leader; retry with the same session",
                                    ));
                                }
                            }
                        }
                        GroupOutput::Addr(Some(a)) => match g.book.upsert(a.clone()) {
                            Ok(true) => new_peers.push(a),
                            Ok(false) => {}
                            Err(e) => log::error!("group {}: {e}", g.id),
                        },
                        GroupOutput::Addr(None) => {
                            log::warn!("group {}: address entry {index} does not decode", g.id)
                        }
                    },
                    Event::ReadReady { upto, .. } => {
                        while g.index_reads.front().is_some_and(|r| r.0 <= upto) {
                            let (_, reply, req) = g.index_reads.pop_front().expect("checked");
                            reply.send(serve_read(g.node.state_machine(), &req));
                        }
                    }
                    Event::ReadFailed { upto } => {
                        while g.index_reads.front().is_some_and(|r| r.0 <= upto) {
                            let (_, reply, _) = g.index_reads.pop_front().expect("checked");
                            reply.send(unavailable(
                                "the read could not be confirmed (leadership changed or no quorum); retry",
                            ));
                        }
                    }
                    Event::RoleChanged { role, term, leader } => {
                        log::info!(
                            "group {}: {} in term {term}, leader {leader}",
                            g.id,
                            role_name(role)
                        );
                        if role != Role::Leader {
                            for (_, reply, _) in g.lease_reads.drain(..) {
                                reply.send(unavailable("leadership lost; retry"));
                            }
                        }
                    }
                    Event::Snapshot { index } => {
                        log::info!("group {}: snapshot taken at index {index}", g.id);
                    }
                    #[allow(unreachable_patterns)]
                    _ => {}
                }
            }
            if g.node.raft().membership() != &before {
                members_changed = true;
            }
            after_flush(g, now, wall);
        }
        if big_batch {
            super::release_freed_memory();
        }
        for a in new_peers {
            self.net.ensure_peer(a.id, &a.raft_addr);
        }
        // Cheap (a compare under a lock); config entries may also come from after_flush.
        let _ = members_changed;
        self.refresh_hello();
        if self.last_view.elapsed() >= Duration::from_millis(100) {
            self.last_view = Instant::now();
            self.publish_view();
        }
        Ok(())
    }

    fn publish_view(&mut self) {
        if self.last_sizes.elapsed() >= Duration::from_secs(1) {
            self.last_sizes = Instant::now();
            for g in self.groups.values() {
                let log = dir_bytes(&g.dir.join("log"));
                let snap = dir_bytes(&g.dir.join("snap"));
                self.sizes.insert(g.id, (log, snap));
            }
        }
        let node_id = self.cfg.node_id;
        let groups = self
            .groups
            .values()
            .map(|g| {
                let st = status(g, node_id);
                let (log_bytes, snapshot_bytes) = self.sizes.get(&g.id).copied().unwrap_or((0, 0));
                let r = g.node.raft();
                GroupView {
                    group: g.id,
                    role: st.role.clone(),
                    term: st.term,
                    leader: st.leader,
                    commit: st.commit,
                    applied: st.applied,
                    last_index: st.last_index,
                    snapshot_index: st.snapshot_index,
                    log_bytes,
                    snapshot_bytes,
                    members: st
                        .members
                        .iter()
                        .map(|m| PeerView {
                            id: m.id,
                            raft_addr: m.raft_addr.clone(),
                            role: m.role.clone(),
                            match_index: m.match_index,
                        })
                        .collect(),
                    proposals: g.proposals,
                    node_stats: g.node.stats(),
                    raft_stats: r.stats(),
                }
            })
            .collect();
        let mut v = self.admin.lock().expect("admin lock");
        v.node_id = node_id;
        v.running = !self.draining;
        v.groups = groups;
        v.clients = self.hub.view();
        v.peer_input_bytes = self.net.input_bytes();
    }
}

/// Flush one group. A leader's own log sync goes to the sync thread (one at a time per group);
/// everything else syncs inside the flush.
fn flush_group(
    g: &mut Group,
    now: u64,
    defer: bool,
    jobs: &Sender<SyncJob>,
    events: &mut Vec<Event<GroupOutput>>,
) -> Result<(), NodeError> {
    if !defer {
        return g.node.flush(now, &mut |ev| events.push(ev));
    }
    // Twice at most: when the log turns out durable already, the second flush acts on it.
    for _ in 0..2 {
        let Some(at) = g.node.flush_deferred(now, &mut |ev| events.push(ev))? else {
            return Ok(());
        };
        if g.syncs_inflight >= MAX_SYNCS_INFLIGHT || at.index <= g.sync_started_upto {
            return Ok(());
        }
        match g.node.storage_mut().inner.begin_background_sync()? {
            Some(sync) => {
                g.syncs_inflight += 1;
                g.sync_started_upto = at.index;
                let job = SyncJob {
                    group: g.id,
                    at,
                    sync,
                };
                if let Err(e) = jobs.try_send(job) {
                    // The sync threads are gone: sync here instead.
                    g.syncs_inflight -= 1;
                    let job = e.into_inner();
                    job.sync.run().map_err(|e| {
                        log::error!("group {}: {e}", g.id);
                        NodeError::Storage(shoal_core::storage::StorageError::Io)
                    })?;
                    g.node.storage_mut().inner.background_synced(&job.sync);
                    g.node.log_persisted(at);
                    continue;
                }
                return Ok(());
            }
            None => g.node.log_persisted(at),
        }
    }
    Ok(())
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn fail_all(g: &mut Group, why: &str) {
    for (_, (_, reply)) in g.pending_writes.drain() {
        reply.send(unavailable(why));
    }
    for (_, reply, _) in g.index_reads.drain(..) {
        reply.send(unavailable(why));
    }
    for (_, reply, _) in g.lease_reads.drain(..) {
        reply.send(unavailable(why));
    }
    if let Some(op) = g.member_op.take() {
        op.reply.send(unavailable(why));
    }
    for w in g.watches.drain(..) {
        w.reply.send(unavailable(why));
    }
}

fn not_leader(g: &Group) -> Response {
    let leader = g.node.raft().leader();
    Response::NotLeader {
        leader,
        leader_addr: if leader == NO_NODE {
            None
        } else {
            g.book.client_addr(leader)
        },
    }
}

fn propose_error(g: &Group, e: ProposeError) -> Response {
    match e {
        ProposeError::NotLeader { .. } => not_leader(g),
        ProposeError::TransferInProgress | ProposeError::Busy => unavailable(&e.to_string()),
        ProposeError::TooLarge => error(ErrorCode::BadRequest, e.to_string()),
        ProposeError::ConfigChangeInProgress | ProposeError::BadMembership(_) => {
            error(ErrorCode::Conflict, e.to_string())
        }
        ProposeError::Storage(_) => error(ErrorCode::Internal, e.to_string()),
    }
}

fn encode_command(cmd: &Command<'_>, hint: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; hint + 256];
    let n = cmd
        .encode(&mut buf)
        .map_err(|e| format!("the write does not encode: {e:?}"))?;
    buf.truncate(n);
    Ok(buf)
}

fn write(g: &mut Group, now: u64, client_id: u64, seq: u64, op: WriteOp, reply: Reply) {
    if g.node.raft().role() != Role::Leader {
        reply.send(not_leader(g));
        return;
    }
    let time_ms = wall_ms();
    let pairs_owned: Vec<(&[u8], &[u8])>;
    let keys_owned: Vec<&[u8]>;
    let mut hint = 64;
    let op = match &op {
        WriteOp::Put { key, value } => {
            hint += key.len() + value.len();
            Op::Put { key, value }
        }
        WriteOp::Remove { key } => Op::Remove { key },
        WriteOp::Mkdir { key } => Op::Mkdir { key },
        WriteOp::BatchPut { pairs } => {
            pairs_owned = pairs
                .iter()
                .map(|(k, v)| {
                    hint += k.len() + v.len() + 12;
                    (k.as_slice(), v.as_slice())
                })
                .collect();
            Op::BatchPut(Pairs::new(&pairs_owned))
        }
        WriteOp::BatchRemove { keys } => {
            keys_owned = keys
                .iter()
                .map(|k| {
                    hint += k.len() + 6;
                    k.as_slice()
                })
                .collect();
            Op::BatchRemove(Keys::new(&keys_owned))
        }
        WriteOp::CompareAndSet { key, expect, value } => {
            hint += key.len() + value.len() + expect.as_ref().map_or(0, |e| e.len());
            Op::CompareAndSet {
                key,
                expect: expect.as_deref(),
                value,
            }
        }
        WriteOp::PutTemp { key, value, ttl_ms } => {
            hint += key.len() + value.len();
            Op::PutTemp {
                key,
                value,
                ttl_ms: *ttl_ms,
            }
        }
        WriteOp::MakeTempDir { key, ttl_ms } => Op::MakeTempDir {
            key,
            ttl_ms: *ttl_ms,
        },
        WriteOp::UpdateTtl { key, ttl_ms } => Op::UpdateTtl {
            key,
            ttl_ms: *ttl_ms,
        },
        WriteOp::TryLock {
            key,
            lease_ms,
            wait_ms,
        } => Op::TryLock {
            key,
            lease_ms: *lease_ms,
            wait_ms: *wait_ms,
        },
        WriteOp::Unlock { key } => Op::Unlock { key },
        WriteOp::UpdateLockLease { key, lease_ms } => Op::UpdateLockLease {
            key,
            lease_ms: *lease_ms,
        },
    };
    let cmd = Command {
        client_id,
        seq,
        time_ms,
        op,
    };
    let bytes = match encode_command(&cmd, hint) {
        Ok(b) => b,
        Err(e) => {
            reply.send(error(ErrorCode::BadRequest, e));
            return;
        }
    };
    match g.node.propose(now, &bytes) {
        Ok((index, term)) => {
            g.proposals += 1;
            g.pending_writes.insert(index, (term, reply));
        }
        Err(e) => {
            reply.send(propose_error(g, e));
        }
    }
}

fn read(g: &mut Group, now: u64, mode: ReadMode, req: ReadReq, reply: Reply) {
    match mode {
        ReadMode::Local => {
            reply.send(serve_read(g.node.state_machine(), &req));
        }
        ReadMode::Lease => match g.node.read_lease(now) {
            Ok(index) if index <= g.node.applied() => {
                reply.send(serve_read(g.node.state_machine(), &req));
            }
            Ok(index) => g.lease_reads.push((index, reply, req)),
            Err(ReadError::NotLeader { .. }) => {
                reply.send(not_leader(g));
            }
            Err(_) => read(g, now, ReadMode::Linearizable, req, reply),
        },
        ReadMode::Linearizable => match g.node.read_index(now) {
            Ok(ticket) => g.index_reads.push_back((ticket, reply, req)),
            Err(ReadError::NoLeader) => {
                reply.send(not_leader(g));
            }
            Err(e) => {
                reply.send(unavailable(&e.to_string()));
            }
        },
    }
}

fn status(g: &Group, node_id: NodeId) -> StatusInfo {
    let r = g.node.raft();
    let m = r.membership();
    let leader = r.role() == Role::Leader;
    let mut members = Vec::new();
    let mut push = |id: NodeId, role: &str| {
        if members.iter().any(|x: &MemberInfo| x.id == id) {
            return;
        }
        let match_index = if !leader {
            None
        } else if id == node_id {
            Some(r.last_index())
        } else {
            r.progress()
                .iter()
                .find(|p| p.id == id)
                .map(|p| p.match_index)
        };
        members.push(MemberInfo {
            id,
            raft_addr: g
                .book
                .map
                .get(&id)
                .map(|a| a.raft_addr.clone())
                .unwrap_or_default(),
            role: role.to_string(),
            match_index,
        });
    };
    let (voters, observers) = if m.joint {
        (&m.next_voters, &m.next_observers)
    } else {
        (&m.voters, &m.observers)
    };
    for &v in voters {
        push(v, "voter");
    }
    for &o in observers {
        push(o, "observer");
    }
    if m.joint {
        for &v in &m.voters {
            push(v, "leaving-voter");
        }
        for &o in &m.observers {
            push(o, "leaving-observer");
        }
    }
    StatusInfo {
        node_id,
        group: g.id,
        role: role_name(r.role()).to_string(),
        term: r.term(),
        leader: r.leader(),
        commit: r.commit(),
        applied: r.applied(),
        last_index: r.last_index(),
        snapshot_index: r.snapshot_index(),
        members,
    }
}

fn member_change(g: &mut Group, now: u64, change: MemberChange, reply: Reply) {
    if g.node.raft().role() != Role::Leader {
        reply.send(not_leader(g));
        return;
    }
    if g.member_op.is_some() {
        reply.send(error(
            ErrorCode::Conflict,
            "another membership change is in progress on this group".into(),
        ));
        return;
    }
    let steps: VecDeque<Step> = match change {
        MemberChange::Add {
            id,
            raft_addr,
            observer,
        } => {
            let spec = match parse_addr_pair(id, &raft_addr) {
                Ok(s) => s,
                Err(e) => {
                    reply.send(error(ErrorCode::BadRequest, e));
                    return;
                }
            };
            if g.node.raft().membership().contains(id) {
                reply.send(error(
                    ErrorCode::Conflict,
                    format!("node {id} is already a member"),
                ));
                return;
            }
            let a = MemberAddr {
                id,
                raft_addr: spec.raft_addr,
                client_addr: spec.client_addr,
            };
            // Tell every member where the new node is, through the log. The leader learns it
            // the same way, when the entry applies: that is where dialers start, so recording
            // it here first would leave the leader the one node that never dials the newcomer.
            if let Err(e) = g.node.propose(now, &encode_addr_entry(&a)) {
                reply.send(propose_error(g, e));
                return;
            }
            let mut s: VecDeque<Step> = [Step::AddObserver(id), Step::Commit].into();
            if !observer {
                s.extend([Step::CatchUp(id), Step::Promote(id), Step::Commit]);
            }
            s
        }
        MemberChange::Promote { id } => [Step::Promote(id), Step::Commit].into(),
        MemberChange::Remove { id } => [Step::Remove(id), Step::Commit].into(),
    };
    g.member_op = Some(MemberOp {
        reply,
        steps,
        waiting: None,
        done_index: 0,
        started: Instant::now(),
    });
    advance_member_op(g, now);
}

fn target_for(m: &Membership, step: Step) -> Result<Membership, String> {
    let mut voters: Vec<NodeId> = m.voters.to_vec();
    let mut observers: Vec<NodeId> = m.observers.to_vec();
    match step {
        Step::AddObserver(id) => observers.push(id),
        Step::Promote(id) => {
            if !observers.contains(&id) {
                return Err(format!("node {id} is not an observer of this group"));
            }
            observers.retain(|&x| x != id);
            voters.push(id);
        }
        Step::Remove(id) => {
            if !voters.contains(&id) && !observers.contains(&id) {
                return Err(format!("node {id} is not a member of this group"));
            }
            voters.retain(|&x| x != id);
            observers.retain(|&x| x != id);
        }
        Step::Commit | Step::CatchUp(_) => unreachable!("not a prepare step"),
    }
    Membership::new(&voters, &observers).map_err(|e| e.to_string())
}

fn advance_member_op(g: &mut Group, now: u64) {
    loop {
        let Some(op) = g.member_op.as_mut() else {
            return;
        };
        let r = g.node.raft();
        if r.role() != Role::Leader {
            let op = g.member_op.take().expect("checked");
            op.reply.send(unavailable(
                "leadership lost during the membership change; check members and retry",
            ));
            return;
        }
        if let Some((index, _)) = op.waiting {
            if r.commit() < index {
                return;
            }
            op.waiting = None;
            op.done_index = index;
        }
        let Some(step) = op.steps.front().copied() else {
            let op = g.member_op.take().expect("checked");
            op.reply.send(Response::Done {
                index: g.node.raft().commit(),
            });
            return;
        };
        let change = match step {
            Step::CatchUp(id) => {
                let caught_up = r.progress().iter().find(|p| p.id == id).is_some_and(|p| {
                    p.match_index >= op.done_index && p.match_index + 100 >= r.commit()
                });
                if !caught_up {
                    if op.started.elapsed() > Duration::from_secs(60) {
                        let op = g.member_op.take().expect("checked");
                        op.reply.send(unavailable(&format!(
                            "node {id} was added as an observer but has not caught up in 60 s; promote it later"
                        )));
                    }
                    return;
                }
                op.steps.pop_front();
                continue;
            }
            Step::Commit => ConfigChange::Commit,
            other => match target_for(r.membership(), other) {
                Ok(t) => ConfigChange::Prepare(t),
                Err(e) => {
                    let op = g.member_op.take().expect("checked");
                    op.reply.send(error(ErrorCode::Conflict, e));
                    return;
                }
            },
        };
        match g.node.change_membership(now, change) {
            Ok((index, term, m)) => {
                log::info!(
                    "group {}: membership step {step:?} at index {index}: voters {:?} observers {:?} -> {:?} {:?}",
                    g.id,
                    m.voters.as_slice(),
                    m.observers.as_slice(),
                    m.next_voters.as_slice(),
                    m.next_observers.as_slice()
                );
                let op = g.member_op.as_mut().expect("checked");
                op.steps.pop_front();
                op.waiting = Some((index, term));
                return;
            }
            Err(e) => {
                let resp = propose_error(g, e);
                let op = g.member_op.take().expect("checked");
                op.reply.send(resp);
                return;
            }
        }
    }
}

fn after_flush(g: &mut Group, now: u64, wall: u64) {
    if g.member_op.is_some() {
        advance_member_op(g, now);
    }
    let applied = g.node.applied();
    if !g.lease_reads.is_empty() {
        let sm = g.node.state_machine();
        g.lease_reads.retain(|(index, reply, req)| {
            if *index <= applied {
                reply.send(serve_read(sm, req));
                false
            } else {
                true
            }
        });
    }
    if !g.watches.is_empty() {
        let kv = g.node.state_machine().store();
        g.watches.retain_mut(|w| {
            if w.next > applied {
                return true;
            }
            let mut out = Vec::new();
            let r = kv.events_since(w.next, b"", |ev| {
                if ev.index <= applied
                    && (w.keys.is_empty() || w.keys.iter().any(|k| in_subtree(ev.key, k)))
                {
                    out.push(WatchEvent {
                        index: ev.index,
                        kind: event_kind_name(ev.kind).to_string(),
                        key: ev.key.to_vec(),
                        value: ev.value.to_vec(),
                    });
                }
            });
            match r {
                Ok(()) => {
                    w.next = applied + 1;
                    out.into_iter().all(|e| w.reply.send(Response::Event(e)))
                }
                Err(WatchError::Compacted { oldest_available }) => {
                    w.reply.send(Response::WatchCompacted {
                        oldest: oldest_available,
                    });
                    false
                }
            }
        });
    }
    if g.node.raft().role() == Role::Leader
        && g.node.state_machine().store().expired_at(wall)
        && wall >= g.last_expire_ms + EXPIRE_EVERY_MS
        && applied >= g.expire_index
    {
        g.last_expire_ms = wall;
        if let Ok(bytes) = encode_command(&Command::expire(wall), 64) {
            match g.node.propose(now, &bytes) {
                Ok((index, _)) => g.expire_index = index,
                Err(e) => log::debug!("group {}: expiry not proposed: {e}", g.id),
            }
        }
    }
}
