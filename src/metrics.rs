//! Prometheus metrics of the pull collectors, and the small HTTP/1.1 server `orgtrail worker`
//! exposes them on (`GET /metrics`, with `metrics_listen`).
//!
//! Labels are (account, source, region) — exactly the collector targets, so the number of series
//! is bounded by the accounts configured — plus, for errors, the error's short code from a fixed
//! set (never the message, which carries request ids and would make a series per failure).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

const TARGET_LABELS: &[&str] = &["account", "source", "region"];
const ERROR_LABELS: &[&str] = &["account", "source", "region", "error"];

/// The collector metrics of one worker. Cheap to clone (shared); each worker has its own registry
/// so that several workers in one process (tests, `dev`) do not count into each other.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    events: IntCounterVec,
    errors: IntCounterVec,
    last_success: GaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // Names, help texts and labels are constants and the registry is fresh, so creating and
        // registering can only fail on a programming error.
        let events = IntCounterVec::new(
            Opts::new("orgtrail_collector_events_total", "Events pulled by a collector and accepted."),
            TARGET_LABELS,
        )
        .expect("valid metric definition");
        let errors = IntCounterVec::new(
            Opts::new("orgtrail_collector_errors_total", "Failed collector passes, by error code."),
            ERROR_LABELS,
        )
        .expect("valid metric definition");
        let last_success = GaugeVec::new(
            Opts::new(
                "orgtrail_collector_last_success_timestamp_seconds",
                "Unix time of a collector's last successful pass.",
            ),
            TARGET_LABELS,
        )
        .expect("valid metric definition");
        let registry = Registry::new();
        for collector in [
            Box::new(events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(last_success.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Self { inner: Arc::new(Inner { registry, events, errors, last_success }) }
    }

    /// A successful pass of (account, source, region) that accepted `events` events.
    pub fn record_collection(&self, account: &str, source: &str, region: &str, events: i64) {
        let labels = [account, source, region];
        // inc_by(0) still creates the series: a healthy target that found nothing shows up as 0.
        self.inner.events.with_label_values(&labels).inc_by(u64::try_from(events).unwrap_or(0));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.inner.last_success.with_label_values(&labels).set(now);
    }

    /// A failed pass of (account, source, region); `code` is one of a fixed set of short codes
    /// (see `CollectError::code`).
    pub fn record_collection_error(&self, account: &str, source: &str, region: &str, code: &str) {
        self.inner.errors.with_label_values(&[account, source, region, code]).inc();
    }

    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.inner.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish (the same way as the CloudTrail-compatible API).
pub async fn serve(
    metrics: Metrics,
    listener: TcpListener,
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
                    tracing::warn!(%error, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(socket, metrics.clone(), stopped.clone()));
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve_connection(
    socket: tokio::net::TcpStream,
    metrics: Metrics,
    mut stopped: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| {
        let metrics = metrics.clone();
        async move { Ok::<_, Infallible>(handle(&metrics, &request)) }
    });
    // The timer enables hyper's default header read timeout (slow clients cannot hold a task forever).
    let connection =
        http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(socket), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "metrics: connection ended with an error");
            }
            return;
        }
        _ = stopped.wait_for(|stop| *stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

fn handle(metrics: &Metrics, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match metrics.render() {
        Ok(text) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(prometheus::TEXT_FORMAT));
            response
        }
        Err(error) => {
            tracing::warn!(%error, "metrics: cannot render");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot render metrics\n")
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    response
}
