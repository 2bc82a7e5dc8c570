//! Finding and calling the control plane: endpoint and token from flags, then
//! `ORGTRAIL_ENDPOINT` / `ORGTRAIL_TOKEN`, then `./.orgtrail/dev.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::proto::v1::account_service_client::AccountServiceClient;
use crate::proto::v1::event_service_client::EventServiceClient;
use crate::proto::v1::ingest_service_client::IngestServiceClient;
use crate::proto::v1::key_service_client::KeyServiceClient;
use crate::proto::v1::organization_service_client::OrganizationServiceClient;
use crate::proto::v1::rule_service_client::RuleServiceClient;
use crate::proto::v1::token_service_client::TokenServiceClient;
use crate::proto::v1::trail_service_client::TrailServiceClient;
use serde::{Deserialize, Serialize};

/// Where `orgtrail dev` leaves its connection details by default.
pub const DEFAULT_DEV_JSON: &str = ".orgtrail/dev.json";

#[derive(Clone)]
pub struct BearerAuth(MetadataValue<Ascii>);

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, BearerAuth>;

/// Connected clients for every service.
#[derive(Clone)]
pub struct Clients {
    pub organizations: OrganizationServiceClient<Authed>,
    pub accounts: AccountServiceClient<Authed>,
    pub trails: TrailServiceClient<Authed>,
    pub tokens: TokenServiceClient<Authed>,
    pub ingest: IngestServiceClient<Authed>,
    pub keys: KeyServiceClient<Authed>,
    pub rules: RuleServiceClient<Authed>,
    pub events: EventServiceClient<Authed>,
}

pub struct Target {
    pub endpoint: String,
    pub token: String,
    pub ca_cert: Option<PathBuf>,
}

pub fn read_dev_json(path: &Path) -> Option<DevInfo> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Resolves the endpoint and token: explicit values win, then dev.json.
pub fn resolve_target(
    endpoint: Option<String>,
    token: Option<String>,
    ca_cert: Option<PathBuf>,
) -> anyhow::Result<Target> {
    let dev = read_dev_json(Path::new(DEFAULT_DEV_JSON));
    let endpoint = endpoint.or_else(|| dev.as_ref().map(|d| d.grpc_endpoint.clone()));
    let token = token.or_else(|| dev.as_ref().map(|d| d.admin_token.clone()));
    let (Some(endpoint), Some(token)) = (endpoint, token) else {
        bail!(
            "no server to talk to: pass --endpoint and --token, set ORGTRAIL_ENDPOINT and ORGTRAIL_TOKEN, \
             or run `orgtrail dev` in this directory (it writes {DEFAULT_DEV_JSON})"
        );
    };
    Ok(Target { endpoint, token, ca_cert })
}

/// A channel to the control plane (TLS for https:// endpoints), connected now so that an
/// unreachable server is one clear error.
pub async fn channel(endpoint: &str, ca_cert: Option<&Path>) -> anyhow::Result<Channel> {
    let mut builder = Channel::from_shared(endpoint.to_owned())
        .with_context(|| format!("invalid endpoint {endpoint:?}"))?
        .connect_timeout(std::time::Duration::from_secs(10));
    if endpoint.starts_with("https://") {
        crate::tls::ensure_crypto_provider();
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read CA certificate {}", path.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        builder = builder.tls_config(tls)?;
    }
    builder
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {endpoint}: {}", crate::error_text::source_chain(&e)))
}

pub async fn connect(target: &Target) -> anyhow::Result<Clients> {
    let channel = channel(&target.endpoint, target.ca_cert.as_deref()).await?;
    let header: MetadataValue<Ascii> = format!("Bearer {}", target.token)
        .parse()
        .map_err(|_| anyhow::anyhow!("the token contains characters that cannot be sent in a header"))?;
    let auth = BearerAuth(header);
    Ok(Clients {
        organizations: OrganizationServiceClient::with_interceptor(channel.clone(), auth.clone()),
        accounts: AccountServiceClient::with_interceptor(channel.clone(), auth.clone()),
        trails: TrailServiceClient::with_interceptor(channel.clone(), auth.clone()),
        tokens: TokenServiceClient::with_interceptor(channel.clone(), auth.clone()),
        ingest: IngestServiceClient::with_interceptor(channel.clone(), auth.clone()),
        keys: KeyServiceClient::with_interceptor(channel.clone(), auth.clone()),
        rules: RuleServiceClient::with_interceptor(channel.clone(), auth.clone()),
        events: EventServiceClient::with_interceptor(channel, auth),
    })
}

/// One line for a failed call: the status code's name and the server's message.
pub fn describe_status(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// What `dev` writes to `DIR/dev.json` for scripts and other tools.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevInfo {
    pub grpc_endpoint: String,
    pub s3_endpoint: String,
    pub s3_access_key_id: String,
    pub s3_secret_access_key: String,
    pub region: String,
    pub bucket: String,
    pub organization_id: String,
    pub management_account_id: String,
    pub admin_token: String,
    pub admin_access_key_id: String,
    pub admin_secret_access_key: String,
    pub database_url: String,
    /// The CloudTrail-compatible API, for `aws --endpoint-url` (and `AWS_ENDPOINT_URL_ORGANIZATIONS`).
    /// Absent from the dev.json of older versions, hence the defaults.
    #[serde(default)]
    pub cloudtrail_endpoint: String,
    /// The key pair to sign with: the admin token's, which the S3 store accepts too, so one set of
    /// AWS credentials serves CloudTrail, Organizations and S3 calls (as validate-logs makes them).
    #[serde(default)]
    pub cloudtrail_access_key_id: String,
    #[serde(default)]
    pub cloudtrail_secret_access_key: String,
    /// Prometheus metrics (`GET /metrics`), e.g. `http://127.0.0.1:50053/metrics`.
    #[serde(default)]
    pub metrics_endpoint: String,
}
