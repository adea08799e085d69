//! The data dir's identity file: which cluster and node a data dir belongs to.
//!
//! `DATA_DIR/identity` is one record (see `docs/FORMAT.md`) written once at bootstrap and
//! checked at every start, so that a node pointed at another node's data dir, or a data dir of
//! another cluster, refuses to start instead of corrupting a cluster (architecture rule 6).

use std::path::{Path, PathBuf};

use shoal_core::record;
use shoal_core::types::{ClusterId, NodeId};

use super::error::OpenError;
use super::fsutil;

/// Magic bytes at the start of the identity record body.
pub const IDENTITY_MAGIC: &[u8; 8] = b"SHOALID\0";
/// Format version of the identity body written by this build.
pub const IDENTITY_VERSION: u8 = 1;
/// Name of the identity file inside a data dir.
pub const IDENTITY_FILE: &str = "identity";
/// Longest raft address stored (bytes).
pub const MAX_ADDR_BYTES: usize = 1024;

/// Who a data dir belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster the node belongs to.
    pub cluster_id: ClusterId,
    /// The node's id inside the cluster.
    pub node_id: NodeId,
    /// The address peers reach this node's raft port at (for example `10.0.0.5:7000`).
    pub raft_addr: String,
}

/// How strictly [`check_identity`] compares a configured identity with the stored one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdentityCheck {
    /// Accept (and record) a changed raft address. Cluster and node ids must always match.
    pub allow_addr_change: bool,
}

/// The path of the identity file of `data_dir`.
pub fn identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join(IDENTITY_FILE)
}

/// Encode an identity as a framed record.
pub fn encode_identity(id: &Identity) -> Result<Vec<u8>, OpenError> {
    let addr = id.raft_addr.as_bytes();
    if addr.len() > MAX_ADDR_BYTES {
        return Err(OpenError::BadOption {
            name: "raft_addr",
            detail: format!(
                "{} bytes long, at most {} allowed",
                addr.len(),
                MAX_ADDR_BYTES
            ),
        });
    }
    let mut body = Vec::with_capacity(8 + 1 + 8 + 8 + 2 + addr.len());
    body.extend_from_slice(IDENTITY_MAGIC);
    body.push(IDENTITY_VERSION);
    body.extend_from_slice(&id.cluster_id.to_le_bytes());
    body.extend_from_slice(&id.node_id.to_le_bytes());
    body.extend_from_slice(&(addr.len() as u16).to_le_bytes());
    body.extend_from_slice(addr);
    let mut out = vec![0u8; body.len() + record::RECORD_OVERHEAD];
    record::encode(&body, &mut out).map_err(|e| OpenError::BadOption {
        name: "identity",
        detail: e.to_string(),
    })?;
    Ok(out)
}

/// Read and check the identity file of `data_dir` without comparing it to anything.
pub fn read_identity(data_dir: &Path) -> Result<Identity, OpenError> {
    let path = identity_path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(OpenError::NotInitialized {
                data_dir: data_dir.to_path_buf(),
            })
        }
        Err(e) => return Err(OpenError::io(&path, "read identity file", e)),
    };
    let corrupt = |offset: u64, detail: String| OpenError::corrupt(data_dir, &path, offset, detail);
    let (body, used) = record::decode(&bytes).map_err(|e| corrupt(0, e.to_string()))?;
    if used != bytes.len() {
        return Err(corrupt(
            used as u64,
            format!(
                "{} unexpected bytes after the identity record",
                bytes.len() - used
            ),
        ));
    }
    let field = |at: usize, n: usize| -> Result<&[u8], OpenError> {
        body.get(at..at + n).ok_or_else(|| {
            corrupt(
                5 + at as u64,
                "identity record is shorter than its fields".into(),
            )
        })
    };
    if field(0, 8)? != IDENTITY_MAGIC {
        return Err(corrupt(5, "not a Shoal identity file (bad magic)".into()));
    }
    let version = field(8, 1)?[0];
    if version != IDENTITY_VERSION {
        return Err(OpenError::UnknownVersion {
            file: path,
            found: version,
            supported: IDENTITY_VERSION,
        });
    }
    let u64_at = |at: usize| -> Result<u64, OpenError> {
        let mut w = [0u8; 8];
        w.copy_from_slice(field(at, 8)?);
        Ok(u64::from_le_bytes(w))
    };
    let cluster_id = u64_at(9)?;
    let node_id = u64_at(17)?;
    let len_bytes = field(25, 2)?;
    let addr_len = u16::from_le_bytes([len_bytes[0], len_bytes[1]]) as usize;
    let addr = field(27, addr_len)?;
    if body.len() != 27 + addr_len {
        return Err(corrupt(5, "identity record has trailing bytes".into()));
    }
    let raft_addr = String::from_utf8(addr.to_vec())
        .map_err(|_| corrupt(5 + 27, "raft address is not UTF-8".into()))?;
    Ok(Identity {
        cluster_id,
        node_id,
        raft_addr,
    })
}

/// Write the identity file (atomically). Used at bootstrap and for an allowed address change.
pub(crate) fn write_identity(data_dir: &Path, id: &Identity, sync: bool) -> Result<(), OpenError> {
    let path = identity_path(data_dir);
    let bytes = encode_identity(id)?;
    fsutil::write_atomic(&path, &bytes, sync)
        .map_err(|e| OpenError::io(&path, "write identity file", e))
}

/// Compare the stored identity of `data_dir` with the configured one.
///
/// Cluster id and node id must match; the raft address must match unless
/// [`IdentityCheck::allow_addr_change`], in which case the new address is recorded.
pub fn check_identity(
    data_dir: &Path,
    configured: &Identity,
    check: IdentityCheck,
) -> Result<Identity, OpenError> {
    let stored = read_identity(data_dir)?;
    if stored.cluster_id != configured.cluster_id {
        return Err(OpenError::ClusterMismatch {
            data_dir: data_dir.to_path_buf(),
            on_disk: stored.cluster_id,
            configured: configured.cluster_id,
        });
    }
    if stored.node_id != configured.node_id {
        return Err(OpenError::NodeMismatch {
            data_dir: data_dir.to_path_buf(),
            on_disk: stored.node_id,
            configured: configured.node_id,
        });
    }
    if stored.raft_addr != configured.raft_addr {
        if !check.allow_addr_change {
            return Err(OpenError::AddressChanged {
                data_dir: data_dir.to_path_buf(),
                on_disk: stored.raft_addr,
                configured: configured.raft_addr.clone(),
            });
        }
        log::info!(
            "data dir {}: raft address changes from {} to {} (allowed)",
            data_dir.display(),
            stored.raft_addr,
            configured.raft_addr
        );
        write_identity(data_dir, configured, true)?;
    }
    Ok(configured.clone())
}
