//! One typed configuration for `serve`, `worker` and `migrate`: defaults, then a TOML file, then
//! environment variables (`ORGTRAIL_<FIELD>`, plus the conventional `DATABASE_URL`).
//! The doc comment of each field is its documentation (see also README "Configuration").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Where accepted events wait for delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StagingBackend {
    /// In the database (`staged_chunks`).
    #[default]
    Postgres,
    /// In NATS JetStream streams (`nats_url`).
    Jetstream,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Postgres connection URL, e.g. `postgres://user:pass@host:5432/orgtrail`. Required by
    /// `serve`, `worker` and `migrate`. Also read from `DATABASE_URL`.
    pub database_url: Option<String>,
    /// Connections each process keeps to Postgres at most.
    pub database_max_connections: u32,
    /// Address the gRPC control plane listens on. Port 0 picks a free port.
    pub grpc_listen: SocketAddr,
    /// Address the CloudTrail-compatible HTTP API listens on (AWS JSON 1.1 for the aws CLI and
    /// SDKs, signed with SigV4 by a token's access key pair; needs `master_key`). Served over TLS
    /// with the gRPC certificate when `tls_cert_path` is set. Unset or empty: not served.
    #[serde(deserialize_with = "optional_address")]
    pub cloudtrail_listen: Option<SocketAddr>,
    /// Trails per ListTrails page and trails per ListTags page on the CloudTrail-compatible API
    /// (1 to 1000). CloudTrail's clients have no page size for these and follow `NextToken`.
    pub cloudtrail_list_page_size: i32,
    /// PEM certificate chain; with `tls_key_path`, gRPC (and the CloudTrail-compatible API) is
    /// served over TLS (rustls).
    pub tls_cert_path: Option<PathBuf>,
    /// PEM private key for `tls_cert_path`.
    pub tls_key_path: Option<PathBuf>,
    /// Base64 of 32 random bytes (`openssl rand -base64 32`). Encrypts the access-key secrets
    /// of API tokens at rest. Without it, tokens cannot carry access keys.
    pub master_key: Option<String>,
    /// Home region of trails created without one, and the region of the S3 client.
    pub region: String,
    /// S3 endpoint URL for S3-compatible stores; unset: AWS S3 (credentials from the usual
    /// AWS sources: environment, profile, instance role).
    pub s3_endpoint: Option<String>,
    /// Use path-style S3 addressing (needed by most S3-compatible stores).
    pub s3_force_path_style: bool,
    /// Static access key for an S3-compatible store; unset: the usual AWS credential sources.
    pub s3_access_key_id: Option<String>,
    /// Secret for `s3_access_key_id`.
    pub s3_secret_access_key: Option<String>,
    /// Days an event identity (recipientAccountId, eventID) is remembered to drop re-sent copies.
    pub dedupe_horizon_days: i64,
    /// Days events stay in the event history (LookupEvents: management and Insights events,
    /// looked up across the organization); CloudTrail keeps 90. Expiry drops weekly partitions, so an
    /// event stays up to a week longer.
    pub event_history_retention_days: i64,
    /// Days an accepted event is kept while some trail has not delivered it (bucket missing, ...).
    pub staged_retention_days: u64,
    /// Where accepted events wait until every trail has delivered them: `postgres` (default, the
    /// database above) or `jetstream` (NATS JetStream at `nats_url`, for write rates one Postgres
    /// cannot take: the events go to JetStream, Postgres keeps only each event's 16-byte dedupe
    /// identity and per-shard state). Every `serve` and `worker` of a deployment must use the same.
    pub staging: StagingBackend,
    /// NATS URL of the `jetstream` staging backend, e.g. `nats://127.0.0.1:4222`. The server must be
    /// 2.11 or later, with JetStream on and `sync_interval: always` (else an acknowledged event can
    /// be lost with the server's machine).
    pub nats_url: Option<String>,
    /// Streams the `jetstream` backend spreads shards over (1 to 1024; shard id modulo this). Fixed
    /// once events are staged: a changed count strands the events staged under the old one.
    pub jetstream_partitions: u32,
    /// The staging streams' duplicate window in seconds (at least 10). Events are deduped by
    /// Postgres (`dedupe_horizon_days`), whatever this is.
    pub jetstream_duplicate_window_seconds: u64,
    /// Replicas of each staging stream: 1 for one server, 3 for a cluster.
    pub jetstream_replicas: usize,
    /// Stream names of the `jetstream` backend are `<prefix>_<n>`, subjects `<prefix>.<n>.<shard>`.
    pub jetstream_stream_prefix: String,
    /// A log file is cut at this many uncompressed bytes even before the trail's interval.
    pub max_batch_bytes: usize,
    /// gzip level of log files, 1 (fast) to 9 (small).
    pub gzip_level: u32,
    /// Seconds a worker's shard lease lasts without renewal; a dead worker's shards move after this.
    pub lease_ttl_seconds: u64,
    /// Milliseconds between a worker's passes over its shards.
    pub poll_interval_ms: u64,
    /// Seconds between digest files of a trail with log file validation (per account and region).
    /// 3600 (CloudTrail's hourly digests) by default; at least 60. Only 3600 matches CloudTrail
    /// exactly; shorter periods are for demos and tests.
    pub digest_period_seconds: u64,
    /// Days after which a region's digest signing key is replaced by a new one (old public keys stay
    /// listed). 0: only on demand (`KeyService.RotateSigningKey`).
    pub signing_key_rotation_days: u64,
    /// Log line format: `text` or `json`.
    pub log_format: LogFormat,
    /// AWS Organizations sync (`org sync`, and scheduled): role to assume before calling AWS
    /// Organizations, e.g. a read-only role in the management account. Unset: the standard AWS
    /// credentials (environment, profile, instance role) are used as they are.
    pub organizations_role_arn: Option<String>,
    /// Seconds between scheduled AWS Organizations syncs by `serve` (one replica at a time).
    /// 0 (default): only on demand (`orgtrail org sync`).
    pub org_sync_interval_seconds: u64,
    /// OUs (`ou-...`, or a root `r-...`) that syncs cover when none are named, child OUs included.
    /// Empty (default): the whole organization.
    pub org_sync_ou_ids: Vec<String>,
    /// IAM role (name, optionally with a path) that exists in every member account, e.g.
    /// `OrganizationAccountAccessRole`: accounts the sync registers get pull settings for it
    /// (`arn:aws:iam::<account>:role/<name>`, LookupEvents on). Empty (default): push only.
    pub member_role_name: String,
    /// The AWS principal (ARN) orgtrail's collectors run as. Member roles made by `orgtrail
    /// bootstrap` trust it (with a per-enrollment ExternalId). Unset: the organization's management
    /// account, `arn:aws:iam::<management account>:root`.
    pub aggregator_principal_arn: Option<String>,
    /// Seconds between passes of a pull collector (per account, source and region) that has
    /// caught up. The collectors reach AWS with the standard AWS environment of the worker
    /// (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL_STS` / `_S3` / `_CLOUDTRAIL`, ...).
    pub collect_interval_seconds: u64,
    /// Days a collector reads back on its first run (LookupEvents backfill and the first day
    /// folder of a member trail bucket); 0 to 90 (LookupEvents keeps 90 days).
    pub lookup_backfill_days: u32,
    /// LookupEvents requests per second per account and region (AWS's limit is 2), shared by
    /// the live window and the backfill.
    pub lookup_requests_per_second: f64,
    /// Address `orgtrail worker` and `orgtrail serve` serve Prometheus metrics on (`GET /metrics`,
    /// plain HTTP/1.1): ingest, delivery, shard lag, latency, errors, leases and digests (see
    /// README "Metrics"), and per collector target the events pulled, errors by code and the time
    /// of the last success. Unset or empty: not served.
    #[serde(deserialize_with = "optional_address")]
    pub metrics_listen: Option<SocketAddr>,
    /// Delivery attempts of an alert (webhook) before it goes to the dead letters
    /// (`RuleService.ListDeadLetters`); 1 to 100.
    pub alert_max_attempts: u32,
    /// Milliseconds an alert waits after its first failed delivery; doubled after each further
    /// failure, up to `alert_retry_max_seconds`.
    pub alert_retry_base_ms: u64,
    /// The longest wait, in seconds, between two delivery attempts of an alert.
    pub alert_retry_max_seconds: u64,
    /// Milliseconds an idle alert dispatcher waits between looks at the outbox (the bulk of the
    /// ingest-to-webhook latency).
    pub alert_poll_interval_ms: u64,
    /// Seconds one webhook call may take before it counts as failed.
    pub alert_webhook_timeout_seconds: u64,
    /// PEM file of CA certificates trusted for alert webhooks besides the system roots (for
    /// receivers with a private CA). Unset: the system roots only.
    pub alert_ca_file: Option<PathBuf>,
    /// Milliseconds a delivery notification (a trail's SNS topic) waits after its first failed
    /// publish; doubled after each further failure, up to `notification_retry_max_seconds`.
    /// Notifications are retried as long as their trail has a topic. The worker publishes with the
    /// standard AWS environment (credentials, `AWS_ENDPOINT_URL_SNS`, ...).
    pub notification_retry_base_ms: u64,
    /// The longest wait, in seconds, between two publish attempts of a delivery notification.
    pub notification_retry_max_seconds: u64,
    /// Insights (see docs/insights.md): minutes of baseline W a minute is judged against, silent
    /// minutes counting as zero. 10080 (7 days, CloudTrail's minimum baseline) by default; at least
    /// 1 (short baselines are for tests and demos). Counts older than W + 60 minutes are deleted.
    pub insights_baseline_minutes: u32,
    /// Insights: a minute is anomalous when its count exceeds mean + k·σ of the baseline; this is k.
    pub insights_sigma_factor: f64,
    /// Insights: ... and exceeds m times the baseline mean; this is m.
    pub insights_mean_factor: f64,
    /// Insights: ... and exceeds this count, however quiet the baseline (at least 1).
    pub insights_min_count: u64,
    /// Insights: an insight ends after this many non-anomalous minutes in a row (at least 1).
    pub insights_end_after_minutes: u32,
    /// Insights: seconds after a minute ends before it is judged (at most 3600); events for it staged
    /// later count in later baselines only. The detector also waits (up to a minute more) until
    /// every event staged in time was counted. Pull collectors stage events minutes after they
    /// happened: with them, set this above their lag (e.g. 900).
    pub insights_settle_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: None,
            database_max_connections: 16,
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            cloudtrail_listen: None,
            cloudtrail_list_page_size: crate::control::cloudtrail_api::DEFAULT_LIST_PAGE_SIZE,
            tls_cert_path: None,
            tls_key_path: None,
            master_key: None,
            region: "us-east-1".to_owned(),
            s3_endpoint: None,
            s3_force_path_style: false,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            dedupe_horizon_days: 90,
            event_history_retention_days: 90,
            staged_retention_days: 30,
            staging: StagingBackend::Postgres,
            nats_url: None,
            jetstream_partitions: 16,
            jetstream_duplicate_window_seconds: 600,
            jetstream_replicas: 1,
            jetstream_stream_prefix: "ORGTRAIL_STAGING".to_owned(),
            max_batch_bytes: 10 * 1024 * 1024,
            gzip_level: 6,
            lease_ttl_seconds: 15,
            poll_interval_ms: 200,
            digest_period_seconds: 3600,
            signing_key_rotation_days: 30,
            log_format: LogFormat::Text,
            organizations_role_arn: None,
            org_sync_interval_seconds: 0,
            org_sync_ou_ids: Vec::new(),
            member_role_name: String::new(),
            aggregator_principal_arn: None,
            collect_interval_seconds: 60,
            lookup_backfill_days: 0,
            lookup_requests_per_second: 2.0,
            metrics_listen: None,
            alert_max_attempts: 8,
            alert_retry_base_ms: 1000,
            alert_retry_max_seconds: 300,
            alert_poll_interval_ms: 200,
            alert_webhook_timeout_seconds: 10,
            alert_ca_file: None,
            notification_retry_base_ms: 1000,
            notification_retry_max_seconds: 300,
            insights_baseline_minutes: 10_080,
            insights_sigma_factor: 3.0,
            insights_mean_factor: 2.0,
            insights_min_count: 10,
            insights_end_after_minutes: 3,
            insights_settle_seconds: 5,
        }
    }
}

const FIELDS: &[&str] = &[
    "alert_max_attempts",
    "alert_retry_base_ms",
    "alert_retry_max_seconds",
    "alert_poll_interval_ms",
    "alert_webhook_timeout_seconds",
    "alert_ca_file",
    "notification_retry_base_ms",
    "notification_retry_max_seconds",
    "database_url",
    "database_max_connections",
    "grpc_listen",
    "cloudtrail_listen",
    "cloudtrail_list_page_size",
    "tls_cert_path",
    "tls_key_path",
    "master_key",
    "region",
    "s3_endpoint",
    "s3_force_path_style",
    "s3_access_key_id",
    "s3_secret_access_key",
    "dedupe_horizon_days",
    "event_history_retention_days",
    "staged_retention_days",
    "staging",
    "nats_url",
    "jetstream_partitions",
    "jetstream_duplicate_window_seconds",
    "jetstream_replicas",
    "jetstream_stream_prefix",
    "max_batch_bytes",
    "gzip_level",
    "lease_ttl_seconds",
    "poll_interval_ms",
    "digest_period_seconds",
    "signing_key_rotation_days",
    "log_format",
    "organizations_role_arn",
    "org_sync_interval_seconds",
    "org_sync_ou_ids",
    "member_role_name",
    "aggregator_principal_arn",
    "collect_interval_seconds",
    "lookup_backfill_days",
    "lookup_requests_per_second",
    "metrics_listen",
    "insights_baseline_minutes",
    "insights_sigma_factor",
    "insights_mean_factor",
    "insights_min_count",
    "insights_end_after_minutes",
    "insights_settle_seconds",
];

/// An optional address for which an empty value (`ORGTRAIL_CLOUDTRAIL_LISTEN=`) means unset.
fn optional_address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SocketAddr>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not an address (HOST:PORT): {e}"))),
    }
}

impl Config {
    /// Loads defaults ← file (if given) ← environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only the fields above: other ORGTRAIL_* variables belong to the CLI (ORGTRAIL_ENDPOINT, ...).
        figment =
            figment.merge(Env::raw().only(&["DATABASE_URL"])).merge(Env::prefixed("ORGTRAIL_").only(FIELDS));
        figment.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
    }

    /// The CloudTrail-compatible API's settings, checked.
    pub fn cloudtrail_api_settings(&self) -> anyhow::Result<crate::control::cloudtrail_api::Settings> {
        cloudtrail_list_page_size(self.cloudtrail_list_page_size)
            .map(|list_page_size| crate::control::cloudtrail_api::Settings { list_page_size })
    }

    /// The staging backend of `staging`, connected (its group committers run on the current runtime).
    pub async fn staging(
        &self,
        pool: &sqlx::PgPool,
    ) -> anyhow::Result<std::sync::Arc<dyn crate::pipeline::staging::Staging>> {
        use crate::pipeline::staging::{PgStaging, jetstream};
        Ok(match self.staging {
            StagingBackend::Postgres => std::sync::Arc::new(PgStaging::new(pool.clone())),
            StagingBackend::Jetstream => {
                let settings = self.jetstream_settings()?;
                let staging = jetstream::JetStreamStaging::connect(pool.clone(), &settings)
                    .await
                    .map_err(|e| anyhow::anyhow!("staging = jetstream ({}): {e}", settings.url))?;
                std::sync::Arc::new(staging)
            }
        })
    }

    /// The `jetstream` backend's settings, checked.
    pub fn jetstream_settings(
        &self,
    ) -> anyhow::Result<crate::pipeline::staging::jetstream::JetStreamSettings> {
        let Some(url) = self.nats_url.clone().filter(|u| !u.trim().is_empty()) else {
            anyhow::bail!("nats_url must be set when staging = jetstream");
        };
        if !(1..=1024).contains(&self.jetstream_partitions) {
            anyhow::bail!("jetstream_partitions must be 1 to 1024, got {}", self.jetstream_partitions);
        }
        if self.jetstream_duplicate_window_seconds < 10 {
            anyhow::bail!(
                "jetstream_duplicate_window_seconds must be at least 10, got {}",
                self.jetstream_duplicate_window_seconds
            );
        }
        if !(1..=5).contains(&self.jetstream_replicas) {
            anyhow::bail!("jetstream_replicas must be 1 to 5, got {}", self.jetstream_replicas);
        }
        let prefix = &self.jetstream_stream_prefix;
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            anyhow::bail!("jetstream_stream_prefix must be letters, digits, '_' or '-', got {prefix:?}");
        }
        Ok(crate::pipeline::staging::jetstream::JetStreamSettings {
            url,
            partitions: self.jetstream_partitions,
            prefix: prefix.clone(),
            duplicate_window: std::time::Duration::from_secs(self.jetstream_duplicate_window_seconds),
            max_age: std::time::Duration::from_secs(self.staged_retention_days.max(1) * 24 * 3600),
            replicas: self.jetstream_replicas,
        })
    }

    /// Worker settings, checked.
    pub fn worker_settings(&self) -> anyhow::Result<crate::node::WorkerSettings> {
        if !(1..=9).contains(&self.gzip_level) {
            anyhow::bail!("gzip_level must be 1 to 9, got {}", self.gzip_level);
        }
        if self.lease_ttl_seconds < 2 {
            anyhow::bail!("lease_ttl_seconds must be at least 2, got {}", self.lease_ttl_seconds);
        }
        if self.max_batch_bytes < 1024 {
            anyhow::bail!("max_batch_bytes must be at least 1024, got {}", self.max_batch_bytes);
        }
        let master_key = self
            .master_key
            .as_deref()
            .map(crate::secrets::MasterKey::from_base64)
            .transpose()?
            .map(std::sync::Arc::new);
        Ok(crate::node::WorkerSettings {
            pipeline: crate::pipeline::worker::PipelineSettings {
                lease_ttl: std::time::Duration::from_secs(self.lease_ttl_seconds),
                poll_interval: std::time::Duration::from_millis(self.poll_interval_ms.max(10)),
                max_batch_bytes: self.max_batch_bytes,
                gzip_level: self.gzip_level,
                ..Default::default()
            },
            digest_period: digest_period(self.digest_period_seconds)?,
            signing_key_rotation: (self.signing_key_rotation_days > 0).then(|| {
                std::time::Duration::from_secs(self.signing_key_rotation_days.saturating_mul(86_400))
            }),
            master_key,
            staged_retention: std::time::Duration::from_secs(self.staged_retention_days * 24 * 3600),
            alerts: self.alert_settings()?,
            notifications: crate::features::notifications::notifier::NotificationSettings {
                retry_base: std::time::Duration::from_millis(self.notification_retry_base_ms.max(1)),
                retry_max: std::time::Duration::from_secs(self.notification_retry_max_seconds.max(1)),
                poll_interval: std::time::Duration::from_millis(self.poll_interval_ms.max(10)),
                ..Default::default()
            },
            insights: self.insights_settings()?,
            ..Default::default()
        })
    }

    /// Alert delivery settings, checked (the master key is added by the worker).
    pub fn alert_settings(&self) -> anyhow::Result<crate::features::alerts::AlertSettings> {
        if !(1..=100).contains(&self.alert_max_attempts) {
            anyhow::bail!("alert_max_attempts must be 1 to 100, got {}", self.alert_max_attempts);
        }
        if self.alert_webhook_timeout_seconds == 0 {
            anyhow::bail!("alert_webhook_timeout_seconds must be at least 1");
        }
        if let Some(path) = &self.alert_ca_file
            && !path.is_file()
        {
            anyhow::bail!("alert_ca_file {} is not a readable file", path.display());
        }
        Ok(crate::features::alerts::AlertSettings {
            max_attempts: self.alert_max_attempts,
            retry_base: std::time::Duration::from_millis(self.alert_retry_base_ms.max(1)),
            retry_max: std::time::Duration::from_secs(self.alert_retry_max_seconds.max(1)),
            poll_interval: std::time::Duration::from_millis(self.alert_poll_interval_ms.max(10)),
            request_timeout: std::time::Duration::from_secs(self.alert_webhook_timeout_seconds),
            ca_file: self.alert_ca_file.clone(),
            ..Default::default()
        })
    }

    /// The Insights detector's settings, checked.
    pub fn insights_settings(&self) -> anyhow::Result<crate::features::insights::detector::DetectorSettings> {
        if self.insights_baseline_minutes == 0 {
            anyhow::bail!("insights_baseline_minutes must be at least 1");
        }
        for (name, value) in [
            ("insights_sigma_factor", self.insights_sigma_factor),
            ("insights_mean_factor", self.insights_mean_factor),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                anyhow::bail!("{name} must be a number of at least 0, got {value}");
            }
        }
        if self.insights_min_count == 0 {
            anyhow::bail!("insights_min_count must be at least 1");
        }
        if self.insights_end_after_minutes == 0 {
            anyhow::bail!("insights_end_after_minutes must be at least 1");
        }
        if self.insights_settle_seconds > 3600 {
            anyhow::bail!(
                "insights_settle_seconds must be at most 3600, got {}",
                self.insights_settle_seconds
            );
        }
        Ok(crate::features::insights::detector::DetectorSettings {
            params: crate::features::insights::detect::Params {
                baseline_minutes: self.insights_baseline_minutes,
                sigma_factor: self.insights_sigma_factor,
                mean_factor: self.insights_mean_factor,
                min_count: self.insights_min_count,
                end_after_minutes: self.insights_end_after_minutes,
            },
            settle: std::time::Duration::from_secs(self.insights_settle_seconds),
            ..Default::default()
        })
    }

    /// The pull collectors' settings, checked.
    pub fn collector_config(
        &self,
        sdk_config: aws_config::SdkConfig,
    ) -> anyhow::Result<crate::integrations::collectors::CollectorConfig> {
        if self.collect_interval_seconds == 0 {
            anyhow::bail!("collect_interval_seconds must be at least 1");
        }
        if self.lookup_backfill_days > crate::integrations::collectors::lookup::MAX_LOOKBACK_DAYS {
            anyhow::bail!("lookup_backfill_days must be 0 to 90, got {}", self.lookup_backfill_days);
        }
        if !(self.lookup_requests_per_second > 0.0 && self.lookup_requests_per_second <= 100.0) {
            anyhow::bail!(
                "lookup_requests_per_second must be above 0 and at most 100, got {}",
                self.lookup_requests_per_second
            );
        }
        let mut config = crate::integrations::collectors::CollectorConfig::new(sdk_config);
        config.interval = std::time::Duration::from_secs(self.collect_interval_seconds);
        config.backfill_days = self.lookup_backfill_days;
        config.lookup_requests_per_second = self.lookup_requests_per_second;
        Ok(config)
    }

    /// orgtrail's own AWS configuration from the standard AWS environment (credentials, region,
    /// `AWS_ENDPOINT_URL_*`); the region defaults to `region` rather than asking instance metadata.
    pub async fn aws_sdk_config(&self) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
            loader = loader.region(aws_config::Region::new(self.region.clone()));
        }
        loader.load().await
    }

    /// An S3 client for the configured store.
    pub async fn s3_client(&self) -> aws_sdk_s3::Client {
        let credentials = match (&self.s3_access_key_id, &self.s3_secret_access_key) {
            (Some(id), Some(secret)) => Some((id.as_str(), secret.as_str())),
            _ => None,
        };
        crate::integrations::s3::client(
            self.s3_endpoint.as_deref(),
            &self.region,
            credentials,
            self.s3_force_path_style,
        )
        .await
    }

    /// The AWS settings of Organizations sync: the standard AWS configuration (through
    /// `organizations_role_arn` when set), checked.
    pub async fn aws_settings(&self) -> anyhow::Result<crate::integrations::aws::sdk::AwsSettings> {
        let sdk =
            crate::integrations::aws::sdk::load(&self.region, self.organizations_role_arn.as_deref()).await;
        Ok(crate::integrations::aws::sdk::AwsSettings::new(
            sdk,
            &self.member_role_name,
            &self.org_sync_ou_ids,
        )?)
    }

    /// How long the maintenance pass keeps dedupe identities and event history.
    pub fn horizons(&self) -> anyhow::Result<crate::node::maintenance::Horizons> {
        if !(1..=3650).contains(&self.event_history_retention_days) {
            anyhow::bail!(
                "event_history_retention_days must be 1 to 3650, got {}",
                self.event_history_retention_days
            );
        }
        Ok(crate::node::maintenance::Horizons {
            dedupe_days: self.dedupe_horizon_days,
            event_history_days: self.event_history_retention_days,
        })
    }

    pub fn database_url(&self) -> anyhow::Result<&str> {
        self.database_url.as_deref().ok_or_else(|| {
            anyhow::anyhow!("database_url is not set (set DATABASE_URL or database_url in the config file)")
        })
    }
}

/// `cloudtrail_list_page_size`, checked (also `dev --cloudtrail-list-page-size`).
pub fn cloudtrail_list_page_size(size: i32) -> anyhow::Result<i32> {
    if !(1..=1000).contains(&size) {
        anyhow::bail!("cloudtrail_list_page_size must be 1 to 1000, got {size}");
    }
    Ok(size)
}

/// The digest period, checked: at least a minute (CloudTrail's is an hour).
pub fn digest_period(seconds: u64) -> anyhow::Result<std::time::Duration> {
    if !(60..=86_400).contains(&seconds) {
        anyhow::bail!("digest_period_seconds must be 60 to 86400, got {seconds}");
    }
    Ok(std::time::Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insights_defaults_are_the_detectors_and_bad_values_are_named() {
        let mut config = Config::default();
        assert_eq!(
            config.insights_settings().unwrap().params,
            crate::features::insights::detect::Params::default()
        );
        config.insights_end_after_minutes = 0;
        let error = config.insights_settings().unwrap_err().to_string();
        assert!(error.starts_with("insights_end_after_minutes"), "{error}");
        config.insights_end_after_minutes = 1;
        config.insights_sigma_factor = f64::NAN;
        let error = config.insights_settings().unwrap_err().to_string();
        assert!(error.starts_with("insights_sigma_factor"), "{error}");
    }
}
