//! `shoal-bench` end to end: each workload kind against a `--local` single-node cluster it starts
//! and stops itself, checked through its JSON report (operations done, no errors, every watch
//! event delivered). Only correctness is asserted, never a rate.

use std::process::Command;

use serde_json::Value;

/// Run `shoal-bench WORKLOAD --local 1 --json` for a short while with `extra` flags (words
/// separated by spaces, as on a command line).
fn bench(workload: &str, extra: &str) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal-bench"));
    cmd.args([workload, "--local", "1", "--json", "--fsync", "never"])
        .args(["--warmup", "100ms", "--duration", "1s"])
        .args(extra.split_whitespace());
    report(cmd)
}

/// Run `cmd` (a `shoal-bench ... --json`), check it succeeded and return its JSON report.
fn report(mut cmd: Command) -> Value {
    let out = cmd.output().expect("run shoal-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// The report's row for `op`.
fn op<'a>(report: &'a Value, op: &str) -> &'a Value {
    report["ops"]
        .as_array()
        .and_then(|ops| ops.iter().find(|o| o["op"] == op))
        .unwrap_or_else(|| panic!("no {op} row in {report}"))
}

fn assert_clean(report: &Value, name: &str) {
    let row = op(report, name);
    assert!(
        row["ok"].as_u64().unwrap() > 0,
        "no {name} succeeded: {report}"
    );
    assert_eq!(row["errors"], serde_json::json!({}), "{report}");
    assert_eq!(
        report["connection_failures"],
        serde_json::json!([]),
        "{report}"
    );
}

#[test]
fn put_get_and_mixed_run_without_errors() {
    let put = bench("put", "--clients 16 --pipeline 2");
    assert_clean(&put, "put");

    let get = bench("get", "--clients 8 --consistency lease --keyspace 500");
    assert_clean(&get, "get");
    assert_eq!(
        op(&get, "get")["misses"],
        0,
        "prefill wrote every key: {get}"
    );

    let mixed = bench("mixed", "--clients 8 --keyspace 500");
    assert_clean(&mixed, "put");
    assert_clean(&mixed, "get");
}

#[test]
fn every_watch_sees_every_write() {
    let report = bench("watch", "--clients 2 --watchers 6 --conns 2");
    assert_clean(&report, "put");
    let writes = op(&report, "put")["ok"].as_u64().unwrap();
    let events = op(&report, "event")["ok"].as_u64().unwrap();
    // Every write stamped inside the window reaches all 6 watchers; writes answered after the
    // window closed are not counted as writes but may still be counted as events.
    assert!(
        events >= writes * 6,
        "{events} events for {writes} writes x 6: {report}"
    );
}

#[test]
fn load_spreads_over_groups_the_bench_defines() {
    let mixed = bench("mixed", "--clients 8 --keyspace 200 --groups 3");
    assert_clean(&mixed, "put");
    assert_clean(&mixed, "get");
    assert_eq!(
        op(&mixed, "get")["misses"],
        0,
        "every group was prefilled: {mixed}"
    );
}

#[test]
fn groups_reports_idle_costs_and_active_points() {
    let r = bench(
        "groups",
        "--groups 20 --groups-active 1,4 --idle 500ms --clients 8",
    );
    assert_eq!(r["groups"], 20, "{r}");
    assert!(r["all_leaders_ms"].as_f64().unwrap() > 0.0, "{r}");
    // A new group's log is one small segment, not a preallocated 64 MiB one.
    let disk = r["disk_bytes_per_group"].as_f64().unwrap();
    assert!(
        disk > 0.0 && disk < 128.0 * 1024.0,
        "an idle group takes {disk} bytes of disk: {r}"
    );
    let points = r["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{r}");
    for p in points {
        assert!(p["writes_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    }
}

#[test]
fn groups_repeats_the_sequence_and_takes_each_repetitions_own_ratio() {
    let r = bench(
        "groups",
        "--groups 4 --groups-active 1,4 --groups-repeat 3 --idle 200ms --clients 8",
    );
    assert_eq!(r["repetitions"], 3, "{r}");
    let points = r["points"].as_array().unwrap();
    let runs = |p: &Value| -> Vec<f64> {
        p["runs_writes_per_sec"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_f64().unwrap())
            .collect()
    };
    let (one, four) = (runs(&points[0]), runs(&points[1]));
    assert_eq!(
        (one.len(), four.len()),
        (3, 3),
        "one run per repetition: {r}"
    );
    assert!(one.iter().chain(&four).all(|w| *w > 0.0), "{r}");
    // The reported figure is the median of the runs, the ratio that of each repetition's.
    let median = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[1]
    };
    assert_eq!(
        points[1]["writes_per_sec"].as_f64().unwrap(),
        median(four.clone()),
        "{r}"
    );
    let ratios = one.iter().zip(&four).map(|(a, b)| b / a).collect();
    let ratio = points[1]["ratio_to_first"].as_f64().unwrap();
    assert!((ratio - median(ratios)).abs() < 1e-9, "{r}");
    assert_eq!(points[0]["ratio_to_first"].as_f64().unwrap(), 1.0, "{r}");
}

/// Two benches against one cluster are separate sessions even when they read the same time:
/// their client ids are seeded from the OS. Seeded from the clock, two runs on a coarse clock
/// had the same ids, and the second run's writes were refused as stale retries of the first's
/// (`StaleSequence`) or answered from its sessions without being applied.
#[test]
fn benches_that_read_the_same_clock_are_separate_sessions() {
    let (c, addr) = shoal_testkit::cli::ready_single_node();
    let shim = shoal_testkit::netns::ClockShim::build(c.root());
    // Each run's clocks show 1,000 s at their first read and move in whole seconds.
    let clock = shim.coarse_env(1_000_000_000_000, 1_000_000_000);
    let run = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal-bench"));
        cmd.args(["put", "--endpoints", &addr, "--json", "--clients", "4"])
            .args(["--warmup", "100ms", "--duration", "1s"])
            .envs(clock.iter().map(|(k, v)| (k, v)));
        report(cmd)
    };
    assert_clean(&run(), "put");
    assert_clean(&run(), "put");
}
