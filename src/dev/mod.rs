//! `orgtrail dev`: the whole system in one process with embedded defaults — a private Postgres,
//! an in-process S3-compatible store, the control plane (gRPC and the CloudTrail-compatible API)
//! and a worker. State lives in the data directory and survives restarts; `DIR/dev.json` tells
//! scripts and the CLI where things are.

pub mod demo;
pub mod postgres;
pub mod s3;
pub mod s3_store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::control::api::{self, Ctx};
use crate::model::ids::COMMERCIAL_REGIONS;
use crate::model::{AccountId, OrganizationId, Region};
use crate::secrets::{MasterKey, hash_bearer_secret};
use crate::store::{self, organizations, tokens};

/// The bucket `dev` creates and prints.
pub const DEV_BUCKET: &str = "orgtrail-dev";
/// The management account of the demo organization (the documentation example account).
pub const DEV_MANAGEMENT_ACCOUNT: &str = "123456789012";
const DEV_REGION: &str = "us-east-1";

#[derive(Debug, Clone)]
pub struct DevOptions {
    pub data_dir: PathBuf,
    pub grpc_listen: SocketAddr,
    pub s3_listen: SocketAddr,
    pub cloudtrail_listen: SocketAddr,
    /// ListTrails and ListTags page size of the CloudTrail-compatible API.
    pub cloudtrail_list_page_size: i32,
    /// Prometheus `/metrics` listen address.
    pub metrics_listen: SocketAddr,
    /// Postgres port; 0 picks a free one.
    pub postgres_port: u16,
    /// Enroll demo accounts and a trail, and generate synthetic traffic.
    pub demo: bool,
    /// Period of digest files.
    pub digest_period: std::time::Duration,
}

pub use crate::client::DevInfo;

/// Secrets generated on first start and kept in `DIR/secrets.json` (mode 0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DevSecrets {
    master_key: String,
    postgres_password: String,
    s3_access_key_id: String,
    s3_secret_access_key: String,
    admin_token: Option<String>,
    admin_access_key_id: Option<String>,
    admin_secret_access_key: Option<String>,
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

fn load_or_create_secrets(path: &Path) -> anyhow::Result<DevSecrets> {
    if path.exists() {
        let text = std::fs::read_to_string(path)?;
        return serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()));
    }
    let (s3_access_key_id, s3_secret_access_key) = crate::secrets::new_access_key_pair()?;
    let secrets = DevSecrets {
        master_key: MasterKey::generate_base64()?,
        postgres_password: hex::encode(crate::secrets::new_bearer_secret()?.as_bytes())[..32].to_owned(),
        s3_access_key_id,
        s3_secret_access_key,
        admin_token: None,
        admin_access_key_id: None,
        admin_secret_access_key: None,
    };
    write_private(path, serde_json::to_string_pretty(&secrets)?.as_bytes())?;
    Ok(secrets)
}

/// AWS for Organizations sync only when the developer's environment names it (for example
/// `AWS_ENDPOINT_URL_ORGANIZATIONS` of a moto server and test keys): a laptop's stray instance-role
/// lookups would only slow `dev` down.
async fn dev_aws_settings() -> anyhow::Result<Option<Arc<crate::integrations::aws::sdk::AwsSettings>>> {
    if !crate::integrations::aws::sdk::environment_configured() {
        return Ok(None);
    }
    let sdk = crate::integrations::aws::sdk::load(DEV_REGION, None).await;
    let settings = crate::integrations::aws::sdk::AwsSettings::new(sdk, "", &[])?;
    eprintln!("note: AWS Organizations sync (`orgtrail org sync`) uses the AWS environment");
    Ok(Some(Arc::new(settings)))
}

/// Runs the dev stack until Ctrl-C or SIGTERM.
pub async fn run(options: DevOptions) -> anyhow::Result<()> {
    // Registered first: a SIGTERM during startup stops the stack in order instead of killing it.
    let shutdown = crate::node::shutdown_signal();
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("cannot create data dir {}", options.data_dir.display()))?;
    let data_dir = options.data_dir.canonicalize()?;
    let secrets_path = data_dir.join("secrets.json");
    let mut secrets = load_or_create_secrets(&secrets_path)?;

    let pg_dir = postgres::cluster_dir_for(&data_dir);
    if pg_dir.parent() != Some(data_dir.as_path()) {
        eprintln!(
            "note: the postgres system user cannot enter {}; the cluster lives in {}",
            data_dir.display(),
            pg_dir.display()
        );
    }
    let password = secrets.postgres_password.clone();
    let port = options.postgres_port;
    let mut pg = tokio::task::spawn_blocking(move || {
        postgres::EmbeddedPostgres::start(&pg_dir, port, &password, postgres::Durability::Durable)
    })
    .await??;
    postgres::ensure_database(&pg.url("postgres"), "orgtrail").await?;
    let database_url = pg.url("orgtrail");
    let pool = store::connect(&database_url, 16).await?;
    store::migrate(&pool).await?;

    let master_key = Arc::new(MasterKey::from_base64(&secrets.master_key)?);
    let organization_id = ensure_organization(&pool).await?;
    // State from versions whose admin token had no access key gets a new token that has one.
    let has_admin_key = secrets.admin_access_key_id.is_some() && secrets.admin_secret_access_key.is_some();
    if !has_admin_key || !admin_token_is_valid(&pool, secrets.admin_token.as_deref()).await? {
        let issued =
            api::token::issue(&pool, Some(&master_key), "dev-admin", tokens::Role::Admin, None, 0, true)
                .await
                .map_err(|e| anyhow::anyhow!("cannot create the admin token: {e}"))?;
        secrets.admin_token = Some(issued.secret);
        secrets.admin_access_key_id = issued.token.access_key_id;
        secrets.admin_secret_access_key = issued.secret_access_key;
        write_private(&secrets_path, serde_json::to_string_pretty(&secrets)?.as_bytes())?;
    }
    let admin_key_id = secrets.admin_access_key_id.clone().unwrap_or_default();
    let admin_secret = secrets.admin_secret_access_key.clone().unwrap_or_default();

    let s3 = s3::S3Server::start_with_keys(
        &data_dir.join("s3"),
        options.s3_listen,
        &[(&secrets.s3_access_key_id, &secrets.s3_secret_access_key), (&admin_key_id, &admin_secret)],
    )
    .await?;
    ensure_bucket(&s3.endpoint(), &secrets.s3_access_key_id, &secrets.s3_secret_access_key, DEV_BUCKET)
        .await?;

    let listener = api::bind(options.grpc_listen).await?;
    let grpc_addr = listener.local_addr()?;
    let cloudtrail_listener = api::bind(options.cloudtrail_listen).await?;
    let cloudtrail_addr = cloudtrail_listener.local_addr()?;
    let metrics_listener = tokio::net::TcpListener::bind(options.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {} for metrics", options.metrics_listen))?;
    let metrics_addr = metrics_listener.local_addr()?;
    let info = DevInfo {
        grpc_endpoint: format!("http://{grpc_addr}"),
        s3_endpoint: s3.endpoint(),
        s3_access_key_id: secrets.s3_access_key_id.clone(),
        s3_secret_access_key: secrets.s3_secret_access_key.clone(),
        region: DEV_REGION.to_owned(),
        bucket: DEV_BUCKET.to_owned(),
        organization_id,
        management_account_id: DEV_MANAGEMENT_ACCOUNT.to_owned(),
        admin_token: secrets.admin_token.clone().unwrap_or_default(),
        admin_access_key_id: admin_key_id.clone(),
        admin_secret_access_key: admin_secret.clone(),
        database_url,
        cloudtrail_endpoint: format!("http://{cloudtrail_addr}"),
        cloudtrail_access_key_id: admin_key_id,
        cloudtrail_secret_access_key: admin_secret,
        metrics_endpoint: format!("http://{metrics_addr}/metrics"),
    };
    let horizons = crate::node::maintenance::Horizons::default();
    crate::node::maintenance::prepare(&pool, horizons).await?;

    let staging: Arc<dyn crate::pipeline::staging::Staging> =
        Arc::new(crate::pipeline::staging::PgStaging::new(pool.clone()));
    let aws = dev_aws_settings().await?;
    let ctx = Ctx {
        pool: pool.clone(),
        default_region: Region::parse("region", DEV_REGION)?,
        master_key: Some(master_key.clone()),
        staging: staging.clone(),
        aws: aws.clone(),
        aggregator_principal_arn: None,
    };
    let sink = crate::integrations::s3::S3Sink::new(
        s3_client(&s3.endpoint(), &secrets.s3_access_key_id, &secrets.s3_secret_access_key, DEV_REGION).await,
    );
    let worker = crate::node::WorkerNode::new(
        pool.clone(),
        staging,
        sink,
        crate::node::WorkerSettings {
            digest_period: options.digest_period,
            master_key: Some(master_key),
            aws: aws.map(|aws| aws.sdk.clone()),
            ..Default::default()
        },
    );
    let (stop_tx, stop) = crate::node::Stop::new();
    let cloudtrail = (
        cloudtrail_listener,
        crate::control::cloudtrail_api::Settings { list_page_size: options.cloudtrail_list_page_size },
    );
    let mut parts = crate::node::control_plane(ctx, listener, Some(cloudtrail), None, &stop);
    parts.extend(crate::node::housekeeping(pool.clone(), horizons, None, &stop));
    parts.push(crate::node::metrics(crate::metrics::Metrics::new(), metrics_listener, &stop));
    parts.push(crate::node::worker(worker, &stop));
    if options.demo {
        let target = crate::client::Target {
            endpoint: info.grpc_endpoint.clone(),
            token: info.admin_token.clone(),
            ca_cert: None,
        };
        let (traffic, stopped) = (demo::run(target, DEV_BUCKET.to_owned(), stop.wait()), stop.wait());
        // The demo failing is no reason to stop the stack.
        parts.push((
            "demo traffic",
            Box::pin(async move {
                if let Err(error) = traffic.await {
                    tracing::warn!(error = %format!("{error:#}"), "demo traffic stopped");
                }
                stopped.await;
                Ok(())
            }),
        ));
    }

    // Written last: its presence tells scripts and tests that the stack is ready.
    write_private(&data_dir.join("dev.json"), serde_json::to_string_pretty(&info)?.as_bytes())?;
    print_banner(&info, &data_dir);
    let stopping = async {
        shutdown.await;
        eprintln!("stopping…");
    };
    // Parts waiting on a Postgres that is gone (or restarting) do not hold the stop up.
    let result = crate::node::run_parts(parts, stop_tx, stopping, crate::node::STOP_GRACE).await;
    if tokio::time::timeout(std::time::Duration::from_secs(1), pool.close()).await.is_err() {
        tracing::warn!("database connections did not close in time");
    }
    drop(s3);
    tokio::task::spawn_blocking(move || pg.stop()).await?;
    eprintln!("stopped; state kept in {}", data_dir.display());
    result
}

fn print_banner(info: &DevInfo, data_dir: &Path) {
    println!("orgtrail dev is running (Ctrl-C stops it; state in {})", data_dir.display());
    println!();
    println!("  gRPC endpoint     {}", info.grpc_endpoint);
    println!(
        "  S3 endpoint       {}  (access key {}, secret in dev.json)",
        info.s3_endpoint, info.s3_access_key_id
    );
    println!(
        "  CloudTrail API    {}  (AWS_ENDPOINT_URL_CLOUDTRAIL; access key {}, which S3 accepts too)",
        info.cloudtrail_endpoint, info.cloudtrail_access_key_id
    );
    println!("  metrics           {}", info.metrics_endpoint);
    println!("  bucket            {}", info.bucket);
    println!("  region            {}", info.region);
    println!(
        "  organization      {} (management account {})",
        info.organization_id, info.management_account_id
    );
    println!("  admin token       {}", info.admin_token);
    println!("  details           {}", data_dir.join("dev.json").display());
    println!();
    println!(
        "Try: orgtrail trails create --name org-trail --s3-bucket-name {} --is-organization-trail",
        info.bucket
    );
    println!(
        "Or the aws CLI / boto3, as the management account (README: Use the aws CLI and boto3 with orgtrail):"
    );
    println!(
        "  export AWS_ENDPOINT_URL_CLOUDTRAIL={} AWS_DEFAULT_REGION={} AWS_ACCESS_KEY_ID={}",
        info.cloudtrail_endpoint, info.region, info.cloudtrail_access_key_id
    );
    println!(
        "  export AWS_SECRET_ACCESS_KEY=$(jq -r .cloudtrail_secret_access_key {})",
        data_dir.join("dev.json").display()
    );
    println!("  aws cloudtrail create-trail --name audit --s3-bucket-name {}", info.bucket);
}

async fn admin_token_is_valid(pool: &sqlx::PgPool, token: Option<&str>) -> anyhow::Result<bool> {
    let Some(token) = token else { return Ok(false) };
    Ok(tokens::find_active_by_hash(pool, &hash_bearer_secret(token)).await?.is_some())
}

/// Creates the demo organization on first start; returns its id.
async fn ensure_organization(pool: &sqlx::PgPool) -> anyhow::Result<String> {
    if let Some(org) = organizations::get(pool).await? {
        return Ok(org.id.to_string());
    }
    let regions: Vec<Region> =
        COMMERCIAL_REGIONS.iter().map(|r| Region::parse("regions", r)).collect::<Result<_, _>>()?;
    let management = AccountId::parse("management_account_id", DEV_MANAGEMENT_ACCOUNT)?;
    let org = organizations::create(pool, &OrganizationId::generate(), &management, &regions).await?;
    Ok(org.id.to_string())
}

/// An S3 client for an S3-compatible endpoint with static credentials.
pub async fn s3_client(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    region: &str,
) -> aws_sdk_s3::Client {
    crate::integrations::s3::client(Some(endpoint), region, Some((access_key, secret_key)), true).await
}

async fn ensure_bucket(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    bucket: &str,
) -> anyhow::Result<()> {
    let client = s3_client(endpoint, access_key, secret_key, DEV_REGION).await;
    if client.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    client.create_bucket().bucket(bucket).send().await.map_err(|e| {
        anyhow::anyhow!("cannot create bucket {bucket}: {}", aws_sdk_s3::error::DisplayErrorContext(e))
    })?;
    Ok(())
}
