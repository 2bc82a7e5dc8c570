//! An in-process S3-compatible server (s3s + s3s-fs) on 127.0.0.1, storing objects as files.
//! It speaks the real S3 protocol and checks SigV4 signatures.

use std::net::SocketAddr;
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// s3s-fs with the checks real S3 makes and s3s-fs skips: writing into a bucket that does not
/// exist fails with NoSuchBucket instead of creating a directory.
struct CheckedStore {
    fs: s3s_fs::FileSystem,
    root: std::path::PathBuf,
}

impl CheckedStore {
    fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        let plain = !bucket.is_empty() && !bucket.contains(['/', '\\']) && bucket != "." && bucket != "..";
        if plain && self.root.join(bucket).is_dir() { Ok(()) } else { Err(s3_error!(NoSuchBucket)) }
    }
}

macro_rules! checked_store {
    ($($name:ident: $input:ident => $output:ident;)*) => {
        #[async_trait::async_trait]
        impl S3 for CheckedStore {
            $(
                async fn $name(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.fs.$name(req).await
                }
            )*

            async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
                self.require_bucket(&req.input.bucket)?;
                self.fs.put_object(req).await
            }

            async fn create_multipart_upload(
                &self,
                req: S3Request<CreateMultipartUploadInput>,
            ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
                self.require_bucket(&req.input.bucket)?;
                self.fs.create_multipart_upload(req).await
            }

            async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
                self.require_bucket(&req.input.bucket)?;
                self.fs.copy_object(req).await
            }
        }
    };
}

checked_store! {
    create_bucket: CreateBucketInput => CreateBucketOutput;
    delete_bucket: DeleteBucketInput => DeleteBucketOutput;
    delete_object: DeleteObjectInput => DeleteObjectOutput;
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput;
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput;
    get_object: GetObjectInput => GetObjectOutput;
    head_bucket: HeadBucketInput => HeadBucketOutput;
    head_object: HeadObjectInput => HeadObjectOutput;
    list_buckets: ListBucketsInput => ListBucketsOutput;
    list_objects: ListObjectsInput => ListObjectsOutput;
    list_objects_v2: ListObjectsV2Input => ListObjectsV2Output;
    upload_part: UploadPartInput => UploadPartOutput;
    upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput;
    list_parts: ListPartsInput => ListPartsOutput;
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput;
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;
}

/// A running server; aborted on drop.
pub struct S3Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl S3Server {
    /// Serves `root` on `listen` (port 0: a free port) with one access key pair.
    pub async fn start(
        root: &Path,
        listen: SocketAddr,
        access_key: &str,
        secret_key: &str,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)?;
        let fs = s3s_fs::FileSystem::new(root)
            .map_err(|e| anyhow::anyhow!("s3 store at {}: {e:?}", root.display()))?;
        let mut builder = S3ServiceBuilder::new(CheckedStore { fs, root: root.canonicalize()? });
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        let service = builder.build();
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen} for S3: {e}"))?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let (socket, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "s3 accept failed");
                        continue;
                    }
                };
                let connection = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
