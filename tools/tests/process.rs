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
//! Every child runs under a kill-on-drop guard; every wait is bounded.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use shoal_client::protocol::WriteOp;

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

/// One real node: keys written with shoalctl and the client protocol, enough bulk data to roll
/// the 64 MiB log over twice, SIGTERM; then every inspection command, then damage.
#[test]
fn a_real_nodes_dir_is_inspected_and_its_damage_located() {
    let Some((shoald, shoalctl)) = server_bins() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let n1 = node(26000, 1, tmp.path(), "n1");
    let mut p = start(&shoald, &n1, &members(std::slice::from_ref(&n1)), &[], "a");
    wait_leader(&[&n1]);
    let ep = n1.client.as_str();
    ctl_ok(&shoalctl, ep, &["mkdir", "app"]);
    ctl_ok(&shoalctl, ep, &["put", "app.name", "shoal"]);
    ctl_ok(&shoalctl, ep, &["mkdir", "app.db"]);
    ctl_ok(
        &shoalctl,
        ep,
        &["put", "app.db.url", "postgres://db:5432/app"],
    );
    for i in 0..20u64 {
        write(
            &[ep],
            7,
            i + 1,
            WriteOp::Put {
                key: format!("k{i:02}").into_bytes(),
                value: format!("v{i:02}").into_bytes(),
            },
        );
    }
    // Bulk batches of 16 values of 60 000 bytes (under the 1 MiB command limit) until the log
    // has rolled
    // over to a third segment, so that the first two are sealed (synced whole).
    ctl_ok(&shoalctl, ep, &["mkdir", "bulk"]);
    let mut seq = 100;
    while segments(&n1.dir).len() < 3 {
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
        write(&[ep], 8, seq, WriteOp::BatchPut { pairs });
        seq += 1;
    }
    ctl_ok(&shoalctl, ep, &["put", "last", "after-bulk"]);
    let st = status(ep).unwrap();
    assert!(p.sigterm().success(), "{}", p.stderr_text());
    let dir = n1.dir.as_path();

    // summary: identity, the log's extent, three segments, healthy.
    let (code, v) = inspect_json(&["summary", s(dir)]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["identity"]["node_id"], 1);
    assert_eq!(v["identity"]["cluster_id"], 1);
    assert_eq!(v["identity"]["raft_addr"], n1.raft.as_str());
    let g = &v["groups"][0];
    assert_eq!(g["group"], 0, "{g}");
    assert_eq!(g["first"][0], 1, "{g}");
    assert_eq!(g["last"][0], st.last_index, "{g}");
    assert_eq!(g["segments"].as_array().unwrap().len(), 3, "{g}");
    assert!(g["hard_state"]["commit"].as_u64().unwrap() <= st.last_index);
    assert_eq!(v["ok"], true);
    let (code, out, _) = inspect(&["summary", s(dir)]);
    assert_eq!(code, 0);
    assert!(out.contains("health     OK"), "{out}");

    // log: the keys written appear as `put KEY = "VALUE"`.
    let (code, out, err) = inspect(&[
        "log",
        s(dir),
        "--group",
        "0",
        "--from",
        "1",
        "--limit",
        "40",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("put app.name = \"shoal\""), "{out}");
    assert!(
        out.contains("put app.db.url = \"postgres://db:5432/app\""),
        "{out}"
    );
    for i in 0..20 {
        assert!(out.contains(&format!("put k{i:02} = \"v{i:02}\"")), "{out}");
    }
    let from = (st.last_index - 2).to_string();
    let (code, out, _) = inspect(&["log", s(dir), "--from", &from]);
    assert_eq!(code, 0);
    assert!(out.contains("put last = \"after-bulk\""), "{out}");

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
    let (code, out, _) = inspect(&["entry", s(dir), &idx.to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("shoal") && out.contains("00000000  "), "{out}");

    // verify: clean.
    let (code, out, _) = inspect(&["verify", s(dir)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK"), "{out}");

    // A flipped bit in the second record of the first (sealed) segment.
    let segs = segments(dir);
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
    let (code, out, _) = inspect(&["verify", s(dir)]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("error: {} at offset {second}", s(&seg0))),
        "{out}"
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
    assert_eq!(inspect(&["verify", s(dir)]).0, 0, "restored");

    // The middle segment deleted: the gap is reported at the start of the next one.
    std::fs::remove_file(&segs[1]).unwrap();
    let (code, v) = inspect_json(&["verify", s(dir)]);
    assert_eq!(code, 1, "{v}");
    let pr = &v["problems"][0];
    assert_eq!(pr["file"], s(&segs[2]), "{v}");
    assert_eq!(pr["offset"], 0, "{v}");
    let missing_from: u64 = segs[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pr["expected"], format!("first index {missing_from}"), "{v}");

    // shoald refuses that dir too, naming the gap.
    let mut p = start(
        &shoald,
        &n1,
        &members(std::slice::from_ref(&n1)),
        &[],
        "gap",
    );
    let mut exited = None;
    wait_for("shoald refusing a dir with a gap", 15, || {
        exited = p.child.as_mut().unwrap().try_wait().unwrap();
        exited.is_some()
    });
    assert!(!exited.unwrap().success());
    assert!(
        p.stderr_text().contains("gap in the log"),
        "{}",
        p.stderr_text()
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
    let mut p = start(
        &shoald,
        &n1,
        &members(std::slice::from_ref(&n1)),
        &[],
        "version",
    );
    let mut exited = None;
    wait_for("shoald refusing an unknown segment version", 15, || {
        exited = p.child.as_mut().unwrap().try_wait().unwrap();
        exited.is_some()
    });
    assert!(!exited.unwrap().success());
    let err = p.stderr_text();
    let name = seg0.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name) && err.contains("version 99"), "{err}");
}

/// Quorum loss and rebuild: a 3-node cluster takes acknowledged writes, two nodes die for good
/// (kill -9, data dirs deleted), the survivor is stopped and exported, and a new 3-node cluster
/// with new ids and ports is imported from that export and serves every acknowledged key.
#[test]
fn disaster_recovery_rebuilds_a_new_cluster_from_the_survivor() {
    let Some((shoald, shoalctl)) = server_bins() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let old: Vec<Node> = (1..=3)
        .map(|i| node(26100, i, root, &format!("old{i}")))
        .collect();
    let old_members = members(&old);
    let mut procs: Vec<Proc> = old
        .iter()
        .map(|n| start(&shoald, n, &old_members, &[], "a"))
        .collect();
    wait_leader(&old.iter().collect::<Vec<_>>());
    let eps = old
        .iter()
        .map(|n| n.client.clone())
        .collect::<Vec<_>>()
        .join(",");
    let addrs: Vec<&str> = old.iter().map(|n| n.client.as_str()).collect();

    // Acknowledged writes: some through shoalctl, most through the client protocol.
    let mut acked: Vec<(String, String)> = Vec::new();
    ctl_ok(&shoalctl, &eps, &["mkdir", "dr"]);
    for i in 0..5 {
        let (k, v) = (format!("dr.ctl{i}"), format!("from-shoalctl-{i}"));
        ctl_ok(&shoalctl, &eps, &["put", &k, &v]);
        acked.push((k, v));
    }
    for i in 0..40u64 {
        let (k, v) = (format!("dr.k{i:02}"), format!("value-{i}"));
        write(
            &addrs,
            9,
            i + 1,
            WriteOp::Put {
                key: k.clone().into_bytes(),
                value: v.clone().into_bytes(),
            },
        );
        acked.push((k, v));
    }

    // The leader holds every acknowledged entry in its log: it survives, the others are lost.
    let survivor = wait_leader(&old.iter().collect::<Vec<_>>());
    for (i, n) in old.iter().enumerate() {
        if n.id != survivor {
            procs[i].kill9();
            std::fs::remove_dir_all(&n.dir).unwrap();
        }
    }
    let si = (survivor - 1) as usize;
    assert!(procs[si].sigterm().success(), "{}", procs[si].stderr_text());
    let sdir = old[si].dir.as_path();

    // 1. Summary, verify and export of the survivor, with --upto last.
    let (code, v) = inspect_json(&["summary", s(sdir)]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["identity"]["node_id"], survivor);
    assert_eq!(inspect(&["verify", s(sdir)]).0, 0);
    let file = root.join("rebuild.shoal");
    let (code, out, err) = inspect(&["export", s(sdir), "--upto", "last", "--out", s(&file)]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = inspect(&["snapshot", s(&file), "--keys"]);
    assert_eq!(code, 0, "{out}");
    for (k, _) in &acked {
        assert!(
            out.contains(k.as_str()),
            "{k} missing from the export: {out}"
        );
    }

    // 2. Import into fresh dirs of a new cluster: new ids, new ports.
    let new: Vec<Node> = (4..=6)
        .map(|i| node(26200, i, root, &format!("new{i}")))
        .collect();
    let new_members = members(&new);
    for n in &new {
        let (code, out, err) = inspect(&[
            "import",
            s(&file),
            "--data-dir",
            s(&n.dir),
            "--node-id",
            &n.id.to_string(),
            "--members",
            &new_members,
        ]);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(inspect(&["verify", s(&n.dir)]).0, 0);
    }
    // import refuses a non-empty dir.
    let (code, _, err) = inspect(&[
        "import",
        s(&file),
        "--data-dir",
        s(&new[0].dir),
        "--node-id",
        "4",
        "--members",
        &new_members,
    ]);
    assert_eq!(code, 2, "{err}");

    // 3. Start the new cluster; every acknowledged key is there, new writes are taken.
    let _new_procs: Vec<Proc> = new
        .iter()
        .map(|n| start(&shoald, n, &new_members, &[], "a"))
        .collect();
    wait_leader(&new.iter().collect::<Vec<_>>());
    let new_eps = new
        .iter()
        .map(|n| n.client.clone())
        .collect::<Vec<_>>()
        .join(",");
    let new_addrs: Vec<&str> = new.iter().map(|n| n.client.as_str()).collect();
    for (k, v) in &acked {
        assert_eq!(
            get(&new_addrs, k).as_deref(),
            Some(v.as_bytes()),
            "{k} after the rebuild"
        );
    }
    let out = ctl_ok(
        &shoalctl,
        &new_eps,
        &["get", "dr.ctl3", "--consistency", "linearizable"],
    );
    assert_eq!(out.trim(), "from-shoalctl-3");
    ctl_ok(&shoalctl, &new_eps, &["put", "dr.after", "rebuilt"]);
    let out = ctl_ok(&shoalctl, &new_eps, &["get", "dr.after"]);
    assert_eq!(out.trim(), "rebuilt");
    let out = ctl_ok(&shoalctl, &new_eps, &["-o", "json", "member", "list"]);
    for n in &new {
        assert!(out.contains(&n.raft), "{out}");
    }
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

/// Start `shoald` with no flags, configured only by the `KEY=VALUE` lines of an env file (what
/// systemd's `EnvironmentFile=` does).
fn start_from_env_file(shoald: &Path, n: &Node, file: &Path, tag: &str) -> Proc {
    let stderr = n
        .dir
        .parent()
        .unwrap()
        .join(format!("shoald-{}-{tag}.log", n.id));
    let mut cmd = std::process::Command::new(shoald);
    for (k, v) in std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
    {
        cmd.env(k, v);
    }
    cmd.env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    Proc {
        child: Some(cmd.spawn().expect("spawn shoald")),
        stderr,
    }
}

fn healthy(n: &Node) -> bool {
    matches!(http_get(&n.admin, "/health"), Some((200, _)))
}

fn ctl_json(shoalctl: &Path, ep: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["-o", "json"];
    a.extend_from_slice(args);
    let out = ctl_ok(shoalctl, ep, &a);
    serde_json::from_str(out.lines().next().unwrap_or(""))
        .unwrap_or_else(|e| panic!("shoalctl {a:?}: {e}: {out}"))
}

/// The operations guide, in order: bootstrap from env files, check status and /health, a
/// rolling restart with leadership moved away first, replacing a failed node (new id, join as
/// observer, promote, remove the old one), an online backup (`shoalctl snapshot` and the newest
/// `.snap`), an offline backup (copy of a stopped node's dir, `export`), every inspection
/// command on the copy, and `import` of a `.snap` file.
#[test]
fn the_operations_guide_procedures_work_on_real_processes() {
    let Some((shoald, shoalctl)) = server_bins() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let n: Vec<Node> = (1..=4)
        .map(|i| node(26300, i, root, &format!("n{i}")))
        .collect();
    let m3 = members(&n[..3]);

    // Bootstrap: every initial member from its env file, same cluster id and member list.
    let envs: Vec<PathBuf> = n[..3]
        .iter()
        .map(|x| {
            let f = root.join(format!("shoald-{}.env", x.id));
            std::fs::write(&f, env_file(x, &m3)).unwrap();
            f
        })
        .collect();
    let mut procs: Vec<Option<Proc>> = n[..3]
        .iter()
        .zip(&envs)
        .map(|(x, f)| Some(start_from_env_file(&shoald, x, f, "a")))
        .collect();
    procs.push(None);
    wait_leader(&n[..3].iter().collect::<Vec<_>>());
    for x in &n[..3] {
        let st = ctl_json(&shoalctl, &x.client, &["status"]);
        assert_eq!(st["node_id"], x.id, "{st}");
        wait_for("/health 200 after bootstrap", 20, || healthy(x));
    }
    let id = std::fs::read(n[0].dir.join("identity")).unwrap();
    assert!(!id.is_empty());
    let eps3 = n[..3]
        .iter()
        .map(|x| x.client.clone())
        .collect::<Vec<_>>()
        .join(",");
    ctl_ok(&shoalctl, &eps3, &["mkdir", "ops"]);
    for i in 0..10 {
        ctl_ok(
            &shoalctl,
            &eps3,
            &["put", &format!("ops.k{i}"), &format!("v{i}")],
        );
    }

    // Rolling restart, one node at a time.
    for i in 0..3 {
        let x = &n[i];
        let st = ctl_json(&shoalctl, &x.client, &["status"]);
        if st["role"] == "leader" {
            let other = n[(i + 1) % 3].id;
            ctl_ok(
                &shoalctl,
                &x.client,
                &["leader", "transfer", &other.to_string()],
            );
            wait_for("leadership moved away", 20, || {
                status(&x.client).is_some_and(|s| s.role != "leader" && s.leader == other)
            });
        }
        let st = procs[i].as_mut().unwrap().sigterm();
        assert!(st.success(), "{}", procs[i].as_ref().unwrap().stderr_text());
        // --snapshot-on-shutdown (from the env file) left a snapshot behind.
        let snap = newest_snap(&x.dir).expect("a snapshot taken at shutdown");
        let (code, out, _) = inspect(&["snapshot", s(&snap), "--keys"]);
        assert_eq!(code, 0, "{out}");
        // (A follower may not have applied the very last write yet; the first one it has.)
        assert!(out.contains("ops.k0"), "{out}");
        procs[i] = Some(start_from_env_file(&shoald, x, &envs[i], "b"));
        wait_for("/health 200 after the restart", 20, || healthy(x));
        ctl_ok(&shoalctl, &eps3, &["put", &format!("ops.roll{i}"), "ok"]);
    }
    for (i, x) in n[..3].iter().enumerate() {
        let out = ctl_ok(&shoalctl, &x.client, &["get", &format!("ops.roll{i}")]);
        assert_eq!(out.trim(), "ok");
    }

    // Replacing a failed node: node 3 dies; node 4 (a new id, empty dir) joins as an observer,
    // catches up, is promoted, and node 3 is removed.
    procs[2].as_mut().unwrap().kill9();
    let eps12 = format!("{},{}", n[0].client, n[1].client);
    let hints = format!("{m3},4={}", n[3].raft);
    procs[3] = Some(start(
        &shoald,
        &n[3],
        &hints,
        &["--join", "--cluster-id", "42"],
        "a",
    ));
    ctl_ok(
        &shoalctl,
        &eps12,
        &["member", "add", "4", &n[3].raft, "--observer"],
    );
    let leader = wait_leader(&[&n[0], &n[1]]);
    let lep = n[(leader - 1) as usize].client.clone();
    wait_for("node 4 caught up", 20, || {
        let st = ctl_json(&shoalctl, &lep, &["status"]);
        let last = st["last_index"].as_u64().unwrap();
        st["members"].as_array().unwrap().iter().any(|m| {
            m["id"] == 4 && m["role"] == "observer" && m["match_index"].as_u64() == Some(last)
        })
    });
    ctl_ok(&shoalctl, &eps12, &["member", "promote", "4"]);
    ctl_ok(&shoalctl, &eps12, &["member", "remove", "3"]);
    let list = ctl_json(&shoalctl, &eps12, &["member", "list"]);
    let text = list.to_string();
    assert!(
        text.contains(&n[3].raft) && !text.contains(&n[2].raft),
        "{text}"
    );
    let eps124 = format!("{eps12},{}", n[3].client);
    ctl_ok(&shoalctl, &eps124, &["put", "ops.replaced", "yes"]);
    let out = ctl_ok(&shoalctl, &n[3].client, &["get", "ops.replaced"]);
    assert_eq!(out.trim(), "yes");

    // Online backup: snapshot a running node, copy its newest .snap, check it.
    let backup = root.join("backup");
    std::fs::create_dir_all(backup.join("work")).unwrap();
    ctl_ok(&shoalctl, &n[0].client, &["snapshot"]);
    let snap = newest_snap(&n[0].dir).expect("a .snap after shoalctl snapshot");
    let online = backup.join("online.snap");
    std::fs::copy(&snap, &online).unwrap();
    let (code, out, _) = inspect(&["snapshot", s(&online), "--keys"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ops.replaced"), "{out}");

    // Offline backup: stop node 2 (1 and 4 keep the quorum), copy its dir, export the copy.
    assert!(procs[1].as_mut().unwrap().sigterm().success());
    let work = backup.join("work/shoal");
    let (code, out, err) = run_bounded(
        {
            let mut c = std::process::Command::new("cp");
            c.args(["-a", "--reflink=auto", s(&n[1].dir), s(&work)]);
            c
        },
        30,
    );
    assert_eq!(code, 0, "cp: {out}{err}");
    let file = backup.join("shoal-backup.shoal");
    let (code, out, err) = inspect(&["export", s(&work), "--group", "0", "--out", s(&file)]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = inspect(&["snapshot", s(&file), "--keys"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ops.replaced") && out.contains("ops.roll2"),
        "{out}"
    );
    let (code, out, _) = inspect(&["snapshot", s(&file), "--dump"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("yes"), "{out}");
    // export refuses to overwrite its output.
    let (code, _, _) = inspect(&["export", s(&work), "--out", s(&file)]);
    assert_eq!(code, 2);

    // Every inspection command of the guide, on the copy.
    let (code, out, _) = inspect(&["summary", s(&work)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("health     OK"), "{out}");
    let (code, v) = inspect_json(&["summary", s(&work)]);
    assert_eq!(code, 0);
    assert_eq!(v["identity"]["cluster_id"], 42);
    assert_eq!(v["identity"]["node_id"], 2);
    let first = v["groups"][0]["first"][0].as_u64().unwrap_or(1).to_string();
    let (code, out, _) = inspect(&[
        "log",
        s(&work),
        "--group",
        "0",
        "--from",
        &first,
        "--limit",
        "50",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("put ops.replaced = \"yes\""), "{out}");
    let (code, out, _) = inspect(&["entry", s(&work), &first]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = inspect(&["verify", s(&work)]);
    assert_eq!(code, 0, "{out}");

    // import reads a .snap file too (which does not record the cluster id: pass it).
    let from_snap = root.join("from-snap");
    let (code, out, err) = inspect(&[
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
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(inspect(&["verify", s(&from_snap)]).0, 0);
    drop(procs);
}
