//! Multi-key transactions through `shoalctl txn` against a real `shoald` (typed, JSON from a
//! file and from stdin, text and JSON answers, an aborted branch leaving nothing behind), and
//! writes DtKV refuses whatever the state taking no log entry, with errors that name the limit.

use shoal_testkit::cli::{last_index, ready_single_node, shoalctl_with_input};
use shoal_testkit::client::gauge;
use shoal_testkit::shoalctl;

fn get(addr: &str, key: &str) -> Option<String> {
    let o = shoalctl(addr, &["get", key]);
    (o.code == 0).then(|| o.out.trim_end().to_string())
}

#[test]
fn transactions_through_shoalctl() {
    let (_c, addr) = ready_single_node();
    assert_eq!(shoalctl(&addr, &["put", "app.mode", "blue"]).code, 0);

    // Typed: compares, blank line, success operations, blank line, failure operations.
    let typed = "value app.mode = blue\nabsent app.owner\n\n\
                 put app.mode green\nput-temp app.owner me --ttl 30s\nmkdir app.jobs\n\n\
                 put app.log 'lost the race'\n";
    let o = shoalctl_with_input(&addr, &["txn"], Some(typed.as_bytes()));
    assert_eq!(o.code, 0, "{o}");
    let lines: Vec<&str> = o.out.lines().collect();
    assert!(lines[0].starts_with("success (index "), "{o}");
    assert_eq!(
        &lines[1..],
        [
            "put app.mode: updated",
            "put-temp app.owner: created",
            "mkdir app.jobs: created"
        ]
    );
    assert_eq!(get(&addr, "app.mode").as_deref(), Some("green"));
    assert_eq!(get(&addr, "app.owner").as_deref(), Some("me"));

    // The same transaction again: the compare fails, so the failure branch runs.
    let o = shoalctl_with_input(&addr, &["-o", "json", "txn"], Some(typed.as_bytes()));
    assert_eq!(o.code, 0, "{o}");
    let j = o.json();
    assert_eq!(
        (j["succeeded"].as_bool(), j["branch"].as_str()),
        (Some(false), Some("failure"))
    );
    assert_eq!(j["results"][0]["op"], "put");
    assert_eq!(j["results"][0]["key"], "app.log");
    assert_eq!(j["results"][0]["result"], "created");
    assert_eq!(get(&addr, "app.log").as_deref(), Some("lost the race"));
    assert_eq!(get(&addr, "app.mode").as_deref(), Some("green"));

    // JSON from a file, compared on the update index the last write left.
    let index = shoalctl(&addr, &["-o", "json", "get", "app.mode"]).json()["update_index"]
        .as_u64()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("txn.json");
    let doc = format!(
        r#"{{"compares": [{{"key": "app.mode", "update_index": {index}}},
                         {{"key": "app.jobs", "exists": true}}],
            "success": [{{"op": "put", "key": "app.jobs.7", "value": "queued"}},
                        {{"op": "del", "key": "app.log"}}]}}"#
    );
    std::fs::write(&file, &doc).unwrap();
    let o = shoalctl(&addr, &["txn", "--file", file.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(get(&addr, "app.jobs.7").as_deref(), Some("queued"));
    assert_eq!(get(&addr, "app.log"), None);

    // JSON from stdin; the first operation would apply, the second is refused (the directory
    // is not empty): nothing is applied, exit 1, and the answer names the operation.
    let doc = r#"{"success": [{"op": "put", "key": "app.mode", "value": "red"},
                              {"op": "del", "key": "app.jobs"}]}"#;
    let before = last_index(&addr);
    let o = shoalctl_with_input(
        &addr,
        &["-o", "json", "txn", "--file", "-"],
        Some(doc.as_bytes()),
    );
    assert_eq!(o.code, 1, "{o}");
    let j = o.json();
    assert_eq!(j["error"], "DirNotEmpty");
    assert_eq!(
        (j["branch"].as_str(), j["op"].as_u64()),
        (Some("success"), Some(1))
    );
    assert_eq!(get(&addr, "app.mode").as_deref(), Some("green"));
    assert_eq!(
        last_index(&addr),
        before + 1,
        "an aborted transaction is one entry"
    );

    // Usage mistakes are exit 2 and send nothing.
    let o = shoalctl_with_input(&addr, &["txn"], Some(b"value app.mode blue\n"));
    assert_eq!(o.code, 2, "{o}");
    assert!(o.err.contains("line 1"), "{o}");
    let o = shoalctl(&addr, &["txn", "--file", "/nonexistent/txn.json"]);
    assert_eq!(o.code, 2, "{o}");
}

#[test]
fn refused_writes_take_no_log_entry_and_name_the_limit() {
    let (c, addr) = ready_single_node();
    let admin = c.node(1).admin.clone();
    let before = last_index(&addr);
    let refused = r#"shoal_writes_refused_total{group="0"}"#;
    assert_eq!(gauge(&admin, refused), 0);

    let big = "v".repeat(64 * 1024 + 1);
    let o = shoalctl(&addr, &["put", "app.big", &big]);
    assert_eq!(o.code, 1, "{o}");
    assert!(o.err.contains("max_value_bytes is 65536 bytes"), "{o}");
    let o = shoalctl(&addr, &["put-temp", "app.t", "v", "--ttl", "10000h"]);
    assert_eq!(o.code, 1, "{o}");
    assert!(o.err.contains("max_ttl_ms is 2592000000 ms"), "{o}");
    let o = shoalctl(&addr, &["put", "__shoal.x", "v"]);
    assert_eq!(o.code, 1, "{o}");
    assert!(o.err.contains("Reserved"), "{o}");
    // A transaction writing the reserved subtree is refused whole, naming the operation.
    let o = shoalctl_with_input(
        &addr,
        &["txn"],
        Some(b"\nput app.ok 1\nput __shoal.members.9 x\n"),
    );
    assert_eq!(o.code, 1, "{o}");
    assert!(o.err.contains("success operation 1"), "{o}");
    // More operations than --kv-max-txn-ops (64).
    let ops: Vec<String> = (0..65)
        .map(|i| format!(r#"{{"op": "put", "key": "app.k{i}", "value": "v"}}"#))
        .collect();
    let doc = format!(r#"{{"success": [{}]}}"#, ops.join(","));
    let o = shoalctl_with_input(&addr, &["txn", "--file", "-"], Some(doc.as_bytes()));
    assert_eq!(o.code, 1, "{o}");
    assert!(o.err.contains("max_txn_ops is 64"), "{o}");
    // A key with bad syntax (refused by the client or the server, never proposed).
    let o = shoalctl(&addr, &["put", "app..x", "v"]);
    assert_ne!(o.code, 0, "{o}");

    assert_eq!(last_index(&addr), before, "refused writes took log entries");
    assert!(gauge(&admin, refused) >= 5);
    assert_eq!(get(&addr, "app.ok"), None);
    // The next good write takes the next index.
    assert_eq!(shoalctl(&addr, &["put", "app.ok", "1"]).code, 0);
    assert_eq!(last_index(&addr), before + 1);
}
