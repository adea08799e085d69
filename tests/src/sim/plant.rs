//! The planted bugs the simulator can run with, each proving that some check of the simulator
//! catches its kind of mistake (`tests/tests/mutants.rs` requires each to be caught by a seed;
//! `lease-ignores-clock` is caught by the paused-leader scenario in `cluster.rs`).
//!
//! The core's bugs are planted through its [`Plant`] hooks: every simulated node of a run is
//! built with a [`SimPlant`] that carries the run's choice, so nothing is switched on for a
//! whole process and runs with different bugs can share one. DtKV's bug is planted in front
//! of it, in the simulator's state machine wrapper, and the storage's in the node's simulated
//! storage. A server never contains either: it runs
//! the core's `NoPlant`, and these names exist only in this crate.

use shoal_core::plant::Plant;
use shoal_core::LogIndex;

/// One planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum PlantedBug {
    /// See [`Plant::vote_not_persisted`].
    VoteNotPersisted,
    /// See [`Plant::commit_by_counting`].
    CommitByCounting,
    /// See [`Plant::skip_truncate`].
    SkipTruncate,
    /// See [`Plant::read_without_quorum`].
    ReadWithoutQuorum,
    /// DtKV applies a retried write again: its session table never sees the retry (see
    /// [`SimPlant::rewrite_command`]).
    KvDedupIgnored,
    /// DtKV applies only the first half of each branch of a transaction (see
    /// [`SimPlant::rewrite_command`]).
    KvTxnHalf,
    /// The simulated storage skips the CRC check of the records it reads back, handing the
    /// node whatever bytes a bad read returned (see [`SimPlant::unchecked_reads`]).
    ReadUnchecked,
    /// See [`Plant::lease_ignores_clock`]: a paused leader that resumes behind a new one
    /// serves stale lease reads.
    LeaseIgnoresClock,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 8] = [
        PlantedBug::VoteNotPersisted,
        PlantedBug::CommitByCounting,
        PlantedBug::SkipTruncate,
        PlantedBug::ReadWithoutQuorum,
        PlantedBug::KvDedupIgnored,
        PlantedBug::KvTxnHalf,
        PlantedBug::ReadUnchecked,
        PlantedBug::LeaseIgnoresClock,
    ];

    /// The name `--mutant` takes.
    pub const fn name(self) -> &'static str {
        NAMES[self as usize]
    }

    /// The bug called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|b| b.name() == name)
    }
}

// `NAMES`: the names of every planted bug, in the order of `PlantedBug::ALL`, as
// `--list-mutants` prints them. In a file of their own so that shoald's test can check that
// none of them is in the server binary (platform-std/tests/no_planted_bugs.rs).
include!("plant_names.rs");

/// The planted bug one simulated node runs with, if any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimPlant(pub Option<PlantedBug>);

impl SimPlant {
    fn is(self, bug: PlantedBug) -> bool {
        self.0 == Some(bug)
    }

    /// With `read-unchecked`, the node's simulated storage hands back what it reads without
    /// checking its CRC (planted in the storage, which is where that check lives).
    pub fn unchecked_reads(self) -> bool {
        self.is(PlantedBug::ReadUnchecked)
    }

    /// The DtKV command committed at `index` as its state machine sees it. With
    /// `kv-dedup-ignored`: its sequence number replaced by the index, so every apply looks new
    /// to the client's session and a retry is applied twice. With `kv-txn-half`: a
    /// transaction's branches cut to their first half (rounded up), as if the replica stopped
    /// halfway through. `None` leaves the command as it is.
    pub fn rewrite_command(self, index: LogIndex, command: &[u8]) -> Option<Vec<u8>> {
        if self.is(PlantedBug::KvTxnHalf) {
            return half_txn(command);
        }
        if !self.is(PlantedBug::KvDedupIgnored) {
            return None;
        }
        let mut cmd = shoal_kv::Command::decode(command).ok()?;
        if cmd.client_id == 0 {
            return None;
        }
        cmd.seq = index;
        let mut buf = vec![0u8; command.len() + 16];
        let n = cmd.encode(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }
}

/// A transaction command with each branch cut to its first half; `None` for anything else or a
/// transaction with nothing to cut.
fn half_txn(command: &[u8]) -> Option<Vec<u8>> {
    let mut cmd = shoal_kv::Command::decode(command).ok()?;
    let shoal_kv::Op::Txn(txn) = cmd.op else {
        return None;
    };
    if txn.success.len() < 2 && txn.failure.len() < 2 {
        return None;
    }
    fn half<'a>(b: shoal_kv::Batch<'a, shoal_kv::TxnOp<'a>>) -> Vec<shoal_kv::TxnOp<'a>> {
        b.iter().take(b.len().div_ceil(2)).collect()
    }
    let compares: Vec<_> = txn.compares.iter().collect();
    let (success, failure) = (half(txn.success), half(txn.failure));
    cmd.op = shoal_kv::Op::Txn(shoal_kv::Txn {
        compares: shoal_kv::Batch::new(&compares),
        success: shoal_kv::Batch::new(&success),
        failure: shoal_kv::Batch::new(&failure),
    });
    let mut buf = vec![0u8; command.len() + 16];
    let n = cmd.encode(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

impl Plant for SimPlant {
    fn vote_not_persisted(&self) -> bool {
        self.is(PlantedBug::VoteNotPersisted)
    }
    fn commit_by_counting(&self) -> bool {
        self.is(PlantedBug::CommitByCounting)
    }
    fn skip_truncate(&self) -> bool {
        self.is(PlantedBug::SkipTruncate)
    }
    fn read_without_quorum(&self) -> bool {
        self.is(PlantedBug::ReadWithoutQuorum)
    }
    fn lease_ignores_clock(&self) -> bool {
        self.is(PlantedBug::LeaseIgnoresClock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_kv::{Command, Op};

    #[test]
    fn names_round_trip() {
        assert_eq!(NAMES.len(), PlantedBug::ALL.len());
        for bug in PlantedBug::ALL {
            assert_eq!(PlantedBug::from_name(bug.name()), Some(bug));
        }
        assert_eq!(NAMES[2], "skip-truncate");
        assert_eq!(PlantedBug::from_name("no-such-bug"), None);
    }

    #[test]
    fn only_the_kv_bug_rewrites_commands_and_only_session_ones() {
        let encode = |client_id| {
            let cmd = Command {
                client_id,
                seq: 3,
                time_ms: 1,
                op: Op::Remove { key: b"k" },
            };
            let mut buf = vec![0u8; 64];
            let n = cmd.encode(&mut buf).unwrap();
            buf.truncate(n);
            buf
        };
        let kv = SimPlant(Some(PlantedBug::KvDedupIgnored));
        let rewritten = kv.rewrite_command(42, &encode(7)).unwrap();
        let cmd = Command::decode(&rewritten).unwrap();
        assert_eq!((cmd.client_id, cmd.seq), (7, 42));
        assert_eq!(kv.rewrite_command(42, &encode(0)), None, "no session");
        assert_eq!(kv.rewrite_command(42, b"not a command"), None);
        assert_eq!(
            SimPlant(Some(PlantedBug::KvTxnHalf)).rewrite_command(42, &encode(7)),
            None,
            "only transactions are cut"
        );
        let core = SimPlant(Some(PlantedBug::SkipTruncate));
        assert_eq!(core.rewrite_command(42, &encode(7)), None);
        assert!(core.skip_truncate() && !core.commit_by_counting());
        assert!(!SimPlant::default().skip_truncate());
    }
}
