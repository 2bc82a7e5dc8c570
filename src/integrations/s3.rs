//! The S3 sink: CloudTrail's key layout and conditional, idempotent PUTs.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use chrono::{DateTime, Utc};

/// `[prefix/]AWSLogs/[o-ORGID/]`: where every CloudTrail key of a trail starts.
pub fn awslogs_root(prefix: &str, organization_id: Option<&str>) -> String {
    let mut key = String::with_capacity(200);
    if !prefix.is_empty() {
        key.push_str(prefix);
        key.push('/');
    }
    key.push_str("AWSLogs/");
    if let Some(org) = organization_id {
        key.push_str(org);
        key.push('/');
    }
    key
}

/// `[prefix/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHmmZ_UNIQUE.json.gz`
pub fn log_file_key(
    prefix: &str,
    organization_id: Option<&str>,
    account: &str,
    region: &str,
    delivered_at: DateTime<Utc>,
    unique: &str,
) -> String {
    file_key("CloudTrail", prefix, organization_id, account, region, delivered_at, unique)
}

/// `[prefix/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail-Insight/REGION/YYYY/MM/DD/ACCOUNT_CloudTrail-Insight_REGION_YYYYMMDDTHHmmZ_UNIQUE.json.gz`
pub fn insight_file_key(
    prefix: &str,
    organization_id: Option<&str>,
    account: &str,
    region: &str,
    delivered_at: DateTime<Utc>,
    unique: &str,
) -> String {
    file_key("CloudTrail-Insight", prefix, organization_id, account, region, delivered_at, unique)
}

/// Log and Insights files differ only in their folder, which their names repeat.
fn file_key(
    folder: &str,
    prefix: &str,
    organization_id: Option<&str>,
    account: &str,
    region: &str,
    delivered_at: DateTime<Utc>,
    unique: &str,
) -> String {
    let mut key = awslogs_root(prefix, organization_id);
    key.push_str(&format!(
        "{account}/{folder}/{region}/{}/{account}_{folder}_{region}_{}_{unique}.json.gz",
        delivered_at.format("%Y/%m/%d"),
        delivered_at.format("%Y%m%dT%H%MZ"),
    ));
    key
}

/// 16 letters and digits derived from a batch's identity: the same batch always gets the same key.
pub fn unique_part(identity: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, identity.as_bytes());
    digest.as_ref()[..16].iter().map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object did not exist and was written.
    Created,
    /// An identical object was already there (a retry after a crash).
    AlreadyPresent,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Anything a retry may fix: bucket missing, access denied, S3 unreachable.
    #[error("{0}")]
    Retryable(String),
    /// An object with this key but other bytes exists: never overwritten.
    #[error("object s3://{bucket}/{key} exists with different content; not overwritten")]
    Conflict { bucket: String, key: String },
}

/// An S3 client: AWS by default, or an S3-compatible endpoint; static credentials or the usual
/// AWS credential sources.
pub async fn client(
    endpoint: Option<&str>,
    region: &str,
    credentials: Option<(&str, &str)>,
    force_path_style: bool,
) -> aws_sdk_s3::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()));
    if let Some((id, secret)) = credentials {
        loader = loader
            .credentials_provider(aws_sdk_s3::config::Credentials::new(id, secret, None, None, "orgtrail"));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let shared = loader.load().await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared).force_path_style(force_path_style).build(),
    )
}

#[derive(Clone)]
pub struct S3Sink {
    client: aws_sdk_s3::Client,
}

impl S3Sink {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }

    /// Writes `body` at `key` unless the key exists; an existing object must hold the same bytes.
    pub async fn put_log_file(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        sha256: &[u8],
        kms_key_id: &str,
    ) -> Result<PutOutcome, SinkError> {
        let mut put = self.put_request(bucket, key, body);
        if !kms_key_id.is_empty() {
            put = put.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(kms_key_id);
        }
        self.put_once(put, bucket, key, sha256).await.inspect_err(|_| {
            crate::metrics::pipeline().s3_errors.with_label_values(&["put_log_file"]).inc();
        })
    }

    /// Writes a digest file with its signature in S3 user metadata, where `aws cloudtrail
    /// validate-logs` reads it (`x-amz-meta-signature`, `x-amz-meta-signature-algorithm`).
    pub async fn put_digest(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        sha256: &[u8],
        signature_hex: &str,
    ) -> Result<PutOutcome, SinkError> {
        let put = self
            .put_request(bucket, key, body)
            .metadata("signature", signature_hex)
            .metadata("signature-algorithm", crate::features::integrity::keys::SIGNATURE_ALGORITHM);
        let put = self.put_once(put, bucket, key, sha256).await;
        match &put {
            Ok(_) => crate::metrics::pipeline().digest_writes.inc(),
            Err(_) => crate::metrics::pipeline().s3_errors.with_label_values(&["put_digest"]).inc(),
        }
        put
    }

    fn put_request(&self, bucket: &str, key: &str, body: &[u8]) -> PutObjectFluentBuilder {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .if_none_match("*")
            .content_type("application/json")
            .content_encoding("gzip")
            .body(ByteStream::from(body.to_vec()))
    }

    async fn put_once(
        &self,
        put: PutObjectFluentBuilder,
        bucket: &str,
        key: &str,
        sha256: &[u8],
    ) -> Result<PutOutcome, SinkError> {
        match put.send().await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(error) => {
                let code = error.code().unwrap_or_default().to_owned();
                let status = error.raw_response().map(|r| r.status().as_u16());
                if code == "PreconditionFailed" || status == Some(412) {
                    return self.compare_existing(bucket, key, sha256).await;
                }
                Err(SinkError::Retryable(describe(bucket, &code, &DisplayErrorContext(&error).to_string())))
            }
        }
    }

    async fn compare_existing(
        &self,
        bucket: &str,
        key: &str,
        sha256: &[u8],
    ) -> Result<PutOutcome, SinkError> {
        let object = self.client.get_object().bucket(bucket).key(key).send().await.map_err(|e| {
            SinkError::Retryable(describe(
                bucket,
                e.code().unwrap_or_default(),
                &DisplayErrorContext(&e).to_string(),
            ))
        })?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| SinkError::Retryable(format!("reading s3://{bucket}/{key}: {e}")))?
            .into_bytes();
        let existing = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
        if existing.as_ref() == sha256 {
            Ok(PutOutcome::AlreadyPresent)
        } else {
            Err(SinkError::Conflict { bucket: bucket.to_owned(), key: key.to_owned() })
        }
    }
}

/// One line for trail status: what failed, in CloudTrail's words where it has them.
fn describe(bucket: &str, code: &str, detail: &str) -> String {
    match code {
        "NoSuchBucket" => format!("NoSuchBucket: the bucket {bucket} does not exist"),
        "AccessDenied" => format!("AccessDenied: orgtrail may not write to bucket {bucket}"),
        "" => format!("S3 unavailable: {}", detail.lines().next().unwrap_or(detail)),
        other => format!("{other}: {}", detail.lines().next().unwrap_or(detail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_cloudtrail_layout() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap().with_timezone(&Utc);
        assert_eq!(
            log_file_key("", Some("o-abcdefghij"), "111122223333", "eu-west-1", at, "AbCdEfGhIjKlMnOp"),
            "AWSLogs/o-abcdefghij/111122223333/CloudTrail/eu-west-1/2026/01/02/111122223333_CloudTrail_eu-west-1_20260102T0304Z_AbCdEfGhIjKlMnOp.json.gz"
        );
        assert_eq!(
            log_file_key("audit/x", None, "111122223333", "us-east-1", at, "u"),
            "audit/x/AWSLogs/111122223333/CloudTrail/us-east-1/2026/01/02/111122223333_CloudTrail_us-east-1_20260102T0304Z_u.json.gz"
        );
        let unique = unique_part("1:2:3");
        assert_eq!(unique.len(), 16);
        assert!(unique.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(unique, unique_part("1:2:3"));
        assert_ne!(unique, unique_part("1:2:4"));
    }
}
