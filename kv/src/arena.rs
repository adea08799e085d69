//! Key and value bytes. Blocks are appended at the tail; a freed block is only marked (a value
//! replaced by one of its own length is written over in place instead: `replace_value`). When the
//! tail reaches the end, or when freed blocks behind the tail outweigh the live ones (and
//! [`COMPACT_MIN_GARBAGE`]), live blocks slide down (compaction) and their nodes learn their new
//! offsets. Whether an allocation fits depends only on the live bytes, never on fragmentation,
//! so every replica refuses exactly the same writes.
//!
//! Compacting once the garbage equals the live bytes keeps the part of the buffer ever written
//! near twice the live bytes (so a large arena the platform got untouched from the OS is only
//! touched as far as the data needs) at an amortized cost of at most one byte copied per byte
//! stored.

use crate::error::KvError;
use crate::memory::{Buffer, NodeSlot, NIL};

/// Bookkeeping bytes in front of every block: payload length and owner, both u32 LE.
pub(crate) const BLOCK_HEADER: usize = 8;

/// Freed bytes behind the tail below which the arena compacts only when the tail reaches the end.
pub(crate) const COMPACT_MIN_GARBAGE: usize = 64 * 1024;

/// Owner tag: node slot times two, plus one for a value block (zero for a key block).
pub(crate) const fn owner_tag(slot: u32, is_value: bool) -> u32 {
    slot * 2 + is_value as u32
}

/// What storing `len` bytes costs (empty payloads are not stored).
pub(crate) const fn cost(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        BLOCK_HEADER + len
    }
}

/// The arena over `buf`, whose whole length is its capacity.
pub(crate) struct Arena<B> {
    buf: B,
    cap: usize,
    tail: usize,
    live: usize,
}

impl<B: Buffer<u8>> Arena<B> {
    pub(crate) fn new(buf: B) -> Self {
        Arena {
            cap: buf.len(),
            buf,
            tail: 0,
            live: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.tail = 0;
        self.live = 0;
    }

    /// Bytes held by live blocks, headers included.
    pub(crate) fn live_bytes(&self) -> usize {
        self.live
    }

    /// Bytes the arena holds at most, headers included.
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    /// Whether adding blocks costing `add` after freeing blocks costing `remove` fits.
    pub(crate) fn fits(&self, add: usize, remove: usize) -> Result<(), KvError> {
        if self.live - remove + add <= self.cap {
            Ok(())
        } else {
            Err(KvError::ArenaFull)
        }
    }

    pub(crate) fn get(&self, off: u32, len: usize) -> &[u8] {
        &self.buf[off as usize..off as usize + len]
    }

    pub(crate) fn get_mut(&mut self, off: u32, len: usize) -> &mut [u8] {
        &mut self.buf[off as usize..off as usize + len]
    }

    /// Store a copy of `data` (or reserve `len` zeroed bytes when `data` is `None`) for `owner`;
    /// returns the payload offset. Compacts first if the tail is too close to the end.
    pub(crate) fn alloc(
        &mut self,
        len: usize,
        data: Option<&[u8]>,
        owner: u32,
        nodes: &mut [NodeSlot],
    ) -> Result<u32, KvError> {
        if len == 0 {
            return Ok(0);
        }
        self.fits(cost(len), 0)?;
        let garbage = self.tail - self.live;
        if self.tail + cost(len) > self.cap || garbage >= self.live.max(COMPACT_MIN_GARBAGE) {
            self.compact(nodes);
        }
        debug_assert!(
            self.tail + cost(len) <= self.cap,
            "live bytes fit, so a compacted arena fits"
        );
        let at = self.tail;
        self.buf[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
        self.buf[at + 4..at + 8].copy_from_slice(&owner.to_le_bytes());
        let off = at + BLOCK_HEADER;
        match data {
            Some(d) => self.buf[off..off + len].copy_from_slice(d),
            None => self.buf[off..off + len].fill(0),
        }
        self.tail += cost(len);
        self.live += cost(len);
        Ok(off as u32)
    }

    /// Free the block whose payload starts at `off` and is `len` long.
    pub(crate) fn free(&mut self, off: u32, len: usize) {
        if len == 0 {
            return;
        }
        let at = off as usize - BLOCK_HEADER;
        debug_assert_eq!(self.buf[at..at + 4], (len as u32).to_le_bytes());
        self.buf[at + 4..at + 8].copy_from_slice(&NIL.to_le_bytes());
        self.live -= cost(len);
    }

    fn compact(&mut self, nodes: &mut [NodeSlot]) {
        let mut read = 0;
        let mut write = 0;
        while read < self.tail {
            let len =
                u32::from_le_bytes(self.buf[read..read + 4].try_into().expect("4 bytes")) as usize;
            let owner =
                u32::from_le_bytes(self.buf[read + 4..read + 8].try_into().expect("4 bytes"));
            let size = BLOCK_HEADER + len;
            if owner != NIL {
                if read != write {
                    self.buf.copy_within(read..read + size, write);
                }
                let node = &mut nodes[(owner / 2) as usize];
                let new_off = (write + BLOCK_HEADER) as u32;
                if owner % 2 == 1 {
                    node.val_off = new_off;
                } else {
                    node.key_off = new_off;
                }
                write += size;
            }
            read += size;
        }
        debug_assert_eq!(write, self.live);
        self.tail = write;
    }
}
