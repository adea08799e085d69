//! A node's data dir: its identity, its lock, and the groups' dirs inside it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use shoal_core::types::GroupId;

use super::space::Space;
use super::StorageOptions;
use super::{fsutil, identity, DirLock, FileStorage, Identity, IdentityCheck, OpenError};

/// The directory of group `group` inside `data_dir`.
pub fn group_dir(data_dir: &Path, group: GroupId) -> PathBuf {
    data_dir.join(format!("group-{}", group))
}

/// An opened data dir whose identity was checked, locked for this process while it lives.
#[derive(Clone, Debug)]
pub struct DataDir {
    path: PathBuf,
    identity: Identity,
    _lock: std::sync::Arc<DirLock>,
    /// The space policy every group of the dir shares, made by the first `open_group`.
    space: Arc<OnceLock<Arc<Space>>>,
}

impl DataDir {
    /// First start: create `path` if needed and record `identity`. A data dir that already has
    /// an identity is checked strictly instead (bootstrapping twice is harmless, bootstrapping
    /// over another node's data dir is refused).
    pub fn bootstrap(path: &Path, identity: &Identity) -> Result<DataDir, OpenError> {
        Self::start(path, identity, IdentityCheck::default())
    }

    /// What a node does at every start: create `path` if needed, lock it for this process
    /// (refusing if another process holds it, [`OpenError::Locked`]), then record `identity`
    /// on a fresh data dir or check it against the stored one (see [`IdentityCheck`]).
    pub fn start(
        path: &Path,
        identity: &Identity,
        check: IdentityCheck,
    ) -> Result<DataDir, OpenError> {
        fsutil::ensure_dir(path, true).map_err(|e| OpenError::io(path, "create data dir", e))?;
        let lock = std::sync::Arc::new(DirLock::acquire(path)?);
        let identity = if identity::identity_path(path).exists() {
            identity::check_identity(path, identity, check)?
        } else {
            identity::write_identity(path, identity, true)?;
            identity.clone()
        };
        Ok(DataDir {
            path: path.to_path_buf(),
            identity,
            _lock: lock,
            space: Arc::default(),
        })
    }

    /// Every later start: lock `path` and check that it belongs to `configured` (see
    /// [`IdentityCheck`]).
    pub fn open(
        path: &Path,
        configured: &Identity,
        check: IdentityCheck,
    ) -> Result<DataDir, OpenError> {
        if !identity::identity_path(path).exists() {
            return Err(OpenError::NotInitialized {
                data_dir: path.to_path_buf(),
            });
        }
        let lock = std::sync::Arc::new(DirLock::acquire(path)?);
        let identity = identity::check_identity(path, configured, check)?;
        Ok(DataDir {
            path: path.to_path_buf(),
            identity,
            _lock: lock,
            space: Arc::default(),
        })
    }

    /// The data dir's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The identity it belongs to.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Open (creating if new) the storage of one group.
    pub fn open_group(
        &self,
        group: GroupId,
        opts: &StorageOptions,
    ) -> Result<FileStorage, OpenError> {
        let space = self
            .space
            .get_or_init(|| Space::new(&self.path, opts.space))
            .clone();
        FileStorage::open_in(&self.path, group, opts, space)
    }

    /// The space policy its groups share (`None` before the first group was opened).
    pub fn space(&self) -> Option<&Arc<Space>> {
        self.space.get()
    }
}
