//! The process's background remover of retired segment files.
//!
//! A segment compaction made obsolete is renamed on the caller's thread and unlinked by a
//! background thread: unlinking a preallocated 64 MiB segment took up to 75 ms on ext4 mounted
//! with `discard` (the benchmark machine), all of it a stall of the raft loop. A retired file
//! left by a crash is removed at the next open.

use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, OnceLock};

/// Suffix added to a segment file that compaction retired.
pub const RETIRED_SUFFIX: &str = ".retired";

enum Removal {
    /// Unlink the path, then close the file: closing the last handle of an unlinked file
    /// frees its pages (milliseconds for a large segment), so that happens here too.
    File(PathBuf, Arc<File>),
    /// Answered once every removal queued before it is done (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Done(mpsc::Sender<()>),
}

/// The process's background remover of retired segment files, started on first use.
fn remover() -> Option<&'static Mutex<mpsc::Sender<Removal>>> {
    static REMOVER: OnceLock<Option<Mutex<mpsc::Sender<Removal>>>> = OnceLock::new();
    REMOVER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Removal>();
            let spawned = std::thread::Builder::new()
                .name("shoal-remove".into())
                .stack_size(64 << 10)
                .spawn(move || {
                    crate::affinity::leave_raft_cpu();
                    for r in rx {
                        match r {
                            Removal::File(p, file) => {
                                remove_quietly(&p);
                                drop(file);
                            }
                            Removal::Done(ack) => {
                                let _ = ack.send(());
                            }
                        }
                    }
                });
            spawned.ok().map(|_| Mutex::new(tx))
        })
        .as_ref()
}

/// Remove `p`; a file already gone is fine (a later open removed it as a leftover).
fn remove_quietly(p: &std::path::Path) {
    match fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            log::warn!("cannot remove retired segment {}: {e}", p.display());
        }
        _ => {}
    }
}

/// Unlink `path` and close `file` in the background (inline if no remover thread could be
/// started).
pub(super) fn remove_in_background(path: PathBuf, file: Arc<File>) {
    let mut job = Some(Removal::File(path.clone(), file));
    if let Some(m) = remover() {
        if let Ok(tx) = m.lock() {
            if let Err(back) = tx.send(job.take().expect("not sent yet")) {
                job = Some(back.0);
            }
        }
    }
    if job.is_some() {
        remove_quietly(&path);
    }
}

/// Wait until every retired segment queued so far is removed (tests).
#[cfg(test)]
pub(crate) fn wait_for_removals() {
    let (tx, rx) = mpsc::channel();
    if let Some(m) = remover() {
        if m.lock()
            .expect("remover lock")
            .send(Removal::Done(tx))
            .is_ok()
        {
            let _ = rx.recv();
        }
    }
}
