//! The `sim` command line: run a range of seeds (optionally on several threads), replay one seed
//! verbosely, select a planted bug ("mutant"), and print for every failure the one command that
//! replays it. The per-seed work is a [`SeedRunner`] supplied by whoever wires real nodes in;
//! this module only schedules seeds, catches panics and reports.
//!
//! Output is deterministic: results are printed in seed order whatever the thread count.

use super::invariants;
use clap::Parser;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// Names of the planted bugs the simulator must catch (selected with `--mutant`).
pub const MUTANTS: &[&str] = &crate::sim::plant::NAMES;

/// Default run length: simulated global milliseconds per seed.
pub const DEFAULT_STEPS: u64 = 20_000;

/// Options every seed of one invocation shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOpts {
    /// Run length in simulated global milliseconds (one step = 1 ms).
    pub steps: u64,
    /// Print a trace of the run to stdout (meant for replaying one seed).
    pub verbose: bool,
    /// The planted bug to activate, if any (one of [`MUTANTS`]).
    pub mutant: Option<String>,
    /// The workload: `kv` (DtKV, the default) or `register`.
    pub workload: String,
    /// Raft groups every simulated node hosts (1 to [`MAX_GROUPS`]; 1 is the default).
    pub groups: usize,
}

/// The default workload.
pub const DEFAULT_WORKLOAD: &str = "kv";

/// The most groups a simulated node may host (`--groups`).
pub const MAX_GROUPS: usize = 8;

/// Checks a `--groups` value: 1 to [`MAX_GROUPS`].
pub fn check_groups(groups: usize) -> Result<(), String> {
    if (1..=MAX_GROUPS).contains(&groups) {
        Ok(())
    } else {
        Err(format!(
            "--groups must be between 1 and {MAX_GROUPS} (groups per simulated node), got {groups}"
        ))
    }
}

impl Default for RunOpts {
    fn default() -> Self {
        RunOpts {
            steps: DEFAULT_STEPS,
            verbose: false,
            mutant: None,
            workload: DEFAULT_WORKLOAD.to_string(),
            groups: 1,
        }
    }
}

/// What kind of check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureCategory {
    /// A Raft safety invariant.
    Invariant(invariants::InvariantKind),
    /// The client history is not linearizable.
    Linearizability,
    /// The cluster made no progress when it should have (e.g. during the final quiet phase).
    Liveness,
    /// Code under test panicked, or a node stopped on a fatal error.
    Panic,
    /// A node refused an honest peer's frame (the failure policy dropped it): only a bug
    /// makes an honest peer send one.
    RefusedFrame,
    /// The runner could not set the run up (a harness bug, not a Raft bug).
    Setup,
}

impl FailureCategory {
    /// The name used in failure lines.
    pub fn name(self) -> &'static str {
        match self {
            FailureCategory::Invariant(k) => k.name(),
            FailureCategory::Linearizability => "linearizability",
            FailureCategory::Liveness => "liveness",
            FailureCategory::Panic => "panic",
            FailureCategory::RefusedFrame => "refused-frame",
            FailureCategory::Setup => "setup",
        }
    }
}

/// Why one seed failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFailure {
    /// Which kind of check.
    pub category: FailureCategory,
    /// What exactly, in words.
    pub message: String,
}

impl SimFailure {
    /// A failure of `category` with `message`.
    pub fn new(category: FailureCategory, message: impl Into<String>) -> SimFailure {
        SimFailure {
            category,
            message: message.into(),
        }
    }
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.category.name(), self.message)
    }
}

impl From<invariants::Violation> for SimFailure {
    fn from(v: invariants::Violation) -> SimFailure {
        SimFailure {
            category: FailureCategory::Invariant(v.kind),
            message: v.message,
        }
    }
}

/// What a passing seed reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Steps actually run.
    pub steps: u64,
    /// Client operations in the checked history.
    pub ops: usize,
    /// The linearizability search ran out of budget on some key: the seed passed the other
    /// checks but its history was not fully verified.
    pub linearizability_unknown: bool,
    /// One line for humans (counts, faults injected).
    pub summary: String,
}

/// Runs one seed. Must be deterministic: the same seed and options give the same result.
pub trait SeedRunner: Send + Sync {
    /// Run `seed` to the end, or to the first failure.
    fn run(&self, seed: u64, opts: &RunOpts) -> Result<SeedReport, SimFailure>;
}

/// Command line of the `sim` binary.
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(
    name = "sim",
    about = "Shoal's deterministic cluster simulator: runs seeds, checks Raft invariants and linearizability, prints how to replay failures."
)]
pub struct Args {
    /// Seed range to run, `A..B` (B excluded) or `A..=B`. Default `0..100`.
    #[arg(long, value_name = "A..B", conflicts_with = "seed")]
    pub seeds: Option<String>,
    /// Run (replay) exactly this seed.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Print a trace of the run (use with --seed).
    #[arg(short, long)]
    pub verbose: bool,
    /// Print the names of the planted bugs and exit.
    #[arg(long)]
    pub list_mutants: bool,
    /// Run every node with this planted bug (see `--list-mutants`).
    #[arg(long, value_name = "NAME")]
    pub mutant: Option<String>,
    /// Run length in simulated milliseconds per seed.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_STEPS)]
    pub steps: u64,
    /// The state machine and client operations: `kv` (DtKV) or `register`.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_WORKLOAD)]
    pub workload: String,
    /// Raft groups every simulated node hosts: node faults hit all of them at once, and each
    /// group is checked on its own.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub groups: usize,
    /// Run seeds on this many threads (each seed stays single-threaded and deterministic).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
}

/// Parse `A..B` or `A..=B` into the seeds it names.
pub fn parse_seed_range(s: &str) -> Result<std::ops::Range<u64>, String> {
    let bad = || format!("--seeds wants A..B or A..=B with whole numbers, got `{s}`");
    let (a, b, inclusive) = match s.split_once("..=") {
        Some((a, b)) => (a, b, true),
        None => {
            let (a, b) = s.split_once("..").ok_or_else(bad)?;
            (a, b, false)
        }
    };
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    let end = if inclusive {
        b.checked_add(1).ok_or_else(bad)?
    } else {
        b
    };
    if end <= a {
        return Err(format!("--seeds `{s}` is empty"));
    }
    Ok(a..end)
}

/// The command that replays `seed` with `opts`.
pub fn replay_command(seed: u64, opts: &RunOpts) -> String {
    let mut cmd = format!("cargo run -p shoal-tests --release --bin sim -- --seed {seed}");
    if opts.steps != DEFAULT_STEPS {
        cmd.push_str(&format!(" --steps {}", opts.steps));
    }
    if let Some(m) = &opts.mutant {
        cmd.push_str(&format!(" --mutant {m}"));
    }
    if opts.workload != DEFAULT_WORKLOAD {
        cmd.push_str(&format!(" --workload {}", opts.workload));
    }
    if opts.groups != 1 {
        cmd.push_str(&format!(" --groups {}", opts.groups));
    }
    cmd
}

/// Run one seed, turning a panic into a failure so one bad seed cannot hide the others.
pub fn run_one(
    runner: &dyn SeedRunner,
    seed: u64,
    opts: &RunOpts,
) -> Result<SeedReport, SimFailure> {
    match catch_unwind(AssertUnwindSafe(|| runner.run(seed, opts))) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-text payload".to_string());
            Err(SimFailure::new(FailureCategory::Panic, msg))
        }
    }
}

/// Run `args` with `runner`, writing the report to `out`; returns the process exit code
/// (0: every seed passed; 1: some failed; 2: bad usage).
pub fn run(args: &Args, runner: &dyn SeedRunner, out: &mut dyn Write) -> i32 {
    match run_inner(args, runner, out) {
        Ok(code) => code,
        Err(msg) => {
            let _ = writeln!(out, "error: {msg}");
            2
        }
    }
}

fn run_inner(args: &Args, runner: &dyn SeedRunner, out: &mut dyn Write) -> Result<i32, String> {
    let io = |e: std::io::Error| format!("cannot write the report: {e}");
    if args.list_mutants {
        for m in MUTANTS {
            writeln!(out, "{m}").map_err(io)?;
        }
        return Ok(0);
    }
    if let Some(m) = &args.mutant {
        if !MUTANTS.contains(&m.as_str()) {
            return Err(format!(
                "unknown mutant `{m}`; known: {}",
                MUTANTS.join(", ")
            ));
        }
    }
    if args.threads == 0 {
        return Err("--threads must be at least 1".to_string());
    }
    check_groups(args.groups)?;
    let seeds: Vec<u64> = match (args.seed, &args.seeds) {
        (Some(s), _) => vec![s],
        (None, Some(r)) => parse_seed_range(r)?.collect(),
        (None, None) => (0..100).collect(),
    };
    let opts = RunOpts {
        steps: args.steps,
        verbose: args.verbose,
        mutant: args.mutant.clone(),
        workload: args.workload.clone(),
        groups: args.groups,
    };
    let single = args.seed.is_some();

    let (mut passed, mut failed, mut unknown) = (0u64, 0u64, 0u64);
    let mut report =
        |seed: u64, r: Result<SeedReport, SimFailure>, out: &mut dyn Write| -> Result<(), String> {
            match r {
                Ok(rep) => {
                    passed += 1;
                    if rep.linearizability_unknown {
                        unknown += 1;
                    }
                    if single || args.verbose {
                        writeln!(out, "ok seed {seed}: {}", rep.summary).map_err(io)?;
                    }
                }
                Err(f) => {
                    failed += 1;
                    writeln!(out, "FAIL seed {seed}: {f}").map_err(io)?;
                    writeln!(out, "  replay: {}", replay_command(seed, &opts)).map_err(io)?;
                }
            }
            out.flush().map_err(io)
        };

    let threads = args.threads.min(seeds.len()).max(1);
    if threads == 1 {
        for &seed in &seeds {
            report(seed, run_one(runner, seed, &opts), out)?;
        }
    } else {
        // Workers take the next seed index; the printer releases results in seed order.
        let next = AtomicUsize::new(0);
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|scope| -> Result<(), String> {
            for _ in 0..threads {
                let tx = tx.clone();
                let (next, seeds, opts) = (&next, &seeds, &opts);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { break };
                    if tx.send((i, run_one(runner, seed, opts))).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            let mut pending = BTreeMap::new();
            let mut next_to_print = 0;
            for (i, r) in rx {
                pending.insert(i, r);
                while let Some(r) = pending.remove(&next_to_print) {
                    report(seeds[next_to_print], r, out)?;
                    next_to_print += 1;
                }
            }
            Ok(())
        })?;
    }
    if unknown > 0 {
        writeln!(out, "note: {unknown} passing seeds had a history too hard to check fully (linearizability unknown)")
            .map_err(io)?;
    }
    writeln!(out, "{passed} passed, {failed} failed").map_err(io)?;
    Ok(if failed == 0 { 0 } else { 1 })
}

/// Entry point for a `sim` binary: parse the process arguments, run, and exit.
pub fn main_with(runner: &dyn SeedRunner) -> std::process::ExitCode {
    let args = Args::parse();
    let code = run(&args, runner, &mut std::io::stdout().lock());
    std::process::ExitCode::from(code as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::invariants::InvariantKind;

    /// Fails seeds divisible by 7, panics on seed 13, and is "unknown" on seed 5.
    struct Fake;
    impl SeedRunner for Fake {
        // `u64::is_multiple_of` is newer than the workspace's rust-version (1.80).
        #[allow(clippy::manual_is_multiple_of)]
        fn run(&self, seed: u64, _opts: &RunOpts) -> Result<SeedReport, SimFailure> {
            if seed == 13 {
                panic!("boom on 13");
            }
            if seed % 7 == 0 {
                return Err(SimFailure::new(
                    FailureCategory::Invariant(InvariantKind::ElectionSafety),
                    format!("two leaders in term {seed} (nodes 1 and 3)"),
                ));
            }
            Ok(SeedReport {
                steps: 1,
                ops: 0,
                linearizability_unknown: seed == 5,
                summary: "fine".into(),
            })
        }
    }

    fn run_args(argv: &[&str]) -> (i32, String) {
        let args = Args::try_parse_from(std::iter::once("sim").chain(argv.iter().copied()))
            .expect("valid args");
        let mut out = Vec::new();
        let code = run(&args, &Fake, &mut out);
        (code, String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn seed_ranges() {
        assert_eq!(parse_seed_range("3..6"), Ok(3..6));
        assert_eq!(parse_seed_range("3..=6"), Ok(3..7));
        assert!(parse_seed_range("6..3").is_err());
        assert!(parse_seed_range("x..3").is_err());
        assert!(parse_seed_range("7").is_err());
    }

    #[test]
    fn failures_print_reason_and_replay_and_summary() {
        let (code, out) = run_args(&["--seeds", "0..15"]);
        assert_eq!(code, 1);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "FAIL seed 0: election safety: two leaders in term 0 (nodes 1 and 3)"
        );
        assert_eq!(
            lines[1],
            "  replay: cargo run -p shoal-tests --release --bin sim -- --seed 0"
        );
        assert!(out.contains("FAIL seed 7: election safety"));
        assert!(out.contains("FAIL seed 13: panic: boom on 13"));
        assert!(out.contains("note: 1 passing seeds"));
        assert_eq!(*lines.last().expect("summary"), "11 passed, 4 failed");
    }

    #[test]
    fn threads_give_the_same_output() {
        let one = run_args(&["--seeds", "0..40"]);
        let four = run_args(&["--seeds", "0..40", "--threads", "4"]);
        assert_eq!(one, four);
    }

    #[test]
    fn all_passing_exits_zero_and_single_seed_is_verbose() {
        assert_eq!(
            run_args(&["--seeds", "1..=4"]),
            (0, "4 passed, 0 failed\n".to_string())
        );
        let (code, out) = run_args(&["--seed", "2"]);
        assert_eq!(
            (code, out.as_str()),
            (0, "ok seed 2: fine\n1 passed, 0 failed\n")
        );
    }

    #[test]
    fn mutants_are_listed_and_checked() {
        let (code, out) = run_args(&["--list-mutants"]);
        assert_eq!(code, 0);
        assert_eq!(out.lines().collect::<Vec<_>>(), MUTANTS);
        refused(&["--mutant", "no-such-bug"], "unknown mutant");
        fails_with_replay(&["--seed", "7", "--mutant", "skip-truncate"]);
    }

    #[test]
    fn groups_are_checked_and_replayed() {
        let groups = |n| ["--seeds", "1..3", "--groups", n];
        refused(&groups("0"), "--groups must be between 1 and 8");
        refused(&groups("9"), "got 9");
        fails_with_replay(&["--seed", "7", "--groups", "4"]);
    }

    /// `args` are refused (exit code 2) with a message containing `why`.
    fn refused(args: &[&str], why: &str) {
        let (code, out) = run_args(args);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains(why), "{out}");
    }

    /// A run with `args` fails (exit code 1) and prints the command that replays it, which
    /// repeats `args`.
    fn fails_with_replay(args: &[&str]) {
        let (code, out) = run_args(args);
        assert_eq!(code, 1, "{out}");
        let replay = format!(
            "replay: cargo run -p shoal-tests --release --bin sim -- {}",
            args.join(" ")
        );
        assert!(out.contains(&replay), "{out}");
    }

    #[test]
    fn replay_keeps_non_default_steps() {
        let opts = RunOpts {
            steps: 500,
            ..RunOpts::default()
        };
        assert_eq!(
            replay_command(9, &opts),
            "cargo run -p shoal-tests --release --bin sim -- --seed 9 --steps 500"
        );
    }
}
