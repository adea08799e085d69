//! Where a store's memory comes from: borrowed pools carved in a documented order, owned
//! buffers that make the store an ordinary `Send` value, and the refusal of memory that does
//! not fit the limits; a value rewritten at its own length stays where it was.

mod common;

use common::*;
use shoal_core::io::StateMachine;
use shoal_kv::*;

fn put_cmd(seq: u64, key: &str, value: &str) -> Vec<u8> {
    encode(&Command {
        client_id: 7,
        seq,
        time_ms: 1,
        op: put(key, value),
    })
}

#[test]
fn a_store_that_owns_its_memory_moves_to_another_thread() {
    let mut kv = store(small());
    kv.apply(1, 1, &put_cmd(1, "a", "before"));
    let kv = std::thread::spawn(move || {
        kv.apply(2, 1, &put_cmd(2, "a", "after"));
        kv
    })
    .join()
    .expect("the thread applied its write");
    assert_eq!(kv.get(b"a").expect("stored").value, b"after");
    assert_eq!(kv.session(7), Some((2, 2)));
}

#[test]
fn memory_too_small_for_the_limits_is_refused_naming_the_buffer() {
    let l = small();
    let mut pools = Pools::new(&l, 0);
    assert!(DtKv::new(pools.slices(), l).is_ok());
    // Each pool one element short: the last buffer carved from it is the one missing.
    for name in [
        "nodes",
        "session_index",
        "event_bytes",
        "sessions",
        "waiters",
        "events",
    ] {
        let mut p = Pools::new(&l, 0);
        match name {
            "nodes" => p.nodes.truncate(l.nodes_len() - 1),
            "session_index" => p.words.truncate(l.words_len() - 1),
            "event_bytes" => p.bytes.truncate(l.bytes_len() - 1),
            "sessions" => p.sessions.truncate(l.sessions_len() - 1),
            "waiters" => p.waiters.truncate(l.waiters_len() - 1),
            _ => p.events.truncate(l.events_len() - 1),
        }
        match DtKv::new(p.slices(), l) {
            Err(e) => assert_eq!(e, LimitsError::Buffer(name)),
            Ok(_) => panic!("a short pool for `{name}` was accepted"),
        }
    }
    // The words pool holds the node index first: with room for nothing else, the expiry
    // heap is the buffer that does not fit.
    let mut pools = Pools::new(&l, 0);
    pools.words.truncate(l.node_index_len());
    assert_eq!(
        DtKv::new(pools.slices(), l).err(),
        Some(LimitsError::Buffer("expiry_heap"))
    );
}

#[test]
fn spare_pool_elements_are_left_alone() {
    let l = small();
    let mut pools = Pools::new(&l, 4);
    pools.words[l.words_len()..].fill(0xDEAD_BEEF);
    pools.bytes[l.bytes_len()..].fill(0xEE);
    let mut kv = DtKv::new(pools.slices(), l).expect("spare elements are fine");
    for i in 1..=20u64 {
        let key = format!("k{i}");
        kv.apply(i, 1, &put_cmd(i, &key, "value"));
    }
    assert_eq!(kv.node_count(), 21);
    assert!(pools.words[l.words_len()..]
        .iter()
        .all(|&w| w == 0xDEAD_BEEF));
    assert!(pools.bytes[l.bytes_len()..].iter().all(|&b| b == 0xEE));
}

/// Where `needle` stands in `hay`.
fn places(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn a_value_of_the_same_length_is_written_over_the_old_one_in_place() {
    let l = small();
    let mut pools = Pools::new(&l, 0);
    {
        let mut kv = DtKv::new(pools.slices(), l).expect("small limits fit");
        kv.apply(1, 1, &put_cmd(1, "counter", "0001"));
        kv.apply(2, 1, &put_cmd(2, "other", "zzzz"));
        for (i, v) in ["0002", "0003", "0004"].into_iter().enumerate() {
            let at = 3 + i as u64;
            kv.apply(at, 1, &put_cmd(at, "counter", v));
        }
        let n = kv.get(b"counter").expect("stored");
        assert_eq!((n.value, n.update_index), (&b"0004"[..], 5));
        assert_eq!(kv.get(b"other").expect("stored").value, b"zzzz");
    }
    // The arena comes first in the bytes pool (then the watch history's copies): the last value
    // stands where the first one was written, and no earlier one is left behind it.
    let arena = &pools.bytes[..l.arena_bytes];
    let counter = places(arena, b"0004");
    assert_eq!(counter.len(), 1, "one copy of the value");
    for old in ["0001", "0002", "0003"] {
        assert!(
            places(arena, old.as_bytes()).is_empty(),
            "{old} was overwritten"
        );
    }
    assert!(
        places(arena, b"zzzz")[0] > counter[0],
        "the counter's value did not move past the key written after it"
    );

    // A value of another length takes a new block (the old one is only marked free).
    let mut pools = Pools::new(&l, 0);
    {
        let mut kv = DtKv::new(pools.slices(), l).expect("small limits fit");
        kv.apply(1, 1, &put_cmd(1, "counter", "0001"));
        kv.apply(2, 1, &put_cmd(2, "counter", "00002"));
        assert_eq!(kv.get(b"counter").expect("stored").value, b"00002");
    }
    let arena = &pools.bytes[..l.arena_bytes];
    assert!(places(arena, b"00002")[0] > places(arena, b"0001")[0]);
}

/// Hands out one element more than asked for.
struct Generous;

impl KvMemory for Generous {
    type Buf<T: Element> = Vec<T>;
    fn take<T: Element>(&mut self, len: usize) -> Option<Vec<T>> {
        Some(vec![T::EMPTY; len + 1])
    }
}

#[test]
fn a_provider_must_hand_out_the_exact_length() {
    // A longer hash index would not be a power of two; the store asks for exact lengths.
    assert_eq!(
        DtKv::new(Generous, small()).err(),
        Some(LimitsError::Buffer("nodes"))
    );
}

#[test]
fn static_buffers_are_sized_from_const_limits() {
    const LIMITS: KvLimits = KvLimits {
        max_nodes: 100,
        arena_bytes: 3000,
        ..KvLimits::embedded()
    };
    type Buffers = kv_buffers!(LIMITS);
    assert_eq!(size_of::<Buffers>(), LIMITS.memory_bytes());
    let mut bufs = Box::new(Buffers::new());
    let mut kv = DtKv::new(bufs.slices(), LIMITS).expect("sized for the limits");
    for i in 1..=99u64 {
        let key = format!("k{i}");
        kv.apply(i, 1, &put_cmd(i, &key, "v"));
    }
    assert_eq!(
        kv.apply(100, 1, &put_cmd(100, "one-too-many", "v")).result,
        WriteResult::Failed(KvError::TooManyNodes)
    );
    // Buffers for the embedded profile are one byte too small for a larger arena.
    let mut bufs = Box::new(EmbeddedKvBuffers::new());
    let more = KvLimits {
        arena_bytes: KvLimits::embedded().arena_bytes + 1,
        ..KvLimits::embedded()
    };
    assert_eq!(
        DtKv::new(bufs.slices(), more).err(),
        Some(LimitsError::Buffer("event_bytes"))
    );
}

#[test]
fn the_indexes_start_small_and_grow_with_their_keys_and_sessions() {
    let mut limits = KvLimits::server();
    limits.max_sessions = 4096;
    let mut d = Driver::new(limits);
    let (nodes, sessions) = d.kv.index_buckets();
    assert!(nodes <= 1024 && sessions <= 1024, "{nodes}, {sessions}");
    let full_nodes = limits.node_index_len();
    assert!(
        full_nodes >= 256 * nodes,
        "the limits size the index for far more"
    );
    d.ok(0, mkdir("d"));
    for i in 0..3000u64 {
        let (key, value) = (format!("d.k{i}"), format!("v{i}"));
        // 2,000 sessions: the session index grows too.
        d.ok(1 + i % 2000, put(&key, &value));
    }
    let (nodes, sessions) = d.kv.index_buckets();
    // At most half full, and no larger than that needs.
    assert_eq!(nodes, (2 * 3002usize).next_power_of_two(), "node index");
    assert_eq!(
        sessions,
        (2 * 2000usize).next_power_of_two(),
        "session index"
    );
    for i in (0..3000u64).step_by(2) {
        d.ok(1, remove(&format!("d.k{i}")));
    }
    for i in 0..3000u64 {
        let want = (i % 2 == 1).then(|| format!("v{i}").into_bytes());
        assert_eq!(d.value(&format!("d.k{i}")), want, "key d.k{i}");
    }
    for client in 1..=2000u64 {
        assert!(d.kv.session(client).is_some(), "session {client}");
    }
}

#[test]
fn the_watch_history_keeps_to_caps_set_while_the_store_runs() {
    let mut d = Driver::new(small());
    assert_eq!(d.kv.event_caps(), (64, 1024), "the limits at first");
    for i in 0..10 {
        d.ok(1, put(&format!("k{i}"), "v"));
    }
    assert!(d.kv.events_since(1, b"", |_| {}).is_ok());
    assert_eq!(d.kv.set_event_caps(8, 200), (8, 200));
    // A change empties the history: it is complete from the next command on.
    assert_eq!(
        d.kv.events_since(1, b"", |_| {}),
        Err(WatchError::Compacted {
            oldest_available: d.index + 1
        })
    );
    let kept = |d: &Driver| {
        let mut n = 0;
        d.kv.events_since(d.kv.oldest_event_index(), b"", |_| n += 1)
            .expect("kept events");
        n
    };
    for i in 0..20 {
        d.ok(1, put(&format!("n{i}"), "v"));
    }
    assert_eq!(kept(&d), 8, "at most eight events");
    // 60-byte values with 3-byte keys: 200 bytes hold three of them.
    let value = "x".repeat(60);
    for i in 0..5 {
        d.ok(1, put(&format!("m{i}"), &value));
    }
    assert_eq!(kept(&d), 3, "at most 200 bytes of keys and values");
    // Setting the same caps again changes nothing; the caps stay within the limits and hold
    // at least one event of the largest key and value.
    assert_eq!(d.kv.set_event_caps(8, 200), (8, 200));
    assert_eq!(kept(&d), 3);
    assert_eq!(d.kv.set_event_caps(0, 0), (1, 32 + 64));
    assert_eq!(d.kv.set_event_caps(1 << 20, 1 << 20), (64, 1024));
    for i in 0..70 {
        d.ok(1, put("z", &format!("v{i}")));
    }
    assert_eq!(kept(&d), 64, "raised back to the limits");
}
