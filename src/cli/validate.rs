//! `orgtrail validate`: proves that no delivered log file was modified, deleted or forged, by
//! walking the trail's signed digest chains ([`crate::features::integrity::validate`]). Prints
//! validate-logs' lines (or the report as JSON); exits 1 when anything is INVALID.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::output::Output;
use super::{UsageError, call_error};
use crate::client::{self, Authed, DEFAULT_DEV_JSON};
use crate::control::api::convert;
use crate::features::integrity::digest::digest_time;
use crate::features::integrity::validate::{
    self, Accounts, Entry, KeySource, Outcome, Report, Request, S3Source, SourceError, TrailLocation,
};
use crate::model::{AccountId, OrganizationId, Region, TrailArn};
use crate::proto::v1 as pb;
use crate::proto::v1::key_service_client::KeyServiceClient;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// ARN of the trail: arn:aws:cloudtrail:HOME_REGION:OWNER:trail/NAME.
    #[arg(long = "trail", visible_alias = "trail-arn", value_parser = parse_trail_arn)]
    pub trail: TrailArn,
    /// Start of the range: RFC 3339 (2026-11-24T05:00:00Z) or a date (2026-11-24, midnight UTC).
    #[arg(long, value_parser = parse_time)]
    pub start_time: DateTime<Utc>,
    /// End of the range (default: now); same formats.
    #[arg(long, value_parser = parse_time)]
    pub end_time: Option<DateTime<Utc>>,
    /// Validate only this account (repeatable). Default: every account folder of an organization
    /// trail, the owner of an account trail.
    #[arg(long = "account", visible_alias = "account-id", value_parser = parse_account)]
    pub accounts: Vec<String>,
    /// Validate only this source region (repeatable). Default: every region with digests.
    #[arg(long = "region", value_parser = parse_region)]
    pub regions: Vec<String>,
    /// Also print the valid digests and log files, and the files no digest covers yet.
    #[arg(long)]
    pub verbose: bool,
    /// Read this bucket without asking the control plane about the trail (public keys still come
    /// from it): for an auditor with S3 read access.
    #[arg(long)]
    pub s3_bucket: Option<String>,
    /// With --s3-bucket: the trail's key prefix before AWSLogs/.
    #[arg(long, requires = "s3_bucket")]
    pub s3_prefix: Option<String>,
    /// With --s3-bucket: the organization id of an organization trail (keys under AWSLogs/o-ID/).
    #[arg(long, requires = "s3_bucket", value_parser = parse_organization_id)]
    pub organization_id: Option<String>,
    /// S3-compatible endpoint (path-style addressing). Default: AWS_ENDPOINT_URL_S3 or
    /// AWS_ENDPOINT_URL, else the S3 of ./.orgtrail/dev.json when talking to that dev server, else AWS.
    #[arg(long)]
    pub s3_endpoint_url: Option<String>,
}

fn parse_trail_arn(value: &str) -> Result<TrailArn, String> {
    TrailArn::parse("--trail", value).map_err(|e| e.message)
}

fn parse_account(value: &str) -> Result<String, String> {
    AccountId::parse("--account", value).map(|a| a.to_string()).map_err(|e| e.message)
}

fn parse_region(value: &str) -> Result<String, String> {
    Region::parse("--region", value).map(|r| r.to_string()).map_err(|e| e.message)
}

fn parse_organization_id(value: &str) -> Result<String, String> {
    OrganizationId::parse("--organization-id", value).map(|o| o.to_string()).map_err(|e| e.message)
}

/// RFC 3339, `YYYY-MM-DDTHH:MM:SS` (UTC), `YYYYMMDDTHH:MM:SSZ` (validate-logs' documented example)
/// or a date alone (midnight UTC).
pub fn parse_time(value: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(value) {
        return Ok(time.with_timezone(&Utc));
    }
    for format in
        ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%SZ", "%Y%m%dT%H%M%SZ"]
    {
        if let Ok(time) = NaiveDateTime::parse_from_str(value, format) {
            return Ok(time.and_utc());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(format!("{value:?} is not a time: use RFC 3339 (2026-11-24T05:00:00Z) or a date (2026-11-24)"))
}

/// Validation ran and found something INVALID (exit code 1, nothing more to say: the lines did).
#[derive(Debug, thiserror::Error)]
#[error("validation found invalid or missing files")]
pub struct ValidationFailed;

/// Public keys from the control plane's KeyService.
pub struct GrpcKeys(pub KeyServiceClient<Authed>);

#[async_trait::async_trait]
impl KeySource for GrpcKeys {
    async fn public_keys(
        &self,
        region: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<Vec<u8>>, SourceError> {
        let request = pb::ListPublicKeysRequest {
            region: region.to_owned(),
            start_time: Some(convert::timestamp(start)),
            end_time: Some(convert::timestamp(end)),
        };
        let response = self.0.clone().list_public_keys(request).await.map_err(|status| {
            SourceError(format!("ListPublicKeys in {region} failed: {}", client::describe_status(&status)))
        })?;
        Ok(response.into_inner().public_key_list.into_iter().map(|key| key.value).collect())
    }
}

pub async fn run(
    args: ValidateArgs,
    endpoint: Option<String>,
    token: Option<String>,
    ca_cert: Option<PathBuf>,
    output: Output,
) -> anyhow::Result<()> {
    let start = args.start_time;
    let end = args.end_time.unwrap_or_else(Utc::now);
    if end < start {
        return Err(UsageError(format!(
            "--end-time: {} is before --start-time {}",
            digest_time(end),
            digest_time(start)
        ))
        .into());
    }
    let target = client::resolve_target(endpoint, token, ca_cert)?;
    let mut clients = client::connect(&target).await?;
    let trail = match &args.s3_bucket {
        Some(bucket) => TrailLocation {
            trail_arn: args.trail.to_string(),
            trail_name: args.trail.name.to_string(),
            home_region: args.trail.home_region.clone(),
            bucket: bucket.clone(),
            prefix: args.s3_prefix.as_deref().unwrap_or_default().trim_matches('/').to_owned(),
            organization_id: args
                .organization_id
                .as_deref()
                .map(|o| OrganizationId::parse("--organization-id", o))
                .transpose()?,
        },
        None => trail_from_control_plane(&mut clients, &args.trail).await?,
    };
    let accounts = if !args.accounts.is_empty() {
        Accounts::Given(args.accounts.clone())
    } else if trail.organization_id.is_some() {
        Accounts::Discover
    } else {
        // An account trail writes only its owner's folder.
        Accounts::Given(vec![args.trail.owner_account_id.to_string()])
    };
    let regions = (!args.regions.is_empty()).then(|| args.regions.clone());
    let request = Request { trail, start, end, accounts, regions };
    let s3 = S3Source::new(s3_client(args.s3_endpoint_url.as_deref(), &target.endpoint).await);
    let report = validate::validate(&s3, &GrpcKeys(clients.keys.clone()), &request).await?;
    print_report(&report, output, args.verbose)?;
    if report.valid { Ok(()) } else { Err(ValidationFailed.into()) }
}

async fn trail_from_control_plane(
    clients: &mut client::Clients,
    arn: &TrailArn,
) -> anyhow::Result<TrailLocation> {
    let trail = clients
        .trails
        .get_trail(pb::GetTrailRequest { name: arn.to_string() })
        .await
        .map_err(call_error)?
        .into_inner();
    let organization_id = if trail.is_organization_trail {
        let organization = clients
            .organizations
            .describe_organization(pb::DescribeOrganizationRequest {})
            .await
            .map_err(call_error)?
            .into_inner();
        Some(OrganizationId::parse("organization id", &organization.id)?)
    } else {
        None
    };
    Ok(TrailLocation {
        trail_arn: trail.trail_arn,
        trail_name: trail.name,
        home_region: Region::parse("home_region", &trail.home_region)?,
        bucket: trail.s3_bucket_name,
        prefix: trail.s3_key_prefix,
        organization_id,
    })
}

fn configured_endpoint() -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.is_empty())
}

/// S3 from the standard AWS environment (credential chain, region, AWS_ENDPOINT_URL_S3 /
/// AWS_ENDPOINT_URL, which the SDK reads itself); `--s3-endpoint-url` wins. Any explicit endpoint
/// means an S3-compatible store: path-style. With none, the dev stack's own S3 when the control
/// plane is the one ./.orgtrail/dev.json describes.
async fn s3_client(endpoint_flag: Option<&str>, control_plane: &str) -> aws_sdk_s3::Client {
    let region = aws_config::meta::region::RegionProviderChain::default_provider().or_else("us-east-1");
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region);
    let mut path_style = configured_endpoint().is_some();
    if let Some(endpoint) = endpoint_flag {
        loader = loader.endpoint_url(endpoint);
        path_style = true;
    } else if !path_style
        && let Some(dev) = client::read_dev_json(Path::new(DEFAULT_DEV_JSON))
        && dev.grpc_endpoint == control_plane
    {
        loader =
            loader.endpoint_url(&dev.s3_endpoint).credentials_provider(aws_sdk_s3::config::Credentials::new(
                dev.s3_access_key_id,
                dev.s3_secret_access_key,
                None,
                None,
                "dev.json",
            ));
        path_style = true;
    }
    let shared = loader.load().await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared).force_path_style(path_style).build(),
    )
}

/// Prints the report; a closed stdout (`| head`) ends printing quietly instead of panicking.
fn print_report(report: &Report, output: Output, verbose: bool) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let printed = match output {
        Output::Json => serde_json::to_writer_pretty(&mut stdout, report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(stdout)),
        Output::Table => print_lines(report, verbose, &mut stdout, &mut std::io::stderr().lock()),
    };
    match printed {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

/// validate-logs' output: the header and summary on stdout, INVALID and gap lines on stderr,
/// valid lines only with --verbose.
fn print_lines(
    report: &Report,
    verbose: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<()> {
    let (start, end) = (digest_time(report.start_time), digest_time(report.end_time));
    writeln!(out, "Validating log files for trail {} between {start} and {end}\n", report.trail_arn)?;
    for chain in &report.chains {
        for entry in &chain.entries {
            match entry {
                Entry::Digest { bucket, key, outcome, .. } => {
                    line("Digest file", bucket, key, outcome, verbose, out, err)?
                }
                Entry::LogFile { bucket, key, outcome } => {
                    line("Log file", bucket, key, outcome, verbose, out, err)?
                }
                Entry::Gap { from, to } => writeln!(
                    err,
                    "No log files were delivered by CloudTrail between {} and {}",
                    digest_time(*from),
                    digest_time(*to)
                )?,
            }
        }
        if verbose {
            for file in &chain.uncovered_log_files {
                writeln!(out, "Log file\ts3://{}/{}\t{}", file.bucket, file.key, file.reason)?;
            }
        }
    }
    writeln!(out, "\nResults requested for {start} to {end}")?;
    if report.chains.is_empty() {
        return writeln!(out, "No digests found");
    }
    match report.found() {
        Some((found_start, found_end)) => {
            writeln!(out, "Results found for {} to {}:", digest_time(found_start), digest_time(found_end))?
        }
        None => writeln!(out, "No valid digests found in range")?,
    }
    writeln!(out)?;
    let summary = &report.summary;
    ratio(out, summary.valid_digests, summary.invalid_digests, "digest")?;
    ratio(out, summary.valid_log_files, summary.invalid_log_files, "log")?;
    if summary.uncovered_log_files > 0 {
        writeln!(out, "{} log files not yet covered by a digest", summary.uncovered_log_files)?;
    }
    Ok(())
}

fn line(
    kind: &str,
    bucket: &str,
    key: &str,
    outcome: &Outcome,
    verbose: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<()> {
    match outcome {
        Outcome::Valid if verbose => writeln!(out, "{kind}\ts3://{bucket}/{key}\tvalid"),
        Outcome::Valid => Ok(()),
        Outcome::Invalid(problem) => writeln!(err, "{kind}\ts3://{bucket}/{key}\tINVALID: {problem}"),
    }
}

fn ratio(out: &mut impl Write, valid: usize, invalid: usize, name: &str) -> std::io::Result<()> {
    let total = valid + invalid;
    match (total, invalid) {
        (0, _) => Ok(()),
        (_, 0) => writeln!(out, "{valid}/{total} {name} files valid"),
        _ => writeln!(out, "{valid}/{total} {name} files valid, {invalid}/{total} {name} files INVALID"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_accept_rfc3339_validate_logs_forms_and_dates() {
        let expected = DateTime::parse_from_rfc3339("2026-11-24T05:00:00Z").unwrap().with_timezone(&Utc);
        for text in
            ["2026-11-24T05:00:00Z", "2026-11-24T07:00:00+02:00", "2026-11-24T05:00:00", "20261124T05:00:00Z"]
        {
            assert_eq!(parse_time(text), Ok(expected), "{text}");
        }
        assert_eq!(parse_time("2026-11-24"), Ok(expected - chrono::Duration::hours(5)));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
