//! The admin HTTP port (a bounded HTTP/1.1 server on its own thread, [`http`]): `/health`, `/status` (JSON) and
//! `/metrics` (Prometheus text). It reads a view the raft thread publishes every 100 ms and the
//! fsync histogram; it never touches a group.

mod disk_metrics;
pub mod http;
mod metrics;

use std::sync::{Arc, Mutex};

use serde::Serialize;
use shoal_client::protocol::HealthInfo;
use shoal_core::driver::NodeStats;
use shoal_core::raft::RaftStats;
use shoal_core::{GroupId, LogIndex, NodeId, Term};

use super::accept::AcceptView;
use super::timed::Histogram;
use crate::storage::space::SpaceStats;
pub use http::{AdminCounters, AdminLimits, Answer, Routes};

/// One peer in `/status`.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    /// Node id.
    pub id: NodeId,
    /// Raft address (from the address book).
    pub raft_addr: String,
    /// `voter`, `observer`, `leaving-voter`, `leaving-observer`.
    pub role: String,
    /// Match index as the leader sees it (leader only).
    pub match_index: Option<LogIndex>,
}

/// One group in `/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GroupView {
    /// Group id.
    pub group: GroupId,
    /// This node's role.
    pub role: String,
    /// Current term.
    pub term: Term,
    /// Known leader (0: none).
    pub leader: NodeId,
    /// Commit index.
    pub commit: LogIndex,
    /// Applied index.
    pub applied: LogIndex,
    /// Last log index.
    pub last_index: LogIndex,
    /// Snapshot index.
    pub snapshot_index: LogIndex,
    /// Bytes of log segments on disk.
    pub log_bytes: u64,
    /// Bytes of snapshot files on disk.
    pub snapshot_bytes: u64,
    /// Members and per-peer match index.
    pub members: Vec<PeerView>,
    /// Quiesced here: no heartbeats (leader) or election timer (follower) until woken.
    pub quiet: bool,
    /// Client writes proposed by this node.
    pub proposals: u64,
    /// Client writes refused before they were proposed (they took no log entry).
    pub writes_refused: u64,
    /// The group's DtKV limit on compares and on operations per branch of a transaction.
    #[serde(skip)]
    pub max_txn_ops: u64,
    /// The group's DtKV limit on live leases.
    #[serde(skip)]
    pub max_leases: u64,
    /// Bytes of key and value copies the group's watch history keeps at most.
    #[serde(skip)]
    pub event_bytes: u64,
    /// Events the group's watch history keeps at most.
    #[serde(skip)]
    pub event_slots: u64,
    /// Live DtKV leases.
    #[serde(skip)]
    pub leases: u64,
    /// On a leader: followers whose clock rate the clock check found outside the lease's
    /// bound; they do not count toward the lease (lease reads go through ReadIndex while they
    /// leave no quorum).
    pub clock_drift_peers: u64,
    /// Driver counters.
    #[serde(skip)]
    pub node_stats: NodeStats,
    /// Raft counters.
    #[serde(skip)]
    pub raft_stats: RaftStats,
}

/// What the raft thread publishes for the admin port.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AdminView {
    /// This node.
    pub node_id: NodeId,
    /// The build version (`shoald --version`).
    pub version: &'static str,
    /// This node's raft address.
    pub raft_addr: String,
    /// This node's client address.
    pub client_addr: String,
    /// False once shutdown started.
    pub running: bool,
    /// Every hosted group.
    pub groups: Vec<GroupView>,
    /// Client connections.
    pub clients: ClientsView,
    /// Bytes of peer frames read but not yet taken by the raft thread.
    pub peer_input_bytes: usize,
    /// Sealed peer links opened and refused (`--peer-psk-file`; zero without it).
    pub sealed_links: (u64, u64),
    /// TLS refusals and reloads (zero without TLS).
    pub tls: crate::server::tls::TlsView,
    /// The cluster's records as this node acts on them.
    pub records: RecordsView,
    /// Whether the node can vouch for its groups, and why not (`None` until first published).
    pub health: Option<HealthInfo>,
    /// The data dir's space: the alarm, free and used bytes, limits and refusals.
    pub space: Option<SpaceStats>,
    /// The client port's failed accepts.
    pub accept: AcceptView,
    /// The log's disk limits in force.
    pub disk: DiskView,
    /// The raft port's handshakes and connections.
    pub peer_port: PeerPortView,
    /// Users and logins.
    pub auth: AuthView,
    /// Group flushes run since start by each thread: the raft thread first, then each other
    /// flush thread (`--raft-threads`).
    pub flushes: Vec<u64>,
    /// Groups the raft loop ticks and flushes each round (with work, or not yet settled);
    /// the others cost nothing until an input or a due snapshot wakes them.
    pub active_groups: u64,
    /// Clients' `Health` requests answered, and the times every group's health was judged
    /// for them (an answer is reused for 100 ms).
    pub health_answers: (u64, u64),
    /// The CPU the raft thread is pinned to (`--raft-cpu`), if it is.
    pub raft_cpu: Option<usize>,
    /// Hosted groups up to which `/metrics` has series per group (`--metrics-group-series`).
    pub group_series_max: usize,
    /// The sync journal's held bytes (busy groups' new log bytes not yet in their segments)
    /// and the pieces held since start (zero without the journal).
    pub journal_held: (u64, u64),
}

/// Users and logins (`/metrics`).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct AuthView {
    /// Whether auth is enabled.
    pub enabled: bool,
    /// Users defined.
    pub users: usize,
    /// Logins that succeeded since start.
    pub logins: u64,
    /// Logins refused since start.
    pub login_failures: u64,
    /// Requests refused with `AuthFailed` or `PermissionDenied` since start.
    pub refusals: u64,
    /// Password checks running now (at most `--auth-max-hashing`).
    pub hashing: usize,
    /// Password checks refused because `--auth-max-hashing` were running.
    pub hashing_busy: u64,
}

/// What this node did about the cluster's records (group definitions).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct RecordsView {
    /// Removed groups' dirs still on disk (waiting out `--group-remove-grace`, or being
    /// deleted).
    pub group_dirs_pending_removal: usize,
    /// Removed groups' dirs deleted since start.
    pub group_dirs_freed: u64,
    /// Group handshakes refused, by this node or by a peer.
    pub group_handshake_refusals: u64,
}

/// The log's disk limits in force (`/status`, `/metrics`).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct DiskView {
    /// Size of each log segment (`--segment-mb`).
    pub segment_bytes: u64,
    /// Size of a group's first log segment (`--segment-initial-kb`).
    pub segment_initial_bytes: u64,
    /// Wait after a refused snapshot (`--snapshot-retry-interval`), in milliseconds.
    pub snapshot_retry_ms: u64,
}

/// The client side of the node.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ClientsView {
    /// Connections open now.
    pub connections: usize,
    /// Encoded answers not yet taken by their clients.
    pub answer_bytes_pending: usize,
    /// Bytes of unfinished request frames held.
    pub request_bytes_buffered: usize,
    /// Requests read but not yet handled by the raft thread.
    pub requests_queued: usize,
    /// Connections over their share of answer bytes (not read, requests set aside).
    pub connections_held: usize,
    /// Requests set aside until their clients take their answers.
    pub requests_set_aside: usize,
    /// Keys watched.
    pub watches: usize,
    /// Watches cut (with an index to resume from) because their connection was over its share.
    pub watches_cut: u64,
    /// Each client limit (its flag) and its value.
    pub limits: [(&'static str, u64); super::clients::Limit::ALL.len()],
    /// Each client limit (its flag) and the times it was hit.
    pub hits: [(&'static str, u64); super::clients::Limit::ALL.len()],
}

/// The raft port's bounds: handshakes and accepted peer connections.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PeerPortView {
    /// Accepted connections still in their handshake.
    pub handshakes_pending: usize,
    /// Accepted connections past their handshake.
    pub connections: usize,
    /// Each raft-port limit (its flag) and its value.
    pub limits: [(&'static str, u64); 3],
    /// Each raft-port limit (its flag) and the times it was hit.
    pub hits: [(&'static str, u64); 3],
    /// The raft port's failed accepts.
    pub accept: AcceptView,
}

/// The admin port's application: answers from the published view.
struct AdminRoutes {
    view: Arc<Mutex<AdminView>>,
    fsync: Arc<Histogram>,
    counters: Arc<AdminCounters>,
}

impl Routes for AdminRoutes {
    fn get(&self, path: &str) -> Answer {
        let v = self.view.lock().expect("admin lock").clone();
        let json = |body: String| Answer {
            status: 200,
            content_type: "application/json",
            body,
        };
        match path {
            "/health" => health(&v),
            "/status" => json(
                serde_json::to_string_pretty(&v)
                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
            ),
            "/metrics" => Answer {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: metrics::render(&v, &self.fsync, &self.counters),
            },
            "/groups" => json(
                serde_json::to_string(&v.groups.iter().map(|g| g.group).collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
            _ => Answer::error(404, "unknown path; try /health, /status, /metrics, /groups"),
        }
    }
}

/// Serve the admin port until the process exits (call on a thread of its own).
pub fn serve(
    listener: std::net::TcpListener,
    view: Arc<Mutex<AdminView>>,
    fsync: Arc<Histogram>,
    limits: AdminLimits,
    tls: Option<Arc<crate::server::tls::Tls>>,
) -> std::io::Result<()> {
    let counters = Arc::new(AdminCounters::default());
    let routes = AdminRoutes {
        view,
        fsync,
        counters: counters.clone(),
    };
    http::serve(listener, routes, limits, counters, tls)
}

/// `/health`: 200 when the node can vouch for every group it hosts and no alarm is raised,
/// else 503; either way the JSON names each group's state and every reason.
fn health(v: &AdminView) -> Answer {
    let (ok, body) = match &v.health {
        Some(h) => (
            h.healthy,
            serde_json::json!({
                "status": if h.healthy { "ok" } else { "unavailable" },
                "node_id": h.node_id,
                "running": h.running,
                "groups": h.groups,
                "alarms": h.alarms,
                "reasons": h.reasons(),
            }),
        ),
        None => (
            false,
            serde_json::json!({
                "status": "unavailable",
                "node_id": v.node_id,
                "reasons": ["starting: no health published yet"],
            }),
        ),
    };
    Answer {
        status: if ok { 200 } else { 503 },
        content_type: "application/json",
        body: body.to_string(),
    }
}
