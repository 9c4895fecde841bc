//! AMD SEV-SNP attestation reports verified against their endorsements, as CCF's
//! `snp_attestation.verifySnpAttestation` verifies them: a pure check, no hardware needed.
//!
//! The report (1184 bytes, AMD's "SEV Secure Nested Paging Firmware ABI" table 21) is signed
//! with the chip's VCEK (ECDSA P-384, SHA-384); the endorsements are the PEM chain VCEK, ASK,
//! ARK, whose root must be one of AMD's root keys (ARK) for the report's product, pinned here
//! by the SHA-256 of the ARK certificate. The report's contents are then held to CCF's rules
//! (signed by the VCEK, no masked chip key, a guest VMPL, no debugging, no migration agent), its
//! TCB to at least the one the VCEK endorses, its chip id to the VCEK's. Error messages are
//! CCF's.

use x509_parser::prelude::{FromDer, X509Certificate};

/// The size of an attestation report.
pub const REPORT_BYTES: usize = 0x4A0;
/// The signed part of a report (everything before the signature).
const SIGNED_BYTES: usize = 0x2A0;
const MINIMUM_VERSION: u32 = 3;

/// SHA-256 of the DER of AMD's root key certificates (ARK), as served by AMD's key
/// distribution service (`https://kdsintf.amd.com/vcek/v1/<product>/cert_chain`, the second
/// certificate). Milan's was checked against the ARK in a real report's chain; Genoa's and
/// Turin's against their published fingerprints.
pub const AMD_ROOT_FINGERPRINTS: [(Product, &str); 3] = [
    (Product::Milan, "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"),
    (Product::Genoa, "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1"),
    (Product::Turin, "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a"),
];

/// The AMD EPYC generations CCF knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    Milan,
    Genoa,
    Turin,
}

/// Why a report was refused, in CCF's words. Callers pass the reason on (a script's
/// `snp_attestation.verifySnpAttestation` throws it); none tells the cases apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SnpError(pub String);

impl Product {
    /// From a CPUID's family and model (CCF's table).
    pub fn of(family: u8, model: u8) -> Result<Product, SnpError> {
        match (family, model) {
            (0x19, 0x01) => Ok(Product::Milan),
            (0x19, 0x11) => Ok(Product::Genoa),
            (0x1A, 0x01) => Ok(Product::Turin),
            _ => Err(SnpError(format!("SEV-SNP: Unsupported CPUID family {family} model {model}"))),
        }
    }
}

impl std::fmt::Display for Product {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        })
    }
}

/// A TCB version (8 bytes, little-endian in the report), as its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tcb {
    pub raw: [u8; 8],
}

/// A TCB version's fields for a product (CCF's `TcbVersionPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcbFields {
    pub boot_loader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    /// Turin only.
    pub fmc: Option<u8>,
}

impl Tcb {
    /// The hex CCF shows: the 8 bytes most significant first.
    pub fn hex(&self) -> String {
        self.raw.iter().rev().map(|b| format!("{b:02x}")).collect()
    }

    pub fn fields(&self, product: Product) -> TcbFields {
        let r = self.raw;
        match product {
            Product::Milan | Product::Genoa => TcbFields { boot_loader: r[0], tee: r[1], snp: r[6], microcode: r[7], fmc: None },
            Product::Turin => TcbFields { fmc: Some(r[0]), boot_loader: r[1], tee: r[2], snp: r[3], microcode: r[7] },
        }
    }
}

impl TcbFields {
    /// Every field at least `minimum`'s (a field only one of them has fails).
    fn meets(&self, minimum: &TcbFields) -> bool {
        let fmc = match (minimum.fmc, self.fmc) {
            (Some(m), Some(t)) => m <= t,
            (None, None) => true,
            _ => false,
        };
        fmc && minimum.boot_loader <= self.boot_loader
            && minimum.tee <= self.tee
            && minimum.snp <= self.snp
            && minimum.microcode <= self.microcode
    }

    fn json(&self) -> String {
        let mut j = serde_json::json!({"boot_loader": self.boot_loader, "tee": self.tee, "snp": self.snp, "microcode": self.microcode});
        if let Some(fmc) = self.fmc {
            j["fmc"] = fmc.into();
        }
        j.to_string()
    }
}

/// An attestation report's fields (AMD's table 21), as verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: u64,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
    pub vmpl: u32,
    pub signature_algo: u32,
    pub platform_version: Tcb,
    pub platform_info: u64,
    pub flags: u32,
    pub report_data: [u8; 64],
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
    pub id_key_digest: [u8; 48],
    pub author_key_digest: [u8; 48],
    pub report_id: [u8; 32],
    pub report_id_ma: [u8; 32],
    pub reported_tcb: Tcb,
    pub cpuid_fam_id: u8,
    pub cpuid_mod_id: u8,
    pub cpuid_step: u8,
    pub chip_id: [u8; 64],
    pub committed_tcb: Tcb,
    pub current_minor: u8,
    pub current_build: u8,
    pub current_major: u8,
    pub committed_build: u8,
    pub committed_minor: u8,
    pub committed_major: u8,
    pub launch_tcb: Tcb,
    /// The signature's r and s as in the report (72 bytes each, little-endian).
    pub signature_r: [u8; 72],
    pub signature_s: [u8; 72],
}

fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().expect("within the report's fixed size")
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(b, at))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array(b, at))
}

impl Report {
    /// Reads a report of exactly [`REPORT_BYTES`].
    pub fn parse(b: &[u8]) -> Result<Report, SnpError> {
        if b.len() != REPORT_BYTES {
            return Err(SnpError(format!("Input SEV-SNP attestation report is not of expected size {REPORT_BYTES}: {}", b.len())));
        }
        Ok(Report {
            version: u32_at(b, 0x000),
            guest_svn: u32_at(b, 0x004),
            policy: u64_at(b, 0x008),
            family_id: array(b, 0x010),
            image_id: array(b, 0x020),
            vmpl: u32_at(b, 0x030),
            signature_algo: u32_at(b, 0x034),
            platform_version: Tcb { raw: array(b, 0x038) },
            platform_info: u64_at(b, 0x040),
            flags: u32_at(b, 0x048),
            report_data: array(b, 0x050),
            measurement: array(b, 0x090),
            host_data: array(b, 0x0C0),
            id_key_digest: array(b, 0x0E0),
            author_key_digest: array(b, 0x110),
            report_id: array(b, 0x140),
            report_id_ma: array(b, 0x160),
            reported_tcb: Tcb { raw: array(b, 0x180) },
            cpuid_fam_id: b[0x188],
            cpuid_mod_id: b[0x189],
            cpuid_step: b[0x18A],
            chip_id: array(b, 0x1A0),
            committed_tcb: Tcb { raw: array(b, 0x1E0) },
            current_minor: b[0x1E8],
            current_build: b[0x1E9],
            current_major: b[0x1EA],
            committed_build: b[0x1EC],
            committed_minor: b[0x1ED],
            committed_major: b[0x1EE],
            launch_tcb: Tcb { raw: array(b, 0x1F0) },
            signature_r: array(b, 0x2A0),
            signature_s: array(b, 0x2A0 + 72),
        })
    }

    /// The guest policy's bits (AMD's table 8), by CCF's names.
    pub fn policy_bits(&self) -> [(&'static str, u64); 6] {
        let p = self.policy;
        [
            ("abi_minor", p & 0xFF),
            ("abi_major", (p >> 8) & 0xFF),
            ("smt", (p >> 16) & 1),
            ("migrate_ma", (p >> 18) & 1),
            ("debug", (p >> 19) & 1),
            ("single_socket", (p >> 20) & 1),
        ]
    }

    /// The flags (author_key_en, mask_chip_key, signing_key).
    pub fn flag_bits(&self) -> [(&'static str, u32); 3] {
        let f = self.flags;
        [("author_key_en", f & 1), ("mask_chip_key", (f >> 1) & 1), ("signing_key", (f >> 2) & 0b111)]
    }

    /// The platform info bits (smt_en, tsme_en).
    pub fn platform_info_bits(&self) -> [(&'static str, u64); 2] {
        [("smt_en", self.platform_info & 1), ("tsme_en", (self.platform_info >> 1) & 1)]
    }
}

/// Verifies `report` against `endorsements` (PEM: VCEK, ASK, ARK), the ARK being one whose
/// certificate's SHA-256 is among `trusted_roots` for the report's product. `endorsed_tcb`
/// (hex, as CCF takes it) must then equal the reported TCB. Returns the report.
pub fn verify(
    report: &[u8],
    endorsements: &[u8],
    endorsed_tcb: Option<&str>,
    trusted_roots: &[(Product, String)],
) -> Result<Report, SnpError> {
    checked(report, endorsements, endorsed_tcb, trusted_roots).map_err(SnpError)
}

fn checked(report: &[u8], endorsements: &[u8], endorsed_tcb: Option<&str>, trusted_roots: &[(Product, String)]) -> Result<Report, String> {
    let quote = Report::parse(report).map_err(|e| e.0)?;
    if quote.version < MINIMUM_VERSION {
        return Err(format!("SEV-SNP: Attestation version is {} not >= expected minimum {MINIMUM_VERSION}", quote.version));
    }
    let product = Product::of(quote.cpuid_fam_id, quote.cpuid_mod_id).map_err(|e| e.0)?;

    // ---- the chain: ARK (a pinned AMD root) signs itself and the ASK; the ASK signs the VCEK ----
    let ders = pem_certificates(endorsements)?;
    if ders.len() != 3 {
        return Err(format!("Expected 3 endorsement certificates but got {}", ders.len()));
    }
    let (vcek, ask, ark) = (parse_cert(&ders[0])?, parse_cert(&ders[1])?, parse_cert(&ders[2])?);
    let fingerprint = crate::sha256_hex(&ders[2]);
    if !trusted_roots.iter().any(|(p, f)| *p == product && f.eq_ignore_ascii_case(&fingerprint)) {
        return Err(format!(
            "SEV-SNP: The root of trust public key for this attestation was not the expected one for v{} {} {}: the root certificate's SHA-256 {fingerprint} is not AMD's ARK for {product}",
            quote.version, quote.cpuid_fam_id, quote.cpuid_mod_id
        ));
    }
    if ark.verify_signature(Some(ark.public_key())).is_err() {
        return Err("SEV-SNP: The root of trust public key for this attestation was not self signed as expected".into());
    }
    if ask.verify_signature(Some(ark.public_key())).is_err() || vcek.verify_signature(Some(ask.public_key())).is_err() {
        return Err("SEV-SNP: The chain of signatures from the root of trust to this attestation is broken".into());
    }

    // ---- the report's signature ----
    if quote.signature_algo != 1 {
        return Err(format!("SEV-SNP: Unsupported signature algorithm: {} (supported: 1)", quote.signature_algo));
    }
    // r and s are little-endian in 72 bytes; P-384 needs 48 of each, big-endian.
    let mut p1363 = Vec::with_capacity(96);
    for half in [&quote.signature_r, &quote.signature_s] {
        if half[48..].iter().any(|b| *b != 0) {
            return Err("SEV-SNP: Chip certificate (VCEK) did not sign this attestation".into());
        }
        p1363.extend(half[..48].iter().rev());
    }
    let vcek_point = &vcek.public_key().subject_public_key.data;
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED, vcek_point.as_ref());
    if key.verify(&report[..SIGNED_BYTES], &p1363).is_err() {
        return Err("SEV-SNP: Chip certificate (VCEK) did not sign this attestation".into());
    }

    // ---- the report's contents ----
    let [_, (_, mask_chip_key), (_, signing_key)] = quote.flag_bits();
    let [.., (_, migrate_ma), (_, debug), _] = quote.policy_bits();
    if signing_key != 0 {
        return Err(format!("SEV-SNP: Attestation report must be signed by VCEK: {signing_key}"));
    }
    if mask_chip_key != 0 {
        return Err("SEV-SNP: Mask chip key must not be set".into());
    }
    if quote.vmpl > 3 {
        return Err(format!("SEV-SNP: This report seems to be host generated (VMPL {} > 3)", quote.vmpl));
    }
    if debug != 0 {
        return Err("SEV-SNP: SNP attestation report guest policy debugging must not be enabled".into());
    }
    if migrate_ma != 0 {
        return Err("SEV-SNP: SNP attestation report guest policy migration must not be enabled".into());
    }
    if let Some(endorsed) = endorsed_tcb_of(&vcek, product)? {
        let reported = quote.reported_tcb.fields(product);
        if !reported.meets(&endorsed) {
            return Err(format!("SEV-SNP: Reported TCB {} does not meet or exceed the endorsed TCB {}", reported.json(), endorsed.json()));
        }
    }
    if let Some(chip_id) = extension(&vcek, "1.3.6.1.4.1.3704.1.4") {
        if chip_id != quote.chip_id {
            return Err(format!(
                "SEV-SNP: Chip ID in attestation does not match endorsed chip ID: {} != {}",
                hex::encode(chip_id),
                hex::encode(quote.chip_id)
            ));
        }
    }
    if let Some(endorsed) = endorsed_tcb {
        let raw = hex::decode(endorsed)
            .ok()
            .filter(|b| b.len() == 8)
            .ok_or_else(|| format!("Invalid TCB version data size: {}", endorsed.len() / 2))?;
        let reported = quote.reported_tcb.hex();
        if !raw.iter().rev().copied().eq(quote.reported_tcb.raw) {
            return Err(format!("SEV-SNP: endorsed TCB {} does not match reported TCB {reported}", endorsed.to_ascii_lowercase()));
        }
    }
    Ok(quote)
}

fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    X509Certificate::from_der(der).map(|(_, c)| c).map_err(|e| format!("SEV-SNP: an endorsement certificate does not parse: {e}"))
}

/// The contents of the VCEK's extension `oid` (dotted), if it has it.
fn extension<'a>(cert: &'a X509Certificate<'_>, oid: &str) -> Option<&'a [u8]> {
    cert.extensions().iter().find(|e| e.oid.to_id_string() == oid).map(|e| e.value)
}

/// The TCB the VCEK endorses (AMD's VCEK specification, tables 10 and 11): each field an
/// INTEGER extension; `None` when one is missing, as CCF treats it.
fn endorsed_tcb_of(vcek: &X509Certificate<'_>, product: Product) -> Result<Option<TcbFields>, String> {
    let field = |n: u8| -> Result<Option<u8>, String> {
        let Some(value) = extension(vcek, &format!("1.3.6.1.4.1.3704.1.3.{n}")) else { return Ok(None) };
        let (_, int) =
            x509_parser::der_parser::ber::parse_ber_integer(value).map_err(|e| format!("Invalid TCB version extension {n}: {e}"))?;
        let v = int.as_u64().map_err(|e| format!("Invalid TCB version extension {n}: {e}"))?;
        u8::try_from(v).map(Some).map_err(|_| format!("Invalid TCB version value in extension {n}: {v}"))
    };
    let (Some(boot_loader), Some(tee), Some(snp), Some(microcode)) = (field(1)?, field(2)?, field(3)?, field(8)?) else { return Ok(None) };
    let fmc = match product {
        Product::Turin => match field(9)? {
            Some(f) => Some(f),
            None => return Ok(None),
        },
        _ => None,
    };
    Ok(Some(TcbFields { boot_loader, tee, snp, microcode, fmc }))
}

/// The DER of each certificate in a PEM text.
fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let blocks = ::pem::parse_many(pem).map_err(|e| format!("SEV-SNP: the endorsements are not PEM: {e}"))?;
    Ok(blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE").map(|b| b.into_contents()).collect())
}

/// AMD's roots, as [`verify`] takes them.
pub fn amd_roots() -> Vec<(Product, String)> {
    AMD_ROOT_FINGERPRINTS.iter().map(|(p, f)| (*p, (*f).to_owned())).collect()
}

#[cfg(any(test, feature = "fixtures"))]
pub mod fixture;

#[cfg(test)]
mod tests;
