//! Mutual TLS on the raft port with real processes and certificates made in the test: members
//! bound to the node id in their certificate, impostors (plaintext, another CA, expired, a
//! valid certificate of another node) refused, logged and counted while the cluster serves on,
//! and certificates re-read on SIGHUP.
#![cfg(unix)]

use shoal_client::protocol::ReadMode;
use shoal_core::message::{Append, Message};
use shoal_core::wire::{self, Body};
use shoal_testkit::client::Conn;
use shoal_testkit::peer::{Identity, PeerLink};
use shoal_testkit::{wait_for, CertPair, Certs, Cluster, WAIT};

/// A running three-node cluster with mutual TLS between members, and its leader.
fn tls_cluster() -> (Cluster, u64) {
    let mut c = Cluster::builder().peer_tls().build();
    let leader = c.start_serving(1);
    (c, leader)
}

fn impostor(node_id: u64) -> Identity {
    Identity {
        cluster_id: 1,
        node_id,
        members: vec![1, 2, 3],
    }
}

/// The answer of a dial was a refusal (or the node closed the connection).
fn refused(answer: std::io::Result<(PeerLink, Vec<u8>)>) -> bool {
    match answer {
        Err(_) => true,
        Ok((_, frame)) => matches!(
            wire::decode(&frame).map(|(f, _)| f.body),
            Ok(Body::HelloRefused(_))
        ),
    }
}

/// How far above the cluster's term forged frames claim to be.
const FORGED_TERMS: u64 = 5;

fn term(c: &Cluster, id: u64) -> u64 {
    c.status(id, 0).expect("status").term
}

/// No node took the forged term ([`FORGED_TERMS`] above `before`), and the cluster takes
/// and serves a write. (A natural election on a loaded machine may still move the term by
/// one or two.)
fn unaffected(c: &Cluster, before: u64, client_id: u64, key: &str) {
    let leader = c.wait_leader(0);
    for id in c.ids() {
        let t = term(c, id);
        assert!(
            t < before + FORGED_TERMS,
            "node {id} is in term {t}, a forged one"
        );
    }
    assert!(term(c, leader) < before + FORGED_TERMS);
    c.put(0, client_id, 1, key, "v");
    assert_eq!(
        c.get_any(0, key, ReadMode::Linearizable).as_deref(),
        Some(&b"v"[..])
    );
}

#[test]
fn members_with_mutual_tls_take_writes_and_survive_a_leader_kill() {
    let (mut c, leader) = tls_cluster();
    c.kill(leader);
    let next = c.wait_leader(0);
    assert_ne!(next, leader);
    c.put(0, 1, 2, "after", "2");
    assert_eq!(
        c.get_any(0, "before", ReadMode::Linearizable).as_deref(),
        Some(&b"1"[..])
    );
    let log = c.node(next).log();
    assert!(log.contains("raft port mutual TLS"), "{log}");
}

#[test]
fn a_valid_certificate_of_node_2_cannot_speak_for_node_3() {
    let (c, leader) = tls_cluster();
    // Any node but 2 itself.
    let target = 1;
    let before = term(&c, leader);
    let certs = c.certs().expect("peer TLS").clone();
    let node2 = certs.node(1, 2);
    // Node 2's certificate, a Hello that says node 3.
    let answer = PeerLink::dial_tls(
        &impostor(3),
        target,
        &c.node(target).raft,
        &node2,
        &certs.ca(),
    );
    assert!(
        refused(answer),
        "a Hello for node 3 on node 2's certificate"
    );
    wait_for("the refusal counted", WAIT, || {
        c.gauge(target, "shoal_peer_identity_refused_total") >= 1
    });
    assert!(c
        .node(target)
        .log()
        .contains("its Hello says node 3, but its certificate names node 2"));
    // Node 2's certificate and a Hello of node 2, then a heartbeat of a higher term that
    // claims to come from node 3: the connection is closed before the frame reaches Raft.
    let (mut link, answer) = PeerLink::dial_tls(
        &impostor(2),
        target,
        &c.node(target).raft,
        &node2,
        &certs.ca(),
    )
    .expect("node 2 passes its own handshake");
    assert!(matches!(
        wire::decode(&answer).map(|(f, _)| f.body),
        Ok(Body::Hello(_))
    ));
    let forged = impostor(3).frame(
        0,
        target,
        // A heartbeat: an Append of no entries.
        &Body::Raft(Message::Append(Append {
            term: before + FORGED_TERMS,
            prev_index: 0,
            prev_term: 0,
            commit: 0,
            count: 0,
            read_seq: 0,
            clock_ms: 0,
        })),
    );
    let _ = link.send(&forged);
    wait_for("the forged frame refused", WAIT, || {
        c.gauge(target, "shoal_peer_identity_refused_total") >= 2
    });
    unaffected(&c, before, 7, "after-node-3-impostor");
}

#[test]
fn plaintext_other_ca_and_expired_peers_are_refused_and_the_cluster_is_unaffected() {
    let (c, leader) = tls_cluster();
    let before = term(&c, leader);
    let target = c.other_than(leader);
    let addr = c.node(target).raft.clone();
    // Plaintext: a forged Hello of the leader, as the attack in issue 15 did.
    assert!(refused(PeerLink::dial(&impostor(leader), target, &addr)));
    wait_for("the plaintext peer counted", WAIT, || {
        c.gauge(target, "shoal_tls_peer_refused_total") >= 1
    });
    assert!(c.node(target).log().contains("does not speak TLS"));
    // A member certificate of another CA.
    let other = Certs::new(&c.root().join("other-ca"));
    let stranger: CertPair = other.node(1, leader);
    let ca = c.certs().expect("peer TLS").ca();
    assert!(refused(PeerLink::dial_tls(
        &impostor(leader),
        target,
        &addr,
        &stranger,
        &ca
    )));
    wait_for("the other CA logged", WAIT, || {
        c.node(target)
            .log()
            .contains("not signed by a CA in --peer-trusted-ca-file")
    });
    // An expired certificate of the right CA.
    let expired = c.certs().expect("peer TLS").node_with(
        1,
        leader,
        "expired",
        &["--valid-from", "2020-01-01", "--days", "1"],
    );
    assert!(refused(PeerLink::dial_tls(
        &impostor(leader),
        target,
        &addr,
        &expired,
        &ca
    )));
    wait_for("the expired certificate logged", WAIT, || {
        c.node(target).log().contains("the certificate has expired")
    });
    wait_for("every refusal counted", WAIT, || {
        c.gauge(target, "shoal_tls_peer_refused_total") >= 3
    });
    unaffected(&c, before, 8, "after-impostors");
}

#[test]
fn certificates_are_reread_on_sighup_and_a_bad_file_keeps_the_old_ones() {
    let (mut c, leader) = tls_cluster();
    let target = c.other_than(leader);
    let certs = c.certs().expect("peer TLS").clone();
    let own = certs.node(1, target);
    let saved = std::fs::read(&own.cert).expect("read the certificate");
    let hup = |c: &mut Cluster| {
        let pid = c.node_mut(target).proc_mut().expect("running").pid();
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP");
        assert!(ok.success());
    };
    std::fs::write(&own.cert, b"not a certificate").expect("spoil the certificate");
    hup(&mut c);
    wait_for("the failed reload counted", WAIT, || {
        c.gauge(target, "shoal_tls_reload_failures_total") == 1
    });
    assert!(c.node(target).log().contains("certificates not reloaded"));
    // A new certificate of the same member, same CA.
    std::fs::write(&own.cert, &saved).expect("restore");
    let renewed = certs.node_with(1, target, "renewed", &[]);
    std::fs::copy(&renewed.cert, &own.cert).expect("install the renewed certificate");
    std::fs::copy(&renewed.key, &own.key).expect("install the renewed key");
    hup(&mut c);
    wait_for("the reload counted", WAIT, || {
        c.gauge(target, "shoal_tls_reloads_total") == 1
    });
    // New connections use it: kill the leader, so links are dialed again.
    c.kill(leader);
    let next = c.wait_leader(0);
    c.put(0, 3, 1, "after-reload", "ok");
    assert_eq!(
        c.get(next, 0, "after-reload", ReadMode::Linearizable)
            .as_deref(),
        Some(&b"ok"[..])
    );
}

/// The TLS handshake of a raft port connection counts against `--peer-handshake-timeout`, as
/// the Hello does: a stranger that never sends its ClientHello, or sends part of one, is closed
/// when it passes and counted as a hit of that limit, and the cluster serves on.
#[test]
fn an_unfinished_tls_handshake_on_the_raft_port_is_closed_by_the_handshake_timeout() {
    let mut c = Cluster::builder()
        .peer_tls()
        .args(&["--peer-handshake-timeout", "2s"])
        .build();
    let leader = c.start_serving(1);
    let target = c.other_than(leader);
    let hits = |c: &Cluster| c.limit_hits(target, "peer-handshake-timeout");
    let before = hits(&c);
    let raft = c.node(target).raft.clone();
    let within = std::time::Duration::from_secs(15);
    let mut silent = Conn::open_within(&raft, within).unwrap();
    let mut halfway = Conn::open_within(&raft, within).unwrap();
    // A handshake record announcing 512 bytes, of which none follow.
    halfway.send_raw(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
    for conn in [&mut silent, &mut halfway] {
        conn.assert_closed_within(std::time::Duration::from_secs(60));
    }
    wait_for("two hits of --peer-handshake-timeout", WAIT, || {
        hits(&c) == before + 2
    });
    c.put(0, 1, 2, "after", "2");
    assert_eq!(
        c.get_any(0, "after", ReadMode::Linearizable).as_deref(),
        Some(&b"2"[..])
    );
}

/// The dialing side of a raft port connection is held to `--peer-handshake-timeout` too: a
/// member whose peer accepts the TCP connection and then says nothing (no TLS answer, no
/// Hello) gives up when that limit passes, says so naming the flag, and counts it as a hit.
#[test]
fn a_dialed_peer_that_never_answers_is_given_up_at_the_handshake_timeout() {
    let mut c = Cluster::builder()
        .voters([1, 2])
        .peer_tls()
        .args(&["--peer-handshake-timeout", "1s"])
        .build();
    // Node 2's raft port: taken by a listener that accepts (in the kernel's backlog) and
    // never speaks.
    let _silent = std::net::TcpListener::bind(&c.node(2).raft).expect("bind node 2's port");
    c.start(1);
    wait_for("the dial given up at the handshake timeout", WAIT, || {
        let log = c.node(1).log();
        log.contains("did not finish the handshake") && log.contains("--peer-handshake-timeout")
    });
    wait_for("the dialed timeout counted", WAIT, || {
        c.limit_hits(1, "peer-handshake-timeout") >= 1
    });
}
