//! DtKV writes as a client sends them ([`WriteOp`]), and the conditions and operations of a
//! transaction ([`TxnCompare`], [`TxnWrite`]): owned forms of DtKV's borrowed commands.

use serde::{Deserialize, Serialize};
use shoal_core::LogIndex;

use super::Cmp;

/// A DtKV write, owned (the server turns it into a [`shoal_kv::Command`] and stamps the time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// Set a value.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove a value, temporary node, or empty directory.
    Remove {
        /// Key.
        key: Vec<u8>,
    },
    /// Create a directory.
    Mkdir {
        /// Key.
        key: Vec<u8>,
    },
    /// Several puts in one log entry.
    BatchPut {
        /// Key/value pairs.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Several removes in one log entry.
    BatchRemove {
        /// Keys.
        keys: Vec<Vec<u8>>,
    },
    /// Compare-and-set (`expect: None` means "must not exist").
    CompareAndSet {
        /// Key.
        key: Vec<u8>,
        /// Expected current value.
        expect: Option<Vec<u8>>,
        /// New value.
        value: Vec<u8>,
    },
    /// A temporary value owned by the session.
    PutTemp {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Time to live.
        ttl_ms: u64,
    },
    /// A temporary directory owned by the session.
    MakeTempDir {
        /// Key.
        key: Vec<u8>,
        /// Time to live.
        ttl_ms: u64,
    },
    /// A new TTL for a temporary node (owner only).
    UpdateTtl {
        /// Key.
        key: Vec<u8>,
        /// Time to live.
        ttl_ms: u64,
    },
    /// Acquire a lock (optionally waiting in its queue).
    TryLock {
        /// Lock key.
        key: Vec<u8>,
        /// Lease once acquired.
        lease_ms: u64,
        /// How long to wait in the queue (0: fail at once if held).
        wait_ms: u64,
    },
    /// Release a lock (or leave its queue).
    Unlock {
        /// Lock key.
        key: Vec<u8>,
    },
    /// Extend a held lock's lease.
    UpdateLockLease {
        /// Lock key.
        key: Vec<u8>,
        /// New lease from now.
        lease_ms: u64,
    },
    /// A transaction: if every compare holds, apply `success`, else `failure`; a branch is
    /// applied whole or not at all, in one log entry. Answered with
    /// [`WriteResult::Txn`](super::WriteResult::Txn) or [`WriteResult::TxnAborted`](super::WriteResult::TxnAborted).
    Txn {
        /// The conditions, read before anything changes.
        compares: Vec<TxnCompare>,
        /// Applied when every compare holds.
        success: Vec<TxnWrite>,
        /// Applied otherwise.
        failure: Vec<TxnWrite>,
    },
    /// An operator's override: remove a value, a temporary node of any session or an empty
    /// directory. The server allows it only to a connection its admin check lets through (see
    /// the server's `admin_allowed`) and logs who asked.
    ForceRemove {
        /// Key.
        key: Vec<u8>,
    },
    /// An operator's override: release a lock whoever holds it (the next waiter gets it). The
    /// server allows it only to a connection its admin check lets through and logs who asked.
    ForceUnlock {
        /// Lock key.
        key: Vec<u8>,
    },
    /// Grant a lease; answered with [`WriteResult::Lease`](super::WriteResult::Lease), whose id is the grant's raft index.
    LeaseGrant {
        /// Time to live, renewed whole by each keep-alive.
        ttl_ms: u64,
    },
    /// Renew a lease for its TTL from now ([`WriteResult::Lease`](super::WriteResult::Lease)).
    LeaseKeepAlive {
        /// The lease.
        id: u64,
    },
    /// End a lease now, with every node and lock tied to it ([`WriteResult::Expired`](super::WriteResult::Expired)).
    LeaseRevoke {
        /// The lease.
        id: u64,
    },
    /// A temporary value that lives as long as a lease (any session naming the lease may
    /// change it).
    PutTempLease {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// The lease.
        lease: u64,
    },
    /// A temporary directory that lives as long as a lease.
    MakeTempDirLease {
        /// Key.
        key: Vec<u8>,
        /// The lease.
        lease: u64,
    },
    /// A lock held as long as a lease lives; `LockHeld` at once if another holds it.
    TryLockLease {
        /// Lock key.
        key: Vec<u8>,
        /// The lease.
        lease: u64,
    },
}

/// One condition of a transaction ([`shoal_kv::Compare`], owned).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnCompare {
    /// The key holds a value (plain or temporary) equal to `value`.
    Value {
        /// Key.
        key: Vec<u8>,
        /// Expected value.
        value: Vec<u8>,
    },
    /// A node of any kind has this key.
    Exists {
        /// Key.
        key: Vec<u8>,
    },
    /// No node has this key.
    Absent {
        /// Key.
        key: Vec<u8>,
    },
    /// The node's update index relates to `index` as `cmp` says (a missing key counts as 0).
    UpdateIndex {
        /// Key.
        key: Vec<u8>,
        /// How to compare.
        cmp: Cmp,
        /// The index to compare with.
        index: LogIndex,
    },
}

impl TxnCompare {
    /// The key it compares.
    pub fn key(&self) -> &[u8] {
        self.as_kv().key()
    }

    /// The compare as DtKV takes it, borrowing this one's bytes.
    pub fn as_kv(&self) -> shoal_kv::Compare<'_> {
        match self {
            TxnCompare::Value { key, value } => shoal_kv::Compare::Value { key, value },
            TxnCompare::Exists { key } => shoal_kv::Compare::Exists { key },
            TxnCompare::Absent { key } => shoal_kv::Compare::Absent { key },
            TxnCompare::UpdateIndex { key, cmp, index } => shoal_kv::Compare::UpdateIndex {
                key,
                cmp: *cmp,
                index: *index,
            },
        }
    }
}

/// One operation of a transaction's branch ([`shoal_kv::TxnOp`], owned).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnWrite {
    /// Create or replace a value.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove a value, a temporary node or an empty directory.
    Remove {
        /// Key.
        key: Vec<u8>,
    },
    /// Create a directory (unchanged if it already is one).
    Mkdir {
        /// Key.
        key: Vec<u8>,
    },
    /// Create or replace a temporary value owned by the session.
    PutTemp {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Time to live.
        ttl_ms: u64,
    },
}

impl TxnWrite {
    /// The key it writes.
    pub fn key(&self) -> &[u8] {
        self.as_kv().key()
    }

    /// The operation as DtKV takes it, borrowing this one's bytes.
    pub fn as_kv(&self) -> shoal_kv::TxnOp<'_> {
        match self {
            TxnWrite::Put { key, value } => shoal_kv::TxnOp::Put { key, value },
            TxnWrite::Remove { key } => shoal_kv::TxnOp::Remove { key },
            TxnWrite::Mkdir { key } => shoal_kv::TxnOp::Mkdir { key },
            TxnWrite::PutTemp { key, value, ttl_ms } => shoal_kv::TxnOp::PutTemp {
                key,
                value,
                ttl_ms: *ttl_ms,
            },
        }
    }

    /// Bytes of keys and values it carries.
    pub fn payload_len(&self) -> usize {
        match self {
            TxnWrite::Put { key, value } | TxnWrite::PutTemp { key, value, .. } => {
                key.len() + value.len()
            }
            TxnWrite::Remove { key } | TxnWrite::Mkdir { key } => key.len(),
        }
    }
}
