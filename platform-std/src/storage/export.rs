//! The portable snapshot file: what `shoal-inspect export` writes from a stopped node's data
//! dir and `shoalctl snapshot save` from a running node, and what `shoal-inspect snapshot`
//! verifies and `shoal-inspect import` restores.
//!
//! ```text
//! offset 0:   header record (shoal_core::record framing: len u32 | version u8 | body | crc32c)
//!             body = magic "SHOALEXP" | export format version u8 (1) | postcard(ExportHeader)
//! then:       the DtKV snapshot bytes (ExportHeader::data_bytes of them, CRC-32C data_crc)
//! ```
//! Writers write `FILE.tmp`, fsync and rename it, so a name only ever points at a complete
//! file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoal_core::membership::Membership;
use shoal_core::record::{self, RECORD_OVERHEAD};
use shoal_core::types::{ClusterId, GroupId, LogIndex, NodeId, Term};

/// Magic at the start of the header body.
pub const EXPORT_MAGIC: &[u8; 8] = b"SHOALEXP";
/// Export format version written by this build.
pub const EXPORT_VERSION: u8 = 1;

/// What an export file says about its snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportHeader {
    /// Cluster the data came from.
    pub cluster_id: ClusterId,
    /// Node whose data dir was exported.
    pub source_node: NodeId,
    /// Raft group.
    pub group: GroupId,
    /// Last log index the state covers.
    pub index: LogIndex,
    /// Term of that entry.
    pub term: Term,
    /// Membership in force at `index`.
    pub membership: Membership,
    /// `DtKv::digest` of the state (equal states give equal digests on every replica; 0 when
    /// the writer could not compute it).
    pub digest: u64,
    /// Bytes of DtKV snapshot data that follow the header record.
    pub data_bytes: u64,
    /// CRC-32C of those bytes.
    pub data_crc: u32,
    /// When the export was made (seconds since the Unix epoch; informational).
    pub created_unix_s: u64,
}

/// Encode the header record.
pub fn encode_header(h: &ExportHeader) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    body.extend_from_slice(EXPORT_MAGIC);
    body.push(EXPORT_VERSION);
    body.extend_from_slice(&postcard::to_stdvec(h).expect("a header always serializes"));
    let mut out = vec![0u8; body.len() + RECORD_OVERHEAD];
    record::encode(&body, &mut out).expect("the buffer fits the record");
    out
}

/// The temporary name an export is written under before it is renamed to `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Make the finished `tmp` file `path`: rename it into place and sync the directory, so the
/// name survives a crash.
pub fn publish(tmp: &Path, path: &Path) -> Result<(), String> {
    std::fs::rename(tmp, path)
        .map_err(|e| format!("rename {} to {}: {}", tmp.display(), path.display(), e))?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
