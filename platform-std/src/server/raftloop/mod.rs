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
    ErrorCode, LeaseInfo, MemberChange, MemberInfo, NodeInfo, ReadMode, Request, RequestFrame,
    Response, StatusInfo, TxnCompare, TxnWrite, WatchEvent, WriteOp, PROTOCOL_VERSION,
};
use shoal_core::driver::{Event, Node, NodeConfig, NodeError, NodeParts, Pending};
use shoal_core::fault::{Fault, FaultLog, Severity};
use shoal_core::membership::{Membership, NodeSet};
use shoal_core::raft::{ConfigChange, ProposeError, ReadError, SyncPoint};
use shoal_core::wire;
use shoal_core::{GroupId, LogIndex, NodeId, Role, Term, NO_NODE};
use shoal_kv::{
    check_write, in_subtree, Batch, Command, Compare, EventKind, Keys, KvError, NodeView, Op,
    Pairs, Refusal, Txn, TxnOp, WatchError,
};

mod auth;
mod backup;
mod greet;
mod group;
mod health;
mod members;
mod quiet;
mod requests;
mod snapbg;
mod system;

pub use auth::HashedPassword;
use auth::*;
use backup::*;
use greet::*;
use group::*;
use health::*;
use members::*;
use quiet::*;
pub use requests::role_name;
use requests::*;
use snapbg::SnapWritten;
use system::*;

use super::accept::AcceptBackoff;
use super::addrbook::AddrBook;
use super::admin::{AdminView, AuthView, DiskView, GroupView, PeerView, RecordsView};
use super::clients::{self, over_limit, ClientInput, Hub, Limit, Reply};
use super::config::{parse_addr_pair, ServerConfig};
use super::fdlimit::{self, FdBudget};
use super::kvsm::{GroupOutput, KvSm, MemberAddr};
use super::net::{Net, PeerFrame, PeerTransport};
use super::overrides::admin_allowed;
use super::timed::{Histogram, TimedStorage};
use crate::kvheap::HeapKv;
use crate::kvheap::Zeroed;
use crate::storage::fs_sync::FsSync;
use crate::storage::{group_dir, BackgroundSync, DataDir, FsyncMode, StorageOptions};

type GroupNode = Node<TimedStorage, PeerTransport, KvSm, Zeroed<u8>>;

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

/// Everything the raft thread owns.
pub struct RaftLoop {
    cfg: ServerConfig,
    data: DataDir,
    net: Arc<Net>,
    rx: Receiver<PeerFrame>,
    /// Client connections and their queued requests.
    hub: Rc<Hub>,
    /// Log fdatasyncs for the sync threads, and their results.
    sync_jobs: Sender<Vec<SyncJob>>,
    /// One sync of the data dir's filesystem for every group a batch wrote to (fsync always
    /// and `--shared-sync`), else `None`.
    fs_sync: Option<Arc<FsSync>>,
    synced: Receiver<SyncDone>,
    /// Snapshots written off the raft thread, back from their threads ([`snapbg`]).
    snap_written_tx: Sender<SnapWritten>,
    snap_written: Receiver<SnapWritten>,
    /// Boxed (and built in the box): a `Group` holds its driver inline (tens of KiB), and a
    /// B-tree node of inline values made every insert/remove use a stack frame of hundreds of
    /// KiB.
    groups: BTreeMap<GroupId, Box<Group>>,
    /// The groups with work, ticked and flushed each round ([`quiet`]).
    active: std::collections::BTreeSet<GroupId>,
    /// Node liveness, which watches quiet groups ([`quiet`]).
    live: Liveness,
    /// Groups flushed since their data dirs' sizes were last read (an idle group's do not
    /// change).
    sizes_dirty: std::collections::BTreeSet<GroupId>,
    /// Groups flushed since the admin view was last published.
    view_dirty: std::collections::BTreeSet<GroupId>,
    /// When the hosted groups' members were last gathered for the handshake and the pings.
    last_hello: Instant,
    start: Instant,
    fsync_hist: Arc<Histogram>,
    admin: Arc<Mutex<AdminView>>,
    last_view: Instant,
    last_sizes: Instant,
    sizes: HashMap<GroupId, (u64, u64)>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    draining: bool,
    /// Whether systemd was told the node is ready (every group has a leader).
    told_ready: bool,
    /// Peer frames refused before they reached a group (they do not decode, or name a group
    /// this node does not host); each group's driver counts its own.
    peer_faults: FaultLog,
    /// The cluster's records (group 0's `__shoal` subtree) as last read, and removed groups'
    /// dirs waiting to be deleted ([`system`]).
    sys: Records,
    /// Peers that passed the group handshake, per group ([`greet`]).
    greetings: Greetings,
    /// The client port's pause after a failed accept, and its counters.
    accept: Rc<AcceptBackoff>,
    /// Users, roles and the auth switch, as group 0's records last said ([`auth`]).
    auth: super::auth::AuthState,
    /// Group 0's `system_changes` when `auth` was last read.
    auth_seen: Option<u64>,
    /// Logins and refusals, for `/metrics`.
    auth_counts: Rc<AuthCounts>,
    /// Password hashes running on the blocking pool now.
    hashing: Rc<std::cell::Cell<usize>>,
    /// The executor of the connection tasks (set by `run`), which also runs the tasks that
    /// wait for password checks.
    ex: Option<Rc<LocalExecutor<'static>>>,
    /// The open-file limit and how many groups it leaves room for ([`fdlimit`]).
    fds: FdBudget,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
        let fs_sync = if cfg.fsync == FsyncMode::Always && cfg.shared_sync {
            let s = FsSync::open(data.path())
                .map_err(|e| format!("{}: cannot open for syncs: {e}", data.path().display()))?;
            Some(Arc::new(s))
        } else {
            None
        };
        let (sync_jobs, synced) = start_sync_thread(fsync_hist.clone(), fs_sync.clone())?;
        let accept_backoff_max = cfg.accept_backoff_max;
        let fds = FdBudget::new(&cfg, fdlimit::raise_soft_limit());
        let hub = Hub::new(cfg.client_limits);
        let (snap_written_tx, snap_written) = smol::channel::unbounded();
        let mut me = RaftLoop {
            snap_written_tx,
            snap_written,
            sync_jobs,
            fs_sync,
            synced,
            cfg,
            data,
            net,
            rx,
            hub,
            groups: BTreeMap::new(),
            active: Default::default(),
            live: Liveness::default(),
            sizes_dirty: Default::default(),
            view_dirty: Default::default(),
            last_hello: Instant::now(),
            start: Instant::now(),
            fsync_hist,
            admin,
            last_view: Instant::now() - Duration::from_secs(10),
            last_sizes: Instant::now() - Duration::from_secs(10),
            sizes: HashMap::new(),
            stopping,
            draining: false,
            told_ready: false,
            peer_faults: FaultLog::new(),
            sys: Records::default(),
            greetings: Greetings::default(),
            accept: Rc::new(AcceptBackoff::new(
                accept_backoff_max,
                "client port",
                "shoal_client_accept_failures_total",
            )),
            auth: Default::default(),
            auth_seen: None,
            auth_counts: Default::default(),
            hashing: Default::default(),
            ex: None,
            fds,
        };
        let mut ids = Vec::new();
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
        // Group 0 first: its records say which of the other dirs are groups still.
        let initial: Vec<MemberAddr> = me
            .cfg
            .initial_members
            .iter()
            .map(|m| MemberAddr {
                id: m.id,
                raft_addr: m.raft_addr.clone(),
                client_addr: m.client_addr.clone(),
            })
            .collect();
        let voters: Vec<NodeId> = initial.iter().map(|m| m.id).collect();
        let bootstrap = (!me.cfg.join).then_some(&voters[..]);
        me.open_group(0, &initial, bootstrap)?;
        for g in me.groups_to_open(ids)? {
            me.open_group(g, &[], None)?;
        }
        me.refresh_hello();
        Ok(me)
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Open group `g` (creating its dir if needed), its address book learning `addrs`; a new
    /// group starts with `bootstrap` as its voters, or empty (waiting, as an observer, for a
    /// leader's log to name it) without.
    fn open_group(
        &mut self,
        g: GroupId,
        addrs: &[MemberAddr],
        bootstrap: Option<&[NodeId]>,
    ) -> Result<(), String> {
        // Group 0 is the node's own: it opens whatever the limit (a node without it cannot run).
        if g != 0 && !self.groups.contains_key(&g) {
            self.fds
                .check(self.groups.len() + 1)
                .map_err(|e| format!("group {g}: {e}"))?;
        }
        let opts = StorageOptions {
            fsync: self.cfg.fsync,
            keep_snapshots: self.cfg.keep_snapshots,
            compact_delay: self.cfg.compact_delay,
            prefill_segments: self.cfg.prefill_segments,
            segment_bytes: self.cfg.segment_bytes,
            initial_segment_bytes: self.cfg.segment_initial_bytes,
            space: self.cfg.space,
            ..StorageOptions::default()
        };
        let store = self.data.open_group(g, &opts).map_err(|e| e.to_string())?;
        let dir = group_dir(self.data.path(), g);
        let mut book = AddrBook::load(&dir)?;
        for m in addrs {
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
        // Mapped, not from the heap: see `kvheap` (only what a flush writes becomes resident).
        let node_buf =
            Zeroed::new(NODE_BUF_BYTES).map_err(|e| format!("group {g}: node buffer: {e}"))?;
        let membership = match bootstrap {
            Some(ids) => {
                Some(Membership::new(ids, &[]).map_err(|e| format!("group {g}: members: {e}"))?)
            }
            None => None,
        };
        let store = TimedStorage::new(store, self.fsync_hist.clone());
        let shared_sync = self.fs_sync.as_ref().is_some_and(|s| s.covers(&dir));
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
                    NodeParts::new(store, transport, sm, node_buf),
                    now,
                    membership.as_ref(),
                ),
                book: book,
                pending_writes: HashMap::new(),
                pending_sys: HashMap::new(),
                index_reads: VecDeque::new(),
                lease_reads: Vec::new(),
                parked_reads: Vec::new(),
                watches: Vec::new(),
                member_op: None,
                last_expire_ms: 0,
                expire_index: 0,
                proposals: 0,
                writes_refused: 0,
                syncs_inflight: 0,
                sync_started_upto: 0,
                shared_sync: shared_sync,
                members_seen: 0,
                dir: dir,
            });
            Ok(())
        };
        init(&mut slot).map_err(|e| format!("group {g}: cannot start: {e}"))?;
        // SAFETY: `init` returned Ok, so `write_fields!` wrote every field of the slot.
        let mut group = unsafe { slot.assume_init() };
        group.node.set_background_snapshots(true);
        group.node.set_quiesce(self.cfg.quiesce);
        let node = &group.node;
        log::info!(
            "group {g}: started at term {}, last index {}, members {:?}",
            node.raft().term(),
            node.raft().last_index(),
            node.raft().membership().all().as_slice()
        );
        self.groups.insert(g, group);
        self.active.insert(g);
        self.sizes_dirty.insert(g);
        Ok(())
    }

    /// Serve client connections from `clients` and run until shutdown. Returns the process
    /// exit code.
    pub fn run(mut self, clients: Async<std::net::TcpListener>) -> i32 {
        let ex = Rc::new(LocalExecutor::new());
        self.ex = Some(ex.clone());
        let accept = self.accept.clone();
        self.hub.set_tls(self.net.tls.get().cloned());
        ex.spawn(clients::accept_loop(
            self.hub.clone(),
            ex.clone(),
            clients,
            accept,
        ))
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
                for id in &self.active {
                    let Some(g) = self.groups.get_mut(id) else {
                        continue;
                    };
                    if let Err(e) = g.node.tick(now) {
                        log::error!("group {}: tick failed: {e}; stopping", g.id);
                        return 1;
                    }
                }
                self.liveness(now);
            }
            if let Err(code) = self.flush_all() {
                return code;
            }
            self.hub.write_out();
            self.tell_ready_once_led();
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
        while let Ok(done) = self.snap_written.try_recv() {
            self.snapshot_written(done);
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

    /// Under systemd (`Type=notify`), say the node is ready once every group it hosts has a
    /// leader, so `systemctl start` returns when it serves. Nothing without `NOTIFY_SOCKET`.
    fn tell_ready_once_led(&mut self) {
        if self.told_ready
            || self
                .groups
                .values()
                .any(|g| g.node.raft().leader() == shoal_core::types::NO_NODE)
        {
            return;
        }
        self.told_ready = true;
        if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
            log::warn!("telling systemd the node is ready failed: {e}");
        }
    }

    async fn shutdown(&mut self, ex: &LocalExecutor<'static>) -> i32 {
        log::info!("shutting down: refusing new requests, failing in-flight ones");
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
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
        for (_, mut g) in std::mem::take(&mut self.groups) {
            // The commit index is otherwise saved only now and then: a data dir stopped cleanly
            // says how far it committed, so a backup taken from it holds every acknowledged write.
            if let Err(e) = g.node.save_commit_hint() {
                log::error!("group {}: saving the commit index failed: {e}", g.id);
            }
            let mut store = g.node.into_parts().store;
            if let Err(e) = shoal_core::storage::Storage::sync(&mut store) {
                log::error!("group {}: final sync failed: {e}", g.id);
                return 1;
            }
        }
        log::info!("stopped cleanly");
        0
    }

    fn refresh_hello(&mut self) {
        self.last_hello = Instant::now();
        let mut peers = std::collections::BTreeSet::new();
        for g in self.groups.values() {
            peers.extend(g.node.raft().membership().all());
        }
        peers.remove(&self.cfg.node_id);
        self.live.peers = peers.into_iter().collect();
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
}

impl RaftLoop {
    // ----- the batch boundary ----------------------------------------------------------------------

    fn flush_all(&mut self) -> Result<(), i32> {
        let now = self.now_ms();
        let wall = wall_ms();
        let mut after = AfterFlush::default();
        let defer = self.cfg.fsync == FsyncMode::Always;
        // Groups whose flush waits for the one shared sync of this batch.
        let mut waiting: Vec<(GroupId, SyncPoint)> = Vec::new();
        // Leaders' own log syncs, handed to the sync threads as one round.
        let mut round = Vec::new();
        // Only the groups with work: an idle group has nothing to flush ([`quiet`]).
        let flushed: Vec<GroupId> = self.active.iter().copied().collect();
        self.active.retain(|id| self.groups.contains_key(id));
        for id in &flushed {
            let Some(g) = self.groups.get_mut(id) else {
                continue;
            };
            let mut events = Vec::new();
            match flush_group(g, now, defer, &mut round, &mut events) {
                Ok(Flushed::Done) => {}
                Ok(Flushed::Waits(at)) => {
                    waiting.push((g.id, at));
                    continue;
                }
                Err(e) => {
                    log::error!("group {}: fatal: {e}; stopping", g.id);
                    return Err(1);
                }
            }
            let auth = (&mut self.auth, &mut self.auth_seen, &*self.auth_counts);
            settle_group(g, events, (now, wall), auth, &mut after);
        }
        self.start_round(round)?;
        let covered = self.sync_waiting(&waiting)?;
        for ((id, at), covered) in waiting.into_iter().zip(covered) {
            let g = self.groups.get_mut(&id).expect("a waiting group is hosted");
            let mut events = Vec::new();
            let r = if covered {
                g.node.synced(at, now, &mut |ev| events.push(ev))
            } else {
                // Not covered by a shared sync: the group syncs by itself (and its driver
                // applies the failure policy to a refusal).
                g.node.flush(now, &mut |ev| events.push(ev))
            };
            if let Err(e) = r {
                log::error!("group {id}: fatal: {e}; stopping");
                return Err(1);
            }
            let auth = (&mut self.auth, &mut self.auth_seen, &*self.auth_counts);
            settle_group(g, events, (now, wall), auth, &mut after);
        }
        self.begin_snapshots(now, &flushed);
        let mut members_changed = false;
        for id in flushed {
            if let Some(g) = self.groups.get_mut(&id) {
                let m = g.node.raft().membership_index();
                members_changed |= std::mem::replace(&mut g.members_seen, m) != m;
                self.sizes_dirty.insert(id);
                self.view_dirty.insert(id);
                if group_idle(g) && !g.node.raft().snapshot_due(now) {
                    self.active.remove(&id);
                }
            }
        }
        if after.big_batch {
            super::release_freed_memory();
        }
        for a in after.new_peers {
            self.net.ensure_peer(a.id, &a.raft_addr);
        }
        self.after_records(now);
        // Every group's members, gathered when a group's membership changed, and once a second
        // (groups come and go).
        if members_changed || self.last_hello.elapsed() >= Duration::from_secs(1) {
            self.refresh_hello();
        }
        if self.last_view.elapsed() >= Duration::from_millis(100) {
            self.last_view = Instant::now();
            self.publish_view();
        }
        Ok(())
    }

    /// Hand this batch's background syncs to the sync threads; should they be gone, sync here.
    fn start_round(&mut self, round: Vec<SyncJob>) -> Result<(), i32> {
        if round.is_empty() {
            return Ok(());
        }
        let Err(e) = self.sync_jobs.try_send(round) else {
            return Ok(());
        };
        for job in e.into_inner() {
            let Some(g) = self.groups.get_mut(&job.group) else {
                continue;
            };
            g.syncs_inflight -= 1;
            if let Err(e) = job.sync.run() {
                log::error!("group {}: fatal: {e}; stopping", g.id);
                return Err(1);
            }
            g.node.storage_mut().inner.background_synced(&job.sync);
            g.node.log_persisted(job.at);
        }
        Ok(())
    }

    /// Make the waiting groups' writes durable with one sync of the data dir's filesystem;
    /// which of them it covered. A group alone syncs by itself (one fdatasync is cheaper than a
    /// filesystem sync), and so does one on another filesystem or whose writes were refused.
    fn sync_waiting(&mut self, waiting: &[(GroupId, SyncPoint)]) -> Result<Vec<bool>, i32> {
        let Some(fs) = self.fs_sync.clone().filter(|_| waiting.len() > 1) else {
            return Ok(vec![false; waiting.len()]);
        };
        let mut covered = Vec::with_capacity(waiting.len());
        for (id, _) in waiting {
            let g = self.groups.get_mut(id).expect("a waiting group is hosted");
            covered
                .push(g.shared_sync && g.node.storage_mut().inner.write_for_shared_sync().is_ok());
        }
        if !covered.contains(&true) {
            return Ok(covered);
        }
        let t = Instant::now();
        if let Err(e) = fs.run() {
            // As after a failed fdatasync, what the page cache holds is unknown.
            log::error!("fatal: {e}; stopping");
            return Err(1);
        }
        self.fsync_hist.observe_us(t.elapsed().as_micros() as u64);
        self.fsync_hist.shared.fetch_add(1, Ordering::Relaxed);
        for ((id, _), _) in waiting.iter().zip(&covered).filter(|(_, c)| **c) {
            let g = self.groups.get_mut(id).expect("a waiting group is hosted");
            g.node.storage_mut().inner.shared_synced();
        }
        Ok(covered)
    }

    fn publish_view(&mut self) {
        if self.last_sizes.elapsed() >= Duration::from_secs(1) {
            self.last_sizes = Instant::now();
            // Only groups flushed since: an idle group's files do not change.
            for id in std::mem::take(&mut self.sizes_dirty) {
                let Some(g) = self.groups.get(&id) else {
                    self.sizes.remove(&id);
                    continue;
                };
                let log = dir_bytes(&g.dir.join("log"));
                let snap = dir_bytes(&g.dir.join("snap"));
                self.sizes.insert(g.id, (log, snap));
                self.view_dirty.insert(id);
            }
            // A raised space alarm clears here once space returns, writes or not.
            if let Some(space) = self.data.space() {
                space.recheck();
            }
        }
        let node_id = self.cfg.node_id;
        // Only the views of groups flushed (or measured) since the last publish are built
        // again: an idle group's view does not change.
        let dirty = std::mem::take(&mut self.view_dirty);
        let view = |g: &Group| -> GroupView {
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
                quiet: r.is_quiet(),
                proposals: g.proposals,
                writes_refused: g.writes_refused,
                max_txn_ops: g.node.state_machine().store().limits().max_txn_ops as u64,
                max_leases: g.node.state_machine().store().limits().max_leases as u64,
                leases: g.node.state_machine().store().lease_count() as u64,
                clock_drift_peers: r.clock_drift_peers() as u64,
                node_stats: g.node.stats(),
                raft_stats: r.stats(),
            }
        };
        let fresh: Vec<GroupView> = dirty
            .iter()
            .filter_map(|id| self.groups.get(id).map(|g| view(g)))
            .collect();
        let mut v = self.admin.lock().expect("admin lock");
        v.node_id = node_id;
        v.version = crate::VERSION;
        v.raft_addr.clone_from(&self.cfg.raft_addr);
        v.client_addr.clone_from(&self.cfg.client_addr);
        v.running = !self.draining;
        if v.groups
            .iter()
            .map(|g| g.group)
            .eq(self.groups.keys().copied())
        {
            for gv in fresh {
                if let Ok(i) = v.groups.binary_search_by_key(&gv.group, |g| g.group) {
                    v.groups[i] = gv;
                }
            }
        } else {
            // Groups came or went: every view again (sorted by group, as `groups` is).
            v.groups = self.groups.values().map(|g| view(g)).collect();
        }
        v.clients = self.hub.view();
        v.records = RecordsView {
            group_dirs_pending_removal: self.sys.dirs_pending_removal(),
            group_dirs_freed: self.sys.dirs_freed(),
            group_handshake_refusals: self.greetings.refusals,
        };
        v.peer_input_bytes = self.net.input_bytes();
        if let Some(seal) = self.net.seal.get() {
            use std::sync::atomic::Ordering::Relaxed;
            v.sealed_links = (seal.opened.load(Relaxed), seal.refused.load(Relaxed));
        }
        if let Some(tls) = self.net.tls.get() {
            v.tls = tls.view();
        }
        self.publish_health(&mut v, &dirty);
        v.space = self.data.space().map(|s| s.stats());
        v.accept = self.accept.view();
        v.auth = self.auth_view();
        v.disk = DiskView {
            segment_bytes: self.cfg.segment_bytes,
            segment_initial_bytes: self.cfg.segment_initial_bytes,
            snapshot_retry_ms: self.cfg.raft.snapshot_retry_ms,
        };
        v.peer_port = self.net.port_view();
    }
}

/// What the flushes of one batch leave for the loop to do once every group is flushed.
#[derive(Default)]
struct AfterFlush {
    /// A flush applied so much that freed memory is worth returning to the OS.
    big_batch: bool,
    /// Peers whose addresses were applied: dial them.
    new_peers: Vec<MemberAddr>,
}

/// Act on what one group's flush reported: answer writes and reads, log role changes, then
/// the group's own after-flush work.
fn settle_group(
    g: &mut Group,
    events: Vec<Event<GroupOutput>>,
    (now, wall): (u64, u64),
    (auth, auth_seen, counts): (&mut super::auth::AuthState, &mut Option<u64>, &AuthCounts),
    after: &mut AfterFlush,
) {
    after.big_batch |= events.len() > TRIM_AFTER_EVENTS;
    // Group 0 holds the auth records: read them again before this flush's reads are
    // served, so a read checks against the state it reads from.
    if g.id == 0 {
        reload_auth(auth, auth_seen, g.node.state_machine().store());
    }
    let gate = Gate {
        auth: &*auth,
        counts,
    };
    for ev in events {
        match ev {
            Event::Applied {
                index,
                term,
                output,
            } => match output {
                GroupOutput::Kv(applied) => {
                    if let Some(p) = g.pending_sys.remove(&index) {
                        answer_system(g, index, term, &applied, p);
                    } else if let Some((t, reply)) = g.pending_writes.remove(&index) {
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
                    Ok(true) => after.new_peers.push(a),
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
                    let sm = g.node.state_machine();
                    answer_or_park(sm, req, reply, &mut g.parked_reads, gate);
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
    after_flush(g, now, wall, gate);
}
