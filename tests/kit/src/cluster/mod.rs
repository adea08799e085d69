//! [`Cluster`]: `shoald` nodes on 127.0.0.1 for one test.
//!
//! A [`ClusterBuilder`] says which node ids exist (the initial voters, and spares that join
//! later) and the flags every node gets; each node gets three free ports and a data dir, and
//! every run of a node its own log file, all under one temporary dir. The cluster starts,
//! stops (SIGTERM), kills (SIGKILL), pauses (SIGSTOP) and resumes nodes by id, waits for a
//! leader or a role, and talks to the nodes that are up through [`crate::client`] and
//! `shoalctl`. Dropping it kills every node first; if the test panicked, the last lines of each
//! live node's log are printed and the temporary dir is kept (its path is printed) for a look.
//!
//! What later tests need goes into the builder or a node's public fields before it starts:
//! extra flags for every node ([`ClusterBuilder::arg`]) or one ([`Node::args`]), another data
//! dir, other addresses.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use shoal_client::protocol::{HealthInfo, ReadMode, Request, Response, StatusInfo, WriteOp};
use tempfile::TempDir;

use crate::bins::bin;
use crate::certs::Certs;
use crate::cli::{shoalctl, Output};
use crate::client;
use crate::disk::{LoopFs, Tmpfs};
use crate::ports::free_addr;
use crate::proc::{limit_open_files, Proc};

mod builder;

/// Which nodes a [`Cluster`] has and the flags each `shoald` gets.
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    voters: Vec<u64>,
    spares: Vec<u64>,
    flags: Flags,
    cluster_key: Option<String>,
    peer_tls: bool,
}

/// Flags and environment every node of a cluster gets.
#[derive(Clone, Debug)]
struct Flags {
    fsync: Option<String>,
    election_timeout_ms: Option<u64>,
    heartbeat_interval_ms: Option<u64>,
    cluster_id: Option<u64>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// One node of a [`Cluster`]: its addresses and data dir, and its process while it runs.
pub struct Node {
    /// Node id.
    pub id: u64,
    /// Raft (peer) address.
    pub raft: String,
    /// Client address.
    pub client: String,
    /// Admin HTTP address.
    pub admin: String,
    /// Data dir (created by `shoald`).
    pub dir: PathBuf,
    /// Flags only this node gets, after the cluster's.
    pub args: Vec<String>,
    /// Most open file descriptors its process may have (`RLIMIT_NOFILE`; `None`: the test's).
    pub max_open_files: Option<u64>,
    /// A command that runs `shoald` (its path and flags follow), such as `ip netns exec NS`;
    /// empty: `shoald` is run directly.
    pub run_in: Vec<String>,
    /// Environment only this node gets, after the cluster's.
    pub env: Vec<(String, String)>,
    proc: Option<Proc>,
    runs: u32,
    up: bool,
    paused: bool,
}

impl Node {
    /// Started and not stopped, killed or exited since (a paused node is up).
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Up and not paused: it can answer.
    pub fn is_serving(&self) -> bool {
        self.up && !self.paused
    }

    /// What its latest run logged ("" before its first start).
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// Its latest run's process.
    pub fn proc_mut(&mut self) -> Option<&mut Proc> {
        self.proc.as_mut()
    }

    /// `id=raft_addr/client_addr`. The client address is always named: the one shoald
    /// would imply (the raft port + 1) may be another test's node, and a follower that
    /// redirects there before it learns the leader's own record would send a client astray.
    pub fn member(&self) -> String {
        format!("{}={}/{}", self.id, self.raft, self.client)
    }

    /// The log segment files of `group` in its data dir, oldest first.
    pub fn segments(&self, group: u32) -> Vec<PathBuf> {
        log_segments(&self.dir, group)
    }
}

/// The log segment files of `group` in the data dir `dir`, oldest first.
pub fn log_segments(dir: &Path, group: u32) -> Vec<PathBuf> {
    let log = dir.join(format!("group-{group}")).join("log");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(log)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect()
        })
        .unwrap_or_default();
    segs.sort();
    segs
}

/// The first log index a segment file holds (its name says so).
pub fn segment_first_index(segment: &Path) -> u64 {
    segment
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{} is not named by its first index", segment.display()))
}

/// How a node is configured at start.
enum Launch<'a> {
    /// Flags built from the node and the cluster, with `members` as `--initial-members`.
    Flags {
        members: String,
        extra: &'a [&'a str],
    },
    /// No flags at all: the configuration comes from these environment variables.
    Env(Vec<(String, String)>),
}

/// `shoald` nodes of one test; see the [module docs](self).
pub struct Cluster {
    // Dropped first: every process is dead before the dirs go.
    nodes: Vec<Node>,
    voters: Vec<u64>,
    flags: Flags,
    shoald: PathBuf,
    // Unmounted after every process is dead, before the dirs go.
    mounts: Vec<(u64, Tmpfs)>,
    loop_mounts: Vec<(u64, LoopFs)>,
    root: Option<TempDir>,
    key_file: Option<PathBuf>,
    certs: Option<Certs>,
}

/// Write a cluster key file (`hex`: 64 hexadecimal digits) readable by its owner only, as
/// `--peer-psk-file` (and a board's `--psk-file`) expect it.
pub fn write_key_file(path: &Path, hex: &str) {
    std::fs::write(path, format!("{hex}\n"))
        .unwrap_or_else(|e| panic!("write the key file {}: {e}", path.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod 600 {}: {e}", path.display()));
    }
}

/// The file system of node `id`'s own in `mounts` (`what` it is, for the panic).
fn mounted<'a, F>(mounts: &'a [(u64, F)], id: u64, what: &str) -> &'a F {
    mounts
        .iter()
        .find(|(n, _)| *n == id)
        .map(|(_, fs)| fs)
        .unwrap_or_else(|| panic!("node {id}'s data dir is not on {what} of its own"))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A process blocked on a frozen file system cannot die until it is thawed.
        for (_, fs) in &self.loop_mounts {
            fs.thaw_if_frozen();
        }
        for n in &mut self.nodes {
            if let Some(p) = n.proc.as_mut() {
                p.kill();
            }
        }
        if std::thread::panicking() {
            if let Some(root) = self.root.take() {
                eprintln!(
                    "cluster data dirs and logs kept in {}",
                    root.keep().display()
                );
            }
        }
    }
}

impl Cluster {
    /// Nodes 1, 2 and 3, all initial voters, standard flags; see [`ClusterBuilder`].
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The certificates of a [`ClusterBuilder::peer_tls`] cluster.
    pub fn certs(&self) -> Option<&Certs> {
        self.certs.as_ref()
    }

    /// The cluster key file every node was given ([`ClusterBuilder::cluster_key`]).
    pub fn key_file(&self) -> Option<&Path> {
        self.key_file.as_deref()
    }

    /// One voter (node 1) started with quick elections and no fsync: the node a client-facing test talks to. It may still be electing
    /// itself when this returns; clients retry until it leads.
    pub fn single_node() -> Cluster {
        let mut c = Cluster::builder()
            .voters([1])
            .fsync("never")
            .election_timeout_ms(300)
            .heartbeat_interval_ms(None)
            .build();
        c.start(1);
        c
    }

    /// The temporary dir holding the nodes' data dirs and logs (and whatever the test adds).
    pub fn root(&self) -> &Path {
        self.root
            .as_ref()
            .expect("kept until the cluster is dropped")
            .path()
    }

    /// Node `id`.
    pub fn node(&self, id: u64) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("the cluster has no node {id}"))
    }

    /// Put node `id`'s data dir on a tmpfs of `bytes` of its own (mounted now, before the
    /// node first starts); see [`Cluster::tmpfs`].
    ///
    /// # Panics
    /// When the tmpfs cannot be mounted (the test needs root).
    pub fn on_tmpfs(&mut self, id: u64, bytes: u64) -> &Tmpfs {
        let fs = Tmpfs::mount(&self.own_fs_at(id), bytes);
        self.node_mut(id).dir = fs.path().join("data");
        self.mounts.push((id, fs));
        self.tmpfs(id)
    }

    /// Put node `id`'s data dir on an ext4 file system of `bytes` of its own, on a loop device
    /// (made and mounted now, before the node first starts), which can be frozen like a disk
    /// that stops answering; see [`Cluster::loop_fs`]. The cluster thaws it before it stops
    /// its nodes.
    ///
    /// # Panics
    /// When it cannot be made or mounted (the test needs root).
    pub fn on_loop_fs(&mut self, id: u64, bytes: u64) -> &LoopFs {
        let fs = LoopFs::mount(&self.own_fs_at(id), bytes);
        self.node_mut(id).dir = fs.path().join("data");
        self.loop_mounts.push((id, fs));
        self.loop_fs(id)
    }

    /// The loop-device file system holding node `id`'s data dir ([`Cluster::on_loop_fs`]).
    pub fn loop_fs(&self, id: u64) -> &LoopFs {
        mounted(&self.loop_mounts, id, "a loop device")
    }

    /// The tmpfs holding node `id`'s data dir ([`Cluster::on_tmpfs`]).
    pub fn tmpfs(&self, id: u64) -> &Tmpfs {
        mounted(&self.mounts, id, "a tmpfs")
    }

    /// Where a file system of node `id`'s own is mounted; it must not have run yet.
    fn own_fs_at(&self, id: u64) -> PathBuf {
        assert!(
            self.node(id).runs == 0,
            "node {id} already ran on its own data dir"
        );
        self.root().join(format!("n{id}-fs"))
    }

    /// Node `id`, to change before it starts.
    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("the cluster has no node {id}"))
    }

    /// Every node id, voters first.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The first node of [`Cluster::ids`] that is not `id`.
    pub fn other_than(&self, id: u64) -> u64 {
        self.ids()
            .into_iter()
            .find(|&i| i != id)
            .unwrap_or_else(|| panic!("the cluster has no node but {id}"))
    }

    /// The initial voters.
    pub fn voters(&self) -> &[u64] {
        &self.voters
    }

    /// The ids of the nodes that can answer (up and not paused).
    pub fn serving(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.is_serving())
            .map(|n| n.id)
            .collect()
    }

    /// Client addresses of the nodes that can answer.
    pub fn clients(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.is_serving())
            .map(|n| n.client.clone())
            .collect()
    }

    /// Client addresses of these nodes.
    pub fn clients_of(&self, ids: &[u64]) -> Vec<String> {
        ids.iter().map(|&id| self.node(id).client.clone()).collect()
    }

    /// `--initial-members` for these nodes.
    pub fn members(&self, ids: &[u64]) -> String {
        ids.iter()
            .map(|&id| self.node(id).member())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Comma-separated client addresses of these nodes (`shoalctl --endpoints`).
    pub fn endpoints(&self, ids: &[u64]) -> String {
        self.clients_of(ids).join(",")
    }

    /// Start node `id` with the initial voters as its members.
    pub fn start(&mut self, id: u64) {
        let members = self.members(&self.voters.clone());
        self.launch(
            id,
            Launch::Flags {
                members,
                extra: &[],
            },
        );
    }

    /// Start every initial voter that is not up.
    pub fn start_all(&mut self) {
        for id in self.voters.clone() {
            if !self.node(id).is_up() {
                self.start(id);
            }
        }
    }

    /// Start every initial voter, wait for group 0's leader and write `before` = `1` as client
    /// `client_id` (its first request): a cluster known to take writes. Returns the leader.
    pub fn start_serving(&mut self, client_id: u64) -> u64 {
        self.start_all();
        let leader = self.wait_leader(0);
        self.put(0, client_id, 1, "before", "1");
        leader
    }

    /// Start node `id` empty with `--join`, the initial voters and itself as address hints; it
    /// waits, as an observer, for the leader to add it.
    pub fn start_joining(&mut self, id: u64) {
        let mut ids = self.voters.clone();
        if !ids.contains(&id) {
            ids.push(id);
        }
        let members = self.members(&ids);
        self.launch(
            id,
            Launch::Flags {
                members,
                extra: &["--join"],
            },
        );
    }

    /// Start node `id` with no flags at all, configured by the `KEY=VALUE` lines of an env file
    /// (what systemd's `EnvironmentFile=` does).
    pub fn start_from_env_file(&mut self, id: u64, file: &Path) {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("read the env file {}: {e}", file.display()));
        let vars = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.launch(id, Launch::Env(vars));
    }

    fn launch(&mut self, id: u64, how: Launch<'_>) {
        let shoald = self.shoald.clone();
        let flags = self.flags.clone();
        let log_dir = self.root().to_path_buf();
        let node = self.node_mut(id);
        assert!(!node.up, "node {id} is already running");
        let mut cmd = match node.run_in.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(shoald);
                c
            }
            None => Command::new(shoald),
        };
        match how {
            Launch::Flags { members, extra } => {
                cmd.args(standard_flags(node, &flags, &members))
                    .args(&flags.args)
                    .args(&node.args)
                    .args(extra);
            }
            Launch::Env(vars) => {
                cmd.envs(vars);
            }
        }
        cmd.env("RUST_LOG", "info")
            .envs(flags.env.iter().cloned())
            .envs(node.env.iter().cloned());
        if let Some(n) = node.max_open_files {
            limit_open_files(&mut cmd, n);
        }
        node.runs += 1;
        let log = log_dir.join(format!("n{id}-run{}.log", node.runs));
        node.proc = Some(Proc::spawn(format!("shoald node {id}"), cmd, &log));
        node.up = true;
        node.paused = false;
    }

    fn proc(&mut self, id: u64) -> &mut Proc {
        self.node_mut(id)
            .proc
            .as_mut()
            .unwrap_or_else(|| panic!("node {id} was never started"))
    }

    /// SIGTERM node `id` and wait for it to exit; its exit status.
    pub fn stop(&mut self, id: u64) -> ExitStatus {
        self.resume_if_paused(id);
        let st = self.proc(id).stop();
        self.node_mut(id).up = false;
        st
    }

    /// SIGKILL node `id` (`kill -9`: no shutdown, unsynced writes are the kernel's).
    pub fn kill(&mut self, id: u64) {
        self.proc(id).kill();
        self.node_mut(id).up = false;
    }

    /// SIGSTOP node `id`: it keeps its sockets but answers nothing until resumed (helpers skip
    /// it meanwhile).
    pub fn pause(&mut self, id: u64) {
        self.proc(id).pause();
        self.node_mut(id).paused = true;
    }

    /// SIGCONT node `id` after [`Cluster::pause`].
    pub fn resume(&mut self, id: u64) {
        self.proc(id).resume();
        self.node_mut(id).paused = false;
    }

    fn resume_if_paused(&mut self, id: u64) {
        if self.node(id).paused {
            self.resume(id);
        }
    }

    /// Wait (at most `within`) for node `id` to exit on its own (a refused start); its exit
    /// status.
    pub fn wait_exit(&mut self, id: u64, within: Duration) -> ExitStatus {
        let st = self.proc(id).wait_exit(within);
        self.node_mut(id).up = false;
        st
    }

    /// Wait until a serving node is leader of `group`; its id.
    pub fn wait_leader(&self, group: u32) -> u64 {
        let nodes: Vec<(u64, &str)> = self
            .nodes
            .iter()
            .filter(|n| n.is_serving())
            .map(|n| (n.id, n.client.as_str()))
            .collect();
        client::wait_leader(&nodes, group)
    }

    /// Move the leadership of `group` to node `id` (a serving voter), asking whichever node
    /// leads again until `id` reports itself leader.
    ///
    /// # Panics
    /// When `id` does not lead within [`crate::WAIT`].
    pub fn make_leader(&self, id: u64, group: u32) {
        let what = format!("node {id} to lead group {group}");
        crate::wait::wait_some(&what, crate::WAIT, || {
            let leader = self.wait_leader(group);
            if leader == id {
                return Some(());
            }
            let _ = self.call(leader, group, Request::TransferLeader { to: id });
            let led = crate::wait::poll(Duration::from_secs(2), || {
                self.status(id, group).filter(|s| s.role == "leader")
            });
            led.map(|_| ())
        })
    }

    /// Wait until node `id` reports `role` (`leader`, `follower`, ...) in `group`.
    pub fn wait_role(&self, id: u64, group: u32, role: &str) {
        client::wait_role(id, &self.node(id).client, group, role)
    }

    /// One request to node `id`; `None` if it could not be reached.
    pub fn call(&self, id: u64, group: u32, request: Request) -> Option<Response> {
        client::call(&self.node(id).client, group, request)
    }

    /// `request` to the serving nodes until one answers definitely; see [`client::call_any`].
    pub fn call_any(&self, group: u32, request: Request, what: &str) -> Response {
        client::call_any(&self.clients(), group, request, what)
    }

    /// A write through the serving nodes; see [`client::write`].
    pub fn write(&self, group: u32, client_id: u64, seq: u64, op: WriteOp) -> u64 {
        client::write(&self.clients(), group, client_id, seq, op)
    }

    /// A put through the serving nodes; see [`client::put`].
    pub fn put(&self, group: u32, client_id: u64, seq: u64, key: &str, value: &str) -> u64 {
        client::put(&self.clients(), group, client_id, seq, key, value)
    }

    /// Read `key` on node `id`; see [`client::get`].
    pub fn get(&self, id: u64, group: u32, key: &str, mode: ReadMode) -> Option<Vec<u8>> {
        client::get(&[&self.node(id).client], group, key, mode)
    }

    /// Assert that node `id` reads `value` at `key` of `group` (a linearizable read).
    #[track_caller]
    pub fn assert_reads(&self, id: u64, group: u32, key: &str, value: &str) {
        assert_eq!(
            self.get(id, group, key, ReadMode::Linearizable).as_deref(),
            Some(value.as_bytes()),
            "node {id} reading {key} in group {group}"
        );
    }

    /// Read `key` on any serving node; see [`client::get`].
    pub fn get_any(&self, group: u32, key: &str, mode: ReadMode) -> Option<Vec<u8>> {
        client::get(&self.clients(), group, key, mode)
    }

    /// Node `id`'s view of `group`, if it answers.
    pub fn status(&self, id: u64, group: u32) -> Option<StatusInfo> {
        client::status(&self.node(id).client, group)
    }

    /// The groups node `id` hosts, if it answers.
    pub fn groups(&self, id: u64) -> Option<Vec<u32>> {
        match self.call(id, 0, Request::GroupList)? {
            Response::Groups(g) => Some(g),
            _ => None,
        }
    }

    /// Node `id`'s health through the client port (`Request::Health`), if it answers.
    pub fn health(&self, id: u64) -> Option<HealthInfo> {
        client::health(&self.node(id).client)
    }

    /// Wait until node `id`'s admin `/health` answers 200, as an operator's check would: the
    /// admin view follows the raft thread's by up to 100 ms, so a node that just answered
    /// [`Cluster::wait_leader`] may still say "no leader" there for a moment.
    ///
    /// # Panics
    /// When it does not within [`crate::WAIT`], with its last answer.
    pub fn wait_healthy(&self, id: u64) {
        let mut last = None;
        let ok = crate::wait::poll(crate::WAIT, || {
            last = self.http_get(id, "/health");
            last.as_ref()
                .is_some_and(|(code, _)| *code == 200)
                .then_some(())
        });
        if ok.is_none() {
            panic!(
                "node {id}'s /health did not say ok within {:?}; last answer: {last:?}",
                crate::WAIT
            );
        }
    }

    /// `GET path` on node `id`'s admin port.
    pub fn http_get(&self, id: u64, path: &str) -> Option<(u16, String)> {
        client::http_get(&self.node(id).admin, path)
    }

    /// Node `id`'s `/health`: its status code and JSON body.
    ///
    /// # Panics
    /// When the admin port does not answer, or not with JSON.
    pub fn admin_health(&self, id: u64) -> (u16, serde_json::Value) {
        let (code, body) = self
            .http_get(id, "/health")
            .unwrap_or_else(|| panic!("node {id}'s admin port does not answer"));
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("/health {body}: {e}"));
        (code, json)
    }

    /// Wait until node `id`'s `/health` answers `code`; that answer's body.
    ///
    /// # Panics
    /// When it does not within [`crate::WAIT`], with the last answer.
    pub fn wait_health(&self, id: u64, code: u16) -> serde_json::Value {
        let mut last = None;
        let got = crate::wait::poll(crate::WAIT, || {
            let (got, body) = self.admin_health(id);
            last = Some((got, body.clone()));
            (got == code).then_some(body)
        });
        got.unwrap_or_else(|| {
            panic!(
                "node {id}: no /health {code} within {:?}: {last:?}",
                crate::WAIT
            )
        })
    }

    /// The unlabelled metric `name` of node `id`.
    pub fn gauge(&self, id: u64, name: &str) -> usize {
        client::gauge(&self.node(id).admin, name)
    }

    /// The labelled metric `series` of node `id`; see [`client::metric`].
    pub fn metric(&self, id: u64, series: &str) -> u64 {
        client::metric(&self.node(id).admin, series)
    }

    /// How often node `id` hit the limit set by `--FLAG`; see [`client::limit_hits`].
    pub fn limit_hits(&self, id: u64, flag: &str) -> u64 {
        client::limit_hits(&self.node(id).admin, flag)
    }

    /// Node `id`'s process (started, and not reaped since).
    ///
    /// # Panics
    /// When it was never started or has exited, with its exit status and log.
    pub fn running_proc(&mut self, id: u64) -> &mut Proc {
        let p = self.proc(id);
        if let Some(st) = p.try_exit() {
            panic!("node {id} exited ({st:?}); its log ends:\n{}", p.log_tail());
        }
        p
    }

    /// `shoalctl ARGS` with every serving node as an endpoint.
    pub fn ctl(&self, args: &[&str]) -> Output {
        shoalctl(&self.clients().join(","), args)
    }

    /// `shoalctl ARGS` with these nodes as endpoints.
    pub fn ctl_at(&self, ids: &[u64], args: &[&str]) -> Output {
        shoalctl(&self.endpoints(ids), args)
    }

    /// Define each of `groups` with `members` (node ids, as `shoalctl group create` takes
    /// them: `"1,2,3"`), then wait until each has a leader; their leaders, in order.
    ///
    /// # Panics
    /// When a definition fails, or a group gets no leader within [`crate::WAIT`].
    pub fn create_groups(&self, groups: impl IntoIterator<Item = u32>, members: &str) -> Vec<u64> {
        let groups: Vec<u32> = groups.into_iter().collect();
        for g in &groups {
            self.ctl(&["--group", &g.to_string(), "group", "create", members])
                .ok();
        }
        groups.iter().map(|&g| self.wait_leader(g)).collect()
    }
}

/// The flags every node gets: identity, addresses, members, timing.
fn standard_flags(node: &Node, flags: &Flags, members: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "--node-id",
        &node.id.to_string(),
        "--data-dir",
        node.dir
            .to_str()
            .expect("the temporary dir's path is UTF-8"),
        "--raft-addr",
        &node.raft,
        "--client-addr",
        &node.client,
        "--admin-addr",
        &node.admin,
        "--initial-members",
        members,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(ms) = flags.election_timeout_ms {
        v.extend(["--election-timeout".to_string(), ms.to_string()]);
    }
    if let Some(ms) = flags.heartbeat_interval_ms {
        v.extend(["--heartbeat-interval".to_string(), ms.to_string()]);
    }
    if let Some(mode) = &flags.fsync {
        v.extend(["--fsync".to_string(), mode.clone()]);
    }
    if let Some(id) = flags.cluster_id {
        v.extend(["--cluster-id".to_string(), id.to_string()]);
    }
    v
}
