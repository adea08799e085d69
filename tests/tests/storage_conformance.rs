//! `MemStorage` against the shared storage conformance suite of `shoal-core`, directly and
//! through a `Decorated` wrapper, plus proof that the suite fails storages that break the
//! durability contract.

use shoal_core::conformance::{self, Harness};
use shoal_core::storage::{Decorated, LogView, Storage, StorageError, StorageHooks};
use shoal_core::types::{LogIndex, Term};
use shoal_tests::memstore::MemStorage;

/// Runs the suite on the simulator's storage. With `forgiving_recovery`, reopening after bit rot
/// keeps the log up to the damaged record and drops the rest as if it were a torn tail: a
/// recovery that hides corruption, which the suite must catch.
#[derive(Default)]
struct MemHarness {
    forgiving_recovery: bool,
}

impl Harness for MemHarness {
    type S = MemStorage;

    fn fresh(&mut self) -> MemStorage {
        MemStorage::new()
    }

    fn reopen(&mut self, s: MemStorage) -> MemStorage {
        match s.reopen() {
            Ok(s) => s,
            Err(e) => panic!("MemStorage: recovery after a clean shutdown failed: {}", e),
        }
    }

    fn crash(&mut self, s: MemStorage, seed: u64) -> MemStorage {
        s.crash(seed)
    }

    fn rot_and_reopen(
        &mut self,
        mut s: MemStorage,
        seed: u64,
    ) -> Option<(u64, Result<MemStorage, StorageError>)> {
        let location = s.corrupt_random_bit(seed)?;
        if !self.forgiving_recovery {
            return Some((location, s.reopen()));
        }
        let mut fresh = MemStorage::new();
        for index in 1..=s.last_index() {
            if s.record_offset(index) == Some(location) {
                break;
            }
            let mut buf = [0u8; 256];
            let r = s
                .read_entries(index, index, &mut buf)
                .expect("entry in a test log");
            let (e, _) = shoal_core::entry::decode(&buf[..r.bytes]).expect("entry just read");
            fresh.append(&e).expect("contiguous copy");
        }
        Some((location, Ok(fresh)))
    }
}

#[test]
fn memstorage_passes_the_conformance_suite() {
    conformance::run_all(&mut MemHarness::default());
}

#[test]
fn memstorage_passes_the_crash_checks_over_many_seeds() {
    conformance::run_crash_checks(&mut MemHarness::default(), 1000..1200);
}

/// Runs the suite on `MemStorage` decorated with hooks `H` (the storage under test is the
/// decorated one; reopening and power cuts act on the `MemStorage` inside).
struct DecoratedHarness<H>(H);

impl<H: StorageHooks<MemStorage> + Clone> Harness for DecoratedHarness<H> {
    type S = Decorated<MemStorage, H>;

    fn fresh(&mut self) -> Self::S {
        Decorated::new(MemHarness::default().fresh(), self.0.clone())
    }

    fn reopen(&mut self, s: Self::S) -> Self::S {
        Decorated::new(MemHarness::default().reopen(s.inner), s.hooks)
    }

    fn crash(&mut self, s: Self::S, seed: u64) -> Self::S {
        Decorated::new(MemHarness::default().crash(s.inner, seed), s.hooks)
    }

    fn rot_and_reopen(
        &mut self,
        s: Self::S,
        seed: u64,
    ) -> Option<(u64, Result<Self::S, StorageError>)> {
        let hooks = s.hooks;
        let (location, reopened) = MemHarness::default().rot_and_reopen(s.inner, seed)?;
        Some((location, reopened.map(|s| Decorated::new(s, hooks))))
    }
}

/// A decorator that changes nothing forwards every call: the decorated storage passes too.
#[test]
fn a_storage_decorated_with_no_hooks_passes_the_conformance_suite() {
    conformance::run_all(&mut DecoratedHarness(()));
}

/// A `sync` that returns `Ok` without making anything durable.
#[derive(Clone)]
struct LyingSync;

impl StorageHooks<MemStorage> for LyingSync {
    fn sync(&mut self, _inner: &mut MemStorage) -> Result<(), StorageError> {
        Ok(())
    }
}

#[test]
#[should_panic(expected = "crash_keeps_synced_entries_and_a_prefix")]
fn suite_catches_a_sync_that_lies() {
    for seed in 0..16 {
        conformance::crash_keeps_synced_entries_and_a_prefix(
            &mut DecoratedHarness(LyingSync),
            seed,
        );
    }
}

/// Answers `term` past the end of the log with 0 instead of `Unavailable`.
#[derive(Clone)]
struct SloppyTerm;

impl StorageHooks<MemStorage> for SloppyTerm {
    fn term(&self, inner: &MemStorage, index: LogIndex) -> Result<Term, StorageError> {
        inner.term(index).or(Ok(0))
    }
}

#[test]
#[should_panic(expected = "recovery accepted a damaged log")]
fn suite_catches_recovery_that_hides_corruption() {
    let mut forgiving = MemHarness {
        forgiving_recovery: true,
    };
    conformance::corruption_is_reported(&mut forgiving, 5);
}

#[test]
#[should_panic(expected = "term_lookups")]
fn suite_catches_a_made_up_term() {
    conformance::term_lookups(&mut DecoratedHarness(SloppyTerm));
}
