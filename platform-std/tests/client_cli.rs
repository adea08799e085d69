//! `shoalctl` as a script sees it: exit codes, text and JSON output, batch mode and the lock
//! wrapper, first against a mock node, then end to end against a real single-node `shoald`.

mod client_support;

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};

use client_support::{dead_addr, Action, Mock};
use serde_json::Value;

fn shoalctl(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoalctl"))
        .env_remove("SHOAL_ENDPOINTS")
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .output()
        .expect("run shoalctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("shoalctl exited normally")
}

fn json(o: &Output) -> Value {
    serde_json::from_str(stdout(o).trim()).unwrap_or_else(|e| {
        panic!("not one JSON object ({e}): {}", stdout(o));
    })
}

#[test]
fn put_get_and_json_output() {
    let m = Mock::kv();
    let o = shoalctl(&m.addr, &["put", "a", "1"]);
    assert_eq!(code(&o), 0, "{o:?}");
    let o = shoalctl(&m.addr, &["get", "a"]);
    assert_eq!(code(&o), 0, "{o:?}");
    assert_eq!(stdout(&o), "1\n");

    let o = shoalctl(
        &m.addr,
        &["-o", "json", "get", "a", "--consistency", "local"],
    );
    let j = json(&o);
    assert_eq!(j["key"], "a");
    assert_eq!(j["value"], "1");
    assert_eq!(j["value_encoding"], "utf8");
    assert_eq!(j["create_index"], 1);
    assert_eq!(j["update_index"], 1);

    let o = shoalctl(&m.addr, &["-o", "json", "put", "b", "2"]);
    assert_eq!(json(&o)["ok"], true);
    let o = shoalctl(&m.addr, &["-o", "json", "list"]);
    assert_eq!(json(&o)["children"].as_array().unwrap().len(), 2);
}

#[test]
fn definite_failures_exit_1() {
    let m = Mock::kv();
    let o = shoalctl(&m.addr, &["-o", "json", "get", "missing"]);
    assert_eq!(code(&o), 1, "{o:?}");
    let j = json(&o);
    assert_eq!(j["ok"], false);
    assert_eq!(j["error"], "NotFound");
    assert_eq!(j["class"], "definite");

    assert_eq!(code(&shoalctl(&m.addr, &["put", "k", "v"])), 0);
    let o = shoalctl(&m.addr, &["cas", "k", "nope", "w"]);
    assert_eq!(code(&o), 1, "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("CasMismatch"));
    assert_eq!(code(&shoalctl(&m.addr, &["cas", "k", "v", "w"])), 0);
    assert_eq!(
        code(&shoalctl(&m.addr, &["cas", "k", "--expect-absent", "x"])),
        1
    );
    assert_eq!(
        code(&shoalctl(&m.addr, &["cas", "new", "--expect-absent", "x"])),
        0
    );
}

#[test]
fn usage_errors_exit_2() {
    let m = Mock::kv();
    assert_eq!(code(&shoalctl(&m.addr, &["frobnicate"])), 2);
    assert_eq!(code(&shoalctl(&m.addr, &["put", "only-key"])), 2);
    assert_eq!(
        code(&shoalctl(&m.addr, &["put-temp", "k", "v", "--ttl", "soon"])),
        2
    );
    assert_eq!(
        code(&shoalctl(
            &m.addr,
            &["cas", "k", "a", "b", "--expect-absent"]
        )),
        2
    );
    assert_eq!(code(&shoalctl(&m.addr, &["--help"])), 0);
    assert_eq!(code(&shoalctl(&m.addr, &["lock", "--help"])), 0);
}

#[test]
fn lost_answers_exit_3_and_unreachable_exit_4() {
    let silent = Mock::start(|_, _, _| vec![Action::Ignore]);
    let o = shoalctl(
        &silent.addr,
        &["--timeout", "600ms", "-o", "json", "put", "k", "v"],
    );
    assert_eq!(code(&o), 3, "{o:?}");
    assert_eq!(json(&o)["class"], "indeterminate");

    let o = shoalctl(&dead_addr(), &["--timeout", "300ms", "put", "k", "v"]);
    assert_eq!(code(&o), 4, "{o:?}");
    let o = shoalctl(&dead_addr(), &["--timeout", "300ms", "get", "k"]);
    assert_eq!(code(&o), 4, "{o:?}");
}

#[test]
fn batch_mode_answers_one_json_line_per_command() {
    let m = Mock::kv();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoalctl"))
        .args(["--endpoints", &m.addr, "batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "put greeting 'hello world'").unwrap();
        writeln!(stdin, "# a comment").unwrap();
        writeln!(stdin, "get greeting").unwrap();
        writeln!(stdin, "get missing").unwrap();
        writeln!(stdin, "put \"unbalanced").unwrap();
        writeln!(stdin, "mkdir d").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0]["ok"], true);
    assert_eq!(lines[1]["value"], "hello world");
    assert_eq!(lines[2]["error"], "NotFound");
    assert_eq!(lines[3]["class"], "usage");
    assert_eq!(lines[4]["ok"], true);
    // The last failing line decides the exit code.
    assert_eq!(out.status.code(), Some(2));
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
    assert_eq!(code(&o), 7, "{o:?}");
    assert_eq!(stdout(&o), "fence=1\n");
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
    assert_eq!(code(&o), 0, "{o:?}");
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["index"], 5);
    assert_eq!(lines[0]["key"], "cfg.x");
    assert_eq!(lines[0]["value_encoding"], "base64");
    assert_eq!(lines[0]["value"], "/wU=");
}

// ---- end to end against a real shoald ----

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn end_to_end_against_a_single_shoald() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, client, admin) = (free_port(), free_port(), free_port());
    let raft_addr = format!("127.0.0.1:{raft}");
    let client_addr = format!("127.0.0.1:{client}");
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_shoald"))
            .env_clear()
            .args(["--node-id", "1", "--fsync", "never"])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--raft-addr", &raft_addr])
            .args(["--client-addr", &client_addr])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .args(["--initial-members", &format!("1={raft_addr}/{client_addr}")])
            .args(["--election-timeout", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start shoald"),
    );

    // The client retries while the server starts and elects itself.
    let o = shoalctl(&client_addr, &["--timeout", "20s", "put", "a", "1"]);
    assert_eq!(code(&o), 0, "{o:?}");
    let o = shoalctl(&client_addr, &["get", "a"]);
    assert_eq!(code(&o), 0, "{o:?}");
    assert_eq!(stdout(&o), "1\n");

    let o = shoalctl(&client_addr, &["-o", "json", "get", "a"]);
    let j = json(&o);
    assert_eq!(j["value"], "1");
    assert!(j["create_index"].as_u64().unwrap() > 0);

    let o = shoalctl(&client_addr, &["cas", "a", "2", "3"]);
    assert_eq!(code(&o), 1, "{o:?}");
    assert_eq!(code(&shoalctl(&client_addr, &["cas", "a", "1", "3"])), 0);
    let o = shoalctl(&client_addr, &["-o", "json", "get", "missing"]);
    assert_eq!(code(&o), 1, "{o:?}");

    let o = shoalctl(&client_addr, &["lock", "L", "--lease", "2s", "--", "true"]);
    assert_eq!(code(&o), 0, "{o:?}");

    let o = shoalctl(&dead_addr(), &["--timeout", "300ms", "put", "a", "1"]);
    assert_eq!(code(&o), 4, "{o:?}");
    drop(server);
}
