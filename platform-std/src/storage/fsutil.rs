//! Small file-system helpers: directory fsync, atomic file replacement, preallocation, and
//! the file operations the log and snapshots go through.
//!
//! Every helper takes a `sync` flag so that the `never` fsync mode (tests only) can skip the
//! expensive calls while running exactly the same code paths otherwise. A failed fdatasync or
//! directory fsync comes back as [`sync_failed`]: its errno is hidden, so that no caller can
//! take it for a refusal it may retry (see [`super::ioerr`]). Tests inject errors into the
//! operations of this module ([`inject`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A failed fdatasync or fsync, with its errno hidden (it is never a refusal to retry: what
/// the device holds is unknown after it).
pub(crate) fn sync_failed(e: io::Error) -> io::Error {
    io::Error::other(format!("sync failed: {e}"))
}

/// fdatasync `file` (nothing when `sync` is off).
pub(crate) fn sync_data(file: &File, sync: bool) -> io::Result<()> {
    if !sync {
        return Ok(());
    }
    inject::check(inject::Op::Sync).map_err(sync_failed)?;
    file.sync_data().map_err(sync_failed)
}

/// An open directory, kept to fsync its entries without opening it again (which needs a
/// descriptor, and may fail for the lack of one when it matters most).
#[derive(Debug)]
pub(crate) struct DirHandle {
    path: PathBuf,
    file: File,
}

impl DirHandle {
    /// Open `dir`.
    pub(crate) fn open(dir: &Path) -> io::Result<DirHandle> {
        Ok(DirHandle {
            path: dir.to_path_buf(),
            file: File::open(nonempty(dir))?,
        })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Make the directory's entries durable (nothing when `sync` is off).
    pub(crate) fn sync(&self, sync: bool) -> io::Result<()> {
        if !sync {
            return Ok(());
        }
        self.file.sync_all().map_err(sync_failed)
    }
}

/// A directory whose entries change now and then (a segment rolled over, a snapshot placed):
/// only its path is kept, and each change opens a [`DirHandle`] before it makes the change, so
/// that a missing descriptor refuses the change rather than fail the dir sync after it. A node
/// with thousands of idle groups so holds no descriptor per group for its dirs.
#[derive(Clone, Debug)]
pub(crate) struct DirPath(PathBuf);

impl DirPath {
    /// The directory `dir` (not opened).
    pub(crate) fn new(dir: &Path) -> DirPath {
        DirPath(dir.to_path_buf())
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// A handle to sync the directory's entries with.
    pub(crate) fn open(&self) -> io::Result<DirHandle> {
        inject::check(inject::Op::Open)?;
        DirHandle::open(&self.0)
    }
}

/// Open the existing file `path` for a moment (to read it, or to read and write it).
pub(crate) fn open_existing(path: &Path, write: bool) -> io::Result<File> {
    inject::check(inject::Op::Open)?;
    OpenOptions::new().read(true).write(write).open(path)
}

/// A bare relative name (`--data-dir d1`) has the empty path as its parent: that is the
/// current directory.
fn nonempty(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

/// Make a directory's entries (creations, renames, unlinks) durable.
pub(crate) fn fsync_dir(dir: &Path, sync: bool) -> io::Result<()> {
    if !sync {
        return Ok(());
    }
    File::open(nonempty(dir))?.sync_all().map_err(sync_failed)
}

/// Create `dir` (and parents) if missing, making the new entry durable in its parent.
pub(crate) fn ensure_dir(dir: &Path, sync: bool) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    if let Some(parent) = dir.parent() {
        fsync_dir(parent, sync)?;
    }
    Ok(())
}

/// The temporary name used while `path` is being replaced.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Create (or empty) the file at `path` for reading and writing.
pub(crate) fn create_file(path: &Path) -> io::Result<File> {
    inject::check(inject::Op::Create)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// `pwrite` all of `buf` at `offset`.
pub(crate) fn write_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    inject::check(inject::Op::Write)?;
    file.write_all_at(buf, offset)
}

/// Replace `path` atomically with `bytes`: write a temp file, fsync it, rename, fsync the dir.
/// After a crash the file is either the old one or the new one, whole. A failure before the
/// rename leaves the old file and no temp file; a sync failure is [`sync_failed`].
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let tmp = tmp_path(path);
    let written = (|| {
        let mut f = create_file(&tmp)?;
        inject::check(inject::Op::Write)?;
        f.write_all(bytes)?;
        sync_data(&f, sync)?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // After the rename nothing is a refusal any more: the new file is in place.
    match path.parent() {
        Some(dir) => fsync_dir(dir, sync).map_err(|e| match e.raw_os_error() {
            Some(_) => sync_failed(e),
            None => e,
        }),
        None => Ok(()),
    }
}

/// Reserve `len` bytes for `file` so later writes inside it change no file size (cheaper
/// fdatasync), need no more space, and the unwritten rest reads back as zeros.
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    inject::check(inject::Op::Allocate)?;
    let Ok(off_len) = libc::off_t::try_from(len) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "preallocation too large",
        ));
    };
    // SAFETY: posix_fallocate only reads its integer arguments; the descriptor is owned by
    // `file`, which outlives the call.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, off_len) };
    match rc {
        0 => Ok(()),
        // A file system that cannot preallocate: a sparse file reads back as zeros all the
        // same (its blocks are taken as it is written). Any other failure (ENOSPC) is one.
        libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS => file.set_len(len),
        rc => Err(io::Error::from_raw_os_error(rc)),
    }
}

/// Append `len` zero bytes at the file's cursor (a new file: from 0), 64 KiB per `writev` of
/// one 4 KiB buffer, so a short-lived thread filling a segment touches 4 KiB of stack, not 64.
pub(crate) fn fill_zeros(file: &File, len: u64) -> io::Result<()> {
    use std::io::{IoSlice, Write};
    let zeros = [0u8; 4096];
    let mut left = len;
    let mut f = file;
    while left > 0 {
        let want = left.min(64 << 10) as usize;
        let slices: Vec<IoSlice<'_>> = (0..want.div_ceil(zeros.len()))
            .map(|i| IoSlice::new(&zeros[..(want - i * zeros.len()).min(zeros.len())]))
            .collect();
        inject::check(inject::Op::Write)?;
        match f.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => left -= n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Write `len` zero bytes at `offset`, in bounded chunks.
pub(crate) fn write_zeros(file: &File, offset: u64, len: u64) -> io::Result<()> {
    const CHUNK: usize = 64 << 10;
    let zeros = [0u8; CHUNK];
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], offset + at)?;
        at += n as u64;
    }
    Ok(())
}

/// Read all of `file` from `offset` to its end.
pub(crate) fn read_from(file: &File, offset: u64) -> io::Result<Vec<u8>> {
    let len = file.metadata()?.len();
    let n = usize::try_from(len.saturating_sub(offset))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large to read"))?;
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// The bytes of `file` up to its last non-zero byte. Segments are preallocated with zeros, so
/// this is the data written so far: a fresh 64 MiB segment costs a few KiB of memory to read,
/// not 64 MiB. The zero tail is found from the end in 1 MiB chunks.
pub(crate) fn read_nonzero_prefix(file: &File) -> io::Result<Vec<u8>> {
    const CHUNK: u64 = 1 << 20;
    let mut end = file.metadata()?.len();
    let mut chunk = vec![0u8; CHUNK.min(end) as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let part = &mut chunk[..(end - start) as usize];
        file.read_exact_at(part, start)?;
        if let Some(p) = part.iter().rposition(|&b| b != 0) {
            end = start + p as u64 + 1;
            break;
        }
        end = start;
    }
    drop(chunk);
    let n = usize::try_from(end)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large to read"))?;
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Errors injected into this module's operations, for tests of the storage's failure paths.
/// Per thread, so tests running at once do not see each other's; the spare's filler thread
/// sees none.
pub(crate) mod inject {
    /// An operation errors can be injected into.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) enum Op {
        /// Creating a file ([`super::create_file`]).
        Create,
        /// Preallocating one ([`super::preallocate`]).
        Allocate,
        /// Writing ([`super::write_at`], [`super::fill_zeros`], [`super::write_atomic`]).
        Write,
        /// fdatasync ([`super::sync_data`]).
        Sync,
        /// Opening an existing file or dir for a moment ([`super::open_existing`],
        /// [`super::DirPath::open`]).
        Open,
    }

    #[cfg(test)]
    thread_local! {
        static NEXT: std::cell::RefCell<Vec<(Op, i32, u32)>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// Make the next `times` calls of `op` on this thread fail with `errno`.
    #[cfg(test)]
    pub(crate) fn fail(op: Op, errno: i32, times: u32) {
        NEXT.with(|n| n.borrow_mut().push((op, errno, times)));
    }

    /// Forget every injected error of this thread.
    #[cfg(test)]
    pub(crate) fn clear() {
        NEXT.with(|n| n.borrow_mut().clear());
    }

    /// The injected error for `op`, if one is due.
    #[cfg(test)]
    pub(crate) fn check(op: Op) -> std::io::Result<()> {
        NEXT.with(|n| {
            let mut n = n.borrow_mut();
            let Some(i) = n.iter().position(|(o, _, t)| *o == op && *t > 0) else {
                return Ok(());
            };
            n[i].2 -= 1;
            Err(std::io::Error::from_raw_os_error(n[i].1))
        })
    }

    #[cfg(not(test))]
    #[inline(always)]
    pub(crate) fn check(_op: Op) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nonzero_prefix_stops_at_the_last_nonzero_byte() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .expect("create");
        assert!(read_nonzero_prefix(&f).expect("read").is_empty());
        f.set_len(3 << 20).expect("extend");
        assert!(
            read_nonzero_prefix(&f).expect("read").is_empty(),
            "all zeros"
        );
        // A zero inside the data is kept; the zeros after the last non-zero byte are not.
        f.write_all_at(&[1, 0, 2], (1 << 20) - 1).expect("write");
        let got = read_nonzero_prefix(&f).expect("read");
        assert_eq!(got.len(), (1 << 20) + 2);
        assert_eq!(&got[(1 << 20) - 1..], &[1, 0, 2]);
        f.write_all_at(&[9], (3 << 20) - 1)
            .expect("write the last byte");
        assert_eq!(read_nonzero_prefix(&f).expect("read").len(), 3 << 20);
    }

    #[test]
    fn the_parent_of_a_bare_relative_name_is_the_current_dir() {
        let parent = Path::new("d1").parent().expect("has a parent");
        assert_eq!(parent.as_os_str(), "");
        fsync_dir(parent, true).expect("syncs the current directory");
    }
}
