//! Leases: a TTL that several nodes share. A lease is a node of kind `Lease` at
//! `__shoal.leases.<id>` (its id is the raft index of its grant, so every replica names it
//! alike) with a deadline in the expiry heap; keep-alives push the deadline out by its TTL.
//! Temporary values, temporary directories and locks may be tied to a lease instead of having a
//! deadline of their own: they sit in the lease's list (threaded through their `lease_*` fields)
//! and leave with it, in the one entry that expires or revokes it. Nodes tied to a lease are
//! not owned by a session: the lease id is the capability, so a later client naming the lease
//! (or removing, releasing the node) may change them.
//!
//! A lease's list is ordered by what every replica has, so that a replica restored from a
//! snapshot lists (and ends) the lease's nodes in the order of the replicas that applied the
//! writes: most recently written first (`update_index`, the index that tied, renewed or wrote
//! the node), and nodes written at one index (by a batch or a transaction) in key order. A
//! write ties or moves its node to the front, past only the nodes its own entry wrote; a
//! restore ties in slot order, then sorts each list once (a merge sort in place).

use crate::command::{NodeKind, WriteResult};
use crate::error::KvError;
use crate::events::EventKind;
use crate::memory::{KvMemory, NIL};
use crate::store::{DtKv, ROOT};
use crate::system::{lease_key, LEASES_DIR};

/// How long a temporary node or lock lives: until a deadline of its own, or as long as a lease.
#[derive(Clone, Copy)]
pub(crate) enum Life {
    /// Until this leader-clock deadline (ms).
    Until(u64),
    /// As long as the lease node in this slot.
    Tied(u32),
}

/// The life a write asks for: a TTL (or lock lease) in ms, or the lease it names.
#[derive(Clone, Copy)]
pub(crate) enum Lifetime {
    /// Live this many ms from now.
    Ttl(u64),
    /// Live as long as the lease of this id.
    Lease(u64),
}

impl<M: KvMemory> DtKv<M> {
    /// The checks of a write of a temporary node or lock by session `client` (the session,
    /// the key, then the TTL or the lease), and the life it gets.
    pub(crate) fn life_for(
        &self,
        client: u64,
        key: &[u8],
        want: Lifetime,
    ) -> Result<Life, KvError> {
        self.check_session_key(client, key)?;
        match want {
            Lifetime::Ttl(ttl_ms) => self.deadline_after(ttl_ms).map(Life::Until),
            Lifetime::Lease(id) => self.lease_slot(id).map(Life::Tied),
        }
    }

    /// The slot of live lease `id`.
    pub(crate) fn lease_slot(&self, id: u64) -> Result<u32, KvError> {
        self.lookup(lease_key(id).as_bytes())
            .filter(|&s| self.kind(s) == NodeKind::Lease)
            .ok_or(KvError::LeaseNotFound)
    }

    /// Leases live now.
    pub fn lease_count(&self) -> usize {
        self.lookup(LEASES_DIR)
            .map_or(0, |d| self.nodes[d as usize].children as usize)
    }

    /// Whether session `client` may change node `s`: it owns it, or nobody does (it is tied
    /// to a lease).
    pub(crate) fn may_change(&self, s: u32, client: u64) -> bool {
        let n = &self.nodes[s as usize];
        n.lease != 0 || n.owner == client
    }

    /// The deadline node `s` lives to: its lease's, or its own.
    pub(crate) fn deadline_of(&self, s: u32) -> u64 {
        let n = &self.nodes[s as usize];
        if n.lease != 0 {
            self.nodes[n.lease as usize].deadline_ms
        } else {
            n.deadline_ms
        }
    }

    /// Give node `s` (temporary or a lock) its life: a deadline of its own in the expiry heap,
    /// or a place in a lease's list, in the list's order. A lock stays in the heap either way,
    /// for its waiters.
    pub(crate) fn set_life(&mut self, s: u32, life: Life) {
        self.place(s, life, true);
    }

    /// `set_life`, with `in_order` false putting a tied node at the front of its lease's list.
    pub(crate) fn place(&mut self, s: u32, life: Life, in_order: bool) {
        self.untie(s);
        let lock = self.kind(s) == NodeKind::Lock;
        match life {
            Life::Until(deadline) => self.arm_deadline(s, deadline),
            Life::Tied(l) => {
                if lock {
                    self.arm_deadline(s, u64::MAX);
                } else if self.nodes[s as usize].heap_pos != NIL {
                    self.heap_remove(s);
                }
                let n = &mut self.nodes[s as usize];
                if !lock {
                    n.deadline_ms = 0;
                }
                n.lease = l;
                // `s` was written at this index: it goes first, after only the nodes written
                // at the same index (by one batch or transaction) whose keys are smaller.
                let mut prev = l;
                loop {
                    let t = self.nodes[prev as usize].lease_next;
                    if t == 0 || !in_order || !self.tied_before(t, s) {
                        break;
                    }
                    prev = t;
                }
                let next = self.nodes[prev as usize].lease_next;
                let n = &mut self.nodes[s as usize];
                (n.lease_prev, n.lease_next) = (prev, next);
                if next != 0 {
                    self.nodes[next as usize].lease_prev = s;
                }
                self.nodes[prev as usize].lease_next = s;
            }
        }
        if lock {
            self.refresh_lock_due(s);
        }
    }

    /// Whether node `s` is in the subtree of node `top` (`top` itself included).
    fn is_under(&self, mut s: u32, top: u32) -> bool {
        while s != top && s != ROOT {
            s = self.nodes[s as usize].parent;
        }
        s == top
    }

    /// Whether tied node `a` comes before tied node `b` in their lease's list: written at a
    /// later index, or at the same one with a smaller key. Every replica, live or restored
    /// from a snapshot, has both, so every replica orders the list alike.
    fn tied_before(&self, a: u32, b: u32) -> bool {
        let (x, y) = (
            self.nodes[a as usize].update_index,
            self.nodes[b as usize].update_index,
        );
        x > y || (x == y && self.key_of(a) < self.key_of(b))
    }

    /// Put lease `l`'s list in `tied_before` order: a merge sort of the list in place
    /// (O(k log k) for k nodes, no memory), for a restore, which ties its nodes in slot order.
    pub(crate) fn sort_ties(&mut self, l: u32) {
        let mut width = 1usize;
        loop {
            let (mut p, mut tail, mut runs) = (self.nodes[l as usize].lease_next, l, 0);
            while p != 0 {
                runs += 1;
                // Merge the run of `width` nodes from `p` with the run after it, from `q`.
                let (mut q, mut p_left) = (p, 0);
                while p_left < width && q != 0 {
                    p_left += 1;
                    q = self.nodes[q as usize].lease_next;
                }
                let mut q_left = width;
                while p_left > 0 || (q_left > 0 && q != 0) {
                    let take_q = p_left == 0 || (q_left > 0 && q != 0 && self.tied_before(q, p));
                    let e = if take_q { q } else { p };
                    let next = self.nodes[e as usize].lease_next;
                    if take_q {
                        (q, q_left) = (next, q_left - 1);
                    } else {
                        (p, p_left) = (next, p_left - 1);
                    }
                    self.nodes[tail as usize].lease_next = e;
                    self.nodes[e as usize].lease_prev = tail;
                    tail = e;
                }
                p = q;
            }
            self.nodes[tail as usize].lease_next = 0;
            if runs <= 1 {
                return;
            }
            width *= 2;
        }
    }

    /// Session `client` renewed node `s` at `index` (it passed `may_change`) to live `life`.
    /// A deadline of its own makes the node the session's; under a lease it keeps its owner
    /// (the lease, not the renewing session, holds it).
    pub(crate) fn renew(&mut self, index: u64, client: u64, s: u32, life: Life) {
        let n = &mut self.nodes[s as usize];
        n.update_index = index;
        if let Life::Until(_) = life {
            n.owner = client;
        }
        self.set_life(s, life);
    }

    /// Take node `s` out of its lease's list, if it is in one.
    pub(crate) fn untie(&mut self, s: u32) {
        let n = self.nodes[s as usize];
        if n.lease == 0 {
            return;
        }
        self.nodes[n.lease_prev as usize].lease_next = n.lease_next;
        if n.lease_next != 0 {
            self.nodes[n.lease_next as usize].lease_prev = n.lease_prev;
        }
        let n = &mut self.nodes[s as usize];
        (n.lease, n.lease_prev, n.lease_next) = (0, 0, 0);
    }

    pub(crate) fn lease_grant(
        &mut self,
        index: u64,
        client: u64,
        ttl_ms: u64,
    ) -> Result<WriteResult, KvError> {
        let deadline_ms = self.deadline_after(ttl_ms)?;
        if self.lease_count() >= self.limits.max_leases {
            return Err(KvError::TooManyLeases);
        }
        let key = lease_key(index);
        let s = self.create_with_parents(index, key.as_bytes(), NodeKind::Lease, &[])?;
        let n = &mut self.nodes[s as usize];
        n.owner = client;
        n.fence = ttl_ms;
        self.arm_deadline(s, deadline_ms);
        self.event(index, EventKind::Put, s, client, 0);
        Ok(WriteResult::Lease {
            id: index,
            ttl_ms,
            deadline_ms,
        })
    }

    pub(crate) fn lease_keep_alive(&mut self, index: u64, id: u64) -> Result<WriteResult, KvError> {
        let s = self.lease_slot(id)?;
        let n = &mut self.nodes[s as usize];
        n.update_index = index;
        let (ttl_ms, owner) = (n.fence, n.owner);
        let deadline_ms = self.now_ms.saturating_add(ttl_ms);
        self.arm_deadline(s, deadline_ms);
        self.event(index, EventKind::TtlUpdated, s, owner, deadline_ms);
        Ok(WriteResult::Lease {
            id,
            ttl_ms,
            deadline_ms,
        })
    }

    /// End lease `l` with everything tied to it. Temporary nodes go first (with their
    /// subtrees, locks inside them included), then the locks still tied pass to their next
    /// waiter or go, each in the list's order (the same on every replica, so are the events).
    /// In that order the outcome (the tree and the answer) would not depend on the list's
    /// order either.
    pub(crate) fn end_lease(&mut self, index: u64, l: u32) -> WriteResult {
        let (mut removed, mut granted) = (0u32, 0u32);
        // Every node from the lease to `prev` is a lock: the next temporary node is sought
        // from there, not from the front, so locks leading the list cost O(k · depth) for k
        // tied nodes, not O(k²). Locks inside a temporary node's subtree go with it: `prev`
        // steps back before them first.
        let mut prev = l;
        loop {
            let mut t = self.nodes[prev as usize].lease_next;
            while t != 0 && self.kind(t) == NodeKind::Lock {
                (prev, t) = (t, self.nodes[t as usize].lease_next);
            }
            if t == 0 {
                break;
            }
            while prev != l && self.is_under(prev, t) {
                prev = self.nodes[prev as usize].lease_prev;
            }
            removed += self.expire_subtree(index, t);
        }
        loop {
            let t = self.nodes[l as usize].lease_next;
            if t == 0 {
                break;
            }
            let owner = self.nodes[t as usize].owner;
            self.event(index, EventKind::LockExpired, t, owner, 0);
            match self.hand_over(index, t) {
                Some(_) => granted += 1,
                None => removed += 1,
            }
        }
        self.expire_subtree(index, l);
        WriteResult::Expired { removed, granted }
    }

    /// Call `f` with each live lease's node, in grant order.
    pub fn leases(&self, mut f: impl FnMut(crate::NodeView<'_>)) {
        // Listing a directory that exists cannot fail.
        let _ = self.list(LEASES_DIR, |v| {
            if v.kind == NodeKind::Lease {
                f(v)
            }
        });
    }

    /// Call `f` with the key of each node tied to lease `id`, most recently written first (see
    /// the module's documentation); fails if the lease is not live.
    pub fn lease_keys(&self, id: u64, mut f: impl FnMut(&[u8])) -> Result<(), KvError> {
        let mut t = self.nodes[self.lease_slot(id)? as usize].lease_next;
        while t != 0 {
            f(self.key_of(t));
            t = self.nodes[t as usize].lease_next;
        }
        Ok(())
    }
}
