//! The shared storage conformance suite, run over `FlashStorage` on a simulated NOR flash.
//!
//! `crash` cuts power at a seeded random step (word program or sector erase) inside the writes
//! made since the last durable point, replaying them from a copy taken at that point, then
//! recovers from whatever the cut left on the medium.

mod common;

use common::{apply, mix, recorded, Recorded, Recorder};
use shoal_core::conformance::{self, Harness, Limits};
use shoal_core::storage::Decorated;
use shoal_embedded::flash::sim::SimFlash;
use shoal_embedded::flash::{FlashStorage, Layout};

struct FlashHarness<const E: usize, const W: usize, const N: usize> {
    layout: Layout,
    limits: Limits,
}

type Sim<const E: usize, const W: usize> = SimFlash<Vec<u8>, E, W>;

impl<const E: usize, const W: usize, const N: usize> FlashHarness<E, W, N> {
    fn open(&self, flash: Sim<E, W>, what: &str) -> FlashStorage<Sim<E, W>, N> {
        match FlashStorage::open(flash, self.layout) {
            Ok(s) => s,
            Err(e) => panic!("{}: recovery failed: {}", what, e),
        }
    }
}

impl<const E: usize, const W: usize, const N: usize> Harness for FlashHarness<E, W, N> {
    type S = Recorded<Sim<E, W>, N>;

    fn fresh(&mut self) -> Self::S {
        let bytes = self.layout.offset_bytes as usize + self.layout.sectors as usize * E;
        let flash = Sim::<E, W>::new(vec![0; bytes]);
        recorded(FlashStorage::format(flash, self.layout).expect("format a fresh flash"))
    }

    fn reopen(&mut self, s: Self::S) -> Self::S {
        recorded(self.open(s.inner.into_flash(), "reopen"))
    }

    fn crash(&mut self, s: Self::S, seed: u64) -> Self::S {
        let Decorated {
            mut inner,
            hooks: Recorder {
                mut checkpoint,
                ops,
            },
        } = s;
        let span = inner.flash_mut().steps() - checkpoint.flash_mut().steps();
        let cut = mix(seed) % (span + 1);
        checkpoint.flash_mut().cut_after(cut, seed);
        for op in &ops {
            let _ = apply(&mut checkpoint, op);
        }
        let mut flash = checkpoint.into_flash();
        flash.restore_power();
        recorded(self.open(flash, "crash recovery"))
    }

    fn limits(&self) -> Limits {
        self.limits
    }
}

/// 4 KiB sectors, 4-byte words (external SPI NOR, nRF52-like). A 4 KiB payload cannot fit a
/// 4 KiB sector next to its framing, so the large-entry checks use 4000 bytes.
#[test]
fn conformance_4k_sectors() {
    let mut h = FlashHarness::<4096, 4, 128> {
        layout: Layout::new(0, 2 + 4 + 128, 2),
        limits: Limits {
            large_entry_bytes: 4000,
            ..Limits::DEFAULT
        },
    };
    conformance::run_all(&mut h);
}

/// 8 KiB sectors, 16-byte words (internal MCU flash), with the suite's default limits.
#[test]
fn conformance_8k_sectors() {
    let mut h = FlashHarness::<8192, 16, 64> {
        layout: Layout::new(8192, 2 + 2 + 64, 1),
        limits: Limits::DEFAULT,
    };
    conformance::run_all(&mut h);
}
