//! Open-addressing hash index (linear probing, backward-shift deletion, no tombstones) over a
//! power-of-two bucket array. Buckets hold `slot + 1`; 0 is empty. The caller supplies each
//! slot's hash and key comparison, so one index type serves nodes and sessions. `B` is the
//! container the store's memory provider keeps the buckets in.

use crate::memory::Buffer;

pub(crate) struct HashIndex<B> {
    buckets: B,
    mask: usize,
}

impl<B: Buffer<u32>> HashIndex<B> {
    /// `buckets.len()` must be a power of two.
    pub(crate) fn new(buckets: B) -> Self {
        debug_assert!(buckets.len().is_power_of_two());
        let mask = buckets.len() - 1;
        let mut index = HashIndex { buckets, mask };
        index.clear();
        index
    }

    /// Empty every bucket. Buckets already empty are only read, not written, so a zeroed
    /// buffer the platform got untouched from the OS stays untouched.
    pub(crate) fn clear(&mut self) {
        for b in self.buckets.iter_mut() {
            if *b != 0 {
                *b = 0;
            }
        }
    }

    /// The slot whose key matches, found by `is_match(slot)`.
    pub(crate) fn find(&self, hash: u32, mut is_match: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut pos = hash as usize & self.mask;
        loop {
            let entry = self.buckets[pos];
            if entry == 0 {
                return None;
            }
            if is_match(entry - 1) {
                return Some(entry - 1);
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Add `slot` (its key must not be present). The table is at most half full by sizing.
    pub(crate) fn insert(&mut self, hash: u32, slot: u32) {
        let mut pos = hash as usize & self.mask;
        while self.buckets[pos] != 0 {
            pos = (pos + 1) & self.mask;
        }
        self.buckets[pos] = slot + 1;
    }

    /// Remove `slot`; `hash_of(slot)` gives any stored slot's hash.
    pub(crate) fn remove(&mut self, hash: u32, slot: u32, hash_of: impl Fn(u32) -> u32) {
        let mut pos = hash as usize & self.mask;
        while self.buckets[pos] != slot + 1 {
            debug_assert!(
                self.buckets[pos] != 0,
                "removing a slot that is not indexed"
            );
            pos = (pos + 1) & self.mask;
        }
        let mut hole = pos;
        let mut probe = pos;
        loop {
            probe = (probe + 1) & self.mask;
            let entry = self.buckets[probe];
            if entry == 0 {
                break;
            }
            let home = hash_of(entry - 1) as usize & self.mask;
            if (probe.wrapping_sub(home) & self.mask) >= (probe.wrapping_sub(hole) & self.mask) {
                self.buckets[hole] = entry;
                hole = probe;
            }
        }
        self.buckets[hole] = 0;
    }
}
