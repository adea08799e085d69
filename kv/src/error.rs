//! The errors a DtKV command or query can answer with. Each has a stable numeric code (its
//! wire form) and a message that says what to do.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::KvLimits;

macro_rules! kv_errors {
    ($( $(#[$doc:meta])* $name:ident = $code:literal => $msg:literal, )*) => {
        /// Why a DtKV operation was refused. The state is unchanged when an operation fails.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[repr(u8)]
        pub enum KvError {
            $( $(#[$doc])* $name = $code, )*
        }

        impl KvError {
            /// The stable numeric code of this error (what travels on the wire).
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// The error with numeric `code`, if there is one.
            pub const fn from_code(code: u8) -> Option<KvError> {
                match code {
                    $( $code => Some(KvError::$name), )*
                    _ => None,
                }
            }

            /// A sentence for users.
            pub const fn message(self) -> &'static str {
                match self {
                    $( KvError::$name => $msg, )*
                }
            }
        }
    };
}

kv_errors! {
    /// A write named the root (the empty key), which cannot be changed.
    EmptyKey = 1 => "the empty key is the root directory and cannot be written; name a key like `app.name`",
    /// The key has an empty segment (`a..b`).
    EmptySegment = 2 => "the key has an empty segment (two dots in a row)",
    /// The key starts with a dot.
    LeadingDot = 3 => "the key starts with a dot; keys look like `app.db.url`",
    /// The key ends with a dot.
    TrailingDot = 4 => "the key ends with a dot; keys look like `app.db.url`",
    /// The key is longer than `max_key_bytes`.
    KeyTooLong = 5 => "the key is longer than the store's max_key_bytes",
    /// The key has more segments than `max_depth`.
    TooDeep = 6 => "the key has more segments than the store's max_depth",
    /// The value is larger than `max_value_bytes`.
    ValueTooLarge = 7 => "the value is larger than the store's max_value_bytes",
    /// No node has this key.
    NotFound = 8 => "no node has this key",
    /// The parent directory of the key does not exist.
    ParentNotFound = 9 => "the parent directory does not exist; create it with mkdir first",
    /// The parent of the key is not a directory.
    ParentNotDir = 10 => "the parent of the key is a value or lock, not a directory",
    /// The key is a directory, so it cannot hold a value.
    IsDirectory = 11 => "the key is a directory; values cannot overwrite directories",
    /// The key is not a directory.
    NotDirectory = 12 => "the key is not a directory",
    /// The directory still has children.
    DirNotEmpty = 13 => "the directory is not empty; remove its children first",
    /// The key already exists with another kind.
    AlreadyExists = 14 => "the key already exists",
    /// Compare-and-set found a different value (or found a value where absence was expected).
    CasMismatch = 15 => "the current value differs from the expected one",
    /// The temporary node or lock belongs to another client session.
    NotOwner = 16 => "the temporary node belongs to another client session",
    /// The key exists but is not a temporary node.
    NotTemp = 17 => "the key is not a temporary node",
    /// The key is a lock; use unlock instead.
    IsLock = 18 => "the key is a lock; use the lock operations",
    /// The key is not a lock.
    NotALock = 19 => "the key exists and is not a lock",
    /// The lock is held by another client and the request did not ask to wait.
    LockHeld = 20 => "the lock is held by another client; retry or ask to wait",
    /// The caller neither holds nor waits for the lock.
    NotLockOwner = 21 => "this client does not hold the lock",
    /// The lock already has `max_waiters_per_lock` waiters.
    TooManyWaiters = 22 => "too many clients wait for this lock (max_waiters_per_lock)",
    /// All `max_waiters` waiter slots are in use.
    WaiterPoolFull = 23 => "the store's lock waiter pool is full (max_waiters)",
    /// The TTL, lease or wait is 0 or above `max_ttl_ms`.
    InvalidTtl = 24 => "the TTL or lease must be between 1 ms and the store's max_ttl_ms",
    /// The operation needs a client session (client id not 0).
    SessionRequired = 25 => "this operation needs a client session (a non-zero client id)",
    /// The sequence number is older than the last one this session wrote.
    StaleSequence = 26 => "the sequence number is older than this session's last write",
    /// All `max_nodes` node slots are in use.
    TooManyNodes = 27 => "the store holds max_nodes nodes; remove some or raise the limit",
    /// The key and value storage (`arena_bytes`) is full.
    ArenaFull = 28 => "the store's key/value storage (arena_bytes) is full",
    /// The batch has more items than `max_batch_items`.
    BatchTooLarge = 29 => "the batch has more items than the store's max_batch_items",
    /// The command bytes could not be decoded.
    Malformed = 30 => "the command could not be decoded",
    /// The command was encoded with an unknown format version.
    UnsupportedVersion = 31 => "the command's format version is not supported by this build",
    /// The key lies in the reserved subtree `__shoal`, which holds the cluster's own records.
    Reserved = 32 => "keys under `__shoal` are the cluster's own records: they can be read and watched, not written",
    /// A system write named a key outside the reserved subtree.
    NotSystemKey = 33 => "a system write must name a key under `__shoal`",
    /// The transaction has more compares, or a branch more operations, than `max_txn_ops`.
    TxnTooLarge = 34 => "the transaction has more compares or operations in a branch than the store's max_txn_ops",
    /// No live lease has this id: it was never granted, expired or was revoked.
    LeaseNotFound = 35 => "no live lease has this id (it expired, was revoked, or was never granted)",
    /// `max_leases` leases are live.
    TooManyLeases = 36 => "the store holds max_leases leases; revoke some or raise the limit",
    /// The session's last sequence number came again with another write: two clients share
    /// one session id (the write is not applied; a retry of the same write is answered as
    /// before).
    SessionReused = 37 => "another write came with this session's last sequence number: two clients share a session id",
}

impl KvError {
    /// The store limit this error is about, as `(name, value, unit)`, when it is one of the
    /// errors that reaching a limit causes (so that a platform can say which bound applies).
    pub const fn limit(self, limits: &KvLimits) -> Option<(&'static str, u64, &'static str)> {
        Some(match self {
            KvError::KeyTooLong => ("max_key_bytes", limits.max_key_bytes as u64, "bytes"),
            KvError::TooDeep => ("max_depth", limits.max_depth as u64, "segments"),
            KvError::ValueTooLarge => ("max_value_bytes", limits.max_value_bytes as u64, "bytes"),
            KvError::InvalidTtl => ("max_ttl_ms", limits.max_ttl_ms, "ms"),
            KvError::BatchTooLarge => ("max_batch_items", limits.max_batch_items as u64, "items"),
            KvError::TxnTooLarge => ("max_txn_ops", limits.max_txn_ops as u64, "items"),
            KvError::TooManyLeases => ("max_leases", limits.max_leases as u64, "leases"),
            _ => return None,
        })
    }

    /// The message with the limit it is about, when there is one: "the value is larger than
    /// the store's max_value_bytes (max_value_bytes is 65536 bytes)".
    pub const fn explain(self, limits: &KvLimits) -> Explained {
        Explained {
            error: self,
            limit: self.limit(limits),
        }
    }
}

/// A [`KvError`]'s message with the value of the limit it is about ([`KvError::explain`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Explained {
    error: KvError,
    limit: Option<(&'static str, u64, &'static str)>,
}

impl core::fmt::Display for Explained {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.error.message())?;
        match self.limit {
            Some((name, value, unit)) => write!(f, " ({name} is {value} {unit})"),
            None => Ok(()),
        }
    }
}

impl core::fmt::Display for KvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())
    }
}

impl Serialize for KvError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for KvError {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = u8::deserialize(d)?;
        KvError::from_code(code).ok_or_else(|| serde::de::Error::custom("unknown DtKV error code"))
    }
}

/// Why a watch could not be served from the event history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WatchError {
    /// Events before `oldest_available` are no longer kept; re-read the keys and watch from
    /// the current applied index.
    #[error(
        "watch history starts at index {oldest_available}; re-read the keys and watch from there"
    )]
    Compacted {
        /// The smallest index from which the history is complete.
        oldest_available: u64,
    },
}
