//! The mixed cluster: two `shoald` servers and one `shoal-embedded-node` (the microcontroller
//! runtime on Linux) form group 0 of one cluster on 127.0.0.1, elect a leader, commit DtKV
//! writes made through `shoald`'s client port, and the embedded node ends at the same applied
//! index as both servers with the same directory contents. Then the follower server is stopped
//! and five more writes must commit through the leader and the embedded node alone. Last, the
//! embedded node is killed and restarted from its flash file (`--flash-file`): it recovers its
//! log and catches up with the writes made while it was down.
//!
//! `shoald` is another package's binary: it is looked up next to this test executable
//! (`target/<profile>/deps/..`), where a workspace test build (`cargo suite`) puts it. When it
//! is missing the test says so and passes without running.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_client::protocol::ReadMode;
use shoal_client::Client;

const CLUSTER_ID: u64 = 0x4d49_5844;
const KEYS: u32 = 20;
const DEADLINE: Duration = Duration::from_secs(60);

/// Kills every process and removes the data directories, whatever happens.
struct Guard {
    children: Vec<Child>,
    dirs: Vec<PathBuf>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn shoald_path() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?; // target/<profile>/deps/this -> target/<profile>
    let p = profile_dir.join("shoald");
    p.exists().then_some(p)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

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

fn watch_stdout(child: &mut Child) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let out = child.stdout.take().expect("piped stdout");
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

fn status_u64(seen: &Mutex<Seen>, key: &str) -> u64 {
    let s = seen.lock().unwrap();
    s.status.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[test]
fn two_shoald_and_one_embedded_node_agree() {
    let Some(shoald) = shoald_path() else {
        eprintln!(
            "SKIPPED: shoald is not built next to this test (build the workspace: `cargo suite` \
             or `cargo build -p shoal-std --bin shoald` with the same profile)"
        );
        return;
    };
    let raft: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let admin: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let members = (0..3)
        .map(|i| format!("{}=127.0.0.1:{}/127.0.0.1:{}", i + 1, raft[i], client[i]))
        .collect::<Vec<_>>()
        .join(",");
    let mut guard = Guard {
        children: Vec::new(),
        dirs: Vec::new(),
    };
    let dirs: Vec<PathBuf> = (0..3)
        .map(|i| {
            std::env::temp_dir().join(format!(
                "shoal-mixed-{}-{}-{}",
                std::process::id(),
                raft[0],
                i + 1
            ))
        })
        .collect();
    for d in &dirs {
        let _ = std::fs::remove_dir_all(d);
        guard.dirs.push(d.clone());
    }
    std::fs::create_dir_all(&dirs[2]).expect("the embedded node's directory");
    let flash_file = dirs[2].join("partition.flash");
    let spawn_server = |i: usize| {
        Command::new(&shoald)
            .args(["--node-id", &(i + 1).to_string()])
            .args(["--cluster-id", &CLUSTER_ID.to_string()])
            .arg("--data-dir")
            .arg(&dirs[i])
            .args(["--raft-addr", &format!("127.0.0.1:{}", raft[i])])
            .args(["--client-addr", &format!("127.0.0.1:{}", client[i])])
            .args(["--admin-addr", &format!("127.0.0.1:{}", admin[i])])
            .args(["--initial-members", &members])
            .args(["--fsync", "never"])
            .args(["--election-timeout", "400"])
            .args(["--kv-max-nodes", "4096", "--kv-arena-mb", "4"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start shoald")
    };
    for i in 0..2 {
        guard.children.push(spawn_server(i));
    }
    // The embedded node times out later than the servers, so that a server leads and client
    // writes need no redirect to a node without a client port. Its flash partition is a file,
    // so that it can be restarted with its state.
    let spawn_embedded = || {
        Command::new(env!("CARGO_BIN_EXE_shoal-embedded-node"))
            .args(["--node-id", "3", "--cluster-id", &CLUSTER_ID.to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", raft[2])])
            .args(["--peer", &format!("1=127.0.0.1:{}", raft[0])])
            .args(["--peer", &format!("2=127.0.0.1:{}", raft[1])])
            .args(["--election-timeout", "4000"])
            .args(["--kv-max-nodes", "4096", "--kv-arena-mb", "4"])
            .args(["--report-dir", "mixed"])
            .arg("--flash-file")
            .arg(&flash_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start shoal-embedded-node")
    };
    let mut node = spawn_embedded();
    let seen = watch_stdout(&mut node);
    guard.children.push(node);
    let start = Instant::now();

    // A leader every member agrees on.
    let servers = [
        format!("127.0.0.1:{}", client[0]),
        format!("127.0.0.1:{}", client[1]),
    ];
    let per_node: Vec<Client> = servers
        .iter()
        .map(|s| Client::connect([s.clone()]).expect("client"))
        .collect();
    let leader = loop {
        assert!(
            start.elapsed() < DEADLINE,
            "no common leader within {DEADLINE:?}"
        );
        let leaders: Vec<u64> = per_node
            .iter()
            .map(|c| smol::block_on(c.status()).map(|s| s.leader).unwrap_or(0))
            .collect();
        let embedded = status_u64(&seen, "leader");
        if leaders[0] != 0 && leaders.iter().all(|&l| l == leaders[0]) && embedded == leaders[0] {
            break leaders[0];
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("leader: node {leader}");

    // Writes through the servers' client ports.
    let c = Client::connect(servers.clone()).expect("client");
    let _ = smol::block_on(c.mkdir("mixed"));
    for n in 1..=KEYS {
        let key = format!("mixed.k{n}");
        let value = format!("v{n}");
        loop {
            assert!(start.elapsed() < DEADLINE, "put {key} did not commit");
            match smol::block_on(c.put(&key, &value)) {
                Ok(_) => break,
                Err(e) => {
                    eprintln!("put {key}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    let got = smol::block_on(c.get(format!("mixed.k{KEYS}"), ReadMode::Linearizable))
        .expect("get")
        .expect("the last key exists");
    assert_eq!(got.value, format!("v{KEYS}").into_bytes());

    // Every member at the same applied index, the embedded node with the same contents.
    let expected: BTreeMap<String, String> = (1..=KEYS)
        .map(|n| (format!("mixed.k{n}"), format!("v{n}")))
        .collect();
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "the members did not converge: servers {:?}, embedded {:?}",
            per_node
                .iter()
                .map(|c| smol::block_on(c.status())
                    .map(|s| (s.commit, s.applied))
                    .ok())
                .collect::<Vec<_>>(),
            seen.lock().unwrap().status
        );
        let applied: Vec<u64> = per_node
            .iter()
            .map(|c| smol::block_on(c.status()).map(|s| s.applied).unwrap_or(0))
            .collect();
        let embedded = status_u64(&seen, "applied");
        let same_contents = seen.lock().unwrap().entries == expected;
        if applied[0] > 0 && applied.iter().all(|&a| a == embedded) && same_contents {
            let s = seen.lock().unwrap();
            eprintln!(
                "converged: applied {embedded} on all three; embedded digest {}, {} DtKV nodes",
                s.status.get("digest").map(String::as_str).unwrap_or("?"),
                s.status.get("nodes").map(String::as_str).unwrap_or("?")
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // The embedded node is a real voter: with the other server stopped, the leader's writes
    // commit only through the embedded node's acknowledgements.
    let leader_index = (leader - 1) as usize;
    assert!(
        leader_index < 2,
        "a server leads (the embedded node times out later)"
    );
    let follower = &mut guard.children[1 - leader_index];
    follower.kill().expect("stop the follower server");
    let _ = follower.wait();
    let c = &per_node[leader_index];
    for n in KEYS + 1..=KEYS + 5 {
        let key = format!("mixed.k{n}");
        let value = format!("v{n}");
        loop {
            assert!(
                start.elapsed() < DEADLINE,
                "put {key} did not commit with the follower server stopped"
            );
            match smol::block_on(c.put(&key, &value)) {
                Ok(_) => break,
                Err(e) => {
                    eprintln!("put {key}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    let expected: BTreeMap<String, String> = (1..=KEYS + 5)
        .map(|n| (format!("mixed.k{n}"), format!("v{n}")))
        .collect();
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "the leader and the embedded node did not converge: leader {:?}, embedded {:?}",
            smol::block_on(c.status())
                .map(|s| (s.commit, s.applied))
                .ok(),
            seen.lock().unwrap().status
        );
        let applied = smol::block_on(c.status()).map(|s| s.applied).unwrap_or(0);
        let embedded = status_u64(&seen, "applied");
        if applied == embedded && seen.lock().unwrap().entries == expected {
            eprintln!(
                "with one server stopped: applied {embedded} on the leader and the embedded node"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen.lock().unwrap().boot.contains("formatted"),
        "the first start formats the flash file: {}",
        seen.lock().unwrap().boot
    );

    // Restart: the stopped server comes back, the embedded node is killed (SIGKILL), the
    // cluster moves on without it, and the embedded node restarts from its flash file: it
    // recovers its log (every entry it had acknowledged was synced to the file) and catches up.
    guard.children[1 - leader_index] = spawn_server(1 - leader_index);
    let acked = status_u64(&seen, "applied");
    guard.children[2].kill().expect("kill the embedded node");
    let _ = guard.children[2].wait();
    for n in KEYS + 6..=KEYS + 10 {
        let key = format!("mixed.k{n}");
        let value = format!("v{n}");
        loop {
            assert!(
                start.elapsed() < 2 * DEADLINE,
                "put {key} did not commit with the embedded node down"
            );
            match smol::block_on(c.put(&key, &value)) {
                Ok(_) => break,
                Err(e) => {
                    eprintln!("put {key}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    let mut node = spawn_embedded();
    let seen = watch_stdout(&mut node);
    guard.children[2] = node;
    let expected: BTreeMap<String, String> = (1..=KEYS + 10)
        .map(|n| (format!("mixed.k{n}"), format!("v{n}")))
        .collect();
    loop {
        assert!(
            start.elapsed() < 2 * DEADLINE,
            "the restarted embedded node did not catch up: leader {:?}, embedded {:?}, {}",
            smol::block_on(c.status())
                .map(|s| (s.commit, s.applied))
                .ok(),
            seen.lock().unwrap().status,
            seen.lock().unwrap().boot
        );
        let applied = smol::block_on(c.status()).map(|s| s.applied).unwrap_or(0);
        let embedded = status_u64(&seen, "applied");
        if applied > 0 && applied == embedded && seen.lock().unwrap().entries == expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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
    drop(guard);
}
