//! The client library against a mock node: operations, leader redirects, exactly-once retries
//! after a lost answer, Unavailable, timeouts and how each failure is classified, watches that
//! resume, and the lock guard.

use std::time::{Duration, Instant};

use shoal_client::protocol::{ErrorCode, Request, Response, WatchEvent, WriteOp};
use shoal_client::{
    BlockingClient, BlockingLockGuard, Client, ClientConfig, ClientError, ErrorClass, ReadMode,
    WatchItem,
};
use shoal_kv::{KvError, WriteResult};
use shoal_testkit::dead_addr;
use shoal_testkit::mock::{Action, Mock};

fn config(endpoints: &[&str], timeout_ms: u64) -> ClientConfig {
    let mut c = ClientConfig::new(endpoints.iter().map(|s| s.to_string()));
    c.timeout = Duration::from_millis(timeout_ms);
    c.attempt_timeout = Duration::from_millis(200);
    c.connect_timeout = Duration::from_millis(200);
    c
}

fn seq_of(r: &Request) -> Option<(u64, u64)> {
    match r {
        Request::Write { client_id, seq, .. } => Some((*client_id, *seq)),
        _ => None,
    }
}

#[test]
fn operations_and_definite_failures() {
    let mock = Mock::kv();
    let c = BlockingClient::new(config(&[&mock.addr], 2000)).unwrap();
    let i1 = c.put(b"a", b"1").unwrap();
    let node = c.get(b"a", ReadMode::Linearizable).unwrap().unwrap();
    assert_eq!(node.value, b"1");
    assert_eq!(node.create_index, i1);
    assert_eq!(c.get(b"nope", ReadMode::Local).unwrap(), None);

    let e = c.cas(b"a", Some(b"2"), b"3").unwrap_err();
    assert_eq!(e, ClientError::Kv(KvError::CasMismatch));
    assert_eq!(e.class(), ErrorClass::Definite);
    assert_eq!(e.exit_code(), 1);
    c.cas(b"a", Some(b"1"), b"3").unwrap();
    c.cas(b"fresh", None, b"x").unwrap();
    assert_eq!(
        c.cas(b"fresh", None, b"y").unwrap_err().kv(),
        Some(KvError::CasMismatch)
    );
    assert_eq!(
        c.remove(b"missing").unwrap_err().kv(),
        Some(KvError::NotFound)
    );
    assert_eq!(
        c.put(b"no.parent", b"v").unwrap_err().kv(),
        Some(KvError::ParentNotFound)
    );

    c.mkdir(b"dir").unwrap();
    c.put(b"dir.x", b"1").unwrap();
    let out = c.batch_put(&[(b"dir.y", b"2"), (b"dir.z", b"3")]).unwrap();
    assert_eq!(out.results, vec![Ok(()), Ok(())]);
    let names: Vec<Vec<u8>> = c
        .list(b"dir", ReadMode::Linearizable)
        .unwrap()
        .into_iter()
        .map(|n| n.key)
        .collect();
    assert_eq!(
        names,
        vec![b"dir.x".to_vec(), b"dir.y".to_vec(), b"dir.z".to_vec()]
    );
    let got = c
        .batch_get(&[b"dir.x", b"zz"], ReadMode::Linearizable)
        .unwrap();
    assert!(got[0].is_some() && got[1].is_none());
    assert_eq!(c.status().unwrap().leader, 1);

    // Every write of this client carried its session with increasing sequence numbers.
    let seqs: Vec<(u64, u64)> = mock
        .requests()
        .iter()
        .filter_map(|f| seq_of(&f.request))
        .collect();
    assert!(seqs.iter().all(|(id, _)| *id == c.client_id() && *id != 0));
    assert!(seqs.windows(2).all(|w| w[0].1 < w[1].1), "{seqs:?}");

    // A TTL of zero is refused before anything is sent.
    let e = c.put_temp(b"t", b"v", Duration::ZERO).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Usage);
}

/// A follower of cluster `cluster` that answers every request naming node 2 at `leader_addr`
/// as its leader.
fn follower_of(leader_addr: &str, cluster: u64) -> Mock {
    let leader_addr = leader_addr.to_string();
    Mock::start(move |_, _, _| {
        vec![Action::Reply(Response::NotLeader {
            leader: 2,
            leader_addr: Some(leader_addr.clone()),
            cluster,
        })]
    })
}

#[test]
fn follows_not_leader_redirects() {
    let leader = Mock::kv();
    let follower = follower_of(&leader.addr, 7);
    let c = BlockingClient::new(config(&[&follower.addr], 2000)).unwrap();
    c.put(b"k", b"v").unwrap();
    assert_eq!(leader.applied(), 1);
    assert_eq!(follower.count.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Later calls go straight to the leader.
    c.put(b"k", b"w").unwrap();
    assert_eq!(follower.count.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The follower named its cluster: every request after the redirect is meant for it alone
    // (the first went out before any node had named one).
    let clusters: Vec<u64> = follower
        .requests()
        .iter()
        .chain(leader.requests().iter())
        .map(|f| f.cluster)
        .collect();
    assert_eq!(clusters, vec![0, 7, 7], "{clusters:?}");
}

#[test]
fn a_redirect_into_another_cluster_is_refused_there_and_changes_nothing() {
    // A follower of cluster 7 names as its leader an address where a node of cluster 9 now
    // listens (a stale member record, a port reused by another cluster).
    let stranger = Mock::start(|m, f, _| {
        if f.cluster != 0 && f.cluster != 9 {
            vec![Action::Reply(Response::Error {
                code: ErrorCode::WrongCluster,
                kv: None,
                message: format!(
                    "this node belongs to cluster 9, not to cluster {}",
                    f.cluster
                ),
            })]
        } else {
            vec![Action::Reply(m.apply(f))]
        }
    });
    let follower = follower_of(&stranger.addr, 7);
    let c = BlockingClient::new(config(&[&follower.addr], 1500)).unwrap();
    let e = c.put(b"k", b"v").unwrap_err();
    assert_eq!(stranger.applied(), 0, "a write reached another cluster");
    assert!(stranger.count.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(
        e.to_string()
            .contains("belongs to cluster 9, not to cluster 7"),
        "{e}"
    );
    // A client pinned to cluster 9 is served by that node (and never by a node of cluster 7).
    let pinned = BlockingClient::new(config(&[&stranger.addr], 1500).with_cluster(9)).unwrap();
    pinned.put(b"k", b"v").unwrap();
    assert_eq!(stranger.applied(), 1);
}

#[test]
fn tries_next_endpoint_when_the_leader_is_unknown() {
    let lost = Mock::start(|_, _, _| {
        vec![Action::Reply(Response::NotLeader {
            leader: 0,
            leader_addr: None,
            cluster: 7,
        })]
    });
    let good = Mock::kv();
    let dead = dead_addr();
    let c = BlockingClient::new(config(&[&dead, &lost.addr, &good.addr], 3000)).unwrap();
    c.put(b"k", b"v").unwrap();
    assert_eq!(good.applied(), 1);
}

#[test]
fn lost_answer_is_retried_with_the_same_session_and_applied_once() {
    // The first write is applied but its connection closes before the answer goes out.
    let mock = Mock::start(|m, f, n| {
        let r = m.apply(f);
        if n == 0 {
            vec![Action::Close]
        } else {
            vec![Action::Reply(r)]
        }
    });
    let c = BlockingClient::new(config(&[&mock.addr], 3000)).unwrap();
    let index = c.put(b"k", b"v").unwrap();
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "one send and one retry");
    assert_eq!(seq_of(&reqs[0].request), seq_of(&reqs[1].request));
    assert_eq!(mock.applied(), 1, "the retry was deduplicated");
    assert_eq!(index, 1, "the retry got the original answer");
    // The next write gets a new sequence.
    c.put(b"k", b"w").unwrap();
    let reqs = mock.requests();
    assert!(seq_of(&reqs[2].request).unwrap().1 > seq_of(&reqs[0].request).unwrap().1);
    assert_eq!(mock.applied(), 2);
}

#[test]
fn unavailable_is_retried_then_reported_as_not_happened() {
    let flaky = Mock::start(|m, f, n| {
        if n < 2 {
            vec![Action::Reply(Response::Unavailable {
                message: "no quorum".into(),
            })]
        } else {
            vec![Action::Reply(m.apply(f))]
        }
    });
    let c = BlockingClient::new(config(&[&flaky.addr], 3000)).unwrap();
    c.put(b"k", b"v").unwrap();
    assert_eq!(flaky.applied(), 1);

    let down = Mock::start(|_, _, _| {
        vec![Action::Reply(Response::Unavailable {
            message: "no quorum".into(),
        })]
    });
    let c = BlockingClient::new(config(&[&down.addr], 400)).unwrap();
    let started = Instant::now();
    let e = c.put(b"k", b"v").unwrap_err();
    assert!(matches!(e, ClientError::Unavailable { .. }), "{e}");
    assert_eq!(e.exit_code(), 4);
    assert!(e.to_string().contains("no quorum"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn silent_node_makes_a_write_indeterminate_and_a_read_unavailable() {
    let silent = Mock::start(|_, _, _| vec![Action::Ignore]);
    let c = BlockingClient::new(config(&[&silent.addr], 500)).unwrap();
    let e = c.put(b"k", b"v").unwrap_err();
    assert!(matches!(e, ClientError::Indeterminate { .. }), "{e}");
    assert_eq!(e.exit_code(), 3);
    // Every attempt of the write carried the same session.
    let seqs: Vec<_> = silent
        .requests()
        .iter()
        .filter_map(|f| seq_of(&f.request))
        .collect();
    assert!(seqs.len() >= 2, "{seqs:?}");
    assert!(seqs.iter().all(|s| *s == seqs[0]));

    let e = c.get(b"k", ReadMode::Linearizable).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Unavailable, "{e}");
}

#[test]
fn unreachable_cluster_is_unavailable() {
    let c = BlockingClient::new(config(&[&dead_addr(), &dead_addr()], 300)).unwrap();
    let e = c.put(b"k", b"v").unwrap_err();
    assert!(matches!(e, ClientError::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("cannot connect"), "{e}");
    assert!(Client::new(ClientConfig::new(Vec::<String>::new())).is_err());
}

#[test]
fn server_errors_are_classified() {
    use shoal_client::protocol::ErrorCode;
    let mock = Mock::start(|_, f, _| {
        let (code, message) = match &f.request {
            Request::Snapshot => (ErrorCode::Internal, "disk full"),
            _ => (ErrorCode::BadRequest, "key too long"),
        };
        vec![Action::Reply(Response::Error {
            code,
            kv: None,
            message: message.into(),
        })]
    });
    let c = BlockingClient::new(config(&[&mock.addr], 1000)).unwrap();
    assert_eq!(c.snapshot().unwrap_err().class(), ErrorClass::Definite);
    assert_eq!(c.put(b"k", b"v").unwrap_err().class(), ErrorClass::Usage);
}

#[test]
fn over_limit_answers_are_their_own_usage_error() {
    use shoal_client::protocol::ErrorCode;
    let mock = Mock::start(|_, _, _| {
        vec![Action::Reply(Response::Error {
            code: ErrorCode::LimitExceeded,
            kv: None,
            message: "a BatchGet of 20000 keys passes the limit of 1024 keys per request \
                      (shoald --client-max-batch-keys); split it"
                .into(),
        })]
    });
    let c = BlockingClient::new(config(&[&mock.addr], 1000)).unwrap();
    let e = c.get(b"k", ReadMode::Local).unwrap_err();
    assert!(matches!(e, ClientError::OverLimit { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Usage);
    assert_eq!(e.name(), "LimitExceeded");
    assert!(e.to_string().contains("--client-max-batch-keys"), "{e}");
    // Refused at once: a limit is not retried.
    assert_eq!(mock.requests().len(), 1);
}

/// A node over its connection limit says so in a frame of id 0 before anything was read: the
/// client retries elsewhere, and a write that met only such refusals certainly did not happen.
#[test]
fn a_refused_connection_is_retried_and_its_reason_reported() {
    let too_many = || Response::Unavailable {
        message: "this node serves 4096 client connections, its limit".into(),
    };
    let full = Mock::start(move |_, _, _| vec![Action::Frame(0, too_many()), Action::Close]);
    let c = BlockingClient::new(config(&[&full.addr], 600)).unwrap();
    let e = c.put(b"k", b"v").unwrap_err();
    assert!(matches!(e, ClientError::Unavailable { .. }), "{e:?}");
    assert!(
        e.to_string().contains("refused the connection") && e.to_string().contains("limit"),
        "{e}"
    );
    // With another node to go to, the write is done there, once.
    let good = Mock::kv();
    let c = BlockingClient::new(config(&[&full.addr, &good.addr], 3000)).unwrap();
    c.put(b"k", b"v").unwrap();
    assert_eq!(good.applied(), 1);
}

/// A watch the node cut because its client fell behind goes on by itself from the index the
/// node named, without a gap and without an error item.
#[test]
fn a_watch_cut_for_lagging_resumes_from_the_index_named() {
    let mock = Mock::start(|_, f, _| match f.request {
        Request::Watch { from_index: 5, .. } => started(
            &[(5, "a"), (6, "a")],
            // Index 7 changed nothing watched: the next index not sent is 8.
            [Action::Push(Response::WatchLagged { next: 8 })],
        ),
        Request::Watch { from_index: 8, .. } => started(&[(8, "a")], []),
        _ => vec![Action::Ignore],
    });
    let c = Client::new(config(&[&mock.addr], 3000)).unwrap();
    let mut w = c.watch(&["a"], 5);
    let mut got = Vec::new();
    for _ in 0..3 {
        match w.next_blocking().unwrap().unwrap() {
            WatchItem::Event(e) => got.push(e.index),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, vec![5, 6, 8]);
    let froms: Vec<u64> = mock
        .requests()
        .iter()
        .filter_map(|r| match r.request {
            Request::Watch { from_index, .. } => Some(from_index),
            _ => None,
        })
        .collect();
    assert_eq!(froms, vec![5, 8]);
}

/// A node's answer to a watch: started, a put event of each `(index, key)`, then `then`.
fn started(events: &[(u64, &str)], then: impl IntoIterator<Item = Action>) -> Vec<Action> {
    let pushes = events.iter().map(|&(i, k)| Action::Push(event(i, k)));
    std::iter::once(Action::Reply(Response::WatchStarted))
        .chain(pushes)
        .chain(then)
        .collect()
}

fn event(index: u64, key: &str) -> Response {
    Response::Event(WatchEvent {
        index,
        kind: "put".into(),
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
    })
}

#[test]
fn watch_resumes_after_reconnect_without_gaps_or_duplicates() {
    let mock = Mock::start(|_, f, _| {
        let Request::Watch { from_index, .. } = f.request else {
            return vec![Action::Reply(Response::Done { index: 0 })];
        };
        if from_index == 3 {
            // First connection: a batch at index 3 is cut after its first event.
            started(&[(3, "a")], [Action::Close])
        } else {
            vec![Action::Ignore]
        }
    });
    // The resumed watch asks from index 3 again; the node replays index 3 fully and goes on.
    let replay = Mock::start(|_, f, _| match f.request {
        Request::Watch { from_index: 3, .. } => started(&[(3, "a"), (3, "b"), (4, "c")], []),
        _ => vec![Action::Ignore],
    });
    let c = Client::new(config(&[&mock.addr, &replay.addr], 3000)).unwrap();
    let mut w = c.watch(&["a"], 3);
    let mut got = Vec::new();
    for _ in 0..3 {
        match w.next_blocking().unwrap().unwrap() {
            WatchItem::Event(e) => got.push((e.index, String::from_utf8(e.key).unwrap())),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        got,
        vec![
            (3, "a".to_string()),
            (3, "b".to_string()),
            (4, "c".to_string())
        ]
    );
}

#[test]
fn watch_reports_compaction_and_goes_on_from_the_oldest_index() {
    let mock = Mock::start(|_, f, _| match f.request {
        Request::Watch { from_index: 10, .. } => started(&[(10, "k")], []),
        Request::Watch { .. } => vec![Action::Reply(Response::WatchCompacted { oldest: 10 })],
        _ => vec![Action::Ignore],
    });
    let c = Client::new(config(&[&mock.addr], 3000)).unwrap();
    let mut w = c.watch(&["k"], 2);
    assert_eq!(
        w.next_blocking().unwrap().unwrap(),
        WatchItem::Compacted { oldest: 10 }
    );
    match w.next_blocking().unwrap().unwrap() {
        WatchItem::Event(e) => assert_eq!(e.index, 10),
        other => panic!("{other:?}"),
    }
}

/// A mock store, and a client's guard of lock `L` taken there with `lease_ms`.
fn holding_lock(lease_ms: u64) -> (Mock, BlockingLockGuard) {
    let mock = Mock::kv();
    let c = BlockingClient::new(config(&[&mock.addr], 2000)).unwrap();
    let guard = c
        .lock(b"L", Duration::from_millis(lease_ms), Duration::ZERO)
        .unwrap();
    (mock, guard)
}

#[test]
fn lock_guard_renews_and_releases() {
    let (mock, guard) = holding_lock(150);
    assert!(guard.fence() > 0);
    std::thread::sleep(Duration::from_millis(400));
    let renewals = writes_seen(&mock, |op| matches!(op, WriteOp::UpdateLockLease { .. }));
    assert!(renewals >= 2, "renewed {renewals} times");
    assert!(!guard.is_lost());

    // Another client cannot take it meanwhile.
    let other = BlockingClient::new(config(&[&mock.addr], 2000)).unwrap();
    let e = other
        .lock(b"L", Duration::from_secs(1), Duration::ZERO)
        .unwrap_err();
    assert_eq!(e.kv(), Some(KvError::LockHeld));

    guard.release().unwrap();
    assert!(!mock
        .state
        .lock()
        .unwrap()
        .nodes
        .contains_key(b"L".as_slice()));
    let g2 = other
        .lock(b"L", Duration::from_secs(1), Duration::ZERO)
        .unwrap();
    assert!(g2.fence() > 0);
    drop(g2);
    // Dropping releases in the background.
    let deadline = Instant::now() + Duration::from_secs(2);
    while mock
        .state
        .lock()
        .unwrap()
        .nodes
        .contains_key(b"L".as_slice())
    {
        assert!(Instant::now() < deadline, "drop did not release the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How many writes of the kind `is` picks `mock` received.
fn writes_seen(mock: &Mock, is: fn(&WriteOp) -> bool) -> usize {
    let requests = mock.requests();
    let ops = requests.iter().filter_map(|f| match &f.request {
        Request::Write { op, .. } => Some(op),
        _ => None,
    });
    ops.filter(|op| is(op)).count()
}

/// Wait (up to a generous bound) until `done`.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait until `lost()`, then check that no renewal (a write `is` picks) follows; returns
/// how many were sent.
fn renewing_stops_once_lost(
    mock: &Mock,
    is: fn(&WriteOp) -> bool,
    lost: impl Fn() -> bool,
) -> usize {
    wait_for("the refused renewal was not noticed", lost);
    let sent = writes_seen(mock, is);
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(
        writes_seen(mock, is),
        sent,
        "renewing went on after a refusal"
    );
    sent
}

#[test]
fn a_lock_whose_renewal_is_refused_is_lost_and_renewing_stops() {
    let (mock, guard) = holding_lock(60);
    let renewal = |op: &WriteOp| matches!(op, WriteOp::UpdateLockLease { .. });
    wait_for("no renewal was sent", || writes_seen(&mock, renewal) >= 1);
    assert!(!guard.is_lost());
    // The lease ran out and the lock moved on: the next renewal is refused (NotLockOwner).
    mock.state.lock().unwrap().nodes.remove(b"L".as_slice());
    renewing_stops_once_lost(&mock, renewal, || guard.is_lost());
}

#[test]
fn a_lease_keeper_renews_until_a_keep_alive_is_refused() {
    let mock = Mock::start(|m, f, _| match &f.request {
        Request::Write {
            op: WriteOp::LeaseKeepAlive { id },
            ..
        } => {
            let mut s = m.state.lock().unwrap();
            s.index += 1;
            // The first four keep-alives find the lease; then it has ended.
            let result = if s.index <= 4 {
                WriteResult::Lease {
                    id: *id,
                    ttl_ms: 60,
                    deadline_ms: 1_000 + s.index,
                }
            } else {
                WriteResult::Failed(KvError::LeaseNotFound)
            };
            vec![Action::Reply(Response::Written {
                index: s.index,
                result,
            })]
        }
        _ => vec![Action::Reply(m.apply(f))],
    });
    let c = Client::new(config(&[&mock.addr], 2000)).unwrap();
    let keeper = smol::block_on(c.keep_alive(7)).unwrap();
    assert_eq!(keeper.lease().id, 7);
    let keep_alive = |op: &WriteOp| matches!(op, WriteOp::LeaseKeepAlive { id: 7 });
    let sent = renewing_stops_once_lost(&mock, keep_alive, || keeper.is_lost());
    assert_eq!(sent, 5, "renewed until the first refusal");
}

#[test]
fn pipelined_async_calls_share_one_connection() {
    let mock = Mock::kv();
    let c = Client::new(config(&[&mock.addr], 3000)).unwrap();
    let results = smol::block_on(async {
        let calls: Vec<_> = (0..20)
            .map(|i| {
                let c = c.clone();
                smol::spawn(async move { c.put(format!("k{i}"), "v").await })
            })
            .collect();
        let mut out = Vec::new();
        for call in calls {
            out.push(call.await);
        }
        out
    });
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(mock.applied(), 20);
}
