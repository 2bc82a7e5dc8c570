//! `orgtrail events put`: replays CloudTrail files (`{"Records":[...]}`), JSON arrays and JSON
//! lines, gzipped or not, single files or whole directory trees, through PutAuditEvents.
//! `orgtrail events lookup`: the event history, as `aws cloudtrail lookup-events` looks it up.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::call_error;
use super::output::{self, Output};
use crate::client::Clients;
use crate::control::api::ingest::{MAX_BYTES_PER_CALL, MAX_EVENTS_PER_CALL};
use crate::proto::v1 as pb;

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Send events from a file or a directory tree (CloudTrail files, JSON arrays, JSON lines; .gz or not).
    Put {
        /// File or directory (searched recursively).
        #[arg(long)]
        file: PathBuf,
        /// Register accounts named by the events that are not registered yet (admin tokens).
        #[arg(long)]
        register_missing_accounts: bool,
        /// Send on this channel (events without account/region take the channel's).
        #[arg(long, default_value = "")]
        channel_id: String,
        /// Calls in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// A progress line on stderr every 2 seconds and at the end (default: when stderr is a
        /// terminal).
        #[arg(long)]
        progress: bool,
    },
    /// Look events up in the organization's event history (management and Insights events),
    /// newest first, like `aws cloudtrail lookup-events`.
    Lookup(LookupArgs),
}

#[derive(Debug, clap::Args)]
pub struct LookupArgs {
    /// At most one `AttributeKey=KEY,AttributeValue=VALUE`; KEY is EventId, EventName, ReadOnly,
    /// Username, ResourceType, ResourceName, EventSource or AccessKeyId.
    #[arg(long, value_parser = parse_attribute)]
    lookup_attributes: Vec<pb::LookupAttribute>,
    /// Events at or after this time: RFC 3339 (2026-11-24T10:00:00Z), a UTC date or date and
    /// time (2026-11-24, 2026-11-24T10:00:00), or epoch seconds.
    #[arg(long, value_parser = parse_time)]
    start_time: Option<chrono::DateTime<chrono::Utc>>,
    /// Events at or before this time (same forms as --start-time).
    #[arg(long, value_parser = parse_time)]
    end_time: Option<chrono::DateTime<chrono::Utc>>,
    /// `insight`: Insights events only (otherwise management events only).
    #[arg(long, default_value = "")]
    event_category: String,
    /// Events to print at most; pages of up to 50 are fetched until then.
    #[arg(long, default_value_t = 50)]
    max_results: usize,
    /// Continue where an earlier lookup with the same parameters stopped.
    #[arg(long, default_value = "")]
    next_token: String,
    /// Only events of this account.
    #[arg(long, default_value = "")]
    account_id: String,
    /// Only events of this region.
    #[arg(long, default_value = "")]
    region: String,
}

/// `AttributeKey=K,AttributeValue=V` (the aws CLI's shorthand); the value may contain commas.
fn parse_attribute(text: &str) -> Result<pb::LookupAttribute, String> {
    let usage = || format!("{text:?} is not AttributeKey=KEY,AttributeValue=VALUE");
    let rest = text.strip_prefix("AttributeKey=").ok_or_else(usage)?;
    let (key, value) = rest.split_once(",AttributeValue=").ok_or_else(usage)?;
    Ok(pb::LookupAttribute { attribute_key: key.to_owned(), attribute_value: value.to_owned() })
}

pub(super) fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(time) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S") {
        return Ok(time.and_utc());
    }
    if let Some(time) = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(time.and_utc());
    }
    if let Some(time) = text.parse::<i64>().ok().and_then(|s| DateTime::from_timestamp(s, 0)) {
        return Ok(time);
    }
    Err(format!("{text:?} is not a time (2026-11-24T10:00:00Z, 2026-11-24 or epoch seconds)"))
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<&'a RawValue>,
}

fn files_under(path: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let metadata = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("--file {}: {e}", path.display()))?;
    if metadata.is_file() {
        found.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(path)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for entry in entries {
        files_under(&entry, found)?;
    }
    Ok(())
}

/// The records of one file, each as its exact JSON text.
pub fn records_of(path: &Path) -> anyhow::Result<Vec<String>> {
    let raw = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut text = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut text)
            .map_err(|e| anyhow::anyhow!("{}: not valid gzip: {e}", path.display()))?;
        text
    } else {
        raw
    };
    let text =
        std::str::from_utf8(&bytes).map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", path.display()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('{')
        && let Ok(envelope) = serde_json::from_str::<Envelope>(text)
    {
        return Ok(envelope.records.iter().map(|r| r.get().to_owned()).collect());
    }
    if trimmed.starts_with('[')
        && let Ok(list) = serde_json::from_str::<Vec<&RawValue>>(text)
    {
        return Ok(list.iter().map(|r| r.get().to_owned()).collect());
    }
    // JSON lines: one record per non-empty line.
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

#[derive(Default)]
struct Tally {
    accepted: u64,
    duplicates: u64,
    rejected: BTreeMap<String, (u64, String)>,
}

pub async fn run(clients: Clients, command: EventsCommand, format: Output) -> anyhow::Result<()> {
    match command {
        EventsCommand::Put { file, register_missing_accounts, channel_id, concurrency, progress } => {
            let progress = progress || std::io::IsTerminal::is_terminal(&std::io::stderr());
            let options = PutOptions { register_missing_accounts, channel_id, concurrency, progress };
            put(clients, file, options, format).await
        }
        EventsCommand::Lookup(args) => lookup(clients, args, format).await,
    }
}

async fn lookup(clients: Clients, args: LookupArgs, format: Output) -> anyhow::Result<()> {
    let mut client = clients.events.clone();
    let mut events = Vec::new();
    let mut next_token = args.next_token.clone();
    while events.len() < args.max_results {
        let page_size =
            (args.max_results - events.len()).min(crate::control::api::event::MAX_RESULTS as usize);
        let request = pb::LookupEventsRequest {
            lookup_attributes: args.lookup_attributes.clone(),
            start_time: args.start_time.map(Into::into),
            end_time: args.end_time.map(Into::into),
            event_category: args.event_category.clone(),
            max_results: page_size as i32,
            next_token: next_token.clone(),
            account_id: args.account_id.clone(),
            region: args.region.clone(),
        };
        let page = client.lookup_events(request).await.map_err(call_error)?.into_inner();
        events.extend(page.events);
        next_token = page.next_token;
        if next_token.is_empty() {
            break;
        }
    }
    if format == Output::Json {
        return output::json(&pb::LookupEventsResponse { events, next_token });
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                output::time(&e.event_time),
                e.account_id.clone(),
                e.region.clone(),
                e.event_source.clone(),
                e.event_name.clone(),
                output::or_dash(&e.username),
                output::or_dash(&e.read_only),
                e.event_id.clone(),
            ]
        })
        .collect();
    output::table(
        &[
            "EVENT TIME",
            "ACCOUNT",
            "REGION",
            "EVENT SOURCE",
            "EVENT NAME",
            "USERNAME",
            "READ ONLY",
            "EVENT ID",
        ],
        &rows,
    );
    if !next_token.is_empty() {
        eprintln!("more events: continue with --next-token {next_token}");
    }
    Ok(())
}

struct PutOptions {
    register_missing_accounts: bool,
    channel_id: String,
    concurrency: usize,
    progress: bool,
}

/// Progress lines on stderr for long runs: at most one every [`Progress::EVERY`], and the last.
struct Progress {
    on: bool,
    started: std::time::Instant,
    last: std::time::Instant,
}

impl Progress {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(2);

    fn new(on: bool) -> Self {
        let now = std::time::Instant::now();
        Self { on, started: now, last: now }
    }

    /// Prints `line()` when due (or `last`), with the elapsed time.
    fn tick(&mut self, last: bool, line: impl FnOnce() -> String) {
        if !self.on || (!last && self.last.elapsed() < Self::EVERY) {
            return;
        }
        self.last = std::time::Instant::now();
        eprintln!("{} ({:.1}s)", line(), self.started.elapsed().as_secs_f64());
    }
}

async fn put(clients: Clients, file: PathBuf, options: PutOptions, format: Output) -> anyhow::Result<()> {
    let PutOptions { register_missing_accounts, channel_id, concurrency, progress } = options;
    let mut progress = Progress::new(progress);
    let mut files = Vec::new();
    files_under(&file, &mut files)?;
    let mut records = Vec::new();
    for (read, path) in files.iter().enumerate() {
        records.extend(records_of(path)?);
        progress.tick(read + 1 == files.len(), || {
            format!("read {}/{} files, {} events", read + 1, files.len(), records.len())
        });
    }
    if register_missing_accounts {
        register_missing(&clients, &records).await?;
    }

    // Calls of at most 100 events and 1 MiB.
    let mut calls: Vec<Vec<pb::AuditEvent>> = Vec::new();
    let mut current: Vec<pb::AuditEvent> = Vec::new();
    let mut current_bytes = 0;
    for (i, record) in records.into_iter().enumerate() {
        if !current.is_empty()
            && (current.len() == MAX_EVENTS_PER_CALL || current_bytes + record.len() > MAX_BYTES_PER_CALL)
        {
            calls.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += record.len();
        current.push(pb::AuditEvent {
            id: format!("e{i}"),
            event_data: record,
            event_data_checksum: String::new(),
        });
    }
    if !current.is_empty() {
        calls.push(current);
    }

    let calls_count = calls.len();
    let mut responses = futures::stream::iter(calls.into_iter().map(|events| {
        let mut client = clients.ingest.clone();
        let channel_id = channel_id.clone();
        async move {
            client.put_audit_events(pb::PutAuditEventsRequest { audit_events: events, channel_id }).await
        }
    }))
    .buffer_unordered(concurrency.max(1));
    let mut tally = Tally::default();
    let total_calls = calls_count;
    let mut done_calls = 0;
    while let Some(response) = responses.next().await {
        done_calls += 1;
        let response = response.map_err(call_error)?.into_inner();
        for entry in response.successful {
            if entry.duplicate {
                tally.duplicates += 1;
            } else {
                tally.accepted += 1;
            }
        }
        for entry in response.failed {
            let slot = tally.rejected.entry(entry.error_code).or_insert((0, entry.error_message));
            slot.0 += 1;
        }
        progress.tick(done_calls == total_calls, || {
            let rejected: u64 = tally.rejected.values().map(|(n, _)| n).sum();
            format!(
                "sent {done_calls}/{total_calls} calls: {} accepted, {} duplicates, {rejected} rejected",
                tally.accepted, tally.duplicates
            )
        });
    }
    let rejected: u64 = tally.rejected.values().map(|(n, _)| n).sum();
    if format == Output::Json {
        let reasons: BTreeMap<&str, serde_json::Value> = tally
            .rejected
            .iter()
            .map(|(code, (n, example))| (code.as_str(), serde_json::json!({"count": n, "example": example})))
            .collect();
        output::json(&serde_json::json!({
            "files": files.len(), "accepted": tally.accepted, "duplicates": tally.duplicates,
            "rejected": rejected, "rejected_reasons": reasons,
        }))?;
    } else {
        println!(
            "{} files: {} accepted, {} duplicates, {} rejected",
            files.len(),
            tally.accepted,
            tally.duplicates,
            rejected
        );
        for (code, (count, example)) in &tally.rejected {
            println!("  {count} {code} (e.g. {example})");
        }
    }
    if rejected > 0 {
        anyhow::bail!("{rejected} events were rejected");
    }
    Ok(())
}

async fn register_missing(clients: &Clients, records: &[String]) -> anyhow::Result<()> {
    #[derive(Deserialize)]
    struct Account {
        #[serde(rename = "recipientAccountId")]
        recipient_account_id: Option<String>,
    }
    let wanted: BTreeSet<String> = records
        .iter()
        .filter_map(|r| serde_json::from_str::<Account>(r).ok()?.recipient_account_id)
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    let mut accounts = clients.accounts.clone();
    for account_id in wanted {
        let known =
            accounts.describe_account(pb::DescribeAccountRequest { account_id: account_id.clone() }).await;
        match known {
            Ok(_) => continue,
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => return Err(call_error(status)),
        }
        accounts
            .register_account(pb::RegisterAccountRequest {
                account_id: account_id.clone(),
                name: format!("account-{account_id}"),
                email: String::new(),
            })
            .await
            .map_err(call_error)?;
        eprintln!("registered account {account_id}");
    }
    Ok(())
}
