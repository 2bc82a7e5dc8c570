//! AWS clients per member account, acting as the account's collector role.
//!
//! One `AssumeRoleProvider` per (role, ExternalId), behind a cache of our own ([`CachedRole`], as
//! the account's `SharedCredentialsProvider`) shared by every client of the account: the role is
//! assumed once and the credentials are refreshed five minutes before they expire, not per request.
//! The cache is ours rather than the SDK's identity cache so that a collector can make sure the
//! credentials are fresh *before* it takes a LookupEvents token: otherwise an AssumeRole inside
//! the call would delay that request and bunch it up with the next one at AWS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_s3::config::SharedCredentialsProvider;

use aws_credential_types::provider::{ProvideCredentials, future};
use aws_sdk_s3::config::Credentials;

use super::error::CollectError;
use crate::model::collector::CollectorSettings;

/// Credentials are renewed when they expire within this.
const REFRESH_BEFORE_EXPIRY: std::time::Duration = std::time::Duration::from_secs(300);

/// Assumed-role credentials, cached until shortly before they expire.
#[derive(Debug)]
pub struct CachedRole {
    role: AssumeRoleProvider,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl CachedRole {
    /// Fresh credentials, assuming the role again when they are missing or about to expire.
    pub async fn credentials(&self) -> aws_credential_types::provider::Result {
        let mut cached = self.cached.lock().await;
        if let Some(credentials) = cached.as_ref() {
            let fresh = credentials
                .expiry()
                .is_none_or(|expiry| expiry > std::time::SystemTime::now() + REFRESH_BEFORE_EXPIRY);
            if fresh {
                return Ok(credentials.clone());
            }
        }
        let credentials = self.role.provide_credentials().await?;
        *cached = Some(credentials.clone());
        Ok(credentials)
    }
}

impl ProvideCredentials for CachedRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.credentials())
    }
}

/// The session name our assumed-role sessions carry (shows in the member's own CloudTrail).
pub const SESSION_NAME: &str = "orgtrail-collector";

pub struct AccountClients {
    role: Arc<CachedRole>,
    config: SdkConfig,
    cloudtrail_endpoint: Option<String>,
    pub s3: aws_sdk_s3::Client,
    cloudtrail: Mutex<HashMap<String, aws_sdk_cloudtrail::Client>>,
}

impl AccountClients {
    /// Makes sure the account's credentials are fresh (assuming the role if needed).
    pub async fn ready(&self) -> Result<(), CollectError> {
        self.role.credentials().await.map(|_| ()).map_err(|e| {
            let message = format!("AssumeRole: {}", aws_sdk_s3::error::DisplayErrorContext(&e));
            if message.contains("AccessDenied") {
                CollectError::Denied(message)
            } else if message.contains("ExpiredToken") {
                CollectError::ExpiredCredentials(message)
            } else {
                CollectError::Network(message)
            }
        })
    }

    /// The CloudTrail client for `region`. SDK retries are off: every request must pass the
    /// token bucket, and the collector retries with its own backoff.
    pub fn cloudtrail(&self, region: &str) -> aws_sdk_cloudtrail::Client {
        let mut clients = self.cloudtrail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let mut builder = aws_sdk_cloudtrail::config::Builder::from(&self.config)
                    .region(aws_config::Region::new(region.to_owned()))
                    .retry_config(RetryConfig::disabled());
                if let Some(endpoint) = &self.cloudtrail_endpoint {
                    builder = builder.endpoint_url(endpoint);
                }
                aws_sdk_cloudtrail::Client::from_conf(builder.build())
            })
            .clone()
    }
}

/// Clients per (role, ExternalId), reused across passes.
pub struct ClientCache {
    base: SdkConfig,
    cloudtrail_endpoint: Option<String>,
    accounts: tokio::sync::Mutex<HashMap<(String, String), Arc<AccountClients>>>,
}

impl ClientCache {
    /// `base` carries orgtrail's own credentials (used to call STS) and endpoints.
    pub fn new(base: SdkConfig, cloudtrail_endpoint: Option<String>) -> Self {
        Self { base, cloudtrail_endpoint, accounts: Default::default() }
    }

    pub async fn for_account(&self, settings: &CollectorSettings) -> Arc<AccountClients> {
        let key = (settings.role_arn.clone(), settings.external_id.clone());
        let mut accounts = self.accounts.lock().await;
        if let Some(found) = accounts.get(&key) {
            return found.clone();
        }
        let mut role = AssumeRoleProvider::builder(settings.role_arn.clone()).session_name(SESSION_NAME);
        if !settings.external_id.is_empty() {
            role = role.external_id(settings.external_id.clone());
        }
        let role = Arc::new(CachedRole {
            role: role.configure(&self.base).build().await,
            cached: tokio::sync::Mutex::new(None),
        });
        let config = self
            .base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(role.clone() as Arc<dyn ProvideCredentials>))
            .identity_cache(IdentityCache::no_cache())
            .build();
        // S3-compatible endpoints (and moto) need path-style addressing.
        let custom_s3_endpoint =
            config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config).force_path_style(custom_s3_endpoint).build(),
        );
        let clients = Arc::new(AccountClients {
            role,
            config,
            cloudtrail_endpoint: self.cloudtrail_endpoint.clone(),
            s3,
            cloudtrail: Mutex::new(HashMap::new()),
        });
        accounts.insert(key, clients.clone());
        clients
    }
}
