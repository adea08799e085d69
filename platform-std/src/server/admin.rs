//! The admin HTTP port (tiny_http on its own thread): `/health`, `/status` (JSON) and
//! `/metrics` (Prometheus text). It reads a view the raft thread publishes every 100 ms and the
//! fsync histogram; it never touches a group.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use shoal_core::driver::NodeStats;
use shoal_core::raft::RaftStats;
use shoal_core::{GroupId, LogIndex, NodeId, Term};

use super::timed::{Histogram, FSYNC_BUCKETS_US};

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
#[derive(Clone, Debug, Serialize)]
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
    /// Client writes proposed by this node.
    pub proposals: u64,
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
    /// False once shutdown started.
    pub running: bool,
    /// Every hosted group.
    pub groups: Vec<GroupView>,
    /// Client connections.
    pub clients: ClientsView,
    /// Bytes of peer frames read but not yet taken by the raft thread.
    pub peer_input_bytes: usize,
}

/// The client side of the node.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ClientsView {
    /// Connections open now.
    pub connections: usize,
    /// Encoded answers not yet taken by their clients.
    pub answer_bytes_pending: usize,
    /// Requests read but not yet handled by the raft thread.
    pub requests_queued: usize,
}

/// Serve the admin port until the process exits.
pub fn serve(server: tiny_http::Server, view: Arc<Mutex<AdminView>>, fsync: Arc<Histogram>) {
    for req in server.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("").to_string();
        let v = view.lock().expect("admin lock").clone();
        let (code, ctype, body) = match path.as_str() {
            "/health" => health(&v),
            "/status" => (
                200,
                "application/json",
                serde_json::to_string_pretty(&v)
                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
            ),
            "/metrics" => (200, "text/plain; version=0.0.4", metrics(&v, &fsync)),
            "/groups" => (
                200,
                "application/json",
                serde_json::to_string(&v.groups.iter().map(|g| g.group).collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
            _ => (
                404,
                "application/json",
                "{\"error\":\"unknown path; try /health, /status, /metrics, /groups\"}".into(),
            ),
        };
        let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes())
            .expect("static header is valid");
        let resp = tiny_http::Response::from_string(body)
            .with_status_code(code)
            .with_header(header);
        if let Err(e) = req.respond(resp) {
            log::debug!("admin answer not sent: {e}");
        }
    }
}

fn health(v: &AdminView) -> (u16, &'static str, String) {
    let leaderless: Vec<GroupId> = v
        .groups
        .iter()
        .filter(|g| g.leader == 0)
        .map(|g| g.group)
        .collect();
    let ok = v.running && !v.groups.is_empty() && leaderless.is_empty();
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unavailable" },
        "node_id": v.node_id,
        "running": v.running,
        "groups": v.groups.len(),
        "groups_without_leader": leaderless,
    })
    .to_string();
    (if ok { 200 } else { 503 }, "application/json", body)
}

fn metrics(v: &AdminView, fsync: &Histogram) -> String {
    let mut s = String::new();
    let mut family = |name: &str, help: &str, kind: &str, f: &dyn Fn(&GroupView) -> u64| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for g in &v.groups {
            let _ = writeln!(s, "{name}{{group=\"{}\"}} {}", g.group, f(g));
        }
    };
    family(
        "shoal_proposals_total",
        "Client writes proposed by this node.",
        "counter",
        &|g| g.proposals,
    );
    family("shoal_commit_index", "Commit index.", "gauge", &|g| {
        g.commit
    });
    family("shoal_applied_index", "Applied index.", "gauge", &|g| {
        g.applied
    });
    family(
        "shoal_apply_lag",
        "Committed entries not yet applied.",
        "gauge",
        &|g| g.commit.saturating_sub(g.applied),
    );
    family(
        "shoal_applied_entries_total",
        "Entries applied.",
        "counter",
        &|g| g.node_stats.applied_entries,
    );
    family("shoal_term", "Current term.", "gauge", &|g| g.term);
    family(
        "shoal_is_leader",
        "1 if this node leads the group.",
        "gauge",
        &|g| u64::from(g.role == "leader"),
    );
    family(
        "shoal_elections_total",
        "Elections started by this node.",
        "counter",
        &|g| g.raft_stats.elections,
    );
    family(
        "shoal_became_leader_total",
        "Times this node became leader.",
        "counter",
        &|g| g.raft_stats.became_leader,
    );
    family(
        "shoal_leader_changes_total",
        "Times the known leader changed.",
        "counter",
        &|g| g.raft_stats.leader_changes,
    );
    family(
        "shoal_bytes_in_total",
        "Peer frame bytes received.",
        "counter",
        &|g| g.node_stats.bytes_in,
    );
    family(
        "shoal_bytes_out_total",
        "Peer frame bytes sent.",
        "counter",
        &|g| g.node_stats.bytes_out,
    );
    family(
        "shoal_frames_in_total",
        "Peer frames received.",
        "counter",
        &|g| g.node_stats.frames_in,
    );
    family(
        "shoal_frames_out_total",
        "Peer frames sent.",
        "counter",
        &|g| g.node_stats.frames_out,
    );
    family(
        "shoal_send_failures_total",
        "Frames the transport refused.",
        "counter",
        &|g| g.node_stats.send_failures,
    );
    family(
        "shoal_dropped_messages_total",
        "Raft messages dropped because the core's outbox or held-reply list was full.",
        "counter",
        &|g| g.raft_stats.dropped_messages,
    );
    family(
        "shoal_syncs_total",
        "Storage syncs (group commits).",
        "counter",
        &|g| g.node_stats.syncs,
    );
    family(
        "shoal_snapshots_taken_total",
        "Snapshots taken locally.",
        "counter",
        &|g| g.node_stats.snapshots_taken,
    );
    family(
        "shoal_snapshots_sent_total",
        "Snapshots sent to followers.",
        "counter",
        &|g| g.raft_stats.snapshots_sent,
    );
    family(
        "shoal_snapshots_installed_total",
        "Snapshots installed from a leader.",
        "counter",
        &|g| g.raft_stats.snapshots_installed,
    );
    family(
        "shoal_log_bytes",
        "Bytes of log segments on disk.",
        "gauge",
        &|g| g.log_bytes,
    );
    family(
        "shoal_snapshot_bytes",
        "Bytes of snapshot files on disk.",
        "gauge",
        &|g| g.snapshot_bytes,
    );
    let name = "shoal_refused_inputs_total";
    let _ = writeln!(
        s,
        "# HELP {name} Peer inputs dropped (or refused for a full medium) without stopping the node, by cause.\n# TYPE {name} counter"
    );
    for g in &v.groups {
        for (fault, n) in g.node_stats.faults.iter() {
            let cause = fault.name();
            let _ = writeln!(s, "{name}{{group=\"{}\",cause=\"{cause}\"}} {n}", g.group);
        }
    }
    for (name, help, value) in [
        (
            "shoal_client_connections",
            "Client connections open.",
            v.clients.connections,
        ),
        (
            "shoal_client_answer_bytes_pending",
            "Encoded answers not yet taken by their clients (a connection past 4 MiB is not read until it drains).",
            v.clients.answer_bytes_pending,
        ),
        (
            "shoal_client_requests_queued",
            "Client requests read but not yet handled.",
            v.clients.requests_queued,
        ),
        (
            "shoal_peer_input_bytes",
            "Peer frames read but not yet handled (peers are not read above 16 MiB).",
            v.peer_input_bytes,
        ),
    ] {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
    let _ = writeln!(
        s,
        "# HELP shoal_fsync_seconds Storage sync latency.\n# TYPE shoal_fsync_seconds histogram"
    );
    let mut cum = 0u64;
    for (i, b) in FSYNC_BUCKETS_US.iter().enumerate() {
        cum += fsync.buckets[i].load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(
            s,
            "shoal_fsync_seconds_bucket{{le=\"{}\"}} {cum}",
            *b as f64 / 1e6
        );
    }
    cum += fsync.buckets[FSYNC_BUCKETS_US.len()].load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(s, "shoal_fsync_seconds_bucket{{le=\"+Inf\"}} {cum}");
    let sum = fsync.sum_us.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(s, "shoal_fsync_seconds_sum {sum}");
    let _ = writeln!(
        s,
        "shoal_fsync_seconds_count {}",
        fsync.count.load(std::sync::atomic::Ordering::Relaxed)
    );
    s
}
