//! Small file-system helpers: directory fsync, atomic file replacement, preallocation.
//!
//! Every helper takes a `sync` flag so that the `never` fsync mode (tests only) can skip the
//! expensive calls while running exactly the same code paths otherwise.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Make a directory's entries (creations, renames, unlinks) durable.
pub(crate) fn fsync_dir(dir: &Path, sync: bool) -> io::Result<()> {
    if !sync {
        return Ok(());
    }
    // A bare relative name (`--data-dir d1`) has the empty path as its parent: that is the
    // current directory.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
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

/// Replace `path` atomically with `bytes`: write a temp file, fsync it, rename, fsync the dir.
/// After a crash the file is either the old one or the new one, whole.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let tmp = tmp_path(path);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_data()?;
        }
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fsync_dir(dir, sync)?;
    }
    Ok(())
}

/// Reserve `len` bytes for `file` so later writes inside it change no file size (cheaper
/// fdatasync) and the unwritten rest reads back as zeros.
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let Ok(off_len) = libc::off_t::try_from(len) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "preallocation too large",
        ));
    };
    // SAFETY: posix_fallocate only reads its integer arguments; the descriptor is owned by
    // `file`, which outlives the call.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, off_len) };
    if rc == 0 {
        return Ok(());
    }
    // Some file systems cannot preallocate; a sparse file reads back as zeros all the same.
    file.set_len(len)
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
