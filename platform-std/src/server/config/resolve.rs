//! From [`Flags`] (command line and `SHOAL_*` over the file) to a checked [`ServerConfig`]: the
//! defaults, then each group of values checked on its own and against the others. Every error
//! names the flag to change.

use std::path::PathBuf;
use std::time::Duration;

use shoal_core::limits::Config;
use shoal_core::{ClusterId, NodeId};
use shoal_kv::KvLimits;

use super::limits::{
    client_limits, kv_events_node_bytes, kv_limits, peer_limits, segment_initial, space_limits,
};
use super::members::{check_addr, check_distinct, parse_members, MemberSpec};
use super::{Dur, Flags, LogFormat};
use crate::server::admin::AdminLimits;
use crate::server::clients::ClientLimits;
use crate::server::net::PeerLimits;
use crate::server::tls::TlsFiles;
use crate::storage::space::SpaceLimits;
use crate::storage::FsyncMode;

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
    /// The client address this node gives clients and peers (its member record, redirects):
    /// `--advertise-client-addr`, else the listen address.
    pub advertise_client_addr: String,
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
    /// Rounds of several busy groups sync through the sync journal (with `shared_sync`).
    pub sync_journal: bool,
    /// Quiesce settled groups this node leads.
    pub quiesce: bool,
    /// How often leader balance runs (`None`: off, `--leader-balance-interval 0`).
    pub leader_balance_interval: Option<Duration>,
    /// Leader balance also moves busy groups by their write load.
    pub leader_balance_load: bool,
    /// Threads that flush the groups of a round (1: the raft thread alone).
    pub raft_threads: usize,
    /// Hosted groups up to which `/metrics` has series per group (`--metrics-group-series`;
    /// `usize::MAX` for `all`).
    pub metrics_group_series: usize,
    /// Where the raft thread runs ([`crate::affinity`]).
    pub raft_cpu: crate::affinity::RaftCpu,
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
    /// DtKV limits of every group (validated); the watch history of each is scaled down by
    /// `kv_events_node_bytes` ([`ServerConfig::group_kv_limits`]).
    pub kv: KvLimits,
    /// Bytes of watch history the node keeps over all its groups (0: no node-wide budget).
    pub kv_events_node_bytes: usize,
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
    pub tls: TlsFiles,
}

/// The node's own addresses and the members it starts with: the part of the configuration that
/// must agree with the other nodes'.
struct Addresses {
    node_id: NodeId,
    raft_addr: String,
    client_addr: String,
    advertise_client_addr: String,
    admin_addr: String,
    initial_members: Vec<MemberSpec>,
    join: bool,
}

impl Addresses {
    fn resolve(f: &Flags) -> Result<Addresses, String> {
        let node_id = f.node_id.unwrap_or(1);
        if node_id == 0 {
            return Err("--node-id 0 is reserved; use 1 or more".into());
        }
        let or = |v: &Option<String>, default: &str| v.clone().unwrap_or_else(|| default.into());
        let raft_addr = or(&f.raft_addr, "127.0.0.1:7001");
        let client_addr = or(&f.client_addr, "127.0.0.1:7002");
        let admin_addr = or(&f.admin_addr, "127.0.0.1:7003");
        check_addr("--raft-addr", &raft_addr)?;
        check_addr("--client-addr", &client_addr)?;
        check_addr("--admin-addr", &admin_addr)?;
        let advertise_client_addr = advertised(&client_addr, f.advertise_client_addr.as_deref())?;
        let initial_members = match &f.initial_members {
            Some(s) => parse_members(s).map_err(|e| format!("--initial-members: {e}"))?,
            None => vec![MemberSpec {
                id: node_id,
                raft_addr: raft_addr.clone(),
                client_addr: advertise_client_addr.clone(),
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
        Ok(Addresses {
            node_id,
            raft_addr,
            client_addr,
            advertise_client_addr,
            admin_addr,
            initial_members,
            join,
        })
    }
}

/// `--fsync`: when an append is acknowledged.
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

/// Raft timing and snapshot policy of every group, validated as the core will.
fn raft_config(f: &Flags) -> Result<Config, String> {
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
    Ok(raft)
}

/// The admin port's limits from the `--admin-*` flags.
fn admin_limits(f: &Flags) -> Result<AdminLimits, String> {
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
    Ok(admin_limits)
}

/// `--auth-token-ttl` and `--auth-max-hashing`, both above zero.
fn auth_limits(f: &Flags) -> Result<(Duration, usize), String> {
    let ttl = match f.auth_token_ttl.map_or(Duration::from_secs(300), |d| d.0) {
        d if d.is_zero() => return Err("--auth-token-ttl must be more than 0".into()),
        d => d,
    };
    let hashing = match f.auth_max_hashing.unwrap_or(4) {
        0 => return Err("--auth-max-hashing must be at least 1".into()),
        n => n,
    };
    Ok((ttl, hashing))
}

impl ServerConfig {
    /// The DtKV limits of one group on a node that hosts `groups` groups: the watch history
    /// shares `kv_events_node_bytes` evenly over the next power of two of `groups` (so the
    /// share moves only when the count passes one): its event copies, and its event slots in
    /// proportion, at most the per-group `--kv-event-mb`, at least one largest key and value.
    pub fn group_kv_limits(&self, groups: usize) -> KvLimits {
        let mut kv = self.kv;
        if self.kv_events_node_bytes == 0 {
            return kv;
        }
        let floor = (kv.max_key_bytes + kv.max_value_bytes).min(kv.event_bytes);
        let over = groups.max(1).next_power_of_two();
        let bytes = (self.kv_events_node_bytes / over).clamp(floor, kv.event_bytes);
        // Slots in the same proportion (an event holds a key and value copy; a history of
        // small events is bounded by its slots, of large ones by its bytes).
        let slots = (kv.event_slots as u128 * bytes as u128 / kv.event_bytes as u128) as usize;
        kv.event_bytes = bytes;
        kv.event_slots = slots.clamp(kv.event_slots.min(1024), kv.event_slots);
        kv
    }

    /// Resolve flags (which already include `SHOAL_*` variables) over the config file over the
    /// defaults, and check every value and how they fit together. The error names the flag.
    pub fn resolve(flags: Flags) -> Result<ServerConfig, String> {
        let f = flags.with_file()?;
        let kv = kv_limits(&f)?;
        let kv_events_node_bytes = kv_events_node_bytes(&f)?;
        let (segment_bytes, space) = space_limits(&f)?;
        let segment_initial_bytes = segment_initial(&f, segment_bytes)?;
        let client_limits = client_limits(&f)?;
        let peer_limits = peer_limits(&f)?;
        let addrs = Addresses::resolve(&f)?;
        let fsync = parse_fsync(f.fsync.as_deref().unwrap_or("always"))?;
        let keep_snapshots = f.keep_snapshots.unwrap_or(2);
        if keep_snapshots == 0 {
            return Err("--keep-snapshots must be at least 1 (the current snapshot)".into());
        }
        let raft = raft_config(&f)?;
        let admin_limits = admin_limits(&f)?;
        let accept_backoff_max = f.accept_backoff_max.map_or(Duration::from_secs(1), |d| d.0);
        if accept_backoff_max < Duration::from_millis(10) {
            return Err("--accept-backoff-max must be at least 10ms".into());
        }
        let (auth_token_ttl, auth_max_hashing) = auth_limits(&f)?;
        let raft_threads = raft_threads(f.raft_threads)?;
        let metrics_group_series = metrics_group_series(f.metrics_group_series.as_deref())?;
        let raft_cpu = match &f.raft_cpu {
            Some(s) => s.parse()?,
            None => Default::default(),
        };
        Ok(ServerConfig {
            node_id: addrs.node_id,
            cluster_id: f.cluster_id.unwrap_or(1),
            data_dir: f.data_dir.unwrap_or_else(|| PathBuf::from("./shoal-data")),
            raft_addr: addrs.raft_addr,
            client_addr: addrs.client_addr,
            advertise_client_addr: addrs.advertise_client_addr,
            admin_addr: addrs.admin_addr,
            initial_members: addrs.initial_members,
            fsync,
            join: addrs.join,
            allow_addr_change: f.allow_addr_change.unwrap_or(false),
            keep_snapshots,
            compact_delay: f.compact_delay.map_or(Duration::ZERO, |d| d.0),
            prefill_segments: f.prefill_segments.unwrap_or(true),
            shared_sync: f.shared_sync.unwrap_or(true),
            sync_journal: f.sync_journal.unwrap_or(true),
            quiesce: f.quiesce.unwrap_or(true),
            leader_balance_interval: Some(
                f.leader_balance_interval
                    .map_or(Duration::from_secs(2), |d| d.0),
            )
            .filter(|d| !d.is_zero()),
            leader_balance_load: f.leader_balance_load.unwrap_or(true),
            raft_threads,
            metrics_group_series,
            raft_cpu,
            segment_bytes,
            segment_initial_bytes,
            space,
            accept_backoff_max,
            snapshot_on_shutdown: f.snapshot_on_shutdown.unwrap_or(false),
            raft,
            kv,
            kv_events_node_bytes,
            admin_limits,
            group_remove_grace: f
                .group_remove_grace
                .map_or(Duration::from_secs(60), |d| d.0),
            peer_psk_file: f.peer_psk_file,
            log_format: f.log_format.unwrap_or_default(),
            log_level: f.log_level.unwrap_or(log::LevelFilter::Info),
            client_limits,
            peer_limits,
            auth_token_ttl,
            auth_max_hashing,
            tls: TlsFiles {
                check_interval: f
                    .cert_check_interval
                    .map_or(super::super::tls::DEFAULT_CHECK_INTERVAL, |d| d.0),
                ..TlsFiles::from_flags(
                    (f.cert_file, f.key_file, f.trusted_ca_file),
                    f.client_cert_auth.unwrap_or(false),
                    f.admin_cert_auth_all.unwrap_or(false),
                    (f.peer_cert_file, f.peer_key_file, f.peer_trusted_ca_file),
                )?
            },
        })
    }
}

/// The client address to advertise: `advertise` if given (a host name is allowed: clients
/// resolve it), else the listen address `listen`, which must then name one address clients can
/// reach, not every address of the host.
fn advertised(listen: &str, advertise: Option<&str>) -> Result<String, String> {
    let unspecified = |a: &str| {
        a.parse::<std::net::SocketAddr>()
            .is_ok_and(|s| s.ip().is_unspecified())
    };
    if let Some(a) = advertise {
        let a =
            shoal_client::parse_endpoint(a).map_err(|e| format!("--advertise-client-addr: {e}"))?;
        if unspecified(&a) {
            return Err(format!(
                "--advertise-client-addr {a} is not an address clients can be sent to; name \
                 this node's own address"
            ));
        }
        return Ok(a);
    }
    if unspecified(listen) {
        return Err(format!(
            "--client-addr {listen} listens on every address of this host, which clients cannot \
             be sent to: give --advertise-client-addr HOST:PORT, the address clients reach this \
             node at (its member record and the redirects of other nodes name it)"
        ));
    }
    Ok(listen.to_string())
}

/// Most flush threads: more than a node's groups could keep busy on any host it runs on.
const MAX_RAFT_THREADS: usize = 64;

/// `--metrics-group-series`: a count of groups, or `all`.
fn metrics_group_series(v: Option<&str>) -> Result<usize, String> {
    match v.map(str::trim) {
        None => Ok(DEFAULT_METRICS_GROUP_SERIES),
        Some("all") => Ok(usize::MAX),
        Some(n) => n.parse().map_err(|_| {
            format!(
                "--metrics-group-series {n:?}: expected a number of groups (0, 256, ..) or `all`"
            )
        }),
    }
}

/// Hosted groups up to which `/metrics` has series per group unless told otherwise.
pub const DEFAULT_METRICS_GROUP_SERIES: usize = 256;

/// `--raft-threads`, or the number of cores.
fn raft_threads(n: Option<usize>) -> Result<usize, String> {
    match n {
        None => Ok(std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_RAFT_THREADS)),
        Some(0) => Err("--raft-threads must be at least 1 (1: the raft thread alone)".into()),
        Some(n) if n > MAX_RAFT_THREADS => Err(format!(
            "--raft-threads {n} is more than {MAX_RAFT_THREADS}, the most a node uses"
        )),
        Some(n) => Ok(n),
    }
}
