//! Writes of values and directories, plain and temporary: put, remove, mkdir,
//! compare-and-set, put-temp, make-temp-dir and update-TTL.

use crate::command::NodeKind;
use crate::error::KvError;
use crate::events::EventKind;
use crate::key::validate_key;
use crate::leases::{Life, Lifetime};
use crate::memory::KvMemory;
use crate::store::DtKv;

impl<M: KvMemory> DtKv<M> {
    pub(crate) fn put(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), KvError> {
        validate_key(key, &self.limits, false)?;
        self.check_value(value)?;
        let s = match self.lookup(key) {
            Some(s) => {
                match self.kind(s) {
                    NodeKind::Dir | NodeKind::TempDir => return Err(KvError::IsDirectory),
                    NodeKind::Lock | NodeKind::Lease => return Err(KvError::IsLock),
                    NodeKind::TempValue if !self.may_change(s, client) => {
                        return Err(KvError::NotOwner)
                    }
                    _ => {}
                }
                self.replace_value(s, value)?;
                self.nodes[s as usize].update_index = index;
                // A node tied to a lease moves to the front of its list, as a renewal does.
                let lease = self.nodes[s as usize].lease;
                if lease != 0 {
                    self.set_life(s, Life::Tied(lease));
                }
                s
            }
            None => {
                let parent = self.parent_dir(key)?;
                self.create_node(key, NodeKind::Value, value, parent, index)?
            }
        };
        let owner = self.nodes[s as usize].owner;
        self.event(index, EventKind::Put, s, owner, 0);
        Ok(())
    }

    pub(crate) fn remove(&mut self, index: u64, client: u64, key: &[u8]) -> Result<(), KvError> {
        validate_key(key, &self.limits, false)?;
        let s = self.lookup(key).ok_or(KvError::NotFound)?;
        let kind = self.kind(s);
        let n = self.nodes[s as usize];
        if kind == NodeKind::Lock || kind == NodeKind::Lease {
            return Err(KvError::IsLock);
        }
        if kind.is_dir() && n.children > 0 {
            return Err(KvError::DirNotEmpty);
        }
        if kind.is_temp() && !self.may_change(s, client) {
            return Err(KvError::NotOwner);
        }
        self.event(index, EventKind::Remove, s, n.owner, 0);
        self.free_node(s);
        Ok(())
    }

    pub(crate) fn mkdir(&mut self, index: u64, key: &[u8]) -> Result<(), KvError> {
        validate_key(key, &self.limits, false)?;
        if let Some(s) = self.lookup(key) {
            return if self.kind(s) == NodeKind::Dir {
                Ok(())
            } else {
                Err(KvError::AlreadyExists)
            };
        }
        let parent = self.parent_dir(key)?;
        let s = self.create_node(key, NodeKind::Dir, &[], parent, index)?;
        self.event(index, EventKind::Mkdir, s, 0, 0);
        Ok(())
    }

    pub(crate) fn cas(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        expect: Option<&[u8]>,
        value: &[u8],
    ) -> Result<(), KvError> {
        validate_key(key, &self.limits, false)?;
        self.check_value(value)?;
        match (self.lookup(key), expect) {
            (None, None) => {}
            (None, Some(_)) | (Some(_), None) => return Err(KvError::CasMismatch),
            (Some(s), Some(expected)) => match self.kind(s) {
                NodeKind::Dir | NodeKind::TempDir => return Err(KvError::IsDirectory),
                NodeKind::Lock => return Err(KvError::IsLock),
                _ if self.value_of(s) != expected => return Err(KvError::CasMismatch),
                _ => {}
            },
        }
        self.put(index, client, key, value)
    }

    pub(crate) fn put_temp(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        value: &[u8],
        want: Lifetime,
    ) -> Result<(), KvError> {
        self.check_value(value)?;
        let life = self.life_for(client, key, want)?;
        let s = match self.lookup(key) {
            Some(s) => {
                match self.kind(s) {
                    NodeKind::TempValue if !self.may_change(s, client) => {
                        return Err(KvError::NotOwner)
                    }
                    NodeKind::TempValue => {}
                    NodeKind::Value => return Err(KvError::NotTemp),
                    NodeKind::Dir | NodeKind::TempDir => return Err(KvError::IsDirectory),
                    NodeKind::Lock | NodeKind::Lease => return Err(KvError::IsLock),
                }
                self.replace_value(s, value)?;
                self.renew(index, client, s, life);
                s
            }
            None => self.create_owned(index, client, key, NodeKind::TempValue, value, life)?,
        };
        self.event(index, EventKind::Put, s, client, 0);
        Ok(())
    }

    pub(crate) fn make_temp_dir(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        want: Lifetime,
    ) -> Result<(), KvError> {
        let life = self.life_for(client, key, want)?;
        if self.lookup(key).is_some() {
            return Err(KvError::AlreadyExists);
        }
        let s = self.create_owned(index, client, key, NodeKind::TempDir, &[], life)?;
        self.event(index, EventKind::Mkdir, s, client, 0);
        Ok(())
    }

    pub(crate) fn update_ttl(
        &mut self,
        index: u64,
        client: u64,
        key: &[u8],
        ttl_ms: u64,
    ) -> Result<(), KvError> {
        let deadline = self.check_session_deadline(client, key, ttl_ms)?;
        let s = self.lookup(key).ok_or(KvError::NotFound)?;
        if !self.kind(s).is_temp() {
            return Err(KvError::NotTemp);
        }
        if !self.may_change(s, client) {
            return Err(KvError::NotOwner);
        }
        self.renew(index, client, s, Life::Until(deadline));
        self.event(index, EventKind::TtlUpdated, s, client, deadline);
        Ok(())
    }
}
