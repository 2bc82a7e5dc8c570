//! The filesystem behind the in-process S3 server: objects at `ROOT/BUCKET/KEY`, their attributes
//! at `ROOT/.meta/BUCKET/KEY.json`, so keys of any length S3 allows per path segment work (CloudTrail
//! keys run past 200 characters). Writes are atomic (temp file, then link or rename), and
//! `If-None-Match: *` is enforced atomically with a hard link, as conditional writes must be.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use futures::TryStreamExt;
use md5::Digest;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};

pub struct FsStore {
    root: PathBuf,
}

/// Attributes kept beside an object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Attributes {
    e_tag: String,
    content_type: Option<String>,
    content_encoding: Option<String>,
    metadata: HashMap<String, String>,
    /// Recorded and reported back (HeadObject/GetObject); nothing is encrypted here.
    #[serde(default)]
    server_side_encryption: Option<String>,
    #[serde(default)]
    ssekms_key_id: Option<String>,
}

fn internal(error: impl std::fmt::Display) -> S3Error {
    S3Error::with_message(S3ErrorCode::InternalError, error.to_string())
}

impl FsStore {
    pub fn new(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join(".meta"))?;
        std::fs::create_dir_all(root.join(".tmp"))?;
        Ok(Self { root: root.canonicalize()? })
    }

    fn bucket_path(&self, bucket: &str) -> S3Result<PathBuf> {
        if !s3s::path::check_bucket_name(bucket) {
            return Err(s3_error!(InvalidBucketName));
        }
        Ok(self.root.join(bucket))
    }

    fn existing_bucket(&self, bucket: &str) -> S3Result<PathBuf> {
        let path = self.bucket_path(bucket)?;
        if path.is_dir() { Ok(path) } else { Err(s3_error!(NoSuchBucket)) }
    }

    /// A key as a relative path: no empty, `.` or `..` segments may escape the bucket.
    fn key_path(key: &str) -> S3Result<PathBuf> {
        let path = Path::new(key);
        let safe = !key.is_empty()
            && !key.ends_with('/')
            && path.components().all(|c| matches!(c, Component::Normal(_)))
            && !key.contains("//");
        if safe { Ok(path.to_owned()) } else { Err(s3_error!(InvalidArgument, "unsupported object key")) }
    }

    fn object_path(&self, bucket: &str, key: &str) -> S3Result<PathBuf> {
        Ok(self.existing_bucket(bucket)?.join(Self::key_path(key)?))
    }

    fn meta_path(&self, bucket: &str, key: &str) -> S3Result<PathBuf> {
        let mut path = self.root.join(".meta").join(bucket).join(Self::key_path(key)?);
        let name = format!("{}.json", path.file_name().and_then(|n| n.to_str()).unwrap_or("object"));
        path.set_file_name(name);
        Ok(path)
    }

    fn temp_path(&self) -> PathBuf {
        self.root.join(".tmp").join(uuid::Uuid::new_v4().simple().to_string())
    }

    async fn read_attributes(&self, bucket: &str, key: &str) -> S3Result<Attributes> {
        match tokio::fs::read(self.meta_path(bucket, key)?).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(internal),
            Err(_) => Ok(Attributes::default()),
        }
    }

    async fn write_file_atomically(&self, dest: &Path, bytes: &[u8], exclusive: bool) -> S3Result<()> {
        let temp = self.temp_path();
        let dest = dest.to_owned();
        let bytes = bytes.to_vec();
        // One blocking task for the whole write: a hop to the blocking pool per file operation
        // was most of a put's cost.
        tokio::task::spawn_blocking(move || {
            std::fs::write(&temp, &bytes).map_err(internal)?;
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(internal)?;
            }
            let placed = if exclusive {
                // A hard link fails if the name exists: creation is atomic with the check.
                match std::fs::hard_link(&temp, &dest) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Err(s3_error!(PreconditionFailed, "the object already exists"))
                    }
                    Err(e) => Err(internal(e)),
                }
            } else {
                std::fs::rename(&temp, &dest).map_err(internal)
            };
            let _ = std::fs::remove_file(&temp);
            placed
        })
        .await
        .map_err(internal)?
    }

    fn list_keys(&self, bucket_path: &Path, prefix: &str) -> S3Result<Vec<(String, std::fs::Metadata)>> {
        // Start the walk at the deepest directory the prefix names.
        let start_dir = match prefix.rfind('/') {
            Some(i) => bucket_path.join(&prefix[..i]),
            None => bucket_path.to_owned(),
        };
        let mut found = Vec::new();
        let mut stack = vec![start_dir];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(metadata) = entry.metadata() else { continue };
                if metadata.is_dir() {
                    stack.push(path);
                } else if let Ok(relative) = path.strip_prefix(bucket_path)
                    && let Some(key) = relative.to_str()
                    && key.starts_with(prefix)
                {
                    found.push((key.to_owned(), metadata));
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }
}

fn timestamp(metadata: &std::fs::Metadata) -> Option<Timestamp> {
    metadata.modified().ok().map(Timestamp::from)
}

#[async_trait::async_trait]
impl S3 for FsStore {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let path = self.bucket_path(&req.input.bucket)?;
        if path.exists() {
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        tokio::fs::create_dir_all(&path).await.map_err(internal)?;
        Ok(S3Response::new(CreateBucketOutput::default()))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.existing_bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let path = self.existing_bucket(&req.input.bucket)?;
        if !self.list_keys(&path, "")?.is_empty() {
            return Err(s3_error!(BucketNotEmpty));
        }
        tokio::fs::remove_dir_all(&path).await.map_err(internal)?;
        let _ = tokio::fs::remove_dir_all(self.root.join(".meta").join(&req.input.bucket)).await;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let mut buckets = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(internal)?.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            let created = entry.metadata().ok().and_then(|m| timestamp(&m));
            buckets.push(Bucket { name: Some(name), creation_date: created, bucket_region: None });
        }
        buckets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), ..Default::default() }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.existing_bucket(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        let path = self.object_path(&input.bucket, &input.key)?;
        let exclusive = input.if_none_match.as_ref().is_some_and(|c| c.is_any());
        if exclusive && path.exists() {
            return Err(s3_error!(PreconditionFailed, "the object already exists"));
        }
        let Some(body) = input.body else { return Err(s3_error!(IncompleteBody)) };
        let chunks: Vec<Bytes> =
            body.try_collect().await.map_err(|e| internal(format!("reading the body: {e}")))?;
        let bytes: Vec<u8> = chunks.concat();
        let e_tag = hex::encode(md5::Md5::digest(&bytes));
        let attributes = Attributes {
            e_tag: e_tag.clone(),
            content_type: input.content_type.map(|c| c.to_string()),
            content_encoding: input.content_encoding,
            metadata: input.metadata.unwrap_or_default().into_iter().collect(),
            server_side_encryption: input.server_side_encryption.map(|s| s.as_str().to_owned()),
            ssekms_key_id: input.ssekms_key_id,
        };
        // Attributes first: an object is never visible without them.
        let meta = serde_json::to_vec(&attributes).map_err(internal)?;
        let meta_path = self.meta_path(&input.bucket, &input.key)?;
        if exclusive {
            // Keep a concurrent winner's attributes: write ours only once the data link succeeds.
            self.write_file_atomically(&path, &bytes, true).await?;
            self.write_file_atomically(&meta_path, &meta, false).await?;
        } else {
            self.write_file_atomically(&meta_path, &meta, false).await?;
            self.write_file_atomically(&path, &bytes, false).await?;
        }
        Ok(S3Response::new(PutObjectOutput { e_tag: Some(ETag::Strong(e_tag)), ..Default::default() }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let path = self.object_path(&input.bucket, &input.key)?;
        let bytes = tokio::fs::read(&path).await.map_err(|_| s3_error!(NoSuchKey))?;
        let metadata = tokio::fs::metadata(&path).await.map_err(internal)?;
        let attributes = self.read_attributes(&input.bucket, &input.key).await?;
        let full = bytes.len() as u64;
        let (body, content_range) = match input.range {
            None => (Bytes::from(bytes), None),
            Some(range) => {
                let span = range.check(full).map_err(|_| s3_error!(InvalidRange))?;
                let slice = Bytes::from(bytes).slice(span.start as usize..span.end as usize);
                (slice, Some(format!("bytes {}-{}/{full}", span.start, span.end.saturating_sub(1))))
            }
        };
        let length = body.len() as i64;
        let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(body) });
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(stream)),
            content_length: Some(length),
            content_range,
            last_modified: timestamp(&metadata),
            e_tag: Some(ETag::Strong(attributes.e_tag)),
            content_type: attributes.content_type.and_then(|c| c.parse().ok()),
            content_encoding: attributes.content_encoding,
            metadata: Some(attributes.metadata.into_iter().collect()),
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let path = self.object_path(&input.bucket, &input.key)?;
        let metadata = tokio::fs::metadata(&path).await.map_err(|_| s3_error!(NoSuchKey))?;
        let attributes = self.read_attributes(&input.bucket, &input.key).await?;
        Ok(S3Response::new(HeadObjectOutput {
            server_side_encryption: attributes.server_side_encryption.map(ServerSideEncryption::from),
            ssekms_key_id: attributes.ssekms_key_id,
            content_length: Some(metadata.len() as i64),
            last_modified: timestamp(&metadata),
            e_tag: Some(ETag::Strong(attributes.e_tag)),
            content_type: attributes.content_type.and_then(|c| c.parse().ok()),
            content_encoding: attributes.content_encoding,
            metadata: Some(attributes.metadata.into_iter().collect()),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        let path = self.object_path(&input.bucket, &input.key)?;
        let _ = tokio::fs::remove_file(&path).await;
        let _ = tokio::fs::remove_file(self.meta_path(&input.bucket, &input.key)?).await;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let page = self.page(
            &input.bucket,
            input.prefix.as_deref(),
            input.delimiter.as_deref(),
            input.marker.as_deref(),
            input.max_keys,
        )?;
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            marker: input.marker,
            max_keys: Some(page.max_keys),
            is_truncated: Some(page.truncated),
            next_marker: page.truncated.then(|| page.last.clone()).flatten(),
            contents: Some(page.objects),
            common_prefixes: Some(page.prefixes),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let after = match (input.continuation_token.as_deref(), input.start_after.as_deref()) {
            (Some(token), Some(start)) => Some(token.max(start)),
            (token, start) => token.or(start),
        };
        let page = self.page(
            &input.bucket,
            input.prefix.as_deref(),
            input.delimiter.as_deref(),
            after,
            input.max_keys,
        )?;
        let key_count = (page.objects.len() + page.prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            max_keys: Some(page.max_keys),
            key_count: Some(key_count),
            is_truncated: Some(page.truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: page.truncated.then(|| page.last.clone()).flatten(),
            start_after: input.start_after,
            contents: Some(page.objects),
            common_prefixes: Some(page.prefixes),
            ..Default::default()
        }))
    }
}

struct Page {
    objects: Vec<Object>,
    prefixes: Vec<CommonPrefix>,
    truncated: bool,
    /// The last key or common prefix returned: where the next page starts.
    last: Option<String>,
    max_keys: i32,
}

impl FsStore {
    /// One listing page in key order: keys after `after`, grouped by `delimiter`.
    fn page(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        delimiter: Option<&str>,
        after: Option<&str>,
        max_keys: Option<i32>,
    ) -> S3Result<Page> {
        let bucket_path = self.existing_bucket(bucket)?;
        let prefix = prefix.unwrap_or("");
        let max_keys = max_keys.unwrap_or(1000).clamp(0, 1000);
        let mut entries: BTreeMap<String, Option<std::fs::Metadata>> = BTreeMap::new();
        let mut seen_prefixes = BTreeSet::new();
        for (key, metadata) in self.list_keys(&bucket_path, prefix)? {
            let grouped = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                key[prefix.len()..].find(d).map(|i| key[..prefix.len() + i + d.len()].to_owned())
            });
            match grouped {
                Some(common) => {
                    if seen_prefixes.insert(common.clone()) {
                        entries.insert(common, None);
                    }
                }
                None => {
                    entries.insert(key, Some(metadata));
                }
            }
        }
        let mut objects = Vec::new();
        let mut prefixes = Vec::new();
        let mut last = None;
        let mut truncated = false;
        for (name, metadata) in
            entries.into_iter().filter(|(name, _)| after.is_none_or(|a| name.as_str() > a))
        {
            if (objects.len() + prefixes.len()) as i32 >= max_keys {
                truncated = true;
                break;
            }
            last = Some(name.clone());
            match metadata {
                None => prefixes.push(CommonPrefix { prefix: Some(name) }),
                Some(metadata) => {
                    let e_tag = std::fs::read(self.meta_path(bucket, &name)?)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Attributes>(&b).ok())
                        .map(|a| ETag::Strong(a.e_tag));
                    objects.push(Object {
                        key: Some(name),
                        size: Some(metadata.len() as i64),
                        last_modified: timestamp(&metadata),
                        e_tag,
                        ..Default::default()
                    });
                }
            }
        }
        Ok(Page { objects, prefixes, truncated, last, max_keys })
    }
}
