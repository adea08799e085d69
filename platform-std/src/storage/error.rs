//! Errors of opening a data dir or a group's storage, in words an operator can act on.
//!
//! Corruption is never repaired silently: it stops the open with the file, the byte offset and
//! the command to run. Identity mismatches name both values, so a misconfigured node says which
//! data dir it was pointed at and what it expected.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use shoal_core::types::{ClusterId, NodeId};

/// Why a data dir or a group's storage could not be opened (or a tool could not read it).
#[derive(Debug)]
pub enum OpenError {
    /// An operating-system call failed on `path`.
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What was being done (for example "read segment").
        action: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Stored bytes are damaged somewhere other than a torn, unsynced tail.
    Corrupt {
        /// The data dir, for the `shoal-inspect verify` command in the message.
        data_dir: PathBuf,
        /// The damaged file.
        file: PathBuf,
        /// Byte offset in `file` where the damage starts.
        offset: u64,
        /// What is wrong there.
        detail: String,
    },
    /// The data dir has no identity file: it was never bootstrapped.
    NotInitialized {
        /// The data dir.
        data_dir: PathBuf,
    },
    /// Another process holds the data dir (one process per data dir).
    Locked {
        /// The data dir.
        data_dir: PathBuf,
        /// Who holds it, as it recorded itself (pid, host, since when).
        holder: String,
    },
    /// The data dir belongs to another cluster.
    ClusterMismatch {
        /// The data dir.
        data_dir: PathBuf,
        /// Cluster id recorded in the data dir.
        on_disk: ClusterId,
        /// Cluster id this node was configured with.
        configured: ClusterId,
    },
    /// The data dir belongs to another node.
    NodeMismatch {
        /// The data dir.
        data_dir: PathBuf,
        /// Node id recorded in the data dir.
        on_disk: NodeId,
        /// Node id this node was configured with.
        configured: NodeId,
    },
    /// The node's raft address changed and the change was not allowed.
    AddressChanged {
        /// The data dir.
        data_dir: PathBuf,
        /// Address recorded in the data dir.
        on_disk: String,
        /// Address this node was configured with.
        configured: String,
    },
    /// A file was written by a newer (or unknown) format version.
    UnknownVersion {
        /// The file.
        file: PathBuf,
        /// The version found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// A storage option is out of its allowed range.
    BadOption {
        /// The option's name.
        name: &'static str,
        /// Why it is refused.
        detail: String,
    },
}

impl OpenError {
    pub(crate) fn io(path: &Path, action: &'static str, source: io::Error) -> Self {
        OpenError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    pub(crate) fn corrupt(
        data_dir: &Path,
        file: &Path,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        OpenError::Corrupt {
            data_dir: data_dir.to_path_buf(),
            file: file.to_path_buf(),
            offset,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io {
                path,
                action,
                source,
            } => write!(f, "cannot {} {}: {}", action, path.display(), source),
            OpenError::Corrupt {
                data_dir,
                file,
                offset,
                detail,
            } => write!(
                f,
                "data corruption in {} at byte offset {}: {}. Shoal does not repair this \
                 automatically; run `shoal-inspect verify {}` to see the damage, then restore this \
                 node from a healthy replica or snapshot",
                file.display(),
                offset,
                detail,
                data_dir.display()
            ),
            OpenError::Locked { data_dir, holder } => write!(
                f,
                "data dir {} is in use by another process ({holder}); one process per data dir: \
                 stop that one first, or give this node its own --data-dir",
                data_dir.display()
            ),
            OpenError::NotInitialized { data_dir } => write!(
                f,
                "data dir {} has no identity file; bootstrap the node first",
                data_dir.display()
            ),
            OpenError::ClusterMismatch {
                data_dir,
                on_disk,
                configured,
            }
            | OpenError::NodeMismatch {
                data_dir,
                on_disk,
                configured,
            } => {
                let (id, configured_as) = match self {
                    OpenError::ClusterMismatch { .. } => ("cluster", "for"),
                    _ => ("node", "as"),
                };
                write!(
                    f,
                    "data dir {} belongs to {id} {on_disk} but this node is configured \
                     {configured_as} {id} {configured}; point the node at its own data dir or fix \
                     the {id} id",
                    data_dir.display()
                )
            }
            OpenError::AddressChanged {
                data_dir,
                on_disk,
                configured,
            } => write!(
                f,
                "data dir {} was created for raft address {} but this node is configured with {}; \
                 if the node really moved, start it once with --allow-addr-change (and update its \
                 address in the cluster)",
                data_dir.display(),
                on_disk,
                configured
            ),
            OpenError::UnknownVersion {
                file,
                found,
                supported,
            } => write!(
                f,
                "{} has format version {}, this build reads version {}; use a matching shoald",
                file.display(),
                found,
                supported
            ),
            OpenError::BadOption { name, detail } => {
                write!(f, "storage option `{}` is invalid: {}", name, detail)
            }
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_of_another_cluster_or_node_names_both_ids() {
        let data_dir = PathBuf::from("/var/lib/shoal");
        let cluster = OpenError::ClusterMismatch {
            data_dir: data_dir.clone(),
            on_disk: 7,
            configured: 8,
        };
        assert_eq!(
            cluster.to_string(),
            "data dir /var/lib/shoal belongs to cluster 7 but this node is configured for \
             cluster 8; point the node at its own data dir or fix the cluster id"
        );
        let node = OpenError::NodeMismatch {
            data_dir,
            on_disk: 2,
            configured: 3,
        };
        assert_eq!(
            node.to_string(),
            "data dir /var/lib/shoal belongs to node 2 but this node is configured as node 3; \
             point the node at its own data dir or fix the node id"
        );
    }
}
