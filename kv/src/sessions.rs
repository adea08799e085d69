//! The exactly-once dedup table: per client session, the last sequence number applied and the
//! answer it got. It is part of the replicated state and of snapshots. When full, the session
//! whose last write has the smallest raft index is forgotten (a least-recently-used list whose
//! order depends only on the log, so every replica evicts the same session).

use crate::command::WriteResult;
use crate::index::HashIndex;
use crate::key::hash_u64;
use crate::memory::{Buffer, SessionSlot, NIL};

/// The table over session slots `S` and index buckets `I` (containers of the store's memory
/// provider); it holds as many sessions as there are slots.
pub(crate) struct Sessions<S, I> {
    pub(crate) slots: S,
    index: HashIndex<I>,
    cap: usize,
    /// Sessions remembered; they fill slots `0..count` (a session is forgotten only to make
    /// room for a new one, which takes its slot).
    pub(crate) count: usize,
    /// Least recently used (oldest last write) end of the list.
    pub(crate) oldest: u32,
    newest: u32,
}

impl<S: Buffer<SessionSlot>, I: Buffer<u32>> Sessions<S, I> {
    pub(crate) fn new(slots: S, index: I) -> Self {
        let mut s = Sessions {
            cap: slots.len(),
            slots,
            index: HashIndex::new(index),
            count: 0,
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
    }

    /// Buckets its index uses now.
    pub(crate) fn index_buckets(&self) -> usize {
        self.index.used_buckets()
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

    /// Forget the session whose last write is oldest; returns its slot.
    fn forget_oldest(&mut self) -> u32 {
        let victim = self.oldest;
        self.unlink(victim);
        let slots = &self.slots;
        let hash_of = |s: u32| hash_u64(slots[s as usize].client);
        self.index.remove(hash_of(victim), victim, hash_of);
        victim
    }

    /// Remember that `client` wrote `seq` at `index` (the write's fingerprint `op`, 0 if
    /// unknown) and got `result`. Calls must come in increasing `index` order (log order),
    /// which keeps the list sorted by last write.
    pub(crate) fn record(
        &mut self,
        client: u64,
        seq: u64,
        op: u32,
        index: u64,
        result: WriteResult,
    ) {
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
                let s = if self.count == self.cap {
                    self.forget_oldest()
                } else {
                    self.count += 1;
                    self.count as u32 - 1
                };
                if self.index.wants_to_grow() {
                    // Every session but the one being made: slots `0..count` are all in use.
                    let slots = &*self.slots;
                    let entered = (0..self.count as u32)
                        .filter(|&x| x != s)
                        .map(|x| (hash_u64(slots[x as usize].client), x));
                    self.index.grow(entered);
                }
                self.index.insert(hash_u64(client), s);
                s
            }
        };
        let slot = &mut self.slots[s as usize];
        slot.client = client;
        slot.last_seq = seq;
        slot.last_index = index;
        slot.last_op = op;
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
