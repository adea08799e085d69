//! The DtKV store: the tree, its operations, TTL expiry, locks, and the Raft `StateMachine`
//! binding. `apply` is deterministic and never reads a clock: time comes from the commands
//! (`now_ms` is the largest `time_ms` applied so far).

use shoal_core::io::{SnapshotError, SnapshotReader, SnapshotWriter, StateMachine};
use shoal_core::types::{LogIndex, Term};

use crate::arena::{cost, owner_tag, Arena};
use crate::command::{Applied, Command, NodeKind, NodeView, Op, WriteResult};
use crate::error::{KvError, WatchError};
use crate::events::{Event, EventKind, EventLog};
use crate::index::HashIndex;
use crate::key::{hash_bytes, parent_of, validate_key};
use crate::limits::{KvLimits, LimitsError};
use crate::memory::{KvMemory, NodeSlot, WaiterSlot, NIL};
use crate::sessions::Sessions;

/// The root directory always lives in slot 0.
pub(crate) const ROOT: u32 = 0;

/// A DtKV replica: a fixed-capacity tree of nodes plus sessions, lock queues and the watch
/// history, all inside the [`KvMemory`] it was built with.
pub struct DtKv<'a> {
    pub(crate) limits: KvLimits,
    pub(crate) nodes: &'a mut [NodeSlot],
    pub(crate) index: HashIndex<'a>,
    pub(crate) heap: &'a mut [u32],
    pub(crate) heap_len: usize,
    pub(crate) arena: Arena<'a>,
    pub(crate) sessions: Sessions<'a>,
    pub(crate) waiters: &'a mut [WaiterSlot],
    pub(crate) waiter_free: u32,
    /// Waiter slots from here on were never used since the last reset (and are never read).
    pub(crate) waiter_fresh: u32,
    pub(crate) waiters_used: usize,
    pub(crate) events: EventLog<'a>,
    pub(crate) node_free: u32,
    /// Node slots from here on were never used since the last reset (and are never read), so
    /// memory the platform hands in untouched stays untouched until the store grows into it.
    pub(crate) node_fresh: u32,
    pub(crate) node_count: usize,
    pub(crate) applied: u64,
    pub(crate) now_ms: u64,
}

fn check_len(ok: bool, name: &'static str) -> Result<(), LimitsError> {
    if ok {
        Ok(())
    } else {
        Err(LimitsError::Buffer(name))
    }
}

impl<'a> DtKv<'a> {
    /// Build an empty store (just the root directory) in `mem`, which must be at least as large
    /// as `limits` need (see the `KvLimits::*_len` methods).
    pub fn new(mem: KvMemory<'a>, limits: KvLimits) -> Result<Self, LimitsError> {
        limits.validate()?;
        check_len(mem.nodes.len() >= limits.nodes_len(), "nodes")?;
        check_len(
            mem.node_index.len() >= limits.node_index_len()
                && mem.node_index.len().is_power_of_two(),
            "node_index",
        )?;
        check_len(
            mem.expiry_heap.len() >= limits.expiry_heap_len(),
            "expiry_heap",
        )?;
        check_len(mem.arena.len() >= limits.arena_bytes, "arena")?;
        check_len(mem.sessions.len() >= limits.sessions_len(), "sessions")?;
        check_len(
            mem.session_index.len() >= limits.session_index_len()
                && mem.session_index.len().is_power_of_two(),
            "session_index",
        )?;
        check_len(mem.waiters.len() >= limits.max_waiters, "waiters")?;
        check_len(mem.events.len() >= limits.event_slots, "events")?;
        check_len(mem.event_bytes.len() >= limits.event_bytes, "event_bytes")?;
        let mut kv = DtKv {
            limits,
            nodes: mem.nodes,
            index: HashIndex::new(mem.node_index),
            heap: mem.expiry_heap,
            heap_len: 0,
            arena: Arena::new(mem.arena, limits.arena_bytes),
            sessions: Sessions::new(mem.sessions, mem.session_index, limits.max_sessions),
            waiters: mem.waiters,
            waiter_free: NIL,
            waiter_fresh: 0,
            waiters_used: 0,
            events: EventLog::new(
                mem.events,
                mem.event_bytes,
                limits.event_slots,
                limits.event_bytes,
            ),
            node_free: NIL,
            node_fresh: 1,
            node_count: 0,
            applied: 0,
            now_ms: 0,
        };
        kv.reset(0);
        Ok(kv)
    }

    /// Empty the store (root only) at applied index `applied`; the watch history restarts there.
    pub(crate) fn reset(&mut self, applied: u64) {
        self.node_free = NIL;
        self.node_fresh = ROOT + 1;
        self.nodes[ROOT as usize] = NodeSlot {
            kind: NodeKind::Dir as u8,
            ..NodeSlot::EMPTY
        };
        self.node_count = 1;
        self.index.clear();
        self.heap_len = 0;
        self.arena.clear();
        self.sessions.clear();
        self.waiter_free = NIL;
        self.waiter_fresh = 0;
        self.waiters_used = 0;
        self.events
            .reset(if applied == 0 { 0 } else { applied + 1 });
        self.applied = applied;
        self.now_ms = 0;
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
            deadline_ms: n.deadline_ms,
            fence: n.fence,
            count: if kind == NodeKind::Lock {
                n.wait_count
            } else {
                n.children
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
        let cmd = match Command::decode(bytes) {
            Ok(cmd) => cmd,
            Err(e) => {
                return Applied {
                    index,
                    client_id: 0,
                    seq: 0,
                    result: WriteResult::Failed(e.into()),
                    deduplicated: false,
                }
            }
        };
        self.now_ms = self.now_ms.max(cmd.time_ms);
        let (client, seq) = (cmd.client_id, cmd.seq);
        if client != 0 {
            if let Some(s) = self.sessions.find(client) {
                if seq == s.last_seq {
                    let result = s.result.clone();
                    return Applied {
                        index,
                        client_id: client,
                        seq,
                        result,
                        deduplicated: true,
                    };
                }
                if seq < s.last_seq {
                    let result = WriteResult::Failed(KvError::StaleSequence);
                    return Applied {
                        index,
                        client_id: client,
                        seq,
                        result,
                        deduplicated: false,
                    };
                }
            }
        }
        let result = self.exec(index, client, &cmd.op);
        if client != 0 {
            self.sessions.record(client, seq, index, result.clone());
        }
        Applied {
            index,
            client_id: client,
            seq,
            result,
            deduplicated: false,
        }
    }

    fn exec(&mut self, index: u64, client: u64, op: &Op<'_>) -> WriteResult {
        let done = |r: Result<(), KvError>| match r {
            Ok(()) => WriteResult::Done,
            Err(e) => WriteResult::Failed(e),
        };
        let result = match *op {
            Op::Put { key, value } => return done(self.put(index, client, key, value)),
            Op::Remove { key } => return done(self.remove(index, client, key)),
            Op::Mkdir { key } => return done(self.mkdir(index, key)),
            Op::CompareAndSet { key, expect, value } => {
                return done(self.cas(index, client, key, expect, value))
            }
            Op::PutTemp { key, value, ttl_ms } => {
                return done(self.put_temp(index, client, key, value, ttl_ms))
            }
            Op::MakeTempDir { key, ttl_ms } => {
                return done(self.make_temp_dir(index, client, key, ttl_ms))
            }
            Op::UpdateTtl { key, ttl_ms } => {
                return done(self.update_ttl(index, client, key, ttl_ms))
            }
            Op::BatchPut(pairs) => {
                if pairs.len() > self.limits.max_batch_items {
                    Err(KvError::BatchTooLarge)
                } else {
                    let mut results = crate::command::BatchResults::new();
                    for (key, value) in pairs.iter() {
                        let r = self.put(index, client, key, value);
                        results
                            .push(r)
                            .expect("batch length checked against MAX_BATCH_ITEMS");
                    }
                    Ok(WriteResult::Batch(results))
                }
            }
            Op::BatchRemove(keys) => {
                if keys.len() > self.limits.max_batch_items {
                    Err(KvError::BatchTooLarge)
                } else {
                    let mut results = crate::command::BatchResults::new();
                    for key in keys.iter() {
                        let r = self.remove(index, client, key);
                        results
                            .push(r)
                            .expect("batch length checked against MAX_BATCH_ITEMS");
                    }
                    Ok(WriteResult::Batch(results))
                }
            }
            Op::TryLock {
                key,
                lease_ms,
                wait_ms,
            } => self.try_lock(index, client, key, lease_ms, wait_ms),
            Op::Unlock { key } => self.unlock(index, client, key),
            Op::UpdateLockLease { key, lease_ms } => {
                self.update_lock_lease(index, client, key, lease_ms)
            }
            Op::Expire => Ok(self.expire(index)),
        };
        result.unwrap_or_else(WriteResult::Failed)
    }

    // ----- tree plumbing -------------------------------------------------------------------

    fn parent_dir(&self, key: &[u8]) -> Result<u32, KvError> {
        let p = self.lookup(parent_of(key)).ok_or(KvError::ParentNotFound)?;
        if self.kind(p).is_dir() {
            Ok(p)
        } else {
            Err(KvError::ParentNotDir)
        }
    }

    fn check_value(&self, value: &[u8]) -> Result<(), KvError> {
        if value.len() > self.limits.max_value_bytes {
            Err(KvError::ValueTooLarge)
        } else {
            Ok(())
        }
    }

    fn check_ttl(&self, ttl_ms: u64) -> Result<(), KvError> {
        if ttl_ms == 0 || ttl_ms > self.limits.max_ttl_ms {
            Err(KvError::InvalidTtl)
        } else {
            Ok(())
        }
    }

    /// Create a node under `parent`; all-or-nothing.
    pub(crate) fn create_node(
        &mut self,
        key: &[u8],
        kind: NodeKind,
        value: &[u8],
        parent: u32,
        create_index: u64,
    ) -> Result<u32, KvError> {
        if self.node_count >= self.limits.max_nodes {
            return Err(KvError::TooManyNodes);
        }
        self.arena.fits(cost(key.len()) + cost(value.len()), 0)?;
        let s = self.take_node_slot();
        self.nodes[s as usize] = NodeSlot {
            kind: kind as u8,
            key_len: key.len() as u16,
            hash: hash_bytes(key),
            parent,
            create_index,
            update_index: create_index,
            ..NodeSlot::EMPTY
        };
        let key_off = self
            .arena
            .alloc(key.len(), Some(key), owner_tag(s, false), self.nodes)?;
        self.nodes[s as usize].key_off = key_off;
        let val_off = self
            .arena
            .alloc(value.len(), Some(value), owner_tag(s, true), self.nodes)?;
        self.nodes[s as usize].val_off = val_off;
        self.nodes[s as usize].val_len = value.len() as u32;
        self.index.insert(self.nodes[s as usize].hash, s);
        let last = self.nodes[parent as usize].last_child;
        self.nodes[s as usize].prev = last;
        if last == NIL {
            self.nodes[parent as usize].first_child = s;
        } else {
            self.nodes[last as usize].next = s;
        }
        self.nodes[parent as usize].last_child = s;
        self.nodes[parent as usize].children += 1;
        self.node_count += 1;
        Ok(s)
    }

    /// Replace a node's value; all-or-nothing.
    fn replace_value(&mut self, s: u32, value: &[u8]) -> Result<(), KvError> {
        let old_len = self.nodes[s as usize].val_len as usize;
        self.arena.fits(cost(value.len()), cost(old_len))?;
        self.arena.free(self.nodes[s as usize].val_off, old_len);
        self.nodes[s as usize].val_len = 0;
        let off = self
            .arena
            .alloc(value.len(), Some(value), owner_tag(s, true), self.nodes)?;
        self.nodes[s as usize].val_off = off;
        self.nodes[s as usize].val_len = value.len() as u32;
        Ok(())
    }

    /// A node slot for a new node: the last one freed, else the lowest never used. The caller
    /// has checked `node_count < max_nodes`.
    pub(crate) fn take_node_slot(&mut self) -> u32 {
        let s = self.node_free;
        if s != NIL {
            self.node_free = self.nodes[s as usize].next;
            return s;
        }
        debug_assert!((self.node_fresh as usize) < self.limits.max_nodes);
        self.node_fresh += 1;
        self.node_fresh - 1
    }

    /// A waiter slot: the last one freed, else the lowest never used. The caller has checked
    /// `waiters_used < max_waiters`.
    pub(crate) fn take_waiter_slot(&mut self) -> u32 {
        let w = self.waiter_free;
        if w != NIL {
            self.waiter_free = self.waiters[w as usize].next;
            return w;
        }
        debug_assert!((self.waiter_fresh as usize) < self.limits.max_waiters);
        self.waiter_fresh += 1;
        self.waiter_fresh - 1
    }

    /// Remove a childless node and everything it holds (waiters must be gone already).
    fn free_node(&mut self, s: u32) {
        let n = self.nodes[s as usize];
        debug_assert!(s != ROOT && n.children == 0 && n.wait_count == 0);
        if n.prev == NIL {
            self.nodes[n.parent as usize].first_child = n.next;
        } else {
            self.nodes[n.prev as usize].next = n.next;
        }
        if n.next == NIL {
            self.nodes[n.parent as usize].last_child = n.prev;
        } else {
            self.nodes[n.next as usize].prev = n.prev;
        }
        self.nodes[n.parent as usize].children -= 1;
        let nodes = &*self.nodes;
        self.index.remove(n.hash, s, |x| nodes[x as usize].hash);
        self.arena.free(n.key_off, n.key_len as usize);
        self.arena.free(n.val_off, n.val_len as usize);
        if n.heap_pos != NIL {
            self.heap_remove(s);
        }
        self.nodes[s as usize] = NodeSlot {
            next: self.node_free,
            ..NodeSlot::EMPTY
        };
        self.node_free = s;
        self.node_count -= 1;
    }

    fn event(&mut self, index: u64, kind: EventKind, s: u32, owner: u64, fence: u64) {
        let n = &self.nodes[s as usize];
        let key = self.arena.get(n.key_off, n.key_len as usize);
        let value = if kind == EventKind::Put {
            self.arena.get(n.val_off, n.val_len as usize)
        } else {
            &[]
        };
        self.events.push(index, kind, key, value, owner, fence);
    }

    // ----- expiry heap (ordered by due time, then creation index: unique and log-determined) --

    fn heap_less(&self, a: u32, b: u32) -> bool {
        let (x, y) = (&self.nodes[a as usize], &self.nodes[b as usize]);
        (x.due_ms, x.create_index) < (y.due_ms, y.create_index)
    }

    fn heap_set(&mut self, pos: usize, s: u32) {
        self.heap[pos] = s;
        self.nodes[s as usize].heap_pos = pos as u32;
    }

    fn sift_up(&mut self, mut pos: usize) {
        let s = self.heap[pos];
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if !self.heap_less(s, self.heap[parent]) {
                break;
            }
            self.heap_set(pos, self.heap[parent]);
            pos = parent;
        }
        self.heap_set(pos, s);
    }

    fn sift_down(&mut self, mut pos: usize) {
        let s = self.heap[pos];
        loop {
            let left = 2 * pos + 1;
            if left >= self.heap_len {
                break;
            }
            let right = left + 1;
            let child =
                if right < self.heap_len && self.heap_less(self.heap[right], self.heap[left]) {
                    right
                } else {
                    left
                };
            if !self.heap_less(self.heap[child], s) {
                break;
            }
            self.heap_set(pos, self.heap[child]);
            pos = child;
        }
        self.heap_set(pos, s);
    }

    pub(crate) fn heap_push(&mut self, s: u32) {
        debug_assert!(self.heap_len < self.heap.len() && self.nodes[s as usize].heap_pos == NIL);
        self.heap_len += 1;
        self.heap_set(self.heap_len - 1, s);
        self.sift_up(self.heap_len - 1);
    }

    fn heap_remove(&mut self, s: u32) {
        let pos = self.nodes[s as usize].heap_pos as usize;
        self.nodes[s as usize].heap_pos = NIL;
        self.heap_len -= 1;
        if pos < self.heap_len {
            let last = self.heap[self.heap_len];
            self.heap_set(pos, last);
            self.sift_up(pos);
            let pos = self.nodes[last as usize].heap_pos as usize;
            self.sift_down(pos);
        }
    }

    /// Give node `s` a TTL or lease deadline and (re)place it in the expiry heap.
    fn arm_deadline(&mut self, s: u32, deadline: u64) {
        let n = &mut self.nodes[s as usize];
        n.deadline_ms = deadline;
        n.due_ms = deadline;
        if n.heap_pos == NIL {
            self.heap_push(s);
        } else {
            self.heap_fix(s);
        }
    }

    fn heap_fix(&mut self, s: u32) {
        let pos = self.nodes[s as usize].heap_pos as usize;
        self.sift_up(pos);
        let pos = self.nodes[s as usize].heap_pos as usize;
        self.sift_down(pos);
    }

    // ----- plain values and directories ----------------------------------------------------

    fn put(&mut self, index: u64, client: u64, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        validate_key(key, &self.limits, false)?;
        self.check_value(value)?;
        let s = match self.lookup(key) {
            Some(s) => {
                match self.kind(s) {
                    NodeKind::Dir | NodeKind::TempDir => return Err(KvError::IsDirectory),
                    NodeKind::Lock => return Err(KvError::IsLock),
                    NodeKind::TempValue if self.nodes[s as usize].owner != client => {
                        return Err(KvError::NotOwner)
                    }
                    _ => {}
                }
                self.replace_value(s, value)?;
                self.nodes[s as usize].update_index = index;
                s
            }
            None => {
                let parent = self.parent_dir(key)?;
                self.create_node(key, NodeKind::Value, value, parent, index)?
            }
        };
        let owner = self.nodes[s as usize].owner;
        self.event(index, EventKind::Put, s, owner, 0);
        Ok(())
    }

    fn remove(&mut self, index: u64, client: u64, key: &[u8]) -> Result<(), KvError> {
        validate_key(key, &self.limits, false)?;
        let s = self.lookup(key).ok_or(KvError::NotFound)?;
        let kind = self.kind(s);
        let n = self.nodes[s as usize];
        if kind == NodeKind::Lock {
            return Err(KvError::IsLock);
        }
        if kind.is_dir() && n.children > 0 {
            return Err(KvError::DirNotEmpty);
        }
        if kind.is_temp() && n.owner != client {
            return Err(KvError::NotOwner);
        }
        self.event(index, EventKind::Remove, s, n.owner, 0);
        self.free_node(s);
        Ok(())
    }

    fn mkdir(&mut self, index: u64, key: &[u8]) -> Result<(), KvError> {
        validate_key(key, &self.limits, false)?;
        if let Some(s) = self.lookup(key) {
            return if self.kind(s) == NodeKind::Dir {
                Ok(())
            } else {
                Err(KvError::AlreadyExists)
            };
        }
        let parent = self.parent_dir(key)?;
        let s = self.create_node(key, NodeKind::Dir, &[], parent, index)?;
        self.event(index, EventKind::Mkdir, s, 0, 0);
        Ok(())
    }

    fn cas(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        expect: Option<&[u8]>,
        value: &[u8],
    ) -> Result<(), KvError> {
        validate_key(key, &self.limits, false)?;
        self.check_value(value)?;
        match (self.lookup(key), expect) {
            (None, None) => {}
            (None, Some(_)) | (Some(_), None) => return Err(KvError::CasMismatch),
            (Some(s), Some(expected)) => match self.kind(s) {
                NodeKind::Dir | NodeKind::TempDir => return Err(KvError::IsDirectory),
                NodeKind::Lock => return Err(KvError::IsLock),
                _ if self.value_of(s) != expected => return Err(KvError::CasMismatch),
                _ => {}
            },
        }
        self.put(index, client, key, value)
    }

    // ----- temporary nodes -----------------------------------------------------------------

    fn put_temp(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<(), KvError> {
        if client == 0 {
            return Err(KvError::SessionRequired);
        }
        validate_key(key, &self.limits, false)?;
        self.check_value(value)?;
        self.check_ttl(ttl_ms)?;
        let deadline = self.now_ms.saturating_add(ttl_ms);
        let s = match self.lookup(key) {
            Some(s) => {
                match self.kind(s) {
                    NodeKind::TempValue if self.nodes[s as usize].owner != client => {
                        return Err(KvError::NotOwner)
                    }
                    NodeKind::TempValue => {}
                    NodeKind::Value => return Err(KvError::NotTemp),
                    NodeKind::Dir | NodeKind::TempDir => return Err(KvError::IsDirectory),
                    NodeKind::Lock => return Err(KvError::IsLock),
                }
                self.replace_value(s, value)?;
                self.nodes[s as usize].update_index = index;
                self.arm_deadline(s, deadline);
                s
            }
            None => {
                let parent = self.parent_dir(key)?;
                let s = self.create_node(key, NodeKind::TempValue, value, parent, index)?;
                self.nodes[s as usize].owner = client;
                self.arm_deadline(s, deadline);
                s
            }
        };
        self.event(index, EventKind::Put, s, client, 0);
        Ok(())
    }

    fn make_temp_dir(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        ttl_ms: u64,
    ) -> Result<(), KvError> {
        if client == 0 {
            return Err(KvError::SessionRequired);
        }
        validate_key(key, &self.limits, false)?;
        self.check_ttl(ttl_ms)?;
        if self.lookup(key).is_some() {
            return Err(KvError::AlreadyExists);
        }
        let parent = self.parent_dir(key)?;
        let s = self.create_node(key, NodeKind::TempDir, &[], parent, index)?;
        let deadline = self.now_ms.saturating_add(ttl_ms);
        self.nodes[s as usize].owner = client;
        self.arm_deadline(s, deadline);
        self.event(index, EventKind::Mkdir, s, client, 0);
        Ok(())
    }

    fn update_ttl(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        ttl_ms: u64,
    ) -> Result<(), KvError> {
        if client == 0 {
            return Err(KvError::SessionRequired);
        }
        validate_key(key, &self.limits, false)?;
        self.check_ttl(ttl_ms)?;
        let s = self.lookup(key).ok_or(KvError::NotFound)?;
        if !self.kind(s).is_temp() {
            return Err(KvError::NotTemp);
        }
        if self.nodes[s as usize].owner != client {
            return Err(KvError::NotOwner);
        }
        let deadline = self.now_ms.saturating_add(ttl_ms);
        self.nodes[s as usize].update_index = index;
        self.arm_deadline(s, deadline);
        self.event(index, EventKind::TtlUpdated, s, client, deadline);
        Ok(())
    }

    // ----- locks ---------------------------------------------------------------------------

    fn lock_slot(&self, client: u64, key: &[u8]) -> Result<u32, KvError> {
        if client == 0 {
            return Err(KvError::SessionRequired);
        }
        validate_key(key, &self.limits, false)?;
        let s = self.lookup(key).ok_or(KvError::NotFound)?;
        if self.kind(s) != NodeKind::Lock {
            return Err(KvError::NotALock);
        }
        Ok(s)
    }

    /// Recompute a lock's heap key: the earliest of its lease and its waiters' wait deadlines.
    fn refresh_lock_due(&mut self, s: u32) {
        let mut due = self.nodes[s as usize].deadline_ms;
        let mut w = self.nodes[s as usize].wait_head;
        while w != NIL {
            due = due.min(self.waiters[w as usize].wait_deadline_ms);
            w = self.waiters[w as usize].next;
        }
        self.nodes[s as usize].due_ms = due;
        self.heap_fix(s);
    }

    fn try_lock(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        lease_ms: u64,
        wait_ms: u64,
    ) -> Result<WriteResult, KvError> {
        if client == 0 {
            return Err(KvError::SessionRequired);
        }
        validate_key(key, &self.limits, false)?;
        self.check_ttl(lease_ms)?;
        if wait_ms > self.limits.max_ttl_ms {
            return Err(KvError::InvalidTtl);
        }
        let lease_deadline_ms = self.now_ms.saturating_add(lease_ms);
        let Some(s) = self.lookup(key) else {
            let parent = self.parent_dir(key)?;
            let s = self.create_node(key, NodeKind::Lock, &[], parent, index)?;
            let n = &mut self.nodes[s as usize];
            n.owner = client;
            n.fence = index;
            self.arm_deadline(s, lease_deadline_ms);
            self.event(index, EventKind::LockAcquired, s, client, index);
            return Ok(WriteResult::Locked {
                fence: index,
                lease_deadline_ms,
            });
        };
        if self.kind(s) != NodeKind::Lock {
            return Err(KvError::NotALock);
        }
        if self.nodes[s as usize].owner == client {
            // Re-acquiring a held lock renews the lease and keeps the token.
            self.nodes[s as usize].deadline_ms = lease_deadline_ms;
            self.nodes[s as usize].update_index = index;
            self.refresh_lock_due(s);
            self.event(index, EventKind::LeaseUpdated, s, client, lease_deadline_ms);
            return Ok(WriteResult::Locked {
                fence: self.nodes[s as usize].fence,
                lease_deadline_ms,
            });
        }
        let mut position = 0u32;
        let mut w = self.nodes[s as usize].wait_head;
        while w != NIL {
            position += 1;
            if self.waiters[w as usize].client == client {
                return Ok(WriteResult::Queued { position });
            }
            w = self.waiters[w as usize].next;
        }
        if wait_ms == 0 {
            return Err(KvError::LockHeld);
        }
        if self.nodes[s as usize].wait_count as usize >= self.limits.max_waiters_per_lock {
            return Err(KvError::TooManyWaiters);
        }
        if self.waiters_used >= self.limits.max_waiters {
            return Err(KvError::WaiterPoolFull);
        }
        let w = self.take_waiter_slot();
        self.waiters_used += 1;
        self.waiters[w as usize] = WaiterSlot {
            client,
            lease_ms,
            wait_deadline_ms: self.now_ms.saturating_add(wait_ms),
            next: NIL,
        };
        self.push_waiter(s, w);
        self.refresh_lock_due(s);
        self.event(index, EventKind::LockQueued, s, client, 0);
        Ok(WriteResult::Queued {
            position: self.nodes[s as usize].wait_count,
        })
    }

    pub(crate) fn push_waiter(&mut self, s: u32, w: u32) {
        let n = &mut self.nodes[s as usize];
        if n.wait_tail == NIL {
            n.wait_head = w;
        } else {
            self.waiters[n.wait_tail as usize].next = w;
        }
        n.wait_tail = w;
        n.wait_count += 1;
    }

    /// Unlink waiter `w` (whose predecessor is `prev`) from lock `s` and free it.
    fn drop_waiter(&mut self, index: u64, s: u32, prev: u32, w: u32) {
        let next = self.waiters[w as usize].next;
        let client = self.waiters[w as usize].client;
        let n = &mut self.nodes[s as usize];
        if prev == NIL {
            n.wait_head = next;
        } else {
            self.waiters[prev as usize].next = next;
        }
        if n.wait_tail == w {
            n.wait_tail = prev;
        }
        n.wait_count -= 1;
        self.waiters[w as usize] = WaiterSlot {
            next: self.waiter_free,
            ..WaiterSlot::EMPTY
        };
        self.waiter_free = w;
        self.waiters_used -= 1;
        self.event(index, EventKind::LockWaitDropped, s, client, 0);
    }

    /// Drop the waiters of lock `s` whose wait ended at or before now (all of them if `all`).
    fn drop_waiters(&mut self, index: u64, s: u32, all: bool) {
        let mut prev = NIL;
        let mut w = self.nodes[s as usize].wait_head;
        while w != NIL {
            let next = self.waiters[w as usize].next;
            if all || self.waiters[w as usize].wait_deadline_ms <= self.now_ms {
                self.drop_waiter(index, s, prev, w);
            } else {
                prev = w;
            }
            w = next;
        }
    }

    /// The holder of lock `s` is gone: grant it to the first waiter still waiting, or remove the
    /// lock. Returns the new owner and fencing token.
    fn hand_over(&mut self, index: u64, s: u32) -> Option<(u64, u64)> {
        self.drop_waiters(index, s, false);
        let w = self.nodes[s as usize].wait_head;
        if w == NIL {
            self.free_node(s);
            return None;
        }
        let WaiterSlot {
            client, lease_ms, ..
        } = self.waiters[w as usize];
        let n = &mut self.nodes[s as usize];
        n.wait_head = self.waiters[w as usize].next;
        if n.wait_head == NIL {
            n.wait_tail = NIL;
        }
        n.wait_count -= 1;
        n.owner = client;
        n.fence = index;
        n.deadline_ms = self.now_ms.saturating_add(lease_ms);
        n.update_index = index;
        self.waiters[w as usize] = WaiterSlot {
            next: self.waiter_free,
            ..WaiterSlot::EMPTY
        };
        self.waiter_free = w;
        self.waiters_used -= 1;
        self.refresh_lock_due(s);
        self.event(index, EventKind::LockAcquired, s, client, index);
        Some((client, index))
    }

    fn unlock(&mut self, index: u64, client: u64, key: &[u8]) -> Result<WriteResult, KvError> {
        let s = self.lock_slot(client, key)?;
        if self.nodes[s as usize].owner == client {
            self.event(index, EventKind::LockReleased, s, client, 0);
            let (next_owner, next_fence) = self.hand_over(index, s).unwrap_or((0, 0));
            return Ok(WriteResult::Unlocked {
                next_owner,
                next_fence,
            });
        }
        let mut prev = NIL;
        let mut w = self.nodes[s as usize].wait_head;
        while w != NIL {
            if self.waiters[w as usize].client == client {
                self.drop_waiter(index, s, prev, w);
                self.refresh_lock_due(s);
                return Ok(WriteResult::Done);
            }
            prev = w;
            w = self.waiters[w as usize].next;
        }
        Err(KvError::NotLockOwner)
    }

    fn update_lock_lease(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        lease_ms: u64,
    ) -> Result<WriteResult, KvError> {
        let s = self.lock_slot(client, key)?;
        self.check_ttl(lease_ms)?;
        if self.nodes[s as usize].owner != client {
            return Err(KvError::NotLockOwner);
        }
        let lease_deadline_ms = self.now_ms.saturating_add(lease_ms);
        self.nodes[s as usize].deadline_ms = lease_deadline_ms;
        self.nodes[s as usize].update_index = index;
        self.refresh_lock_due(s);
        self.event(index, EventKind::LeaseUpdated, s, client, lease_deadline_ms);
        Ok(WriteResult::Locked {
            fence: self.nodes[s as usize].fence,
            lease_deadline_ms,
        })
    }

    // ----- expiry --------------------------------------------------------------------------

    fn expire(&mut self, index: u64) -> WriteResult {
        let (mut removed, mut granted) = (0u32, 0u32);
        while self.heap_len > 0 {
            let s = self.heap[0];
            if self.nodes[s as usize].due_ms > self.now_ms {
                break;
            }
            if self.kind(s) == NodeKind::Lock {
                self.drop_waiters(index, s, false);
                if self.nodes[s as usize].deadline_ms <= self.now_ms {
                    let owner = self.nodes[s as usize].owner;
                    self.event(index, EventKind::LockExpired, s, owner, 0);
                    match self.hand_over(index, s) {
                        Some(_) => granted += 1,
                        None => removed += 1,
                    }
                } else {
                    self.refresh_lock_due(s);
                }
            } else {
                removed += self.expire_subtree(index, s);
            }
        }
        WriteResult::Expired { removed, granted }
    }

    /// Remove `top` and everything under it, children first; one `Expired` event per node.
    fn expire_subtree(&mut self, index: u64, top: u32) -> u32 {
        let mut removed = 0;
        let mut cur = top;
        loop {
            while self.nodes[cur as usize].first_child != NIL {
                cur = self.nodes[cur as usize].first_child;
            }
            let parent = self.nodes[cur as usize].parent;
            self.drop_waiters(index, cur, true);
            let owner = self.nodes[cur as usize].owner;
            self.event(index, EventKind::Expired, cur, owner, 0);
            self.free_node(cur);
            removed += 1;
            if cur == top {
                return removed;
            }
            cur = parent;
        }
    }

    /// A 64-bit digest of the canonical snapshot encoding: equal on replicas in equal states.
    pub fn digest(&self) -> u64 {
        let mut w = DigestWriter(crate::snapshot::DIGEST.digest());
        self.write_snapshot(&mut w)
            .expect("the digest writer never fails");
        w.0.finalize()
    }
}

struct DigestWriter(crc::Digest<'static, u64>);

impl SnapshotWriter for DigestWriter {
    fn write(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        self.0.update(data);
        Ok(())
    }
}

impl StateMachine for DtKv<'_> {
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
