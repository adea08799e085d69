//! The `sweep` workload: a `put` run at every value size × client count, each on a fresh
//! `--local` cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cli::{Args, Workload};
use crate::cluster::LocalCluster;
use crate::report::{self, fmt_us};
use crate::run::{run, Outcome};

/// One measured point of a sweep.
pub struct SweepPoint {
    /// Concurrent clients.
    pub clients: u32,
    /// Bytes per value.
    pub value_size: usize,
    /// Distinct keys written.
    pub keyspace: u64,
    /// What the run measured.
    pub outcome: Outcome,
}

/// The keyspace of a sweep point: `--keyspace`, or fewer keys so that the live data
/// (key + value per key) stays within `--sweep-data-mb`.
pub fn sweep_keyspace(a: &Args, value_size: usize) -> u64 {
    let per_key = (a.key_size + value_size).max(1) as u64;
    a.keyspace
        .min(((a.sweep_data_mb as u64) << 20) / per_key)
        .max(1)
}

/// Run every point (until interrupted) and print one table.
pub fn sweep(a: &Args, stop: &Arc<AtomicBool>) -> Result<(), String> {
    let n = a.local.expect("checked: sweep needs --local");
    let mut points = Vec::new();
    'points: for &value_size in &a.sweep_values {
        for &clients in &a.sweep_clients {
            if stop.load(Ordering::Relaxed) {
                break 'points;
            }
            let mut p = a.clone();
            p.workload = Workload::Put;
            p.clients = clients;
            p.value_size = value_size;
            p.keyspace = sweep_keyspace(a, value_size);
            let cluster = LocalCluster::start(n, a.fsync, &a.shoald_args)?;
            let result = run(&p, Some(&cluster), stop);
            if result.is_err() {
                eprintln!("shoald logs (last lines):\n{}", cluster.log_tail());
            }
            drop(cluster);
            let outcome = result?;
            let w = &outcome.total[0];
            eprintln!(
                "sweep: {clients} clients, {value_size} B values: {:.0} writes/s, p99 {}",
                w.ok as f64 / outcome.secs,
                fmt_us(w.pct(0.99))
            );
            points.push(SweepPoint {
                clients,
                value_size,
                keyspace: p.keyspace,
                outcome,
            });
        }
    }
    report::print(|out| report::sweep(a, n, &points, out))?;
    crate::plot::when_asked(a.plot.as_deref(), "sweep", |path| {
        crate::plot::sweep(path, n, &points)
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn sweep_points_keep_the_live_data_bounded() {
        let s = Args::try_parse_from(["shoal-bench", "sweep", "--local", "3"]).unwrap();
        // 32 MiB of live data: all 10000 keys of 256 B, 511 keys of 64 KiB.
        assert_eq!(sweep_keyspace(&s, 256), 10_000);
        assert_eq!(sweep_keyspace(&s, 65536), (32 << 20) / (65536 + 16));
    }
}
