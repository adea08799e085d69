//! Micro-benchmarks of the hot paths: the codecs every entry and frame goes through, a follower
//! appending a batch, a leader's whole propose → replicate → commit → apply round, and DtKV apply.
//! Run with `cargo bench -p shoal-tests --bench hot_paths`; numbers are for comparing changes on
//! one machine, never asserted.

use criterion::measurement::WallTime;
use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput,
};
use shoal_core::driver::{Event, Node, NodeConfig, NodeParts};
use shoal_core::entry::{self, EntryIter, EntryRef};
use shoal_core::io::{
    SnapshotError, SnapshotReader, SnapshotWriter, StateMachine, Transport, TransportError,
};
use shoal_core::limits::Config;
use shoal_core::membership::Membership;
use shoal_core::message::{Append, Message};
use shoal_core::record;
use shoal_core::wire::{self, Body, FrameHeader, FRAME_PREFIX_RESERVE};
use shoal_kv::{kv_buffers, Command, DtKv, KvLimits, KvMemory, Op};
use shoal_std::kvheap::KvHeap;
use shoal_tests::memstore::MemStorage;

/// Where an append frame's entries start in its buffer: after the frame's prefix and the few
/// bytes of its `Append` header.
const TAIL_AT: usize = FRAME_PREFIX_RESERVE + 5;

/// The header of a frame of cluster 1, group 0, from `from` to `to`.
fn header(from: u64, to: u64) -> FrameHeader {
    FrameHeader::new(1, 0, from, to)
}

/// Encode 64 copies of `e`, with indexes from `first` on, into `buf` at [`TAIL_AT`]; returns
/// the bytes they take.
fn write_tail(buf: &mut [u8], e: &EntryRef<'_>, first: u64) -> usize {
    let mut at = TAIL_AT;
    for i in 0..64 {
        let next = EntryRef {
            index: first + i,
            ..*e
        };
        at += entry::encode(&next, &mut buf[at..]).unwrap();
    }
    at - TAIL_AT
}

/// Bench an encoder (`encode` writes into the buffer it is given and returns the length) and
/// the decoder of what it wrote (`decode` returns the bytes it consumed), under `names`.
fn codec_pair(
    g: &mut BenchmarkGroup<'_, WallTime>,
    [encoding, decoding]: [&str; 2],
    encode: impl Fn(&mut [u8]) -> usize,
    decode: impl Fn(&[u8]) -> usize,
) {
    let mut buf = vec![0u8; 64 * 1024];
    g.bench_function(encoding, |b| b.iter(|| encode(&mut buf)));
    let n = encode(&mut buf);
    let enc = buf[..n].to_vec();
    g.bench_function(decoding, |b| b.iter(|| decode(black_box(&enc))));
}

fn codecs(c: &mut Criterion) {
    let payload = [7u8; 100];
    let e = EntryRef::normal(123_456, 9, &payload);
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    codec_pair(
        &mut g,
        ["entry encode 100B", "entry decode 100B"],
        |buf| entry::encode(black_box(&e), buf).unwrap(),
        |enc| entry::decode(enc).unwrap().1,
    );
    codec_pair(
        &mut g,
        ["record encode 100B", "record decode 100B"],
        |buf| record::encode(black_box(&payload), buf).unwrap(),
        |rec| record::decode(rec).unwrap().1,
    );
    // An append frame carrying 64 entries of 100 bytes.
    let mut buf = vec![0u8; 64 * 1024];
    let tail = write_tail(&mut buf, &e, 1000);
    let h = header(1, 2);
    let msg = Body::Raft(Message::Append(Append {
        term: 9,
        prev_index: 999,
        prev_term: 9,
        commit: 990,
        count: 64,
        read_seq: 3,
        clock_ms: 0,
    }));
    g.throughput(Throughput::Elements(64));
    g.bench_function("append frame encode 64x100B", |b| {
        b.iter(|| wire::encode_with_tail(&h, black_box(&msg), &mut buf, TAIL_AT, tail).unwrap())
    });
    let range = wire::encode_with_tail(&h, &msg, &mut buf, TAIL_AT, tail).unwrap();
    let frame = buf[range].to_vec();
    g.bench_function("append frame decode + iterate 64x100B", |b| {
        b.iter(|| {
            let (f, _) = wire::decode(black_box(&frame)).unwrap();
            EntryIter::new(f.tail, 64)
                .map(|e| e.unwrap().data.len())
                .sum::<usize>()
        })
    });
    g.finish();
}

struct Drop0;
impl Transport for Drop0 {
    fn send(&mut self, _to: u64, _frame: &[u8]) -> Result<(), TransportError> {
        Ok(())
    }
}

#[derive(Default)]
struct Count(u64);
impl StateMachine for Count {
    type Output = ();
    fn apply(&mut self, index: u64, _t: u64, _c: &[u8]) {
        self.0 = index;
    }
    fn skip(&mut self, index: u64) {
        self.0 = index;
    }
    fn applied_index(&self) -> u64 {
        self.0
    }
    fn snapshot(&self, _o: &mut dyn SnapshotWriter) -> Result<(), SnapshotError> {
        Ok(())
    }
    fn restore(&mut self, i: u64, _s: &mut dyn SnapshotReader) -> Result<(), SnapshotError> {
        self.0 = i;
        Ok(())
    }
}

/// Node 1 of a group of `voters` on in-memory storage, with `raft` and a `buf_bytes` buffer.
fn node(voters: &[u64], raft: Config, buf_bytes: usize) -> Node<MemStorage, Drop0, Count, Vec<u8>> {
    let nc = NodeConfig {
        cluster_id: 1,
        group: 0,
        node_id: 1,
        raft,
        seed: 1,
    };
    let parts = NodeParts::new(
        MemStorage::new(),
        Drop0,
        Count::default(),
        vec![0u8; buf_bytes],
    );
    let m = Membership::new(voters, &[]).unwrap();
    Node::new(nc, parts, 0, Some(&m)).unwrap()
}

fn single_node_leader() -> Node<MemStorage, Drop0, Count, Vec<u8>> {
    let mut cfg = Config::server();
    cfg.snapshot_entries = 0;
    cfg.snapshot_interval_ms = 0;
    let mut n = node(&[1], cfg, 1 << 20);
    let mut t = 0;
    while n.raft().role() != shoal_core::Role::Leader {
        t += 50;
        n.tick(t).unwrap();
        n.flush(t, &mut |_| {}).unwrap();
    }
    n
}

fn driver(c: &mut Criterion) {
    let mut g = c.benchmark_group("driver");
    // A batch of 256 proposals, one flush (group commit), all applied: the per-write cost of
    // the core and driver without real IO (MemStorage keeps bytes in memory).
    g.throughput(Throughput::Elements(256));
    g.bench_function("single-node propose+flush batch of 256 x 100B", |b| {
        let mut n = single_node_leader();
        let cmd = [1u8; 100];
        b.iter(|| {
            for _ in 0..256 {
                n.propose(10_000, black_box(&cmd)).unwrap();
            }
            let mut applied = 0;
            n.flush(10_000, &mut |e| {
                if let Event::Applied { .. } = e {
                    applied += 1
                }
            })
            .unwrap();
            assert_eq!(applied, 256);
        })
    });
    // A follower handling one append of 64 entries (decode, append, ack held until sync).
    g.throughput(Throughput::Elements(64));
    g.bench_function("follower step: append of 64 x 100B", |b| {
        let h = header(2, 1);
        let e = EntryRef::normal(2, 2, &[5u8; 100]);
        b.iter_batched(
            || {
                let node = node(&[1, 2, 3], Config::server(), 1 << 16);
                let mut buf = vec![0u8; 1 << 16];
                let tail = write_tail(&mut buf, &e, 2);
                let msg = Body::Raft(Message::Append(Append {
                    term: 2,
                    prev_index: 1,
                    prev_term: 1,
                    commit: 1,
                    count: 64,
                    read_seq: 1,
                    clock_ms: 0,
                }));
                let r = wire::encode_with_tail(&h, &msg, &mut buf, TAIL_AT, tail).unwrap();
                (node, buf[r].to_vec())
            },
            |(mut node, frame)| node.handle_frame(5, black_box(&frame)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// The DtKV benchmarks' limits: 4096 nodes, a 1 MiB arena, values up to 4 KiB.
const BENCH_KV_LIMITS: KvLimits = KvLimits {
    max_nodes: 4096,
    arena_bytes: 1 << 20,
    max_sessions: 64,
    max_waiters_per_lock: 16,
    max_waiters: 64,
    event_slots: 1024,
    event_bytes: 65536,
    max_value_bytes: 4096,
    ..KvLimits::server()
};

fn dtkv(c: &mut Criterion) {
    // Borrowed static buffers (a board's way) and owned heap memory (shoald's).
    let mut mem = Box::new(<kv_buffers!(BENCH_KV_LIMITS)>::new());
    let kv = DtKv::new(mem.slices(), BENCH_KV_LIMITS).unwrap();
    dtkv_on(c, "dtkv", kv);
    let kv = KvHeap::store(BENCH_KV_LIMITS).unwrap();
    dtkv_on(c, "dtkv owned", kv);
}

/// `op` as a command without a session at `time_ms`, encoded.
fn command(time_ms: u64, op: Op<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    let cmd = Command {
        client_id: 0,
        seq: 0,
        time_ms,
        op,
    };
    let n = cmd.encode(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn dtkv_on<M: KvMemory>(c: &mut Criterion, group: &str, mut kv: DtKv<M>) {
    let bufs: Vec<Vec<u8>> = (0..4096u64)
        .map(|i| {
            let key = format!("bench.key{:05}", i % 1024);
            let value = &[3u8; 100];
            command(
                i,
                Op::Put {
                    key: key.as_bytes(),
                    value,
                },
            )
        })
        .collect();
    let mkdir = command(0, Op::Mkdir { key: b"bench" });
    let mut index = 1;
    kv.apply(index, 1, &mkdir);
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("apply put 100B (1024 keys, no session)", |b| {
        b.iter(|| {
            index += 1;
            let cmd = &bufs[i % bufs.len()];
            i += 1;
            black_box(kv.apply(index, 1, cmd))
        })
    });
    g.bench_function("get (1024 keys)", |b| {
        b.iter(|| black_box(kv.get(b"bench.key00512").map(|v| v.value.len())))
    });
    g.finish();
}

/// Puts of 100 B to 10,240 keys with 256 client sessions, as `shoald` holds them (mapped
/// buffers, server limits): all in one store, or spread over 64 stores (a node's groups) and
/// taken in random order, so each put meets its store's state cold, as a round of 64 busy
/// groups does.
fn dtkv_spread(c: &mut Criterion) {
    const KEYS: u64 = 10_240;
    const CLIENTS: u64 = 256;
    let limits = KvLimits {
        event_slots: 1024,
        event_bytes: 256 << 10,
        ..KvLimits::server()
    };
    let mut g = c.benchmark_group("dtkv spread");
    g.throughput(Throughput::Elements(1));
    for stores in [1u64, 64] {
        let mut kvs: Vec<_> = (0..stores)
            .map(|_| KvHeap::store(limits).unwrap())
            .collect();
        // A fixed pseudo-random sequence of (key, client).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let picks: Vec<(u64, u64)> = (0..1 << 16)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % KEYS, (x >> 32) % CLIENTS)
            })
            .collect();
        let mut seqs = vec![0u64; (CLIENTS * stores) as usize];
        let mut index = 0u64;
        let mut buf = vec![0u8; 256];
        let mut put = |kvs: &mut Vec<_>, key: u64, client: u64| {
            let store = (key % stores) as usize;
            let seq = &mut seqs[(client * stores) as usize + store];
            *seq += 1;
            let k = format!("k{key:015}");
            let cmd = Command {
                client_id: client + 1,
                seq: *seq,
                time_ms: index,
                op: Op::Put {
                    key: k.as_bytes(),
                    value: &[7u8; 100],
                },
            };
            let n = cmd.encode(&mut buf).unwrap();
            index += 1;
            let kv: &mut shoal_std::kvheap::HeapKv = &mut kvs[store];
            black_box(kv.apply_command(index, &buf[..n]));
        };
        // Every key exists before the timing, as in a warmed-up run (and criterion's own
        // warm-up, millions of puts, gives every client its session in every store).
        for key in 0..KEYS {
            for client in 0..CLIENTS / 16 {
                put(&mut kvs, key, client * 16 + key % 16);
            }
        }
        let mut i = 0;
        let name = format!("apply put 100B, {KEYS} keys over {stores} stores, {CLIENTS} clients");
        g.bench_function(name, |b| {
            b.iter(|| {
                let (key, client) = picks[i % picks.len()];
                i += 1;
                put(&mut kvs, key, client)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, codecs, driver, dtkv, dtkv_spread);
criterion_main!(benches);
