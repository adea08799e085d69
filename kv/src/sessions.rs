//! The exactly-once dedup table: per client session, the last sequence number applied and the
//! answer it got. It is part of the replicated state and of snapshots. When full, the session
//! whose last write has the smallest raft index is forgotten (a least-recently-used list whose
//! order depends only on the log, so every replica evicts the same session).

use crate::command::WriteResult;
use crate::index::HashIndex;
use crate::key::hash_u64;
use crate::memory::{SessionSlot, NIL};

pub(crate) struct Sessions<'a> {
    pub(crate) slots: &'a mut [SessionSlot],
    index: HashIndex<'a>,
    cap: usize,
    pub(crate) count: usize,
    free: u32,
    /// Slots from here on were never used since the last clear (and are never read).
    fresh: u32,
    /// Least recently used (oldest last write) end of the list.
    pub(crate) oldest: u32,
    newest: u32,
}

impl<'a> Sessions<'a> {
    pub(crate) fn new(slots: &'a mut [SessionSlot], index: &'a mut [u32], cap: usize) -> Self {
        let mut s = Sessions {
            slots,
            index: HashIndex::new(index),
            cap,
            count: 0,
            free: NIL,
            fresh: 0,
            oldest: NIL,
            newest: NIL,
        };
        s.clear();
        s
    }

    pub(crate) fn clear(&mut self) {
        self.index.clear();
        self.count = 0;
        self.oldest = NIL;
        self.newest = NIL;
        self.free = NIL;
        self.fresh = 0;
    }

    pub(crate) fn find(&self, client: u64) -> Option<&SessionSlot> {
        let slots = &*self.slots;
        self.index
            .find(hash_u64(client), |s| slots[s as usize].client == client)
            .map(|s| &self.slots[s as usize])
    }

    fn unlink(&mut self, s: u32) {
        let (prev, next) = (self.slots[s as usize].prev, self.slots[s as usize].next);
        if prev == NIL {
            self.oldest = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.newest = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
    }

    fn push_newest(&mut self, s: u32) {
        self.slots[s as usize].prev = self.newest;
        self.slots[s as usize].next = NIL;
        if self.newest == NIL {
            self.oldest = s;
        } else {
            self.slots[self.newest as usize].next = s;
        }
        self.newest = s;
    }

    /// Remember that `client` wrote `seq` at `index` and got `result`. Calls must come in
    /// increasing `index` order (log order), which keeps the list sorted by last write.
    pub(crate) fn record(&mut self, client: u64, seq: u64, index: u64, result: WriteResult) {
        let slots = &*self.slots;
        let found = self
            .index
            .find(hash_u64(client), |s| slots[s as usize].client == client);
        let s = match found {
            Some(s) => {
                self.unlink(s);
                s
            }
            None => {
                if self.count == self.cap {
                    let victim = self.oldest;
                    self.unlink(victim);
                    let victim_client = self.slots[victim as usize].client;
                    let slots = &*self.slots;
                    self.index.remove(hash_u64(victim_client), victim, |s| {
                        hash_u64(slots[s as usize].client)
                    });
                    self.slots[victim as usize].next = self.free;
                    self.free = victim;
                    self.count -= 1;
                }
                let s = if self.free != NIL {
                    let s = self.free;
                    self.free = self.slots[s as usize].next;
                    s
                } else {
                    debug_assert!((self.fresh as usize) < self.cap);
                    self.fresh += 1;
                    self.fresh - 1
                };
                self.count += 1;
                self.index.insert(hash_u64(client), s);
                s
            }
        };
        let slot = &mut self.slots[s as usize];
        slot.used = true;
        slot.client = client;
        slot.last_seq = seq;
        slot.last_index = index;
        slot.result = result;
        self.push_newest(s);
    }

    /// Sessions from least to most recently written.
    pub(crate) fn iter_lru(&self) -> impl Iterator<Item = &SessionSlot> + '_ {
        let mut cur = self.oldest;
        core::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let slot = &self.slots[cur as usize];
            cur = slot.next;
            Some(slot)
        })
    }
}
