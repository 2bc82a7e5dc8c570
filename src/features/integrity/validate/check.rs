//! Checking one digest or one log file from its stored bytes (blocking work: gunzip, hashing, RSA).

use std::collections::HashMap;
use std::io::Read;

use chrono::{DateTime, Utc};

use super::report::Problem;
use crate::features::integrity::digest::{self, Digest};

/// The keys validate-logs requires before it looks at a digest's contents.
const REQUIRED_KEYS: [&str; 6] = [
    "digestPublicKeyFingerprint",
    "digestS3Bucket",
    "digestS3Object",
    "previousDigestSignature",
    "digestEndTime",
    "digestStartTime",
];

/// A digest whose location and signature check out.
#[derive(Debug, Clone)]
pub struct VerifiedDigest {
    pub digest: Digest,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Lowercase hex SHA-256 of the uncompressed bytes: what the next digest records.
    pub sha256_hex: String,
    /// The hex signature from the object metadata: what the next digest records too.
    pub signature_hex: String,
}

impl VerifiedDigest {
    /// The digest's predecessor, unless this one starts a chain.
    pub fn previous(&self) -> Option<(&str, &str)> {
        match (&self.digest.previous_digest_s3_bucket, &self.digest.previous_digest_s3_object) {
            (Some(bucket), Some(key)) => Some((bucket, key)),
            _ => None,
        }
    }
}

/// Decompresses exactly one gzip member; bytes after it are an error, as validate-logs treats log
/// files (digests too here: our writer emits one member, and a second one would hide content).
fn gunzip_one_member(body: &[u8]) -> Result<Vec<u8>, Problem> {
    let mut decoder = flate2::bufread::GzDecoder::new(body);
    let mut plain = Vec::new();
    decoder.read_to_end(&mut plain).map_err(|_| Problem::InvalidFormat)?;
    if !decoder.into_inner().is_empty() {
        return Err(Problem::TrailingData);
    }
    Ok(plain)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, Problem> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|_| Problem::InvalidFormat)
}

/// Everything validate-logs checks on a digest, in its order, plus the digest's own times.
/// `public_keys` maps fingerprints to PKCS#1 DER keys of the chain's region.
pub fn check_digest(
    bucket: &str,
    key: &str,
    body: &[u8],
    metadata: &HashMap<String, String>,
    region: &str,
    public_keys: &HashMap<String, Vec<u8>>,
) -> Result<VerifiedDigest, Problem> {
    let plain = gunzip_one_member(body).map_err(|_| Problem::InvalidFormat)?;
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&plain).map_err(|_| Problem::InvalidFormat)?;
    if REQUIRED_KEYS.iter().any(|k| !fields.contains_key(*k)) {
        return Err(Problem::InvalidFormat);
    }
    let parsed: Digest =
        serde_json::from_value(serde_json::Value::Object(fields)).map_err(|_| Problem::InvalidFormat)?;
    let Some(signature_hex) = metadata.get("signature") else { return Err(Problem::SignatureFailed) };
    if !metadata.contains_key("signature-algorithm") {
        return Err(Problem::SignatureFailed);
    }
    if parsed.digest_s3_bucket != bucket || parsed.digest_s3_object != key {
        return Err(Problem::Moved);
    }
    let fingerprint = &parsed.digest_public_key_fingerprint;
    let Some(public_key) = public_keys.get(fingerprint) else {
        return Err(Problem::PublicKeyNotFound {
            region: region.to_owned(),
            fingerprint: fingerprint.clone(),
        });
    };
    let digest = digest::verify(&plain, signature_hex, public_key).map_err(|_| Problem::SignatureFailed)?;
    let start = parse_time(&digest.digest_start_time)?;
    let end = parse_time(&digest.digest_end_time)?;
    let sha256_hex = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &plain).as_ref());
    Ok(VerifiedDigest { digest, start, end, sha256_hex, signature_hex: signature_hex.clone() })
}

/// A log file's stored bytes against the `hashValue` its digest lists: SHA-256 of the uncompressed
/// bytes, lowercase hex, compared as text (as validate-logs does).
pub fn check_log_file(body: &[u8], hash_value: &str) -> Result<(), Problem> {
    let mut decoder = flate2::bufread::GzDecoder::new(body);
    let mut hasher = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = decoder.read(&mut buffer).map_err(|_| Problem::InvalidFormat)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    if !decoder.into_inner().is_empty() {
        return Err(Problem::TrailingData);
    }
    if hex::encode(hasher.finish().as_ref()) == hash_value { Ok(()) } else { Err(Problem::HashMismatch) }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
    }

    #[test]
    fn log_files_hash_uncompressed_and_refuse_a_second_member() {
        let plain = br#"{"Records":[]}"#;
        let stored = gzip(plain);
        assert_eq!(check_log_file(&stored, &sha256_hex(plain)), Ok(()));
        assert_eq!(check_log_file(&stored, &sha256_hex(b"other")), Err(Problem::HashMismatch));
        assert_eq!(check_log_file(&stored, &sha256_hex(plain).to_uppercase()), Err(Problem::HashMismatch));
        let mut two = stored.clone();
        two.extend(gzip(b"more"));
        assert_eq!(check_log_file(&two, &sha256_hex(plain)), Err(Problem::TrailingData));
        assert_eq!(check_log_file(plain, &sha256_hex(plain)), Err(Problem::InvalidFormat));
    }
}
