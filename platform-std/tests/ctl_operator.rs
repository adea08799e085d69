//! shoalctl as an operator coming from etcdctl expects it (issue 16), through the real binaries:
//! input refused before anything is sent, reads and writes that fit scripts, overrides, online
//! snapshots and the whole-cluster status.

use shoal_client::{BlockingClient, ClientConfig, ClientError, KvError, WatchItem};
use shoal_testkit::cli::{last_index, ready_single_node, shoalctl_background};
use shoal_testkit::client::http_get;
use shoal_testkit::{shoalctl, wait_for, wait_some, Cluster, WAIT};

// ---- item 3: fail fast and clearly ----

#[test]
fn malformed_endpoints_are_usage_errors_and_http_scheme_is_accepted() {
    let (_c, addr) = ready_single_node();
    // Each of these would be ten seconds of retries and exit 4 if it were tried.
    for bad in ["bogus", "bogus:", "127.0.0.1:port", "ftp://x:1"] {
        let o = shoalctl(bad, &["-o", "json", "--timeout", "60s", "get", "app"]);
        assert_eq!(o.code, 2, "{o}");
        let j = o.json();
        assert_eq!(j["error"], "BadRequest", "{o}");
        assert!(j["message"].as_str().unwrap().contains("HOST:PORT"), "{o}");
    }
    // https:// asks for TLS: without a CA to check the node against it is a usage error too.
    let o = shoalctl(
        "https://127.0.0.1:7002",
        &["-o", "json", "--timeout", "60s", "get", "app"],
    );
    assert_eq!(o.code, 2, "{o}");
    let j = o.json();
    assert_eq!(j["error"], "BadRequest", "{o}");
    assert!(j["message"].as_str().unwrap().contains("--cacert"), "{o}");
    // The etcd habit: a scheme and a trailing slash.
    let o = shoalctl(&format!("http://{addr}/"), &["put", "app.name", "shoal"]);
    assert_eq!(o.code, 0, "{o}");
    let o = shoalctl(&format!("bogus,http://{addr}"), &["get", "app.name"]);
    assert_eq!(o.code, 2, "one bad endpoint in a list is still a typo: {o}");
}

#[test]
fn keys_with_bad_syntax_are_refused_before_sending() {
    let (_c, addr) = ready_single_node();
    let before = last_index(&addr);
    for args in [
        &["put", "a..b", "v"][..],
        &["put", ".a", "v"],
        &["put", "a.", "v"],
        &["mkdir", "x..y"],
        &["del", "a..b"],
        &["get", "a..b"],
        &["list", ".app"],
        &["put-temp", "a..b", "v", "--ttl", "10s"],
        &["cas", "a..b", "--expect-absent", "v"],
        &["lock", "a..b", "--lease", "5s", "--", "true"],
        &["watch", "a..b"],
        &["watch", "app", "a..b", "--count", "1"],
    ] {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let o = shoalctl(&addr, &all);
        assert_eq!(o.code, 2, "{o}");
        let j = o.json();
        assert!(
            j["message"].as_str().unwrap().contains("key `"),
            "the error names the key: {o}"
        );
    }
    let o = shoalctl_batch(&addr, b"put a..b v\nput app.ok v\n");
    let lines = o.json_lines();
    assert_eq!(lines[0]["exit"], 2, "{o}");
    assert_eq!(lines[1]["ok"], true, "{o}");
    // Only the one good write reached the log.
    assert_eq!(last_index(&addr), before + 1);
}

#[test]
fn the_server_refuses_a_watch_no_key_can_match() {
    // The client library does not check keys: the server must answer, not wait forever.
    let (_c, addr) = ready_single_node();
    let client = BlockingClient::new(ClientConfig::new([addr.as_str()])).expect("a client");
    let mut stream = client.watch(&[b"app", b"a..b"], 0);
    match stream.next_blocking() {
        Some(Err(ClientError::Kv(KvError::EmptySegment))) => {}
        other => panic!("a watch of `a..b` was answered {other:?}"),
    }
    // From the write's own index, so the event cannot be missed however late the watch starts.
    let index = client.put(b"app.x", b"1").expect("put");
    let mut good = client.watch(&[b"app"], index);
    match good.next_blocking() {
        Some(Ok(WatchItem::Event(ev))) => assert_eq!(ev.key, b"app.x"),
        other => panic!("a good watch was answered {other:?}"),
    }
}

fn shoalctl_batch(addr: &str, input: &[u8]) -> shoal_testkit::Output {
    shoal_testkit::cli::shoalctl_with_input(addr, &["batch"], Some(input))
}

// ---- item 2: reads and writes that fit scripts ----

#[test]
fn subtree_reads_mkdir_parents_and_values_from_stdin_or_a_file() {
    let (c, addr) = ready_single_node();
    let o = shoalctl(&addr, &["mkdir", "-p", "app.db.replica"]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(
        shoalctl(&addr, &["mkdir", "-p", "app.db"]).code,
        0,
        "idempotent"
    );
    for (k, v) in [
        ("app.name", "shoal"),
        ("app.db.url", "pg://x"),
        ("app.db.replica.r1", "h1"),
    ] {
        assert_eq!(shoalctl(&addr, &["put", k, v]).code, 0);
    }

    // get --prefix: values only, in key order, key line then value line.
    let o = shoalctl(&addr, &["get", "--prefix", "app"]);
    assert_eq!(
        o.ok(),
        "app.db.replica.r1\nh1\napp.db.url\npg://x\napp.name\nshoal\n"
    );
    let o = shoalctl(
        &addr,
        &["get", "--prefix", "app", "--keys-only", "--limit", "2"],
    );
    assert_eq!(o.ok(), "app.db.replica.r1\napp.db.url\n");
    let j = shoalctl(
        &addr,
        &["-o", "json", "get", "--prefix", "app", "--limit", "2"],
    )
    .json();
    assert_eq!(j["count"], 2);
    assert_eq!(j["truncated"], true);
    assert_eq!(j["nodes"][1]["value"], "pg://x");
    let j = shoalctl(&addr, &["-o", "json", "get", "--prefix", "app"]).json();
    assert_eq!(j["truncated"], false);

    // list -r: directories too, values after a tab.
    let o = shoalctl(&addr, &["list", "-r", "app"]);
    assert_eq!(
        o.ok(),
        "app.db/\napp.db.replica/\napp.db.replica.r1\th1\napp.db.url\tpg://x\napp.name\tshoal\n"
    );
    let o = shoalctl(&addr, &["ls", "-r", "app.db", "--keys-only"]);
    assert_eq!(o.ok(), "app.db.replica/\napp.db.replica.r1\napp.db.url\n");

    // get of a directory says so.
    let o = shoalctl(&addr, &["get", "app.db"]);
    assert_eq!(o.code, 1, "{o}");
    assert!(
        o.err.contains("is a directory") && o.err.contains("get --prefix"),
        "{o}"
    );
    assert_eq!(
        shoalctl(&addr, &["-o", "json", "get", "app.db"]).json()["error"],
        "IsDirectory"
    );

    // Values from stdin and from a file, beyond what fits comfortably in an argument.
    let big: Vec<u8> = (0..60_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let o = shoal_testkit::cli::shoalctl_with_input(&addr, &["put", "app.blob", "-"], Some(&big));
    assert_eq!(o.code, 0, "{o}");
    let o = shoalctl(&addr, &["get", "app.blob"]);
    assert_eq!(o.ok().trim_end().as_bytes(), &big[..]);
    let file = c.root().join("value.bin");
    std::fs::write(&file, b"from a file\n").unwrap();
    let o = shoalctl(&addr, &["put", "app.f", "--file", file.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(shoalctl(&addr, &["get", "app.f"]).ok(), "from a file\n\n");
    // A 1 MiB value reaches the server (no "Argument list too long") and is refused there
    // with the limit named.
    let mib = vec![b'x'; 1 << 20];
    std::fs::write(&file, &mib).unwrap();
    let o = shoalctl(
        &addr,
        &[
            "-o",
            "json",
            "put",
            "app.f",
            "--file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(o.code, 1, "{o}");
    let j = o.json();
    assert_eq!(j["error"], "ValueTooLarge", "{o}");
    assert!(j["message"].as_str().unwrap().contains("65536"), "{o}");
    assert_eq!(
        shoalctl(&addr, &["put", "app.f", "v", "--file", "x"]).code,
        2
    );
    assert_eq!(shoalctl(&addr, &["put", "app.f"]).code, 2);
}

#[test]
fn json_for_usage_errors_and_lock() {
    let (_c, addr) = ready_single_node();
    for args in [
        &["-o", "json", "frobnicate"][..],
        &["--output=json", "put", "only-key"],
        &["put-temp", "k", "v", "--ttl", "soon", "-ojson"],
        &["-o", "json", "list", "--keys-only"],
    ] {
        let o = shoalctl(&addr, args);
        assert_eq!(o.code, 2, "{o}");
        let j = o.json();
        assert_eq!(j["ok"], false, "{o}");
        assert_eq!(j["exit"], 2, "{o}");
        assert_eq!(j["class"], "usage", "{o}");
    }
    // Text output keeps clap's own message.
    let o = shoalctl(&addr, &["frobnicate"]);
    assert_eq!(o.code, 2, "{o}");
    assert!(o.out.is_empty() && o.err.contains("frobnicate"), "{o}");

    let o = shoalctl(
        &addr,
        &[
            "-o", "json", "lock", "app.l", "--lease", "5s", "--", "sh", "-c", "exit 3",
        ],
    );
    assert_eq!(o.code, 3, "{o}");
    let j = o.json();
    assert_eq!(j["exit"], 3);
    assert_eq!(j["ok"], false);
    assert_eq!(j["lost"], false);
    assert!(j["fence"].as_u64().unwrap() > 0, "{o}");
    let o = shoalctl(
        &addr,
        &[
            "-o",
            "json",
            "lock",
            "app.l",
            "--lease",
            "5s",
            "--",
            "/nonexistent/cmd",
        ],
    );
    assert_eq!(o.code, 2, "{o}");
    assert!(
        o.json()["message"].as_str().unwrap().contains("cannot run"),
        "{o}"
    );
}

// ---- item 1: cluster at a glance (the parts done) ----

#[test]
fn member_list_is_a_table_with_client_addresses() {
    let (c, addr) = ready_single_node();
    let raft = c.node(1).raft.clone();
    let o = shoalctl(&addr, &["member", "list"]);
    let lines: Vec<&str> = o.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{o}");
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        ["ID", "ROLE", "RAFT ADDRESS", "CLIENT ADDRESS", "MATCH"],
        "{o}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row[..4],
        ["1", "voter", raft.as_str(), addr.as_str()],
        "{o}"
    );
    let j = shoalctl(&addr, &["-o", "json", "member", "list"]).json();
    assert_eq!(j["members"][0]["client_addr"], addr.as_str());
}

#[test]
fn every_binary_answers_version() {
    let want = env!("CARGO_PKG_VERSION");
    for name in ["shoald", "shoalctl", "shoal-bench"] {
        let mut cmd = std::process::Command::new(shoal_testkit::bin(name));
        cmd.arg("--version");
        let o = shoal_testkit::cli::run(cmd, None, shoal_testkit::cli::CTL_WAIT);
        assert_eq!(o.ok().trim(), format!("{name} {want}"), "{o}");
    }
}

// ---- item 1: the cluster at a glance ----

/// Three voters with quick elections.
fn three_nodes() -> Cluster {
    let mut c = Cluster::builder()
        .voters([1, 2, 3])
        .fsync("never")
        .election_timeout_ms(300)
        .build();
    c.start_all();
    c.wait_leader(0);
    c
}

#[test]
fn status_cluster_has_a_row_per_member_from_any_endpoint() {
    let mut c = three_nodes();
    let leader = c.wait_leader(0);
    c.put(0, 7, 1, "k", "v");
    let version = env!("CARGO_PKG_VERSION");
    // /status on the admin port names the node's addresses and build.
    let (code, body) = http_get(&c.node(2).admin, "/status").expect("/status answers");
    assert_eq!(code, 200);
    let s: serde_json::Value = serde_json::from_str(&body).expect("/status is JSON");
    assert_eq!(s["client_addr"], c.node(2).client.as_str(), "{body}");
    assert_eq!(s["raft_addr"], c.node(2).raft.as_str(), "{body}");
    assert_eq!(s["version"], version, "{body}");
    // Any one endpoint finds every member; the leader is agreed on by all.
    let any = c.node(3).client.clone();
    let o = shoalctl(&any, &["-o", "json", "status", "--cluster"]);
    let j = o.json();
    assert_eq!(o.code, 0, "{o}");
    let rows = j["members"].as_array().expect("members");
    assert_eq!(rows.len(), 3, "{o}");
    for id in 1..=3u64 {
        let row = rows
            .iter()
            .find(|r| r["id"] == id)
            .expect("a row per member");
        let n = c.node(id);
        assert_eq!(row["reachable"], true, "{o}");
        assert_eq!(row["client_addr"], n.client.as_str(), "{o}");
        assert_eq!(row["raft_addr"], n.raft.as_str(), "{o}");
        assert_eq!(row["leader"], leader, "{o}");
        assert_eq!(row["version"], version, "{o}");
        assert_eq!(row["healthy"], true, "{o}");
        assert!(row["commit"].as_u64().unwrap() >= 1, "{o}");
        assert!(
            row["log_bytes"].is_u64() && row["snapshot_bytes"].is_u64(),
            "{o}"
        );
        let role = if id == leader { "leader" } else { "follower" };
        assert_eq!(row["role"], role, "{o}");
    }
    // The table: a header, then one row per member.
    let o = shoalctl(&any, &["-o", "table", "status", "--cluster"]);
    let lines: Vec<&str> = o.ok().lines().collect();
    assert_eq!(lines.len(), 4, "{o}");
    let header = lines[0].split_whitespace().collect::<Vec<_>>().join(" ");
    let want = "ID RAFT ADDRESS CLIENT ADDRESS ROLE TERM LEADER COMMIT APPLIED LAST LOG SNAPSHOT";
    assert_eq!(header, format!("{want} VERSION HEALTH"), "{o}");
    // A member that is down gets a row saying so, and the answer is a failure.
    let down = if leader == 3 { 2 } else { 3 };
    let ask = c.node(leader).client.clone();
    c.kill(down);
    let o = shoalctl(&ask, &["-o", "json", "status", "--cluster"]);
    assert_eq!(o.code, 1, "{o}");
    let j = o.json();
    let rows = j["members"].as_array().expect("members");
    assert_eq!(rows.len(), 3, "{o}");
    for row in rows {
        let is_down = row["id"] == down;
        assert_eq!(row["reachable"], !is_down, "{o}");
    }
    let row = rows.iter().find(|r| r["id"] == down).unwrap();
    assert!(
        row["error"].as_str().unwrap().contains("unreachable"),
        "{o}"
    );
    let o = shoalctl(&ask, &["status", "--cluster"]);
    let line = o
        .out
        .lines()
        .find(|l| l.starts_with(&down.to_string()))
        .expect("the down member's row");
    assert!(line.contains("unreachable"), "{o}");
}

// ---- item 6: operator overrides ----

/// Node 1 logged an operator override by a local client that did `what`.
fn assert_override_logged(c: &Cluster, what: &str, why: &str) {
    let said = "operator override by the client at 127.0.0.1:";
    let logged = |l: &str| l.contains(said) && l.contains(what);
    assert!(c.node(1).log().lines().any(logged), "{why}");
}

#[test]
fn del_force_removes_another_sessions_temporary_node() {
    let (c, addr) = ready_single_node();
    shoalctl(&addr, &["put-temp", "app.t", "v", "--ttl", "60s"]).ok();
    // Each run is a new session: the owner's run has ended, its node stays until its TTL.
    let o = shoalctl(&addr, &["-o", "json", "del", "app.t"]);
    assert_eq!(o.code, 1, "{o}");
    assert_eq!(o.json()["kv_code"], KvError::NotOwner.code(), "{o}");
    assert_eq!(shoalctl(&addr, &["get", "app.t"]).ok().trim(), "v");
    shoalctl(&addr, &["del", "--force", "app.t"]).ok();
    let o = shoalctl(&addr, &["get", "app.t"]);
    assert_eq!(o.code, 1, "the node is gone: {o}");
    assert_override_logged(&c, "remove `app.t`", "who removed what");
}

#[test]
fn lock_release_force_frees_a_lock_another_session_holds() {
    let (c, addr) = ready_single_node();
    let _holder = shoalctl_background(
        &addr,
        &["lock", "app.l", "--lease", "60s", "--", "sleep", "60"],
    );
    wait_for("the background lock to be held", WAIT, || {
        let o = shoalctl(&addr, &["-o", "json", "get", "app.l"]);
        o.code == 0 && o.json()["kind"] == "Lock"
    });
    // Without --force this session is not the holder; nor can it take the lock.
    let o = shoalctl(&addr, &["-o", "json", "lock", "release", "app.l"]);
    assert_eq!(o.code, 1, "{o}");
    assert_eq!(o.json()["kv_code"], KvError::NotLockOwner.code(), "{o}");
    let o = shoalctl(&addr, &["lock", "app.l", "--lease", "5s", "--", "true"]);
    assert_eq!(o.code, 1, "the lock is held: {o}");
    let o = shoalctl(
        &addr,
        &["-o", "json", "lock", "release", "--force", "app.l"],
    );
    assert_eq!(o.json()["ok"], true, "{o}");
    // Free now: another session takes it at once.
    let o = shoalctl(&addr, &["lock", "app.l", "--lease", "5s", "--", "true"]);
    assert_eq!(o.code, 0, "{o}");
    assert_override_logged(&c, "release the lock `app.l`", "who released what");
}

#[test]
fn member_abort_leaves_a_joint_configuration_stuck_after_its_prepare() {
    let mut c = three_nodes();
    c.make_leader(1, 0);
    let one = c.node(1).client.clone();
    // Node 4 is an observer nobody runs.
    let dead = shoal_testkit::dead_addr();
    shoalctl(&one, &["member", "add", "4", &dead, "--observer"]).ok();
    // Promoting it needs three of {1,2,3,4} in the new configuration: with node 3 paused the
    // prepare cannot commit, and the leader, hearing no quorum of it, steps down.
    c.pause(3);
    let o = shoalctl(&one, &["--timeout", "5s", "member", "promote", "4"]);
    assert_ne!(o.code, 0, "{o}");
    wait_for("node 1 to step down", WAIT, || {
        c.status(1, 0).is_some_and(|s| s.role != "leader")
    });
    // Node 3 back: a leader is elected in the joint configuration and commits the prepare,
    // but nothing drives the change on.
    c.resume(3);
    let joint_leader = || {
        let o = shoalctl(&one, &["-o", "json", "status", "--cluster"]);
        let j = o.json();
        j["members"].as_array()?.iter().find_map(|r| {
            (r["role"] == "leader" && r["joint"] == true && r["commit"] == r["last_index"])
                .then(|| r["client_addr"].as_str().unwrap().to_string())
        })
    };
    let leader = wait_some("a leader in the joint configuration", WAIT, joint_leader);
    let o = shoalctl(&leader, &["-o", "json", "member", "remove", "4"]);
    assert_eq!(o.code, 1, "a stuck change blocks every other: {o}");
    // The abort goes back to voters {1,2,3} with observer 4.
    shoalctl(&leader, &["member", "abort"]).ok();
    let j = shoalctl(&leader, &["-o", "json", "member", "list"]).json();
    let members = j["members"].as_array().unwrap();
    let four = members
        .iter()
        .find(|m| m["id"] == 4)
        .expect("4 is still a member");
    assert_eq!(four["role"], "observer", "{j}");
    assert!(
        members
            .iter()
            .filter(|m| m["id"] != 4)
            .all(|m| m["role"] == "voter"),
        "{j}"
    );
    let o = shoalctl(&leader, &["-o", "json", "member", "abort"]);
    assert_eq!(o.code, 1, "nothing left to abort: {o}");
    // Membership changes work again.
    shoalctl(&leader, &["member", "remove", "4"]).ok();
    let j = shoalctl(&leader, &["-o", "json", "member", "list"]).json();
    assert_eq!(j["members"].as_array().unwrap().len(), 3, "{j}");
    let logged = (1..=3).any(|id| c.node(id).log().contains("abort the membership change"));
    assert!(logged, "the leader logs who aborted the change");
}

// ---- item 7: a snapshot of a running node ----

#[test]
fn snapshot_save_then_inspect_then_import_restores_every_key() {
    let (c, addr) = ready_single_node();
    // 300 small values and 30 of 60 KB: more than one chunk of the save.
    let mut batch = String::new();
    for i in 0..300 {
        batch.push_str(&format!("put app.k{i} value-{i}\n"));
    }
    let big = "x".repeat(60_000);
    for i in 0..30 {
        batch.push_str(&format!("put app.big{i} {big}\n"));
    }
    let o = shoalctl_batch(&addr, batch.as_bytes());
    assert_eq!(o.code, 0, "{o}");
    let file = c.root().join("saved.snap");
    let f = file.to_str().unwrap();
    let o = shoalctl(&addr, &["-o", "json", "snapshot", "save", f]);
    let j = o.json();
    assert_eq!(j["ok"], true, "{o}");
    assert!(j["data_bytes"].as_u64().unwrap() > 1_800_000, "{o}");
    let o = shoalctl(&addr, &["snapshot", "save", f]);
    assert_eq!(o.code, 2, "an existing file is kept without --force: {o}");
    // shoal-inspect verifies it and sees every key.
    let (code, s) = shoal_testkit::cli::inspect_json(&["snapshot", f, "--keys"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["source"], "export", "{s}");
    assert_eq!(s["index"], j["index"], "{s}");
    // A damaged copy is refused.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let damaged = c.root().join("damaged.snap");
    std::fs::write(&damaged, &bytes).unwrap();
    let o = shoal_testkit::inspect(&["snapshot", damaged.to_str().unwrap()]);
    assert_ne!(o.code, 0, "{o}");
    // Import into a fresh data dir, start it, and read every key back.
    let mut fresh = Cluster::builder()
        .voters([1])
        .fsync("never")
        .election_timeout_ms(300)
        .build();
    let dir = fresh.node(1).dir.clone();
    let members = fresh.members(&[1]);
    let o = shoal_testkit::inspect(&[
        "import",
        f,
        "--data-dir",
        dir.to_str().unwrap(),
        "--node-id",
        "1",
        "--members",
        &members,
    ]);
    assert_eq!(o.code, 0, "{o}");
    fresh.start(1);
    let new = fresh.node(1).client.clone();
    let o = shoalctl(
        &new,
        &[
            "--timeout",
            "20s",
            "-o",
            "json",
            "get",
            "--prefix",
            "app",
            "--keys-only",
        ],
    );
    assert_eq!(o.json()["count"], 330, "every value: {o}");
    for i in [0, 150, 299] {
        let o = shoalctl(&new, &["get", &format!("app.k{i}")]);
        assert_eq!(o.ok().trim(), format!("value-{i}"));
    }
    assert_eq!(shoalctl(&new, &["get", "app.big29"]).ok().trim(), big);
}
