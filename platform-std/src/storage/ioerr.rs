//! What an IO failure means to the storage, decided by where it happened.
//!
//! A failure *before* a write changed anything the storage relies on is a refusal: a full file
//! system (`ENOSPC`, `EDQUOT`) is [`StorageError::Full`] and raises the space alarm; a process
//! or system out of descriptors or memory (`EMFILE`, `ENFILE`, `ENOMEM`, `ENOBUFS`) is
//! [`StorageError::NoResources`]. Both degrade the node (the core's failure policy) and the
//! same call can be made again later. Anything else, and any failure *after* the files
//! changed, is [`StorageError::Io`], which is fatal: the storage no longer knows what the files
//! hold. A failed fdatasync is always fatal, whatever its errno (the [`super::fsutil`] sync
//! helpers hide the errno so that it cannot pass for a refusal).
//!
//! Refusals come in bursts (every write while the disk is full), so they are logged at most
//! once per [`REFUSAL_LOG_INTERVAL`] per kind; faults are always logged.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shoal_core::storage::StorageError;

use super::space::Space;

/// Refusals of one kind are logged at most once per this interval.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Whether `e` is a refusal, and of which kind, if it happened before anything changed.
pub(crate) fn refusal_kind(e: &io::Error) -> Option<StorageError> {
    match e.raw_os_error()? {
        libc::ENOSPC | libc::EDQUOT => Some(StorageError::Full),
        libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS => {
            Some(StorageError::NoResources)
        }
        _ => None,
    }
}

/// A failure before anything changed: a refusal when the file system or the system said so,
/// else a fault. `need_bytes` is what must fit again for a raised space alarm to clear.
pub(crate) fn refused(
    space: &Space,
    need_bytes: u64,
    path: &Path,
    what: &str,
    e: io::Error,
) -> StorageError {
    match refusal_kind(&e) {
        Some(StorageError::Full) => {
            space.out_of_space(path, need_bytes);
            log_refusal(0, path, what, &e);
            StorageError::Full
        }
        Some(kind) => {
            log_refusal(1, path, what, &e);
            kind
        }
        None => fatal(path, what, e),
    }
}

/// A failure that leaves the files in a state the storage cannot vouch for.
pub(crate) fn fatal(path: &Path, what: &str, e: io::Error) -> StorageError {
    log::error!("cannot {what} {}: {e}", path.display());
    StorageError::Io
}

/// Log a refusal of kind `k` unless one of its kind was logged within the interval.
fn log_refusal(k: usize, path: &Path, what: &str, e: &io::Error) {
    static START: OnceLock<Instant> = OnceLock::new();
    static LAST_MS: [AtomicU64; 2] = [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)];
    let now = START.get_or_init(Instant::now).elapsed().as_millis() as u64;
    let last = LAST_MS[k].load(Ordering::Relaxed);
    if last != u64::MAX && now < last + REFUSAL_LOG_INTERVAL.as_millis() as u64 {
        return;
    }
    LAST_MS[k].store(now, Ordering::Relaxed);
    log::warn!(
        "cannot {what} {}: {e}; refused, nothing written, tried again later (further refusals \
         are counted, and logged at most every {}s)",
        path.display(),
        REFUSAL_LOG_INTERVAL.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_space_and_resource_errors_are_refusals() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(refusal_kind(&os(libc::ENOSPC)), Some(StorageError::Full));
        assert_eq!(refusal_kind(&os(libc::EDQUOT)), Some(StorageError::Full));
        assert_eq!(
            refusal_kind(&os(libc::EMFILE)),
            Some(StorageError::NoResources)
        );
        assert_eq!(refusal_kind(&os(libc::EIO)), None);
        // A failed sync hides its errno: never a refusal.
        assert_eq!(
            refusal_kind(&super::super::fsutil::sync_failed(os(libc::ENOSPC))),
            None
        );
    }
}
