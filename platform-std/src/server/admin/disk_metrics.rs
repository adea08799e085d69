//! `/metrics` of health, disk space and the client port's failed accepts: the node's verdict
//! and each group's, the space alarm with the figures behind it, refused snapshots, and every
//! limit of these paths as a gauge of its own.

use std::fmt::Write as _;

use super::AdminView;
use crate::storage::space::SpaceAlarm;

/// One unlabelled metric.
fn one(s: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        s,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// Append the families of this module to `s`.
pub(super) fn render(s: &mut String, v: &AdminView) {
    let name = "shoal_group_healthy";
    let _ = writeln!(
        s,
        "# HELP {name} 1 if this node has a leader of the group it heard from within an election timeout (a leader: acknowledged by a quorum within the lease window).\n# TYPE {name} gauge"
    );
    // Past --metrics-group-series: the unhealthy groups only, that many at most (the count is
    // shoal_groups_unhealthy).
    let each = super::metrics::per_group(v);
    let listed = v
        .health
        .iter()
        .flat_map(|h| &h.groups)
        .filter(|g| each || !g.healthy)
        .take(if each { usize::MAX } else { v.group_series_max });
    for g in listed {
        let _ = writeln!(
            s,
            "{name}{{group=\"{}\",reason=\"{}\"}} {}",
            g.group,
            g.reason,
            u64::from(g.healthy)
        );
    }
    let name = "shoal_snapshot_failures_total";
    let _ = writeln!(
        s,
        "# HELP {name} Snapshots the disk refused (full, out of file descriptors); each is tried again after --snapshot-retry-interval.\n# TYPE {name} counter"
    );
    if super::metrics::per_group(v) {
        for g in &v.groups {
            let n = g.node_stats.snapshot_failures;
            let _ = writeln!(s, "{name}{{group=\"{}\"}} {n}", g.group);
        }
    } else {
        let n: u64 = v
            .groups
            .iter()
            .map(|g| g.node_stats.snapshot_failures)
            .sum();
        let _ = writeln!(s, "{name} {n}");
    }
    space(s, v);
    let a = &v.accept;
    one(
        s,
        "shoal_client_accept_failures_total",
        "Client connections the port failed to accept (out of file descriptors, most often).",
        "counter",
        a.failures,
    );
    one(
        s,
        "shoal_client_accept_failure_bursts_total",
        "Bursts of failed accepts (each logged once).",
        "counter",
        a.bursts,
    );
    let r = &v.peer_port.accept;
    one(
        s,
        "shoal_raft_accept_failures_total",
        "Peer connections the raft port failed to accept (out of file descriptors, most often).",
        "counter",
        r.failures,
    );
    one(
        s,
        "shoal_raft_accept_failure_bursts_total",
        "Bursts of failed accepts on the raft port (each logged once).",
        "counter",
        r.bursts,
    );
    one(
        s,
        "shoal_client_accept_backoff_max_seconds",
        "Longest pause of the client and raft ports after a failed accept (--accept-backoff-max).",
        "gauge",
        a.backoff_max_ms as f64 / 1e3,
    );
}

fn space(s: &mut String, v: &AdminView) {
    one(
        s,
        "shoal_segment_bytes",
        "Size of each log segment (--segment-mb).",
        "gauge",
        v.disk.segment_bytes,
    );
    one(
        s,
        "shoal_segment_initial_bytes",
        "Size of a group's first log segment; segments double up to shoal_segment_bytes (--segment-initial-kb).",
        "gauge",
        v.disk.segment_initial_bytes,
    );
    one(
        s,
        "shoal_snapshot_retry_seconds",
        "Wait after a refused snapshot before the next try (--snapshot-retry-interval).",
        "gauge",
        v.disk.snapshot_retry_ms as f64 / 1e3,
    );
    let Some(st) = v.space else {
        return;
    };
    let name = "shoal_space_alarm";
    let _ = writeln!(
        s,
        "# HELP {name} 1 while writes that need a new log segment are refused with NoSpace, by cause (no_space: disk full or under the reserve; quota).\n# TYPE {name} gauge"
    );
    for alarm in [SpaceAlarm::NoSpace, SpaceAlarm::Quota] {
        let on = u64::from(st.alarm == Some(alarm));
        let _ = writeln!(s, "{name}{{alarm=\"{}\"}} {on}", alarm.name());
    }
    for (name, help, kind, value) in [
        (
            "shoal_space_free_bytes",
            "Free bytes on the data dir's file system at the last measurement.",
            "gauge",
            st.free_bytes,
        ),
        (
            "shoal_space_used_bytes",
            "Bytes of files in the data dir at the last measurement.",
            "gauge",
            st.used_bytes,
        ),
        (
            "shoal_space_reserve_bytes",
            "Free bytes the log never takes (--space-reserve-mb).",
            "gauge",
            st.reserve_bytes,
        ),
        (
            "shoal_space_quota_bytes",
            "Most bytes the data dir may hold (--space-quota-mb; 0: no quota).",
            "gauge",
            st.quota_bytes,
        ),
        (
            "shoal_space_alarms_total",
            "Times the space alarm was raised.",
            "counter",
            st.alarms_raised,
        ),
        (
            "shoal_space_refused_writes_total",
            "Writes refused because a new log segment did not fit (or the disk said ENOSPC).",
            "counter",
            st.refused_writes,
        ),
        (
            "shoal_space_spares_skipped_total",
            "Spare segments not made, or given up, because they would have eaten into the reserve.",
            "counter",
            st.spares_skipped,
        ),
    ] {
        one(s, name, help, kind, value);
    }
    one(
        s,
        "shoal_space_recheck_seconds",
        "How often a raised space alarm measures again (--space-recheck-interval).",
        "gauge",
        st.recheck_ms as f64 / 1e3,
    );
}
