//! TLS 1.3 to a node's client port (rustls, ring provider): what a client trusts and which
//! certificate it presents ([`TlsOptions`] → [`TlsConfig`]), and the sockets a
//! [`Connection`](crate::connection::Connection) runs over with or without it
//! ([`AsyncSocket`], [`BlockingSocket`]).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::client::TlsStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{
    ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme, StreamOwned,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// What a client trusts and presents (shoalctl's `--cacert`, `--cert`, `--key`,
/// `--insecure-skip-tls-verify`).
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// CA certificates (PEM) the node's certificate must be signed by.
    pub ca_file: Option<PathBuf>,
    /// This client's certificate (PEM), for a node with `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    /// The key (PEM) of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Accept any certificate the node presents (labs only: anyone in the middle can read
    /// and change everything).
    pub insecure_skip_verify: bool,
}

/// A client's TLS configuration, built once from [`TlsOptions`] and shared by connections.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    config: Arc<rustls::ClientConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates (PEM) in `path`, at least one; an error names `what` (the flag that
/// gave the file) and the file.
pub fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let list: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if list.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(list)
}

/// The private key (PEM) in `path`; an error names `what` and the file.
pub fn read_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// The CA certificates (PEM) in `path` as trust roots; an error names `what`, the file, and
/// a certificate that cannot serve as a CA.
pub fn read_roots(path: &Path, what: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(path, what)? {
        roots
            .add(c)
            .map_err(|e| format!("{what} {}: not a usable CA: {e}", path.display()))?;
    }
    Ok(roots)
}

impl TlsConfig {
    /// Read the files `o` names. Without a CA file and without `insecure_skip_verify`
    /// there is nothing to check the node against, which is an error.
    pub fn new(o: &TlsOptions) -> Result<TlsConfig, String> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?;
        let builder = if o.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
        } else {
            let Some(ca) = &o.ca_file else {
                return Err(
                    "TLS needs a CA file (--cacert) to check the node's certificate \
                            against, or --insecure-skip-tls-verify"
                        .into(),
                );
            };
            builder.with_root_certificates(read_roots(ca, "--cacert")?)
        };
        let config = match (&o.cert_file, &o.key_file) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "--cert")?;
                let key = read_key(key, "--key")?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("--cert / --key: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err("--cert needs --key".into()),
            (None, Some(_)) => return Err("--key needs --cert".into()),
        };
        Ok(TlsConfig {
            config: Arc::new(config),
        })
    }

    fn connection(&self, addr: &str) -> io::Result<(ServerName<'static>, ClientConnection)> {
        let name = server_name(addr)?;
        let conn =
            ClientConnection::new(self.config.clone(), name.clone()).map_err(io::Error::other)?;
        Ok((name, conn))
    }
}

/// The name a node's certificate must carry: the host of `host:port` (an IP or a DNS name).
pub fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host} is not a name TLS can check: {e}"),
        )
    })
}

/// `host:port` of an endpoint that may carry a scheme (`https://host:port`, `http://...`).
pub fn strip_scheme(endpoint: &str) -> &str {
    endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .unwrap_or(endpoint)
        .trim_end_matches('/')
}

/// True when an endpoint asks for TLS by its scheme (`https://`, in any case).
pub fn wants_tls(endpoint: &str) -> bool {
    endpoint
        .trim()
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// `--insecure-skip-tls-verify`: any certificate passes, signatures are still checked so the
/// handshake completes as TLS requires.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

type AsyncTls = TlsStream<async_net::TcpStream>;

/// One half of an async connection to a client port: the socket, or its share of the TLS
/// session.
#[derive(Debug)]
pub enum AsyncSocket {
    /// No TLS.
    Tcp(async_net::TcpStream),
    /// The read half of a TLS session (and its socket, to shut it down).
    TlsRead(ReadHalf<AsyncTls>, async_net::TcpStream),
    /// The write half of a TLS session.
    TlsWrite(WriteHalf<AsyncTls>, async_net::TcpStream),
}

impl AsyncSocket {
    /// Open the two halves of a connection on `tcp` to `addr`: with `tls`, after the TLS
    /// handshake.
    pub(crate) async fn open(
        tcp: async_net::TcpStream,
        addr: &str,
        tls: Option<&TlsConfig>,
    ) -> io::Result<(AsyncSocket, AsyncSocket)> {
        let Some(tls) = tls else {
            return Ok((AsyncSocket::Tcp(tcp.clone()), AsyncSocket::Tcp(tcp)));
        };
        let name = server_name(addr)?;
        let connector = futures_rustls::TlsConnector::from(tls.config.clone());
        let stream = connector.connect(name, tcp.clone()).await?;
        let (r, w) = futures_lite::io::split(stream);
        Ok((
            AsyncSocket::TlsWrite(w, tcp.clone()),
            AsyncSocket::TlsRead(r, tcp),
        ))
    }

    /// Shut the socket down both ways.
    pub fn shutdown(&self) -> io::Result<()> {
        match self {
            AsyncSocket::Tcp(s) | AsyncSocket::TlsRead(_, s) | AsyncSocket::TlsWrite(_, s) => {
                s.shutdown(Shutdown::Both)
            }
        }
    }
}

fn wrong_half() -> io::Error {
    io::Error::other("this half of the connection does not go that way")
}

impl AsyncRead for AsyncSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AsyncSocket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            AsyncSocket::TlsRead(r, _) => Pin::new(r).poll_read(cx, buf),
            AsyncSocket::TlsWrite(..) => Poll::Ready(Err(wrong_half())),
        }
    }
}

impl AsyncWrite for AsyncSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AsyncSocket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            AsyncSocket::TlsWrite(w, _) => Pin::new(w).poll_write(cx, buf),
            AsyncSocket::TlsRead(..) => Poll::Ready(Err(wrong_half())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AsyncSocket::Tcp(s) => Pin::new(s).poll_flush(cx),
            AsyncSocket::TlsWrite(w, _) => Pin::new(w).poll_flush(cx),
            AsyncSocket::TlsRead(..) => Poll::Ready(Ok(())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AsyncSocket::Tcp(s) => Pin::new(s).poll_close(cx),
            AsyncSocket::TlsWrite(w, _) => Pin::new(w).poll_close(cx),
            AsyncSocket::TlsRead(..) => Poll::Ready(Ok(())),
        }
    }
}

/// One half of a blocking connection: the socket, or a share of its TLS session. Both halves
/// of a TLS connection take turns on one session, so they belong to one thread's loop (write,
/// then read), as shoal-bench uses them.
#[derive(Debug)]
pub enum BlockingSocket {
    /// No TLS.
    Tcp(TcpStream),
    /// A share of the TLS session (and the socket, for timeouts and shutdown).
    Tls(
        Arc<Mutex<StreamOwned<ClientConnection, TcpStream>>>,
        TcpStream,
    ),
}

impl BlockingSocket {
    /// The two halves of a connection on `tcp` to `addr`: with `tls`, after the handshake.
    pub(crate) fn open(
        tcp: TcpStream,
        addr: &str,
        tls: Option<&TlsConfig>,
    ) -> io::Result<(BlockingSocket, BlockingSocket)> {
        let Some(tls) = tls else {
            return Ok((
                BlockingSocket::Tcp(tcp.try_clone()?),
                BlockingSocket::Tcp(tcp),
            ));
        };
        let (_, mut conn) = tls.connection(addr)?;
        let mut sock = tcp.try_clone()?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        let shared = Arc::new(Mutex::new(StreamOwned::new(conn, sock)));
        Ok((
            BlockingSocket::Tls(shared.clone(), tcp.try_clone()?),
            BlockingSocket::Tls(shared, tcp),
        ))
    }

    /// The socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            BlockingSocket::Tcp(s) | BlockingSocket::Tls(_, s) => s,
        }
    }
}

impl Read for BlockingSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BlockingSocket::Tcp(s) => s.read(buf),
            BlockingSocket::Tls(t, _) => t.lock().expect("tls session lock").read(buf),
        }
    }
}

impl Write for BlockingSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BlockingSocket::Tcp(s) => s.write(buf),
            BlockingSocket::Tls(t, _) => t.lock().expect("tls session lock").write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            BlockingSocket::Tcp(s) => s.flush(),
            BlockingSocket::Tls(t, _) => t.lock().expect("tls session lock").flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_stripped_and_https_asks_for_tls() {
        assert_eq!(strip_scheme("https://10.0.0.1:7002/"), "10.0.0.1:7002");
        assert_eq!(strip_scheme("http://a:1"), "a:1");
        assert_eq!(strip_scheme("a:1"), "a:1");
        assert!(wants_tls("https://a:1") && wants_tls(" HTTPS://a:1") && !wants_tls("a:1"));
    }

    #[test]
    fn an_https_endpoint_needs_a_tls_configuration() {
        use crate::{Client, ClientConfig, ClientError};
        let config = ClientConfig::new(["https://127.0.0.1:7002"]);
        match Client::new(config.clone()) {
            Err(ClientError::BadRequest { message }) => {
                assert!(message.contains("asks for TLS"), "{message}")
            }
            other => panic!("an https:// endpoint without TLS was taken: {other:?}"),
        }
        let tls = TlsConfig::new(&TlsOptions {
            insecure_skip_verify: true,
            ..TlsOptions::default()
        })
        .unwrap();
        assert!(Client::new(config.with_tls(tls)).is_ok());
    }

    #[test]
    fn tls_without_a_ca_or_the_insecure_switch_is_refused() {
        let e = TlsConfig::new(&TlsOptions::default()).unwrap_err();
        assert!(e.contains("--cacert"), "{e}");
        assert!(TlsConfig::new(&TlsOptions {
            insecure_skip_verify: true,
            ..TlsOptions::default()
        })
        .is_ok());
    }
}
