//! Open-addressing hash index (linear probing, backward-shift deletion, no tombstones) over a
//! power-of-two bucket array. Buckets hold `slot + 1`; 0 is empty. The caller supplies each
//! slot's hash and key comparison, so one index type serves nodes and sessions. `B` is the
//! container the store's memory provider keeps the buckets in.
//!
//! The index uses a power-of-two prefix of its buffer, sized to its contents: it starts at an
//! eighth of the buffer, at most [`FIRST_BUCKETS`], and doubles whenever it would pass half
//! full, until it is the whole buffer (sized for the store's limits, which keep it at most half
//! full). A doubling is a rebuild: the owner clears the index ([`HashIndex::grow`]) and enters
//! every live slot again. A store with a few keys therefore touches a few KiB of buckets, not
//! the whole array, and its lookups stay in cache; a doubling costs as much as entering every
//! key once, amortised to a constant per insert.

use crate::memory::Buffer;

/// Most buckets an empty index uses (4 KiB of `u32`s, one page).
pub(crate) const FIRST_BUCKETS: usize = 1024;

/// Buckets an empty index over `len` buckets uses: an eighth of them (so a store with small
/// limits grows its index too, and every test of the store goes through growth), at most
/// [`FIRST_BUCKETS`].
const fn first_buckets(len: usize) -> usize {
    let eighth = len / 8;
    let first = if eighth < 4 { 4 } else { eighth };
    let first = if first > FIRST_BUCKETS {
        FIRST_BUCKETS
    } else {
        first
    };
    if first > len {
        len
    } else {
        first
    }
}

pub(crate) struct HashIndex<B> {
    buckets: B,
    /// Buckets in use, less one (a power of two less one).
    mask: usize,
    /// Slots entered.
    len: usize,
}

impl<B: Buffer<u32>> HashIndex<B> {
    /// `buckets.len()` must be a power of two. Every bucket is emptied (the buffer's contents
    /// at hand-over do not matter).
    pub(crate) fn new(mut buckets: B) -> Self {
        debug_assert!(buckets.len().is_power_of_two());
        for b in buckets.iter_mut() {
            if *b != 0 {
                *b = 0;
            }
        }
        HashIndex {
            mask: first_buckets(buckets.len()) - 1,
            buckets,
            len: 0,
        }
    }

    /// Empty the index and go back to its first size. Buckets already empty are only read, not
    /// written, so a zeroed buffer the platform got untouched from the OS stays untouched.
    pub(crate) fn clear(&mut self) {
        self.empty_used();
        self.mask = first_buckets(self.buckets.len()) - 1;
    }

    fn empty_used(&mut self) {
        for b in self.buckets[..=self.mask].iter_mut() {
            if *b != 0 {
                *b = 0;
            }
        }
        self.len = 0;
    }

    /// Buckets in use now.
    pub(crate) fn used_buckets(&self) -> usize {
        self.mask + 1
    }

    /// Whether the next insert would pass half full while the buffer has room to double: the
    /// owner then calls [`HashIndex::grow`] first.
    pub(crate) fn wants_to_grow(&self) -> bool {
        2 * (self.len + 1) > self.mask + 1 && self.mask + 1 < self.buckets.len()
    }

    /// Double the buckets in use and enter `slots` (every slot that was entered, as `(hash,
    /// slot)`) again.
    pub(crate) fn grow(&mut self, slots: impl Iterator<Item = (u32, u32)>) {
        self.empty_used();
        self.mask = 2 * self.mask + 1;
        debug_assert!(self.mask < self.buckets.len());
        for (hash, slot) in slots {
            self.insert(hash, slot);
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

    /// Add `slot` (its key must not be present). The buckets in use are at most half full:
    /// the owner grows the index first when [`HashIndex::wants_to_grow`] says so, and the
    /// whole buffer is sized for twice the most slots.
    pub(crate) fn insert(&mut self, hash: u32, slot: u32) {
        let mut pos = hash as usize & self.mask;
        while self.buckets[pos] != 0 {
            pos = (pos + 1) & self.mask;
        }
        self.buckets[pos] = slot + 1;
        self.len += 1;
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
        self.len -= 1;
    }
}
