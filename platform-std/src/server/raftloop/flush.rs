//! The batch boundary: every group flushed once, the syncs shared between them, and what each
//! flush leaves for the loop (answers, role changes, new peers).

use std::sync::atomic::AtomicU64;

use super::*;

impl RaftLoop {
    // ----- the batch boundary ----------------------------------------------------------------------

    pub(super) fn flush_all(&mut self) -> Result<(), i32> {
        let now = self.now_ms();
        let wall = wall_ms();
        let mut after = AfterFlush::default();
        let defer = self.cfg.fsync == FsyncMode::Always;
        // Groups whose flush waits for the one shared sync of this batch.
        let mut waiting: Vec<Waiting> = Vec::new();
        // Only the groups with work: an idle group has nothing to flush ([`quiet`]); a frozen
        // follower only once its sync is done, to release what waited for it.
        let mut steps: Vec<(GroupId, FlushStep)> = Vec::with_capacity(self.active.len());
        let mut thawed = Vec::new();
        for id in &self.active {
            match self.groups.get(id).and_then(|g| g.frozen.as_ref()) {
                Some(f) if f.ready => {
                    steps.push((*id, FlushStep::Synced(f.at)));
                    thawed.push(*id);
                }
                Some(_) => {}
                None => steps.push((*id, FlushStep::Flush { defer })),
            }
        }
        let flushed: Vec<GroupId> = steps.iter().map(|(id, _)| *id).collect();
        let outcomes = self.run_flushes(now, steps.into_iter());
        // Leaders' own log syncs, handed to the sync threads as one round.
        let mut round = Vec::new();
        let mut done = Vec::with_capacity(outcomes.len());
        for flush in outcomes {
            let id = flush.id;
            round.extend(flush.sync);
            match flush.result {
                Ok(Flushed::Done) => done.push((id, flush.events)),
                Ok(Flushed::Waits {
                    at,
                    written,
                    journaled,
                }) => waiting.push(Waiting {
                    id,
                    at,
                    written,
                    journaled,
                }),
                Err(e) => {
                    log::error!("group {id}: fatal: {e}; stopping");
                    return Err(1);
                }
            }
        }
        self.start_round(round)?;
        let frozen_before = self.frozen_syncs;
        let waiting = self.freeze_followers(waiting);
        let froze = self.frozen_syncs != frozen_before;
        let covered = self.sync_waiting(&waiting)?;
        let steps = waiting.into_iter().zip(covered).map(|(w, covered)| {
            let step = if covered {
                FlushStep::Synced(w.at)
            } else {
                FlushStep::Alone
            };
            (w.id, step)
        });
        for flush in self.run_flushes(now, steps) {
            if let Err(e) = flush.result {
                log::error!("group {}: fatal: {e}; stopping", flush.id);
                return Err(1);
            }
            done.push((flush.id, flush.events));
        }
        // Answered in group order, as before the flush threads (group 0's auth records first).
        done.sort_unstable_by_key(|(id, _)| *id);
        for (id, events) in done {
            let g = self.groups.get_mut(&id).expect("a flushed group is hosted");
            let auth = (&mut self.auth, &mut self.auth_seen, &*self.auth_counts);
            settle_group(g, events, (now, wall), auth, &mut after);
        }
        // The answers leave now, before the round's bookkeeping: their clients' next requests
        // have that much longer to arrive before the round's last look at the sockets.
        self.hub.write_out();
        // Not those frozen (this round's, whose sync runs, and those thawed at its end); when
        // there are none, every one.
        let unfrozen: Vec<GroupId>;
        let snapshot_candidates = match froze || !thawed.is_empty() {
            false => &flushed,
            true => {
                unfrozen = flushed
                    .iter()
                    .copied()
                    .filter(|id| self.groups.get(id).is_some_and(|g| g.frozen.is_none()))
                    .collect();
                &unfrozen
            }
        };
        self.begin_snapshots(now, snapshot_candidates);
        let mut members_changed = false;
        for id in flushed {
            if let Some(g) = self.groups.get_mut(&id) {
                let m = g.node.raft().membership_index();
                members_changed |= std::mem::replace(&mut g.members_seen, m) != m;
                if !std::mem::replace(&mut g.sizes_dirty, true) {
                    self.sizes_dirty.push(id);
                }
                if !std::mem::replace(&mut g.view_dirty, true) {
                    self.view_dirty.push(id);
                }
                if group_settled(g) {
                    // (Group 0 too, which stays active: the bytes it held in the journal go
                    // to its segment once it has nothing to do, as an idle group's do.)
                    g.node.storage_mut().inner.release_idle_memory();
                    g.spare_events = Vec::new();
                }
                if group_idle(g) {
                    // An idle group leaves the active set, unless a snapshot is due now; one
                    // due later by time wakes it then.
                    match g.node.snapshot_due_at() {
                        Some(at) if at <= now => {}
                        Some(at) => {
                            self.wake_at.insert((at, id));
                            self.active.remove(&id);
                        }
                        None => {
                            self.active.remove(&id);
                        }
                    }
                }
            } else {
                // Gone (removed) since it was made active.
                self.active.remove(&id);
            }
        }
        if after.big_batch {
            crate::server::release_freed_memory();
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
        self.thaw(&thawed);
        Ok(())
    }

    /// Hand the sync that waiting followers need to the sync threads and freeze them until it
    /// is done ([`Frozen`]), so that the raft thread goes on with the other groups meanwhile;
    /// the groups left to sync here. It is the sync [`RaftLoop::sync_waiting`] would have run
    /// here: one fdatasync of the sync journal for those whose bytes went there, one sync of
    /// the filesystem for the others; so only followers that share it are frozen (several, or
    /// one whose bytes are in the journal). A lone follower with bytes only in its own files
    /// still syncs them here, as does anything else that waits (a new vote or term, a
    /// leader's held answers).
    fn freeze_followers(&mut self, waiting: Vec<Waiting>) -> Vec<Waiting> {
        if self.fs_sync.is_none() {
            return waiting;
        }
        let journal = self.journal.is_some();
        let (frozen, left): (Vec<Waiting>, Vec<Waiting>) = waiting.into_iter().partition(|w| {
            let g = &self.groups[&w.id];
            g.node.raft().role() == Role::Follower
                && w.written
                && g.shared_sync
                && (journal || !w.journaled)
        });
        // (In group order, as the flush steps that follow must be.)
        let all = |frozen: Vec<Waiting>, left: Vec<Waiting>| {
            let mut all: Vec<Waiting> = frozen.into_iter().chain(left).collect();
            all.sort_unstable_by_key(|w| w.id);
            all
        };
        if frozen.is_empty() || (frozen.len() == 1 && !frozen[0].journaled) {
            return all(frozen, left);
        }
        let groups = frozen.iter().map(|w| (w.id, w.journaled)).collect();
        if self
            .sync_jobs
            .try_send(SyncWork::Followers(FollowerSync { groups }))
            .is_err()
        {
            // The sync threads are gone: sync here, as before.
            return all(frozen, left);
        }
        self.frozen_syncs += frozen.len() as u64;
        for w in frozen {
            let g = self
                .groups
                .get_mut(&w.id)
                .expect("a waiting group is hosted");
            g.frozen = Some(Frozen::new(w.at));
        }
        left
    }

    /// The groups whose frozen sync was acted on this round take what reached them meanwhile,
    /// in the order it came.
    fn thaw(&mut self, thawed: &[GroupId]) {
        for id in thawed {
            let Some(f) = self.groups.get_mut(id).and_then(|g| g.frozen.take()) else {
                continue;
            };
            for input in f.deferred {
                match input {
                    Deferred::Peer(bytes) => self.handle_peer(&bytes),
                    Deferred::Client(request, reply) => self.group_request(*id, request, reply),
                    Deferred::Snapshot(done) => self.snapshot_written(*done),
                }
            }
        }
    }

    /// Run one step of each group's flush on the flush threads. Each job borrows only its own
    /// group (so it may run on any thread); the groups stay in the map, which is not touched
    /// until every job is done. `steps` name each group once, in increasing order.
    fn run_flushes(
        &mut self,
        now: u64,
        steps: impl ExactSizeIterator<Item = (GroupId, FlushStep)>,
    ) -> Vec<Flush> {
        let mut jobs: Vec<FlushJob> = Vec::with_capacity(steps.len());
        let mut last = None;
        for (id, step) in steps {
            // What makes the borrows below disjoint: no group is named twice.
            assert!(
                last < Some(id),
                "flush steps name each group once, in order"
            );
            last = Some(id);
            let Some(g) = self.groups.get_mut(&id) else {
                continue;
            };
            let g: *mut Group = &mut **g;
            // SAFETY: `g` points into its own box, which the map keeps in place (the map is
            // not changed while `jobs` lives, only `self.flushers` is used); the ids are
            // distinct (asserted above), so no two jobs borrow the same group.
            jobs.push(FlushJob::new(unsafe { &mut *g }, step));
        }
        self.flushers.run(&mut jobs, now);
        jobs.into_iter().map(FlushJob::outcome).collect()
    }

    /// Hand this batch's background syncs to the sync threads; should they be gone, sync here.
    fn start_round(&mut self, round: Vec<SyncJob>) -> Result<(), i32> {
        if round.is_empty() {
            return Ok(());
        }
        let Err(e) = self.sync_jobs.try_send(SyncWork::Round(round)) else {
            return Ok(());
        };
        let SyncWork::Round(round) = e.into_inner() else {
            unreachable!("a round was sent");
        };
        for mut job in round {
            let Some(g) = self.groups.get_mut(&job.group) else {
                continue;
            };
            g.syncs_inflight -= 1;
            // A journaled job's bytes may be held in the journal rather than its segment.
            let synced = match self.journal.as_ref().filter(|_| job.sync.journaled()) {
                Some(j) => j.sync().map(|_| job.sync.covered_by_journal()),
                None => job.sync.run(),
            };
            if let Err(e) = synced {
                log::error!("group {}: fatal: {e}; stopping", g.id);
                return Err(1);
            }
            g.node.storage_mut().inner.background_synced(&job.sync);
            g.node.log_persisted(job.at);
        }
        Ok(())
    }

    /// Make the waiting groups' writes durable with one sync of the data dir's filesystem;
    /// which of them it covered: those whose flush wrote their storage out for it. A group
    /// alone syncs by itself (one fdatasync is cheaper than a filesystem sync), and so does
    /// one on another filesystem or whose writes were refused.
    ///
    /// Groups whose new log bytes are in the sync journal (no hard-state save waiting) are
    /// covered by one fdatasync of the journal; the filesystem sync runs only if another
    /// covered group did not journal.
    fn sync_waiting(&mut self, waiting: &[Waiting]) -> Result<Vec<bool>, i32> {
        let Some(fs) = self.fs_sync.clone().filter(|_| waiting.len() > 1) else {
            return Ok(vec![false; waiting.len()]);
        };
        let covered: Vec<bool> = waiting
            .iter()
            .map(|w| w.written && self.groups[&w.id].shared_sync)
            .collect();
        if !covered.contains(&true) {
            return Ok(covered);
        }
        let covered_waiting = || {
            waiting
                .iter()
                .zip(&covered)
                .filter(|(_, c)| **c)
                .map(|(w, _)| w)
        };
        // Groups that journaled their bytes sync through the journal (they may hold them
        // there rather than in their segments); any others through the filesystem.
        let journal = self
            .journal
            .clone()
            .filter(|_| covered_waiting().any(|w| w.journaled));
        let t = Instant::now();
        let mut synced = match &journal {
            Some(j) => j.sync().map(|how| self.fsync_hist.journal_sync(how)),
            None => Ok(()),
        };
        if synced.is_ok() && (journal.is_none() || covered_waiting().any(|w| !w.journaled)) {
            synced = fs.run();
        }
        if let Err(e) = synced {
            // As after a failed fdatasync, what the page cache holds is unknown.
            log::error!("fatal: {e}; stopping");
            return Err(1);
        }
        self.fsync_hist.observe_us(t.elapsed().as_micros() as u64);
        self.fsync_hist.shared.fetch_add(1, Ordering::Relaxed);
        for w in covered_waiting() {
            let g = self
                .groups
                .get_mut(&w.id)
                .expect("a waiting group is hosted");
            let by_journal = w.journaled && journal.is_some();
            g.node.storage_mut().inner.shared_synced(by_journal);
        }
        Ok(covered)
    }
}

/// A group whose flush waits for the round's shared sync ([`Flushed::Waits`]).
struct Waiting {
    id: GroupId,
    at: SyncPoint,
    written: bool,
    journaled: bool,
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
    mut events: Vec<Event<GroupOutput>>,
    (now, wall): (u64, u64),
    (auth, auth_seen, counts): (
        &mut crate::server::auth::AuthState,
        &mut Option<u64>,
        &AuthCounts,
    ),
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
    for ev in events.drain(..) {
        match ev {
            Event::Applied {
                index,
                term,
                output,
            } => match output {
                GroupOutput::Kv(applied) => {
                    let sys = match g.pending_sys.is_empty() {
                        true => None,
                        false => g.pending_sys.remove(&index),
                    };
                    if let Some(p) = sys {
                        answer_system(g, index, term, &applied, p);
                    } else if let Some((t, reply)) =
                        g.pending_writes.applied(index, answer_overwritten)
                    {
                        if t == term {
                            reply.send(Response::Written {
                                index,
                                result: applied.result,
                            });
                        } else {
                            reply.send(overwritten());
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
    // A write still waiting at or below the applied index lost its entry to one that answers
    // nobody (a new leader's no-op or a configuration, or a snapshot installed over it).
    let applied = g.node.raft().applied();
    g.pending_writes
        .overwritten_through(applied, answer_overwritten);
    // Kept for the next flush, unless a big batch grew it (an idle group lets it go).
    if events.capacity() <= SPARE_EVENTS {
        g.spare_events = events;
    }
    after_flush(g, now, wall, gate);
}

/// The most events a group's spare events vector keeps room for between flushes.
const SPARE_EVENTS: usize = 32;

/// The flush threads (`--raft-threads N`: the raft thread and N-1 more). A round's busy groups
/// flush in parallel: the raft thread and the others each take the next group not yet taken
/// until none is left, each group on one thread. With one thread, or at most one busy group,
/// the raft thread flushes by itself.
///
/// The raft thread is the pool's thread 0 (built on it): the share of a round it hands over
/// that no other thread has taken yet when it runs out of groups, it runs itself, instead of
/// waiting for a sleeping flush thread to wake up only to find nothing left. Waiting for that
/// wake-up doubled a round's flush time with four busy groups.
pub(super) struct Flushers {
    pool: Option<rayon::ThreadPool>,
    /// The raft thread is the pool's thread 0 (false where the thread already belongs to
    /// another pool: the pool's threads are then all others).
    joined: bool,
    /// Flushes run by the raft thread (first) and by each other flush thread.
    counts: Vec<AtomicU64>,
}

impl Flushers {
    /// Start `threads - 1` flush threads; call it on the raft thread.
    pub(super) fn start(threads: usize) -> Result<Flushers, String> {
        let helpers = threads.saturating_sub(1);
        let name = |i: usize| format!("shoal-flush-{i}");
        let build = |joined: bool| {
            let b = rayon::ThreadPoolBuilder::new()
                .thread_name(name)
                .start_handler(|_| crate::affinity::leave_raft_cpu());
            if joined {
                b.num_threads(threads).use_current_thread().build()
            } else {
                b.num_threads(helpers).build()
            }
        };
        let (pool, joined) = match helpers {
            0 => (None, false),
            _ => match build(true) {
                Ok(pool) => (Some(pool), true),
                Err(_) => match build(false) {
                    Ok(pool) => (Some(pool), false),
                    Err(e) => return Err(format!("cannot start {helpers} flush threads: {e}")),
                },
            },
        };
        let counts = (0..=helpers).map(|_| AtomicU64::new(0)).collect();
        Ok(Flushers {
            pool,
            joined,
            counts,
        })
    }

    /// Flushes run so far by the raft thread, then by each other flush thread.
    pub(super) fn counts(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Run every job: the busy ones in parallel when there are threads and more than one of
    /// them, the rest (a flush with only timers to look at) on the raft thread, which would
    /// spend more handing them over than flushing them.
    pub(super) fn run(&self, jobs: &mut [FlushJob], now: u64) {
        let busy = jobs.iter().filter(|j| j.busy).count();
        for j in jobs.iter_mut() {
            j.journal = busy > 1;
        }
        self.run_each(jobs, |j| j.busy, |j| j.run(now));
    }

    /// [`Flushers::run`] for any jobs: `busy` ones spread over the threads, the others run
    /// here.
    fn run_each<J: Send>(
        &self,
        jobs: &mut [J],
        busy: impl Fn(&J) -> bool,
        run: impl Fn(&mut J) + Sync,
    ) {
        let run = |j: &mut J| {
            run(j);
            let thread = match rayon::current_thread_index() {
                Some(i) if self.joined => i,
                Some(i) => i + 1,
                None => 0,
            };
            self.counts[thread].fetch_add(1, Ordering::Relaxed);
        };
        let n_busy = jobs.iter().filter(|j| busy(j)).count();
        let pool = match &self.pool {
            Some(pool) if n_busy > 1 => pool,
            _ => return jobs.iter_mut().for_each(run),
        };
        let mut queue = Vec::with_capacity(n_busy);
        let mut idle = Vec::with_capacity(jobs.len() - n_busy);
        for j in jobs.iter_mut() {
            if busy(j) {
                queue.push(std::sync::Mutex::new(j));
            } else {
                idle.push(j);
            }
        }
        let ends = TwoEnds::new(queue.len());
        // Take the next job until none is left (a lock nobody else ever waits for: each
        // index is taken once).
        let work = |from_back: bool| {
            while let Some(i) = ends.take(from_back) {
                run(&mut queue[i].lock().expect("a flush job's lock"));
            }
        };
        let others = pool.current_num_threads() - usize::from(self.joined);
        pool.in_place_scope(|s| {
            for _ in 0..others.min(n_busy - 1) {
                s.spawn(|_| work(true));
            }
            // The other threads start on the busy groups meanwhile (a round with many groups
            // has as many idle ones to look at as busy ones): handing the busy ones over only
            // after these left the others waiting that long.
            for j in idle {
                run(j);
            }
            work(false);
        });
    }
}

/// Positions `0..n` taken one at a time from the front or from the back, each once, until the
/// two ends meet: the raft thread takes a round's flush jobs from the front, the other flush
/// threads from the back, so a group tends to flush on the same thread round after round (its
/// state in that core's cache) instead of alternating between them.
struct TwoEnds {
    /// Taken from the front (low 32 bits) and from the back (high 32 bits), in one word so that
    /// a take is one compare-and-swap.
    taken: std::sync::atomic::AtomicU64,
    n: u64,
}

impl TwoEnds {
    fn new(n: usize) -> TwoEnds {
        assert!(n < 1 << 32, "a round's jobs are counted in 32 bits");
        TwoEnds {
            taken: std::sync::atomic::AtomicU64::new(0),
            n: n as u64,
        }
    }

    /// The next position from one end, or `None` once every position is taken.
    fn take(&self, from_back: bool) -> Option<usize> {
        let mut cur = self.taken.load(Ordering::Relaxed);
        loop {
            let (front, back) = (cur & 0xffff_ffff, cur >> 32);
            if front + back >= self.n {
                return None;
            }
            let (next, at) = match from_back {
                true => (cur + (1 << 32), self.n - 1 - back),
                false => (cur + 1, front),
            };
            match self
                .taken
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(at as usize),
                Err(now) => cur = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn a_round_does_not_wait_for_a_flush_thread_that_is_not_free() {
        let f = Flushers::start(2).unwrap();
        assert!(f.joined, "the test thread joins the pool as its thread 0");
        let pool = f.pool.as_ref().unwrap();
        // The one other flush thread is held up (as a sleeping thread is, until it wakes).
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, is_held) = std::sync::mpsc::channel::<()>();
        let timed_out = Arc::new(AtomicBool::new(false));
        let t = timed_out.clone();
        pool.spawn(move || {
            started.send(()).unwrap();
            let r = held.recv_timeout(Duration::from_secs(20));
            t.store(r.is_err(), Ordering::SeqCst);
        });
        is_held.recv().unwrap();
        let mut jobs = vec![0u32; 8];
        let at = Instant::now();
        f.run_each(&mut jobs, |_| true, |j| *j += 1);
        assert!(jobs.iter().all(|j| *j == 1), "every job ran once: {jobs:?}");
        // Still held: the round ran without it.
        release.send(()).unwrap();
        assert!(
            at.elapsed() < Duration::from_secs(20),
            "the round waited {:?}, for the held thread",
            at.elapsed()
        );
        assert_eq!(f.counts(), vec![8, 0], "the raft thread ran them all");
        drop(f);
        assert!(!timed_out.load(Ordering::SeqCst));
    }

    #[test]
    fn busy_jobs_spread_over_the_threads_and_idle_ones_stay_on_the_raft_thread() {
        let f = Flushers::start(2).unwrap();
        let mut jobs: Vec<(bool, Option<usize>, usize)> =
            (0..64).map(|i| (i % 2 == 0, None, i)).collect();
        let first_other = std::sync::Mutex::new(None);
        // The raft thread's busy jobs wait (10 s at most, in all) until the other thread has
        // taken one, however long it takes to wake on a loaded machine.
        let other_took = AtomicBool::new(false);
        let gave_up = AtomicBool::new(false);
        f.run_each(
            &mut jobs,
            |j| j.0,
            |j| {
                let thread = rayon::current_thread_index().unwrap_or(0);
                if thread != 0 {
                    first_other.lock().unwrap().get_or_insert(j.2);
                    other_took.store(true, Ordering::SeqCst);
                } else if j.0 && !gave_up.load(Ordering::SeqCst) {
                    let start = Instant::now();
                    while !other_took.load(Ordering::SeqCst) {
                        if start.elapsed() > Duration::from_secs(10) {
                            gave_up.store(true, Ordering::SeqCst);
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                j.1 = Some(thread);
            },
        );
        assert!(jobs.iter().all(|j| j.1.is_some()), "every job ran");
        assert!(
            jobs.iter().filter(|j| !j.0).all(|j| j.1 == Some(0)),
            "idle jobs ran on the raft thread"
        );
        // The raft thread takes busy jobs from the front, the other from the back.
        assert_eq!(
            *first_other.lock().unwrap(),
            Some(62),
            "the flush thread's first job is the last busy one"
        );
        let counts = f.counts();
        assert_eq!(counts.iter().sum::<u64>(), 64);
        assert!(counts[1] > 0, "the flush thread took busy jobs: {counts:?}");
    }

    #[test]
    fn two_ends_hand_out_each_position_once_front_and_back_meeting_between() {
        let ends = TwoEnds::new(5);
        let order: Vec<_> = [false, true, true, false, true, false]
            .iter()
            .map(|back| ends.take(*back))
            .collect();
        assert_eq!(order, [Some(0), Some(4), Some(3), Some(1), Some(2), None]);
        assert_eq!(TwoEnds::new(0).take(false), None);
        // Two threads at once: every position once, the front's a prefix, the back's the rest.
        let ends = TwoEnds::new(10_000);
        let (front, back) = std::thread::scope(|s| {
            let take_all = |back: bool| {
                let ends = &ends;
                move || std::iter::from_fn(|| ends.take(back)).collect::<Vec<_>>()
            };
            let b = s.spawn(take_all(true));
            let f = take_all(false)();
            (f, b.join().unwrap())
        });
        assert!(
            front.iter().copied().eq(0..front.len()),
            "the front takes 0, 1, 2, ..."
        );
        assert!(
            back.iter().copied().eq((front.len()..10_000).rev()),
            "the back takes the rest from the end down"
        );
    }
}
