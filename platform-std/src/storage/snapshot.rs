//! Snapshot files: `GROUP_DIR/snap/<index>-<term>.snap`, a metadata record then the raw data.
//!
//! A snapshot is written to `<name>.snap.tmp`, fdatasynced and renamed into place by
//! `snapshot_finish` (rule 6: after a crash there is the old snapshot or the new one, whole).
//! Temp files found at open are partial snapshots and are deleted. Each finished file carries an
//! install sequence number; the highest one is current. The newest `keep_snapshots` files are
//! kept, older ones deleted.
//!
//! A snapshot the file system refuses before it is renamed into place (full, out of
//! descriptors) is discarded whole, its temp file removed to give the space back; the next
//! one starts again with `begin`. Snapshots are not held to the space reserve or quota: taking
//! one is how a full log frees space.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shoal_core::driver::SnapshotPlan;
use shoal_core::record;
use shoal_core::storage::StorageError;
use shoal_core::types::{LogIndex, SnapshotMeta, Term};

use super::error::OpenError;
use super::fsutil::{self, DirHandle, DirPath};
use super::ioerr;
use super::space::Space;
use super::BackgroundSync;

/// Magic bytes at the start of a snapshot metadata body.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"SHOALSNP";
/// Snapshot file format version written by this build.
pub const SNAPSHOT_VERSION: u8 = 1;
/// Extension of finished snapshot files.
pub const SNAPSHOT_EXT: &str = "snap";
/// Largest metadata record body accepted.
const MAX_META_BODY: usize = 4096;

/// The CRC-32C of snapshot data: the records' (hardware-assisted where the CPU has it).
use shoal_core::record::{Crc32cDigest, CRC32C as SNAP_CRC};

/// File name of the snapshot covering up to `index` (of `term`).
pub fn snapshot_name(index: LogIndex, term: Term) -> String {
    format!("{:020}-{:020}.{}", index, term, SNAPSHOT_EXT)
}

/// A finished snapshot file as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The file.
    pub path: PathBuf,
    /// Its metadata.
    pub meta: SnapshotMeta,
    /// Install sequence number: the highest in a group is the current snapshot.
    pub install_seq: u64,
    /// Byte offset of the data (the metadata record's length).
    pub data_offset: u64,
}

fn encode_meta(meta: &SnapshotMeta, install_seq: u64) -> Result<Vec<u8>, StorageError> {
    let mut body = vec![0u8; MAX_META_BODY];
    body[..8].copy_from_slice(SNAPSHOT_MAGIC);
    body[8] = SNAPSHOT_VERSION;
    body[9..17].copy_from_slice(&install_seq.to_le_bytes());
    let n = postcard::to_slice(meta, &mut body[17..])
        .map_err(|_| StorageError::BufferTooSmall {
            needed: MAX_META_BODY,
        })?
        .len();
    body.truncate(17 + n);
    let mut out = vec![0u8; body.len() + record::RECORD_OVERHEAD];
    record::encode(&body, &mut out).map_err(|_| StorageError::Io)?;
    Ok(out)
}

/// Read the metadata record of a snapshot file (does not check the data; see
/// [`verify_snapshot_data`]).
pub fn read_snapshot_info(path: &Path) -> Result<SnapshotInfo, OpenError> {
    let data_dir = data_dir_of(path);
    let corrupt = |offset: u64, detail: String| OpenError::corrupt(&data_dir, path, offset, detail);
    let mut file = File::open(path).map_err(|e| OpenError::io(path, "open snapshot", e))?;
    let mut head = vec![0u8; MAX_META_BODY + record::RECORD_OVERHEAD];
    let mut got = 0;
    while got < head.len() {
        let n = file
            .read(&mut head[got..])
            .map_err(|e| OpenError::io(path, "read snapshot", e))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    head.truncate(got);
    let (body, used) =
        record::decode(&head).map_err(|e| corrupt(0, format!("snapshot metadata: {}", e)))?;
    if body.len() < 17 || &body[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt(
            0,
            "not a Shoal snapshot (bad metadata record)".into(),
        ));
    }
    if body[8] != SNAPSHOT_VERSION {
        return Err(OpenError::UnknownVersion {
            file: path.to_path_buf(),
            found: body[8],
            supported: SNAPSHOT_VERSION,
        });
    }
    let mut w = [0u8; 8];
    w.copy_from_slice(&body[9..17]);
    let install_seq = u64::from_le_bytes(w);
    let meta: SnapshotMeta = postcard::from_bytes(&body[17..])
        .map_err(|e| corrupt(5 + 17, format!("snapshot metadata does not decode: {}", e)))?;
    Ok(SnapshotInfo {
        path: path.to_path_buf(),
        meta,
        install_seq,
        data_offset: used as u64,
    })
}

/// Check a snapshot file's data against its metadata (size and CRC-32C).
pub fn verify_snapshot_data(info: &SnapshotInfo) -> Result<(), OpenError> {
    let data_dir = data_dir_of(&info.path);
    let file = File::open(&info.path).map_err(|e| OpenError::io(&info.path, "open snapshot", e))?;
    let len = file
        .metadata()
        .map_err(|e| OpenError::io(&info.path, "stat snapshot", e))?
        .len();
    let expected = info.data_offset + info.meta.size_bytes;
    if len != expected {
        return Err(OpenError::corrupt(
            &data_dir,
            &info.path,
            len.min(expected),
            format!(
                "snapshot file is {} bytes, its metadata says {} (data {} bytes at offset {})",
                len, expected, info.meta.size_bytes, info.data_offset
            ),
        ));
    }
    let mut digest = SNAP_CRC.digest();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < info.meta.size_bytes {
        let n = (info.meta.size_bytes - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], info.data_offset + at)
            .map_err(|e| OpenError::io(&info.path, "read snapshot", e))?;
        digest.update(&buf[..n]);
        at += n as u64;
    }
    let crc = digest.finalize();
    if crc != info.meta.crc {
        return Err(OpenError::corrupt(
            &data_dir,
            &info.path,
            info.data_offset,
            format!(
                "snapshot data CRC is {:#010x}, its metadata says {:#010x}",
                crc, info.meta.crc
            ),
        ));
    }
    Ok(())
}

/// The finished snapshots in `snap_dir`, oldest install first. Temp files are not listed.
pub fn list_snapshots(snap_dir: &Path) -> Result<Vec<SnapshotInfo>, OpenError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(snap_dir).map_err(|e| OpenError::io(snap_dir, "list", e))?;
    for ent in entries {
        let ent = ent.map_err(|e| OpenError::io(snap_dir, "list", e))?;
        let path = ent.path();
        if path.extension().and_then(|e| e.to_str()) == Some(SNAPSHOT_EXT) {
            out.push(read_snapshot_info(&path)?);
        }
    }
    out.sort_by_key(|i| i.install_seq);
    Ok(out)
}

fn data_dir_of(snap_file: &Path) -> PathBuf {
    // DATA_DIR/group-N/snap/FILE
    snap_file
        .ancestors()
        .nth(3)
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// A snapshot of the state at a [`SnapshotPlan`], to be written, made durable and put in
/// place off the raft thread: from `FileStorage::begin_background_snapshot`, finished by
/// `FileStorage::finish_background_snapshot`. Until then the snapshot is not current: it is
/// not read, sent or reported, and the log is whole.
pub struct SnapshotJob {
    plan: SnapshotPlan,
    install_seq: u64,
    dir: PathBuf,
    tmp: PathBuf,
    path: PathBuf,
    sync: bool,
    /// The log's entries up to the snapshot's index must be durable before the snapshot is
    /// (storage rule: the log on disk agrees with what a snapshot keeps of it).
    log: Option<BackgroundSync>,
}

/// A snapshot [`SnapshotJob::run`] made durable and put in place under its final name.
pub struct WrittenSnapshot {
    info: SnapshotInfo,
    log: Option<BackgroundSync>,
}

impl WrittenSnapshot {
    /// Its metadata.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.info.meta
    }
}

/// Why a [`SnapshotJob`] failed: what it was doing to which file.
#[derive(Debug)]
pub struct SnapshotJobError {
    /// The file.
    pub path: PathBuf,
    /// What was being done.
    pub what: &'static str,
    /// The error.
    pub error: std::io::Error,
    /// After the file was renamed into place (or the log sync failed): the files' state is
    /// unknown and the storage must stop; before, the snapshot was simply discarded.
    pub fatal: bool,
}

impl std::fmt::Display for SnapshotJobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.what,
            self.path.display(),
            self.error
        )
    }
}

impl SnapshotJob {
    /// The index the snapshot covers.
    pub fn index(&self) -> LogIndex {
        self.plan.index
    }

    /// Write `data` (the state machine's snapshot at the plan's index) on this thread, any
    /// thread: sync the log up to it, write the temp file, fdatasync it, rename it into
    /// place and fsync the dir. Refused before the rename, the temp file is removed and the
    /// old snapshot stays current; a crash at any point leaves the old snapshot and the
    /// whole log (a temp file is deleted at open; a file in place is a complete snapshot).
    pub fn run(self, data: &[u8]) -> Result<WrittenSnapshot, SnapshotJobError> {
        let fail = |path: &Path, what, error, fatal| SnapshotJobError {
            path: path.to_path_buf(),
            what,
            error,
            fatal,
        };
        if let Some(log) = &self.log {
            log.run().map_err(|e| {
                fail(
                    &self.tmp,
                    "sync the log before",
                    std::io::Error::other(e),
                    true,
                )
            })?;
        }
        let meta = self.plan.meta(data.len() as u64, SNAP_CRC.checksum(data));
        let header = encode_meta(&meta, self.install_seq).map_err(|e| {
            fail(
                &self.tmp,
                "encode",
                std::io::Error::other(e.to_string()),
                false,
            )
        })?;
        let placed = (|| {
            let mut file = fsutil::create_file(&self.tmp).map_err(|e| ("create", e))?;
            fsutil::inject::check(fsutil::inject::Op::Write)
                .and_then(|()| file.write_all(&header))
                .and_then(|()| file.write_all(data))
                .map_err(|e| ("write", e))?;
            fsutil::sync_data(&file, self.sync).map_err(|e| ("fdatasync", e))?;
            let dir = DirHandle::open(&self.dir).map_err(|e| ("open the dir of", e))?;
            fs::rename(&self.tmp, &self.path).map_err(|e| ("rename", e))?;
            Ok(dir)
        })();
        let dir = placed.map_err(|(what, e)| {
            let _ = fs::remove_file(&self.tmp);
            fail(&self.tmp, what, e, false)
        })?;
        dir.sync(self.sync)
            .map_err(|e| fail(&self.dir, "sync", e, true))?;
        Ok(WrittenSnapshot {
            info: SnapshotInfo {
                path: self.path,
                meta,
                install_seq: self.install_seq,
                data_offset: header.len() as u64,
            },
            log: self.log,
        })
    }
}

impl WrittenSnapshot {
    /// The log sync it ran first (to record it), and the rest.
    pub(crate) fn log_sync(&self) -> Option<&BackgroundSync> {
        self.log.as_ref()
    }
}

/// A snapshot being written.
struct Incoming {
    meta: SnapshotMeta,
    install_seq: u64,
    tmp: PathBuf,
    path: PathBuf,
    out: BufWriter<File>,
    written: u64,
    digest: Crc32cDigest,
}

/// The snapshots of one group.
pub(crate) struct Snapshots {
    /// The snapshot dir: placing a snapshot opens it first.
    dir: DirPath,
    space: Arc<Space>,
    keep: usize,
    sync: bool,
    /// Finished files, oldest install first; the last is current.
    all: Vec<SnapshotInfo>,
    incoming: Option<Incoming>,
    /// The install sequence number the next snapshot gets (received, or written in the
    /// background): handed out when it begins, so that one begun later ranks higher even if
    /// it finishes first.
    next_seq: u64,
}

impl Snapshots {
    /// Open the snapshot dir: delete partial snapshots, check the current one whole.
    pub(crate) fn open(
        snap_dir: &Path,
        keep: usize,
        sync: bool,
        space: Arc<Space>,
    ) -> Result<Snapshots, OpenError> {
        fsutil::ensure_dir(snap_dir, sync).map_err(|e| OpenError::io(snap_dir, "create", e))?;
        let entries = fs::read_dir(snap_dir).map_err(|e| OpenError::io(snap_dir, "list", e))?;
        for ent in entries {
            let ent = ent.map_err(|e| OpenError::io(snap_dir, "list", e))?;
            if ent.file_name().to_string_lossy().ends_with(".tmp") {
                let p = ent.path();
                log::info!("{}: removing a partly written snapshot", p.display());
                fs::remove_file(&p).map_err(|e| OpenError::io(&p, "remove", e))?;
            }
        }
        let all = list_snapshots(snap_dir)?;
        if let Some(info) = all.last() {
            verify_snapshot_data(info)?;
        }
        let dir = DirPath::new(snap_dir);
        let next_seq = all.last().map_or(1, |i| i.install_seq + 1);
        Ok(Snapshots {
            next_seq,
            dir,
            space,
            keep: keep.max(1),
            sync,
            all,
            incoming: None,
        })
    }

    /// The current snapshot's metadata.
    pub(crate) fn current(&self) -> Option<&SnapshotMeta> {
        self.all.last().map(|i| &i.meta)
    }

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// Name a snapshot of `plan` to be written off this thread by [`SnapshotJob::run`]; `log`
    /// is the log sync that must precede it (see `FileStorage::begin_background_snapshot`).
    pub(crate) fn background_job(
        &mut self,
        plan: SnapshotPlan,
        log: Option<BackgroundSync>,
    ) -> SnapshotJob {
        let path = self.dir.path().join(snapshot_name(plan.index, plan.term));
        // Its own temp name: a snapshot received for the same index may be written meanwhile.
        let mut tmp = path.clone().into_os_string();
        tmp.push(".bg.tmp");
        SnapshotJob {
            plan,
            install_seq: self.take_seq(),
            dir: self.dir.path().to_path_buf(),
            tmp: PathBuf::from(tmp),
            path,
            sync: self.sync,
            log,
        }
    }

    /// Make a snapshot written by [`SnapshotJob::run`] known: current unless one begun after
    /// it (a snapshot received meanwhile) is already in place; then retention applies.
    pub(crate) fn adopt(&mut self, written: WrittenSnapshot) {
        let WrittenSnapshot { info, .. } = written;
        // The same name as a snapshot in place (one taken for the same index meanwhile): the
        // rename replaced that file, with the same state.
        self.all.retain(|i| i.path != info.path);
        let at = self
            .all
            .partition_point(|i| i.install_seq < info.install_seq);
        self.all.insert(at, info);
        self.retain();
    }

    /// A refusal of a snapshot's file before it is in place: discard the snapshot.
    fn refused(&mut self, path: &Path, what: &str, e: std::io::Error) -> StorageError {
        self.abandon_incoming();
        ioerr::refused(&self.space, 0, path, what, e)
    }

    pub(crate) fn begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.abandon_incoming();
        let path = self.dir.path().join(snapshot_name(meta.index, meta.term));
        let tmp = fsutil::tmp_path(&path);
        let install_seq = self.take_seq();
        let header = encode_meta(meta, install_seq)?;
        let file = match fsutil::create_file(&tmp) {
            Ok(f) => f,
            Err(e) => return Err(ioerr::refused(&self.space, 0, &tmp, "create", e)),
        };
        self.incoming = Some(Incoming {
            meta: meta.clone(),
            install_seq,
            tmp: tmp.clone(),
            path,
            out: BufWriter::with_capacity(256 << 10, file),
            written: 0,
            digest: SNAP_CRC.digest(),
        });
        let inc = self.incoming.as_mut().expect("just set");
        if let Err(e) = inc.out.write_all(&header) {
            return Err(self.refused(&tmp, "write", e));
        }
        Ok(())
    }

    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let inc = self.incoming.as_mut().ok_or(StorageError::SnapshotState)?;
        if offset != inc.written || offset + data.len() as u64 > inc.meta.size_bytes {
            return Err(StorageError::SnapshotState);
        }
        if let Err(e) =
            fsutil::inject::check(fsutil::inject::Op::Write).and_then(|()| inc.out.write_all(data))
        {
            let tmp = inc.tmp.clone();
            return Err(self.refused(&tmp, "write", e));
        }
        inc.digest.update(data);
        inc.written += data.len() as u64;
        Ok(())
    }

    /// Whether a complete snapshot is being written (so `finish` can proceed).
    pub(crate) fn incoming_meta(&self) -> Result<SnapshotMeta, StorageError> {
        let inc = self.incoming.as_ref().ok_or(StorageError::SnapshotState)?;
        if inc.written != inc.meta.size_bytes {
            return Err(StorageError::SnapshotState);
        }
        Ok(inc.meta.clone())
    }

    /// Make the incoming snapshot durable and current (rename), then apply retention. Refused
    /// before the rename, the snapshot is discarded; any failure after it is fatal.
    pub(crate) fn finish(&mut self) -> Result<(), StorageError> {
        self.incoming_meta()?;
        let Some(inc) = self.incoming.take() else {
            return Err(StorageError::SnapshotState);
        };
        let Incoming {
            meta,
            install_seq,
            tmp,
            path,
            out,
            digest,
            ..
        } = inc;
        if digest.finalize() != meta.crc {
            log::error!(
                "{}: snapshot data does not match its CRC; discarding it",
                tmp.display()
            );
            let _ = fs::remove_file(&tmp);
            return Err(StorageError::Corrupt { location: 0 });
        }
        let placed = (|| {
            let file = out.into_inner().map_err(|e| e.into_error())?;
            fsutil::sync_data(&file, self.sync)?;
            drop(file);
            let dir = self.dir.open()?;
            fs::rename(&tmp, &path)?;
            Ok(dir)
        })();
        let dir = match placed {
            Ok(d) => d,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(ioerr::refused(&self.space, 0, &tmp, "write", e));
            }
        };
        dir.sync(self.sync)
            .map_err(|e| ioerr::fatal(dir.path(), "sync", e))?;
        let data_offset = encode_meta(&meta, install_seq)?.len() as u64;
        self.all.retain(|i| i.path != path);
        self.all.push(SnapshotInfo {
            path,
            meta,
            install_seq,
            data_offset,
        });
        self.retain();
        Ok(())
    }

    /// Delete the oldest finished snapshots beyond `keep`. Failures only log: an extra old
    /// snapshot is harmless.
    fn retain(&mut self) {
        while self.all.len() > self.keep {
            let old = self.all.remove(0);
            if let Err(e) = fs::remove_file(&old.path) {
                log::warn!("cannot remove old snapshot {}: {}", old.path.display(), e);
            }
        }
    }

    pub(crate) fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        let Some(info) = self.all.last() else {
            return Err(StorageError::NoSnapshot);
        };
        if offset >= info.meta.size_bytes {
            return Ok(0);
        }
        let n = (info.meta.size_bytes - offset).min(buf.len() as u64) as usize;
        // Opened for each read: a group keeps no descriptor on its snapshot between sends.
        let file = fsutil::open_existing(&info.path, false)
            .map_err(|e| ioerr::refused(&self.space, 0, &info.path, "open", e))?;
        file.read_exact_at(&mut buf[..n], info.data_offset + offset)
            .map_err(|e| ioerr::fatal(&info.path, "read", e))?;
        Ok(n)
    }

    /// Drop a partly written snapshot, deleting its temp file.
    pub(crate) fn abandon_incoming(&mut self) {
        if let Some(inc) = self.incoming.take() {
            drop(inc.out);
            let _ = fs::remove_file(&inc.tmp);
        }
    }

    /// Crash tests: forget the incoming snapshot without deleting its file (as a power cut).
    #[cfg(test)]
    pub(crate) fn crash(&mut self) {
        if let Some(inc) = self.incoming.take() {
            // Whatever reached the OS stays in the temp file; recovery must delete it.
            let _ = inc.out.into_inner();
        }
    }

    /// Paths of the finished snapshot files, oldest first (tests).
    #[cfg(test)]
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        self.all.iter().map(|i| i.path.clone()).collect()
    }
}
