//! Linearizability checking of client histories (Wing–Gong search with Lowe's memoization, as
//! in the "WGL" algorithm), split per key (P-compositionality).
//!
//! A history is a list of [`Operation`]s: each was invoked at some time and either returned a
//! result at a later time or never answered (the answer was lost: it may have taken effect at
//! any moment after its invocation, or not at all). The history is linearizable if there is a
//! total order of the operations — containing every answered one and any subset of the
//! unanswered ones — that respects real time (an operation that returned before another was
//! invoked comes first) and in which a sequential [`Model`] gives every answered operation the
//! result it actually got.
//!
//! The search is exponential in the worst case, so it has a step budget and says "unknown"
//! ([`Outcome::Unknown`]) rather than guessing when the budget runs out. It owns no clock and no
//! randomness; identical histories give identical answers.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification of one object (one key). `step` must be a pure function: the
/// checker calls it speculatively many times and caches states.
pub trait Model: Clone + Eq + Hash + Debug {
    /// An operation on the object.
    type Op: Clone + Debug;
    /// What an operation returns.
    type Ret: Clone + PartialEq + Debug;
    /// Apply `op` to this state: the next state and the result the client should see.
    fn step(&self, op: &Self::Op) -> (Self, Self::Ret);
    /// Whether `op` never changes the state (a read). Unanswered read-only operations are
    /// dropped before the search, since placing them or not cannot matter; that keeps
    /// histories with many lost answers tractable.
    fn is_read_only(op: &Self::Op) -> bool {
        let _ = op;
        false
    }
}

/// One client operation in a history. `key` says which independent object it touches; histories
/// are checked key by key. Times are in any unit that all clients share (the simulator uses
/// global simulated ms); only their order matters.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation<K, O, R> {
    /// The client that issued it (reports only; clients need not be sequential).
    pub client: u64,
    /// The object it touches.
    pub key: K,
    /// What was asked.
    pub op: O,
    /// When it was invoked.
    pub invoke: u64,
    /// When it returned and what it returned; `None` if the answer never came.
    pub response: Option<(u64, R)>,
}

/// Why a history is not linearizable, in words fit for a failure line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key whose sub-history fails (its `Debug` form).
    pub key: String,
    /// Number of operations on that key.
    pub ops_on_key: usize,
    /// The most operations the search managed to place in a legal order.
    pub longest_prefix: usize,
    /// The operation that could not be placed after that longest prefix.
    pub stuck_on: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key {}: no legal order of its {} operations; best order placed {} and then could not fit {}",
            self.key, self.ops_on_key, self.longest_prefix, self.stuck_on
        )
    }
}

/// The checker's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Some legal order exists.
    Linearizable,
    /// No legal order exists: a real bug (or a wrong model).
    NotLinearizable(Violation),
    /// The step budget ran out before an answer; says nothing about correctness.
    Unknown {
        /// The key whose search ran out of budget.
        key: String,
        /// Steps spent on it.
        steps: u64,
    },
}

impl Outcome {
    /// Whether the verdict is [`Outcome::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Outcome::Linearizable)
    }
}

/// The default search budget per key, in search steps (one step tries or undoes one operation).
pub const DEFAULT_STEP_BUDGET: u64 = 2_000_000;

/// Check a whole history against one object model, ignoring keys.
pub fn check<K: Debug, M: Model>(
    init: &M,
    ops: &[Operation<K, M::Op, M::Ret>],
    step_budget: u64,
) -> Outcome {
    let refs: Vec<&Operation<K, M::Op, M::Ret>> =
        ops.iter().filter(|o| worth_placing::<M, K>(o)).collect();
    check_refs(init, &refs, "(all)", step_budget)
}

/// Check a history key by key: each key's operations must be linearizable against a fresh
/// model from `init(key)`. Sound only when every operation touches one key (multi-key batches
/// must be checked with a model over all their keys). The first failing key (in key order) is
/// reported; "unknown" is reported only when no key fails. `step_budget` is per key.
pub fn check_per_key<K, M, F>(
    ops: &[Operation<K, M::Op, M::Ret>],
    init: F,
    step_budget: u64,
) -> Outcome
where
    K: Ord + Debug,
    M: Model,
    F: Fn(&K) -> M,
{
    let mut by_key: BTreeMap<&K, Vec<OpRef<'_, K, M>>> = BTreeMap::new();
    for op in ops.iter().filter(|o| worth_placing::<M, K>(o)) {
        by_key.entry(&op.key).or_default().push(op);
    }
    let mut unknown = None;
    for (key, key_ops) in by_key {
        match check_refs(&init(key), &key_ops, &format!("{key:?}"), step_budget) {
            Outcome::Linearizable => {}
            bad @ Outcome::NotLinearizable(_) => return bad,
            u @ Outcome::Unknown { .. } => {
                unknown.get_or_insert(u);
            }
        }
    }
    unknown.unwrap_or(Outcome::Linearizable)
}

/// False for an unanswered read-only operation, which the search may ignore.
fn worth_placing<M: Model, K>(o: &Operation<K, M::Op, M::Ret>) -> bool {
    o.response.is_some() || !M::is_read_only(&o.op)
}

/// A borrowed operation of model `M` on keys `K`.
type OpRef<'a, K, M> = &'a Operation<K, <M as Model>::Op, <M as Model>::Ret>;

/// A node of the doubly linked event list the search lifts operations out of.
#[derive(Clone, Copy, Debug)]
struct Event {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

/// Index of the list's head sentinel; `NIL` ends the list.
const HEAD: usize = 0;
const NIL: usize = usize::MAX;

struct EventList {
    ev: Vec<Event>,
    /// For each operation, the index of its return event (if answered).
    ret_of: Vec<Option<usize>>,
}

impl EventList {
    fn build<K, O, R>(ops: &[&Operation<K, O, R>]) -> EventList {
        // (time, calls before returns at equal times so that touching intervals count as
        // concurrent — the permissive reading — then op index for determinism).
        let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            order.push((op.invoke, 0, i));
            if let Some((t, _)) = &op.response {
                assert!(
                    *t >= op.invoke,
                    "operation {i} returned before it was invoked"
                );
                order.push((*t, 1, i));
            }
        }
        order.sort_unstable();
        let mut ev = vec![Event {
            op: usize::MAX,
            is_call: false,
            prev: NIL,
            next: NIL,
        }];
        let mut ret_of = vec![None; ops.len()];
        for (k, &(_, kind, i)) in order.iter().enumerate() {
            let idx = k + 1;
            ev.push(Event {
                op: i,
                is_call: kind == 0,
                prev: idx - 1,
                next: NIL,
            });
            ev[idx - 1].next = idx;
            if kind == 1 {
                ret_of[i] = Some(idx);
            }
        }
        EventList { ev, ret_of }
    }

    fn unlink(&mut self, i: usize) {
        let Event { prev, next, .. } = self.ev[i];
        self.ev[prev].next = next;
        if next != NIL {
            self.ev[next].prev = prev;
        }
    }

    /// Undo `unlink(i)`; valid because links are restored in the reverse order of removal.
    fn relink(&mut self, i: usize) {
        let Event { prev, next, .. } = self.ev[i];
        self.ev[prev].next = i;
        if next != NIL {
            self.ev[next].prev = i;
        }
    }

    fn lift(&mut self, call: usize) {
        self.unlink(call);
        if let Some(r) = self.ret_of[self.ev[call].op] {
            self.unlink(r);
        }
    }

    fn unlift(&mut self, call: usize) {
        if let Some(r) = self.ret_of[self.ev[call].op] {
            self.relink(r);
        }
        self.relink(call);
    }
}

fn check_refs<K, M: Model>(
    init: &M,
    ops: &[&Operation<K, M::Op, M::Ret>],
    key: &str,
    step_budget: u64,
) -> Outcome {
    let mut list = EventList::build(ops);
    let words = ops.len().div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    // Lowe's memoization: a (set of placed operations, model state) pair already explored
    // cannot lead anywhere new.
    let mut seen: HashSet<(Vec<u64>, M)> = HashSet::new();
    let mut stack: Vec<(usize, M)> = Vec::new();
    let mut state = init.clone();
    let mut unanswered_left = ops.iter().filter(|o| o.response.is_some()).count();
    let mut best: (usize, usize) = (0, NIL); // (depth, event that blocked there)
    let mut steps = 0u64;
    let mut entry = list.ev[HEAD].next;
    loop {
        // Unanswered operations may be left out, so we are done once every answered one is
        // placed.
        if unanswered_left == 0 {
            return Outcome::Linearizable;
        }
        steps += 1;
        if steps > step_budget {
            return Outcome::Unknown {
                key: key.to_string(),
                steps,
            };
        }
        // While an answered operation is unplaced, its return event is in the list, so the
        // scan meets a return before it runs off the end.
        let e = list.ev[entry];
        if e.is_call {
            let op = ops[e.op];
            let (next_state, got) = state.step(&op.op);
            let fits = match &op.response {
                None => true,
                Some((_, want)) => *want == got,
            };
            if fits {
                set_bit(&mut linearized, e.op, true);
                if seen.insert((linearized.clone(), next_state.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next_state)));
                    list.lift(entry);
                    if op.response.is_some() {
                        unanswered_left -= 1;
                    }
                    entry = list.ev[HEAD].next;
                    continue;
                }
                set_bit(&mut linearized, e.op, false);
            }
            entry = e.next;
        } else {
            // An operation returned and nothing placed so far lets it go first: backtrack.
            if best.1 == NIL || stack.len() > best.0 {
                best = (stack.len(), entry);
            }
            let Some((call, prev_state)) = stack.pop() else {
                let stuck = &ops[list.ev[best.1].op];
                return Outcome::NotLinearizable(Violation {
                    key: key.to_string(),
                    ops_on_key: ops.len(),
                    longest_prefix: best.0,
                    stuck_on: format!(
                        "{:?} by client {} invoked at {} answered {:?}",
                        stuck.op, stuck.client, stuck.invoke, stuck.response
                    ),
                });
            };
            state = prev_state;
            let op = list.ev[call].op;
            set_bit(&mut linearized, op, false);
            list.unlift(call);
            if ops[op].response.is_some() {
                unanswered_left += 1;
            }
            entry = list.ev[call].next;
        }
    }
}

fn set_bit(bits: &mut [u64], i: usize, on: bool) {
    if on {
        bits[i / 64] |= 1 << (i % 64);
    } else {
        bits[i / 64] &= !(1 << (i % 64));
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::rng::Rng;

    type RegOp = Operation<u64, RegisterOp, RegisterRet>;

    fn op(client: u64, o: RegisterOp, invoke: u64, ret: u64, r: RegisterRet) -> RegOp {
        Operation {
            client,
            key: 0,
            op: o,
            invoke,
            response: Some((ret, r)),
        }
    }
    fn lost(client: u64, o: RegisterOp, invoke: u64) -> RegOp {
        Operation {
            client,
            key: 0,
            op: o,
            invoke,
            response: None,
        }
    }
    fn w(client: u64, v: u64, a: u64, b: u64) -> RegOp {
        op(client, RegisterOp::Write(v), a, b, RegisterRet::Written)
    }
    fn r(client: u64, v: Option<u64>, a: u64, b: u64) -> RegOp {
        op(client, RegisterOp::Read, a, b, RegisterRet::Value(v))
    }
    fn reg(h: &[RegOp]) -> Outcome {
        check(&Register::default(), h, DEFAULT_STEP_BUDGET)
    }
    fn bad(o: &Outcome) -> bool {
        matches!(o, Outcome::NotLinearizable(_))
    }

    #[test]
    fn empty_and_sequential_histories() {
        assert!(reg(&[]).is_linearizable());
        assert!(reg(&[r(1, None, 0, 1), w(1, 5, 2, 3), r(2, Some(5), 4, 5)]).is_linearizable());
    }

    #[test]
    fn concurrent_write_may_or_may_not_be_seen() {
        // The read overlaps the write: both answers are fine.
        assert!(reg(&[w(1, 1, 0, 10), r(2, Some(1), 5, 6)]).is_linearizable());
        assert!(reg(&[w(1, 1, 0, 10), r(2, None, 5, 6)]).is_linearizable());
        // Touching intervals count as concurrent.
        assert!(reg(&[w(1, 1, 0, 10), r(2, None, 10, 12)]).is_linearizable());
    }

    #[test]
    fn stale_read_is_caught() {
        let o = reg(&[w(1, 1, 0, 10), w(1, 2, 20, 30), r(2, Some(1), 40, 50)]);
        let Outcome::NotLinearizable(v) = &o else {
            panic!("{o:?}")
        };
        assert_eq!(v.ops_on_key, 3);
        assert!(v.stuck_on.contains("Read"), "{v}");
    }

    #[test]
    fn lost_write_is_caught() {
        assert!(bad(&reg(&[w(1, 1, 0, 10), r(2, None, 20, 30)])));
    }

    #[test]
    fn read_of_a_never_written_value_is_caught() {
        assert!(bad(&reg(&[
            w(1, 1, 0, 10),
            w(2, 2, 0, 10),
            r(3, Some(7), 0, 20)
        ])));
    }

    #[test]
    fn concurrent_writes_seen_in_an_impossible_order_are_caught() {
        // Either order of the two writes is fine, but readers cannot see 1, then 2, then 1.
        let base = [w(1, 1, 0, 100), w(2, 2, 0, 100)];
        let mut h = base.to_vec();
        h.extend([r(3, Some(1), 10, 20), r(4, Some(2), 30, 40)]);
        assert!(reg(&h).is_linearizable());
        h.push(r(5, Some(1), 50, 60));
        assert!(bad(&reg(&h)));
        // Also while the writes are still running: two readers see them in opposite orders.
        let h2 = [
            w(1, 1, 0, 100),
            w(2, 2, 0, 100),
            r(3, Some(1), 10, 20),
            r(3, Some(2), 30, 40),
            r(4, Some(2), 10, 20),
            r(4, Some(1), 30, 40),
        ];
        assert!(bad(&reg(&h2)));
    }

    #[test]
    fn compare_and_set() {
        let cas = |c, e, n, a, b, ok| {
            op(
                c,
                RegisterOp::Cas { expect: e, new: n },
                a,
                b,
                RegisterRet::Swapped(ok),
            )
        };
        // Two concurrent CAS from the same expected value: only one may win.
        assert!(reg(&[
            w(1, 0, 0, 1),
            cas(2, Some(0), 5, 2, 10, true),
            cas(3, Some(0), 6, 2, 10, false)
        ])
        .is_linearizable());
        assert!(bad(&reg(&[
            w(1, 0, 0, 1),
            cas(2, Some(0), 5, 2, 10, true),
            cas(3, Some(0), 6, 2, 10, true)
        ])));
        assert!(
            bad(&reg(&[cas(2, Some(0), 5, 2, 10, true)])),
            "expects a value never written"
        );
    }

    #[test]
    fn lost_answers_may_take_effect_late_or_never() {
        // Took effect before the read.
        assert!(
            reg(&[lost(1, RegisterOp::Write(1), 5), r(2, Some(1), 100, 110)]).is_linearizable()
        );
        // Never took effect (or not yet).
        assert!(reg(&[lost(1, RegisterOp::Write(1), 5), r(2, None, 100, 110)]).is_linearizable());
        // Seen, then unseen: a lost write cannot be undone.
        assert!(bad(&reg(&[
            lost(1, RegisterOp::Write(1), 5),
            r(2, Some(1), 100, 110),
            r(2, None, 120, 130)
        ])));
        // It cannot take effect before it was invoked.
        assert!(bad(&reg(&[
            r(2, Some(1), 0, 4),
            lost(1, RegisterOp::Write(1), 5)
        ])));
        // A lost CAS may have won.
        let lost_cas = lost(
            1,
            RegisterOp::Cas {
                expect: Some(0),
                new: 9,
            },
            20,
        );
        assert!(
            reg(&[w(1, 0, 0, 10), lost_cas.clone(), r(2, Some(9), 100, 110)]).is_linearizable()
        );
        assert!(reg(&[w(1, 0, 0, 10), lost_cas, r(2, Some(0), 100, 110)]).is_linearizable());
    }

    #[test]
    fn per_key_partitioning_finds_the_bad_key() {
        let mut h = vec![w(1, 1, 0, 10), r(2, Some(1), 20, 30)];
        let mut k7 = vec![w(1, 1, 0, 10), w(1, 2, 20, 30), r(2, Some(1), 40, 50)];
        for o in &mut k7 {
            o.key = 7;
        }
        h.extend(k7.iter().cloned());
        let o = check_per_key(&h, |_| Register::default(), DEFAULT_STEP_BUDGET);
        let Outcome::NotLinearizable(v) = o else {
            panic!("{o:?}")
        };
        assert_eq!(v.key, "7");
        // Without the partition, values of different keys would collide.
        h.truncate(2);
        assert!(check_per_key(&h, |_| Register::default(), DEFAULT_STEP_BUDGET).is_linearizable());
    }

    #[test]
    fn budget_exhaustion_is_unknown_not_a_violation() {
        // Many concurrent writes and a final impossible read: the search must try many orders.
        let mut h: Vec<RegOp> = (0..14).map(|i| w(i, i, 0, 100)).collect();
        h.push(r(99, Some(1000), 200, 210));
        match check(&Register::default(), &h, 50) {
            Outcome::Unknown { steps, .. } => assert!(steps > 50),
            o => panic!("{o:?}"),
        }
        assert!(
            bad(&check(&Register::default(), &h, DEFAULT_STEP_BUDGET)),
            "memoization keeps it tractable"
        );
    }

    #[test]
    fn counter_model() {
        let add = |c, n, a, b| Operation {
            client: c,
            key: (),
            op: CounterOp::Add(n),
            invoke: a,
            response: Some((b, CounterRet::Added)),
        };
        let read = |c, n, a, b| Operation {
            client: c,
            key: (),
            op: CounterOp::Read,
            invoke: a,
            response: Some((b, CounterRet::Total(n))),
        };
        let ok = [
            add(1, 1, 0, 10),
            add(2, 2, 0, 10),
            read(3, 1, 0, 10),
            read(3, 3, 20, 30),
        ];
        assert!(check(&Counter::default(), &ok, DEFAULT_STEP_BUDGET).is_linearizable());
        let lost_add = [add(1, 1, 0, 10), add(2, 2, 0, 10), read(3, 2, 20, 30)];
        assert!(bad(&check(
            &Counter::default(),
            &lost_add,
            DEFAULT_STEP_BUDGET
        )));
    }

    #[test]
    fn append_model_pins_the_order() {
        let app = |c, x, a, b| Operation {
            client: c,
            key: (),
            op: AppendOp::Append(x),
            invoke: a,
            response: Some((b, AppendRet::Appended)),
        };
        let read = |c, v: Vec<u64>, a, b| Operation {
            client: c,
            key: (),
            op: AppendOp::Read,
            invoke: a,
            response: Some((b, AppendRet::Items(v))),
        };
        let ok = [
            app(1, 1, 0, 10),
            app(2, 2, 0, 10),
            read(3, vec![2, 1], 20, 30),
        ];
        assert!(check(&AppendList::default(), &ok, DEFAULT_STEP_BUDGET).is_linearizable());
        let reordered = [
            app(1, 1, 0, 10),
            app(2, 2, 20, 30),
            read(3, vec![2, 1], 40, 50),
        ];
        assert!(bad(&check(
            &AppendList::default(),
            &reordered,
            DEFAULT_STEP_BUDGET
        )));
    }

    /// An answered operation of `client` on `key`, invoked at `a` and answered `r` at `b`.
    fn answered<K, O, R>(client: u64, key: K, op: O, a: u64, b: u64, r: R) -> Operation<K, O, R> {
        Operation {
            client,
            key,
            op,
            invoke: a,
            response: Some((b, r)),
        }
    }

    #[test]
    fn kv_key_model_fits_the_trait() {
        let o = |c, op, a, b, r| answered(c, "app.x", op, a, b, r);
        let h = [
            o(1, KvOp::Put(b"a".to_vec()), 0, 10, KvRet::Done),
            o(
                2,
                KvOp::Cas {
                    expect: Some(b"a".to_vec()),
                    new: None,
                },
                20,
                30,
                KvRet::Swapped(true),
            ),
            o(3, KvOp::Remove, 40, 50, KvRet::Removed(false)),
            o(3, KvOp::Get, 60, 70, KvRet::Value(None)),
        ];
        assert!(check_per_key(&h, |_| KvKey::default(), DEFAULT_STEP_BUDGET).is_linearizable());
        let mut bad_h = h.to_vec();
        bad_h[3].response = Some((70, KvRet::Value(Some(b"a".to_vec()))));
        assert!(bad(&check_per_key(
            &bad_h,
            |_| KvKey::default(),
            DEFAULT_STEP_BUDGET
        )));
    }

    #[test]
    fn transactions_over_several_keys_are_all_or_nothing() {
        let o = |c, op, a, b, r| answered(c, "pair", op, a, b, r);
        let v = |s: &str| Some(s.as_bytes().to_vec());
        let both = |x: &str| KvOp::Txn {
            compares: vec![(0, TxnCond::Absent)],
            success: vec![(0, v(x)), (1, v(x))],
            failure: vec![(1, None), (0, v(x))],
        };
        let ran = |succeeded, aborted| KvRet::Txn { succeeded, aborted };
        let h = [
            o(1, both("a"), 0, 10, ran(true, false)),
            o(
                2,
                KvOp::ReadAll,
                20,
                30,
                KvRet::Values(vec![v("a"), v("a")]),
            ),
            // The compare fails; the failure branch removes key 1, then writes key 0.
            o(1, both("b"), 40, 50, ran(false, false)),
            o(2, KvOp::ReadAll, 60, 70, KvRet::Values(vec![v("b"), None])),
            // Again: key 1 is gone, so the remove aborts the branch and nothing changes.
            o(1, both("c"), 80, 90, ran(false, true)),
            o(
                2,
                KvOp::ReadAll,
                100,
                110,
                KvRet::Values(vec![v("b"), None]),
            ),
        ];
        let init = |_: &&str| KvKey::object(2);
        assert!(check_per_key(&h, init, DEFAULT_STEP_BUDGET).is_linearizable());
        // Half of the first transaction seen: no legal order.
        let mut half = h.to_vec();
        half[1].response = Some((30, KvRet::Values(vec![v("a"), None])));
        assert!(bad(&check_per_key(&half, init, DEFAULT_STEP_BUDGET)));
        // An aborted branch that left its first write behind: no legal order either.
        let mut partial = h.to_vec();
        partial[5].response = Some((110, KvRet::Values(vec![v("b"), None])));
        partial[4].op = KvOp::Txn {
            compares: vec![],
            success: vec![(0, v("c")), (1, None)],
            failure: vec![],
        };
        partial[4].response = Some((90, ran(true, true)));
        assert!(check_per_key(&partial, init, DEFAULT_STEP_BUDGET).is_linearizable());
        partial[5].response = Some((110, KvRet::Values(vec![v("c"), None])));
        assert!(bad(&check_per_key(&partial, init, DEFAULT_STEP_BUDGET)));
    }

    /// A history produced by a real sequential execution: each operation takes effect at a
    /// random point inside its interval, in that order, so the history is linearizable by
    /// construction. Some answers are lost; a lost operation may or may not have taken effect.
    fn generated_history(seed: u64, n_ops: usize, n_keys: u64) -> Vec<RegOp> {
        let mut rng = Rng::new(seed);
        struct Planned {
            key: u64,
            client: u64,
            op: RegisterOp,
            invoke: u64,
            ret: u64,
            point: u64,
            lost: bool,
            applied: bool,
        }
        let mut plan: Vec<Planned> = (0..n_ops)
            .map(|i| {
                let invoke = rng.range(0, 2_000);
                let ret = invoke + rng.range(0, 150);
                let point = rng.range(invoke, ret + 1);
                let op = match rng.range(0, 3) {
                    0 => RegisterOp::Read,
                    1 => RegisterOp::Write(i as u64),
                    _ => RegisterOp::Cas {
                        expect: Some(rng.range(0, i as u64 + 1)).filter(|_| rng.chance(4, 5)),
                        new: i as u64,
                    },
                };
                let lost = rng.chance(1, 10);
                let applied = !lost || rng.chance(1, 2);
                Planned {
                    key: rng.range(0, n_keys),
                    client: rng.range(1, 6),
                    op,
                    invoke,
                    ret,
                    point,
                    lost,
                    applied,
                }
            })
            .collect();
        let mut order: Vec<usize> = (0..n_ops).collect();
        order.sort_by_key(|&i| (plan[i].point, i));
        let mut state: BTreeMap<u64, Register> = BTreeMap::new();
        let mut results = vec![None; n_ops];
        for i in order {
            let p = &plan[i];
            if !p.applied {
                continue;
            }
            let reg = state.entry(p.key).or_default();
            let (next, got) = reg.step(&p.op);
            *reg = next;
            results[i] = Some(got);
        }
        plan.drain(..)
            .zip(results)
            .map(|(p, got)| Operation {
                client: p.client,
                key: p.key,
                op: p.op,
                invoke: p.invoke,
                response: if p.lost {
                    None
                } else {
                    Some((p.ret, got.expect("answered ops were applied")))
                },
            })
            .collect()
    }

    #[test]
    fn randomized_real_executions_always_pass() {
        for seed in 0..300 {
            let h = generated_history(seed, 60, 3);
            let o = check_per_key(&h, |_| Register::default(), DEFAULT_STEP_BUDGET);
            assert!(o.is_linearizable(), "seed {seed}: {o:?}");
        }
    }

    #[test]
    fn randomized_corrupted_executions_are_mostly_caught() {
        // Change one answered read to a value nobody ever wrote: always a violation.
        for seed in 0..100 {
            let mut h = generated_history(seed, 40, 1);
            if let Some(o) = h
                .iter_mut()
                .find(|o| o.op == RegisterOp::Read && o.response.is_some())
            {
                let t = o.response.as_ref().map(|r| r.0).expect("answered");
                o.response = Some((t, RegisterRet::Value(Some(1_000_000))));
                assert!(
                    bad(&check_per_key(
                        &h,
                        |_| Register::default(),
                        DEFAULT_STEP_BUDGET
                    )),
                    "seed {seed}"
                );
            }
        }
    }
}
