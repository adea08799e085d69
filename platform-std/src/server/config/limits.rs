//! The named limits of the data dir, the client and raft ports and DtKV, each checked from its
//! flags the way the part that enforces it will check it, so a wrong value stops `shoald` at
//! start with the flag's name.

use std::time::Duration;

use shoal_kv::KvLimits;

use super::{Dur, Flags};
use crate::server::clients::ClientLimits;
use crate::server::net::PeerLimits;
use crate::storage::space::{SpaceLimits, DEFAULT_RECHECK, DEFAULT_RESERVE_BYTES};
use crate::storage::{
    DEFAULT_INITIAL_SEGMENT_BYTES, DEFAULT_SEGMENT_BYTES, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES,
};

fn mib(name: &str, mb: usize) -> Result<usize, String> {
    match mb.checked_mul(1 << 20) {
        Some(0) => Err(format!("{name} must be at least 1")),
        Some(bytes) => Ok(bytes),
        None => Err(format!(
            "{name} {mb} is larger than this machine can address"
        )),
    }
}

/// The segment size and the space limits from `--segment-mb` and `--space-*`.
pub(super) fn space_limits(f: &Flags) -> Result<(u64, SpaceLimits), String> {
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
pub(super) fn client_limits(f: &Flags) -> Result<ClientLimits, String> {
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
        max_tls_refusals: count(
            "--client-max-tls-refusals",
            f.client_max_tls_refusals,
            d.max_tls_refusals,
        )?,
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
pub(super) fn peer_limits(f: &Flags) -> Result<PeerLimits, String> {
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
pub(super) fn segment_initial(f: &Flags, segment_bytes: u64) -> Result<u64, String> {
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
/// `--kv-events-node-mb` when unset: sixteen groups at the full per-group history.
pub const DEFAULT_KV_EVENTS_NODE_MB: usize = 128;

/// DtKV limits from the `--kv-*` flags, checked as the store will check them.
/// `--kv-events-node-mb` in bytes (0: no node-wide budget).
pub(super) fn kv_events_node_bytes(f: &Flags) -> Result<usize, String> {
    match f.kv_events_node_mb.unwrap_or(DEFAULT_KV_EVENTS_NODE_MB) {
        0 => Ok(0),
        mb => mib("--kv-events-node-mb", mb),
    }
}

pub(super) fn kv_limits(f: &Flags) -> Result<KvLimits, String> {
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
