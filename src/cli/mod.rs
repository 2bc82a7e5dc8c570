//! The command line: server commands (`dev`, `serve`, `worker`, `migrate`) and admin verbs that
//! call the gRPC API. Every failure exits non-zero with one line on stderr.

pub mod admin;
pub mod bootstrap;
pub mod events;
pub mod org_sync;
pub mod output;
pub mod rules;
pub mod status;
pub mod trails;
pub mod usage;
pub mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client;
use crate::node::config::{Config, LogFormat};
use output::Output;

#[derive(Debug, Parser)]
#[command(
    name = "orgtrail",
    version,
    about = "Self-hosted, CloudTrail-compatible, organization-wide trail aggregator"
)]
pub struct Cli {
    /// Control-plane gRPC endpoint (default: from ./.orgtrail/dev.json).
    #[arg(long, global = true, env = "ORGTRAIL_ENDPOINT")]
    pub endpoint: Option<String>,
    /// API token (default: the admin token in ./.orgtrail/dev.json).
    #[arg(long, global = true, env = "ORGTRAIL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for an https:// endpoint.
    #[arg(long, global = true, env = "ORGTRAIL_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Output format of admin verbs.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table, env = "ORGTRAIL_OUTPUT")]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system locally with embedded Postgres and S3; prints endpoints and an admin token.
    Dev(DevArgs),
    /// Run the control plane (gRPC) from a config file and the environment.
    Serve(ServerArgs),
    /// Run a worker from a config file and the environment.
    Worker(ServerArgs),
    /// Apply database migrations and exit.
    Migrate(ServerArgs),
    /// Benchmarks (print figures; no pass/fail).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Serve a directory over the S3 protocol (the store `dev` embeds), for development and tests.
    S3Server(S3ServerArgs),
    /// Create an admin token directly in the database (first token of a new deployment).
    CreateAdminToken(CreateAdminTokenArgs),
    /// Manage the organization.
    #[command(subcommand)]
    Org(admin::OrgCommand),
    /// Manage member accounts.
    #[command(subcommand)]
    Accounts(admin::AccountsCommand),
    /// In a member account, with its own AWS credentials: create or update the IAM role orgtrail
    /// assumes and enroll with an enrollment token. Idempotent; --dry-run contacts nothing.
    Bootstrap(bootstrap::BootstrapArgs),
    /// Manage trails (CloudTrail's trail API).
    #[command(subcommand)]
    Trails(trails::TrailsCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Tokens(admin::TokensCommand),
    /// Send events.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Alert rules, built-in rule packs and undeliverable alerts.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// One screen: organization, accounts by state, trails and their latest deliveries, and the
    /// delivery pipeline (shards, backlog, lag, leases) from a metrics endpoint.
    Status(status::StatusArgs),
    /// Events and bytes delivered per trail, account, period and event category (what CloudTrail
    /// would bill), from the delivery records.
    Usage(usage::UsageArgs),
    /// Prove that no delivered log file was modified, deleted or forged: walk the trail's signed
    /// digest chains (as `aws cloudtrail validate-logs` does) and look for deleted digests and
    /// unlisted log files. Exit code 1 when anything is INVALID.
    Validate(validate::ValidateArgs),
}

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where state lives (Postgres cluster, S3 objects, secrets, dev.json).
    #[arg(long, default_value = ".orgtrail")]
    pub data_dir: PathBuf,
    /// gRPC listen address; port 0 picks a free port (written to dev.json).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub grpc_listen: SocketAddr,
    /// S3 listen address; port 0 picks a free port (written to dev.json).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub s3_listen: SocketAddr,
    /// CloudTrail-compatible API listen address (written to dev.json) [default: 127.0.0.1:50052,
    /// or a free port when --grpc-listen asks for one with port 0]
    #[arg(long)]
    pub cloudtrail_listen: Option<SocketAddr>,
    /// Trails per page of the CloudTrail-compatible API's ListTrails and ListTags (1 to 1000).
    #[arg(long, default_value_t = crate::control::cloudtrail_api::DEFAULT_LIST_PAGE_SIZE,
          value_parser = |v: &str| v.parse::<i32>().map_err(|e| e.to_string())
              .and_then(|n| crate::node::config::cloudtrail_list_page_size(n).map_err(|e| e.to_string())))]
    pub cloudtrail_list_page_size: i32,
    /// Prometheus metrics listen address (`GET /metrics`; written to dev.json) [default:
    /// 127.0.0.1:50053, or a free port when --grpc-listen asks for one with port 0]
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Log lines on stderr: `text` or `json` (one JSON object per line).
    #[arg(long, value_enum, default_value = "text", env = "ORGTRAIL_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Port of the embedded Postgres; 0 picks a free port.
    #[arg(long, default_value_t = 0)]
    pub postgres_port: u16,
    /// Enroll three demo member accounts and an organization trail (demo-org-trail, 5-second
    /// delivery) and send synthetic API activity continuously.
    #[arg(long)]
    pub demo: bool,
    /// Period of digest files (integrity validation): `1h` (CloudTrail's, the default) down to
    /// `1m`; also `90s`, `30m` or plain seconds. Only `1h` matches CloudTrail exactly.
    #[arg(long, default_value = "1h", value_parser = parse_period)]
    pub digest_period: std::time::Duration,
}

/// `90`, `90s`, `5m`, `1h` → a duration, checked like `digest_period_seconds`.
fn parse_period(value: &str) -> Result<std::time::Duration, String> {
    let value = value.trim();
    let (number, unit) = match value.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => value.split_at(at),
        None => (value, "s"),
    };
    let number: u64 =
        number.parse().map_err(|_| format!("{value:?} is not a duration like 1h, 5m or 90s"))?;
    let seconds = match unit {
        "s" => number,
        "m" => number.saturating_mul(60),
        "h" => number.saturating_mul(3600),
        other => return Err(format!("unknown unit {other:?}: use s, m or h")),
    };
    crate::node::config::digest_period(seconds)
        .map_err(|e| e.to_string().replace("digest_period_seconds", "the period"))
}

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// TOML config file; environment variables (ORGTRAIL_*, DATABASE_URL) override it.
    #[arg(long, short = 'c', env = "ORGTRAIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log lines on stderr: `text` or `json`; overrides `log_format` (ORGTRAIL_LOG_FORMAT).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl ServerArgs {
    /// The configuration, with the command line's overrides.
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(format) = self.log_format {
            config.log_format = format;
        }
        Ok(config)
    }
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Replay the shared real records through ingest → worker → S3 with every part in its own process.
    Pipeline(crate::bench::BenchArgs),
    /// Rule evaluation cost per event with both packs on (shared real records), and alert latency
    /// ingest → webhook over the real stack with a local HTTPS receiver.
    Rules(crate::bench::rules::RulesBenchArgs),
    /// Fill the event history (10M events by default) and send LookupEvents at a target rate;
    /// prints latency percentiles and the rate achieved.
    Lookup(crate::bench::lookup::LookupBenchArgs),
    /// Shard leases at organization scale (170,000 shards by default) against a real Postgres:
    /// claim and renew latency percentiles, and the takeover time of a stopped worker.
    Leases(crate::bench::leases::LeaseBenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct S3ServerArgs {
    /// Directory holding the buckets (one subdirectory each).
    #[arg(long)]
    pub dir: PathBuf,
    /// Listen address; port 0 picks a free port (printed).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Access key id clients sign with.
    #[arg(long, env = "ORGTRAIL_S3_ACCESS_KEY_ID")]
    pub access_key_id: String,
    /// Secret access key clients sign with.
    #[arg(long, env = "ORGTRAIL_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: String,
}

#[derive(Debug, clap::Args)]
pub struct CreateAdminTokenArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Name of the token.
    #[arg(long, default_value = "admin")]
    pub name: String,
    /// Also create an access key pair (needs master_key).
    #[arg(long)]
    pub with_access_key: bool,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,aws=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled: a signal that arrives once the caller has opened its ports (and a test
/// or orchestrator sees it ready) stops it cleanly instead of killing it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let _failpoints = crate::pipeline::failpoints::setup();
    let result = runtime.block_on(run(cli));
    // Tasks still waiting on a network peer or a database must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The report's lines already said what is invalid.
        Err(error) if error.is::<validate::ValidationFailed>() => ExitCode::from(1),
        Err(error) if error.is::<UsageError>() => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {}", format!("{error:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli { endpoint, token, ca_cert, output, command } = cli;
    let connect = || async {
        client::connect(&client::resolve_target(endpoint.clone(), token.clone(), ca_cert.clone())?).await
    };
    match command {
        Command::Dev(args) => {
            init_tracing(args.log_format);
            let free_or = |port: u16| if args.grpc_listen.port() == 0 { 0 } else { port };
            crate::dev::run(crate::dev::DevOptions {
                data_dir: args.data_dir,
                grpc_listen: args.grpc_listen,
                s3_listen: args.s3_listen,
                // Scripts and tests that ask for free ports get one here too without knowing the flag.
                cloudtrail_listen: args
                    .cloudtrail_listen
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], free_or(50052)))),
                cloudtrail_list_page_size: args.cloudtrail_list_page_size,
                metrics_listen: args
                    .metrics_listen
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], free_or(50053)))),
                postgres_port: args.postgres_port,
                demo: args.demo,
                digest_period: args.digest_period,
            })
            .await
        }
        Command::Serve(args) => {
            let config = args.load()?;
            init_tracing(config.log_format);
            crate::node::serve::serve(config).await
        }
        Command::Worker(args) => {
            let config = args.load()?;
            init_tracing(config.log_format);
            crate::node::serve::worker(config).await
        }
        Command::Migrate(args) => {
            let config = args.load()?;
            init_tracing(config.log_format);
            let pool = crate::store::connect(config.database_url()?, 2).await?;
            crate::store::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Bench(BenchCommand::Pipeline(args)) => {
            init_tracing(LogFormat::Text);
            crate::bench::pipeline(args).await
        }
        Command::Bench(BenchCommand::Rules(args)) => {
            init_tracing(LogFormat::Text);
            crate::bench::rules::run(args).await
        }
        Command::Bench(BenchCommand::Leases(args)) => {
            init_tracing(LogFormat::Text);
            crate::bench::leases::leases(args).await
        }
        Command::Bench(BenchCommand::Lookup(args)) => {
            init_tracing(LogFormat::Text);
            crate::bench::lookup::lookup(args).await
        }
        Command::S3Server(args) => {
            init_tracing(LogFormat::Text);
            let shutdown = crate::node::shutdown_signal();
            let server = crate::dev::s3::S3Server::start(
                &args.dir,
                args.listen,
                &args.access_key_id,
                &args.secret_access_key,
            )
            .await?;
            println!("{}", server.endpoint());
            shutdown.await;
            Ok(())
        }
        Command::CreateAdminToken(args) => admin::create_admin_token(args, output).await,
        Command::Org(command) => {
            let clients = connect().await?;
            admin::org(clients, command, output).await
        }
        Command::Accounts(command) => {
            let clients = connect().await?;
            admin::accounts(clients, command, output).await
        }
        Command::Trails(command) => {
            let clients = connect().await?;
            trails::run(clients, command, output).await
        }
        Command::Events(command) => {
            let clients = connect().await?;
            events::run(clients, command, output).await
        }
        Command::Tokens(command) => {
            let clients = connect().await?;
            admin::tokens(clients, command, output).await
        }
        Command::Rules(command) => {
            let clients = connect().await?;
            rules::run(clients, command, output).await
        }
        Command::Status(args) => {
            let clients = connect().await?;
            status::run(clients, args, output).await
        }
        Command::Usage(args) => {
            let clients = connect().await?;
            usage::run(clients, args, output).await
        }
        Command::Bootstrap(args) => bootstrap::run(args, endpoint, ca_cert, output).await,
        Command::Validate(args) => validate::run(args, endpoint, token, ca_cert, output).await,
    }
}

/// A bad combination of arguments that clap cannot see: one line, exit code 2 like clap's own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Turns a failed call into a one-line error.
pub fn call_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(client::describe_status(&status))
}

/// `--flag` / `--no-flag` pairs: None when neither was given.
pub fn flag_pair(yes: bool, no: bool) -> Option<bool> {
    match (yes, no) {
        (true, _) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    }
}

/// Reads an aws-cli style argument: `file://PATH`, or the JSON text itself.
pub fn read_json_argument(flag: &str, value: &str) -> anyhow::Result<String> {
    match value.strip_prefix("file://") {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{flag}: cannot read {path}: {e}"))
        }
        None => Ok(value.to_owned()),
    }
}
