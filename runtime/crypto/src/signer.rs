//! Signing governance requests as a member, the way CCF's `ccf_cose_sign1` does: a tagged
//! COSE_Sign1 with `alg` ES256 or ES384 (from the member's curve), `kid` = member id, and the
//! `ccf.gov.msg.*` protected parameters. Used by `consort gov`, the sandbox and the tests.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING};
use x509_parser::prelude::parse_x509_certificate;

use crate::cert::{key_kind, KeyKind};
use crate::cose::{sign1, Param, ES256, ES384};
use crate::{cert_der_from_pem, id_of_cert_der, CryptoError};

/// A member's (or user's) private key and certificate, ready to sign governance requests.
pub struct GovSigner {
    id: String,
    alg: i64,
    key: EcdsaKeyPair,
}

/// What a request says about itself, as CCF's protected header carries it.
pub struct GovMessage<'a> {
    /// `ccf.gov.msg.type`: proposal, ballot, withdrawal, ack, state_digest, ...
    pub msg_type: &'a str,
    /// `ccf.gov.msg.proposal_id`, for ballots and withdrawals.
    pub proposal_id: Option<&'a str>,
    /// `ccf.gov.msg.created_at`, seconds since the Unix epoch.
    pub created_at: u64,
}

impl GovSigner {
    /// Pairs a PEM private key (PKCS#8 or SEC1, P-256 or P-384) with its certificate; refuses a
    /// key that is not the certificate's.
    pub fn from_pem(key_pem: &str, cert_pem: &str) -> Result<GovSigner, CryptoError> {
        let cert_der = cert_der_from_pem(cert_pem)?;
        let (_, cert) = parse_x509_certificate(&cert_der).map_err(|e| CryptoError::Certificate(e.to_string()))?;
        let (alg, algorithm) = match key_kind(cert.public_key()) {
            KeyKind::P256 => (ES256, &ECDSA_P256_SHA256_FIXED_SIGNING),
            KeyKind::P384 => (ES384, &ECDSA_P384_SHA384_FIXED_SIGNING),
            _ => return Err(CryptoError::Key("a signing identity must be an ECDSA P-256 or P-384 certificate".into())),
        };
        let pkcs8 = rcgen::KeyPair::from_pem(key_pem).map_err(|e| CryptoError::Key(format!("private key: {e}")))?.serialize_der();
        let key = EcdsaKeyPair::from_pkcs8(algorithm, &pkcs8)
            .map_err(|_| CryptoError::Key("the private key is not on the certificate's curve".into()))?;
        if key.public_key().as_ref() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(CryptoError::Key("the private key does not belong to the certificate".into()));
        }
        Ok(GovSigner { id: id_of_cert_der(&cert_der), alg, key })
    }

    /// The signer's id: SHA-256 of its certificate, lowercase hex.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Signs `payload` as this member.
    pub fn sign(&self, msg: &GovMessage<'_>, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.sign_as(&self.id, msg, payload)
    }

    /// Signs `payload` but names `kid` as the signer (tests use this to impersonate).
    pub fn sign_as(&self, kid: &str, msg: &GovMessage<'_>, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        // In the order CCF's `ccf_cose_sign1` writes them (not CBOR's canonical order, which
        // would put `created_at` before `proposal_id`), so that the bytes are the same.
        let mut params = vec![("ccf.gov.msg.type", Param::Text(msg.msg_type.into()))];
        if let Some(p) = msg.proposal_id {
            params.push(("ccf.gov.msg.proposal_id", Param::Text(p.into())));
        }
        params.push(("ccf.gov.msg.created_at", Param::Int(msg.created_at.into())));
        let mut failed = false;
        let signed = sign1(self.alg, kid, &params, payload, |tbs| match self.key.sign(&SystemRandom::new(), tbs) {
            Ok(sig) => sig.as_ref().to_vec(),
            Err(_) => {
                failed = true;
                Vec::new()
            }
        })
        .map_err(|e| CryptoError::Signature(e.to_string()))?;
        if failed {
            return Err(CryptoError::Signature("ECDSA signing failed".into()));
        }
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cose::Sign1;
    use crate::{identity_cert, Curve};

    #[test]
    fn signs_what_governance_verifies_on_both_curves() {
        for curve in [Curve::Secp256r1, Curve::Secp384r1] {
            let (key, cert) = identity_cert("m", curve).expect("identity");
            let signer = GovSigner::from_pem(&key, &cert).expect("signer");
            let msg = GovMessage { msg_type: "ballot", proposal_id: Some("p1"), created_at: 1_700_000_000 };
            let bytes = signer.sign(&msg, b"{}").expect("sign");
            let parsed = Sign1::parse(&bytes).expect("parse");
            parsed.verify_with_cert(&cert_der_from_pem(&cert).expect("der")).expect("verifies");
            assert_eq!(parsed.kid, signer.id());
            assert_eq!(parsed.alg, if curve == Curve::Secp256r1 { ES256 } else { ES384 });
            assert_eq!(parsed.text("ccf.gov.msg.type"), Some("ballot"));
            assert_eq!(parsed.text("ccf.gov.msg.proposal_id"), Some("p1"));
            assert_eq!(parsed.int("ccf.gov.msg.created_at"), Some(1_700_000_000));
        }
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let (key, _) = identity_cert("a", Curve::Secp384r1).expect("identity");
        let (_, cert) = identity_cert("b", Curve::Secp384r1).expect("identity");
        assert!(GovSigner::from_pem(&key, &cert).err().expect("mismatch").to_string().contains("does not belong"));
        let (key256, _) = identity_cert("c", Curve::Secp256r1).expect("identity");
        assert!(GovSigner::from_pem(&key256, &cert).err().expect("curve").to_string().contains("curve"));
        assert!(GovSigner::from_pem("junk", &cert).is_err());
    }
}
