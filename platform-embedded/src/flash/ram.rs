//! [`RamFlash`]: NOR-flash rules over a memory region that outlives a reset but is not flash —
//! for example spare SRAM on an emulated board, whose contents QEMU keeps across a system reset.
//! Unlike [`super::sim::SimFlash`] it does not erase its memory when created (that is the
//! point: a reset board finds its log again) and keeps no wear statistics (no RAM beyond the
//! region itself). Programming ANDs bits in, as a NOR part does.

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// An access outside the region or off the part's alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RamFlashError {
    /// Offset or length not aligned to the read, write or erase size.
    NotAligned,
    /// Past the end of the region.
    OutOfBounds,
}

impl NorFlashError for RamFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            RamFlashError::NotAligned => NorFlashErrorKind::NotAligned,
            RamFlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
        }
    }
}

/// NOR flash of `ERASE`-byte sectors and `WRITE`-byte words over a borrowed memory region.
pub struct RamFlash<'a, const ERASE: usize, const WRITE: usize> {
    mem: &'a mut [u8],
}

impl<'a, const ERASE: usize, const WRITE: usize> RamFlash<'a, ERASE, WRITE> {
    /// A flash over `mem`, which keeps its contents (it is not erased here).
    ///
    /// # Panics
    /// If `mem` is not a whole number of sectors or `ERASE` is not a multiple of `WRITE`.
    pub fn new(mem: &'a mut [u8]) -> Self {
        assert!(WRITE > 0 && ERASE % WRITE == 0 && mem.len() % ERASE == 0);
        RamFlash { mem }
    }

    /// The region's bytes (to check a marker, or for a host tool to dump).
    pub fn bytes(&self) -> &[u8] {
        self.mem
    }

    fn check(&self, offset: u32, len: usize, align: usize) -> Result<usize, RamFlashError> {
        let at = offset as usize;
        if at % align != 0 || len % align != 0 {
            return Err(RamFlashError::NotAligned);
        }
        match at.checked_add(len) {
            Some(end) if end <= self.mem.len() => {}
            _ => return Err(RamFlashError::OutOfBounds),
        }
        Ok(at)
    }
}

impl<const ERASE: usize, const WRITE: usize> ErrorType for RamFlash<'_, ERASE, WRITE> {
    type Error = RamFlashError;
}

impl<const ERASE: usize, const WRITE: usize> ReadNorFlash for RamFlash<'_, ERASE, WRITE> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let at = self.check(offset, bytes.len(), 1)?;
        bytes.copy_from_slice(&self.mem[at..at + bytes.len()]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl<const ERASE: usize, const WRITE: usize> NorFlash for RamFlash<'_, ERASE, WRITE> {
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let len = (to as usize)
            .checked_sub(from as usize)
            .ok_or(RamFlashError::OutOfBounds)?;
        let at = self.check(from, len, ERASE)?;
        self.mem[at..at + len].fill(0xFF);
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let at = self.check(offset, bytes.len(), WRITE)?;
        for (d, s) in self.mem[at..at + bytes.len()].iter_mut().zip(bytes) {
            *d &= *s;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_contents_and_follows_nor_rules() {
        let mut mem = [0u8; 512];
        mem[0] = 0x5A;
        let mut f = RamFlash::<256, 4>::new(&mut mem);
        let mut b = [0u8; 1];
        f.read(0, &mut b).unwrap();
        assert_eq!(b[0], 0x5A, "creation must not erase");
        f.erase(0, 256).unwrap();
        f.write(0, &[0xF0, 0x0F, 0xFF, 0xFF]).unwrap();
        f.write(0, &[0x3C, 0xFF, 0xFF, 0xFF]).unwrap();
        f.read(0, &mut b).unwrap();
        assert_eq!(b[0], 0x30, "programming only clears bits");
        assert_eq!(f.write(1, &[0; 4]), Err(RamFlashError::NotAligned));
        assert_eq!(f.erase(256, 768), Err(RamFlashError::OutOfBounds));
    }
}
