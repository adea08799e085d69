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

mod models;
#[cfg(test)]
mod tests;

pub use models::*;
