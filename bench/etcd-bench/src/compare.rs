//! `etcd-bench report DIR`: the one table of `bench/compare-etcd.sh`.
//!
//! DIR holds one JSON object per run, named `<case>.shoal.json` (from `shoal-bench --json`) and
//! `<case>.etcd.json` (from `etcd-bench --json`). Both have `ops[0]` with `ops_per_sec` and
//! `latency_us`, and `servers[]` with `idle_rss_kib` and `vm_hwm_kib`.

use std::path::Path;

use serde_json::Value;

#[derive(Clone, Copy)]
enum Field {
    OpsPerSec,
    P50,
    P99,
    /// The largest idle RSS over the cluster's nodes.
    IdleRss,
    /// The largest `VmHWM` over the cluster's nodes.
    PeakRss,
}

impl Field {
    fn higher_is_better(self) -> bool {
        matches!(self, Field::OpsPerSec)
    }

    fn get(self, v: &Value) -> Option<f64> {
        let op = v.get("ops")?.get(0)?;
        let lat = |q: &str| op.get("latency_us")?.get(q)?.as_f64();
        let servers = |k: &str| {
            v.get("servers")?
                .as_array()?
                .iter()
                .filter_map(|s| s.get(k)?.as_f64())
                .reduce(f64::max)
        };
        match self {
            Field::OpsPerSec => op.get("ops_per_sec")?.as_f64(),
            Field::P50 => lat("p50"),
            Field::P99 => lat("p99"),
            Field::IdleRss => servers("idle_rss_kib"),
            Field::PeakRss => servers("vm_hwm_kib"),
        }
    }

    fn show(self, x: f64) -> String {
        match self {
            Field::OpsPerSec => group_thousands(x.round() as u64),
            Field::P50 | Field::P99 => {
                if x < 1000.0 {
                    format!("{x:.0} µs")
                } else {
                    format!("{:.2} ms", x / 1000.0)
                }
            }
            Field::IdleRss | Field::PeakRss => format!("{:.1} MiB", x / 1024.0),
        }
    }
}

fn group_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// One row: what is measured, the Shoal case and the etcd case it is compared with.
struct Row {
    what: &'static str,
    shoal: &'static str,
    etcd: &'static str,
    field: Field,
}

const ROWS: &[Row] = &[
    Row {
        what: "writes/s, 1 node, 1 client",
        shoal: "put-1n-1c",
        etcd: "put-1n-1c",
        field: Field::OpsPerSec,
    },
    Row {
        what: "writes/s, 1 node, 256 clients",
        shoal: "put-1n-256c",
        etcd: "put-1n-256c",
        field: Field::OpsPerSec,
    },
    Row {
        what: "writes/s, 3 nodes, 1 client",
        shoal: "put-3n-1c",
        etcd: "put-3n-1c",
        field: Field::OpsPerSec,
    },
    Row {
        what: "writes/s, 3 nodes, 256 clients",
        shoal: "put-3n-256c",
        etcd: "put-3n-256c",
        field: Field::OpsPerSec,
    },
    Row {
        what: "write p50, 3 nodes, 1 client",
        shoal: "put-3n-1c",
        etcd: "put-3n-1c",
        field: Field::P50,
    },
    Row {
        what: "write p99, 3 nodes, 1 client",
        shoal: "put-3n-1c",
        etcd: "put-3n-1c",
        field: Field::P99,
    },
    Row {
        what: "reads/s, 3 nodes, 256 clients: Shoal linearizable vs etcd linearizable (both ReadIndex)",
        shoal: "get-3n-256c-linearizable",
        etcd: "get-3n-256c-linearizable",
        field: Field::OpsPerSec,
    },
    Row {
        what: "reads/s, 3 nodes, 256 clients: Shoal lease vs etcd linearizable (each one's fastest linearizable read)",
        shoal: "get-3n-256c-lease",
        etcd: "get-3n-256c-linearizable",
        field: Field::OpsPerSec,
    },
    Row {
        what: "reads/s, 3 nodes, 256 clients: Shoal local vs etcd serializable (leader's local state, may be stale)",
        shoal: "get-3n-256c-local",
        etcd: "get-3n-256c-serializable",
        field: Field::OpsPerSec,
    },
    Row {
        what: "reads/s, 3 nodes, 256 clients: Shoal linearizable vs etcd linearizable after a burst of writes (fast preload)",
        shoal: "get-3n-256c-linearizable",
        etcd: "get-3n-256c-linearizable-burst",
        field: Field::OpsPerSec,
    },
    Row {
        what: "RSS idle, 3 nodes (largest node)",
        shoal: "put-3n-1c",
        etcd: "put-3n-1c",
        field: Field::IdleRss,
    },
    Row {
        what: "peak RSS (VmHWM), 1 node, 256-client writes",
        shoal: "put-1n-256c",
        etcd: "put-1n-256c",
        field: Field::PeakRss,
    },
    Row {
        what: "peak RSS (VmHWM), 3 nodes, 256-client writes (largest node)",
        shoal: "put-3n-256c",
        etcd: "put-3n-256c",
        field: Field::PeakRss,
    },
];

fn load(dir: &Path, case: &str, system: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(format!("{case}.{system}.json"))).ok()?;
    // The last line that parses: a run's stdout is one JSON object.
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
}

/// The names of the files in `dir` that end with `suffix`, sorted.
fn names_ending(dir: &Path, suffix: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|d| d.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    Ok(names)
}

/// Prints the Markdown table of ratios and, below it, every run that reported errors or misses.
pub fn print_table(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    println!("| measure | Shoal | etcd | Shoal / etcd | better |");
    println!("|---|---:|---:|---:|---|");
    for r in ROWS {
        let s = load(dir, r.shoal, "shoal").and_then(|v| r.field.get(&v));
        let e = load(dir, r.etcd, "etcd").and_then(|v| r.field.get(&v));
        let show = |x: Option<f64>| x.map_or("n/a".to_string(), |x| r.field.show(x));
        let ratio = match (s, e) {
            (Some(s), Some(e)) if e > 0.0 => format!("{:.2}×", s / e),
            _ => "n/a".into(),
        };
        let better = if r.field.higher_is_better() {
            "higher"
        } else {
            "lower"
        };
        println!(
            "| {} | {} | {} | {ratio} | {better} |",
            r.what,
            show(s),
            show(e)
        );
    }
    // Runs whose numbers need a second look.
    let names = names_ending(dir, ".json")?;
    let mut notes = Vec::new();
    for n in names_ending(dir, ".discarded")? {
        notes.push(format!(
            "{n}: discarded, a member of the cluster died during the run (see its logs)"
        ));
    }
    for n in &names {
        let Some(v) = std::fs::read_to_string(dir.join(n)).ok().and_then(|t| {
            t.lines()
                .rev()
                .find_map(|l| serde_json::from_str::<Value>(l).ok())
        }) else {
            notes.push(format!("{n}: no JSON result (the run failed; see its log)"));
            continue;
        };
        let Some(op) = v.get("ops").and_then(|o| o.get(0)) else {
            notes.push(format!("{n}: no operations recorded"));
            continue;
        };
        let errors = op.get("errors").cloned().unwrap_or(Value::Null);
        let has_errors = errors.as_object().is_some_and(|m| !m.is_empty());
        let misses = op.get("misses").and_then(Value::as_u64).unwrap_or(0);
        if has_errors || misses > 0 {
            notes.push(format!("{n}: errors {errors}, misses {misses}"));
        }
    }
    if notes.is_empty() {
        println!("\nNo run reported errors or read misses.");
    } else {
        println!();
        for n in notes {
            println!("- {n}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_from_both_shapes() {
        let v: Value = serde_json::from_str(
            r#"{"ops":[{"op":"put","ops_per_sec":1234.4,"latency_us":{"p50":449,"p99":1520}}],
                "servers":[{"idle_rss_kib":1024,"vm_hwm_kib":2048},{"idle_rss_kib":3072,"vm_hwm_kib":1024}]}"#,
        )
        .unwrap();
        assert_eq!(Field::OpsPerSec.get(&v), Some(1234.4));
        assert_eq!(Field::P99.get(&v), Some(1520.0));
        assert_eq!(Field::IdleRss.get(&v), Some(3072.0));
        assert_eq!(Field::PeakRss.get(&v), Some(2048.0));
        assert_eq!(Field::OpsPerSec.show(268085.0), "268 085");
        assert_eq!(Field::P50.show(449.0), "449 µs");
        assert_eq!(Field::P99.show(1520.0), "1.52 ms");
        // shoal-bench prints "servers": "n/a" without --local.
        let remote: Value = serde_json::from_str(r#"{"servers":"n/a","ops":[]}"#).unwrap();
        assert_eq!(Field::PeakRss.get(&remote), None);
    }
}
