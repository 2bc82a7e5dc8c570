//! `orgtrail status`: one screen on the deployment — the organization, accounts by state, trails
//! (logging, latest delivery and error, digests, SNS notification errors) from the gRPC API, and,
//! when a metrics endpoint is known (`--metrics-endpoint`, else dev.json's), the delivery pipeline of that process: shards
//! held, backlog and oldest lag, lease takeovers.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

use super::call_error;
use super::output::{self, Output};
use crate::client::{Clients, DEFAULT_DEV_JSON, read_dev_json};
use crate::proto::v1 as pb;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// A process's Prometheus endpoint (`http://HOST:PORT/metrics`) for the pipeline part
    /// [default: dev.json's metrics_endpoint; none: that part is left out].
    #[arg(long, env = "ORGTRAIL_METRICS_ENDPOINT")]
    pub metrics_endpoint: Option<String>,
    /// Acknowledged events still undelivered after this long are shown as overdue: `90s`, `30m`,
    /// `1h` [default: the longest delivery interval of a logging trail plus 2 minutes].
    #[arg(long, value_parser = super::admin::parse_lifetime)]
    pub overdue_after: Option<i64>,
}

pub async fn run(mut clients: Clients, args: StatusArgs, format: Output) -> anyhow::Result<()> {
    let organization =
        match clients.organizations.describe_organization(pb::DescribeOrganizationRequest {}).await {
            Ok(response) => Some(response.into_inner()),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => return Err(call_error(status)),
        };

    let mut accounts: BTreeMap<String, u64> = BTreeMap::new();
    let mut next_token = String::new();
    loop {
        let page = clients
            .accounts
            .list_accounts(pb::ListAccountsRequest { page_size: 1000, next_token, ..Default::default() })
            .await
            .map_err(call_error)?
            .into_inner();
        for account in &page.accounts {
            let state = account.status().as_str_name();
            let state = state.strip_prefix("ACCOUNT_STATUS_").unwrap_or(state);
            *accounts.entry(state.to_owned()).or_default() += 1;
        }
        if page.next_token.is_empty() {
            break;
        }
        next_token = page.next_token;
    }

    let mut trails = Vec::new();
    let mut next_token = String::new();
    loop {
        let page = clients
            .trails
            .list_trails(pb::ListTrailsRequest { page_size: 1000, next_token })
            .await
            .map_err(call_error)?
            .into_inner();
        for trail in page.trails {
            let status = clients
                .trails
                .get_trail_status(pb::GetTrailStatusRequest { name: trail.trail_arn.clone() })
                .await
                .map_err(call_error)?
                .into_inner();
            trails.push((trail.name, status));
        }
        if page.next_token.is_empty() {
            break;
        }
        next_token = page.next_token;
    }

    let backlog = clients
        .ingest
        .get_backlog(pb::GetBacklogRequest { overdue_after_seconds: args.overdue_after.unwrap_or(0) })
        .await
        .map_err(call_error)?
        .into_inner();

    let endpoint = args
        .metrics_endpoint
        .or_else(|| read_dev_json(Path::new(DEFAULT_DEV_JSON)).map(|d| d.metrics_endpoint))
        .filter(|e| !e.is_empty());
    let pipeline = match &endpoint {
        Some(endpoint) => Some(Pipeline::of(&scrape(endpoint).await?)),
        None => None,
    };

    if format == Output::Json {
        return output::json(&json!({
            "organization": organization.as_ref().map(|o| json!({
                "id": o.id, "management_account_id": o.management_account_id, "regions": o.regions.len(),
            })),
            "accounts": accounts,
            "trails": trails.iter().map(|(name, s)| json!({
                "name": name,
                "is_logging": s.is_logging,
                "latest_delivery_time": time_or_null(&s.latest_delivery_time),
                "latest_delivery_error": s.latest_delivery_error,
                "latest_digest_delivery_time": time_or_null(&s.latest_digest_delivery_time),
                "latest_digest_delivery_error": s.latest_digest_delivery_error,
                "latest_notification_time": time_or_null(&s.latest_notification_time),
                "latest_notification_error": s.latest_notification_error,
            })).collect::<Vec<_>>(),
            "backlog": {
                "staged_events": backlog.staged_events,
                "oldest_staged_time": time_or_null(&backlog.oldest_staged_time),
                "overdue_after_seconds": backlog.overdue_after_seconds,
                "overdue_events": backlog.overdue_events,
                "overdue_shards": backlog.overdue_shards.iter().map(|s| json!({
                    "account_id": s.account_id, "region": s.region, "source": s.source,
                    "events": s.events, "oldest_received_time": time_or_null(&s.oldest_received_time),
                })).collect::<Vec<_>>(),
                "untaken": backlog.untaken.iter().map(|u| json!({
                    "account_id": u.account_id, "category": u.category, "events": u.events,
                    "latest_time": time_or_null(&u.latest_time),
                })).collect::<Vec<_>>(),
            },
            "pipeline": pipeline.as_ref().map(|p| json!({
                "metrics_endpoint": endpoint,
                "shards_held": p.shards_held,
                "shards_with_backlog": p.shards_with_backlog,
                "oldest_lag_seconds": p.oldest_lag_seconds,
                "lease_takeovers": p.lease_takeovers,
                "events_delivered": p.events_delivered,
                "digest_writes": p.digest_writes,
                "s3_errors": p.s3_errors,
                "postgres_errors": p.postgres_errors,
            })),
        }));
    }

    let logging = trails.iter().filter(|(_, s)| s.is_logging).count();
    let accounts_line = if accounts.is_empty() {
        "none".to_owned()
    } else {
        accounts.iter().map(|(state, n)| format!("{n} {state}")).collect::<Vec<_>>().join(", ")
    };
    let mut rows = vec![
        (
            "organization",
            organization.as_ref().map_or("none (orgtrail org create)".to_owned(), |o| {
                format!("{} (management {}, {} regions)", o.id, o.management_account_id, o.regions.len())
            }),
        ),
        ("accounts", accounts_line),
        ("trails", format!("{} ({logging} logging, {} not)", trails.len(), trails.len() - logging)),
        (
            "staged",
            match backlog.staged_events {
                0 => "nothing (every acknowledged event is delivered)".to_owned(),
                n => format!("{n} events, oldest acknowledged {}", output::time(&backlog.oldest_staged_time)),
            },
        ),
        (
            "overdue",
            format!(
                "{} events acknowledged more than {}s ago and not delivered{}",
                backlog.overdue_events,
                backlog.overdue_after_seconds,
                if backlog.overdue_events > 0 { " (below)" } else { "" }
            ),
        ),
        ("no trail took", untaken_line(&backlog.untaken)),
    ];
    match &pipeline {
        Some(p) => rows.extend([
            ("shards held", format!("{} ({} with a backlog)", p.shards_held, p.shards_with_backlog)),
            ("oldest lag", format!("{:.1}s", p.oldest_lag_seconds)),
            ("lease takeovers", p.lease_takeovers.to_string()),
            ("events delivered", p.events_delivered.to_string()),
            ("digests written", p.digest_writes.to_string()),
            ("errors", format!("{} S3, {} Postgres", p.s3_errors, p.postgres_errors)),
        ]),
        None => rows.push(("pipeline", "no metrics endpoint (--metrics-endpoint)".to_owned())),
    }
    output::fields(&rows);
    if !backlog.overdue_shards.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = backlog
            .overdue_shards
            .iter()
            .map(|s| {
                vec![
                    s.account_id.clone(),
                    s.region.clone(),
                    s.source.clone(),
                    s.events.to_string(),
                    output::time(&s.oldest_received_time),
                ]
            })
            .collect();
        output::table(&["OVERDUE ACCOUNT", "REGION", "SOURCE", "EVENTS", "OLDEST ACKNOWLEDGED"], &rows);
    }
    if !trails.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = trails
            .iter()
            .map(|(name, s)| {
                vec![
                    name.clone(),
                    if s.is_logging { "yes" } else { "no" }.to_owned(),
                    output::time(&s.latest_delivery_time),
                    output::or_dash(&s.latest_delivery_error),
                    output::time(&s.latest_digest_delivery_time),
                    output::or_dash(&s.latest_digest_delivery_error),
                    output::or_dash(&s.latest_notification_error),
                ]
            })
            .collect();
        output::table(
            &[
                "TRAIL",
                "LOGGING",
                "LATEST DELIVERY",
                "DELIVERY ERROR",
                "LATEST DIGEST",
                "DIGEST ERROR",
                "SNS ERROR",
            ],
            &rows,
        );
    }
    Ok(())
}

/// "N events (Insight 3, Data 1)": acknowledged events no trail selected, by category.
fn untaken_line(untaken: &[pb::UntakenEvents]) -> String {
    let mut by_category: BTreeMap<&str, i64> = BTreeMap::new();
    for u in untaken {
        *by_category.entry(u.category.as_str()).or_default() += u.events;
    }
    let total: i64 = by_category.values().sum();
    if total == 0 {
        return "none".to_owned();
    }
    let parts: Vec<String> = by_category.iter().map(|(c, n)| format!("{c} {n}")).collect();
    format!("{total} acknowledged events no trail selects ({})", parts.join(", "))
}

fn time_or_null(ts: &Option<pbjson_types::Timestamp>) -> Value {
    match output::time(ts).as_str() {
        "-" => Value::Null,
        text => Value::String(text.to_owned()),
    }
}

/// What the status shows of one process's metrics.
#[derive(Debug, Default, PartialEq)]
struct Pipeline {
    shards_held: u64,
    shards_with_backlog: u64,
    oldest_lag_seconds: f64,
    lease_takeovers: u64,
    events_delivered: u64,
    digest_writes: u64,
    s3_errors: u64,
    postgres_errors: u64,
}

impl Pipeline {
    /// Reads the Prometheus text format (unknown lines are ignored).
    fn of(text: &str) -> Self {
        let mut pipeline = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let name = series.split_once('{').map_or(series, |(name, _)| name);
            let count = value.max(0.0) as u64;
            match name {
                "orgtrail_shards_held" => pipeline.shards_held += count,
                "orgtrail_shard_lag_seconds" => {
                    if value > 0.0 {
                        pipeline.shards_with_backlog += 1;
                    }
                    pipeline.oldest_lag_seconds = pipeline.oldest_lag_seconds.max(value);
                }
                "orgtrail_lease_takeovers_total" => pipeline.lease_takeovers += count,
                "orgtrail_delivered_events_total" => pipeline.events_delivered += count,
                "orgtrail_digest_writes_total" => pipeline.digest_writes += count,
                "orgtrail_s3_errors_total" => pipeline.s3_errors += count,
                "orgtrail_postgres_errors_total" => pipeline.postgres_errors += count,
                _ => {}
            }
        }
        pipeline
    }
}

/// One plain HTTP GET of a metrics endpoint (`http://HOST:PORT/PATH`).
async fn scrape(endpoint: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = endpoint
        .strip_prefix("http://")
        .with_context(|| format!("--metrics-endpoint {endpoint:?}: only http:// is supported"))?;
    let (host, path) =
        rest.split_once('/').map_or((rest, "/metrics".to_owned()), |(h, p)| (h, format!("/{p}")));
    let read = async {
        let mut stream = tokio::net::TcpStream::connect(host).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .map_err(|_| anyhow::anyhow!("metrics endpoint {endpoint}: no answer within 10 s"))?
        .with_context(|| format!("cannot read metrics endpoint {endpoint}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("metrics endpoint {endpoint}: not an HTTP response"))?;
    if head.split(' ').nth(1) != Some("200") {
        anyhow::bail!("metrics endpoint {endpoint}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_reads_the_exposition_format() {
        let text = "# HELP x\norgtrail_shards_held 3\n\
            orgtrail_shard_lag_seconds{shard=\"1\",account=\"a\",region=\"r\",source=\"push\"} 0\n\
            orgtrail_shard_lag_seconds{shard=\"2\",account=\"a\",region=\"r\",source=\"push\"} 4.5\n\
            orgtrail_lease_takeovers_total 2\norgtrail_delivered_events_total{kind=\"log\"} 10\n\
            orgtrail_delivered_events_total{kind=\"insight\"} 1\norgtrail_s3_errors_total{operation=\"put_log_file\"} 1\n\
            garbage line\n";
        let pipeline = Pipeline::of(text);
        assert_eq!(
            pipeline,
            Pipeline {
                shards_held: 3,
                shards_with_backlog: 1,
                oldest_lag_seconds: 4.5,
                lease_takeovers: 2,
                events_delivered: 11,
                s3_errors: 1,
                ..Default::default()
            }
        );
    }
}
