//! The client-side TLS flags `shoalctl` and `shoal-bench` share (`--cacert`, `--cert`, `--key`,
//! `--insecure-skip-tls-verify`), flattened into each one's command line. Included by path in
//! both binaries (not a module of shoal-std: they depend on shoal-client only).

use std::path::PathBuf;

use clap::Args;
use shoal_client::{TlsConfig, TlsOptions};

/// What a client trusts and presents, from its flags or their `SHOAL_*` variables. The ids
/// are `tls_*` so that no subcommand's own `--key` or `--cert` can clash with them.
#[derive(Args, Clone, Debug, Default)]
pub struct ClientTlsFlags {
    /// CA certificate (PEM) to check the nodes' certificates against; turns TLS on.
    #[arg(
        long,
        id = "tls_cacert",
        global = true,
        env = "SHOAL_CACERT",
        value_name = "FILE"
    )]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM), for nodes with --client-cert-auth.
    #[arg(
        long,
        id = "tls_cert",
        global = true,
        env = "SHOAL_CERT",
        value_name = "FILE"
    )]
    pub cert: Option<PathBuf>,
    /// Key (PEM) of --cert.
    #[arg(
        long,
        id = "tls_key",
        global = true,
        env = "SHOAL_KEY",
        value_name = "FILE"
    )]
    pub key: Option<PathBuf>,
    /// TLS without checking the nodes' certificates (labs only: anyone in between can read and
    /// change everything).
    #[arg(long, global = true, env = "SHOAL_INSECURE_SKIP_TLS_VERIFY")]
    pub insecure_skip_tls_verify: bool,
}

impl ClientTlsFlags {
    /// A flag that turns TLS on is given (`--key` goes with `--cert`).
    pub fn any(&self) -> bool {
        self.cacert.is_some() || self.cert.is_some() || self.insecure_skip_tls_verify
    }

    /// The client TLS configuration the flags describe; an error names the flag at fault.
    pub fn config(&self) -> Result<TlsConfig, String> {
        TlsConfig::new(&TlsOptions {
            ca_file: self.cacert.clone(),
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            insecure_skip_verify: self.insecure_skip_tls_verify,
        })
    }
}
