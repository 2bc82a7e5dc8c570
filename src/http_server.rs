//! The one HTTP/1.1 accept loop of orgtrail's HTTP servers (the CloudTrail-compatible API,
//! `/metrics`): plain or TLS, one task per connection, hyper's header read timeout, and a graceful
//! stop (in-flight requests finish, idle connections close).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// A client that opens a connection but never finishes the TLS handshake is dropped after this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers one request.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request<Incoming>) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// Serves `handler` on `listener` until `shutdown` resolves, then lets in-flight requests finish.
/// `name` labels the server's log lines.
pub async fn serve<H: Handler>(
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
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
                    tracing::warn!(server = name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let (handler, stopped, tls) = (handler.clone(), stopped.clone(), tls.clone());
        connections.spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(name, socket, handler, stopped).await;
            };
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(socket)).await {
                Ok(Ok(stream)) => serve_connection(name, stream, handler, stopped).await,
                Ok(Err(error)) => tracing::debug!(server = name, %error, "tls handshake failed"),
                Err(_) => tracing::debug!(server = name, "tls handshake timed out"),
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve_connection<I, H>(
    name: &'static str,
    io: I,
    handler: Arc<H>,
    mut stopped: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let service = service_fn(move |request| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.handle(request).await) }
    });
    // The timer enables hyper's default header read timeout (slow clients cannot hold a task forever).
    let connection =
        http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(server = name, %error, "connection ended with an error");
            }
            return;
        }
        _ = stopped.wait_for(|stop| *stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}
