//! Idle groups go quiet (no heartbeats, no timer work) and stay correct: on 3 nodes with 200
//! groups every group quiesces (`shoal_groups_quiet`), a write to one is served at once, and
//! when the node leading some quiet groups is killed, node liveness wakes them and they elect
//! new leaders and serve writes.
#![cfg(unix)]

use shoal_client::protocol::{ReadMode, Request, Response};
use shoal_testkit::client::series_value;
use shoal_testkit::{wait_for, Cluster, WAIT};
use std::time::Duration;

const GROUPS: u32 = 200;

fn create_groups(c: &Cluster) {
    for g in 1..=GROUPS {
        let r = c.call_any(
            g,
            Request::GroupCreate {
                members: vec![1, 2, 3],
            },
            "group create",
        );
        assert!(matches!(r, Response::Done { .. }), "group {g}: {r:?}");
    }
}

fn quiet(c: &Cluster, id: u64) -> usize {
    c.gauge(id, "shoal_groups_quiet")
}

#[test]
fn idle_groups_go_quiet_wake_for_writes_and_elect_when_their_leader_dies() {
    let mut c = Cluster::builder().build();
    c.start_all();
    c.wait_leader(0);
    create_groups(&c);
    // Every node hosts every group, and each goes quiet once settled (group 0 included).
    let all = GROUPS as usize + 1;
    for id in [1u64, 2, 3] {
        wait_for(&format!("node {id}: every group quiet"), WAIT * 2, || {
            quiet(&c, id) == all
        });
        // And out of the raft loop's rounds, but for group 0, which always stays in.
        wait_for(
            &format!("node {id}: only group 0 in the rounds"),
            WAIT,
            || c.gauge(id, "shoal_groups_active") == 1,
        );
    }
    // The admin view says which.
    let (_, status) = c.http_get(1, "/status").expect("/status");
    assert!(status.contains("\"quiet\": true"), "{status}");

    // A write to a quiet group is served at once, and the group goes quiet again.
    c.put(17, 1, 1, "k", "v1");
    assert_eq!(
        c.get_any(17, "k", ReadMode::Linearizable),
        Some(b"v1".to_vec())
    );
    assert_eq!(c.get_any(17, "k", ReadMode::Lease), Some(b"v1".to_vec()));
    for id in [1u64, 2, 3] {
        wait_for(&format!("node {id}: group 17 quiet again"), WAIT, || {
            quiet(&c, id) == all
        });
    }

    // Kill the node that leads group 5 (and others): they are quiet, and nothing in them
    // notices; node liveness does, and wakes them.
    let dead = c.wait_leader(5);
    let led: Vec<u32> = (1..=GROUPS)
        .filter(|&g| c.status(dead, g).is_some_and(|s| s.role == "leader"))
        .collect();
    assert!(led.contains(&5));
    c.kill(dead);
    for (i, &g) in led.iter().enumerate().step_by((led.len() / 10).max(1)) {
        let leader = c.wait_leader(g);
        assert_ne!(leader, dead);
        c.put(g, 100 + i as u64, 1, "after", "yes");
        assert_eq!(
            c.get_any(g, "after", ReadMode::Linearizable),
            Some(b"yes".to_vec()),
            "group {g}"
        );
    }
    // Every group the dead node led has a new leader.
    for &g in &led {
        let s = c.wait_leader(g);
        assert_ne!(s, dead, "group {g}");
    }
    // With a member gone for good, its groups stay awake (they cannot settle); the others
    // stay quiet.
    std::thread::sleep(Duration::from_secs(1));
    let alive: Vec<u64> = [1u64, 2, 3].into_iter().filter(|&id| id != dead).collect();
    for id in alive {
        assert!(
            quiet(&c, id) < all,
            "node {id}: groups with a dead member stay awake"
        );
    }
}

#[test]
fn with_quiesce_off_groups_never_go_quiet() {
    let mut c = Cluster::builder().args(&["--quiesce", "false"]).build();
    c.start_all();
    c.wait_leader(0);
    for g in 1..=5 {
        let r = c.call_any(
            g,
            Request::GroupCreate {
                members: vec![1, 2, 3],
            },
            "group create",
        );
        assert!(matches!(r, Response::Done { .. }), "{r:?}");
        c.wait_leader(g);
    }
    c.put(3, 1, 1, "k", "v");
    std::thread::sleep(Duration::from_secs(2));
    for id in [1u64, 2, 3] {
        assert_eq!(quiet(&c, id), 0, "node {id}");
    }
}

/// A node with a thousand groups, each written once, killed (SIGKILL) and started again:
/// every group comes back on it, elects, holds its acknowledged write, takes a new one, and
/// goes quiet again.
#[test]
fn a_node_with_a_thousand_groups_restarts_and_recovers_each() {
    const MANY: u32 = 1_000;
    let mut c = Cluster::builder().voters([1]).build();
    c.start(1);
    c.wait_leader(0);
    for g in 1..=MANY {
        let r = c.call_any(g, Request::GroupCreate { members: vec![1] }, "group create");
        assert!(matches!(r, Response::Done { .. }), "group {g}: {r:?}");
    }
    for g in 1..=MANY {
        c.put(g, 1, 1, "k", &format!("v{g}"));
    }
    let all = MANY as usize + 1;
    wait_for("every group quiet", WAIT * 2, || quiet(&c, 1) == all);

    c.kill(1);
    c.start(1);
    wait_for("the node to host every group again", WAIT * 2, || {
        c.groups(1).is_some_and(|g| g.len() == all)
    });
    for g in 1..=MANY {
        assert_eq!(
            c.get(1, g, "k", ReadMode::Linearizable),
            Some(format!("v{g}").into_bytes()),
            "group {g} after the restart"
        );
        c.put(g, 1, 2, "k2", "after");
    }
    assert_eq!(
        c.get(1, MANY, "k2", ReadMode::Linearizable),
        Some(b"after".to_vec())
    );
    wait_for("every group quiet again", WAIT * 2, || quiet(&c, 1) == all);

    // `/health` counts the groups and lists none of them while they are healthy: a probe
    // stays a few hundred bytes (it named each group, 146 KB at this size).
    let (code, body) = c.http_get(1, "/health").expect("/health");
    let h: serde_json::Value = serde_json::from_str(&body).expect("/health is JSON");
    assert_eq!(code, 200, "{body}");
    assert_eq!(h["summary"]["groups"], all, "{body}");
    assert_eq!(h["summary"]["roles"]["leader"], all, "{body}");
    assert_eq!(h["groups"], serde_json::json!([]), "{body}");
    assert!(body.len() < 1024, "{} bytes: {body}", body.len());

    // `/status` describes every group; `/status/node` counts them (as small as `/health`
    // plus the node's own figures), and `/status/group/<id>` gives one.
    let (code, full) = c.http_get(1, "/status").expect("/status");
    assert_eq!(code, 200);
    let f: serde_json::Value = serde_json::from_str(&full).expect("/status is JSON");
    assert_eq!(
        f["groups"].as_array().map(Vec::len),
        Some(all),
        "/status lists each group"
    );
    let (code, node) = c.http_get(1, "/status/node").expect("/status/node");
    assert_eq!(code, 200, "{node}");
    let n: serde_json::Value = serde_json::from_str(&node).expect("/status/node is JSON");
    assert_eq!(n["groups"]["hosted"], all, "{node}");
    assert_eq!(n["groups"]["roles"]["leader"], all, "{node}");
    assert_eq!(n["groups"]["quiet"], all, "{node}");
    assert_eq!(n["node_id"], 1, "{node}");
    assert!(
        node.len() < 8192 && node.len() * 50 < full.len(),
        "/status/node {} bytes, /status {}",
        node.len(),
        full.len()
    );
    let (code, one) = c
        .http_get(1, &format!("/status/group/{MANY}"))
        .expect("one group");
    assert_eq!(code, 200, "{one}");
    let g: serde_json::Value = serde_json::from_str(&one).expect("a group's status is JSON");
    assert_eq!(
        (g["group"].as_u64(), g["role"].as_str()),
        (Some(u64::from(MANY)), Some("leader"))
    );
    assert!(
        g["last_index"].as_u64() >= Some(2),
        "both writes are in its log: {one}"
    );
    let (code, none) = c
        .http_get(1, "/status/group/999999")
        .expect("a group not hosted");
    assert_eq!(code, 404, "{none}");
}

/// A quiet group still takes its snapshot when one falls due by time: nothing arrives to wake
/// it, so the loop wakes it at the due time (it used to wait for the group's next input,
/// which on an idle group may never come, leaving its log uncompacted).
#[test]
fn a_quiet_group_takes_its_snapshot_when_the_interval_passes() {
    let mut c = Cluster::builder()
        .voters([1])
        .fsync("never")
        .election_timeout_ms(300)
        .args(&["--snapshot-interval", "2s"])
        .build();
    c.start(1);
    c.wait_leader(0);
    let r = c.call_any(1, Request::GroupCreate { members: vec![1] }, "group create");
    assert!(matches!(r, Response::Done { .. }), "{r:?}");
    c.wait_leader(1);
    // The first write finds no snapshot yet and is snapshotted at once; the second waits
    // for the interval, while the group is quiet. (Watched on the admin port: a request to
    // the group would wake it.)
    let taken = || {
        c.http_get(1, "/metrics")
            .and_then(|(_, m)| series_value(&m, "shoal_snapshots_taken_total{group=\"1\"}"))
            .unwrap_or(0)
    };
    c.put(1, 5, 1, "k", "v1");
    wait_for("group 1's first snapshot", WAIT, || taken() == 1);
    c.put(1, 5, 2, "k", "v2");
    wait_for("both groups quiet", WAIT, || quiet(&c, 1) == 2);
    assert_eq!(taken(), 1);
    wait_for("group 1's snapshot by time while it is quiet", WAIT, || {
        taken() == 2
    });
    // Taking it did not need to wake the group for good.
    wait_for("group 1 quiet again", WAIT, || quiet(&c, 1) == 2);
    assert_eq!(
        c.get_any(1, "k", ReadMode::Linearizable),
        Some(b"v2".to_vec())
    );
}
