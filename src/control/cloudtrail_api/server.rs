//! The CloudTrail-compatible API over HTTP/1.1 (the shared accept loop), plain or TLS with the
//! gRPC certificate.

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{App, Settings};
use crate::control::api::{Ctx, TlsFiles};

/// Serves the CloudTrail-compatible API on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn serve(
    ctx: Ctx,
    settings: Settings,
    listener: TcpListener,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let acceptor = tls.as_ref().map(tls_acceptor).transpose()?;
    let app = Arc::new(App::new(ctx, settings));
    crate::http_server::serve("cloudtrail api", listener, acceptor, app, shutdown).await
}

impl crate::http_server::Handler for App {
    fn handle(
        &self,
        request: http::Request<hyper::body::Incoming>,
    ) -> impl Future<Output = http::Response<http_body_util::Full<bytes::Bytes>>> + Send {
        App::handle(self, request)
    }
}

/// TLS with the same certificate and key as gRPC.
fn tls_acceptor(tls: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    crate::tls::ensure_crypto_provider();
    let certificates = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("tls_cert_path is not a PEM certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).context("tls_key_path is not a PEM private key")?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .context("the TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
