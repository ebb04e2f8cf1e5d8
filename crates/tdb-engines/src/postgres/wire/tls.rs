//! TLS toward a server, as libpq's `sslmode` asks: `SSLRequest` first, then a handshake with a
//! certificate check that depends on the mode (none for `prefer`/`require`, the system's roots
//! for `verify-ca`, and the host name too for `verify-full`). Unix sockets never use TLS.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::stream::ServerStream;
use super::{Io, SslMode, Target};
use crate::engine::{EngineError, Result};

/// Asks for TLS when the mode wants it and wraps the stream; plain otherwise.
pub(super) async fn negotiate(mut raw: ServerStream, target: &Target) -> Result<Io> {
    let wants = !matches!(target.ssl, SslMode::Disable | SslMode::Allow);
    if !wants || matches!(raw, ServerStream::Unix(_)) {
        return Ok(Io::Plain(raw));
    }
    let io_error = |e: std::io::Error| EngineError::Connect(e.to_string());
    let mut request = Vec::with_capacity(8);
    request.extend_from_slice(&8u32.to_be_bytes());
    request.extend_from_slice(&80_877_103u32.to_be_bytes());
    raw.write_all(&request).await.map_err(io_error)?;
    let answer = raw.read_u8().await.map_err(io_error)?;
    match (answer, target.ssl) {
        (b'S', mode) => handshake(raw, target, mode).await,
        (b'N', SslMode::Prefer) => Ok(Io::Plain(raw)),
        (b'N', _) => Err(EngineError::Connect(
            "the server does not support TLS, which sslmode requires".into(),
        )),
        _ => Err(EngineError::Connect(
            "unexpected answer to the TLS request".into(),
        )),
    }
}

async fn handshake(raw: ServerStream, target: &Target, mode: SslMode) -> Result<Io> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    let config = match mode {
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots()),
                provider,
            )
            .build()
            .map_err(|e| EngineError::Internal(e.to_string()))?;
            let verifier: Arc<dyn ServerCertVerifier> = if mode == SslMode::VerifyFull {
                verifier
            } else {
                Arc::new(AnyName(verifier))
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth(),
    };
    let name = ServerName::try_from(target.host.clone())
        .map_err(|_| EngineError::Connect(format!("'{}' is not a valid host name", target.host)))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, raw)
        .await
        .map_err(|e| EngineError::Connect(format!("TLS: {e}")))?;
    Ok(Io::Tls(Box::new(tls)))
}

fn roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

/// `prefer` and `require`: encrypted, but any certificate is taken (libpq does the same without
/// a root certificate). The handshake's signatures are still checked.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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

/// `verify-ca`: the chain must lead to a trusted root; the name in it is not checked.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
