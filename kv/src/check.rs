//! The checks of a write that need no state: key syntax, the reserved subtree, value size,
//! TTL range, a session where one is needed, batch and transaction sizes. [`check_write`] is
//! the first thing applying a write does, so a platform that calls it before proposing learns
//! exactly the refusal applying would give, without spending a log entry on it.

use crate::command::Op;
use crate::error::KvError;
use crate::key::validate_key;
use crate::limits::KvLimits;
use crate::system::client_key;
use crate::txn::{Txn, TxnOp};

/// Which list of a transaction an item is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TxnPart {
    /// The compares.
    Compare,
    /// The operations applied when every compare holds.
    Success,
    /// The operations applied otherwise.
    Failure,
}

impl TxnPart {
    /// The list's name in words (`compare`, `success operation`, `failure operation`).
    pub const fn name(self) -> &'static str {
        match self {
            TxnPart::Compare => "compare",
            TxnPart::Success => "success operation",
            TxnPart::Failure => "failure operation",
        }
    }
}

/// Why [`check_write`] refused a write, and which item of a transaction (0-based) it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Refusal {
    /// What was wrong.
    pub error: KvError,
    /// The transaction item that was wrong, if the write is a transaction.
    pub item: Option<(TxnPart, u32)>,
}

impl From<KvError> for Refusal {
    fn from(error: KvError) -> Refusal {
        Refusal { error, item: None }
    }
}

/// Check `op`, written by session `client` (0: none), against everything that does not depend
/// on the store's contents. A write this refuses is refused by every replica with the same
/// error, whatever the state; one it passes may still be refused by the state.
pub fn check_write(op: &Op<'_>, client: u64, limits: &KvLimits) -> Result<(), Refusal> {
    if let Some(key) = op.key() {
        client_key(key)?;
    }
    match *op {
        Op::Put { key, value } | Op::CompareAndSet { key, value, .. } => {
            validate_key(key, limits, false)?;
            check_value(value, limits)?;
        }
        Op::Remove { key } | Op::Mkdir { key } | Op::ForceRemove { key } => {
            validate_key(key, limits, false)?
        }
        Op::PutTemp { key, value, ttl_ms } => {
            check_session_key(client, key, limits)?;
            check_value(value, limits)?;
            check_ttl(ttl_ms, limits)?;
        }
        Op::MakeTempDir { key, ttl_ms }
        | Op::UpdateTtl { key, ttl_ms }
        | Op::UpdateLockLease {
            key,
            lease_ms: ttl_ms,
        } => {
            check_session_key(client, key, limits)?;
            check_ttl(ttl_ms, limits)?;
        }
        Op::TryLock {
            key,
            lease_ms,
            wait_ms,
        } => {
            check_session_key(client, key, limits)?;
            check_ttl(lease_ms, limits)?;
            if wait_ms > limits.max_ttl_ms {
                return Err(KvError::InvalidTtl.into());
            }
        }
        Op::Unlock { key }
        | Op::ForceUnlock { key }
        | Op::MakeTempDirLease { key, .. }
        | Op::TryLockLease { key, .. } => check_session_key(client, key, limits)?,
        Op::PutTempLease { key, value, .. } => {
            check_session_key(client, key, limits)?;
            check_value(value, limits)?;
        }
        Op::LeaseGrant { ttl_ms } => check_ttl(ttl_ms, limits)?,
        Op::BatchPut(ref items) if items.len() > limits.max_batch_items => {
            return Err(KvError::BatchTooLarge.into())
        }
        Op::BatchRemove(ref items) if items.len() > limits.max_batch_items => {
            return Err(KvError::BatchTooLarge.into())
        }
        Op::Txn(ref txn) => check_txn(txn, client, limits)?,
        Op::BatchPut(_)
        | Op::BatchRemove(_)
        | Op::Expire
        | Op::LeaseKeepAlive { .. }
        | Op::LeaseRevoke { .. }
        | Op::SysPut { .. }
        | Op::SysCreate { .. }
        | Op::SysRemove { .. } => {}
    }
    Ok(())
}

fn check_txn(txn: &Txn<'_>, client: u64, limits: &KvLimits) -> Result<(), Refusal> {
    let max = limits.max_txn_ops;
    if txn.compares.len() > max || txn.success.len() > max || txn.failure.len() > max {
        return Err(KvError::TxnTooLarge.into());
    }
    let at = |part, i: usize| {
        move |error| Refusal {
            error,
            item: Some((part, i as u32)),
        }
    };
    for (i, c) in txn.compares.iter().enumerate() {
        // A compare only reads, so it may name the root and the reserved subtree.
        validate_key(c.key(), limits, true).map_err(at(TxnPart::Compare, i))?;
    }
    for (part, ops) in [
        (TxnPart::Success, &txn.success),
        (TxnPart::Failure, &txn.failure),
    ] {
        for (i, op) in ops.iter().enumerate() {
            check_txn_op(&op, client, limits).map_err(at(part, i))?;
        }
    }
    Ok(())
}

fn check_txn_op(op: &TxnOp<'_>, client: u64, limits: &KvLimits) -> Result<(), KvError> {
    client_key(op.key())?;
    match *op {
        TxnOp::Put { key, value } => {
            validate_key(key, limits, false)?;
            check_value(value, limits)
        }
        TxnOp::Remove { key } | TxnOp::Mkdir { key } => validate_key(key, limits, false),
        TxnOp::PutTemp { key, value, ttl_ms } => {
            check_session_key(client, key, limits)?;
            check_value(value, limits)?;
            check_ttl(ttl_ms, limits)
        }
    }
}

/// A value no longer than `max_value_bytes`.
pub(crate) fn check_value(value: &[u8], limits: &KvLimits) -> Result<(), KvError> {
    if value.len() > limits.max_value_bytes {
        Err(KvError::ValueTooLarge)
    } else {
        Ok(())
    }
}

/// A TTL, lease or wait of 1 ms to `max_ttl_ms`.
pub(crate) fn check_ttl(ttl_ms: u64, limits: &KvLimits) -> Result<(), KvError> {
    if ttl_ms == 0 || ttl_ms > limits.max_ttl_ms {
        Err(KvError::InvalidTtl)
    } else {
        Ok(())
    }
}

/// The checks of a write that needs a session (temporary nodes, locks), in the order every
/// replica applies them: the session, then the key.
pub(crate) fn check_session_key(client: u64, key: &[u8], limits: &KvLimits) -> Result<(), KvError> {
    if client == 0 {
        return Err(KvError::SessionRequired);
    }
    validate_key(key, limits, false)
}
