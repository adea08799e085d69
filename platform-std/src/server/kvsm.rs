//! The state machine one group runs in `shoald`: DtKV in heap buffers owned for the group's
//! lifetime, plus the replicated address-book entries that tell every member where a node added
//! by a membership change listens.
//!
//! A log entry whose first byte is [`ADDR_ENTRY_TAG`] is an address-book entry (DtKV commands
//! start with their version byte, 1); it is handed to the platform and skipped by DtKV, so the
//! DtKV applied index stays exact.

use std::mem::ManuallyDrop;

use shoal_core::io::{SnapshotError, SnapshotReader, SnapshotWriter, StateMachine};
use shoal_core::{LogIndex, Term};

use crate::kvheap::KvHeap;
use shoal_kv::{Applied, DtKv, KvLimits, LimitsError};

pub use crate::storage::addrbook::{encode_addr_entry, MemberAddr, ADDR_ENTRY_TAG};

/// What applying one entry produced.
#[derive(Clone, Debug)]
pub enum GroupOutput {
    /// A DtKV command's result.
    Kv(Applied),
    /// An address-book entry (or `None` if it did not decode).
    Addr(Option<MemberAddr>),
}

/// DtKV owning its buffers.
pub struct KvSm {
    // Declared before `mem`: the store borrows the buffers and is dropped first (see Drop).
    kv: ManuallyDrop<DtKv<'static>>,
    mem: *mut KvHeap,
}

// SAFETY: `KvSm` owns both the store and the buffers it borrows; nothing else aliases them, so
// moving the pair to another thread is as safe as moving a `Box`.
unsafe impl Send for KvSm {}

impl KvSm {
    /// A store with `limits`, its buffers allocated on the heap.
    pub fn new(limits: KvLimits) -> Result<KvSm, LimitsError> {
        limits.validate()?;
        let mem = Box::into_raw(Box::new(KvHeap::new(limits)));
        // SAFETY: `mem` comes from `Box::into_raw`, is never moved or aliased, and lives until
        // `drop`, which drops the store (its only borrower) first. The `'static` lifetime never
        // escapes: `store()` hands out borrows tied to `&self`.
        let memory = unsafe { &mut *mem }.memory();
        match DtKv::new(memory, limits) {
            Ok(kv) => Ok(KvSm {
                kv: ManuallyDrop::new(kv),
                mem,
            }),
            Err(e) => {
                // SAFETY: nothing borrows the buffers any more.
                drop(unsafe { Box::from_raw(mem) });
                Err(e)
            }
        }
    }

    /// The store, for reads.
    pub fn store(&self) -> &DtKv<'_> {
        &self.kv
    }
}

impl Drop for KvSm {
    fn drop(&mut self) {
        // SAFETY: the store is the only borrower of the buffers; drop it, then free them.
        unsafe {
            ManuallyDrop::drop(&mut self.kv);
            drop(Box::from_raw(self.mem));
        }
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
