//! A full disk, a quota and a descriptor limit, met by real `shoald` processes: the node stays
//! up, refuses what it cannot store with a definite error and nothing applied, says so in
//! `/health`, `/status` and `/metrics`, keeps serving reads and following, takes writes again
//! by itself once the resource returns, and loses no acknowledged write.
//!
//! The disks are small tmpfs mounts (the tests need root, as CI has; they fail, not skip,
//! without it).
#![cfg(unix)]

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_client::protocol::{ErrorCode, ReadMode, Request, Response};
use shoal_testkit::client::{put_request, Conn};
use shoal_testkit::disk::MIB;
use shoal_testkit::{poll, wait_for, wait_some, Cluster, WAIT};

/// Value size of the filling writes: about 30 to a 1 MiB segment.
const VALUE: usize = 32 << 10;
/// Most writes a test makes before its disk must have refused one.
const MAX_WRITES: u64 = 600;

/// The flags of a node whose log grows in 1 MiB segments and keeps 2 MiB free.
const SMALL_SEGMENTS: &[&str] = &[
    "--segment-mb",
    "1",
    "--space-reserve-mb",
    "2",
    "--space-recheck-interval",
    "100ms",
];
const RESERVE: u64 = 2 * MIB;

fn value(i: u64) -> Vec<u8> {
    let mut v = format!("value {i} ").into_bytes();
    v.resize(VALUE, b'a' + (i % 26) as u8);
    v
}

/// What one write through node `id` answered: `Ok(index)` when written, `Err(code)` for a
/// definite error.
fn try_put(c: &Cluster, id: u64, seq: u64, key: &str, v: &[u8]) -> Result<u64, ErrorCode> {
    let r = wait_some("an answer to a write", WAIT, || {
        c.call(id, 0, put_request(9, seq, key, v))
            .filter(|r| !matches!(r, Response::Unavailable { .. }))
    });
    match r {
        Response::Written { index, .. } => Ok(index),
        Response::Error { code, message, .. } => {
            assert!(
                code != ErrorCode::NoSpace || message.contains("nothing of the write"),
                "a NoSpace refusal says nothing was applied: {message}"
            );
            Err(code)
        }
        other => panic!("write of {key} through node {id}: {other:?}"),
    }
}

/// Write `key{i}` through node `id` from `seq` on until one is refused with `NoSpace`; the
/// writes acknowledged on the way go into `acked`. The seq the refused write used.
fn fill_until_refused(
    c: &Cluster,
    id: u64,
    mut seq: u64,
    keys: impl Fn(u64) -> String,
    acked: &mut BTreeMap<String, Vec<u8>>,
) -> u64 {
    for i in 0..MAX_WRITES {
        let (k, v) = (keys(i), value(i));
        match try_put(c, id, seq, &k, &v) {
            Ok(_) => {
                acked.insert(k, v);
                seq += 1;
            }
            Err(ErrorCode::NoSpace) => return seq,
            Err(code) => panic!("write {i} was refused with {code:?}, not NoSpace"),
        }
    }
    panic!("{MAX_WRITES} writes of {VALUE} bytes and no NoSpace")
}

/// Every acknowledged write reads back, linearizably, through node `id`.
fn check_acked(c: &Cluster, id: u64, acked: &BTreeMap<String, Vec<u8>>) {
    for (k, v) in acked {
        let got = c.get(id, 0, k, ReadMode::Linearizable);
        assert!(got.as_ref() == Some(v), "{k} through node {id}: lost");
    }
}

/// Node `id`'s `/health` answer.
fn health(c: &Cluster, id: u64) -> (u16, String) {
    c.http_get(id, "/health").expect("the admin port answers")
}

/// Wait until node `id`'s `/health` answers 503 naming the alarm `name`.
fn wait_alarm(c: &Cluster, id: u64, name: &str) {
    let mut last = (0, String::new());
    let raised = poll(WAIT, || {
        last = health(c, id);
        (last.0 == 503 && last.1.contains(&format!(r#""name":"{name}""#))).then_some(())
    });
    assert!(raised.is_some(), "no alarm {name} in /health: {last:?}");
}

#[test]
fn a_full_disk_refuses_writes_with_no_space_serves_reads_and_recovers_by_itself() {
    let mut c = Cluster::builder().args(SMALL_SEGMENTS).build();
    let fs_bytes = 24 * MIB;
    c.on_tmpfs(1, fs_bytes);
    c.start_all();
    c.make_leader(1, 0);

    // Another program fills the disk until 3 MiB are left above the reserve.
    let filler = c.tmpfs(1).fill("filler", RESERVE + 3 * MIB);
    let mut acked = BTreeMap::new();
    let seq = fill_until_refused(&c, 1, 1, |i| format!("k{i:04}"), &mut acked);
    assert!(
        !acked.is_empty(),
        "the disk took some writes before it was full"
    );
    assert!(
        c.tmpfs(1).free_bytes() >= RESERVE,
        "the log left the reserve free: {} bytes free",
        c.tmpfs(1).free_bytes()
    );

    // Refused again, definitely (as large as the last one, it needs a new segment too), and
    // nothing of it applied.
    assert_eq!(
        try_put(&c, 1, seq, "refused", &value(0)),
        Err(ErrorCode::NoSpace)
    );
    assert_eq!(c.get(1, 0, "refused", ReadMode::Linearizable), None);

    // The alarm: /health 503 naming it (the admin port's view is at most a loop turn old),
    // /status, the metric, `shoalctl health` exit 1.
    wait_alarm(&c, 1, "no_space");
    let (_, status) = c.http_get(1, "/status").expect("/status");
    let status: serde_json::Value = serde_json::from_str(&status).expect("/status is JSON");
    assert_eq!(status["space"]["alarm"], "no_space", "{status}");
    assert_eq!(c.gauge(1, r#"shoal_space_alarm{alarm="no_space"}"#), 1);
    // The admin view is published every 100 ms: the second refusal may not be in it yet.
    wait_for("both refused writes counted on /metrics", WAIT, || {
        c.gauge(1, "shoal_space_refused_writes_total") >= 2
    });
    let out = c.ctl_at(&[1], &["health"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.out.contains("alarm no_space"), "{out}");

    // Reads go on, on the full node and through the followers, which keep following it.
    check_acked(&c, 1, &acked);
    for id in [2, 3] {
        let s = c.status(id, 0).expect("a follower answers");
        assert_eq!((s.role.as_str(), s.leader), ("follower", 1), "node {id}");
        let (code, body) = health(&c, id);
        assert_eq!(code, 200, "node {id} is healthy: {body}");
    }
    let first = acked.keys().next().unwrap().clone();
    assert_eq!(
        c.get(2, 0, &first, ReadMode::Linearizable).as_ref(),
        acked.get(&first)
    );
    assert!(c.node_mut(1).proc_mut().unwrap().is_running());

    // Space returns: writes are taken again with no one's help, and the alarm clears.
    std::fs::remove_file(&filler).unwrap();
    let v = value(9999);
    wait_for("a write after the space returned", WAIT, || {
        try_put(&c, 1, seq, "after", &v).is_ok()
    });
    acked.insert("after".into(), v);
    wait_for("/health 200 once space returned", WAIT, || {
        health(&c, 1).0 == 200
    });
    assert_eq!(c.gauge(1, r#"shoal_space_alarm{alarm="no_space"}"#), 0);
    assert_eq!(c.get(1, 0, "refused", ReadMode::Linearizable), None);

    // Every acknowledged write survives a crash of the whole cluster.
    for id in [1, 2, 3] {
        c.kill(id);
    }
    c.start_all();
    c.wait_leader(0);
    for id in [1, 2, 3] {
        check_acked(&c, id, &acked);
    }
}

#[test]
fn a_nearly_full_disk_keeps_its_reserve_at_start_and_a_grown_one_is_used_after_a_restart() {
    let mut c = Cluster::builder().voters([1]).args(SMALL_SEGMENTS).build();
    c.on_tmpfs(1, 16 * MIB);
    c.start(1);
    c.wait_leader(0);
    let mut acked = BTreeMap::new();
    for i in 0..4u64 {
        c.put(0, 9, i + 1, &format!("early{i}"), "x");
        acked.insert(format!("early{i}"), b"x".to_vec());
    }
    assert!(c.stop(1).success());

    // Stopped, the disk fills up to half a segment above the reserve: too little for a spare
    // (once the node removed the spare it was preparing when it stopped).
    let leftover: u64 = std::fs::read_dir(c.node(1).dir.join("group-0/log"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    c.tmpfs(1).fill("filler", RESERVE + MIB / 2 - leftover);
    c.start(1);
    c.wait_leader(0);
    let free = c.tmpfs(1).free_bytes();
    assert!(
        free >= RESERVE,
        "starting on a nearly full disk took the reserve: {free} bytes free"
    );
    let seq = fill_until_refused(&c, 1, 5, |i| format!("k{i:04}"), &mut acked);
    // Only a busy log gets a spare: once the writes made it busy, a spare that would eat into
    // the reserve was skipped.
    wait_for("the skipped spare to be counted", WAIT, || {
        c.gauge(1, "shoal_space_spares_skipped_total") >= 1
    });
    assert!(c.tmpfs(1).free_bytes() >= RESERVE);
    assert!(c.node_mut(1).proc_mut().unwrap().is_running());

    // The disk grows under the running node: it takes writes again by itself.
    c.tmpfs(1).resize(48 * MIB);
    wait_for("a write on the grown disk", WAIT, || {
        try_put(&c, 1, seq, "grown", b"yes").is_ok()
    });
    acked.insert("grown".into(), b"yes".to_vec());

    // Restarted on the grown disk, it keeps the reserve and takes many segments of writes.
    assert!(c.stop(1).success());
    c.start(1);
    c.wait_leader(0);
    for i in 0..100u64 {
        let (k, v) = (format!("late{i:03}"), value(i));
        assert_eq!(
            try_put(&c, 1, seq + 1 + i, &k, &v).map(|_| ()),
            Ok(()),
            "{k}"
        );
        acked.insert(k, v);
    }
    assert!(c.tmpfs(1).free_bytes() >= RESERVE);
    assert!(c.stop(1).success());
    c.start(1);
    c.wait_leader(0);
    check_acked(&c, 1, &acked);
}

#[test]
fn a_data_dir_at_its_quota_refuses_writes_until_the_quota_is_raised() {
    let mut c = Cluster::builder()
        .voters([1])
        .args(&["--segment-mb", "1", "--space-recheck-interval", "100ms"])
        .build();
    let quota = |mib: u64| vec!["--space-quota-mb".to_string(), mib.to_string()];
    c.node_mut(1).args = quota(5);
    c.start(1);
    c.wait_leader(0);

    let mut acked = BTreeMap::new();
    let seq = fill_until_refused(&c, 1, 1, |i| format!("k{i:04}"), &mut acked);
    wait_alarm(&c, 1, "quota");
    assert_eq!(c.gauge(1, r#"shoal_space_alarm{alarm="quota"}"#), 1);
    assert_eq!(c.gauge(1, "shoal_space_quota_bytes"), 5 << 20);
    check_acked(&c, 1, &acked);
    // A snapshot is never refused for the quota (it is how a log gives space back).
    let r = c.call(1, 0, Request::Snapshot);
    assert!(matches!(r, Some(Response::Done { .. })), "snapshot: {r:?}");
    assert_eq!(
        try_put(&c, 1, seq, "refused", &value(0)),
        Err(ErrorCode::NoSpace)
    );

    // The operator raises the quota: the node takes writes again, and lost none.
    assert!(c.stop(1).success());
    c.node_mut(1).args = quota(64);
    c.start(1);
    c.wait_leader(0);
    for i in 0..40u64 {
        let (k, v) = (format!("more{i:02}"), value(i));
        assert_eq!(try_put(&c, 1, seq + i, &k, &v).map(|_| ()), Ok(()), "{k}");
        acked.insert(k, v);
    }
    assert_eq!(c.get(1, 0, "refused", ReadMode::Linearizable), None);
    check_acked(&c, 1, &acked);
    wait_for("/health 200 under the raised quota", WAIT, || {
        health(&c, 1).0 == 200
    });
}

/// A port that ran out of descriptors logged `warning` once per burst of failed accepts (a
/// burst ends when an accept succeeds), not once per failure: its metrics `{metric}_failures_
/// total` and `{metric}_failure_bursts_total` count more failures than bursts, and as many
/// bursts as warnings — one, or a few where a descriptor the node freed for a moment let a
/// waiting connection in.
fn logged_once_per_burst(c: &Cluster, warning: &str, metric: &str) {
    let failures = c.gauge(1, &format!("{metric}_failures_total"));
    let bursts = c.gauge(1, &format!("{metric}_failure_bursts_total"));
    let logged = c.node(1).log().matches(warning).count();
    assert!(bursts >= 1, "{metric}: no burst of failed accepts counted");
    assert_eq!(
        logged, bursts,
        "{metric}: {logged} warnings for {bursts} bursts"
    );
    assert!(
        failures > bursts,
        "{metric}: {failures} failed accepts in {bursts} bursts: retries were not counted"
    );
}

#[test]
fn out_of_descriptors_the_client_and_raft_ports_back_off_quietly_and_snapshots_are_retried() {
    let mut c = Cluster::builder()
        .voters([1])
        .args(&["--accept-backoff-max", "50ms"])
        .args(&[
            "--snapshot-entries",
            "10",
            "--snapshot-retry-interval",
            "200ms",
        ])
        .build();
    c.node_mut(1).max_open_files = Some(64);
    c.start(1);
    c.wait_leader(0);
    let addr = c.node(1).client.clone();
    let mut keep = Conn::open(&addr).expect("a first connection");
    let mut seq = 0;
    let mut put = |keep: &mut Conn, key: &str| {
        seq += 1;
        let r = keep
            .call(0, put_request(3, seq, key, b"v"))
            .expect("answer");
        assert!(matches!(r, Response::Written { .. }), "{key}: {r:?}");
    };
    put(&mut keep, "before");

    // Connections until the node runs out of descriptors (the rest wait in the backlog).
    const WARNING: &str = "client port: accepting a connection failed";
    let mut others = Vec::new();
    while !c.node(1).log().contains(WARNING) {
        assert!(others.len() < 200, "200 connections and no EMFILE");
        others.push(Conn::open(&addr).expect("a connection, or a place in the backlog"));
        poll(Duration::from_millis(100), || {
            c.node(1).log().contains(WARNING).then_some(())
        });
    }
    // A few more wait in the backlog: the node's own files open and close (a hard-state save,
    // a snapshot retry), and a descriptor freed for a moment lets one waiting connection in.
    for _ in 0..3 {
        others.push(Conn::open(&addr).expect("a place in the backlog"));
    }

    // Out of descriptors: writes that fit the segment go on (and make automatic snapshots
    // due, which are refused and retried); a snapshot asked for is refused for now, not fatal.
    let snapshot_before = match keep.call(0, Request::Status).expect("status") {
        Response::Status(s) => s.snapshot_index,
        other => panic!("status: {other:?}"),
    };
    for i in 0..30 {
        put(&mut keep, &format!("during{i}"));
    }
    let r = keep
        .call(0, Request::Snapshot)
        .expect("an answer to Snapshot");
    assert!(matches!(r, Response::Unavailable { .. }), "{r:?}");
    // Strangers on the raft port wait in its backlog: its accept loop fails too.
    const RAFT_WARNING: &str = "raft port: accepting a connection failed";
    let raft = c.node(1).raft.clone();
    let strangers: Vec<Conn> = (0..3)
        .map(|_| Conn::open(&raft).expect("a place in the raft port's backlog"))
        .collect();
    wait_for("the raft port's failed accept logged", WAIT, || {
        c.node(1).log().contains(RAFT_WARNING)
    });
    // Time for both accept loops to fail again and again: neither may log each failure.
    std::thread::sleep(Duration::from_secs(1));
    assert!(c.node_mut(1).proc_mut().unwrap().is_running());

    // Descriptors return: a new client is accepted, the log says so once, snapshots work
    // again.
    drop(others);
    wait_for("the client port to accept again", WAIT, || {
        c.status(1, 0).is_some() && c.node(1).log().contains("client port: accepting again")
    });
    logged_once_per_burst(&c, WARNING, "shoal_client_accept");
    // The strangers may have been taken from the backlog and closed (no descriptors to
    // serve them): the next connection shows the raft port accepting again.
    drop(strangers);
    let _late = Conn::open(&raft).expect("a connection to the raft port");
    wait_for("the raft port to accept again", WAIT, || {
        c.node(1).log().contains("raft port: accepting again")
    });
    logged_once_per_burst(&c, RAFT_WARNING, "shoal_raft_accept");
    let (_, metrics) = c.http_get(1, "/metrics").unwrap();
    assert!(
        !metrics.contains("shoal_snapshot_failures_total{group=\"0\"} 0"),
        "the refused snapshots were counted: {metrics}"
    );
    wait_for(
        "an automatic snapshot once descriptors returned",
        WAIT,
        || {
            c.status(1, 0)
                .is_some_and(|s| s.snapshot_index > snapshot_before)
        },
    );
    put(&mut keep, "after");
    for k in ["before", "during29", "after"] {
        assert_eq!(c.get(1, 0, k, ReadMode::Linearizable), Some(b"v".to_vec()));
    }
}
