//! `shoald` configuration: a TOML file, `SHOAL_*` environment variables and flags, in that
//! order of precedence (flags win). Every flag has an environment variable of the same name
//! (`--node-id` ↔ `SHOAL_NODE_ID`) and a TOML key with underscores (`node_id = 1`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use shoal_core::{ClusterId, NodeId};

use crate::storage::FsyncMode;

/// Flags of `shoald` (each also read from `SHOAL_<NAME>` and from the config file).
#[derive(Parser, Debug, Default)]
#[command(
    name = "shoald",
    version,
    about = "Shoal server: Raft consensus with the DtKV replicated tree key-value store.",
    long_about = "Shoal server: Raft consensus with the DtKV replicated tree key-value store.\n\n\
        With no flags at all it runs a single-node development cluster in ./shoal-data with its \
        raft, client and admin ports on 127.0.0.1:7001, :7002 and :7003.\n\n\
        Precedence: flags > SHOAL_* environment variables > the --config TOML file > defaults."
)]
pub struct Flags {
    /// TOML config file; its keys are the flag names with underscores (node_id = 2).
    #[arg(long, env = "SHOAL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's id (non-zero) [default: 1].
    #[arg(long, env = "SHOAL_NODE_ID")]
    pub node_id: Option<NodeId>,
    /// The cluster id; peers and data dirs of another cluster are refused [default: 1].
    #[arg(long, env = "SHOAL_CLUSTER_ID")]
    pub cluster_id: Option<ClusterId>,
    /// Data directory (identity, per-group logs, snapshots, address books) [default: ./shoal-data].
    #[arg(long, env = "SHOAL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address peers reach this node's raft port at [default: 127.0.0.1:7001].
    #[arg(long, env = "SHOAL_RAFT_ADDR", value_name = "HOST:PORT")]
    pub raft_addr: Option<String>,
    /// Address of the client port (the protocol of shoal_client::protocol) [default: 127.0.0.1:7002].
    #[arg(long, env = "SHOAL_CLIENT_ADDR", value_name = "HOST:PORT")]
    pub client_addr: Option<String>,
    /// Address of the admin HTTP port (/health, /status, /metrics) [default: 127.0.0.1:7003].
    #[arg(long, env = "SHOAL_ADMIN_ADDR", value_name = "HOST:PORT")]
    pub admin_addr: Option<String>,
    /// Members of group 0 at bootstrap: `id=raft_addr[/client_addr],...`. The client address
    /// defaults to the raft address with port + 1. With --join these are only address hints.
    /// [default: just this node, a single-node dev cluster]
    #[arg(long, env = "SHOAL_INITIAL_MEMBERS", value_name = "LIST")]
    pub initial_members: Option<String>,
    /// When the log is made durable: always (fdatasync before acknowledging, group commit),
    /// async (fdatasync in the background within 10 ms; see README for what power loss can
    /// lose) or never (tests only) [default: always].
    #[arg(long, env = "SHOAL_FSYNC", value_name = "MODE")]
    pub fsync: Option<String>,
    /// Start empty and wait to be added by the leader (ChangeMembers Add) instead of
    /// bootstrapping group 0.
    #[arg(long, env = "SHOAL_JOIN")]
    pub join: bool,
    /// Take a snapshot after this many milliseconds if anything was applied (0: never by time)
    /// [default: 3600000].
    #[arg(long, env = "SHOAL_SNAPSHOT_INTERVAL", value_name = "MS")]
    pub snapshot_interval: Option<u64>,
    /// Take a snapshot after this many applied entries (0: never by count) [default: 100000].
    #[arg(long, env = "SHOAL_SNAPSHOT_ENTRIES", value_name = "N")]
    pub snapshot_entries: Option<u64>,
    /// Finished snapshots kept on disk, the current one included [default: 2].
    #[arg(long, env = "SHOAL_KEEP_SNAPSHOTS", value_name = "N")]
    pub keep_snapshots: Option<usize>,
    /// Milliseconds a log segment made obsolete by a snapshot stays on disk [default: 0].
    #[arg(long, env = "SHOAL_COMPACT_DELAY", value_name = "MS")]
    pub compact_delay: Option<u64>,
    /// Zero-fill each next log segment in the background so that its fdatasyncs flush data
    /// only (about twice the write rate on ext4); writes every log byte twice, so turn it off on
    /// media where wear counts (SD cards) [default: true].
    #[arg(long, env = "SHOAL_PREFILL_SEGMENTS", value_name = "BOOL")]
    pub prefill_segments: Option<bool>,
    /// Take a snapshot of every group on graceful shutdown (SIGTERM / SIGINT).
    #[arg(long, env = "SHOAL_SNAPSHOT_ON_SHUTDOWN")]
    pub snapshot_on_shutdown: bool,
    /// Base election timeout in milliseconds [default: 1000].
    #[arg(long, env = "SHOAL_ELECTION_TIMEOUT", value_name = "MS")]
    pub election_timeout: Option<u64>,
    /// Leader heartbeat interval in milliseconds [default: 100].
    #[arg(long, env = "SHOAL_HEARTBEAT_INTERVAL", value_name = "MS")]
    pub heartbeat_interval: Option<u64>,
    /// Most DtKV nodes per group [default: 262144].
    #[arg(long, env = "SHOAL_KV_MAX_NODES", value_name = "N")]
    pub kv_max_nodes: Option<usize>,
    /// MiB of DtKV key/value storage per group [default: 64].
    #[arg(long, env = "SHOAL_KV_ARENA_MB", value_name = "MIB")]
    pub kv_arena_mb: Option<usize>,
    /// Watch events kept per group for watchers resuming from an index (40 bytes each)
    /// [default: 65536].
    #[arg(long, env = "SHOAL_KV_EVENT_SLOTS", value_name = "N")]
    pub kv_event_slots: Option<usize>,
    /// MiB of key and value copies kept with those events; at most the arena size. Resident
    /// once the history has filled, so it is most of a busy node's memory [default: 8].
    #[arg(long, env = "SHOAL_KV_EVENT_MB", value_name = "MIB")]
    pub kv_event_mb: Option<usize>,
}

/// The config file: the same names as the flags, with underscores.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<NodeId>,
    cluster_id: Option<ClusterId>,
    data_dir: Option<PathBuf>,
    raft_addr: Option<String>,
    client_addr: Option<String>,
    admin_addr: Option<String>,
    initial_members: Option<String>,
    fsync: Option<String>,
    join: Option<bool>,
    snapshot_interval: Option<u64>,
    snapshot_entries: Option<u64>,
    keep_snapshots: Option<usize>,
    compact_delay: Option<u64>,
    prefill_segments: Option<bool>,
    snapshot_on_shutdown: Option<bool>,
    election_timeout: Option<u64>,
    heartbeat_interval: Option<u64>,
    kv_max_nodes: Option<usize>,
    kv_arena_mb: Option<usize>,
    kv_event_slots: Option<usize>,
    kv_event_mb: Option<usize>,
}

/// One member named at bootstrap or in a membership change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSpec {
    /// Node id.
    pub id: NodeId,
    /// Raft address.
    pub raft_addr: String,
    /// Client address.
    pub client_addr: String,
}

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster id.
    pub cluster_id: ClusterId,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Raft listen/advertised address.
    pub raft_addr: String,
    /// Client listen address.
    pub client_addr: String,
    /// Admin HTTP listen address.
    pub admin_addr: String,
    /// Initial members of group 0 (bootstrap) or address hints (join).
    pub initial_members: Vec<MemberSpec>,
    /// Fsync mode.
    pub fsync: FsyncMode,
    /// Start empty and wait to be added.
    pub join: bool,
    /// Snapshot by time (ms; 0 never).
    pub snapshot_interval_ms: u64,
    /// Snapshot by entries (0 never).
    pub snapshot_entries: u64,
    /// Snapshots kept.
    pub keep_snapshots: usize,
    /// Delay before obsolete segments are deleted.
    pub compact_delay: Duration,
    /// Zero-fill next segments in the background.
    pub prefill_segments: bool,
    /// Snapshot at graceful shutdown.
    pub snapshot_on_shutdown: bool,
    /// Election timeout (ms).
    pub election_timeout_ms: u64,
    /// Heartbeat interval (ms).
    pub heartbeat_interval_ms: u64,
    /// DtKV nodes per group.
    pub kv_max_nodes: usize,
    /// DtKV arena bytes per group.
    pub kv_arena_bytes: usize,
    /// DtKV watch history: events kept per group.
    pub kv_event_slots: usize,
    /// DtKV watch history: bytes of key/value copies per group.
    pub kv_event_bytes: usize,
}

/// The client address a raft address implies when none is given: the same host, port + 1.
pub fn default_client_addr(raft_addr: &str) -> Result<String, String> {
    let (host, port) = raft_addr
        .rsplit_once(':')
        .ok_or_else(|| format!("address {raft_addr:?} has no :port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("address {raft_addr:?} has an invalid port"))?;
    let next = port
        .checked_add(1)
        .ok_or_else(|| format!("address {raft_addr:?}: port + 1 overflows"))?;
    Ok(format!("{host}:{next}"))
}

/// Parse one `raft_addr[/client_addr]` pair.
pub fn parse_addr_pair(id: NodeId, s: &str) -> Result<MemberSpec, String> {
    let (raft, client) = match s.split_once('/') {
        Some((r, c)) => (r.trim().to_string(), c.trim().to_string()),
        None => {
            let r = s.trim().to_string();
            let c = default_client_addr(&r)?;
            (r, c)
        }
    };
    if raft.is_empty() || !raft.contains(':') {
        return Err(format!(
            "member {id}: raft address {raft:?} is not host:port"
        ));
    }
    Ok(MemberSpec {
        id,
        raft_addr: raft,
        client_addr: client,
    })
}

/// Parse `1=127.0.0.1:7001,2=127.0.0.1:7011/127.0.0.1:7012`.
pub fn parse_members(s: &str) -> Result<Vec<MemberSpec>, String> {
    let mut out: Vec<MemberSpec> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("member {part:?} is not id=host:port"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("member {part:?}: id {id:?} is not a number"))?;
        if id == 0 {
            return Err(format!("member {part:?}: node id 0 is reserved"));
        }
        if out.iter().any(|m| m.id == id) {
            return Err(format!("member id {id} is listed twice"));
        }
        out.push(parse_addr_pair(id, addr)?);
    }
    Ok(out)
}

fn parse_fsync(s: &str) -> Result<FsyncMode, String> {
    match s {
        "always" => Ok(FsyncMode::Always),
        "async" => Ok(FsyncMode::Async),
        "never" => Ok(FsyncMode::Never),
        other => Err(format!(
            "--fsync {other:?} is not one of always, async, never"
        )),
    }
}

fn check_addr(name: &str, a: &str) -> Result<(), String> {
    a.parse::<SocketAddr>()
        .map(|_| ())
        .map_err(|_| format!("{name} {a:?} is not an ip:port address"))
}

impl ServerConfig {
    /// Resolve flags (which already include `SHOAL_*` variables) over the config file over the
    /// defaults.
    pub fn resolve(flags: Flags) -> Result<ServerConfig, String> {
        let file: FileConfig = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let node_id = flags.node_id.or(file.node_id).unwrap_or(1);
        if node_id == 0 {
            return Err("--node-id 0 is reserved; use 1 or more".into());
        }
        let raft_addr = flags
            .raft_addr
            .or(file.raft_addr)
            .unwrap_or_else(|| "127.0.0.1:7001".into());
        let client_addr = flags
            .client_addr
            .or(file.client_addr)
            .unwrap_or_else(|| "127.0.0.1:7002".into());
        let admin_addr = flags
            .admin_addr
            .or(file.admin_addr)
            .unwrap_or_else(|| "127.0.0.1:7003".into());
        check_addr("--raft-addr", &raft_addr)?;
        check_addr("--client-addr", &client_addr)?;
        check_addr("--admin-addr", &admin_addr)?;
        let initial_members = match flags.initial_members.or(file.initial_members) {
            Some(s) => parse_members(&s).map_err(|e| format!("--initial-members: {e}"))?,
            None => vec![MemberSpec {
                id: node_id,
                raft_addr: raft_addr.clone(),
                client_addr: client_addr.clone(),
            }],
        };
        let join = flags.join || file.join.unwrap_or(false);
        if !join && !initial_members.iter().any(|m| m.id == node_id) {
            return Err(format!(
                "--initial-members does not name this node ({node_id}); list it, or start with --join"
            ));
        }
        let fsync = parse_fsync(flags.fsync.or(file.fsync).as_deref().unwrap_or("always"))?;
        let keep_snapshots = flags.keep_snapshots.or(file.keep_snapshots).unwrap_or(2);
        if keep_snapshots == 0 {
            return Err("--keep-snapshots must be at least 1 (the current snapshot)".into());
        }
        let kv_event_slots = flags
            .kv_event_slots
            .or(file.kv_event_slots)
            .unwrap_or(1 << 16);
        let kv_event_mb = flags.kv_event_mb.or(file.kv_event_mb).unwrap_or(8);
        if kv_event_slots == 0 || kv_event_mb == 0 {
            return Err(
                "--kv-event-slots and --kv-event-mb must be at least 1 (the watch history)".into(),
            );
        }
        Ok(ServerConfig {
            node_id,
            cluster_id: flags.cluster_id.or(file.cluster_id).unwrap_or(1),
            data_dir: flags
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./shoal-data")),
            raft_addr,
            client_addr,
            admin_addr,
            initial_members,
            fsync,
            join,
            snapshot_interval_ms: flags
                .snapshot_interval
                .or(file.snapshot_interval)
                .unwrap_or(3_600_000),
            snapshot_entries: flags
                .snapshot_entries
                .or(file.snapshot_entries)
                .unwrap_or(100_000),
            keep_snapshots,
            compact_delay: Duration::from_millis(
                flags.compact_delay.or(file.compact_delay).unwrap_or(0),
            ),
            prefill_segments: flags
                .prefill_segments
                .or(file.prefill_segments)
                .unwrap_or(true),
            snapshot_on_shutdown: flags.snapshot_on_shutdown
                || file.snapshot_on_shutdown.unwrap_or(false),
            election_timeout_ms: flags
                .election_timeout
                .or(file.election_timeout)
                .unwrap_or(1000),
            heartbeat_interval_ms: flags
                .heartbeat_interval
                .or(file.heartbeat_interval)
                .unwrap_or(100),
            kv_max_nodes: flags.kv_max_nodes.or(file.kv_max_nodes).unwrap_or(1 << 18),
            kv_arena_bytes: flags.kv_arena_mb.or(file.kv_arena_mb).unwrap_or(64) << 20,
            kv_event_slots,
            kv_event_bytes: kv_event_mb << 20,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_with_and_without_client_addr() {
        let m = parse_members("1=127.0.0.1:7001, 2=127.0.0.1:7011/127.0.0.1:9000").unwrap();
        assert_eq!(m[0].client_addr, "127.0.0.1:7002");
        assert_eq!(m[1].client_addr, "127.0.0.1:9000");
        assert!(parse_members("1=a:1,1=b:2").unwrap_err().contains("twice"));
        assert!(parse_members("x=a:1").is_err());
    }

    #[test]
    fn defaults_make_a_single_node_cluster() {
        let c = ServerConfig::resolve(Flags::default()).unwrap();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.initial_members.len(), 1);
        assert_eq!(c.initial_members[0].raft_addr, "127.0.0.1:7001");
        assert_eq!(c.fsync, FsyncMode::Always);
        assert_eq!((c.kv_event_slots, c.kv_event_bytes), (65536, 8 << 20));
        assert!(c.prefill_segments);
    }

    #[test]
    fn segment_prefill_can_be_turned_off_by_flag_or_file() {
        let f = Flags::try_parse_from(["shoald", "--prefill-segments", "false"]).unwrap();
        assert!(!ServerConfig::resolve(f).unwrap().prefill_segments);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoald.toml");
        std::fs::write(&path, "prefill_segments = false\n").unwrap();
        let f = Flags::try_parse_from(["shoald", "--config", path.to_str().unwrap()]).unwrap();
        assert!(!ServerConfig::resolve(f).unwrap().prefill_segments);
        let bad = Flags::try_parse_from(["shoald", "--prefill-segments", "maybe"]);
        assert!(bad.is_err());
    }

    #[test]
    fn watch_history_flags_and_file_keys() {
        let f = Flags::try_parse_from(["shoald", "--kv-event-slots", "1000", "--kv-event-mb", "2"])
            .unwrap();
        let c = ServerConfig::resolve(f).unwrap();
        assert_eq!((c.kv_event_slots, c.kv_event_bytes), (1000, 2 << 20));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoald.toml");
        std::fs::write(&path, "kv_event_slots = 7\nkv_event_mb = 3\n").unwrap();
        let f = Flags::try_parse_from(["shoald", "--config", path.to_str().unwrap()]).unwrap();
        let c = ServerConfig::resolve(f).unwrap();
        assert_eq!((c.kv_event_slots, c.kv_event_bytes), (7, 3 << 20));
        let zero = Flags::try_parse_from(["shoald", "--kv-event-mb", "0"]).unwrap();
        assert!(ServerConfig::resolve(zero)
            .unwrap_err()
            .contains("--kv-event-mb"));
    }
}
