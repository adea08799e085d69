//! `export` (a portable snapshot of a node's latest state) and `import` (a fresh data dir built
//! from one, with a new member list, to rebuild a cluster that lost quorum).

use std::path::{Path, PathBuf};

use serde::Serialize;
use shoal_core::membership::Membership;
use shoal_core::record::CRC32C;
use shoal_core::storage::{LogView, Storage};
use shoal_core::types::{EntryKind, GroupId, HardState, LogIndex, NodeId, SnapshotMeta};
use shoal_kv::system::{member_key, record_id, MemberRecord, MEMBERS_DIR};
use shoal_kv::{Command, KvLimits, Op};
use shoal_std::storage::addrbook::{AddrBook, MemberAddr};
use shoal_std::storage::scan::{group_dir, Identity};
use shoal_std::storage::{DataDir, FileStorage, StorageOptions};

use crate::portable::{read_snapshot_file, write_export, ExportHeader};
use crate::problem::Problem;
use crate::report::{GroupReport, Report};
use crate::source::{EntryCollector, ReadRequest, Source, SourceError};
use crate::state::{rebuild, snapshot_bytes, ReplayEntry};

/// Why `export` or `import` stopped.
#[derive(Debug)]
pub enum BackupError {
    /// The command was used wrongly (bad flags, a non-empty target dir, an existing output):
    /// exit code 2.
    Usage(String),
    /// The source is damaged: exit code 1. Each finding names its file and offset.
    Damaged(Vec<Problem>),
    /// Anything else (IO, an unrestorable snapshot): exit code 3.
    Failed(String),
}

impl std::fmt::Display for BackupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupError::Usage(s) | BackupError::Failed(s) => f.write_str(s),
            BackupError::Damaged(ps) => {
                writeln!(f, "the source is damaged; nothing was written:")?;
                for p in ps {
                    writeln!(f, "  {}", p)?;
                }
                Ok(())
            }
        }
    }
}

/// Up to which entry `export` applies the log on top of the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Upto {
    /// The hard state's commit index: every entry applied is known committed. The commit
    /// index on disk is a hint saved with term/vote changes and snapshots, so it can lag the
    /// real commit point; the entries after it are reported, not exported.
    Commit,
    /// Every entry in the log. Use on the most up-to-date survivor when rebuilding after a
    /// quorum loss: entries past the commit point may never have been committed (they were
    /// acknowledged to no client unless a quorum had them), which the rebuilt cluster then
    /// commits.
    Last,
}

/// What `export` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    /// The file written.
    pub out: String,
    /// Its header.
    pub header: ExportHeader,
    /// Index of the snapshot the state was rebuilt from (0: none).
    pub from_snapshot: LogIndex,
    /// Log entries applied on top of it.
    pub entries_applied: u64,
    /// Entries in the log after the exported index (not exported; see `--upto`).
    pub entries_not_exported: u64,
    /// Warnings found in the source (torn tails and the like).
    pub warnings: Vec<Problem>,
}

/// What `export` is asked to do.
#[derive(Clone, Debug)]
pub struct ExportPlan {
    /// The group to export.
    pub group: GroupId,
    /// How much of the log to apply on top of the snapshot.
    pub upto: Upto,
    /// The file to write.
    pub out: PathBuf,
    /// Replace `out` if it exists.
    pub force: bool,
    /// The DtKV limits the node ran with: the replay must refuse exactly what it refused.
    pub base: KvLimits,
}

/// Export a group of `source` as `plan` says: its current snapshot with the log applied on
/// top, written to a portable file.
pub fn export(source: &dyn Source, plan: &ExportPlan) -> Result<ExportReport, BackupError> {
    let ExportPlan {
        group,
        upto,
        ref out,
        force,
        base,
    } = *plan;
    if out.exists() && !force {
        return Err(BackupError::Usage(format!(
            "{} already exists; choose another --out or pass --force to replace it",
            out.display()
        )));
    }
    let (report, records) = read_undamaged(source, group)?;
    let g = &report.groups[0];
    let snap_index = g.snapshot_index();
    let last = g.last_index();
    let target = export_target(g, upto);
    if target == 0 {
        return Err(BackupError::Failed(format!(
            "group {} of {} holds no committed state to export (no snapshot, commit index 0); \
             try --upto last",
            group,
            source.path().display()
        )));
    }
    let snap = source.snapshot(group).map_err(source_error)?;
    let replay: Vec<ReplayEntry> = records
        .entries
        .into_iter()
        .filter(|e| e.index > snap_index && e.index <= target)
        .collect();
    if replay.first().is_some_and(|e| e.index != snap_index + 1) {
        return Err(BackupError::Failed(format!(
            "the log does not continue the snapshot at index {}",
            snap_index
        )));
    }
    let mut membership: Membership = snap
        .as_ref()
        .map(|s| s.header.membership.clone())
        .unwrap_or_default();
    for e in replay.iter().filter(|e| e.kind == EntryKind::Config) {
        membership = crate::text::decode_config(&e.data).map_err(BackupError::Failed)?;
    }
    let term = replay
        .last()
        .map(|e| e.term)
        .or(snap.as_ref().map(|s| s.header.term))
        .unwrap_or(0);
    let (data, digest) = rebuild(
        base,
        snap.as_ref().map(|s| (s.data.as_slice(), snap_index)),
        &replay,
        |kv| snapshot_bytes(kv).map(|b| (b, kv.digest())),
    )
    .and_then(|r| r)
    .map_err(BackupError::Failed)?;
    // A flash image records no identity: its export names cluster and node 0, and `import`
    // then asks for the cluster id.
    let identity = report.source.identity();
    let header = ExportHeader {
        cluster_id: identity.map_or(0, |i| i.cluster_id),
        source_node: identity.map_or(0, |i| i.node_id),
        group,
        index: target,
        term,
        membership,
        digest,
        data_bytes: data.len() as u64,
        data_crc: CRC32C.checksum(&data),
        created_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    write_export(out, &header, &data, force).map_err(BackupError::Failed)?;
    Ok(ExportReport {
        out: out.display().to_string(),
        entries_applied: replay.len() as u64,
        entries_not_exported: last.saturating_sub(target),
        from_snapshot: snap_index,
        warnings: report.all_problems().cloned().collect(),
        header,
    })
}

/// Read `group` of `source` with its snapshots verified: the report and the group's entries,
/// or the error problems found (an export never carries damage forward).
fn read_undamaged(
    source: &dyn Source,
    group: GroupId,
) -> Result<(Report, EntryCollector), BackupError> {
    let mut records = EntryCollector::default();
    let req = ReadRequest {
        group: Some(group),
        verify_snapshots: true,
    };
    let report = source.read(req, &mut records).map_err(source_error)?;
    let errors: Vec<Problem> = report
        .all_problems()
        .filter(|p| p.is_error())
        .cloned()
        .collect();
    if !errors.is_empty() {
        return Err(BackupError::Damaged(errors));
    }
    Ok((report, records))
}

/// The last index an export of `g` holds: its commit index (never below its snapshot, never past
/// its log), or its last entry.
fn export_target(g: &GroupReport, upto: Upto) -> LogIndex {
    match upto {
        Upto::Commit => g
            .hard_state
            .map_or(0, |h| h.commit)
            .min(g.last_index())
            .max(g.snapshot_index()),
        Upto::Last => g.last_index(),
    }
}

fn source_error(e: SourceError) -> BackupError {
    match e {
        SourceError::Usage(s) => BackupError::Usage(s),
        SourceError::Damaged(p) => BackupError::Damaged(vec![p]),
        SourceError::Failed(s) => BackupError::Failed(s),
    }
}

/// One member of the new cluster: `ID=RAFT_ADDR[/CLIENT_ADDR]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Node id.
    pub id: NodeId,
    /// Raft address.
    pub addr: String,
    /// Client address (default: the raft address's host, port + 1, as `shoald` assumes).
    pub client_addr: String,
}

fn port_plus_one(addr: &str) -> Result<String, String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("address `{}` has no :port", addr))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("address `{}` has an invalid port", addr))?;
    let next = port
        .checked_add(1)
        .ok_or_else(|| format!("address `{}`: port + 1 overflows", addr))?;
    Ok(format!("{}:{}", host, next))
}

/// Parse `1=127.0.0.1:7001,2=127.0.0.1:7011/127.0.0.1:7012` (the syntax of `shoald
/// --initial-members`: a client address after `/`, else the raft port + 1).
pub fn parse_members(s: &str) -> Result<Vec<Member>, String> {
    let mut out: Vec<Member> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("member `{}` is not ID=HOST:PORT", part))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("member `{}`: `{}` is not a node id", part, id))?;
        if id == 0 {
            return Err("node id 0 is reserved".into());
        }
        let (raft, client) = match addr.split_once('/') {
            Some((r, c)) => (r.trim().to_string(), c.trim().to_string()),
            None => (addr.trim().to_string(), port_plus_one(addr.trim())?),
        };
        if !raft.contains(':') {
            return Err(format!(
                "member `{}`: raft address `{}` is not host:port",
                part, raft
            ));
        }
        if out.iter().any(|m| m.id == id) {
            return Err(format!("node {} is listed twice", id));
        }
        out.push(Member {
            id,
            addr: raft,
            client_addr: client,
        });
    }
    if out.is_empty() {
        return Err("--members lists no member".into());
    }
    Ok(out)
}

/// What `import` is asked to do.
#[derive(Clone, Debug)]
pub struct ImportPlan {
    /// The export (or `.snap`) file.
    pub file: PathBuf,
    /// The new data dir (must not exist or be empty).
    pub data_dir: PathBuf,
    /// This node's id in the new cluster.
    pub node_id: NodeId,
    /// The new cluster's members (all voters).
    pub members: Vec<Member>,
    /// Cluster id (default: the export's).
    pub cluster_id: Option<u64>,
    /// This node's raft address (default: its entry in `members`).
    pub raft_addr: Option<String>,
}

/// What `import` built.
#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    /// The new data dir.
    pub data_dir: String,
    /// Cluster id written to its identity.
    pub cluster_id: u64,
    /// Node id written to its identity.
    pub node_id: NodeId,
    /// Raft address written to its identity.
    pub raft_addr: String,
    /// Group installed.
    pub group: GroupId,
    /// Snapshot index and term installed.
    pub index: LogIndex,
    /// Its term (also the hard state's term).
    pub term: u64,
    /// The new membership.
    pub members: Vec<Member>,
}

fn dir_is_empty(p: &Path) -> Result<bool, String> {
    match std::fs::read_dir(p) {
        Ok(mut rd) => Ok(rd.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(format!("cannot read {}: {}", p.display(), e)),
    }
}

/// Build a fresh data dir from a snapshot file with a new member list.
pub fn import(plan: &ImportPlan) -> Result<ImportReport, BackupError> {
    if !dir_is_empty(&plan.data_dir).map_err(BackupError::Failed)? {
        return Err(BackupError::Usage(format!(
            "{} is not empty; import only builds a new data dir (move the old one aside first)",
            plan.data_dir.display()
        )));
    }
    let me = plan
        .members
        .iter()
        .find(|m| m.id == plan.node_id)
        .ok_or_else(|| {
            BackupError::Usage(format!(
                "--node-id {} is not in --members (every rebuilt node is a voter of the new \
                 cluster)",
                plan.node_id
            ))
        })?;
    let ids: Vec<NodeId> = plan.members.iter().map(|m| m.id).collect();
    let membership =
        Membership::new(&ids, &[]).map_err(|e| BackupError::Usage(format!("--members: {}", e)))?;
    let snap = read_snapshot_file(&plan.file).map_err(|p| BackupError::Damaged(vec![p]))?;
    let cluster_id = match plan
        .cluster_id
        .or(Some(snap.header.cluster_id).filter(|&c| c != 0))
    {
        Some(c) => c,
        None => {
            return Err(BackupError::Usage(format!(
                "{} does not record a cluster id (a data dir .snap file, or an export of a \
                 flash image); pass --cluster-id",
                plan.file.display()
            )))
        }
    };
    let raft_addr = plan.raft_addr.clone().unwrap_or_else(|| me.addr.clone());
    let identity = Identity {
        cluster_id,
        node_id: plan.node_id,
        raft_addr: raft_addr.clone(),
    };
    let h = &snap.header;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        BackupError::Failed(format!("{} in {}: {}", what, plan.data_dir.display(), e))
    };
    // Group 0 carries the cluster's member records: they must name the new members, or the
    // rebuilt nodes would dial the old addresses.
    let (data, index) = if h.group == 0 {
        with_member_records(&snap.data, h.index, h.term, &plan.members)
            .map_err(BackupError::Failed)?
    } else {
        (snap.data.clone(), h.index)
    };
    let dd = DataDir::bootstrap(&plan.data_dir, &identity).map_err(|e| fail("bootstrap", &e))?;
    let mut st: FileStorage = dd
        .open_group(h.group, &StorageOptions::default())
        .map_err(|e| fail("open group", &e))?;
    let meta = SnapshotMeta {
        index,
        term: h.term,
        membership: membership.clone(),
        size_bytes: data.len() as u64,
        crc: CRC32C.checksum(&data),
    };
    st.save_hard_state(&HardState {
        term: h.term,
        vote: 0,
        commit: index,
    })
    .map_err(|e| fail("save the hard state", &e))?;
    st.snapshot_begin(&meta)
        .map_err(|e| fail("begin the snapshot", &e))?;
    let mut off = 0u64;
    for chunk in data.chunks(1 << 20) {
        st.snapshot_write(off, chunk)
            .map_err(|e| fail("write the snapshot", &e))?;
        off += chunk.len() as u64;
    }
    st.snapshot_finish()
        .map_err(|e| fail("finish the snapshot", &e))?;
    st.sync().map_err(|e| fail("sync", &e))?;
    debug_assert_eq!(st.snapshot_index(), index);
    drop(st);
    write_address_book(&plan.data_dir, h.group, &plan.members)
        .map_err(|e| fail("write the address book", &e))?;
    Ok(ImportReport {
        data_dir: plan.data_dir.display().to_string(),
        cluster_id,
        node_id: plan.node_id,
        raft_addr,
        group: h.group,
        index,
        term: h.term,
        members: plan.members.clone(),
    })
}

/// Group 0's state `data` (at `index`) with its member records, if it has any, replaced by
/// `members`: the records of nodes not among them removed, theirs written, as system writes
/// at the indexes after `index`. Every node imported from one file with one member list gets the same
/// state. Returns the state and the index it is at.
fn with_member_records(
    data: &[u8],
    index: LogIndex,
    term: u64,
    members: &[Member],
) -> Result<(Vec<u8>, LogIndex), String> {
    let base = KvLimits::server();
    let (old, now_ms) = rebuild(base, Some((data, index)), &[], |kv| {
        let mut ids = Vec::new();
        let _ = kv.list(MEMBERS_DIR, |v| ids.extend(record_id(v.key, MEMBERS_DIR)));
        (ids, kv.now_ms())
    })?;
    if old.is_empty() {
        // No records (an export of a board, or of a cluster from before them): the new
        // cluster's leader writes them from the address book this import writes.
        return Ok((data.to_vec(), index));
    }
    let command = |op: Op<'_>| {
        let cmd = Command {
            client_id: 0,
            seq: 0,
            time_ms: now_ms,
            op,
        };
        let mut buf = vec![0u8; 1024];
        let n = cmd
            .encode(&mut buf)
            .map_err(|e| format!("a member record does not encode: {e:?}"))?;
        buf.truncate(n);
        Ok::<_, String>(buf)
    };
    let mut commands = Vec::new();
    for id in old
        .iter()
        .filter(|id| !members.iter().any(|m| m.id == **id))
    {
        let key = member_key(*id);
        commands.push(command(Op::SysRemove {
            key: key.as_bytes(),
        })?);
    }
    for m in members {
        let mut value = vec![0u8; m.addr.len() + m.client_addr.len() + 16];
        let n = MemberRecord {
            raft_addr: &m.addr,
            client_addr: &m.client_addr,
        }
        .encode(&mut value)
        .map_err(|e| format!("the member record of node {}: {e:?}", m.id))?;
        let key = member_key(m.id);
        commands.push(command(Op::SysPut {
            key: key.as_bytes(),
            value: &value[..n],
        })?);
    }
    let entries: Vec<ReplayEntry> = commands
        .into_iter()
        .zip(index + 1..)
        .map(|(data, i)| ReplayEntry {
            index: i,
            term,
            kind: EntryKind::Normal,
            data,
        })
        .collect();
    let last = entries.last().map_or(index, |e| e.index);
    let state = rebuild(base, Some((data, index)), &entries, |kv| snapshot_bytes(kv))??;
    Ok((state, last))
}

/// Write the address book of group `group` in `data_dir`, so a rebuilt node can reach its
/// new peers.
fn write_address_book(data_dir: &Path, group: GroupId, members: &[Member]) -> Result<(), String> {
    let mut book = AddrBook::load(&group_dir(data_dir, group))?;
    for m in members {
        book.upsert(MemberAddr {
            id: m.id,
            raft_addr: m.addr.clone(),
            client_addr: m.client_addr.clone(),
        })?;
    }
    book.save()
}
