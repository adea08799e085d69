//! The failure policy: how bad each error is, and what a node does about it. This is the one
//! place that decides; the driver ([`crate::driver::Node`]) applies the decision the same way
//! on every platform, so `shoald`, a board and the simulator stop for exactly the same errors.
//!
//! | severity | what it is | what the node does |
//! |---|---|---|
//! | [`Severity::Peer`] | bad input from a peer: a frame that does not decode, one for another cluster, group or node, entries that do not decode or do not continue the log, impossible terms or indexes, a request to cut a committed entry, a snapshot that does not match its checksum | drops that input, changes nothing, counts it and logs it (at most once per cause per [`FAULT_LOG_INTERVAL_MS`]) |
//! | [`Severity::Degraded`] | the medium is full, or the platform is short of file descriptors or memory for a moment; nothing was written | refuses that input or step, counts and logs it, goes on; what was refused is retried later (by the peer, or at the next flush) |
//! | [`Severity::Fatal`] | a local durability fault: a device error, local data that is corrupt, a failed sync, a state machine that cannot restore what storage holds | the driver returns the error and the node must stop |
//!
//! Nothing a peer sends can stop a node: every check of a peer's message runs before the
//! message changes anything, so a refused message leaves the node as it was.

/// How bad an error is (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Severity {
    /// A peer's input broke the protocol: it is dropped, the node goes on.
    Peer,
    /// The node cannot take this input now (its medium is full, or it is short of descriptors
    /// or memory): refused, the node goes on.
    Degraded,
    /// A local durability fault: the node must stop.
    Fatal,
}

impl Severity {
    /// The severity of an error counted under `fault`, or fatal when it has no cause to be
    /// counted under: the rule every error type of the core follows, so that an error that is
    /// not a refusal always stops the node.
    pub fn of(fault: Option<Fault>) -> Severity {
        fault.map_or(Severity::Fatal, Fault::severity)
    }
}

/// The cause of an input that was refused without stopping the node. Each cause has its own
/// counter ([`FaultCounts`]) and its own log rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Fault {
    /// A frame that does not decode: bad length or CRC, unknown version, bad header or message.
    BadFrame,
    /// A frame from another cluster.
    WrongCluster,
    /// A frame for a group this node does not run.
    WrongGroup,
    /// A frame addressed to another node.
    WrongNode,
    /// A frame that is not a Raft message where one was expected.
    NotRaft,
    /// An entry of an `Append` does not decode.
    MalformedEntries,
    /// An `Append`'s tail does not hold exactly the number of entries it declares.
    EntryCount,
    /// An `Append`'s entries do not run on from `prev_index + 1` one by one.
    NotContiguous,
    /// A term no honest leader sends: an entry newer than the leader's term, or older than the
    /// entry before it.
    ImpossibleTerm,
    /// An entry larger than any message this node accepts.
    EntryTooLarge,
    /// A configuration entry that does not decode.
    BadConfigEntry,
    /// A request to cut an entry this node knows committed.
    CommittedTruncation,
    /// A snapshot chunk past the snapshot's declared size, or a last chunk short of it.
    SnapshotSize,
    /// A received snapshot whose data does not match its CRC.
    SnapshotChecksum,
    /// A snapshot that cannot exist: index or term 0, or a term newer than its leader's.
    ImpossibleSnapshot,
    /// A second leader of this leader's own term.
    RivalLeader,
    /// The medium is full.
    StorageFull,
    /// The platform was short of file descriptors or memory; nothing was written.
    NoResources,
}

impl Fault {
    /// How many causes there are.
    pub const COUNT: usize = 18;
    /// Every cause, in counter order.
    pub const ALL: [Fault; Fault::COUNT] = [
        Fault::BadFrame,
        Fault::WrongCluster,
        Fault::WrongGroup,
        Fault::WrongNode,
        Fault::NotRaft,
        Fault::MalformedEntries,
        Fault::EntryCount,
        Fault::NotContiguous,
        Fault::ImpossibleTerm,
        Fault::EntryTooLarge,
        Fault::BadConfigEntry,
        Fault::CommittedTruncation,
        Fault::SnapshotSize,
        Fault::SnapshotChecksum,
        Fault::ImpossibleSnapshot,
        Fault::RivalLeader,
        Fault::StorageFull,
        Fault::NoResources,
    ];

    /// A short name for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Fault::BadFrame => "bad_frame",
            Fault::WrongCluster => "wrong_cluster",
            Fault::WrongGroup => "wrong_group",
            Fault::WrongNode => "wrong_node",
            Fault::NotRaft => "not_raft",
            Fault::MalformedEntries => "malformed_entries",
            Fault::EntryCount => "entry_count",
            Fault::NotContiguous => "not_contiguous",
            Fault::ImpossibleTerm => "impossible_term",
            Fault::EntryTooLarge => "entry_too_large",
            Fault::BadConfigEntry => "bad_config_entry",
            Fault::CommittedTruncation => "committed_truncation",
            Fault::SnapshotSize => "snapshot_size",
            Fault::SnapshotChecksum => "snapshot_checksum",
            Fault::ImpossibleSnapshot => "impossible_snapshot",
            Fault::RivalLeader => "rival_leader",
            Fault::StorageFull => "storage_full",
            Fault::NoResources => "no_resources",
        }
    }

    /// How bad this cause is: every cause is a peer's fault except a full medium and a
    /// platform short of resources.
    pub fn severity(self) -> Severity {
        match self {
            Fault::StorageFull | Fault::NoResources => Severity::Degraded,
            _ => Severity::Peer,
        }
    }
}

// `Fault::ALL` lists every cause once, in discriminant order (the counters index by it).
const _: () = {
    let mut i = 0;
    while i < Fault::COUNT {
        assert!(Fault::ALL[i] as usize == i);
        i += 1;
    }
};

/// How often each cause was refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts([u64; Fault::COUNT]);

impl FaultCounts {
    /// How often `fault` was refused.
    pub fn get(&self, fault: Fault) -> u64 {
        self.0[fault as usize]
    }

    /// Refusals of every cause together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Every cause with its count (for metrics).
    pub fn iter(&self) -> impl Iterator<Item = (Fault, u64)> + '_ {
        Fault::ALL.iter().map(|f| (*f, self.get(*f)))
    }
}

/// A cause is logged at most once per this interval; the next report says how many were
/// refused in between.
pub const FAULT_LOG_INTERVAL_MS: u64 = 10_000;

/// Applies the failure policy: counts what it absorbs and logs each cause at most once per
/// [`FAULT_LOG_INTERVAL_MS`]. The driver keeps one per node; a platform that refuses a frame
/// before it can tell which node it is for (it does not decode) keeps one of its own.
#[derive(Clone, Debug)]
pub struct FaultLog {
    counts: FaultCounts,
    /// When each cause was last logged (`u64::MAX`: never).
    logged_at_ms: [u64; Fault::COUNT],
    /// Refusals of each cause since it was last logged.
    unlogged: [u64; Fault::COUNT],
}

impl Default for FaultLog {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultLog {
    /// Nothing refused yet.
    pub const fn new() -> Self {
        FaultLog {
            counts: FaultCounts([0; Fault::COUNT]),
            logged_at_ms: [u64::MAX; Fault::COUNT],
            unlogged: [0; Fault::COUNT],
        }
    }

    /// The counters.
    pub fn counts(&self) -> FaultCounts {
        self.counts
    }

    /// Apply the policy to an error: a fatal one (`fault` is `None`) is handed back, and the
    /// node must stop; any other is refused under `fault` and absorbed.
    pub fn absorb<E>(&mut self, now_ms: u64, fault: Option<Fault>, err: E) -> Result<(), E> {
        match fault {
            None => Err(err),
            Some(f) => {
                self.refuse(now_ms, f);
                Ok(())
            }
        }
    }

    /// Count an input refused under `fault`, and log it unless its cause was logged within
    /// [`FAULT_LOG_INTERVAL_MS`].
    pub fn refuse(&mut self, now_ms: u64, fault: Fault) {
        let Some(also) = self.record(now_ms, fault) else {
            return;
        };
        match fault.severity() {
            Severity::Degraded => warn!(
                "input refused, node degraded: {} ({} more since the last report)",
                fault.name(),
                also
            ),
            _ => warn!(
                "peer input dropped: {} ({} more since the last report)",
                fault.name(),
                also
            ),
        }
    }

    /// Count one refusal of `fault`. Returns how many went unlogged before it when this one
    /// should be logged, `None` when the cause was logged within the interval.
    pub fn record(&mut self, now_ms: u64, fault: Fault) -> Option<u64> {
        let i = fault as usize;
        self.counts.0[i] += 1;
        let last = self.logged_at_ms[i];
        if last != u64::MAX && now_ms < last.saturating_add(FAULT_LOG_INTERVAL_MS) {
            self.unlogged[i] += 1;
            return None;
        }
        self.logged_at_ms[i] = now_ms;
        Some(core::mem::take(&mut self.unlogged[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_counted_always_and_logged_once_per_interval() {
        let mut log = FaultLog::new();
        assert_eq!(log.record(5, Fault::EntryCount), Some(0));
        assert_eq!(log.record(6, Fault::EntryCount), None);
        assert_eq!(log.record(7, Fault::EntryCount), None);
        // Another cause has its own limit.
        assert_eq!(log.record(8, Fault::BadFrame), Some(0));
        // After the interval the next one is logged, with the count it stood for.
        assert_eq!(
            log.record(5 + FAULT_LOG_INTERVAL_MS, Fault::EntryCount),
            Some(2)
        );
        assert_eq!(log.counts().get(Fault::EntryCount), 4);
        assert_eq!(log.counts().get(Fault::BadFrame), 1);
        assert_eq!(log.counts().total(), 5);
    }

    #[test]
    fn fatal_errors_are_handed_back_and_others_absorbed() {
        let mut log = FaultLog::new();
        assert_eq!(log.absorb(0, None, "device error"), Err("device error"));
        assert_eq!(log.absorb(0, Some(Fault::StorageFull), "full"), Ok(()));
        assert_eq!(log.counts().get(Fault::StorageFull), 1);
        assert_eq!(log.counts().total(), 1);
    }

    #[test]
    fn only_a_full_medium_and_missing_resources_degrade() {
        for f in Fault::ALL {
            let want = if matches!(f, Fault::StorageFull | Fault::NoResources) {
                Severity::Degraded
            } else {
                Severity::Peer
            };
            assert_eq!(f.severity(), want, "{}", f.name());
        }
    }
}
