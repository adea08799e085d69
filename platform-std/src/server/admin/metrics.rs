//! `/metrics`: the admin view and the fsync histogram in Prometheus text format.

use std::fmt::Write as _;

use super::{AdminCounters, AdminView, GroupView, ReadCounts};
use crate::server::timed::{Histogram, FSYNC_BUCKETS_US};
use std::sync::atomic::Ordering;

/// The families read from the published view: the same until the next view; `/metrics` is
/// these and [`render_live`].
pub(super) fn render_view(v: &AdminView) -> String {
    let mut s = String::new();
    group_metrics(&mut s, v);
    refused_inputs(&mut s, v);
    client_reads(&mut s, v);
    bound_metrics(&mut s, v);
    node_counters(&mut s, v);
    flush_metrics(&mut s, v);
    held_metrics(&mut s, v);
    super::disk_metrics::render(&mut s, v);
    s
}

/// The families read as they are now: the fsync histogram and the admin port's counters.
pub(super) fn render_live(s: &mut String, fsync: &Histogram, admin: &AdminCounters) {
    fsync_histogram(s, fsync);
    admin_metrics(s, admin);
}

/// Whether the raft loop is stalled ([`super::STALLED_AFTER`]) and how long ago it last
/// published its view, read as they are now: a stalled loop publishes nothing, so the view's
/// families (each group's health among them) keep its last word.
pub(super) fn render_liveness(
    s: &mut String,
    view_healthy: bool,
    stalls: super::Stalls,
    fsync: &Histogram,
) {
    let stalled = stalls.loop_ms.is_some();
    let healthy = !stalls.any() && view_healthy;
    let _ = writeln!(
        s,
        "# HELP shoal_healthy 1 if the node can vouch for every group it hosts, no alarm is \
         raised and its raft loop is not stalled (/health 200).\n# TYPE shoal_healthy gauge\n\
         shoal_healthy {}",
        u8::from(healthy)
    );
    let age = fsync.loop_beat.age().map_or(0.0, |a| a.as_secs_f64());
    let _ = writeln!(
        s,
        "# HELP shoal_raft_loop_report_age_seconds Time since the raft loop last published the \
         node's view (every 100 ms while it runs).\n# TYPE shoal_raft_loop_report_age_seconds \
         gauge\nshoal_raft_loop_report_age_seconds {age:.3}"
    );
    let _ = writeln!(
        s,
        "# HELP shoal_raft_loop_stalled 1 if the raft loop has not published for over {} s \
         (/health 503, reason stalled); the view's other families keep its last word \
         meanwhile.\n# TYPE shoal_raft_loop_stalled gauge\nshoal_raft_loop_stalled {}",
        super::STALLED_AFTER.as_secs(),
        u8::from(stalled)
    );
    let running = fsync.running.oldest().map_or(0.0, |d| d.as_secs_f64());
    let _ = writeln!(
        s,
        "# HELP shoal_sync_running_seconds How long the oldest log sync the sync threads run now \
         has run (0: none).\n# TYPE shoal_sync_running_seconds gauge\n\
         shoal_sync_running_seconds {running:.3}"
    );
    let _ = writeln!(
        s,
        "# HELP shoal_sync_stalled 1 if a log sync has not returned for over {} s (/health 503, \
         reason sync_stalled).\n# TYPE shoal_sync_stalled gauge\nshoal_sync_stalled {}",
        super::STALLED_AFTER.as_secs(),
        u8::from(stalls.sync_ms.is_some())
    );
}

/// The group-level figures: one family each, a series per group: (name, help, type, each
/// group's figure, how it is combined past `--metrics-group-series`).
type GroupFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&GroupView) -> u64,
    Across,
);

const GROUP_FAMILIES: &[GroupFamily] = &[
    ("shoal_proposals_total",
        "Client writes proposed by this node.",
        "counter",
        |g: &GroupView| g.proposals, Across::Sum),
    ("shoal_writes_refused_total",
        "Client writes DtKV refused before they were proposed (bad key, value or TTL past a \
         limit, reserved key, oversized batch or transaction); they took no log entry.",
        "counter",
        |g: &GroupView| g.writes_refused, Across::Sum),
    ("shoal_kv_max_txn_ops",
        "Most compares, and most operations per branch, in one DtKV transaction \
         (--kv-max-txn-ops).",
        "gauge",
        |g: &GroupView| g.max_txn_ops, Across::Max),
    ("shoal_kv_max_leases",
        "Most live DtKV leases (--kv-max-leases).",
        "gauge",
        |g: &GroupView| g.max_leases, Across::Max),
    ("shoal_kv_leases", "Live DtKV leases.", "gauge", |g: &GroupView| {
        g.leases
    }, Across::Sum),
    ("shoal_commit_index", "Commit index.", "gauge", |g: &GroupView| {
        g.commit
    }, Across::Left),
    ("shoal_applied_index", "Applied index.", "gauge", |g: &GroupView| {
        g.applied
    }, Across::Left),
    ("shoal_apply_lag",
        "Committed entries not yet applied.",
        "gauge",
        |g: &GroupView| g.commit.saturating_sub(g.applied), Across::Max),
    ("shoal_applied_entries_total",
        "Entries applied.",
        "counter",
        |g: &GroupView| g.node_stats.applied_entries, Across::Sum),
    ("shoal_term", "Current term.", "gauge", |g: &GroupView| g.term, Across::Left),
    ("shoal_is_leader",
        "1 if this node leads the group.",
        "gauge",
        |g: &GroupView| u64::from(g.role == "leader"), Across::Sum),
    ("shoal_elections_total",
        "Elections started by this node.",
        "counter",
        |g: &GroupView| g.raft_stats.elections, Across::Sum),
    ("shoal_became_leader_total",
        "Times this node became leader.",
        "counter",
        |g: &GroupView| g.raft_stats.became_leader, Across::Sum),
    ("shoal_leader_changes_total",
        "Times the known leader changed.",
        "counter",
        |g: &GroupView| g.raft_stats.leader_changes, Across::Sum),
    ("shoal_clock_drift_peers",
        "On a leader: followers whose clock rate is outside the lease's bound (not counted toward the lease).",
        "gauge",
        |g: &GroupView| g.clock_drift_peers, Across::Max),
    ("shoal_clock_drift_detected_total",
        "Times a follower's clock was found to drift outside the lease's bound.",
        "counter",
        |g: &GroupView| g.raft_stats.clock_drift_detected, Across::Sum),
    ("shoal_bytes_in_total",
        "Peer frame bytes received.",
        "counter",
        |g: &GroupView| g.node_stats.bytes_in, Across::Sum),
    ("shoal_bytes_out_total",
        "Peer frame bytes sent.",
        "counter",
        |g: &GroupView| g.node_stats.bytes_out, Across::Sum),
    ("shoal_frames_in_total",
        "Peer frames received.",
        "counter",
        |g: &GroupView| g.node_stats.frames_in, Across::Sum),
    ("shoal_frames_out_total",
        "Peer frames sent.",
        "counter",
        |g: &GroupView| g.node_stats.frames_out, Across::Sum),
    ("shoal_send_failures_total",
        "Frames the transport refused.",
        "counter",
        |g: &GroupView| g.node_stats.send_failures, Across::Sum),
    ("shoal_dropped_messages_total",
        "Raft messages dropped because the core's outbox or held-reply list was full.",
        "counter",
        |g: &GroupView| g.raft_stats.dropped_messages, Across::Sum),
    ("shoal_syncs_total",
        "Storage syncs (group commits).",
        "counter",
        |g: &GroupView| g.node_stats.syncs, Across::Sum),
    ("shoal_snapshots_taken_total",
        "Snapshots taken locally.",
        "counter",
        |g: &GroupView| g.node_stats.snapshots_taken, Across::Sum),
    ("shoal_snapshots_sent_total",
        "Snapshots sent to followers.",
        "counter",
        |g: &GroupView| g.raft_stats.snapshots_sent, Across::Sum),
    ("shoal_snapshots_installed_total",
        "Snapshots installed from a leader.",
        "counter",
        |g: &GroupView| g.raft_stats.snapshots_installed, Across::Sum),
    ("shoal_log_bytes",
        "Bytes of log segments on disk.",
        "gauge",
        |g: &GroupView| g.log_bytes, Across::Sum),
    ("shoal_snapshot_bytes",
        "Bytes of snapshot files on disk.",
        "gauge",
        |g: &GroupView| g.snapshot_bytes, Across::Sum),
    ("shoal_kv_event_bytes",
        "Bytes of key and value copies the group's watch history keeps at most (--kv-event-mb, \
         shared out by --kv-events-node-mb).",
        "gauge",
        |g: &GroupView| g.event_bytes, Across::Sum),
    ("shoal_kv_event_slots",
        "Events the group's watch history keeps at most (--kv-event-slots, in proportion).",
        "gauge",
        |g: &GroupView| g.event_slots, Across::Sum),
];

/// Whether each group has series of its own: the node hosts at most
/// `--metrics-group-series` groups. Past that, a group-level family is one node-wide series
/// ([`across`]), so that a scrape of a node with thousands of groups stays small.
pub(super) fn per_group(v: &AdminView) -> bool {
    v.groups.len() <= v.group_series_max
}

/// How a group-level family becomes one node-wide series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Across {
    /// The sum over the groups (counts, bytes, groups led).
    Sum,
    /// The most of any group (a lag, a limit).
    Max,
    /// Left out: a term or an index means nothing summed over groups.
    Left,
}

/// A group-level family as one node-wide series, `of` each group combined as `how` says;
/// nothing for a family left out.
fn node_wide(
    s: &mut String,
    v: &AdminView,
    (name, help, kind): (&str, &str, &str),
    how: Across,
    of: impl Fn(&GroupView) -> u64,
) {
    let values = v.groups.iter().map(of);
    let (value, said) = match how {
        Across::Sum => (values.sum::<u64>(), "the sum"),
        Across::Max => (values.max().unwrap_or(0), "the most"),
        Across::Left => return,
    };
    let _ = writeln!(
        s,
        "# HELP {name} {help} Node-wide, {said} over the {} groups hosted (more than \
         --metrics-group-series).\n# TYPE {name} {kind}\n{name} {value}",
        v.groups.len()
    );
}

/// One family per group-level figure, a series per group (or node-wide: [`per_group`]).
fn group_metrics(s: &mut String, v: &AdminView) {
    let each = per_group(v);
    for (name, help, kind, of, how) in GROUP_FAMILIES {
        if !each {
            node_wide(s, v, (name, help, kind), *how, of);
            continue;
        }
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for g in &v.groups {
            let _ = writeln!(s, "{name}{{group=\"{}\"}} {}", g.group, of(g));
        }
    }
}

/// Peer inputs dropped without stopping the node, by group and cause (node-wide by cause past
/// `--metrics-group-series`).
fn refused_inputs(s: &mut String, v: &AdminView) {
    let name = "shoal_refused_inputs_total";
    let _ = writeln!(
        s,
        "# HELP {name} Peer inputs dropped (or refused for a full medium) without stopping the node, by cause.\n# TYPE {name} counter"
    );
    if !per_group(v) {
        let mut total: Vec<(&'static str, u64)> = Vec::new();
        for g in &v.groups {
            for (fault, n) in g.node_stats.faults.iter() {
                match total.iter_mut().find(|(c, _)| *c == fault.name()) {
                    Some((_, t)) => *t += n,
                    None => total.push((fault.name(), n)),
                }
            }
        }
        for (cause, n) in total {
            let _ = writeln!(s, "{name}{{cause=\"{cause}\"}} {n}");
        }
        return;
    }
    for g in &v.groups {
        for (fault, n) in g.node_stats.faults.iter() {
            let cause = fault.name();
            let _ = writeln!(s, "{name}{{group=\"{}\",cause=\"{cause}\"}} {n}", g.group);
        }
    }
}

/// Client reads this node took on, by group and by how it serves them (node-wide by mode
/// past `--metrics-group-series`).
fn client_reads(s: &mut String, v: &AdminView) {
    let name = "shoal_reads_total";
    let _ = writeln!(
        s,
        "# HELP {name} Client reads this node took on, by how it serves them: linearizable (a \
         ReadIndex round of the leader; lease reads without a lease too), lease (under the \
         leader's lease), local (this node's applied state). Reads refused are not counted.\n\
         # TYPE {name} counter"
    );
    let modes = |r: &ReadCounts| {
        [
            ("linearizable", r.linearizable),
            ("lease", r.lease),
            ("local", r.local),
        ]
    };
    if !per_group(v) {
        let mut total = ReadCounts::default();
        for g in &v.groups {
            total.linearizable += g.reads.linearizable;
            total.lease += g.reads.lease;
            total.local += g.reads.local;
        }
        for (mode, n) in modes(&total) {
            let _ = writeln!(s, "{name}{{mode=\"{mode}\"}} {n}");
        }
        return;
    }
    for g in &v.groups {
        for (mode, n) in modes(&g.reads) {
            let _ = writeln!(s, "{name}{{group=\"{}\",mode=\"{mode}\"}} {n}", g.group);
        }
    }
}

/// The node-wide counters and gauges: group dirs, sealed links, auth and TLS.
fn node_counters(s: &mut String, v: &AdminView) {
    let r = &v.records;
    for (name, help, kind, value) in [
        (
            "shoal_group_dirs_pending_removal",
            "Removed groups' dirs still on disk, deleted once --group-remove-grace has passed.",
            "gauge",
            r.group_dirs_pending_removal as u64,
        ),
        (
            "shoal_groups_hosted",
            "Groups this node hosts (group 0 included).",
            "gauge",
            v.groups.len() as u64,
        ),
        (
            "shoal_groups_unhealthy",
            "Hosted groups this node cannot vouch for (shoal_group_healthy 0; /health names them).",
            "gauge",
            v.health
                .iter()
                .flat_map(|h| &h.groups)
                .filter(|g| !g.healthy)
                .count() as u64,
        ),
        (
            "shoal_groups_quiet",
            "Hosted groups quiesced here: no heartbeats or timer work until something happens.",
            "gauge",
            v.groups.iter().filter(|g| g.quiet).count() as u64,
        ),
        (
            "shoal_groups_active",
            "Hosted groups the raft loop ticks and flushes each round (with work, or not yet \
             settled); the others cost nothing until an input wakes them.",
            "gauge",
            v.active_groups,
        ),
        (
            "shoal_leader_balance_transfers_total",
            "Leader transfers this node started since start to hand groups to members leading \
             fewer (--leader-balance-interval).",
            "counter",
            v.leader_balance_transfers,
        ),
        (
            "shoal_leader_balance_load_transfers_total",
            "Of the leader balance transfers, those that handed a busy group to a member leading \
             less write load (entries committed a second).",
            "counter",
            v.leader_balance_load_transfers,
        ),
        (
            "shoal_snapshot_writers",
            "Group snapshots being written to disk off the raft thread now; at most four at \
             once, a group due meanwhile waits for one to end.",
            "gauge",
            v.snapshot_writers,
        ),
        (
            "shoal_follower_background_syncs_total",
            "Follower flushes (one per group) whose sync ran on a sync thread while the raft \
             thread went on, the group taking no input until it was done.",
            "counter",
            v.follower_background_syncs,
        ),
        (
            "shoal_frozen_inputs_refused_total",
            "Inputs a group waiting for its sync could not hold (over 1024, or 16 MiB of peer \
             frames): peer frames dropped (the leader sends again), client requests answered \
             unavailable. Non-zero means a sync did not return for long (see /health).",
            "counter",
            v.frozen_inputs_refused,
        ),
        (
            "shoal_client_health_answers_total",
            "Clients' Health requests answered since start.",
            "counter",
            v.health_answers.0,
        ),
        (
            "shoal_client_health_judged_total",
            "Times every group's health was judged to answer clients' Health and NodeStatus \
             requests: at most once per 100 ms, the answers in between reuse the last.",
            "counter",
            v.health_answers.1,
        ),
        (
            "shoal_group_dirs_freed_total",
            "Removed groups' dirs deleted since start.",
            "counter",
            r.group_dirs_freed,
        ),
        (
            "shoal_group_handshake_refusals_total",
            "Group handshakes refused (member lists that do not name each other), here or by a peer.",
            "counter",
            r.group_handshake_refusals,
        ),
        (
            "shoal_sealed_links_opened_total",
            "Sealed peer links opened (--peer-psk-file), either side.",
            "counter",
            v.sealed_links.0,
        ),
        (
            "shoal_sealed_links_refused_total",
            "Peers refused at the sealed handshake or on a sealed frame: plaintext, another key, \
             another cluster, replayed or forged frames.",
            "counter",
            v.sealed_links.1,
        ),
        (
            "shoal_auth_enabled",
            "1 while auth is enabled (requests checked against users' roles).",
            "gauge",
            u64::from(v.auth.enabled),
        ),
        (
            "shoal_auth_users",
            "Users defined.",
            "gauge",
            v.auth.users as u64,
        ),
        (
            "shoal_auth_logins_total",
            "Logins (password or token) that succeeded.",
            "counter",
            v.auth.logins,
        ),
        (
            "shoal_auth_login_failures_total",
            "Logins refused: wrong name or password, bad or expired token.",
            "counter",
            v.auth.login_failures,
        ),
        (
            "shoal_auth_refusals_total",
            "Requests refused with AuthFailed or PermissionDenied.",
            "counter",
            v.auth.refusals,
        ),
        (
            "shoal_auth_hashing",
            "Password checks running now (at most --auth-max-hashing).",
            "gauge",
            v.auth.hashing as u64,
        ),
        (
            "shoal_auth_hashing_busy_total",
            "Password checks refused because --auth-max-hashing were running.",
            "counter",
            v.auth.hashing_busy,
        ),
        (
            "shoal_tls_client_refused_total",
            "Client port connections whose TLS handshake failed (plaintext, unknown CA, expired or missing certificate).",
            "counter",
            v.tls.client_refused,
        ),
        (
            "shoal_tls_admin_refused_total",
            "Admin port connections whose TLS handshake failed.",
            "counter",
            v.tls.admin_refused,
        ),
        (
            "shoal_tls_peer_refused_total",
            "Raft port connections (dialed or accepted) whose TLS handshake failed.",
            "counter",
            v.tls.peer_refused,
        ),
        (
            "shoal_peer_identity_refused_total",
            "Peers refused because their certificate names another cluster or node than they claim (Hello or frame sender), or no member.",
            "counter",
            v.tls.peer_identity_refused,
        ),
        (
            "shoal_tls_reloads_total",
            "Certificate reloads (SIGHUP or a changed file) that took effect.",
            "counter",
            v.tls.reloads,
        ),
        (
            "shoal_tls_reload_failures_total",
            "Certificate reloads that failed; the previous certificates stayed in force.",
            "counter",
            v.tls.reload_failures,
        ),
    ] {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
}

/// Storage sync latency as a Prometheus histogram.
fn fsync_histogram(s: &mut String, fsync: &Histogram) {
    let _ = writeln!(
        s,
        "# HELP shoal_fsync_seconds Storage sync latency.\n# TYPE shoal_fsync_seconds histogram"
    );
    let mut cum = 0u64;
    for (i, b) in FSYNC_BUCKETS_US.iter().enumerate() {
        cum += fsync.buckets[i].load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "shoal_fsync_seconds_bucket{{le=\"{}\"}} {cum}",
            *b as f64 / 1e6
        );
    }
    cum += fsync.buckets[FSYNC_BUCKETS_US.len()].load(Ordering::Relaxed);
    let _ = writeln!(s, "shoal_fsync_seconds_bucket{{le=\"+Inf\"}} {cum}");
    let sum = fsync.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(s, "shoal_fsync_seconds_sum {sum}");
    let _ = writeln!(
        s,
        "shoal_fsync_seconds_count {}",
        fsync.count.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP shoal_shared_syncs_total Syncs of the data dir's filesystem that made several \
         groups' writes durable at once (--shared-sync; also counted in shoal_fsync_seconds).\n\
         # TYPE shoal_shared_syncs_total counter\nshoal_shared_syncs_total {}",
        fsync.shared.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP shoal_journal_syncs_total Shared syncs made by one fdatasync of the sync journal \
         (--sync-journal; also counted in shoal_shared_syncs_total).\n\
         # TYPE shoal_journal_syncs_total counter\nshoal_journal_syncs_total {}\n\
         # HELP shoal_journal_wraps_total Times a half of the sync journal was full and its \
         records went on in the other half (counted by the sync that switched).\n\
         # TYPE shoal_journal_wraps_total counter\nshoal_journal_wraps_total {}",
        fsync.journal.load(Ordering::Relaxed),
        fsync.journal_wraps.load(Ordering::Relaxed)
    );
}

/// Where the groups' flushes ran: the raft thread, or one of the flush threads.
fn flush_metrics(s: &mut String, v: &AdminView) {
    let _ = writeln!(
        s,
        "# HELP shoal_raft_cpu The CPU the raft thread runs on alone (--raft-cpu), or -1 when \
         it is not pinned.\n# TYPE shoal_raft_cpu gauge\nshoal_raft_cpu {}",
        v.raft_cpu.map_or(-1, |c| c as i64)
    );
    let _ = writeln!(
        s,
        "# HELP shoal_raft_threads Threads that flush the groups, the raft thread included \
         (--raft-threads).\n# TYPE shoal_raft_threads gauge\nshoal_raft_threads {}",
        v.flushes.len().max(1)
    );
    let _ = writeln!(
        s,
        "# HELP shoal_group_flushes_total Group flushes (log writes, replication, apply) run \
         since start, by the thread that ran them: the raft thread, or flush thread N (when \
         several groups had work in one round, they are shared out).\n# TYPE shoal_group_flushes_total counter"
    );
    for (i, n) in v.flushes.iter().enumerate() {
        let thread = match i {
            0 => "raft".to_string(),
            i => format!("flush-{}", i - 1),
        };
        let _ = writeln!(s, "shoal_group_flushes_total{{thread=\"{thread}\"}} {n}");
    }
}

/// The busy groups' log bytes the sync journal holds for them (not yet in their segments).
fn held_metrics(s: &mut String, v: &AdminView) {
    let (bytes, pieces) = v.journal_held;
    let _ = writeln!(
        s,
        "# HELP shoal_journal_held_bytes New log bytes of busy groups that the sync journal made \
         durable and their segments do not hold yet (written out when a group falls idle, at \
         64 KiB, and when the half of the journal they are in is retired).\n\
         # TYPE shoal_journal_held_bytes gauge\n\
         shoal_journal_held_bytes {bytes}\n\
         # HELP shoal_journal_held_pieces_total Rounds of a group whose new log bytes the sync \
         journal held in place of a segment write.\n\
         # TYPE shoal_journal_held_pieces_total counter\nshoal_journal_held_pieces_total {pieces}\n\
         # HELP shoal_journal_ahead_syncs_total Syncs of the data dir's filesystem run while the \
         sync journal fills, so that the retire of a half finds the segments durable already.\n\
         # TYPE shoal_journal_ahead_syncs_total counter\nshoal_journal_ahead_syncs_total {}\n\
         # HELP shoal_journal_switch_waits_total Times a half of the sync journal filled before \
         the other half was retired (its held bytes written back and the filesystem synced), \
         so that the journal's syncs waited for that retire.\n\
         # TYPE shoal_journal_switch_waits_total counter\nshoal_journal_switch_waits_total {}",
        v.journal_ahead_syncs, v.journal_switch_waits
    );
}

fn admin_metrics(s: &mut String, admin: &AdminCounters) {
    let _ = writeln!(
        s,
        "# HELP shoal_admin_connections Admin HTTP connections open (at most --admin-max-connections).\n# TYPE shoal_admin_connections gauge\nshoal_admin_connections {}",
        admin.connections.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP shoal_admin_requests_total Admin HTTP requests answered.\n# TYPE shoal_admin_requests_total counter\nshoal_admin_requests_total {}",
        admin.requests.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP shoal_admin_refused_total Admin HTTP requests refused, by reason.\n# TYPE shoal_admin_refused_total counter"
    );
    for (i, r) in super::http::Refusal::ALL.iter().enumerate() {
        let _ = writeln!(
            s,
            "shoal_admin_refused_total{{reason=\"{}\"}} {}",
            r.label(),
            admin.refused[i].load(Ordering::Relaxed)
        );
    }
}

/// The client and raft ports' bounds: what is held now, each limit's value, and how often each
/// was hit (docs/OPERATIONS.md, "Limits").
fn bound_metrics(s: &mut String, v: &AdminView) {
    let c = &v.clients;
    let p = &v.peer_port;
    for (name, help, value) in [
        (
            "shoal_client_connections",
            "Client connections open (at most --client-max-connections).",
            c.connections,
        ),
        (
            "shoal_client_answer_bytes_pending",
            "Encoded answers not yet taken by their clients.",
            c.answer_bytes_pending,
        ),
        (
            "shoal_client_request_bytes_buffered",
            "Bytes of unfinished request frames held (each at most --client-max-request-mb).",
            c.request_bytes_buffered,
        ),
        (
            "shoal_client_connections_held",
            "Connections over their share of answer bytes: not read, their requests set aside.",
            c.connections_held,
        ),
        (
            "shoal_client_requests_set_aside",
            "Requests set aside until their clients take their answers.",
            c.requests_set_aside,
        ),
        (
            "shoal_client_requests_queued",
            "Client requests read but not yet handled.",
            c.requests_queued,
        ),
        (
            "shoal_client_watches",
            "Keys watched by clients (at most --client-max-watches).",
            c.watches,
        ),
        (
            "shoal_peer_input_bytes",
            "Peer frames read but not yet handled (peers are not read above 16 MiB).",
            v.peer_input_bytes,
        ),
        (
            "shoal_peer_handshakes_pending",
            "Raft-port connections in their handshake (at most --peer-max-handshakes).",
            p.handshakes_pending,
        ),
        (
            "shoal_peer_connections",
            "Raft-port connections past their handshake (at most --peer-max-connections).",
            p.connections,
        ),
    ] {
        let _ = writeln!(
            s,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    let _ = writeln!(
        s,
        "# HELP shoal_client_watches_cut_total Watches ended with WatchLagged (an index to resume from) because their connection held too many unsent answers.\n# TYPE shoal_client_watches_cut_total counter\nshoal_client_watches_cut_total {}",
        c.watches_cut
    );
    let _ = writeln!(
        s,
        "# HELP shoal_limit A client or raft-port limit as set (bytes, milliseconds or a count), by flag.\n# TYPE shoal_limit gauge"
    );
    for (flag, value) in c.limits.iter().chain(&p.limits) {
        let _ = writeln!(s, "shoal_limit{{limit=\"{flag}\"}} {value}");
    }
    let _ = writeln!(
        s,
        "# HELP shoal_limit_hits_total Times a limit refused a connection or request, closed a connection or cut a watch, by flag.\n# TYPE shoal_limit_hits_total counter"
    );
    for (flag, n) in c.hits.iter().chain(&p.hits) {
        let _ = writeln!(s, "shoal_limit_hits_total{{limit=\"{flag}\"}} {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_client::protocol::{GroupHealth, HealthInfo};
    use shoal_core::fault::{Fault, FaultLog};

    /// `n` groups: group `i` proposed `i` writes, took `2i` linearizable reads, `3i` lease
    /// reads and `i % 2` local ones, lags `i % 4` entries, refused `i % 3` bad frames, failed
    /// `i % 2` snapshots; groups 2 and 5 are unhealthy.
    fn view(n: u32, group_series_max: usize) -> AdminView {
        let groups = (0..n)
            .map(|i| {
                let mut faults = FaultLog::new();
                (0..i % 3).for_each(|_| faults.refuse(1, Fault::BadFrame));
                let n = u64::from(i);
                let mut g = GroupView {
                    group: i,
                    role: if i % 2 == 0 { "leader" } else { "follower" }.into(),
                    term: 7,
                    commit: 100 + n,
                    applied: 100 + n - n % 4,
                    proposals: n,
                    reads: ReadCounts {
                        linearizable: 2 * n,
                        lease: 3 * n,
                        local: n % 2,
                    },
                    ..Default::default()
                };
                g.node_stats.faults = faults.counts();
                g.node_stats.snapshot_failures = n % 2;
                g
            })
            .collect();
        let health = HealthInfo {
            node_id: 1,
            healthy: false,
            running: true,
            groups: (0..n)
                .map(|i| GroupHealth {
                    group: i,
                    healthy: i != 2 && i != 5,
                    role: "leader".into(),
                    leader: 1,
                    reason: if i == 2 || i == 5 { "no_quorum" } else { "ok" }.into(),
                    detail: String::new(),
                })
                .collect(),
            alarms: Vec::new(),
        };
        AdminView {
            groups,
            health: Some(health),
            group_series_max,
            ..Default::default()
        }
    }

    fn render_view(v: &AdminView) -> String {
        let mut s = super::render_view(v);
        render_live(&mut s, &Histogram::default(), &AdminCounters::default());
        s
    }

    fn value(body: &str, series: &str) -> Option<u64> {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn up_to_the_limit_every_group_has_its_own_series() {
        let body = render_view(&view(8, 8));
        assert_eq!(value(&body, "shoal_proposals_total{group=\"5\"}"), Some(5));
        assert_eq!(value(&body, "shoal_term{group=\"3\"}"), Some(7));
        assert_eq!(value(&body, "shoal_apply_lag{group=\"7\"}"), Some(3));
        assert_eq!(
            value(
                &body,
                "shoal_refused_inputs_total{group=\"4\",cause=\"bad_frame\"}"
            ),
            Some(1)
        );
        assert_eq!(
            value(&body, "shoal_group_healthy{group=\"0\",reason=\"ok\"}"),
            Some(1)
        );
        assert_eq!(
            value(&body, "shoal_snapshot_failures_total{group=\"3\"}"),
            Some(1)
        );
        assert_eq!(
            value(&body, "shoal_proposals_total"),
            None,
            "no node-wide series"
        );
        assert_eq!(value(&body, "shoal_groups_hosted"), Some(8));
        assert_eq!(value(&body, "shoal_groups_unhealthy"), Some(2));
        for (mode, n) in [("linearizable", 10), ("lease", 15), ("local", 1)] {
            assert_eq!(
                value(
                    &body,
                    &format!("shoal_reads_total{{group=\"5\",mode=\"{mode}\"}}")
                ),
                Some(n),
                "{mode} reads of group 5"
            );
        }
    }

    #[test]
    fn past_the_limit_each_family_is_one_node_wide_series() {
        let body = render_view(&view(8, 7));
        assert!(
            !body.contains("group=\"3\""),
            "no series of group 3:\n{body}"
        );
        // Sums, and the most for a lag; terms and indexes left out.
        assert_eq!(value(&body, "shoal_proposals_total"), Some((0..8u64).sum()));
        assert_eq!(value(&body, "shoal_is_leader"), Some(4));
        assert_eq!(value(&body, "shoal_apply_lag"), Some(3));
        assert_eq!(value(&body, "shoal_snapshot_failures_total"), Some(4));
        for gone in ["shoal_term", "shoal_commit_index", "shoal_applied_index"] {
            assert!(!body.contains(&format!("\n{gone}")), "{gone} is left out");
        }
        for (mode, n) in [("linearizable", 56), ("lease", 84), ("local", 4)] {
            assert_eq!(
                value(&body, &format!("shoal_reads_total{{mode=\"{mode}\"}}")),
                Some(n),
                "{mode} reads over the groups"
            );
        }
        let bad: u64 = (0..8u64).map(|i| i % 3).sum();
        assert_eq!(
            value(&body, "shoal_refused_inputs_total{cause=\"bad_frame\"}"),
            Some(bad)
        );
        // The unhealthy groups are still named, the healthy ones not.
        assert_eq!(
            value(
                &body,
                "shoal_group_healthy{group=\"5\",reason=\"no_quorum\"}"
            ),
            Some(0)
        );
        assert!(
            !body.contains("reason=\"ok\""),
            "healthy groups are not listed"
        );
        assert_eq!(value(&body, "shoal_groups_hosted"), Some(8));
        assert_eq!(value(&body, "shoal_groups_unhealthy"), Some(2));
        // At most the limit of unhealthy groups are named.
        let body = render_view(&view(8, 1));
        let named = body.matches("shoal_group_healthy{").count();
        assert_eq!(
            named, 1,
            "one unhealthy group named at a limit of 1:\n{body}"
        );
        assert_eq!(value(&body, "shoal_groups_unhealthy"), Some(2));
    }

    #[test]
    fn the_sync_journals_counters_come_from_the_view() {
        let mut v = view(2, 8);
        v.journal_held = (4096, 17);
        v.journal_ahead_syncs = 5;
        v.journal_switch_waits = 3;
        let body = render_view(&v);
        assert_eq!(value(&body, "shoal_journal_held_bytes"), Some(4096));
        assert_eq!(value(&body, "shoal_journal_held_pieces_total"), Some(17));
        assert_eq!(value(&body, "shoal_journal_ahead_syncs_total"), Some(5));
        assert_eq!(value(&body, "shoal_journal_switch_waits_total"), Some(3));
        assert!(body.contains("# TYPE shoal_journal_ahead_syncs_total counter\n"));
    }

    #[test]
    fn a_scrape_past_the_limit_does_not_grow_with_the_groups() {
        let small = render_view(&view(300, 256)).len();
        let large = render_view(&view(10_000, 256)).len();
        // Only the digits of the sums grow.
        assert!(
            large < small + 1024,
            "10,000 groups: {large} bytes against {small} for 300"
        );
        let every = render_view(&view(10_000, usize::MAX)).len();
        assert!(every > 50 * large, "`all` lists every group: {every} bytes");
    }
}
