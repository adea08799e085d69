//! Heap buffers for one DtKV store, sized from its limits and allocated once. The server and
//! the offline tools both build their stores from it.
//!
//! Every buffer comes from `alloc_zeroed` (via `vec![0; n]` for bytes and integers), which for
//! large sizes the allocator serves with fresh pages from the OS that stay untouched — not
//! resident — until written. DtKV writes its slots, buckets and arena only as far as its
//! contents need (see `shoal_kv::KvMemory`), so a node's resident memory follows its data, and
//! the limits (`--kv-max-nodes`, `--kv-arena-mb`, ...) cost address space only.

use std::alloc::{alloc_zeroed, handle_alloc_error, Layout};

use shoal_kv::{
    DtKv, EventSlot, KvLimits, KvMemory, LimitsError, NodeSlot, SessionSlot, WaiterSlot,
};

/// A DtKV slot type whose all-zero bit pattern is a valid value.
///
/// # Safety
/// Implement only for types documented by `shoal_kv` to be valid as all-zero bytes (its
/// `memory` module: integer fields, `bool`, and the `repr(u8)` `WriteResult` whose variant 0
/// has no fields).
unsafe trait ZeroValid: Sized {}
// SAFETY: shoal_kv documents all-zero bytes as a valid value of each of these slot types.
unsafe impl ZeroValid for NodeSlot {}
// SAFETY: as above.
unsafe impl ZeroValid for SessionSlot {}
// SAFETY: as above.
unsafe impl ZeroValid for WaiterSlot {}
// SAFETY: as above.
unsafe impl ZeroValid for EventSlot {}

/// `len` all-zero slots, allocated with `alloc_zeroed` so untouched pages stay non-resident
/// (`vec![T::EMPTY; len]` would write every element).
fn zeroed_slots<T: ZeroValid>(len: usize) -> Vec<T> {
    let layout = Layout::array::<T>(len).expect("slot array size overflows");
    if layout.size() == 0 {
        return Vec::new();
    }
    // SAFETY: `layout` has a non-zero size.
    let ptr = unsafe { alloc_zeroed(layout) } as *mut T;
    if ptr.is_null() {
        handle_alloc_error(layout);
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of `[T; len]`
    // (so capacity `len` and `T`'s alignment match), and all `len` elements are initialised:
    // all-zero bytes are a valid `T` (`ZeroValid`).
    unsafe { Vec::from_raw_parts(ptr, len, len) }
}

/// Owned buffers for a store with the given limits.
pub struct KvHeap {
    limits: KvLimits,
    nodes: Vec<NodeSlot>,
    node_index: Vec<u32>,
    expiry_heap: Vec<u32>,
    arena: Vec<u8>,
    sessions: Vec<SessionSlot>,
    session_index: Vec<u32>,
    waiters: Vec<WaiterSlot>,
    events: Vec<EventSlot>,
    event_bytes: Vec<u8>,
}

impl KvHeap {
    /// Allocate buffers for `limits` (zeroed pages stay untouched until the store uses them).
    pub fn new(limits: KvLimits) -> KvHeap {
        KvHeap {
            limits,
            nodes: zeroed_slots(limits.nodes_len()),
            node_index: vec![0; limits.node_index_len()],
            expiry_heap: vec![0; limits.expiry_heap_len()],
            arena: vec![0; limits.arena_bytes],
            sessions: zeroed_slots(limits.sessions_len()),
            session_index: vec![0; limits.session_index_len()],
            waiters: zeroed_slots(limits.max_waiters),
            events: zeroed_slots(limits.event_slots),
            event_bytes: vec![0; limits.event_bytes],
        }
    }

    /// The limits the buffers were sized for.
    pub fn limits(&self) -> KvLimits {
        self.limits
    }

    /// Borrow the buffers as the memory a [`DtKv`] is built on.
    pub fn memory(&mut self) -> KvMemory<'_> {
        KvMemory {
            nodes: &mut self.nodes,
            node_index: &mut self.node_index,
            expiry_heap: &mut self.expiry_heap,
            arena: &mut self.arena,
            sessions: &mut self.sessions,
            session_index: &mut self.session_index,
            waiters: &mut self.waiters,
            events: &mut self.events,
            event_bytes: &mut self.event_bytes,
        }
    }

    /// An empty store in these buffers.
    pub fn store(&mut self) -> Result<DtKv<'_>, LimitsError> {
        let limits = self.limits;
        DtKv::new(self.memory(), limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_slots_are_plain_empty_values() {
        let sessions = zeroed_slots::<SessionSlot>(3);
        assert_eq!(sessions.len(), 3);
        let s = format!("{:?}", sessions[2]);
        assert!(
            s.contains("used: false") && s.contains("result: Done"),
            "{s}"
        );
        let nodes = zeroed_slots::<NodeSlot>(2);
        assert!(format!("{:?}", nodes[1]).contains("parent: 0"));
        assert!(zeroed_slots::<EventSlot>(0).is_empty());
    }

    #[test]
    fn a_store_on_zeroed_buffers_works_and_keeps_its_limits() {
        let mut limits = KvLimits::embedded();
        limits.max_nodes = 3;
        let mut heap = KvHeap::new(limits);
        let mut kv = heap.store().expect("valid");
        let mut buf = [0u8; 256];
        for (i, key) in [&b"a"[..], b"b", b"c"].iter().enumerate() {
            let n = shoal_kv::Command {
                client_id: 9,
                seq: i as u64 + 1,
                time_ms: 1,
                op: shoal_kv::Op::Put { key, value: b"v" },
            }
            .encode(&mut buf)
            .expect("fits");
            let out = shoal_core::io::StateMachine::apply(&mut kv, i as u64 + 1, 1, &buf[..n]);
            let expect = if i < 2 {
                None
            } else {
                Some(shoal_kv::KvError::TooManyNodes)
            };
            assert_eq!(out.result.error(), expect);
        }
        assert_eq!(kv.get(b"b").expect("stored").value, b"v");
    }
}
