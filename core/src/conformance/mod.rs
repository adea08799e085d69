//! The shared storage conformance suite: one set of checks that every [`Storage`] must pass.
//!
//! The file storage (`shoal-std`), the NOR-flash storage (`shoal-embedded`, run on the host over a
//! flash fake) and the simulator's `MemStorage` all run these same checks, so "durable" means the
//! same thing everywhere. Each numbered rule of the durability contract in [`crate::storage`] has
//! at least one check here; `run_all` runs every check, and each check is public so that a failing
//! one can be run alone.
//!
//! The suite is `no_std` and never allocates: it remembers what it wrote as terms in fixed arrays
//! and regenerates each payload from its `(index, term)`, so a check can verify every byte read
//! back without keeping a copy. A failure panics with the check's name, the index or offset, and
//! the crash seed, which is all that is needed to replay it.
//!
//! How crashes are judged: after a power cut, the log must equal the durable log plus a *prefix*
//! of the log writes (appends and truncations) made since the last `sync` (rules 2, 4 and 5), and
//! the hard state must be the synced one or one saved after it (rule 1). The hard state may live
//! in a separate file from the log, so the suite does not require it to be ordered with the log
//! writes.

use crate::entry;
use crate::storage::{Storage, StorageError};

mod crash;
mod data;
mod log;
mod snapshot;

pub use crash::*;
pub use log::*;
pub use snapshot::*;

/// Largest entry payload the suite writes. Sizes the suite's stack buffers.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// The read buffer the suite hands to `read_entries`: room for a few of the largest entries.
const READ_BUF_BYTES: usize = 3 * (MAX_PAYLOAD_BYTES + entry::MAX_HEADER_BYTES);
/// Most log indices the crash model tracks (it keeps one term per index).
const MODEL_CAP: usize = 256;
/// Most log writes the crash model remembers between two syncs.
const MAX_OPS: usize = 48;

/// How much a storage can hold, so that a small medium can scale the heavy checks down.
///
/// Lower a value only when the medium physically cannot hold the default (for example a flash
/// fake of a few sectors), and say so where the harness is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Payload size of the "large entry" checks (at most [`MAX_PAYLOAD_BYTES`]).
    pub large_entry_bytes: usize,
    /// Entries written by the "many entries" check.
    pub many_entries: u64,
    /// Crash seeds each crash check runs over in [`run_all`].
    pub crash_seeds: u64,
}

impl Limits {
    /// The defaults: 4 KiB entries, 4000 entries, 12 crash seeds.
    pub const DEFAULT: Limits = Limits {
        large_entry_bytes: 4096,
        many_entries: 4000,
        crash_seeds: 12,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How the suite creates, restarts and power-cuts one implementation's storage.
pub trait Harness {
    /// The storage under test.
    type S: Storage;

    /// A new, empty storage: no entries, no snapshot, a default hard state.
    fn fresh(&mut self) -> Self::S;

    /// A clean shutdown and restart: close `s` and open it again from its medium, running the
    /// same recovery as after a crash. Everything synced must survive; writes made since the last
    /// sync may survive, as a prefix (a clean shutdown is never worse than a crash).
    fn reopen(&mut self, s: Self::S) -> Self::S;

    /// A power cut, then recovery. Everything synced survives; of the writes since the last sync
    /// a prefix survives (rule 4) and the last kept one may be torn; a partly written snapshot is
    /// lost. `seed` chooses which of these outcomes happens, so a failure replays exactly.
    fn crash(&mut self, s: Self::S, seed: u64) -> Self::S;

    /// Rule 8 hook: flip one bit of a durable log record that is not the last one (chosen by
    /// `seed`), then reopen. Returns the location recovery must name (the damaged record's start,
    /// in the implementation's own terms) and the result of that recovery. `None` means this
    /// medium cannot inject damage, and the rule-8 check is skipped.
    fn rot_and_reopen(
        &mut self,
        s: Self::S,
        seed: u64,
    ) -> Option<(u64, Result<Self::S, StorageError>)> {
        let _ = (s, seed);
        None
    }

    /// What this medium can hold; see [`Limits`].
    fn limits(&self) -> Limits {
        Limits::DEFAULT
    }
}

/// Run every check, the crash checks over `limits().crash_seeds` seeds each.
pub fn run_all<H: Harness>(h: &mut H) {
    let limits = h.limits();
    assert!(
        limits.large_entry_bytes <= MAX_PAYLOAD_BYTES,
        "Limits::large_entry_bytes {} exceeds the suite's MAX_PAYLOAD_BYTES {}",
        limits.large_entry_bytes,
        MAX_PAYLOAD_BYTES
    );
    fresh_storage_is_empty(h);
    hard_state_round_trip(h);
    append_must_be_contiguous(h);
    term_lookups(h);
    read_entries_round_trip(h);
    read_entries_respects_the_buffer(h);
    read_entries_out_of_range(h);
    truncate_suffix_then_append(h);
    truncate_suffix_edges(h);
    snapshot_round_trip(h);
    snapshot_operations_out_of_order(h);
    snapshot_begin_replaces_a_partial_one(h);
    snapshot_keeps_a_matching_log(h);
    snapshot_empties_a_log_without_its_last_entry(h);
    compact_prefix_never_passes_the_snapshot(h);
    partial_snapshot_is_discarded_on_reopen(h);
    large_entries(h);
    many_entries(h);
    run_crash_checks(h, 0..limits.crash_seeds);
}

/// Run every crash check once per seed in `seeds`.
pub fn run_crash_checks<H: Harness>(h: &mut H, seeds: core::ops::Range<u64>) {
    for seed in seeds {
        crash_keeps_synced_entries_and_a_prefix(h, seed);
        crash_orders_truncation_before_replacement(h, seed);
        crash_never_rolls_hard_state_back(h, seed);
        crash_keeps_a_commit_hint_whole_or_not_at_all(h, seed);
        crash_discards_a_partial_snapshot(h, seed);
        crash_after_snapshot_finish_keeps_it(h, seed);
        crash_with_large_entries(h, seed);
        crash_workload(h, seed);
        corruption_is_reported(h, seed);
    }
}
