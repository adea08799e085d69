//! `shoald` configuration: a TOML file, `SHOAL_*` environment variables and flags, in that
//! order of precedence (flags win). Every flag has an environment variable of the same name
//! (`--node-id` ↔ `SHOAL_NODE_ID`) and a TOML key with underscores (`node_id = 1`).
//!
//! This file is the schema: [`Flags`] is both the command line and the TOML file's keys, so a new
//! flag is one field here. The steps from flags to a checked [`ServerConfig`] live beside it:
//! `members` (the `--initial-members` list and distinct addresses), `limits` (the named limits of
//! the data dir, the ports and DtKV) and `resolve` (defaults and how the values fit together).

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::Parser;
use serde::{Deserialize, Serialize};
use shoal_core::{ClusterId, NodeId};

mod limits;
mod members;
mod resolve;
#[cfg(test)]
mod tests;

pub use limits::{
    DEFAULT_KV_ARENA_MB, DEFAULT_KV_EVENT_MB, DEFAULT_KV_EVENT_SLOTS, DEFAULT_KV_MAX_NODES,
};
pub use members::{default_client_addr, parse_addr_pair, parse_members, MemberSpec};
pub use resolve::ServerConfig;

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

/// A flag the file may give as a number or as text (`metrics_group_series = 10`, or `"all"`).
fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    Ok(Option::<Raw>::deserialize(d)?.map(|r| match r {
        Raw::Number(n) => n.to_string(),
        Raw::Text(t) => t,
    }))
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
    /// Address clients reach the client port at, when it is not --client-addr (a node listening
    /// on 0.0.0.0, or behind NAT): what this node's member record says and what followers name
    /// in redirects to it. Required when --client-addr is an unspecified address.
    /// [default: --client-addr]
    #[arg(long, env = "SHOAL_ADVERTISE_CLIENT_ADDR", value_name = "HOST:PORT")]
    pub advertise_client_addr: Option<String>,
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
    /// With the shared sync, copy what several busy groups wrote in a round into the data
    /// dir's sync journal (a 16 MiB file made when first needed), so one fdatasync of it makes
    /// them all durable instead of a sync of the whole filesystem [default: true].
    #[arg(long, env = "SHOAL_SYNC_JOURNAL", value_name = "BOOL")]
    pub sync_journal: Option<bool>,
    /// How often this node looks at how many groups each node leads, and hands some of its
    /// own to members that lead fewer when it leads more than its share (a node back from a
    /// restart leads none until then); `0` turns it off [default: 2s].
    #[arg(long, env = "SHOAL_LEADER_BALANCE_INTERVAL", value_name = "DURATION")]
    pub leader_balance_interval: Option<Dur>,
    /// With leader balance, also move busy groups off a node that leads far more write load
    /// than the others (one group a pass, only when the two nodes' loads end closer); turn it
    /// off to balance by the number of groups alone [default: true].
    #[arg(long, env = "SHOAL_LEADER_BALANCE_LOAD", value_name = "BOOL")]
    pub leader_balance_load: Option<bool>,
    /// Quiesce the groups this node leads once they settle: no heartbeats and no timer work
    /// until something happens (node liveness pings watch their members instead); turn it off
    /// to heartbeat every group all the time [default: true].
    #[arg(long, env = "SHOAL_QUIESCE", value_name = "BOOL")]
    pub quiesce: Option<bool>,
    /// Threads that flush the groups each round, the raft thread included: their log writes,
    /// replication and apply run in parallel, each group on one thread at a time (client and
    /// peer input, and the answers, stay on the raft thread); 1 flushes every group on the
    /// raft thread [default: the number of cores].
    #[arg(long, env = "SHOAL_RAFT_THREADS", value_name = "N")]
    pub raft_threads: Option<usize>,
    /// Give the raft thread a CPU of its own: `auto` (of the CPUs this process may use, the one
    /// that has served the fewest device interrupts) or a CPU number; the node's other threads
    /// then run on the other CPUs. Can help a node whose raft thread is busy (many active
    /// groups) on a machine whose other work stays off that CPU; a pinned thread cannot move
    /// when something else holds its CPU. Give nodes sharing a machine different numbers.
    /// Linux only [default: off].
    #[arg(long, env = "SHOAL_RAFT_CPU", value_name = "off|auto|CPU")]
    pub raft_cpu: Option<String>,
    /// Hosted groups up to which `/metrics` gives each group its own series (a `group`
    /// label). Past it each per-group family is one node-wide series, so that a node with
    /// thousands of groups stays cheap to scrape: the sum over its groups (the most, for apply
    /// lag, drifting clocks and limits; terms and indexes are left out), and
    /// `shoal_group_healthy` lists only unhealthy groups, N at most. `all`: per group however
    /// many [default: 256].
    #[arg(long, env = "SHOAL_METRICS_GROUP_SERIES", value_name = "N|all")]
    #[serde(deserialize_with = "number_or_text")]
    pub metrics_group_series: Option<String>,
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
    /// MiB of watch history the whole node keeps: each group opened gets this divided by the
    /// groups the node hosts (its event copies and, in proportion, its event slots), at most
    /// `--kv-event-mb` and never less than one largest key and value; 0 gives every group
    /// the full `--kv-event-mb` [default: 128].
    #[arg(long, env = "SHOAL_KV_EVENTS_NODE_MB", value_name = "MIB")]
    pub kv_events_node_mb: Option<usize>,
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
    /// TLS connections over --client-max-connections told why at once (each costs a TLS
    /// handshake); more are closed without a word [default: 16].
    #[arg(long, env = "SHOAL_CLIENT_MAX_TLS_REFUSALS", value_name = "N")]
    pub client_max_tls_refusals: Option<usize>,
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
    /// How often the certificate, key and CA files are looked at: one that changed (length or
    /// modification time) is re-read as on SIGHUP; 0 re-reads only on SIGHUP [default: 5s].
    #[arg(long, env = "SHOAL_CERT_CHECK_INTERVAL", value_name = "DURATION")]
    pub cert_check_interval: Option<Dur>,
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
    /// These flags (which already hold the `SHOAL_*` variables) over the `--config` file, if
    /// one is named: the first step of [`ServerConfig::resolve`].
    fn with_file(self) -> Result<Flags, String> {
        let file: Flags = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?
            }
            None => Flags::default(),
        };
        self.over(file)
    }

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
