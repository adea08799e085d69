//! The memory a store lives in, and who owns it. The store never allocates: [`crate::DtKv::new`]
//! takes every buffer it needs, at the lengths [`KvLimits`] give, from a [`KvMemory`] provider,
//! and keeps them in the provider's container type. A board lends its statics
//! ([`KvSlices`], [`KvBuffers`]): the store borrows them and holds `&mut [T]`. A platform with a
//! heap implements the provider with owned containers (`Box<[T]>`, `Vec<T>`): the store owns
//! its memory, is `Send` like any owner, and frees it when dropped. Either way the code inside
//! indexes plain slices, so where the memory comes from costs nothing at run time.
//!
//! The store touches its memory only as far as its contents need: node, session and waiter
//! slots are taken lowest-first (freed ones are reused before a never-used one), empty hash
//! buckets are only read when the store is emptied, and the arena compacts long before its end
//! while most of it is garbage. Its contents at hand-over do not matter: the store writes a
//! slot before it reads it, and empties the hash buckets it finds non-empty. A platform that
//! hands in zeroed pages it got untouched from the OS (`calloc`, `alloc_zeroed`) therefore
//! pays in resident memory for the data, not the limits: all-zero bytes are a valid value of
//! every [`Element`].

use core::ops::DerefMut;

use crate::command::WriteResult;
use crate::limits::KvLimits;

/// A buffer the store keeps `T`s in: any container of a provider (see [`KvMemory::Buf`]).
pub(crate) trait Buffer<T>: DerefMut<Target = [T]> {}

impl<T, B: DerefMut<Target = [T]>> Buffer<T> for B {}

/// "No slot" in every link field.
pub(crate) const NIL: u32 = u32::MAX;

/// Hands out slot numbers lowest-first: the last one freed, else the lowest never used since
/// the last reset, so memory handed in untouched stays untouched until the store grows into
/// it. Freed slots are chained through a link field of the slot itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FreeList {
    head: u32,
    fresh: u32,
}

impl FreeList {
    /// Every slot from `first` on is free and was never used.
    pub(crate) const fn starting_at(first: u32) -> Self {
        FreeList {
            head: NIL,
            fresh: first,
        }
    }

    /// A free slot; `link_of(s)` reads the link a freed slot `s` holds. The caller has
    /// checked that a slot is free.
    pub(crate) fn take(&mut self, link_of: impl FnOnce(u32) -> u32) -> u32 {
        let s = self.head;
        if s != NIL {
            self.head = link_of(s);
            return s;
        }
        self.fresh += 1;
        self.fresh - 1
    }

    /// Free slot `s`; returns the link `s` must now hold.
    pub(crate) fn free(&mut self, s: u32) -> u32 {
        core::mem::replace(&mut self.head, s)
    }

    /// Slots from here on were never used.
    pub(crate) fn fresh(&self) -> u32 {
        self.fresh
    }
}

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
    /// The lease node this node is tied to (0: none; slot 0 is the root, never tied).
    pub(crate) lease: u32,
    /// A tied node's predecessor in its lease's list (the lease node or another tied node).
    pub(crate) lease_prev: u32,
    /// The next node tied to the same lease (0: none); in a lease node, the first one.
    pub(crate) lease_next: u32,
    pub(crate) create_index: u64,
    pub(crate) update_index: u64,
    pub(crate) owner: u64,
    pub(crate) deadline_ms: u64,
    pub(crate) due_ms: u64,
    pub(crate) fence: u64,
}

impl NodeSlot {
    /// A node just created: linked to nothing, in no heap, with no waiters.
    pub(crate) const FRESH: NodeSlot = NodeSlot {
        parent: NIL,
        first_child: NIL,
        last_child: NIL,
        prev: NIL,
        next: NIL,
        heap_pos: NIL,
        wait_head: NIL,
        wait_tail: NIL,
        ..<NodeSlot as Element>::EMPTY
    };
}

/// One client session of the dedup table (opaque storage).
#[derive(Clone, Debug)]
pub struct SessionSlot {
    pub(crate) client: u64,
    pub(crate) last_seq: u64,
    pub(crate) last_index: u64,
    pub(crate) prev: u32,
    pub(crate) next: u32,
    /// [`crate::command::op_fingerprint`] of the last write (0: unknown, as after a restore).
    pub(crate) last_op: u32,
    pub(crate) result: WriteResult,
}

/// One queued lock waiter (opaque storage).
#[derive(Clone, Copy, Debug)]
pub struct WaiterSlot {
    pub(crate) client: u64,
    pub(crate) lease_ms: u64,
    pub(crate) wait_deadline_ms: u64,
    pub(crate) next: u32,
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

/// The element types of a store's buffers: [`NodeSlot`], [`SessionSlot`], [`WaiterSlot`],
/// [`EventSlot`], `u32` (hash buckets and the expiry heap) and `u8` (the arena and the watch
/// history's bytes). Sealed: no other type is one.
///
/// All-zero bytes are a valid value of every `Element` (its fields are integers and the
/// `repr(u8)` [`WriteResult`] whose variant 0, `Done`, has no fields), and `shoal-kv` keeps
/// it so: a platform may hand in memory it got zeroed from the OS without writing it.
pub trait Element: Clone + Send + Sync + 'static + sealed::Pooled {
    /// The all-zero value: what a never-used element holds. A `static` filled with it lands
    /// in zero-initialised RAM and adds nothing to a board's flash image.
    const EMPTY: Self;
}

/// Where a store's memory comes from, and the container the store keeps each buffer in.
///
/// [`crate::DtKv::new`] asks for each buffer once, in a fixed order (see [`KvSlices`]), with
/// the length [`KvLimits`] gives it. Borrowed memory ([`KvSlices`]) holds `&'a mut [T]`;
/// owned memory holds `Box<[T]>` or `Vec<T>` (shoald's `KvHeap`), so a store that owns its
/// memory is one value, movable and `Send`, and its owner needs no `unsafe` to hold it.
pub trait KvMemory {
    /// The container of one buffer of `T`s.
    type Buf<T: Element>: DerefMut<Target = [T]>;

    /// A buffer of exactly `len` elements, or `None` if this provider cannot supply it (the
    /// store then refuses to build with [`crate::LimitsError::Buffer`]).
    fn take<T: Element>(&mut self, len: usize) -> Option<Self::Buf<T>>;

    /// The store will not read `buf[from..]` again before writing it: a provider may give
    /// that memory back to the system (what it reads as afterwards does not matter). By
    /// default nothing happens.
    fn release<T: Element>(_buf: &mut Self::Buf<T>, _from: usize) {}
}

/// Borrowed memory: one pool per element type, from which the store carves its buffers, in
/// this order: `nodes` ([`KvLimits::nodes_len`]); from `words`, the node hash index
/// ([`KvLimits::node_index_len`]), the expiry heap ([`KvLimits::expiry_heap_len`]) and the
/// session hash index ([`KvLimits::session_index_len`]); from `bytes`, the arena
/// (`arena_bytes`) and then the watch history's bytes (`event_bytes`); `sessions`,
/// `waiters` and `events`. Each pool must hold at least the `KvLimits::*_len` its name says;
/// what is left over is not used.
pub struct KvSlices<'a> {
    /// [`KvLimits::nodes_len`] node slots.
    pub nodes: &'a mut [NodeSlot],
    /// [`KvLimits::words_len`] words.
    pub words: &'a mut [u32],
    /// [`KvLimits::bytes_len`] bytes.
    pub bytes: &'a mut [u8],
    /// [`KvLimits::sessions_len`] session slots.
    pub sessions: &'a mut [SessionSlot],
    /// [`KvLimits::waiters_len`] waiter slots.
    pub waiters: &'a mut [WaiterSlot],
    /// [`KvLimits::events_len`] event slots.
    pub events: &'a mut [EventSlot],
}

impl<'a> KvMemory for KvSlices<'a> {
    type Buf<T: Element> = &'a mut [T];

    fn take<T: Element>(&mut self, len: usize) -> Option<&'a mut [T]> {
        let pool = T::pool(self);
        if pool.len() < len {
            return None;
        }
        let (buf, rest) = core::mem::take(pool).split_at_mut(len);
        *pool = rest;
        Some(buf)
    }
}

/// Statically sized memory for a store, for platforms without a heap: one array per element
/// type, all zero (a `static` of it costs no flash). The const parameters are the pool lengths
/// of [`KvSlices`]; [`kv_buffers!`](crate::kv_buffers) derives them from a `const`
/// [`KvLimits`]. Put it in a `static` cell or a `Box`, then build the store on
/// [`KvBuffers::slices`].
pub struct KvBuffers<
    const NODES: usize,
    const WORDS: usize,
    const BYTES: usize,
    const SESSIONS: usize,
    const WAITERS: usize,
    const EVENTS: usize,
> {
    nodes: [NodeSlot; NODES],
    words: [u32; WORDS],
    bytes: [u8; BYTES],
    sessions: [SessionSlot; SESSIONS],
    waiters: [WaiterSlot; WAITERS],
    events: [EventSlot; EVENTS],
}

/// The [`KvBuffers`] type sized exactly for a `const` [`KvLimits`] expression, e.g.
/// `kv_buffers!(KvLimits::embedded())` (which is [`EmbeddedKvBuffers`]).
#[macro_export]
macro_rules! kv_buffers {
    ($limits:expr) => {
        $crate::KvBuffers<
            { $limits.nodes_len() },
            { $limits.words_len() },
            { $limits.bytes_len() },
            { $limits.sessions_len() },
            { $limits.waiters_len() },
            { $limits.events_len() },
        >
    };
}

/// [`KvBuffers`] sized exactly for [`KvLimits::embedded`].
pub type EmbeddedKvBuffers = kv_buffers!(KvLimits::embedded());

impl<
        const NODES: usize,
        const WORDS: usize,
        const BYTES: usize,
        const SESSIONS: usize,
        const WAITERS: usize,
        const EVENTS: usize,
    > KvBuffers<NODES, WORDS, BYTES, SESSIONS, WAITERS, EVENTS>
{
    /// All-zero buffers (usable in a `static`).
    pub const fn new() -> Self {
        KvBuffers {
            nodes: [<NodeSlot as Element>::EMPTY; NODES],
            words: [0; WORDS],
            bytes: [0; BYTES],
            sessions: [<SessionSlot as Element>::EMPTY; SESSIONS],
            waiters: [<WaiterSlot as Element>::EMPTY; WAITERS],
            events: [<EventSlot as Element>::EMPTY; EVENTS],
        }
    }

    /// Lend the buffers to a store.
    pub fn slices(&mut self) -> KvSlices<'_> {
        KvSlices {
            nodes: &mut self.nodes,
            words: &mut self.words,
            bytes: &mut self.bytes,
            sessions: &mut self.sessions,
            waiters: &mut self.waiters,
            events: &mut self.events,
        }
    }
}

impl<
        const NODES: usize,
        const WORDS: usize,
        const BYTES: usize,
        const SESSIONS: usize,
        const WAITERS: usize,
        const EVENTS: usize,
    > Default for KvBuffers<NODES, WORDS, BYTES, SESSIONS, WAITERS, EVENTS>
{
    fn default() -> Self {
        Self::new()
    }
}

mod sealed {
    use super::KvSlices;

    /// Which pool of [`KvSlices`] holds an element type.
    pub trait Pooled: Sized {
        fn pool<'p, 'a>(slices: &'p mut KvSlices<'a>) -> &'p mut &'a mut [Self];
    }
}

/// Make `$t` an [`Element`] kept in pool `$pool` of [`KvSlices`], with `$empty` all zero.
macro_rules! element {
    ($t:ty, $pool:ident, $empty:expr) => {
        impl Element for $t {
            const EMPTY: Self = $empty;
        }
        impl sealed::Pooled for $t {
            fn pool<'p, 'a>(slices: &'p mut KvSlices<'a>) -> &'p mut &'a mut [Self] {
                &mut slices.$pool
            }
        }
    };
}

element!(u32, words, 0);
element!(u8, bytes, 0);
element!(
    NodeSlot,
    nodes,
    NodeSlot {
        kind: 0,
        key_len: 0,
        hash: 0,
        key_off: 0,
        val_off: 0,
        val_len: 0,
        parent: 0,
        first_child: 0,
        last_child: 0,
        prev: 0,
        next: 0,
        children: 0,
        heap_pos: 0,
        wait_head: 0,
        wait_tail: 0,
        wait_count: 0,
        lease: 0,
        lease_prev: 0,
        lease_next: 0,
        create_index: 0,
        update_index: 0,
        owner: 0,
        deadline_ms: 0,
        due_ms: 0,
        fence: 0,
    }
);
element!(
    SessionSlot,
    sessions,
    SessionSlot {
        client: 0,
        last_seq: 0,
        last_index: 0,
        prev: 0,
        next: 0,
        last_op: 0,
        result: WriteResult::Done,
    }
);
element!(
    WaiterSlot,
    waiters,
    WaiterSlot {
        client: 0,
        lease_ms: 0,
        wait_deadline_ms: 0,
        next: 0,
    }
);
element!(
    EventSlot,
    events,
    EventSlot {
        index: 0,
        data_pos: 0,
        owner: 0,
        fence: 0,
        val_len: 0,
        key_len: 0,
        kind: 0,
    }
);
