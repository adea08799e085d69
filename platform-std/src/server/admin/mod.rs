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

/// Client reads a node took on for one group, by how it serves them (`shoal_reads_total`). A
/// read refused (this node does not lead, no leader yet) is not counted; a lease read that
/// falls back to a ReadIndex round counts as linearizable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReadCounts {
    /// Through a ReadIndex round of the leader (`linearizable`, and lease reads without a
    /// lease).
    pub linearizable: u64,
    /// Under the leader's lease.
    pub lease: u64,
    /// From this node's applied state (`local`, possibly stale).
    pub local: u64,
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
    /// Client reads this node took on, by how it serves them.
    pub reads: ReadCounts,
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
    /// Every hosted group (`/status` lists them last, `/status/node` counts them,
    /// `/status/group/<id>` gives one).
    #[serde(skip)]
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
    /// `/status` gives it whole; `/status/node` as `/health` does.
    #[serde(skip)]
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
    /// Syncs of the filesystem the sync journal ran ahead of its halves' retires since start.
    pub journal_ahead_syncs: u64,
    /// Switches of the sync journal's half that waited for the other half's retire.
    pub journal_switch_waits: u64,
    /// Leader transfers this node started to balance leaders (`--leader-balance-interval`).
    pub leader_balance_transfers: u64,
    /// Of them, the transfers of busy groups for the load.
    pub leader_balance_load_transfers: u64,
    /// Follower flushes frozen for a sync on a sync thread rather than synced on the raft
    /// thread.
    pub follower_background_syncs: u64,
    /// Snapshots being written off the raft thread now (at most four at once).
    pub snapshot_writers: u64,
    /// Inputs a frozen group could not hold: peer frames dropped, client requests refused.
    pub frozen_inputs_refused: u64,
    /// Views published so far: answers rendered from the view are kept until the next.
    #[serde(skip)]
    pub published: u64,
}

/// How long the raft thread may go without publishing its view (it does every 100 ms) before
/// `/health` says the node is stalled: its loop is stuck, most likely in a write or sync to a
/// disk or file system that does not answer, and nothing it last said can be vouched for.
pub const STALLED_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// How long an admin request waits for the view the raft thread holds before it answers
/// without it.
const VIEW_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

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
    /// `/health`, `/status`, the view's part of `/metrics` and `/groups` as rendered from the
    /// view last published.
    health: Rendered,
    status: Rendered,
    node_status: Rendered,
    metrics: Rendered,
    groups: Rendered,
}

/// One path's answer, rendered at most once per published view (every 100 ms): a client
/// asking without pause costs the node a copy of the answer, not a walk over every group.
#[derive(Default)]
struct Rendered {
    answer: Mutex<Option<(u64, Answer)>>,
    /// Times it was rendered (tests).
    renders: std::sync::atomic::AtomicU64,
}

impl AdminRoutes {
    fn new(
        view: Arc<Mutex<AdminView>>,
        fsync: Arc<Histogram>,
        counters: Arc<AdminCounters>,
    ) -> AdminRoutes {
        AdminRoutes {
            view,
            fsync,
            counters,
            health: Rendered::default(),
            status: Rendered::default(),
            node_status: Rendered::default(),
            metrics: Rendered::default(),
            groups: Rendered::default(),
        }
    }

    /// The view, unless the raft thread holds it for over [`VIEW_WAIT`] (a loop stuck while
    /// it publishes).
    fn try_view(&self) -> Option<std::sync::MutexGuard<'_, AdminView>> {
        let start = std::time::Instant::now();
        loop {
            match self.view.try_lock() {
                Ok(v) => return Some(v),
                Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) if start.elapsed() < VIEW_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(std::sync::TryLockError::WouldBlock) => return None,
            }
        }
    }

    /// `kept`'s answer if it was rendered from the view now published, else `render`'s (from
    /// the view itself while its lock is held, when `under_lock`; else from a copy, so that a
    /// long rendering does not hold up the raft thread's next publish).
    fn rendered(
        &self,
        kept: &Rendered,
        under_lock: bool,
        render: impl Fn(&AdminView) -> Answer,
    ) -> Answer {
        let mut answer = kept.answer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(v) = self.try_view() else {
            // The raft thread holds the view: what was rendered last, if anything was.
            return match &*answer {
                Some((_, a)) => a.clone(),
                None => Answer::error(503, "the node's view is held by its raft loop; retry"),
            };
        };
        if let Some((at, a)) = &*answer {
            if *at == v.published {
                return a.clone();
            }
        }
        let (at, fresh) = if under_lock {
            (v.published, render(&v))
        } else {
            let v = v.clone();
            (v.published, render(&v))
        };
        kept.renders
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *answer = Some((at, fresh.clone()));
        fresh
    }
}

/// What says the node is stalled now, whatever its last view says: its raft loop has not
/// published for over [`STALLED_AFTER`], or a sync thread's sync has not returned for that long
/// (the loop may go on meanwhile: a leader's own log and frozen followers sync there).
#[derive(Clone, Copy, Debug, Default)]
struct Stalls {
    loop_ms: Option<u64>,
    sync_ms: Option<u64>,
}

impl Stalls {
    fn any(self) -> bool {
        self.loop_ms.is_some() || self.sync_ms.is_some()
    }
}

impl AdminRoutes {
    fn stalls(&self) -> Stalls {
        Stalls {
            loop_ms: self.fsync.loop_beat.stalled_ms(STALLED_AFTER),
            sync_ms: self
                .fsync
                .running
                .oldest()
                .filter(|d| *d > STALLED_AFTER)
                .map(|d| d.as_millis() as u64),
        }
    }
}

impl Routes for AdminRoutes {
    fn get(&self, path: &str) -> Answer {
        let json = |body: String| Answer {
            status: 200,
            content_type: "application/json",
            body,
        };
        let stalls = self.stalls();
        match path {
            // A stall is now, not in the view: said fresh each time, while there is one.
            "/health" | "/status/node" | "/status" if stalls.any() => {
                // A loop stuck while it publishes holds the view: its last word does not
                // count now anyway. (A copy: a stalled sync leaves the loop running, and
                // `/status` may be long to render.)
                let v = match self.try_view() {
                    Some(v) => v.clone(),
                    None => AdminView {
                        node_id: self.fsync.loop_beat.node_id(),
                        running: true,
                        ..AdminView::default()
                    },
                };
                match path {
                    "/health" => health(&v, stalls),
                    "/status" => json(pretty(&FullStatus {
                        node: &v,
                        health: health_body(&v, stalls).1,
                        groups: &v.groups,
                    })),
                    _ => json(pretty(&NodeStatus {
                        node: &v,
                        health: health_body(&v, stalls).1,
                        groups: GroupsSummary::of(&v.groups),
                    })),
                }
            }
            // Bounded by HEALTH_LISTED_GROUPS, cheap enough to render under the lock.
            "/health" => self.rendered(&self.health, true, |v| health(v, Stalls::default())),
            "/status" => self.rendered(&self.status, false, |v| {
                json(pretty(&FullStatus {
                    node: v,
                    health: serde_json::to_value(&v.health).unwrap_or_default(),
                    groups: &v.groups,
                }))
            }),
            // Bounded like `/health`, whatever the number of groups.
            "/status/node" => self.rendered(&self.node_status, true, |v| {
                json(pretty(&NodeStatus {
                    node: v,
                    health: health_body(v, Stalls::default()).1,
                    groups: GroupsSummary::of(&v.groups),
                }))
            }),
            p if p.starts_with(GROUP_STATUS) => match self.try_view() {
                Some(v) => one_group(&v, &p[GROUP_STATUS.len()..]),
                None => Answer::error(503, "the node's view is held by its raft loop; retry"),
            },
            "/metrics" => {
                // What the view says is kept; the fsync histogram and the port's counters are
                // read as they are now.
                let mut a = self.rendered(&self.metrics, false, |v| Answer {
                    status: 200,
                    content_type: "text/plain; version=0.0.4",
                    body: metrics::render_view(v),
                });
                metrics::render_live(&mut a.body, &self.fsync, &self.counters);
                let healthy = self
                    .try_view()
                    .is_some_and(|v| v.health.as_ref().is_some_and(|h| h.healthy));
                metrics::render_liveness(&mut a.body, healthy, stalls, &self.fsync);
                a
            }
            "/groups" => self.rendered(&self.groups, true, |v| {
                let ids: Vec<GroupId> = v.groups.iter().map(|g| g.group).collect();
                json(serde_json::to_string(&ids).unwrap_or_default())
            }),
            _ => Answer::error(
                404,
                "unknown path; try /health, /status, /status/node, /status/group/<id>, /metrics, \
                 /groups",
            ),
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
    let routes = AdminRoutes::new(view, fsync, counters.clone());
    http::serve(listener, routes, limits, counters, tls)
}

/// Groups `/health` lists one by one: every group of a node hosting at most this many; past
/// it, the unhealthy ones, at most this many. Its summary counts every group, and `/status`
/// describes each one: a node may host thousands, and a probe every second should not fetch
/// a megabyte.
pub const HEALTH_LISTED_GROUPS: usize = 64;

/// `/health`: 200 when the node can vouch for every group it hosts and no alarm is raised,
/// else 503; either way a summary of its groups, the groups it lists (see
/// [`HEALTH_LISTED_GROUPS`]) and every reason.
fn health(v: &AdminView, stalls: Stalls) -> Answer {
    let (ok, body) = health_body(v, stalls);
    Answer {
        status: if ok { 200 } else { 503 },
        content_type: "application/json",
        body: body.to_string(),
    }
}

/// `/health`'s verdict and body (also `/status/node`'s `health`).
fn health_body(v: &AdminView, stalls: Stalls) -> (bool, serde_json::Value) {
    let (mut ok, mut body) = match stalls.loop_ms {
        // What the loop last said is not the node now.
        Some(ms) => (
            false,
            serde_json::json!({
                "status": "unavailable",
                "node_id": v.node_id,
                "stalled_ms": ms,
                "reasons": [format!(
                    "stalled: the raft loop has not reported for {ms} ms (it does every 100 ms; \
                     over {} ms is a stall): a write or sync to a disk or file system that does \
                     not answer, or a stuck thread; none of its groups is served meanwhile",
                    STALLED_AFTER.as_millis()
                )],
            }),
        ),
        None => view_health(v),
    };
    if let Some(ms) = stalls.sync_ms {
        ok = false;
        body["status"] = "unavailable".into();
        body["sync_stalled_ms"] = ms.into();
        let reason = format!(
            "sync_stalled: a log sync (fdatasync) has not returned for {ms} ms: the disk does \
             not answer; writes wait for it"
        );
        match body["reasons"].as_array_mut() {
            Some(reasons) => reasons.insert(0, reason.into()),
            None => body["reasons"] = serde_json::json!([reason]),
        }
    }
    (ok, body)
}

/// The verdict and body of the view's health.
fn view_health(v: &AdminView) -> (bool, serde_json::Value) {
    match &v.health {
        Some(h) => {
            let every = h.groups.len() <= HEALTH_LISTED_GROUPS;
            let listed: Vec<_> = h
                .groups
                .iter()
                .filter(|g| every || !g.healthy)
                .take(HEALTH_LISTED_GROUPS)
                .collect();
            let mut roles = std::collections::BTreeMap::<&str, u64>::new();
            let mut unhealthy = 0;
            for g in &h.groups {
                *roles.entry(g.role.as_str()).or_default() += 1;
                unhealthy += u64::from(!g.healthy);
            }
            let (mut reasons, left_out) = h.reasons_at_most(HEALTH_LISTED_GROUPS);
            if left_out > 0 {
                reasons.push(format!(
                    "and {left_out} more unhealthy groups (/status describes each group)"
                ));
            }
            (
                h.healthy,
                serde_json::json!({
                    "status": if h.healthy { "ok" } else { "unavailable" },
                    "node_id": h.node_id,
                    "running": h.running,
                    "summary": {
                        "groups": h.groups.len(),
                        "unhealthy": unhealthy,
                        "roles": roles,
                        "listed": if every { "every group" } else { "unhealthy groups" },
                    },
                    "groups": listed,
                    "alarms": h.alarms,
                    "reasons": reasons,
                }),
            )
        }
        None => (
            false,
            serde_json::json!({
                "status": "unavailable",
                "node_id": v.node_id,
                "reasons": ["starting: no health published yet"],
            }),
        ),
    }
}

/// The path under which `/status/group/<id>` describes one group.
const GROUP_STATUS: &str = "/status/group/";

/// `/status`: the node, its health and every group it hosts (the groups last: a node may
/// host thousands).
#[derive(Serialize)]
struct FullStatus<'a> {
    #[serde(flatten)]
    node: &'a AdminView,
    /// The view's health; while the node is stalled, `/health`'s body (which says so).
    health: serde_json::Value,
    groups: &'a [GroupView],
}

/// `/status/node`: the node, with its health as `/health` gives it and its groups counted, so
/// that the answer stays small however many groups it hosts.
#[derive(Serialize)]
struct NodeStatus<'a> {
    #[serde(flatten)]
    node: &'a AdminView,
    health: serde_json::Value,
    groups: GroupsSummary<'a>,
}

/// The groups a node hosts, counted (`/status/node`).
#[derive(Serialize)]
struct GroupsSummary<'a> {
    /// Groups hosted.
    hosted: usize,
    /// Groups in each role.
    roles: std::collections::BTreeMap<&'a str, u64>,
    /// Groups quiesced here.
    quiet: u64,
    /// Where one group's status is.
    each: String,
}

impl GroupsSummary<'_> {
    fn of(groups: &[GroupView]) -> GroupsSummary<'_> {
        let mut roles = std::collections::BTreeMap::new();
        for g in groups {
            *roles.entry(g.role.as_str()).or_default() += 1;
        }
        GroupsSummary {
            hosted: groups.len(),
            roles,
            quiet: groups.iter().filter(|g| g.quiet).count() as u64,
            each: format!("{GROUP_STATUS}<id>"),
        }
    }
}

fn pretty(v: &impl Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// `/status/group/<id>`: one group's status, 404 if the node does not host it, 400 if `id` is
/// not a group id.
fn one_group(v: &AdminView, id: &str) -> Answer {
    let Ok(g) = id.parse::<GroupId>() else {
        return Answer::error(
            400,
            &format!("'{id}' is not a group id: try {GROUP_STATUS}0, or /groups for the list"),
        );
    };
    match v.groups.iter().find(|view| view.group == g) {
        Some(view) => Answer {
            status: 200,
            content_type: "application/json",
            body: pretty(view),
        },
        None => Answer::error(
            404,
            &format!(
                "group {g} is not hosted on node {} ({} groups are; /groups lists them)",
                v.node_id,
                v.groups.len()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_client::protocol::GroupHealth;
    use std::sync::atomic::Ordering;

    /// A view of a node hosting `n` groups, the first `unhealthy` of them without a leader.
    fn view_of(n: u32, unhealthy: u32) -> AdminView {
        let groups = (0..n)
            .map(|g| GroupHealth {
                group: g,
                healthy: g >= unhealthy,
                role: if g >= unhealthy { "leader" } else { "follower" }.into(),
                leader: u64::from(g >= unhealthy),
                reason: if g >= unhealthy { "ok" } else { "no_leader" }.into(),
                detail: "detail".into(),
            })
            .collect();
        AdminView {
            node_id: 1,
            health: Some(HealthInfo {
                node_id: 1,
                healthy: unhealthy == 0,
                running: true,
                groups,
                alarms: Vec::new(),
            }),
            published: 1,
            ..AdminView::default()
        }
    }

    fn body(a: &Answer) -> serde_json::Value {
        serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{}: {e}", a.body))
    }

    fn listed(b: &serde_json::Value) -> Vec<u64> {
        let groups = b["groups"].as_array().expect("a list of groups");
        groups
            .iter()
            .map(|g| g["group"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn health_lists_a_small_nodes_groups_and_past_the_limit_only_unhealthy_ones() {
        // A few groups: each one, healthy or not.
        let a = health(&view_of(3, 1), Stalls::default());
        let b = body(&a);
        assert_eq!(a.status, 503);
        assert_eq!(listed(&b), [0, 1, 2], "{b}");
        assert_eq!(b["summary"]["groups"], 3);
        assert_eq!(b["summary"]["unhealthy"], 1);
        assert_eq!(b["reasons"][0], "group 0: no_leader (detail)", "{b}");

        // Ten thousand healthy groups: counted, none listed, a small answer.
        let a = health(&view_of(10_000, 0), Stalls::default());
        let b = body(&a);
        assert_eq!(a.status, 200);
        assert_eq!(b["status"], "ok");
        assert_eq!(listed(&b), Vec::<u64>::new());
        assert_eq!(b["summary"]["roles"]["leader"], 10_000, "{b}");
        assert!(a.body.len() < 512, "{} bytes: {}", a.body.len(), a.body);

        // A thousand unhealthy among ten thousand: the first of them listed and named, the
        // others counted.
        let a = health(&view_of(10_000, 1_000), Stalls::default());
        let b = body(&a);
        assert_eq!(a.status, 503);
        let want: Vec<u64> = (0..HEALTH_LISTED_GROUPS as u64).collect();
        assert_eq!(listed(&b), want);
        assert_eq!(b["summary"]["unhealthy"], 1_000);
        assert_eq!(b["summary"]["roles"]["follower"], 1_000);
        let reasons = b["reasons"].as_array().unwrap();
        assert_eq!(reasons.len(), HEALTH_LISTED_GROUPS + 1, "{b}");
        assert_eq!(
            reasons[HEALTH_LISTED_GROUPS],
            format!(
                "and {} more unhealthy groups (/status describes each group)",
                1_000 - HEALTH_LISTED_GROUPS
            )
        );
        assert!(a.body.len() < 16 << 10, "{} bytes", a.body.len());
    }

    #[test]
    fn answers_from_the_view_are_rendered_once_per_published_view() {
        let view = Arc::new(Mutex::new(view_of(1_000, 0)));
        let fsync = Arc::new(Histogram::default());
        let routes = AdminRoutes::new(view.clone(), fsync.clone(), Arc::default());
        for _ in 0..100 {
            assert_eq!(routes.get("/health").status, 200);
            assert_eq!(routes.get("/status").status, 200);
        }
        assert_eq!(routes.health.renders.load(Ordering::Relaxed), 1);
        assert_eq!(routes.status.renders.load(Ordering::Relaxed), 1);

        // `/metrics`: the view's part is kept, the fsync histogram read as it is now.
        let syncs = |a: &Answer| {
            let line = a
                .body
                .lines()
                .find(|l| l.starts_with("shoal_fsync_seconds_count "));
            line.map(|l| l.rsplit(' ').next().unwrap().to_string())
        };
        let before = routes.get("/metrics");
        assert!(
            before.body.contains("\nshoal_healthy 1\n"),
            "{}",
            before.body
        );
        assert_eq!(syncs(&before).as_deref(), Some("0"), "{}", before.body);
        fsync.observe_us(250);
        let after = routes.get("/metrics");
        assert_eq!(syncs(&after).as_deref(), Some("1"), "{}", after.body);
        assert_eq!(routes.metrics.renders.load(Ordering::Relaxed), 1);
        let ids = routes.get("/groups");
        assert_eq!((ids.status, ids.body.as_str()), (200, "[]"));
        assert_eq!(routes.get("/groups"), ids);
        assert_eq!(routes.groups.renders.load(Ordering::Relaxed), 1);

        // The next view is rendered at the first request after it.
        let mut next = view_of(1_000, 2);
        next.groups = vec![GroupView {
            group: 7,
            ..GroupView::default()
        }];
        next.published = 2;
        *view.lock().unwrap() = next;
        let a = routes.get("/health");
        assert_eq!(a.status, 503, "{}", a.body);
        assert_eq!(listed(&body(&a)), [0, 1]);
        assert_eq!(routes.get("/health"), a);
        assert_eq!(routes.health.renders.load(Ordering::Relaxed), 2);
        let s = body(&routes.get("/status"));
        assert_eq!(s["health"]["groups"][1]["reason"], "no_leader");
        assert_eq!(routes.status.renders.load(Ordering::Relaxed), 2);
        let m = routes.get("/metrics");
        assert!(m.body.contains("\nshoal_healthy 0\n"), "{}", m.body);
        assert_eq!(routes.metrics.renders.load(Ordering::Relaxed), 2);
        assert_eq!(routes.get("/groups").body, "[7]");
    }

    /// A view of `n` groups, `unhealthy` of them without a leader, each described in full
    /// (group `g` in term `g + 1`, every third one quiet).
    fn described(n: u32, unhealthy: u32) -> AdminView {
        let mut v = view_of(n, unhealthy);
        v.groups = v
            .health
            .as_ref()
            .unwrap()
            .groups
            .iter()
            .map(|h| GroupView {
                group: h.group,
                role: h.role.clone(),
                term: u64::from(h.group) + 1,
                leader: h.leader,
                quiet: h.group % 3 == 0,
                ..GroupView::default()
            })
            .collect();
        v
    }

    #[test]
    fn a_view_not_published_for_over_two_seconds_is_a_stall_not_the_node_now() {
        use std::time::Duration;
        let view = Arc::new(Mutex::new(view_of(3, 0)));
        let fsync = Arc::new(Histogram::default());
        let routes = AdminRoutes::new(view.clone(), fsync.clone(), Arc::default());
        fsync.loop_beat.beat(1, true);
        assert_eq!(routes.get("/health").status, 200);
        let m = routes.get("/metrics").body;
        assert!(m.contains("\nshoal_healthy 1\n"), "{m}");
        assert!(m.contains("\nshoal_raft_loop_stalled 0\n"), "{m}");

        // Nothing published since, three seconds on.
        fsync.loop_beat.beat_ago(1, true, Duration::from_secs(3));
        let stalled = |routes: &AdminRoutes| {
            let a = routes.get("/health");
            assert_eq!(a.status, 503, "{}", a.body);
            let b = body(&a);
            assert_eq!(b["status"], "unavailable");
            assert_eq!(b["node_id"], 1);
            assert!(b["stalled_ms"].as_u64().unwrap() >= 3_000, "{b}");
            let reason = b["reasons"][0].as_str().unwrap();
            assert!(
                reason.starts_with("stalled: the raft loop has not reported for "),
                "{b}"
            );
            let node = body(&routes.get("/status/node"));
            assert_eq!(node["health"]["status"], "unavailable", "{node}");
            // `/status` too, rather than the last view's health.
            let full = body(&routes.get("/status"));
            assert_eq!(full["health"]["status"], "unavailable", "{full}");
            assert!(
                full["health"]["stalled_ms"].as_u64().unwrap() >= 3_000,
                "{full}"
            );
            let m = routes.get("/metrics").body;
            assert!(m.contains("\nshoal_healthy 0\n"), "{m}");
            assert!(m.contains("\nshoal_raft_loop_stalled 1\n"), "{m}");
            let age = m
                .lines()
                .find_map(|l| l.strip_prefix("shoal_raft_loop_report_age_seconds "))
                .and_then(|a| a.parse::<f64>().ok());
            assert!(age.is_some_and(|a| a >= 3.0), "{m}");
        };
        stalled(&routes);
        // Also while the raft thread holds the view (stuck while it publishes).
        {
            let _held = view.lock().unwrap();
            std::thread::scope(|s| {
                s.spawn(|| stalled(&routes));
            });
        }

        // A node shutting down may take its time.
        fsync.loop_beat.beat_ago(1, false, Duration::from_secs(3));
        assert_eq!(routes.get("/health").status, 200);

        // Published again: healthy as the view says.
        fsync.loop_beat.beat(1, true);
        view.lock().unwrap().published += 1;
        assert_eq!(routes.get("/health").status, 200);
    }

    #[test]
    fn a_sync_that_does_not_return_for_over_two_seconds_is_a_stall_while_the_loop_runs() {
        use std::time::Duration;
        let fsync = Arc::new(Histogram::default());
        let routes = AdminRoutes::new(
            Arc::new(Mutex::new(view_of(3, 0))),
            fsync.clone(),
            Arc::default(),
        );
        fsync.loop_beat.beat(1, true);
        // A sync running for a second is no stall.
        fsync.running.started_ago(1, Duration::from_secs(1));
        assert_eq!(routes.get("/health").status, 200);
        let m = routes.get("/metrics").body;
        assert!(m.contains("\nshoal_sync_stalled 0\n"), "{m}");

        fsync.running.started_ago(0, Duration::from_secs(3));
        let a = routes.get("/health");
        assert_eq!(a.status, 503, "{}", a.body);
        let b = body(&a);
        assert_eq!(b["status"], "unavailable", "{b}");
        assert!(b["sync_stalled_ms"].as_u64().unwrap() >= 3_000, "{b}");
        let reason = b["reasons"][0].as_str().unwrap();
        assert!(reason.starts_with("sync_stalled: a log sync"), "{b}");
        // The view's groups are still listed: the loop runs.
        assert_eq!(listed(&b), [0, 1, 2], "{b}");
        let full = body(&routes.get("/status"));
        assert_eq!(full["health"]["status"], "unavailable", "{full}");
        assert_eq!(listed(&full["health"]), [0, 1, 2], "{full}");
        let m = routes.get("/metrics").body;
        assert!(m.contains("\nshoal_sync_stalled 1\n"), "{m}");
        assert!(m.contains("\nshoal_healthy 0\n"), "{m}");
        assert!(m.contains("\nshoal_raft_loop_stalled 0\n"), "{m}");

        // It returned: healthy again (from the view as rendered before).
        fsync.running.end(0);
        assert_eq!(routes.get("/health").status, 200);
        fsync.running.end(1);
        let m = routes.get("/metrics").body;
        assert!(m.contains("\nshoal_sync_running_seconds 0.000\n"), "{m}");
    }

    #[test]
    fn status_node_stays_small_and_status_group_describes_one_group() {
        let routes = AdminRoutes::new(
            Arc::new(Mutex::new(described(1_000, 2))),
            Arc::default(),
            Arc::default(),
        );
        let full = routes.get("/status");
        let f = body(&full);
        assert_eq!(f["groups"].as_array().map(Vec::len), Some(1_000));
        assert_eq!(f["health"]["groups"].as_array().map(Vec::len), Some(1_000));
        assert_eq!(f["node_id"], 1);

        // The node, its health as /health gives it, and its groups counted.
        let node = routes.get("/status/node");
        assert_eq!(node.status, 200);
        assert!(
            node.body.len() * 20 < full.body.len(),
            "/status/node is {} bytes against /status's {}",
            node.body.len(),
            full.body.len()
        );
        let n = body(&node);
        assert_eq!(n["node_id"], 1);
        assert_eq!(n["groups"]["hosted"], 1_000);
        assert_eq!(n["groups"]["roles"]["leader"], 998);
        assert_eq!(n["groups"]["roles"]["follower"], 2);
        assert_eq!(n["groups"]["quiet"], 334);
        assert_eq!(n["health"], body(&routes.get("/health")));
        assert_eq!(listed(&n["health"]), [0, 1], "the unhealthy groups only");
        assert!(
            n.get("clients").is_some() && n.get("space").is_some(),
            "{n}"
        );
        assert_eq!(routes.get("/status/node"), node);
        assert_eq!(routes.node_status.renders.load(Ordering::Relaxed), 1);

        // One group.
        let g = routes.get("/status/group/41");
        assert_eq!(g.status, 200, "{}", g.body);
        let g = body(&g);
        assert_eq!(
            (g["group"].as_u64(), g["term"].as_u64()),
            (Some(41), Some(42))
        );
        assert_eq!(g["role"], "leader");
        let missing = routes.get("/status/group/5000");
        assert_eq!(missing.status, 404);
        assert!(
            missing
                .body
                .contains("group 5000 is not hosted on node 1 (1000 groups are"),
            "{}",
            missing.body
        );
        for bad in ["x", "", "-1", "3/4"] {
            let a = routes.get(&format!("/status/group/{bad}"));
            assert_eq!(a.status, 400, "{bad}: {}", a.body);
            assert!(a.body.contains("is not a group id"), "{}", a.body);
        }
        let unknown = routes.get("/status/groups");
        assert_eq!(unknown.status, 404);
        assert!(
            unknown.body.contains("/status/node, /status/group/<id>"),
            "{}",
            unknown.body
        );
    }
}
