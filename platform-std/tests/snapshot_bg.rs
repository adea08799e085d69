//! Snapshots written off the raft thread (issue 17 item 5), end to end: a node that took its
//! snapshots in the background and is killed restarts from them with every acknowledged write.

#![cfg(unix)]

use shoal_client::protocol::ReadMode;
use shoal_testkit::{wait_for, Cluster, WAIT};

#[test]
fn a_node_killed_after_background_snapshots_restarts_with_every_acknowledged_write() {
    let mut c = Cluster::builder()
        .voters([1])
        .args(&["--snapshot-entries", "50"])
        .build();
    c.start(1);
    c.wait_leader(0);
    let mut acked = Vec::new();
    for i in 0..300u64 {
        let (k, v) = (format!("k{i:03}"), format!("value {i}"));
        c.put(0, 5, i + 1, &k, &v);
        acked.push((k, v));
    }
    wait_for("snapshots written in the background", WAIT, || {
        c.status(1, 0).is_some_and(|s| s.snapshot_index >= 250)
    });
    assert!(c.node(1).log().contains("snapshot taken at index"));
    c.kill(1);
    c.start(1);
    c.wait_leader(0);
    let s = c.status(1, 0).expect("status");
    assert!(
        s.snapshot_index >= 250,
        "restarted from the snapshot: {s:?}"
    );
    for (k, v) in &acked {
        let got = c.get(1, 0, k, ReadMode::Linearizable);
        assert_eq!(got.as_deref(), Some(v.as_bytes()), "{k}");
    }
}
