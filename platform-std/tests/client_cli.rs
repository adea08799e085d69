//! `shoalctl` as a script sees it: exit codes, text and JSON output, batch mode and the lock
//! wrapper, first against a mock node, then end to end against a real single-node `shoald`.

use shoal_testkit::cli::{shoalctl_into_closed_pipe, shoalctl_with_input};
use shoal_testkit::mock::{Action, Mock};
use shoal_testkit::{dead_addr, shoalctl, Cluster};

#[test]
fn put_get_and_json_output() {
    let m = Mock::kv();
    let o = shoalctl(&m.addr, &["put", "a", "1"]);
    assert_eq!(o.code, 0, "{o}");
    let o = shoalctl(&m.addr, &["get", "a"]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.out, "1\n");

    let o = shoalctl(
        &m.addr,
        &["-o", "json", "get", "a", "--consistency", "local"],
    );
    let j = o.json();
    assert_eq!(j["key"], "a");
    assert_eq!(j["value"], "1");
    assert_eq!(j["value_encoding"], "utf8");
    assert_eq!(j["create_index"], 1);
    assert_eq!(j["update_index"], 1);

    let o = shoalctl(&m.addr, &["-o", "json", "put", "b", "2"]);
    assert_eq!(o.json()["ok"], true);
    let o = shoalctl(&m.addr, &["-o", "json", "list"]);
    assert_eq!(o.json()["children"].as_array().unwrap().len(), 2);
}

#[test]
fn definite_failures_exit_1() {
    let m = Mock::kv();
    let o = shoalctl(&m.addr, &["-o", "json", "get", "missing"]);
    assert_eq!(o.code, 1, "{o}");
    let j = o.json();
    assert_eq!(j["ok"], false);
    assert_eq!(j["error"], "NotFound");
    assert_eq!(j["class"], "definite");

    assert_eq!(shoalctl(&m.addr, &["put", "k", "v"]).code, 0);
    let o = shoalctl(&m.addr, &["cas", "k", "nope", "w"]);
    assert_eq!(o.code, 1, "{o}");
    assert!(o.err.contains("CasMismatch"));
    assert_eq!(shoalctl(&m.addr, &["cas", "k", "v", "w"]).code, 0);
    assert_eq!(
        shoalctl(&m.addr, &["cas", "k", "--expect-absent", "x"]).code,
        1
    );
    assert_eq!(
        shoalctl(&m.addr, &["cas", "new", "--expect-absent", "x"]).code,
        0
    );
}

#[test]
fn usage_errors_exit_2() {
    let m = Mock::kv();
    assert_eq!(shoalctl(&m.addr, &["frobnicate"]).code, 2);
    assert_eq!(shoalctl(&m.addr, &["put", "only-key"]).code, 2);
    assert_eq!(
        shoalctl(&m.addr, &["put-temp", "k", "v", "--ttl", "soon"]).code,
        2
    );
    assert_eq!(
        shoalctl(&m.addr, &["cas", "k", "a", "b", "--expect-absent"]).code,
        2
    );
    assert_eq!(shoalctl(&m.addr, &["--help"]).code, 0);
    assert_eq!(shoalctl(&m.addr, &["lock", "--help"]).code, 0);
}

#[test]
fn lost_answers_exit_3_and_unreachable_exit_4() {
    let silent = Mock::start(|_, _, _| vec![Action::Ignore]);
    let o = shoalctl(
        &silent.addr,
        &["--timeout", "600ms", "-o", "json", "put", "k", "v"],
    );
    assert_eq!(o.code, 3, "{o}");
    assert_eq!(o.json()["class"], "indeterminate");

    let o = shoalctl(&dead_addr(), &["--timeout", "300ms", "put", "k", "v"]);
    assert_eq!(o.code, 4, "{o}");
    let o = shoalctl(&dead_addr(), &["--timeout", "300ms", "get", "k"]);
    assert_eq!(o.code, 4, "{o}");
}

#[test]
fn batch_mode_answers_one_json_line_per_command() {
    let m = Mock::kv();
    let script = "put greeting 'hello world'\n# a comment\nget greeting\nget missing\n\
                  put \"unbalanced\nmkdir d\n";
    let o = shoalctl_with_input(&m.addr, &["batch"], Some(script.as_bytes()));
    let lines = o.json_lines();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0]["ok"], true);
    assert_eq!(lines[1]["value"], "hello world");
    assert_eq!(lines[2]["error"], "NotFound");
    assert_eq!(lines[3]["class"], "usage");
    assert_eq!(lines[4]["ok"], true);
    // The last failing line decides the exit code.
    assert_eq!(o.code, 2, "{o}");
}

#[test]
fn lock_runs_the_command_with_the_fence_and_passes_its_exit_code() {
    let m = Mock::kv();
    let o = shoalctl(
        &m.addr,
        &[
            "lock",
            "jobs.nightly",
            "--lease",
            "2s",
            "--",
            "sh",
            "-c",
            "echo fence=$SHOAL_LOCK_FENCE; exit 7",
        ],
    );
    assert_eq!(o.code, 7, "{o}");
    assert_eq!(o.out, "fence=1\n");
    // Released afterwards.
    assert!(m.state.lock().unwrap().nodes.is_empty());
}

#[test]
fn watch_prints_events_until_count() {
    use shoal_client::protocol::{Request, Response, WatchEvent};
    let m = Mock::start(|_, f, _| match f.request {
        Request::Watch { .. } => {
            let mut v = vec![Action::Reply(Response::WatchStarted)];
            for i in 5..8 {
                v.push(Action::Push(Response::Event(WatchEvent {
                    index: i,
                    kind: "put".into(),
                    key: b"cfg.x".to_vec(),
                    value: vec![0xff, i as u8],
                })));
            }
            v
        }
        _ => vec![Action::Ignore],
    });
    let o = shoalctl(
        &m.addr,
        &[
            "-o",
            "json",
            "watch",
            "cfg",
            "--from-index",
            "5",
            "--count",
            "2",
        ],
    );
    assert_eq!(o.code, 0, "{o}");
    let lines = o.json_lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["index"], 5);
    assert_eq!(lines[0]["key"], "cfg.x");
    assert_eq!(lines[0]["value_encoding"], "base64");
    assert_eq!(lines[0]["value"], "/wU=");
}

// ---- end to end against a real shoald ----

#[test]
fn end_to_end_against_a_single_shoald() {
    let c = Cluster::single_node();
    let client_addr = c.node(1).client.clone();

    // The client retries while the server starts and elects itself.
    let o = shoalctl(&client_addr, &["--timeout", "20s", "put", "a", "1"]);
    assert_eq!(o.code, 0, "{o}");
    let o = shoalctl(&client_addr, &["get", "a"]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.out, "1\n");

    let o = shoalctl(&client_addr, &["-o", "json", "get", "a"]);
    let j = o.json();
    assert_eq!(j["value"], "1");
    assert!(j["create_index"].as_u64().unwrap() > 0);

    let o = shoalctl(&client_addr, &["cas", "a", "2", "3"]);
    assert_eq!(o.code, 1, "{o}");
    assert_eq!(shoalctl(&client_addr, &["cas", "a", "1", "3"]).code, 0);
    let o = shoalctl(&client_addr, &["-o", "json", "get", "missing"]);
    assert_eq!(o.code, 1, "{o}");

    let o = shoalctl(&client_addr, &["lock", "L", "--lease", "2s", "--", "true"]);
    assert_eq!(o.code, 0, "{o}");

    // `shoalctl ... | head -1` with the reader gone before the answer: a quiet end with the
    // command's own exit code (it used to panic: exit 101).
    for (args, code) in [
        (&["member", "list"][..], 0),
        (&["-o", "json", "member", "list"], 0),
        (&["get", "a"], 0),
        (&["-o", "json", "get", "missing"], 1),
    ] {
        let o = shoalctl_into_closed_pipe(&client_addr, args);
        assert_eq!(o.code, code, "{o}");
        assert!(o.err.is_empty(), "{o}");
    }

    let o = shoalctl(&dead_addr(), &["--timeout", "300ms", "put", "a", "1"]);
    assert_eq!(o.code, 4, "{o}");
}

/// Every run of `shoalctl` is a session of its own, even when two runs read the same time:
/// their session ids come from the operating system, not from the clock. With ids seeded from
/// the clock, two runs on a coarse clock got the same id, and the second run's first write
/// (sequence 1, like the first run's) was taken for a retry of the first run's and answered
/// with its result without being applied: `put b 2` said ok and wrote nothing (seen in CI as a
/// waiting lock acquire answered with another run's release).
#[test]
fn runs_that_read_the_same_clock_are_separate_sessions() {
    let c = Cluster::single_node();
    let addr = c.node(1).client.clone();
    let o = shoalctl(&addr, &["--timeout", "20s", "mkdir", "app"]);
    assert_eq!(o.code, 0, "{o}");
    let shim = shoal_testkit::netns::ClockShim::build(c.root());
    // Each run's clocks show 1,000 s at their first read and stand still for 100 s.
    let clock = shim.coarse_env(1_000_000_000_000, 100_000_000_000);
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(shoal_testkit::bin("shoalctl"));
        cmd.arg("--endpoints").arg(&addr).args(args);
        cmd.envs(clock.iter().map(|(k, v)| (k, v)));
        shoal_testkit::cli::run(cmd, None, std::time::Duration::from_secs(30))
    };
    let mut owners = Vec::new();
    for (key, value) in [("app.a", "1"), ("app.b", "2"), ("app.c", "3")] {
        let o = run(&["put", key, value]);
        assert_eq!(o.code, 0, "{o}");
        let o = shoalctl(&addr, &["get", key]);
        assert_eq!(o.code, 0, "a write answered ok was applied: {o}");
        assert_eq!(o.out, format!("{value}\n"));
        // A temporary value's owner is the session that made it.
        let temp = format!("{key}_temp");
        let o = run(&["put-temp", &temp, "v", "--ttl", "60s"]);
        assert_eq!(o.code, 0, "{o}");
        let o = shoalctl(&addr, &["-o", "json", "get", &temp]);
        assert_eq!(o.code, 0, "{o}");
        owners.push(o.json()["owner"].as_u64().expect("an owner"));
    }
    owners.sort_unstable();
    owners.dedup();
    assert_eq!(
        owners.len(),
        3,
        "every run is a session of its own: {owners:?}"
    );
}

/// Two clients that share a session id (a process forked while holding a client, a copied
/// config with a fixed id): the second one's write with the session's last sequence number is
/// not the first one's retry. Answered from the session table, it said "done" and was never
/// applied; now it is refused with `SessionReused`, while a true retry still gets the first
/// answer, and a restart (the log replayed) keeps telling them apart.
#[test]
fn a_second_client_on_one_session_is_refused_not_told_its_write_was_done() {
    use shoal_client::protocol::{Response, WriteResult};
    use shoal_client::KvError;
    use shoal_testkit::client::put_request;
    let mut c = Cluster::single_node();
    let addr = c.node(1).client.clone();
    let (session, seq) = (0x5e55_1000_u64, 1);
    c.put(0, session, seq, "first", "1");
    let answer = |key: &str, value: &[u8]| {
        c.call_any(
            0,
            put_request(session, seq, key, value),
            "a write of the session",
        )
    };
    let reused = |r: Response| {
        matches!(
            r,
            Response::Written {
                result: WriteResult::Failed(KvError::SessionReused),
                ..
            }
        )
    };
    let r = answer("second", b"2");
    assert!(reused(r.clone()), "another client's write: {r:?}");
    let r = answer("first", b"1");
    assert!(
        matches!(
            r,
            Response::Written {
                result: WriteResult::Done,
                ..
            }
        ),
        "the first client's retry is answered as the first time: {r:?}"
    );
    let o = shoalctl(&addr, &["get", "second"]);
    assert_ne!(o.code, 0, "the refused write was not applied: {o}");
    // Killed (no snapshot): the restarted node replays its log and still tells them apart.
    c.kill(1);
    c.start(1);
    c.wait_leader(0);
    let r = c.call_any(
        0,
        put_request(session, seq, "second", b"2"),
        "after the restart",
    );
    assert!(reused(r.clone()), "after the restart: {r:?}");
    let o = shoalctl(&addr, &["get", "first"]);
    assert_eq!((o.code, o.out.as_str()), (0, "1\n"), "{o}");
}
