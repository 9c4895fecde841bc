//! COSE_Sign1 requests (RFC 9052) as CCF takes them: a CBOR-tagged (18) COSE_Sign1 whose protected
//! header holds `alg` (ES256, ES384), `kid` (the signer's id as UTF-8 bytes) and CCF's text-labelled
//! parameters (`ccf.gov.msg.type`, `ccf.gov.msg.created_at`, ...). The signature is checked
//! against the signer's certificate with no external AAD. Used by the `user_cose_sign1` policy and
//! by governance.

use std::collections::BTreeMap;

use coset::{iana, CborSerializable, CoseSign1, Label, TaggedCborSerializable};

/// ES256 and ES384, the algorithms CCF's members and users sign with.
pub const ES256: i64 = -7;
pub const ES384: i64 = -35;

/// Why a COSE_Sign1 was refused, or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoseError {
    #[error("not a COSE_Sign1: {0}")]
    NotCoseSign1(String),
    /// CCF refuses an untagged COSE_Sign1 too.
    #[error("the COSE_Sign1 is not tagged (CBOR tag 18 expected)")]
    Untagged,
    #[error("the protected header has no alg")]
    NoAlg,
    #[error("alg {0:?} is not a COSE algorithm number")]
    TextAlg(String),
    #[error("the protected header has no kid")]
    NoKid,
    #[error("kid is not UTF-8")]
    KidNotUtf8,
    #[error("the COSE_Sign1 has no payload (detached content is not supported)")]
    Detached,
    #[error("bad signer certificate: {0}")]
    SignerCertificate(String),
    #[error("alg {0} does not match the signer's key")]
    AlgDoesNotMatchKey(i64),
    #[error("unsupported algorithm {0} (ES256 = -7 or ES384 = -35)")]
    UnsupportedAlg(i64),
    #[error("the COSE_Sign1 signature does not verify with the signer's certificate")]
    BadSignature,
    /// Building one: a header parameter or the envelope does not encode.
    #[error("cannot encode the COSE_Sign1: {0}")]
    Encode(String),
}

/// A parsed, not yet verified, COSE_Sign1.
#[derive(Debug)]
pub struct Sign1 {
    /// The COSE algorithm (negative integers, IANA registry).
    pub alg: i64,
    /// `kid` as text (CCF puts the signer's hex id there).
    pub kid: String,
    /// Text-labelled protected header parameters, by label.
    pub params: BTreeMap<String, Param>,
    /// The signed content.
    pub payload: Vec<u8>,
    inner: CoseSign1,
}

/// A protected header parameter's value, as far as Consort reads them.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i128),
    Text(String),
    Bytes(Vec<u8>),
    /// Some other CBOR type.
    Other,
}

impl Sign1 {
    /// Parses a tagged COSE_Sign1 and reads the protected header; errors name what is missing.
    pub fn parse(bytes: &[u8]) -> Result<Sign1, CoseError> {
        // An untagged COSE_Sign1 is refused by CCF too; say so rather than "bad CBOR".
        let inner = CoseSign1::from_tagged_slice(bytes).map_err(|tagged| match CoseSign1::from_slice(bytes) {
            Ok(_) => CoseError::Untagged,
            Err(_) => CoseError::NotCoseSign1(tagged.to_string()),
        })?;
        let header = &inner.protected.header;
        let alg = match &header.alg {
            Some(coset::RegisteredLabelWithPrivate::Assigned(a)) => *a as i64,
            Some(coset::RegisteredLabelWithPrivate::PrivateUse(a)) => *a,
            Some(coset::RegisteredLabelWithPrivate::Text(t)) => return Err(CoseError::TextAlg(t.clone())),
            None => return Err(CoseError::NoAlg),
        };
        if header.key_id.is_empty() {
            return Err(CoseError::NoKid);
        }
        let kid = String::from_utf8(header.key_id.clone()).map_err(|_| CoseError::KidNotUtf8)?;
        let mut params = BTreeMap::new();
        for (label, value) in &header.rest {
            if let Label::Text(name) = label {
                let v = match value {
                    coset::cbor::value::Value::Integer(i) => Param::Int(i128::from(*i)),
                    coset::cbor::value::Value::Text(t) => Param::Text(t.clone()),
                    coset::cbor::value::Value::Bytes(b) => Param::Bytes(b.clone()),
                    _ => Param::Other,
                };
                params.insert(name.clone(), v);
            }
        }
        let payload = inner.payload.clone().ok_or(CoseError::Detached)?;
        Ok(Sign1 { alg, kid, params, payload, inner })
    }

    /// The raw signature bytes (governance derives request digests from them, as CCF does).
    pub fn signature(&self) -> &[u8] {
        &self.inner.signature
    }

    /// The protected header parameter `name` as text, if it is text.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.params.get(name) {
            Some(Param::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// The protected header parameter `name` as an integer, if it is one.
    pub fn int(&self, name: &str) -> Option<i128> {
        match self.params.get(name) {
            Some(Param::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// Checks the signature with the public key of a DER certificate: ES256 needs a P-256 key,
    /// ES384 a P-384 key.
    pub fn verify_with_cert(&self, cert_der: &[u8]) -> Result<(), CoseError> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| CoseError::SignerCertificate(e.to_string()))?;
        let spki = cert.public_key();
        use crate::cert::KeyKind;
        let algorithm: &'static aws_lc_rs::signature::EcdsaVerificationAlgorithm = match (self.alg, crate::cert::key_kind(spki)) {
            (ES256, KeyKind::P256) => &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            (ES384, KeyKind::P384) => &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
            (ES256 | ES384, _) => return Err(CoseError::AlgDoesNotMatchKey(self.alg)),
            (other, _) => return Err(CoseError::UnsupportedAlg(other)),
        };
        let key = aws_lc_rs::signature::UnparsedPublicKey::new(algorithm, spki.subject_public_key.data.to_vec());
        self.inner.verify_signature(&[], |signature, tbs| key.verify(tbs, signature)).map_err(|_| CoseError::BadSignature)
    }
}

/// Builds a tagged COSE_Sign1 (for tests and tools): `sign` gets the Sig_structure bytes and
/// returns the raw `r ‖ s` signature.
pub fn sign1(
    alg: i64,
    kid: &str,
    params: &[(&str, Param)],
    payload: &[u8],
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Result<Vec<u8>, CoseError> {
    let algorithm = match alg {
        ES256 => iana::Algorithm::ES256,
        ES384 => iana::Algorithm::ES384,
        other => return Err(CoseError::UnsupportedAlg(other)),
    };
    let mut builder = coset::HeaderBuilder::new().algorithm(algorithm).key_id(kid.as_bytes().to_vec());
    for (name, value) in params {
        let v = match value {
            Param::Int(i) => coset::cbor::value::Value::Integer(i64::try_from(*i).map_err(|e| CoseError::Encode(e.to_string()))?.into()),
            Param::Text(t) => coset::cbor::value::Value::Text(t.clone()),
            Param::Bytes(b) => coset::cbor::value::Value::Bytes(b.clone()),
            Param::Other => coset::cbor::value::Value::Null,
        };
        builder = builder.text_value((*name).to_owned(), v);
    }
    let signed = coset::CoseSign1Builder::new().protected(builder.build()).payload(payload.to_vec()).create_signature(&[], sign).build();
    signed.to_tagged_vec().map_err(|e| CoseError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(curve: crate::Curve) -> (Vec<u8>, String) {
        let (key_pem, cert_pem) = crate::identity_cert("signer", curve).expect("identity");
        (crate::cert_der_from_pem(&cert_pem).expect("der"), key_pem)
    }

    fn es_sign(key_pem: &str, alg: i64, tbs: &[u8]) -> Vec<u8> {
        let key = rcgen::KeyPair::from_pem(key_pem).expect("key");
        let algorithm = if alg == ES256 {
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING
        } else {
            &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING
        };
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(algorithm, &key.serialize_der()).expect("pkcs8");
        pair.sign(&aws_lc_rs::rand::SystemRandom::new(), tbs).expect("sign").as_ref().to_vec()
    }

    #[test]
    fn signed_requests_verify_and_tampering_is_caught() {
        for (curve, alg) in [(crate::Curve::Secp256r1, ES256), (crate::Curve::Secp384r1, ES384)] {
            let (cert, key) = signer(curve);
            let params = [("ccf.gov.msg.type", Param::Text("proposal".into())), ("ccf.gov.msg.created_at", Param::Int(1_700_000_000))];
            let bytes = sign1(alg, "abc123", &params, b"{\"x\":1}", |tbs| es_sign(&key, alg, tbs)).expect("sign1");
            let parsed = Sign1::parse(&bytes).expect("parse");
            assert_eq!((parsed.alg, parsed.kid.as_str(), parsed.payload.as_slice()), (alg, "abc123", b"{\"x\":1}".as_slice()));
            assert_eq!(parsed.text("ccf.gov.msg.type"), Some("proposal"));
            assert_eq!(parsed.int("ccf.gov.msg.created_at"), Some(1_700_000_000));
            parsed.verify_with_cert(&cert).expect("verifies");
            // Someone else's certificate, or a changed payload, fails.
            let (other, _) = signer(curve);
            assert!(parsed.verify_with_cert(&other).is_err());
            let mut tampered = bytes.clone();
            let at = tampered.windows(7).position(|w| w == b"{\"x\":1}").expect("payload in bytes");
            tampered[at + 5] = b'2';
            Sign1::parse(&tampered).expect("still parses").verify_with_cert(&cert).expect_err("payload changed");
        }
        let (_, key256) = signer(crate::Curve::Secp256r1);
        let mislabelled = sign1(ES384, "k", &[], b"p", |tbs| es_sign(&key256, ES256, tbs)).expect("sign1");
        let (cert, _) = signer(crate::Curve::Secp256r1);
        assert_eq!(Sign1::parse(&mislabelled).expect("parse").verify_with_cert(&cert), Err(CoseError::AlgDoesNotMatchKey(ES384)));
    }

    #[test]
    fn malformed_bodies_are_named() {
        assert!(matches!(Sign1::parse(b"not cbor"), Err(CoseError::NotCoseSign1(_))));
        let tagged = sign1(ES256, "k", &[], b"p", |_| vec![0; 64]).expect("sign1");
        let untagged = coset::CoseSign1::from_tagged_slice(&tagged).expect("tagged").to_vec().expect("untagged");
        assert_eq!(Sign1::parse(&untagged).expect_err("untagged"), CoseError::Untagged);
        let no_kid = coset::CoseSign1Builder::new()
            .protected(coset::HeaderBuilder::new().algorithm(iana::Algorithm::ES256).build())
            .payload(b"p".to_vec())
            .build()
            .to_tagged_vec()
            .expect("cbor");
        assert_eq!(Sign1::parse(&no_kid).expect_err("no kid"), CoseError::NoKid);
    }
}
