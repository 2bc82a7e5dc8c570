//! HTTP/1.1 serving: plain or TLS (the gRPC certificate), one task per connection, and a graceful
//! stop (in-flight requests finish, idle connections close).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::{App, Settings};
use crate::control::api::{Ctx, TlsFiles};

/// A client that opens a connection but never finishes the TLS handshake is dropped after this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let socket = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "cloudtrail api: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let (app, stopped, acceptor) = (app.clone(), stopped.clone(), acceptor.clone());
        connections.spawn(async move {
            let Some(acceptor) = acceptor else {
                return serve_connection(socket, app, stopped).await;
            };
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                Ok(Ok(stream)) => serve_connection(stream, app, stopped).await,
                Ok(Err(error)) => tracing::debug!(%error, "cloudtrail api: tls handshake failed"),
                Err(_) => tracing::debug!("cloudtrail api: tls handshake timed out"),
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve_connection<I>(io: I, app: Arc<App>, mut stopped: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.handle(request).await) }
    });
    // The timer enables hyper's default header read timeout (slow clients cannot hold a task forever).
    let connection =
        http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "cloudtrail api: connection ended with an error");
            }
            return;
        }
        _ = stopped.wait_for(|stop| *stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// TLS with the same certificate and key as gRPC.
fn tls_acceptor(tls: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    crate::control::api::ensure_crypto_provider();
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
