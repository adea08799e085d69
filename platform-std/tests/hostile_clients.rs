//! The client and raft ports as a hostile or careless client meets them: each case measured in
//! issue 14 against a real `shoald`, with the node's memory bounded (its RSS from /proc, with
//! generous headroom, and the buffer gauges of /metrics), a normal client still served, and the
//! node never exiting. Each case used to take hundreds of MiB to GiB of RSS, or a thread per
//! connection.

use std::io::Write;
use std::time::Duration;

use shoal_client::protocol::{ErrorCode, ReadMode, Request, Response, WriteOp};
use shoal_testkit::client::{encode_request, frame_prefix, open_idle, Conn};
use shoal_testkit::proc::raise_fd_limit;
use shoal_testkit::{wait_for, Cluster, WAIT};

const MIB: u64 = 1 << 20;

/// A single-node cluster with these extra flags, up and with a leader.
fn node(args: &[&str]) -> Cluster {
    let mut c = Cluster::builder()
        .voters([1])
        .fsync("never")
        .args(args)
        .build();
    c.start(1);
    c.wait_leader(0);
    c
}

/// The node still serves a normal client and has not exited.
fn still_serving(c: &mut Cluster, seq: u64) {
    c.running_proc(1);
    let v = format!("alive-{seq}");
    c.put(0, 99, seq, "probe", &v);
    c.assert_reads(1, 0, "probe", &v);
    c.running_proc(1);
}

/// A directory at `key`, made by client 6.
fn mkdir(c: &Cluster, key: &str) {
    let op = WriteOp::Mkdir {
        key: key.as_bytes().to_vec(),
    };
    c.write(0, 6, 1, op);
}

/// Wait until `flag`'s limit was hit `n` times (the metrics are published every 100 ms).
fn wait_hits(c: &Cluster, flag: &str, n: u64) {
    wait_for(&format!("{n} hits of --{flag}"), WAIT, || {
        c.limit_hits(1, flag) == n
    });
}

/// The answer frame of id 0 a connection gets before the node closes it, then the close.
fn closing_words(conn: &mut Conn) -> (ErrorCode, String) {
    let f = conn.next_frame().expect("a frame before the close");
    assert_eq!(f.id, 0, "{f:?}");
    let Response::Error { code, message, .. } = f.response else {
        panic!("not an error: {f:?}");
    };
    let end = conn.next_frame().map(|f| f.id).map_err(|e| e.kind());
    assert_eq!(end, Err(std::io::ErrorKind::UnexpectedEof));
    (code, message)
}

/// 20 connections announcing 16 MiB frames (over the request limit) are refused at once; 100
/// announcing 1.9 MiB frames (under it) cost their 21 bytes each, not 190 MiB, and are closed
/// when the frame timeout passes.
#[test]
fn announced_frame_lengths_allocate_nothing_and_unfinished_frames_time_out() {
    let mut c = node(&["--client-frame-timeout", "3s"]);
    still_serving(&mut c, 1);
    let before = c.running_proc(1).rss_bytes();
    let client = c.node(1).client.clone();

    let mut over: Vec<Conn> = open_idle(&client, 20);
    for conn in &mut over {
        let mut head = frame_prefix(16 << 20);
        head.extend_from_slice(&[0; 16]);
        conn.send_raw(&head).unwrap();
    }
    for conn in &mut over {
        let (code, message) = closing_words(conn);
        assert_eq!(code, ErrorCode::LimitExceeded, "{message}");
        assert!(message.contains("--client-max-request-mb"), "{message}");
    }
    wait_hits(&c, "client-max-request-mb", 20);

    let mut under = open_idle(&client, 100);
    for conn in &mut under {
        let mut head = frame_prefix(1900 << 10);
        head.extend_from_slice(&[0; 16]);
        conn.send_raw(&head).unwrap();
    }
    wait_for("the 100 unfinished frames to be held", WAIT, || {
        c.gauge(1, "shoal_client_request_bytes_buffered") == 100 * 21
    });
    let rss = c.running_proc(1).rss_bytes();
    assert!(
        rss < before + 32 * MIB,
        "RSS {before} -> {rss} bytes with 100 frames of 1.9 MiB announced"
    );
    still_serving(&mut c, 2);
    for conn in &mut under {
        let (code, message) = closing_words(conn);
        assert_eq!(code, ErrorCode::LimitExceeded, "{message}");
        assert!(message.contains("--client-frame-timeout"), "{message}");
    }
    wait_hits(&c, "client-frame-timeout", 100);
    wait_for("the unfinished frames to be released", WAIT, || {
        c.gauge(1, "shoal_client_request_bytes_buffered") == 0
    });
    still_serving(&mut c, 3);
}

/// Eight connections pipelining reads of a 60 KB value and never reading the answers: each
/// holds one answer beyond its own limit, the node's client buffers one answer per connection
/// beyond theirs, and the requests wait unanswered (old: 1.45 GB). Half of them read through
/// the lease, half linearizably: confirmed reads of a connection over its share wait too
/// (answered together once their read round ended, they once took 1.4 GB at a peak). While
/// they keep the node's buffers full, another client's large request is still read, and a
/// frame the node stopped reading halfway is not timed out.
#[test]
fn unread_pipelined_reads_are_bounded_per_connection_and_per_node() {
    const CONNS: usize = 8;
    // Each more than one read of the node's (64 KiB, ~3000 of these): the old server answered
    // a whole read before it looked at the connection again.
    const GETS: u64 = 4_000;
    // Quiescence off: a quiet group answers its first reads in ReadIndex rounds, the answers
    // of all eight connections then grow evenly, and the node's limit can be met before any
    // connection's own (1 run in 4), so this test could not count on seeing both. The node's
    // limit is twice a connection's: once the first is held at its own, a second holding any
    // answers passes the node's (with 16 MiB, once in many runs on a loaded machine, all
    // eight were held without the node's limit met, and the test failed).
    let mut c = node(&[
        "--client-conn-pending-mb",
        "4",
        "--client-buffers-mb",
        "8",
        "--client-frame-timeout",
        "1s",
        "--quiesce",
        "false",
    ]);
    let value = "v".repeat(60_000);
    c.put(0, 7, 1, "big", &value);
    let before = c.running_proc(1).rss_bytes();
    let answer = value.len() as u64 + 100;

    let burst = |mode: ReadMode| {
        let mut burst = Vec::new();
        for id in 1..=GETS {
            let key = b"big".to_vec();
            encode_request(id, 0, Request::Get { key, mode }, &mut burst);
        }
        burst
    };
    let bursts = [burst(ReadMode::Linearizable), burst(ReadMode::Lease)];
    let mut conns = open_idle(&c.node(1).client, CONNS);
    let spawn = |i: usize| {
        let mut w = conns[i].stream().try_clone().unwrap();
        let burst = bursts[i % 2].clone();
        // Blocks once the node stops reading: joined after the answers are read.
        std::thread::spawn(move || w.write_all(&burst))
    };
    // One connection reading by lease first, alone: its answers pass its own limit long
    // before the node's. Started together, the eight could grow evenly enough on a loaded
    // machine to meet the node's limit first, and the connection's was then never seen.
    let first = spawn(1);
    wait_for("a lone connection to pass its own limit", WAIT, || {
        c.limit_hits(1, "client-conn-pending-mb") >= 1
    });
    let mut writers: Vec<_> = (0..CONNS).map(|i| (i != 1).then(|| spawn(i))).collect();
    writers[1] = Some(first);
    wait_for("every reading connection to be held", WAIT, || {
        c.gauge(1, "shoal_client_connections_held") == CONNS
    });
    let pending = c.gauge(1, "shoal_client_answer_bytes_pending") as u64;
    assert!(
        pending <= 8 * MIB + CONNS as u64 * answer,
        "{pending} answer bytes pending"
    );
    assert!(c.limit_hits(1, "client-conn-pending-mb") >= 1);
    assert!(c.limit_hits(1, "client-buffers-mb") >= 1);
    let peak = c.running_proc(1).peak_rss_bytes();
    assert!(
        peak < before + 96 * MIB,
        "peak RSS {peak} bytes (RSS {before} before) with {CONNS} connections not reading"
    );
    still_serving(&mut c, 1);
    // A 17 KB request (more than a connection may buffer of a frame while unfinished
    // requests fill their share of the node's buffers) is read and answered.
    let batch = Request::BatchGet {
        keys: vec![b"no-such-key-here".to_vec(); 1000],
        mode: ReadMode::Linearizable,
    };
    match c.call_any(0, batch, "a large BatchGet") {
        Response::Nodes { nodes, .. } => assert_eq!(nodes.len(), 1000),
        other => panic!("{other:?}"),
    }
    // Longer than the frame timeout: the frames the node stopped reading are not cut.
    std::thread::sleep(Duration::from_secs(2));

    // Reading the answers lets the rest in: every read is answered, in order.
    reads_answered_in_order(&mut conns.remove(0), GETS);
    drop(conns);
    for w in writers.into_iter().skip(1).flatten() {
        // The others' writers end with the connections (or finished before).
        let _ = w.join();
    }
    assert_eq!(c.limit_hits(1, "client-frame-timeout"), 0);
    still_serving(&mut c, 2);
}

/// A BatchGet of 20,000 copies of a key holding 64 KiB (an 80 KB request whose answer would
/// be 1.3 GB; old: 2.57 GB peak and the raft thread stuck for 12.8 s) is refused with its own
/// error; so is one whose answer passes the answer limit, and a List of a large directory;
/// shoalctl shows it as a usage error.
#[test]
fn reads_over_the_batch_and_answer_limits_are_refused_with_their_own_error() {
    let mut c = node(&[]);
    mkdir(&c, "dir");
    let value = "x".repeat(64 << 10);
    for i in 0..200 {
        c.put(0, 7, i + 1, &format!("dir.k{i}"), &value);
    }
    let before = c.running_proc(1).peak_rss_bytes();
    let batch = |n: usize| Request::BatchGet {
        keys: vec![b"dir.k0".to_vec(); n],
        mode: ReadMode::Linearizable,
    };
    let refused = |r: Response, flag: &str| match r {
        Response::Error {
            code: ErrorCode::LimitExceeded,
            message,
            ..
        } => assert!(message.contains(flag), "{message}"),
        other => panic!("not refused for {flag}: {other:?}"),
    };
    refused(
        c.call_any(0, batch(20_000), "batch"),
        "--client-max-batch-keys",
    );
    refused(
        c.call_any(0, batch(1_000), "batch"),
        "--client-max-answer-mb",
    );
    let list = Request::List {
        key: b"dir".to_vec(),
        mode: ReadMode::Local,
    };
    refused(c.call_any(0, list, "list"), "--client-max-answer-mb");
    wait_hits(&c, "client-max-batch-keys", 1);
    wait_hits(&c, "client-max-answer-mb", 2);
    match c.call_any(0, batch(100), "a batch within the limits") {
        Response::Nodes { nodes, .. } => assert_eq!(nodes.len(), 100),
        other => panic!("{other:?}"),
    }
    let peak = c.running_proc(1).peak_rss_bytes();
    assert!(
        peak < before + 64 * MIB,
        "peak RSS {before} -> {peak} bytes over the refused reads"
    );

    let o = c.ctl(&["-o", "json", "list", "dir"]);
    assert_eq!(o.code, 2, "{o}");
    let j = o.json();
    assert_eq!(j["error"], "LimitExceeded", "{o}");
    assert_eq!(j["class"], "usage", "{o}");
    let o = c.ctl(&["list", "dir"]);
    assert_eq!(o.code, 2, "{o}");
    assert!(
        o.err.contains("over a server limit") && o.err.contains("--client-max-answer-mb"),
        "{o}"
    );
    still_serving(&mut c, 1);
}

/// 20,000 watches on one connection that never reads, then 200 writes of 1 KB (old: 4.0 GB
/// and 130 ms per write): 1024 watches are taken, the rest refused per connection and, on a
/// second connection, per node; once the connection holds more unsent answers than allowed,
/// every watch on it is cut with `WatchLagged`, and a watch opened again from the index named
/// goes on without a gap.
#[test]
fn watches_are_bounded_and_a_watcher_that_falls_behind_is_cut_with_a_resume_index() {
    const WATCHES: u64 = 20_000;
    const PER_CONN: usize = 1024;
    let mut c = node(&["--client-max-watches", "1500"]);
    mkdir(&c, "w");
    let first = c.put(0, 7, 1, "w.k", "0");
    let before = c.running_proc(1).rss_bytes();

    let watch = || Request::Watch {
        keys: vec![b"w.k".to_vec()],
        from_index: 0,
    };
    let mut burst = Vec::new();
    for id in 1..=WATCHES {
        encode_request(id, 0, watch(), &mut burst);
    }
    let mut hostile = Conn::open(&c.node(1).client).unwrap();
    let mut w = hostile.stream().try_clone().unwrap();
    let sender = std::thread::spawn(move || w.write_all(&burst));
    wait_for("the watches to be taken or refused", WAIT, || {
        c.limit_hits(1, "client-max-watches-per-conn") == WATCHES - PER_CONN as u64
    });
    assert_eq!(c.gauge(1, "shoal_client_watches"), PER_CONN);
    sender.join().unwrap().unwrap();

    // A second connection gets what is left of the node's limit, then Unavailable.
    let mut second = Conn::open(&c.node(1).client).unwrap();
    let mut started = 0;
    for _ in 0..600 {
        match second.call(0, watch()).unwrap() {
            Response::WatchStarted => started += 1,
            Response::Unavailable { message } => {
                assert!(message.contains("--client-max-watches"), "{message}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(started, 1500 - PER_CONN);
    wait_hits(&c, "client-max-watches", 1);
    assert_eq!(c.gauge(1, "shoal_client_watches"), 1500);
    drop(second);
    wait_for("the second connection's watches to end", WAIT, || {
        c.gauge(1, "shoal_client_watches") == PER_CONN
    });

    let value = "u".repeat(1000);
    for seq in 2..202 {
        c.put(0, 7, seq, "w.k", &value);
    }
    wait_for("every watch of the connection to be cut", WAIT, || {
        c.gauge(1, "shoal_client_watches") == 0
    });
    assert_eq!(
        c.metric(1, "shoal_client_watches_cut_total"),
        PER_CONN as u64
    );
    let rss = c.running_proc(1).rss_bytes();
    assert!(
        rss < before + 64 * MIB,
        "RSS {before} -> {rss} bytes with {PER_CONN} watches never read"
    );
    still_serving(&mut c, 1);

    // What the connection was sent: each watch started (or was refused), saw the writes in
    // order from the first, and was cut naming the first index it was not sent.
    let mut seen: Vec<Option<u64>> = vec![None; PER_CONN + 1];
    let mut cut = 0;
    let mut next_of_first = None;
    let mut refused = 0;
    while cut < PER_CONN || refused < WATCHES as usize - PER_CONN {
        let f = hostile.next_frame().unwrap();
        let id = f.id as usize;
        match f.response {
            Response::WatchStarted => assert!(id <= PER_CONN, "{id}"),
            Response::Error { code, .. } => {
                assert_eq!(code, ErrorCode::LimitExceeded);
                refused += 1;
            }
            Response::Event(ev) => {
                let last = seen[id].unwrap_or(first);
                assert!(ev.index > last, "watch {id}: {} after {last}", ev.index);
                seen[id] = Some(ev.index);
            }
            Response::WatchLagged { next } => {
                assert!(next > seen[id].unwrap_or(first), "watch {id}");
                cut += 1;
                if id == 1 {
                    next_of_first = Some(next);
                }
            }
            other => panic!("watch {id}: {other:?}"),
        }
    }
    // Opened again from the index named, the watch goes on exactly there.
    let next = next_of_first.expect("watch 1 was cut");
    let mut again = Conn::open(&c.node(1).client).unwrap();
    let resumed = Request::Watch {
        keys: vec![b"w.k".to_vec()],
        from_index: next,
    };
    assert_eq!(again.call(0, resumed).unwrap(), Response::WatchStarted);
    match again.next_frame().unwrap().response {
        Response::Event(ev) => assert_eq!(ev.index, next),
        other => panic!("{other:?}"),
    }
    still_serving(&mut c, 2);
}

/// 2,000 idle connections (old: +100 MB, never released) hold no buffer; past the connection
/// limit one more is refused with a reason, and the idle timeout closes them all but the one
/// with a watch.
#[test]
fn idle_connections_cost_little_are_limited_and_time_out() {
    raise_fd_limit(8192);
    let mut c = node(&[
        "--client-max-connections",
        "2000",
        "--client-idle-timeout",
        "20s",
    ]);
    still_serving(&mut c, 1);
    let before = c.running_proc(1).rss_bytes();
    let client = c.node(1).client.clone();
    let mut watching = Conn::open(&client).unwrap();
    let watch = Request::Watch {
        keys: vec![b"quiet".to_vec()],
        from_index: 0,
    };
    assert_eq!(watching.call(0, watch).unwrap(), Response::WatchStarted);
    let mut idle = open_idle(&client, 1999);
    wait_for("2000 connections to be counted", WAIT, || {
        c.gauge(1, "shoal_client_connections") == 2000
    });
    let rss = c.running_proc(1).rss_bytes();
    assert!(
        rss < before + 32 * MIB,
        "RSS {before} -> {rss} bytes with 2000 idle connections"
    );
    // One more is told why, in a frame of id 0, before anything is read.
    let mut extra = Conn::open(&client).unwrap();
    let f = extra.next_frame().unwrap();
    assert_eq!(f.id, 0);
    match f.response {
        Response::Unavailable { message } => {
            assert!(
                message.contains("--client-max-connections=2000"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    wait_hits(&c, "client-max-connections", 1);
    wait_for(
        "the idle connections to be closed",
        Duration::from_secs(90),
        || c.gauge(1, "shoal_client_connections") == 1,
    );
    assert_eq!(c.limit_hits(1, "client-idle-timeout"), 1999);
    for conn in idle.iter_mut().take(10) {
        let end = conn.next_frame().map(|f| f.id).map_err(|e| e.kind());
        assert_eq!(end, Err(std::io::ErrorKind::UnexpectedEof));
    }
    // The watch was kept: it still sees changes.
    still_serving(&mut c, 2);
    c.put(0, 8, 1, "quiet", "q");
    match watching.next_frame().unwrap().response {
        Response::Event(ev) => assert_eq!(ev.key, b"quiet"),
        other => panic!("{other:?}"),
    }
}

/// 500 strangers on the raft port that never finish a handshake (old: one thread each, for as
/// long as they stayed): at most `--peer-max-handshakes` are given a thread, the rest are
/// closed at once, the handshake timeout closes those, and the cluster keeps its peer
/// connections and takes writes throughout.
#[test]
fn strangers_on_the_raft_port_get_no_thread_each() {
    const STRANGERS: u64 = 500;
    const HANDSHAKES: u64 = 16;
    let mut c = Cluster::builder()
        .fsync("never")
        .args(&["--peer-handshake-timeout", "10s"])
        .build();
    let leader = c.start_serving(7);
    let target = c.other_than(leader);
    let before = {
        let p = c.running_proc(target);
        (p.threads(), p.rss_bytes())
    };

    let mut strangers = open_idle(&c.node(target).raft, STRANGERS as usize);
    // Half of them start a handshake frame and stop: 4 bytes announcing 60 KiB. (One closed
    // already refuses the bytes.)
    for s in strangers.iter_mut().step_by(2) {
        let _ = s.send_raw(&(60u32 << 10).to_le_bytes());
    }
    let limited = |c: &Cluster| {
        c.limit_hits(target, "peer-max-handshakes") + c.limit_hits(target, "peer-handshake-timeout")
    };
    wait_for("every stranger to be closed or held", WAIT, || {
        limited(&c) + c.gauge(target, "shoal_peer_handshakes_pending") as u64 >= STRANGERS
    });
    let p = c.running_proc(target);
    let (threads, rss) = (p.threads(), p.rss_bytes());
    assert!(
        threads <= before.0 + HANDSHAKES + 4,
        "threads {} -> {threads} with {STRANGERS} strangers on the raft port",
        before.0
    );
    assert!(
        rss < before.1 + 32 * MIB,
        "RSS {} -> {rss} bytes with {STRANGERS} strangers on the raft port",
        before.1
    );
    assert!(c.gauge(target, "shoal_peer_handshakes_pending") as u64 <= HANDSHAKES);
    c.put(0, 7, 2, "during", "2");

    wait_for("the handshake timeout to close the rest", WAIT, || {
        limited(&c) == STRANGERS && c.gauge(target, "shoal_peer_handshakes_pending") == 0
    });
    assert!(c.limit_hits(target, "peer-handshake-timeout") >= 1);
    drop(strangers);
    wait_for("the strangers' threads to end", WAIT, || {
        c.running_proc(target).threads() <= before.0
    });
    c.put(0, 7, 3, "after", "3");
    assert_eq!(
        c.get_any(0, "after", ReadMode::Linearizable),
        Some(b"3".to_vec())
    );
    c.running_proc(target);
}

/// One connection that sends reads and reads no answers, on a node with quiescence on (its
/// group quiet when the reads arrive): the connection's own limit holds its answers, the node
/// keeps serving others, and every read is answered in order once the client reads.
#[test]
fn one_unread_connection_meets_its_own_limit_with_quiescence_on() {
    const GETS: u64 = 4_000;
    let mut c = node(&["--client-conn-pending-mb", "4", "--client-buffers-mb", "64"]);
    let value = "v".repeat(60_000);
    c.put(0, 7, 1, "big", &value);
    wait_for("group 0 to be quiet", WAIT, || {
        c.gauge(1, "shoal_groups_quiet") == 1
    });
    let mut burst = Vec::new();
    for id in 1..=GETS {
        let key = b"big".to_vec();
        let mode = if id % 2 == 0 {
            ReadMode::Lease
        } else {
            ReadMode::Linearizable
        };
        encode_request(id, 0, Request::Get { key, mode }, &mut burst);
    }
    let mut conns = open_idle(&c.node(1).client, 1);
    let mut w = conns[0].stream().try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&burst));
    wait_for("the connection's own limit to be met", WAIT, || {
        c.limit_hits(1, "client-conn-pending-mb") >= 1
    });
    assert_eq!(c.limit_hits(1, "client-buffers-mb"), 0);
    let pending = c.gauge(1, "shoal_client_answer_bytes_pending") as u64;
    assert!(
        pending <= 4 * MIB + 2 * 60_100,
        "{pending} answer bytes pending"
    );
    still_serving(&mut c, 1);
    reads_answered_in_order(&mut conns.remove(0), GETS);
    writer.join().unwrap().unwrap();
}

/// Reads 1..=`n` of `conn` are answered, each with the key it read, in the order sent.
fn reads_answered_in_order(conn: &mut Conn, n: u64) {
    for id in 1..=n {
        let f = conn.next_frame().unwrap();
        assert_eq!(f.id, id);
        assert!(
            matches!(f.response, Response::Node { node: Some(_), .. }),
            "{f:?}"
        );
    }
}
