//! One typed configuration for `serve`, `worker` and `migrate`: defaults, then a TOML file, then
//! environment variables (`ORGTRAIL_<FIELD>`, plus the conventional `DATABASE_URL`).
//! The doc comment of each field is its documentation (see also README "Configuration").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
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
    /// PEM certificate chain; with `tls_key_path`, gRPC is served over TLS (rustls).
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
    /// Log line format: `text` or `json`.
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: None,
            database_max_connections: 16,
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            tls_cert_path: None,
            tls_key_path: None,
            master_key: None,
            region: "us-east-1".to_owned(),
            s3_endpoint: None,
            s3_force_path_style: false,
            log_format: LogFormat::Text,
        }
    }
}

const FIELDS: &[&str] = &[
    "database_url",
    "database_max_connections",
    "grpc_listen",
    "tls_cert_path",
    "tls_key_path",
    "master_key",
    "region",
    "s3_endpoint",
    "s3_force_path_style",
    "log_format",
];

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

    pub fn database_url(&self) -> anyhow::Result<&str> {
        self.database_url.as_deref().ok_or_else(|| {
            anyhow::anyhow!("database_url is not set (set DATABASE_URL or database_url in the config file)")
        })
    }
}
