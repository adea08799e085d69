//! Transactions: compares on several keys, then one of two lists of operations, applied whole
//! or not at all in one log entry.
//!
//! Every compare reads the state before the transaction. If all hold, the success list runs,
//! else the failure list. Before the chosen list changes anything it is planned: each
//! operation is checked against the state the operations before it would leave (their keys,
//! the directories they create or empty, the node and arena budget), exactly as applying them
//! one by one would check it. If one would be refused, nothing is applied and the answer names
//! it; otherwise every operation is applied and cannot fail. The plan keeps no copy of the
//! state: it walks the list again for each operation (a list holds at most
//! [`crate::MAX_TXN_OPS`] operations) and keeps two bytes-and-words arrays on the stack.

use serde::{Deserialize, Serialize};

use crate::arena::cost;
use crate::command::{Batch, NodeKind, Op, TxnResults, WriteResult};
use crate::error::KvError;
use crate::key::parent_of;
use crate::leases::Lifetime;
use crate::limits::MAX_TXN_OPS;
use crate::memory::KvMemory;
use crate::store::DtKv;

/// How a compare relates a node's update index to a given index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Cmp {
    /// The update index equals the given one.
    Equal,
    /// The update index differs from the given one.
    NotEqual,
    /// The update index is below the given one.
    Less,
    /// The update index is above the given one.
    Greater,
}

impl Cmp {
    /// Whether `left` relates to `right` as this comparison says.
    pub const fn holds(self, left: u64, right: u64) -> bool {
        match self {
            Cmp::Equal => left == right,
            Cmp::NotEqual => left != right,
            Cmp::Less => left < right,
            Cmp::Greater => left > right,
        }
    }
}

/// One condition of a transaction, read from the state before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compare<'a> {
    /// The key holds a value (plain or temporary) equal to `value`.
    Value {
        /// The key.
        key: &'a [u8],
        /// The expected value.
        value: &'a [u8],
    },
    /// A node of any kind has this key.
    Exists {
        /// The key.
        key: &'a [u8],
    },
    /// No node has this key.
    Absent {
        /// The key.
        key: &'a [u8],
    },
    /// The raft index of the last write that changed the node relates to `index` as `cmp`
    /// says; a key without a node has update index 0.
    UpdateIndex {
        /// The key.
        key: &'a [u8],
        /// How to compare.
        cmp: Cmp,
        /// The index to compare with.
        index: u64,
    },
}

impl<'a> Compare<'a> {
    /// The key the compare reads.
    pub fn key(&self) -> &'a [u8] {
        match *self {
            Compare::Value { key, .. }
            | Compare::Exists { key }
            | Compare::Absent { key }
            | Compare::UpdateIndex { key, .. } => key,
        }
    }
}

/// One operation of a transaction's branch; each does what the write of the same name does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp<'a> {
    /// Create or replace a value.
    Put {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// Remove a value, a temporary node or an empty directory.
    Remove {
        /// The key.
        key: &'a [u8],
    },
    /// Create a directory (unchanged if it already is one).
    Mkdir {
        /// The key.
        key: &'a [u8],
    },
    /// Create or replace a temporary value owned by the calling session.
    PutTemp {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
        /// Time to live in milliseconds.
        ttl_ms: u64,
    },
}

impl<'a> TxnOp<'a> {
    /// The single-key write that does the same, as a command of its own would.
    pub fn as_op(&self) -> Op<'a> {
        match *self {
            TxnOp::Put { key, value } => Op::Put { key, value },
            TxnOp::Remove { key } => Op::Remove { key },
            TxnOp::Mkdir { key } => Op::Mkdir { key },
            TxnOp::PutTemp { key, value, ttl_ms } => Op::PutTemp { key, value, ttl_ms },
        }
    }

    /// The key the operation writes.
    pub fn key(&self) -> &'a [u8] {
        match *self {
            TxnOp::Put { key, .. }
            | TxnOp::Remove { key }
            | TxnOp::Mkdir { key }
            | TxnOp::PutTemp { key, .. } => key,
        }
    }
}

/// A transaction: compares, the operations to apply if all of them hold, and those to apply
/// otherwise. Each list holds at most [`crate::KvLimits::max_txn_ops`] items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn<'a> {
    /// The conditions.
    #[serde(borrow)]
    pub compares: Batch<'a, Compare<'a>>,
    /// Applied, all or none, when every compare holds.
    #[serde(borrow)]
    pub success: Batch<'a, TxnOp<'a>>,
    /// Applied, all or none, when some compare does not hold.
    #[serde(borrow)]
    pub failure: Batch<'a, TxnOp<'a>>,
}

/// What one operation of an applied transaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum TxnEffect {
    /// It created the node.
    Created,
    /// It replaced the node's value.
    Updated,
    /// It removed the node.
    Removed,
    /// Nothing needed doing (a mkdir of an existing directory).
    Unchanged,
}

/// A key as the plan sees it partway through a branch.
#[derive(Clone, Copy)]
enum Planned {
    Absent,
    Node {
        kind: NodeKind,
        owner: u64,
        val_len: usize,
    },
}

/// What the operations planned so far leave behind: per operation, the kind (0: absent) and
/// value length of its key after it, and the store's node and arena use.
struct Plan {
    kinds: [u8; MAX_TXN_OPS],
    lens: [u32; MAX_TXN_OPS],
    nodes: usize,
    live: usize,
}

impl<M: KvMemory> DtKv<M> {
    /// Apply `txn` for session `client` at `index` (its items were checked by
    /// [`crate::check_write`] already).
    pub(crate) fn txn(&mut self, index: u64, client: u64, txn: &Txn<'_>) -> WriteResult {
        let succeeded = txn.compares.iter().all(|c| self.holds(&c));
        let ops = if succeeded { txn.success } else { txn.failure };
        let mut results = TxnResults::new();
        if let Err((op, error)) = self.plan(client, &ops, &mut results) {
            return WriteResult::TxnAborted {
                succeeded,
                op: op as u32,
                error,
            };
        }
        for op in ops.iter() {
            let applied = match op {
                TxnOp::Put { key, value } => self.put(index, client, key, value),
                TxnOp::Remove { key } => self.remove(index, client, key),
                TxnOp::Mkdir { key } => self.mkdir(index, key),
                TxnOp::PutTemp { key, value, ttl_ms } => {
                    self.put_temp(index, client, key, value, Lifetime::Ttl(ttl_ms))
                }
            };
            debug_assert!(
                applied.is_ok(),
                "the plan found that {op:?} applies, but it answered {applied:?}"
            );
        }
        WriteResult::Txn { succeeded, results }
    }

    fn holds(&self, c: &Compare<'_>) -> bool {
        let node = self.lookup(c.key());
        match *c {
            Compare::Value { value, .. } => node.is_some_and(|s| {
                matches!(self.kind(s), NodeKind::Value | NodeKind::TempValue)
                    && self.value_of(s) == value
            }),
            Compare::Exists { .. } => node.is_some(),
            Compare::Absent { .. } => node.is_none(),
            Compare::UpdateIndex { cmp, index, .. } => cmp.holds(
                node.map_or(0, |s| self.nodes[s as usize].update_index),
                index,
            ),
        }
    }

    /// Check every operation of `ops` against the state the ones before it leave; fills
    /// `results` with what each will do, or names the first one that would be refused.
    fn plan(
        &self,
        client: u64,
        ops: &Batch<'_, TxnOp<'_>>,
        results: &mut TxnResults,
    ) -> Result<(), (usize, KvError)> {
        let mut plan = Plan {
            kinds: [0; MAX_TXN_OPS],
            lens: [0; MAX_TXN_OPS],
            nodes: self.node_count,
            live: self.arena.live_bytes(),
        };
        for (i, op) in ops.iter().enumerate() {
            let (effect, after) = self
                .plan_op(client, ops, i, &op, &mut plan)
                .map_err(|e| (i, e))?;
            let (kind, len) = match after {
                Planned::Absent => (0, 0),
                Planned::Node { kind, val_len, .. } => (kind as u8, val_len as u32),
            };
            plan.kinds[i] = kind;
            plan.lens[i] = len;
            results
                .push(effect)
                .expect("list length checked against MAX_TXN_OPS");
        }
        Ok(())
    }

    /// Plan operation `i` of `ops`: what it does and what its key looks like after it.
    fn plan_op(
        &self,
        client: u64,
        ops: &Batch<'_, TxnOp<'_>>,
        i: usize,
        op: &TxnOp<'_>,
        plan: &mut Plan,
    ) -> Result<(TxnEffect, Planned), KvError> {
        let key = op.key();
        let before = self.planned(client, ops, i, key, plan);
        match (*op, before) {
            (TxnOp::Put { value, .. }, Planned::Node { kind, owner, .. })
            | (TxnOp::PutTemp { value, .. }, Planned::Node { kind, owner, .. }) => {
                let temp = matches!(op, TxnOp::PutTemp { .. });
                match kind {
                    NodeKind::Dir | NodeKind::TempDir => return Err(KvError::IsDirectory),
                    NodeKind::Lock => return Err(KvError::IsLock),
                    NodeKind::TempValue if owner != client => return Err(KvError::NotOwner),
                    NodeKind::Value if temp => return Err(KvError::NotTemp),
                    _ => {}
                }
                let Planned::Node { val_len, .. } = before else {
                    unreachable!("matched a node above")
                };
                self.plan_bytes(plan, cost(value.len()), cost(val_len))?;
                let after = Planned::Node {
                    kind,
                    owner,
                    val_len: value.len(),
                };
                Ok((TxnEffect::Updated, after))
            }
            (TxnOp::Put { value, .. }, Planned::Absent)
            | (TxnOp::PutTemp { value, .. }, Planned::Absent) => {
                let kind = if matches!(op, TxnOp::PutTemp { .. }) {
                    NodeKind::TempValue
                } else {
                    NodeKind::Value
                };
                self.plan_create(client, ops, i, key, value.len(), plan)?;
                let after = Planned::Node {
                    kind,
                    owner: if kind.is_temp() { client } else { 0 },
                    val_len: value.len(),
                };
                Ok((TxnEffect::Created, after))
            }
            (TxnOp::Mkdir { .. }, Planned::Node { kind, .. }) => {
                if kind == NodeKind::Dir {
                    Ok((TxnEffect::Unchanged, before))
                } else {
                    Err(KvError::AlreadyExists)
                }
            }
            (TxnOp::Mkdir { .. }, Planned::Absent) => {
                self.plan_create(client, ops, i, key, 0, plan)?;
                let after = Planned::Node {
                    kind: NodeKind::Dir,
                    owner: 0,
                    val_len: 0,
                };
                Ok((TxnEffect::Created, after))
            }
            (TxnOp::Remove { .. }, Planned::Absent) => Err(KvError::NotFound),
            (
                TxnOp::Remove { .. },
                Planned::Node {
                    kind,
                    owner,
                    val_len,
                },
            ) => {
                if kind == NodeKind::Lock {
                    return Err(KvError::IsLock);
                }
                if kind.is_dir() && self.planned_children(ops, i, key, plan) > 0 {
                    return Err(KvError::DirNotEmpty);
                }
                if kind.is_temp() && owner != client {
                    return Err(KvError::NotOwner);
                }
                plan.nodes -= 1;
                plan.live -= cost(key.len()) + cost(val_len);
                Ok((TxnEffect::Removed, Planned::Absent))
            }
        }
    }

    /// Plan creating `key` with a `val_len`-byte value: its parent must be a directory by
    /// then, and a node slot and the arena bytes must be free.
    fn plan_create(
        &self,
        client: u64,
        ops: &Batch<'_, TxnOp<'_>>,
        i: usize,
        key: &[u8],
        val_len: usize,
        plan: &mut Plan,
    ) -> Result<(), KvError> {
        let parent = parent_of(key);
        if !parent.is_empty() {
            match self.planned(client, ops, i, parent, plan) {
                Planned::Absent => return Err(KvError::ParentNotFound),
                Planned::Node { kind, .. } if !kind.is_dir() => return Err(KvError::ParentNotDir),
                Planned::Node { .. } => {}
            }
        }
        if plan.nodes >= self.limits.max_nodes {
            return Err(KvError::TooManyNodes);
        }
        self.plan_bytes(plan, cost(key.len()) + cost(val_len), 0)?;
        plan.nodes += 1;
        Ok(())
    }

    /// Take `add` arena bytes after giving back `remove`, as `Arena::fits` would allow.
    fn plan_bytes(&self, plan: &mut Plan, add: usize, remove: usize) -> Result<(), KvError> {
        let live = plan.live - remove + add;
        if live > self.arena.capacity() {
            return Err(KvError::ArenaFull);
        }
        plan.live = live;
        Ok(())
    }

    /// `key` as operation `i` finds it: as the last operation before it on the same key left
    /// it, or as the store holds it.
    fn planned(
        &self,
        client: u64,
        ops: &Batch<'_, TxnOp<'_>>,
        i: usize,
        key: &[u8],
        plan: &Plan,
    ) -> Planned {
        let last = ops
            .iter()
            .take(i)
            .enumerate()
            .filter(|(_, op)| op.key() == key)
            .last();
        if let Some((j, _)) = last {
            return match NodeKind::from_code(plan.kinds[j]) {
                None => Planned::Absent,
                Some(kind) => Planned::Node {
                    kind,
                    // Every temporary node a branch writes belongs to its session.
                    owner: if kind.is_temp() { client } else { 0 },
                    val_len: plan.lens[j] as usize,
                },
            };
        }
        match self.lookup(key) {
            None => Planned::Absent,
            Some(s) => Planned::Node {
                kind: self.kind(s),
                // A node tied to a lease is anyone's to change.
                owner: if self.may_change(s, client) {
                    client
                } else {
                    self.nodes[s as usize].owner
                },
                val_len: self.nodes[s as usize].val_len as usize,
            },
        }
    }

    /// Children of directory `dir` when operation `i` runs: the store's, plus those the
    /// operations before it created, minus those they removed. (A directory a branch removed
    /// had none left, so the sum holds across a removal and a re-creation too.)
    fn planned_children(
        &self,
        ops: &Batch<'_, TxnOp<'_>>,
        i: usize,
        dir: &[u8],
        plan: &Plan,
    ) -> i64 {
        let stored = self
            .lookup(dir)
            .filter(|&s| self.kind(s).is_dir())
            .map_or(0, |s| self.nodes[s as usize].children as i64);
        let mut children = stored;
        for (j, op) in ops.iter().take(i).enumerate() {
            let key = op.key();
            if parent_of(key) != dir {
                continue;
            }
            // The key's state before operation j: the last earlier operation on it, or the
            // store.
            let before = ops
                .iter()
                .take(j)
                .enumerate()
                .filter(|(_, o)| o.key() == key)
                .last()
                .map_or(self.lookup(key).is_some(), |(k, _)| plan.kinds[k] != 0);
            let after = plan.kinds[j] != 0;
            children += after as i64 - before as i64;
        }
        children
    }
}
