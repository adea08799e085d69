//! What `shoald` refuses, as an unlucky operator or a hostile HTTP client meets it: a second
//! process on a data dir that is in use, a start that cannot listen, wrong configuration, a
//! moved node, and admin requests that are too large or use the wrong method. Each refusal is a
//! clear exit code or status with the reason, and nothing is lost or left half-made.
#![cfg(unix)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use shoal_testkit::cli::run;
use shoal_testkit::{bin, free_addr, Cluster};

/// A start refused before it serves: it exits by itself within this time.
const REFUSED_WITHIN: Duration = Duration::from_secs(20);

/// `shoald ARGS` that is expected to stop by itself: its exit code and log.
fn shoald(args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(bin("shoald"));
    cmd.args(args).env("RUST_LOG", "info");
    let o = run(cmd, None, REFUSED_WITHIN);
    (o.code, format!("{}{}", o.out, o.err))
}

/// Wait for node `id` to exit refusing to start (code 2); its log.
fn refused(c: &mut Cluster, id: u64) -> String {
    let st = c.wait_exit(id, REFUSED_WITHIN);
    let log = c.node(id).log();
    assert_eq!(st.code(), Some(2), "{log}");
    log
}

#[test]
fn a_second_process_on_a_data_dir_in_use_exits_2_naming_the_holder() {
    let mut c = Cluster::builder().voters([1]).spares([2]).build();
    c.start(1);
    c.wait_leader(0);
    c.put(0, 7, 1, "k", "before");
    let holder = c.node_mut(1).proc_mut().unwrap().pid();

    // Node 2 gets its own ports but node 1's data dir (two containers on one volume).
    let dir = c.node(1).dir.clone();
    c.node_mut(2).dir = dir;
    c.start_joining(2);
    let log = refused(&mut c, 2);
    assert!(log.contains("in use by another process"), "{log}");
    assert!(log.contains(&format!("pid {holder}")), "{log}");

    // The holder never noticed: it serves, with its writes.
    c.put(0, 7, 2, "k", "after");
    c.assert_reads(1, 0, "k", "after");
    // Once it stops the lock is free again: it restarts on its own dir.
    assert!(c.stop(1).success());
    c.start(1);
    c.wait_leader(0);
    c.assert_reads(1, 0, "k", "after");
}

#[test]
fn a_start_that_cannot_listen_leaves_a_fresh_data_dir_without_an_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n1");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let (raft, admin) = (free_addr(), free_addr());
    let (code, log) = shoald(&[
        "--data-dir",
        dir.to_str().unwrap(),
        "--raft-addr",
        &raft,
        "--client-addr",
        &taken_addr,
        "--admin-addr",
        &admin,
        "--initial-members",
        &format!("1={raft}/{taken_addr}"),
    ]);
    assert_eq!(code, 2, "{log}");
    assert!(
        log.contains(&format!("cannot listen on the client address {taken_addr}")),
        "{log}"
    );
    assert!(
        !dir.join("identity").exists(),
        "a refused start wrote an identity"
    );
    drop(taken);
}

#[test]
fn wrong_configuration_exits_2_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n1");
    let d = dir.to_str().unwrap();
    let (a, b, c) = (free_addr(), free_addr(), free_addr());
    let shared = free_addr();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![
                "--initial-members".into(),
                format!("1={a},2={shared},3={shared}"),
            ],
            format!("members 2 and 3 both use {shared}"),
        ),
        (
            vec!["--kv-arena-mb".into(), "0".into()],
            "--kv-arena-mb".into(),
        ),
        (
            vec!["--election-timeout".into(), "3 fortnights".into()],
            "--election-timeout".into(),
        ),
        (
            vec!["--client-addr".into(), a.clone()],
            format!("are both {a}"),
        ),
        (vec!["--node-id".into(), "0".into()], "--node-id 0".into()),
    ];
    for (extra, reason) in cases {
        let mut args: Vec<String> = Vec::new();
        for (flag, value) in [
            ("--data-dir", d),
            ("--raft-addr", &a),
            ("--client-addr", &b),
            ("--admin-addr", &c),
        ] {
            if !extra.iter().any(|e| e == flag) {
                args.extend([flag.to_string(), value.to_string()]);
            }
        }
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, log) = shoald(&args);
        assert_eq!(code, 2, "{extra:?}: {log}");
        assert!(log.contains(&reason), "{extra:?}: no {reason:?} in:\n{log}");
        assert!(
            !dir.join("identity").exists(),
            "{extra:?} wrote an identity"
        );
    }
}

#[test]
fn durations_take_units_in_flags_and_in_the_config_file() {
    let mut c = Cluster::builder().voters([1]).build();
    let toml = c.root().join("n1.toml");
    std::fs::write(
        &toml,
        "election_timeout = \"1s\"\nheartbeat_interval = \"100ms\"\n",
    )
    .unwrap();
    // The cluster's own `--election-timeout 400` flag wins over the file; the file's
    // heartbeat (in units) is taken.
    c.node_mut(1).args = vec!["--config".into(), toml.to_str().unwrap().into()];
    c.start(1);
    c.wait_leader(0);
    c.put(0, 1, 1, "units", "ok");
    assert!(c.stop(1).success());
    c.node_mut(1).args = vec!["--snapshot-interval".into(), "2h".into()];
    c.start(1);
    c.wait_leader(0);
    c.assert_reads(1, 0, "units", "ok");
}

#[test]
fn a_moved_node_is_refused_naming_the_flag_that_accepts_it() {
    let mut c = Cluster::builder().voters([1]).build();
    c.start(1);
    c.wait_leader(0);
    c.put(0, 3, 1, "k", "v");
    assert!(c.stop(1).success());
    let moved = free_addr();
    c.node_mut(1).raft = moved;
    c.start(1);
    let log = refused(&mut c, 1);
    assert!(log.contains("--allow-addr-change"), "{log}");
    // The flag it names exists and accepts the move.
    c.node_mut(1).args = vec!["--allow-addr-change".into()];
    c.start(1);
    c.wait_leader(0);
    c.assert_reads(1, 0, "k", "v");
}

/// Send `request` to the admin port; the status code and the whole answer.
fn admin_raw(addr: &str, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (code, text)
}

#[test]
fn the_admin_port_refuses_huge_bodies_long_heads_and_other_methods_and_keeps_serving() {
    let mut c = Cluster::builder().voters([1]).build();
    c.start(1);
    c.wait_leader(0);
    let admin = c.node(1).admin.clone();
    // Healthy before the refusals.
    c.wait_healthy(1);
    // The request that used to abort the process: it announced a 93 GiB body.
    let (code, _) = admin_raw(
        &admin,
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
    );
    assert_eq!(code, 413);
    let (code, text) = admin_raw(&admin, b"POST /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(code, 405);
    assert!(text.contains("Allow: GET, HEAD"), "{text}");
    let long = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let (code, _) = admin_raw(&admin, long.as_bytes());
    assert_eq!(code, 431);
    let (code, _) = admin_raw(&admin, b"\x16\x03\x01 not http at all\r\n\r\n");
    assert_eq!(code, 400);

    assert!(c.node_mut(1).proc_mut().unwrap().is_running());
    let (code, body) = c.http_get(1, "/health").expect("health after the refusals");
    assert_eq!(code, 200, "{body}");
    let (_, metrics) = c.http_get(1, "/metrics").unwrap();
    for reason in ["body", "method", "head_too_large", "malformed"] {
        let label = format!("shoal_admin_refused_total{{reason=\"{reason}\"}} ");
        let n: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&label)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label} in:\n{metrics}"));
        assert_eq!(n, 1, "{reason} refusals counted");
    }
    c.put(0, 1, 1, "still", "serving");
}
