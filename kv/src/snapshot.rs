//! The snapshot format: canonical (equal states give equal bytes), streamed through a small
//! buffer, and closed by a CRC-32C. All integers are little-endian and fixed-width.
//!
//! ```text
//! "DTKV" | version u8 (1 or 2) | applied u64 | now_ms u64 | nodes u32 | sessions u32
//! nodes, tree pre-order, children in creation order (the root is implicit):
//!   kind u8 | key_len u16 | key | val_len u32 | value | create_index u64 | update_index u64
//!   | owner u64 | deadline_ms u64 | fence u64 | lease u64 (version 2 only) | waiters u32
//!   | waiters × (client u64 | lease_ms u64 | wait_deadline_ms u64)      (FIFO order)
//! sessions, least recently written first:
//!   client u64 | last_seq u64 | last_index u64 | result_len u16 | postcard(WriteResult)
//! crc32c u32 of every byte before it
//! ```
//! `lease` is the id of the lease a node is tied to (0: none); a node tied to a lease has no
//! deadline of its own (0 for a temporary node, `u64::MAX` for a lock). Version 2 is written
//! only while a lease is live, so a store that uses none writes the bytes it always did (and
//! a build from before leases reads them). The order of a lease's list is not written: it
//! follows from the tied nodes' `update_index` and keys (see `leases.rs`), so a restore
//! rebuilds it by sorting. The watch history is not part of a snapshot.

use shoal_core::io::{SnapshotError, SnapshotReader, SnapshotWriter};
use shoal_core::record::CRC32C;

use crate::arena::{cost, owner_tag};
use crate::command::{NodeKind, WriteResult};
use crate::error::KvError;
use crate::key::{hash_bytes, parent_of, validate_key};
use crate::leases::Life;
use crate::memory::{KvMemory, WaiterSlot, NIL};
use crate::store::{DtKv, ROOT};
use crate::system::lease_key;

/// Snapshot format magic.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"DTKV";
/// Snapshot format version written by this build while a lease is live (without one it
/// writes version 1, which it also reads).
pub const SNAPSHOT_VERSION: u8 = 2;

/// How [`DIGEST`] is computed: with a 2 KiB byte table on every platform with an OS, bit by bit
/// on microcontrollers (`target_os = "none"`), where flash is the scarcer resource and a digest
/// covers a few kilobytes (docs/FOOTPRINT.md). Both compute the same function, so a board's
/// digest still equals a server's.
#[cfg(not(target_os = "none"))]
pub(crate) type DigestTable = crc::Table<1>;
/// How [`DIGEST`] is computed (see the variant for platforms with an OS).
#[cfg(target_os = "none")]
pub(crate) type DigestTable = crc::NoTable;

/// The digest algorithm of [`DtKv::digest`].
pub(crate) static DIGEST: crc::Crc<u64, DigestTable> =
    crc::Crc::<u64, DigestTable>::new(&crc::CRC_64_XZ);

/// Largest encoded `WriteResult` (a full batch answer is about 130 bytes).
const RESULT_BUF: usize = 256;
const CHUNK: usize = 512;

struct Out<'w> {
    out: &'w mut dyn SnapshotWriter,
    buf: [u8; CHUNK],
    len: usize,
    crc: shoal_core::record::Crc32cDigest,
}

impl Out<'_> {
    /// Write the buffered bytes (and add them to the CRC: once per chunk, not per field).
    fn flush(&mut self) -> Result<(), SnapshotError> {
        if self.len > 0 {
            self.crc.update(&self.buf[..self.len]);
            self.out.write(&self.buf[..self.len])?;
            self.len = 0;
        }
        Ok(())
    }

    /// Append `data` to the snapshot (covered by its CRC).
    fn put(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        if self.len + data.len() > CHUNK {
            self.flush()?;
        }
        if data.len() >= CHUNK {
            self.crc.update(data);
            return self.out.write(data);
        }
        self.buf[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
        Ok(())
    }

    /// Write what is buffered, then the CRC of everything before it.
    fn finish(mut self) -> Result<(), SnapshotError> {
        self.flush()?;
        let crc = self.crc.finalize();
        self.out.write(&crc.to_le_bytes())
    }
}

struct In<'r> {
    src: &'r mut dyn SnapshotReader,
    crc: shoal_core::record::Crc32cDigest,
}

impl In<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        self.src.read_exact(buf)?;
        self.crc.update(buf);
        Ok(())
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        let mut b = [0; 1];
        self.read(&mut b)?;
        Ok(b[0])
    }
    fn u16(&mut self) -> Result<u16, SnapshotError> {
        let mut b = [0; 2];
        self.read(&mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let mut b = [0; 4];
        self.read(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        let mut b = [0; 8];
        self.read(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

fn require(ok: bool, e: SnapshotError) -> Result<(), SnapshotError> {
    if ok {
        Ok(())
    } else {
        Err(e)
    }
}

impl<M: KvMemory> DtKv<M> {
    /// The next node after `s` in pre-order (children in creation order), or `NIL`.
    fn preorder_next(&self, s: u32) -> u32 {
        let n = &self.nodes[s as usize];
        if n.first_child != NIL {
            return n.first_child;
        }
        let mut cur = s;
        while cur != ROOT {
            let c = &self.nodes[cur as usize];
            if c.next != NIL {
                return c.next;
            }
            cur = c.parent;
        }
        NIL
    }

    pub(crate) fn write_snapshot(&self, out: &mut dyn SnapshotWriter) -> Result<(), SnapshotError> {
        let mut o = Out {
            out,
            buf: [0; CHUNK],
            len: 0,
            crc: CRC32C.digest(),
        };
        o.put(&SNAPSHOT_MAGIC)?;
        let leases = self.lease_count() > 0;
        o.put(&[if leases { SNAPSHOT_VERSION } else { 1 }])?;
        o.put(&self.applied.to_le_bytes())?;
        o.put(&self.now_ms.to_le_bytes())?;
        o.put(&((self.node_count - 1) as u32).to_le_bytes())?;
        o.put(&(self.sessions.count as u32).to_le_bytes())?;
        let mut s = self.preorder_next(ROOT);
        let mut written = 0;
        while s != NIL {
            let n = &self.nodes[s as usize];
            o.put(&[n.kind])?;
            o.put(&n.key_len.to_le_bytes())?;
            o.put(self.key_of(s))?;
            o.put(&n.val_len.to_le_bytes())?;
            o.put(self.value_of(s))?;
            for x in [
                n.create_index,
                n.update_index,
                n.owner,
                n.deadline_ms,
                n.fence,
            ] {
                o.put(&x.to_le_bytes())?;
            }
            if leases {
                let id = if n.lease == 0 {
                    0
                } else {
                    self.nodes[n.lease as usize].create_index
                };
                o.put(&id.to_le_bytes())?;
            }
            o.put(&n.wait_count.to_le_bytes())?;
            let mut w = n.wait_head;
            while w != NIL {
                let ws = &self.waiters[w as usize];
                for x in [ws.client, ws.lease_ms, ws.wait_deadline_ms] {
                    o.put(&x.to_le_bytes())?;
                }
                w = ws.next;
            }
            written += 1;
            s = self.preorder_next(s);
        }
        debug_assert_eq!(
            written + 1,
            self.node_count,
            "pre-order visits every node once"
        );
        let mut buf = [0u8; RESULT_BUF];
        for session in self.sessions.iter_lru() {
            for x in [session.client, session.last_seq, session.last_index] {
                o.put(&x.to_le_bytes())?;
            }
            let used = postcard::to_slice(&session.result, &mut buf)
                .map_err(|_| SnapshotError::Capacity)?
                .len();
            o.put(&(used as u16).to_le_bytes())?;
            o.put(&buf[..used])?;
        }
        o.finish()
    }

    pub(crate) fn read_snapshot(
        &mut self,
        index: u64,
        src: &mut dyn SnapshotReader,
    ) -> Result<(), SnapshotError> {
        self.reset(index);
        let result = self.read_snapshot_inner(index, src);
        if result.is_err() {
            // A half-read state must never serve: leave an empty store at index 0.
            self.reset(0);
        }
        result
    }

    fn read_snapshot_inner(
        &mut self,
        index: u64,
        src: &mut dyn SnapshotReader,
    ) -> Result<(), SnapshotError> {
        use SnapshotError::{Capacity, Malformed};
        let mut r = In {
            src,
            crc: CRC32C.digest(),
        };
        let mut magic = [0u8; 4];
        r.read(&mut magic)?;
        require(magic == SNAPSHOT_MAGIC, Malformed)?;
        let version = r.u8()?;
        require(version == 1 || version == SNAPSHOT_VERSION, Malformed)?;
        require(r.u64()? == index, Malformed)?;
        self.now_ms = r.u64()?;
        let node_count = r.u32()? as usize;
        let session_count = r.u32()? as usize;
        require(node_count < self.limits.max_nodes, Capacity)?;
        require(session_count <= self.limits.max_sessions, Capacity)?;
        for _ in 0..node_count {
            self.read_node(&mut r, version)?;
        }
        self.tie_restored()?;
        require(self.lease_count() <= self.limits.max_leases, Capacity)?;
        let mut last_index = 0;
        let mut buf = [0u8; RESULT_BUF];
        for _ in 0..session_count {
            let client = r.u64()?;
            let last_seq = r.u64()?;
            let index = r.u64()?;
            let len = r.u16()? as usize;
            require(
                client != 0 && index > last_index && len <= RESULT_BUF,
                Malformed,
            )?;
            require(self.sessions.find(client).is_none(), Malformed)?;
            r.read(&mut buf[..len])?;
            let result: WriteResult = postcard::from_bytes(&buf[..len]).map_err(|_| Malformed)?;
            // (Fingerprints are not in snapshots: a restored session trusts a retry.)
            self.sessions.record(client, last_seq, 0, index, result);
            last_index = index;
        }
        let expected = r.crc.clone().finalize();
        let mut crc = [0u8; 4];
        r.src.read_exact(&mut crc)?;
        require(u32::from_le_bytes(crc) == expected, Malformed)?;
        require(r.src.remaining() == 0, Malformed)
    }

    fn read_node(&mut self, r: &mut In<'_>, version: u8) -> Result<(), SnapshotError> {
        use SnapshotError::{Capacity, Malformed};
        let kind = NodeKind::from_code(r.u8()?).ok_or(Malformed)?;
        let s = self.read_node_key(r, kind)?;
        let val_len = r.u32()? as usize;
        require(val_len <= self.limits.max_value_bytes, Capacity)?;
        require(
            kind == NodeKind::Value || kind == NodeKind::TempValue || val_len == 0,
            Malformed,
        )?;
        require(self.arena.fits(cost(val_len), 0).is_ok(), Capacity)?;
        let val_off = self
            .arena
            .alloc(val_len, None, owner_tag(s, true), &mut self.nodes)
            .map_err(|_| Capacity)?;
        r.read(self.arena.get_mut(val_off, val_len))?;
        let n = &mut self.nodes[s as usize];
        n.val_off = val_off;
        n.val_len = val_len as u32;
        n.create_index = r.u64()?;
        n.update_index = r.u64()?;
        n.owner = r.u64()?;
        n.deadline_ms = r.u64()?;
        n.fence = r.u64()?;
        n.due_ms = n.deadline_ms;
        let lease = if version == 1 { 0 } else { r.u64()? };
        self.read_waiters(r, s, kind)?;
        if kind == NodeKind::Lease {
            let id = self.nodes[s as usize].create_index;
            require(self.key_of(s) == lease_key(id).as_bytes(), Malformed)?;
        }
        if kind.is_temp() || kind == NodeKind::Lock {
            require(self.nodes[s as usize].owner != 0, Malformed)?;
        }
        if lease != 0 {
            require(kind.is_temp() || kind == NodeKind::Lock, Malformed)?;
            // Its lease may come later in the pre-order: keep the id until every node is in.
            let n = &mut self.nodes[s as usize];
            (n.lease, n.lease_prev, n.lease_next) = (NIL, lease as u32, (lease >> 32) as u32);
        }
        if kind == NodeKind::Lease || kind == NodeKind::Lock || (kind.is_temp() && lease == 0) {
            self.heap_push(s);
        }
        Ok(())
    }

    /// Tie each restored node that names a lease to it, then put every lease's list in the
    /// order the replicas that applied the writes have (most recently written first).
    fn tie_restored(&mut self) -> Result<(), SnapshotError> {
        for s in 1..self.node_slots.fresh() {
            let n = &mut self.nodes[s as usize];
            if n.lease != NIL {
                continue;
            }
            let id = (n.lease_next as u64) << 32 | n.lease_prev as u64;
            (n.lease, n.lease_prev, n.lease_next) = (0, 0, 0);
            let l = self.lease_slot(id).map_err(|_| SnapshotError::Malformed)?;
            self.place(s, Life::Tied(l), false);
        }
        for s in 1..self.node_slots.fresh() {
            if self.kind(s) == NodeKind::Lease {
                self.sort_ties(s);
            }
        }
        Ok(())
    }

    /// Read a node's key into a new node of `kind` and link it under its parent, which the
    /// snapshot's pre-order has restored already.
    fn read_node_key(&mut self, r: &mut In<'_>, kind: NodeKind) -> Result<u32, SnapshotError> {
        use SnapshotError::{Capacity, Malformed};
        let key_len = r.u16()? as usize;
        require(key_len > 0, Malformed)?;
        require(key_len <= self.limits.max_key_bytes, Capacity)?;
        require(self.arena.fits(cost(key_len), 0).is_ok(), Capacity)?;
        let s = self.take_node_slot(kind, key_len);
        let key_off = self
            .arena
            .alloc(key_len, None, owner_tag(s, false), &mut self.nodes)
            .map_err(|_| Capacity)?;
        self.nodes[s as usize].key_off = key_off;
        r.read(self.arena.get_mut(key_off, key_len))?;
        let key = self.arena.get(key_off, key_len);
        match validate_key(key, &self.limits, false) {
            Ok(()) => {}
            Err(KvError::TooDeep | KvError::KeyTooLong) => return Err(Capacity),
            Err(_) => return Err(Malformed),
        }
        require(self.lookup(key).is_none(), Malformed)?;
        let parent = self.lookup(parent_of(key)).ok_or(Malformed)?;
        require(self.kind(parent).is_dir(), Malformed)?;
        self.link_node(s, hash_bytes(key), parent);
        Ok(s)
    }

    /// Read lock `s`'s wait queue (FIFO order).
    fn read_waiters(
        &mut self,
        r: &mut In<'_>,
        s: u32,
        kind: NodeKind,
    ) -> Result<(), SnapshotError> {
        use SnapshotError::{Capacity, Malformed};
        let waiters = r.u32()? as usize;
        require(kind == NodeKind::Lock || waiters == 0, Malformed)?;
        require(waiters <= self.limits.max_waiters_per_lock, Capacity)?;
        require(
            self.waiters_used + waiters <= self.limits.max_waiters,
            Capacity,
        )?;
        for _ in 0..waiters {
            let waiter = WaiterSlot {
                client: r.u64()?,
                lease_ms: r.u64()?,
                wait_deadline_ms: r.u64()?,
                next: NIL,
            };
            self.enqueue_waiter(s, waiter);
            let n = &mut self.nodes[s as usize];
            n.due_ms = n.due_ms.min(waiter.wait_deadline_ms);
        }
        Ok(())
    }
}
