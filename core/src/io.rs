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
