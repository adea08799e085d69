//! Locks: try-lock (grant, renew or queue), unlock, lease renewal, and handing a lock to its
//! next waiter. A lock's heap key is the earliest of its lease and its waiters' wait deadlines,
//! so one `Expire` handles both.

use crate::command::{NodeKind, WriteResult};
use crate::error::KvError;
use crate::events::EventKind;
use crate::leases::{Life, Lifetime};
use crate::memory::{KvMemory, WaiterSlot, NIL};
use crate::store::DtKv;

impl<M: KvMemory> DtKv<M> {
    /// The lock node `key` names, for a write by session `client`.
    fn lock_slot(&self, client: u64, key: &[u8]) -> Result<u32, KvError> {
        self.check_session_key(client, key)?;
        let s = self.lookup(key).ok_or(KvError::NotFound)?;
        if self.kind(s) != NodeKind::Lock {
            return Err(KvError::NotALock);
        }
        Ok(s)
    }

    /// Recompute a lock's heap key: the earliest of its lease and its waiters' wait deadlines.
    pub(crate) fn refresh_lock_due(&mut self, s: u32) {
        let mut due = self.nodes[s as usize].deadline_ms;
        let mut w = self.nodes[s as usize].wait_head;
        while w != NIL {
            due = due.min(self.waiters[w as usize].wait_deadline_ms);
            w = self.waiters[w as usize].next;
        }
        self.nodes[s as usize].due_ms = due;
        self.heap_fix(s);
    }

    pub(crate) fn try_lock(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        want: Lifetime,
        wait_ms: u64,
    ) -> Result<WriteResult, KvError> {
        let life = self.life_for(client, key, want)?;
        if wait_ms > self.limits.max_ttl_ms {
            return Err(KvError::InvalidTtl);
        }
        let Some(s) = self.lookup(key) else {
            let s = self.create_owned(index, client, key, NodeKind::Lock, &[], life)?;
            self.nodes[s as usize].fence = index;
            self.event(index, EventKind::LockAcquired, s, client, index);
            return Ok(WriteResult::Locked {
                fence: index,
                lease_deadline_ms: self.deadline_of(s),
            });
        };
        if self.kind(s) != NodeKind::Lock {
            return Err(KvError::NotALock);
        }
        let n = &self.nodes[s as usize];
        let holder = match life {
            Life::Tied(l) => n.lease == l,
            Life::Until(_) => n.lease == 0 && n.owner == client,
        };
        match want {
            // Re-acquiring a held lock renews the lease and keeps the token.
            _ if holder => Ok(self.renew_lease(index, s, client, life)),
            Lifetime::Ttl(lease_ms) => self.queue_for_lock(index, s, client, lease_ms, wait_ms),
            // A lock held under a lease has no queue to wait in.
            Lifetime::Lease(_) => Err(KvError::LockHeld),
        }
    }

    /// Holder `client` of lock `s` keeps it for `life`.
    fn renew_lease(&mut self, index: u64, s: u32, client: u64, life: Life) -> WriteResult {
        self.renew(index, client, s, life);
        let lease_deadline_ms = self.deadline_of(s);
        self.event(index, EventKind::LeaseUpdated, s, client, lease_deadline_ms);
        WriteResult::Locked {
            fence: self.nodes[s as usize].fence,
            lease_deadline_ms,
        }
    }

    /// `client` waits for lock `s` (held by another) for up to `wait_ms`, or learns its place
    /// if it already waits.
    fn queue_for_lock(
        &mut self,
        index: u64,
        s: u32,
        client: u64,
        lease_ms: u64,
        wait_ms: u64,
    ) -> Result<WriteResult, KvError> {
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
        self.enqueue_waiter(
            s,
            WaiterSlot {
                client,
                lease_ms,
                wait_deadline_ms: self.now_ms.saturating_add(wait_ms),
                next: NIL,
            },
        );
        self.refresh_lock_due(s);
        self.event(index, EventKind::LockQueued, s, client, 0);
        Ok(WriteResult::Queued {
            position: self.nodes[s as usize].wait_count,
        })
    }

    /// Unlink waiter `w` (whose predecessor is `prev`) from lock `s`'s queue and free its slot;
    /// returns what it held.
    fn unlink_waiter(&mut self, s: u32, prev: u32, w: u32) -> WaiterSlot {
        let waiter = self.waiters[w as usize];
        let n = &mut self.nodes[s as usize];
        if prev == NIL {
            n.wait_head = waiter.next;
        } else {
            self.waiters[prev as usize].next = waiter.next;
        }
        if n.wait_tail == w {
            n.wait_tail = prev;
        }
        n.wait_count -= 1;
        self.free_waiter(w);
        waiter
    }

    /// Take waiter `w` (whose predecessor is `prev`) off lock `s`'s queue.
    fn drop_waiter(&mut self, index: u64, s: u32, prev: u32, w: u32) {
        let client = self.unlink_waiter(s, prev, w).client;
        self.event(index, EventKind::LockWaitDropped, s, client, 0);
    }

    /// Drop the waiters of lock `s` whose wait ended at or before now (all of them if `all`).
    pub(crate) fn drop_waiters(&mut self, index: u64, s: u32, all: bool) {
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
    pub(crate) fn hand_over(&mut self, index: u64, s: u32) -> Option<(u64, u64)> {
        self.untie(s);
        self.drop_waiters(index, s, false);
        let w = self.nodes[s as usize].wait_head;
        if w == NIL {
            self.free_node(s);
            return None;
        }
        let WaiterSlot {
            client, lease_ms, ..
        } = self.unlink_waiter(s, NIL, w);
        let n = &mut self.nodes[s as usize];
        n.owner = client;
        n.fence = index;
        n.deadline_ms = self.now_ms.saturating_add(lease_ms);
        n.update_index = index;
        self.refresh_lock_due(s);
        self.event(index, EventKind::LockAcquired, s, client, index);
        Some((client, index))
    }

    /// Release the lock `key` if `client` holds it, or with `force` ([`crate::Op::ForceUnlock`],
    /// an operator's override) whoever holds it; else take `client` out of its queue.
    pub(crate) fn unlock(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        force: bool,
    ) -> Result<WriteResult, KvError> {
        let s = self.lock_slot(client, key)?;
        let holder = self.nodes[s as usize].owner;
        if self.may_change(s, client) || (force && holder != 0) {
            let by = if force { holder } else { client };
            self.event(index, EventKind::LockReleased, s, by, 0);
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

    pub(crate) fn update_lock_lease(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        lease_ms: u64,
    ) -> Result<WriteResult, KvError> {
        let s = self.lock_slot(client, key)?;
        let lease_deadline_ms = self.deadline_after(lease_ms)?;
        // A lock held under a lease lives by its lease: no session takes it over this way
        // (that would pass it on without a new fencing token).
        let n = &self.nodes[s as usize];
        if n.lease != 0 || n.owner != client {
            return Err(KvError::NotLockOwner);
        }
        Ok(self.renew_lease(index, s, client, Life::Until(lease_deadline_ms)))
    }
}
