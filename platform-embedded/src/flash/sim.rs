//! `SimFlash`: a RAM-backed NOR flash that enforces NOR rules and can cut power.
//!
//! It owns nothing but the bytes handed to it (any `AsRef<[u8]> + AsMut<[u8]>`: an array on a
//! microcontroller, a `Vec` in host tests) and never allocates, so it builds for every target.
//!
//! Rules it enforces, like a real part:
//! - reads, writes and erases are checked for alignment (`READ_SIZE`, `WRITE_SIZE`,
//!   `ERASE_SIZE`) and bounds;
//! - a write may only target *erased* words (all bytes `0xFF`); programming a word twice
//!   between erases is a violation. In strict mode (the default) a violation panics, so a test
//!   can never miss it; otherwise it is returned as [`SimError::NotErased`].
//!
//! Power cuts: [`SimFlash::cut_after`] sets a budget of *steps*. Each programmed word and each
//! sector erase is one step. The step that exhausts the budget is left half done — a word
//! partly programmed (a random subset of its 1→0 bit changes applied), a sector partly erased
//! (a random subset of its words set back to `0xFF`) — and from then on every write and erase
//! fails with [`SimError::PowerCut`] until [`SimFlash::restore_power`]. Randomness comes from
//! the seed given to `cut_after`, so every cut replays exactly.
//!
//! Wear: erases are counted per sector ([`SimFlash::erase_count`]).

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Most sectors a `SimFlash` can count wear for.
pub const SIM_MAX_SECTORS: usize = 1024;

/// What a `SimFlash` operation can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SimError {
    /// Offset or length is not a multiple of the required size.
    NotAligned,
    /// The range runs past the end of the flash.
    OutOfBounds,
    /// A write targeted a word that is not erased (address of the word).
    NotErased {
        /// Address of the first non-erased word.
        addr: u32,
    },
    /// Power is cut: writes and erases fail until power is restored.
    PowerCut,
}

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SimError::NotAligned => NorFlashErrorKind::NotAligned,
            SimError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            SimError::NotErased { .. } | SimError::PowerCut => NorFlashErrorKind::Other,
        }
    }
}

/// A RAM-backed NOR flash with `ERASE` byte sectors and `WRITE` byte program words.
#[derive(Clone, Debug)]
pub struct SimFlash<B, const ERASE: usize, const WRITE: usize> {
    mem: B,
    wear: [u32; SIM_MAX_SECTORS],
    /// Steps left before the power cut, if one is armed.
    budget: Option<u64>,
    powered: bool,
    strict: bool,
    steps: u64,
    rng: u64,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, const ERASE: usize, const WRITE: usize>
    SimFlash<B, ERASE, WRITE>
{
    /// A flash over `mem`, erased (every byte set to `0xFF`), strict, powered.
    ///
    /// # Panics
    /// If the geometry is impossible: `mem` is not a whole number of sectors, has more than
    /// [`SIM_MAX_SECTORS`] sectors, or `ERASE` is not a multiple of `WRITE`.
    pub fn new(mut mem: B) -> Self {
        let len = mem.as_ref().len();
        assert!(
            WRITE > 0 && ERASE % WRITE == 0,
            "ERASE must be a multiple of WRITE"
        );
        assert!(len % ERASE == 0, "SimFlash size must be whole sectors");
        assert!(
            len / ERASE <= SIM_MAX_SECTORS,
            "too many sectors for SimFlash"
        );
        mem.as_mut().fill(0xFF);
        SimFlash {
            mem,
            wear: [0; SIM_MAX_SECTORS],
            budget: None,
            powered: true,
            strict: true,
            steps: 0,
            rng: 0,
        }
    }

    /// Return NOR violations as [`SimError::NotErased`] instead of panicking.
    pub fn set_strict(&mut self, strict: bool) {
        self.strict = strict;
    }

    /// Cut power after `steps` more steps (word programs and sector erases). `seed` decides how
    /// the interrupted step is left half done.
    pub fn cut_after(&mut self, steps: u64, seed: u64) {
        self.budget = Some(steps);
        self.rng = seed ^ 0x9E37_79B9_7F4A_7C15;
    }

    /// Power back on, with no cut armed. Whatever the cut left on the medium stays.
    pub fn restore_power(&mut self) {
        self.budget = None;
        self.powered = true;
    }

    /// Whether a cut has happened (and power is still off).
    pub fn is_cut(&self) -> bool {
        !self.powered
    }

    /// Steps (programmed words plus sector erases) done since this flash was made.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// How many times sector `sector` has been erased.
    pub fn erase_count(&self, sector: usize) -> u32 {
        self.wear.get(sector).copied().unwrap_or(0)
    }

    /// Erase counts of every sector, in sector order.
    pub fn erase_counts(&self) -> &[u32] {
        &self.wear[..self.sectors()]
    }

    /// Number of sectors.
    pub fn sectors(&self) -> usize {
        self.mem.as_ref().len() / ERASE
    }

    /// The raw bytes (for tests that damage the medium on purpose, or dump it).
    pub fn bytes(&self) -> &[u8] {
        self.mem.as_ref()
    }

    /// The raw bytes, writable without any NOR rule (to plant corruption in tests).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.mem.as_mut()
    }

    fn next_rand(&mut self) -> u64 {
        // splitmix64: small, and good enough to pick bits.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Take one step of the budget; `false` means power fails during this step.
    fn step(&mut self) -> bool {
        if let Some(left) = self.budget.as_mut() {
            if *left == 0 {
                self.powered = false;
                return false;
            }
            *left -= 1;
        }
        self.steps += 1;
        true
    }

    fn check(&self, offset: u32, len: usize, align: usize) -> Result<(), SimError> {
        if offset as usize % align != 0 || len % align != 0 {
            return Err(SimError::NotAligned);
        }
        if offset as usize + len > self.mem.as_ref().len() {
            return Err(SimError::OutOfBounds);
        }
        Ok(())
    }
}

impl<B, const ERASE: usize, const WRITE: usize> ErrorType for SimFlash<B, ERASE, WRITE> {
    type Error = SimError;
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, const ERASE: usize, const WRITE: usize> ReadNorFlash
    for SimFlash<B, ERASE, WRITE>
{
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        self.check(offset, bytes.len(), 1)?;
        let at = offset as usize;
        bytes.copy_from_slice(&self.mem.as_ref()[at..at + bytes.len()]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.as_ref().len()
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, const ERASE: usize, const WRITE: usize> NorFlash
    for SimFlash<B, ERASE, WRITE>
{
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        if to < from {
            return Err(SimError::OutOfBounds);
        }
        self.check(from, (to - from) as usize, ERASE)?;
        if !self.powered {
            return Err(SimError::PowerCut);
        }
        let mut at = from as usize;
        while at < to as usize {
            if !self.step() {
                // Interrupted erase: a random subset of the words are back to 0xFF.
                let mut w = 0;
                while w < ERASE {
                    if self.next_rand() & 1 == 1 {
                        self.mem.as_mut()[at + w..at + w + WRITE].fill(0xFF);
                    }
                    w += WRITE;
                }
                return Err(SimError::PowerCut);
            }
            self.mem.as_mut()[at..at + ERASE].fill(0xFF);
            self.wear[at / ERASE] += 1;
            at += ERASE;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        self.check(offset, bytes.len(), WRITE)?;
        if !self.powered {
            return Err(SimError::PowerCut);
        }
        // Check every word first: a violating write changes nothing.
        for (k, word) in bytes.chunks(WRITE).enumerate() {
            let at = offset as usize + k * WRITE;
            let _ = word;
            if self.mem.as_ref()[at..at + WRITE].iter().any(|&b| b != 0xFF) {
                let addr = at as u32;
                if self.strict {
                    panic!(
                        "NOR violation: write to non-erased word at {:#x} (program twice without erase)",
                        addr
                    );
                }
                return Err(SimError::NotErased { addr });
            }
        }
        for (k, word) in bytes.chunks(WRITE).enumerate() {
            let at = offset as usize + k * WRITE;
            if !self.step() {
                // Interrupted program: only some of the 1→0 bit changes happened.
                for (i, &b) in word.iter().enumerate() {
                    let keep = self.next_rand() as u8;
                    // A bit ends up 0 if the target has 0 and the cut reached it.
                    self.mem.as_mut()[at + i] = !(!b & keep);
                }
                return Err(SimError::PowerCut);
            }
            self.mem.as_mut()[at..at + WRITE].copy_from_slice(word);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Sim = SimFlash<[u8; 1024], 256, 4>;

    #[test]
    fn erased_words_take_one_write() {
        let mut f = Sim::new([0; 1024]);
        f.write(8, &[1, 2, 3, 4]).unwrap();
        let mut b = [0u8; 4];
        f.read(8, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        f.set_strict(false);
        assert_eq!(f.write(8, &[0; 4]), Err(SimError::NotErased { addr: 8 }));
        f.erase(0, 256).unwrap();
        f.write(8, &[0; 4]).unwrap();
        assert_eq!(f.erase_count(0), 1);
        assert_eq!(f.erase_count(1), 0);
    }

    #[test]
    #[should_panic(expected = "NOR violation")]
    fn strict_mode_panics_on_a_second_program() {
        let mut f = Sim::new([0; 1024]);
        f.write(0, &[0; 4]).unwrap();
        let _ = f.write(0, &[0; 4]);
    }

    #[test]
    fn alignment_and_bounds_are_checked() {
        let mut f = Sim::new([0; 1024]);
        assert_eq!(f.write(2, &[0; 4]), Err(SimError::NotAligned));
        assert_eq!(f.write(0, &[0; 3]), Err(SimError::NotAligned));
        assert_eq!(f.erase(0, 100), Err(SimError::NotAligned));
        assert_eq!(f.erase(1024, 1280), Err(SimError::OutOfBounds));
        assert_eq!(f.write(1024, &[0; 4]), Err(SimError::OutOfBounds));
    }

    #[test]
    fn power_cut_leaves_a_partial_write_and_blocks_the_rest() {
        let mut f = Sim::new([0; 1024]);
        f.cut_after(2, 7);
        assert_eq!(f.write(0, &[0u8; 16]), Err(SimError::PowerCut));
        assert_eq!(&f.bytes()[..8], &[0u8; 8]);
        assert!(f.bytes()[12..16].iter().all(|&b| b == 0xFF));
        assert!(f.is_cut());
        assert_eq!(f.erase(0, 256), Err(SimError::PowerCut));
        f.restore_power();
        f.erase(0, 256).unwrap();
        assert!(f.bytes()[..256].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn power_cut_during_erase_leaves_a_mixed_sector() {
        let mut f = Sim::new([0; 1024]);
        for at in (0..256).step_by(4) {
            f.write(at, &[0; 4]).unwrap();
        }
        f.cut_after(0, 3);
        assert_eq!(f.erase(0, 256), Err(SimError::PowerCut));
        let erased = f.bytes()[..256].iter().filter(|&&b| b == 0xFF).count();
        assert!(erased > 0 && erased < 256, "{} bytes erased", erased);
        assert_eq!(f.erase_count(0), 0);
    }
}
