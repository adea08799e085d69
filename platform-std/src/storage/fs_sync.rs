//! One sync for every group of a data dir: `syncfs(2)` on the data dir makes everything
//! written to its filesystem durable (data and metadata, with a device cache flush), so a batch
//! that wrote to many groups' logs costs one device sync instead of one fdatasync per group.
//!
//! It covers a group only when the group's directory is on the same filesystem as the data dir
//! (a group dir mounted elsewhere syncs by itself). Since Linux 5.8 `syncfs` reports writeback
//! errors of the filesystem like `fdatasync` does; a failed one is fatal as a failed fdatasync.
//! Its cost grows with what else is dirty on that filesystem: a data dir on a filesystem of its
//! own (or the flag `--shared-sync false`) keeps other writers' data out of it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A sync of the data dir's whole filesystem.
#[derive(Debug)]
pub struct FsSync {
    dir: File,
    path: PathBuf,
    dev: u64,
}

impl FsSync {
    /// Open the data dir for syncs of its filesystem.
    pub fn open(data_dir: &Path) -> std::io::Result<FsSync> {
        let dir = File::open(data_dir)?;
        let dev = dir.metadata()?.dev();
        Ok(FsSync {
            dir,
            path: data_dir.to_path_buf(),
            dev,
        })
    }

    /// Whether a sync of this filesystem covers what is written under `dir`.
    pub fn covers(&self, dir: &Path) -> bool {
        std::fs::metadata(dir).is_ok_and(|m| m.dev() == self.dev)
    }

    /// Make everything written to the filesystem durable. The error names the data dir.
    pub fn run(&self) -> Result<(), String> {
        // SAFETY: syncfs takes an open descriptor and nothing else.
        if unsafe { libc::syncfs(self.dir.as_raw_fd()) } == 0 {
            Ok(())
        } else {
            Err(format!(
                "syncfs {}: {}",
                self.path.display(),
                std::io::Error::last_os_error()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_its_own_filesystem_only() {
        let dir = tempfile::tempdir().unwrap();
        let sync = FsSync::open(dir.path()).unwrap();
        std::fs::create_dir(dir.path().join("group-1")).unwrap();
        assert!(sync.covers(&dir.path().join("group-1")));
        assert!(!sync.covers(Path::new("/proc")), "another filesystem");
        assert!(
            !sync.covers(&dir.path().join("missing")),
            "nothing there to cover"
        );
        sync.run().unwrap();
    }
}
