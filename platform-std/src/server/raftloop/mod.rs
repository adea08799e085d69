//! The raft thread: owns every group (driver, storage, DtKV, pending client requests) and runs
//! the batch loop — wait for one input, drain every input that is ready, tick, then `flush` each
//! group **once** (group commit) and answer whatever the flush decided. With many busy groups
//! the round drains its inputs a second time just before the flush ([`SECOND_LOOK_GROUPS`]).
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
    EncodedResponse, ErrorCode, LeaseInfo, MemberChange, MemberInfo, NodeInfo, ReadMode, Request,
    RequestFrame, Response, StatusInfo, TxnCompare, TxnWrite, WatchEvent, WriteOp,
    PROTOCOL_VERSION,
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
mod balance;
mod flush;
mod greet;
mod group;
mod health;
mod members;
mod quiet;
mod requests;
mod snapbg;
mod system;
mod view;

pub use auth::HashedPassword;
use auth::*;
use backup::*;
use balance::Balance;
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
use super::admin::{AdminView, AuthView, DiskView, GroupView, PeerView, ReadCounts, RecordsView};
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
use crate::storage::journal::{self, Journal};
use crate::storage::{group_dir, BackgroundSync, DataDir, FsyncMode, StorageOptions};

type GroupNode = Node<TimedStorage, PeerTransport, KvSm, Zeroed<u8>>;

/// Bytes of each group's frame/apply buffer: the largest entry plus framing.
const NODE_BUF_BYTES: usize = (1 << 20) + 8192;
/// Shortest time between two expiry proposals of one group.
const EXPIRE_EVERY_MS: u64 = 50;
/// Background log fdatasyncs one group may have running at once (and threads running them).
const MAX_SYNCS_INFLIGHT: usize = 2;
/// Longest the health judged for a client's `Health` or `NodeStatus` answer is reused for the
/// next ones: as fresh as `/health`.
const HEALTH_ANSWER_MS: u64 = 100;
/// Milliseconds between two ticks of every group.
const TICK_MS: u64 = 5;
/// Most inputs handled before a flush (bounds latency under a flood).
const MAX_BATCH_INPUTS: usize = 16384;
/// Busy groups (the active set, group 0 included) above which a round looks at its sockets
/// and queues a second time, just before its flush ([`RaftLoop::serve`]). With many busy
/// groups each write is most of its group's round, so a round that takes in the requests
/// that arrived while it handled its first ones costs less per write (64 groups: 15-20 % less
/// CPU per write, docs/BENCHMARKS.md); with one or a few, the flush is cheap, the syncs are
/// what bounds the node, and the second look only delays the sync (one group: 40 % fewer
/// syncs a second and fewer writes).
const SECOND_LOOK_GROUPS: usize = 8;
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
    sync_jobs: Sender<SyncWork>,
    /// One sync of the data dir's filesystem for every group a batch wrote to (fsync always
    /// and `--shared-sync`), else `None`.
    fs_sync: Option<Arc<FsSync>>,
    /// The data dir's sync journal: rounds of several busy groups sync through it.
    journal: Option<Arc<Journal>>,
    /// Each message: the jobs one sync finished.
    synced: Receiver<SyncFinished>,
    /// Follower flushes frozen for a sync on a sync thread ([`Frozen`]) since start.
    frozen_syncs: u64,
    /// Inputs a frozen group could not hold ([`group::MAX_DEFERRED`]): peer frames dropped,
    /// client requests refused.
    deferred_refused: u64,
    /// Snapshots written off the raft thread, back from their threads ([`snapbg`]).
    snap_written_tx: Sender<SnapWritten>,
    snap_written: Receiver<SnapWritten>,
    /// Snapshots being written now ([`snapbg::MAX_SNAPSHOT_WRITERS`] at most).
    snapshot_writers: usize,
    /// Boxed (and built in the box): a `Group` holds its driver inline (tens of KiB), and a
    /// B-tree node of inline values made every insert/remove use a stack frame of hundreds of
    /// KiB.
    groups: BTreeMap<GroupId, Box<Group>>,
    /// The groups with work, ticked and flushed each round ([`quiet`]).
    active: std::collections::BTreeSet<GroupId>,
    /// Idle groups to put back in the active set at a time (ms): when a snapshot falls due
    /// by time, with no input to wake them.
    wake_at: std::collections::BTreeSet<(u64, GroupId)>,
    /// Node liveness, which watches quiet groups ([`quiet`]).
    live: Liveness,
    /// Groups flushed since their data dirs' sizes were last read (an idle group's do not
    /// change); a group is named once ([`Group::sizes_dirty`]).
    sizes_dirty: Vec<GroupId>,
    /// Groups flushed since the admin view was last published; each once
    /// ([`Group::view_dirty`]).
    view_dirty: Vec<GroupId>,
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
    /// The threads a round's group flushes run on (`--raft-threads`).
    flushers: flush::Flushers,
    /// Groups the node opens at start (their watch histories share `--kv-events-node-mb`);
    /// 0 once they are open.
    expected_groups: usize,
    /// The watch-history caps every group has now ([`RaftLoop::share_event_history`]).
    event_share: (usize, usize),
    /// The node's health as clients' `Health` and `NodeStatus` answers carry it, serialized,
    /// and when it was judged ([`RaftLoop::judged_health`]).
    health_answer: Option<JudgedHealth>,
    /// `Health` requests answered, and how many times every group's health was judged for
    /// them and for `NodeStatus` requests.
    health_counts: (u64, u64),
    /// Leader balance's next pass and counters ([`balance`]).
    balance: Balance,
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
        // Before any group opens: the journal's pieces go back into their segments first.
        let replayed = journal::replay(data.path())?;
        if replayed.pieces + replayed.skipped > 0 {
            log::info!(
                "sync journal: {} pieces written back into {} segments ({} of segments since removed)",
                replayed.pieces,
                replayed.segments,
                replayed.skipped
            );
        }
        let journal = fs_sync
            .as_ref()
            .filter(|_| cfg.sync_journal)
            .map(|fs| Arc::new(Journal::new(data.path(), fs.clone(), replayed.epoch)));
        let (sync_jobs, synced) =
            start_sync_thread(fsync_hist.clone(), fs_sync.clone(), journal.clone())?;
        let accept_backoff_max = cfg.accept_backoff_max;
        let fds = FdBudget::new(&cfg, fdlimit::raise_soft_limit());
        let hub = Hub::new(cfg.client_limits);
        let flushers = flush::Flushers::start(cfg.raft_threads)?;
        let (snap_written_tx, snap_written) = smol::channel::unbounded();
        let balance = Balance::new(cfg.node_id);
        let mut me = RaftLoop {
            snap_written_tx,
            snap_written,
            snapshot_writers: 0,
            sync_jobs,
            frozen_syncs: 0,
            deferred_refused: 0,
            fs_sync,
            journal,
            synced,
            cfg,
            data,
            net,
            rx,
            hub,
            groups: BTreeMap::new(),
            active: Default::default(),
            wake_at: Default::default(),
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
            flushers,
            expected_groups: 1,
            event_share: (0, 0),
            health_answer: None,
            health_counts: (0, 0),
            balance,
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
        me.expected_groups = 1 + ids.len();
        me.open_group(0, &initial, bootstrap)?;
        for g in me.groups_to_open(ids)? {
            me.open_group(g, &[], None)?;
        }
        me.expected_groups = 0;
        me.share_event_history(None);
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
        self.open_group_with(g, None, addrs, bootstrap)
    }

    /// How every group's storage is opened.
    fn storage_options(&self) -> StorageOptions {
        StorageOptions {
            fsync: self.cfg.fsync,
            keep_snapshots: self.cfg.keep_snapshots,
            compact_delay: self.cfg.compact_delay,
            prefill_segments: self.cfg.prefill_segments,
            segment_bytes: self.cfg.segment_bytes,
            initial_segment_bytes: self.cfg.segment_initial_bytes,
            space: self.cfg.space,
            ..StorageOptions::default()
        }
    }

    /// [`RaftLoop::open_group`] with its storage already opened (by
    /// [`RaftLoop::open_stores`]), or opened here when `None`.
    fn open_group_with(
        &mut self,
        g: GroupId,
        store: Option<crate::storage::FileStorage>,
        addrs: &[MemberAddr],
        bootstrap: Option<&[NodeId]>,
    ) -> Result<(), String> {
        // Group 0 is the node's own: it opens whatever the limit (a node without it cannot run).
        // (An already opened store was counted when it was opened.)
        if g != 0 && store.is_none() && !self.groups.contains_key(&g) {
            self.fds
                .check(self.groups.len() + 1)
                .map_err(|e| format!("group {g}: {e}"))?;
        }
        let mut store = match store {
            Some(store) => store,
            None => {
                let opts = self.storage_options();
                self.data.open_group(g, &opts).map_err(|e| e.to_string())?
            }
        };
        let dir = group_dir(self.data.path(), g);
        let shared_sync = self.fs_sync.as_ref().is_some_and(|s| s.covers(&dir));
        if let Some(j) = self.journal.as_ref().filter(|_| shared_sync) {
            store.attach_journal(j.clone());
        }
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
        // Built with the full per-group history (address space only); its caps follow the
        // node's budget ([`RaftLoop::share_event_history`]).
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
                pending_writes: PendingWrites::default(),
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
                reads: ReadCounts::default(),
                syncs_inflight: 0,
                spare_events: Vec::new(),
                sync_started_upto: 0,
                shared_sync: shared_sync,
                members_seen: 0,
                sizes_dirty: true,
                view_dirty: false,
                dir: dir,
                frozen: None,
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
        self.sizes_dirty.push(g);
        self.share_event_history(Some(g));
        Ok(())
    }

    /// Cap the groups' watch histories at their share of `--kv-events-node-mb` over the groups
    /// the node hosts (at start, those it is opening). The share moves only when their count
    /// passes a power of two ([`ServerConfig::group_kv_limits`]); then every group's caps are
    /// set again (which empties its history, so it must be rare), else only the group just
    /// `opened` gets them.
    pub(super) fn share_event_history(&mut self, opened: Option<GroupId>) {
        let groups = self.groups.len().max(self.expected_groups);
        let l = self.cfg.group_kv_limits(groups);
        let share = (l.event_slots, l.event_bytes);
        let set = |g: &mut Group| {
            g.node
                .state_machine_mut()
                .store_mut()
                .set_event_caps(share.0, share.1);
        };
        if std::mem::replace(&mut self.event_share, share) != share {
            log::info!(
                "watch history: {} events and {} KiB per group over {groups} groups \
                 (--kv-events-node-mb)",
                share.0,
                share.1 >> 10
            );
            self.groups.values_mut().for_each(|g| set(g));
        } else if let Some(g) = opened.and_then(|g| self.groups.get_mut(&g)) {
            set(g);
        }
    }

    /// Serve client connections from `clients` and run until shutdown. Returns the process
    /// exit code.
    pub fn run(mut self, clients: Async<std::net::TcpListener>) -> i32 {
        crate::affinity::enter_raft_cpu();
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
                    Synced(Option<SyncFinished>),
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
                    Woke::Synced(Some(done)) => n += self.syncs_done(done),
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
                    if g.frozen.is_some() {
                        // No input until its sync is done; the next tick makes up the time.
                        continue;
                    }
                    if let Err(e) = g.node.tick(now) {
                        log::error!("group {}: tick failed: {e}; stopping", g.id);
                        return 1;
                    }
                }
                self.liveness(now);
                self.wake_due(now);
                self.balance_leaders(now);
            }
            if self.active.len() > SECOND_LOOK_GROUPS {
                // Requests (and peer frames, sync results) that came while this round handled
                // its inputs join it rather than wait a whole round.
                futures_lite::future::yield_now().await;
                while ex.try_tick() {}
                self.take_inputs();
            }
            if let Err(code) = self.flush_all() {
                return code;
            }
            self.hub.write_out();
            self.tell_ready_once_led();
            if self.stopping.load(Ordering::Relaxed)
                && !self.draining
                && self.handed_off(self.now_ms())
            {
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
            n += self.syncs_done(done);
        }
        while let Ok(done) = self.snap_written.try_recv() {
            // (Its writer is free even if the group is frozen and takes the result later.)
            debug_assert!(self.snapshot_writers > 0, "a snapshot came back uncounted");
            self.snapshot_writers = self.snapshot_writers.saturating_sub(1);
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
            // (A frozen follower's sync is still running: its state is taken at the next
            // start instead.)
            if snapshot && g.frozen.is_none() {
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
