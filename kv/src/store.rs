//! The DtKV store: its state, how it is built on its memory, reads, and the Raft
//! `StateMachine` binding. The writes live beside it, one concern a file: `ops` (values,
//! directories, temporary nodes), `locks`, `expiry` (the deadline heap and `Expire`), and `tree`
//! (the node plumbing they share). `apply` is deterministic and never reads a clock: time comes
//! from the commands (`now_ms` is the largest `time_ms` applied so far).

use shoal_core::io::{SnapshotError, SnapshotReader, SnapshotWriter, StateMachine};
use shoal_core::types::{LogIndex, Term};

use crate::arena::Arena;
use crate::check::check_write;
use crate::command::{
    op_fingerprint, Applied, BatchResults, Command, NodeKind, NodeView, Op, WriteResult,
};
use crate::error::{KvError, WatchError};
use crate::events::{Event, EventLog};
use crate::index::HashIndex;
use crate::key::{hash_bytes, validate_key};
use crate::leases::Lifetime;
use crate::limits::{KvLimits, LimitsError};
use crate::memory::{
    Element, EventSlot, FreeList, KvMemory, NodeSlot, SessionSlot, WaiterSlot, NIL,
};
use crate::sessions::Sessions;
use crate::system::client_key;

/// The root directory always lives in slot 0.
pub(crate) const ROOT: u32 = 0;

/// A DtKV replica: a fixed-capacity tree of nodes plus sessions, lock queues and the watch
/// history, all in buffers taken from its memory provider `M` when it was built: borrowed
/// (`DtKv<KvSlices<'a>>` on a board) or owned (shoald's `DtKv<KvHeap>`, which is `Send` and
/// frees its memory when dropped).
pub struct DtKv<M: KvMemory> {
    pub(crate) limits: KvLimits,
    pub(crate) nodes: M::Buf<NodeSlot>,
    pub(crate) index: HashIndex<M::Buf<u32>>,
    pub(crate) heap: M::Buf<u32>,
    pub(crate) heap_len: usize,
    pub(crate) arena: Arena<M::Buf<u8>>,
    pub(crate) sessions: Sessions<M::Buf<SessionSlot>, M::Buf<u32>>,
    pub(crate) waiters: M::Buf<WaiterSlot>,
    pub(crate) waiter_slots: FreeList,
    pub(crate) waiters_used: usize,
    pub(crate) events: EventLog<M::Buf<EventSlot>, M::Buf<u8>>,
    pub(crate) node_slots: FreeList,
    pub(crate) node_count: usize,
    pub(crate) applied: u64,
    pub(crate) now_ms: u64,
    /// Bumped by every change of the reserved subtree and every reset or restore (not part of
    /// the state: a platform compares it to notice that the records need a look).
    pub(crate) system_changes: u64,
}

/// Buffer `name` of `len` elements from `mem`.
fn take<M: KvMemory, T: Element>(
    mem: &mut M,
    len: usize,
    name: &'static str,
) -> Result<M::Buf<T>, LimitsError> {
    match mem.take(len) {
        Some(buf) if buf.len() == len => Ok(buf),
        _ => Err(LimitsError::Buffer(name)),
    }
}

impl<M: KvMemory> DtKv<M> {
    /// Build an empty store (just the root directory) for `limits`, taking every buffer it
    /// needs from `mem` (lengths: the `KvLimits::*_len` methods; order: [`crate::KvSlices`]).
    /// This is the one place a store's memory is laid out.
    pub fn new(mut mem: M, limits: KvLimits) -> Result<Self, LimitsError> {
        limits.validate()?;
        let mem = &mut mem;
        // Field order is take order: `KvSlices` documents it.
        let mut kv = DtKv {
            limits,
            nodes: take(mem, limits.nodes_len(), "nodes")?,
            index: HashIndex::new(take(mem, limits.node_index_len(), "node_index")?),
            heap: take(mem, limits.expiry_heap_len(), "expiry_heap")?,
            heap_len: 0,
            arena: Arena::new(take(mem, limits.arena_bytes, "arena")?),
            sessions: Sessions::new(
                take(mem, limits.sessions_len(), "sessions")?,
                take(mem, limits.session_index_len(), "session_index")?,
            ),
            waiters: take(mem, limits.waiters_len(), "waiters")?,
            waiter_slots: FreeList::starting_at(0),
            waiters_used: 0,
            events: EventLog::new(
                take(mem, limits.events_len(), "events")?,
                take(mem, limits.event_bytes, "event_bytes")?,
            ),
            node_slots: FreeList::starting_at(ROOT + 1),
            node_count: 0,
            applied: 0,
            now_ms: 0,
            system_changes: 0,
        };
        kv.reset(0);
        Ok(kv)
    }

    /// Empty the store (root only) at applied index `applied`; the watch history restarts there.
    pub(crate) fn reset(&mut self, applied: u64) {
        self.node_slots = FreeList::starting_at(ROOT + 1);
        self.nodes[ROOT as usize] = NodeSlot {
            kind: NodeKind::Dir as u8,
            ..NodeSlot::FRESH
        };
        self.node_count = 1;
        self.index.clear();
        self.heap_len = 0;
        self.arena.clear();
        self.sessions.clear();
        self.waiter_slots = FreeList::starting_at(0);
        self.waiters_used = 0;
        self.events
            .reset(if applied == 0 { 0 } else { applied + 1 });
        self.applied = applied;
        self.now_ms = 0;
        self.system_changes = self.system_changes.wrapping_add(1);
    }

    // ----- queries -------------------------------------------------------------------------

    /// The limits the store was built with.
    pub fn limits(&self) -> &KvLimits {
        &self.limits
    }
    /// The largest command time applied so far (the replicated clock), in ms.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }
    /// Nodes in use, the root included.
    pub fn node_count(&self) -> usize {
        self.node_count
    }
    /// Arena bytes held by live keys and values (bookkeeping included).
    pub fn arena_live_bytes(&self) -> usize {
        self.arena.live_bytes()
    }
    /// A counter that changes whenever the reserved subtree `__shoal` may have changed (a
    /// system write applied, a snapshot restored): a platform that acts on the cluster's
    /// records re-reads them when it differs from the value it saw last.
    pub fn system_changes(&self) -> u64 {
        self.system_changes
    }
    /// Buckets the node index and the session index use now: each starts small and doubles
    /// as its keys or sessions grow, up to what the limits size it for.
    pub fn index_buckets(&self) -> (usize, usize) {
        (self.index.used_buckets(), self.sessions.index_buckets())
    }
    /// Keep at most `slots` watch events and `bytes` of their keys and values, within the
    /// limits the store was built with (and never less than one event of the largest key
    /// and value); the memory past the new caps goes back to the provider
    /// ([`KvMemory::release`]). A change empties the history: a watcher resuming from an
    /// index before the next command gets `Compacted`. The history is local to this replica
    /// (not part of the replicated state), so replicas may keep different amounts. Returns
    /// the caps in force.
    pub fn set_event_caps(&mut self, slots: usize, bytes: usize) -> (usize, usize) {
        let l = &self.limits;
        let bytes = bytes.clamp(l.max_key_bytes + l.max_value_bytes, l.event_bytes);
        let slots = slots.clamp(1, l.event_slots);
        if (slots, bytes) != self.events.caps() {
            let floor = if self.applied == 0 {
                0
            } else {
                self.applied + 1
            };
            self.events.set_caps(slots, bytes as u64, floor);
            let (e, b) = self.events.buffers_mut();
            M::release(e, slots);
            M::release(b, bytes);
        }
        self.events.caps()
    }

    /// The watch events and bytes the history keeps at most ([`DtKv::set_event_caps`]).
    pub fn event_caps(&self) -> (usize, usize) {
        self.events.caps()
    }

    /// Client sessions remembered.
    pub fn session_count(&self) -> usize {
        self.sessions.count
    }
    /// The last sequence number and raft index applied for `client_id`, if remembered.
    pub fn session(&self, client_id: u64) -> Option<(u64, u64)> {
        self.sessions
            .find(client_id)
            .map(|s| (s.last_seq, s.last_index))
    }

    pub(crate) fn kind(&self, s: u32) -> NodeKind {
        NodeKind::from_code(self.nodes[s as usize].kind).expect("live slots hold a valid kind")
    }
    pub(crate) fn key_of(&self, s: u32) -> &[u8] {
        let n = &self.nodes[s as usize];
        self.arena.get(n.key_off, n.key_len as usize)
    }
    pub(crate) fn value_of(&self, s: u32) -> &[u8] {
        let n = &self.nodes[s as usize];
        self.arena.get(n.val_off, n.val_len as usize)
    }

    pub(crate) fn lookup(&self, key: &[u8]) -> Option<u32> {
        if key.is_empty() {
            return Some(ROOT);
        }
        let (nodes, arena) = (&*self.nodes, &self.arena);
        self.index.find(hash_bytes(key), |s| {
            let n = &nodes[s as usize];
            n.key_len as usize == key.len() && arena.get(n.key_off, key.len()) == key
        })
    }

    fn view(&self, s: u32) -> NodeView<'_> {
        let n = &self.nodes[s as usize];
        let kind = self.kind(s);
        NodeView {
            key: self.key_of(s),
            kind,
            value: self.value_of(s),
            create_index: n.create_index,
            update_index: n.update_index,
            owner: n.owner,
            deadline_ms: self.deadline_of(s),
            fence: n.fence,
            count: match kind {
                NodeKind::Lock => n.wait_count,
                NodeKind::Lease => {
                    let (mut tied, mut t) = (0, n.lease_next);
                    while t != 0 {
                        tied += 1;
                        t = self.nodes[t as usize].lease_next;
                    }
                    tied
                }
                _ => n.children,
            },
        }
    }

    /// Read one node. The root (empty key) is a directory.
    pub fn get(&self, key: &[u8]) -> Result<NodeView<'_>, KvError> {
        validate_key(key, &self.limits, true)?;
        self.lookup(key)
            .map(|s| self.view(s))
            .ok_or(KvError::NotFound)
    }

    /// Read several nodes; `f` gets each key with its node or error, in order.
    pub fn batch_get<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
        mut f: impl FnMut(&'k [u8], Result<NodeView<'_>, KvError>),
    ) {
        for key in keys {
            f(key, self.get(key));
        }
    }

    /// Call `f` for each child of directory `key` in creation order; returns how many.
    pub fn list(&self, key: &[u8], mut f: impl FnMut(NodeView<'_>)) -> Result<u32, KvError> {
        validate_key(key, &self.limits, true)?;
        let s = self.lookup(key).ok_or(KvError::NotFound)?;
        if !self.kind(s).is_dir() {
            return Err(KvError::NotDirectory);
        }
        let mut child = self.nodes[s as usize].first_child;
        let mut count = 0;
        while child != NIL {
            f(self.view(child));
            count += 1;
            child = self.nodes[child as usize].next;
        }
        Ok(count)
    }

    /// The earliest deadline (TTL, lock lease or lock wait) in leader-clock ms, if any. The
    /// leader proposes [`Command::expire`] once its clock reaches it.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        (self.heap_len > 0).then(|| self.nodes[self.heap[0] as usize].due_ms)
    }

    /// Whether an `Expire` command at `now_ms` would change anything.
    pub fn expired_at(&self, now_ms: u64) -> bool {
        self.next_expiry_ms().is_some_and(|due| due <= now_ms)
    }

    /// Call `f` for every kept event with index ≥ `from_index` whose key is `filter_key` or
    /// lies under it (the empty key watches everything), in order. Fails with `Compacted` if
    /// the history no longer reaches back to `from_index`.
    pub fn events_since(
        &self,
        from_index: u64,
        filter_key: &[u8],
        f: impl FnMut(&Event<'_>),
    ) -> Result<(), WatchError> {
        self.events.since(from_index, filter_key, f)
    }

    /// The smallest index from which the watch history is complete.
    pub fn oldest_event_index(&self) -> u64 {
        self.events.oldest_available()
    }

    // ----- apply ---------------------------------------------------------------------------

    /// Apply the encoded command committed at `index` (the `StateMachine::apply` body).
    pub fn apply_command(&mut self, index: u64, bytes: &[u8]) -> Applied {
        debug_assert!(index > self.applied, "entries are applied once, in order");
        self.applied = index;
        match Command::decode(bytes) {
            Ok(cmd) => self.apply_once(index, &cmd, op_fingerprint(bytes, &cmd)),
            Err(e) => Applied {
                index,
                client_id: 0,
                seq: 0,
                result: WriteResult::Failed(e.into()),
                deduplicated: false,
            },
        }
    }

    /// Apply `cmd` at most once per session sequence number: a retry gets the answer the
    /// first attempt got, an older sequence number `StaleSequence`, and the last sequence number
    /// with another operation than the write that took it (`op`, its fingerprint)
    /// `SessionReused`: answering that from the table would report a write that was never
    /// applied as done.
    fn apply_once(&mut self, index: u64, cmd: &Command<'_>, op: u32) -> Applied {
        self.now_ms = self.now_ms.max(cmd.time_ms);
        let (client, seq) = (cmd.client_id, cmd.seq);
        let answer = |result, deduplicated| Applied {
            index,
            client_id: client,
            seq,
            result,
            deduplicated,
        };
        if client != 0 {
            if let Some(s) = self.sessions.find(client) {
                if seq == s.last_seq {
                    if s.last_op != 0 && s.last_op != op {
                        return answer(WriteResult::Failed(KvError::SessionReused), false);
                    }
                    return answer(s.result.clone(), true);
                }
                if seq < s.last_seq {
                    return answer(WriteResult::Failed(KvError::StaleSequence), false);
                }
            }
        }
        let result = self.exec(index, client, &cmd.op);
        if client != 0 {
            self.sessions.record(client, seq, op, index, result.clone());
        }
        answer(result, false)
    }

    fn exec(&mut self, index: u64, client: u64, op: &Op<'_>) -> WriteResult {
        // Most writes answer `Done` or an error: return those without building a `Result`
        // around a whole `WriteResult`, which costs a copy on the hot path.
        let done = |r: Result<(), KvError>| match r {
            Ok(()) => WriteResult::Done,
            Err(e) => WriteResult::Failed(e),
        };
        // Every refusal that needs no state comes first, from the same check a platform may
        // run before proposing, so that both give the same answer.
        if let Err(r) = check_write(op, client, &self.limits) {
            return WriteResult::Failed(r.error);
        }
        let result = match *op {
            Op::Put { key, value } => return done(self.put(index, client, key, value)),
            Op::Remove { key } => return done(self.remove(index, client, key)),
            Op::ForceRemove { key } => {
                let owner = self.lookup(key).map_or(0, |s| self.nodes[s as usize].owner);
                return done(self.remove(index, owner, key));
            }
            Op::Mkdir { key } => return done(self.mkdir(index, key)),
            Op::CompareAndSet { key, expect, value } => {
                return done(self.cas(index, client, key, expect, value))
            }
            Op::PutTemp { key, value, ttl_ms } => {
                return done(self.put_temp(index, client, key, value, Lifetime::Ttl(ttl_ms)))
            }
            Op::MakeTempDir { key, ttl_ms } => {
                return done(self.make_temp_dir(index, client, key, Lifetime::Ttl(ttl_ms)))
            }
            Op::PutTempLease { key, value, lease } => {
                return done(self.put_temp(index, client, key, value, Lifetime::Lease(lease)))
            }
            Op::MakeTempDirLease { key, lease } => {
                return done(self.make_temp_dir(index, client, key, Lifetime::Lease(lease)))
            }
            Op::UpdateTtl { key, ttl_ms } => {
                return done(self.update_ttl(index, client, key, ttl_ms))
            }
            Op::BatchPut(pairs) => self.batch(pairs.len(), pairs.iter(), |kv, (key, value)| {
                client_key(key)?;
                kv.put(index, client, key, value)
            }),
            Op::BatchRemove(keys) => self.batch(keys.len(), keys.iter(), |kv, key| {
                client_key(key)?;
                kv.remove(index, client, key)
            }),
            Op::TryLock {
                key,
                lease_ms,
                wait_ms,
            } => self.try_lock(index, client, key, Lifetime::Ttl(lease_ms), wait_ms),
            Op::TryLockLease { key, lease } => {
                self.try_lock(index, client, key, Lifetime::Lease(lease), 0)
            }
            Op::LeaseGrant { ttl_ms } => self.lease_grant(index, client, ttl_ms),
            Op::LeaseKeepAlive { id } => self.lease_keep_alive(index, id),
            Op::LeaseRevoke { id } => self.lease_slot(id).map(|l| self.end_lease(index, l)),
            Op::Unlock { key } => self.unlock(index, client, key, false),
            Op::ForceUnlock { key } => self.unlock(index, client, key, true),
            Op::UpdateLockLease { key, lease_ms } => {
                self.update_lock_lease(index, client, key, lease_ms)
            }
            Op::Expire => Ok(self.expire(index)),
            Op::SysPut { key, value } => return done(self.sys_put(index, key, value, false)),
            Op::SysCreate { key, value } => return done(self.sys_put(index, key, value, true)),
            Op::SysRemove { key } => return done(self.sys_remove(index, key)),
            Op::Txn(txn) => return self.txn(index, client, &txn),
        };
        result.unwrap_or_else(WriteResult::Failed)
    }

    /// Apply `write` to each of the `len` `items` in order, one result per item.
    fn batch<I>(
        &mut self,
        len: usize,
        items: impl Iterator<Item = I>,
        mut write: impl FnMut(&mut Self, I) -> Result<(), KvError>,
    ) -> Result<WriteResult, KvError> {
        if len > self.limits.max_batch_items {
            return Err(KvError::BatchTooLarge);
        }
        let mut results = BatchResults::new();
        for item in items {
            results
                .push(write(self, item))
                .expect("batch length checked against MAX_BATCH_ITEMS");
        }
        Ok(WriteResult::Batch(results))
    }

    /// A 64-bit digest of the canonical snapshot encoding: equal on replicas in equal states.
    pub fn digest(&self) -> u64 {
        let mut w = DigestWriter(crate::snapshot::DIGEST.digest());
        self.write_snapshot(&mut w)
            .expect("the digest writer never fails");
        w.0.finalize()
    }
}

struct DigestWriter(crc::Digest<'static, u64, crate::snapshot::DigestTable>);

impl SnapshotWriter for DigestWriter {
    fn write(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        self.0.update(data);
        Ok(())
    }
}

impl<M: KvMemory> StateMachine for DtKv<M> {
    type Output = Applied;

    fn apply(&mut self, index: LogIndex, _term: Term, command: &[u8]) -> Applied {
        self.apply_command(index, command)
    }

    fn skip(&mut self, index: LogIndex) {
        debug_assert!(index > self.applied);
        self.applied = index;
    }

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn snapshot(&self, out: &mut dyn SnapshotWriter) -> Result<(), SnapshotError> {
        self.write_snapshot(out)
    }

    fn restore(
        &mut self,
        index: LogIndex,
        src: &mut dyn SnapshotReader,
    ) -> Result<(), SnapshotError> {
        self.read_snapshot(index, src)
    }
}
