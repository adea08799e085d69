//! `shoal-inspect` on data dirs written by real `shoald` processes on 127.0.0.1, and the
//! procedures of `docs/OPERATIONS.md` run end to end with `shoald`, `shoalctl` and
//! `shoal-inspect`:
//!
//! - inspection of a real node's dir, then damage (a flipped bit in a sealed record, a truncated
//!   segment, a deleted segment) found by `verify` with file and byte offset;
//! - disaster recovery after quorum loss: export the survivor, import into a new 3-node
//!   cluster on new ports, every acknowledged key served, new writes accepted;
//! - bootstrap from an env file, rolling restart, replacing a failed node, online and offline
//!   backups.
//!
//! The processes run under `shoal-testkit`, which cleans them up however a test ends.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use shoal_client::protocol::{ReadMode, WriteOp};
use shoal_core::entry::EntryRef;
use shoal_core::membership::Membership;
use shoal_core::storage::Storage;
use shoal_core::types::{EntryKind, HardState};
use shoal_kv::{Command as KvCommand, Op};
use shoal_std::storage::{DataDir, Identity, StorageOptions};
use shoal_testkit::cli::{inspect_json, run};
use shoal_testkit::cluster::segment_first_index;
use shoal_testkit::{inspect, wait_for, Cluster, ClusterBuilder, Node, WAIT};

/// Nodes that never fsync (these tests inspect files, not power cuts), with relaxed timing.
fn cluster() -> ClusterBuilder {
    Cluster::builder()
        .fsync("never")
        .election_timeout_ms(800)
        .heartbeat_interval_ms(Some(80))
}

/// A path as `&str`.
fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// The newest `.snap` file under a data dir, if any.
fn newest_snap(dir: &Path) -> Option<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "snap") {
                let t = e.metadata().and_then(|m| m.modified()).ok();
                found.push((t, p));
            }
        }
    }
    found.sort();
    found.pop().map(|(_, p)| p)
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

fn put(key: &str, value: &str) -> WriteOp {
    WriteOp::Put {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    }
}

/// One real node: keys written with shoalctl and the client protocol, enough bulk data to roll
/// the log over at least twice (its segments start small and grow), SIGTERM; then every
/// inspection command, then damage.
#[test]
fn a_real_nodes_dir_is_inspected_and_its_damage_located() {
    let mut c = cluster().voters([1]).build();
    c.start(1);
    c.wait_leader(0);
    c.ctl(&["mkdir", "app"]).ok();
    c.ctl(&["put", "app.name", "shoal"]).ok();
    c.ctl(&["mkdir", "app.db"]).ok();
    c.ctl(&["put", "app.db.url", "postgres://db:5432/app"]).ok();
    for i in 0..20u64 {
        c.write(0, 7, i + 1, put(&format!("k{i:02}"), &format!("v{i:02}")));
    }
    // Bulk batches of 16 values of 60 000 bytes (under the 1 MiB command limit) until the log
    // has rolled over to a third segment, so that the first two are sealed (synced whole).
    c.ctl(&["mkdir", "bulk"]).ok();
    let mut seq = 100;
    while c.node(1).segments(0).len() < 3 {
        assert!(
            seq < 400,
            "the log did not roll over after {} batches",
            seq - 100
        );
        let pairs = (0..16u8)
            .map(|i| {
                (
                    format!("bulk.b{i:02}").into_bytes(),
                    vec![b'a' + i % 26; 60_000],
                )
            })
            .collect();
        c.write(0, 8, seq, WriteOp::BatchPut { pairs });
        seq += 1;
    }
    c.ctl(&["put", "last", "after-bulk"]).ok();
    let st = c.status(1, 0).unwrap();
    assert!(c.stop(1).success(), "{}", c.node(1).log());
    let dir = c.node(1).dir.clone();
    let dir = dir.as_path();
    // The last write may have started one more segment.
    let on_disk = c.node(1).segments(0).len();
    assert!(on_disk >= 3, "{on_disk} segments");

    // summary: identity, the log's extent, every segment, healthy.
    let (code, v) = inspect_json(&["summary", s(dir)]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["identity"]["node_id"], 1);
    assert_eq!(v["identity"]["cluster_id"], 1);
    assert_eq!(v["identity"]["raft_addr"], c.node(1).raft.as_str());
    let g = &v["groups"][0];
    assert_eq!(g["group"], 0, "{g}");
    assert_eq!(g["first"][0], 1, "{g}");
    assert_eq!(g["last"][0], st.last_index, "{g}");
    assert_eq!(g["segments"].as_array().unwrap().len(), on_disk, "{g}");
    assert!(g["hard_state"]["commit"].as_u64().unwrap() <= st.last_index);
    assert_eq!(v["ok"], true);
    let out = inspect(&["summary", s(dir)]);
    assert!(out.ok().contains("health     OK"), "{out}");

    // log: the keys written appear as `put KEY = "VALUE"`.
    let log = inspect(&[
        "log",
        s(dir),
        "--group",
        "0",
        "--from",
        "1",
        "--limit",
        "40",
    ]);
    let text = log.ok();
    assert!(text.contains("put app.name = \"shoal\""), "{log}");
    assert!(
        text.contains("put app.db.url = \"postgres://db:5432/app\""),
        "{log}"
    );
    for i in 0..20 {
        assert!(
            text.contains(&format!("put k{i:02} = \"v{i:02}\"")),
            "{log}"
        );
    }
    let from = (st.last_index - 2).to_string();
    let tail = inspect(&["log", s(dir), "--from", &from]);
    assert!(tail.ok().contains("put last = \"after-bulk\""), "{tail}");

    // entry: one entry in full, found through the JSON log.
    let (_, v) = inspect_json(&["log", s(dir), "--from", "1", "--limit", "40"]);
    let idx = v["groups"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["command"]["key"] == "app.name")
        .expect("app.name in the log")["index"]
        .as_u64()
        .unwrap();
    let entry = inspect(&["entry", s(dir), &idx.to_string()]);
    let text = entry.ok();
    assert!(
        text.contains("shoal") && text.contains("00000000  "),
        "{entry}"
    );

    // verify: clean.
    let verify = inspect(&["verify", s(dir)]);
    assert!(verify.ok().contains("OK"), "{verify}");

    // A flipped bit in the second record of the first (sealed) segment.
    let segs = c.node(1).segments(0);
    let seg0 = segs[0].clone();
    let good = std::fs::read(&seg0).unwrap();
    let hdr = u32_at(&good, 0) + 8;
    let second = hdr + u32_at(&good, hdr) + 8;
    let mut bad = good.clone();
    bad[second + 12] ^= 0x10;
    std::fs::write(&seg0, &bad).unwrap();
    let (code, v) = inspect_json(&["verify", s(dir)]);
    assert_eq!(code, 1, "{v}");
    let pr = &v["problems"][0];
    assert_eq!(pr["severity"], "error", "{v}");
    assert_eq!(pr["file"], s(&seg0), "{v}");
    assert_eq!(pr["offset"], second as u64, "{v}");
    let verify = inspect(&["verify", s(dir)]);
    assert_eq!(verify.code, 1);
    assert!(
        verify
            .out
            .contains(&format!("error: {} at offset {second}", s(&seg0))),
        "{verify}"
    );
    std::fs::write(&seg0, &good).unwrap();

    // The first segment cut short in the middle of its second record.
    std::fs::write(&seg0, &good[..second + 7]).unwrap();
    let (code, v) = inspect_json(&["verify", s(dir)]);
    assert_eq!(code, 1, "{v}");
    let pr = &v["problems"][0];
    assert_eq!(pr["file"], s(&seg0), "{v}");
    assert_eq!(pr["offset"], second as u64, "{v}");
    std::fs::write(&seg0, &good).unwrap();
    drop(good);
    drop(bad);
    assert_eq!(inspect(&["verify", s(dir)]).code, 0, "restored");

    // The middle segment deleted: the gap is reported at the start of the next one.
    std::fs::remove_file(&segs[1]).unwrap();
    let (code, v) = inspect_json(&["verify", s(dir)]);
    assert_eq!(code, 1, "{v}");
    let pr = &v["problems"][0];
    assert_eq!(pr["file"], s(&segs[2]), "{v}");
    assert_eq!(pr["offset"], 0, "{v}");
    let missing_from = segment_first_index(&segs[1]);
    assert_eq!(pr["expected"], format!("first index {missing_from}"), "{v}");

    // shoald refuses that dir too, naming the gap.
    c.start(1);
    assert!(!c.wait_exit(1, WAIT).success());
    assert!(
        c.node(1).log().contains("gap in the log"),
        "{}",
        c.node(1).log()
    );

    // Upgrades: a segment of an unknown (newer) format version, with a valid CRC, is refused
    // by verify and by shoald, naming the file, instead of being guessed at.
    let mut b = std::fs::read(&seg0).unwrap();
    b[13] = 99; // length (4), record version (1), magic (8), then the segment format version
    let crc = shoal_core::record::CRC32C.checksum(&b[..26]);
    b[26..30].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg0, &b).unwrap();
    let (code, v) = inspect_json(&["verify", s(dir)]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["problems"][0]["file"], s(&seg0), "{v}");
    assert_eq!(v["problems"][0]["offset"], 0, "{v}");
    c.start(1);
    assert!(!c.wait_exit(1, WAIT).success());
    let err = c.node(1).log();
    let name = seg0.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name) && err.contains("version 99"), "{err}");
}

/// Quorum loss and rebuild: a 3-node cluster takes acknowledged writes, two nodes die for good
/// (kill -9, data dirs deleted), the survivor is stopped and exported, and a new 3-node cluster
/// with new ids and ports is imported from that export and serves every acknowledged key.
#[test]
fn disaster_recovery_rebuilds_a_new_cluster_from_the_survivor() {
    let mut old = cluster().build();
    old.start_all();
    old.wait_leader(0);

    // Acknowledged writes: some through shoalctl, most through the client protocol.
    let mut acked: Vec<(String, String)> = Vec::new();
    old.ctl(&["mkdir", "dr"]).ok();
    for i in 0..5 {
        let (k, v) = (format!("dr.ctl{i}"), format!("from-shoalctl-{i}"));
        old.ctl(&["put", &k, &v]).ok();
        acked.push((k, v));
    }
    for i in 0..40u64 {
        let (k, v) = (format!("dr.k{i:02}"), format!("value-{i}"));
        old.write(0, 9, i + 1, put(&k, &v));
        acked.push((k, v));
    }

    // The leader holds every acknowledged entry in its log: it survives, the others are lost.
    let survivor = old.wait_leader(0);
    for id in [1u64, 2, 3] {
        if id != survivor {
            old.kill(id);
            std::fs::remove_dir_all(&old.node(id).dir).unwrap();
        }
    }
    assert!(old.stop(survivor).success(), "{}", old.node(survivor).log());
    let sdir = old.node(survivor).dir.clone();
    let sdir = sdir.as_path();

    // 1. Summary, verify and export of the survivor, with --upto last.
    let (code, v) = inspect_json(&["summary", s(sdir)]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["identity"]["node_id"], survivor);
    assert_eq!(inspect(&["verify", s(sdir)]).code, 0);
    let file = old.root().join("rebuild.shoal");
    inspect(&["export", s(sdir), "--upto", "last", "--out", s(&file)]).ok();
    let keys = inspect(&["snapshot", s(&file), "--keys"]);
    for (k, _) in &acked {
        assert!(
            keys.ok().contains(k.as_str()),
            "{k} missing from the export: {keys}"
        );
    }

    // The export carries the old cluster's member records, which the import replaces.
    for id in [1, 2, 3] {
        let k = format!("__shoal.members.{id}");
        assert!(
            keys.ok().contains(&k),
            "{k} missing from the export: {keys}"
        );
    }

    // 2. Import into fresh dirs of a new cluster: new ids, new ports.
    let mut new = cluster().voters(4..=6).build();
    let new_members = new.members(&[4, 5, 6]);
    for id in [4u64, 5, 6] {
        let dir = new.node(id).dir.clone();
        let id = id.to_string();
        let args = [
            "import",
            s(&file),
            "--data-dir",
            s(&dir),
            "--node-id",
            &id,
            "--members",
            &new_members,
        ];
        inspect(&args).ok();
        assert_eq!(inspect(&["verify", s(&dir)]).code, 0);
    }
    // import refuses a non-empty dir.
    let dir4 = new.node(4).dir.clone();
    let again = [
        "import",
        s(&file),
        "--data-dir",
        s(&dir4),
        "--node-id",
        "4",
        "--members",
        &new_members,
    ];
    let refused = inspect(&again);
    assert_eq!(refused.code, 2, "{refused}");

    // 3. Start the new cluster; every acknowledged key is there, new writes are taken.
    new.start_all();
    new.wait_leader(0);
    for (k, v) in &acked {
        assert_eq!(
            new.get_any(0, k, ReadMode::Linearizable).as_deref(),
            Some(v.as_bytes()),
            "{k} after the rebuild"
        );
    }
    let out = new.ctl(&["get", "dr.ctl3", "--consistency", "linearizable"]);
    assert_eq!(out.ok().trim(), "from-shoalctl-3");
    new.ctl(&["put", "dr.after", "rebuilt"]).ok();
    assert_eq!(new.ctl(&["get", "dr.after"]).ok().trim(), "rebuilt");
    let list = new.ctl(&["-o", "json", "member", "list"]);
    for id in [4u64, 5, 6] {
        assert!(list.ok().contains(&new.node(id).raft), "{list}");
    }
    // The import rewrote the cluster's member records: the new members, at their addresses.
    let records = new.ctl(&["list", "__shoal.members"]);
    let mut names: Vec<&str> = records.ok().lines().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "__shoal.members.4",
            "__shoal.members.5",
            "__shoal.members.6"
        ],
        "{records}"
    );
    let rec = new.ctl(&["get", "__shoal.members.5"]);
    assert!(rec.ok().contains(&new.node(5).raft), "{rec}");
}

/// The env file of `docs/OPERATIONS.md` ("systemd") for one node, with test addresses.
fn env_file(n: &Node, members: &str) -> String {
    format!(
        "SHOAL_NODE_ID={}\nSHOAL_CLUSTER_ID=42\nSHOAL_DATA_DIR={}\nSHOAL_RAFT_ADDR={}\n\
         SHOAL_CLIENT_ADDR={}\nSHOAL_ADMIN_ADDR={}\nSHOAL_INITIAL_MEMBERS={}\nSHOAL_FSYNC=always\n\
         SHOAL_SNAPSHOT_ON_SHUTDOWN=true\n",
        n.id,
        s(&n.dir),
        n.raft,
        n.client,
        n.admin,
        members
    )
}

fn healthy(c: &Cluster, id: u64) -> bool {
    matches!(c.http_get(id, "/health"), Some((200, _)))
}

/// `shoalctl -o json ARGS` against node `id`: its first line, parsed.
fn ctl_json(c: &Cluster, ids: &[u64], args: &[&str]) -> Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let o = c.ctl_at(ids, &all);
    serde_json::from_str(o.ok().lines().next().unwrap_or(""))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {o}"))
}

/// The operations guide, in order: bootstrap from env files, check status and /health, a
/// rolling restart with leadership moved away first, replacing a failed node (new id, join as
/// observer, promote, remove the old one), an online backup (`shoalctl snapshot` and the newest
/// `.snap`), an offline backup (copy of a stopped node's dir, `export`), every inspection
/// command on the copy, and `import` of a `.snap` file.
#[test]
fn the_operations_guide_procedures_work_on_real_processes() {
    let mut c = cluster().cluster_id(42).spares([4]).build();
    let root = c.root().to_path_buf();
    let m3 = c.members(&[1, 2, 3]);

    // Bootstrap: every initial member from its env file, same cluster id and member list.
    let envs: Vec<PathBuf> = [1u64, 2, 3]
        .into_iter()
        .map(|id| {
            let f = root.join(format!("shoald-{id}.env"));
            std::fs::write(&f, env_file(c.node(id), &m3)).unwrap();
            f
        })
        .collect();
    for (id, f) in [1u64, 2, 3].into_iter().zip(&envs) {
        c.start_from_env_file(id, f);
    }
    c.wait_leader(0);
    for id in [1u64, 2, 3] {
        let st = ctl_json(&c, &[id], &["status"]);
        assert_eq!(st["node_id"], id, "{st}");
        wait_for("/health 200 after bootstrap", WAIT, || healthy(&c, id));
    }
    let identity = std::fs::read(c.node(1).dir.join("identity")).unwrap();
    assert!(!identity.is_empty());
    c.ctl(&["mkdir", "ops"]).ok();
    for i in 0..10 {
        c.ctl(&["put", &format!("ops.k{i}"), &format!("v{i}")]).ok();
    }

    // Rolling restart, one node at a time.
    for (i, id) in [1u64, 2, 3].into_iter().enumerate() {
        let st = ctl_json(&c, &[id], &["status"]);
        if st["role"] == "leader" {
            let other = id % 3 + 1;
            c.ctl_at(&[id], &["leader", "transfer", &other.to_string()])
                .ok();
            wait_for("leadership moved away", WAIT, || {
                c.status(id, 0)
                    .is_some_and(|s| s.role != "leader" && s.leader == other)
            });
        }
        assert!(c.stop(id).success(), "{}", c.node(id).log());
        // --snapshot-on-shutdown (from the env file) left a snapshot behind.
        let snap = newest_snap(&c.node(id).dir).expect("a snapshot taken at shutdown");
        let keys = inspect(&["snapshot", s(&snap), "--keys"]);
        // (A follower may not have applied the very last write yet; the first one it has.)
        assert!(keys.ok().contains("ops.k0"), "{keys}");
        c.start_from_env_file(id, &envs[i]);
        wait_for("/health 200 after the restart", WAIT, || healthy(&c, id));
        c.ctl_at(&[1, 2, 3], &["put", &format!("ops.roll{i}"), "ok"])
            .ok();
    }
    for (i, id) in [1u64, 2, 3].into_iter().enumerate() {
        let out = c.ctl_at(&[id], &["get", &format!("ops.roll{i}")]);
        assert_eq!(out.ok().trim(), "ok");
    }

    // Replacing a failed node: node 3 dies; node 4 (a new id, empty dir) joins as an observer,
    // catches up, is promoted, and node 3 is removed.
    c.kill(3);
    c.start_joining(4);
    let raft4 = c.node(4).raft.clone();
    c.ctl_at(&[1, 2], &["member", "add", "4", &raft4, "--observer"])
        .ok();
    let leader = c.wait_leader(0);
    wait_for("node 4 caught up", WAIT, || {
        let st = ctl_json(&c, &[leader], &["status"]);
        let last = st["last_index"].as_u64().unwrap();
        st["members"].as_array().unwrap().iter().any(|m| {
            m["id"] == 4 && m["role"] == "observer" && m["match_index"].as_u64() == Some(last)
        })
    });
    c.ctl_at(&[1, 2], &["member", "promote", "4"]).ok();
    c.ctl_at(&[1, 2], &["member", "remove", "3"]).ok();
    let list = ctl_json(&c, &[1, 2], &["member", "list"]).to_string();
    assert!(
        list.contains(&raft4) && !list.contains(&c.node(3).raft),
        "{list}"
    );
    c.ctl_at(&[1, 2, 4], &["put", "ops.replaced", "yes"]).ok();
    assert_eq!(c.ctl_at(&[4], &["get", "ops.replaced"]).ok().trim(), "yes");

    // Online backup: snapshot a running node, copy its newest .snap, check it.
    let backup = root.join("backup");
    std::fs::create_dir_all(backup.join("work")).unwrap();
    c.ctl_at(&[1], &["snapshot"]).ok();
    let snap = newest_snap(&c.node(1).dir).expect("a .snap after shoalctl snapshot");
    let online = backup.join("online.snap");
    std::fs::copy(&snap, &online).unwrap();
    let keys = inspect(&["snapshot", s(&online), "--keys"]);
    assert!(keys.ok().contains("ops.replaced"), "{keys}");

    // Offline backup: stop node 2 (1 and 4 keep the quorum), copy its dir, export the copy.
    assert!(c.stop(2).success());
    let work = backup.join("work/shoal");
    let mut cp = Command::new("cp");
    cp.args(["-a", "--reflink=auto", s(&c.node(2).dir), s(&work)]);
    run(cp, None, Duration::from_secs(30)).ok();
    let file = backup.join("shoal-backup.shoal");
    inspect(&["export", s(&work), "--group", "0", "--out", s(&file)]).ok();
    let keys = inspect(&["snapshot", s(&file), "--keys"]);
    let text = keys.ok();
    assert!(
        text.contains("ops.replaced") && text.contains("ops.roll2"),
        "{keys}"
    );
    let dump = inspect(&["snapshot", s(&file), "--dump"]);
    assert!(dump.ok().contains("yes"), "{dump}");
    // export refuses to overwrite its output.
    assert_eq!(inspect(&["export", s(&work), "--out", s(&file)]).code, 2);

    // Every inspection command of the guide, on the copy.
    let summary = inspect(&["summary", s(&work)]);
    assert!(summary.ok().contains("health     OK"), "{summary}");
    let (code, v) = inspect_json(&["summary", s(&work)]);
    assert_eq!(code, 0);
    assert_eq!(v["identity"]["cluster_id"], 42);
    assert_eq!(v["identity"]["node_id"], 2);
    let first = v["groups"][0]["first"][0].as_u64().unwrap_or(1).to_string();
    let log = inspect(&[
        "log",
        s(&work),
        "--group",
        "0",
        "--from",
        &first,
        "--limit",
        "50",
    ]);
    assert!(log.ok().contains("put ops.replaced = \"yes\""), "{log}");
    inspect(&["entry", s(&work), &first]).ok();
    inspect(&["verify", s(&work)]).ok();

    // import reads a .snap file too (which does not record the cluster id: pass it).
    let from_snap = root.join("from-snap");
    inspect(&[
        "import",
        s(&online),
        "--data-dir",
        s(&from_snap),
        "--node-id",
        "9",
        "--members",
        "9=127.0.0.1:26391",
        "--cluster-id",
        "42",
    ])
    .ok();
    assert_eq!(inspect(&["verify", s(&from_snap)]).code, 0);
}

/// Node 1 of cluster 1 made by hand at `dir` (raft address `raft`), as an older or damaged
/// node left it: group 0 holds `entries` (from index 1: term, kind, payload) and `hs`, synced.
fn hand_made_dir(dir: &Path, raft: &str, entries: &[(u64, EntryKind, &[u8])], hs: HardState) {
    let identity = Identity {
        cluster_id: 1,
        node_id: 1,
        raft_addr: raft.to_string(),
    };
    let dd = DataDir::bootstrap(dir, &identity).unwrap();
    let mut st = dd.open_group(0, &StorageOptions::default()).unwrap();
    for (i, &(term, kind, data)) in entries.iter().enumerate() {
        let e = EntryRef {
            index: i as u64 + 1,
            term,
            kind,
            data,
        };
        st.append(&e).unwrap();
    }
    st.save_hard_state(&hs).unwrap();
    st.sync().unwrap();
}

/// The configuration entry's payload of a group whose one voter is node 1.
fn single_voter_config() -> Vec<u8> {
    postcard::to_stdvec(&Membership::new(&[1], &[]).unwrap()).unwrap()
}

/// A log entry's payload that puts `key` = `value`.
fn put_command(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut put = vec![0u8; 128];
    let n = KvCommand {
        client_id: 0,
        seq: 0,
        time_ms: 1,
        op: Op::Put { key, value },
    }
    .encode(&mut put)
    .unwrap();
    put.truncate(n);
    put
}

/// A power cut kept a node's log of a leader's term and lost the hard state that took the
/// term up: `verify` warns, and `shoald` starts in the log's term (its next election is in a
/// later one, not in the term whose entries it holds) and serves them.
#[test]
fn a_node_whose_hard_state_lags_its_log_starts_in_the_log_s_term() {
    let mut c = cluster().voters([1]).build();
    let dir = c.node(1).dir.clone();
    let put = put_command(b"kept", b"by the log");
    hand_made_dir(
        &dir,
        &c.node(1).raft,
        &[
            (1, EntryKind::Config, &single_voter_config()),
            (3, EntryKind::Noop, &[]),
            (3, EntryKind::Normal, &put),
        ],
        // The hard state of before term 3 reached it.
        HardState {
            term: 2,
            vote: 1,
            commit: 1,
        },
    );
    let (code, v) = inspect_json(&["verify", s(&dir)]);
    assert_eq!(code, 0, "a warning, not damage: {v}");
    let p = &v["problems"][0];
    assert_eq!(p["severity"], "warning", "{v}");
    assert!(
        p["detail"].as_str().unwrap().contains("takes up term 3"),
        "{v}"
    );

    c.start(1);
    c.wait_leader(0);
    assert_eq!(
        c.get(1, 0, "kept", ReadMode::Linearizable),
        Some(b"by the log".to_vec())
    );
    let term = c.status(1, 0).unwrap().term;
    assert!(
        term >= 4,
        "the node led term {term}: starting in its log's term 3, it must campaign in a later one"
    );
    assert!(c.stop(1).success(), "{}", c.node(1).log());
    let (code, v) = inspect_json(&["verify", s(&dir)]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");
    let (_, v) = inspect_json(&["summary", s(&dir)]);
    assert!(
        v["groups"][0]["hard_state"]["term"].as_u64().unwrap() >= 4,
        "{v}"
    );
}

/// A data dir written before the cluster's records existed: addresses in `0xA5` log entries,
/// no `__shoal` subtree. The node starts on it, reads the old entries (the address of a node
/// it learned only from one lands in its address book), and writes the new form: its member
/// record, shown in words by `shoal-inspect log` next to the old entries.
#[test]
fn a_data_dir_from_before_the_records_starts_and_writes_them() {
    use shoal_std::storage::addrbook::{encode_addr_entry, MemberAddr};
    use shoal_std::storage::scan::read_address_book;

    let mut c = cluster().voters([1]).build();
    let (dir, raft, client) = {
        let n = c.node(1);
        (n.dir.clone(), n.raft.clone(), n.client.clone())
    };
    let own = encode_addr_entry(&MemberAddr {
        id: 1,
        raft_addr: raft.clone(),
        client_addr: client.clone(),
    });
    let seen = encode_addr_entry(&MemberAddr {
        id: 7,
        raft_addr: "10.9.9.7:7001".into(),
        client_addr: "10.9.9.7:7002".into(),
    });
    let put = put_command(b"legacy", b"yes");
    hand_made_dir(
        &dir,
        &raft,
        &[
            (1, EntryKind::Config, &single_voter_config()),
            (1, EntryKind::Normal, &own),
            (1, EntryKind::Normal, &seen),
            (1, EntryKind::Normal, &put),
        ],
        HardState {
            term: 1,
            vote: 1,
            commit: 4,
        },
    );
    c.start(1);
    c.wait_leader(0);
    assert_eq!(
        c.get(1, 0, "legacy", ReadMode::Linearizable),
        Some(b"yes".to_vec())
    );
    wait_for("node 1 to write its member record", WAIT, || {
        c.ctl(&["get", "__shoal.members.1"]).out.trim()
            == format!("member raft {raft} client {client}")
    });
    let book = read_address_book(&dir.join("group-0")).unwrap();
    assert!(
        book.iter()
            .any(|a| a.id == 7 && a.raft_addr == "10.9.9.7:7001"),
        "{book:?}"
    );
    // Restarted, it starts again on the mixed log.
    assert!(c.stop(1).success());
    c.start(1);
    c.wait_leader(0);
    assert!(c.stop(1).success());
    let log = inspect(&["log", s(&dir)]);
    let text = log.ok();
    assert!(
        text.contains("address node 7 raft 10.9.9.7:7001 client 10.9.9.7:7002"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "system put __shoal.members.1 = member raft {raft} client {client}"
        )),
        "{text}"
    );
}

/// The documented offline backup (stop the node, export it) holds every acknowledged write: a
/// node stopping cleanly saves its commit index, which it otherwise writes only now and then
/// (here: not within the test).
#[test]
fn a_cleanly_stopped_node_exports_every_acknowledged_write() {
    let mut c = cluster()
        .voters([1])
        .args(&["--commit-hint-interval", "1h"])
        .build();
    c.start_all();
    c.wait_leader(0);
    for i in 0..100u64 {
        c.put(0, 7, i + 1, &format!("k{i:03}"), "v");
    }
    assert!(c.stop(1).success(), "{}", c.node(1).log());
    let dir = c.node(1).dir.clone();
    let file = c.root().join("backup.shoal");
    // The default export goes up to the commit index: no `--upto last` needed.
    inspect(&["export", s(&dir), "--out", s(&file)]).ok();
    let keys = inspect(&["snapshot", s(&file), "--keys"]);
    for i in 0..100 {
        let k = format!("k{i:03}");
        assert!(
            keys.ok().contains(&k),
            "{k} missing from the export: {keys}"
        );
    }
}
