//! The node's TLS: the certificate it presents (which governance may re-issue) and the
//! client certificates it accepts (any well-formed one; endpoints decide what they mean).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::identity::NodeIdentity;

/// Accepts any well-formed client certificate: TLS proves the client holds its key; which
/// certificates mean something (users, members) is decided per endpoint by its policies.
#[derive(Debug)]
struct CallerCertificates {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for CallerCertificates {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        consort_crypto::ParsedCert::from_der(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate the node presents, which governance may re-issue (CCF's
/// `set_node_certificate_validity`): each handshake gets the current one.
#[derive(Debug)]
pub struct ServedCert {
    key: Arc<dyn rustls::sign::SigningKey>,
    current: std::sync::RwLock<(String, Arc<rustls::sign::CertifiedKey>)>,
}

impl ServedCert {
    pub fn new(identity: &NodeIdentity) -> Result<ServedCert, String> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let key_der = PrivateKeyDer::from_pem_slice(identity.node_key.to_pem().as_bytes()).map_err(|e| format!("node key: {e}"))?;
        let key = provider.key_provider.load_private_key(key_der).map_err(|e| format!("node key: {e}"))?;
        let certified = Self::certified(&key, &identity.node_cert_pem)?;
        Ok(ServedCert { key, current: std::sync::RwLock::new((identity.node_cert_pem.clone(), certified)) })
    }

    fn certified(key: &Arc<dyn rustls::sign::SigningKey>, pem: &str) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
        let cert = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("node certificate: {e}"))?;
        Ok(Arc::new(rustls::sign::CertifiedKey::new(vec![cert], key.clone())))
    }

    /// The certificate presented now (PEM).
    pub fn pem(&self) -> String {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// Presents `pem` from the next handshake on; it must certify this node's key.
    pub fn replace(&self, pem: &str) -> Result<(), String> {
        let parsed = consort_crypto::ParsedCert::from_pem(pem).map_err(|e| e.to_string())?;
        let ours = self.pem();
        let current = consort_crypto::ParsedCert::from_pem(&ours).map_err(|e| e.to_string())?;
        if parsed.public_key_der != current.public_key_der {
            return Err("the certificate is not for this node's key".into());
        }
        let certified = Self::certified(&self.key, pem)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (pem.to_owned(), certified);
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for ServedCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).1.clone())
    }
}

pub fn tls_config(cert: Arc<ServedCert>) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(Arc::new(CallerCertificates { provider }))
        .with_cert_resolver(cert);
    Ok(Arc::new(config))
}
