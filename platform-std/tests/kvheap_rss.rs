//! A DtKV heap sized for the server's default limits is not resident until the store fills
//! it: the buffers come zeroed from the OS and the store writes only what its data needs.
//! (One test in its own binary, so nothing else allocates in the process while it measures.)
#![cfg(target_os = "linux")]

use shoal_core::io::StateMachine;
use shoal_kv::{Command, KvLimits, Op};
use shoal_std::kvheap::KvHeap;

/// Resident anonymous memory of this process, in bytes.
fn rss_anon() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .expect("RssAnon line");
    let kb: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("RssAnon in kB");
    kb * 1024
}

#[test]
fn server_sized_store_is_resident_only_as_far_as_its_data() {
    // shoald's defaults: 262144 nodes, 64 MiB arena, and the server profile's 65536 sessions,
    // waiters and events (about 120 MiB of buffers in all).
    let mut limits = KvLimits::server();
    limits.max_nodes = 1 << 18;
    limits.arena_bytes = 64 << 20;
    assert!(limits.memory_bytes() > 100 << 20);
    let mut buf = vec![0u8; 4096];
    let before = rss_anon();
    let mut kv = KvHeap::store(limits).expect("server limits are valid");
    let empty = rss_anon().saturating_sub(before);
    // 20000 writes over 1000 keys of 100 bytes from 100 sessions: ~130 KB of live data.
    let value = [7u8; 100];
    for i in 0..20_000u64 {
        let key = format!("k{:04}", i % 1000);
        let n = Command {
            client_id: 1 + i % 100,
            seq: 1 + i / 100,
            time_ms: 1,
            op: Op::Put {
                key: key.as_bytes(),
                value: &value,
            },
        }
        .encode(&mut buf)
        .expect("fits");
        let out = kv.apply(i + 1, 1, &buf[..n]);
        assert!(out.result.error().is_none(), "{:?}", out.result);
    }
    assert_eq!(kv.get(b"k0999").expect("stored").value, &value[..]);
    let used = rss_anon().saturating_sub(before);
    drop(kv);
    assert!(
        empty < 1 << 20,
        "an empty store made {empty} bytes resident"
    );
    // Slots, index buckets, arena span (≤ 2 × live + 64 KiB) and the watch history written so
    // far (20000 events of ~110 bytes): a few MiB, far below the buffers' size.
    assert!(used < 8 << 20, "20000 writes made {used} bytes resident");
}
