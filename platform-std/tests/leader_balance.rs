//! Leader balance on real processes: three nodes host 30 groups; the node restarted last comes
//! back leading none of them, and the others hand it its share within seconds (with
//! `--leader-balance-interval 0` it keeps leading none). Every group still takes writes after.
//! A node stopped with SIGTERM hands the groups it leads to their members first.
#![cfg(unix)]

use shoal_testkit::{wait_for, Cluster, WAIT};
use std::time::Duration;

const GROUPS: u32 = 30;

/// How many groups node `id` leads, as `/status/node` counts them.
fn led(c: &Cluster, id: u64) -> Option<u64> {
    let (code, body) = c.http_get(id, "/status/node")?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    (code == 200).then(|| v["groups"]["roles"]["leader"].as_u64().unwrap_or(0))
}

/// Wait until each node leads 10 or 11 of the 31 groups (their share). Each node's view is
/// published every 100 ms, and another node's pass may still be under way: all three must
/// agree at once.
fn wait_balanced(c: &Cluster) {
    wait_for("each node leads 10 or 11 of the 31 groups", WAIT, || {
        let n: Vec<u64> = [1, 2, 3].map(|id| led(c, id).unwrap_or(0)).to_vec();
        n.iter().sum::<u64>() == u64::from(GROUPS) + 1 && n.iter().all(|n| (10..=11).contains(n))
    });
}

/// Start three nodes with `args`, create the groups, wait for every leader, then restart
/// node 3 once every group has a leader among the other two.
fn restarted_third(args: &[&str]) -> Cluster {
    let mut c = Cluster::builder().args(args).build();
    c.start_all();
    c.wait_leader(0);
    c.create_groups(1..=GROUPS, "1,2,3");
    c.kill(3);
    for g in 0..=GROUPS {
        assert_ne!(c.wait_leader(g), 3);
    }
    // (The admin view is published every 100 ms.)
    wait_for("nodes 1 and 2 lead every group", WAIT, || {
        led(&c, 1).zip(led(&c, 2)).map(|(a, b)| a + b) == Some(u64::from(GROUPS) + 1)
    });
    c.start(3);
    c.wait_healthy(3);
    c
}

#[test]
fn a_restarted_node_is_handed_its_share_of_the_leaders() {
    let c = restarted_third(&[]);
    wait_balanced(&c);
    let handed: u64 = [1, 2]
        .map(|id| c.gauge(id, "shoal_leader_balance_transfers_total") as u64)
        .iter()
        .sum();
    assert!(handed >= 10, "nodes 1 and 2 handed {handed} groups");
    assert!(
        [1, 2]
            .iter()
            .any(|id| c.node(*id).log().contains("leader balance: node")),
        "a pass says what it moved"
    );
    // Every group takes a write, wherever its leader now is.
    for g in 0..=GROUPS {
        c.put(g, 9, 1, "after-balance", "yes");
        c.assert_reads(c.wait_leader(g), g, "after-balance", "yes");
    }
    // Balanced: nothing more moves.
    let before: Vec<usize> = [1, 2, 3]
        .map(|id| c.gauge(id, "shoal_leader_balance_transfers_total"))
        .to_vec();
    std::thread::sleep(Duration::from_secs(4));
    let after: Vec<usize> = [1, 2, 3]
        .map(|id| c.gauge(id, "shoal_leader_balance_transfers_total"))
        .to_vec();
    assert_eq!(before, after, "no transfers once balanced");
}

#[test]
fn with_leader_balance_off_a_restarted_node_leads_nothing() {
    let c = restarted_third(&["--leader-balance-interval", "0"]);
    // Twice the default interval (and its jitter): nothing moves.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(led(&c, 3), Some(0));
    for id in [1, 2, 3] {
        assert_eq!(c.gauge(id, "shoal_leader_balance_transfers_total"), 0);
    }
}

/// Transfers the node's core logs as taken over ("campaigning at once").
fn took_over(c: &Cluster, id: u64) -> usize {
    c.node(id)
        .log()
        .matches("campaigning at once (leader transfer)")
        .count()
}

#[test]
fn a_node_stopped_with_sigterm_hands_its_groups_over_first_and_gets_its_share_back() {
    let mut c = Cluster::builder().build();
    c.start_all();
    c.wait_leader(0);
    c.create_groups(1..=GROUPS, "1,2,3");
    // Balanced first, so that nothing moves between reading what node 1 leads and its stop.
    wait_balanced(&c);
    let mine: Vec<u32> = (0..=GROUPS)
        .filter(|g| c.status(1, *g).is_some_and(|s| s.role == "leader"))
        .collect();
    assert!(mine.len() >= 10, "{mine:?}");
    let before = took_over(&c, 2) + took_over(&c, 3);
    assert!(c.stop(1).success(), "SIGTERM: exit 0");
    assert!(
        c.node(1).log().contains(&format!(
            "stopping: handing the leadership of {} of the {} groups led here",
            mine.len(),
            mine.len()
        )),
        "{}",
        c.node(1).log()
    );
    // Each of them went to a member told to campaign at once, not to one that waited out an
    // election timeout.
    let after = took_over(&c, 2) + took_over(&c, 3);
    assert!(
        after - before >= mine.len(),
        "{} groups taken over by transfer, {} led by node 1",
        after - before,
        mine.len()
    );
    for &g in &mine {
        assert_ne!(c.wait_leader(g), 1);
        c.put(g, 11, 1, "handed", "over");
    }
    // Back, it is handed its share again.
    c.start(1);
    wait_for("node 1 leads its share again", WAIT, || {
        led(&c, 1) >= Some(10)
    });
    for &g in &mine {
        c.assert_reads(c.wait_leader(g), g, "handed", "over");
    }
}
