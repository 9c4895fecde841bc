//! X.509 certificates: the service identity, node certificates it endorses, and the
//! self-signed member/user identities that `consort keygen` writes (as CCF's keygenerator.sh).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SubjectPublicKeyInfo,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};
use x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA384;
use x509_parser::prelude::{parse_x509_certificate, X509Certificate};

use crate::{CryptoError, NodeKey};

/// Curves accepted for member and user identities (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    Secp384r1,
    Secp256r1,
}

impl std::str::FromStr for Curve {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "secp384r1" => Ok(Curve::Secp384r1),
            "secp256r1" => Ok(Curve::Secp256r1),
            other => Err(format!("unsupported curve {other:?}: use secp384r1 or secp256r1")),
        }
    }
}

fn gen_err(e: impl std::fmt::Display) -> CryptoError {
    CryptoError::Generate(e.to_string())
}

fn params_with_cn(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params
}

/// Makes a fresh key and a self-signed certificate for a member or user called `name`.
/// Returns `(private key PEM, certificate PEM)`.
pub fn identity_cert(name: &str, curve: Curve) -> Result<(String, String), CryptoError> {
    let alg = match curve {
        Curve::Secp384r1 => &PKCS_ECDSA_P384_SHA384,
        Curve::Secp256r1 => &PKCS_ECDSA_P256_SHA256,
    };
    let key = KeyPair::generate_for(alg).map_err(gen_err)?;
    let cert = params_with_cn(name).self_signed(&key).map_err(gen_err)?;
    Ok((key.serialize_pem(), cert.pem()))
}

/// The service identity: a self-signed P-384 CA certificate (SPEC §1).
pub fn self_signed_service_cert(key: &NodeKey, cn: &str) -> Result<String, CryptoError> {
    let kp = KeyPair::from_pem(&key.to_pem()).map_err(gen_err)?;
    let mut params = params_with_cn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    Ok(params.self_signed(&kp).map_err(gen_err)?.pem())
}

/// A node certificate for `node_public_key_der` (SPKI), signed by the service identity, valid
/// as a TLS server certificate for `hosts` (DNS names or IP addresses).
pub fn endorse_node_cert(
    node_public_key_der: &[u8],
    cn: &str,
    hosts: &[String],
    service_cert_pem: &str,
    service_key: &NodeKey,
) -> Result<String, CryptoError> {
    let service_kp = KeyPair::from_pem(&service_key.to_pem()).map_err(gen_err)?;
    let issuer = Issuer::from_ca_cert_pem(service_cert_pem, service_kp).map_err(gen_err)?;
    let mut params = params_with_cn(cn);
    params.subject_alt_names = subject_alt_names(hosts)?;
    params.use_authority_key_identifier_extension = true;
    let spki = SubjectPublicKeyInfo::from_der(node_public_key_der).map_err(gen_err)?;
    Ok(params.signed_by(&spki, &issuer).map_err(gen_err)?.pem())
}

/// The previous service identity endorsed by the current one after a recovery: a certificate
/// with the previous identity's subject and public key, issued (signed) by the current service
/// identity. Whoever trusts the current identity can check a node certificate the previous one
/// endorsed against it ([`verify_endorsement`]), hence a receipt from before the recovery.
pub fn endorse_previous_identity(previous_cert_pem: &str, service_cert_pem: &str, service_key: &NodeKey) -> Result<String, CryptoError> {
    let previous = ParsedCert::from_pem(previous_cert_pem)?;
    let service_kp = KeyPair::from_pem(&service_key.to_pem()).map_err(gen_err)?;
    let issuer = Issuer::from_ca_cert_pem(service_cert_pem, service_kp).map_err(gen_err)?;
    let der = cert_der_from_pem(previous_cert_pem)?;
    let (_, parsed) = parse_x509_certificate(&der).map_err(|e| CryptoError::Certificate(e.to_string()))?;
    // Service identities (ours, as rcgen writes them) carry only a common name.
    let cn = parsed.subject().iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or_default().to_owned();
    let mut params = params_with_cn(&cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let spki = SubjectPublicKeyInfo::from_der(&previous.public_key_der).map_err(gen_err)?;
    Ok(params.signed_by(&spki, &issuer).map_err(gen_err)?.pem())
}

/// Sets a validity period as CCF's governance gives it: from `valid_from` (X.509 time, as
/// CCF's tools write it: `YYYYMMDDHHMMSSZ` or `YYMMDDHHMMSSZ`; RFC 3339 `YYYY-MM-DDTHH:MM:SSZ`
/// too) for `days` days, Not After being one second before the end (RFC 5280's inclusive bound).
fn set_validity(params: &mut CertificateParams, valid_from: &str, days: u64) -> Result<(), CryptoError> {
    let bad = || CryptoError::Certificate(format!("valid_from {valid_from:?} is not a UTC time (YYYYMMDDHHMMSSZ)"));
    let digits: String = valid_from.chars().filter(char::is_ascii_digit).collect();
    let (year, rest) = match digits.len() {
        14 => (digits[..4].parse::<i32>().map_err(|_| bad())?, &digits[4..]),
        // UTCTime: 50-99 are 19xx, as RFC 5280 says.
        12 => {
            let yy = digits[..2].parse::<i32>().map_err(|_| bad())?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        _ => return Err(bad()),
    };
    let field = |i: usize| rest[i..i + 2].parse::<u8>().map_err(|_| bad());
    let (month, day, hour, minute, second) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !valid_from.ends_with('Z') || !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    if days == 0 {
        return Err(CryptoError::Certificate("a validity period is at least one day".into()));
    }
    let start = rcgen::date_time_ymd(year, month, day)
        + std::time::Duration::from_secs(u64::from(hour) * 3600 + u64::from(minute) * 60 + u64::from(second));
    params.not_before = start;
    params.not_after = start + std::time::Duration::from_secs(days.saturating_mul(86_400) - 1);
    Ok(())
}

/// CCF's `ccf.network.generateEndorsedCertificate`: a certificate for the key and subject of
/// a node's certificate signing request (its signature checked), signed by the service
/// identity, valid from `valid_from` for `days` days.
pub fn endorse_csr(
    csr_pem: &str,
    valid_from: &str,
    days: u64,
    service_cert_pem: &str,
    service_key: &NodeKey,
) -> Result<String, CryptoError> {
    let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| CryptoError::Certificate(format!("the certificate signing request: {e}")))?;
    let service_kp = KeyPair::from_pem(&service_key.to_pem()).map_err(gen_err)?;
    let issuer = Issuer::from_ca_cert_pem(service_cert_pem, service_kp).map_err(gen_err)?;
    let mut params = csr.params;
    set_validity(&mut params, valid_from, days)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    Ok(params.signed_by(&csr.public_key, &issuer).map_err(gen_err)?.pem())
}

/// A certificate signing request for `key` with common name `cn` and `hosts` as its subject
/// alternative names (what a joining node hands the service, as in CCF).
pub fn node_csr(key: &NodeKey, cn: &str, hosts: &[String]) -> Result<String, CryptoError> {
    let kp = KeyPair::from_pem(&key.to_pem()).map_err(gen_err)?;
    let mut params = params_with_cn(cn);
    params.subject_alt_names = subject_alt_names(hosts)?;
    params.serialize_request(&kp).map_err(gen_err)?.pem().map_err(gen_err)
}

/// A SubjectPublicKeyInfo (DER) as a `PUBLIC KEY` PEM block (LF line endings), as CCF's
/// `nodes.info` records a node's key.
pub fn public_key_pem(spki_der: &[u8]) -> String {
    pem::encode_config(&pem::Pem::new("PUBLIC KEY", spki_der.to_vec()), pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))
}

/// The SubjectPublicKeyInfo (DER) of a certificate signing request whose signature verifies.
pub fn csr_public_key(csr_pem: &str) -> Result<Vec<u8>, CryptoError> {
    use x509_parser::prelude::FromDer;
    let bad = |e: String| CryptoError::Certificate(format!("the certificate signing request: {e}"));
    let (_, block) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents).map_err(|e| bad(e.to_string()))?;
    csr.verify_signature().map_err(|e| bad(format!("its signature does not verify ({e})")))?;
    Ok(csr.certification_request_info.subject_pki.raw.to_vec())
}

/// CCF's `ccf.network.generateNetworkCertificate`: the service identity re-issued (same key,
/// same subject) for a new validity period.
pub fn renew_service_cert(service_cert_pem: &str, service_key: &NodeKey, valid_from: &str, days: u64) -> Result<String, CryptoError> {
    let der = cert_der_from_pem(service_cert_pem)?;
    let (_, parsed) = parse_x509_certificate(&der).map_err(|e| CryptoError::Certificate(e.to_string()))?;
    let cn = parsed.subject().iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or_default().to_owned();
    let kp = KeyPair::from_pem(&service_key.to_pem()).map_err(gen_err)?;
    let mut params = params_with_cn(&cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, valid_from, days)?;
    Ok(params.self_signed(&kp).map_err(gen_err)?.pem())
}

fn subject_alt_names(hosts: &[String]) -> Result<Vec<SanType>, CryptoError> {
    hosts
        .iter()
        .map(|h| match h.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => h.clone().try_into().map(SanType::DnsName).map_err(gen_err),
        })
        .collect()
}

/// The DER of the first certificate in a PEM text.
pub fn cert_der_from_pem(pem: &str) -> Result<Vec<u8>, CryptoError> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| CryptoError::Pem(e.to_string()))?;
    if parsed.label != "CERTIFICATE" {
        return Err(CryptoError::Pem(format!("expected a CERTIFICATE, found {}", parsed.label)));
    }
    Ok(parsed.contents)
}

pub fn cert_pem_from_der(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A member's or user's id: lowercase hex SHA-256 of the certificate DER (SPEC §1).
pub fn id_of_cert_der(der: &[u8]) -> String {
    crate::sha256_hex(der)
}

/// A node's id: lowercase hex SHA-256 of its public key's SubjectPublicKeyInfo DER (SPEC §1).
pub fn node_id_of_public_key(spki_der: &[u8]) -> String {
    crate::sha256_hex(spki_der)
}

/// The parts of a certificate that Consort looks at.
#[derive(Debug, Clone)]
pub struct ParsedCert {
    pub der: Vec<u8>,
    pub public_key_der: Vec<u8>,
    pub subject: String,
}

impl ParsedCert {
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let x509 = parse_strict(der)?;
        Ok(ParsedCert { der: der.to_vec(), public_key_der: x509.public_key().raw.to_vec(), subject: x509.subject().to_string() })
    }

    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        Self::from_der(&cert_der_from_pem(pem)?)
    }

    pub fn id(&self) -> String {
        id_of_cert_der(&self.der)
    }

    pub fn pem(&self) -> String {
        cert_pem_from_der(&self.der)
    }
}

/// A certificate's validity period: (Not Before, Not After) in seconds since the Unix epoch.
pub fn validity_period(der: &[u8]) -> Result<(i64, i64), CryptoError> {
    let x509 = parse_strict(der)?;
    let v = x509.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

fn parse_strict(der: &[u8]) -> Result<X509Certificate<'_>, CryptoError> {
    let (rest, x509) = parse_x509_certificate(der).map_err(|e| CryptoError::Certificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CryptoError::Certificate("trailing bytes after the certificate".into()));
    }
    Ok(x509)
}

/// Checks that `cert_der` was signed by the key of `issuer_der` (ecdsa-with-SHA384, which is how
/// the service identity signs node certificates).
pub fn verify_endorsement(cert_der: &[u8], issuer_der: &[u8]) -> Result<(), CryptoError> {
    let cert = parse_strict(cert_der)?;
    let issuer = parse_strict(issuer_der)?;
    if cert.issuer() != issuer.subject() {
        return Err(CryptoError::Signature(format!(
            "certificate issued by {} but the service certificate is {}",
            cert.issuer(),
            issuer.subject()
        )));
    }
    if cert.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA384 {
        return Err(CryptoError::Signature(format!("unsupported endorsement algorithm {}", cert.signature_algorithm.algorithm)));
    }
    let tbs: &[u8] = cert.tbs_certificate.as_ref();
    crate::verify_p384_signature(issuer.public_key().raw, tbs, &cert.signature_value.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn governance_endorses_csrs_and_renews_the_service_identity_for_given_periods() {
        let service_key = NodeKey::generate();
        let service = self_signed_service_cert(&service_key, "Consort Service").expect("service");
        let node_key = NodeKey::generate();
        let csr = node_csr(&node_key, "Consort Node", &["127.0.0.1".into(), "node.example".into()]).expect("csr");
        assert_eq!(csr_public_key(&csr).expect("key"), node_key.public_key_der(), "the CSR carries the node's key");
        let der = |pem: &str| cert_der_from_pem(pem).expect("der");
        // 2025-01-01T00:00:00Z, for ten days: Not After is one second before the tenth day ends.
        let start = 1_735_689_600;
        for from in ["20250101000000Z", "250101000000Z", "2025-01-01T00:00:00Z"] {
            let cert = endorse_csr(&csr, from, 10, &service, &service_key).expect("endorsed");
            assert_eq!(validity_period(&der(&cert)).expect("validity"), (start, start + 10 * 86_400 - 1), "{from}");
            verify_endorsement(&der(&cert), &der(&service)).expect("signed by the service identity");
            assert_eq!(ParsedCert::from_pem(&cert).expect("cert").public_key_der, node_key.public_key_der(), "the CSR's key");
        }
        let refusals = [
            ("20250101000000", 10, "UTC"),
            ("2025-13-01T00:00:00Z", 10, "UTC"),
            ("yesterday", 10, "UTC"),
            ("20250101000000Z", 0, "one day"),
        ];
        for (from, days, why) in refusals {
            let err = endorse_csr(&csr, from, days, &service, &service_key).expect_err(from).to_string();
            assert!(err.contains(why), "{from}: {err}");
        }
        let mut tampered = csr.clone().into_bytes();
        let at = tampered.len() / 2;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        assert!(endorse_csr(&String::from_utf8_lossy(&tampered), "20250101000000Z", 1, &service, &service_key).is_err(), "a damaged CSR");
        assert!(csr_public_key(&String::from_utf8_lossy(&tampered)).is_err());

        let renewed = renew_service_cert(&service, &service_key, "20250101000000Z", 365).expect("renewed");
        assert_eq!(validity_period(&der(&renewed)).expect("validity"), (start, start + 365 * 86_400 - 1));
        let (old, new) = (ParsedCert::from_pem(&service).expect("old"), ParsedCert::from_pem(&renewed).expect("new"));
        assert_eq!((old.public_key_der, old.subject), (new.public_key_der, new.subject), "same key, same subject");
        let node = endorse_csr(&csr, "20250101000000Z", 1, &service, &service_key).expect("node");
        verify_endorsement(&der(&node), &der(&renewed)).expect("the renewed identity still vouches for what the old one signed");
    }

    #[test]
    fn a_recovered_service_endorses_the_previous_identity() {
        let (old_key, new_key) = (NodeKey::generate(), NodeKey::generate());
        let old = self_signed_service_cert(&old_key, "Consort Service").expect("old");
        let new = self_signed_service_cert(&new_key, "Consort Service").expect("new");
        let node_key = NodeKey::generate();
        let old_node = endorse_node_cert(&node_key.public_key_der(), "n", &[], &old, &old_key).expect("node");
        let der = |pem: &str| cert_der_from_pem(pem).expect("der");
        assert!(verify_endorsement(&der(&old_node), &der(&new)).is_err(), "the new identity did not endorse the old node");
        let endorsement = endorse_previous_identity(&old, &new, &new_key).expect("endorse");
        verify_endorsement(&der(&endorsement), &der(&new)).expect("the new identity signed the endorsement");
        verify_endorsement(&der(&old_node), &der(&endorsement)).expect("the old node checks against the endorsement");
        let forged = endorse_previous_identity(&old, &new, &NodeKey::generate()).expect("endorse with another key");
        assert!(verify_endorsement(&der(&forged), &der(&new)).is_err(), "signed by a key that is not the new identity's");
    }

    #[test]
    fn service_endorses_node_and_ids_are_stable() {
        let service_key = NodeKey::generate();
        let service_pem = self_signed_service_cert(&service_key, "Consort Service").expect("ca");
        let node_key = NodeKey::generate();
        let node_pem = endorse_node_cert(
            &node_key.public_key_der(),
            "Consort Node",
            &["127.0.0.1".into(), "localhost".into()],
            &service_pem,
            &service_key,
        )
        .expect("node cert");
        let service_der = cert_der_from_pem(&service_pem).expect("der");
        let node_der = cert_der_from_pem(&node_pem).expect("der");
        verify_endorsement(&node_der, &service_der).expect("endorsed");
        // A certificate from another service identity does not verify.
        let other_key = NodeKey::generate();
        let other_pem = self_signed_service_cert(&other_key, "Consort Service").expect("ca");
        let other_der = cert_der_from_pem(&other_pem).expect("der");
        assert!(verify_endorsement(&node_der, &other_der).is_err());
        let parsed = ParsedCert::from_der(&node_der).expect("parse");
        assert_eq!(parsed.public_key_der, node_key.public_key_der());
        assert_eq!(parsed.id().len(), 64);
        assert_eq!(cert_der_from_pem(&parsed.pem()).expect("round trip"), node_der);
    }

    #[test]
    fn identities_on_both_curves() {
        for curve in [Curve::Secp384r1, Curve::Secp256r1] {
            let (key, cert) = identity_cert("member0", curve).expect("identity");
            assert!(key.contains("PRIVATE KEY"));
            ParsedCert::from_pem(&cert).expect("parses");
        }
        assert!(ParsedCert::from_pem("not a cert").is_err());
    }
}

/// The kinds of public key that signed requests and tokens use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    P256,
    P384,
    Rsa,
    Other,
}

/// What kind of key a SubjectPublicKeyInfo holds, by its algorithm and curve OIDs.
pub(crate) fn key_kind(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> KeyKind {
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
    match (spki.algorithm.algorithm.to_id_string().as_str(), curve.as_deref()) {
        ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => KeyKind::P256,
        ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => KeyKind::P384,
        ("1.2.840.113549.1.1.1", _) => KeyKind::Rsa,
        _ => KeyKind::Other,
    }
}
