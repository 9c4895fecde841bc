//! Test reports and chains: an ARK, ASK and VCEK made with fresh keys (the VCEK carrying
//! AMD's TCB and chip id extensions) and reports signed by the VCEK as an AMD chip signs them.
//! For tests only (the `fixtures` feature); nothing here is trusted by default.

use super::{Product, REPORT_BYTES, SIGNED_BYTES};
use rcgen::{CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P384_SHA384};

const TCB_OID: [u64; 9] = [1, 3, 6, 1, 4, 1, 3704, 1, 3];
const CHIP_ID_OID: [u64; 9] = [1, 3, 6, 1, 4, 1, 3704, 1, 4];

/// A test chain: its PEM (VCEK, ASK, ARK), the VCEK's signing key, the ARK's fingerprint.
pub struct Chain {
    pub pem: String,
    pub vcek: aws_lc_rs::signature::EcdsaKeyPair,
    pub ark_fingerprint: String,
}

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("key")
}

fn params(cn: &str, ca: bool) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    if ca {
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    p
}

fn der_int(v: u8) -> Vec<u8> {
    if v < 0x80 {
        vec![0x02, 0x01, v]
    } else {
        vec![0x02, 0x02, 0x00, v]
    }
}

/// A chain whose VCEK endorses `tcb` (boot_loader, tee, snp, microcode, fmc?) and `chip_id`;
/// `ask_signed_by_other_ark` breaks the chain between the ARK and the ASK.
pub fn chain(tcb: (u8, u8, u8, u8, Option<u8>), chip_id: [u8; 64], ask_signed_by_other_ark: bool) -> Chain {
    let (ark_key, other_key, ask_key, vcek_key) = (key(), key(), key(), key());
    let ark = params("ARK-Test", true).self_signed(&ark_key).expect("ark");
    let other = params("ARK-Test", true).self_signed(&other_key).expect("other ark");
    let ask_issuer = if ask_signed_by_other_ark {
        Issuer::from_ca_cert_der(other.der(), &other_key)
    } else {
        Issuer::from_ca_cert_der(ark.der(), &ark_key)
    }
    .expect("issuer");
    let ask = params("SEV-Test", true).signed_by(&ask_key, &ask_issuer).expect("ask");
    let mut vp = params("SEV-VCEK", false);
    let (bl, tee, snp, ucode, fmc) = tcb;
    let mut ext = |n: u64, v: u8| {
        let mut oid = TCB_OID.to_vec();
        oid.push(n);
        vp.custom_extensions.push(CustomExtension::from_oid_content(&oid, der_int(v)));
    };
    ext(1, bl);
    ext(2, tee);
    ext(3, snp);
    ext(8, ucode);
    if let Some(f) = fmc {
        ext(9, f);
    }
    vp.custom_extensions.push(CustomExtension::from_oid_content(&CHIP_ID_OID, chip_id.to_vec()));
    let vcek = vp.signed_by(&vcek_key, &Issuer::from_ca_cert_der(ask.der(), &ask_key).expect("issuer")).expect("vcek");
    let signer =
        aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(&aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING, &vcek_key.serialize_der())
            .expect("pkcs8");
    Chain { pem: format!("{}{}{}", vcek.pem(), ask.pem(), ark.pem()), vcek: signer, ark_fingerprint: crate::sha256_hex(ark.der()) }
}

/// A version-3 Milan report from a guest at VMPL 0, with `tcb` reported and `chip_id`.
pub fn report(tcb: [u8; 8], chip_id: [u8; 64]) -> Vec<u8> {
    let mut r = vec![0u8; REPORT_BYTES];
    r[0..4].copy_from_slice(&3u32.to_le_bytes());
    r[0x008..0x010].copy_from_slice(&((1u64 << 8) | (1 << 16) | (1 << 17)).to_le_bytes()); // abi 1.0, smt
    r[0x034..0x038].copy_from_slice(&1u32.to_le_bytes());
    r[0x050..0x090].copy_from_slice(&[7u8; 64]);
    r[0x090..0x0C0].copy_from_slice(&[9u8; 48]);
    r[0x180..0x188].copy_from_slice(&tcb);
    r[0x188] = 0x19;
    r[0x189] = 0x01;
    r[0x1A0..0x1E0].copy_from_slice(&chip_id);
    r
}

/// Signs the report's first 0x2A0 bytes as an AMD chip does (r and s little-endian).
pub fn sign(r: &mut [u8], key: &aws_lc_rs::signature::EcdsaKeyPair) {
    let sig = key.sign(&aws_lc_rs::rand::SystemRandom::new(), &r[..SIGNED_BYTES]).expect("sign");
    let sig = sig.as_ref();
    let (rr, ss): (Vec<u8>, Vec<u8>) = (sig[..48].iter().rev().copied().collect(), sig[48..].iter().rev().copied().collect());
    r[0x2A0..0x2A0 + 72].fill(0);
    r[0x2A0..0x2A0 + 48].copy_from_slice(&rr);
    r[0x2A0 + 72..0x2A0 + 144].fill(0);
    r[0x2A0 + 72..0x2A0 + 72 + 48].copy_from_slice(&ss);
}

/// Milan TCB bytes (little-endian): boot_loader, tee, 4 reserved, snp, microcode.
pub fn milan_tcb(bl: u8, tee: u8, snp: u8, ucode: u8) -> [u8; 8] {
    [bl, tee, 0, 0, 0, 0, snp, ucode]
}

pub fn roots(c: &Chain, product: Product) -> Vec<(Product, String)> {
    vec![(product, c.ark_fingerprint.clone())]
}
