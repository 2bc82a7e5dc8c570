//! An in-process S3-compatible server (s3s protocol layer over [`super::s3_store::FsStore`]) on
//! 127.0.0.1, storing objects as files.
//! It speaks the real S3 protocol and checks SigV4 signatures against one or more key pairs.

use std::net::SocketAddr;
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

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
        Self::start_with_keys(root, listen, &[(access_key, secret_key)]).await
    }

    /// Serves `root` on `listen`, accepting requests signed by any of `keys` (access key, secret).
    /// `dev` adds the admin token's pair, so one credential set reaches S3 and the
    /// CloudTrail-compatible API (validate-logs signs both with it).
    pub async fn start_with_keys(
        root: &Path,
        listen: SocketAddr,
        keys: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)?;
        let store = super::s3_store::FsStore::new(root)
            .map_err(|e| anyhow::anyhow!("s3 store at {}: {e}", root.display()))?;
        let mut builder = S3ServiceBuilder::new(store);
        // s3s's SimpleAuth already keeps a map of pairs, so no S3Auth of our own is needed.
        let mut auth = SimpleAuth::new();
        for (access_key, secret_key) in keys {
            auth.register((*access_key).to_owned(), (*secret_key).into());
        }
        builder.set_auth(auth);
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
