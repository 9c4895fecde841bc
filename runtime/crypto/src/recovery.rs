//! What disaster recovery needs from cryptography: members' RSA encryption keys (recovery
//! shares are encrypted to them with RSA-OAEP-SHA256, which CCF's `submit_recovery_share.sh`
//! decrypts with `openssl pkeyutl`), and Shamir secret sharing of the recovery key over
//! GF(256) (the `blahaj` crate).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256,
};

use crate::CryptoError;

/// The smallest RSA modulus accepted for a member's encryption key, in bits (CCF's
/// `keygenerator.sh --gen-enc-key` makes 2048-bit keys).
pub const ENCRYPTION_KEY_BITS_MIN: usize = 2048;
/// The largest, so that one encryption costs a bounded time.
pub const ENCRYPTION_KEY_BITS_MAX: usize = 8192;
/// Shamir over GF(256) numbers shares 1..=255.
pub const SHARES_MAX: usize = 255;

fn pem_block(pem_text: &str, tags: &[&str], what: &str) -> Result<Vec<u8>, CryptoError> {
    let block = pem::parse(pem_text.trim()).map_err(|e| CryptoError::Pem(format!("{what}: {e}")))?;
    if !tags.contains(&block.tag()) {
        return Err(CryptoError::Pem(format!("{what}: a PEM {} block was expected, not {}", tags.join(" or "), block.tag())));
    }
    Ok(block.into_contents())
}

/// The member's encryption key from its PEM (`PUBLIC KEY`, as `openssl rsa -pubout` writes
/// it), checked to be RSA of an accepted size.
pub fn encryption_key(public_pem: &str) -> Result<OaepPublicEncryptingKey, CryptoError> {
    let der = pem_block(public_pem, &["PUBLIC KEY"], "encryption public key")?;
    let key = PublicEncryptingKey::from_der(&der).map_err(|e| CryptoError::Key(format!("not an RSA public key: {e}")))?;
    let bits = key.key_size_bits();
    if !(ENCRYPTION_KEY_BITS_MIN..=ENCRYPTION_KEY_BITS_MAX).contains(&bits) {
        return Err(CryptoError::Key(format!(
            "an RSA encryption key of {bits} bits; {ENCRYPTION_KEY_BITS_MIN} to {ENCRYPTION_KEY_BITS_MAX} are accepted"
        )));
    }
    OaepPublicEncryptingKey::new(key).map_err(|e| CryptoError::Key(e.to_string()))
}

/// RSA-OAEP with SHA-256 (and MGF1-SHA-256), no label: `openssl pkeyutl -decrypt -pkeyopt
/// rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256` opens it.
pub fn encrypt_share(public_pem: &str, plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let key = encryption_key(public_pem)?;
    let mut out = vec![0; key.ciphertext_size()];
    let n = key
        .encrypt(&OAEP_SHA256_MGF1SHA256, plain, &mut out, None)
        .map_err(|_| CryptoError::Key(format!("{} bytes do not fit one RSA-OAEP block of this key", plain.len())))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// Opens what [`encrypt_share`] sealed, with the member's private key (`PRIVATE KEY`, PKCS#8,
/// as `openssl genrsa` writes it).
pub fn decrypt_share(private_pem: &str, encrypted: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let der = pem_block(private_pem, &["PRIVATE KEY"], "encryption private key")?;
    let key = PrivateDecryptingKey::from_pkcs8(&der).map_err(|e| CryptoError::Key(format!("not an RSA private key: {e}")))?;
    let key = OaepPrivateDecryptingKey::new(key).map_err(|e| CryptoError::Key(e.to_string()))?;
    let mut out = vec![0; key.min_output_size()];
    let n = key.decrypt(&OAEP_SHA256_MGF1SHA256, encrypted, &mut out, None).map_err(|_| CryptoError::Decrypt)?.len();
    out.truncate(n);
    Ok(out)
}

/// A new 2048-bit RSA encryption key pair as PEM: (`PRIVATE KEY` PKCS#8, `PUBLIC KEY` SPKI).
pub fn generate_encryption_key() -> Result<(String, String), CryptoError> {
    let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).map_err(|e| CryptoError::Key(e.to_string()))?;
    let private = pair.as_der().map_err(|e| CryptoError::Key(e.to_string()))?;
    let public = aws_lc_rs::signature::KeyPair::public_key(&pair).as_der().map_err(|e| CryptoError::Key(e.to_string()))?;
    let pem_of = |tag: &str, der: &[u8]| pem::encode(&pem::Pem::new(tag, der.to_vec()));
    Ok((pem_of("PRIVATE KEY", private.as_ref()), pem_of("PUBLIC KEY", public.as_ref())))
}

/// Splits `secret` into `count` shares any `threshold` of which give it back.
pub fn split_secret(secret: &[u8], threshold: u8, count: usize) -> Result<Vec<Vec<u8>>, CryptoError> {
    if threshold == 0 || count > SHARES_MAX {
        return Err(CryptoError::Key(format!("cannot split into {count} shares with threshold {threshold}")));
    }
    let dealer = blahaj::Sharks(threshold).dealer(secret);
    Ok(dealer.take(count).map(|s| Vec::from(&s)).collect())
}

/// The secret `threshold` distinct shares of [`split_secret`] give. Shares of another secret,
/// or damaged ones, give a wrong secret, not an error: the caller checks the result.
pub fn combine_shares(shares: &[Vec<u8>], threshold: u8) -> Result<Vec<u8>, CryptoError> {
    let parsed = shares
        .iter()
        .map(|s| blahaj::Share::try_from(s.as_slice()).map_err(|e| CryptoError::Key(format!("not a share: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    blahaj::Sharks(threshold).recover(parsed.iter()).map_err(|e| CryptoError::Key(format!("the shares do not combine: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_encrypt_to_the_member_and_only_its_key_opens_them() {
        let (private, public) = generate_encryption_key().expect("keygen");
        let (other, _) = generate_encryption_key().expect("keygen");
        let sealed = encrypt_share(&public, b"share bytes").expect("encrypt");
        assert_eq!(sealed.len(), 256, "one 2048-bit RSA block");
        assert_eq!(decrypt_share(&private, &sealed).expect("decrypt"), b"share bytes");
        assert!(decrypt_share(&other, &sealed).is_err(), "another member's key");
        let mut tampered = sealed.clone();
        tampered[100] ^= 1;
        assert!(decrypt_share(&private, &tampered).is_err(), "tampered");
        assert!(encrypt_share(&public, &[0; 200]).is_err(), "too long for one OAEP block");
        assert!(encryption_key("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----").is_err());
        assert!(encryption_key("not pem").is_err());
        let ec = p384::SecretKey::from_bytes(&[7u8; 48].into()).expect("key");
        use p384::pkcs8::EncodePublicKey;
        let ec_pem = ec.public_key().to_public_key_pem(p384::pkcs8::LineEnding::LF).expect("pem");
        assert!(encryption_key(&ec_pem).is_err(), "an EC key is not an encryption key");
    }

    #[test]
    fn any_threshold_of_shares_gives_the_secret_and_fewer_do_not() {
        let secret = [42u8; 32];
        for (threshold, count) in [(1u8, 1usize), (1, 3), (2, 2), (2, 3), (3, 5), (5, 5)] {
            let shares = split_secret(&secret, threshold, count).expect("split");
            assert_eq!(shares.len(), count);
            for start in 0..=(count - threshold as usize) {
                let some = &shares[start..start + threshold as usize];
                assert_eq!(combine_shares(some, threshold).expect("combine"), secret, "t={threshold} n={count} from {start}");
            }
            if threshold > 1 {
                assert!(combine_shares(&shares[..threshold as usize - 1], threshold).is_err(), "below the threshold");
                let twice = vec![shares[0].clone(); threshold as usize];
                assert!(combine_shares(&twice, threshold).is_err(), "the same share twice counts once");
            }
        }
        let other = split_secret(&[1u8; 32], 2, 2).expect("split");
        let mixed = vec![split_secret(&secret, 2, 2).expect("split")[0].clone(), other[1].clone()];
        assert_ne!(combine_shares(&mixed, 2).ok(), Some(secret.to_vec()), "shares of two secrets do not give either");
        assert!(combine_shares(&[vec![]], 1).is_err(), "an empty share");
        assert!(split_secret(&secret, 0, 1).is_err());
    }
}
