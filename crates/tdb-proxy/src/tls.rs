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

/// The proxy's side of TLS: the acceptor, and the channel-binding data its certificate gives
/// SCRAM-SHA-256-PLUS.
#[derive(Clone)]
pub struct ServerTls {
    pub acceptor: TlsAcceptor,
    /// `tls-server-end-point` (RFC 5929) of the certificate; `None` when its signature has no
    /// hash to use (Ed25519, RSA-PSS), and then only SCRAM-SHA-256 is offered.
    pub end_point: Option<Arc<[u8]>>,
}

/// TLS for a PEM certificate chain and key.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<ServerTls> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let end_point = chain.first().and_then(|c| end_point(c)).map(Arc::from);
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the key {}", key.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not match")?;
    Ok(ServerTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        end_point,
    })
}

/// RFC 5929's `tls-server-end-point` for a DER certificate: its hash under the hash function of
/// its signature algorithm, SHA-256 in place of MD5 and SHA-1; `None` for an algorithm without
/// one (or a certificate that does not parse).
pub fn end_point(cert: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest;
    const RSA: [u8; 8] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA2: [u8; 7] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    const ECDSA_SHA1: [u8; 7] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    let (certificate, _) = der(cert, 0x30)?;
    let (_, after_tbs) = der(certificate, 0x30)?;
    let (algorithm, _) = der(after_tbs, 0x30)?;
    let (oid, _) = der(algorithm, 0x06)?;
    enum Hash {
        Sha224,
        Sha256,
        Sha384,
        Sha512,
    }
    let hash = match oid {
        // md5, sha1; sha256, sha384, sha512, sha224 WithRSAEncryption.
        [prefix @ .., 4 | 5] if prefix == RSA => Hash::Sha256,
        [prefix @ .., 11] if prefix == RSA => Hash::Sha256,
        [prefix @ .., 12] if prefix == RSA => Hash::Sha384,
        [prefix @ .., 13] if prefix == RSA => Hash::Sha512,
        [prefix @ .., 14] if prefix == RSA => Hash::Sha224,
        o if o == ECDSA_SHA1 => Hash::Sha256,
        [prefix @ .., 1] if prefix == ECDSA_SHA2 => Hash::Sha224,
        [prefix @ .., 2] if prefix == ECDSA_SHA2 => Hash::Sha256,
        [prefix @ .., 3] if prefix == ECDSA_SHA2 => Hash::Sha384,
        [prefix @ .., 4] if prefix == ECDSA_SHA2 => Hash::Sha512,
        _ => return None,
    };
    Some(match hash {
        Hash::Sha224 => sha2::Sha224::digest(cert).to_vec(),
        Hash::Sha256 => sha2::Sha256::digest(cert).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(cert).to_vec(),
        Hash::Sha512 => sha2::Sha512::digest(cert).to_vec(),
    })
}

/// One DER element with tag `tag` at the front of `input`: its contents and what follows.
fn der(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = match len0 {
        n if n < 0x80 => (usize::from(n), rest),
        0x81..=0x84 => {
            let n = usize::from(len0 - 0x80);
            let bytes = rest.get(..n)?;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        }
        _ => return None,
    };
    Some((rest.get(..len)?, &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_point_is_the_hash_the_signature_names() {
        use sha2::Digest;
        // rcgen signs with ECDSA P-256 and SHA-256 by default; P-384 uses SHA-384.
        for (alg, len) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, 32),
            (&rcgen::PKCS_ECDSA_P384_SHA384, 48),
        ] {
            let key = KeyPair::generate_for(alg).expect("key");
            let cert = CertificateParams::new(vec!["localhost".into()])
                .expect("params")
                .self_signed(&key)
                .expect("cert");
            let der = cert.der();
            let hash = end_point(der).expect("a hash");
            assert_eq!(hash.len(), len);
            if len == 32 {
                assert_eq!(hash, sha2::Sha256::digest(der).to_vec());
            }
        }
        // Ed25519 names no hash: no channel binding.
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let cert = CertificateParams::new(vec!["localhost".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        assert_eq!(end_point(cert.der()), None);
        assert_eq!(end_point(b"\x30\x03\x02\x01"), None);
    }
}
