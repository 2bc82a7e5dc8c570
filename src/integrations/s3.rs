//! S3: the client, and conditional, idempotent PUTs of log and digest files (the pipeline's
//! [`LogSink`]); the key layout is `model::layout`'s.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use crate::pipeline::sink::{LogObject, LogSink, PutOutcome, SinkError};

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

#[async_trait::async_trait]
impl LogSink for S3Sink {
    async fn put_log_file(&self, object: LogObject<'_>) -> Result<PutOutcome, SinkError> {
        S3Sink::put_log_file(self, object.bucket, object.key, object.body, object.sha256, object.kms_key_id)
            .await
    }
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

    /// Writes a digest file with its user metadata (`x-amz-meta-NAME`): where `aws cloudtrail
    /// validate-logs` reads a digest's signature.
    pub async fn put_digest(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        sha256: &[u8],
        metadata: &[(&str, &str)],
    ) -> Result<PutOutcome, SinkError> {
        let mut put = self.put_request(bucket, key, body);
        for (name, value) in metadata {
            put = put.metadata(*name, *value);
        }
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
