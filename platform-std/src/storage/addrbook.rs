//! The per-group address book: where each member's raft and client ports are, and the log
//! entries that replicated it before the cluster's member records.
//!
//! Core's `Membership` holds only node ids. Where members listen is replicated as member
//! records (`__shoal.members.<id>` in group 0's DtKV, `shoal_kv::system`); each node keeps what
//! it learned in a local cache, specified in `docs/FORMAT.md`:
//!
//! - the file `group-<N>/addrbook`: one record (shared framing) whose body is postcard
//!   `Vec<MemberAddr>`, learned from `--initial-members`, the member records and older logs'
//!   address entries, and written by `shoal-inspect import` for a rebuilt node;
//! - address entries, which logs written before the member records carry: ordinary (`Normal`)
//!   entries whose payload is [`ADDR_ENTRY_TAG`] followed by a postcard [`MemberAddr`]. DtKV
//!   commands start with their version byte (1), so the tag cannot be mistaken for one; the
//!   server's state machine skips them in DtKV and hands them to the platform. Nothing writes
//!   them any more ([`encode_addr_entry`] remains for tests that build such a log).
//!
//! Both formats live here, in the storage layer, so the server and offline tools read them with
//! the same code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoal_core::{record, NodeId};

/// Name of the file inside a group's directory.
pub const ADDRBOOK_FILE: &str = "addrbook";

/// First byte of an address-book log entry.
pub const ADDR_ENTRY_TAG: u8 = 0xA5;

/// A member's addresses as the address book stores them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAddr {
    /// The node.
    pub id: NodeId,
    /// Its raft (peer) address.
    pub raft_addr: String,
    /// Its client address.
    pub client_addr: String,
}

/// Encode an address entry as logs before the member records held them (for tests and tools
/// that build such a log).
pub fn encode_addr_entry(addr: &MemberAddr) -> Vec<u8> {
    let mut out = vec![ADDR_ENTRY_TAG];
    out.extend_from_slice(&postcard::to_allocvec(addr).expect("an address entry always encodes"));
    out
}

/// Decode a `Normal` entry's payload as an address-book entry: `None` when it is not one (no
/// tag: a DtKV command), `Some(Err)` when it carries the tag but does not decode.
pub fn decode_addr_entry(payload: &[u8]) -> Option<Result<MemberAddr, String>> {
    let body = payload.strip_prefix(&[ADDR_ENTRY_TAG])?;
    Some(postcard::from_bytes(body).map_err(|e| format!("address entry does not decode: {e}")))
}

/// Addresses by node id, persisted on every change.
#[derive(Debug)]
pub struct AddrBook {
    path: PathBuf,
    /// The entries.
    pub map: BTreeMap<NodeId, MemberAddr>,
}

impl AddrBook {
    /// Load `group_dir/addrbook` (empty if absent). Only reads.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_entries_round_trip_and_are_told_from_commands() {
        let a = MemberAddr {
            id: 4,
            raft_addr: "10.0.0.4:7001".into(),
            client_addr: "10.0.0.4:7002".into(),
        };
        let bytes = encode_addr_entry(&a);
        assert_eq!(bytes[0], ADDR_ENTRY_TAG);
        assert_eq!(decode_addr_entry(&bytes), Some(Ok(a)));
        // A DtKV command starts with its version byte: not an address entry.
        assert_eq!(decode_addr_entry(&[1, 0, 0]), None);
        assert!(matches!(
            decode_addr_entry(&[ADDR_ENTRY_TAG, 0xFF]),
            Some(Err(_))
        ));
    }

    #[test]
    fn the_book_saves_and_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut book = AddrBook::load(dir.path()).expect("absent is empty");
        assert!(book.map.is_empty());
        let a = MemberAddr {
            id: 2,
            raft_addr: "127.0.0.1:7011".into(),
            client_addr: "127.0.0.1:7012".into(),
        };
        assert!(book.upsert(a.clone()).expect("saved"));
        assert!(!book.upsert(a.clone()).expect("unchanged"));
        let again = AddrBook::load(dir.path()).expect("reads back");
        assert_eq!(again.client_addr(2).as_deref(), Some("127.0.0.1:7012"));
    }
}
