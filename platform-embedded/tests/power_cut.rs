//! Power-cut suite: for many seeded operation sequences, cut power after N steps (a programmed
//! word or a sector erase) for EVERY N from 0 to the sequence's total, recover, and check:
//!
//! - recovery succeeds (never `Corrupt`: a power cut is not corruption);
//! - the log is the log at the last completed sync (or snapshot install) plus a prefix of the
//!   later writes: every synced entry is present and intact, nothing is invented;
//! - entries read back byte for byte; entries at or below the snapshot are either intact or
//!   `Compacted`, never wrong;
//! - the hard state is the last synced one or a later save, never older;
//! - the snapshot is the last installed one or, if an install was in progress, the new one;
//!   its data reads back intact;
//! - the recovered storage accepts further appends, which survive a restart.
//!
//! `SHOAL_POWER_CUT_SEQUENCES` (default 200) sets how many sequences run per geometry, and
//! `SHOAL_POWER_CUT_SEED` the first seed, for a longer soak.

mod common;

use common::{apply, mix, Op};
use shoal_core::membership::Membership;
use shoal_core::storage::{LogView, Storage, StorageError};
use shoal_core::types::{EntryKind, HardState, LogIndex, SnapshotMeta, Term};
use shoal_embedded::flash::sim::SimFlash;
use shoal_embedded::flash::{FlashStorage, Layout};

fn payload(index: LogIndex, term: Term) -> Vec<u8> {
    let len = ((index * 7 + term * 3) % 41) as usize;
    (0..len)
        .map(|k| (mix(index ^ (term << 20) ^ ((k as u64) << 40)) >> 7) as u8)
        .collect()
}

fn snap_data(seed: u64, size: u64) -> Vec<u8> {
    (0..size)
        .map(|k| (mix(seed ^ (k << 32)) >> 3) as u8)
        .collect()
}

/// What the log, snapshot and hard state should be after some prefix of the operations.
#[derive(Clone, Debug, Default)]
struct Model {
    /// `log[i]` is the term of entry `i` (index 0 unused); `None` = void (replaced by a snapshot).
    log: Vec<Option<Term>>,
    last: LogIndex,
    snap: Option<(SnapshotMeta, u64)>,
    pending: Option<(SnapshotMeta, u64)>,
    hs_saved: HardState,
    hs_durable: HardState,
}

impl Model {
    fn new() -> Self {
        Model {
            log: vec![None],
            ..Default::default()
        }
    }

    fn snap_index(&self) -> LogIndex {
        self.snap.as_ref().map_or(0, |s| s.0.index)
    }

    fn term(&self, i: LogIndex) -> Option<Term> {
        self.log.get(i as usize).copied().flatten()
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append { index, term, .. } => {
                let i = *index as usize;
                if self.log.len() <= i {
                    self.log.resize(i + 1, None);
                }
                self.log[i] = Some(*term);
                self.last = *index;
            }
            Op::Truncate(from) => self.last = self.last.min(from - 1),
            Op::SaveHardState(hs) => self.hs_saved = *hs,
            Op::Sync => self.hs_durable = self.hs_saved,
            Op::Compact(_) | Op::SnapWrite(..) => {}
            Op::SnapBegin(meta) => {
                let seed = meta.crc as u64;
                self.pending = Some((meta.clone(), seed));
            }
            Op::SnapFinish => {
                self.hs_durable = self.hs_saved;
                let (meta, seed) = self.pending.take().expect("finish follows begin");
                let keeps = self.last >= meta.index && self.term(meta.index) == Some(meta.term);
                if !keeps {
                    for i in 1..=meta.index as usize {
                        if i < self.log.len() {
                            self.log[i] = None;
                        }
                    }
                    self.last = meta.index;
                }
                self.snap = Some((meta, seed));
            }
        }
    }
}

/// One geometry under test.
trait Rig {
    type S: Storage;
    fn format() -> Self::S;
    fn steps(s: &mut Self::S) -> u64;
    fn cut(s: &mut Self::S, steps: u64, seed: u64);
    fn is_cut(s: &mut Self::S) -> bool;
    fn recover(s: Self::S) -> Result<Self::S, String>;
    fn erase_counts(s: &mut Self::S) -> Vec<u32>;
}

macro_rules! rig {
    ($name:ident, $e:expr, $w:expr, $n:expr, $layout:expr) => {
        struct $name;
        impl Rig for $name {
            type S = FlashStorage<SimFlash<Vec<u8>, $e, $w>, $n>;
            fn format() -> Self::S {
                let l: Layout = $layout;
                let flash = SimFlash::new(vec![0; l.sectors as usize * $e]);
                FlashStorage::format(flash, l).expect("format")
            }
            fn steps(s: &mut Self::S) -> u64 {
                s.flash_mut().steps()
            }
            fn cut(s: &mut Self::S, steps: u64, seed: u64) {
                s.flash_mut().cut_after(steps, seed)
            }
            fn is_cut(s: &mut Self::S) -> bool {
                s.flash_mut().is_cut()
            }
            fn erase_counts(s: &mut Self::S) -> Vec<u32> {
                s.flash_mut().erase_counts().to_vec()
            }
            fn recover(s: Self::S) -> Result<Self::S, String> {
                let mut flash = s.into_flash();
                flash.restore_power();
                FlashStorage::open(flash, $layout).map_err(|e| format!("{}", e))
            }
        }
    };
}

// 256-byte sectors and 8 ring sectors: a handful of entries per sector, so the ring turns,
// hard-state sectors rotate and snapshots replace the log many times in one sequence.
rig!(Small4, 256, 4, 8, Layout::new(0, 2 + 2 + 8, 1));
// 512-byte sectors, 16-byte program words (padding and partial words matter more).
rig!(Small16, 512, 16, 6, Layout::new(0, 2 + 2 + 6, 1));

/// The reference run: operations, what each returned, steps after each, models after each.
struct Script {
    ops: Vec<Op>,
    results: Vec<Result<(), StorageError>>,
    steps_after: Vec<u64>,
    /// `models[k]` is the model after `k` operations.
    models: Vec<Model>,
    base_steps: u64,
    /// Erases per sector at the end of the reference run.
    wear: Vec<u32>,
}

fn build_script<R: Rig>(seed: u64, len: usize) -> Script {
    let mut s = R::format();
    let base_steps = R::steps(&mut s);
    let mut rng = mix(seed);
    let mut next = move |n: u64| {
        rng = mix(rng);
        rng % n.max(1)
    };
    let mut sc = Script {
        ops: Vec::new(),
        results: Vec::new(),
        steps_after: Vec::new(),
        models: vec![Model::new()],
        base_steps,
        wear: Vec::new(),
    };
    let mut term: Term = 1;
    let mut run = |s: &mut R::S, sc: &mut Script, op: Op| -> Result<(), StorageError> {
        let r = apply(s, &op);
        let mut m = sc.models.last().expect("initial model").clone();
        if r.is_ok() {
            m.apply(&op);
        } else if matches!(op, Op::SnapFinish) {
            m.pending = None;
        }
        sc.ops.push(op);
        sc.results.push(r);
        sc.steps_after.push(R::steps(s));
        sc.models.push(m);
        r
    };
    let mut snap_seed = seed << 16;
    while sc.ops.len() < len {
        let m = sc.models.last().expect("model").clone();
        let roll = next(100);
        if roll < 55 {
            let index = m.last + 1;
            let op = Op::Append {
                index,
                term,
                kind: EntryKind::Normal,
                data: payload(index, term),
            };
            if run(&mut s, &mut sc, op) == Err(StorageError::Full) {
                // Make room the way a node would: snapshot what is there and compact.
                let m = sc.models.last().expect("model").clone();
                if m.last > m.snap_index() {
                    if let Some(t) = m.term(m.last) {
                        snap_seed += 1;
                        snapshot(&mut s, &mut sc, &mut run, m.last, t, snap_seed, &mut next);
                    }
                }
                let si = sc.models.last().expect("model").snap_index();
                let _ = run(&mut s, &mut sc, Op::Compact(si));
            }
        } else if roll < 60 {
            let lo = m.snap_index() + 1;
            if m.last >= lo {
                let from = lo + next(m.last - lo + 1);
                let _ = run(&mut s, &mut sc, Op::Truncate(from));
                term += 1;
            }
        } else if roll < 74 {
            let hs = HardState {
                term,
                vote: next(4),
                commit: next(m.last + 1),
            };
            let _ = run(&mut s, &mut sc, Op::SaveHardState(hs));
        } else if roll < 86 {
            let _ = run(&mut s, &mut sc, Op::Sync);
        } else if roll < 91 {
            let lo = m.snap_index() + 1;
            if m.last >= lo {
                let at = lo + next(m.last - lo + 1);
                if let Some(t) = m.term(at) {
                    snap_seed += 1;
                    snapshot(&mut s, &mut sc, &mut run, at, t, snap_seed, &mut next);
                }
            }
        } else if roll < 92 {
            // A snapshot from a leader whose log this node never saw: the log is replaced.
            term += 1;
            snap_seed += 1;
            let at = m.last.max(m.snap_index()) + 1 + next(3);
            snapshot(&mut s, &mut sc, &mut run, at, term, snap_seed, &mut next);
        } else {
            let _ = run(&mut s, &mut sc, Op::Compact(m.snap_index()));
        }
    }
    sc.wear = R::erase_counts(&mut s);
    sc
}

#[allow(clippy::too_many_arguments)]
fn snapshot<S: Storage>(
    s: &mut S,
    sc: &mut Script,
    run: &mut impl FnMut(&mut S, &mut Script, Op) -> Result<(), StorageError>,
    index: LogIndex,
    term: Term,
    seed: u64,
    next: &mut impl FnMut(u64) -> u64,
) {
    let seed = seed as u32 as u64;
    let size = next(120);
    let data = snap_data(seed, size);
    // The model reads the data seed back from `crc`, which the storage treats as opaque.
    let meta = SnapshotMeta {
        index,
        term,
        membership: Membership::new(&[1, 2, 3], &[]).expect("valid membership"),
        size_bytes: size,
        crc: seed as u32,
    };
    if run(s, sc, Op::SnapBegin(meta)).is_err() {
        return;
    }
    let mut at = 0usize;
    while at < data.len() {
        let n = (1 + next(37) as usize).min(data.len() - at);
        if run(s, sc, Op::SnapWrite(at as u64, data[at..at + n].to_vec())).is_err() {
            return;
        }
        at += n;
    }
    let _ = run(s, sc, Op::SnapFinish);
}

/// Whether `s` shows exactly the log and snapshot of `m`, reading every entry back.
fn matches<S: Storage>(s: &S, m: &Model) -> Result<(), String> {
    let want_snap = m.snap.as_ref().map(|x| &x.0);
    if s.snapshot_meta().as_ref() != want_snap {
        return Err(format!(
            "snapshot {:?}, expected {:?}",
            s.snapshot_meta().map(|x| (x.index, x.term)),
            want_snap.map(|x| (x.index, x.term))
        ));
    }
    let si = m.snap_index();
    let want_last = m.last.max(si);
    if s.last_index() != want_last {
        return Err(format!(
            "last_index {}, expected {}",
            s.last_index(),
            want_last
        ));
    }
    let mut buf = [0u8; 256];
    for i in 1..=want_last {
        match s.term(i) {
            Ok(t) if i == si && t == m.snap.as_ref().expect("si > 0").0.term => {}
            Ok(t) => {
                if m.term(i) != Some(t) {
                    return Err(format!("term({}) = {}, expected {:?}", i, t, m.term(i)));
                }
                let r = s
                    .read_entries(i, i, &mut buf)
                    .map_err(|e| format!("read_entries({}) failed: {:?}", i, e))?;
                let (e, _) = shoal_core::entry::decode(&buf[..r.bytes])
                    .map_err(|e| format!("entry {} does not decode: {:?}", i, e))?;
                if e.index != i || e.term != t || e.data != payload(i, t).as_slice() {
                    return Err(format!("entry {} reads back wrong", i));
                }
            }
            Err(StorageError::Compacted(at)) if at == i && i <= si => {}
            Err(e) => return Err(format!("term({}) failed: {:?}", i, e)),
        }
    }
    if let Some((meta, seed)) = &m.snap {
        let want = snap_data(*seed, meta.size_bytes);
        let mut got = vec![0u8; want.len() + 8];
        let mut at = 0;
        loop {
            let n = s
                .snapshot_read(at as u64, &mut got[at..])
                .map_err(|e| format!("snapshot_read failed: {:?}", e))?;
            if n == 0 {
                break;
            }
            at += n;
        }
        if got[..at] != want[..] {
            return Err("snapshot data differs".into());
        }
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    cuts: u64,
    full_after_recovery: u64,
    ops: u64,
    truncations: u64,
    snapshots: u64,
    full: u64,
    syncs: u64,
    wear: Vec<u32>,
}

fn run_sequence<R: Rig>(seed: u64, len: usize, tally: &mut Tally) {
    let sc = build_script::<R>(seed, len);
    let total = *sc.steps_after.last().unwrap_or(&sc.base_steps) - sc.base_steps;
    for (op, r) in sc.ops.iter().zip(&sc.results) {
        tally.ops += 1;
        match (op, r) {
            (Op::Truncate(_), Ok(())) => tally.truncations += 1,
            (Op::SnapFinish, Ok(())) => tally.snapshots += 1,
            (Op::Sync, Ok(())) => tally.syncs += 1,
            (_, Err(StorageError::Full)) => tally.full += 1,
            _ => {}
        }
    }
    if tally.wear.len() < sc.wear.len() {
        tally.wear.resize(sc.wear.len(), 0);
    }
    for (t, w) in tally.wear.iter_mut().zip(&sc.wear) {
        *t += w;
    }
    for n in 0..=total {
        let mut s = R::format();
        R::cut(&mut s, n, seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D));
        // Replay until the cut; before it, every call must return what the reference did.
        let mut done = 0;
        for (k, op) in sc.ops.iter().enumerate() {
            let r = apply(&mut s, op);
            if R::is_cut(&mut s) {
                break;
            }
            assert_eq!(
                r, sc.results[k],
                "seed {} cut {}: op {} ({:?}) diverged from the reference run",
                seed, n, k, op
            );
            done = k + 1;
        }
        let mut s = match R::recover(s) {
            Ok(s) => s,
            Err(e) => panic!("seed {} cut {}: recovery failed: {}", seed, n, e),
        };
        tally.cuts += 1;
        // The last durable point among completed operations.
        let durable = (0..done)
            .rev()
            .find(|&k| matches!(sc.ops[k], Op::Sync | Op::SnapFinish) && sc.results[k].is_ok())
            .map_or(0, |k| k + 1);
        let last_state = (done + 1).min(sc.ops.len());
        let found = (durable..=last_state).find(|&k| matches(&s, &sc.models[k]).is_ok());
        let Some(k) = found else {
            let why = matches(&s, &sc.models[durable]).unwrap_err();
            panic!(
                "seed {} cut {}: recovered state is not the durable state (after op {}) plus a \
                 prefix of the {} later ops; vs durable: {}",
                seed,
                n,
                durable,
                last_state - durable,
                why
            );
        };
        let hs = s.hard_state();
        let allowed = hs == sc.models[durable].hs_durable
            || (durable..=last_state).any(|j| sc.models[j].hs_saved == hs);
        assert!(
            allowed,
            "seed {} cut {}: hard state {:?} rolled back (durable {:?})",
            seed, n, hs, sc.models[durable].hs_durable
        );
        // The recovered storage takes more entries, and they survive a restart.
        let m = &sc.models[k];
        let last = s.last_index();
        let term = m
            .snap
            .as_ref()
            .map_or(0, |x| x.0.term)
            .max(s.term(last).unwrap_or(0))
            + 100;
        let op = Op::Append {
            index: last + 1,
            term,
            kind: EntryKind::Normal,
            data: payload(last + 1, term),
        };
        let mut r = apply(&mut s, &op);
        if r == Err(StorageError::Full) {
            s.compact_prefix(s.snapshot_index()).expect("compact");
            r = apply(&mut s, &op);
        }
        match r {
            Ok(()) => {
                s.sync().expect("sync after recovery");
                let s = match R::recover(s) {
                    Ok(s) => s,
                    Err(e) => panic!("seed {} cut {}: reopen after append: {}", seed, n, e),
                };
                assert_eq!(
                    s.last_index(),
                    last + 1,
                    "seed {} cut {}: append after recovery lost",
                    seed,
                    n
                );
                assert_eq!(s.term(last + 1), Ok(term), "seed {} cut {}", seed, n);
            }
            Err(StorageError::Full) => tally.full_after_recovery += 1,
            Err(e) => panic!("seed {} cut {}: append after recovery: {:?}", seed, n, e),
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn suite<R: Rig>(name: &str, default_sequences: u64, len: usize) {
    let sequences = env_u64("SHOAL_POWER_CUT_SEQUENCES", default_sequences);
    let first = env_u64("SHOAL_POWER_CUT_SEED", 1);
    let threads = 2u64;
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut tally = Tally::default();
                    let mut seed = first + t;
                    while seed < first + sequences {
                        run_sequence::<R>(seed, len, &mut tally);
                        seed += threads;
                    }
                    tally
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("power-cut worker"))
            .collect()
    });
    let sum = |f: fn(&Tally) -> u64| -> u64 { tallies.iter().map(f).sum() };
    let cuts = sum(|t| t.cuts);
    let mut wear = vec![0u32; tallies.iter().map(|t| t.wear.len()).max().unwrap_or(0)];
    for t in &tallies {
        for (a, b) in wear.iter_mut().zip(&t.wear) {
            *a += b;
        }
    }
    println!(
        "{}: {} sequences ({} ops: {} syncs, {} truncations, {} snapshots installed, {} appends \
         refused Full), {} power cuts recovered and checked ({} left the ring full); erases per \
         sector over all reference runs (hard state, snapshot slots, ring): {:?}",
        name,
        sequences,
        sum(|t| t.ops),
        sum(|t| t.syncs),
        sum(|t| t.truncations),
        sum(|t| t.snapshots),
        sum(|t| t.full),
        cuts,
        sum(|t| t.full_after_recovery),
        wear
    );
    assert!(cuts > sequences, "{}: no cuts ran", name);
}

#[test]
fn power_cut_at_every_step_4_byte_words() {
    suite::<Small4>("256 B sectors, 4 B words", 200, 250);
}

#[test]
fn power_cut_at_every_step_16_byte_words() {
    suite::<Small16>("512 B sectors, 16 B words", 60, 250);
}
