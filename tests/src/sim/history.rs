//! Recording client operations as a simulation runs, for the linearizability check at the end.
//!
//! Times are global simulated ms (every client's operations on one timeline — the checker needs
//! real-time order, not what drifting local clocks say). An operation that is never completed
//! stays "answer lost", which the checker treats as "may have taken effect at any time after it
//! was invoked, or never".

use crate::linearizability::Operation;

/// A handle to an invoked operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpId(usize);

/// A growing client history.
#[derive(Clone, Debug)]
pub struct History<K, O, R> {
    ops: Vec<Operation<K, O, R>>,
}

impl<K, O, R> Default for History<K, O, R> {
    fn default() -> Self {
        History { ops: Vec::new() }
    }
}

impl<K, O, R> History<K, O, R> {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record that `client` invoked `op` on `key` at `now_ms`.
    pub fn invoke(&mut self, client: u64, key: K, op: O, now_ms: u64) -> OpId {
        self.ops.push(Operation {
            client,
            key,
            op,
            invoke: now_ms,
            response: None,
        });
        OpId(self.ops.len() - 1)
    }

    /// Record the answer to `id` at `now_ms`. Completing twice is a runner bug, hence a panic.
    pub fn complete(&mut self, id: OpId, ret: R, now_ms: u64) {
        let op = &mut self.ops[id.0];
        assert!(op.response.is_none(), "operation {id:?} answered twice");
        assert!(
            now_ms >= op.invoke,
            "operation {id:?} answered before it was invoked"
        );
        op.response = Some((now_ms, ret));
    }

    /// The operation behind `id`.
    pub fn get(&self, id: OpId) -> &Operation<K, O, R> {
        &self.ops[id.0]
    }

    /// Every operation so far, in invocation order.
    pub fn ops(&self) -> &[Operation<K, O, R>] {
        &self.ops
    }

    /// Number of operations so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing was invoked.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of operations whose answer never came (so far).
    pub fn unanswered(&self) -> usize {
        self.ops.iter().filter(|o| o.response.is_none()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_invocations_and_answers() {
        let mut h: History<u8, &str, u32> = History::new();
        let a = h.invoke(1, 0, "read", 5);
        let b = h.invoke(2, 0, "write", 6);
        h.complete(a, 7, 9);
        assert_eq!(h.get(a).response, Some((9, 7)));
        assert_eq!(h.get(b).response, None);
        assert_eq!((h.len(), h.unanswered()), (2, 1));
    }

    #[test]
    #[should_panic(expected = "answered twice")]
    fn double_answer_is_a_bug() {
        let mut h: History<u8, u8, u8> = History::new();
        let a = h.invoke(1, 0, 0, 0);
        h.complete(a, 0, 1);
        h.complete(a, 0, 2);
    }
}
