//! Targeted tests of `FlashStorage`: corruption is reported with its address, a full ring is
//! refused without overwriting anything, wear moves around the ring, limits give clear errors,
//! and flashes with a read size above one byte work.

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use shoal_core::entry::{decode, EntryRef};
use shoal_core::membership::Membership;
use shoal_core::storage::{LogView, Storage, StorageError};
use shoal_core::types::{HardState, SnapshotMeta};
use shoal_embedded::flash::sim::{SimError, SimFlash};
use shoal_embedded::flash::{FlashStorage, Layout, LayoutError, OpenError};

const E: usize = 256;
type Sim = SimFlash<Vec<u8>, E, 4>;
type Store = FlashStorage<Sim, 8>;
const LAYOUT: Layout = Layout::new(0, 2 + 2 + 8, 1);
const LOG_BASE: u32 = 4 * E as u32;

fn fresh() -> Store {
    FlashStorage::format(Sim::new(vec![0; 12 * E]), LAYOUT).expect("format")
}

fn append(s: &mut Store, index: u64, term: u64, len: usize) -> Result<(), StorageError> {
    let data = vec![(index as u8).wrapping_mul(31); len];
    s.append(&EntryRef::normal(index, term, &data))
}

/// A new store holding the synced entries `1..=last` of term 1, `len` bytes each.
fn synced_log(last: u64, len: usize) -> Store {
    let mut s = fresh();
    for i in 1..=last {
        append(&mut s, i, 1, len).expect("append");
    }
    s.sync().expect("sync");
    s
}

fn check(s: &Store, lo: u64, hi: u64, term: u64, len: usize) {
    let mut buf = [0u8; 512];
    for i in lo..=hi {
        let r = s.read_entries(i, i, &mut buf).expect("read");
        let (e, _) = decode(&buf[..r.bytes]).expect("decode");
        assert_eq!((e.index, e.term), (i, term));
        assert_eq!(e.data, vec![(i as u8).wrapping_mul(31); len].as_slice());
    }
}

fn meta(index: u64, term: u64, size: u64) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term,
        membership: Membership::new(&[1], &[]).expect("membership"),
        size_bytes: size,
        crc: 0,
    }
}

fn install(s: &mut Store, index: u64, term: u64, size: u64) {
    s.snapshot_begin(&meta(index, term, size)).expect("begin");
    s.snapshot_write(0, &vec![7u8; size as usize])
        .expect("write");
    s.snapshot_finish().expect("finish");
}

fn reopen(s: Store) -> Result<Store, OpenError> {
    FlashStorage::open(s.into_flash(), LAYOUT)
}

fn corrupt_at(r: Result<Store, OpenError>) -> u64 {
    match r {
        Err(OpenError::Storage(StorageError::Corrupt { location })) => location,
        Err(e) => panic!("expected Corrupt, got {:?}", e),
        Ok(_) => panic!("expected Corrupt, recovery succeeded"),
    }
}

#[test]
fn an_erased_partition_opens_empty() {
    let s: Store = FlashStorage::open(Sim::new(vec![0; 12 * E]), LAYOUT).expect("open");
    assert_eq!(s.last_index(), 0);
    assert_eq!(s.hard_state(), HardState::default());
    assert_eq!(s.snapshot_meta(), None);
}

#[test]
fn damage_in_synced_log_data_is_corrupt_with_its_address() {
    let s = synced_log(20, 30);
    assert!(s.ring_usage().live_sectors >= 3);
    let mut flash = s.into_flash();
    // A bit flip inside the first record of the first ring sector (not the tail).
    let at = LOG_BASE as usize + 60;
    flash.bytes_mut()[at] ^= 0x10;
    let loc = corrupt_at(FlashStorage::<Sim, 8>::open(flash.clone(), LAYOUT));
    assert!(
        (LOG_BASE as u64..LOG_BASE as u64 + E as u64).contains(&loc),
        "location {:#x} is not in the damaged sector",
        loc
    );
    assert!(loc <= at as u64);
}

#[test]
fn damage_before_the_last_record_of_the_tail_is_corrupt_not_torn() {
    let s = synced_log(3, 20);
    let mut flash = s.into_flash();
    // Entry 1 is the first record after the sector header; entries 2 and 3 follow it.
    let at = LOG_BASE as usize + 48;
    flash.bytes_mut()[at] ^= 0x01;
    let loc = corrupt_at(FlashStorage::<Sim, 8>::open(flash, LAYOUT));
    assert!(loc <= at as u64 && loc >= LOG_BASE as u64);
}

#[test]
fn damage_in_hard_state_and_snapshot_is_corrupt() {
    let mut s = fresh();
    for t in 1..=5 {
        s.save_hard_state(&HardState {
            term: t,
            vote: 1,
            commit: 0,
        })
        .expect("save");
        s.sync().expect("sync");
    }
    append(&mut s, 1, 5, 10).expect("append");
    install(&mut s, 1, 5, 100);
    let flash = s.into_flash();
    // The second hard-state record (records are 16 bytes at 4-byte words).
    let mut f = flash.clone();
    f.bytes_mut()[20] ^= 0x80;
    assert_eq!(corrupt_at(FlashStorage::<Sim, 8>::open(f, LAYOUT)), 16);
    // Snapshot data of the current slot.
    let mut f = flash.clone();
    let slot0 = 2 * E;
    f.bytes_mut()[slot0 + 100] ^= 0x04;
    let loc = corrupt_at(FlashStorage::<Sim, 8>::open(f, LAYOUT));
    assert!((slot0 as u64..slot0 as u64 + E as u64).contains(&loc));
}

#[test]
fn a_full_ring_refuses_appends_and_compaction_frees_it() {
    let mut s = fresh();
    let mut last = 0;
    loop {
        match append(&mut s, last + 1, 1, 40) {
            Ok(()) => last += 1,
            Err(StorageError::Full) => break,
            Err(e) => panic!("append: {:?}", e),
        }
    }
    let usage = s.ring_usage();
    assert_eq!(
        usage.live_sectors,
        usage.sectors - 1,
        "one sector stays free"
    );
    check(&s, 1, last, 1, 40);
    // Full changes nothing, survives a restart, and truncation still fits nowhere new.
    let mut s = reopen(s).expect("reopen");
    check(&s, 1, last, 1, 40);
    assert_eq!(append(&mut s, last + 1, 1, 40), Err(StorageError::Full));
    install(&mut s, last - 3, 1, 50);
    s.compact_prefix(last - 3).expect("compact");
    append(&mut s, last + 1, 1, 40).expect("room after compaction");
    check(&s, last - 2, last + 1, 1, 40);
}

#[test]
fn wear_moves_around_the_ring() {
    let mut s = fresh();
    let mut last = 0u64;
    for round in 0..400u64 {
        for _ in 0..5 {
            append(&mut s, last + 1, 1, 30).expect("append");
            last += 1;
        }
        s.sync().expect("sync");
        if round % 4 == 3 {
            install(&mut s, last - 2, 1, 16);
            s.compact_prefix(last - 2).expect("compact");
        }
    }
    let counts = s.flash_mut().erase_counts().to_vec();
    let ring = &counts[4..];
    let (lo, hi) = (ring.iter().min().unwrap(), ring.iter().max().unwrap());
    assert!(hi - lo <= 1, "ring wear is uneven: {:?}", ring);
    assert!(*lo > 50, "the ring did not turn: {:?}", ring);
}

#[test]
fn limits_give_clear_errors() {
    let mut s = fresh();
    let max = s.max_entry_bytes();
    // The largest payload that fits next to entry 1's 5-byte header (the length takes two).
    append(&mut s, 1, 1, max - 5).expect("largest entry");
    assert_eq!(
        append(&mut s, 2, 1, max - 4),
        Err(StorageError::BufferTooSmall { needed: max + 11 })
    );
    append(&mut s, 2, 1, 10).expect("the log goes on");
    check(&s, 2, 2, 1, 10);
    assert!(s.max_payload_bytes() < max);
    // A 256-byte slot cannot promise room for the largest membership's header.
    assert_eq!(s.max_snapshot_bytes(), 0);
    assert_eq!(
        s.snapshot_begin(&meta(2, 1, E as u64)),
        Err(StorageError::Full)
    );

    let open = |l: Layout| FlashStorage::<Sim, 8>::open(Sim::new(vec![0; 12 * E]), l).err();
    assert_eq!(
        open(Layout::new(100, 12, 1)),
        Some(OpenError::Layout(LayoutError::Misaligned(100)))
    );
    assert_eq!(
        open(Layout::new(0, 13, 1)),
        Some(OpenError::Layout(LayoutError::PastEnd {
            end: 13 * E as u64,
            capacity: 12 * E
        }))
    );
    assert_eq!(
        open(Layout::new(0, 5, 1)),
        Some(OpenError::Layout(LayoutError::TooFewLogSectors(1)))
    );
    assert_eq!(
        open(Layout::new(0, 12, 0)),
        Some(OpenError::Layout(LayoutError::SnapshotSlot))
    );
    let small = FlashStorage::<Sim, 4>::open(Sim::new(vec![0; 12 * E]), LAYOUT).err();
    assert_eq!(
        small,
        Some(OpenError::Layout(LayoutError::TooManyLogSectors {
            log_sectors: 8,
            max: 4
        }))
    );
}

/// A flash that reads only in aligned 8-byte units, like some memory-mapped parts.
#[derive(Clone)]
struct Read8(Sim);

impl ErrorType for Read8 {
    type Error = SimError;
}

impl ReadNorFlash for Read8 {
    const READ_SIZE: usize = 8;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        assert!(
            offset % 8 == 0 && bytes.len() % 8 == 0,
            "unaligned read {:#x}+{}",
            offset,
            bytes.len()
        );
        self.0.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl NorFlash for Read8 {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = E;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        self.0.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        self.0.write(offset, bytes)
    }
}

#[test]
fn a_read_size_above_one_byte_works() {
    let mut s: FlashStorage<Read8, 8> =
        FlashStorage::format(Read8(Sim::new(vec![0; 12 * E])), LAYOUT).expect("format");
    for i in 1..=30u64 {
        let data = vec![i as u8; (i % 13) as usize];
        s.append(&EntryRef::normal(i, 2, &data)).expect("append");
    }
    s.truncate_suffix(25).expect("truncate");
    s.save_hard_state(&HardState {
        term: 3,
        vote: 2,
        commit: 9,
    })
    .expect("save");
    s.sync().expect("sync");
    let s: FlashStorage<Read8, 8> = FlashStorage::open(s.into_flash(), LAYOUT).expect("open");
    assert_eq!(s.last_index(), 24);
    assert_eq!(s.hard_state().commit, 9);
    let mut buf = [0u8; 64];
    for i in 1..=24u64 {
        let r = s.read_entries(i, i, &mut buf).expect("read");
        let (e, _) = decode(&buf[..r.bytes]).expect("decode");
        assert_eq!(e.data, vec![i as u8; (i % 13) as usize].as_slice());
    }
}

#[test]
fn ram_footprint_is_small_and_fixed() {
    let flash = core::mem::size_of::<Sim>();
    let s8 = core::mem::size_of::<FlashStorage<Sim, 8>>() - flash;
    let s64 = core::mem::size_of::<FlashStorage<Sim, 64>>() - flash;
    println!(
        "FlashStorage RAM without the flash: {} B at 8 log sectors, {} B at 64",
        s8, s64
    );
    let per_sector = (s64 - s8) / 56;
    assert!(per_sector <= 40, "{} B per log sector", per_sector);
    // Two `SnapshotMeta`s (current and being written) with room for the largest membership
    // are most of the fixed part.
    assert!(s8 <= 1400, "{} B base", s8);
}
