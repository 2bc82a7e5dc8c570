//! A local HTTPS webhook receiver (the far end of alert webhooks) for the rules benchmark and
//! tests: records every request's arrival time, signature header and body, and answers with a
//! settable status code.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub signature: Option<String>,
    pub body: String,
}

pub struct WebhookReceiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    changed: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookReceiver {
    /// Serves HTTPS on 127.0.0.1 with the PEM certificate chain and key.
    pub async fn start(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        crate::tls::ensure_crypto_provider();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("cannot read {}", cert.display()))?
            .collect::<Result<_, _>>()?;
        let key =
            PrivateKeyDer::from_pem_file(key).with_context(|| format!("cannot read {}", key.display()))?;
        let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let changed = Arc::new(tokio::sync::Notify::new());
        let (state, code, notify) = (received.clone(), status.clone(), changed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (acceptor, state, code, notify) =
                    (acceptor.clone(), state.clone(), code.clone(), notify.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let service =
                        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let (state, code, notify) = (state.clone(), code.clone(), notify.clone());
                            async move {
                                let path = request.uri().path().to_owned();
                                let signature = request
                                    .headers()
                                    .get("x-orgtrail-signature")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned);
                                let body = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let entry = Received {
                                    at: Instant::now(),
                                    path,
                                    signature,
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                };
                                if let Ok(mut all) = state.lock() {
                                    all.push(entry);
                                }
                                notify.notify_waiters();
                                let status = code.load(Ordering::SeqCst);
                                let response = hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"{}")))
                                    .unwrap_or_default();
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, received, status, changed, task })
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    /// The status code the next answers carry.
    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Waits until `done` holds for what was received, or `timeout` passes; returns it either way.
    pub async fn wait_until(
        &self,
        timeout: std::time::Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let now = self.received();
            if done(&now) || tokio::time::Instant::now() >= deadline {
                return now;
            }
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + std::time::Duration::from_millis(200)),
                notified,
            )
            .await;
        }
    }
}
