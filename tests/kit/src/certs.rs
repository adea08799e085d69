//! [`Certs`]: a cluster's certificates for one test, made by the `shoal-certs` binary (so the
//! helper operators use is exercised too): a CA, member and client certificates, and the
//! wrong ones (another CA, expired) that tests expect to be refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bins::bin;

/// A certificate and its key.
#[derive(Clone, Debug)]
pub struct CertPair {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
}

/// A CA and the certificates made with it, under one dir.
#[derive(Clone, Debug)]
pub struct Certs {
    dir: PathBuf,
}

fn run(args: &[&str]) {
    let out = Command::new(bin("shoal-certs"))
        .args(args)
        .output()
        .expect("run shoal-certs");
    assert!(
        out.status.success(),
        "shoal-certs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    /// A new CA in `dir` (created).
    pub fn new(dir: &Path) -> Certs {
        let d = dir.display().to_string();
        run(&["ca", "--out", &d]);
        Certs {
            dir: dir.to_path_buf(),
        }
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A member certificate of node `node_id` in `cluster_id` (for localhost and 127.0.0.1),
    /// made with `extra` arguments (`--valid-from`, `--days`) and kept under `name`.
    pub fn node_with(&self, cluster_id: u64, node_id: u64, name: &str, extra: &[&str]) -> CertPair {
        let out = self.dir.join(name);
        let (d, o) = (self.dir.display().to_string(), out.display().to_string());
        let (c, n) = (cluster_id.to_string(), node_id.to_string());
        let mut args = vec!["node", "--ca", &d, "--cluster-id", &c, "--node-id", &n, "--out", &o];
        args.extend_from_slice(extra);
        run(&args);
        CertPair {
            cert: out.join(format!("node-{node_id}.pem")),
            key: out.join(format!("node-{node_id}-key.pem")),
        }
    }

    /// A valid member certificate of node `node_id` in `cluster_id`.
    pub fn node(&self, cluster_id: u64, node_id: u64) -> CertPair {
        self.node_with(cluster_id, node_id, "nodes", &[])
    }

    /// A client certificate with common name `cn`.
    pub fn client(&self, cn: &str) -> CertPair {
        let out = self.dir.join("clients");
        let (d, o) = (self.dir.display().to_string(), out.display().to_string());
        run(&["client", "--ca", &d, "--cn", cn, "--out", &o]);
        CertPair {
            cert: out.join(format!("client-{cn}.pem")),
            key: out.join(format!("client-{cn}-key.pem")),
        }
    }

    /// The raft port flags of a member with `pair`, trusting this CA.
    pub fn peer_flags(&self, pair: &CertPair) -> Vec<String> {
        vec![
            "--peer-cert-file".into(),
            pair.cert.display().to_string(),
            "--peer-key-file".into(),
            pair.key.display().to_string(),
            "--peer-trusted-ca-file".into(),
            self.ca().display().to_string(),
        ]
    }
}
