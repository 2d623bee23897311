//! TLS configurations (rustls with the ring provider): the server and client configurations of
//! the manager and the workers, certificates that can be swapped at renewal without a restart
//! ([`CertStore`]), and the verifier that checks a peer's role name whatever address it was reached
//! at ([`ClusterServerVerifier`]).
//!
//! Every listener asks for a client certificate but also admits clients without one (users with
//! tokens, `GET /health`): a certificate that is presented must chain to the cluster CA, or the
//! handshake fails. Which routes need which certificate is the gates' business (the worker's gate
//! admits only the manager's certificate; the manager's checks a node's name on its heartbeats).

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::wire::NodeCertificate;

/// A client configuration builder with the ring provider and the default protocol versions.
pub fn client_builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
}

/// A server configuration builder with the ring provider and the default protocol versions.
pub fn server_builder() -> rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier> {
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
}

/// The ring crypto provider.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in a PEM text.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid certificate PEM: {e}"))
}

fn certified_key(c: &NodeCertificate) -> Result<Arc<CertifiedKey>, String> {
    let certs = certs_from_pem(&c.cert)?;
    if certs.is_empty() {
        return Err("the certificate PEM holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(c.key.as_bytes())
        .map_err(|e| format!("invalid private key PEM: {e}"))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("unusable private key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

/// This process's certificate, swapped in place at renewal: listeners and clients built on it
/// present the new one from their next handshake on.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    /// A store holding `c`.
    pub fn new(c: &NodeCertificate) -> Result<Arc<CertStore>, String> {
        Ok(Arc::new(CertStore {
            current: RwLock::new(certified_key(c)?),
        }))
    }

    /// Replaces the certificate.
    pub fn set(&self, c: &NodeCertificate) -> Result<(), String> {
        let k = certified_key(c)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = k;
        Ok(())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl rustls::server::ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl rustls::client::ResolvesClientCert for CertStore {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies a server's certificate against the cluster CA and a fixed role name (the manager's,
/// or any node's) instead of the host of the URL, which may be any address of the peer.
#[derive(Debug)]
pub struct ClusterServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any server certificate: used once, to fetch the CA at join, whose fingerprint is then
/// checked against the join token before anything secret is sent.
#[derive(Debug)]
struct FirstContact(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for FirstContact {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
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

/// A client that trusts any server, for fetching the CA at first contact only.
pub fn first_contact_client() -> Arc<rustls::ClientConfig> {
    Arc::new(
        client_builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(FirstContact(provider())))
            .with_no_client_auth(),
    )
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(ca_pem)? {
        roots
            .add(c)
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the CA PEM holds no certificate".into());
    }
    Ok(Arc::new(roots))
}

/// A client configuration that trusts `ca_pem` and expects servers named `name` (see
/// [`crate::security::ca`]), presenting `cert` when given (mutual TLS).
pub fn client_config(
    ca_pem: &str,
    name: &str,
    cert: Option<Arc<CertStore>>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let inner = WebPkiServerVerifier::builder_with_provider(roots(ca_pem)?, provider())
        .build()
        .map_err(|e| format!("cannot build a certificate verifier: {e}"))?;
    let name = ServerName::try_from(name.to_string())
        .map_err(|e| format!("{name:?} is not a server name: {e}"))?;
    let b = client_builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ClusterServerVerifier { inner, name }));
    Ok(Arc::new(match cert {
        Some(c) => b.with_client_cert_resolver(c),
        None => b.with_no_client_auth(),
    }))
}

/// A server configuration presenting `cert`, asking clients for a certificate that chains to
/// `ca_pem` and admitting those without one (the gates decide what they may do).
pub fn server_config(
    ca_pem: &str,
    cert: Arc<CertStore>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("cannot build a client verifier: {e}"))?;
    Ok(Arc::new(
        server_builder()
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(cert),
    ))
}

/// Whether a peer certificate (already verified against the CA by the handshake) carries `name`.
pub fn cert_has_name(der: &[u8], name: &str) -> bool {
    let der = CertificateDer::from(der);
    let Ok(cert) = webpki::EndEntityCert::try_from(&der) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}
