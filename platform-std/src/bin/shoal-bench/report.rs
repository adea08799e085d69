//! What the bench prints: the report of one run, the tables of `sweep`, `recovery` and `groups`, as text
//! for people or one JSON object for scripts.

use std::io::{self, Write};

use std::sync::atomic::Ordering;

use crate::cli::{Args, Workload};
use crate::groups::GroupsOutcome;
use crate::hostile::{HostileOutcome, Tally};
use crate::recovery::RecoveryPoint;
use crate::run::{CpuUse, Outcome};
use crate::stats::OpStats;
use crate::sweep::SweepPoint;

/// Write a report to standard output with `write`.
pub fn print(
    write: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<()>,
) -> Result<(), String> {
    write(&mut io::stdout().lock()).map_err(|e| format!("writing the report: {e}"))
}

/// The report of one run: a table per operation kind and the servers' memory, or one JSON
/// object.
pub fn single(a: &Args, o: &Outcome, out: &mut impl Write) -> io::Result<()> {
    let (conns, secs, total) = (o.conns, o.secs, &o.total);
    let kinds: Vec<(&str, &OpStats)> =
        [("put", &total[0]), ("get", &total[1]), ("event", &total[2])]
            .into_iter()
            .filter(|(_, s)| s.ok > 0 || !s.errors.is_empty())
            .collect();
    if a.json {
        return single_json(a, o, &kinds, out);
    }
    writeln!(
        out,
        "workload {:?}  clients {}  conns {}  pipeline {}  key {}B  value {}B  keyspace {}  leader {}{}",
        a.workload,
        a.clients,
        conns,
        a.pipeline,
        a.key_size,
        a.value_size,
        a.keyspace,
        o.leader,
        match a.local {
            Some(n) => format!("  local {n} node(s), fsync {:?}", a.fsync),
            None => String::new(),
        }
    )?;
    writeln!(out, "measured {secs:.2}s after {:?} warmup", a.warmup)?;
    writeln!(
        out,
        "{:<5} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "op", "ops/s", "p50", "p90", "p99", "p99.9", "max", "errors"
    )?;
    for (k, s) in &kinds {
        let errs = s.error_count();
        writeln!(
            out,
            "{:<5} {:>12.0} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
            k,
            s.ok as f64 / secs,
            fmt_us(s.pct(0.5)),
            fmt_us(s.pct(0.9)),
            fmt_us(s.pct(0.99)),
            fmt_us(s.pct(0.999)),
            fmt_us(s.hist.max()),
            errs
        )?;
        if s.misses > 0 {
            writeln!(out, "     {} reads found no key", s.misses)?;
        }
        for (e, n) in &s.errors {
            writeln!(out, "     error x{n}: {e}")?;
        }
    }
    if a.workload == Workload::Watch {
        let expected = total[0].ok * u64::from(a.watchers);
        writeln!(
            out,
            "watch fan-out: {} watchers, {} events delivered of ~{} expected (writes x watchers)",
            a.watchers, total[2].ok, expected
        )?;
    }
    if o.pids.is_empty() {
        writeln!(out, "server RSS: n/a (remote endpoints)")?;
    }
    for (i, p) in o.pids.iter().enumerate() {
        let f = |x: Option<u64>| x.map_or("gone".into(), |k| format!("{:.1} MiB", mib(k)));
        writeln!(
            out,
            "node {} (pid {p}): idle RSS {}, peak sampled RSS {:.1} MiB, VmHWM {}",
            i + 1,
            f(o.idle[i].map(|x| x.0)),
            mib(o.peak[i]),
            f(o.hwm[i].map(|x| x.1))
        )?;
    }
    if let Some(cpu) = &o.cpu {
        writeln!(out, "{}", cpu_line(cpu, secs, total))?;
    }
    for e in &o.failures {
        writeln!(out, "connection failed: {e}")?;
    }
    Ok(())
}

/// Operations per second of a run's totals (writes and reads).
fn ops_per_sec(secs: f64, total: &[OpStats; 3]) -> f64 {
    (total[0].ok + total[1].ok) as f64 / secs.max(1e-9)
}

/// What the servers and the load generator spent over the measured window, and whether that
/// bound the run: on a machine the load generator shares, a figure bound by CPU compares
/// server CPU per operation, not the machine.
fn cpu_line(cpu: &CpuUse, secs: f64, total: &[OpStats; 3]) -> String {
    let ops = ops_per_sec(secs, total);
    let mut line = String::from("CPU over the measured window:");
    for (i, c) in cpu.servers.iter().enumerate() {
        line += &format!(
            " node {} {c:.2} cores ({:.2} µs per op),",
            i + 1,
            c * 1e6 / ops.max(1e-9)
        );
    }
    line += &format!(" load generator {:.2} cores", cpu.bench);
    if cpu.cpu_bound() {
        let busy = cpu.servers.iter().sum::<f64>() + cpu.bench;
        line += &format!(
            "; {busy:.2} of the machine's {} cores busy: bound by CPU the load generator shares",
            cpu.cores
        );
    }
    line
}

/// One run's outcome as one JSON object.
fn single_json(
    a: &Args,
    o: &Outcome,
    kinds: &[(&str, &OpStats)],
    out: &mut impl Write,
) -> io::Result<()> {
    let (conns, secs, total) = (o.conns, o.secs, &o.total);
    let ops: Vec<serde_json::Value> = kinds
        .iter()
        .map(|(k, s)| {
            serde_json::json!({
                "op": k,
                "ok": s.ok,
                "ops_per_sec": s.ok as f64 / secs,
                "misses": s.misses,
                "errors": s.errors,
                "latency_us": {
                    "p50": s.pct(0.5), "p90": s.pct(0.9),
                    "p99": s.pct(0.99), "p999": s.pct(0.999),
                    "max": s.hist.max(), "mean": s.hist.mean(),
                },
            })
        })
        .collect();
    let servers: Vec<serde_json::Value> = o
        .pids
        .iter()
        .enumerate()
        .map(|(i, p)| {
            serde_json::json!({
                "node": i + 1, "pid": p,
                "idle_rss_kib": o.idle[i].map(|x| x.0),
                "peak_rss_kib": o.peak[i],
                "vm_hwm_kib": o.hwm[i].map(|x| x.1),
            })
        })
        .collect();
    let cpu = o.cpu.as_ref().map(|c| {
        serde_json::json!({
            "server_cores": c.servers, "load_generator_cores": c.bench,
            "machine_cores": c.cores, "cpu_bound": c.cpu_bound(),
            "server_us_per_op": (!c.servers.is_empty())
                .then(|| c.server_us_per_op(ops_per_sec(secs, total))),
        })
    });
    let v = serde_json::json!({
        "workload": format!("{:?}", a.workload).to_lowercase(),
        "local": a.local, "fsync": a.local.map(|_| a.fsync.as_flag()),
        "leader": o.leader, "clients": a.clients, "conns": conns, "pipeline": a.pipeline,
        "key_size": a.key_size, "value_size": a.value_size, "keyspace": a.keyspace,
        "consistency": format!("{:?}", a.consistency).to_lowercase(),
        "read_ratio": a.read_ratio, "seconds": secs,
        "watchers": (a.workload == Workload::Watch).then_some(a.watchers),
        "total_ops_per_sec": (total[0].ok + total[1].ok) as f64 / secs,
        "ops": ops,
        "servers": if o.pids.is_empty() { serde_json::Value::String("n/a".into()) } else { servers.into() },
        "connection_failures": o.failures,
        "cpu": cpu,
    });
    writeln!(out, "{v}")
}

// ---------------------------------------------------------------- hostile

/// The report of a `hostile` run: the normal client's latency alone and under the attack, the
/// node's memory and threads, what each part of the attack did and the limits it hit.
pub fn hostile(a: &Args, o: &HostileOutcome, out: &mut impl Write) -> io::Result<()> {
    let phases = [("alone", &o.unloaded), ("attacked", &o.loaded)];
    let tally = |t: &Tally| {
        [&t.opened, &t.closed, &t.refused, &t.answered].map(|n| n.load(Ordering::Relaxed))
    };
    if a.json {
        let latency = |s: &OpStats| {
            serde_json::json!({
                "ok": s.ok, "errors": s.errors,
                "p50_us": s.pct(0.5), "p99_us": s.pct(0.99), "max_us": s.hist.max(),
            })
        };
        let normal: serde_json::Map<String, serde_json::Value> = phases
            .iter()
            .map(|(k, st)| {
                let v = serde_json::json!({"put": latency(&st[0]), "get": latency(&st[1])});
                (k.to_string(), v)
            })
            .collect();
        let parts: Vec<serde_json::Value> = o
            .parts
            .iter()
            .map(|p| {
                let [opened, closed, refused, answered] = tally(&p.tally);
                serde_json::json!({
                    "part": p.name, "opened": opened, "closed_by_node": closed,
                    "refused": refused, "answered": answered,
                })
            })
            .collect();
        let v = serde_json::json!({
            "workload": "hostile", "fsync": a.fsync.as_flag(), "seconds": a.duration.as_secs_f64(),
            "clients": a.clients, "pipeline": a.pipeline, "value_size": a.value_size,
            "pid": o.pid, "idle_rss_kib": o.idle.0, "idle_threads": o.idle.1,
            "peak_rss_kib": o.peak_rss_kib, "vm_hwm_kib": o.hwm_kib,
            "peak_threads": o.peak_threads, "rss_limit_mb": a.rss_limit_mb,
            "attacker_nice": a.attacker_nice,
            "client_connections": o.client_connections,
            "normal_client": normal, "attack": parts,
            "limit_hits": o.hits.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "exited": o.exited,
        });
        return writeln!(out, "{v}");
    }
    writeln!(
        out,
        "hostile: one node (pid {}), fsync {:?}; normal client: mixed, {} client(s) x pipeline {}, \
         value {}B, {:?} each phase; attack threads at nice {}",
        o.pid, a.fsync, a.clients, a.pipeline, a.value_size, a.duration, a.attacker_nice
    )?;
    writeln!(
        out,
        "{:<9} {:<4} {:>9} {:>10} {:>10} {:>10} {:>7}",
        "phase", "op", "ops/s", "p50", "p99", "max", "errors"
    )?;
    let secs = a.duration.as_secs_f64();
    for (phase, st) in phases {
        for (op, s) in [("put", &st[0]), ("get", &st[1])] {
            writeln!(
                out,
                "{:<9} {:<4} {:>9.0} {:>10} {:>10} {:>10} {:>7}",
                phase,
                op,
                s.ok as f64 / secs,
                fmt_us(s.pct(0.5)),
                fmt_us(s.pct(0.99)),
                fmt_us(s.hist.max()),
                s.error_count()
            )?;
            for (e, n) in &s.errors {
                writeln!(out, "     error x{n}: {e}")?;
            }
        }
    }
    writeln!(
        out,
        "node: idle RSS {:.1} MiB, {} threads; under attack peak sampled RSS {:.1} MiB, {} \
         threads at most, {} client connections; VmHWM (whole run) {:.1} MiB (limit {} MiB); {}",
        mib(o.idle.0),
        o.idle.1,
        mib(o.peak_rss_kib),
        o.peak_threads,
        o.client_connections,
        mib(o.hwm_kib),
        a.rss_limit_mb,
        o.exited.as_deref().unwrap_or("never exited")
    )?;
    writeln!(
        out,
        "{:<34} {:>8} {:>8} {:>8} {:>8}",
        "attack", "opened", "closed", "refused", "answered"
    )?;
    for p in &o.parts {
        let [opened, closed, refused, answered] = tally(&p.tally);
        writeln!(
            out,
            "{:<34} {opened:>8} {closed:>8} {refused:>8} {answered:>8}",
            p.name
        )?;
    }
    let hits: Vec<String> = o
        .hits
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(flag, n)| format!("--{flag} {n}"))
        .collect();
    writeln!(out, "limits hit: {}", hits.join(", "))
}

// ---------------------------------------------------------------- sweep and recovery

/// The table of a sweep (or one JSON object).
pub fn sweep(a: &Args, n: u32, points: &[SweepPoint], out: &mut impl Write) -> io::Result<()> {
    if a.json {
        let points: Vec<serde_json::Value> = points
            .iter()
            .map(|p| {
                let (o, w) = (&p.outcome, &p.outcome.total[0]);
                serde_json::json!({
                    "clients": p.clients, "value_size": p.value_size, "keyspace": p.keyspace,
                    "ops_per_sec": w.ok as f64 / o.secs,
                    "errors": w.error_count(),
                    "latency_us": {
                        "p50": w.pct(0.5), "p99": w.pct(0.99),
                        "p999": w.pct(0.999), "max": w.hist.max(),
                    },
                    "peak_rss_kib": o.peak.iter().max(),
                })
            })
            .collect();
        let fields = serde_json::json!({
            "conns": a.conns, "pipeline": a.pipeline, "key_size": a.key_size,
            "seconds": a.duration.as_secs_f64(),
        });
        return write_points("sweep", a, n, fields, points, out);
    }
    writeln!(
        out,
        "put sweep: {n} node(s), fsync {:?}, {} conns, pipeline {}, key {} B, {:?} per point",
        a.fsync, a.conns, a.pipeline, a.key_size, a.duration
    )?;
    writeln!(
        out,
        "| clients | value | keys | writes/s | MB/s | p50 | p99 | p99.9 | max | errors | peak RSS |"
    )?;
    writeln!(
        out,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for p in points {
        let (o, w) = (&p.outcome, &p.outcome.total[0]);
        let ops = w.ok as f64 / o.secs;
        writeln!(
            out,
            "| {} | {} B | {} | {ops:.0} | {:.1} | {} | {} | {} | {} | {} | {:.1} MiB |",
            p.clients,
            p.value_size,
            p.keyspace,
            ops * (p.value_size + a.key_size) as f64 / 1e6,
            fmt_us(w.pct(0.5)),
            fmt_us(w.pct(0.99)),
            fmt_us(w.pct(0.999)),
            fmt_us(w.hist.max()),
            w.error_count(),
            mib(o.peak.iter().copied().max().unwrap_or(0))
        )?;
    }
    Ok(())
}

/// The table of a recovery run (or one JSON object).
pub fn recovery(
    a: &Args,
    n: u32,
    points: &[RecoveryPoint],
    out: &mut impl Write,
) -> io::Result<()> {
    if a.json {
        let points: Vec<serde_json::Value> = points
            .iter()
            .map(|p| {
                serde_json::json!({
                    "writes": p.entries, "last_index": p.last, "data_dir_bytes": p.disk,
                    "answering_ms": p.answering.as_secs_f64() * 1e3,
                    "healthy_ms": p.healthy.as_secs_f64() * 1e3,
                    "rss_kib_after": p.rss,
                })
            })
            .collect();
        let fields = serde_json::json!({
            "value_size": a.value_size, "key_size": a.key_size, "keyspace": a.keyspace,
        });
        return write_points("recovery", a, n, fields, points, out);
    }
    writeln!(
        out,
        "recovery: {n} node(s), no snapshots, {} B values over {} keys, restart with fsync {:?}",
        a.value_size, a.keyspace, a.fsync
    )?;
    writeln!(
        out,
        "| log entries | data dir (node 1) | restart → answering | restart → /health OK | RSS after |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|---:|")?;
    for p in points {
        writeln!(
            out,
            "| {} | {:.1} MiB | {} | {} | {:.1} MiB |",
            p.last,
            p.disk as f64 / (1u64 << 20) as f64,
            fmt_us(p.answering.as_micros() as u64),
            fmt_us(p.healthy.as_micros() as u64),
            mib(p.rss.iter().copied().max().unwrap_or(0))
        )?;
    }
    Ok(())
}

/// The `groups` workload: creation and election times, what an idle group costs, and the
/// writes as active groups grow.
pub fn groups(a: &Args, n: u32, o: &GroupsOutcome, out: &mut impl Write) -> io::Result<()> {
    let (rss_kib, disk) = o.per_group();
    let cpu_before: f64 = o.before.iter().map(|c| c.cpu_pct).sum();
    let cpu_after: f64 = o.after.iter().map(|c| c.cpu_pct).sum();
    if a.json {
        let nodes: Vec<serde_json::Value> = o
            .before
            .iter()
            .zip(&o.after)
            .map(|(b, x)| {
                serde_json::json!({
                    "rss_kib_before": b.rss_kib, "rss_kib_idle": x.rss_kib,
                    "disk_bytes_before": b.disk_bytes, "disk_bytes_idle": x.disk_bytes,
                    "cpu_pct_before": b.cpu_pct, "cpu_pct_idle": x.cpu_pct,
                })
            })
            .collect();
        let points = o
            .active
            .iter()
            .map(|p| {
                serde_json::json!({
                    "groups": p.groups, "writes_per_sec": p.writes_per_sec,
                    "fsyncs_per_sec": p.fsyncs_per_sec, "p99_us": p.p99_us,
                    "server_us_per_write": p.server_us_per_write, "cpu_bound": p.cpu_bound,
                    "runs_writes_per_sec": p.runs_writes_per_sec,
                    "ratio_to_first": p.ratio_to_first,
                })
            })
            .collect();
        let fields = serde_json::json!({
            "groups": o.groups, "create_ms": o.create.as_secs_f64() * 1e3,
            "all_leaders_ms": o.all_leaders.as_secs_f64() * 1e3,
            "idle_secs": o.idle_secs, "rss_kib_per_group": rss_kib,
            "disk_bytes_per_group": disk, "cpu_pct_before": cpu_before,
            "cpu_pct_idle": cpu_after, "nodes": nodes,
            "clients": a.clients, "value_size": a.value_size,
            "repetitions": a.groups_repeat,
        });
        return write_points("groups", a, n, fields, points, out);
    }
    writeln!(
        out,
        "groups: {} groups on {n} node(s), fsync {:?}",
        o.groups, a.fsync
    )?;
    writeln!(
        out,
        "| defined in | every group has a leader | RSS per idle group | disk per idle group | idle CPU, all nodes (before → with the groups) |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|---:|")?;
    writeln!(
        out,
        "| {:.1} s | {:.1} s | {:.1} KiB | {:.1} KiB | {:.1} % → {:.1} % of a core |",
        o.create.as_secs_f64(),
        o.all_leaders.as_secs_f64(),
        rss_kib,
        disk / 1024.0,
        cpu_before,
        cpu_after
    )?;
    if o.active.is_empty() {
        return Ok(());
    }
    let first = o.active[0].groups;
    let repeated = match a.groups_repeat {
        1 => String::new(),
        r => format!(
            "; medians of {r} repetitions of the sequence, the ratio the median of each \
             repetition's own"
        ),
    };
    writeln!(
        out,
        "\nput over active groups, {} clients, {} B values{repeated}:",
        a.clients, a.value_size
    )?;
    writeln!(
        out,
        "| active groups | writes/s | vs {first} active | fdatasyncs/s (all nodes) | p99 | server CPU per write (all nodes) |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|---:|---:|")?;
    for p in &o.active {
        let cpu = match p.server_us_per_write {
            Some(us) if p.cpu_bound => format!("{us:.2} µs (CPU-bound)"),
            Some(us) => format!("{us:.2} µs"),
            None => "n/a".into(),
        };
        writeln!(
            out,
            "| {} | {:.0} | {:.2}× | {:.0} | {} | {cpu} |",
            p.groups,
            p.writes_per_sec,
            p.ratio_to_first,
            p.fsyncs_per_sec,
            fmt_us(p.p99_us)
        )?;
    }
    Ok(())
}

/// One JSON object for a workload of many points on `--local n`: its name, `fields`, and the
/// points.
fn write_points(
    workload: &str,
    a: &Args,
    n: u32,
    mut fields: serde_json::Value,
    points: Vec<serde_json::Value>,
    out: &mut impl Write,
) -> io::Result<()> {
    fields["workload"] = workload.into();
    fields["local"] = n.into();
    fields["fsync"] = a.fsync.as_flag().into();
    fields["points"] = points.into();
    writeln!(out, "{fields}")
}

/// KiB as MiB.
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A latency in microseconds as text (`123us`, `1.23ms`, `1.234s`).
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.3}s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;

    fn outcome() -> Outcome {
        let mut put = OpStats::new();
        for us in [100, 200, 300, 400] {
            put.record(us);
        }
        put.fail("not_leader".into());
        let mut get = OpStats::new();
        get.record(50);
        get.misses = 1;
        Outcome {
            conns: 2,
            leader: "127.0.0.1:7002".into(),
            secs: 2.0,
            total: [put, get, OpStats::new()],
            pids: vec![42],
            idle: vec![Some((1024, 2048))],
            peak: vec![4096],
            hwm: vec![Some((3072, 5120))],
            cpu: None,
            failures: vec!["127.0.0.1:7002 closed the connection".into()],
        }
    }

    fn args(argv: &[&str]) -> Args {
        Args::try_parse_from([&["shoal-bench"], argv].concat()).unwrap()
    }

    fn written(f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_run_is_reported_per_operation_and_server() {
        let a = args(&["mixed", "--local", "1", "--clients", "8"]);
        let text = written(|out| single(&a, &outcome(), out));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("clients 8  conns 2"), "{text}");
        assert!(lines[0].ends_with("leader 127.0.0.1:7002  local 1 node(s), fsync Always"));
        let put: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(&put[..3], ["put", "2", "200us"], "4 writes in 2 s; {text}");
        assert_eq!(put[7], "1", "one error; {text}");
        assert!(lines.contains(&"     error x1: not_leader"), "{text}");
        assert!(lines.contains(&"     1 reads found no key"), "{text}");
        assert!(!text.contains("event"), "no watch events, no row: {text}");
        assert!(lines.contains(
            &"node 1 (pid 42): idle RSS 1.0 MiB, peak sampled RSS 4.0 MiB, VmHWM 5.0 MiB"
        ));
        assert_eq!(
            lines.last(),
            Some(&"connection failed: 127.0.0.1:7002 closed the connection")
        );

        let a = args(&["mixed", "--local", "1", "--json"]);
        let json: serde_json::Value =
            serde_json::from_str(&written(|out| single(&a, &outcome(), out))).unwrap();
        assert_eq!(json["fsync"], "always");
        assert_eq!(json["total_ops_per_sec"], 2.5);
        assert_eq!(json["ops"][0]["op"], "put");
        assert_eq!(json["ops"][0]["errors"]["not_leader"], 1);
        assert_eq!(json["ops"][1]["misses"], 1);
        assert_eq!(json["servers"][0]["peak_rss_kib"], 4096);
        assert_eq!(json["servers"][0]["vm_hwm_kib"], 5120);
    }

    #[test]
    fn sweeps_and_recoveries_are_tables_or_json() {
        let a = args(&["sweep", "--local", "3", "--duration", "2s"]);
        let point = SweepPoint {
            clients: 16,
            value_size: 256,
            keyspace: 1000,
            outcome: outcome(),
        };
        let text = written(|out| sweep(&a, 3, std::slice::from_ref(&point), out));
        let row = text.lines().last().unwrap();
        assert!(
            row.starts_with("| 16 | 256 B | 1000 | 2 | 0.0 | 200us |"),
            "{text}"
        );
        assert!(row.ends_with("| 1 | 4.0 MiB |"), "{text}");

        let a = args(&["recovery", "--local", "3", "--json"]);
        let point = RecoveryPoint {
            entries: 10,
            last: 12,
            disk: 3 << 20,
            answering: Duration::from_millis(40),
            healthy: Duration::from_millis(90),
            rss: vec![2048, 4096],
        };
        let json: serde_json::Value =
            serde_json::from_str(&written(|out| recovery(&a, 3, &[point], out))).unwrap();
        assert_eq!(json["workload"], "recovery");
        assert_eq!(json["local"], 3);
        assert_eq!(json["fsync"], "always");
        assert_eq!(json["points"][0]["last_index"], 12);
        assert_eq!(json["points"][0]["healthy_ms"], 90.0);
    }

    #[test]
    fn cpu_over_the_window_is_reported_per_op_and_says_when_it_bound_the_run() {
        // 2.5 ops/s (4 writes and one read in 2 s): 0.5 cores is 200,000 µs per op.
        let mut o = outcome();
        let cpu = |servers: Vec<f64>, bench: f64| CpuUse {
            servers,
            bench,
            cores: 2,
        };
        o.cpu = Some(cpu(vec![0.5], 0.25));
        let a = args(&["mixed", "--local", "1"]);
        let text = written(|out| single(&a, &o, out));
        let line = text.lines().find(|l| l.starts_with("CPU")).expect("a CPU line");
        assert_eq!(
            line,
            "CPU over the measured window: node 1 0.50 cores (200000.00 µs per op), \
             load generator 0.25 cores"
        );
        // Nine tenths of the cores or more: the run says it was bound by CPU.
        o.cpu = Some(cpu(vec![0.5, 0.4], 0.9));
        let text = written(|out| single(&args(&["mixed", "--local", "2"]), &o, out));
        assert!(
            text.contains(
                "node 2 0.40 cores (160000.00 µs per op), load generator 0.90 cores; \
                 1.80 of the machine's 2 cores busy: bound by CPU the load generator shares"
            ),
            "{text}"
        );
        let a = args(&["mixed", "--local", "2", "--json"]);
        let json: serde_json::Value =
            serde_json::from_str(&written(|out| single(&a, &o, out))).unwrap();
        assert_eq!(json["cpu"]["server_cores"][1], 0.4);
        assert_eq!(json["cpu"]["cpu_bound"], true);
        assert_eq!(json["cpu"]["server_us_per_op"], 360000.0);
        // Remote servers: the load generator's cores alone, and no server figure.
        o.cpu = Some(cpu(vec![], 0.3));
        let json: serde_json::Value =
            serde_json::from_str(&written(|out| single(&a, &o, out))).unwrap();
        assert_eq!(json["cpu"]["load_generator_cores"], 0.3);
        assert!(json["cpu"]["server_us_per_op"].is_null(), "{json}");
        let text = written(|out| single(&args(&["mixed"]), &o, out));
        assert!(
            text.contains("CPU over the measured window: load generator 0.30 cores\n"),
            "{text}"
        );
        // No window read, no line and a null.
        o.cpu = None;
        assert!(!written(|out| single(&a, &o, out)).contains("\"server_cores\""));
    }

    #[test]
    fn cpu_use_comes_from_ticks_over_the_window() {
        // 100 ticks a second: 150 ticks in 2 s is 0.75 cores; the last process is the bench.
        let c = CpuUse::from_ticks(&[1000, 50, 10], &[1150, 50, 210], 2.0, 100.0);
        assert_eq!(c.servers, [0.75, 0.0]);
        assert_eq!(c.bench, 1.0);
        assert_eq!(c.server_us_per_op(1000.0), 750.0);
        assert!(c.cores >= 1);
        // A counter that went backwards (a process replaced) counts as nothing, not as a wrap.
        let c = CpuUse::from_ticks(&[500, 10], &[400, 10], 1.0, 100.0);
        assert_eq!(c.servers, [0.0]);
        let bound = |servers: f64, bench: f64| {
            CpuUse {
                servers: vec![servers],
                bench,
                cores: 2,
            }
            .cpu_bound()
        };
        assert!(bound(1.0, 0.8), "1.8 of 2 cores");
        assert!(!bound(1.0, 0.7), "1.7 of 2 cores");
    }

    #[test]
    fn latencies_format() {
        for (us, text) in [(87, "87us"), (1_234, "1.23ms"), (2_500_000, "2.500s")] {
            assert_eq!(fmt_us(us), text);
        }
    }
}
