//! The per-group address book `shoald` keeps next to a group's log (`group-<N>/addrbook`),
//! read and written through the server's own types so the tools and the server can never
//! disagree on its format. `import` writes it so a rebuilt node can reach its new peers.

use std::path::Path;

use shoal_core::types::GroupId;
use shoal_std::server::addrbook::AddrBook;
pub use shoal_std::server::addrbook::ADDRBOOK_FILE;
pub use shoal_std::server::kvsm::{MemberAddr, ADDR_ENTRY_TAG};

use crate::backup::Member;

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
    Ok(AddrBook::load(group_dir)?.map.into_values().collect())
}

/// Write the address book of group `group` in `data_dir` (temp file, fsync, rename).
pub fn write_address_book(
    data_dir: &Path,
    group: GroupId,
    members: &[Member],
) -> Result<(), String> {
    let gdir = shoal_std::storage::group_dir(data_dir, group);
    let mut book = AddrBook::load(&gdir)?;
    for m in members {
        book.upsert(MemberAddr {
            id: m.id,
            raft_addr: m.addr.clone(),
            client_addr: m.client_addr.clone(),
        })?;
    }
    book.save()
}
