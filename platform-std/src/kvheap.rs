//! Heap buffers for one DtKV store, sized from its limits and allocated once. The server and
//! the offline tools both build their stores from it.

use shoal_kv::{
    DtKv, EventSlot, KvLimits, KvMemory, LimitsError, NodeSlot, SessionSlot, WaiterSlot,
};

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
            nodes: vec![NodeSlot::EMPTY; limits.nodes_len()],
            node_index: vec![0; limits.node_index_len()],
            expiry_heap: vec![0; limits.expiry_heap_len()],
            arena: vec![0; limits.arena_bytes],
            sessions: vec![SessionSlot::EMPTY; limits.sessions_len()],
            session_index: vec![0; limits.session_index_len()],
            waiters: vec![WaiterSlot::EMPTY; limits.max_waiters],
            events: vec![EventSlot::EMPTY; limits.event_slots],
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
