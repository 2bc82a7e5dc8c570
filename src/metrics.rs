//! Prometheus metrics: the pull collectors' (one registry per worker), the pipeline's (one per
//! process, [`pipeline`]), and the small HTTP/1.1 server `orgtrail worker`, `serve` and `dev`
//! expose them on (`GET /metrics`, with `metrics_listen`).
//!
//! Labels are (account, source, region) — exactly the collector targets, so the number of series
//! is bounded by the accounts configured — plus, for errors, the error's short code from a fixed
//! set (never the message, which carries request ids and would make a series per failure).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tokio::net::TcpListener;

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
        let mut families = self.inner.registry.gather();
        families.extend(pipeline().registry.gather());
        TextEncoder::new().encode(&families, &mut buffer)?;
        String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Ingest, delivery, lease and error metrics. Process-wide rather than per worker: the code that
/// counts (ingest handlers, the store's error conversion, the S3 sink) is shared by every part of
/// the process, and one process is one scrape target. Several workers in one process (`dev`,
/// tests) add into the same series.
pub struct Pipeline {
    registry: Registry,
    /// Events in PutAuditEvents calls that passed request-level checks.
    pub received: IntCounter,
    /// Events staged for delivery (first copies).
    pub accepted: IntCounter,
    /// Events dropped as copies of an eventID already staged.
    pub duplicates: IntCounter,
    /// Events refused, by the per-event error code (a fixed set).
    pub rejected: IntCounterVec,
    /// Log files delivered, by kind (`log`, `insight`).
    pub delivered_files: IntCounterVec,
    /// Bytes (gzip) of delivered log files, by kind.
    pub delivered_bytes: IntCounterVec,
    /// Events delivered, by kind.
    pub delivered_events: IntCounterVec,
    /// Per held shard: now − the oldest undelivered staged event (0 when none).
    pub shard_lag: GaugeVec,
    /// Shards this process's workers hold.
    pub shards_held: IntGauge,
    /// Per delivered event: time from arrival (staging) to its log file being committed.
    pub delivery_latency: Histogram,
    /// Failed S3 requests, by operation.
    pub s3_errors: IntCounterVec,
    /// Database errors, by kind (`server`: Postgres answered with an error; `connection`; `other`).
    pub postgres_errors: IntCounterVec,
    /// Shards claimed whose lease had expired under another worker.
    pub lease_takeovers: IntCounter,
    /// Digest files written to S3.
    pub digest_writes: IntCounter,
    /// Delivery notifications published to trails' SNS topics.
    pub notifications_published: IntCounter,
    /// Failed attempts to publish a delivery notification (each is retried).
    pub notifications_failed: IntCounter,
    /// Events a tap left out because its store refused them, by tap.
    pub tap_refused: IntCounterVec,
}

impl Pipeline {
    fn new() -> Self {
        // Constants and a fresh registry: only a programming error can fail here.
        fn counter(name: &str, help: &str) -> IntCounter {
            IntCounter::new(name, help).expect("valid metric definition")
        }
        fn counters(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition")
        }
        let pipeline = Self {
            registry: Registry::new(),
            received: counter("orgtrail_ingest_events_received_total", "Events received by PutAuditEvents."),
            accepted: counter("orgtrail_ingest_events_accepted_total", "Events accepted and staged."),
            duplicates: counter(
                "orgtrail_ingest_events_duplicate_total",
                "Events dropped as copies of an eventID already seen.",
            ),
            rejected: counters(
                "orgtrail_ingest_events_rejected_total",
                "Events refused, by error code.",
                &["reason"],
            ),
            delivered_files: counters(
                "orgtrail_delivered_files_total",
                "Log files delivered to S3, by kind (log, insight).",
                &["kind"],
            ),
            delivered_bytes: counters(
                "orgtrail_delivered_bytes_total",
                "Bytes (gzip) of log files delivered to S3, by kind.",
                &["kind"],
            ),
            delivered_events: counters(
                "orgtrail_delivered_events_total",
                "Events in delivered log files, by kind.",
                &["kind"],
            ),
            shard_lag: GaugeVec::new(
                Opts::new(
                    "orgtrail_shard_lag_seconds",
                    "Per held shard: now minus the oldest undelivered staged event (0: none).",
                ),
                &["shard", "account", "region", "source"],
            )
            .expect("valid metric definition"),
            shards_held: IntGauge::new("orgtrail_shards_held", "Shards whose lease this process holds.")
                .expect("valid metric definition"),
            delivery_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "orgtrail_delivery_latency_seconds",
                    "Per delivered event: seconds from arrival to its log file being committed.",
                )
                .buckets(vec![0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0]),
            )
            .expect("valid metric definition"),
            s3_errors: counters(
                "orgtrail_s3_errors_total",
                "Failed S3 requests, by operation.",
                &["operation"],
            ),
            postgres_errors: counters(
                "orgtrail_postgres_errors_total",
                "Database errors, by kind (server, connection, other).",
                &["kind"],
            ),
            lease_takeovers: counter(
                "orgtrail_lease_takeovers_total",
                "Shards claimed after their lease expired under another worker.",
            ),
            digest_writes: counter("orgtrail_digest_writes_total", "Digest files written to S3."),
            notifications_published: counter(
                "orgtrail_notifications_published_total",
                "Delivery notifications published to trails' SNS topics.",
            ),
            notifications_failed: counter(
                "orgtrail_notifications_failed_total",
                "Failed attempts to publish a delivery notification (each is retried).",
            ),
            tap_refused: counters(
                "orgtrail_tap_refused_events_total",
                "Events a tap left out because its store refused them (logged with their eventID).",
                &["tap"],
            ),
        };
        for collector in [
            Box::new(pipeline.received.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(pipeline.accepted.clone()),
            Box::new(pipeline.duplicates.clone()),
            Box::new(pipeline.rejected.clone()),
            Box::new(pipeline.delivered_files.clone()),
            Box::new(pipeline.delivered_bytes.clone()),
            Box::new(pipeline.delivered_events.clone()),
            Box::new(pipeline.shard_lag.clone()),
            Box::new(pipeline.shards_held.clone()),
            Box::new(pipeline.delivery_latency.clone()),
            Box::new(pipeline.s3_errors.clone()),
            Box::new(pipeline.postgres_errors.clone()),
            Box::new(pipeline.lease_takeovers.clone()),
            Box::new(pipeline.digest_writes.clone()),
            Box::new(pipeline.notifications_published.clone()),
            Box::new(pipeline.notifications_failed.clone()),
            Box::new(pipeline.tap_refused.clone()),
        ] {
            pipeline.registry.register(collector).expect("metric names are unique");
        }
        pipeline
    }

    /// Counts a database error by kind.
    pub fn postgres_error(&self, error: &sqlx::Error) {
        let kind = match error {
            sqlx::Error::Database(_) => "server",
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed => "connection",
            _ => "other",
        };
        self.postgres_errors.with_label_values(&[kind]).inc();
    }
}

/// The process's pipeline metrics.
pub fn pipeline() -> &'static Pipeline {
    static PIPELINE: std::sync::LazyLock<Pipeline> = std::sync::LazyLock::new(Pipeline::new);
    &PIPELINE
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish.
pub async fn serve(
    metrics: Metrics,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::http_server::serve("metrics", listener, None, Arc::new(metrics), shutdown).await
}

impl crate::http_server::Handler for Metrics {
    fn handle(&self, request: Request<Incoming>) -> impl Future<Output = Response<Full<Bytes>>> + Send {
        std::future::ready(handle(self, &request))
    }
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
