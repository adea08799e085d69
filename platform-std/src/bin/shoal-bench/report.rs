//! What the bench prints: the report of one run, the tables of `sweep` and `recovery`, as text
//! for people or one JSON object for scripts.

use crate::cli::{Args, Workload};
use crate::recovery::RecoveryPoint;
use crate::run::Outcome;
use crate::stats::OpStats;
use crate::sweep::SweepPoint;

/// The report of one run: a table per operation kind and the servers' memory, or one JSON
/// object.
pub fn single(a: &Args, o: &Outcome) {
    let (conns, secs, total) = (o.conns, o.secs, &o.total);
    let kinds: Vec<(&str, &OpStats)> =
        [("put", &total[0]), ("get", &total[1]), ("event", &total[2])]
            .into_iter()
            .filter(|(_, s)| s.ok > 0 || !s.errors.is_empty())
            .collect();
    if a.json {
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
        });
        println!("{v}");
        return;
    }
    println!(
        "workload {:?}  clients {}  conns {}  pipeline {}  key {}B  value {}B  keyspace {}  o.leader {}{}",
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
    );
    println!("measured {secs:.2}s after {:?} warmup", a.warmup);
    println!(
        "{:<5} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "op", "ops/s", "p50", "p90", "p99", "p99.9", "max", "errors"
    );
    for (k, s) in &kinds {
        let errs = s.error_count();
        println!(
            "{:<5} {:>12.0} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
            k,
            s.ok as f64 / secs,
            fmt_us(s.pct(0.5)),
            fmt_us(s.pct(0.9)),
            fmt_us(s.pct(0.99)),
            fmt_us(s.pct(0.999)),
            fmt_us(s.hist.max()),
            errs
        );
        if s.misses > 0 {
            println!("     {} reads found no key", s.misses);
        }
        for (e, n) in &s.errors {
            println!("     error x{n}: {e}");
        }
    }
    if a.workload == Workload::Watch {
        let expected = total[0].ok * u64::from(a.watchers);
        println!(
            "watch fan-out: {} watchers, {} events delivered of ~{} expected (writes x watchers)",
            a.watchers, total[2].ok, expected
        );
    }
    if o.pids.is_empty() {
        println!("server RSS: n/a (remote endpoints)");
    }
    for (i, p) in o.pids.iter().enumerate() {
        let f = |x: Option<u64>| x.map_or("gone".into(), |k| format!("{:.1} MiB", mib(k)));
        println!(
            "node {} (pid {p}): o.idle RSS {}, o.peak sampled RSS {:.1} MiB, VmHWM {}",
            i + 1,
            f(o.idle[i].map(|x| x.0)),
            mib(o.peak[i]),
            f(o.hwm[i].map(|x| x.1))
        );
    }
    for e in &o.failures {
        println!("connection failed: {e}");
    }
}

// ---------------------------------------------------------------- sweep and recovery

/// The table of a sweep (or one JSON object).
pub fn sweep(a: &Args, n: u32, points: &[SweepPoint]) {
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
        print_points("sweep", a, n, fields, points);
        return;
    }
    println!(
        "put sweep: {n} node(s), fsync {:?}, {} conns, pipeline {}, key {} B, {:?} per point",
        a.fsync, a.conns, a.pipeline, a.key_size, a.duration
    );
    println!(
        "| clients | value | keys | writes/s | MB/s | p50 | p99 | p99.9 | max | errors | peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in points {
        let (o, w) = (&p.outcome, &p.outcome.total[0]);
        let ops = w.ok as f64 / o.secs;
        println!(
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
        );
    }
}

/// The table of a recovery run (or one JSON object).
pub fn recovery(a: &Args, n: u32, points: &[RecoveryPoint]) {
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
        print_points("recovery", a, n, fields, points);
        return;
    }
    println!(
        "recovery: {n} node(s), no snapshots, {} B values over {} keys, restart with fsync {:?}",
        a.value_size, a.keyspace, a.fsync
    );
    println!(
        "| log entries | data dir (node 1) | restart → answering | restart → /health OK | RSS after |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for p in points {
        println!(
            "| {} | {:.1} MiB | {} | {} | {:.1} MiB |",
            p.last,
            p.disk as f64 / (1u64 << 20) as f64,
            fmt_us(p.answering.as_micros() as u64),
            fmt_us(p.healthy.as_micros() as u64),
            mib(p.rss.iter().copied().max().unwrap_or(0))
        );
    }
}

/// One JSON object for a workload of many points on `--local n`: its name, `fields`, and the
/// points.
fn print_points(
    workload: &str,
    a: &Args,
    n: u32,
    mut fields: serde_json::Value,
    points: Vec<serde_json::Value>,
) {
    fields["workload"] = workload.into();
    fields["local"] = n.into();
    fields["fsync"] = a.fsync.as_flag().into();
    fields["points"] = points.into();
    println!("{fields}");
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
    use super::*;

    #[test]
    fn latencies_format() {
        for (us, text) in [(87, "87us"), (1_234, "1.23ms"), (2_500_000, "2.500s")] {
            assert_eq!(fmt_us(us), text);
        }
    }
}
