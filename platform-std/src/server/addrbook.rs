//! The per-group address book: where each member's raft and client ports are. Core's
//! `Membership` holds only ids; this file (`group-<N>/addrbook`, one record of postcard
//! `Vec<MemberAddr>` in the shared record framing) holds the addresses learned from
//! `--initial-members`, `GroupCreate` and replicated address entries (see [`super::kvsm`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use shoal_core::{record, NodeId};

use super::kvsm::MemberAddr;

/// Name of the file inside a group's directory.
pub const ADDRBOOK_FILE: &str = "addrbook";

/// Addresses by node id, persisted on every change.
#[derive(Debug)]
pub struct AddrBook {
    path: PathBuf,
    /// The entries.
    pub map: BTreeMap<NodeId, MemberAddr>,
}

impl AddrBook {
    /// Load `group_dir/addrbook` (empty if absent).
    pub fn load(group_dir: &Path) -> Result<AddrBook, String> {
        let path = group_dir.join(ADDRBOOK_FILE);
        let mut map = BTreeMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let (body, _) = record::decode(&bytes)
                    .map_err(|e| format!("address book {} is damaged: {e}", path.display()))?;
                let list: Vec<MemberAddr> = postcard::from_bytes(body)
                    .map_err(|e| format!("address book {} does not decode: {e}", path.display()))?;
                for a in list {
                    map.insert(a.id, a);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
        Ok(AddrBook { path, map })
    }

    /// Add or replace an entry; returns whether anything changed (and was saved).
    pub fn upsert(&mut self, a: MemberAddr) -> Result<bool, String> {
        if self.map.get(&a.id) == Some(&a) {
            return Ok(false);
        }
        self.map.insert(a.id, a);
        self.save()?;
        Ok(true)
    }

    /// Write the file atomically (temp file, fsync, rename).
    pub fn save(&self) -> Result<(), String> {
        let list: Vec<&MemberAddr> = self.map.values().collect();
        let body = postcard::to_allocvec(&list).map_err(|e| e.to_string())?;
        let mut out = vec![0u8; body.len() + record::RECORD_OVERHEAD];
        record::encode(&body, &mut out).map_err(|e| e.to_string())?;
        let tmp = self.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    /// The client address of `id`, if known.
    pub fn client_addr(&self, id: NodeId) -> Option<String> {
        self.map.get(&id).map(|a| a.client_addr.clone())
    }
}
