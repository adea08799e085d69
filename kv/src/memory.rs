//! The memory a store lives in. The platform hands it in once, sized from [`KvLimits`]; the
//! store never allocates. Slots are opaque: create them with their `EMPTY` constants, or as
//! all-zero bytes, which is a valid value of every slot type here ([`NodeSlot`],
//! [`SessionSlot`], [`WaiterSlot`], [`EventSlot`]: integers, a `bool` and a `repr(u8)` enum whose
//! first variant has no fields). Their contents at hand-over do not matter: the store reads a slot
//! only after writing it.
//!
//! The store touches its memory only as far as its contents need: node, session and waiter
//! slots are taken lowest-first (freed ones are reused before a never-used one), empty hash
//! buckets are only read when the store is emptied, and the arena compacts long before its end
//! while most of it is garbage. A platform that hands in zeroed pages it got untouched from the
//! OS (`calloc`, `alloc_zeroed`) therefore pays in resident memory for the data, not the limits.

use crate::command::WriteResult;
use crate::limits::KvLimits;

/// "No slot" in every link field.
pub(crate) const NIL: u32 = u32::MAX;

/// One node of the tree (opaque storage).
#[derive(Clone, Copy, Debug)]
pub struct NodeSlot {
    pub(crate) kind: u8,
    pub(crate) key_len: u16,
    pub(crate) hash: u32,
    pub(crate) key_off: u32,
    pub(crate) val_off: u32,
    pub(crate) val_len: u32,
    pub(crate) parent: u32,
    pub(crate) first_child: u32,
    pub(crate) last_child: u32,
    pub(crate) prev: u32,
    pub(crate) next: u32,
    pub(crate) children: u32,
    pub(crate) heap_pos: u32,
    pub(crate) wait_head: u32,
    pub(crate) wait_tail: u32,
    pub(crate) wait_count: u32,
    pub(crate) create_index: u64,
    pub(crate) update_index: u64,
    pub(crate) owner: u64,
    pub(crate) deadline_ms: u64,
    pub(crate) due_ms: u64,
    pub(crate) fence: u64,
}

impl NodeSlot {
    /// An unused slot.
    pub const EMPTY: NodeSlot = NodeSlot {
        kind: 0,
        key_len: 0,
        hash: 0,
        key_off: 0,
        val_off: 0,
        val_len: 0,
        parent: NIL,
        first_child: NIL,
        last_child: NIL,
        prev: NIL,
        next: NIL,
        children: 0,
        heap_pos: NIL,
        wait_head: NIL,
        wait_tail: NIL,
        wait_count: 0,
        create_index: 0,
        update_index: 0,
        owner: 0,
        deadline_ms: 0,
        due_ms: 0,
        fence: 0,
    };
}

/// One client session of the dedup table (opaque storage).
#[derive(Clone, Debug)]
pub struct SessionSlot {
    pub(crate) used: bool,
    pub(crate) client: u64,
    pub(crate) last_seq: u64,
    pub(crate) last_index: u64,
    pub(crate) prev: u32,
    pub(crate) next: u32,
    pub(crate) result: WriteResult,
}

impl SessionSlot {
    /// An unused slot.
    pub const EMPTY: SessionSlot = SessionSlot {
        used: false,
        client: 0,
        last_seq: 0,
        last_index: 0,
        prev: NIL,
        next: NIL,
        result: WriteResult::Done,
    };
}

/// One queued lock waiter (opaque storage).
#[derive(Clone, Copy, Debug)]
pub struct WaiterSlot {
    pub(crate) client: u64,
    pub(crate) lease_ms: u64,
    pub(crate) wait_deadline_ms: u64,
    pub(crate) next: u32,
}

impl WaiterSlot {
    /// An unused slot.
    pub const EMPTY: WaiterSlot = WaiterSlot {
        client: 0,
        lease_ms: 0,
        wait_deadline_ms: 0,
        next: NIL,
    };
}

/// One watch event of the history ring (opaque storage).
#[derive(Clone, Copy, Debug)]
pub struct EventSlot {
    pub(crate) index: u64,
    pub(crate) data_pos: u64,
    pub(crate) owner: u64,
    pub(crate) fence: u64,
    pub(crate) val_len: u32,
    pub(crate) key_len: u16,
    pub(crate) kind: u8,
}

impl EventSlot {
    /// An unused slot.
    pub const EMPTY: EventSlot = EventSlot {
        index: 0,
        data_pos: 0,
        owner: 0,
        fence: 0,
        val_len: 0,
        key_len: 0,
        kind: 0,
    };
}

/// Every buffer a store needs. Lengths come from [`KvLimits`]' `*_len` methods; longer buffers
/// are fine (the limits still apply), shorter ones are refused by [`crate::DtKv::new`].
pub struct KvMemory<'a> {
    /// `limits.nodes_len()` node slots.
    pub nodes: &'a mut [NodeSlot],
    /// `limits.node_index_len()` hash buckets (a power of two).
    pub node_index: &'a mut [u32],
    /// `limits.expiry_heap_len()` heap entries.
    pub expiry_heap: &'a mut [u32],
    /// `limits.arena_bytes` bytes of key and value storage.
    pub arena: &'a mut [u8],
    /// `limits.sessions_len()` session slots.
    pub sessions: &'a mut [SessionSlot],
    /// `limits.session_index_len()` hash buckets (a power of two).
    pub session_index: &'a mut [u32],
    /// `limits.max_waiters` waiter slots.
    pub waiters: &'a mut [WaiterSlot],
    /// `limits.event_slots` event slots.
    pub events: &'a mut [EventSlot],
    /// `limits.event_bytes` bytes of event key and value copies.
    pub event_bytes: &'a mut [u8],
}

/// Statically sized memory for a store, for platforms without a heap. The const parameters are
/// the buffer lengths: nodes `N`, node index `NI` (power of two, ≥ 2·N), arena bytes `A`,
/// sessions `S`, session index `SI` (power of two, ≥ 2·S), waiters `W`, events `E`, event
/// bytes `EB`. Put it in a `static` cell or on the stack of `main`, then call
/// [`KvBuffers::memory`].
pub struct KvBuffers<
    const N: usize,
    const NI: usize,
    const A: usize,
    const S: usize,
    const SI: usize,
    const W: usize,
    const E: usize,
    const EB: usize,
> {
    nodes: [NodeSlot; N],
    node_index: [u32; NI],
    expiry_heap: [u32; N],
    arena: [u8; A],
    sessions: [SessionSlot; S],
    session_index: [u32; SI],
    waiters: [WaiterSlot; W],
    events: [EventSlot; E],
    event_bytes: [u8; EB],
}

/// [`KvBuffers`] sized exactly for [`KvLimits::embedded`].
pub type EmbeddedKvBuffers = KvBuffers<64, 128, 4096, 16, 32, 16, 32, 1024>;

impl<
        const N: usize,
        const NI: usize,
        const A: usize,
        const S: usize,
        const SI: usize,
        const W: usize,
        const E: usize,
        const EB: usize,
    > KvBuffers<N, NI, A, S, SI, W, E, EB>
{
    /// Zeroed buffers (usable in a `static`).
    pub const fn new() -> Self {
        KvBuffers {
            nodes: [NodeSlot::EMPTY; N],
            node_index: [0; NI],
            expiry_heap: [0; N],
            arena: [0; A],
            sessions: [SessionSlot::EMPTY; S],
            session_index: [0; SI],
            waiters: [WaiterSlot::EMPTY; W],
            events: [EventSlot::EMPTY; E],
            event_bytes: [0; EB],
        }
    }

    /// Limits that use exactly these buffers, starting from `base` for the limits that size no
    /// buffer (key, value, depth, batch, TTL, per-lock waiters).
    pub const fn limits(base: KvLimits) -> KvLimits {
        KvLimits {
            max_nodes: N,
            arena_bytes: A,
            max_sessions: S,
            max_waiters: W,
            event_slots: E,
            event_bytes: EB,
            ..base
        }
    }

    /// Borrow the buffers as [`KvMemory`].
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
}

impl<
        const N: usize,
        const NI: usize,
        const A: usize,
        const S: usize,
        const SI: usize,
        const W: usize,
        const E: usize,
        const EB: usize,
    > Default for KvBuffers<N, NI, A, S, SI, W, E, EB>
{
    fn default() -> Self {
        Self::new()
    }
}
