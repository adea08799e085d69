//! Reading and writing the portable snapshot file (its format:
//! [`shoal_std::storage::export`]), written by `export` (and by `shoalctl snapshot save`) and
//! read by `import` and `snapshot`, and reading a `.snap` file of a data dir the same way.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use shoal_core::record::{self, CRC32C};
use shoal_core::types::{GroupId, SnapshotMeta};
pub use shoal_std::storage::export::{encode_header, ExportHeader, EXPORT_MAGIC, EXPORT_VERSION};
use shoal_std::storage::export::{publish, temp_path};
use shoal_std::storage::scan::{read_snapshot_info, verify_snapshot_data, SNAPSHOT_MAGIC};

use crate::datadir::open_error_problem;
use crate::problem::Problem;

/// Write an export file atomically (temp file, fsync, rename). Refuses to replace an
/// existing file unless `force`.
pub fn write_export(path: &Path, h: &ExportHeader, data: &[u8], force: bool) -> Result<(), String> {
    if path.exists() && !force {
        return Err(format!(
            "{} already exists; choose another --out or pass --force to replace it",
            path.display()
        ));
    }
    let tmp = temp_path(path);
    let io = |what: &str, e: std::io::Error| format!("{} {}: {}", what, tmp.display(), e);
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
    f.write_all(&encode_header(h)).map_err(|e| io("write", e))?;
    f.write_all(data).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("fsync", e))?;
    drop(f);
    publish(&tmp, path)
}

/// Where a snapshot came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotSource {
    /// A portable file written by `export`.
    Export,
    /// A `.snap` file of a data dir.
    DataDir,
    /// The snapshot slot of a flash image.
    FlashImage,
}

impl SnapshotSource {
    /// In words, for people.
    pub fn describe(self) -> &'static str {
        match self {
            SnapshotSource::Export => "portable export",
            SnapshotSource::DataDir => "data dir snapshot",
            SnapshotSource::FlashImage => "flash image snapshot",
        }
    }
}

/// A snapshot read whole and checked: an export file, a data dir `.snap` file, or the
/// snapshot of a flash image.
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    /// The file (for a flash image, the image).
    pub path: PathBuf,
    /// Which kind it is.
    pub source: SnapshotSource,
    /// The export header (for a `.snap` or an image, the fields it has; cluster and node are
    /// 0, which `import` asks to be given).
    pub header: ExportHeader,
    /// The DtKV snapshot bytes.
    pub data: Vec<u8>,
}

impl SnapshotFile {
    /// A node's own snapshot (not an export) of `group`, described by `meta`, whose `data`
    /// was checked against its size and CRC. Its digest is computed by restoring it.
    pub fn new(
        path: &Path,
        source: SnapshotSource,
        group: GroupId,
        meta: &SnapshotMeta,
        data: Vec<u8>,
    ) -> SnapshotFile {
        let digest = crate::state::rebuild(
            shoal_kv::KvLimits::server(),
            Some((&data, meta.index)),
            &[],
            |kv| kv.digest(),
        )
        .unwrap_or(0);
        SnapshotFile {
            path: path.to_path_buf(),
            source,
            header: ExportHeader {
                cluster_id: 0,
                source_node: 0,
                group,
                index: meta.index,
                term: meta.term,
                membership: meta.membership.clone(),
                digest,
                data_bytes: meta.size_bytes,
                data_crc: meta.crc,
                created_unix_s: 0,
            },
            data,
        }
    }
}

/// Read an export file or a data dir `.snap` file, checking its framing, size and CRC.
/// Errors name the file and the byte offset.
pub fn read_snapshot_file(path: &Path) -> Result<SnapshotFile, Problem> {
    let bytes = std::fs::read(path)
        .map_err(|e| Problem::error(path, None, format!("cannot read: {}", e)))?;
    let (body, used) = record::decode(&bytes).map_err(|e| {
        Problem::error(
            path,
            Some(0),
            format!("not a Shoal snapshot or export file: header record: {}", e),
        )
    })?;
    if body.len() >= 9 && &body[..8] == SNAPSHOT_MAGIC {
        return read_dir_snapshot(path, bytes);
    }
    if body.len() < 9 || &body[..8] != EXPORT_MAGIC {
        return Err(Problem::error(
            path,
            Some(4),
            "the header record is neither an export (SHOALEXP) nor a snapshot (SHOALSNP)",
        ));
    }
    if body[8] != EXPORT_VERSION {
        return Err(
            Problem::error(path, Some(12), "export format version not supported")
                .expected_found(EXPORT_VERSION, body[8]),
        );
    }
    let header: ExportHeader = postcard::from_bytes(&body[9..]).map_err(|e| {
        Problem::error(
            path,
            Some(14),
            format!("export header does not decode: {}", e),
        )
    })?;
    let data = &bytes[used..];
    if data.len() as u64 != header.data_bytes {
        return Err(Problem::error(
            path,
            Some(used as u64 + data.len().min(header.data_bytes as usize) as u64),
            "the export's data has the wrong length (a truncated copy?)",
        )
        .expected_found(
            format!("{} bytes", header.data_bytes),
            format!("{} bytes", data.len()),
        ));
    }
    let crc = CRC32C.checksum(data);
    if crc != header.data_crc {
        return Err(Problem::error(
            path,
            Some(used as u64),
            "the export's data CRC does not match",
        )
        .expected_found(
            format!("{:#010x}", header.data_crc),
            format!("{:#010x}", crc),
        ));
    }
    Ok(SnapshotFile {
        path: path.to_path_buf(),
        source: SnapshotSource::Export,
        header,
        data: data.to_vec(),
    })
}

fn read_dir_snapshot(path: &Path, mut bytes: Vec<u8>) -> Result<SnapshotFile, Problem> {
    let info = read_snapshot_info(path).map_err(|e| open_error_problem(&e, path))?;
    verify_snapshot_data(&info).map_err(|e| open_error_problem(&e, path))?;
    let start = info.data_offset as usize;
    bytes.truncate(start + info.meta.size_bytes as usize);
    bytes.drain(..start);
    let group = group_of(path).unwrap_or(0);
    Ok(SnapshotFile::new(
        path,
        SnapshotSource::DataDir,
        group,
        &info.meta,
        bytes,
    ))
}

/// The group of a `DATA_DIR/group-N/snap/FILE` path.
fn group_of(path: &Path) -> Option<GroupId> {
    path.ancestors()
        .nth(2)?
        .file_name()?
        .to_str()?
        .strip_prefix("group-")?
        .parse()
        .ok()
}
