//! The sequential models histories are checked against: a register, a counter, an
//! append-only list, and one DtKV key.

use super::Model;

/// A read/write/compare-and-set register holding a `u64`, initially unwritten.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Register {
    /// The value, or `None` before the first write.
    pub value: Option<u64>,
}

/// Operations on a [`Register`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOp {
    /// Read the value.
    Read,
    /// Overwrite the value.
    Write(u64),
    /// Write `new` only if the value is `expect`.
    Cas {
        /// The value the client expects (`None`: unwritten).
        expect: Option<u64>,
        /// The value to write if it matches.
        new: u64,
    },
}

/// Results of [`RegisterOp`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterRet {
    /// A read's value.
    Value(Option<u64>),
    /// A write was done.
    Written,
    /// Whether a compare-and-set swapped.
    Swapped(bool),
}

impl Model for Register {
    type Op = RegisterOp;
    type Ret = RegisterRet;
    fn is_read_only(op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Read)
    }
    fn step(&self, op: &RegisterOp) -> (Self, RegisterRet) {
        match op {
            RegisterOp::Read => (self.clone(), RegisterRet::Value(self.value)),
            RegisterOp::Write(v) => (Register { value: Some(*v) }, RegisterRet::Written),
            RegisterOp::Cas { expect, new } if *expect == self.value => {
                (Register { value: Some(*new) }, RegisterRet::Swapped(true))
            }
            RegisterOp::Cas { .. } => (self.clone(), RegisterRet::Swapped(false)),
        }
    }
}

/// A counter that only grows, starting at 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counter {
    /// The current total.
    pub total: u64,
}

/// Operations on a [`Counter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CounterOp {
    /// Add to the total.
    Add(u64),
    /// Read the total.
    Read,
}

/// Results of [`CounterOp`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CounterRet {
    /// An add was done.
    Added,
    /// A read's total.
    Total(u64),
}

impl Model for Counter {
    type Op = CounterOp;
    type Ret = CounterRet;
    fn is_read_only(op: &CounterOp) -> bool {
        matches!(op, CounterOp::Read)
    }
    fn step(&self, op: &CounterOp) -> (Self, CounterRet) {
        match op {
            CounterOp::Add(n) => (
                Counter {
                    total: self.total + n,
                },
                CounterRet::Added,
            ),
            CounterOp::Read => (self.clone(), CounterRet::Total(self.total)),
        }
    }
}

/// An append-only list: reads return the whole list, so they pin down the order of appends
/// (a strong model for finding reordered or lost writes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AppendList {
    /// The items in append order.
    pub items: Vec<u64>,
}

/// Operations on an [`AppendList`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendOp {
    /// Append one item.
    Append(u64),
    /// Read the whole list.
    Read,
}

/// Results of [`AppendOp`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendRet {
    /// An append was done.
    Appended,
    /// A read's list.
    Items(Vec<u64>),
}

impl Model for AppendList {
    type Op = AppendOp;
    type Ret = AppendRet;
    fn is_read_only(op: &AppendOp) -> bool {
        matches!(op, AppendOp::Read)
    }
    fn step(&self, op: &AppendOp) -> (Self, AppendRet) {
        match op {
            AppendOp::Append(x) => {
                let mut items = self.items.clone();
                items.push(*x);
                (AppendList { items }, AppendRet::Appended)
            }
            AppendOp::Read => (self.clone(), AppendRet::Items(self.items.clone())),
        }
    }
}

/// One key of a key-value store with byte values (get / put / remove / compare-and-set), or
/// several keys checked as one object because transactions write them together (read all,
/// transaction): a history that sees half of a transaction has no legal order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvKey {
    /// The value, or `None` when the key does not exist.
    pub value: Option<Vec<u8>>,
    /// The values of the object's other keys, in order (empty for a single key). Key 0 of a
    /// transaction is `value`, key `i` is `others[i - 1]`.
    pub others: Vec<Option<Vec<u8>>>,
}

impl KvKey {
    /// An object of `keys` keys, none of which exists.
    pub fn object(keys: usize) -> KvKey {
        KvKey {
            value: None,
            others: vec![None; keys.saturating_sub(1)],
        }
    }

    fn values(&self) -> Vec<Option<Vec<u8>>> {
        let mut all = vec![self.value.clone()];
        all.extend(self.others.iter().cloned());
        all
    }

    fn from_values(mut all: Vec<Option<Vec<u8>>>) -> KvKey {
        let value = all.remove(0);
        KvKey { value, others: all }
    }

    fn with_value(&self, value: Option<Vec<u8>>) -> KvKey {
        KvKey {
            value,
            others: self.others.clone(),
        }
    }
}

/// A condition of a [`KvOp::Txn`] on one key of the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnCond {
    /// The key holds this value.
    Value(Vec<u8>),
    /// The key exists.
    Exists,
    /// The key does not exist.
    Absent,
}

/// Operations on a [`KvKey`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Read the value.
    Get,
    /// Set the value.
    Put(Vec<u8>),
    /// Delete the key.
    Remove,
    /// Set `new` (or delete, when `None`) only if the value is `expect`.
    Cas {
        /// The expected value (`None`: the key must not exist).
        expect: Option<Vec<u8>>,
        /// The new value (`None`: delete).
        new: Option<Vec<u8>>,
    },
    /// Read every key of the object at one index.
    ReadAll,
    /// A DtKV transaction over the object's keys (by position): if every condition holds,
    /// apply `success` in order, else `failure`; a write is a put (`Some`) or a remove
    /// (`None`). A remove of a missing key aborts the branch with nothing applied.
    Txn {
        /// The conditions.
        compares: Vec<(usize, TxnCond)>,
        /// Writes when all hold.
        success: Vec<(usize, Option<Vec<u8>>)>,
        /// Writes otherwise.
        failure: Vec<(usize, Option<Vec<u8>>)>,
    },
}

/// Results of [`KvOp`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvRet {
    /// A get's value.
    Value(Option<Vec<u8>>),
    /// A put was done.
    Done,
    /// Whether a remove found the key.
    Removed(bool),
    /// Whether a compare-and-set swapped.
    Swapped(bool),
    /// Every key's value, in order.
    Values(Vec<Option<Vec<u8>>>),
    /// Which branch a transaction took, and whether it was aborted (nothing applied).
    Txn {
        /// Every condition held.
        succeeded: bool,
        /// A write of the branch was refused.
        aborted: bool,
    },
}

impl Model for KvKey {
    type Op = KvOp;
    type Ret = KvRet;
    fn is_read_only(op: &KvOp) -> bool {
        matches!(op, KvOp::Get | KvOp::ReadAll)
    }
    fn step(&self, op: &KvOp) -> (Self, KvRet) {
        match op {
            KvOp::Get => (self.clone(), KvRet::Value(self.value.clone())),
            KvOp::Put(v) => (self.with_value(Some(v.clone())), KvRet::Done),
            KvOp::Remove => (self.with_value(None), KvRet::Removed(self.value.is_some())),
            KvOp::Cas { expect, new } if *expect == self.value => {
                (self.with_value(new.clone()), KvRet::Swapped(true))
            }
            KvOp::Cas { .. } => (self.clone(), KvRet::Swapped(false)),
            KvOp::ReadAll => (self.clone(), KvRet::Values(self.values())),
            KvOp::Txn {
                compares,
                success,
                failure,
            } => {
                let mut all = self.values();
                let succeeded = compares.iter().all(|(i, c)| match c {
                    TxnCond::Value(v) => all[*i].as_ref() == Some(v),
                    TxnCond::Exists => all[*i].is_some(),
                    TxnCond::Absent => all[*i].is_none(),
                });
                let writes = if succeeded { success } else { failure };
                for (i, w) in writes {
                    if w.is_none() && all[*i].is_none() {
                        let aborted = KvRet::Txn {
                            succeeded,
                            aborted: true,
                        };
                        return (self.clone(), aborted);
                    }
                    all[*i] = w.clone();
                }
                let ret = KvRet::Txn {
                    succeeded,
                    aborted: false,
                };
                (KvKey::from_values(all), ret)
            }
        }
    }
}
