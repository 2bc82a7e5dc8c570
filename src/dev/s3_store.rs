//! The filesystem behind the in-process S3 server: an object is one file at `ROOT/BUCKET/KEY`, its
//! attributes (ETag, content type, metadata) in a header before the data, so a put is one file
//! write and one link or rename (attributes in a second file doubled the file and directory work,
//! most of the server's CPU when many shards each put small files). Writes are atomic (temp file,
//! then link or rename), and `If-None-Match: *` is enforced atomically with a hard link, as
//! conditional writes must be. Objects written by earlier versions (data alone, attributes at
//! `ROOT/.meta/BUCKET/KEY.json`) are still read.

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

/// Opens a file that holds a header. Nothing stored without one starts so: gzip starts 1f 8b,
/// JSON with `{` or whitespace.
const MAGIC: &[u8; 8] = b"otS3obj\x01";
/// The magic and the header's length (u32, little endian).
const PREAMBLE: usize = MAGIC.len() + 4;

/// An object's file: the preamble, the attributes as JSON, then the data.
fn encode(attributes: &Attributes, data: &[u8]) -> S3Result<Vec<u8>> {
    let header = serde_json::to_vec(attributes).map_err(internal)?;
    let length = u32::try_from(header.len()).map_err(internal)?;
    let mut file = Vec::with_capacity(PREAMBLE + header.len() + data.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&length.to_le_bytes());
    file.extend_from_slice(&header);
    file.extend_from_slice(data);
    Ok(file)
}

/// The header's length, if `start` (a file's first bytes) opens with a preamble.
fn header_length(start: &[u8]) -> Option<usize> {
    let length: [u8; 4] = start.strip_prefix(MAGIC.as_slice())?.get(..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(length) as usize)
}

/// What listing and HeadObject report of an object, read without its data.
struct Stored {
    attributes: Attributes,
    data_length: u64,
    modified: Option<Timestamp>,
}

impl FsStore {
    pub fn new(root: &Path) -> std::io::Result<Self> {
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

    /// Where an earlier version kept an object's attributes.
    fn legacy_meta_path(&self, bucket: &str, key: &str) -> S3Result<PathBuf> {
        let mut path = self.root.join(".meta").join(bucket).join(Self::key_path(key)?);
        let name = format!("{}.json", path.file_name().and_then(|n| n.to_str()).unwrap_or("object"));
        path.set_file_name(name);
        Ok(path)
    }

    fn temp_path(&self) -> PathBuf {
        self.root.join(".tmp").join(uuid::Uuid::new_v4().simple().to_string())
    }

    fn legacy_attributes(&self, bucket: &str, key: &str) -> S3Result<Attributes> {
        match std::fs::read(self.legacy_meta_path(bucket, key)?) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(internal),
            Err(_) => Ok(Attributes::default()),
        }
    }

    /// A whole object file split into its attributes and its data.
    fn split(&self, bucket: &str, key: &str, file: Vec<u8>) -> S3Result<(Attributes, Bytes)> {
        let file = Bytes::from(file);
        match header_length(&file) {
            Some(length) => {
                let header =
                    file.get(PREAMBLE..PREAMBLE + length).ok_or_else(|| internal("truncated object"))?;
                let attributes = serde_json::from_slice(header).map_err(internal)?;
                Ok((attributes, file.slice(PREAMBLE + length..)))
            }
            None => Ok((self.legacy_attributes(bucket, key)?, file)),
        }
    }

    /// An object's attributes, size and time, reading only its header.
    fn stat(&self, bucket: &str, key: &str, path: &Path) -> S3Result<Stored> {
        use std::io::Read;
        let mut file = std::fs::File::open(path).map_err(|_| s3_error!(NoSuchKey))?;
        let metadata = file.metadata().map_err(internal)?;
        let mut start = Vec::with_capacity(PREAMBLE);
        (&mut file).take(PREAMBLE as u64).read_to_end(&mut start).map_err(internal)?;
        let (attributes, data_start) = match header_length(&start) {
            Some(length) => {
                let mut header = vec![0; length];
                file.read_exact(&mut header).map_err(internal)?;
                (serde_json::from_slice(&header).map_err(internal)?, (PREAMBLE + length) as u64)
            }
            None => (self.legacy_attributes(bucket, key)?, 0),
        };
        Ok(Stored {
            attributes,
            data_length: metadata.len().saturating_sub(data_start),
            modified: timestamp(&metadata),
        })
    }

    async fn write_file_atomically(&self, dest: &Path, bytes: Vec<u8>, exclusive: bool) -> S3Result<()> {
        let temp = self.temp_path();
        let dest = dest.to_owned();
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

    fn list_keys(&self, bucket_path: &Path, prefix: &str) -> S3Result<Vec<String>> {
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
                // The entry's type comes with the directory read: no stat per file.
                let Ok(kind) = entry.file_type() else { continue };
                if kind.is_dir() {
                    stack.push(path);
                } else if let Ok(relative) = path.strip_prefix(bucket_path)
                    && let Some(key) = relative.to_str()
                    && key.starts_with(prefix)
                {
                    found.push(key.to_owned());
                }
            }
        }
        found.sort();
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
        // One file: an object is never visible without its attributes, nor a loser's beside a winner.
        self.write_file_atomically(&path, encode(&attributes, &bytes)?, exclusive).await?;
        Ok(S3Response::new(PutObjectOutput { e_tag: Some(ETag::Strong(e_tag)), ..Default::default() }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let path = self.object_path(&input.bucket, &input.key)?;
        let file = tokio::fs::read(&path).await.map_err(|_| s3_error!(NoSuchKey))?;
        let metadata = tokio::fs::metadata(&path).await.map_err(internal)?;
        let (attributes, data) = self.split(&input.bucket, &input.key, file)?;
        let full = data.len() as u64;
        let (body, content_range) = match input.range {
            None => (data, None),
            Some(range) => {
                let span = range.check(full).map_err(|_| s3_error!(InvalidRange))?;
                let slice = data.slice(span.start as usize..span.end as usize);
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
        let Stored { attributes, data_length, modified } = self.stat(&input.bucket, &input.key, &path)?;
        Ok(S3Response::new(HeadObjectOutput {
            server_side_encryption: attributes.server_side_encryption.map(ServerSideEncryption::from),
            ssekms_key_id: attributes.ssekms_key_id,
            content_length: Some(data_length as i64),
            last_modified: modified,
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
        let _ = tokio::fs::remove_file(self.legacy_meta_path(&input.bucket, &input.key)?).await;
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
        // Names in key order, each a key (true) or a common prefix (false).
        let mut entries: BTreeMap<String, bool> = BTreeMap::new();
        let mut seen_prefixes = BTreeSet::new();
        for key in self.list_keys(&bucket_path, prefix)? {
            let grouped = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                key[prefix.len()..].find(d).map(|i| key[..prefix.len() + i + d.len()].to_owned())
            });
            match grouped {
                Some(common) => {
                    if seen_prefixes.insert(common.clone()) {
                        entries.insert(common, false);
                    }
                }
                None => {
                    entries.insert(key, true);
                }
            }
        }
        let mut objects = Vec::new();
        let mut prefixes = Vec::new();
        let mut last = None;
        let mut truncated = false;
        for (name, is_key) in entries.into_iter().filter(|(name, _)| after.is_none_or(|a| name.as_str() > a))
        {
            if (objects.len() + prefixes.len()) as i32 >= max_keys {
                truncated = true;
                break;
            }
            last = Some(name.clone());
            match is_key {
                false => prefixes.push(CommonPrefix { prefix: Some(name) }),
                true => {
                    // A file gone between the walk and here (a concurrent delete) is not listed.
                    let Ok(stored) = self.stat(bucket, &name, &bucket_path.join(&name)) else { continue };
                    objects.push(Object {
                        size: Some(stored.data_length as i64),
                        last_modified: stored.modified,
                        e_tag: Some(ETag::Strong(stored.attributes.e_tag)),
                        key: Some(name),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(Page { objects, prefixes, truncated, last, max_keys })
    }
}
