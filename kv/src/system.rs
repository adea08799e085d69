//! The reserved subtree `__shoal`: the cluster's own records, replicated through the log like
//! any other key and applied the same way by every replica (a server or a board), carried by
//! snapshots with the rest of the tree.
//!
//! ```text
//! __shoal.members.<node id>   MemberRecord: where a member's raft and client ports listen
//! __shoal.groups.<group id>   GroupRecord: the members a group was created with, or a tombstone
//! ```
//!
//! Clients may read the subtree and watch it, never write it: every client write naming a key
//! in it is refused with [`KvError::Reserved`]. Only the system operations ([`Op::SysPut`],
//! [`Op::SysCreate`], [`Op::SysRemove`]) write here, and they write nowhere else
//! ([`KvError::NotSystemKey`]); a server proposes them itself and its client protocol has no
//! way to ask for them. A system write creates the directories above its key in the same
//! all-or-nothing step.
//!
//! Record values are a version byte ([`RECORD_VERSION`]) followed by postcard, so a newer
//! build can add a layout and an older one refuses it by name rather than misreading it.
//!
//! [`Op::SysPut`]: crate::Op::SysPut
//! [`Op::SysCreate`]: crate::Op::SysCreate
//! [`Op::SysRemove`]: crate::Op::SysRemove

use core::fmt::Write as _;

use serde::{Deserialize, Serialize};
use shoal_core::membership::NodeSet;
use shoal_core::types::{GroupId, NodeId};

use crate::arena::cost;
use crate::command::{decode_versioned, encode_versioned, CodecError, NodeKind};
use crate::error::KvError;
use crate::events::EventKind;
use crate::key::{in_subtree, name_of, parent_of, validate_key, SEPARATOR};
use crate::memory::KvMemory;
use crate::store::DtKv;

/// The root of the reserved subtree.
pub const SYSTEM_ROOT: &[u8] = b"__shoal";
/// The directory of member records, one per node id.
pub const MEMBERS_DIR: &[u8] = b"__shoal.members";
/// The directory of group records, one per group id.
pub const GROUPS_DIR: &[u8] = b"__shoal.groups";
/// The directory of users, roles and the token key (written by shoald's auth; its values are
/// password hashes and keys, which no client reads and tools do not print).
pub const AUTH_DIR: &[u8] = b"__shoal.auth";
/// The directory of leases, one node per live lease, named by its id.
pub const LEASES_DIR: &[u8] = b"__shoal.leases";
/// The version byte every record value starts with.
pub const RECORD_VERSION: u8 = 1;
/// Longest record key: `__shoal.members.` and a 20-digit id.
pub const MAX_RECORD_KEY_BYTES: usize = 40;
/// Longest address a member record holds (a host name and a port).
pub const MAX_ADDR_BYTES: usize = 256;

/// Whether `key` lies in the reserved subtree (the subtree's root included).
pub fn is_reserved(key: &[u8]) -> bool {
    in_subtree(key, SYSTEM_ROOT)
}

/// A client write's key check: keys in the reserved subtree are refused.
pub(crate) fn client_key(key: &[u8]) -> Result<(), KvError> {
    if is_reserved(key) {
        Err(KvError::Reserved)
    } else {
        Ok(())
    }
}

/// A system write's key check: only keys strictly below the subtree's root.
pub(crate) fn system_key(key: &[u8]) -> Result<(), KvError> {
    if is_reserved(key) && key != SYSTEM_ROOT {
        Ok(())
    } else {
        Err(KvError::NotSystemKey)
    }
}

/// A record's key, built without allocating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordKey(heapless::String<MAX_RECORD_KEY_BYTES>);

impl RecordKey {
    fn new(dir: &[u8], id: u64) -> RecordKey {
        let mut s = heapless::String::new();
        // `dir` is one of this module's ASCII constants and a u64 has at most 20 digits.
        let dir = core::str::from_utf8(dir).expect("record directories are ASCII");
        write!(s, "{dir}.{id}").expect("a record key fits MAX_RECORD_KEY_BYTES");
        RecordKey(s)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `__shoal.members.<id>`.
pub fn member_key(id: NodeId) -> RecordKey {
    RecordKey::new(MEMBERS_DIR, id)
}

/// `__shoal.groups.<gid>`.
pub fn group_key(gid: GroupId) -> RecordKey {
    RecordKey::new(GROUPS_DIR, u64::from(gid))
}

/// `__shoal.leases.<id>`.
pub fn lease_key(id: u64) -> RecordKey {
    RecordKey::new(LEASES_DIR, id)
}

/// The id a record key of `dir` names (`__shoal.members.4` in [`MEMBERS_DIR`] is 4): `None`
/// for a key elsewhere or a name that is not a decimal number without leading zeros.
pub fn record_id(key: &[u8], dir: &[u8]) -> Option<u64> {
    if parent_of(key) != dir {
        return None;
    }
    let name = core::str::from_utf8(name_of(key)).ok()?;
    if name.len() > 1 && name.starts_with('0') {
        return None;
    }
    name.parse().ok()
}

/// Where a member listens: the value of `__shoal.members.<id>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord<'a> {
    /// Its raft (peer) address, `host:port`.
    pub raft_addr: &'a str,
    /// Its client address, `host:port` (empty for a node without a client port, such as a
    /// board).
    pub client_addr: &'a str,
}

impl<'a> MemberRecord<'a> {
    /// Encode into `buf`; returns the bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, CodecError> {
        encode_versioned(RECORD_VERSION, self, buf)
    }

    /// Decode a record value, borrowing its addresses. Addresses longer than
    /// [`MAX_ADDR_BYTES`] are refused.
    pub fn decode(bytes: &'a [u8]) -> Result<MemberRecord<'a>, CodecError> {
        let r: MemberRecord<'a> = decode_versioned(RECORD_VERSION, bytes)?;
        if r.raft_addr.len() > MAX_ADDR_BYTES || r.client_addr.len() > MAX_ADDR_BYTES {
            return Err(CodecError::Malformed);
        }
        Ok(r)
    }
}

/// Whether a group is live or was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum GroupState {
    /// The group exists; every listed member hosts it.
    Active,
    /// The group was removed; every member frees it (after a grace period on a server). A
    /// removed group's id is never used again, so a member that was down while it happened
    /// cannot mistake its old copy for a new group.
    Removed,
}

/// A group's definition: the value of `__shoal.groups.<gid>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Live or removed.
    pub state: GroupState,
    /// The voters the group was created with, ascending. Every one of them creates the group
    /// with exactly these voters when it applies the record; later membership changes are the
    /// group's own configuration entries, as for any group.
    pub members: NodeSet,
}

/// Largest encoded [`GroupRecord`]: version, state, length and nine 10-byte varints.
pub const MAX_GROUP_RECORD_BYTES: usize = 3 + 10 * shoal_core::limits::MAX_MEMBERS;

impl GroupRecord {
    /// Encode into `buf`; returns the bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, CodecError> {
        encode_versioned(RECORD_VERSION, self, buf)
    }

    /// Decode a record value.
    pub fn decode(bytes: &[u8]) -> Result<GroupRecord, CodecError> {
        decode_versioned(RECORD_VERSION, bytes)
    }
}

/// A record in words (`member raft 10.0.0.4:7001 client 10.0.0.4:7002`, `group active
/// voters [1, 2, 3]`), for tools that show the subtree to people.
#[derive(Clone, Copy, Debug)]
pub enum RecordText<'a> {
    /// A member record.
    Member(MemberRecord<'a>),
    /// A group record.
    Group(&'a GroupRecord),
}

impl<'a> RecordText<'a> {
    /// Decode `value` as the record `key` names; `group` holds a group record while the text
    /// is in use. `None` when `key` is not a record key or `value` does not decode.
    pub fn of(key: &[u8], value: &'a [u8], group: &'a mut Option<GroupRecord>) -> Option<Self> {
        if record_id(key, MEMBERS_DIR).is_some() {
            return MemberRecord::decode(value).ok().map(RecordText::Member);
        }
        if record_id(key, GROUPS_DIR).is_some() {
            *group = Some(GroupRecord::decode(value).ok()?);
            return group.as_ref().map(RecordText::Group);
        }
        None
    }
}

impl core::fmt::Display for RecordText<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecordText::Member(m) => {
                write!(f, "member raft {} client {}", m.raft_addr, m.client_addr)
            }
            RecordText::Group(g) => {
                let state = match g.state {
                    GroupState::Active => "active",
                    GroupState::Removed => "removed",
                };
                write!(f, "group {state} voters {:?}", g.members.as_slice())
            }
        }
    }
}

impl<M: KvMemory> DtKv<M> {
    /// `SysPut` (or `SysCreate` with `create`): set `key`, creating the directories above it,
    /// all or nothing. Every check runs before anything changes.
    /// Create node `key` of `kind` with the directories above it that do not exist yet;
    /// all-or-nothing (a key of the reserved subtree, which clients cannot create).
    pub(crate) fn create_with_parents(
        &mut self,
        index: u64,
        key: &[u8],
        kind: NodeKind,
        value: &[u8],
    ) -> Result<u32, KvError> {
        // The directories above the key that do not exist yet, and what they cost.
        let (mut missing, mut bytes) = (0usize, 0usize);
        let mut dir = parent_of(key);
        while !dir.is_empty() {
            match self.lookup(dir) {
                Some(s) if self.kind(s).is_dir() => break,
                Some(_) => return Err(KvError::ParentNotDir),
                None => {
                    missing += 1;
                    bytes += cost(dir.len());
                    dir = parent_of(dir);
                }
            }
        }
        if self.node_count + missing + 1 > self.limits.max_nodes {
            return Err(KvError::TooManyNodes);
        }
        self.arena
            .fits(bytes + cost(key.len()) + cost(value.len()), 0)?;
        for (at, _) in key.iter().enumerate().filter(|(_, &b)| b == SEPARATOR) {
            let dir = &key[..at];
            if self.lookup(dir).is_none() {
                let parent = self.parent_dir(dir)?;
                let s = self.create_node(dir, NodeKind::Dir, &[], parent, index)?;
                self.event(index, EventKind::Mkdir, s, 0, 0);
            }
        }
        let parent = self.parent_dir(key)?;
        self.create_node(key, kind, value, parent, index)
    }

    pub(crate) fn sys_put(
        &mut self,
        index: u64,
        key: &[u8],
        value: &[u8],
        create: bool,
    ) -> Result<(), KvError> {
        system_key(key)?;
        validate_key(key, &self.limits, false)?;
        self.check_value(value)?;
        if let Some(s) = self.lookup(key) {
            if create {
                return Err(KvError::AlreadyExists);
            }
            match self.kind(s) {
                NodeKind::Value => {}
                NodeKind::Dir | NodeKind::TempDir => return Err(KvError::IsDirectory),
                NodeKind::Lock | NodeKind::Lease => return Err(KvError::IsLock),
                NodeKind::TempValue => return Err(KvError::NotTemp),
            }
            let old = self.nodes[s as usize].val_len as usize;
            self.arena.fits(cost(value.len()), cost(old))?;
            self.replace_value(s, value)?;
            self.nodes[s as usize].update_index = index;
            self.event(index, EventKind::Put, s, 0, 0);
            self.system_changes = self.system_changes.wrapping_add(1);
            return Ok(());
        }
        let s = self.create_with_parents(index, key, NodeKind::Value, value)?;
        self.event(index, EventKind::Put, s, 0, 0);
        self.system_changes = self.system_changes.wrapping_add(1);
        Ok(())
    }

    /// `SysRemove`: remove a record (or an empty directory) of the reserved subtree.
    pub(crate) fn sys_remove(&mut self, index: u64, key: &[u8]) -> Result<(), KvError> {
        system_key(key)?;
        self.remove(index, 0, key)?;
        self.system_changes = self.system_changes.wrapping_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_built_and_read_back() {
        assert_eq!(member_key(4).as_bytes(), b"__shoal.members.4");
        assert_eq!(group_key(8).as_str(), "__shoal.groups.8");
        assert_eq!(member_key(u64::MAX).as_str().len(), 36);
        assert_eq!(record_id(b"__shoal.members.4", MEMBERS_DIR), Some(4));
        assert_eq!(record_id(b"__shoal.members.04", MEMBERS_DIR), None);
        assert_eq!(record_id(b"__shoal.members.x", MEMBERS_DIR), None);
        assert_eq!(record_id(b"__shoal.groups.4", MEMBERS_DIR), None);
        assert!(is_reserved(b"__shoal") && is_reserved(b"__shoal.members.1"));
        assert!(!is_reserved(b"__shoalx") && !is_reserved(b"app.__shoal"));
        assert_eq!(system_key(b"__shoal"), Err(KvError::NotSystemKey));
        assert_eq!(system_key(b"app"), Err(KvError::NotSystemKey));
        assert_eq!(client_key(b"__shoal.x"), Err(KvError::Reserved));
    }

    #[test]
    fn records_round_trip_and_refuse_other_versions() {
        let mut buf = [0u8; 128];
        let m = MemberRecord {
            raft_addr: "10.0.0.4:7001",
            client_addr: "10.0.0.4:7002",
        };
        let n = m.encode(&mut buf).unwrap();
        assert_eq!(MemberRecord::decode(&buf[..n]), Ok(m));
        buf[0] = 9;
        assert_eq!(
            MemberRecord::decode(&buf[..n]),
            Err(CodecError::UnsupportedVersion(9))
        );
        let g = GroupRecord {
            state: GroupState::Active,
            members: NodeSet::from_slice(&[u64::MAX; 9]).unwrap(),
        };
        let n = g.encode(&mut buf).unwrap();
        assert_eq!(n, MAX_GROUP_RECORD_BYTES);
        assert_eq!(GroupRecord::decode(&buf[..n]), Ok(g));
        assert_eq!(
            GroupRecord::decode(&buf[..n - 1]),
            Err(CodecError::Malformed)
        );
    }
}
