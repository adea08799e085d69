//! [`ClusterBuilder`]: which nodes a cluster has and the flags each gets, and building it.

use super::*;

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            voters: vec![1, 2, 3],
            spares: Vec::new(),
            flags: Flags {
                fsync: None,
                election_timeout_ms: Some(400),
                heartbeat_interval_ms: Some(50),
                cluster_id: None,
                args: Vec::new(),
                env: Vec::new(),
            },
            cluster_key: None,
            peer_tls: false,
        }
    }
}

impl ClusterBuilder {
    /// The initial members (`--initial-members`); 1, 2 and 3 unless set.
    pub fn voters(mut self, ids: impl IntoIterator<Item = u64>) -> Self {
        self.voters = ids.into_iter().collect();
        self
    }

    /// Nodes that are not initial members (they join later, or are started by hand).
    pub fn spares(mut self, ids: impl IntoIterator<Item = u64>) -> Self {
        self.spares = ids.into_iter().collect();
        self
    }

    /// `--fsync MODE` (shoald's default, `always`, unless set).
    pub fn fsync(mut self, mode: &str) -> Self {
        self.flags.fsync = Some(mode.to_string());
        self
    }

    /// `--election-timeout MS` (400 unless set).
    pub fn election_timeout_ms(mut self, ms: u64) -> Self {
        self.flags.election_timeout_ms = Some(ms);
        self
    }

    /// No timing or fsync flag at all: the nodes run with `shoald`'s own defaults (what an
    /// operator following the docs gets), only their ids, addresses, dirs and members set.
    pub fn shoald_defaults(mut self) -> Self {
        self.flags.election_timeout_ms = None;
        self.flags.heartbeat_interval_ms = None;
        self.flags.fsync = None;
        self
    }

    /// `--heartbeat-interval MS` (50 unless set; `None`: shoald's default).
    pub fn heartbeat_interval_ms(mut self, ms: Option<u64>) -> Self {
        self.flags.heartbeat_interval_ms = ms;
        self
    }

    /// `--cluster-id ID` (shoald's default unless set).
    pub fn cluster_id(mut self, id: u64) -> Self {
        self.flags.cluster_id = Some(id);
        self
    }

    /// One more flag for every node, after the standard ones.
    pub fn arg(mut self, arg: &str) -> Self {
        self.flags.args.push(arg.to_string());
        self
    }

    /// More flags for every node, after the standard ones.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.flags.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Seal every raft-port link with a cluster key: the key (64 hex digits) is written to
    /// `cluster.key` in the cluster's dir (see [`Cluster::key_file`]) and every node gets
    /// `--peer-psk-file` naming it.
    pub fn cluster_key(mut self, hex: &str) -> Self {
        self.cluster_key = Some(hex.to_string());
        self
    }

    /// Mutual TLS between members: a CA is made in the cluster's dir (see [`Cluster::certs`])
    /// and every node gets its own member certificate (`--peer-cert-file` and the rest).
    pub fn peer_tls(mut self) -> Self {
        self.peer_tls = true;
        self
    }

    /// An environment variable for every node.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.flags.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Pick the ports and dirs; nothing is started yet.
    ///
    /// # Panics
    /// When `shoald` is not built (naming the command that builds it).
    pub fn build(mut self) -> Cluster {
        let shoald = bin("shoald");
        let root = tempfile::Builder::new()
            .prefix("shoal-test-")
            .tempdir()
            .expect("a temporary dir for the cluster");
        let key_file = self.cluster_key.as_ref().map(|hex| {
            let path = root.path().join("cluster.key");
            write_key_file(&path, hex);
            path
        });
        let certs = self
            .peer_tls
            .then(|| Certs::new(&root.path().join("certs")));
        if let Some(path) = &key_file {
            self.flags.args.push("--peer-psk-file".into());
            self.flags.args.push(path.display().to_string());
        }
        let mut ids = self.voters.clone();
        ids.extend(
            self.spares
                .iter()
                .copied()
                .filter(|s| !self.voters.contains(s)),
        );
        let nodes = ids
            .into_iter()
            .map(|id| Node {
                id,
                raft: free_addr(),
                client: free_addr(),
                admin: free_addr(),
                dir: root.path().join(format!("n{id}")),
                args: certs.as_ref().map_or_else(Vec::new, |c| {
                    c.peer_flags(&c.node(self.flags.cluster_id.unwrap_or(1), id))
                }),
                max_open_files: None,
                run_in: Vec::new(),
                env: Vec::new(),
                proc: None,
                runs: 0,
                up: false,
                paused: false,
            })
            .collect();
        Cluster {
            nodes,
            voters: self.voters,
            flags: self.flags,
            shoald,
            mounts: Vec::new(),
            loop_mounts: Vec::new(),
            root: Some(root),
            key_file,
            certs,
        }
    }
}
