//! `volley certificates`: a CA of its own and a certificate it signed for the
//! controller, for a cluster whose controller serves HTTPS (issue 16): the
//! controller takes `controller.crt`/`controller.key`, invokers and clients
//! trust `ca.crt` (`--ca-file`). `volley slurm up` makes the same set for
//! its allocation.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::roles::create_file;
use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The files a set holds, in its directory.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const CERT: &str = "controller.crt";
pub const KEY: &str = "controller.key";

#[derive(Args)]
pub struct CertificatesArgs {
    /// The directory to write ca.crt, ca.key, controller.crt and controller.key into.
    #[arg(long)]
    out: PathBuf,
    /// A host name or IP address clients reach the controller at; repeatable
    /// (localhost, 127.0.0.1 and this machine's name are always included).
    #[arg(long = "host", value_name = "NAME")]
    hosts: Vec<String>,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 365)]
    days: u32,
}

impl CertificatesArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let made = make(&self.out, &self.hosts, self.days)?;
        eprintln!(
            "wrote {} (give the controller --tls-cert {} --tls-key {}; invokers and clients --ca-file {}), valid for: {}",
            self.out.display(),
            made.cert.display(),
            made.key.display(),
            made.ca.display(),
            made.hosts.join(", ")
        );
        Ok(())
    }
}

/// Where a set was written, and the names its certificate covers.
pub struct Made {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub hosts: Vec<String>,
}

/// Writes a new CA and a controller certificate for `hosts` (and this
/// machine's names) into `dir`; refuses to replace a set already there.
pub fn make(dir: &Path, hosts: &[String], days: u32) -> anyhow::Result<Made> {
    if days == 0 {
        anyhow::bail!("--days must be at least 1");
    }
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
    names.push(super::roles::this_host());
    names.extend(hosts.iter().map(|h| h.trim().to_string()));
    names.retain(|n| !n.is_empty());
    names.dedup();
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    for file in [CA_CERT, CA_KEY, CERT, KEY] {
        if dir.join(file).exists() {
            anyhow::bail!(
                "{} already exists: its clients trust that CA; remove the old set or choose another --out",
                dir.join(file).display()
            );
        }
    }
    let now = std::time::SystemTime::now();
    let until = now + std::time::Duration::from_secs(u64::from(days) * 86_400);

    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.distinguished_name = named("Volley cluster CA");
    ca.not_before = now.into();
    ca.not_after = until.into();
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut server = CertificateParams::new(names.clone()).context("a host name the certificate cannot carry")?;
    server.distinguished_name = named("Volley controller");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // ECDSA keys sign; they never encipher.
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.not_before = now.into();
    server.not_after = until.into();
    let server_key = KeyPair::generate()?;
    let issuer = Issuer::new(ca, ca_key);
    let server_cert = server.signed_by(&server_key, &issuer)?;

    create_file(&dir.join(CA_CERT), &ca_cert.pem(), 0o644)?;
    create_file(&dir.join(CA_KEY), &issuer.key().serialize_pem(), 0o600)?;
    create_file(&dir.join(CERT), &server_cert.pem(), 0o644)?;
    create_file(&dir.join(KEY), &server_key.serialize_pem(), 0o600)?;
    Ok(Made { ca: dir.join(CA_CERT), cert: dir.join(CERT), key: dir.join(KEY), hosts: names })
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}
