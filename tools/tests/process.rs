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
use shoal_std::protocol::WriteOp;

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
