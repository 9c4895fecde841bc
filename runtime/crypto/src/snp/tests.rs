//! Reports signed with test keys through a test chain (ARK, ASK, VCEK with AMD's extensions):
//! what verifies, and each of CCF's refusals.

use super::fixture::{chain, milan_tcb, report, roots, sign};
use super::*;

#[test]
fn a_report_signed_through_a_trusted_chain_verifies_and_reads_as_ccf_reads_it() {
    let chip = [5u8; 64];
    let c = chain((3, 0, 8, 115, None), chip, false);
    let mut r = report(milan_tcb(3, 0, 8, 115), chip);
    sign(&mut r, &c.vcek);
    let q = verify(&r, c.pem.as_bytes(), None, &roots(&c, Product::Milan)).expect("verifies");
    assert_eq!((q.version, q.cpuid_fam_id, q.cpuid_mod_id, q.vmpl), (3, 0x19, 0x01, 0));
    assert_eq!(q.report_data, [7u8; 64]);
    assert_eq!(q.measurement, [9u8; 48]);
    assert_eq!(q.reported_tcb.hex(), "7308000000000003");
    assert_eq!(q.reported_tcb.fields(Product::Milan), TcbFields { boot_loader: 3, tee: 0, snp: 8, microcode: 115, fmc: None });
    assert_eq!(q.policy_bits()[1], ("abi_major", 1));
    // A higher reported TCB meets the endorsed one; the caller's endorsed TCB must match exactly.
    let mut higher = report(milan_tcb(4, 1, 9, 200), chip);
    sign(&mut higher, &c.vcek);
    verify(&higher, c.pem.as_bytes(), Some("C800000000000104".to_ascii_lowercase().as_str()), &roots(&c, Product::Milan))
        .expect_err("C8 is not 200");
    verify(&higher, c.pem.as_bytes(), Some("c809000000000104"), &roots(&c, Product::Milan)).expect("the reported TCB, endorsed");
    // AMD's own roots are pinned, and a test root is not one of them.
    let err = verify(&r, c.pem.as_bytes(), None, &amd_roots()).expect_err("not AMD's");
    assert!(err.0.contains("was not the expected one for v3 25 1"), "{err}");
}

#[test]
fn every_refusal_is_named_as_ccf_names_it() {
    let chip = [5u8; 64];
    let good = chain((3, 0, 8, 115, None), chip, false);
    let roots = roots(&good, Product::Milan);
    let signed = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut r = report(milan_tcb(3, 0, 8, 115), chip);
        edit(&mut r);
        sign(&mut r, &good.vcek);
        r
    };
    let broken = chain((3, 0, 8, 115, None), chip, true);
    let mut tampered = signed(&|_| {});
    tampered[0x050] ^= 1;
    let two_certs: String = good.pem.split_inclusive("-----END CERTIFICATE-----\n").take(2).collect();
    /// (the refusal, the report, the endorsements, the trusted roots, an endorsed TCB)
    type Case<'a> = (&'a str, Vec<u8>, String, Vec<(Product, String)>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("Input SEV-SNP attestation report is not of expected size 1184: 10", vec![0; 10], good.pem.clone(), roots.clone(), None),
        (
            "Attestation version is 2 not >= expected minimum 3",
            signed(&|r| r[0..4].copy_from_slice(&2u32.to_le_bytes())),
            good.pem.clone(),
            roots.clone(),
            None,
        ),
        ("Unsupported CPUID family 25 model 2", signed(&|r| r[0x189] = 2), good.pem.clone(), roots.clone(), None),
        ("Expected 3 endorsement certificates but got 2", signed(&|_| {}), two_certs, roots.clone(), None),
        ("was not the expected one", signed(&|_| {}), good.pem.clone(), vec![(Product::Genoa, good.ark_fingerprint.clone())], None),
        (
            "chain of signatures from the root of trust to this attestation is broken",
            signed(&|_| {}),
            broken.pem.clone(),
            vec![(Product::Milan, broken.ark_fingerprint.clone())],
            None,
        ),
        ("Chip certificate (VCEK) did not sign this attestation", tampered, good.pem.clone(), roots.clone(), None),
        ("Unsupported signature algorithm: 2", signed(&|r| r[0x034] = 2), good.pem.clone(), roots.clone(), None),
        ("must be signed by VCEK: 1", signed(&|r| r[0x048] = 1 << 2), good.pem.clone(), roots.clone(), None),
        ("Mask chip key must not be set", signed(&|r| r[0x048] = 1 << 1), good.pem.clone(), roots.clone(), None),
        ("host generated (VMPL 4 > 3)", signed(&|r| r[0x030] = 4), good.pem.clone(), roots.clone(), None),
        ("guest policy debugging must not be enabled", signed(&|r| r[0x00A] |= 1 << 3), good.pem.clone(), roots.clone(), None),
        ("guest policy migration must not be enabled", signed(&|r| r[0x00A] |= 1 << 2), good.pem.clone(), roots.clone(), None),
        ("does not meet or exceed the endorsed TCB", signed(&|r| r[0x187] = 100), good.pem.clone(), roots.clone(), None),
        ("Chip ID in attestation does not match endorsed chip ID", signed(&|r| r[0x1A0] = 6), good.pem.clone(), roots.clone(), None),
        (
            "endorsed TCB 0000000000000000 does not match reported TCB 7308000000000003",
            signed(&|_| {}),
            good.pem.clone(),
            roots.clone(),
            Some("0000000000000000"),
        ),
        ("Invalid TCB version data size: 2", signed(&|_| {}), good.pem.clone(), roots.clone(), Some("abcd")),
        (
            "Expected 3 endorsement certificates but got 0",
            signed(&|_| {}),
            "-----BEGIN CERTIFICATE-----\n!!\n".to_owned(),
            roots.clone(),
            None,
        ),
    ];
    for (why, r, pem, roots, endorsed) in cases {
        let err = verify(&r, pem.as_bytes(), endorsed, &roots).expect_err(why);
        assert!(err.0.contains(why), "expected {why:?}, got {err:?}");
    }
}

#[test]
fn turin_reads_its_own_tcb_layout_with_the_fmc_field() {
    let chip = [1u8; 64];
    let c = chain((2, 3, 4, 5, Some(1)), chip, false);
    // Turin (family 0x1A, model 0x01): fmc, boot_loader, tee, snp, 3 reserved, microcode.
    let mut r = report([1, 2, 3, 4, 0, 0, 0, 5], chip);
    r[0x188] = 0x1A;
    sign(&mut r, &c.vcek);
    let q = verify(&r, c.pem.as_bytes(), None, &roots(&c, Product::Turin)).expect("verifies");
    assert_eq!(q.reported_tcb.fields(Product::Turin), TcbFields { fmc: Some(1), boot_loader: 2, tee: 3, snp: 4, microcode: 5 });
    let mut low = report([0, 2, 3, 4, 0, 0, 0, 5], chip);
    low[0x188] = 0x1A;
    sign(&mut low, &c.vcek);
    let err = verify(&low, c.pem.as_bytes(), None, &roots(&c, Product::Turin)).expect_err("fmc below");
    assert!(err.0.contains("\"fmc\":0"), "{err}");
}
