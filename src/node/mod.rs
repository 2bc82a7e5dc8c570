//! The process root: the one place that builds a process's parts and runs them under one
//! shutdown signal. `orgtrail serve`, `orgtrail worker`, `orgtrail dev`, the benchmarks and the
//! test harness all go through it, each with the parts it wants:
//!
//! - the control plane: gRPC and the CloudTrail-compatible API ([`ControlPlane`]);
//! - the worker: delivery with the standard taps and commit hooks, and the loops every worker
//!   runs beside it — digest writer, Insights detector, alert dispatcher, SNS notifier, pull
//!   collectors, expiry of staged events ([`WorkerNode`]);
//! - housekeeping: partitions ahead of time and past the horizons, scheduled Organizations sync;
//! - `/metrics`.

pub mod config;
pub mod maintenance;
pub mod serve;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::features::alerts::AlertSettings;
use crate::features::insights::detector::DetectorSettings;
use crate::features::notifications::notifier::NotificationSettings;
use crate::integrations::collectors::CollectorConfig;
use crate::integrations::s3::S3Sink;
use crate::pipeline::checkpoint::CommitHook;
use crate::pipeline::staging::Staging;
use crate::pipeline::taps::Tap;
use crate::pipeline::worker::{PipelineSettings, Worker};
use crate::secrets::MasterKey;

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called (not when it is
/// first polled), so call it first thing: a signal during startup then stops the process in order.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    async fn received(signal: std::io::Result<Signal>) {
        match signal {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    }
    let (interrupt, terminate) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
    async move {
        tokio::select! {
            _ = received(interrupt) => {},
            _ = received(terminate) => {},
        }
    }
}

/// A stop every part of a process waits on.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// A stop and the sender that triggers it.
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (sender, receiver) = watch::channel(false);
        (sender, Self(receiver))
    }

    /// Resolves once the stop is triggered (or its sender is gone).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.0.clone();
        async move {
            let _ = receiver.wait_for(|stop| *stop).await;
        }
    }
}

/// The worker's settings: delivery's own and those of the loops it runs beside it.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub pipeline: PipelineSettings,
    /// Undelivered staged events older than this are dropped (hourly).
    pub staged_retention: Duration,
    /// Digest period (CloudTrail: one hour). Whole seconds.
    pub digest_period: Duration,
    /// Decrypts the digest signing keys and webhook secrets; without it, trails with validation
    /// and webhook alerts report an error.
    pub master_key: Option<Arc<MasterKey>>,
    /// A region's signing key is replaced when older than this; None: only on demand.
    pub signing_key_rotation: Option<Duration>,
    /// Pull collectors (LookupEvents, member trail buckets) run beside delivery when set.
    pub collectors: Option<CollectorConfig>,
    /// The Insights detector.
    pub insights: DetectorSettings,
    /// orgtrail's own AWS configuration (credentials, endpoints), for destinations in AWS such as
    /// trails' CloudWatch Logs groups and SNS topics. None: such deliveries fail with that reason.
    pub aws: Option<aws_config::SdkConfig>,
    /// Alert delivery (the dispatcher every worker runs).
    pub alerts: AlertSettings,
    /// Delivery notifications to trails' SNS topics (the notifier every worker runs).
    pub notifications: NotificationSettings,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            pipeline: PipelineSettings::default(),
            staged_retention: Duration::from_secs(30 * 24 * 3600),
            digest_period: crate::features::integrity::writer::DEFAULT_PERIOD,
            master_key: None,
            signing_key_rotation: Some(Duration::from_secs(30 * 24 * 3600)),
            collectors: None,
            insights: DetectorSettings::default(),
            aws: None,
            alerts: AlertSettings::default(),
            notifications: NotificationSettings::default(),
        }
    }
}

/// The taps every worker runs: the CloudWatch Logs stream, alert rules, Insights counts, the
/// event history.
pub fn standard_taps(pool: &PgPool, aws: Option<aws_config::SdkConfig>) -> Vec<Arc<dyn Tap>> {
    use crate::features::{alerts, cloudwatch_logs, history, insights};
    vec![
        Arc::new(cloudwatch_logs::tap::CloudWatchLogsTap::new(
            pool.clone(),
            crate::integrations::cloudwatch_logs::CloudWatchLogsSink::new(aws),
        )),
        Arc::new(alerts::tap::RulesTap::new(pool.clone())),
        Arc::new(insights::count::InsightsTap),
        Arc::new(history::tap::HistoryTap),
    ]
}

/// What features add when a delivered file is recorded: its usage, its SNS notification.
pub fn standard_hooks() -> Vec<Arc<dyn CommitHook>> {
    use crate::features::{notifications, usage};
    vec![Arc::new(usage::UsageHook), Arc::new(notifications::NotificationHook)]
}

/// A worker: delivery, and every loop a worker runs beside it.
pub struct WorkerNode {
    pool: PgPool,
    staging: Arc<dyn Staging>,
    sink: S3Sink,
    settings: WorkerSettings,
    extra_taps: Vec<Arc<dyn Tap>>,
}

impl WorkerNode {
    pub fn new(pool: PgPool, staging: Arc<dyn Staging>, sink: S3Sink, settings: WorkerSettings) -> Self {
        Self { pool, staging, sink, settings, extra_taps: Vec::new() }
    }

    /// Adds a tap beside the standard ones.
    pub fn with_tap(mut self, tap: Arc<dyn Tap>) -> Self {
        self.extra_taps.push(tap);
        self
    }

    /// Runs until `shutdown` resolves, then stops every loop and gives the leases up.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        use crate::features::{alerts, insights, integrity, notifications};
        let Self { pool, staging, sink, settings, extra_taps } = self;
        let mut taps = standard_taps(&pool, settings.aws.clone());
        taps.extend(extra_taps);
        let worker = Worker::new(
            pool.clone(),
            staging.clone(),
            Arc::new(sink.clone()),
            taps,
            standard_hooks(),
            settings.pipeline.clone(),
        );
        let (stop_loops, stop) = Stop::new();
        let mut loops: Vec<(&'static str, JoinHandle<()>)> = vec![
            (
                "alert dispatcher",
                tokio::spawn(alerts::dispatch::run(
                    pool.clone(),
                    settings.alerts.with_master_key(settings.master_key.clone()),
                    stop.wait(),
                )),
            ),
            (
                "notifier",
                tokio::spawn(notifications::notifier::run(
                    pool.clone(),
                    crate::integrations::sns::SnsSink::new(settings.aws.clone()),
                    settings.notifications.clone(),
                    stop.wait(),
                )),
            ),
            (
                "insights detector",
                tokio::spawn(insights::detector::run(
                    pool.clone(),
                    staging.clone(),
                    settings.insights.clone(),
                    stop.wait(),
                )),
            ),
            (
                "digest writer",
                tokio::spawn(
                    integrity::writer::DigestWriter::new(
                        pool.clone(),
                        sink,
                        integrity::keyring::Keyring::new(pool.clone(), settings.master_key.clone())
                            .rotating_after(settings.signing_key_rotation),
                        settings.digest_period,
                    )
                    .run(stop.wait()),
                ),
            ),
            (
                "staged expiry",
                tokio::spawn(maintenance::expire_staged(
                    pool.clone(),
                    settings.staged_retention,
                    stop.wait(),
                )),
            ),
        ];
        if let Some(config) = settings.collectors.clone() {
            // Collectors stage what they pull; delivery delivers it like pushed events.
            let collector = Arc::new(crate::integrations::collectors::Collector::new(
                pool.clone(),
                staging.clone(),
                config,
                worker.id().to_owned(),
            ));
            loops.push((
                "collectors",
                tokio::spawn(crate::integrations::collectors::runner::run(collector, stop.wait())),
            ));
        }
        let result = worker.run(shutdown).await;
        let _ = stop_loops.send(true);
        for (name, task) in loops {
            if let Err(error) = task.await {
                tracing::warn!(%error, part = name, "ended abnormally");
            }
        }
        result
    }
}

/// The control plane's parts: gRPC, and the CloudTrail-compatible API when it has a listener.
pub fn control_plane(
    ctx: crate::control::api::Ctx,
    grpc: tokio::net::TcpListener,
    cloudtrail: Option<(tokio::net::TcpListener, crate::control::cloudtrail_api::Settings)>,
    tls: Option<crate::control::api::TlsFiles>,
    stop: &Stop,
) -> Vec<Part> {
    let mut parts: Vec<Part> = Vec::new();
    if let Some((listener, settings)) = cloudtrail {
        parts.push((
            "cloudtrail-compatible api",
            Box::pin(crate::control::cloudtrail_api::serve(
                ctx.clone(),
                settings,
                listener,
                tls.clone(),
                stop.wait(),
            )),
        ));
    }
    parts.push(("control plane", Box::pin(crate::control::api::serve(ctx, grpc, tls, stop.wait()))));
    parts
}

/// Housekeeping: partitions hourly, and the scheduled Organizations sync when set.
pub fn housekeeping(
    pool: PgPool,
    horizons: maintenance::Horizons,
    org_sync: Option<(Arc<crate::integrations::aws::sdk::AwsSettings>, Duration)>,
    stop: &Stop,
) -> Vec<Part> {
    let mut parts: Vec<Part> = vec![(
        "maintenance",
        Box::pin({
            let done = maintenance::run(pool.clone(), horizons, stop.wait());
            async move {
                done.await;
                Ok(())
            }
        }),
    )];
    if let Some((aws, interval)) = org_sync {
        tracing::info!(interval_seconds = interval.as_secs(), "scheduled organizations sync on");
        let done = crate::integrations::aws::schedule::run(pool, aws, interval, stop.wait());
        parts.push((
            "organizations sync",
            Box::pin(async move {
                done.await;
                Ok(())
            }),
        ));
    }
    parts
}

/// `GET /metrics` on `listener`.
pub fn metrics(metrics: crate::metrics::Metrics, listener: tokio::net::TcpListener, stop: &Stop) -> Part {
    ("metrics", Box::pin(crate::metrics::serve(metrics, listener, stop.wait())))
}

/// The worker's part.
pub fn worker(node: WorkerNode, stop: &Stop) -> Part {
    ("worker", Box::pin(node.run(stop.wait())))
}

/// Binds a listener before anything starts, so a taken port fails the command at once.
pub async fn bind(what: &str, address: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {what} {address}"))?;
    tracing::info!(address = %listener.local_addr()?, what, "listening");
    Ok(listener)
}

/// How long the parts of a process get to finish after a stop.
pub const STOP_GRACE: Duration = Duration::from_secs(4);

/// One part of a process: a name and a future that ends once the process's [`Stop`] is triggered.
pub type Part = (&'static str, std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>);

/// Runs `parts` until `shutdown` resolves or one of them ends on its own (an error or not); then
/// triggers `stop` and gives every part `grace` to finish. A part still waiting on a peer that is
/// gone (a Postgres restarting) is dropped, not waited for.
pub async fn run_parts(
    parts: Vec<Part>,
    stop: watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> anyhow::Result<()> {
    let mut running = tokio::task::JoinSet::new();
    let mut names = std::collections::HashMap::new();
    for (name, part) in parts {
        names.insert(running.spawn(part).id(), name);
    }
    let name_of = |id: tokio::task::Id| names.get(&id).copied().unwrap_or("a part");
    let mut first_error = None;
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => {}
        Some(ended) = running.join_next_with_id() => match ended {
            Ok((id, Ok(()))) => tracing::warn!(part = name_of(id), "ended on its own; stopping the process"),
            Ok((id, Err(error))) => first_error = Some(error.context(name_of(id))),
            Err(error) => first_error = Some(anyhow::anyhow!("{} panicked: {error}", name_of(error.id()))),
        },
    }
    let _ = stop.send(true);
    let finish = async {
        while let Some(ended) = running.join_next_with_id().await {
            match ended {
                Ok((_, Ok(()))) => {}
                Ok((id, Err(error))) => {
                    tracing::warn!(part = name_of(id), error = %format!("{error:#}"), "stopped with an error")
                }
                Err(error) => tracing::warn!(part = name_of(error.id()), %error, "ended abnormally"),
            }
        }
    };
    if tokio::time::timeout(grace, finish).await.is_err() {
        tracing::warn!(?grace, "some parts did not stop in time; stopping without them");
    }
    first_error.map_or(Ok(()), Err)
}
