//! `orgtrail trails ...`: CloudTrail's trail verbs, with the aws CLI's flag names.

use clap::{Args, Subcommand};

use super::output::{self, Output};
use super::{call_error, flag_pair, read_json_argument};
use crate::client::Clients;
use crate::control::api::convert;
use crate::features::athena;
use crate::model::selectors::{AdvancedEventSelector, EventSelector, InsightSelector};
use crate::proto::v1 as pb;

/// A trail named by a positional argument or `--name` / `--trail-name`.
#[derive(Debug, Args)]
pub struct TrailRef {
    /// Trail name or ARN.
    #[arg(value_name = "NAME")]
    positional: Option<String>,
    /// Trail name or ARN.
    #[arg(long = "name", alias = "trail-name", conflicts_with = "positional")]
    name: Option<String>,
}

impl TrailRef {
    fn get(self) -> anyhow::Result<String> {
        self.positional.or(self.name).ok_or_else(|| anyhow::anyhow!("a trail NAME (or --name) is required"))
    }
}

#[derive(Debug, Args)]
pub struct TrailFlags {
    /// Cover every region (the default for new trails).
    #[arg(long, overrides_with = "no_is_multi_region_trail")]
    is_multi_region_trail: bool,
    /// Cover only the home region.
    #[arg(long)]
    no_is_multi_region_trail: bool,
    /// Deliver global service events (IAM, STS, ...; default for new trails).
    #[arg(long, overrides_with = "no_include_global_service_events")]
    include_global_service_events: bool,
    /// Do not deliver global service events (single-region trails only).
    #[arg(long)]
    no_include_global_service_events: bool,
    /// Cover every ACTIVE account of the organization.
    #[arg(long, overrides_with = "no_is_organization_trail")]
    is_organization_trail: bool,
    /// Not an organization trail.
    #[arg(long)]
    no_is_organization_trail: bool,
    /// Write signed digest files.
    #[arg(long, overrides_with = "no_enable_log_file_validation")]
    enable_log_file_validation: bool,
    /// Do not write digest files.
    #[arg(long)]
    no_enable_log_file_validation: bool,
    /// Key prefix before AWSLogs/.
    #[arg(long)]
    s3_key_prefix: Option<String>,
    /// SNS topic notified after each delivery.
    #[arg(long)]
    sns_topic_name: Option<String>,
    /// CloudWatch Logs log group ARN.
    #[arg(long)]
    cloud_watch_logs_log_group_arn: Option<String>,
    /// Role ARN for CloudWatch Logs delivery.
    #[arg(long)]
    cloud_watch_logs_role_arn: Option<String>,
    /// KMS key for SSE-KMS.
    #[arg(long)]
    kms_key_id: Option<String>,
    /// Seconds between log files of one (account, region), 1..3600 (default 60).
    #[arg(long)]
    delivery_interval_seconds: Option<i32>,
}

#[derive(Debug, Subcommand)]
pub enum TrailsCommand {
    /// Create a trail (logging stays off until start-logging).
    Create {
        /// Trail name.
        #[arg(long)]
        name: String,
        /// Bucket receiving the log files.
        #[arg(long)]
        s3_bucket_name: String,
        /// Home region (default: the server's region).
        #[arg(long, default_value = "")]
        home_region: String,
        /// Account owning an account trail (admins; members: implied).
        #[arg(long, default_value = "")]
        owner_account_id: String,
        /// Tags: Key=K,Value=V (repeatable) or a JSON list [{"Key":..,"Value":..}] or file://PATH.
        #[arg(long, num_args = 1..)]
        tags_list: Vec<String>,
        #[command(flatten)]
        flags: TrailFlags,
    },
    /// Show one trail.
    Get(TrailRef),
    /// List trails.
    List,
    /// Change a trail's settings.
    Update {
        #[command(flatten)]
        trail: TrailRef,
        /// New bucket.
        #[arg(long)]
        s3_bucket_name: Option<String>,
        #[command(flatten)]
        flags: TrailFlags,
    },
    /// Delete a trail (delivered files stay).
    Delete(TrailRef),
    /// Start delivery.
    StartLogging(TrailRef),
    /// Stop delivery.
    StopLogging(TrailRef),
    /// Show whether a trail is logging and how deliveries went.
    Status(TrailRef),
    /// Replace event selectors: --event-selectors or --advanced-event-selectors (JSON or file://PATH, CloudTrail's shape).
    PutEventSelectors {
        #[command(flatten)]
        trail: TrailRef,
        #[arg(long, conflicts_with = "advanced_event_selectors")]
        event_selectors: Option<String>,
        #[arg(long)]
        advanced_event_selectors: Option<String>,
    },
    /// Show event selectors in CloudTrail's JSON shape.
    GetEventSelectors(TrailRef),
    /// Replace Insights selectors (JSON or file://PATH, CloudTrail's shape; [] turns Insights off).
    PutInsightSelectors {
        #[command(flatten)]
        trail: TrailRef,
        #[arg(long)]
        insight_selectors: String,
    },
    /// Show Insights selectors.
    GetInsightSelectors(TrailRef),
    /// Add or overwrite tags.
    AddTags {
        #[command(flatten)]
        trail: TrailRef,
        /// Key=K,Value=V (repeatable) or a JSON list.
        #[arg(long, num_args = 1.., required = true)]
        tags_list: Vec<String>,
    },
    /// Print an Athena/Trino CREATE EXTERNAL TABLE for the trail's log files, with partition
    /// projection over account (organization trails), region and date.
    AthenaDdl {
        #[command(flatten)]
        trail: TrailRef,
        /// Table name (default: cloudtrail_ and the trail name, lowercased, other characters as _).
        #[arg(long)]
        table_name: Option<String>,
        /// Database the table goes in (default: the query's current database).
        #[arg(long)]
        database: Option<String>,
        /// Project `account` as `injected` (every query must name its account) instead of listing
        /// the organization's accounts; for organizations beyond a few dozen accounts.
        #[arg(long)]
        injected_accounts: bool,
    },
    /// Remove tags by key.
    RemoveTags {
        #[command(flatten)]
        trail: TrailRef,
        /// Keys to remove (repeatable or comma-separated).
        #[arg(long = "key", value_delimiter = ',', required = true)]
        keys: Vec<String>,
    },
}

/// Parses `Key=K,Value=V` shorthand items or one JSON list.
fn parse_tags(items: &[String]) -> anyhow::Result<Vec<pb::Tag>> {
    let mut tags = Vec::new();
    for item in items {
        let text = read_json_argument("--tags-list", item)?;
        if text.trim_start().starts_with('[') {
            let parsed: Vec<crate::model::trail::Tag> =
                serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("--tags-list: invalid JSON: {e}"))?;
            tags.extend(parsed.iter().map(convert::tag));
            continue;
        }
        let mut key = None;
        let mut value = String::new();
        for part in text.split(',') {
            match part.split_once('=') {
                Some(("Key", k)) => key = Some(k.to_owned()),
                Some(("Value", v)) => value = v.to_owned(),
                _ => anyhow::bail!("--tags-list: expected Key=K,Value=V, got {text:?}"),
            }
        }
        let key = key.ok_or_else(|| anyhow::anyhow!("--tags-list: missing Key= in {text:?}"))?;
        tags.push(pb::Tag { key, value });
    }
    Ok(tags)
}

/// Cost warnings go to stderr, so stdout stays the result.
fn print_warnings(warnings: &[String]) {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
}

fn print_trail(trail: &pb::Trail, format: Output) -> anyhow::Result<()> {
    if format == Output::Json {
        return output::json(trail);
    }
    let tags: Vec<String> = trail.tags.iter().map(|t| format!("{}={}", t.key, t.value)).collect();
    output::fields(&[
        ("name", trail.name.clone()),
        ("trail_arn", trail.trail_arn.clone()),
        ("home_region", trail.home_region.clone()),
        ("owner_account_id", trail.owner_account_id.clone()),
        ("s3_bucket_name", trail.s3_bucket_name.clone()),
        ("s3_key_prefix", output::or_dash(&trail.s3_key_prefix)),
        ("is_organization_trail", trail.is_organization_trail.to_string()),
        ("is_multi_region_trail", trail.is_multi_region_trail.to_string()),
        ("include_global_service_events", trail.include_global_service_events.to_string()),
        ("log_file_validation_enabled", trail.log_file_validation_enabled.to_string()),
        ("delivery_interval_seconds", trail.delivery_interval_seconds.to_string()),
        ("has_custom_event_selectors", trail.has_custom_event_selectors.to_string()),
        ("has_insight_selectors", trail.has_insight_selectors.to_string()),
        ("kms_key_id", output::or_dash(&trail.kms_key_id)),
        ("sns_topic_name", output::or_dash(&trail.sns_topic_name)),
        ("cloud_watch_logs_log_group_arn", output::or_dash(&trail.cloud_watch_logs_log_group_arn)),
        ("tags", if tags.is_empty() { "-".into() } else { tags.join(",") }),
    ]);
    Ok(())
}

fn print_status(status: &pb::TrailStatus, format: Output) -> anyhow::Result<()> {
    if format == Output::Json {
        return output::json(status);
    }
    output::fields(&[
        ("trail_arn", status.trail_arn.clone()),
        ("is_logging", status.is_logging.to_string()),
        ("start_logging_time", output::time(&status.start_logging_time)),
        ("stop_logging_time", output::time(&status.stop_logging_time)),
        ("latest_delivery_time", output::time(&status.latest_delivery_time)),
        ("latest_delivery_attempt_time", output::time(&status.latest_delivery_attempt_time)),
        ("latest_delivery_error", output::or_dash(&status.latest_delivery_error)),
        ("latest_digest_delivery_time", output::time(&status.latest_digest_delivery_time)),
        ("latest_digest_delivery_error", output::or_dash(&status.latest_digest_delivery_error)),
    ]);
    Ok(())
}

/// Selectors print in CloudTrail's JSON shape, so the output can be fed back to put-event-selectors.
fn print_selectors(response: &pb::EventSelectorsResponse, format: Output) -> anyhow::Result<()> {
    if format == Output::Json {
        return output::json(response);
    }
    let basic: Vec<EventSelector> = response
        .event_selectors
        .iter()
        .enumerate()
        .map(|(i, s)| convert::event_selector_from(i, s.clone()))
        .collect::<Result<_, _>>()?;
    let advanced: Vec<AdvancedEventSelector> =
        response.advanced_event_selectors.iter().cloned().map(convert::advanced_selector_from).collect();
    let mut body = serde_json::Map::new();
    body.insert("TrailARN".into(), response.trail_arn.clone().into());
    if !basic.is_empty() {
        body.insert("EventSelectors".into(), serde_json::to_value(basic)?);
    }
    if !advanced.is_empty() {
        body.insert("AdvancedEventSelectors".into(), serde_json::to_value(advanced)?);
    }
    output::json(&body)
}

fn print_insights(response: &pb::InsightSelectorsResponse, format: Output) -> anyhow::Result<()> {
    if format == Output::Json {
        return output::json(response);
    }
    let selectors: Vec<InsightSelector> =
        response.insight_selectors.iter().cloned().map(convert::insight_selector_from).collect();
    output::json(&serde_json::json!({ "TrailARN": response.trail_arn, "InsightSelectors": selectors }))
}

/// The organization's id, regions and account ids: what a trail's table layout ranges over.
async fn table_layout(
    clients: &mut Clients,
    trail: &pb::Trail,
    injected_accounts: bool,
) -> anyhow::Result<athena::TableLayout> {
    let organization =
        match clients.organizations.describe_organization(pb::DescribeOrganizationRequest {}).await {
            Ok(organization) => Some(organization.into_inner()),
            // An account trail needs no organization: it then covers its home region only.
            Err(status) if status.code() == tonic::Code::NotFound && !trail.is_organization_trail => None,
            Err(status) => return Err(call_error(status)),
        };
    let mut regions = vec![trail.home_region.clone()];
    if trail.is_multi_region_trail
        && let Some(organization) = &organization
    {
        regions.extend(organization.regions.iter().cloned());
    }
    let mut accounts = Vec::new();
    if trail.is_organization_trail && !injected_accounts {
        let mut next_token = String::new();
        loop {
            let page = clients
                .accounts
                .list_accounts(pb::ListAccountsRequest { page_size: 0, next_token, status: 0 })
                .await
                .map_err(call_error)?
                .into_inner();
            // Every state: suspended and removed accounts' files stay in the bucket.
            accounts.extend(page.accounts.into_iter().map(|a| a.account_id));
            if page.next_token.is_empty() {
                break;
            }
            next_token = page.next_token;
        }
    }
    Ok(athena::TableLayout {
        bucket: trail.s3_bucket_name.clone(),
        prefix: trail.s3_key_prefix.clone(),
        organization_id: organization.filter(|_| trail.is_organization_trail).map(|o| o.id),
        owner_account_id: trail.owner_account_id.clone(),
        accounts: if injected_accounts {
            athena::AccountProjection::Injected
        } else {
            athena::AccountProjection::Listed(accounts)
        },
        regions,
    })
}

async fn athena_ddl(
    clients: &mut Clients,
    trail: TrailRef,
    table_name: Option<String>,
    database: Option<String>,
    injected_accounts: bool,
    format: Output,
) -> anyhow::Result<()> {
    let request = pb::GetTrailRequest { name: trail.get()? };
    let trail = clients.trails.get_trail(request).await.map_err(call_error)?.into_inner();
    let layout = table_layout(clients, &trail, injected_accounts).await?;
    let mut table = athena::TableName::for_trail(&trail.name);
    table.database = database;
    if let Some(name) = table_name {
        table.name = name;
    }
    let ddl =
        athena::create_table(&table, &layout).map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message))?;
    if format == Output::Json {
        return output::json(&serde_json::json!({ "table": table.name, "ddl": ddl }));
    }
    print!("{ddl}");
    Ok(())
}

pub async fn run(mut clients: Clients, command: TrailsCommand, format: Output) -> anyhow::Result<()> {
    let api = &mut clients.trails;
    match command {
        TrailsCommand::AthenaDdl { trail, table_name, database, injected_accounts } => {
            athena_ddl(&mut clients, trail, table_name, database, injected_accounts, format).await
        }
        TrailsCommand::Create { name, s3_bucket_name, home_region, owner_account_id, tags_list, flags } => {
            let request = pb::CreateTrailRequest {
                name,
                home_region,
                owner_account_id,
                s3_bucket_name,
                s3_key_prefix: flags.s3_key_prefix.unwrap_or_default(),
                is_multi_region_trail: flag_pair(flags.is_multi_region_trail, flags.no_is_multi_region_trail),
                include_global_service_events: flag_pair(
                    flags.include_global_service_events,
                    flags.no_include_global_service_events,
                ),
                is_organization_trail: flags.is_organization_trail,
                log_file_validation_enabled: flags.enable_log_file_validation,
                cloud_watch_logs_log_group_arn: flags.cloud_watch_logs_log_group_arn.unwrap_or_default(),
                cloud_watch_logs_role_arn: flags.cloud_watch_logs_role_arn.unwrap_or_default(),
                kms_key_id: flags.kms_key_id.unwrap_or_default(),
                sns_topic_name: flags.sns_topic_name.unwrap_or_default(),
                tags: parse_tags(&tags_list)?,
                delivery_interval_seconds: flags.delivery_interval_seconds,
            };
            let trail = api.create_trail(request).await.map_err(call_error)?.into_inner();
            print_warnings(&trail.warnings);
            print_trail(&trail, format)
        }
        TrailsCommand::Get(trail) => {
            let trail =
                api.get_trail(pb::GetTrailRequest { name: trail.get()? }).await.map_err(call_error)?;
            print_trail(&trail.into_inner(), format)
        }
        TrailsCommand::List => {
            let mut all = Vec::new();
            let mut next_token = String::new();
            loop {
                let page = api
                    .list_trails(pb::ListTrailsRequest { page_size: 0, next_token })
                    .await
                    .map_err(call_error)?
                    .into_inner();
                all.extend(page.trails);
                if page.next_token.is_empty() {
                    break;
                }
                next_token = page.next_token;
            }
            if format == Output::Json {
                return output::json(&all);
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.home_region.clone(),
                        t.owner_account_id.clone(),
                        t.is_organization_trail.to_string(),
                        t.is_multi_region_trail.to_string(),
                        t.s3_bucket_name.clone(),
                        t.trail_arn.clone(),
                    ]
                })
                .collect();
            output::table(
                &["NAME", "HOME_REGION", "OWNER", "ORGANIZATION", "MULTI_REGION", "BUCKET", "ARN"],
                &rows,
            );
            Ok(())
        }
        TrailsCommand::Update { trail, s3_bucket_name, flags } => {
            let request = pb::UpdateTrailRequest {
                name: trail.get()?,
                s3_bucket_name,
                s3_key_prefix: flags.s3_key_prefix,
                is_multi_region_trail: flag_pair(flags.is_multi_region_trail, flags.no_is_multi_region_trail),
                include_global_service_events: flag_pair(
                    flags.include_global_service_events,
                    flags.no_include_global_service_events,
                ),
                is_organization_trail: flag_pair(flags.is_organization_trail, flags.no_is_organization_trail),
                log_file_validation_enabled: flag_pair(
                    flags.enable_log_file_validation,
                    flags.no_enable_log_file_validation,
                ),
                cloud_watch_logs_log_group_arn: flags.cloud_watch_logs_log_group_arn,
                cloud_watch_logs_role_arn: flags.cloud_watch_logs_role_arn,
                kms_key_id: flags.kms_key_id,
                sns_topic_name: flags.sns_topic_name,
                delivery_interval_seconds: flags.delivery_interval_seconds,
            };
            let trail = api.update_trail(request).await.map_err(call_error)?.into_inner();
            print_warnings(&trail.warnings);
            print_trail(&trail, format)
        }
        TrailsCommand::Delete(trail) => {
            let name = trail.get()?;
            api.delete_trail(pb::DeleteTrailRequest { name: name.clone() }).await.map_err(call_error)?;
            if format == Output::Table {
                println!("deleted trail {name}");
            }
            Ok(())
        }
        TrailsCommand::StartLogging(trail) => {
            let name = trail.get()?;
            api.start_logging(pb::StartLoggingRequest { name: name.clone() }).await.map_err(call_error)?;
            if format == Output::Table {
                println!("logging started for {name}");
            }
            Ok(())
        }
        TrailsCommand::StopLogging(trail) => {
            let name = trail.get()?;
            api.stop_logging(pb::StopLoggingRequest { name: name.clone() }).await.map_err(call_error)?;
            if format == Output::Table {
                println!("logging stopped for {name}");
            }
            Ok(())
        }
        TrailsCommand::Status(trail) => {
            let status = api
                .get_trail_status(pb::GetTrailStatusRequest { name: trail.get()? })
                .await
                .map_err(call_error)?;
            print_status(&status.into_inner(), format)
        }
        TrailsCommand::PutEventSelectors { trail, event_selectors, advanced_event_selectors } => {
            let mut request = pb::PutEventSelectorsRequest { trail_name: trail.get()?, ..Default::default() };
            if let Some(text) = event_selectors {
                let text = read_json_argument("--event-selectors", &text)?;
                let parsed: Vec<EventSelector> = serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("--event-selectors: not CloudTrail EventSelectors JSON: {e}")
                })?;
                request.event_selectors = parsed.iter().map(convert::event_selector).collect();
            }
            if let Some(text) = advanced_event_selectors {
                let text = read_json_argument("--advanced-event-selectors", &text)?;
                let parsed: Vec<AdvancedEventSelector> = serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!(
                        "--advanced-event-selectors: not CloudTrail AdvancedEventSelectors JSON: {e}"
                    )
                })?;
                request.advanced_event_selectors = parsed.iter().map(convert::advanced_selector).collect();
            }
            let response = api.put_event_selectors(request).await.map_err(call_error)?.into_inner();
            print_warnings(&response.warnings);
            print_selectors(&response, format)
        }
        TrailsCommand::GetEventSelectors(trail) => {
            let response = api
                .get_event_selectors(pb::GetEventSelectorsRequest { trail_name: trail.get()? })
                .await
                .map_err(call_error)?;
            print_selectors(&response.into_inner(), format)
        }
        TrailsCommand::PutInsightSelectors { trail, insight_selectors } => {
            let text = read_json_argument("--insight-selectors", &insight_selectors)?;
            let parsed: Vec<InsightSelector> = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!("--insight-selectors: not CloudTrail InsightSelectors JSON: {e}")
            })?;
            let request = pb::PutInsightSelectorsRequest {
                trail_name: trail.get()?,
                insight_selectors: parsed.iter().map(convert::insight_selector).collect(),
            };
            let response = api.put_insight_selectors(request).await.map_err(call_error)?.into_inner();
            print_insights(&response, format)
        }
        TrailsCommand::GetInsightSelectors(trail) => {
            let response = api
                .get_insight_selectors(pb::GetInsightSelectorsRequest { trail_name: trail.get()? })
                .await
                .map_err(call_error)?;
            print_insights(&response.into_inner(), format)
        }
        TrailsCommand::AddTags { trail, tags_list } => {
            let request = pb::AddTagsRequest { name: trail.get()?, tags: parse_tags(&tags_list)? };
            let trail = api.add_tags(request).await.map_err(call_error)?.into_inner();
            print_trail(&trail, format)
        }
        TrailsCommand::RemoveTags { trail, keys } => {
            let trail = api
                .remove_tags(pb::RemoveTagsRequest { name: trail.get()?, keys })
                .await
                .map_err(call_error)?;
            print_trail(&trail.into_inner(), format)
        }
    }
}
