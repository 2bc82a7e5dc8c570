//! Where log files go: an object store that writes a key only when it is absent, or already holds
//! the same bytes (a retry after a crash). S3 in production (`integrations::s3`).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object did not exist and was written.
    Created,
    /// An identical object was already there (a retry after a crash).
    AlreadyPresent,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Anything a retry may fix: bucket missing, access denied, the store unreachable.
    #[error("{0}")]
    Retryable(String),
    /// An object with this key but other bytes exists: never overwritten.
    #[error("object s3://{bucket}/{key} exists with different content; not overwritten")]
    Conflict { bucket: String, key: String },
}

/// One log file to write, with the SHA-256 of its bytes (to compare with an object already there).
#[derive(Debug, Clone, Copy)]
pub struct LogObject<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub body: &'a [u8],
    pub sha256: &'a [u8],
    /// Server-side encryption with this KMS key; empty: the bucket's default.
    pub kms_key_id: &'a str,
}

#[async_trait::async_trait]
pub trait LogSink: Send + Sync {
    /// Writes the object unless its key exists; an existing object must hold the same bytes.
    async fn put_log_file(&self, object: LogObject<'_>) -> Result<PutOutcome, SinkError>;
}
