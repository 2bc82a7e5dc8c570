//! `orgtrail bootstrap`: run in a member account with its own AWS credentials. Finds the account
//! (STS), learns from the control plane what to trust (DescribeEnrollment), creates or updates the
//! collector role (IAM, only what differs), enrolls, and keeps the member token in a state file.
//! A re-run whose state file still holds a working token changes nothing that already matches.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tonic::Code;

use super::UsageError;
use super::output::{self, Output};
use crate::client::{self, Target};
use crate::integrations::aws::iam::{self, aws_error};
use crate::integrations::aws::iam_policy::{DEFAULT_ROLE_NAME, INLINE_POLICY_NAME, RolePlan};
use crate::model::BucketName;
use crate::model::collector::CollectorSettings;
use crate::proto::v1 as pb;
use crate::proto::v1::account_service_client::AccountServiceClient;

pub const DEFAULT_STATE_FILE: &str = ".orgtrail/member.json";

#[derive(Debug, clap::Args)]
pub struct BootstrapArgs {
    /// Enrollment token from an admin (`orgtrail accounts enroll-token`). Not needed when the state
    /// file already holds a working member token for this account.
    #[arg(long, env = "ORGTRAIL_ENROLLMENT_TOKEN", hide_env_values = true)]
    pub enrollment_token: Option<String>,
    /// Name of the IAM role orgtrail assumes in this account.
    #[arg(long, default_value = DEFAULT_ROLE_NAME)]
    pub role_name: String,
    /// This account's CloudTrail bucket for orgtrail to read (grants read of this account's files only).
    #[arg(long)]
    pub trail_bucket: Option<String>,
    /// Key prefix of the trail in that bucket (before `AWSLogs/`).
    #[arg(long, default_value = "", requires = "trail_bucket")]
    pub trail_prefix: String,
    /// Do not pull with CloudTrail LookupEvents (then --trail-bucket is needed).
    #[arg(long)]
    pub no_lookup_events: bool,
    /// Account name in orgtrail; default: the current name, or the account id.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Contact email.
    #[arg(long, default_value = "")]
    pub email: String,
    /// Where the member token is kept (mode 0600).
    #[arg(long, default_value = DEFAULT_STATE_FILE)]
    pub state_file: PathBuf,
    /// Print the IAM documents and the calls that would be made; contact nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: the account to plan for (default: a placeholder).
    #[arg(long, requires = "dry_run")]
    pub account_id: Option<String>,
    /// With --dry-run: the enrollment's ExternalId (default: a placeholder).
    #[arg(long, requires = "dry_run")]
    pub external_id: Option<String>,
    /// With --dry-run: the principal to trust (default: a placeholder).
    #[arg(long, requires = "dry_run")]
    pub aggregator_principal: Option<String>,
}

/// What the member keeps between runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberState {
    pub endpoint: String,
    pub account_id: String,
    pub member_token: String,
    pub role_arn: String,
    pub external_id: String,
    #[serde(default)]
    pub aggregator_principal: String,
}

/// The outcome, printed as lines or (`--output json`) as this object.
#[derive(Debug, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub account_id: String,
    pub role_arn: String,
    pub external_id: String,
    pub aggregator_principal: String,
    /// Whether anything was written (IAM or the control plane).
    pub changed: bool,
    /// The writes made, in order (in a dry run: empty).
    pub changes: Vec<String>,
    /// Whether the account was enrolled by this run.
    pub enrolled: bool,
    pub state_file: String,
    /// Dry run: the calls a real run makes, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned_calls: Vec<String>,
    pub trust_policy: serde_json::Value,
    pub inline_policy: serde_json::Value,
}

fn checked_settings(args: &BootstrapArgs) -> anyhow::Result<()> {
    if args.no_lookup_events && args.trail_bucket.is_none() {
        return Err(UsageError(
            "--no-lookup-events without --trail-bucket leaves orgtrail nothing to collect".into(),
        )
        .into());
    }
    if let Some(bucket) = &args.trail_bucket {
        BucketName::parse("--trail-bucket", bucket).map_err(|e| UsageError(e.to_string()))?;
    }
    Ok(())
}

fn plan(
    args: &BootstrapArgs,
    partition: &str,
    account_id: &str,
    external_id: &str,
    principal: &str,
) -> RolePlan {
    RolePlan {
        partition: partition.to_owned(),
        account_id: account_id.to_owned(),
        role_name: args.role_name.clone(),
        aggregator_principal: principal.to_owned(),
        external_id: external_id.to_owned(),
        lookup_events: !args.no_lookup_events,
        trail_bucket: args.trail_bucket.clone(),
        trail_prefix: args.trail_prefix.trim_matches('/').to_owned(),
    }
}

pub async fn run(
    args: BootstrapArgs,
    endpoint: Option<String>,
    ca_cert: Option<PathBuf>,
    format: Output,
) -> anyhow::Result<()> {
    checked_settings(&args)?;
    if args.dry_run {
        return print(&dry_run(&args, endpoint.as_deref()), format);
    }
    let report = bootstrap(&args, endpoint, ca_cert).await?;
    print(&report, format)
}

fn dry_run(args: &BootstrapArgs, endpoint: Option<&str>) -> Report {
    let account_id = args.account_id.clone().unwrap_or_else(|| "<ACCOUNT_ID>".into());
    let external_id = args.external_id.clone().unwrap_or_else(|| "<EXTERNAL_ID>".into());
    let principal = args.aggregator_principal.clone().unwrap_or_else(|| "<AGGREGATOR_PRINCIPAL>".into());
    let plan = plan(args, "aws", &account_id, &external_id, &principal);
    let endpoint = endpoint.unwrap_or("<ENDPOINT>");
    let role = &args.role_name;
    let planned_calls = vec![
        format!(
            "read {} (a member token there for this account: TokenService.WhoAmI at {endpoint})",
            args.state_file.display()
        ),
        "sts:GetCallerIdentity".to_owned(),
        format!("orgtrail AccountService.DescribeEnrollment at {endpoint} (skipped when already enrolled)"),
        format!("iam:GetRole {role}"),
        format!(
            "iam:CreateRole {role} (if missing) or iam:UpdateAssumeRolePolicy {role} (if its trust policy differs)"
        ),
        format!("iam:GetRolePolicy {role} {INLINE_POLICY_NAME}"),
        format!("iam:PutRolePolicy {role} {INLINE_POLICY_NAME} (if it differs)"),
        format!("orgtrail AccountService.Enroll at {endpoint} (skipped when already enrolled)"),
        format!("write {} (mode 0600)", args.state_file.display()),
    ];
    Report {
        dry_run: true,
        role_arn: plan.role_arn(),
        account_id,
        external_id,
        aggregator_principal: principal,
        changed: false,
        changes: vec![],
        enrolled: false,
        state_file: args.state_file.display().to_string(),
        planned_calls,
        trust_policy: plan.trust_policy(),
        inline_policy: plan.inline_policy(),
    }
}

/// One line for a refused enrollment call.
fn enrollment_error(endpoint: &str, status: &tonic::Status) -> anyhow::Error {
    match status.code() {
        Code::Unavailable => anyhow::anyhow!("control plane {endpoint} is unreachable: {}", status.message()),
        Code::Unauthenticated
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::InvalidArgument => anyhow::anyhow!("cannot enroll: {}", status.message()),
        _ => anyhow::anyhow!("cannot enroll: {}", client::describe_status(status)),
    }
}

async fn aws_config() -> aws_config::SdkConfig {
    // IAM and STS are global; a region is still needed to resolve their endpoints.
    let region = aws_config::meta::region::RegionProviderChain::default_provider().or_else("us-east-1");
    aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region).load().await
}

fn read_state(path: &Path) -> anyhow::Result<Option<MemberState>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("state file {} is not orgtrail member state", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(anyhow::anyhow!("cannot read state file {}: {error}", path.display())),
    }
}

/// Written to a temporary file first, so a crash never leaves half a token behind.
fn write_state(path: &Path, state: &MemberState) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(serde_json::to_string_pretty(state)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The state's member token, if it still works for `account_id` at `endpoint`.
async fn working_state(
    state: Option<MemberState>,
    account_id: &str,
    endpoint: &str,
    ca_cert: Option<PathBuf>,
) -> anyhow::Result<Option<MemberState>> {
    let Some(state) = state.filter(|s| s.account_id == account_id && s.endpoint == endpoint) else {
        return Ok(None);
    };
    let target = Target { endpoint: endpoint.to_owned(), token: state.member_token.clone(), ca_cert };
    let mut clients = client::connect(&target).await?;
    match clients.tokens.who_am_i(pb::WhoAmIRequest {}).await {
        Ok(token) if token.get_ref().account_id == account_id => Ok(Some(state)),
        Ok(_) => Ok(None),
        Err(status) if status.code() == Code::Unauthenticated => Ok(None),
        Err(status) => Err(enrollment_error(endpoint, &status)),
    }
}

async fn bootstrap(
    args: &BootstrapArgs,
    endpoint: Option<String>,
    ca_cert: Option<PathBuf>,
) -> anyhow::Result<Report> {
    let state = read_state(&args.state_file)?;
    let endpoint = endpoint.or_else(|| state.as_ref().map(|s| s.endpoint.clone())).ok_or_else(|| {
        UsageError("--endpoint is required (the control plane's gRPC endpoint, from your admin)".into())
    })?;
    let config = aws_config().await;
    let identity = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| aws_error("identify the account", "sts:GetCallerIdentity", e))?;
    let account_id = identity.account.clone().context("sts:GetCallerIdentity returned no account")?;
    // arn:PARTITION:sts::ACCOUNT:...; the role and bucket ARNs must use the same partition.
    let partition = identity.arn.as_deref().and_then(|arn| arn.split(':').nth(1)).unwrap_or("aws").to_owned();

    let enrolled = working_state(state, &account_id, &endpoint, ca_cert.clone()).await?;
    let (external_id, principal, enrollment) = match &enrolled {
        Some(state) => (state.external_id.clone(), state.aggregator_principal.clone(), None),
        None => {
            let token = args.enrollment_token.clone().ok_or_else(|| {
                UsageError(format!(
                    "--enrollment-token is required: {} holds no working member token for account {account_id}",
                    args.state_file.display()
                ))
            })?;
            let channel = client::channel(&endpoint, ca_cert.as_deref()).await?;
            let mut api = AccountServiceClient::new(channel);
            // With the account id, the server refuses now (pinned elsewhere, already registered)
            // rather than after the role is made.
            let described = api
                .describe_enrollment(pb::DescribeEnrollmentRequest {
                    enrollment_token: token.clone(),
                    account_id: account_id.clone(),
                })
                .await
                .map_err(|status| enrollment_error(&endpoint, &status))?
                .into_inner();
            (described.external_id, described.aggregator_principal, Some((api, token)))
        }
    };
    let plan = plan(args, &partition, &account_id, &external_id, &principal);
    let collector = CollectorSettings {
        role_arn: plan.role_arn(),
        external_id: external_id.clone(),
        lookup_events: plan.lookup_events,
        trail_bucket: args.trail_bucket.clone().unwrap_or_default(),
        trail_prefix: plan.trail_prefix.clone(),
        regions: vec![],
    };
    collector.validate(&account_id).map_err(|e| UsageError(e.to_string()))?;

    // The effect outside orgtrail first: Enroll records a role that exists.
    let iam_client = aws_sdk_iam::Client::new(&config);
    let (role_arn, mut changes) = iam::ensure_role(&iam_client, &plan).await?;

    let was_enrolled = enrollment.is_some();
    if let Some((mut api, enrollment_token)) = enrollment {
        let collector = CollectorSettings { role_arn: role_arn.clone(), ..collector };
        let enrolled = api
            .enroll(pb::EnrollRequest {
                enrollment_token,
                account_id: account_id.clone(),
                name: args.name.clone(),
                email: args.email.clone(),
                collector: Some(pb::CollectorSettings {
                    role_arn: collector.role_arn,
                    external_id: collector.external_id,
                    lookup_events: collector.lookup_events,
                    trail_bucket: collector.trail_bucket,
                    trail_prefix: collector.trail_prefix,
                    regions: collector.regions,
                }),
            })
            .await
            .map_err(|status| enrollment_error(&endpoint, &status))?
            .into_inner();
        write_state(
            &args.state_file,
            &MemberState {
                endpoint: endpoint.clone(),
                account_id: account_id.clone(),
                member_token: enrolled.member_token,
                role_arn: role_arn.clone(),
                external_id: external_id.clone(),
                aggregator_principal: principal.clone(),
            },
        )?;
        changes.push(format!("AccountService.Enroll {account_id}"));
        changes.push(format!("wrote {}", args.state_file.display()));
    }
    Ok(Report {
        dry_run: false,
        account_id,
        role_arn,
        external_id,
        aggregator_principal: principal,
        changed: !changes.is_empty(),
        changes,
        enrolled: was_enrolled,
        state_file: args.state_file.display().to_string(),
        planned_calls: vec![],
        trust_policy: plan.trust_policy(),
        inline_policy: plan.inline_policy(),
    })
}

fn print(report: &Report, format: Output) -> anyhow::Result<()> {
    if format == Output::Json {
        return output::json(report);
    }
    let pretty = |value: &serde_json::Value| serde_json::to_string_pretty(value).unwrap_or_default();
    if report.dry_run {
        println!("dry run: nothing was contacted");
        println!();
        println!("trust policy of role {}:", report.role_arn);
        println!("{}", pretty(&report.trust_policy));
        println!();
        println!("inline policy {INLINE_POLICY_NAME}:");
        println!("{}", pretty(&report.inline_policy));
        println!();
        println!("calls, in order:");
        for (i, call) in report.planned_calls.iter().enumerate() {
            println!("  {}. {call}", i + 1);
        }
        return Ok(());
    }
    output::fields(&[
        ("account", report.account_id.clone()),
        ("role", report.role_arn.clone()),
        ("external id", report.external_id.clone()),
        ("trusts", report.aggregator_principal.clone()),
        ("state file", report.state_file.clone()),
    ]);
    if report.changed {
        println!("changes:");
        for change in &report.changes {
            println!("  {change}");
        }
    } else {
        println!("nothing changed: already enrolled and the role matches");
    }
    Ok(())
}
