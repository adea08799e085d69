//! shoalctl as an operator coming from etcdctl expects it (issue 16), through the real binaries:
//! input refused before anything is sent, reads and writes that fit scripts, overrides, online
//! snapshots and the whole-cluster status.

use shoal_client::{BlockingClient, ClientConfig, ClientError, KvError, WatchItem};
use shoal_testkit::cli::{last_index, ready_single_node};
use shoal_testkit::shoalctl;

// ---- item 3: fail fast and clearly ----

#[test]
fn malformed_endpoints_are_usage_errors_and_http_scheme_is_accepted() {
    let (_c, addr) = ready_single_node();
    // Each of these would be ten seconds of retries and exit 4 if it were tried.
    for bad in [
        "bogus",
        "bogus:",
        "127.0.0.1:port",
        "https://127.0.0.1:7002",
        "ftp://x:1",
    ] {
        let o = shoalctl(bad, &["-o", "json", "--timeout", "60s", "get", "app"]);
        assert_eq!(o.code, 2, "{o}");
        let j = o.json();
        assert_eq!(j["error"], "BadRequest", "{o}");
        assert!(j["message"].as_str().unwrap().contains("HOST:PORT"), "{o}");
    }
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
