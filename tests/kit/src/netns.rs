//! [`Netns`]: each node of a [`Cluster`] in a Linux network namespace of its own, joined by a
//! bridge, so a test can cut the network between real `shoald` processes; [`ClockShim`]: a
//! node's clocks at another rate. (A full disk is [`crate::Cluster::on_tmpfs`].)
//!
//! Every node gets an address `10.A.B.ID` on a bridge whose own address, `10.A.B.254`, lives in
//! the test's namespace: the test's clients reach every node whatever the cuts, which apply
//! between nodes only. A cut from node `a` to node `b` is a blackhole route to `b` in `a`'s
//! namespace: what `a` sends to `b` is dropped (a local send fails), what `b` sends to `a`
//! still arrives. A connection needs both ways, so a one-way cut also stops every connection
//! between the two; the packets that still cross are what makes it one-way.
//!
//! Namespaces need root (`ip netns`): [`is_root`] tells a test whether it can run.
//! Everything made is removed when the value is dropped (also when the test panics); names
//! carry the test's process id, so tests in parallel do not meet.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cluster::Cluster;

/// The port every node's raft, client and admin listener uses on its own address.
const RAFT_PORT: u16 = 7000;
const CLIENT_PORT: u16 = 7001;
const ADMIN_PORT: u16 = 7002;

/// Whether the test runs as root (network namespaces, routes and mounts need it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Run `ip ARGS`; panics with its error output when it fails.
fn ip(args: &[&str]) {
    run("ip", args);
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program} {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Network namespaces for the nodes of one cluster; see the [module docs](self).
pub struct Netns {
    tag: u32,
    net: [u8; 2],
    ids: Vec<u64>,
    cuts: BTreeSet<(u64, u64)>,
}

impl Netns {
    /// A namespace per node id, each with a veth pair on one new bridge.
    ///
    /// # Panics
    /// When not root, or when `ip` refuses (its error is in the message).
    pub fn create(ids: &[u64]) -> Netns {
        assert!(is_root(), "network namespaces need root");
        let tag = std::process::id();
        let net = [100 + (tag % 100) as u8, ((tag / 100) % 250) as u8];
        let n = Netns {
            tag,
            net,
            ids: ids.to_vec(),
            cuts: BTreeSet::new(),
        };
        let bridge = n.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["link", "set", &bridge, "up"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", n.addr_of(254)),
            "dev",
            &bridge,
        ]);
        for &id in ids {
            assert!((1..254).contains(&id), "node ids 1 to 253 have an address");
            let ns = n.name(id);
            let host_end = format!("shv{}n{id}", tag % 100_000);
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip(&["link", "set", &host_end, "master", &bridge, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", n.ip(id)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        n
    }

    fn bridge(&self) -> String {
        format!("shb{}", self.tag % 100_000)
    }

    fn addr_of(&self, host: u64) -> String {
        format!("10.{}.{}.{host}", self.net[0], self.net[1])
    }

    /// The namespace of node `id`.
    pub fn name(&self, id: u64) -> String {
        format!("shoal-{}-n{id}", self.tag)
    }

    /// Node `id`'s address.
    pub fn ip(&self, id: u64) -> String {
        self.addr_of(id)
    }

    /// Give every node of `cluster` this namespace's addresses and run it in its namespace
    /// (before the nodes start).
    pub fn place(&self, cluster: &mut Cluster) {
        for id in cluster.ids() {
            assert!(self.ids.contains(&id), "node {id} has no namespace");
            let ip = self.ip(id);
            let node = cluster.node_mut(id);
            node.raft = format!("{ip}:{RAFT_PORT}");
            node.client = format!("{ip}:{CLIENT_PORT}");
            node.admin = format!("{ip}:{ADMIN_PORT}");
            node.run_in = ["ip", "netns", "exec", &self.name(id)]
                .iter()
                .map(|s| s.to_string())
                .collect();
        }
    }

    /// From now on nothing `from` sends to `to` arrives.
    pub fn cut(&mut self, from: u64, to: u64) {
        if from != to && self.cuts.insert((from, to)) {
            let ns = self.name(from);
            ip(&[
                "-n",
                &ns,
                "route",
                "add",
                "blackhole",
                &format!("{}/32", self.ip(to)),
            ]);
        }
    }

    /// Cut every node of `a` from every node of `b`, both ways.
    pub fn split(&mut self, a: &[u64], b: &[u64]) {
        for &x in a {
            for &y in b {
                self.cut(x, y);
                self.cut(y, x);
            }
        }
    }

    /// Cut node `id` from every other node, both ways.
    pub fn isolate(&mut self, id: u64) {
        let others: Vec<u64> = self.ids.iter().copied().filter(|&o| o != id).collect();
        self.split(&[id], &others);
    }

    /// Remove every cut.
    pub fn heal(&mut self) {
        for (from, to) in std::mem::take(&mut self.cuts) {
            let ns = self.name(from);
            ip(&[
                "-n",
                &ns,
                "route",
                "del",
                "blackhole",
                &format!("{}/32", self.ip(to)),
            ]);
        }
    }

    /// The cuts in place, `(from, to)`.
    pub fn cuts(&self) -> Vec<(u64, u64)> {
        self.cuts.iter().copied().collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Best effort: a failure here must not hide the test's own.
        for &id in &self.ids {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name(id)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .status();
    }
}

/// `tests/netfault/clockshim.c`, built as a preload library: a process started with
/// [`ClockShim::env`] reads its clocks at the rate its rate file says, which a test changes
/// while it runs ([`ClockShim::set_rate`]); one started with [`ClockShim::coarse_env`] reads a
/// coarse clock that starts where every other such process's starts.
pub struct ClockShim {
    lib: PathBuf,
}

impl ClockShim {
    /// Build the shim into `dir` with the system C compiler.
    ///
    /// # Panics
    /// When `cc` is missing or fails.
    pub fn build(dir: &Path) -> ClockShim {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../netfault/clockshim.c");
        let lib = dir.join("clockshim.so");
        run(
            "cc",
            &[
                "-shared",
                "-fPIC",
                "-O2",
                "-o",
                lib.to_str().expect("a UTF-8 path"),
                src.to_str().expect("a UTF-8 path"),
                "-ldl",
                "-lpthread",
            ],
        );
        ClockShim { lib }
    }

    /// The environment that runs a process's clocks at the rate in `rate_file` (1.0 until the
    /// file says otherwise).
    pub fn env(&self, rate_file: &Path) -> Vec<(String, String)> {
        Self::set_rate(rate_file, 1.0);
        vec![
            ("LD_PRELOAD".into(), self.lib.display().to_string()),
            (
                "SHOAL_CLOCK_RATE_FILE".into(),
                rate_file.display().to_string(),
            ),
        ]
    }

    /// The environment that gives a process a coarse clock started at a fixed time: every
    /// clock shows `start_ns` at its first read and then moves in steps of `tick_ns`, so
    /// processes started within one step of each other read the very same times.
    pub fn coarse_env(&self, start_ns: u64, tick_ns: u64) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), self.lib.display().to_string()),
            ("SHOAL_CLOCK_START_NS".into(), start_ns.to_string()),
            ("SHOAL_CLOCK_TICK_NS".into(), tick_ns.to_string()),
        ]
    }

    /// From now on (within the shim's 20 ms re-read) the process's clocks run at `rate` times
    /// real time.
    pub fn set_rate(rate_file: &Path, rate: f64) {
        assert!(rate > 0.0, "a clock must move forward");
        std::fs::write(rate_file, format!("{rate}\n"))
            .unwrap_or_else(|e| panic!("write {}: {e}", rate_file.display()));
    }
}
