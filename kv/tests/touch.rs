//! The store writes only as much of its memory as its contents need: slots are taken
//! lowest-first, empty hash buckets are never written, and the arena compacts while most of it
//! is garbage instead of sweeping its whole length. (A platform relies on this to keep zeroed
//! pages it got from the OS untouched.)

mod common;

use common::*;
use shoal_core::io::StateMachine;
use shoal_kv::*;

const SENTINEL: u8 = 0xEE;

fn limits() -> KvLimits {
    KvLimits {
        max_key_bytes: 64,
        max_value_bytes: 1024,
        max_depth: 4,
        max_nodes: 4096,
        arena_bytes: 4 << 20,
        max_sessions: 256,
        max_waiters_per_lock: 4,
        max_waiters: 64,
        event_slots: 64,
        event_bytes: 4096,
        max_batch_items: 8,
        max_ttl_ms: 1_000_000,
        max_txn_ops: 8,
        max_leases: 2,
    }
}

/// Pools for `l` with the arena filled with `SENTINEL`.
fn pools(l: &KvLimits) -> Pools {
    let mut p = Pools::new(l, 0);
    p.bytes[..l.arena_bytes].fill(SENTINEL);
    p
}

/// The arena: the first `arena_bytes` of the byte pool.
fn arena<'p>(p: &'p Pools, l: &KvLimits) -> &'p [u8] {
    &p.bytes[..l.arena_bytes]
}

fn untouched<T: core::fmt::Debug>(slots: &[T], empty: &T) -> usize {
    let empty = format!("{empty:?}");
    slots
        .iter()
        .rev()
        .take_while(|s| format!("{s:?}") == empty)
        .count()
}

#[test]
fn a_new_store_writes_only_the_root_slot() {
    let l = limits();
    let mut mem = pools(&l);
    let kv = DtKv::new(mem.slices(), l).expect("valid");
    assert_eq!(kv.get(b"").expect("root").count, 0);
    assert_eq!(untouched(&mem.nodes, &NodeSlot::EMPTY), l.max_nodes - 1);
    assert_eq!(
        untouched(&mem.sessions, &SessionSlot::EMPTY),
        l.max_sessions
    );
    assert_eq!(untouched(&mem.waiters, &WaiterSlot::EMPTY), l.max_waiters);
    assert!(arena(&mem, &l).iter().all(|&b| b == SENTINEL));
}

#[test]
fn overwrites_touch_slots_and_arena_only_as_far_as_the_data_needs() {
    let l = limits();
    let mut mem = pools(&l);
    let mut d = Driver::on(DtKv::new(mem.slices(), l).expect("valid"));
    let keys = 100;
    let clients = 10u64;
    let value = "v".repeat(200);
    let mut last = vec![0usize; keys];
    // About 10 MB of values through a 4 MiB arena holding ~30 KB of live data. A key's next
    // value (100 writes later) is 3 bytes longer or 94 shorter: never of its length, which
    // would be written over in place (tests/memory.rs) and append nothing.
    for i in 0..50_000usize {
        let k = (i * 7919) % keys;
        let key = format!("k{k:03}");
        let len = 100 + i % 97;
        last[k] = len;
        d.ok(1 + (i as u64 % clients), put(&key, &value[..len]));
    }
    for (k, &len) in last.iter().enumerate() {
        let key = format!("k{k:03}");
        assert_eq!(d.value(&key).expect("stored"), &value.as_bytes()[..len]);
    }
    let live = d.kv.arena_live_bytes();
    assert!(live < 30_000, "{live}");
    // Root plus one slot per key; one session slot per client; no waiter.
    assert_eq!(
        untouched(&mem.nodes, &NodeSlot::EMPTY),
        l.max_nodes - 1 - keys
    );
    assert_eq!(
        untouched(&mem.sessions, &SessionSlot::EMPTY),
        l.max_sessions - clients as usize
    );
    assert_eq!(untouched(&mem.waiters, &WaiterSlot::EMPTY), l.max_waiters);
    // The arena was written up to about twice the live bytes plus the compaction threshold.
    let written = l.arena_bytes
        - arena(&mem, &l)
            .iter()
            .rev()
            .take_while(|&&b| b == SENTINEL)
            .count();
    assert!(written > live, "{written}");
    assert!(written <= 2 * live + (64 << 10) + 8 + 200, "{written}");
}

#[test]
fn freed_slots_are_reused_before_new_ones_and_restore_starts_fresh() {
    let l = limits();
    let mut mem = pools(&l);
    let mut d = Driver::on(DtKv::new(mem.slices(), l).expect("valid"));
    for round in 0..50 {
        for k in 0..20 {
            d.ok(0, put(&format!("k{k}"), "x"));
        }
        for k in 0..20 {
            if (k + round) % 3 != 0 {
                d.ok(0, remove(&format!("k{k}")));
            }
        }
    }
    let snap = snapshot(&d.kv);
    let count = d.kv.get(b"").expect("root").count as usize;
    d.kv.restore(d.index, &mut SliceReader(&snap))
        .expect("restores");
    assert_eq!(d.kv.get(b"").expect("root").count as usize, count);
    assert_eq!(snapshot(&d.kv), snap);
    // Never more than 20 keys at once: slots 21.. were never taken.
    assert_eq!(untouched(&mem.nodes, &NodeSlot::EMPTY), l.max_nodes - 21);
}
