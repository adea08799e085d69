//! TLS 1.3 on `shoald`'s ports (rustls with the ring provider; why ring in docs/DESIGN.md):
//! which files each port uses, the rustls configurations built from them, re-reading them on
//! SIGHUP, and what a verified certificate says about its holder (a member's node id from its
//! URI SAN `shoal://<cluster-id>/node/<node-id>`, a client's common name).
//!
//! The files are re-read on SIGHUP and, every `--cert-check-interval`, when one of them
//! changed (its length or modification time): renewal tools that replace the files need not
//! know the process.
//!
//! This module only builds configurations and reads certificates; the sockets stay in
//! [`super::tls_stream`] (the stream types), `net.rs` (raft port), `clients/` (client port)
//! and `admin/` (admin port). A reload that fails keeps the configurations in force and says
//! why; connections already open keep the certificates they were opened with.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use shoal_client::tls::{read_certs, read_key};
use shoal_core::{ClusterId, NodeId};

/// A certificate and its key, as two PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// Certificate chain (leaf first).
    pub cert: PathBuf,
    /// Private key of the leaf.
    pub key: PathBuf,
}

/// The raft port's files: this member's certificate and the CA members are signed by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerFiles {
    /// This member's certificate and key (`--peer-cert-file`, `--peer-key-file`).
    pub own: CertFiles,
    /// CA of every member (`--peer-trusted-ca-file`).
    pub ca: PathBuf,
}

/// Every TLS file and switch of a node, as the flags gave them (checked for completeness).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The client port's certificate (also the admin port's).
    pub client: Option<CertFiles>,
    /// CA of client certificates (`--trusted-ca-file`).
    pub client_ca: Option<PathBuf>,
    /// Require a client certificate (`--client-cert-auth`).
    pub client_cert_auth: bool,
    /// Require it on the admin port for `/health` and `/metrics` too.
    pub admin_cert_auth_all: bool,
    /// Mutual TLS between members.
    pub peer: Option<PeerFiles>,
    /// How often the files are looked at for a change (`--cert-check-interval`; zero: only
    /// on SIGHUP).
    pub check_interval: Duration,
}

/// The default of `--cert-check-interval`: a renewed certificate is in force within seconds,
/// for a few `stat` calls each time.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

type Triple = (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>);

impl TlsFiles {
    /// The files from the flags: `(cert, key, ca)` of the client port, its switches, and
    /// `(cert, key, ca)` of the raft port. A half-given pair is an error that names the
    /// missing flag.
    pub fn from_flags(
        client: Triple,
        client_cert_auth: bool,
        admin_cert_auth_all: bool,
        peer: Triple,
    ) -> Result<TlsFiles, String> {
        let pair =
            |cert: Option<PathBuf>, key: Option<PathBuf>, names: (&str, &str)| match (cert, key) {
                (Some(cert), Some(key)) => Ok(Some(CertFiles { cert, key })),
                (None, None) => Ok(None),
                (Some(_), None) => Err(format!("{} is set but {} is not", names.0, names.1)),
                (None, Some(_)) => Err(format!("{} is set but {} is not", names.1, names.0)),
            };
        let own = pair(client.0, client.1, ("--cert-file", "--key-file"))?;
        if client_cert_auth && (own.is_none() || client.2.is_none()) {
            return Err(
                "--client-cert-auth needs --cert-file, --key-file and --trusted-ca-file".into(),
            );
        }
        let peer_own = pair(peer.0, peer.1, ("--peer-cert-file", "--peer-key-file"))?;
        let peer = match (peer_own, peer.2) {
            (Some(own), Some(ca)) => Some(PeerFiles { own, ca }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(
                    "--peer-cert-file needs --peer-trusted-ca-file: members verify \
                            each other's certificates (mutual TLS)"
                        .into(),
                )
            }
            (None, Some(_)) => {
                return Err(
                    "--peer-trusted-ca-file needs --peer-cert-file and --peer-key-file".into(),
                )
            }
        };
        Ok(TlsFiles {
            client: own,
            client_ca: client.2,
            client_cert_auth,
            admin_cert_auth_all,
            peer,
            check_interval: DEFAULT_CHECK_INTERVAL,
        })
    }

    /// Every file in use, each once.
    fn paths(&self) -> Vec<&Path> {
        let mut all: Vec<&Path> = Vec::new();
        if let Some(c) = &self.client {
            all.extend([c.cert.as_path(), c.key.as_path()]);
        }
        all.extend(self.client_ca.as_deref());
        if let Some(p) = &self.peer {
            all.extend([p.own.cert.as_path(), p.own.key.as_path(), p.ca.as_path()]);
        }
        all.sort();
        all.dedup();
        all
    }

    /// What the files look like now: each one's length and modification time (`None` while
    /// it cannot be read), so a replaced file shows as a change.
    fn stamp(&self) -> Stamp {
        self.paths()
            .into_iter()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                Some((m.len(), m.modified().ok()?))
            })
            .collect()
    }

    /// True when any port speaks TLS.
    pub fn any(&self) -> bool {
        self.client.is_some() || self.peer.is_some()
    }
}

/// The length and modification time of each file of [`TlsFiles::paths`].
type Stamp = Vec<Option<(u64, SystemTime)>>;

/// The configurations in force for one build of the files.
struct Configs {
    client: Option<Arc<ServerConfig>>,
    admin: Option<Arc<ServerConfig>>,
    peer_server: Option<Arc<ServerConfig>>,
    peer_client: Option<Arc<ClientConfig>>,
}

/// A port's TLS counters, as the admin port shows them.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TlsView {
    /// Client port connections whose TLS handshake failed (plaintext, wrong CA, expired...).
    pub client_refused: u64,
    /// Admin port connections whose TLS handshake failed.
    pub admin_refused: u64,
    /// Raft port connections (both directions) whose TLS handshake failed.
    pub peer_refused: u64,
    /// Peers refused because their certificate named another node, cluster or none, or a
    /// frame on their connection claimed another sender.
    pub peer_identity_refused: u64,
    /// Successful reloads of the files (SIGHUP or a changed file).
    pub reloads: u64,
    /// Reloads that failed (the previous certificates stayed in force).
    pub reload_failures: u64,
}

/// Which port a handshake was on (for counters and log lines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The client port.
    Client,
    /// The admin HTTP port.
    Admin,
    /// The raft port.
    Raft,
}

impl Port {
    fn ca_flag(self) -> &'static str {
        match self {
            Port::Client | Port::Admin => "--trusted-ca-file",
            Port::Raft => "--peer-trusted-ca-file",
        }
    }

    /// The port's name in log lines.
    pub fn label(self) -> &'static str {
        match self {
            Port::Client => "client port",
            Port::Admin => "admin port",
            Port::Raft => "raft port",
        }
    }
}

/// A node's TLS state: the files, the configurations built from them and the counters.
pub struct Tls {
    files: TlsFiles,
    cluster_id: ClusterId,
    node_id: NodeId,
    configs: RwLock<Configs>,
    /// The files as they were when last read (loaded or reloaded, well or not).
    seen: Mutex<Stamp>,
    client_refused: AtomicU64,
    admin_refused: AtomicU64,
    peer_refused: AtomicU64,
    peer_identity_refused: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_roots(path: &Path, flag: &str) -> Result<Arc<RootCertStore>, String> {
    shoal_client::tls::read_roots(path, flag).map(Arc::new)
}

fn tls13_server(
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    own: &CertFiles,
    flags: (&str, &str),
) -> Result<ServerConfig, String> {
    let chain = read_certs(&own.cert, flags.0)?;
    let key = read_key(&own.key, flags.1)?;
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "{} {} and {} {} do not make a usable certificate: {e}",
                flags.0,
                own.cert.display(),
                flags.1,
                own.key.display()
            )
        })
}

fn client_verifier(
    roots: Option<Arc<RootCertStore>>,
    required: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let Some(roots) = roots else {
        return Ok(WebPkiClientVerifier::no_client_auth());
    };
    let b = WebPkiClientVerifier::builder_with_provider(roots, provider());
    let b = if required {
        b
    } else {
        b.allow_unauthenticated()
    };
    b.build()
        .map_err(|e| format!("client certificate verifier: {e}"))
}

impl Configs {
    fn build(f: &TlsFiles, cluster_id: ClusterId, node_id: NodeId) -> Result<Configs, String> {
        let mut c = Configs {
            client: None,
            admin: None,
            peer_server: None,
            peer_client: None,
        };
        if let Some(own) = &f.client {
            let roots = match &f.client_ca {
                Some(p) => Some(read_roots(p, "--trusted-ca-file")?),
                None => None,
            };
            let names = ("--cert-file", "--key-file");
            let required = f.client_cert_auth;
            let client = tls13_server(client_verifier(roots.clone(), required)?, own, names)?;
            c.client = Some(Arc::new(client));
            // The admin port asks for a certificate but lets /health and /metrics be read
            // without one; the HTTP layer refuses the other paths (`AdminAuth`).
            let admin_required = required && f.admin_cert_auth_all;
            let mut admin = tls13_server(client_verifier(roots, admin_required)?, own, names)?;
            admin.alpn_protocols = vec![b"http/1.1".to_vec()];
            c.admin = Some(Arc::new(admin));
        }
        if let Some(p) = &f.peer {
            let roots = read_roots(&p.ca, "--peer-trusted-ca-file")?;
            let chain = read_certs(&p.own.cert, "--peer-cert-file")?;
            // A member's own certificate must name it: otherwise every peer would refuse it.
            match member_of(&chain[0]) {
                Ok(ids) if ids == (cluster_id, node_id) => {}
                Ok((c, n)) => {
                    return Err(format!(
                        "--peer-cert-file {} names cluster {c} node {n}, but this is cluster \
                         {cluster_id} node {node_id}",
                        p.own.cert.display()
                    ))
                }
                Err(e) => return Err(format!("--peer-cert-file {}: {e}", p.own.cert.display())),
            }
            let names = ("--peer-cert-file", "--peer-key-file");
            let mut server =
                tls13_server(client_verifier(Some(roots.clone()), true)?, &p.own, names)?;
            // Peer connections are one-way after the handshake: the dialer never reads again,
            // so nothing may follow it (session tickets).
            server.send_tls13_tickets = 0;
            c.peer_server = Some(Arc::new(server));
            let key = read_key(&p.own.key, "--peer-key-file")?;
            let mut client = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("--peer-cert-file / --peer-key-file: {e}"))?;
            client.resumption = rustls::client::Resumption::disabled();
            c.peer_client = Some(Arc::new(client));
        }
        Ok(c)
    }
}

impl Tls {
    /// Read the files and build every port's configuration; `None` when no port has TLS.
    pub fn load(
        files: &TlsFiles,
        cluster_id: ClusterId,
        node_id: NodeId,
    ) -> Result<Option<Arc<Tls>>, String> {
        if !files.any() {
            return Ok(None);
        }
        let seen = files.stamp();
        let configs = Configs::build(files, cluster_id, node_id)?;
        Ok(Some(Arc::new(Tls {
            files: files.clone(),
            cluster_id,
            node_id,
            configs: RwLock::new(configs),
            seen: Mutex::new(seen),
            client_refused: AtomicU64::new(0),
            admin_refused: AtomicU64::new(0),
            peer_refused: AtomicU64::new(0),
            peer_identity_refused: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        })))
    }

    /// Read the files again (SIGHUP, or a change seen). New connections use the new
    /// certificates; on an error the old ones stay in force and the error is returned.
    pub fn reload(&self) -> Result<(), String> {
        // Stamped before reading: a file replaced while it is read shows as a change again.
        *self.seen.lock().expect("tls lock") = self.files.stamp();
        match Configs::build(&self.files, self.cluster_id, self.node_id) {
            Ok(c) => {
                *self.configs.write().expect("tls lock") = c;
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// [`Tls::reload`], logged: `cause` (SIGHUP, a changed file) and what came of it.
    pub fn reload_logged(&self, cause: &str) {
        match self.reload() {
            Ok(()) => {
                log::info!("{cause}: certificates and keys re-read; new connections use them")
            }
            Err(e) => log::error!(
                "{cause}: certificates not reloaded, the previous ones stay in force: {e}"
            ),
        }
    }

    /// Reload when a file changed since it was last read; a file that stays bad is tried
    /// (and logged) once per change, not at every look.
    pub fn reload_if_changed(&self) {
        let now = self.files.stamp();
        if *self.seen.lock().expect("tls lock") == now {
            return;
        }
        self.reload_logged("a certificate or key file changed");
    }

    /// How often the files are looked at (zero: never, only SIGHUP reloads).
    pub fn check_interval(&self) -> Duration {
        self.files.check_interval
    }

    /// The client port's configuration, if it serves TLS.
    pub fn client_port(&self) -> Option<Arc<ServerConfig>> {
        self.configs.read().expect("tls lock").client.clone()
    }

    /// The admin port's configuration, if it serves TLS.
    pub fn admin_port(&self) -> Option<Arc<ServerConfig>> {
        self.configs.read().expect("tls lock").admin.clone()
    }

    /// True when the admin port must see a client certificate for paths other than
    /// `/health` and `/metrics` (and for those too with `--admin-cert-auth-all`, which the
    /// handshake itself enforces).
    pub fn admin_needs_cert(&self) -> bool {
        self.files.client_cert_auth
    }

    /// The raft port's configurations (accepting, dialing), if members speak TLS.
    pub fn peer(&self) -> Option<(Arc<ServerConfig>, Arc<ClientConfig>)> {
        let c = self.configs.read().expect("tls lock");
        Some((c.peer_server.clone()?, c.peer_client.clone()?))
    }

    /// This node's cluster id.
    pub fn cluster_id(&self) -> ClusterId {
        self.cluster_id
    }

    /// A handshake on `port` with `who` failed: count it and log which and why.
    pub fn refused(&self, port: Port, who: &str, e: &std::io::Error) {
        let counter = match port {
            Port::Client => &self.client_refused,
            Port::Admin => &self.admin_refused,
            Port::Raft => &self.peer_refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "{}: TLS with {who} refused: {}",
            port.label(),
            describe(port, e)
        );
    }

    /// A peer's certificate or frame did not match the node it claims to be: count and log.
    pub fn identity_refused(&self, who: &str, why: &str) {
        self.peer_identity_refused.fetch_add(1, Ordering::Relaxed);
        log::warn!("raft port: peer {who} refused: {why}");
    }

    /// The counters.
    pub fn view(&self) -> TlsView {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TlsView {
            client_refused: get(&self.client_refused),
            admin_refused: get(&self.admin_refused),
            peer_refused: get(&self.peer_refused),
            peer_identity_refused: get(&self.peer_identity_refused),
            reloads: get(&self.reloads),
            reload_failures: get(&self.reload_failures),
        }
    }
}

/// A failed handshake in words an operator acts on: which certificate check failed and why.
pub fn describe(port: Port, e: &std::io::Error) -> String {
    use rustls::{CertificateError, Error};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) else {
        return e.to_string();
    };
    let ca = port.ca_flag();
    match tls {
        Error::InvalidCertificate(CertificateError::Expired)
        | Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            format!("the certificate has expired ({tls})")
        }
        Error::InvalidCertificate(CertificateError::NotValidYet)
        | Error::InvalidCertificate(CertificateError::NotValidYetContext { .. }) => {
            format!("the certificate is not valid yet ({tls})")
        }
        // A CA of the same name but another key shows as a bad signature.
        Error::InvalidCertificate(CertificateError::UnknownIssuer)
        | Error::InvalidCertificate(CertificateError::BadSignature) => {
            format!("the certificate is not signed by a CA in {ca} (unknown issuer)")
        }
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            format!("the certificate does not name the address dialed ({tls})")
        }
        Error::NoCertificatesPresented => {
            "no client certificate was presented, and this port requires one signed by a CA \
             in the trusted CA file"
                .into()
        }
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
            format!("the other side does not speak TLS (a plaintext client or peer?): {tls}")
        }
        Error::AlertReceived(a) => format!("the other side refused our certificate: {a:?}"),
        other => other.to_string(),
    }
}

/// The member a peer certificate names: its URI SAN `shoal://<cluster-id>/node/<node-id>`.
pub fn member_of(cert: &CertificateDer<'_>) -> Result<(ClusterId, NodeId), String> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| format!("its subject alternative names do not parse: {e}"))?;
    let uris = san.iter().flat_map(|s| s.value.general_names.iter());
    for name in uris {
        if let x509_parser::extensions::GeneralName::URI(uri) = name {
            if let Some(ids) = parse_member_uri(uri) {
                return Ok(ids);
            }
        }
    }
    Err("it names no member (no URI SAN shoal://<cluster-id>/node/<node-id>)".into())
}

/// Parse `shoal://<cluster-id>/node/<node-id>`.
pub fn parse_member_uri(uri: &str) -> Option<(ClusterId, NodeId)> {
    let rest = uri.strip_prefix("shoal://")?;
    let (cluster, node) = rest.split_once("/node/")?;
    Some((cluster.parse().ok()?, node.parse().ok()?))
}

/// The URI SAN that names member `node_id` of `cluster_id`.
pub fn member_uri(cluster_id: ClusterId, node_id: NodeId) -> String {
    format!("shoal://{cluster_id}/node/{node_id}")
}

/// The common name (CN) of a certificate's subject: who a verified client certificate says
/// its holder is (users and roles name clients by it).
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = x509.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_uris_round_trip_and_others_do_not_parse() {
        assert_eq!(parse_member_uri(&member_uri(7, 3)), Some((7, 3)));
        assert_eq!(parse_member_uri("shoal://7/node/x"), None);
        assert_eq!(parse_member_uri("https://7/node/3"), None);
        assert_eq!(parse_member_uri("shoal://7/client/3"), None);
    }

    #[test]
    fn half_given_pairs_name_the_missing_flag() {
        let p = |s: &str| Some(PathBuf::from(s));
        let e = TlsFiles::from_flags((p("c"), None, None), false, false, (None, None, None));
        assert_eq!(e.unwrap_err(), "--cert-file is set but --key-file is not");
        let e = TlsFiles::from_flags((p("c"), p("k"), None), true, false, (None, None, None));
        assert!(e.unwrap_err().contains("--trusted-ca-file"));
        let e = TlsFiles::from_flags((None, None, None), false, false, (p("c"), p("k"), None));
        assert!(e.unwrap_err().contains("--peer-trusted-ca-file"));
        let ok = TlsFiles::from_flags((None, None, None), false, false, (None, None, None));
        assert!(!ok.unwrap().any());
    }
}
