//! What validation reads: objects over S3 (list and get, nothing else) and public keys. Both are
//! traits so the chain walk can be driven by anything that serves the same bytes.

use std::collections::HashMap;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use chrono::{DateTime, Utc};

/// A failure that stops validation: S3 refused (AccessDenied, NoSuchBucket, …) or could not be
/// reached, or the public keys could not be fetched. One line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// An object's bytes as stored and its user metadata (`x-amz-meta-*` without the prefix).
#[derive(Debug, Clone, Default)]
pub struct StoredObject {
    pub body: Vec<u8>,
    pub metadata: HashMap<String, String>,
}

#[async_trait::async_trait]
pub trait ObjectSource: Send + Sync {
    /// Keys under `prefix` after `start_after`, in key order, stopping before the first key that is
    /// not below `stop_before`.
    async fn list_keys(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        stop_before: Option<&str>,
    ) -> Result<Vec<String>, SourceError>;

    /// The "folders" directly under `prefix` (common prefixes with delimiter `/`), each ending in `/`.
    async fn list_folders(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, SourceError>;

    /// The object, or None when S3 says NoSuchKey.
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<StoredObject>, SourceError>;
}

/// Public keys (PKCS#1 DER) of a region whose validity overlaps [start, end].
#[async_trait::async_trait]
pub trait KeySource: Send + Sync {
    async fn public_keys(
        &self,
        region: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<Vec<u8>>, SourceError>;
}

/// S3 through the AWS SDK: ListObjectsV2 with StartAfter, GetObject.
pub struct S3Source {
    client: aws_sdk_s3::Client,
}

impl S3Source {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }
}

/// One line: the S3 error code and message, or why S3 could not be reached.
fn describe<E, R>(action: &str, bucket: &str, error: &aws_sdk_s3::error::SdkError<E, R>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => {
            let context = DisplayErrorContext(error).to_string();
            format!("S3 unavailable: {}", context.lines().next().unwrap_or_default())
        }
    };
    SourceError(format!("{action} in bucket {bucket} failed: {detail}"))
}

#[async_trait::async_trait]
impl ObjectSource for S3Source {
    async fn list_keys(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        stop_before: Option<&str>,
    ) -> Result<Vec<String>, SourceError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_start_after(start_after.map(str::to_owned))
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| describe("ListObjectsV2", bucket, &e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if stop_before.is_some_and(|stop| key >= stop) {
                    return Ok(keys);
                }
                keys.push(key.to_owned());
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(keys),
            }
        }
    }

    async fn list_folders(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, SourceError> {
        let mut folders = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .delimiter("/")
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| describe("ListObjectsV2", bucket, &e))?;
            folders.extend(page.common_prefixes().iter().filter_map(|p| p.prefix().map(str::to_owned)));
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(folders),
            }
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<StoredObject>, SourceError> {
        let response = match self.client.get_object().bucket(bucket).key(key).send().await {
            Ok(response) => response,
            Err(error) if error.code() == Some("NoSuchKey") => return Ok(None),
            Err(error) => return Err(describe("GetObject", bucket, &error)),
        };
        let metadata = response.metadata().cloned().unwrap_or_default();
        let body = response
            .body
            .collect()
            .await
            .map_err(|e| SourceError(format!("reading s3://{bucket}/{key} failed: {e}")))?
            .into_bytes()
            .to_vec();
        Ok(Some(StoredObject { body, metadata }))
    }
}
