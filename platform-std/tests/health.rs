//! Health that tells the truth, on real processes: a node is healthy (`/health` 200,
//! `shoalctl health` exit 0) only while every group it hosts has a leader it heard from within
//! an election timeout — a leader, one a quorum acknowledged within the lease window. A node
//! that lost its quorum, or was removed, says it is not, naming the group and why.
#![cfg(unix)]

use std::time::Instant;

use serde_json::Value;
use shoal_testkit::{wait_for, Cluster, WAIT};

const ELECTION_TIMEOUT_MS: u64 = 400;

/// Group 0's entry in a `/health` or `shoalctl health -o json` body.
fn group0(body: &Value) -> &Value {
    body["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["group"] == 0))
        .unwrap_or_else(|| panic!("no group 0 in {body}"))
}

/// Nodes 1, 2 and 3, started, each answering `/health` 200; the leader.
fn healthy_three() -> (Cluster, u64) {
    let mut c = Cluster::builder()
        .election_timeout_ms(ELECTION_TIMEOUT_MS)
        .build();
    c.start_all();
    let leader = c.wait_leader(0);
    for id in [1, 2, 3] {
        c.wait_health(id, 200);
    }
    (c, leader)
}

#[test]
fn a_healthy_cluster_is_healthy_and_a_survivor_of_two_kills_is_not() {
    let (mut c, leader) = healthy_three();
    for id in [1, 2, 3] {
        let body = c.admin_health(id).1;
        assert_eq!(body["status"], "ok", "{body}");
        assert_eq!(group0(&body)["reason"], "ok", "{body}");
        let out = c.ctl_at(&[id], &["-o", "json", "health"]);
        assert_eq!(out.code, 0, "{out}");
        assert_eq!(out.json()["healthy"], true, "{out}");
        let h = c.health(id).expect("Request::Health");
        assert!(h.healthy && h.reasons().is_empty(), "{h:?}");
    }

    // The two followers die: the leader has no quorum any more, whatever it still believes.
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != leader).collect();
    let killed = Instant::now();
    for &id in &followers {
        c.kill(id);
    }
    let body = c.wait_health(leader, 503);
    eprintln!(
        "node {leader} turned unhealthy {} ms after its followers died (election timeout \
         {ELECTION_TIMEOUT_MS} ms)",
        killed.elapsed().as_millis()
    );
    let g = group0(&body);
    assert_eq!(g["healthy"], false, "{body}");
    assert!(
        g["reason"] == "no_quorum" || g["reason"] == "no_leader",
        "the survivor names why: {body}"
    );
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("group 0:"), "{body}");

    // `shoalctl health` says the same with exit 1, in words and in JSON.
    let out = c.ctl_at(&[leader], &["health"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.out.contains("unhealthy") && out.out.contains("group 0:"),
        "{out}"
    );
    let out = c.ctl_at(&[leader], &["-o", "json", "health"]);
    assert_eq!(out.code, 1, "{out}");
    let j = out.json();
    assert_eq!(j["healthy"], false, "{out}");
    assert_eq!(group0(&j)["healthy"], false, "{out}");

    // A follower comes back: a quorum again, healthy again.
    c.start(followers[0]);
    c.wait_leader(0);
    c.wait_health(leader, 200);
    c.wait_health(followers[0], 200);
}

#[test]
fn a_removed_node_is_unhealthy_and_the_others_stay_healthy() {
    let (c, leader) = healthy_three();
    let gone = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    c.ctl(&["member", "remove", &gone.to_string()]).ok();

    let body = c.wait_health(gone, 503);
    let g = group0(&body);
    assert_eq!(g["healthy"], false, "{body}");
    assert!(
        ["not_member", "no_leader", "leader_silent"].contains(&g["reason"].as_str().unwrap_or("")),
        "the removed node names why: {body}"
    );
    let out = c.ctl_at(&[gone], &["health"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.out.contains("group 0:"), "{out}");
    // Until it is stopped it stays out; the remaining two are healthy.
    wait_for("the removed node to say not_member", WAIT, || {
        group0(&c.admin_health(gone).1)["reason"] == "not_member"
    });
    for id in [1, 2, 3].into_iter().filter(|&i| i != gone) {
        let body = c.wait_health(id, 200);
        assert_eq!(group0(&body)["reason"], "ok", "{body}");
    }
}
