//! The mixed cluster: two `shoald` servers and one `shoal-embedded-node` (the microcontroller
//! runtime on Linux) form group 0 of one cluster on 127.0.0.1, elect a leader, commit DtKV
//! writes made through `shoald`'s client port, and the embedded node ends at the same applied
//! index as both servers with the same directory contents. Then the follower server is stopped
//! and five more writes must commit through the leader and the embedded node alone. Last, the
//! embedded node is killed and restarted from its flash file (`--flash-file`): it recovers its
//! log and catches up with the writes made while it was down.
//!
//!
//! A second test adds a `shoald` node to the mixed cluster and removes it again: the embedded
//! node applies the cluster's member records like the servers (the new node's record tells it
//! where to dial), every node agrees on the membership after each change, and writes go on.
//!
//! Every link runs sealed with the cluster key (`--peer-psk-file` on the servers, `--psk-file`
//! on the embedded node). A third test starts the embedded node with another key, then with
//! none: the servers refuse it each time, saying why, and the cluster goes on without it.
//!
//! Every process runs under `shoal-testkit`; `shoald` is another package's binary, found next
//! to this test executable where a workspace test build (`cargo suite`) puts it.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{ChildStdout, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_client::protocol::{MemberChange, ReadMode, Request, Response};
use shoal_client::Client;
use shoal_testkit::{
    bin, poll, wait_for, wait_some, write_key_file, Cluster, ClusterBuilder, Proc,
};

const CLUSTER_ID: u64 = 0x4d49_5844;
/// The cluster key every member holds.
const KEY: &str = "5d1f0c9a7b3e24f86a0d1c5e9b7f3a2d4c6e8f0a1b3d5f7e9c2a4b6d8f0e1c3a";
/// A key of another cluster.
const OTHER_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const KEYS: u32 = 20;
/// The embedded node is slow to start and elect on a busy machine: a longer deadline.
const DEADLINE: Duration = Duration::from_secs(60);
/// The embedded node's id.
const EMBEDDED: u64 = 3;

/// The embedded node's last `STATUS` line (as key=value pairs) and its last `--report-dir`
/// listing.
#[derive(Default)]
struct Seen {
    /// The `BOOT` line: how the flash partition was opened.
    boot: String,
    status: BTreeMap<String, String>,
    entries: BTreeMap<String, String>,
    building: BTreeMap<String, String>,
}

fn watch_stdout(out: ChildStdout) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let mut s = s.lock().unwrap();
            let mut words = line.split(' ');
            match words.next() {
                Some("BOOT") => s.boot = line.clone(),
                Some("STATUS") => {
                    s.status = words
                        .filter_map(|w| w.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                }
                Some("ENTRY") => {
                    let k = words.next().unwrap_or("").to_string();
                    let v = words.next().unwrap_or("").to_string();
                    s.building.insert(k, v);
                }
                Some("ENTRIES") => s.entries = std::mem::take(&mut s.building),
                _ => {}
            }
        }
    });
    seen
}

fn status_str(seen: &Mutex<Seen>, key: &str) -> String {
    let s = seen.lock().unwrap();
    s.status.get(key).cloned().unwrap_or_default()
}

fn status_u64(seen: &Mutex<Seen>, key: &str) -> u64 {
    let s = seen.lock().unwrap();
    s.status.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Start the embedded node as member 3 of `c`, its partition in `flash_file`. It times out
/// later than the servers, so that a server leads and client writes need no redirect to a node
/// without a client port.
fn start_embedded(c: &Cluster, flash_file: &Path, run: u32) -> (Proc, Arc<Mutex<Seen>>) {
    let key = c.key_file().map(Path::to_path_buf);
    start_embedded_with(c, flash_file, run, key.as_deref())
}

/// [`start_embedded`] with the key file `key` (`None`: plaintext links).
fn start_embedded_with(
    c: &Cluster,
    flash_file: &Path,
    run: u32,
    key: Option<&Path>,
) -> (Proc, Arc<Mutex<Seen>>) {
    let mut cmd = Command::new(bin("shoal-embedded-node"));
    if let Some(key) = key {
        cmd.arg("--psk-file").arg(key);
    }
    cmd.args(["--node-id", "3", "--cluster-id", &CLUSTER_ID.to_string()])
        .args(["--listen", &c.node(EMBEDDED).raft])
        .args(["--peer", &format!("1={}", c.node(1).raft)])
        .args(["--peer", &format!("2={}", c.node(2).raft)])
        .args(["--election-timeout", "4000"])
        .args(["--kv-max-nodes", "4096", "--kv-arena-mb", "4"])
        .args(["--report-dir", "mixed"])
        .arg("--flash-file")
        .arg(flash_file);
    let log = c.root().join(format!("embedded-run{run}.log"));
    let (p, stdout) = Proc::spawn_piped("the embedded node", cmd, &log);
    (p, watch_stdout(stdout))
}

/// Put `mixed.kN = vN` for every `n` in `keys` through `client`, retrying each until it
/// commits.
fn put_keys(client: &Client, keys: std::ops::RangeInclusive<u32>, when: &str) {
    for n in keys {
        let (key, value) = (format!("mixed.k{n}"), format!("v{n}"));
        wait_for(
            &format!("put {key} to commit {when}"),
            DEADLINE,
            || match smol::block_on(client.put(&key, &value)) {
                Ok(_) => true,
                Err(e) => {
                    eprintln!("put {key}: {e}; retrying");
                    false
                }
            },
        );
    }
}

/// Wait until the servers `ids` and the embedded node have applied the same index and the
/// embedded node holds `mixed.k1..=kN`.
fn wait_converged(c: &Cluster, seen: &Mutex<Seen>, ids: &[u64], n: u32, what: &str) {
    let expected: BTreeMap<String, String> = (1..=n)
        .map(|n| (format!("mixed.k{n}"), format!("v{n}")))
        .collect();
    let mut servers = Vec::new();
    let converged = poll(DEADLINE, || {
        servers = ids
            .iter()
            .map(|&id| c.status(id, 0).map(|s| (s.commit, s.applied)))
            .collect();
        let embedded = status_u64(seen, "applied");
        let same_index = servers
            .iter()
            .all(|s| s.is_some_and(|(_, applied)| applied > 0 && applied == embedded));
        (same_index && seen.lock().unwrap().entries == expected).then_some(embedded)
    });
    let s = seen.lock().unwrap();
    let Some(applied) = converged else {
        panic!(
            "{what}: no convergence within {DEADLINE:?}: servers (commit, applied) {servers:?}, \
             embedded {:?}, {}",
            s.status, s.boot
        );
    };
    eprintln!(
        "{what}: applied {applied} everywhere; embedded digest {}, {} DtKV nodes",
        s.status.get("digest").map(String::as_str).unwrap_or("?"),
        s.status.get("nodes").map(String::as_str).unwrap_or("?")
    );
}

/// The mixed cluster's servers, every link sealed with [`KEY`].
fn mixed_cluster() -> ClusterBuilder {
    Cluster::builder()
        .cluster_id(CLUSTER_ID)
        .cluster_key(KEY)
        .fsync("never")
        .heartbeat_interval_ms(None)
        .args(&["--kv-max-nodes", "4096", "--kv-arena-mb", "4"])
}

/// Start servers 1 and 2; returns the embedded node's directory (for its flash files).
fn start_servers(c: &mut Cluster) -> std::path::PathBuf {
    c.start(1);
    c.start(2);
    let dir = c.node(EMBEDDED).dir.clone();
    std::fs::create_dir_all(&dir).expect("the embedded node's directory");
    dir
}

#[test]
fn two_shoald_and_one_embedded_node_agree() {
    let mut c = mixed_cluster().build();
    // Its flash partition is a file, so that it can be restarted with its state.
    let flash_file = start_servers(&mut c).join("partition.flash");
    let (mut embedded, seen) = start_embedded(&c, &flash_file, 1);

    // A leader every member agrees on.
    let leader = wait_some("a leader all three members agree on", DEADLINE, || {
        let l1 = c.status(1, 0)?.leader;
        let l2 = c.status(2, 0)?.leader;
        (l1 != 0 && l1 == l2 && status_u64(&seen, "leader") == l1).then_some(l1)
    });
    eprintln!("leader: node {leader}");
    assert!(
        leader != EMBEDDED,
        "a server leads (the embedded node times out later)"
    );
    let follower = 3 - leader;

    // Writes through the servers' client ports.
    let client = Client::connect(c.clients_of(&[1, 2])).expect("client");
    let _ = smol::block_on(client.mkdir("mixed"));
    put_keys(&client, 1..=KEYS, "with every member up");
    let got = smol::block_on(client.get(format!("mixed.k{KEYS}"), ReadMode::Linearizable))
        .expect("get")
        .expect("the last key exists");
    assert_eq!(got.value, format!("v{KEYS}").into_bytes());
    // Every member at the same applied index, the embedded node with the same contents.
    wait_converged(&c, &seen, &[1, 2], KEYS, "all three members");

    // The embedded node is a real voter: with the other server stopped, the leader's writes
    // commit only through the embedded node's acknowledgements.
    c.kill(follower);
    let client = Client::connect(c.clients_of(&[leader])).expect("client");
    put_keys(
        &client,
        KEYS + 1..=KEYS + 5,
        "with the follower server stopped",
    );
    wait_converged(
        &c,
        &seen,
        &[leader],
        KEYS + 5,
        "the leader and the embedded node",
    );
    let boot = seen.lock().unwrap().boot.clone();
    assert!(
        boot.contains("formatted"),
        "the first start formats the flash file: {boot}"
    );

    // Restart: the stopped server comes back, the embedded node is killed (SIGKILL), the
    // cluster moves on without it, and the embedded node restarts from its flash file: it
    // recovers its log (every entry it had acknowledged was synced to the file) and catches up.
    c.start(follower);
    let acked = status_u64(&seen, "applied");
    embedded.kill();
    put_keys(&client, KEYS + 6..=KEYS + 10, "with the embedded node down");
    let (_embedded, seen) = start_embedded(&c, &flash_file, 2);
    wait_converged(
        &c,
        &seen,
        &[leader],
        KEYS + 10,
        "the restarted embedded node",
    );
    let boot = seen.lock().unwrap().boot.clone();
    let recovered_last = boot
        .split(' ')
        .find_map(|w| w.strip_prefix("last_index="))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        boot.contains("recovered") && recovered_last >= acked,
        "the restart must recover at least the {acked} entries applied before the kill: {boot}"
    );
    eprintln!("restarted embedded node: {boot}; caught up to the leader");
}

/// Every node's view of group 0's membership agrees on `members`: the servers `ids` through
/// their status, the embedded node through its `STATUS` line, which also lists the member
/// records it applied and the peers it is linked to.
fn wait_members(c: &Cluster, seen: &Mutex<Seen>, ids: &[u64], members: &[u64], what: &str) {
    let want = members
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut views = Vec::new();
    let agreed = shoal_testkit::poll(DEADLINE, || {
        views = ids
            .iter()
            .map(|&id| {
                c.status(id, 0).map(|s| {
                    let mut m: Vec<u64> = s.members.iter().map(|m| m.id).collect();
                    m.sort_unstable();
                    m
                })
            })
            .collect();
        let servers = views.iter().all(|v| v.as_deref() == Some(members));
        let embedded = status_str(seen, "members") == want && status_str(seen, "records") == want;
        let links: Vec<u64> = members.iter().copied().filter(|&m| m != EMBEDDED).collect();
        let linked = links.iter().all(|m| {
            status_str(seen, "links")
                .split(',')
                .any(|l| l == m.to_string())
        });
        (servers && embedded && linked).then_some(())
    });
    assert!(
        agreed.is_some(),
        "{what}: no agreement on members {want} within {DEADLINE:?}: servers {views:?}, embedded {:?}",
        seen.lock().unwrap().status
    );
}

#[test]
fn a_member_is_added_to_and_removed_from_a_mixed_cluster() {
    let mut c = mixed_cluster().spares([4]).build();
    let flash_dir = start_servers(&mut c);
    let (_embedded, seen) = start_embedded(&c, &flash_dir.join("partition.flash"), 1);
    let leader = wait_some("a leader all three members agree on", DEADLINE, || {
        let l1 = c.status(1, 0)?.leader;
        (l1 != 0 && c.status(2, 0)?.leader == l1 && status_u64(&seen, "leader") == l1).then_some(l1)
    });
    assert_ne!(
        leader, EMBEDDED,
        "a server leads (the embedded node times out later)"
    );
    let client = Client::connect(c.clients_of(&[1, 2])).expect("client");
    let _ = smol::block_on(client.mkdir("mixed"));
    put_keys(&client, 1..=5, "before the change");
    // The leader wrote the initial members' records; the embedded node applied them.
    wait_members(&c, &seen, &[1, 2], &[1, 2, 3], "the initial members");

    // Add a fourth node, a shoald started empty: its record reaches the embedded node, which
    // dials it at the address the record names (no flag of the embedded node names it).
    c.start_joining(4);
    let add = Request::ChangeMembers(MemberChange::Add {
        id: 4,
        raft_addr: format!("{}/{}", c.node(4).raft, c.node(4).client),
        observer: false,
    });
    let r = c.call_any(0, add, "add node 4");
    assert!(matches!(r, Response::Done { .. }), "add node 4: {r:?}");
    wait_members(&c, &seen, &[1, 2, 4], &[1, 2, 3, 4], "after adding node 4");
    let client = Client::connect(c.clients_of(&[1, 2, 4])).expect("client");
    put_keys(&client, 6..=10, "with four members");
    wait_converged(&c, &seen, &[1, 2, 4], 10, "four members");

    // Remove it again: its record goes, the embedded node drops its link, all agree.
    let r = c.call_any(
        0,
        Request::ChangeMembers(MemberChange::Remove { id: 4 }),
        "remove node 4",
    );
    assert!(matches!(r, Response::Done { .. }), "remove node 4: {r:?}");
    wait_members(&c, &seen, &[1, 2], &[1, 2, 3], "after removing node 4");
    assert!(
        !status_str(&seen, "links").split(',').any(|l| l == "4"),
        "the embedded node still links to node 4: {:?}",
        seen.lock().unwrap().status
    );
    c.kill(4);
    let client = Client::connect(c.clients_of(&[1, 2])).expect("client");
    put_keys(&client, 11..=15, "after removing node 4");
    wait_converged(&c, &seen, &[1, 2], 15, "three members again");
}

/// How many lines of the server logs contain `needle`.
fn server_log_lines(c: &Cluster, ids: &[u64], needle: &str) -> usize {
    ids.iter()
        .map(|&id| {
            c.node(id)
                .log()
                .lines()
                .filter(|l| l.contains(needle))
                .count()
        })
        .sum()
}

#[test]
fn an_embedded_node_with_another_key_or_none_is_refused_and_the_cluster_goes_on() {
    let mut c = mixed_cluster().build();
    let dir = start_servers(&mut c);
    let wrong = c.root().join("other-cluster.key");
    write_key_file(&wrong, OTHER_KEY);

    // Another key: both sides' proofs fail. The servers log why and count it; the embedded
    // node links to nobody, and the two servers (a quorum) commit on their own.
    let (mut embedded, seen) = start_embedded_with(&c, &dir.join("run1.flash"), 1, Some(&wrong));
    let client = Client::connect(c.clients_of(&[1, 2])).expect("client");
    let _ = smol::block_on(client.mkdir("mixed"));
    put_keys(&client, 1..=5, "with a wrong-key embedded node");
    let key_refusals = wait_some("the servers to refuse the wrong key", DEADLINE, || {
        let n = server_log_lines(&c, &[1, 2], "does not hold this cluster's key")
            + server_log_lines(&c, &[1, 2], "hold different cluster keys");
        (n >= 2 && status_u64(&seen, "sealed_refused") >= 2).then_some(n)
    });
    assert_eq!(
        status_str(&seen, "links"),
        "",
        "no link may open with a wrong key"
    );
    assert_eq!(status_u64(&seen, "applied"), 0, "nothing may reach it");
    eprintln!("wrong key: {key_refusals} refusals logged by the servers");
    embedded.kill();

    // No key at all: a plaintext peer on sealed ports.
    let (mut embedded, seen) = start_embedded_with(&c, &dir.join("run2.flash"), 2, None);
    put_keys(&client, 6..=10, "with a plaintext embedded node");
    wait_some("the servers to refuse the plaintext peer", DEADLINE, || {
        let n = server_log_lines(&c, &[1, 2], "plaintext peer");
        (n >= 2).then_some(n)
    });
    assert_eq!(
        status_str(&seen, "links"),
        "",
        "no link may open in plaintext"
    );
    assert_eq!(status_u64(&seen, "applied"), 0, "nothing may reach it");
    embedded.kill();

    // The same node with the cluster's key joins in and catches up: the key was the cause.
    let (_embedded, seen) = start_embedded(&c, &dir.join("run3.flash"), 3);
    put_keys(&client, 11..=12, "with the right key");
    wait_converged(
        &c,
        &seen,
        &[1, 2],
        12,
        "the embedded node with the right key",
    );
}
