//! A group as the raft thread holds it, its pending requests, the background log syncs, and
//! what follows each flush.

use super::*;

pub(super) enum ReadReq {
    Get(Vec<u8>),
    BatchGet(Vec<Vec<u8>>),
    List(Vec<u8>),
    /// Lease `id`, or every lease (0).
    Leases(u64),
}

pub(super) struct Watch {
    pub(super) reply: Reply,
    pub(super) keys: Vec<Vec<u8>>,
    pub(super) next: LogIndex,
}

impl Watch {
    /// A watch counted against its connection's and the node's watch limits until dropped.
    pub(super) fn new(reply: Reply, keys: Vec<Vec<u8>>, next: LogIndex) -> Watch {
        reply.conn.watching(Watch::counted(&keys) as isize);
        Watch { reply, keys, next }
    }

    /// What it counts against the limits: one per key, a watch of the whole tree one.
    pub(super) fn counted(keys: &[Vec<u8>]) -> usize {
        keys.len().max(1)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.reply
            .conn
            .watching(-(Watch::counted(&self.keys) as isize));
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Step {
    AddObserver(NodeId),
    Promote(NodeId),
    Remove(NodeId),
    Commit,
    CatchUp(NodeId),
    /// Remove a removed member's record (group 0).
    DropRecord(NodeId),
}

pub(super) struct MemberOp {
    pub(super) reply: Reply,
    pub(super) steps: VecDeque<Step>,
    pub(super) waiting: Option<(LogIndex, Term)>,
    /// The last step's committed index: a new member has caught up once it matches it.
    pub(super) done_index: LogIndex,
    pub(super) started: Instant,
}

pub(super) struct Group {
    pub(super) id: GroupId,
    pub(super) node: GroupNode,
    pub(super) book: AddrBook,
    pub(super) pending_writes: PendingWrites<Reply>,
    /// System writes proposed for a client (group 0 only: `group create` and `remove`).
    pub(super) pending_sys: HashMap<LogIndex, (Term, Reply, SysAnswer)>,
    pub(super) index_reads: VecDeque<(u64, Reply, ReadReq)>,
    pub(super) lease_reads: Vec<(LogIndex, Reply, ReadReq)>,
    /// Confirmed reads of connections over their share of unsent answers: answered once their
    /// clients take their answers (from the state then, at least as new as the confirmed one).
    pub(super) parked_reads: Vec<(Reply, ReadReq)>,
    pub(super) watches: Vec<Watch>,
    pub(super) member_op: Option<MemberOp>,
    pub(super) last_expire_ms: u64,
    pub(super) expire_index: LogIndex,
    pub(super) proposals: u64,
    /// Client writes refused before they were proposed (they took no log entry).
    pub(super) writes_refused: u64,
    /// Client reads taken on, by how they are served ([`ReadCounts`]).
    pub(super) reads: ReadCounts,
    /// Background fdatasyncs of this group's log running now.
    pub(super) syncs_inflight: usize,
    /// The events vector of the group's last flush, emptied, for the next one to fill.
    pub(super) spare_events: Vec<Event<GroupOutput>>,
    /// The last index a background sync was started for.
    pub(super) sync_started_upto: LogIndex,
    /// The data dir's filesystem sync covers this group's storage (`--shared-sync`).
    pub(super) shared_sync: bool,
    /// The membership index when the loop last gathered this group's members.
    pub(super) members_seen: LogIndex,
    /// Named in the loop's `sizes_dirty` / `view_dirty` lists: a flush since the sizes were
    /// read / the view was published. The flags keep each list to one entry per group
    /// without a set lookup per group and round.
    pub(super) sizes_dirty: bool,
    pub(super) view_dirty: bool,
    pub(super) dir: PathBuf,
    /// Waiting for a follower's sync on a sync thread ([`Frozen`]); `None` otherwise.
    pub(super) frozen: Option<Frozen>,
}

/// A follower whose flush left answers (its acknowledgements) waiting for a sync of its log and
/// hard state, which a sync thread runs while the raft thread goes on with the other groups. No
/// input may reach its node until `Node::synced` ran (the sync must cover every answer it
/// releases): what arrives meanwhile waits here, and is handled in order right after.
pub(super) struct Frozen {
    pub(super) at: SyncPoint,
    /// The sync is done: the next round runs `Node::synced`.
    pub(super) ready: bool,
    pub(super) deferred: Vec<Deferred>,
    /// Bytes of the peer frames in `deferred`.
    peer_bytes: usize,
}

/// Most inputs a frozen group holds. A sync takes a fraction of a millisecond; one that does
/// not return (a disk that stopped answering) would otherwise let a frozen follower hold every
/// heartbeat its leader sends, and every request its clients pipeline, until it does.
pub(super) const MAX_DEFERRED: usize = 1024;
/// Most bytes of peer frames a frozen group holds (its leader's window bounds its appends).
pub(super) const MAX_DEFERRED_PEER_BYTES: usize = 16 << 20;

impl Frozen {
    pub(super) fn new(at: SyncPoint) -> Frozen {
        Frozen {
            at,
            ready: false,
            deferred: Vec::new(),
            peer_bytes: 0,
        }
    }

    /// Hold `input` until the group thaws; past [`MAX_DEFERRED`] inputs (or
    /// [`MAX_DEFERRED_PEER_BYTES`] of peer frames) it is handed back instead: the caller drops a
    /// peer frame (Raft makes up for a lost message: the leader sends again) and refuses a
    /// client request as unavailable. A finished snapshot is always held (one at most is
    /// written at a time).
    pub(super) fn defer(&mut self, input: Deferred) -> Result<(), Deferred> {
        let peer = match &input {
            Deferred::Peer(bytes) => Some(bytes.len()),
            _ => None,
        };
        let snapshot = matches!(input, Deferred::Snapshot(_));
        if !room(self.deferred.len(), self.peer_bytes, peer, snapshot) {
            return Err(input);
        }
        self.peer_bytes += peer.unwrap_or(0);
        self.deferred.push(input);
        Ok(())
    }
}

/// Whether a frozen group holding `held` inputs, `peer_bytes` of them peer frames, takes one
/// more: a peer frame of `peer` bytes, a finished snapshot, or else a client request.
fn room(held: usize, peer_bytes: usize, peer: Option<usize>, snapshot: bool) -> bool {
    snapshot
        || (held < MAX_DEFERRED
            && peer.is_none_or(|b| peer_bytes.saturating_add(b) <= MAX_DEFERRED_PEER_BYTES))
}

/// An input that reached a frozen group.
pub(super) enum Deferred {
    Peer(Vec<u8>),
    Client(Request, Reply),
    Snapshot(Box<SnapWritten>),
}

/// A leader's proposed client writes waiting for their entries to apply, in index order (a
/// queue rather than a map: they are proposed and applied in that order, so taking the answer
/// for an applied entry looks at the front only).
pub(super) struct PendingWrites<R>(VecDeque<(LogIndex, Term, R)>);

impl<R> Default for PendingWrites<R> {
    fn default() -> Self {
        PendingWrites(VecDeque::new())
    }
}

impl<R> PendingWrites<R> {
    /// A write proposed at `index` in `term`. Writes waiting at `index` or above were
    /// overwritten: this node's log was cut beneath them while another node led, and it leads
    /// again now; each goes to `overwritten`.
    pub(super) fn push(
        &mut self,
        index: LogIndex,
        term: Term,
        reply: R,
        overwritten: impl FnMut(R),
    ) {
        self.take_while(|w| w.0 >= index, true, overwritten);
        self.0.push_back((index, term, reply));
    }

    /// The entry at `index` applied: the write waiting for it (and the term it was proposed
    /// in), if there is one. Writes waiting below `index` were overwritten by entries that
    /// answer nobody (a new leader's no-op, a configuration): each goes to `overwritten`.
    pub(super) fn applied(
        &mut self,
        index: LogIndex,
        overwritten: impl FnMut(R),
    ) -> Option<(Term, R)> {
        self.take_while(|w| w.0 < index, false, overwritten);
        match self.0.front() {
            Some(w) if w.0 == index => self.0.pop_front().map(|(_, t, r)| (t, r)),
            _ => None,
        }
    }

    /// Every write waiting at `upto` or below was overwritten (its entry applied without
    /// answering it): each goes to `overwritten`.
    pub(super) fn overwritten_through(&mut self, upto: LogIndex, overwritten: impl FnMut(R)) {
        self.take_while(|w| w.0 <= upto, false, overwritten);
    }

    fn take_while(
        &mut self,
        cond: impl Fn(&(LogIndex, Term, R)) -> bool,
        from_back: bool,
        mut to: impl FnMut(R),
    ) {
        loop {
            let end = if from_back {
                self.0.back()
            } else {
                self.0.front()
            };
            if !end.is_some_and(&cond) {
                return;
            }
            let w = if from_back {
                self.0.pop_back()
            } else {
                self.0.pop_front()
            };
            to(w.expect("checked").2);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every waiting write, taken out.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = R> + '_ {
        self.0.drain(..).map(|(_, _, r)| r)
    }
}

/// The answer to a write whose entry another leader's entry replaced.
pub(super) fn overwritten() -> Response {
    unavailable("the write was overwritten by a new leader; retry with the same session")
}

/// Send [`overwritten`].
pub(super) fn answer_overwritten(reply: Reply) {
    reply.send(overwritten());
}

/// An fdatasync the raft thread hands to the sync thread.
pub(super) struct SyncJob {
    pub(super) group: GroupId,
    pub(super) at: SyncPoint,
    pub(super) sync: BackgroundSync,
    /// The data dir's filesystem sync covers this group's storage.
    pub(super) shared: bool,
}

/// What the raft thread hands the sync threads: a round's leader log syncs, or the sync that
/// frozen followers wait for.
pub(super) enum SyncWork {
    Round(Vec<SyncJob>),
    Followers(FollowerSync),
}

/// Followers frozen until one sync covers what their flushes wrote ([`Frozen`]): each group,
/// and whether its new bytes are in the sync journal (else a sync of the data dir's
/// filesystem covers it).
pub(super) struct FollowerSync {
    pub(super) groups: Vec<(GroupId, bool)>,
}

/// What comes back: one message per sync, naming every job it finished.
pub(super) enum SyncFinished {
    Round(Vec<SyncDone>),
    Followers(FollowerSync, Result<(), String>),
}

/// Where the raft thread hands [`SyncWork`] to the sync threads, and where each sync comes
/// back.
pub(super) type SyncChannels = (Sender<SyncWork>, Receiver<SyncFinished>);

/// A finished [`SyncJob`].
pub(super) struct SyncDone {
    pub(super) job: SyncJob,
    pub(super) result: Result<(), String>,
}

/// Start the threads that run the leaders' log fdatasyncs (fsync `always`), so a leader keeps
/// taking and replicating writes while its disk syncs the previous batches. A thread takes
/// every job queued when it wakes: several groups' jobs are covered by one sync of the data
/// dir's filesystem when `fs` is given, so the syncs a node makes do not grow with the groups
/// that write.
pub(super) fn start_sync_thread(
    hist: Arc<Histogram>,
    fs: Option<Arc<FsSync>>,
    journal: Option<Arc<Journal>>,
) -> Result<SyncChannels, String> {
    let (job_tx, job_rx) = smol::channel::unbounded::<SyncWork>();
    // One message per sync, naming every job it finished.
    let (done_tx, done_rx) = smol::channel::unbounded::<SyncFinished>();
    for i in 0..MAX_SYNCS_INFLIGHT {
        let (job_rx, done_tx, hist, fs, journal) = (
            job_rx.clone(),
            done_tx.clone(),
            hist.clone(),
            fs.clone(),
            journal.clone(),
        );
        std::thread::Builder::new()
            .name(format!("shoal-fsync-{i}"))
            .spawn(move || {
                crate::affinity::leave_raft_cpu();
                while let Ok(first) = job_rx.recv_blocking() {
                    let mut jobs = Vec::new();
                    let mut followers = Vec::new();
                    for work in
                        std::iter::once(first).chain(std::iter::from_fn(|| job_rx.try_recv().ok()))
                    {
                        match work {
                            SyncWork::Round(round) => jobs.extend(round),
                            SyncWork::Followers(f) => followers.push(f),
                        }
                    }
                    let t = Instant::now();
                    hist.running.start(i);
                    let follower_bytes = |journaled: bool| {
                        followers
                            .iter()
                            .flat_map(|f| &f.groups)
                            .any(|(_, j)| *j == journaled)
                    };
                    let wants = (follower_bytes(true), follower_bytes(false));
                    // A journaled job always syncs through the journal: its bytes may be
                    // held there rather than written to its segment.
                    let shared = match &fs {
                        Some(fs)
                            if jobs.iter().filter(|j| j.shared).count() > 1
                                || jobs.iter().any(|j| j.shared && j.sync.journaled())
                                || !followers.is_empty() =>
                        {
                            Some(sync_shared(fs, journal.as_deref(), &mut jobs, wants, &hist))
                        }
                        _ => None,
                    };
                    let mut results = Vec::with_capacity(jobs.len());
                    for job in &jobs {
                        results.push(match &shared {
                            Some(r) if job.shared => r.clone(),
                            _ => {
                                let t = Instant::now();
                                let r = job.sync.run();
                                hist.observe_us(t.elapsed().as_micros() as u64);
                                r
                            }
                        });
                    }
                    hist.running.end(i);
                    if shared.is_some() {
                        hist.observe_us(t.elapsed().as_micros() as u64);
                        hist.shared
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let mut finished = Vec::with_capacity(followers.len() + 1);
                    if !jobs.is_empty() {
                        let done = jobs.into_iter().zip(results);
                        let done = done.map(|(job, result)| SyncDone { job, result }).collect();
                        finished.push(SyncFinished::Round(done));
                    }
                    for f in followers {
                        let r = shared.clone().unwrap_or_else(|| {
                            Err("no shared sync for a frozen follower".to_string())
                        });
                        finished.push(SyncFinished::Followers(f, r));
                    }
                    for done in finished {
                        if done_tx.send_blocking(done).is_err() {
                            return;
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start an fsync thread: {e}"))?;
    }
    Ok((job_tx, done_rx))
}

/// One sync for several groups' jobs: one fdatasync of the sync journal for those that copied
/// their bytes there (a group may hold them there rather than in its segment), and a sync of
/// the data dir's filesystem for any that did not. `followers`: whether frozen followers have
/// bytes in the journal, and bytes only in their own files.
fn sync_shared(
    fs: &FsSync,
    journal: Option<&Journal>,
    jobs: &mut [SyncJob],
    followers: (bool, bool),
    hist: &Histogram,
) -> Result<(), String> {
    let journaled = |j: &SyncJob| j.shared && j.sync.journaled();
    let (in_journal, in_files) = followers;
    if in_journal && journal.is_none() {
        return Err("a frozen follower's bytes are in a sync journal this node lacks".into());
    }
    if let Some(journal) = journal.filter(|_| in_journal || jobs.iter().any(journaled)) {
        hist.journal_sync(journal.sync()?);
        for job in jobs.iter_mut().filter(|j| journaled(j)) {
            job.sync.covered_by_journal();
        }
    }
    if in_files || jobs.iter().any(|j| j.shared && !j.sync.journaled()) {
        fs.run()?;
    }
    Ok(())
}

/// How a [`FlushJob`] left its group.
pub(super) enum Flushed {
    /// Flushed (a leader's own log may be syncing in the background).
    Done,
    /// Waits for this batch's shared sync, then `Node::synced`; `written`: its log and hard
    /// state went to the OS for that sync (on the flush thread), so the sync covers it;
    /// `journaled`: a sync of the sync journal covers it too.
    Waits {
        at: SyncPoint,
        written: bool,
        journaled: bool,
    },
}

/// What a [`FlushJob`] does.
#[derive(Clone, Copy)]
pub(super) enum FlushStep {
    /// The round's flush; with `defer`, a leader's own log syncs in the background and a
    /// group the shared sync covers waits for it.
    Flush { defer: bool },
    /// Go on after the round's shared sync made the group's writes durable.
    Synced(SyncPoint),
    /// The shared sync did not cover the group: flush, syncing by itself (its driver applies
    /// the failure policy to a refusal).
    Alone,
}

/// One group's flush as a flush thread runs it: the group's driver and log-sync state, borrowed
/// apart from its requests and answers (those stay on the raft thread), and what the flush left.
pub(super) struct FlushJob<'a> {
    node: &'a mut GroupNode,
    syncs_inflight: &'a mut usize,
    sync_started_upto: &'a mut LogIndex,
    shared_sync: bool,
    step: FlushStep,
    /// The group has work beyond its timers (it is not idle: entries to write, sync, send
    /// or apply, messages or reads waiting): worth a flush thread.
    pub(super) busy: bool,
    /// Several groups are busy this round: a leader's new log bytes go into the sync journal
    /// too, so that one journal sync covers them all.
    pub(super) journal: bool,
    out: Flush,
}

/// What one group's flush left, for the raft thread to act on.
pub(super) struct Flush {
    pub(super) id: GroupId,
    /// What the driver reported: applied entries, reads ready, role changes.
    pub(super) events: Vec<Event<GroupOutput>>,
    /// The leader's own log sync this flush started, for the sync threads.
    pub(super) sync: Option<SyncJob>,
    pub(super) result: Result<Flushed, NodeError>,
}

impl<'a> FlushJob<'a> {
    pub(super) fn new(g: &'a mut Group, step: FlushStep) -> FlushJob<'a> {
        // After a sync there is always work: what the sync made durable.
        let busy = match step {
            // Input alone is not work: a read answered from the local state, or a status
            // request, leaves an idle group idle (and a lone writer's rounds unshared).
            FlushStep::Flush { .. } => !g.node.is_idle(),
            FlushStep::Synced(_) | FlushStep::Alone => true,
        };
        FlushJob {
            node: &mut g.node,
            syncs_inflight: &mut g.syncs_inflight,
            sync_started_upto: &mut g.sync_started_upto,
            shared_sync: g.shared_sync,
            step,
            busy,
            journal: false,
            out: Flush {
                id: g.id,
                events: std::mem::take(&mut g.spare_events),
                sync: None,
                result: Ok(Flushed::Done),
            },
        }
    }

    pub(super) fn run(&mut self, now: u64) {
        let events = &mut self.out.events;
        self.out.result = match self.step {
            FlushStep::Flush { defer } => self.flush(now, defer),
            FlushStep::Synced(at) => self
                .node
                .synced(at, now, &mut |ev| events.push(ev))
                .map(|()| Flushed::Done),
            FlushStep::Alone => self
                .node
                .flush(now, &mut |ev| events.push(ev))
                .map(|()| Flushed::Done),
        };
    }

    pub(super) fn outcome(self) -> Flush {
        self.out
    }

    /// Flush the group. A leader's own log sync becomes [`Flush::sync`], one of the
    /// background syncs the batch hands to the sync threads at once (at most
    /// [`MAX_SYNCS_INFLIGHT`] in flight per group); a group whose storage the data dir's
    /// filesystem sync covers waits for the batch's one shared sync; everything else syncs
    /// inside the flush.
    fn flush(&mut self, now: u64, defer: bool) -> Result<Flushed, NodeError> {
        let events = &mut self.out.events;
        if !defer {
            self.node.flush(now, &mut |ev| events.push(ev))?;
            return Ok(Flushed::Done);
        }
        // Twice at most: when the log turns out durable already, the second flush acts on it.
        for _ in 0..2 {
            let at = if self.shared_sync {
                match self.node.flush_shared(now, &mut |ev| events.push(ev))? {
                    Pending::Nothing => return Ok(Flushed::Done),
                    Pending::Everything(at) => {
                        // Written out here, in parallel with the other groups' flushes; a
                        // refusal (a full medium) leaves the group to sync by itself.
                        let storage = &mut self.node.storage_mut().inner;
                        let (written, journaled) = match storage.write_for_shared_sync(self.journal)
                        {
                            Ok((_, journaled)) => (true, journaled),
                            Err(_) => (false, false),
                        };
                        return Ok(Flushed::Waits {
                            at,
                            written,
                            journaled,
                        });
                    }
                    Pending::OwnLog(at) => at,
                }
            } else {
                match self.node.flush_deferred(now, &mut |ev| events.push(ev))? {
                    None => return Ok(Flushed::Done),
                    Some(at) => at,
                }
            };
            if *self.syncs_inflight >= MAX_SYNCS_INFLIGHT || at.index <= *self.sync_started_upto {
                return Ok(Flushed::Done);
            }
            let storage = &mut self.node.storage_mut().inner;
            // Only a group on the data dir's filesystem syncs through its journal.
            let journal = self.journal && self.shared_sync;
            match storage.begin_background_sync(journal)? {
                Some(sync) => {
                    *self.syncs_inflight += 1;
                    *self.sync_started_upto = at.index;
                    self.out.sync = Some(SyncJob {
                        group: self.out.id,
                        at,
                        sync,
                        shared: self.shared_sync,
                    });
                    return Ok(Flushed::Done);
                }
                None => self.node.log_persisted(at),
            }
        }
        Ok(Flushed::Done)
    }
}

pub(super) fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub(super) fn fail_all(g: &mut Group, why: &str) {
    if let Some(f) = g.frozen.as_mut() {
        for input in f.deferred.drain(..) {
            if let Deferred::Client(_, reply) = input {
                reply.send(unavailable(why));
            }
        }
    }
    for reply in g.pending_writes.drain() {
        reply.send(unavailable(why));
    }
    for (_, (_, reply, _)) in g.pending_sys.drain() {
        reply.send(unavailable(why));
    }
    for (_, reply, _) in g.index_reads.drain(..) {
        reply.send(unavailable(why));
    }
    for (_, reply, _) in g.lease_reads.drain(..) {
        reply.send(unavailable(why));
    }
    for (reply, _) in g.parked_reads.drain(..) {
        reply.conn.parked(false);
        reply.send(unavailable(why));
    }
    if let Some(op) = g.member_op.take() {
        op.reply.send(unavailable(why));
    }
    for w in g.watches.drain(..) {
        w.reply.send(unavailable(why));
    }
}

pub(super) fn after_flush(g: &mut Group, now: u64, wall: u64, gate: Gate<'_>) {
    let auth = gate.auth;
    if g.member_op.is_some() {
        advance_member_op(g, now);
    }
    let applied = g.node.applied();
    if !g.parked_reads.is_empty() {
        let sm = g.node.state_machine();
        // In order: a connection's reads are answered oldest first.
        g.parked_reads.retain(|(reply, req)| {
            if reply.conn.over_share() {
                return true;
            }
            reply.conn.parked(false);
            answer_read(sm, req, reply, gate);
            false
        });
    }
    if !g.lease_reads.is_empty() {
        let sm = g.node.state_machine();
        let mut waiting = Vec::new();
        for (index, reply, req) in g.lease_reads.drain(..) {
            if index <= applied {
                answer_or_park(sm, req, reply, &mut g.parked_reads, gate);
            } else {
                waiting.push((index, reply, req));
            }
        }
        g.lease_reads = waiting;
    }
    if !g.watches.is_empty() {
        let kv = g.node.state_machine().store();
        g.watches
            .retain_mut(|w| deliver_events(kv, w, applied, auth, wall));
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
                Err(e) => {
                    stop_on_fatal(g.id, &e);
                    log::debug!("group {}: expiry not proposed: {e}", g.id)
                }
            }
        }
    }
}

/// Send a watch the events up to `applied` it has not seen; false when it ends. A watch whose
/// connection is over its share (its client does not take its answers) is cut before its next
/// index with `WatchLagged`, which names the index to watch from again: a watcher that falls
/// behind costs the node nothing more. Events the watcher's user may not read are left out, as
/// the user is now; a login that ended ends the watch (the client logs in again and resumes).
fn deliver_events(
    kv: &crate::kvheap::HeapKv,
    w: &mut Watch,
    applied: LogIndex,
    auth: &super::super::auth::AuthState,
    wall: u64,
) -> bool {
    if w.next > applied {
        return true;
    }
    let who = w.reply.conn.principal();
    if let Err(r) = auth.watch_allowed(who.as_ref(), wall) {
        w.reply.send(super::auth::refusal(r));
        return false;
    }
    let conn = &w.reply.conn;
    let mut cut_at = None;
    let mut open = true;
    let mut last_index = 0;
    let r = kv.events_since(w.next, b"", |ev| {
        if cut_at.is_some()
            || !open
            || ev.index > applied
            || !(w.keys.is_empty() || w.keys.iter().any(|k| in_subtree(ev.key, k)))
            || !super::super::auth::event_visible(auth, who.as_ref(), wall, ev.key)
        {
            return;
        }
        // Events of one index (a batch) go out together, so the index to resume from is exact.
        if ev.index != last_index && conn.over_share() {
            cut_at = Some(ev.index);
            return;
        }
        last_index = ev.index;
        open = w.reply.send(Response::Event(WatchEvent {
            index: ev.index,
            kind: event_kind_name(ev.kind).to_string(),
            key: ev.key.to_vec(),
            value: ev.value.to_vec(),
        }));
    });
    match r {
        Ok(()) if !open => false,
        Ok(()) => match cut_at {
            Some(next) => {
                conn.watch_cut();
                w.reply.send(Response::WatchLagged { next });
                false
            }
            None => {
                w.next = applied + 1;
                true
            }
        },
        Err(WatchError::Compacted { oldest_available }) => {
            w.reply.send(Response::WatchCompacted {
                oldest: oldest_available,
            });
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{room, PendingWrites, MAX_DEFERRED, MAX_DEFERRED_PEER_BYTES};

    #[test]
    fn a_frozen_group_holds_a_bounded_number_of_inputs_and_peer_bytes_but_every_snapshot() {
        // Held until the count is reached, client request or peer frame.
        assert!(room(0, 0, None, false));
        assert!(room(MAX_DEFERRED - 1, 0, None, false));
        assert!(!room(MAX_DEFERRED, 0, None, false));
        assert!(room(MAX_DEFERRED - 1, 0, Some(100), false));
        assert!(!room(MAX_DEFERRED, 0, Some(100), false));
        // Peer frames also by their bytes.
        assert!(room(10, MAX_DEFERRED_PEER_BYTES - 100, Some(100), false));
        assert!(!room(10, MAX_DEFERRED_PEER_BYTES - 100, Some(101), false));
        assert!(!room(0, 0, Some(MAX_DEFERRED_PEER_BYTES + 1), false));
        // A client request does not count against the peer bytes.
        assert!(room(10, MAX_DEFERRED_PEER_BYTES, None, false));
        // A finished snapshot is always held.
        assert!(room(MAX_DEFERRED, MAX_DEFERRED_PEER_BYTES, None, true));
        assert!(room(usize::MAX, usize::MAX, None, true));
    }

    fn pending(writes: &[(u64, u64)]) -> PendingWrites<&'static str> {
        let mut p = PendingWrites::default();
        for (i, (index, term)) in writes.iter().enumerate() {
            let name = ["a", "b", "c", "d", "e"][i];
            p.push(*index, *term, name, |r| {
                panic!("{r} overwritten while proposing")
            });
        }
        p
    }

    #[test]
    fn an_applied_entry_answers_its_write_and_those_it_passed_were_overwritten() {
        let mut p = pending(&[(3, 1), (5, 1), (6, 1)]);
        let mut gone = Vec::new();
        // Index 4 answers nobody (a system entry, say); 3 was not answered before it.
        assert_eq!(p.applied(4, |r| gone.push(r)), None);
        assert_eq!(gone, ["a"], "the write at 3 was passed over");
        assert_eq!(p.applied(5, |r| gone.push(r)), Some((1, "b")));
        // A no-op took index 6: nothing applied answers it, the applied index passes it.
        p.overwritten_through(6, |r| gone.push(r));
        assert_eq!(gone, ["a", "c"]);
        assert!(p.is_empty());
    }

    #[test]
    fn a_proposal_below_waiting_writes_answers_them_as_overwritten() {
        // Proposed at 7 and 8 in term 2, then the log was cut to 6 under another leader, and
        // this node leads again in term 4.
        let mut p = pending(&[(7, 2), (8, 2)]);
        let mut gone = Vec::new();
        p.push(7, 4, "new", |r| gone.push(r));
        assert_eq!(gone, ["b", "a"]);
        assert_eq!(p.applied(7, |r| gone.push(r)), Some((4, "new")));
        assert_eq!(p.drain().count(), 0);
    }
}
