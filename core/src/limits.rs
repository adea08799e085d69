//! Every capacity and tunable of the core, with its name, unit and default.
//!
//! Compile-time maxima (`MAX_*`) size the fixed arrays inside the core. [`Config`] holds the
//! run-time values, each of which must not exceed its maximum; [`Config::validate`] says which one
//! does. Two profiles are provided: [`Config::server`] for `shoald` and [`Config::embedded`] for
//! microcontrollers. Reaching a limit at run time returns a specific error, never a panic.

/// Most distinct nodes (voters and observers, across both halves of a joint configuration)
/// a group can name.
pub const MAX_MEMBERS: usize = 9;
/// Most AppendEntries messages in flight to one peer (size of the per-peer window ring).
pub const MAX_INFLIGHT: usize = 32;
/// Most ReadIndex rounds outstanding at once (each round serves any number of client reads).
pub const MAX_READ_ROUNDS: usize = 8;
/// Most ReadIndex requests forwarded by followers that a leader keeps at once.
pub const MAX_REMOTE_READS: usize = 16;
/// Most configuration entries the core remembers that may still be truncated.
pub const MAX_PENDING_CONFIGS: usize = 4;
/// Size of the core's outgoing message queue. One call to the core produces far fewer.
pub const OUTBOX_CAPACITY: usize = 4 * MAX_MEMBERS + MAX_REMOTE_READS;

/// Run-time configuration of one Raft group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Base election timeout; each wait is drawn from `[election_timeout_ms, 2 * election_timeout_ms)`.
    pub election_timeout_ms: u64,
    /// Interval between leader heartbeats. Must be well below the election timeout.
    pub heartbeat_interval_ms: u64,
    /// Most AppendEntries messages in flight to one peer (≤ [`MAX_INFLIGHT`]).
    pub max_inflight: usize,
    /// Most entries in one AppendEntries message.
    pub max_entries_per_message: u64,
    /// Most payload bytes in one AppendEntries message (the platform's send buffer bounds it too).
    pub max_bytes_per_message: usize,
    /// Most entries proposed but not yet committed; beyond this `propose` returns `Busy`.
    pub max_pending_proposals: u64,
    /// Most ReadIndex rounds outstanding (≤ [`MAX_READ_ROUNDS`]).
    pub max_read_rounds: usize,
    /// Take a snapshot after this many applied entries since the last one (0 = never by count).
    pub snapshot_entries: u64,
    /// Take a snapshot after this much time if anything was applied since the last one (0 = never).
    pub snapshot_interval_ms: u64,
    /// Entries kept behind a snapshot so that slightly lagging followers need no snapshot.
    pub snapshot_keep_entries: u64,
    /// While the commit index advances, save it with the hard state at most this often (0 = only
    /// when the term or vote changes and with snapshots). The saved index is a hint: a restarted
    /// node applies up to it at once, and an offline export of a stopped node holds every write
    /// it covers. Each save is one small hard-state write, so flash-backed nodes keep it long.
    pub commit_hint_interval_ms: u64,
    /// Bytes of snapshot data per InstallSnapshot chunk.
    pub snapshot_chunk_bytes: usize,
    /// Enable PreVote (a trial election before raising the term).
    pub pre_vote: bool,
    /// Enable CheckQuorum (a leader not heard by a quorum within an election timeout steps down).
    pub check_quorum: bool,
    /// Safety margin for clock drift subtracted from the leader lease. It sets how much faster
    /// than the leader's a follower's clock may run while the lease stays safe
    /// ([`Config::clock_bound_ppm`]).
    pub lease_drift_margin_ms: u64,
    /// After a snapshot the storage refused (full, short of descriptors), wait this long
    /// before trying again (each try serialises the whole state machine).
    pub snapshot_retry_ms: u64,
}

impl Config {
    /// Defaults for `shoald` on a server: big batches, deep pipelines.
    pub const fn server() -> Self {
        Config {
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            max_inflight: MAX_INFLIGHT,
            max_entries_per_message: 4096,
            max_bytes_per_message: 1 << 20,
            max_pending_proposals: 1 << 20,
            max_read_rounds: MAX_READ_ROUNDS,
            snapshot_entries: 100_000,
            snapshot_interval_ms: 3_600_000,
            snapshot_keep_entries: 10_000,
            commit_hint_interval_ms: 5_000,
            snapshot_chunk_bytes: 256 * 1024,
            pre_vote: true,
            check_quorum: true,
            lease_drift_margin_ms: 50,
            snapshot_retry_ms: 10_000,
        }
    }

    /// Defaults for a microcontroller: small messages, shallow pipelines.
    pub const fn embedded() -> Self {
        Config {
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            max_inflight: 4,
            max_entries_per_message: 16,
            max_bytes_per_message: 2048,
            max_pending_proposals: 64,
            max_read_rounds: 4,
            snapshot_entries: 256,
            snapshot_interval_ms: 600_000,
            snapshot_keep_entries: 16,
            commit_hint_interval_ms: 60_000,
            snapshot_chunk_bytes: 1024,
            pre_vote: true,
            check_quorum: true,
            lease_drift_margin_ms: 50,
            snapshot_retry_ms: 10_000,
        }
    }

    /// The clock-rate bound the lease relies on, in parts per million: a follower's clock may
    /// run at most this much faster than the leader's. A leader trusts its lease for
    /// `election_timeout_ms - lease_drift_margin_ms` of its time after a heartbeat; followers
    /// refuse other candidates for `election_timeout_ms` of theirs, so the lease is safe while
    /// their rate is within `election_timeout_ms / (election_timeout_ms - lease_drift_margin_ms)`
    /// of the leader's. The leader's clock check ([`crate::raft::ClockCheck`]) uses this bound
    /// both ways. 52,631 ppm (5.3 %) with the 50 ms margin on a 1 s election timeout.
    pub const fn clock_bound_ppm(&self) -> u64 {
        self.lease_drift_margin_ms * 1_000_000
            / (self.election_timeout_ms - self.lease_drift_margin_ms)
    }

    /// Check every value against its maximum and against the others.
    pub const fn validate(&self) -> Result<(), ConfigError> {
        if self.max_inflight == 0 || self.max_inflight > MAX_INFLIGHT {
            return Err(ConfigError::MaxInflight);
        }
        if self.max_read_rounds == 0 || self.max_read_rounds > MAX_READ_ROUNDS {
            return Err(ConfigError::MaxReadRounds);
        }
        if self.heartbeat_interval_ms == 0
            || self.heartbeat_interval_ms * 2 > self.election_timeout_ms
        {
            return Err(ConfigError::HeartbeatInterval);
        }
        if self.lease_drift_margin_ms >= self.election_timeout_ms {
            return Err(ConfigError::LeaseDriftMargin);
        }
        if self.max_entries_per_message == 0 || self.max_bytes_per_message < 64 {
            return Err(ConfigError::MessageSize);
        }
        if self.snapshot_chunk_bytes == 0 {
            return Err(ConfigError::SnapshotChunk);
        }
        if self.max_pending_proposals == 0 {
            return Err(ConfigError::MaxPendingProposals);
        }
        Ok(())
    }
}

// Both profiles are valid: checked when the crate is built, not when a node starts.
const _: () = assert!(Config::server().validate().is_ok());
const _: () = assert!(Config::embedded().validate().is_ok());
// The capacities the core's fixed arrays are built from.
const _: () = {
    assert!(MAX_MEMBERS >= 1 && MAX_INFLIGHT >= 1 && MAX_READ_ROUNDS >= 1);
    // A membership's node sets are encoded with a one-byte length (see `MAX_CONFIG_BYTES`).
    assert!(MAX_MEMBERS <= 127);
    // Configurations that may still be cut: the committed one and those after it.
    assert!(MAX_PENDING_CONFIGS >= 2);
    // Every peer can be sent a heartbeat and an append, and every forwarded read answered,
    // from one outbox.
    assert!(OUTBOX_CAPACITY >= 2 * (MAX_MEMBERS - 1) + MAX_REMOTE_READS);
};

impl Default for Config {
    fn default() -> Self {
        Self::server()
    }
}

/// Which [`Config`] value is out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// `max_inflight` must be in `1..=MAX_INFLIGHT`.
    MaxInflight,
    /// `max_read_rounds` must be in `1..=MAX_READ_ROUNDS`.
    MaxReadRounds,
    /// `heartbeat_interval_ms` must be non-zero and at most half the election timeout.
    HeartbeatInterval,
    /// `lease_drift_margin_ms` must be below the election timeout.
    LeaseDriftMargin,
    /// `max_entries_per_message` must be ≥ 1 and `max_bytes_per_message` ≥ 64.
    MessageSize,
    /// `snapshot_chunk_bytes` must be non-zero.
    SnapshotChunk,
    /// `max_pending_proposals` must be non-zero.
    MaxPendingProposals,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            ConfigError::MaxInflight => "max_inflight must be between 1 and MAX_INFLIGHT (32)",
            ConfigError::MaxReadRounds => {
                "max_read_rounds must be between 1 and MAX_READ_ROUNDS (8)"
            }
            ConfigError::HeartbeatInterval => {
                "heartbeat_interval_ms must be non-zero and at most half of election_timeout_ms"
            }
            ConfigError::LeaseDriftMargin => {
                "lease_drift_margin_ms must be below election_timeout_ms"
            }
            ConfigError::MessageSize => {
                "max_entries_per_message must be at least 1 and max_bytes_per_message at least 64"
            }
            ConfigError::SnapshotChunk => "snapshot_chunk_bytes must be non-zero",
            ConfigError::MaxPendingProposals => "max_pending_proposals must be non-zero",
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_valid() {
        assert_eq!(Config::server().validate(), Ok(()));
        assert_eq!(Config::embedded().validate(), Ok(()));
    }

    #[test]
    fn the_clock_bound_follows_the_lease_margin() {
        assert_eq!(Config::server().clock_bound_ppm(), 52_631);
        let mut c = Config::server();
        c.election_timeout_ms = 150;
        c.lease_drift_margin_ms = 15;
        assert_eq!(c.clock_bound_ppm(), 111_111);
    }

    #[test]
    fn each_bad_value_is_named() {
        let mut c = Config::server();
        c.max_inflight = MAX_INFLIGHT + 1;
        assert_eq!(c.validate(), Err(ConfigError::MaxInflight));
        let mut c = Config::server();
        c.heartbeat_interval_ms = c.election_timeout_ms;
        assert_eq!(c.validate(), Err(ConfigError::HeartbeatInterval));
        let mut c = Config::server();
        c.max_read_rounds = 0;
        assert_eq!(c.validate(), Err(ConfigError::MaxReadRounds));
        let mut c = Config::server();
        c.lease_drift_margin_ms = c.election_timeout_ms;
        assert_eq!(c.validate(), Err(ConfigError::LeaseDriftMargin));
    }
}
