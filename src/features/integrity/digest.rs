//! The digest file: its JSON (field names and order as CloudTrail writes them), its key, and the
//! string CloudTrail signs (`digestEndTime \n bucket/key \n sha256(uncompressed) \n previousSignature`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::keys::{self, KeyError, SigningKey};

/// One log file listed in a digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestLogFile {
    pub s3_bucket: String,
    pub s3_object: String,
    /// Lowercase hex SHA-256 of the **uncompressed** log file.
    pub hash_value: String,
    pub hash_algorithm: String,
    pub newest_event_time: String,
    pub oldest_event_time: String,
}

/// A digest as CloudTrail writes it (spec §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Digest {
    pub aws_account_id: String,
    pub digest_start_time: String,
    pub digest_end_time: String,
    pub digest_s3_bucket: String,
    pub digest_s3_object: String,
    pub digest_public_key_fingerprint: String,
    pub digest_signature_algorithm: String,
    pub newest_event_time: Option<String>,
    pub oldest_event_time: Option<String>,
    pub previous_digest_s3_bucket: Option<String>,
    pub previous_digest_s3_object: Option<String>,
    pub previous_digest_hash_value: Option<String>,
    pub previous_digest_hash_algorithm: Option<String>,
    pub previous_digest_signature: Option<String>,
    pub log_files: Vec<DigestLogFile>,
}

/// CloudTrail's time format in digests.
pub fn digest_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The exact string CloudTrail signs for a digest whose uncompressed bytes hash to `sha256_hex`.
pub fn string_to_sign(digest: &Digest, sha256_hex: &str) -> String {
    format!(
        "{}\n{}/{}\n{}\n{}",
        digest.digest_end_time,
        digest.digest_s3_bucket,
        digest.digest_s3_object,
        sha256_hex,
        digest.previous_digest_signature.as_deref().unwrap_or("null")
    )
}

/// A signed digest: the uncompressed bytes to store (gzipped) and the S3 metadata signature.
pub struct SignedDigest {
    pub json: Vec<u8>,
    pub sha256_hex: String,
    pub signature_hex: String,
}

pub fn sign(digest: &Digest, key: &SigningKey) -> Result<SignedDigest, KeyError> {
    let json = serde_json::to_vec(digest).map_err(|_| KeyError::Sign)?;
    let sha256_hex = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &json).as_ref());
    let signature_hex = key.sign_hex(string_to_sign(digest, &sha256_hex).as_bytes())?;
    Ok(SignedDigest { json, sha256_hex, signature_hex })
}

/// Verifies a stored digest as `aws cloudtrail validate-logs` does: rebuild the string to sign from
/// the uncompressed bytes as stored, check the signature with the public key.
pub fn verify(uncompressed: &[u8], signature_hex: &str, public_key_pkcs1: &[u8]) -> Result<Digest, String> {
    let digest: Digest =
        serde_json::from_slice(uncompressed).map_err(|e| format!("digest is not valid JSON: {e}"))?;
    let sha256_hex =
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, uncompressed).as_ref());
    if keys::verify_hex(public_key_pkcs1, string_to_sign(&digest, &sha256_hex).as_bytes(), signature_hex) {
        Ok(digest)
    } else {
        Err("signature verification failed".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starting_digest(key: &SigningKey) -> Digest {
        Digest {
            aws_account_id: "111122223333".into(),
            digest_start_time: "2026-11-24T04:00:00Z".into(),
            digest_end_time: "2026-11-24T05:00:00Z".into(),
            digest_s3_bucket: "central-bucket".into(),
            digest_s3_object: "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/24/x.json.gz".into(),
            digest_public_key_fingerprint: key.fingerprint(),
            digest_signature_algorithm: "SHA256withRSA".into(),
            newest_event_time: None,
            oldest_event_time: None,
            previous_digest_s3_bucket: None,
            previous_digest_s3_object: None,
            previous_digest_hash_value: None,
            previous_digest_hash_algorithm: None,
            previous_digest_signature: None,
            log_files: vec![],
        }
    }

    #[test]
    fn a_starting_digest_signs_null_as_the_previous_signature() {
        let key = SigningKey::generate().unwrap();
        let digest = starting_digest(&key);
        assert!(string_to_sign(&digest, "ab").ends_with("\nab\nnull"));
        let signed = sign(&digest, &key).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&signed.json).unwrap();
        assert_eq!(json["previousDigestSignature"], serde_json::Value::Null, "present, as null");
        assert_eq!(json["logFiles"], serde_json::json!([]));
        assert_eq!(verify(&signed.json, &signed.signature_hex, &key.public_key_pkcs1()).unwrap(), digest);
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let key = SigningKey::generate().unwrap();
        let signed = sign(&starting_digest(&key), &key).unwrap();
        let tampered =
            String::from_utf8(signed.json.clone()).unwrap().replace("111122223333", "111122223334");
        assert!(verify(tampered.as_bytes(), &signed.signature_hex, &key.public_key_pkcs1()).is_err());
        let other = SigningKey::generate().unwrap();
        assert!(verify(&signed.json, &signed.signature_hex, &other.public_key_pkcs1()).is_err());
    }

    #[test]
    fn the_aws_documentation_digests_parse() {
        for name in ["awsdocs-digest-example-0.json", "awsdocs-digest-example-1.json"] {
            let path =
                format!("{}/../shared/data/cloudtrail/digest_examples/{name}", env!("CARGO_MANIFEST_DIR"));
            let Ok(text) = std::fs::read_to_string(&path) else { return };
            let digest: Digest = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(digest.digest_signature_algorithm, "SHA256withRSA");
        }
    }
}
