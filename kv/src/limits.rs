//! Every capacity of a DtKV store, with its name, unit and default per platform profile.
//!
//! A store never grows: [`KvLimits`] says how much it may hold and sizes every buffer the store
//! takes from its [`crate::KvMemory`] provider at start-up. Reaching a limit while
//! applying a command yields a specific [`crate::KvError`], never a panic or a silent truncation.

use core::mem::size_of;

use crate::memory::{EventSlot, NodeSlot, SessionSlot, WaiterSlot};

/// Most items one `batch_put` / `batch_remove` command may carry, at compile time (it sizes the
/// per-item result list stored in the dedup table). [`KvLimits::max_batch_items`] may be lower.
pub const MAX_BATCH_ITEMS: usize = 64;

/// Most compares, and most operations in each branch, one transaction may carry, at compile
/// time (it sizes the per-operation result list stored in the dedup table).
/// [`KvLimits::max_txn_ops`] may be lower.
pub const MAX_TXN_OPS: usize = 64;

/// Largest key any profile may allow (keys are stored with a 16-bit length).
pub const MAX_KEY_BYTES_CAP: usize = u16::MAX as usize;

/// Run-time capacities of one DtKV store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KvLimits {
    /// Longest key in bytes, separators included.
    pub max_key_bytes: usize,
    /// Largest value in bytes.
    pub max_value_bytes: usize,
    /// Most segments in a key (`a.b.c` has depth 3).
    pub max_depth: usize,
    /// Most nodes (values, directories, temporary nodes, locks), the root included.
    pub max_nodes: usize,
    /// Bytes of key and value storage (each stored key and non-empty value costs its length
    /// plus 8 bytes of bookkeeping).
    pub arena_bytes: usize,
    /// Most client sessions remembered for exactly-once writes; beyond it the session whose
    /// last write is oldest is forgotten.
    pub max_sessions: usize,
    /// Most clients queued behind one lock.
    pub max_waiters_per_lock: usize,
    /// Most queued lock waiters across all locks.
    pub max_waiters: usize,
    /// Most watch events kept in the in-memory history.
    pub event_slots: usize,
    /// Bytes of key and value copies kept by the watch history (at least
    /// `max_key_bytes + max_value_bytes`).
    pub event_bytes: usize,
    /// Most items in one batch command (at most [`MAX_BATCH_ITEMS`]).
    pub max_batch_items: usize,
    /// Longest TTL, lock lease or lock wait in milliseconds.
    pub max_ttl_ms: u64,
    /// Most compares in one transaction, and most operations in each of its two branches
    /// (at most [`MAX_TXN_OPS`]).
    pub max_txn_ops: usize,
    /// Most live leases. Each is also a node under `__shoal.leases` (it counts towards
    /// `max_nodes`).
    pub max_leases: usize,
}

/// Why a set of limits or the memory handed in cannot build a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LimitsError {
    /// `max_key_bytes` is 0 or above [`MAX_KEY_BYTES_CAP`].
    MaxKeyBytes,
    /// `max_value_bytes` does not fit the arena or exceeds 2^31.
    MaxValueBytes,
    /// `max_depth` is 0.
    MaxDepth,
    /// `max_nodes` is below 2 (the root plus one node) or above 2^31.
    MaxNodes,
    /// `arena_bytes` is above 2^31.
    ArenaBytes,
    /// `max_sessions` is 0 or above 2^31.
    MaxSessions,
    /// `max_waiters_per_lock` exceeds `max_waiters`.
    MaxWaiters,
    /// `event_slots` is 0 or `event_bytes` is below `max_key_bytes + max_value_bytes`.
    EventHistory,
    /// `max_batch_items` is 0 or above [`MAX_BATCH_ITEMS`].
    MaxBatchItems,
    /// `max_ttl_ms` is 0.
    MaxTtl,
    /// `max_txn_ops` is 0 or above [`MAX_TXN_OPS`].
    MaxTxnOps,
    /// The [`crate::KvMemory`] provider could not supply a buffer at the length the limits
    /// need; the field names which.
    Buffer(&'static str),
}

impl core::fmt::Display for LimitsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LimitsError::Buffer(name) => {
                write!(
                    f,
                    "the memory handed in has no room for buffer `{}` at these limits \
                     (see the KvLimits::*_len methods)",
                    name
                )
            }
            other => write!(f, "invalid DtKV limit: {:?}", other),
        }
    }
}

const MAX_U31: usize = 1 << 31;

impl KvLimits {
    /// Defaults for `shoald`: about a million nodes and 256 MiB of keys and values.
    pub const fn server() -> Self {
        KvLimits {
            max_key_bytes: 1024,
            max_value_bytes: 64 * 1024,
            max_depth: 32,
            max_nodes: 1 << 20,
            arena_bytes: 256 << 20,
            max_sessions: 1 << 16,
            max_waiters_per_lock: 1024,
            max_waiters: 1 << 16,
            event_slots: 1 << 16,
            event_bytes: 16 << 20,
            max_batch_items: MAX_BATCH_ITEMS,
            max_ttl_ms: 30 * 24 * 3_600_000,
            max_txn_ops: MAX_TXN_OPS,
            max_leases: 1 << 16,
        }
    }

    /// Defaults for a microcontroller: 64 nodes in about 16 KiB of RAM in total
    /// (see [`KvLimits::memory_bytes`]).
    pub const fn embedded() -> Self {
        KvLimits {
            max_key_bytes: 64,
            max_value_bytes: 256,
            max_depth: 8,
            max_nodes: 64,
            arena_bytes: 4096,
            max_sessions: 16,
            max_waiters_per_lock: 4,
            max_waiters: 16,
            event_slots: 32,
            event_bytes: 1024,
            max_batch_items: 8,
            max_ttl_ms: 24 * 3_600_000,
            max_txn_ops: 8,
            max_leases: 4,
        }
    }

    /// Check every value against its bounds and against the others.
    pub const fn validate(&self) -> Result<(), LimitsError> {
        if self.max_key_bytes == 0 || self.max_key_bytes > MAX_KEY_BYTES_CAP {
            return Err(LimitsError::MaxKeyBytes);
        }
        if self.max_value_bytes >= MAX_U31 {
            return Err(LimitsError::MaxValueBytes);
        }
        if self.max_depth == 0 {
            return Err(LimitsError::MaxDepth);
        }
        if self.max_nodes < 2 || self.max_nodes >= MAX_U31 {
            return Err(LimitsError::MaxNodes);
        }
        if self.arena_bytes >= MAX_U31 {
            return Err(LimitsError::ArenaBytes);
        }
        if self.max_sessions == 0 || self.max_sessions >= MAX_U31 {
            return Err(LimitsError::MaxSessions);
        }
        if self.max_waiters_per_lock > self.max_waiters || self.max_waiters >= MAX_U31 {
            return Err(LimitsError::MaxWaiters);
        }
        if self.event_slots == 0 || self.event_bytes < self.max_key_bytes + self.max_value_bytes {
            return Err(LimitsError::EventHistory);
        }
        if self.max_batch_items == 0 || self.max_batch_items > MAX_BATCH_ITEMS {
            return Err(LimitsError::MaxBatchItems);
        }
        if self.max_ttl_ms == 0 {
            return Err(LimitsError::MaxTtl);
        }
        if self.max_txn_ops == 0 || self.max_txn_ops > MAX_TXN_OPS {
            return Err(LimitsError::MaxTxnOps);
        }
        Ok(())
    }

    /// Node slots: one per node, the root included.
    pub const fn nodes_len(&self) -> usize {
        self.max_nodes
    }
    /// Buckets of the node hash index: a power of two at least twice `max_nodes`.
    pub const fn node_index_len(&self) -> usize {
        (2 * self.max_nodes).next_power_of_two()
    }
    /// Entries of the expiry heap (temporary nodes and locks).
    pub const fn expiry_heap_len(&self) -> usize {
        self.max_nodes
    }
    /// Session slots of the dedup table.
    pub const fn sessions_len(&self) -> usize {
        self.max_sessions
    }
    /// Buckets of the session hash index: a power of two at least twice `max_sessions`.
    pub const fn session_index_len(&self) -> usize {
        (2 * self.max_sessions).next_power_of_two()
    }
    /// Lock waiter slots.
    pub const fn waiters_len(&self) -> usize {
        self.max_waiters
    }
    /// Event slots of the watch history.
    pub const fn events_len(&self) -> usize {
        self.event_slots
    }
    /// `u32` words in all: the node index, the expiry heap and the session index.
    pub const fn words_len(&self) -> usize {
        self.node_index_len() + self.expiry_heap_len() + self.session_index_len()
    }
    /// Bytes in all: the arena and the watch history's key and value copies.
    pub const fn bytes_len(&self) -> usize {
        self.arena_bytes + self.event_bytes
    }

    /// Total bytes of memory a store with these limits takes from its provider.
    pub const fn memory_bytes(&self) -> usize {
        self.nodes_len() * size_of::<NodeSlot>()
            + self.words_len() * size_of::<u32>()
            + self.bytes_len()
            + self.sessions_len() * size_of::<SessionSlot>()
            + self.waiters_len() * size_of::<WaiterSlot>()
            + self.events_len() * size_of::<EventSlot>()
    }
}

// Both profiles are valid, checked when the crate compiles.
const _: () = assert!(KvLimits::server().validate().is_ok());
const _: () = assert!(KvLimits::embedded().validate().is_ok());
