//! Planted bugs: the places where a test build can make the core wrong on purpose, to prove
//! that the simulator's checks catch each kind of mistake.
//!
//! A group is generic over its [`Plant`], chosen per node when the node is built
//! ([`crate::driver::NodeParts::planted`]). Every hook defaults to `false`, and production
//! builds use [`NoPlant`], whose hooks are those constants: the planted code is dead there and
//! the optimiser removes it, so no feature flag or global switch can put a planted bug into a
//! server. The simulator implements `Plant` with the bug a run selects.

/// Hooks for planted bugs. Each returns whether its bug is active; all default to `false`.
pub trait Plant {
    /// A changed vote is not saved (a new term is saved with no vote), and vote grants leave
    /// before any sync: a node may vote twice in one term after a restart.
    fn vote_not_persisted(&self) -> bool {
        false
    }
    /// A leader commits an entry of an earlier term by counting its replicas, which Raft
    /// §5.4.2 forbids (the entry may still be overwritten).
    fn commit_by_counting(&self) -> bool {
        false
    }
    /// A follower treats an entry that conflicts with its own as held, instead of cutting its
    /// log there.
    fn skip_truncate(&self) -> bool {
        false
    }
    /// A leader answers a ReadIndex read at once from its own state, without confirming with
    /// a quorum that it still leads.
    fn read_without_quorum(&self) -> bool {
        false
    }
    /// A leader serves lease reads without checking by its clock that its lease still holds:
    /// once earned, the lease lasts while the node believes it leads. A leader that stood
    /// still (a stopped process, a long GC pause) while another was elected serves stale reads
    /// when it resumes, before it hears of the new term.
    fn lease_ignores_clock(&self) -> bool {
        false
    }
}

/// No planted bug: what every production node runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoPlant;

impl Plant for NoPlant {}
