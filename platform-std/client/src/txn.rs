//! [`Transaction`]: a DtKV transaction built step by step, and its [`TxnOutcome`].
//!
//! ```no_run
//! # use shoal_client::{BlockingClient, ClientConfig, ClientError, Transaction};
//! # use shoal_client::protocol::{TxnCompare, TxnWrite};
//! # fn main() -> Result<(), ClientError> {
//! # let client = BlockingClient::new(ClientConfig::new(["127.0.0.1:7002"]))?;
//! // Move a job from `queue` to `running` only if nobody took it first.
//! let outcome = client.txn(
//!     Transaction::new()
//!         .when(TxnCompare::value("queue.job7", "pending"))
//!         .then(TxnWrite::remove("queue.job7"))
//!         .then(TxnWrite::put("running.job7", "worker-3"))
//!         .otherwise(TxnWrite::put("log.job7", "lost the race")),
//! )?;
//! println!("took it: {}", outcome.succeeded);
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use shoal_core::LogIndex;
use shoal_kv::{Cmp, TxnEffect};

use crate::protocol::{TxnCompare, TxnWrite, WriteOp};

/// A transaction being built: compares, then the operations to apply when all of them hold
/// (`then`) and those to apply otherwise (`otherwise`). Send it with
/// [`crate::Client::txn`]. A branch is applied whole or not at all, in one log entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transaction {
    /// The conditions.
    pub compares: Vec<TxnCompare>,
    /// Applied when every compare holds.
    pub success: Vec<TxnWrite>,
    /// Applied otherwise.
    pub failure: Vec<TxnWrite>,
}

impl Transaction {
    /// An empty transaction (no compares: the success branch runs).
    pub fn new() -> Transaction {
        Transaction::default()
    }

    /// Add a condition.
    pub fn when(mut self, compare: TxnCompare) -> Transaction {
        self.compares.push(compare);
        self
    }

    /// Add an operation to the success branch.
    pub fn then(mut self, op: TxnWrite) -> Transaction {
        self.success.push(op);
        self
    }

    /// Add an operation to the failure branch.
    pub fn otherwise(mut self, op: TxnWrite) -> Transaction {
        self.failure.push(op);
        self
    }

    pub(crate) fn into_op(self) -> WriteOp {
        WriteOp::Txn {
            compares: self.compares,
            success: self.success,
            failure: self.failure,
        }
    }
}

/// What a transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Raft index of the transaction's log entry.
    pub index: LogIndex,
    /// True: every compare held and the success branch ran; false: the failure branch ran.
    pub succeeded: bool,
    /// What each operation of that branch did, in order.
    pub results: Vec<TxnEffect>,
}

impl TxnCompare {
    /// The key holds a value equal to `value`.
    pub fn value(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> TxnCompare {
        TxnCompare::Value {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
        }
    }
    /// A node has this key.
    pub fn exists(key: impl AsRef<[u8]>) -> TxnCompare {
        TxnCompare::Exists {
            key: key.as_ref().to_vec(),
        }
    }
    /// No node has this key.
    pub fn absent(key: impl AsRef<[u8]>) -> TxnCompare {
        TxnCompare::Absent {
            key: key.as_ref().to_vec(),
        }
    }
    /// The node's update index relates to `index` as `cmp` says (a missing key counts as 0).
    pub fn update_index(key: impl AsRef<[u8]>, cmp: Cmp, index: LogIndex) -> TxnCompare {
        TxnCompare::UpdateIndex {
            key: key.as_ref().to_vec(),
            cmp,
            index,
        }
    }
}

impl TxnWrite {
    /// Create or replace a value.
    pub fn put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> TxnWrite {
        TxnWrite::Put {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
        }
    }
    /// Remove a value, a temporary node or an empty directory.
    pub fn remove(key: impl AsRef<[u8]>) -> TxnWrite {
        TxnWrite::Remove {
            key: key.as_ref().to_vec(),
        }
    }
    /// Create a directory.
    pub fn mkdir(key: impl AsRef<[u8]>) -> TxnWrite {
        TxnWrite::Mkdir {
            key: key.as_ref().to_vec(),
        }
    }
    /// Create or replace a temporary value owned by the client's session (a TTL under 1 ms
    /// counts as 1 ms).
    pub fn put_temp(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>, ttl: Duration) -> TxnWrite {
        TxnWrite::PutTemp {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            ttl_ms: ttl.as_millis().clamp(1, u64::MAX as u128) as u64,
        }
    }
}
