//! Secrets: bearer tokens (stored as SHA-256 hashes), AWS-style access key pairs (the secret is
//! stored encrypted, because SigV4 verification needs it back), and the master key that encrypts them.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Prefix that makes orgtrail bearer tokens recognizable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "otk_";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("master key must be 32 bytes encoded in base64 (generate one with `openssl rand -base64 32`)")]
    BadMasterKey,
    #[error("a stored secret could not be decrypted with the configured master key")]
    Decrypt,
    #[error("the system random number generator failed")]
    Random,
}

fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).map_err(|_| SecretError::Random)?;
    Ok(bytes)
}

/// A new bearer secret: prefix + 32 random bytes, base64url.
pub fn new_bearer_secret() -> Result<String, SecretError> {
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)))
}

/// The stored form of a bearer secret. Secrets carry 256 random bits, so a fast hash is enough:
/// nothing can be brute-forced, and lookup stays one index probe.
pub fn hash_bearer_secret(secret: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, secret.as_bytes()).as_ref().to_vec()
}

/// Prefix of enrollment tokens, distinct from API tokens so that neither is mistaken for the other.
pub const ENROLLMENT_TOKEN_PREFIX: &str = "oten_";

/// A new enrollment secret: prefix + 32 random bytes, base64url (hashed like bearer secrets).
pub fn new_enrollment_secret() -> Result<String, SecretError> {
    Ok(format!("{ENROLLMENT_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)))
}

/// A new ExternalId for a member role's trust policy: 128 random bits in hex, which stays within
/// IAM's ExternalId alphabet ([\w+=,.@:/-]) and length (2..=1224).
pub fn new_external_id() -> Result<String, SecretError> {
    Ok(format!("orgtrail-{}", hex::encode(random_bytes::<16>()?)))
}

/// A new AWS-style key pair: a 20-character id starting with "AKOT" and a 40-character secret.
pub fn new_access_key_pair() -> Result<(String, String), SecretError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let id_bytes = random_bytes::<16>()?;
    let id: String = id_bytes.iter().map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect();
    let secret = STANDARD.encode(random_bytes::<30>()?);
    Ok((format!("AKOT{id}"), secret))
}

/// The deployment's master key (AES-256-GCM).
pub struct MasterKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn from_base64(encoded: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD.decode(encoded.trim()).map_err(|_| SecretError::BadMasterKey)?;
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SecretError::BadMasterKey)?;
        Ok(Self { key: LessSafeKey::new(unbound) })
    }

    /// A fresh random key, base64-encoded (for `orgtrail dev`).
    pub fn generate_base64() -> Result<String, SecretError> {
        Ok(STANDARD.encode(random_bytes::<32>()?))
    }

    /// nonce || ciphertext+tag.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, SecretError> {
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let mut in_out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::empty(), &mut in_out)
            .map_err(|_| SecretError::Random)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    pub fn decrypt(&self, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretError::Decrypt);
        }
        let (nonce_bytes, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce_bytes).map_err(|_| SecretError::Decrypt)?;
        let mut in_out = ciphertext.to_vec();
        let plaintext =
            self.key.open_in_place(nonce, Aad::empty(), &mut in_out).map_err(|_| SecretError::Decrypt)?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_round_trips_and_detects_tampering() {
        let key = MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
        let sealed = key.encrypt(b"secret").unwrap();
        assert_eq!(key.decrypt(&sealed).unwrap(), b"secret");
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(key.decrypt(&tampered).is_err());
        let other = MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
        assert!(other.decrypt(&sealed).is_err());
        assert!(MasterKey::from_base64("short").is_err());
    }

    #[test]
    fn secrets_have_the_documented_shape() {
        let secret = new_bearer_secret().unwrap();
        assert!(secret.starts_with(TOKEN_PREFIX));
        assert_eq!(hash_bearer_secret(&secret).len(), 32);
        let (id, secret) = new_access_key_pair().unwrap();
        assert_eq!(id.len(), 20);
        assert_eq!(secret.len(), 40);
    }
}
