//! The state machine one group runs in `shoald`: DtKV owning its heap memory, plus the replicated address-book entries that tell every member where a node added
//! by a membership change listens.
//!
//! A log entry whose first byte is [`ADDR_ENTRY_TAG`] is an address-book entry (DtKV commands
//! start with their version byte, 1); it is handed to the platform and skipped by DtKV, so the
//! DtKV applied index stays exact.

use serde::{Deserialize, Serialize};
use shoal_core::io::{SnapshotError, SnapshotReader, SnapshotWriter, StateMachine};
use shoal_core::{LogIndex, NodeId, Term};

use crate::kvheap::{HeapKv, KvHeap};
use shoal_kv::{Applied, KvLimits, LimitsError};

/// First byte of an address-book log entry.
pub const ADDR_ENTRY_TAG: u8 = 0xA5;

/// A member's addresses as the address book stores them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAddr {
    /// The node.
    pub id: NodeId,
    /// Its raft (peer) address.
    pub raft_addr: String,
    /// Its client address.
    pub client_addr: String,
}

/// Encode an address-book log entry.
pub fn encode_addr_entry(addr: &MemberAddr) -> Vec<u8> {
    let mut out = vec![ADDR_ENTRY_TAG];
    out.extend_from_slice(&postcard::to_allocvec(addr).expect("an address entry always encodes"));
    out
}

/// What applying one entry produced.
#[derive(Clone, Debug)]
pub enum GroupOutput {
    /// A DtKV command's result.
    Kv(Applied),
    /// An address-book entry (or `None` if it did not decode).
    Addr(Option<MemberAddr>),
}

/// DtKV owning its buffers, with the address book's entries passed through.
pub struct KvSm {
    kv: HeapKv,
}

impl KvSm {
    /// A store with `limits`, its buffers allocated on the heap.
    pub fn new(limits: KvLimits) -> Result<KvSm, LimitsError> {
        Ok(KvSm {
            kv: KvHeap::store(limits)?,
        })
    }

    /// The store, for reads.
    pub fn store(&self) -> &HeapKv {
        &self.kv
    }
}

impl StateMachine for KvSm {
    type Output = GroupOutput;
    fn apply(&mut self, index: LogIndex, term: Term, command: &[u8]) -> GroupOutput {
        if command.first() == Some(&ADDR_ENTRY_TAG) {
            self.kv.skip(index);
            return GroupOutput::Addr(postcard::from_bytes(&command[1..]).ok());
        }
        GroupOutput::Kv(self.kv.apply(index, term, command))
    }
    fn skip(&mut self, index: LogIndex) {
        self.kv.skip(index)
    }
    fn applied_index(&self) -> LogIndex {
        self.kv.applied_index()
    }
    fn snapshot(&self, out: &mut dyn SnapshotWriter) -> Result<(), SnapshotError> {
        self.kv.snapshot(out)
    }
    fn restore(
        &mut self,
        index: LogIndex,
        src: &mut dyn SnapshotReader,
    ) -> Result<(), SnapshotError> {
        self.kv.restore(index, src)
    }
}
