//! `shoal-bench`: a load generator for `shoald`, in the spirit of etcd's `benchmark` tool.
//!
//! It drives a node through `shoal-client`'s pipelined [`Connection`]s: one thread per
//! connection, each connection carrying `clients / conns` logical clients with `--pipeline`
//! requests in flight each (closed loop: a slot sends its next request when its answer arrives).
//! Workloads: `put`, `get`, `mixed`, and `watch` (fan-out: many watches of one directory,
//! writers stamping their send time into the values, delivery latency measured per event);
//! `sweep` and `recovery` run many of them on fresh clusters; `hostile` attacks one node as
//! issue 14's hostile clients did while a normal client measures it. Latencies go into
//! `hdrhistogram`s. With `--local N` it starts N `shoald` processes on 127.0.0.1 (temporary data
//! dirs), waits for a leader, runs, and always kills them (also on error, Ctrl-C or SIGTERM; on
//! Linux the children also get SIGKILL if the bench dies). See docs/BENCHMARKS.md.
//!
//! - [`cli`]: flags and their checks;
//! - [`cluster`]: the `--local` cluster and what the bench reads about its processes;
//! - [`calls`]: requests outside the measurement (leader discovery, prefill);
//! - [`load`]: the measured connections (closed-loop clients, watchers) and [`stats`];
//! - [`run`]: one measured run; [`sweep`], [`recovery`] and [`groups`]: runs over fresh
//!   clusters;
//! - [`hostile`]: the attack on one node and what it cost;
//! - [`report`]: text and JSON output;
//! - [`plot`]: `--plot`, the sweep and groups curves as SVG.
//!
//! [`Connection`]: shoal_client::connection::Connection

/// Items of the bench proper, which runs on Unix-like systems only.
macro_rules! unix_only {
    ($($item:item)*) => { $(#[cfg(unix)] $item)* };
}

unix_only! {
    mod calls;
    mod cli;
    mod cluster;
    mod groups;
    mod hostile;
    mod load;
    mod plot;
    mod recovery;
    mod report;
    mod run;
    mod stats;
    mod sweep;
    #[path = "../shared/tls_flags.rs"]
    mod tls_flags;
}

#[cfg(unix)]
fn main() {
    std::process::exit(bench());
}

#[cfg(not(unix))]
fn main() {
    eprintln!("shoal-bench runs on Unix-like systems only");
    std::process::exit(2);
}

/// Run the benchmark; returns the exit code.
#[cfg(unix)]
fn bench() -> i32 {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use clap::Parser;
    use cli::{Args, Workload};

    let args = Args::parse();
    if let Err(e) = args.check() {
        eprintln!("shoal-bench: {e}");
        return 2;
    }
    if args.tls.any() {
        match args.tls.config() {
            Ok(t) => {
                let _ = calls::TLS.set(t);
            }
            Err(e) => {
                eprintln!("shoal-bench: {e}");
                return 2;
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("shoal-bench: signal handler: {e}");
            return 2;
        }
    }
    let result = match args.workload {
        Workload::Sweep => sweep::sweep(&args, &stop),
        Workload::Recovery => recovery::recovery(&args, &stop),
        Workload::Hostile => hostile::hostile(&args, &stop),
        Workload::Groups => groups::groups(&args, &stop),
        _ => run::single(&args, &stop),
    };
    match result {
        Ok(()) if stop.load(Ordering::Relaxed) => {
            eprintln!("shoal-bench: interrupted (partial results above)");
            130
        }
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shoal-bench: {e}");
            1
        }
    }
}
