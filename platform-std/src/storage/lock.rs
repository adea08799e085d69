//! One process per data dir: an exclusive `flock` on `DATA_DIR/lock`, held while the data dir
//! is open for writing.
//!
//! Two processes writing one data dir (two containers on one volume, a restart racing the old
//! process) would both acknowledge writes and then lose one side's on the next start. The lock
//! is taken before anything in the data dir is written and released by the kernel when the
//! process ends, however it ends, so a crash never leaves a stale lock. The file also records
//! who holds it (pid, host, start time), which the refusal names.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::OpenError;

/// Name of the lock file inside a data dir.
pub const LOCK_FILE: &str = "lock";

/// An exclusive lock on a data dir, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LOCK_FILE)
}

/// Try an exclusive non-blocking `flock`; `Ok(false)` when another process holds it.
fn try_flock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock only reads the descriptor number, which `file` keeps open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn describe_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.take(512).read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() {
        "another process".into()
    } else {
        text.into()
    }
}

impl DirLock {
    /// Lock `data_dir` (which must exist) for this process, or name the holder.
    pub fn acquire(data_dir: &Path) -> Result<DirLock, OpenError> {
        let path = lock_path(data_dir);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| OpenError::io(&path, "open lock file", e))?;
        if !try_flock(&file).map_err(|e| OpenError::io(&path, "lock data dir", e))? {
            return Err(OpenError::Locked {
                data_dir: data_dir.to_path_buf(),
                holder: describe_holder(&mut file),
            });
        }
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let note = format!(
            "pid {} on host {host:?} since unix time {since}\n",
            std::process::id()
        );
        // Who holds it is only a hint for the refusal; failing to record it is harmless.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = file.write_all(note.as_bytes());
        Ok(DirLock { _file: file })
    }

    /// Who holds the lock of `data_dir` now, if anyone (for tools that must not touch a data
    /// dir a running node owns). Takes and drops the lock when free.
    pub fn holder(data_dir: &Path) -> Option<String> {
        let mut file = File::open(lock_path(data_dir)).ok()?;
        match try_flock(&file) {
            Ok(false) => Some(describe_holder(&mut file)),
            _ => None,
        }
    }
}
