//! `orgtrail serve`: the control plane in production mode — gRPC, and the CloudTrail-compatible
//! HTTP API when `cloudtrail_listen` is set.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::Config;
use crate::control::api::{self, Ctx, TlsFiles};
use crate::model::Region;
use crate::secrets::MasterKey;

pub async fn serve(config: Config) -> anyhow::Result<()> {
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
    let staging = Arc::new(crate::pipeline::staging::PgStaging::new(pool.clone()));
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
    // One stop for everything: a signal, or either server failing.
    let (stop, stopped) = watch::channel(false);
    let wait_stop = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let horizons = config.horizons()?;
    crate::node::maintenance::prepare(&pool, horizons).await?;
    let maintenance =
        tokio::spawn(crate::node::maintenance::run(pool.clone(), horizons, wait_stop(stopped.clone())));
    let org_sync = (config.org_sync_interval_seconds > 0).then(|| {
        tracing::info!(
            interval_seconds = config.org_sync_interval_seconds,
            "scheduled organizations sync on"
        );
        tokio::spawn(crate::integrations::aws::schedule::run(
            pool.clone(),
            aws,
            std::time::Duration::from_secs(config.org_sync_interval_seconds),
            wait_stop(stopped.clone()),
        ))
    });
    let metrics = match config.metrics_listen {
        Some(address) => {
            // Bound before serving, so a taken port fails the command at once.
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on metrics_listen {address}"))?;
            tracing::info!(address = %listener.local_addr()?, "metrics served on /metrics");
            Some(tokio::spawn(crate::metrics::serve(
                crate::metrics::Metrics::new(),
                listener,
                wait_stop(stopped.clone()),
            )))
        }
        None => None,
    };
    let listener = api::bind(config.grpc_listen).await?;
    tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "control plane listening");
    let cloudtrail = match config.cloudtrail_listen {
        Some(addr) => {
            let listener = api::bind(addr).await?;
            tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "cloudtrail-compatible api listening");
            let served = crate::control::cloudtrail_api::serve(
                ctx.clone(),
                config.cloudtrail_api_settings()?,
                listener,
                tls.clone(),
                wait_stop(stopped.clone()),
            );
            let stop = stop.clone();
            Some(tokio::spawn(async move {
                let result = served.await;
                let _ = stop.send(true);
                result
            }))
        }
        None => None,
    };
    let signal = {
        let stop = stop.clone();
        tokio::spawn(async move {
            crate::cli::shutdown_signal().await;
            let _ = stop.send(true);
        })
    };
    let grpc = api::serve(ctx, listener, tls, wait_stop(stopped)).await;
    let _ = stop.send(true);
    signal.abort();
    let cloudtrail = match cloudtrail {
        Some(task) => task.await.context("the cloudtrail-compatible api panicked")?,
        None => Ok(()),
    };
    let _ = maintenance.await;
    if let Some(metrics) = metrics
        && let Ok(Err(error)) = metrics.await
    {
        tracing::warn!(%error, "metrics server failed");
    }
    if let Some(org_sync) = org_sync {
        let _ = org_sync.await;
    }
    grpc?;
    cloudtrail.context("cloudtrail-compatible api")?;
    tracing::info!("control plane stopped");
    Ok(())
}
