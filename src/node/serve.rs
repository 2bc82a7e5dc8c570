//! The production processes: `orgtrail serve` (the control plane, housekeeping, the scheduled
//! Organizations sync) and `orgtrail worker` (delivery and the loops beside it), each with
//! `/metrics` when `metrics_listen` is set.

use std::sync::Arc;

use anyhow::Context;

use super::config::Config;
use super::{Stop, WorkerNode};
use crate::control::api::{Ctx, TlsFiles};
use crate::model::Region;
use crate::secrets::MasterKey;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let master_key = config.master_key.as_deref().map(MasterKey::from_base64).transpose()?.map(Arc::new);
    if master_key.is_none() {
        if config.cloudtrail_listen.is_some() {
            anyhow::bail!(
                "cloudtrail_listen needs master_key: the CloudTrail-compatible API verifies signatures \
                 with access-key secrets stored encrypted under it"
            );
        }
        tracing::warn!(
            "master_key is not set: tokens cannot carry access keys for the CloudTrail-compatible API"
        );
    }
    let tls = match (&config.tls_cert_path, &config.tls_key_path) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert_pem: std::fs::read(cert)
                .with_context(|| format!("cannot read tls_cert_path {}", cert.display()))?,
            key_pem: std::fs::read(key)
                .with_context(|| format!("cannot read tls_key_path {}", key.display()))?,
        }),
        (None, None) => None,
        _ => anyhow::bail!("tls_cert_path and tls_key_path must be set together"),
    };
    let pool = crate::store::connect(config.database_url()?, config.database_max_connections).await?;
    crate::store::migrate(&pool).await?;
    let staging = config.staging(&pool).await?;
    // Credentials resolve on first use, so a deployment that never syncs never needs any.
    let aws = Arc::new(config.aws_settings().await?);
    let ctx = Ctx {
        pool: pool.clone(),
        default_region: Region::parse("region", &config.region)?,
        master_key,
        staging,
        aws: Some(aws.clone()),
        aggregator_principal_arn: config.aggregator_principal_arn.clone(),
    };
    let horizons = config.horizons()?;
    super::maintenance::prepare(&pool, horizons).await?;
    let grpc = crate::control::api::bind(config.grpc_listen).await?;
    tracing::info!(addr = %grpc.local_addr()?, tls = tls.is_some(), "control plane listening");
    let cloudtrail = match config.cloudtrail_listen {
        Some(address) => {
            let listener = crate::control::api::bind(address).await?;
            tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "cloudtrail-compatible api listening");
            Some((listener, config.cloudtrail_api_settings()?))
        }
        None => None,
    };
    let metrics = match config.metrics_listen {
        Some(address) => Some(super::bind("metrics_listen", address).await?),
        None => None,
    };
    let org_sync = (config.org_sync_interval_seconds > 0)
        .then(|| (aws, std::time::Duration::from_secs(config.org_sync_interval_seconds)));

    let (stop_tx, stop) = Stop::new();
    let mut parts = super::control_plane(ctx, grpc, cloudtrail, tls, &stop);
    parts.extend(super::housekeeping(pool, horizons, org_sync, &stop));
    parts.extend(metrics.map(|listener| super::metrics(crate::metrics::Metrics::new(), listener, &stop)));
    super::run_parts(parts, stop_tx, shutdown, super::STOP_GRACE).await?;
    tracing::info!("control plane stopped");
    Ok(())
}

pub async fn worker(config: Config) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let mut settings = config.worker_settings()?;
    let aws = config.aws_sdk_config().await;
    let collectors = config.collector_config(aws.clone())?;
    let collector_metrics = collectors.metrics.clone();
    settings.collectors = Some(collectors);
    settings.aws = Some(aws);
    let pool = crate::store::connect(config.database_url()?, config.database_max_connections).await?;
    crate::store::migrate(&pool).await?;
    let staging = config.staging(&pool).await?;
    let sink = crate::integrations::s3::S3Sink::new(config.s3_client().await);
    let metrics = match config.metrics_listen {
        Some(address) => Some(super::bind("metrics_listen", address).await?),
        None => None,
    };
    let (stop_tx, stop) = Stop::new();
    let mut parts = vec![super::worker(WorkerNode::new(pool, staging, sink, settings), &stop)];
    parts.extend(metrics.map(|listener| super::metrics(collector_metrics, listener, &stop)));
    super::run_parts(parts, stop_tx, shutdown, super::STOP_GRACE).await
}
