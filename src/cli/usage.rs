//! `orgtrail usage`: events and bytes trails delivered, per trail, account, period and category.

use clap::{Args, ValueEnum};

use super::call_error;
use super::events::parse_time;
use super::output::{self, Output};
use crate::client::Clients;
use crate::proto::v1 as pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Period {
    Hour,
    Day,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Only this trail (name or ARN).
    #[arg(long)]
    trail: Option<String>,
    /// Only this account (members: always their own).
    #[arg(long)]
    account: Option<String>,
    /// Only periods from this time (RFC 3339, YYYY-MM-DD or epoch seconds).
    #[arg(long, value_parser = parse_time)]
    start: Option<chrono::DateTime<chrono::Utc>>,
    /// Only usage delivered before this time.
    #[arg(long, value_parser = parse_time)]
    end: Option<chrono::DateTime<chrono::Utc>>,
    /// Group by hour or by day (UTC).
    #[arg(long = "by", value_enum, default_value_t = Period::Hour)]
    by: Period,
}

pub async fn run(mut clients: Clients, args: UsageArgs, format: Output) -> anyhow::Result<()> {
    let request = pb::GetTrailUsageRequest {
        trail: args.trail.unwrap_or_default(),
        account_id: args.account.unwrap_or_default(),
        start_time: args.start.map(Into::into),
        end_time: args.end.map(Into::into),
        granularity: match args.by {
            Period::Hour => pb::UsageGranularity::Hour,
            Period::Day => pb::UsageGranularity::Day,
        } as i32,
    };
    let response = clients.trails.get_trail_usage(request).await.map_err(call_error)?.into_inner();
    if format == Output::Json {
        return output::json(&response);
    }
    let rows: Vec<Vec<String>> = response
        .usage
        .iter()
        .map(|u| {
            vec![
                output::time(&u.period_start),
                u.trail_arn.clone(),
                u.account_id.clone(),
                u.category.clone(),
                u.events.to_string(),
                u.bytes.to_string(),
            ]
        })
        .collect();
    output::table(&["PERIOD_START", "TRAIL_ARN", "ACCOUNT", "CATEGORY", "EVENTS", "BYTES"], &rows);
    Ok(())
}
