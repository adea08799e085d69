//! The traits a platform implements besides [`crate::storage::Storage`]: how frames leave, what
//! time it is, and the state machine committed entries are applied to.

use crate::types::{LogIndex, NodeId, Term};

/// Why a frame could not be handed to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TransportError {
    /// No link to that peer right now.
    Unreachable,
    /// The link's queue is full; the frame was dropped (Raft retries).
    Busy,
}

/// Sends frames to peers. Delivery is best-effort: Raft tolerates loss, duplication and delay.
///
/// Obligations: (1) `send` never blocks on the network; (2) frames to one peer are sent whole,
/// never interleaved with another frame; (3) a frame that cannot be queued is dropped and an
/// error returned, which the driver counts but otherwise ignores.
pub trait Transport {
    /// Queue `frame` (a complete encoded frame) for `to`.
    fn send(&mut self, to: NodeId, frame: &[u8]) -> Result<(), TransportError>;
}

/// A transport kept elsewhere (a `static` on a board) serves through a reference.
impl<T: Transport + ?Sized> Transport for &mut T {
    fn send(&mut self, to: NodeId, frame: &[u8]) -> Result<(), TransportError> {
        (**self).send(to, frame)
    }
}

/// A monotonic millisecond clock. Only the driver and platforms read it; the Raft core receives
/// time as an argument.
pub trait Clock {
    /// Milliseconds since an arbitrary fixed point; never goes backwards.
    fn now_ms(&self) -> u64;
}

/// A failure inside a state machine's snapshot or restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SnapshotError {
    /// The data is not a valid snapshot for this state machine.
    Malformed,
    /// The data would exceed the state machine's fixed capacity.
    Capacity,
    /// The snapshot sink or source failed.
    Io,
}

/// Where a state machine writes its snapshot.
pub trait SnapshotWriter {
    /// Append bytes to the snapshot.
    fn write(&mut self, data: &[u8]) -> Result<(), SnapshotError>;
}

/// Where a state machine reads a snapshot from.
pub trait SnapshotReader {
    /// Fill `buf` completely from the snapshot, or fail with `Malformed` at its end.
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError>;
    /// Bytes not yet read.
    fn remaining(&self) -> u64;
}

/// The replicated state machine. `apply` is called once per committed `Normal` entry, in index
/// order, on every replica; it must be deterministic and must not read a clock.
pub trait StateMachine {
    /// What applying one command produces (handed to the platform for the waiting client).
    type Output;
    /// Apply the command committed at `index`.
    fn apply(&mut self, index: LogIndex, term: Term, command: &[u8]) -> Self::Output;
    /// Note an entry that carries no command (no-op or membership change) at `index`, so that
    /// the state machine's applied index stays exact.
    fn skip(&mut self, index: LogIndex) {
        let _ = index;
    }
    /// The last applied index.
    fn applied_index(&self) -> LogIndex;
    /// Write the whole state deterministically (equal states give equal bytes).
    fn snapshot(&self, out: &mut dyn SnapshotWriter) -> Result<(), SnapshotError>;
    /// Replace the whole state with the snapshot's, covering entries up to `index`.
    fn restore(
        &mut self,
        index: LogIndex,
        src: &mut dyn SnapshotReader,
    ) -> Result<(), SnapshotError>;
    /// Called on the leader when it gains or loses leadership of `term`; a state machine that
    /// proposes housekeeping (such as TTL expiry) starts or stops here.
    fn on_leadership(&mut self, leader: bool, term: Term, leader_id: NodeId) {
        let _ = (leader, term, leader_id);
    }
}

/// Inside the `impl StateMachine` of a wrapper, forward the named methods to its field
/// `$inner` unchanged, so that the impl spells out only what the wrapper adds (Rust has no
/// delegation; this writes the forwarding once).
///
/// ```
/// use shoal_core::io::{SnapshotError, SnapshotReader, SnapshotWriter, StateMachine};
/// use shoal_core::{LogIndex, Term};
///
/// /// Counts the commands applied by the state machine it wraps.
/// struct Counting<S> {
///     inner: S,
///     applied: u64,
/// }
///
/// impl<S: StateMachine> StateMachine for Counting<S> {
///     type Output = S::Output;
///     fn apply(&mut self, index: LogIndex, term: Term, command: &[u8]) -> S::Output {
///         self.applied += 1;
///         self.inner.apply(index, term, command)
///     }
///     shoal_core::forward_state_machine!(inner: skip, applied_index, snapshot, restore);
/// }
/// ```
#[macro_export]
macro_rules! forward_state_machine {
    ($inner:ident: $($method:ident),+ $(,)?) => {
        $( $crate::forward_state_machine!(@$method $inner); )+
    };
    (@skip $inner:ident) => {
        fn skip(&mut self, index: $crate::LogIndex) {
            self.$inner.skip(index)
        }
    };
    (@applied_index $inner:ident) => {
        fn applied_index(&self) -> $crate::LogIndex {
            self.$inner.applied_index()
        }
    };
    (@snapshot $inner:ident) => {
        fn snapshot(
            &self,
            out: &mut dyn $crate::io::SnapshotWriter,
        ) -> ::core::result::Result<(), $crate::io::SnapshotError> {
            self.$inner.snapshot(out)
        }
    };
    (@restore $inner:ident) => {
        fn restore(
            &mut self,
            index: $crate::LogIndex,
            src: &mut dyn $crate::io::SnapshotReader,
        ) -> ::core::result::Result<(), $crate::io::SnapshotError> {
            self.$inner.restore(index, src)
        }
    };
    (@on_leadership $inner:ident) => {
        fn on_leadership(&mut self, leader: bool, term: $crate::Term, leader_id: $crate::NodeId) {
            self.$inner.on_leadership(leader, term, leader_id)
        }
    };
}
