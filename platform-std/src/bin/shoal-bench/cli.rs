//! The command line: workloads, flags and their checks.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use shoal_client::ReadMode;
/// What the benchmark sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Writes (`Put`) of random keys in the keyspace.
    Put,
    /// Reads (`Get`) of random keys of a prefilled keyspace.
    Get,
    /// Reads with probability `--read-ratio`, else writes (keyspace prefilled).
    Mixed,
    /// `--watchers` watches on directory `w` spread over all endpoints, while `--clients`
    /// writers put keys `w.<key>` on the leader; measures event delivery latency.
    Watch,
    /// `put` at every `--sweep-clients` × `--sweep-values` point, each on a fresh `--local`
    /// cluster; prints one table (the keyspace shrinks so the live data stays within
    /// `--sweep-data-mb`).
    Sweep,
    /// For each `--recovery-entries` N: write N entries into a fresh `--local` cluster that
    /// never snapshots, kill it, restart it on the same data dirs, and time the restart
    /// until every node answers and until every node's `/health` is OK.
    Recovery,
    /// Issue 14's hostile clients all at once against one `--local 1` node (oversized and
    /// unfinished frames, unread pipelined Gets, huge BatchGets, unread watches, idle
    /// connections, raft-port strangers) while a normal `mixed` client measures its latency
    /// alone and under the attack; fails when the node exits or passes `--rss-limit-mb`.
    Hostile,
    /// Create `--groups` N groups on a fresh `--local` cluster, time until each has a leader,
    /// measure what the idle groups cost (RSS, disk, CPU over `--idle`), then `put` over
    /// each `--groups-active` count of them in turn.
    Groups,
}

/// Read consistency of `get` and `mixed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// ReadIndex through the leader.
    Linearizable,
    /// Leader lease.
    Lease,
    /// The node's applied state (possibly stale).
    Local,
}

impl Consistency {
    /// The protocol's read mode for this consistency.
    pub fn read_mode(self) -> ReadMode {
        match self {
            Consistency::Linearizable => ReadMode::Linearizable,
            Consistency::Lease => ReadMode::Lease,
            Consistency::Local => ReadMode::Local,
        }
    }
}

/// `--fsync` of the local `shoald` processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Fsync {
    /// fdatasync before acknowledging (group commit).
    Always,
    /// Background fdatasync within 10 ms.
    Async,
    /// Never (tests only).
    Never,
}

impl Fsync {
    /// The value of `shoald --fsync`.
    pub fn as_flag(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Async => "async",
            Fsync::Never => "never",
        }
    }
}

/// Command-line flags.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "shoal-bench",
    version,
    about = "Load generator for shoald: put, get and mixed workloads over pipelined connections"
)]
pub struct Args {
    /// Workload.
    #[arg(value_enum)]
    pub workload: Workload,
    /// Client addresses (host:port, comma-separated). Ignored with --local.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:7002")]
    pub endpoints: Vec<String>,
    /// Start N shoald processes on 127.0.0.1 with temporary data dirs, run, stop them.
    #[arg(long, value_name = "N")]
    pub local: Option<u32>,
    /// `--fsync` of the --local processes.
    #[arg(long, value_enum, default_value = "always")]
    pub fsync: Fsync,
    /// Total concurrent logical clients (each its own write session).
    #[arg(long, default_value_t = 1)]
    pub clients: u32,
    /// TCP connections the clients are spread over (capped at --clients).
    #[arg(long, default_value_t = 4)]
    pub conns: u32,
    /// Requests in flight per client.
    #[arg(long, default_value_t = 1)]
    pub pipeline: u32,
    /// Key size in bytes.
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keyspace: u64,
    /// Read consistency of get and mixed.
    #[arg(long, value_enum, default_value = "linearizable")]
    pub consistency: Consistency,
    /// Watches opened by the `watch` workload (spread over --conns connections per node).
    #[arg(long, default_value_t = 100)]
    pub watchers: u32,
    /// Fraction of reads in `mixed` (0.0..=1.0).
    #[arg(long, default_value_t = 0.5)]
    pub read_ratio: f64,
    /// Measured duration (e.g. 10s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Load before measuring starts (not recorded).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub warmup: Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: crate::tls_flags::ClientTlsFlags,
    /// One more argument for every --local shoald; repeat for several
    /// (`--shoald-arg=--kv-event-mb=4 --shoald-arg=--snapshot-entries=0`); `{id}` in it is the
    /// node's id (`--shoald-arg=--cert-file=certs/node-{id}.pem`).
    #[arg(long = "shoald-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub shoald_args: Vec<String>,
    /// `sweep`: client counts.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256,1024")]
    pub sweep_clients: Vec<u32>,
    /// `sweep`: value sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "16,256,4096,65536")]
    pub sweep_values: Vec<usize>,
    /// `sweep`: most MiB of live keys and values per point (keyspace = min(--keyspace,
    /// this / (key + value size))).
    #[arg(long, default_value_t = 32)]
    pub sweep_data_mb: usize,
    /// `hostile`: the node's peak RSS (MiB) above which the run fails.
    #[arg(long, default_value_t = 256)]
    pub rss_limit_mb: u64,
    /// `sweep`, `groups`: also draw the curves (writes/s and p99 against clients or active
    /// groups) into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
    /// `hostile`: the nice value (0-19) of the attack's threads. The attack shares this
    /// machine's cores with the node and the measured client, where a real attacker runs on
    /// other machines; a lower priority keeps the generator from taking the CPU the node and
    /// the client need (0 runs it as the node's equal).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub attacker_nice: i32,
    /// Spread the load's clients over groups 1..=N (client k writes to group 1 + k mod N),
    /// defined by the bench through group 0's leader with group 0's voters; each connection
    /// goes to the leader of its groups. 0: group 0 only. `groups`: how many groups to create.
    #[arg(long, default_value_t = 0)]
    pub groups: u32,
    /// `groups`: active group counts to `put` over, in turn (each a `--duration` run).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    pub groups_active: Vec<u32>,
    /// `groups`: how many times to run the whole `--groups-active` sequence, one after another
    /// (1, 4, 16, 64, 1, 4, ...). Each point then reports its medians, and its writes/s
    /// against the first point's as the median of the repetitions' ratios: on a shared,
    /// noisy machine a ratio taken minutes apart measures the machine, one taken within the
    /// same repetition measures Shoal.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub groups_repeat: u32,
    /// `groups`: how long the idle groups' CPU use is measured.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub idle: Duration,
    /// `recovery`: log lengths to measure, in entries.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub recovery_entries: Vec<u64>,
}

impl Args {
    /// Refuse flag combinations that cannot run, saying which flag is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.clients == 0 || self.conns == 0 || self.pipeline == 0 {
            return Err("--clients, --conns and --pipeline must be at least 1".into());
        }
        if self.keyspace == 0 {
            return Err("--keyspace must be at least 1".into());
        }
        let digits = (self.keyspace - 1).to_string().len();
        if self.key_size < digits + 1 {
            return Err(format!(
                "--key-size {} is too small for --keyspace {} (needs {})",
                self.key_size,
                self.keyspace,
                digits + 1
            ));
        }
        if self.workload == Workload::Watch && (self.value_size < 8 || self.watchers == 0) {
            return Err("watch needs --value-size >= 8 (a timestamp) and --watchers >= 1".into());
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return Err("--read-ratio must be within 0.0..=1.0".into());
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(3600) {
            return Err("--duration must be within (0, 1h]".into());
        }
        if matches!(self.local, Some(0) | Some(8..)) {
            return Err("--local takes 1..=7 nodes".into());
        }
        if matches!(
            self.workload,
            Workload::Sweep | Workload::Recovery | Workload::Groups
        ) && self.local.is_none()
        {
            return Err(
                "sweep, recovery and groups start their own clusters: give --local N".into(),
            );
        }
        if self.workload == Workload::Groups
            && (self.groups == 0
                || self.groups_active.contains(&0)
                || self.groups_active.iter().any(|&k| k > self.groups))
        {
            return Err(format!(
                "groups needs --groups N >= 1 and --groups-active counts within 1..={}",
                self.groups
            ));
        }
        if self.plot.is_some() && !matches!(self.workload, Workload::Sweep | Workload::Groups) {
            return Err("--plot draws the sweep and groups workloads' curves only".into());
        }
        if self.workload == Workload::Hostile && self.local != Some(1) {
            return Err("hostile attacks one node it starts itself: give --local 1".into());
        }
        if self.workload == Workload::Sweep
            && (self.sweep_clients.contains(&0)
                || self.sweep_clients.is_empty()
                || self.sweep_values.is_empty()
                || self.sweep_data_mb == 0)
        {
            return Err(
                "--sweep-clients, --sweep-values and --sweep-data-mb must be non-zero".into(),
            );
        }
        if self.workload == Workload::Recovery
            && (self.recovery_entries.is_empty() || self.recovery_entries.contains(&0))
        {
            return Err("--recovery-entries must list log lengths of at least 1".into());
        }
        Ok(())
    }
}

/// The key of index `i`: `k` followed by `i` zero-padded to `size - 1` digits.
pub fn key_of(i: u64, size: usize) -> Vec<u8> {
    format!("k{:0width$}", i, width = size - 1).into_bytes()
}

/// How many of the key indices below `keyspace` fall in shard `shard` of `shards` (those with
/// `i % shards == shard`); at least 1, so every shard has a key to write.
pub fn shard_key_count(keyspace: u64, shard: u64, shards: u64) -> u64 {
    (keyspace.saturating_sub(shard)).div_ceil(shards).max(1)
}

/// The key indices of shard `shard` of `shards` below `keyspace`.
pub fn shard_keys(keyspace: u64, shard: u64, shards: u64) -> impl Iterator<Item = u64> {
    (0..shard_key_count(keyspace, shard, shards)).map(move |j| shard + j * shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_keyspace_without_overlap() {
        for (keyspace, shards) in [(10_000, 64), (10, 3), (2, 4), (1, 1)] {
            let mut seen = Vec::new();
            for shard in 0..shards {
                let keys: Vec<u64> = shard_keys(keyspace, shard, shards).collect();
                assert_eq!(keys.len() as u64, shard_key_count(keyspace, shard, shards));
                assert!(keys.iter().all(|k| k % shards == shard), "{keys:?}");
                seen.extend(keys.into_iter().filter(|&k| k < keyspace));
            }
            seen.sort_unstable();
            assert_eq!(seen, (0..keyspace).collect::<Vec<_>>(), "{keyspace}/{shards}");
        }
        // A shard past the keyspace still has one key to write.
        assert_eq!(shard_keys(2, 3, 4).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn flags_parse_and_check() {
        let a = Args::try_parse_from([
            "shoal-bench",
            "mixed",
            "--local",
            "3",
            "--clients",
            "256",
            "--read-ratio",
            "0.9",
            "--duration",
            "2s",
            "--fsync",
            "async",
            "--consistency",
            "lease",
        ])
        .unwrap();
        assert_eq!(a.workload, Workload::Mixed);
        assert_eq!(a.local, Some(3));
        assert_eq!(a.fsync, Fsync::Async);
        assert_eq!(a.consistency, Consistency::Lease);
        assert_eq!(a.duration, Duration::from_secs(2));
        assert!(a.check().is_ok());
        let small = Args::try_parse_from(["shoal-bench", "put", "--key-size", "3"]).unwrap();
        assert!(small.check().is_err(), "10000 keys need 5-byte keys");
        assert_eq!(key_of(42, 16), b"k000000000000042".to_vec());
        let w = Args::try_parse_from(["shoal-bench", "watch", "--value-size", "4"]).unwrap();
        assert!(w.check().is_err(), "watch values carry an 8-byte timestamp");
    }

    #[test]
    fn shoald_args_sweep_and_recovery_flags() {
        let a = Args::try_parse_from([
            "shoal-bench",
            "put",
            "--local",
            "1",
            "--shoald-arg=--kv-event-mb=4",
            "--shoald-arg",
            "--snapshot-entries",
            "--shoald-arg",
            "0",
        ])
        .unwrap();
        assert_eq!(
            a.shoald_args,
            ["--kv-event-mb=4", "--snapshot-entries", "0"].map(String::from)
        );
        let s = Args::try_parse_from(["shoal-bench", "sweep", "--local", "3"]).unwrap();
        assert!(s.check().is_ok());
        assert_eq!(s.sweep_clients, [1, 16, 256, 1024]);
        assert_eq!(s.sweep_values, [16, 256, 4096, 65536]);
        let remote = Args::try_parse_from(["shoal-bench", "sweep"]).unwrap();
        assert!(remote.check().unwrap_err().contains("--local"));
        let h = Args::try_parse_from(["shoal-bench", "hostile", "--local", "3"]).unwrap();
        assert!(h.check().unwrap_err().contains("--local 1"));
        let h = Args::try_parse_from(["shoal-bench", "hostile", "--local", "1"]).unwrap();
        assert!(h.check().is_ok());
        assert_eq!(h.rss_limit_mb, 256);
        assert_eq!(h.attacker_nice, 10);
        let p = Args::try_parse_from(["shoal-bench", "put", "--plot", "x.svg"]).unwrap();
        assert!(p.check().unwrap_err().contains("--plot"));
        let p = ["shoal-bench", "sweep", "--local", "1", "--plot", "x.svg"];
        assert!(Args::try_parse_from(p).unwrap().check().is_ok());
        let loud = [
            "shoal-bench",
            "hostile",
            "--local",
            "1",
            "--attacker-nice",
            "20",
        ];
        assert!(
            Args::try_parse_from(loud).is_err(),
            "nice values stop at 19"
        );
        let r = Args::try_parse_from([
            "shoal-bench",
            "recovery",
            "--local",
            "1",
            "--recovery-entries",
            "10,0",
        ])
        .unwrap();
        assert!(r.check().unwrap_err().contains("--recovery-entries"));
    }

    #[test]
    fn groups_flags_and_their_checks() {
        let parse = |argv: &[&str]| {
            let mut all = vec!["shoal-bench"];
            all.extend_from_slice(argv);
            Args::try_parse_from(all).unwrap()
        };
        let put = parse(&["put"]);
        assert_eq!(put.groups, 0, "group 0 only unless asked");
        let g = parse(&["groups", "--local", "3", "--groups", "1000"]);
        assert!(g.check().is_ok());
        assert_eq!(g.groups_active, [1, 4, 16, 64]);
        assert_eq!(g.idle, Duration::from_secs(10));
        let few = parse(&["groups", "--local", "1", "--groups", "8"]);
        assert!(few.check().unwrap_err().contains("--groups-active"));
        let none = parse(&["groups", "--local", "1"]);
        assert!(none.check().is_err(), "groups needs --groups");
        let remote = parse(&["groups", "--groups", "4", "--groups-active", "1"]);
        assert!(remote.check().unwrap_err().contains("--local"));
        assert_eq!(g.groups_repeat, 1, "the sequence once unless asked");
        let repeated = parse(&["groups", "--local", "1", "--groups", "64", "--groups-repeat", "3"]);
        assert_eq!(repeated.groups_repeat, 3);
        let zero = Args::try_parse_from(["shoal-bench", "groups", "--groups-repeat", "0"]);
        assert!(zero.unwrap_err().to_string().contains("--groups-repeat"));
    }
}
