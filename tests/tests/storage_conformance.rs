//! `MemStorage` against the shared storage conformance suite of `shoal-core`, plus proof that
//! the suite fails storages that break the durability contract.

use shoal_core::conformance::{self, Harness};
use shoal_core::entry::EntryRef;
use shoal_core::storage::{LogView, ReadEntries, Storage, StorageError};
use shoal_core::types::{HardState, LogIndex, SnapshotMeta, Term};
use shoal_tests::memstore::MemStorage;

/// Runs the suite on the simulator's storage.
struct MemHarness;

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
        Some((location, s.reopen()))
    }
}

#[test]
fn memstorage_passes_the_conformance_suite() {
    conformance::run_all(&mut MemHarness);
}

#[test]
fn memstorage_passes_the_crash_checks_over_many_seeds() {
    conformance::run_crash_checks(&mut MemHarness, 1000..1200);
}

/// A storage whose power cut loses synced writes too: as if `sync` lied.
struct LyingSync;

impl Harness for LyingSync {
    type S = MemStorage;

    fn fresh(&mut self) -> MemStorage {
        MemStorage::new()
    }

    fn reopen(&mut self, s: MemStorage) -> MemStorage {
        MemHarness.reopen(s)
    }

    fn crash(&mut self, _s: MemStorage, _seed: u64) -> MemStorage {
        MemStorage::new()
    }
}

#[test]
#[should_panic(expected = "crash_keeps_synced_entries_and_a_prefix")]
fn suite_catches_a_sync_that_lies() {
    conformance::crash_keeps_synced_entries_and_a_prefix(&mut LyingSync, 1);
}

/// A storage that answers `term` past the end of the log with 0 instead of `Unavailable`.
struct SloppyTerm(MemStorage);

impl LogView for SloppyTerm {
    fn snapshot_index(&self) -> LogIndex {
        self.0.snapshot_index()
    }
    fn last_index(&self) -> LogIndex {
        self.0.last_index()
    }
    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        self.0.term(index).or(Ok(0))
    }
}

impl Storage for SloppyTerm {
    fn hard_state(&self) -> HardState {
        self.0.hard_state()
    }
    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.0.save_hard_state(hs)
    }
    fn append(&mut self, entry: &EntryRef<'_>) -> Result<(), StorageError> {
        self.0.append(entry)
    }
    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.0.truncate_suffix(from)
    }
    fn compact_prefix(&mut self, upto: LogIndex) -> Result<(), StorageError> {
        self.0.compact_prefix(upto)
    }
    fn read_entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        buf: &mut [u8],
    ) -> Result<ReadEntries, StorageError> {
        self.0.read_entries(lo, hi, buf)
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        self.0.sync()
    }
    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.0.snapshot_meta()
    }
    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.0.snapshot_begin(meta)
    }
    fn snapshot_write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.0.snapshot_write(offset, data)
    }
    fn snapshot_finish(&mut self) -> Result<(), StorageError> {
        self.0.snapshot_finish()
    }
    fn snapshot_read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        self.0.snapshot_read(offset, buf)
    }
}

struct SloppyHarness;

impl Harness for SloppyHarness {
    type S = SloppyTerm;

    fn fresh(&mut self) -> SloppyTerm {
        SloppyTerm(MemStorage::new())
    }

    fn reopen(&mut self, s: SloppyTerm) -> SloppyTerm {
        SloppyTerm(MemHarness.reopen(s.0))
    }

    fn crash(&mut self, s: SloppyTerm, seed: u64) -> SloppyTerm {
        SloppyTerm(s.0.crash(seed))
    }
}

/// A storage whose recovery drops everything after a bad record as if it were a torn tail.
struct ForgivingRecovery;

impl Harness for ForgivingRecovery {
    type S = MemStorage;

    fn fresh(&mut self) -> MemStorage {
        MemStorage::new()
    }

    fn reopen(&mut self, s: MemStorage) -> MemStorage {
        MemHarness.reopen(s)
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
#[should_panic(expected = "recovery accepted a damaged log")]
fn suite_catches_recovery_that_hides_corruption() {
    conformance::corruption_is_reported(&mut ForgivingRecovery, 5);
}

#[test]
#[should_panic(expected = "term_lookups")]
fn suite_catches_a_made_up_term() {
    conformance::term_lookups(&mut SloppyHarness);
}
