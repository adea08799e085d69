//! A group as the raft thread holds it, its pending requests, the background log syncs, and
//! what follows each flush.

use super::*;

pub(super) enum ReadReq {
    Get(Vec<u8>),
    BatchGet(Vec<Vec<u8>>),
    List(Vec<u8>),
}

pub(super) struct Watch {
    pub(super) reply: Reply,
    pub(super) keys: Vec<Vec<u8>>,
    pub(super) next: LogIndex,
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
    pub(super) pending_writes: HashMap<LogIndex, (Term, Reply)>,
    /// System writes proposed for a client (group 0 only: `group create` and `remove`).
    pub(super) pending_sys: HashMap<LogIndex, (Term, Reply, SysAnswer)>,
    pub(super) index_reads: VecDeque<(u64, Reply, ReadReq)>,
    pub(super) lease_reads: Vec<(LogIndex, Reply, ReadReq)>,
    pub(super) watches: Vec<Watch>,
    pub(super) member_op: Option<MemberOp>,
    pub(super) last_expire_ms: u64,
    pub(super) expire_index: LogIndex,
    pub(super) proposals: u64,
    /// Client writes refused before they were proposed (they took no log entry).
    pub(super) writes_refused: u64,
    /// Background fdatasyncs of this group's log running now.
    pub(super) syncs_inflight: usize,
    /// The last index a background sync was started for.
    pub(super) sync_started_upto: LogIndex,
    pub(super) dir: PathBuf,
}

/// An fdatasync the raft thread hands to the sync thread.
pub(super) struct SyncJob {
    pub(super) group: GroupId,
    pub(super) at: SyncPoint,
    pub(super) sync: BackgroundSync,
}

/// A finished [`SyncJob`].
pub(super) struct SyncDone {
    pub(super) job: SyncJob,
    pub(super) result: Result<(), String>,
}

/// Start the threads that run the leaders' log fdatasyncs (fsync `always`), so a leader keeps
/// taking and replicating writes while its disk syncs the previous batches.
pub(super) fn start_sync_thread(
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

/// Flush one group. A leader's own log sync goes to the sync thread (one at a time per group);
/// everything else syncs inside the flush.
pub(super) fn flush_group(
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
    for (_, (_, reply)) in g.pending_writes.drain() {
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
    if let Some(op) = g.member_op.take() {
        op.reply.send(unavailable(why));
    }
    for w in g.watches.drain(..) {
        w.reply.send(unavailable(why));
    }
}

pub(super) fn after_flush(g: &mut Group, now: u64, wall: u64) {
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
                Err(e) => {
                    stop_on_fatal(g.id, &e);
                    log::debug!("group {}: expiry not proposed: {e}", g.id)
                }
            }
        }
    }
}
