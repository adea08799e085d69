//! `shoal-certs`: makes a cluster's certificates without openssl: a CA, member certificates
//! that name their node (URI SAN `shoal://<cluster-id>/node/<node-id>`, plus the hosts peers
//! and clients dial), and client certificates whose common name is the user. Keys are ECDSA
//! P-256, written with mode 600. docs/SECURITY.md gives the same steps with openssl.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Make a Shoal cluster's certificates.
#[derive(Parser, Debug)]
#[command(name = "shoal-certs", version)]
struct Cli {
    #[command(subcommand)]
    what: What,
}

/// How long and from when a certificate is valid.
#[derive(clap::Args, Debug)]
struct Validity {
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// First day it is valid (YYYY-MM-DD) [default: today].
    #[arg(long, value_name = "DATE")]
    valid_from: Option<String>,
}

#[derive(Subcommand, Debug)]
enum What {
    /// A new CA: DIR/ca.pem and DIR/ca-key.pem.
    Ca {
        /// Where to write.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "Shoal cluster CA")]
        name: String,
        #[command(flatten)]
        validity: Validity,
    },
    /// A member's certificate: DIR/node-<id>.pem and DIR/node-<id>-key.pem, for both the raft
    /// port (--peer-cert-file) and the client port (--cert-file).
    Node {
        /// Directory with ca.pem and ca-key.pem.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The cluster id (as shoald's --cluster-id).
        #[arg(long)]
        cluster_id: u64,
        /// The node id (as shoald's --node-id).
        #[arg(long)]
        node_id: u64,
        /// A host name or IP address peers and clients dial this node at (repeat for more)
        /// [default: localhost and 127.0.0.1].
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// Where to write.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        validity: Validity,
    },
    /// A client's certificate: DIR/client-<cn>.pem and DIR/client-<cn>-key.pem; the common
    /// name is who the client is (its user).
    Client {
        /// Directory with ca.pem and ca-key.pem.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The common name (the user).
        #[arg(long)]
        cn: String,
        /// Where to write.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        validity: Validity,
    },
}

impl Validity {
    /// Set `p`'s validity window (an hour back from now by default, for clocks a little off).
    fn apply(&self, p: &mut CertificateParams) -> Result<(), String> {
        p.not_before = match &self.valid_from {
            Some(s) => {
                let bad = || format!("--valid-from {s:?} is not a date (YYYY-MM-DD)");
                let parts: Vec<&str> = s.split('-').collect();
                let [y, m, d] = parts[..] else {
                    return Err(bad());
                };
                let y: i32 = y.parse().map_err(|_| bad())?;
                let m: u8 = m.parse().map_err(|_| bad())?;
                let d: u8 = d.parse().map_err(|_| bad())?;
                if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
                    return Err(bad());
                }
                rcgen::date_time_ymd(y, m, d)
            }
            None => (std::time::SystemTime::now() - std::time::Duration::from_secs(3600)).into(),
        };
        p.not_after = p.not_before + std::time::Duration::from_secs(u64::from(self.days) * 86_400);
        Ok(())
    }
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn load_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>, String> {
    let key = KeyPair::from_pem(&read(&dir.join("ca-key.pem"))?)
        .map_err(|e| format!("{}/ca-key.pem: {e}", dir.display()))?;
    Issuer::from_ca_cert_pem(&read(&dir.join("ca.pem"))?, key)
        .map_err(|e| format!("{}/ca.pem: {e}", dir.display()))
}

fn leaf(
    ca: &Path,
    cn: &str,
    sans: Vec<SanType>,
    usages: Vec<ExtendedKeyUsagePurpose>,
    validity: &Validity,
    out: &Path,
    stem: &str,
) -> Result<(), String> {
    let issuer = load_ca(ca)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.subject_alt_names = sans;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = usages;
    p.use_authority_key_identifier_extension = true;
    validity.apply(&mut p)?;
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = p.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    write(&out.join(format!("{stem}.pem")), &cert.pem(), false)?;
    write(
        &out.join(format!("{stem}-key.pem")),
        &key.serialize_pem(),
        true,
    )
}

fn ia5(s: &str) -> Result<rcgen::string::Ia5String, String> {
    rcgen::string::Ia5String::try_from(s.to_string()).map_err(|e| format!("{s:?}: {e}"))
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.what {
        What::Ca {
            out,
            name,
            validity,
        } => {
            let mut p = CertificateParams::default();
            p.distinguished_name = DistinguishedName::new();
            p.distinguished_name.push(DnType::CommonName, name);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            validity.apply(&mut p)?;
            let key = KeyPair::generate().map_err(|e| e.to_string())?;
            let cert = p.self_signed(&key).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(&out)
                .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
            write(&out.join("ca.pem"), &cert.pem(), false)?;
            write(&out.join("ca-key.pem"), &key.serialize_pem(), true)
        }
        What::Node {
            ca,
            cluster_id,
            node_id,
            mut hosts,
            out,
            validity,
        } => {
            if hosts.is_empty() {
                hosts = vec!["localhost".into(), "127.0.0.1".into()];
            }
            let mut sans = vec![SanType::URI(ia5(&shoal_std::server::tls::member_uri(
                cluster_id, node_id,
            ))?)];
            for h in &hosts {
                sans.push(match h.parse::<IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(ia5(h)?),
                });
            }
            // Both usages: the same certificate serves the raft port (accepting and dialing)
            // and the client port.
            let usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cn = format!("shoal node {node_id}");
            leaf(
                &ca,
                &cn,
                sans,
                usages,
                &validity,
                &out,
                &format!("node-{node_id}"),
            )
        }
        What::Client {
            ca,
            cn,
            out,
            validity,
        } => {
            let usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            leaf(
                &ca,
                &cn,
                Vec::new(),
                usages,
                &validity,
                &out,
                &format!("client-{cn}"),
            )
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal-certs: {e}");
            ExitCode::FAILURE
        }
    }
}
