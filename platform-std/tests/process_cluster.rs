//! Real `shoald` processes on 127.0.0.1, driven through the client protocol: writes and reads,
//! `kill -9` of the leader with every acknowledged write surviving, restart and catch-up, a
//! paused leader replaced, a node joining (`--join`) and being promoted, removal, leader
//! transfer, a second group, a corrupt segment refused at start, reads counted by group and
//! mode where they were served, and a no-flags single-node dev server with SIGTERM. The processes run under `shoal-testkit`, which cleans them up however a
//! test ends.
#![cfg(unix)]

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_client::protocol::{self, MemberChange, ReadMode, Request, Response};
use shoal_testkit::client::{self, encode_request, Conn};
use shoal_testkit::{bin, free_addr, poll, wait_for, Cluster, Proc, WAIT};

#[test]
fn three_nodes_survive_kill_restart_transfer_groups_and_corruption() {
    let mut c = Cluster::builder().build();
    c.start_all();
    let leader = c.wait_leader(0);

    // Writes through any node (followers redirect), then reads in every mode.
    for i in 0..20u64 {
        c.put(0, 42, i + 1, &format!("k{i}"), &format!("v{i}"));
    }
    let follower = [1u64, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    c.assert_reads(follower, 0, "k7", "v7");
    assert_eq!(
        c.get(leader, 0, "k8", ReadMode::Lease),
        Some(b"v8".to_vec())
    );
    // A write to a follower names the leader's client address.
    let write = client::put_request(0, 0, "x", b"y");
    match c.call(follower, 0, write) {
        Some(Response::NotLeader {
            leader: l,
            leader_addr: Some(a),
            ..
        }) => {
            assert_eq!(l, leader);
            assert_eq!(a, c.node(leader).client);
        }
        other => panic!("write on a follower: {other:?}"),
    }
    // A retried write (same session and seq) is answered from the dedup table.
    c.put(0, 42, 20, "k19", "v19");

    // kill -9 the leader: a new leader, nothing acknowledged lost.
    c.kill(leader);
    let new_leader = c.wait_leader(0);
    assert_ne!(new_leader, leader);
    for i in 0..20u64 {
        assert_eq!(
            c.get_any(0, &format!("k{i}"), ReadMode::Linearizable),
            Some(format!("v{i}").into_bytes()),
            "k{i} after the leader died"
        );
    }
    for i in 20..25u64 {
        c.put(0, 42, i + 1, &format!("k{i}"), &format!("v{i}"));
    }

    // The killed node restarts and catches up.
    c.start(leader);
    wait_for("the restarted node to catch up", WAIT, || {
        c.get(leader, 0, "k24", ReadMode::Local) == Some(b"v24".to_vec())
    });

    // Leader transfer to a follower.
    let leader = c.wait_leader(0);
    let target = [1u64, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    let r = c.call(leader, 0, Request::TransferLeader { to: target });
    assert!(matches!(r, Some(Response::Done { .. })), "transfer: {r:?}");
    c.wait_role(target, 0, "leader");

    // A second group on the live nodes, defined once for the cluster.
    let create = Request::GroupCreate {
        members: vec![1, 2, 3],
    };
    let r = c.call_any(7, create, "group create");
    assert!(matches!(r, Response::Done { .. }), "group create: {r:?}");
    c.wait_leader(7);
    c.put(7, 43, 1, "g7key", "in-group-7");
    c.assert_reads(1, 7, "g7key", "in-group-7");
    assert_eq!(c.get(1, 0, "g7key", ReadMode::Linearizable), None);
    match c.call(1, 0, Request::GroupList) {
        Some(Response::Groups(g)) => assert_eq!(g, vec![0, 7]),
        other => panic!("group list: {other:?}"),
    }

    // Admin port. Health turns 200 once every group on the node knows its leader.
    c.wait_healthy(target);
    let (code, body) = c.http_get(target, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(body.contains("shoal_fsync_seconds_bucket"), "{body}");
    assert!(
        body.contains("shoal_dropped_messages_total{group=\"0\"}"),
        "{body}"
    );

    // Corruption in a stopped node's segment stops it at start, naming the spot.
    let victim = [1u64, 2, 3].into_iter().find(|&i| i != target).unwrap();
    c.kill(victim);
    let seg = c
        .node(victim)
        .segments(0)
        .into_iter()
        .next()
        .expect("a segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    let hdr = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize + 8;
    let first = u32::from_le_bytes(bytes[hdr..hdr + 4].try_into().unwrap()) as usize + 8;
    let at = hdr + first / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    c.start(victim);
    let status = c.wait_exit(victim, WAIT);
    assert!(!status.success());
    let err = c.node(victim).log();
    let name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        err.contains("corrupt") && err.contains(&name) && err.contains("offset"),
        "{err}"
    );
}

/// A paused (SIGSTOP) leader is replaced; resumed, it learns of the new term and follows,
/// holding the writes made while it was frozen.
#[test]
fn reads_are_counted_by_group_and_mode_on_the_node_that_served_them() {
    let mut c = Cluster::builder().build();
    c.start_all();
    let leader = c.wait_leader(0);
    c.put(0, 42, 1, "k", "v");
    let follower = [1u64, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    let series = |mode: &str| format!("shoal_reads_total{{group=\"0\",mode=\"{mode}\"}}");
    let count = |id: u64, mode: &str| c.metric(id, &series(mode));
    let before = |id: u64| ["linearizable", "lease", "local"].map(|m| count(id, m));
    let (on_leader, on_follower) = (before(leader), before(follower));
    let (at_leader, at_follower) = (&c.node(leader).client, &c.node(follower).client);
    for _ in 0..5 {
        client::get(&[at_leader], 0, "k", ReadMode::Linearizable);
        client::get(&[at_follower], 0, "k", ReadMode::Local);
    }
    // (The admin view is published every 100 ms.)
    wait_for(
        "5 ReadIndex reads on the leader, 5 local ones on the follower",
        WAIT,
        || {
            count(leader, "linearizable") >= on_leader[0] + 5
                && count(follower, "local") >= on_follower[2] + 5
        },
    );
    assert_eq!(
        count(leader, "local"),
        on_leader[2],
        "the leader served no local read"
    );
    assert_eq!(count(follower, "linearizable"), on_follower[0]);
    // A lease read is counted as one once the leader holds its lease (before that it goes
    // through a ReadIndex round and is counted so).
    wait_for("a lease read served under the lease", WAIT, || {
        client::get(&[at_leader], 0, "k", ReadMode::Lease);
        count(leader, "lease") > on_leader[1]
    });
    assert_eq!(
        count(follower, "lease"),
        0,
        "the follower served no lease read"
    );
}

#[test]
fn a_paused_leader_is_replaced_and_follows_when_resumed() {
    let mut c = Cluster::builder().build();
    let old = c.start_serving(5);
    c.pause(old);
    let new = c.wait_leader(0);
    assert_ne!(new, old);
    c.put(0, 5, 2, "during", "pause");
    c.resume(old);
    c.wait_role(old, 0, "follower");
    c.assert_reads(old, 0, "during", "pause");
}

#[test]
fn no_flags_single_node_dev_server_serves_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    // No flags at all. If someone else on this machine holds the default ports, move this
    // server with SHOAL_* variables (still no flags) rather than talk to a stranger.
    let defaults = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"];
    let mut cmd = Command::new(bin("shoald"));
    let [client, admin] = if defaults.iter().all(|a| TcpListener::bind(a).is_ok()) {
        [defaults[1].to_string(), defaults[2].to_string()]
    } else {
        eprintln!("default ports busy; moving the dev server with SHOAL_* variables");
        let [raft, client, admin] = [free_addr(), free_addr(), free_addr()];
        cmd.env("SHOAL_RAFT_ADDR", raft)
            .env("SHOAL_CLIENT_ADDR", &client)
            .env("SHOAL_ADMIN_ADDR", &admin);
        [client, admin]
    };
    cmd.current_dir(tmp.path()).env_remove("RUST_LOG");
    let mut p = Proc::spawn("the dev server", cmd, &tmp.path().join("stderr.log"));
    wait_for("a healthy dev server", WAIT, || {
        matches!(client::http_get(&admin, "/health"), Some((200, _)))
    });
    client::put(&[&client], 0, 7, 1, "name", "shoal");
    assert_eq!(
        client::get(&[&client], 0, "name", ReadMode::Linearizable),
        Some(b"shoal".to_vec())
    );
    assert!(tmp.path().join("shoal-data").join("identity").exists());
    let st = p.stop();
    assert!(st.success(), "exit after SIGTERM: {st:?}\n{}", p.log());
}

/// A fourth node started empty with `--join` is added as an observer, catches up, is promoted,
/// and an old voter is removed; writes go on through the new configuration.
#[test]
fn a_joining_node_is_added_promoted_and_an_old_one_removed() {
    let mut c = Cluster::builder().spares([4]).build();
    c.start_all();
    c.wait_leader(0);
    c.put(0, 42, 1, "k24", "v24");
    // A fourth node joins as observer and is promoted; then an old node is removed.
    c.start_joining(4);
    let voters = c.clients_of(&[1, 2, 3]);
    let add = Request::ChangeMembers(MemberChange::Add {
        id: 4,
        raft_addr: c.node(4).raft.clone(),
        observer: false,
    });
    let r = client::call_any(&voters, 0, add, "add node 4");
    assert!(matches!(r, Response::Done { .. }), "add node 4: {r:?}");
    c.assert_reads(4, 0, "k24", "v24");
    let leader = c.wait_leader(0);
    let s = c.status(leader, 0).unwrap();
    let m4 = s.members.iter().find(|m| m.id == 4).expect("node 4 listed");
    assert_eq!(m4.role, "voter", "{s:?}");
    let victim = [1u64, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    let remove = Request::ChangeMembers(MemberChange::Remove { id: victim });
    let r = client::call_any(&voters, 0, remove, "remove");
    assert!(matches!(r, Response::Done { .. }), "remove {victim}: {r:?}");
    let s = c.status(leader, 0).unwrap();
    assert!(s.members.iter().all(|m| m.id != victim), "{s:?}");
    c.kill(victim);
    c.put(0, 42, 26, "after-remove", "ok");
}

#[test]
fn a_client_that_leaves_its_answers_unread_is_not_read_either_and_bad_frames_are_refused() {
    const OUT_HIGH_WATER: usize = 4 << 20;
    const READ_BUFFER: usize = 64 << 10;
    const N: u64 = 100_000;
    const PENDING: &str = "shoal_client_answer_bytes_pending";
    let mut c = Cluster::builder().voters([1]).build();
    c.start(1);
    c.wait_leader(0);
    let value = "v".repeat(1024);
    c.put(0, 7, 1, "big", &value);

    // 100 000 pipelined reads of a 1 KiB value (~100 MiB of answers), none of them read yet.
    let mut burst = Vec::new();
    for id in 1..=N {
        let get = Request::Get {
            key: b"big".to_vec(),
            mode: ReadMode::Lease,
        };
        encode_request(id, 0, get, &mut burst);
    }
    let request_len = burst.len() / N as usize;
    let mut conn = Conn::open(&c.node(1).client).unwrap();
    let mut w = conn.stream().try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&burst));
    // The server answers until a connection holds 4 MiB of unread answers, then sets its
    // requests aside and stops reading it: one answer more at most.
    let answer_len = value.len() + 64;
    let bound = OUT_HIGH_WATER + answer_len;
    let (mut peak, mut stable_since, mut last) = (0, Instant::now(), usize::MAX);
    let settled = poll(WAIT, || {
        let pending = c.gauge(1, PENDING);
        peak = peak.max(pending);
        if pending != last {
            (last, stable_since) = (pending, Instant::now());
        }
        (pending > OUT_HIGH_WATER && stable_since.elapsed() > Duration::from_millis(500))
            .then_some(())
    });
    assert!(
        settled.is_some(),
        "unread answers never settled above the mark: now {last}, peak {peak}"
    );
    assert!(
        peak <= bound,
        "unread answers reached {peak} bytes; the bound is {bound}"
    );
    assert!(c.gauge(1, "shoal_client_requests_queued") <= READ_BUFFER / request_len + 1);
    // Reading the answers lets the rest of the burst in; every read is answered, in order.
    for id in 1..=N {
        let f = conn.next_frame().unwrap();
        assert_eq!(f.id, id);
        match f.response {
            Response::Node { node: Some(n), .. } => assert_eq!(n.value.len(), value.len()),
            other => panic!("answer {id}: {other:?}"),
        }
    }
    writer.join().unwrap().unwrap();
    wait_for("the answers to be taken", WAIT, || c.gauge(1, PENDING) == 0);

    // A frame that fails its checksum is answered with what was wrong, then the connection is
    // closed (the stream is out of step); the server goes on serving everyone else.
    let mut bad = Vec::new();
    encode_request(9, 0, Request::Status, &mut bad);
    let last_byte = bad.len() - 1;
    bad[last_byte] ^= 0xff;
    let mut b = Conn::open(&c.node(1).client).unwrap();
    b.send_raw(&bad).unwrap();
    let f = b.next_frame().unwrap();
    match f.response {
        Response::Error { code, message, .. } => {
            assert_eq!(code, protocol::ErrorCode::BadRequest);
            assert!(message.contains("request frame refused"), "{message}");
            assert!(message.contains("CRC"), "{message}");
        }
        other => panic!("bad frame answered with {other:?}"),
    }
    assert_eq!(
        b.next_frame().map_err(|e| e.kind()).unwrap_err(),
        std::io::ErrorKind::UnexpectedEof
    );
    c.assert_reads(1, 0, "big", &value);
    drop((conn, b));
    wait_for("closed connections to be uncounted", WAIT, || {
        c.gauge(1, "shoal_client_connections") == 0
    });
}

/// A request names the cluster it is meant for: a node of another cluster refuses it and
/// changes nothing (a client sent there by a stale member record or a reused port), and a
/// client of the previous protocol version is told which version the node speaks.
#[test]
fn a_request_for_another_cluster_or_an_old_protocol_is_refused_in_words_and_changes_nothing() {
    let mut c = Cluster::builder()
        .voters([1])
        .cluster_id(5)
        .fsync("never")
        .election_timeout_ms(300)
        .build();
    c.start(1);
    c.wait_leader(0);
    let addr = c.node(1).client.clone();
    let put = |key: &str| client::put_request(0, 0, key, b"v");
    let mut conn = Conn::open(&addr).expect("connect");
    let mut out = Vec::new();
    let frame = protocol::RequestFrame::new(1, 0, put("elsewhere")).for_cluster(9);
    protocol::encode(&frame, &mut out).unwrap();
    conn.send_raw(&out).unwrap();
    assert_refused(
        &mut conn,
        protocol::ErrorCode::WrongCluster,
        "belongs to cluster 5, not to cluster 9",
    );
    // The connection stays usable; the refused write left nothing, one for cluster 5 is done.
    assert_eq!(c.get(1, 0, "elsewhere", ReadMode::Linearizable), None);
    out.clear();
    let frame = protocol::RequestFrame::new(2, 0, put("here")).for_cluster(5);
    protocol::encode(&frame, &mut out).unwrap();
    conn.send_raw(&out).unwrap();
    let answer = conn.next_frame().expect("an answer").response;
    assert!(matches!(answer, Response::Written { .. }), "{answer:?}");
    // shoalctl pinned to another cluster is refused the same way.
    let o = c.ctl(&["--cluster-id", "9", "--timeout", "1s", "put", "pinned", "v"]);
    assert_ne!(o.code, 0, "{o}");
    assert!(
        o.err.contains("belongs to cluster 5, not to cluster 9"),
        "{o}"
    );
    c.ctl(&["--cluster-id", "5", "put", "pinned", "v"]).ok();

    // A frame of protocol version 1 (no cluster field): answered with the versions, closed.
    let mut old = Vec::new();
    protocol::encode(&(1u16, 3u64, 0u32, Request::Status), &mut old).unwrap();
    let mut conn = Conn::open(&addr).expect("connect");
    conn.send_raw(&old).unwrap();
    assert_refused(
        &mut conn,
        protocol::ErrorCode::UnsupportedVersion,
        "protocol version 1 is not supported; this server speaks 2",
    );
    conn.assert_closed_within(Duration::from_secs(5));
}

/// The next answer on `conn` is an error of `code` whose message says `says`.
fn assert_refused(conn: &mut Conn, code: protocol::ErrorCode, says: &str) {
    match conn.next_frame().expect("an answer").response {
        Response::Error {
            code: got, message, ..
        } => {
            assert_eq!(got, code, "{message}");
            assert!(message.contains(says), "{message}");
        }
        other => panic!("expected a refusal: {other:?}"),
    }
}

/// A node tells clients the address they reach it at: listening on 0.0.0.0 it advertises
/// `--advertise-client-addr`; and a member whose record in group 0 names another client
/// address than its own (an operator's mistake when adding it, or an implied raft port + 1
/// that is not its client port) says so in its log, naming both.
#[test]
fn the_advertised_client_address_is_the_one_status_records_and_redirects_name() {
    let mut c = Cluster::builder()
        .voters([1])
        .spares([2])
        .fsync("never")
        .election_timeout_ms(300)
        .build();
    let n1 = c.node(1);
    let port = n1.client.rsplit_once(':').unwrap().1.to_string();
    let env = c.root().join("node1.env");
    std::fs::write(
        &env,
        format!(
            "SHOAL_NODE_ID=1\nSHOAL_DATA_DIR={}\nSHOAL_RAFT_ADDR={}\nSHOAL_CLIENT_ADDR=0.0.0.0:{port}\n\
             SHOAL_ADVERTISE_CLIENT_ADDR={}\nSHOAL_ADMIN_ADDR={}\nSHOAL_INITIAL_MEMBERS=1={}/{}\n\
             SHOAL_FSYNC=never\nSHOAL_ELECTION_TIMEOUT=300\n",
            n1.dir.display(),
            n1.raft,
            n1.client,
            n1.admin,
            n1.raft,
            n1.client
        ),
    )
    .unwrap();
    c.start_from_env_file(1, &env);
    c.wait_leader(0);
    match client::call(&c.node(1).client, 0, Request::NodeStatus) {
        Some(Response::NodeStatus(s)) => assert_eq!(s.client_addr, c.node(1).client),
        other => panic!("node status: {other:?}"),
    }
    assert!(
        c.node(1).log().contains("(advertised as 127.0.0.1:"),
        "{}",
        c.node(1).log()
    );

    // Node 2 joins, added with a client address where it does not listen.
    c.start_joining(2);
    let add = Request::ChangeMembers(MemberChange::Add {
        id: 2,
        raft_addr: format!("{}/{}", c.node(2).raft, free_addr()),
        observer: false,
    });
    let r = client::call_any(&c.clients_of(&[1]), 0, add, "add node 2");
    assert!(matches!(r, Response::Done { .. }), "add node 2: {r:?}");
    let own = c.node(2).client.clone();
    wait_for("node 2 to notice its record", WAIT, || {
        c.node(2)
            .log()
            .contains(&format!("but this node serves clients at {own}"))
    });
    // Node 2 redirects a write to node 1 at its advertised address, not its 0.0.0.0 listen
    // address (node 1's own record, which node 2 has applied by now).
    let write = client::put_request(0, 0, "x", b"y");
    match client::call(&own, 0, write) {
        Some(Response::NotLeader {
            leader: 1,
            leader_addr: Some(a),
            ..
        }) => assert_eq!(a, c.node(1).client),
        other => panic!("a write on node 2: {other:?}"),
    }
}
