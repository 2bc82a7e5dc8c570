//! RSA-2048 signing keys. Public keys are served as CloudTrail's ListPublicKeys does: PKCS#1
//! `RSAPublicKey` DER (base64 on the wire) with the lowercase hex MD5 of those bytes as fingerprint.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, RSA_PKCS1_SHA256, UnparsedPublicKey};
use md5::Digest;

/// The algorithm name CloudTrail writes in digests and their S3 metadata.
pub const SIGNATURE_ALGORITHM: &str = "SHA256withRSA";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("RSA key generation failed")]
    Generate,
    #[error("the stored private key is not a valid PKCS#8 RSA key")]
    BadPrivateKey,
    #[error("signing failed")]
    Sign,
}

/// A private signing key (kept as PKCS#8 DER, to be stored encrypted).
pub struct SigningKey {
    pair: KeyPair,
}

impl SigningKey {
    pub fn generate() -> Result<Self, KeyError> {
        Ok(Self { pair: KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)? })
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        Ok(Self { pair: KeyPair::from_pkcs8(der).map_err(|_| KeyError::BadPrivateKey)? })
    }

    pub fn to_pkcs8(&self) -> Result<Vec<u8>, KeyError> {
        Ok(self.pair.as_der().map_err(|_| KeyError::BadPrivateKey)?.as_ref().to_vec())
    }

    /// PKCS#1 `RSAPublicKey` DER: what ListPublicKeys returns as `Value`.
    pub fn public_key_pkcs1(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public_key_pkcs1())
    }

    /// SHA256withRSA (PKCS#1 v1.5) over `message`, lowercase hex.
    pub fn sign_hex(&self, message: &[u8]) -> Result<String, KeyError> {
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature).map_err(|_| KeyError::Sign)?;
        Ok(hex::encode(signature))
    }
}

/// CloudTrail's fingerprint: lowercase hex MD5 of the PKCS#1 DER public key.
pub fn fingerprint(public_key_pkcs1: &[u8]) -> String {
    hex::encode(md5::Md5::digest(public_key_pkcs1))
}

/// Verifies a hex SHA256withRSA signature with a PKCS#1 DER public key.
pub fn verify_hex(public_key_pkcs1: &[u8], message: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex) else { return false };
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_key_pkcs1)
        .verify(message, &signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    #[test]
    fn public_keys_are_pkcs1_and_signatures_verify() {
        let key = SigningKey::generate().unwrap();
        let public = key.public_key_pkcs1();
        // A 2048-bit RSAPublicKey in base64 starts like CloudTrail's: "MIIBCgKCAQEA".
        assert!(base64::engine::general_purpose::STANDARD.encode(&public).starts_with("MIIBCgKCAQEA"));
        assert_eq!(key.fingerprint().len(), 32);
        let signature = key.sign_hex(b"message").unwrap();
        assert_eq!(signature.len(), 512);
        assert!(verify_hex(&public, b"message", &signature));
        assert!(!verify_hex(&public, b"messagE", &signature));
        let reloaded = SigningKey::from_pkcs8(&key.to_pkcs8().unwrap()).unwrap();
        assert_eq!(reloaded.public_key_pkcs1(), public);
    }
}
