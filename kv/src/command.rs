//! Commands (what a client asks the log to apply) and responses, with their versioned postcard
//! encoding. Decoding borrows keys and values from the input bytes; nothing is copied.
//!
//! ```text
//! command  = version: u8 (= 1) | postcard(Command head) | batch items (batch commands only)
//! response = version: u8 (= 1) | postcard(Response)
//! ```
//! A batch command's head carries only the item count; its items follow the head, each a
//! postcard `(key, value)` pair (batch put) or a postcard key (batch remove). A transaction's
//! head carries three counts; its compares follow, then its success operations, then its
//! failure operations, each a postcard [`crate::Compare`] or [`crate::TxnOp`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::KvError;
use crate::limits::{MAX_BATCH_ITEMS, MAX_TXN_OPS};
use crate::txn::{Txn, TxnEffect};

/// The encoding version of commands and responses written by this build.
pub const COMMAND_VERSION: u8 = 1;

/// Why a command or response could not be encoded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CodecError {
    /// The output buffer is too small.
    BufferTooSmall,
    /// The input is empty, truncated or not a valid encoding.
    Malformed,
    /// The version byte is not one this build reads.
    UnsupportedVersion(u8),
}

/// Write `version`, then `value` in postcard, into `buf`: the framing of every DtKV command,
/// response and member record. Returns the bytes written.
pub(crate) fn encode_versioned<T: Serialize + ?Sized>(
    version: u8,
    value: &T,
    buf: &mut [u8],
) -> Result<usize, CodecError> {
    let (first, rest) = buf.split_first_mut().ok_or(CodecError::BufferTooSmall)?;
    *first = version;
    let n = postcard::to_slice(value, rest)
        .map_err(|_| CodecError::BufferTooSmall)?
        .len();
    Ok(1 + n)
}

/// Bytes a fingerprint reads from each end of a write's operation.
const FINGERPRINT_WINDOW: usize = 64;

/// A fingerprint of the operation of the encoded command `bytes` (what follows its session and
/// clock fields): what tells a retry of a session's last write (the same operation again) from
/// another write that came with the same sequence number (two clients sharing a session id).
/// It reads the length and at most [`FINGERPRINT_WINDOW`] bytes from each end, eight at a
/// time, so its cost does not grow with the value; never 0 (0 stands for "unknown").
pub(crate) fn op_fingerprint(bytes: &[u8], cmd: &Command<'_>) -> u32 {
    // The command is its version byte, then postcard's varints of `client_id`, `seq` and
    // `time_ms` (the leader's clock, which differs between a write and its retry), then the
    // operation.
    let varint = |x: u64| ((64 - x.leading_zeros()).max(1) as usize).div_ceil(7);
    let at = 1 + varint(cmd.client_id) + varint(cmd.seq) + varint(cmd.time_ms);
    let op = bytes.get(at..).unwrap_or(bytes);
    let n = op.len();
    let (head, tail) = match n <= 2 * FINGERPRINT_WINDOW {
        true => (op, &op[..0]),
        false => (&op[..FINGERPRINT_WINDOW], &op[n - FINGERPRINT_WINDOW..]),
    };
    let mut h: u64 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for part in [head, tail] {
        let mut chunks = part.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("eight bytes"));
            h = (h.rotate_left(23) ^ w).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        h = (h.rotate_left(23) ^ u64::from_le_bytes(last)).wrapping_mul(0x94d0_49bb_1331_11eb);
    }
    let h = (h ^ (h >> 29) ^ (h >> 47)) as u32;
    h.max(1)
}

/// Read what [`encode_versioned`] wrote, refusing any other version; returns the value and the
/// bytes after it.
pub(crate) fn take_versioned<'a, T: Deserialize<'a>>(
    version: u8,
    bytes: &'a [u8],
) -> Result<(T, &'a [u8]), CodecError> {
    let (&found, rest) = bytes.split_first().ok_or(CodecError::Malformed)?;
    if found != version {
        return Err(CodecError::UnsupportedVersion(found));
    }
    postcard::take_from_bytes(rest).map_err(|_| CodecError::Malformed)
}

/// [`take_versioned`] for input that must hold the value and nothing after it.
pub(crate) fn decode_versioned<'a, T: Deserialize<'a>>(
    version: u8,
    bytes: &'a [u8],
) -> Result<T, CodecError> {
    let (value, tail) = take_versioned(version, bytes)?;
    if !tail.is_empty() {
        return Err(CodecError::Malformed);
    }
    Ok(value)
}

impl From<CodecError> for KvError {
    fn from(e: CodecError) -> KvError {
        match e {
            CodecError::UnsupportedVersion(_) => KvError::UnsupportedVersion,
            _ => KvError::Malformed,
        }
    }
}

/// The items of a batch command ([`Pairs`] or [`Keys`]), either given by the caller for
/// encoding or borrowed from decoded command bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch<'a, T>(Items<'a, T>);

/// The `(key, value)` pairs of a batch put.
pub type Pairs<'a> = Batch<'a, (&'a [u8], &'a [u8])>;

/// The keys of a batch remove.
pub type Keys<'a> = Batch<'a, &'a [u8]>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Items<'a, T> {
    Slice(&'a [T]),
    Encoded { count: u32, bytes: &'a [u8] },
}

impl<'a, T> Batch<'a, T> {
    /// Items to encode.
    pub const fn new(items: &'a [T]) -> Self {
        Batch(Items::Slice(items))
    }
    /// Number of items.
    pub fn len(&self) -> usize {
        match self.0 {
            Items::Slice(s) => s.len(),
            Items::Encoded { count, .. } => count as usize,
        }
    }
    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a, T: Copy + Deserialize<'a>> Batch<'a, T> {
    /// The items in order.
    pub fn iter(&self) -> impl Iterator<Item = T> + 'a {
        ItemsIter {
            items: self.0,
            pos: 0,
        }
    }
}

struct ItemsIter<'a, T> {
    items: Items<'a, T>,
    pos: usize,
}

impl<'a, T: Copy + Deserialize<'a>> Iterator for ItemsIter<'a, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        match &mut self.items {
            Items::Slice(s) => {
                let item = s.get(self.pos).copied();
                self.pos += 1;
                item
            }
            Items::Encoded { count, bytes } => {
                if *count == 0 {
                    return None;
                }
                // Decoding validated every item, so this only fails on a logic error.
                let (item, rest) = postcard::take_from_bytes::<T>(bytes).ok()?;
                *count -= 1;
                *bytes = rest;
                Some(item)
            }
        }
    }
}

impl<T> Serialize for Batch<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.len() as u32)
    }
}

impl<'de: 'a, 'a, T> Deserialize<'de> for Batch<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let count = u32::deserialize(d)?;
        Ok(Batch(Items::Encoded { count, bytes: &[] }))
    }
}

/// One write operation. Keys are paths such as `app.db.url`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op<'a> {
    /// Set a value; the parent must be a directory; directories and locks cannot be overwritten.
    Put {
        /// The key.
        key: &'a [u8],
        /// The new value.
        value: &'a [u8],
    },
    /// Remove a value, a temporary node, or an empty directory.
    Remove {
        /// The key.
        key: &'a [u8],
    },
    /// Create a directory (succeeds if it already exists as a directory).
    Mkdir {
        /// The key.
        key: &'a [u8],
    },
    /// Several puts in one log entry; one result per item.
    BatchPut(#[serde(borrow)] Pairs<'a>),
    /// Several removes in one log entry; one result per item.
    BatchRemove(#[serde(borrow)] Keys<'a>),
    /// Set `value` if the current value equals `expect`, or if the key is absent when `expect`
    /// is `None`.
    CompareAndSet {
        /// The key.
        key: &'a [u8],
        /// The expected current value, or `None` for "must not exist".
        #[serde(borrow)]
        expect: Option<&'a [u8]>,
        /// The new value.
        value: &'a [u8],
    },
    /// Put a temporary value owned by the calling session, removed `ttl_ms` after this write
    /// unless refreshed.
    PutTemp {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
        /// Time to live in milliseconds.
        ttl_ms: u64,
    },
    /// Create a temporary directory owned by the calling session; on expiry it is removed with
    /// everything under it.
    MakeTempDir {
        /// The key.
        key: &'a [u8],
        /// Time to live in milliseconds.
        ttl_ms: u64,
    },
    /// Give a temporary node a new deadline of now + `ttl_ms` (owner only).
    UpdateTtl {
        /// The key.
        key: &'a [u8],
        /// Time to live in milliseconds.
        ttl_ms: u64,
    },
    /// Acquire a lock for `lease_ms`, or queue for up to `wait_ms` (0 = do not wait).
    TryLock {
        /// The lock's key.
        key: &'a [u8],
        /// Lease length in milliseconds once acquired.
        lease_ms: u64,
        /// How long to wait in the queue (0: fail with `LockHeld` instead of queuing).
        wait_ms: u64,
    },
    /// Release a lock held by the caller (or leave its wait queue).
    Unlock {
        /// The lock's key.
        key: &'a [u8],
    },
    /// Extend the caller's lock lease to now + `lease_ms`.
    UpdateLockLease {
        /// The lock's key.
        key: &'a [u8],
        /// Lease length in milliseconds.
        lease_ms: u64,
    },
    /// Leader housekeeping at the command's `time_ms`: remove expired temporary nodes, expire
    /// lock leases, drop waiters whose wait ran out.
    Expire,
    /// Set a record in the reserved subtree `__shoal` (see [`crate::system`]), creating the
    /// directories above it. Proposed by a server itself, never on a client's behalf.
    SysPut {
        /// The record's key (under `__shoal`).
        key: &'a [u8],
        /// The record.
        value: &'a [u8],
    },
    /// [`Op::SysPut`] only if the key does not exist yet (else `AlreadyExists`): the first of
    /// two racing definitions wins on every replica alike.
    SysCreate {
        /// The record's key (under `__shoal`).
        key: &'a [u8],
        /// The record.
        value: &'a [u8],
    },
    /// Remove a record of the reserved subtree.
    SysRemove {
        /// The record's key (under `__shoal`).
        key: &'a [u8],
    },
    /// A transaction: if every compare holds, apply the success operations, else the failure
    /// operations; all of a branch or nothing of it, in one log entry (see [`Txn`]).
    Txn(#[serde(borrow)] Txn<'a>),
    /// An operator's override of [`Op::Remove`]: a temporary node is removed whichever
    /// session owns it. A platform proposes it only for a client its admin check allows.
    ForceRemove {
        /// The key.
        key: &'a [u8],
    },
    /// An operator's override of [`Op::Unlock`]: the lock is released whoever holds it, and
    /// handed to its next waiter. A platform proposes it only for a client its admin check
    /// allows.
    ForceUnlock {
        /// The lock's key.
        key: &'a [u8],
    },
    /// Grant a lease of `ttl_ms`; its id is the raft index of this write. Answered with
    /// [`WriteResult::Lease`].
    LeaseGrant {
        /// The lease's time to live in milliseconds, renewed whole by each keep-alive.
        ttl_ms: u64,
    },
    /// Renew lease `id`: its deadline becomes now + its TTL. Answered with
    /// [`WriteResult::Lease`].
    LeaseKeepAlive {
        /// The lease.
        id: u64,
    },
    /// End lease `id` now, with every node and lock tied to it (answered like `Expire`).
    LeaseRevoke {
        /// The lease.
        id: u64,
    },
    /// [`Op::PutTemp`] tied to lease `lease` instead of a TTL of its own.
    PutTempLease {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
        /// The lease it lives and dies with.
        lease: u64,
    },
    /// [`Op::MakeTempDir`] tied to lease `lease`.
    MakeTempDirLease {
        /// The key.
        key: &'a [u8],
        /// The lease it lives and dies with.
        lease: u64,
    },
    /// Acquire a lock held as long as lease `lease` lives (no waiting: `LockHeld` if another
    /// holds it; asking again with the same lease keeps it).
    TryLockLease {
        /// The lock's key.
        key: &'a [u8],
        /// The lease it is held under.
        lease: u64,
    },
}

impl<'a> Op<'a> {
    /// The one key a client write names (`None` for batches, `Expire` and system writes).
    pub(crate) fn key(&self) -> Option<&'a [u8]> {
        match *self {
            Op::Put { key, .. }
            | Op::Remove { key }
            | Op::Mkdir { key }
            | Op::CompareAndSet { key, .. }
            | Op::PutTemp { key, .. }
            | Op::MakeTempDir { key, .. }
            | Op::UpdateTtl { key, .. }
            | Op::TryLock { key, .. }
            | Op::Unlock { key }
            | Op::UpdateLockLease { key, .. }
            | Op::ForceRemove { key }
            | Op::ForceUnlock { key }
            | Op::PutTempLease { key, .. }
            | Op::MakeTempDirLease { key, .. }
            | Op::TryLockLease { key, .. } => Some(key),
            Op::LeaseGrant { .. } | Op::LeaseKeepAlive { .. } | Op::LeaseRevoke { .. } => None,
            Op::BatchPut(_)
            | Op::BatchRemove(_)
            | Op::Txn(_)
            | Op::Expire
            | Op::SysPut { .. }
            | Op::SysCreate { .. }
            | Op::SysRemove { .. } => None,
        }
    }

    /// A system write of `key` (`SysPut`, `SysCreate` or `SysRemove`), if this is one.
    pub fn system_key(&self) -> Option<&'a [u8]> {
        match *self {
            Op::SysPut { key, .. } | Op::SysCreate { key, .. } | Op::SysRemove { key } => Some(key),
            _ => None,
        }
    }
}

/// A command as it travels through the log: the session, the leader's clock and the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command<'a> {
    /// The client session (0: no session, no exactly-once guarantee).
    pub client_id: u64,
    /// The session's sequence number for this write; it must grow with every new write.
    pub seq: u64,
    /// The proposing leader's clock in milliseconds, stamped when proposed.
    pub time_ms: u64,
    /// What to do.
    #[serde(borrow)]
    pub op: Op<'a>,
}

impl<'a> Command<'a> {
    /// The leader's expiry command at `time_ms`.
    pub const fn expire(time_ms: u64) -> Command<'static> {
        Command {
            client_id: 0,
            seq: 0,
            time_ms,
            op: Op::Expire,
        }
    }

    /// Encode into `buf`; returns the number of bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, CodecError> {
        let mut used = encode_versioned(COMMAND_VERSION, self, buf)?;
        match self.op {
            Op::BatchPut(pairs) => encode_items(&pairs, buf, &mut used)?,
            Op::BatchRemove(keys) => encode_items(&keys, buf, &mut used)?,
            Op::Txn(txn) => {
                encode_items(&txn.compares, buf, &mut used)?;
                encode_items(&txn.success, buf, &mut used)?;
                encode_items(&txn.failure, buf, &mut used)?;
            }
            _ => {}
        }
        Ok(used)
    }

    /// Decode, borrowing keys and values from `bytes`. Batch items are validated here.
    pub fn decode(bytes: &'a [u8]) -> Result<Command<'a>, CodecError> {
        let (mut cmd, tail) = take_versioned::<Command<'a>>(COMMAND_VERSION, bytes)?;
        let rest = match &mut cmd.op {
            Op::BatchPut(batch) => take_items(batch, tail)?,
            Op::BatchRemove(batch) => take_items(batch, tail)?,
            Op::Txn(txn) => {
                let rest = take_items(&mut txn.compares, tail)?;
                let rest = take_items(&mut txn.success, rest)?;
                take_items(&mut txn.failure, rest)?
            }
            _ => tail,
        };
        if !rest.is_empty() {
            return Err(CodecError::Malformed);
        }
        Ok(cmd)
    }
}

/// Append the items of `batch` to `buf` at `*used`.
fn encode_items<'a, T: Copy + Serialize + Deserialize<'a>>(
    batch: &Batch<'a, T>,
    buf: &mut [u8],
    used: &mut usize,
) -> Result<(), CodecError> {
    for item in batch.iter() {
        *used += postcard::to_slice(&item, &mut buf[*used..])
            .map_err(|_| CodecError::BufferTooSmall)?
            .len();
    }
    Ok(())
}

/// Point the decoded head `batch` at its items, which start `tail`, validating each; returns
/// the bytes after them.
fn take_items<'a, T: Deserialize<'a>>(
    batch: &mut Batch<'a, T>,
    tail: &'a [u8],
) -> Result<&'a [u8], CodecError> {
    let count = match batch.0 {
        Items::Encoded { count, .. } => count,
        Items::Slice(_) => return Err(CodecError::Malformed),
    };
    let mut rest = tail;
    for _ in 0..count {
        let (_, r) = postcard::take_from_bytes::<T>(rest).map_err(|_| CodecError::Malformed)?;
        rest = r;
    }
    let bytes = &tail[..tail.len() - rest.len()];
    batch.0 = Items::Encoded { count, bytes };
    Ok(rest)
}

/// What kind of node a key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum NodeKind {
    /// A plain value.
    Value = 1,
    /// A directory.
    Dir = 2,
    /// A value with a TTL, owned by a client session.
    TempValue = 3,
    /// A directory with a TTL, owned by a client session; removed whole on expiry.
    TempDir = 4,
    /// A lock.
    Lock = 5,
    /// A lease (only at `__shoal.leases.<id>`): what nodes tied to it live by.
    Lease = 6,
}

impl NodeKind {
    /// The kind with code `code`.
    pub const fn from_code(code: u8) -> Option<NodeKind> {
        match code {
            1 => Some(NodeKind::Value),
            2 => Some(NodeKind::Dir),
            3 => Some(NodeKind::TempValue),
            4 => Some(NodeKind::TempDir),
            5 => Some(NodeKind::Lock),
            6 => Some(NodeKind::Lease),
            _ => None,
        }
    }
    /// Whether nodes of this kind hold children.
    pub const fn is_dir(self) -> bool {
        matches!(self, NodeKind::Dir | NodeKind::TempDir)
    }
    /// Whether nodes of this kind have an owner and a deadline.
    pub const fn is_temp(self) -> bool {
        matches!(self, NodeKind::TempValue | NodeKind::TempDir)
    }
}

/// Per-item results of a batch command, in item order.
pub type BatchResults = heapless::Vec<Result<(), KvError>, MAX_BATCH_ITEMS>;

/// What each operation of a transaction's branch did, in order.
pub type TxnResults = heapless::Vec<TxnEffect, MAX_TXN_OPS>;

/// The answer to one write command. The dedup table stores it so a retry gets the same answer.
///
/// `repr(u8)` with `Done` first: the all-zero bit pattern is `Done`, which keeps a zeroed
/// [`crate::SessionSlot`] a valid value (see [`crate::Element`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum WriteResult {
    /// The write was applied.
    Done,
    /// One result per batch item.
    Batch(BatchResults),
    /// The caller holds the lock.
    Locked {
        /// Fencing token: the raft index of the grant, strictly increasing per lock.
        fence: u64,
        /// When the lease ends unless renewed (leader clock, ms).
        lease_deadline_ms: u64,
    },
    /// The caller waits for the lock at this 1-based queue position.
    Queued {
        /// Position in the FIFO queue.
        position: u32,
    },
    /// The lock was released; if a waiter took it over, who and with which token.
    Unlocked {
        /// The new owner's client id, or 0 if the lock is now free.
        next_owner: u64,
        /// The new owner's fencing token, or 0.
        next_fence: u64,
    },
    /// Expiry processing ran.
    Expired {
        /// Nodes removed (temporary nodes, whole temporary directories, freed locks).
        removed: u32,
        /// Locks handed to a waiter.
        granted: u32,
    },
    /// The write was refused; nothing changed.
    Failed(KvError),
    /// A transaction ran one branch whole.
    Txn {
        /// True: every compare held and the success operations ran; false: the failure
        /// operations ran.
        succeeded: bool,
        /// What each operation of that branch did, in order.
        results: TxnResults,
    },
    /// An operation of the branch a transaction chose was refused, so nothing of the
    /// transaction was applied.
    TxnAborted {
        /// Which branch was chosen (as in [`WriteResult::Txn`]).
        succeeded: bool,
        /// The 0-based position of the refused operation in that branch.
        op: u32,
        /// Why it was refused.
        error: KvError,
    },
    /// A lease was granted or renewed.
    Lease {
        /// The lease's id (the raft index of its grant).
        id: u64,
        /// Its time to live.
        ttl_ms: u64,
        /// When it ends unless renewed (leader clock, ms).
        deadline_ms: u64,
    },
}

impl WriteResult {
    /// The error, if the whole write was refused.
    pub fn error(&self) -> Option<KvError> {
        match self {
            WriteResult::Failed(e) => Some(*e),
            _ => None,
        }
    }
}

/// What [`crate::DtKv::apply`](shoal_core::io::StateMachine::apply) returns for each entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The log index applied.
    pub index: u64,
    /// The client session of the command (0 if none or undecodable).
    pub client_id: u64,
    /// The session sequence number.
    pub seq: u64,
    /// The answer for the client.
    pub result: WriteResult,
    /// True if this was a retry answered from the dedup table without re-applying.
    pub deduplicated: bool,
}

/// A node as a read returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView<'a> {
    /// The full key.
    pub key: &'a [u8],
    /// The node's kind.
    pub kind: NodeKind,
    /// The value (empty for directories and locks).
    pub value: &'a [u8],
    /// Raft index of the write that created the node (0 for the root).
    pub create_index: u64,
    /// Raft index of the last write that changed the node.
    pub update_index: u64,
    /// Owner session of a temporary node or holder of a lock (0 otherwise).
    pub owner: u64,
    /// TTL deadline of a temporary node or lease deadline of a lock, leader clock ms (0 otherwise).
    pub deadline_ms: u64,
    /// Fencing token of a lock's current grant; a lease's TTL in ms (0 otherwise).
    pub fence: u64,
    /// Children of a directory, or queued waiters of a lock.
    pub count: u32,
}

/// A client-facing response: a write's answer, a node, or an error for a read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response<'a> {
    /// The answer to a write.
    Write(WriteResult),
    /// A node (get).
    #[serde(borrow)]
    Node(NodeView<'a>),
    /// A read failed.
    Error(KvError),
}

impl<'a> Response<'a> {
    /// Encode into `buf`; returns the number of bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, CodecError> {
        encode_versioned(COMMAND_VERSION, self, buf)
    }

    /// Decode, borrowing keys and values from `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Response<'a>, CodecError> {
        decode_versioned(COMMAND_VERSION, bytes)
    }
}
