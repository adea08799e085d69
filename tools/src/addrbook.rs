//! The per-group address book `shoald` keeps next to a group's log (`group-<N>/addrbook`).
//!
//! Core's `Membership` holds only node ids; `shoald` learns where members listen from its
//! `--initial-members`, group creation and replicated address entries, and keeps them in this
//! file: one record in the shared framing (`shoal_core::record`) whose body is postcard
//! `Vec<MemberAddr>`, written as a temp file, fsynced and renamed. `import` writes it so the
//! rebuilt node can reach its new peers. The struct mirrors `shoal_std::server`'s `MemberAddr`
//! field for field (postcard encodes fields in order, without names).

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use shoal_core::record;
use shoal_core::types::{GroupId, NodeId};

use crate::backup::Member;

/// Name of the file inside a group's directory.
pub const ADDRBOOK_FILE: &str = "addrbook";

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

/// First byte of an address-book log entry (DtKV commands start with their version, 1).
pub const ADDR_ENTRY_TAG: u8 = 0xA5;

/// Decode an address-book log entry's payload, if it is one.
pub fn decode_addr_entry(data: &[u8]) -> Option<Result<MemberAddr, String>> {
    if data.first() != Some(&ADDR_ENTRY_TAG) {
        return None;
    }
    Some(
        postcard::from_bytes(&data[1..])
            .map_err(|e| format!("address entry does not decode: {}", e)),
    )
}

/// Read `group_dir/addrbook` (empty when absent).
pub fn read_address_book(group_dir: &Path) -> Result<Vec<MemberAddr>, String> {
    let path = group_dir.join(ADDRBOOK_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {}", path.display(), e)),
    };
    let (body, _) = record::decode(&bytes).map_err(|e| {
        format!(
            "{} at offset 0: damaged address book: {}",
            path.display(),
            e
        )
    })?;
    postcard::from_bytes(body).map_err(|e| {
        format!(
            "{} at offset 5: address book does not decode: {}",
            path.display(),
            e
        )
    })
}

/// Write the address book of group `group` in `data_dir` (temp file, fsync, rename).
pub fn write_address_book(
    data_dir: &Path,
    group: GroupId,
    members: &[Member],
) -> Result<(), String> {
    let gdir = shoal_std::storage::group_dir(data_dir, group);
    let list: Vec<MemberAddr> = members
        .iter()
        .map(|m| MemberAddr {
            id: m.id,
            raft_addr: m.addr.clone(),
            client_addr: m.client_addr.clone(),
        })
        .collect();
    let body = postcard::to_stdvec(&list).map_err(|e| e.to_string())?;
    let mut out = vec![0u8; body.len() + record::RECORD_OVERHEAD];
    record::encode(&body, &mut out).map_err(|e| e.to_string())?;
    let path = gdir.join(ADDRBOOK_FILE);
    let tmp = gdir.join("addrbook.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&gdir)?.sync_all()
    };
    write().map_err(|e| format!("cannot write {}: {}", path.display(), e))
}
