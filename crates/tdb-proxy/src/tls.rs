//! The proxy's TLS certificate: the operator's (`tls_cert` and `tls_key`), or one tdb makes on
//! first start: a private CA (`ca.crt`, so clients can use `sslmode=verify-full`) and a server
//! certificate it signs for the hosts clients are told to connect to.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Where the generated files live, inside the data dir.
pub struct GeneratedTls {
    pub dir: PathBuf,
}

impl GeneratedTls {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    fn hosts(&self) -> PathBuf {
        self.dir.join("server.hosts")
    }

    /// Makes the CA on first use, and the server certificate whenever the hosts it must cover
    /// change. Returns the certificate and key paths.
    pub fn ensure(&self, hosts: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        if !self.ca_cert().exists() || !self.ca_key().exists() {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params
                .distinguished_name
                .push(DnType::CommonName, "tdb proxy CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_after = rcgen::date_time_ymd(2046, 1, 1);
            let cert = params.self_signed(&key)?;
            write_file(&self.ca_key(), key.serialize_pem().as_bytes(), 0o600)?;
            write_file(&self.ca_cert(), cert.pem().as_bytes(), 0o644)?;
            let _ = std::fs::remove_file(self.hosts());
        }
        let wanted = hosts.join("\n");
        let current = std::fs::read_to_string(self.hosts()).unwrap_or_default();
        if current != wanted || !self.cert().exists() || !self.key().exists() {
            let ca_key = KeyPair::from_pem(&std::fs::read_to_string(self.ca_key())?)
                .context("reading the proxy CA key")?;
            let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
            ca_params
                .distinguished_name
                .push(DnType::CommonName, "tdb proxy CA");
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let issuer = Issuer::new(ca_params, ca_key);
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(hosts.to_vec())?;
            params.distinguished_name.push(
                DnType::CommonName,
                hosts.first().map_or("tdb", |h| h.as_str()),
            );
            params.not_after = rcgen::date_time_ymd(2046, 1, 1);
            let cert = params.signed_by(&key, &issuer)?;
            write_file(&self.key(), key.serialize_pem().as_bytes(), 0o600)?;
            write_file(&self.cert(), cert.pem().as_bytes(), 0o644)?;
            write_file(&self.hosts(), wanted.as_bytes(), 0o644)?;
        }
        Ok((self.cert(), self.key()))
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A TLS acceptor for a PEM certificate chain and key.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the key {}", key.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
