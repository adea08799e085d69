//! Planted bugs that prove the simulator's checks can fail (cargo feature `mutants` only).
//!
//! Each bug is compiled in with the feature but stays off until selected at run time with
//! [`select`], so one binary can run every mutant. Production builds never enable the feature.

use core::sync::atomic::{AtomicU8, Ordering};

/// Every planted bug of the core, by name.
pub const CORE_MUTANTS: &[&str] = &[
    "vote-not-persisted",
    "commit-by-counting",
    "skip-truncate",
    "read-without-quorum",
];

static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// Turn on the named core mutant (or none with `""`). Returns false for an unknown name.
pub fn select(name: &str) -> bool {
    if name.is_empty() {
        ACTIVE.store(0, Ordering::Relaxed);
        return true;
    }
    match CORE_MUTANTS.iter().position(|m| *m == name) {
        Some(i) => {
            ACTIVE.store(i as u8 + 1, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// Whether the named mutant is active.
pub fn active(name: &str) -> bool {
    let a = ACTIVE.load(Ordering::Relaxed) as usize;
    a != 0 && CORE_MUTANTS.get(a - 1) == Some(&name)
}
