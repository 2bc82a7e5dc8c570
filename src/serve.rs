//! `orgtrail serve`: the control plane in production mode.

use std::sync::Arc;

use anyhow::Context;

use crate::api::{self, Ctx, TlsFiles};
use crate::config::Config;
use crate::model::Region;
use crate::secrets::MasterKey;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let pool = crate::store::connect(config.database_url()?, config.database_max_connections).await?;
    crate::store::migrate(&pool).await?;
    let master_key = config.master_key.as_deref().map(MasterKey::from_base64).transpose()?.map(Arc::new);
    if master_key.is_none() {
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
    let staging = Arc::new(crate::store::staging::PgStaging::new(pool.clone()));
    let ctx = Ctx {
        pool: pool.clone(),
        default_region: Region::parse("region", &config.region)?,
        master_key,
        staging,
    };
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    crate::store::maintenance::prepare(&pool, config.dedupe_horizon_days).await?;
    let maintenance =
        tokio::spawn(crate::store::maintenance::run(pool, config.dedupe_horizon_days, async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }));
    let listener = api::bind(config.grpc_listen).await?;
    tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "control plane listening");
    api::serve(ctx, listener, tls, crate::cli::shutdown_signal()).await?;
    let _ = stop_tx.send(true);
    let _ = maintenance.await;
    tracing::info!("control plane stopped");
    Ok(())
}
