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
        let mut args = vec![
            "node",
            "--ca",
            &d,
            "--cluster-id",
            &c,
            "--node-id",
            &n,
            "--out",
            &o,
        ];
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
        self.client_with(cn, "clients", &[])
    }

    /// A client certificate with common name `cn`, made with `extra` arguments
    /// (`--valid-from`, `--days`) and kept under `name`.
    pub fn client_with(&self, cn: &str, name: &str, extra: &[&str]) -> CertPair {
        let out = self.dir.join(name);
        let (d, o) = (self.dir.display().to_string(), out.display().to_string());
        let mut args = vec!["client", "--ca", &d, "--cn", cn, "--out", &o];
        args.extend_from_slice(extra);
        run(&args);
        CertPair {
            cert: out.join(format!("client-{cn}.pem")),
            key: out.join(format!("client-{cn}-key.pem")),
        }
    }

    /// The client (and admin) port flags of a node with `pair`, trusting this CA for client
    /// certificates; `cert_auth` requires them (`--client-cert-auth`).
    pub fn client_port_flags(&self, pair: &CertPair, cert_auth: bool) -> Vec<String> {
        let mut f = self.port_flags("", pair);
        if cert_auth {
            f.push("--client-cert-auth".into());
        }
        f
    }

    /// shoalctl's flags to reach a TLS client port trusting this CA, presenting `pair`.
    pub fn ctl_flags(&self, pair: Option<&CertPair>) -> Vec<String> {
        let mut f = vec!["--cacert".into(), self.ca().display().to_string()];
        if let Some(p) = pair {
            f.extend([
                "--cert".into(),
                p.cert.display().to_string(),
                "--key".into(),
                p.key.display().to_string(),
            ]);
        }
        f
    }

    /// A TLS connection to a client port at `addr`, trusting this CA and presenting `pair`,
    /// with its handshake done (the error says why it failed).
    pub fn tls_open(&self, addr: &str, pair: Option<&CertPair>) -> std::io::Result<TlsConn> {
        let config = crate::peer::tls_client_config(&self.ca(), pair)?;
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1")
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut conn = rustls::ClientConnection::new(config, name)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut tcp = std::net::TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(TlsConn {
            stream: rustls::StreamOwned::new(conn, tcp),
            buf: Vec::new(),
        })
    }

    /// `GET path` from an admin port over TLS, trusting this CA, presenting `pair`: the
    /// status and body, or why the connection failed.
    pub fn https_get(
        &self,
        addr: &str,
        path: &str,
        pair: Option<&CertPair>,
    ) -> std::io::Result<(u16, String)> {
        use std::io::{Read, Write};
        let config = crate::peer::tls_client_config(&self.ca(), pair)?;
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1")
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let conn = rustls::ClientConnection::new(config, name)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let tcp = std::net::TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: shoal\r\nConnection: close\r\n\r\n"
        )?;
        s.flush()?;
        let mut text = String::new();
        // The admin port closes after its answer, with or without close_notify.
        if let Err(e) = s.read_to_string(&mut text) {
            if text.is_empty() {
                return Err(e);
            }
        }
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:?}")))?;
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        Ok((status, body))
    }

    /// The value of `series` on the `/metrics` of an admin port served over TLS (as a node
    /// with `--cert-file` serves it); `None` while it cannot be read or lacks the series.
    pub fn https_metric(&self, admin: &str, series: &str) -> Option<u64> {
        match self.https_get(admin, "/metrics", None) {
            Ok((200, body)) => crate::client::series_value(&body, series),
            _ => None,
        }
    }

    /// The raft port flags of a member with `pair`, trusting this CA.
    pub fn peer_flags(&self, pair: &CertPair) -> Vec<String> {
        self.port_flags("peer-", pair)
    }

    /// `--{port}cert-file`, `--{port}key-file` and `--{port}trusted-ca-file` for `pair` and
    /// this CA (`port`: `""` for the client port, `"peer-"` for the raft port).
    fn port_flags(&self, port: &str, pair: &CertPair) -> Vec<String> {
        vec![
            format!("--{port}cert-file"),
            pair.cert.display().to_string(),
            format!("--{port}key-file"),
            pair.key.display().to_string(),
            format!("--{port}trusted-ca-file"),
            self.ca().display().to_string(),
        ]
    }
}

/// A client port connection over TLS ([`Certs::tls_open`]).
pub struct TlsConn {
    stream: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    buf: Vec<u8>,
}

impl TlsConn {
    /// The certificate the node presented (DER of the leaf).
    pub fn served_cert(&self) -> Vec<u8> {
        self.stream
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default()
    }

    /// The next answer frame; `UnexpectedEof` when the node closed the connection.
    pub fn next_frame(&mut self) -> std::io::Result<shoal_client::protocol::ResponseFrame> {
        crate::client::next_frame(&mut self.stream, &mut self.buf)
    }
}

/// The DER of the first certificate in the PEM file at `path`.
///
/// # Panics
/// When it holds none.
pub fn cert_der(path: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_file_iter(path)
        .expect("a PEM file")
        .next()
        .expect("a certificate in it")
        .expect("a certificate that parses")
        .as_ref()
        .to_vec()
}
