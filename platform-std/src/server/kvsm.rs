//! The state machine one group runs in `shoald`: DtKV owning its heap memory, plus the address
//! entries of logs written before the cluster's member records existed.
//!
//! A log entry whose first byte is [`ADDR_ENTRY_TAG`] is such an address entry (DtKV commands
//! start with their version byte, 1); it is handed to the platform, which learns the address,
//! and skipped by DtKV, so the DtKV applied index stays exact. Shoal writes addresses as member
//! records now (`shoal_kv::system`, in DtKV like any key), and no longer writes these entries.

use shoal_core::io::StateMachine;
use shoal_core::{LogIndex, Term};

use crate::kvheap::{HeapKv, KvHeap};
use shoal_kv::{Applied, KvLimits, LimitsError};

pub use crate::storage::addrbook::{MemberAddr, ADDR_ENTRY_TAG};

/// What applying one entry produced.
#[derive(Clone, Debug)]
pub enum GroupOutput {
    /// A DtKV command's result.
    Kv(Applied),
    /// An address entry of an older log (or `None` if it did not decode).
    Addr(Option<MemberAddr>),
}

/// DtKV owning its buffers, with older logs' address entries passed through.
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

    /// The store, for what is local to this replica (the watch history's caps).
    pub fn store_mut(&mut self) -> &mut HeapKv {
        &mut self.kv
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
    shoal_core::forward_state_machine!(kv: skip, applied_index, snapshot, restore);
}
