//! A NOR-flash partition kept in a file, for running the embedded stack on a Linux board (a
//! Raspberry Pi has an SD card, not NOR flash) with state that survives a restart.
//!
//! [`FileFlash`] keeps the partition's bytes in memory (reads never touch the file) and writes
//! every program and erase through to the file at the same offset, following NOR rules
//! (programming only clears bits, erasing sets a sector to `0xFF`), so the file always holds
//! what real flash would. [`Durable`] wraps the [`FlashStorage`] over it and makes
//! [`Storage::sync`] also `fdatasync` the file: everything `FlashStorage` promises durable after
//! a sync is then on the disk, across a power cut as well as a process kill.

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::FileExt;
use std::path::Path;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use shoal_core::storage::{Decorated, Storage, StorageError, StorageHooks};
use shoal_embedded::flash::ram::{RamFlash, RamFlashError};
use shoal_embedded::flash::FlashStorage;

/// Why a [`FileFlash`] operation failed.
#[derive(Debug)]
pub enum FileFlashError {
    /// Offset or length not a multiple of the program (or erase) size.
    NotAligned,
    /// Beyond the partition.
    OutOfBounds,
    /// The file refused the write (the error is printed to stderr where it happens).
    Io,
}

impl NorFlashError for FileFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FileFlashError::NotAligned => NorFlashErrorKind::NotAligned,
            FileFlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            FileFlashError::Io => NorFlashErrorKind::Other,
        }
    }
}

/// A flash partition of `ERASE`-byte sectors programmed in `WRITE`-byte words, in a file (or
/// only in memory, for a node whose state may be lost when it exits). The NOR rules are
/// [`RamFlash`]'s, over the in-memory copy; this type adds the write-through.
pub struct FileFlash<const ERASE: usize, const WRITE: usize> {
    ram: RamFlash<'static, ERASE, WRITE>,
    file: Option<File>,
}

impl<const ERASE: usize, const WRITE: usize> FileFlash<ERASE, WRITE> {
    /// Open the partition file at `path`, or create it erased (`bytes` long) if it does not
    /// exist. Returns the flash and whether it already existed (recover) or is new (format).
    /// An existing file of another size is refused, naming both sizes. The in-memory copy lives
    /// as long as the process.
    pub fn open(path: &Path, bytes: usize) -> Result<(Self, bool), String> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("flash file {}: {e}", path.display()))?;
        let mut mem = Vec::with_capacity(bytes);
        if existed {
            file.read_to_end(&mut mem)
                .map_err(|e| format!("flash file {}: {e}", path.display()))?;
            if mem.len() != bytes {
                return Err(format!(
                    "flash file {} holds {} bytes, this node's partition is {} bytes \
                     (was it written with other --flash geometry?)",
                    path.display(),
                    mem.len(),
                    bytes
                ));
            }
        } else {
            mem.resize(bytes, 0xFF);
            file.write_all_at(&mem, 0)
                .and_then(|_| file.sync_all())
                .map_err(|e| format!("flash file {}: {e}", path.display()))?;
        }
        Ok((
            FileFlash {
                ram: RamFlash::new(mem.leak()),
                file: Some(file),
            },
            existed,
        ))
    }

    /// An erased partition of `bytes` in memory only.
    pub fn in_memory(bytes: usize) -> Self {
        FileFlash {
            ram: RamFlash::new(vec![0xFF; bytes].leak()),
            file: None,
        }
    }

    /// Make every program and erase so far durable on the disk.
    pub fn sync_data(&self) -> std::io::Result<()> {
        match &self.file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    /// Copy `at..at + len` of the in-memory partition to the file.
    fn write_through(&mut self, at: u32, len: usize) -> Result<(), FileFlashError> {
        let Some(f) = &self.file else { return Ok(()) };
        let at = at as usize;
        f.write_all_at(&self.ram.bytes()[at..at + len], at as u64)
            .map_err(|e| {
                eprintln!("flash file: writing {len} bytes at offset {at} failed: {e}");
                FileFlashError::Io
            })
    }
}

impl From<RamFlashError> for FileFlashError {
    fn from(e: RamFlashError) -> Self {
        match e {
            RamFlashError::NotAligned => FileFlashError::NotAligned,
            RamFlashError::OutOfBounds => FileFlashError::OutOfBounds,
        }
    }
}

impl<const ERASE: usize, const WRITE: usize> ErrorType for FileFlash<ERASE, WRITE> {
    type Error = FileFlashError;
}

impl<const ERASE: usize, const WRITE: usize> ReadNorFlash for FileFlash<ERASE, WRITE> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        Ok(self.ram.read(offset, bytes)?)
    }

    fn capacity(&self) -> usize {
        self.ram.capacity()
    }
}

impl<const ERASE: usize, const WRITE: usize> NorFlash for FileFlash<ERASE, WRITE> {
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.ram.erase(from, to)?;
        self.write_through(from, (to - from) as usize)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.ram.write(offset, bytes)?;
        self.write_through(offset, bytes.len())
    }
}

/// [`FlashStorage`] over a [`FileFlash`] whose `sync` also makes the file durable; build it with
/// `Durable::new(storage, SyncFile)`.
pub type Durable<const ERASE: usize, const WRITE: usize, const N: usize> =
    Decorated<FlashStorage<FileFlash<ERASE, WRITE>, N>, SyncFile>;

/// The [`Durable`] decorator: `fdatasync` the partition file whenever the flash storage has
/// made something durable.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncFile;

impl<const E: usize, const W: usize, const N: usize> StorageHooks<FlashStorage<FileFlash<E, W>, N>>
    for SyncFile
{
    fn sync(&mut self, inner: &mut FlashStorage<FileFlash<E, W>, N>) -> Result<(), StorageError> {
        inner.sync()?;
        inner.flash_mut().sync_data().map_err(|_| StorageError::Io)
    }
    fn snapshot_finish(
        &mut self,
        inner: &mut FlashStorage<FileFlash<E, W>, N>,
    ) -> Result<(), StorageError> {
        // Durable once finished: the file is synced like the flash was programmed.
        inner.snapshot_finish()?;
        inner.flash_mut().sync_data().map_err(|_| StorageError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_and_erases_reach_the_file_and_survive_reopening() {
        let path = std::env::temp_dir().join(format!("shoal-fileflash-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let (mut f, existed) = FileFlash::<256, 4>::open(&path, 512).unwrap();
        assert!(!existed);
        f.write(0, &[0xF0, 0x0F, 0xFF, 0xFF]).unwrap();
        f.write(0, &[0x3C, 0xFF, 0xFF, 0xFF]).unwrap();
        f.write(256, &[1, 2, 3, 4]).unwrap();
        f.erase(256, 512).unwrap();
        assert!(matches!(
            f.write(2, &[0; 4]),
            Err(FileFlashError::NotAligned)
        ));
        assert!(matches!(
            f.erase(256, 768),
            Err(FileFlashError::OutOfBounds)
        ));
        drop(f);
        let (mut f, existed) = FileFlash::<256, 4>::open(&path, 512).unwrap();
        assert!(existed);
        let mut b = [0u8; 4];
        f.read(0, &mut b).unwrap();
        assert_eq!(b, [0x30, 0x0F, 0xFF, 0xFF], "programming only clears bits");
        f.read(256, &mut b).unwrap();
        assert_eq!(b, [0xFF; 4], "the erase reached the file");
        let err = FileFlash::<256, 4>::open(&path, 1024).err().unwrap();
        assert!(
            err.contains("holds 512 bytes") && err.contains("1024"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
