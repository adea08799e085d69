//! The node plumbing every write shares: argument checks, creating, linking and freeing nodes
//! and lock waiters (slots lowest-first, see `FreeList`), and recording watch events.

use crate::arena::{cost, owner_tag};
use crate::check;
use crate::command::NodeKind;
use crate::error::KvError;
use crate::events::EventKind;
use crate::key::{hash_bytes, parent_of};
use crate::leases::Life;
use crate::memory::{Element, KvMemory, NodeSlot, WaiterSlot, NIL};
use crate::store::{DtKv, ROOT};

impl<M: KvMemory> DtKv<M> {
    /// The directory `key` would be created in.
    pub(crate) fn parent_dir(&self, key: &[u8]) -> Result<u32, KvError> {
        let p = self.lookup(parent_of(key)).ok_or(KvError::ParentNotFound)?;
        if self.kind(p).is_dir() {
            Ok(p)
        } else {
            Err(KvError::ParentNotDir)
        }
    }

    pub(crate) fn check_value(&self, value: &[u8]) -> Result<(), KvError> {
        check::check_value(value, &self.limits)
    }

    /// The checks of a write that needs a session (temporary nodes, locks), in the order
    /// every replica must apply them: the session, then the key.
    pub(crate) fn check_session_key(&self, client: u64, key: &[u8]) -> Result<(), KvError> {
        check::check_session_key(client, key, &self.limits)
    }

    /// `check_session_key`, then the deadline `ttl_ms` from now (`deadline_after`).
    pub(crate) fn check_session_deadline(
        &self,
        client: u64,
        key: &[u8],
        ttl_ms: u64,
    ) -> Result<u64, KvError> {
        self.check_session_key(client, key)?;
        self.deadline_after(ttl_ms)
    }

    /// The deadline `ttl_ms` (a TTL or a lease) from the replicated clock, if the TTL is valid.
    pub(crate) fn deadline_after(&self, ttl_ms: u64) -> Result<u64, KvError> {
        check::check_ttl(ttl_ms, &self.limits)?;
        Ok(self.now_ms.saturating_add(ttl_ms))
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
        let s = self.take_node_slot(kind, key.len());
        self.nodes[s as usize].create_index = create_index;
        self.nodes[s as usize].update_index = create_index;
        let key_off =
            self.arena
                .alloc(key.len(), Some(key), owner_tag(s, false), &mut self.nodes)?;
        self.nodes[s as usize].key_off = key_off;
        self.store_value(s, value)?;
        self.link_node(s, hash_bytes(key), parent);
        Ok(s)
    }

    /// Create a node in `key`'s parent directory, owned by session `client`, living `life`
    /// (a deadline of its own or a lease); all-or-nothing.
    pub(crate) fn create_owned(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        kind: NodeKind,
        value: &[u8],
        life: Life,
    ) -> Result<u32, KvError> {
        let parent = self.parent_dir(key)?;
        let s = self.create_node(key, kind, value, parent, index)?;
        self.nodes[s as usize].owner = client;
        self.set_life(s, life);
        Ok(s)
    }

    /// Replace a node's value; all-or-nothing. A value of the old one's length is written over
    /// it in place: no block is appended and none freed, so a key rewritten with values of one
    /// size (a counter, a status, a fixed-size record) touches the same bytes each time instead
    /// of walking the arena's tail through memory and calling for compactions. (Nothing reads
    /// the old bytes after a replace: snapshots serialise the state between two applies, and
    /// watch events and answers keep copies.)
    pub(crate) fn replace_value(&mut self, s: u32, value: &[u8]) -> Result<(), KvError> {
        let old_len = self.nodes[s as usize].val_len as usize;
        if old_len == value.len() && old_len > 0 {
            let off = self.nodes[s as usize].val_off;
            self.arena.get_mut(off, old_len).copy_from_slice(value);
            return Ok(());
        }
        self.arena.fits(cost(value.len()), cost(old_len))?;
        self.arena.free(self.nodes[s as usize].val_off, old_len);
        self.nodes[s as usize].val_len = 0;
        self.store_value(s, value)
    }

    /// Copy `value` into the arena as node `s`'s value (which holds none). The caller has
    /// checked that it fits.
    fn store_value(&mut self, s: u32, value: &[u8]) -> Result<(), KvError> {
        let len = value.len();
        let off = self
            .arena
            .alloc(len, Some(value), owner_tag(s, true), &mut self.nodes)?;
        let n = &mut self.nodes[s as usize];
        n.val_off = off;
        n.val_len = len as u32;
        Ok(())
    }

    /// A fresh node of `kind` with a `key_len`-byte key, counted but not yet linked into the
    /// tree. The caller has checked `node_count < max_nodes`.
    pub(crate) fn take_node_slot(&mut self, kind: NodeKind, key_len: usize) -> u32 {
        let nodes = &self.nodes;
        let s = self.node_slots.take(|s| nodes[s as usize].next);
        debug_assert!((self.node_slots.fresh() as usize) <= self.limits.max_nodes);
        self.nodes[s as usize] = NodeSlot {
            kind: kind as u8,
            key_len: key_len as u16,
            ..NodeSlot::FRESH
        };
        self.node_count += 1;
        s
    }

    /// Enter node `s` in the index under `hash` and append it to `parent`'s children.
    pub(crate) fn link_node(&mut self, s: u32, hash: u32, parent: u32) {
        if self.index.wants_to_grow() {
            // Every node in the tree is in the index (the root has no key).
            let nodes = &*self.nodes;
            self.index
                .grow(TreeWalk::new(nodes).map(|x| (nodes[x as usize].hash, x)));
        }
        self.index.insert(hash, s);
        let last = self.nodes[parent as usize].last_child;
        let n = &mut self.nodes[s as usize];
        n.hash = hash;
        n.parent = parent;
        n.prev = last;
        if last == NIL {
            self.nodes[parent as usize].first_child = s;
        } else {
            self.nodes[last as usize].next = s;
        }
        self.nodes[parent as usize].last_child = s;
        self.nodes[parent as usize].children += 1;
    }

    /// Remove a childless node and everything it holds (waiters must be gone already).
    pub(crate) fn free_node(&mut self, s: u32) {
        let n = self.nodes[s as usize];
        debug_assert!(s != ROOT && n.children == 0 && n.wait_count == 0);
        // A lease leaves only once nothing is tied to it.
        debug_assert!(n.kind != NodeKind::Lease as u8 || n.lease_next == 0);
        self.untie(s);
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
        let nodes = &self.nodes;
        self.index.remove(n.hash, s, |x| nodes[x as usize].hash);
        self.arena.free(n.key_off, n.key_len as usize);
        self.arena.free(n.val_off, n.val_len as usize);
        if n.heap_pos != NIL {
            self.heap_remove(s);
        }
        self.nodes[s as usize] = NodeSlot {
            next: self.node_slots.free(s),
            ..Element::EMPTY
        };
        self.node_count -= 1;
    }

    /// Queue `waiter` at the end of lock `s`'s wait queue. The caller has checked
    /// `waiters_used < max_waiters`.
    pub(crate) fn enqueue_waiter(&mut self, s: u32, waiter: WaiterSlot) {
        let waiters = &self.waiters;
        let w = self.waiter_slots.take(|w| waiters[w as usize].next);
        debug_assert!((self.waiter_slots.fresh() as usize) <= self.limits.max_waiters);
        self.waiters_used += 1;
        self.waiters[w as usize] = WaiterSlot {
            next: NIL,
            ..waiter
        };
        let n = &mut self.nodes[s as usize];
        if n.wait_tail == NIL {
            n.wait_head = w;
        } else {
            self.waiters[n.wait_tail as usize].next = w;
        }
        n.wait_tail = w;
        n.wait_count += 1;
    }

    /// Free waiter slot `w` (already unlinked from its queue).
    pub(crate) fn free_waiter(&mut self, w: u32) {
        self.waiters[w as usize] = WaiterSlot {
            next: self.waiter_slots.free(w),
            ..Element::EMPTY
        };
        self.waiters_used -= 1;
    }

    /// Record a change of node `s` for watchers (with its value for a `Put`).
    pub(crate) fn event(&mut self, index: u64, kind: EventKind, s: u32, owner: u64, fence: u64) {
        let n = &self.nodes[s as usize];
        let key = self.arena.get(n.key_off, n.key_len as usize);
        let value = if kind == EventKind::Put {
            self.arena.get(n.val_off, n.val_len as usize)
        } else {
            &[]
        };
        self.events.push(index, kind, key, value, owner, fence);
    }
}

/// Every node below the root, depth first, by the child and sibling links (no stack).
struct TreeWalk<'a> {
    nodes: &'a [NodeSlot],
    next: u32,
}

impl<'a> TreeWalk<'a> {
    fn new(nodes: &'a [NodeSlot]) -> Self {
        TreeWalk {
            nodes,
            next: nodes[ROOT as usize].first_child,
        }
    }
}

impl Iterator for TreeWalk<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let s = self.next;
        if s == NIL {
            return None;
        }
        let n = &self.nodes[s as usize];
        self.next = if n.first_child != NIL {
            n.first_child
        } else {
            // Up until a node with a next sibling; the root has none.
            let mut up = s;
            while self.nodes[up as usize].next == NIL && up != ROOT {
                up = self.nodes[up as usize].parent;
            }
            if up == ROOT {
                NIL
            } else {
                self.nodes[up as usize].next
            }
        };
        Some(s)
    }
}
