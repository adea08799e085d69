//! [`Tmpfs`]: a small file system of a test's own, to fill, grow and empty under a running
//! node ([`crate::Cluster::on_tmpfs`] puts a node's data dir on one).
//!
//! Mounting needs root (`CAP_SYS_ADMIN`). CI runs as root, so a test that needs a full disk
//! fails, naming the reason, when it cannot mount: a full-disk test that skipped itself would
//! hide exactly the breakage it exists to catch.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for one test; unmounted when dropped.
pub struct Tmpfs {
    path: PathBuf,
}

/// One MiB.
pub const MIB: u64 = 1 << 20;

impl Tmpfs {
    /// Mount a tmpfs of `bytes` at `path` (created if missing).
    ///
    /// # Panics
    /// When it cannot be mounted (not root, or no `mount`), saying so.
    pub fn mount(path: &Path, bytes: u64) -> Tmpfs {
        std::fs::create_dir_all(path)
            .unwrap_or_else(|e| panic!("create the mount point {}: {e}", path.display()));
        mount(
            &["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"],
            path,
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make it `bytes` large, keeping its files (a disk that was grown, or shrunk).
    pub fn resize(&self, bytes: u64) {
        mount(&["-o", &format!("remount,size={bytes}")], &self.path);
    }

    /// Free bytes on it, as an unprivileged writer sees them (what `df` shows as available).
    pub fn free_bytes(&self) -> u64 {
        free_bytes(&self.path)
    }

    /// Write the file `name` on it, so large that `leave` bytes stay free (or as large as
    /// fits, if less are free already); its path. The filler stands in for another program
    /// that filled the disk.
    pub fn fill(&self, name: &str, leave: u64) -> PathBuf {
        fill(&self.path, name, leave)
    }
}

/// Write the file `name` in `dir`, so large that `leave` bytes stay free on its file system (or
/// as large as fits, if less are free already); its path.
pub fn fill(dir: &Path, name: &str, leave: u64) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("create the filler {}: {e}", path.display()));
    let chunk = vec![0xA5u8; 64 << 10];
    loop {
        let free = free_bytes(dir);
        if free <= leave {
            break;
        }
        let n = (free - leave).min(chunk.len() as u64) as usize;
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    path
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process that still has a file open on it (a node being reaped) does not
        // keep the mount alive past the test.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Free bytes on the file system holding `path`, as an unprivileged writer sees them.
pub fn free_bytes(path: &Path) -> u64 {
    let st =
        rustix::fs::statvfs(path).unwrap_or_else(|e| panic!("statvfs {}: {e}", path.display()));
    st.f_bavail * st.f_frsize
}

fn mount(args: &[&str], path: &Path) {
    run("mount", args, path);
}

/// An ext4 file system on a loop device, mounted for one test; thawed, unmounted and its image
/// removed when dropped. Unlike a tmpfs it can be frozen ([`LoopFs::freeze`]): every write and
/// sync to it then blocks until it is thawed, as on a disk that stops answering.
///
/// A process blocked on a frozen file system cannot be killed until it is thawed:
/// [`crate::Cluster::on_loop_fs`] thaws its own before it stops its nodes; a `LoopFs` a test
/// mounts itself must be dropped (thawed) before the processes that use it are stopped.
pub struct LoopFs {
    path: PathBuf,
    image: PathBuf,
    frozen: std::sync::atomic::AtomicBool,
}

impl LoopFs {
    /// Make an ext4 image of `bytes` next to `path` and mount it at `path` (created if
    /// missing).
    ///
    /// # Panics
    /// When it cannot be made or mounted (not root, or no `mkfs.ext4`), saying so.
    pub fn mount(path: &Path, bytes: u64) -> LoopFs {
        std::fs::create_dir_all(path)
            .unwrap_or_else(|e| panic!("create the mount point {}: {e}", path.display()));
        let image = path.with_extension("img");
        let f = std::fs::File::create(&image)
            .unwrap_or_else(|e| panic!("create the image {}: {e}", image.display()));
        f.set_len(bytes)
            .unwrap_or_else(|e| panic!("size the image {}: {e}", image.display()));
        // No blocks reserved for root (shoald runs as root in CI): full is full.
        run("mkfs.ext4", &["-q", "-F", "-m", "0"], &image);
        mount(&["-o", "loop", &image.to_string_lossy()], path);
        LoopFs {
            path: path.to_path_buf(),
            image,
            frozen: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Freeze it (`fsfreeze -f`): writes and syncs to it block from now on.
    pub fn freeze(&self) {
        run("fsfreeze", &["-f"], &self.path);
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Thaw it (`fsfreeze -u`): what blocked goes on.
    pub fn thaw(&self) {
        run("fsfreeze", &["-u"], &self.path);
        self.frozen
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Thaw it if it is frozen (a process blocked on it can then be stopped).
    pub fn thaw_if_frozen(&self) {
        if self.frozen.load(std::sync::atomic::Ordering::SeqCst) {
            self.thaw();
        }
    }

    /// Free bytes on it, as an unprivileged writer sees them.
    pub fn free_bytes(&self) -> u64 {
        free_bytes(&self.path)
    }

    /// [`fill`] it, leaving `leave` bytes free.
    pub fn fill(&self, name: &str, leave: u64) -> PathBuf {
        fill(&self.path, name, leave)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.frozen.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = Command::new("fsfreeze").arg("-u").arg(&self.path).status();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

/// Run `cmd args path`, panicking with its error output unless it succeeds.
fn run(cmd: &str, args: &[&str], path: &Path) {
    let out = Command::new(cmd)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd} {args:?} {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{cmd} {args:?} {} failed ({}): {}. This test needs root (CI runs as root); run it as \
         root rather than skip it",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A disk whose writes land but whose syncs do not return, for one process: `shims/synchold.c`
/// built as a preload library. A node started with [`SyncHold::env`] runs normally until
/// [`SyncHold::hold`]; from then on every fdatasync, fsync or syncfs its `shoal-fsync` threads
/// make waits until [`SyncHold::release`] (also when dropped). Its raft thread's own syncs run.
/// [`SyncHold::hold_snapshots`] does the same to the threads that write its snapshots.
pub struct SyncHold {
    lib: PathBuf,
    file: PathBuf,
    snap_file: PathBuf,
}

impl SyncHold {
    /// Build the shim into `dir` with the system C compiler; released.
    ///
    /// # Panics
    /// When `cc` is missing or fails.
    pub fn build(dir: &Path) -> SyncHold {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("shims/synchold.c");
        let lib = dir.join("synchold.so");
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&lib)
            .arg(&src)
            .arg("-ldl")
            .output()
            .unwrap_or_else(|e| panic!("run cc for {}: {e}", src.display()));
        assert!(
            out.status.success(),
            "cc {} failed: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        SyncHold {
            lib,
            file: dir.join("syncs-held"),
            snap_file: dir.join("snapshots-held"),
        }
    }

    /// The environment of a process whose syncs this holds.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), self.lib.display().to_string()),
            (
                "SHOAL_SYNC_HOLD_FILE".into(),
                self.file.display().to_string(),
            ),
            (
                "SHOAL_SNAP_HOLD_FILE".into(),
                self.snap_file.display().to_string(),
            ),
        ]
    }

    /// The sync threads' syncs started from now on wait (within the shim's 10 ms re-check for
    /// those waiting).
    pub fn hold(&self) {
        hold_with(&self.file);
    }

    /// The sync threads' waiting syncs run, and the next ones at once.
    pub fn release(&self) {
        release_with(&self.file);
    }

    /// As [`SyncHold::hold`], for the threads that write snapshots.
    pub fn hold_snapshots(&self) {
        hold_with(&self.snap_file);
    }

    /// As [`SyncHold::release`], for the threads that write snapshots.
    pub fn release_snapshots(&self) {
        release_with(&self.snap_file);
    }
}

fn hold_with(file: &Path) {
    std::fs::write(file, b"held\n").unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
}

fn release_with(file: &Path) {
    match std::fs::remove_file(file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("remove {}: {e}", file.display()),
    }
}

impl Drop for SyncHold {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_file(&self.snap_file);
    }
}
