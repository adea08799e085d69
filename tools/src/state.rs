//! Rebuilding a DtKV state offline: restore a snapshot, apply committed entries, read keys.
//!
//! A server store is sized for about a million nodes and 256 MiB of keys and values. A tool
//! does not need that: it sizes the store for what the snapshot and the entries to replay can
//! reach (the node and session counts in the snapshot header plus what each command can add),
//! capped by the server's limits. Limits that change what a command does (key and value sizes,
//! depth, TTLs, waiters, batch items) stay the server's, and a capacity that is not capped
//! cannot be reached by the replay, so the replay refuses exactly the writes the server did.

use shoal_core::io::{SnapshotError, SnapshotReader, SnapshotWriter, StateMachine};
use shoal_core::types::{EntryKind, LogIndex, Term};
use shoal_kv::system::is_reserved;
use shoal_kv::{Command, KvLimits, NodeKind, Op, SEPARATOR, SNAPSHOT_MAGIC};
use shoal_std::kvheap::{HeapKv, KvHeap};
use shoal_std::storage::scan::ADDR_ENTRY_TAG;

use crate::source::LogEntry;

/// Reads a snapshot from a byte slice.
pub struct SliceReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> SliceReader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        SliceReader { data, pos: 0 }
    }
}

impl SnapshotReader for SliceReader<'_> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        let end = self.pos + buf.len();
        if end > self.data.len() {
            return Err(SnapshotError::Malformed);
        }
        buf.copy_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        Ok(())
    }
    fn remaining(&self) -> u64 {
        (self.data.len() - self.pos) as u64
    }
}

/// Collects a snapshot into a `Vec`.
#[derive(Default)]
pub struct VecWriter(pub Vec<u8>);

impl SnapshotWriter for VecWriter {
    fn write(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        self.0.extend_from_slice(data);
        Ok(())
    }
}

/// The header of a DtKV snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvSnapshotHeader {
    /// Format version.
    pub version: u8,
    /// Applied index recorded in the snapshot.
    pub applied: u64,
    /// Leader clock at that point (ms).
    pub now_ms: u64,
    /// Nodes in the snapshot (the root is implicit).
    pub nodes: u32,
    /// Client sessions.
    pub sessions: u32,
}

/// Read the fixed header of DtKV snapshot bytes.
pub fn kv_header(data: &[u8]) -> Result<KvSnapshotHeader, String> {
    if data.len() < 29 || data[..4] != SNAPSHOT_MAGIC {
        return Err("not a DtKV snapshot (no DTKV magic at offset 0)".into());
    }
    let u64_at = |o: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&data[o..o + 8]);
        u64::from_le_bytes(w)
    };
    let u32_at = |o: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&data[o..o + 4]);
        u32::from_le_bytes(w)
    };
    Ok(KvSnapshotHeader {
        version: data[4],
        applied: u64_at(5),
        now_ms: u64_at(13),
        nodes: u32_at(21),
        sessions: u32_at(25),
    })
}

/// Capacities a replay needs, grown from a snapshot and the entries to apply.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sizing {
    nodes: usize,
    sessions: usize,
    arena_bytes: usize,
}

impl Sizing {
    /// What restoring `snapshot` needs.
    pub fn for_snapshot(snapshot: Option<&[u8]>) -> Result<Sizing, String> {
        match snapshot {
            None => Ok(Sizing::default()),
            Some(data) => {
                let h = kv_header(data)?;
                Ok(Sizing {
                    nodes: h.nodes as usize,
                    sessions: h.sessions as usize,
                    // Every stored key and value appears in the snapshot with at least the
                    // 8 bytes of bookkeeping the arena adds to it.
                    arena_bytes: data.len(),
                })
            }
        }
    }

    /// Grow for one entry to apply.
    pub fn add_entry(&mut self, kind: EntryKind, data: &[u8]) {
        if kind != EntryKind::Normal {
            return;
        }
        let Ok(cmd) = Command::decode(data) else {
            return;
        };
        let items = match cmd.op {
            Op::BatchPut(p) => p.len(),
            // A branch creates at most one node per operation.
            Op::Txn(t) => t.success.len().max(t.failure.len()),
            Op::BatchRemove(_) | Op::Expire | Op::Unlock { .. } | Op::SysRemove { .. } => 0,
            // A record may create the directories above it too.
            Op::SysPut { key, .. } | Op::SysCreate { key, .. } => {
                1 + key.iter().filter(|&&b| b == SEPARATOR).count()
            }
            _ => 1,
        };
        // A put may create its key; values and keys cost their length plus 8 bytes each.
        self.nodes += items;
        self.arena_bytes += data.len() + 16 * items.max(1);
        if cmd.client_id != 0 {
            self.sessions += 1;
        }
    }

    /// Limits for a replay under `base` (the profile the node ran with).
    pub fn limits(&self, base: KvLimits) -> KvLimits {
        KvLimits {
            max_nodes: (self.nodes + 2).clamp(2, base.max_nodes),
            arena_bytes: (self.arena_bytes + 64).min(base.arena_bytes),
            max_sessions: (self.sessions + 1).min(base.max_sessions),
            // The watch history is not part of the state: keep a small one.
            event_slots: 16,
            event_bytes: base.max_key_bytes + base.max_value_bytes,
            ..base
        }
    }
}

/// One entry to replay (or read from a flash image).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayEntry {
    /// Its index.
    pub index: LogIndex,
    /// Its term.
    pub term: Term,
    /// Its kind.
    pub kind: EntryKind,
    /// Its payload.
    pub data: Vec<u8>,
}

impl From<&LogEntry<'_>> for ReplayEntry {
    fn from(e: &LogEntry<'_>) -> Self {
        ReplayEntry {
            index: e.index,
            term: e.term,
            kind: e.kind,
            data: e.data.to_vec(),
        }
    }
}

/// Restore `snapshot` (covering entries up to `snapshot_index`) into a fresh store, apply
/// `entries` (which must run on from `snapshot_index + 1`), then hand the store to `f`.
pub fn rebuild<R>(
    base: KvLimits,
    snapshot: Option<(&[u8], LogIndex)>,
    entries: &[ReplayEntry],
    f: impl FnOnce(&mut HeapKv) -> R,
) -> Result<R, String> {
    let mut sizing = Sizing::for_snapshot(snapshot.map(|s| s.0))?;
    for e in entries {
        sizing.add_entry(e.kind, &e.data);
    }
    let mut kv = KvHeap::store(sizing.limits(base))
        .map_err(|e| format!("cannot build a DtKV store: {}", e))?;
    let mut applied = 0;
    if let Some((data, index)) = snapshot {
        kv.restore(index, &mut SliceReader::new(data))
            .map_err(|e| format!("the DtKV snapshot does not restore: {:?}", e))?;
        applied = index;
    }
    for e in entries {
        if e.index <= applied {
            continue;
        }
        if e.index != applied + 1 {
            return Err(format!(
                "cannot replay: entry {} follows applied index {} (entries are missing)",
                e.index, applied
            ));
        }
        match e.kind {
            // shoald's address-book entries are skipped by DtKV, as its state machine does.
            EntryKind::Normal if e.data.first() != Some(&ADDR_ENTRY_TAG) => {
                let _ = kv.apply(e.index, e.term, &e.data);
            }
            _ => kv.skip(e.index),
        }
        applied = e.index;
    }
    Ok(f(&mut kv))
}

/// One node of the key tree, for listing.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyNode {
    /// The full key.
    pub key: String,
    /// value, dir, temp_value, temp_dir, lock.
    pub kind: &'static str,
    /// Value bytes.
    pub value_bytes: usize,
    /// The value (UTF-8 text, or hex), when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Index that created the node.
    pub create_index: u64,
    /// Index that last changed it.
    pub update_index: u64,
    /// Owner session or lock holder (0 = none).
    pub owner: u64,
    /// TTL or lease deadline (leader clock ms, 0 = none).
    pub deadline_ms: u64,
    /// Depth below the root (top-level keys are 1).
    pub depth: usize,
}

fn kind_name(k: NodeKind) -> &'static str {
    match k {
        NodeKind::Value => "value",
        NodeKind::Dir => "dir",
        NodeKind::TempValue => "temp_value",
        NodeKind::TempDir => "temp_dir",
        NodeKind::Lock => "lock",
        NodeKind::Lease => "lease",
    }
}

/// Every node of the tree in pre-order (children in creation order); values as text when
/// `with_values`.
pub fn key_tree(kv: &HeapKv, with_values: bool) -> Vec<KeyNode> {
    let mut out = Vec::new();
    walk(kv, b"", 0, with_values, &mut out);
    out
}

fn walk(kv: &HeapKv, key: &[u8], depth: usize, with_values: bool, out: &mut Vec<KeyNode>) {
    let mut level: Vec<(KeyNode, Option<Vec<u8>>)> = Vec::new();
    let _ = kv.list(key, |n| {
        let shows_value = !n.kind.is_dir() && n.kind != NodeKind::Lock;
        let value = (with_values && shows_value).then(|| {
            if is_reserved(n.key) {
                return crate::text::record(n.key, n.value);
            }
            match std::str::from_utf8(n.value) {
                Ok(s) => s.to_string(),
                Err(_) => format!("0x{}", crate::text::hex(n.value)),
            }
        });
        let node = KeyNode {
            key: crate::text::key(n.key),
            kind: kind_name(n.kind),
            value_bytes: n.value.len(),
            value,
            create_index: n.create_index,
            update_index: n.update_index,
            owner: n.owner,
            deadline_ms: n.deadline_ms,
            depth: depth + 1,
        };
        level.push((node, n.kind.is_dir().then(|| n.key.to_vec())));
    });
    for (node, dir_key) in level {
        out.push(node);
        if let Some(k) = dir_key {
            walk(kv, &k, depth + 1, with_values, out);
        }
    }
}

/// Serialize a store's snapshot.
pub fn snapshot_bytes(kv: &HeapKv) -> Result<Vec<u8>, String> {
    let mut w = VecWriter::default();
    kv.snapshot(&mut w)
        .map_err(|e| format!("cannot write the DtKV snapshot: {:?}", e))?;
    Ok(w.0)
}
