//! Deadlines: the expiry heap of temporary nodes and locks (a binary min-heap ordered by due
//! time, then creation index: unique and log-determined, so every replica expires in the same
//! order) and the `Expire` command that acts on it.

use crate::command::{NodeKind, WriteResult};
use crate::events::EventKind;
use crate::memory::{KvMemory, NIL};
use crate::store::DtKv;

impl<M: KvMemory> DtKv<M> {
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

    pub(crate) fn heap_remove(&mut self, s: u32) {
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
    pub(crate) fn arm_deadline(&mut self, s: u32, deadline: u64) {
        let n = &mut self.nodes[s as usize];
        n.deadline_ms = deadline;
        n.due_ms = deadline;
        if n.heap_pos == NIL {
            self.heap_push(s);
        } else {
            self.heap_fix(s);
        }
    }

    pub(crate) fn heap_fix(&mut self, s: u32) {
        let pos = self.nodes[s as usize].heap_pos as usize;
        self.sift_up(pos);
        let pos = self.nodes[s as usize].heap_pos as usize;
        self.sift_down(pos);
    }

    /// Apply `Expire` at the replicated clock: remove every temporary node due (with its
    /// subtree), take locks whose lease ended (handing them on), and drop waiters whose wait
    /// ended.
    pub(crate) fn expire(&mut self, index: u64) -> WriteResult {
        let (mut removed, mut granted) = (0u32, 0u32);
        while self.heap_len > 0 {
            let s = self.heap[0];
            if self.nodes[s as usize].due_ms > self.now_ms {
                break;
            }
            let kind = self.kind(s);
            if kind == NodeKind::Lease {
                if let WriteResult::Expired {
                    removed: r,
                    granted: g,
                } = self.end_lease(index, s)
                {
                    (removed, granted) = (removed + r, granted + g);
                }
            } else if kind == NodeKind::Lock {
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
    pub(crate) fn expire_subtree(&mut self, index: u64, top: u32) -> u32 {
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
}
