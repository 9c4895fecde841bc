//! `isValidX509CertBundle` and `isValidX509CertChain`.
//!
//! A chain is valid when a path leads from its first certificate (the target), through the
//! chain's other certificates as intermediates, to a trusted certificate: each link's issuer name
//! matches the next subject and its signature verifies under the next public key, every
//! intermediate and trust anchor is a CA (basic constraints), and every certificate on the path is
//! inside its validity period now. A target that is itself trusted is valid if it is a CA. The path is at most
//! as long as the chain, so a hostile bundle cannot make the search run away.

use x509_parser::certificate::X509Certificate;
use x509_parser::time::ASN1Time;

/// Every block is a parseable X.509 certificate, and there is at least one.
pub fn is_valid_bundle(pem: &str) -> bool {
    parse_all(pem).is_some_and(|ders| ders.iter().all(|der| x509_parser::parse_x509_certificate(der).is_ok()))
}

fn parse_all(pem: &str) -> Option<Vec<Vec<u8>>> {
    let blocks = super::keys::pem_blocks(pem).ok()?;
    blocks.into_iter().map(|b| (b.tag() == "CERTIFICATE").then(|| b.into_contents())).collect()
}

pub fn is_valid_chain(chain: &str, trusted: &str) -> bool {
    let (Some(chain), Some(trusted)) = (parse_all(chain), parse_all(trusted)) else { return false };
    let (Some(chain_certs), Some(trusted_certs)) = (parse_certs(&chain), parse_certs(&trusted)) else { return false };
    let Some(target) = chain_certs.first() else { return false };
    if trusted_certs.is_empty() {
        return false;
    }
    let now = ASN1Time::now();
    if !target.validity().is_valid_at(now) {
        return false;
    }
    if trusted.iter().any(|t| *t == chain[0]) {
        // A target trusted directly must be a CA, as CCF's check requires of every anchor.
        return is_ca(target);
    }
    let mut current = target;
    for _ in 0..chain_certs.len() {
        if trusted_certs.iter().any(|anchor| issued_by(current, anchor, now)) {
            return true;
        }
        match chain_certs[1..].iter().find(|i| !std::ptr::eq(*i, current) && issued_by(current, i, now)) {
            Some(next) => current = next,
            None => return false,
        }
    }
    false
}

fn parse_certs(ders: &[Vec<u8>]) -> Option<Vec<X509Certificate<'_>>> {
    ders.iter().map(|d| x509_parser::parse_x509_certificate(d).ok().map(|(_, c)| c)).collect()
}

fn is_ca(cert: &X509Certificate) -> bool {
    cert.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca)
}

/// `issuer` is a CA, valid now, named as `cert`'s issuer, and its key verifies `cert`'s signature.
fn issued_by(cert: &X509Certificate, issuer: &X509Certificate, now: ASN1Time) -> bool {
    is_ca(issuer)
        && issuer.validity().is_valid_at(now)
        && cert.issuer() == issuer.subject()
        && cert.verify_signature(Some(issuer.public_key())).is_ok()
}
