//! # shoal-kv: DtKV
//!
//! The replicated, tree-structured key-value store that Shoal's Raft log feeds. Keys are paths
//! separated by `.` (`app.db.url`); the root is the empty key. Nodes are values, directories,
//! temporary values and directories (with a TTL and an owner session), and locks (FIFO waiters,
//! leases, fencing tokens). Writes arrive as encoded [`Command`]s through
//! [`StateMachine::apply`](shoal_core::io::StateMachine::apply); reads ([`DtKv::get`],
//! [`DtKv::batch_get`], [`DtKv::list`]) and the watch history ([`DtKv::events_since`]) are plain
//! method calls.
//!
//! This crate owns the store's semantics, its command/response encoding and its snapshot
//! format. It never allocates (every buffer comes from a [`KvMemory`] provider, sized by
//! [`KvLimits`]: borrowed from a board's statics, or owned where the platform has a heap),
//! never reads a clock (time comes inside commands, stamped by the leader) and never panics on
//! input: a command that does not decode still advances the applied index and answers
//! [`KvError::Malformed`]. The subtree `__shoal` is reserved for the cluster's own records
//! ([`system`]): clients read it, only system operations write it. User documentation lives in
//! `docs/DTKV.md`.
#![no_std]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

mod arena;
mod check;
mod command;
mod error;
mod events;
mod expiry;
mod index;
mod key;
mod leases;
mod limits;
mod locks;
mod memory;
mod ops;
mod sessions;
mod snapshot;
mod store;
pub mod system;
mod tree;
mod txn;

pub use check::{check_write, Refusal, TxnPart};
pub use command::{
    Applied, Batch, BatchResults, CodecError, Command, Keys, NodeKind, NodeView, Op, Pairs,
    Response, TxnResults, WriteResult, COMMAND_VERSION,
};
pub use error::{Explained, KvError, WatchError};
pub use events::{Event, EventKind};
pub use key::{in_subtree, name_of, parent_of, validate_key, SEPARATOR};
pub use limits::{KvLimits, LimitsError, MAX_BATCH_ITEMS, MAX_KEY_BYTES_CAP, MAX_TXN_OPS};
pub use memory::{
    Element, EmbeddedKvBuffers, EventSlot, KvBuffers, KvMemory, KvSlices, NodeSlot, SessionSlot,
    WaiterSlot,
};
pub use snapshot::{SNAPSHOT_MAGIC, SNAPSHOT_VERSION};
pub use store::DtKv;
pub use txn::{Cmp, Compare, Txn, TxnEffect, TxnOp};
