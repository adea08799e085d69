//! `shoald` configuration: a TOML file, `SHOAL_*` environment variables and flags, in that
//! order of precedence (flags win). Every flag has an environment variable of the same name
//! (`--node-id` ↔ `SHOAL_NODE_ID`) and a TOML key with underscores (`node_id = 1`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::Parser;
use serde::{Deserialize, Serialize};
use shoal_core::limits::Config;
use shoal_core::{ClusterId, NodeId};
use shoal_kv::KvLimits;

use super::admin::AdminLimits;
use super::clients::ClientLimits;
use super::net::PeerLimits;
use crate::storage::space::{SpaceLimits, DEFAULT_RECHECK, DEFAULT_RESERVE_BYTES};
use crate::storage::{
    FsyncMode, DEFAULT_INITIAL_SEGMENT_BYTES, DEFAULT_SEGMENT_BYTES, MAX_SEGMENT_BYTES,
    MIN_SEGMENT_BYTES,
};

/// A duration flag: a bare number is milliseconds (`500`), or a number with a unit (`500ms`,
/// `2s`, `1m`, `1h`), in flags, `SHOAL_*` variables and the config file alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Dur, String> {
        let s = s.trim();
        if let Ok(ms) = s.parse::<u64>() {
            return Ok(Dur(Duration::from_millis(ms)));
        }
        humantime::parse_duration(s).map(Dur).map_err(|e| {
            format!("{s:?} is not a duration ({e}); write milliseconds (500) or a number with a unit (500ms, 2s, 1m, 1h)")
        })
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(Dur(Duration::from_millis(ms))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Dur {
    fn ms(self) -> u64 {
        self.0.as_millis().min(u128::from(u64::MAX)) as u64
    }
}

/// Flags of `shoald`. Each is also read from `SHOAL_<NAME>` and, with underscores, from the
/// `--config` TOML file: this one struct is both the command line and the file's schema.
#[derive(Parser, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[command(
    name = "shoald",
    version,
    about = "Shoal server: Raft consensus with the DtKV replicated tree key-value store.",
    long_about = "Shoal server: Raft consensus with the DtKV replicated tree key-value store.\n\n\
        With no flags at all it runs a single-node development cluster in ./shoal-data with its \
        raft, client and admin ports on 127.0.0.1:7001, :7002 and :7003.\n\n\
        Precedence: flags > SHOAL_* environment variables > the --config TOML file > defaults.\n\
        Durations take a unit (500ms, 2s, 1m, 1h); a bare number is milliseconds."
)]
pub struct Flags {
    /// TOML config file; its keys are the flag names with underscores (node_id = 2).
    #[arg(long, env = "SHOAL_CONFIG", value_name = "FILE")]
    #[serde(skip)]
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
    #[arg(long, env = "SHOAL_JOIN", num_args = 0..=1, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub join: Option<bool>,
    /// Accept a data dir created for another raft address and record the new one (the node
    /// moved; tell the cluster too, by removing and re-adding it or updating its address).
    #[arg(long, env = "SHOAL_ALLOW_ADDR_CHANGE", num_args = 0..=1, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub allow_addr_change: Option<bool>,
    /// Take a snapshot this long after the last if anything was applied (0: never by time)
    /// [default: 1h].
    #[arg(long, env = "SHOAL_SNAPSHOT_INTERVAL", value_name = "DURATION")]
    pub snapshot_interval: Option<Dur>,
    /// While the commit index advances, save it with the hard state at most this often (0: only
    /// with term and vote changes, snapshots and a clean stop); a restarted node applies up to
    /// it at once, and an offline export covers it [default: 5s].
    #[arg(long, env = "SHOAL_COMMIT_HINT_INTERVAL", value_name = "DURATION")]
    pub commit_hint_interval: Option<Dur>,
    /// Take a snapshot after this many applied entries (0: never by count) [default: 100000].
    #[arg(long, env = "SHOAL_SNAPSHOT_ENTRIES", value_name = "N")]
    pub snapshot_entries: Option<u64>,
    /// Finished snapshots kept on disk, the current one included [default: 2].
    #[arg(long, env = "SHOAL_KEEP_SNAPSHOTS", value_name = "N")]
    pub keep_snapshots: Option<usize>,
    /// How long a log segment made obsolete by a snapshot stays on disk [default: 0].
    #[arg(long, env = "SHOAL_COMPACT_DELAY", value_name = "DURATION")]
    pub compact_delay: Option<Dur>,
    /// Zero-fill each next log segment in the background so that its fdatasyncs flush data
    /// only (about twice the write rate on ext4); writes every log byte twice, so turn it off on
    /// media where wear counts (SD cards) [default: true].
    #[arg(long, env = "SHOAL_PREFILL_SEGMENTS", value_name = "BOOL")]
    pub prefill_segments: Option<bool>,
    /// With fsync always, make every group a batch wrote to durable with one sync of the data
    /// dir's filesystem (syncfs) instead of an fdatasync per group; turn it off when the data
    /// dir shares its filesystem with other busy writers [default: true].
    #[arg(long, env = "SHOAL_SHARED_SYNC", value_name = "BOOL")]
    pub shared_sync: Option<bool>,
    /// Size of each log segment in MiB, preallocated when it is created [default: 64].
    #[arg(long, env = "SHOAL_SEGMENT_MB", value_name = "MIB")]
    pub segment_mb: Option<u64>,
    /// Size in KiB of a group's first log segment; each next segment doubles, up to
    /// --segment-mb, and only a busy group gets a zero-filled spare, so a new or idle group
    /// takes kilobytes of disk [default: 32].
    #[arg(long, env = "SHOAL_SEGMENT_INITIAL_KB", value_name = "KIB")]
    pub segment_initial_kb: Option<u64>,
    /// MiB of free disk space the log never takes: a new segment (or spare) is made only if at
    /// least this much stays free after it; snapshots, votes and truncations may use it, so a
    /// node whose disk filled keeps voting and can still snapshot [default: 128].
    #[arg(long, env = "SHOAL_SPACE_RESERVE_MB", value_name = "MIB")]
    pub space_reserve_mb: Option<u64>,
    /// Most MiB of files the data dir may hold (log segments, snapshots); a write that needs a
    /// segment past it is refused with NoSpace. 0: no quota [default: 0].
    #[arg(long, env = "SHOAL_SPACE_QUOTA_MB", value_name = "MIB")]
    pub space_quota_mb: Option<u64>,
    /// While the space alarm is raised, how often free space is measured again (the alarm
    /// clears, and writes are taken, once a segment fits) [default: 1s].
    #[arg(long, env = "SHOAL_SPACE_RECHECK_INTERVAL", value_name = "DURATION")]
    pub space_recheck_interval: Option<Dur>,
    /// After a snapshot the disk refused (full, out of file descriptors), wait this long before
    /// trying again [default: 10s].
    #[arg(long, env = "SHOAL_SNAPSHOT_RETRY_INTERVAL", value_name = "DURATION")]
    pub snapshot_retry_interval: Option<Dur>,
    /// Longest pause of the client and raft ports after accepting a connection failed (out of
    /// file descriptors); the pause doubles from 10ms up to this while it keeps failing
    /// [default: 1s].
    #[arg(long, env = "SHOAL_ACCEPT_BACKOFF_MAX", value_name = "DURATION")]
    pub accept_backoff_max: Option<Dur>,
    /// Take a snapshot of every group on graceful shutdown (SIGTERM / SIGINT).
    #[arg(long, env = "SHOAL_SNAPSHOT_ON_SHUTDOWN", num_args = 0..=1, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub snapshot_on_shutdown: Option<bool>,
    /// Base election timeout [default: 1s].
    #[arg(long, env = "SHOAL_ELECTION_TIMEOUT", value_name = "DURATION")]
    pub election_timeout: Option<Dur>,
    /// Leader heartbeat interval; at most half the election timeout [default: 100ms].
    #[arg(long, env = "SHOAL_HEARTBEAT_INTERVAL", value_name = "DURATION")]
    pub heartbeat_interval: Option<Dur>,
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
    /// Most compares in one DtKV transaction, and most operations in each of its branches
    /// (1 to 64) [default: 64].
    #[arg(long, env = "SHOAL_KV_MAX_TXN_OPS", value_name = "N")]
    pub kv_max_txn_ops: Option<usize>,
    /// Most live DtKV leases per group; a grant beyond it is refused with TooManyLeases
    /// [default: 65536].
    #[arg(long, env = "SHOAL_KV_MAX_LEASES", value_name = "N")]
    pub kv_max_leases: Option<usize>,
    /// Admin HTTP connections served at once; one more is answered 503 [default: 32].
    #[arg(long, env = "SHOAL_ADMIN_MAX_CONNECTIONS", value_name = "N")]
    pub admin_max_connections: Option<usize>,
    /// Time an admin HTTP client has to send its request and take the answer [default: 5s].
    #[arg(long, env = "SHOAL_ADMIN_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub admin_request_timeout: Option<Dur>,
    /// How long a removed group's data stays on disk (moved aside as
    /// removed-group-<id>-<ms>) before it is deleted [default: 60s].
    #[arg(long, env = "SHOAL_GROUP_REMOVE_GRACE", value_name = "DURATION")]
    pub group_remove_grace: Option<Dur>,
    /// The cluster key file (64 hex digits, as boards hold it): every link on the raft port,
    /// to boards and to servers, is then sealed with it, and plaintext or wrong-key peers are
    /// refused (docs/SECURITY.md) [default: none, links in plaintext].
    #[arg(long, env = "SHOAL_PEER_PSK_FILE", value_name = "FILE")]
    pub peer_psk_file: Option<PathBuf>,
    /// Client connections open at once; one more is refused with an error [default: 4096].
    #[arg(long, env = "SHOAL_CLIENT_MAX_CONNECTIONS", value_name = "N")]
    pub client_max_connections: Option<usize>,
    /// A client connection that sends nothing and takes no answer for this long is closed,
    /// unless it has watches or requests in progress [default: 5m].
    #[arg(long, env = "SHOAL_CLIENT_IDLE_TIMEOUT", value_name = "DURATION")]
    pub client_idle_timeout: Option<Dur>,
    /// Time a client has to finish a request frame after its first byte [default: 10s].
    #[arg(long, env = "SHOAL_CLIENT_FRAME_TIMEOUT", value_name = "DURATION")]
    pub client_frame_timeout: Option<Dur>,
    /// MiB of the largest request frame; a larger one is refused and its connection closed
    /// [default: 2].
    #[arg(long, env = "SHOAL_CLIENT_MAX_REQUEST_MB", value_name = "MIB")]
    pub client_max_request_mb: Option<usize>,
    /// MiB of the largest answer to one read (BatchGet, List); a larger one is refused
    /// [default: 8].
    #[arg(long, env = "SHOAL_CLIENT_MAX_ANSWER_MB", value_name = "MIB")]
    pub client_max_answer_mb: Option<usize>,
    /// Most keys in one BatchGet or Watch request [default: 1024].
    #[arg(long, env = "SHOAL_CLIENT_MAX_BATCH_KEYS", value_name = "N")]
    pub client_max_batch_keys: Option<usize>,
    /// MiB of unsent answers of one connection above which its requests wait unanswered and
    /// its watches are cut, until its client takes them [default: 4].
    #[arg(long, env = "SHOAL_CLIENT_CONN_PENDING_MB", value_name = "MIB")]
    pub client_conn_pending_mb: Option<usize>,
    /// MiB of every client buffer of the node (unfinished requests, unsent answers) above
    /// which a connection holding answers is served no more until its client takes them
    /// [default: 64].
    #[arg(long, env = "SHOAL_CLIENT_BUFFERS_MB", value_name = "MIB")]
    pub client_buffers_mb: Option<usize>,
    /// Keys watched on one client connection (a watch of the whole tree counts one)
    /// [default: 1024].
    #[arg(long, env = "SHOAL_CLIENT_MAX_WATCHES_PER_CONN", value_name = "N")]
    pub client_max_watches_per_conn: Option<usize>,
    /// Keys watched on this node, every connection together [default: 8192].
    #[arg(long, env = "SHOAL_CLIENT_MAX_WATCHES", value_name = "N")]
    pub client_max_watches: Option<usize>,
    /// Raft-port connections in their handshake at once; one more is closed at once
    /// [default: 16].
    #[arg(long, env = "SHOAL_PEER_MAX_HANDSHAKES", value_name = "N")]
    pub peer_max_handshakes: Option<usize>,
    /// Time a raft-port connection has to send its whole handshake [default: 2s].
    #[arg(long, env = "SHOAL_PEER_HANDSHAKE_TIMEOUT", value_name = "DURATION")]
    pub peer_handshake_timeout: Option<Dur>,
    /// Raft-port connections past their handshake; one more is refused [default: 64].
    #[arg(long, env = "SHOAL_PEER_MAX_CONNECTIONS", value_name = "N")]
    pub peer_max_connections: Option<usize>,
    /// Log lines as `text` for people or `json` (one object per line: ts, level, target, msg)
    /// for log collectors [default: text].
    #[arg(long, env = "SHOAL_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Least severe level logged: error, warn, info, debug or trace; `RUST_LOG`, when set, wins
    /// and may name modules (`RUST_LOG=info,shoal_std::server::net=debug`) [default: info].
    #[arg(long, env = "SHOAL_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<log::LevelFilter>,
    /// How long a login's token is good for (every member takes it until then, across leader
    /// changes; clients log in again by themselves) [default: 5m].
    #[arg(long, env = "SHOAL_AUTH_TOKEN_TTL", value_name = "DURATION")]
    pub auth_token_ttl: Option<Dur>,
    /// Password checks (logins, user add, passwd) running at once; each holds 19 MiB for
    /// Argon2id while it runs, more are answered `Unavailable` [default: 4].
    #[arg(long, env = "SHOAL_AUTH_MAX_HASHING", value_name = "N")]
    pub auth_max_hashing: Option<usize>,
    /// Certificate (PEM, leaf first) of the client port; with --key-file it serves TLS 1.3 only,
    /// and the admin port serves TLS with it too (docs/SECURITY.md) [default: none, plaintext].
    #[arg(long, env = "SHOAL_CERT_FILE", value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of --cert-file.
    #[arg(long, env = "SHOAL_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must be signed by (with
    /// --client-cert-auth).
    #[arg(long, env = "SHOAL_TRUSTED_CA_FILE", value_name = "FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Require a client certificate signed by --trusted-ca-file on the client port (and on the
    /// admin port, but for /health and /metrics).
    #[arg(long, env = "SHOAL_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub client_cert_auth: Option<bool>,
    /// With --client-cert-auth, also require a client certificate for /health and /metrics
    /// [default: false, they stay readable by any TLS client].
    #[arg(long, env = "SHOAL_ADMIN_CERT_AUTH_ALL", num_args = 0..=1, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub admin_cert_auth_all: Option<bool>,
    /// This member's certificate (PEM) on the raft port; it must carry the URI SAN
    /// shoal://<cluster-id>/node/<node-id>. With --peer-key-file and --peer-trusted-ca-file,
    /// members speak mutual TLS 1.3 [default: none].
    #[arg(long, env = "SHOAL_PEER_CERT_FILE", value_name = "FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Private key (PEM) of --peer-cert-file.
    #[arg(long, env = "SHOAL_PEER_KEY_FILE", value_name = "FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// CA certificates (PEM) that members' certificates must be signed by.
    #[arg(long, env = "SHOAL_PEER_TRUSTED_CA_FILE", value_name = "FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
}

/// How shoald writes its log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-01-01T00:00:00.000Z INFO  target] message`, for people.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl Flags {
    /// These flags over `file`: every value set here wins, the rest come from the file.
    fn over(&self, file: Flags) -> Result<Flags, String> {
        let mut merged = serde_json::to_value(file).map_err(|e| e.to_string())?;
        let top = serde_json::to_value(self).map_err(|e| e.to_string())?;
        if let (Some(m), Some(t)) = (merged.as_object_mut(), top.as_object()) {
            for (k, v) in t.iter().filter(|(_, v)| !v.is_null()) {
                m.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(merged).map_err(|e| e.to_string())
    }
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
    /// Accept (and record) a changed raft address for an existing data dir.
    pub allow_addr_change: bool,
    /// Snapshots kept.
    pub keep_snapshots: usize,
    /// Delay before obsolete segments are deleted.
    pub compact_delay: Duration,
    /// Zero-fill next segments in the background.
    pub prefill_segments: bool,
    /// One filesystem sync for every group a batch wrote to (fsync always).
    pub shared_sync: bool,
    /// Size of each log segment.
    pub segment_bytes: u64,
    /// Size of a group's first log segment (at most `segment_bytes`).
    pub segment_initial_bytes: u64,
    /// The data dir's space reserve, quota and alarm recheck.
    pub space: SpaceLimits,
    /// Longest pause of the client port's accept loop after a failed accept.
    pub accept_backoff_max: Duration,
    /// Snapshot at graceful shutdown.
    pub snapshot_on_shutdown: bool,
    /// Raft timing and snapshot policy of every group (validated).
    pub raft: Config,
    /// DtKV limits of every group (validated).
    pub kv: KvLimits,
    /// Admin port limits.
    pub admin_limits: AdminLimits,
    /// How long a removed group's dir stays before it is deleted.
    pub group_remove_grace: Duration,
    /// The cluster key file that seals peer links.
    pub peer_psk_file: Option<PathBuf>,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Least severe level logged (unless `RUST_LOG` is set).
    pub log_level: log::LevelFilter,
    /// Client port limits.
    pub client_limits: ClientLimits,
    /// Raft port limits.
    pub peer_limits: PeerLimits,
    /// How long a login's token is good for.
    pub auth_token_ttl: Duration,
    /// Password hashes computed at once, at most.
    pub auth_max_hashing: usize,
    /// Certificate files of the client, admin and raft ports (none: plaintext).
    pub tls: super::tls::TlsFiles,
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

fn mib(name: &str, mb: usize) -> Result<usize, String> {
    match mb.checked_mul(1 << 20) {
        Some(0) => Err(format!("{name} must be at least 1")),
        Some(bytes) => Ok(bytes),
        None => Err(format!(
            "{name} {mb} is larger than this machine can address"
        )),
    }
}

/// Two of the node's own listen addresses, or two members' addresses, must differ.
fn check_distinct(own: &[(&str, &str)], members: &[MemberSpec]) -> Result<(), String> {
    for (i, (na, a)) in own.iter().enumerate() {
        if let Some((nb, _)) = own[..i].iter().find(|(_, b)| b == a) {
            return Err(format!(
                "{nb} and {na} are both {a}; every port needs its own address"
            ));
        }
    }
    let mut seen: Vec<(&str, NodeId)> = Vec::new();
    for m in members {
        for addr in [m.raft_addr.as_str(), m.client_addr.as_str()] {
            if let Some((_, other)) = seen.iter().find(|(a, _)| *a == addr) {
                return Err(format!(
                    "--initial-members: members {other} and {} both use {addr}; every member needs its own addresses",
                    m.id
                ));
            }
            seen.push((addr, m.id));
        }
    }
    Ok(())
}

impl ServerConfig {
    /// Resolve flags (which already include `SHOAL_*` variables) over the config file over the
    /// defaults, and check every value and how they fit together. The error names the flag.
    pub fn resolve(flags: Flags) -> Result<ServerConfig, String> {
        let file: Flags = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?
            }
            None => Flags::default(),
        };
        let f = flags.over(file)?;
        let kv = kv_limits(&f)?;
        let (segment_bytes, space) = space_limits(&f)?;
        let segment_initial_bytes = segment_initial(&f, segment_bytes)?;
        let client_limits = client_limits(&f)?;
        let peer_limits = peer_limits(&f)?;
        let node_id = f.node_id.unwrap_or(1);
        if node_id == 0 {
            return Err("--node-id 0 is reserved; use 1 or more".into());
        }
        let raft_addr = f.raft_addr.unwrap_or_else(|| "127.0.0.1:7001".into());
        let client_addr = f.client_addr.unwrap_or_else(|| "127.0.0.1:7002".into());
        let admin_addr = f.admin_addr.unwrap_or_else(|| "127.0.0.1:7003".into());
        check_addr("--raft-addr", &raft_addr)?;
        check_addr("--client-addr", &client_addr)?;
        check_addr("--admin-addr", &admin_addr)?;
        let initial_members = match f.initial_members {
            Some(s) => parse_members(&s).map_err(|e| format!("--initial-members: {e}"))?,
            None => vec![MemberSpec {
                id: node_id,
                raft_addr: raft_addr.clone(),
                client_addr: client_addr.clone(),
            }],
        };
        check_distinct(
            &[
                ("--raft-addr", &raft_addr),
                ("--client-addr", &client_addr),
                ("--admin-addr", &admin_addr),
            ],
            &initial_members,
        )?;
        let join = f.join.unwrap_or(false);
        if !join && !initial_members.iter().any(|m| m.id == node_id) {
            return Err(format!(
                "--initial-members does not name this node ({node_id}); list it, or start with --join"
            ));
        }
        let fsync = parse_fsync(f.fsync.as_deref().unwrap_or("always"))?;
        let keep_snapshots = f.keep_snapshots.unwrap_or(2);
        if keep_snapshots == 0 {
            return Err("--keep-snapshots must be at least 1 (the current snapshot)".into());
        }
        let mut raft = Config::server();
        raft.election_timeout_ms = f.election_timeout.map_or(1000, Dur::ms);
        raft.heartbeat_interval_ms = f.heartbeat_interval.map_or(100, Dur::ms);
        raft.snapshot_entries = f.snapshot_entries.unwrap_or(100_000);
        raft.snapshot_interval_ms = f.snapshot_interval.map_or(3_600_000, Dur::ms);
        raft.commit_hint_interval_ms = f.commit_hint_interval.map_or(5_000, Dur::ms);
        raft.snapshot_retry_ms = f.snapshot_retry_interval.map_or(10_000, Dur::ms);
        raft.validate().map_err(|e| {
            format!(
                "--election-timeout {}ms / --heartbeat-interval {}ms: {e}",
                raft.election_timeout_ms, raft.heartbeat_interval_ms
            )
        })?;
        let admin_limits = AdminLimits {
            max_connections: f.admin_max_connections.unwrap_or(32),
            request_timeout: f
                .admin_request_timeout
                .map_or(AdminLimits::default().request_timeout, |d| d.0),
        };
        if admin_limits.max_connections == 0 || admin_limits.request_timeout.is_zero() {
            return Err(
                "--admin-max-connections and --admin-request-timeout must be above zero".into(),
            );
        }
        let accept_backoff_max = f.accept_backoff_max.map_or(Duration::from_secs(1), |d| d.0);
        if accept_backoff_max < Duration::from_millis(10) {
            return Err("--accept-backoff-max must be at least 10ms".into());
        }
        Ok(ServerConfig {
            node_id,
            cluster_id: f.cluster_id.unwrap_or(1),
            data_dir: f.data_dir.unwrap_or_else(|| PathBuf::from("./shoal-data")),
            raft_addr,
            client_addr,
            admin_addr,
            initial_members,
            fsync,
            join,
            allow_addr_change: f.allow_addr_change.unwrap_or(false),
            keep_snapshots,
            compact_delay: f.compact_delay.map_or(Duration::ZERO, |d| d.0),
            prefill_segments: f.prefill_segments.unwrap_or(true),
            shared_sync: f.shared_sync.unwrap_or(true),
            segment_bytes,
            segment_initial_bytes,
            space,
            accept_backoff_max,
            snapshot_on_shutdown: f.snapshot_on_shutdown.unwrap_or(false),
            raft,
            kv,
            admin_limits,
            group_remove_grace: f
                .group_remove_grace
                .map_or(Duration::from_secs(60), |d| d.0),
            peer_psk_file: f.peer_psk_file,
            log_format: f.log_format.unwrap_or_default(),
            log_level: f.log_level.unwrap_or(log::LevelFilter::Info),
            client_limits,
            peer_limits,
            auth_token_ttl: match f.auth_token_ttl.map_or(Duration::from_secs(300), |d| d.0) {
                d if d.is_zero() => return Err("--auth-token-ttl must be more than 0".into()),
                d => d,
            },
            auth_max_hashing: match f.auth_max_hashing.unwrap_or(4) {
                0 => return Err("--auth-max-hashing must be at least 1".into()),
                n => n,
            },
            tls: super::tls::TlsFiles::from_flags(
                (f.cert_file, f.key_file, f.trusted_ca_file),
                f.client_cert_auth.unwrap_or(false),
                f.admin_cert_auth_all.unwrap_or(false),
                (f.peer_cert_file, f.peer_key_file, f.peer_trusted_ca_file),
            )?,
        })
    }
}

/// The segment size and the space limits from `--segment-mb` and `--space-*`.
fn space_limits(f: &Flags) -> Result<(u64, SpaceLimits), String> {
    const MIB: u64 = 1 << 20;
    let segment_mb = f.segment_mb.unwrap_or(DEFAULT_SEGMENT_BYTES / MIB);
    if segment_mb == 0 || segment_mb > MAX_SEGMENT_BYTES / MIB {
        return Err(format!(
            "--segment-mb {segment_mb} is outside 1..={}",
            MAX_SEGMENT_BYTES / MIB
        ));
    }
    let mib = |name: &str, v: u64| {
        v.checked_mul(MIB)
            .ok_or_else(|| format!("{name} {v} is larger than any disk"))
    };
    let space = SpaceLimits {
        reserve_bytes: mib(
            "--space-reserve-mb",
            f.space_reserve_mb.unwrap_or(DEFAULT_RESERVE_BYTES / MIB),
        )?,
        quota_bytes: mib("--space-quota-mb", f.space_quota_mb.unwrap_or(0))?,
        recheck: f.space_recheck_interval.map_or(DEFAULT_RECHECK, |d| d.0),
    };
    if space.quota_bytes != 0 && space.quota_bytes < 2 * segment_mb * MIB {
        return Err(format!(
            "--space-quota-mb {} cannot hold two log segments of --segment-mb {segment_mb}; \
             raise it (or 0 for no quota)",
            space.quota_bytes / MIB
        ));
    }
    if space.recheck.is_zero() {
        return Err("--space-recheck-interval must be above zero".into());
    }
    Ok((segment_mb * MIB, space))
}

/// A count flag that must be above zero.
fn count(name: &str, value: Option<usize>, default: usize) -> Result<usize, String> {
    match value.unwrap_or(default) {
        0 => Err(format!("{name} must be at least 1")),
        n => Ok(n),
    }
}

/// A duration flag that must be above zero.
fn positive(name: &str, value: Option<Dur>, default: Duration) -> Result<Duration, String> {
    match value.map_or(default, |d| d.0) {
        d if d.is_zero() => Err(format!("{name} must be above zero")),
        d => Ok(d),
    }
}

/// The client port's limits from the `--client-*` flags.
fn client_limits(f: &Flags) -> Result<ClientLimits, String> {
    let d = ClientLimits::default();
    let mb = |name: &str, v: Option<usize>, default: usize| mib(name, v.unwrap_or(default >> 20));
    let l = ClientLimits {
        max_connections: count(
            "--client-max-connections",
            f.client_max_connections,
            d.max_connections,
        )?,
        idle_timeout: positive(
            "--client-idle-timeout",
            f.client_idle_timeout,
            d.idle_timeout,
        )?,
        frame_timeout: positive(
            "--client-frame-timeout",
            f.client_frame_timeout,
            d.frame_timeout,
        )?,
        max_request_bytes: mb(
            "--client-max-request-mb",
            f.client_max_request_mb,
            d.max_request_bytes,
        )?,
        max_answer_bytes: mb(
            "--client-max-answer-mb",
            f.client_max_answer_mb,
            d.max_answer_bytes,
        )?,
        max_batch_keys: count(
            "--client-max-batch-keys",
            f.client_max_batch_keys,
            d.max_batch_keys,
        )?,
        conn_pending_bytes: mb(
            "--client-conn-pending-mb",
            f.client_conn_pending_mb,
            d.conn_pending_bytes,
        )?,
        buffer_bytes: mb("--client-buffers-mb", f.client_buffers_mb, d.buffer_bytes)?,
        max_watches_per_conn: count(
            "--client-max-watches-per-conn",
            f.client_max_watches_per_conn,
            d.max_watches_per_conn,
        )?,
        max_watches: count("--client-max-watches", f.client_max_watches, d.max_watches)?,
    };
    // Frames carry a 16 MiB body at most: a larger limit could never be reached.
    let frame_mb = shoal_client::protocol::MAX_FRAME_BYTES >> 20;
    for (name, bytes) in [
        ("--client-max-request-mb", l.max_request_bytes),
        ("--client-max-answer-mb", l.max_answer_bytes),
    ] {
        if bytes >= shoal_client::protocol::MAX_FRAME_BYTES {
            return Err(format!(
                "{name} {} is not below the protocol's largest frame ({frame_mb} MiB)",
                bytes >> 20
            ));
        }
    }
    Ok(l)
}

/// The raft port's limits from the `--peer-*` flags.
fn peer_limits(f: &Flags) -> Result<PeerLimits, String> {
    let d = PeerLimits::default();
    Ok(PeerLimits {
        max_handshakes: count(
            "--peer-max-handshakes",
            f.peer_max_handshakes,
            d.max_handshakes,
        )?,
        handshake_timeout: positive(
            "--peer-handshake-timeout",
            f.peer_handshake_timeout,
            d.handshake_timeout,
        )?,
        max_connections: count(
            "--peer-max-connections",
            f.peer_max_connections,
            d.max_connections,
        )?,
    })
}

/// `--segment-initial-kb` in bytes: at least the smallest segment, at most `--segment-mb`.
fn segment_initial(f: &Flags, segment_bytes: u64) -> Result<u64, String> {
    const KIB: u64 = 1 << 10;
    let kb = f
        .segment_initial_kb
        .unwrap_or(DEFAULT_INITIAL_SEGMENT_BYTES / KIB);
    let (lo, hi) = (MIN_SEGMENT_BYTES / KIB, segment_bytes / KIB);
    if !(lo..=hi).contains(&kb) {
        return Err(format!(
            "--segment-initial-kb {kb} is outside {lo}..={hi} (at most --segment-mb)"
        ));
    }
    Ok(kb * KIB)
}

/// `--kv-max-nodes` when unset: a quarter of [`KvLimits::server`]'s, so an idle node reserves
/// less address space (docs/DTKV.md's limits table says the same; a test holds them equal).
pub const DEFAULT_KV_MAX_NODES: usize = 1 << 18;
/// `--kv-arena-mb` when unset.
pub const DEFAULT_KV_ARENA_MB: usize = 64;
/// `--kv-event-slots` when unset.
pub const DEFAULT_KV_EVENT_SLOTS: usize = 1 << 16;
/// `--kv-event-mb` when unset: half the server profile's, since a full history is resident.
pub const DEFAULT_KV_EVENT_MB: usize = 8;

/// DtKV limits from the `--kv-*` flags, checked as the store will check them.
fn kv_limits(f: &Flags) -> Result<KvLimits, String> {
    let mut kv = KvLimits::server();
    kv.max_nodes = f.kv_max_nodes.unwrap_or(DEFAULT_KV_MAX_NODES);
    if kv.max_nodes == 0 {
        return Err("--kv-max-nodes must be at least 1".into());
    }
    kv.arena_bytes = mib(
        "--kv-arena-mb",
        f.kv_arena_mb.unwrap_or(DEFAULT_KV_ARENA_MB),
    )?;
    kv.event_slots = f.kv_event_slots.unwrap_or(DEFAULT_KV_EVENT_SLOTS);
    if kv.event_slots == 0 {
        return Err("--kv-event-slots must be at least 1 (the watch history)".into());
    }
    // The event copies never need more than the arena (nor less than one largest pair).
    let event_bytes = mib(
        "--kv-event-mb",
        f.kv_event_mb.unwrap_or(DEFAULT_KV_EVENT_MB),
    )?;
    kv.event_bytes = event_bytes.min(kv.arena_bytes.max(kv.max_key_bytes + kv.max_value_bytes));
    if kv.arena_bytes < kv.max_key_bytes + kv.max_value_bytes {
        return Err(format!(
            "--kv-arena-mb {} cannot hold one largest key and value ({} bytes)",
            f.kv_arena_mb.unwrap_or(DEFAULT_KV_ARENA_MB),
            kv.max_key_bytes + kv.max_value_bytes
        ));
    }
    kv.max_txn_ops = f.kv_max_txn_ops.unwrap_or(shoal_kv::MAX_TXN_OPS);
    if !(1..=shoal_kv::MAX_TXN_OPS).contains(&kv.max_txn_ops) {
        return Err(format!(
            "--kv-max-txn-ops must be 1 to {} (it sizes the answer kept for exactly-once retries)",
            shoal_kv::MAX_TXN_OPS
        ));
    }
    if let Some(n) = f.kv_max_leases {
        kv.max_leases = n;
    }
    kv.validate()
        .map_err(|e| format!("--kv-* limits do not fit together: {e}"))?;
    Ok(kv)
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
        assert_eq!((c.kv.event_slots, c.kv.event_bytes), (65536, 8 << 20));
        assert!(c.prefill_segments);
        assert!(c.shared_sync);
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
    fn transaction_size_flag_and_file_key() {
        let c = ServerConfig::resolve(Flags::default()).unwrap();
        assert_eq!(c.kv.max_txn_ops, shoal_kv::MAX_TXN_OPS);
        let f = Flags::try_parse_from(["shoald", "--kv-max-txn-ops", "5"]).unwrap();
        assert_eq!(ServerConfig::resolve(f).unwrap().kv.max_txn_ops, 5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoald.toml");
        std::fs::write(&path, "kv_max_txn_ops = 9\n").unwrap();
        let f = Flags::try_parse_from(["shoald", "--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(ServerConfig::resolve(f).unwrap().kv.max_txn_ops, 9);
    }

    #[test]
    fn max_leases_flag_and_file_key() {
        let f = Flags::try_parse_from(["shoald"]).unwrap();
        assert_eq!(ServerConfig::resolve(f).unwrap().kv.max_leases, 1 << 16);
        let f = Flags::try_parse_from(["shoald", "--kv-max-leases", "7"]).unwrap();
        assert_eq!(ServerConfig::resolve(f).unwrap().kv.max_leases, 7);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoald.toml");
        std::fs::write(&path, "kv_max_leases = 3\n").unwrap();
        let f = Flags::try_parse_from(["shoald", "--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(ServerConfig::resolve(f).unwrap().kv.max_leases, 3);
    }

    #[test]
    fn watch_history_flags_and_file_keys() {
        let f = Flags::try_parse_from(["shoald", "--kv-event-slots", "1000", "--kv-event-mb", "2"])
            .unwrap();
        let c = ServerConfig::resolve(f).unwrap();
        assert_eq!((c.kv.event_slots, c.kv.event_bytes), (1000, 2 << 20));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoald.toml");
        std::fs::write(&path, "kv_event_slots = 7\nkv_event_mb = 3\n").unwrap();
        let f = Flags::try_parse_from(["shoald", "--config", path.to_str().unwrap()]).unwrap();
        let c = ServerConfig::resolve(f).unwrap();
        assert_eq!((c.kv.event_slots, c.kv.event_bytes), (7, 3 << 20));
        let zero = Flags::try_parse_from(["shoald", "--kv-event-mb", "0"]).unwrap();
        assert!(ServerConfig::resolve(zero)
            .unwrap_err()
            .contains("--kv-event-mb"));
    }

    fn resolve_args(args: &[&str]) -> Result<ServerConfig, String> {
        let mut all = vec!["shoald"];
        all.extend_from_slice(args);
        ServerConfig::resolve(Flags::try_parse_from(all).map_err(|e| e.to_string())?)
    }

    #[test]
    fn durations_take_units_in_flags_and_file_alike() {
        let c = resolve_args(&[
            "--election-timeout",
            "2s",
            "--heartbeat-interval",
            "250ms",
            "--snapshot-interval",
            "1h",
            "--compact-delay",
            "1500",
        ])
        .unwrap();
        assert_eq!(c.raft.election_timeout_ms, 2000);
        assert_eq!(c.raft.heartbeat_interval_ms, 250);
        assert_eq!(c.raft.snapshot_interval_ms, 3_600_000);
        assert_eq!(c.compact_delay, Duration::from_millis(1500));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoald.toml");
        std::fs::write(
            &path,
            "election_timeout = \"3s\"\nheartbeat_interval = 300\nadmin_request_timeout = \"2m\"\n",
        )
        .unwrap();
        let c = resolve_args(&["--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.raft.election_timeout_ms, 3000);
        assert_eq!(c.raft.heartbeat_interval_ms, 300);
        assert_eq!(c.admin_limits.request_timeout, Duration::from_secs(120));
        // A flag beats the file.
        let c = resolve_args(&[
            "--config",
            path.to_str().unwrap(),
            "--election-timeout",
            "1s",
        ])
        .unwrap();
        assert_eq!(c.raft.election_timeout_ms, 1000);
        let e = resolve_args(&["--election-timeout", "soon"]).unwrap_err();
        assert!(e.contains("not a duration"), "{e}");
    }

    #[test]
    fn wrong_configurations_are_refused_with_the_reason() {
        let cases: &[(&[&str], &str)] = &[
            (&["--kv-arena-mb", "0"], "--kv-arena-mb must be at least 1"),
            (&["--kv-max-nodes", "0"], "--kv-max-nodes"),
            (&["--kv-event-mb", "0"], "--kv-event-mb"),
            (&["--kv-max-txn-ops", "0"], "--kv-max-txn-ops"),
            (&["--kv-max-txn-ops", "65"], "--kv-max-txn-ops"),
            (&["--keep-snapshots", "0"], "--keep-snapshots"),
            (&["--heartbeat-interval", "600ms"], "--heartbeat-interval"),
            (&["--election-timeout", "0"], "--election-timeout"),
            (&["--admin-max-connections", "0"], "--admin-max-connections"),
            (
                &["--client-max-connections", "0"],
                "--client-max-connections must be at least 1",
            ),
            (
                &["--client-idle-timeout", "0s"],
                "--client-idle-timeout must be above zero",
            ),
            (
                &["--client-max-request-mb", "0"],
                "--client-max-request-mb must be at least 1",
            ),
            (
                &["--client-max-answer-mb", "16"],
                "--client-max-answer-mb 16 is not below",
            ),
            (
                &["--client-max-watches", "0"],
                "--client-max-watches must be at least 1",
            ),
            (
                &["--peer-max-handshakes", "0"],
                "--peer-max-handshakes must be at least 1",
            ),
            (
                &["--peer-handshake-timeout", "0"],
                "--peer-handshake-timeout must be above zero",
            ),
            (
                &["--client-addr", "127.0.0.1:7001"],
                "--raft-addr and --client-addr are both 127.0.0.1:7001",
            ),
            (
                &["--initial-members", "1=127.0.0.1:7001,2=127.0.0.1:7001"],
                "members 1 and 2 both use 127.0.0.1:7001",
            ),
            (
                &[
                    "--initial-members",
                    "1=127.0.0.1:7001,2=127.0.0.1:7011/127.0.0.1:7002",
                ],
                "both use 127.0.0.1:7002",
            ),
            (&["--node-id", "0"], "reserved"),
            (&["--segment-mb", "0"], "--segment-mb 0 is outside"),
            (&["--segment-mb", "4096"], "--segment-mb 4096 is outside"),
            (
                &["--space-quota-mb", "100", "--segment-mb", "64"],
                "cannot hold two log segments",
            ),
            (
                &["--space-recheck-interval", "0"],
                "--space-recheck-interval",
            ),
            (&["--accept-backoff-max", "1ms"], "--accept-backoff-max"),
        ];
        for (args, want) in cases {
            let e = resolve_args(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoald.toml");
        std::fs::write(&path, "kv_arena_mb = 0\n").unwrap();
        let e = resolve_args(&["--config", path.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("--kv-arena-mb"), "{e}");
        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        let e = resolve_args(&["--config", path.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("no_such_key"), "{e}");
    }

    #[test]
    fn space_and_retry_limits_by_flag_and_file() {
        let c = resolve_args(&[]).unwrap();
        assert_eq!(c.segment_bytes, 64 << 20);
        assert_eq!(c.space, SpaceLimits::default());
        assert_eq!(c.raft.snapshot_retry_ms, 10_000);
        assert_eq!(c.accept_backoff_max, Duration::from_secs(1));
        let c = resolve_args(&[
            "--segment-mb",
            "2",
            "--space-reserve-mb",
            "0",
            "--space-quota-mb",
            "20",
            "--space-recheck-interval",
            "250ms",
            "--snapshot-retry-interval",
            "2s",
            "--accept-backoff-max",
            "100ms",
        ])
        .unwrap();
        assert_eq!(c.segment_bytes, 2 << 20);
        assert_eq!(
            c.space,
            SpaceLimits {
                reserve_bytes: 0,
                quota_bytes: 20 << 20,
                recheck: Duration::from_millis(250),
            }
        );
        assert_eq!(c.raft.snapshot_retry_ms, 2000);
        assert_eq!(c.accept_backoff_max, Duration::from_millis(100));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoald.toml");
        std::fs::write(&path, "segment_mb = 8\nspace_reserve_mb = 1\n").unwrap();
        let c = resolve_args(&["--config", path.to_str().unwrap()]).unwrap();
        assert_eq!((c.segment_bytes, c.space.reserve_bytes), (8 << 20, 1 << 20));
    }

    #[test]
    fn client_and_peer_limits_from_flags_and_file() {
        let c = resolve_args(&[]).unwrap();
        assert_eq!(c.client_limits, ClientLimits::default());
        assert_eq!(c.peer_limits, PeerLimits::default());
        let c = resolve_args(&[
            "--client-max-connections",
            "10",
            "--client-idle-timeout",
            "1m",
            "--client-max-request-mb",
            "1",
            "--client-max-batch-keys",
            "7",
            "--peer-handshake-timeout",
            "500ms",
        ])
        .unwrap();
        assert_eq!(c.client_limits.max_connections, 10);
        assert_eq!(c.client_limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.client_limits.max_request_bytes, 1 << 20);
        assert_eq!(c.client_limits.max_batch_keys, 7);
        assert_eq!(c.peer_limits.handshake_timeout, Duration::from_millis(500));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoald.toml");
        std::fs::write(
            &path,
            "client_buffers_mb = 16\nclient_max_watches = 5\npeer_max_connections = 3\nclient_frame_timeout = \"3s\"\n",
        )
        .unwrap();
        let c = resolve_args(&["--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.client_limits.buffer_bytes, 16 << 20);
        assert_eq!(c.client_limits.max_watches, 5);
        assert_eq!(c.client_limits.frame_timeout, Duration::from_secs(3));
        assert_eq!(c.peer_limits.max_connections, 3);
    }

    #[test]
    fn the_first_segment_size_has_a_default_a_flag_and_bounds() {
        let c = resolve_args(&[]).unwrap();
        assert_eq!(c.segment_initial_bytes, 32 << 10);
        let c = resolve_args(&["--segment-initial-kb", "256"]).unwrap();
        assert_eq!(c.segment_initial_bytes, 256 << 10);
        let e = resolve_args(&["--segment-initial-kb", "2"]).unwrap_err();
        assert!(e.contains("--segment-initial-kb 2"), "{e}");
        let e = resolve_args(&["--segment-mb", "1", "--segment-initial-kb", "2048"]).unwrap_err();
        assert!(e.contains("at most --segment-mb"), "{e}");
    }

    #[test]
    fn switches_work_bare_and_with_a_value() {
        let c = resolve_args(&["--join", "--snapshot-on-shutdown"]).unwrap();
        assert!(c.join && c.snapshot_on_shutdown && !c.allow_addr_change);
        let c = resolve_args(&["--join=false", "--allow-addr-change"]).unwrap();
        assert!(!c.join && c.allow_addr_change);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoald.toml");
        std::fs::write(&path, "join = true\n").unwrap();
        assert!(
            resolve_args(&["--config", path.to_str().unwrap()])
                .unwrap()
                .join
        );
    }
}
