//! Leases kept alive from the shell (issue 16, item 5), through the real binaries: a lease
//! outlives the shoalctl run that granted it, a later run reads it, keeps it alive, ties nodes
//! and locks to it and revokes it; stopping its keep-alive lets it end with everything tied to
//! it; and elections built on it.

use std::time::Duration;

use shoal_testkit::cli::{lease_grant, ready_single_node, shoalctl_running, wait_log_line};
use shoal_testkit::{shoalctl, wait_for, WAIT};

fn lease_json(addr: &str, id: u64) -> shoal_testkit::Output {
    shoalctl(addr, &["-o", "json", "lease", "ttl", &id.to_string()])
}

fn exists(addr: &str, key: &str) -> bool {
    let o = shoalctl(addr, &["-o", "json", "get", key]);
    match o.code {
        0 => true,
        1 if o.json()["error"] == "NotFound" => false,
        _ => panic!("{o}"),
    }
}

#[test]
fn a_lease_lives_while_kept_alive_and_takes_its_nodes_when_stopped() {
    let (c, addr) = ready_single_node();
    let id = lease_grant(&addr, "3s");
    let ids = id.to_string();
    for args in [
        &["put", "app.keep", "plain"][..],
        &["put-temp", "app.svc", "10.0.0.1", "--lease", &ids],
        &["mkdir-temp", "app.group", "--lease", &ids],
        &["put", "app.group.member", "m1"],
    ] {
        let o = shoalctl(&addr, args);
        assert_eq!(o.code, 0, "{o}");
    }
    // A later run reads the lease and its keys (a session's TTL would answer NotOwner).
    let o = lease_json(&addr, id);
    assert_eq!(o.code, 0, "{o}");
    let j = o.json();
    let first_deadline = j["deadline_ms"].as_u64().unwrap();
    assert_eq!(j["ttl_ms"], 3000, "{o}");
    let keys: Vec<&str> = j["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(
        keys.contains(&"app.svc") && keys.contains(&"app.group"),
        "{o}"
    );
    let listed = shoalctl(&addr, &["-o", "json", "lease", "list"]).json();
    assert!(listed["leases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["id"] == id && l["tied"] == 2));

    // Kept alive, it outlives its first deadline by more than a TTL, nodes and all.
    let mut keeper = shoalctl_running(
        &addr,
        &["lease", "keep-alive", &ids],
        &c.root().join("keep-alive.log"),
    );
    wait_for("the lease renewed past its first deadline", WAIT, || {
        lease_json(&addr, id).json()["deadline_ms"]
            .as_u64()
            .is_some_and(|d| d > first_deadline + 3000)
    });
    assert!(exists(&addr, "app.svc") && exists(&addr, "app.group.member"));

    // Stopped, the lease ends one TTL later with everything tied to it.
    keeper.stop();
    wait_for("the lease's nodes to vanish", WAIT, || {
        !exists(&addr, "app.svc")
    });
    for key in ["app.group", "app.group.member"] {
        assert!(!exists(&addr, key), "{key} went with its lease");
    }
    let o = lease_json(&addr, id);
    assert_eq!(o.code, 1, "{o}");
    assert_eq!(o.json()["error"], "LeaseNotFound", "{o}");
    assert!(
        exists(&addr, "app.keep"),
        "nodes not tied to the lease stay"
    );
}

#[test]
fn revoke_ends_a_lease_at_once_and_locks_follow_their_lease() {
    let (c, addr) = ready_single_node();
    let (a, b) = (lease_grant(&addr, "60s"), lease_grant(&addr, "60s"));
    let (sa, sb) = (a.to_string(), b.to_string());
    let o = shoalctl(
        &addr,
        &["-o", "json", "lock", "acquire", "app.l", "--lease", &sa],
    );
    assert_eq!(o.code, 0, "{o}");
    let fence = o.json()["fence"].as_u64().unwrap();
    // Another lease cannot take it...
    let o = shoalctl(
        &addr,
        &["lock", "acquire", "app.l", "--lease", &sb, "--wait", "1s"],
    );
    assert_eq!(o.code, 1, "{o}");
    assert!(o.err.contains("LockHeld"), "{o}");
    // ...until a later run releases it: the waiting acquire then gets it.
    let waiter = shoalctl_running(
        &addr,
        &["-o", "json", "lock", "acquire", "app.l", "--lease", &sb],
        &c.root().join("acquire.log"),
    );
    let o = shoalctl(&addr, &["lock", "release", "app.l"]);
    assert_eq!(o.code, 0, "{o}");
    let next = wait_log_line(&waiter, "the waiting acquire", WAIT, |l| {
        serde_json::from_str::<serde_json::Value>(l)
            .ok()
            .and_then(|j| j["fence"].as_u64())
    });
    assert!(next > fence, "a new grant has a larger fencing token");
    let o = shoalctl(&addr, &["put-temp", "app.t", "v", "--lease", &sb]);
    assert_eq!(o.code, 0, "{o}");

    // Revoking lease b takes its lock and its value in one entry.
    let o = shoalctl(&addr, &["-o", "json", "lease", "revoke", &sb]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.json()["removed"], 2, "{o}");
    assert!(!exists(&addr, "app.l") && !exists(&addr, "app.t"));
    let listed = shoalctl(&addr, &["-o", "json", "lease", "list"]).json();
    let ids: Vec<u64> = listed["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![a]);
    let o = shoalctl(&addr, &["lease", "revoke", &sb]);
    assert_eq!(o.code, 1, "a revoked lease is gone: {o}");
    let o = shoalctl(&addr, &["lease", "keep-alive", &sa, "--once"]);
    assert_eq!(o.code, 0, "{o}");
}

#[test]
fn the_second_campaigner_leads_once_the_first_lease_is_revoked() {
    let (c, addr) = ready_single_node();
    let root = c.root();
    let listener = shoalctl_running(
        &addr,
        &["elect", "svc.primary", "--listen"],
        &root.join("listen.log"),
    );
    let first = shoalctl_running(
        &addr,
        &["elect", "svc.primary", "node-a", "--ttl", "60s"],
        &root.join("first.log"),
    );
    let lead = |l: &str, proposal: &str| -> Option<u64> {
        let (key, p) = l.split_once(' ')?;
        (p == proposal).then(|| key.strip_prefix("svc.primary.")?.parse().ok())?
    };
    let first_lease = wait_log_line(&first, "the first campaigner to lead", WAIT, |l| {
        lead(l, "node-a")
    });
    let mut second = shoalctl_running(
        &addr,
        &["elect", "svc.primary", "node-b", "--ttl", "60s"],
        &root.join("second.log"),
    );
    wait_log_line(&second, "the second campaigner to stand", WAIT, |l| {
        l.contains("campaigning for").then_some(())
    });
    assert!(
        !second.log().lines().any(|l| lead(l, "node-b").is_some()),
        "the second waits while the first leads: {}",
        second.log()
    );
    let o = shoalctl(&addr, &["lease", "revoke", &first_lease.to_string()]);
    assert_eq!(o.code, 0, "{o}");
    let second_lease = wait_log_line(&second, "the second campaigner to lead", WAIT, |l| {
        lead(l, "node-b")
    });
    assert!(second_lease > first_lease);
    // The listener saw both leaders, in order.
    wait_log_line(
        &listener,
        "the listener to see the second leader",
        WAIT,
        |l| lead(l, "node-b"),
    );
    let seen: Vec<String> = listener.log().lines().map(str::to_string).collect();
    assert_eq!(
        seen,
        vec![
            format!("svc.primary.{first_lease} node-a"),
            format!("svc.primary.{second_lease} node-b")
        ]
    );
    // The first campaign ended with its lease.
    let mut first = first;
    assert_eq!(first.wait_exit(Duration::from_secs(30)).code(), Some(1));
    assert!(second.is_running());
}
