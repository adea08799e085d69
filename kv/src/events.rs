//! The watch history: a bounded ring of change events kept in memory only. It is not
//! replicated and not in snapshots; after a restore it starts at the snapshot's index. When full,
//! the oldest events are dropped and watchers that fall behind get `Compacted`.

use crate::error::WatchError;
use crate::key::in_subtree;
use crate::memory::{Buffer, EventSlot};

/// What a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum EventKind {
    /// A value (plain or temporary) was created or changed; the event carries the new value.
    Put = 1,
    /// A node was removed by a client.
    Remove = 2,
    /// A directory (plain or temporary) was created.
    Mkdir = 3,
    /// A temporary node was removed because its TTL ran out (one event per removed node).
    Expired = 4,
    /// A temporary node got a new deadline (`fence` holds the new deadline in ms).
    TtlUpdated = 5,
    /// `owner` now holds the lock with fencing token `fence`. Notify that client.
    LockAcquired = 6,
    /// `owner` queued for the lock.
    LockQueued = 7,
    /// `owner` released the lock.
    LockReleased = 8,
    /// `owner`'s lease ran out and the lock was taken from it.
    LockExpired = 9,
    /// `owner` left the wait queue: it gave up, its wait ran out, or the lock was removed.
    LockWaitDropped = 10,
    /// `owner` renewed its lease (`fence` holds the new lease deadline in ms).
    LeaseUpdated = 11,
}

impl EventKind {
    fn from_code(code: u8) -> EventKind {
        match code {
            1 => EventKind::Put,
            2 => EventKind::Remove,
            3 => EventKind::Mkdir,
            4 => EventKind::Expired,
            5 => EventKind::TtlUpdated,
            6 => EventKind::LockAcquired,
            7 => EventKind::LockQueued,
            8 => EventKind::LockReleased,
            9 => EventKind::LockExpired,
            10 => EventKind::LockWaitDropped,
            _ => EventKind::LeaseUpdated,
        }
    }
}

/// One change, as a watcher sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// Raft index of the command that made the change (several events may share one index).
    pub index: u64,
    /// What happened.
    pub kind: EventKind,
    /// The node's key.
    pub key: &'a [u8],
    /// The new value for `Put`, empty otherwise.
    pub value: &'a [u8],
    /// The client concerned: a temporary node's owner, or the lock client the event is about.
    pub owner: u64,
    /// `LockAcquired`: the fencing token. `TtlUpdated` / `LeaseUpdated`: the new deadline in ms.
    pub fence: u64,
}

/// The ring over event slots `E` and data bytes `B` (containers of the store's memory
/// provider), each used in full.
pub(crate) struct EventLog<E, B> {
    slots: E,
    bytes: B,
    slot_cap: usize,
    byte_cap: u64,
    head: usize,
    len: usize,
    /// Byte position (ever increasing; physical = pos % byte_cap) where the next data goes.
    next_pos: u64,
    /// The smallest index from which the history is complete.
    floor: u64,
}

impl<E: Buffer<EventSlot>, B: Buffer<u8>> EventLog<E, B> {
    pub(crate) fn new(slots: E, bytes: B) -> Self {
        EventLog {
            slot_cap: slots.len(),
            byte_cap: bytes.len() as u64,
            slots,
            bytes,
            head: 0,
            len: 0,
            next_pos: 0,
            floor: 0,
        }
    }

    /// Keep at most `slots` events and `bytes` of their keys and values (each at most its
    /// buffer, at least one event); the history is emptied, complete from `floor` on.
    pub(crate) fn set_caps(&mut self, slots: usize, bytes: u64, floor: u64) {
        self.slot_cap = slots.clamp(1, self.slots.len());
        self.byte_cap = bytes.min(self.bytes.len() as u64);
        self.reset(floor);
    }

    /// The events and bytes it keeps at most.
    pub(crate) fn caps(&self) -> (usize, usize) {
        (self.slot_cap, self.byte_cap as usize)
    }

    /// Its buffers, for the memory provider to release what lies past the caps.
    pub(crate) fn buffers_mut(&mut self) -> (&mut E, &mut B) {
        (&mut self.slots, &mut self.bytes)
    }

    /// Forget everything; the history is complete from `floor` on.
    pub(crate) fn reset(&mut self, floor: u64) {
        self.head = 0;
        self.len = 0;
        self.next_pos = 0;
        self.floor = floor;
    }

    pub(crate) fn oldest_available(&self) -> u64 {
        self.floor
    }

    fn evict_oldest(&mut self) {
        let slot = self.slots[self.head];
        self.floor = self.floor.max(slot.index + 1);
        self.head = (self.head + 1) % self.slot_cap;
        self.len -= 1;
    }

    fn oldest_pos(&self) -> u64 {
        if self.len == 0 {
            self.next_pos
        } else {
            self.slots[self.head].data_pos
        }
    }

    pub(crate) fn push(
        &mut self,
        index: u64,
        kind: EventKind,
        key: &[u8],
        value: &[u8],
        owner: u64,
        fence: u64,
    ) {
        let need = (key.len() + value.len()) as u64;
        debug_assert!(
            need <= self.byte_cap,
            "validated: event_bytes >= max key + max value"
        );
        let mut pos = self.next_pos;
        if need > 0 && pos % self.byte_cap + need > self.byte_cap {
            pos += self.byte_cap - pos % self.byte_cap; // never split data across the end
        }
        while self.len > 0
            && (self.len == self.slot_cap || pos + need - self.oldest_pos() > self.byte_cap)
        {
            self.evict_oldest();
        }
        let phys = (pos % self.byte_cap.max(1)) as usize;
        if need > 0 {
            self.bytes[phys..phys + key.len()].copy_from_slice(key);
            self.bytes[phys + key.len()..phys + need as usize].copy_from_slice(value);
        }
        // The next event's bytes (see `shoal_core::prefetch`: one ring per group).
        let cap = self.byte_cap as usize;
        shoal_core::prefetch::for_write(&self.bytes[..cap], phys + need as usize);
        let tail = (self.head + self.len) % self.slot_cap;
        self.slots[tail] = EventSlot {
            index,
            data_pos: pos,
            owner,
            fence,
            val_len: value.len() as u32,
            key_len: key.len() as u16,
            kind: kind as u8,
        };
        self.len += 1;
        self.next_pos = pos + need;
    }

    fn event(&self, i: usize) -> Event<'_> {
        let slot = &self.slots[(self.head + i) % self.slot_cap];
        let phys = (slot.data_pos % self.byte_cap.max(1)) as usize;
        let key_end = phys + slot.key_len as usize;
        Event {
            index: slot.index,
            kind: EventKind::from_code(slot.kind),
            key: &self.bytes[phys..key_end],
            value: &self.bytes[key_end..key_end + slot.val_len as usize],
            owner: slot.owner,
            fence: slot.fence,
        }
    }

    /// Call `f` for every kept event with index ≥ `from_index` whose key is `filter` or under
    /// it (an empty filter matches everything), oldest first.
    pub(crate) fn since(
        &self,
        from_index: u64,
        filter: &[u8],
        mut f: impl FnMut(&Event<'_>),
    ) -> Result<(), WatchError> {
        if from_index < self.floor {
            return Err(WatchError::Compacted {
                oldest_available: self.floor,
            });
        }
        // Indices never decrease along the ring: binary-search the first event to report.
        let (mut lo, mut hi) = (0usize, self.len);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.slots[(self.head + mid) % self.slot_cap].index < from_index {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for i in lo..self.len {
            let event = self.event(i);
            if in_subtree(event.key, filter) {
                f(&event);
            }
        }
        Ok(())
    }
}
