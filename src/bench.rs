//! `orgtrail bench pipeline`: replays the shared real CloudTrail records (repeated, fresh eventIDs)
//! through gRPC ingest into the in-process S3 store and prints throughput, CPU per process, latency
//! and memory. Every server-side part runs as its own process so its CPU can be read from /proc:
//! Postgres (durable settings), `orgtrail serve`, `orgtrail worker`, `orgtrail s3-server`.

mod fleet;
pub mod leases;
pub mod lookup;
mod spread;

use spread::Spread;

use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::StreamExt;

pub mod rules;
pub mod webhook_receiver;

use crate::client::{Target, connect};
use crate::dev::postgres::{Durability, EmbeddedPostgres, free_port};
use crate::model::record::{Category, RecordView};
use crate::proto::v1 as pb;

/// gRPC clients for `endpoint` with a fresh admin token, made straight in the database.
pub(crate) async fn admin_clients(
    pool: &sqlx::PgPool,
    master_key: Option<&crate::secrets::MasterKey>,
    endpoint: String,
) -> anyhow::Result<crate::client::Clients> {
    let admin = crate::control::api::token::issue(
        pool,
        master_key,
        "bench",
        crate::store::tokens::Role::Admin,
        None,
        0,
        false,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    connect(&Target { endpoint, token: admin.secret, ca_cert: None }).await
}

/// The database a bench runs against: `database_url` when given, else a fresh embedded cluster in
/// `base/postgres` (returned, for the caller to stop) with an `orgtrail` database.
pub(crate) async fn bench_database(
    database_url: Option<&str>,
    base: &Path,
    durability: Durability,
) -> anyhow::Result<(String, Option<EmbeddedPostgres>)> {
    if let Some(url) = database_url {
        return Ok((url.to_string(), None));
    }
    std::fs::create_dir_all(base)?;
    // The embedded Postgres runs as the postgres user when we are root: let it in.
    let _ = std::process::Command::new("chmod").arg("755").arg(base).status();
    let pg_dir = base.join("postgres");
    let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&pg_dir, 0, "bench", durability))
        .await??;
    crate::dev::postgres::ensure_database(&pg.url("postgres"), "orgtrail").await?;
    Ok((pg.url("orgtrail"), Some(pg)))
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Events to deliver.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Ingest calls in flight at once (100 events each).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Events per second offered (calls of 100 leave on a fixed schedule); 0: as fast as the
    /// calls in flight allow. Organization-scale shard counts have low per-shard rates.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// The trail's delivery interval in seconds.
    #[arg(long, default_value_t = 1)]
    pub interval: i32,
    /// gzip level of log files.
    #[arg(long, default_value_t = 6)]
    pub gzip_level: u32,
    /// The shared records (JSON lines, gzipped).
    #[arg(long, default_value = "../shared/data/cloudtrail/records.jsonl.gz")]
    pub records: PathBuf,
    /// Where the benchmark keeps its data (default: a fresh temporary directory under /var/tmp).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Many-shard mode: spread the events over this many member accounts (registered first),
    /// each event's recipientAccountId and awsRegion rewritten, instead of the records' own.
    #[arg(long)]
    pub accounts: Option<usize>,
    /// Regions per account in many-shard mode (1 to 17).
    #[arg(long, default_value_t = 17)]
    pub regions: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Also print Postgres's own profile: the statements that took its time (pg_stat_statements),
    /// per delivered event.
    #[arg(long)]
    pub profile_postgres: bool,
    /// Stage into NATS JetStream instead of Postgres: the path of a `nats-server` binary (2.11 or
    /// later), started with `sync_interval: always`; its CPU and disk are counted with the rest.
    #[arg(long, value_name = "NATS_SERVER")]
    pub jetstream: Option<PathBuf>,
    /// With several workers: how long each worker's CPU is measured once every event is delivered
    /// and none arrives (long enough to attach `perf` to one).
    #[arg(long, default_value_t = 10)]
    pub idle_seconds: u64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU seconds (user + system) of one process and its waited-for children.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let Some(after_name) = stat.rsplit_once(')').map(|(_, rest)| rest) else { return 0.0 };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields after the name start at field 3 (state): utime is field 14, so index 11 here.
    let value = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (value(11) + value(12) + value(13) + value(14)) / clock_ticks()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    fields.get(1)?.parse().ok()
}

/// The process and its direct children (Postgres: postmaster and backends).
fn process_tree(root: u32) -> Vec<u32> {
    let mut pids = vec![root];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                && parent_of(pid) == Some(root)
            {
                pids.push(pid);
            }
        }
    }
    pids
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

struct Part {
    name: &'static str,
    pid: u32,
    tree: bool,
}

impl Part {
    fn cpu(&self) -> f64 {
        if self.tree {
            process_tree(self.pid).into_iter().map(cpu_seconds).sum()
        } else {
            cpu_seconds(self.pid)
        }
    }
    fn peak_rss(&self) -> f64 {
        if self.tree {
            process_tree(self.pid).into_iter().map(peak_rss_mib).fold(0.0, f64::max)
        } else {
            peak_rss_mib(self.pid)
        }
    }
}

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // SAFETY: signalling our own children.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn wait_port(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            anyhow::bail!("{what} did not start on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn load_records(path: &Path) -> anyhow::Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("--records {}", path.display()))?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    let mut records = Vec::new();
    for line in reader.lines() {
        let line = line?;
        if let Ok(view) = RecordView::parse(&line)
            && view.category == Category::Management
        {
            records.push(line);
        }
    }
    anyhow::ensure!(!records.is_empty(), "no management records in {}", path.display());
    Ok(records)
}

/// The record with a fresh eventID (and, in many-shard mode, its account and region), otherwise
/// byte for byte.
fn with_event_id(record: &str, event_id: &str, place: Option<(&str, &str)>) -> anyhow::Result<String> {
    let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(record)?;
    object.insert("eventID".into(), event_id.into());
    if let Some((account, region)) = place {
        object.insert("recipientAccountId".into(), account.into());
        object.insert("awsRegion".into(), region.into());
    }
    Ok(serde_json::to_string(&object)?)
}

/// Postgres' write-ahead position and the database's size on disk.
async fn wal_and_size(pool: &sqlx::PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8, pg_database_size(current_database())",
    )
    .fetch_one(pool)
    .await?)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A NATS server with JetStream under `base/nats`, acking only what is on disk; and its port.
fn start_nats(binary: &Path, base: &Path) -> anyhow::Result<(std::process::Child, u16)> {
    let port = free_port()?;
    let dir = base.join("nats");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("nats.conf");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
            dir.join("js")
        ),
    )?;
    let child = Command::new(binary)
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    wait_port(port, "nats-server")?;
    Ok((child, port))
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
            _ => entry.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

pub async fn pipeline(args: BenchArgs) -> anyhow::Result<()> {
    let base = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("orgtrail-bench-{}", uuid::Uuid::new_v4().simple())),
    };
    std::fs::create_dir_all(&base)?;
    // The embedded Postgres runs as the postgres user when we are root: let it in.
    let _ = std::process::Command::new("chmod").arg("755").arg(&base).status();
    let exe = std::env::current_exe()?;
    let records = load_records(&args.records)?;
    let bytes_per_round: usize = records.iter().map(String::len).sum();
    eprintln!(
        "bench: {} management records from the shared data ({} bytes), {} events to deliver",
        records.len(),
        bytes_per_round,
        args.events
    );

    // Postgres with its durable defaults (fsync on, synchronous_commit on).
    let password = "bench";
    let pg_dir = base.join("postgres");
    let start_pg = move |pg_dir: PathBuf| {
        tokio::task::spawn_blocking(move || {
            EmbeddedPostgres::start(&pg_dir, 0, password, Durability::Durable)
        })
    };
    let mut pg = start_pg(pg_dir.clone()).await??;
    if args.profile_postgres {
        // Loaded at server start only: set, then start again.
        let admin = crate::store::connect(&pg.url("postgres"), 1).await?;
        sqlx::query("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            .execute(&admin)
            .await?;
        admin.close().await;
        drop(pg);
        pg = start_pg(pg_dir).await??;
    }
    crate::dev::postgres::ensure_database(&pg.url("postgres"), "orgtrail").await?;
    let database_url = pg.url("orgtrail");
    let pool = crate::store::connect(&database_url, 4).await?;
    crate::store::migrate(&pool).await?;
    if args.profile_postgres {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await?;
    }
    let postmaster_pid: u32 = std::fs::read_to_string(base.join("postgres/postmaster.pid"))?
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .context("postmaster.pid")?;

    let (s3_port, grpc_port) = (free_port()?, free_port()?);
    let (s3_key, s3_secret) = ("benchkey", "benchsecret");
    std::fs::create_dir_all(base.join("s3/bench-bucket"))?;
    let nats = args.jetstream.as_deref().map(|binary| start_nats(binary, &base)).transpose()?;
    let nats_url = nats.as_ref().map(|(_, port)| format!("nats://127.0.0.1:{port}"));
    let env = |command: &mut Command| {
        if let Some(url) = &nats_url {
            command.env("ORGTRAIL_STAGING", "jetstream").env("ORGTRAIL_NATS_URL", url);
        }
        command
            .env("DATABASE_URL", &database_url)
            .env("ORGTRAIL_S3_ENDPOINT", format!("http://127.0.0.1:{s3_port}"))
            .env("ORGTRAIL_S3_ACCESS_KEY_ID", s3_key)
            .env("ORGTRAIL_S3_SECRET_ACCESS_KEY", s3_secret)
            .env("ORGTRAIL_S3_FORCE_PATH_STYLE", "true")
            .env("ORGTRAIL_GRPC_LISTEN", format!("127.0.0.1:{grpc_port}"))
            .env("ORGTRAIL_GZIP_LEVEL", args.gzip_level.to_string())
            // ORGTRAIL_BENCH_LOG: the servers' log filter (e.g. to time the workers' steps).
            .env("RUST_LOG", std::env::var("ORGTRAIL_BENCH_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
    };
    let mut s3 = Command::new(&exe);
    s3.args(["s3-server", "--dir"]).arg(base.join("s3")).args([
        "--listen",
        &format!("127.0.0.1:{s3_port}"),
        "--access-key-id",
        s3_key,
        "--secret-access-key",
        s3_secret,
    ]);
    env(&mut s3);
    let mut serve = Command::new(&exe);
    serve.arg("serve");
    env(&mut serve);
    let mut children = Children(vec![s3.spawn()?, serve.spawn()?]);
    let mut metrics_ports = Vec::new();
    for _ in 0..args.workers.max(1) {
        let port = free_port()?;
        metrics_ports.push(port);
        let mut worker = Command::new(&exe);
        worker.arg("worker").env("ORGTRAIL_METRICS_LISTEN", format!("127.0.0.1:{port}"));
        env(&mut worker);
        children.0.push(worker.spawn()?);
    }
    let nats_child = nats.map(|(child, _)| Children(vec![child]));
    wait_port(s3_port, "s3-server")?;
    wait_port(grpc_port, "serve")?;

    let mut clients = admin_clients(&pool, None, format!("http://127.0.0.1:{grpc_port}")).await?;
    clients
        .organizations
        .create_organization(pb::CreateOrganizationRequest {
            id: String::new(),
            management_account_id: "123456789012".into(),
            regions: vec![],
        })
        .await?;
    let spread = args.accounts.map(|n| Spread::new(n, args.regions)).transpose()?;
    let accounts: BTreeSet<String> = match &spread {
        Some(spread) => spread.accounts.iter().cloned().collect(),
        None => records
            .iter()
            .filter_map(|r| RecordView::parse(r).ok())
            .map(|v| v.recipient_account_id.to_string())
            .collect(),
    };
    for account_id in &accounts {
        if account_id == "123456789012" {
            continue;
        }
        clients
            .accounts
            .register_account(pb::RegisterAccountRequest {
                account_id: account_id.clone(),
                name: "bench".into(),
                email: String::new(),
            })
            .await?;
    }
    clients
        .trails
        .create_trail(pb::CreateTrailRequest {
            name: "bench-trail".into(),
            s3_bucket_name: "bench-bucket".into(),
            is_organization_trail: true,
            delivery_interval_seconds: Some(args.interval),
            ..Default::default()
        })
        .await?;
    clients.trails.start_logging(pb::StartLoggingRequest { name: "bench-trail".into() }).await?;

    // Prepare every call up front so the client does no JSON work while measuring.
    let mut calls: Vec<Vec<pb::AuditEvent>> = Vec::new();
    let mut payload_bytes = 0usize;
    let mut current = Vec::new();
    for n in 0..args.events {
        let place = spread.as_ref().map(|s| s.place(n));
        let record = with_event_id(&records[n % records.len()], &format!("bench-{n}"), place)?;
        payload_bytes += record.len();
        current.push(pb::AuditEvent {
            id: format!("e{}", current.len()),
            event_data: record,
            event_data_checksum: String::new(),
        });
        if current.len() == 100 {
            calls.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        calls.push(current);
    }
    let all_bytes: Vec<u8> = calls.iter().flat_map(|c| c.iter()).flat_map(|e| e.event_data.bytes()).collect();

    let mut parts = vec![
        Part { name: "postgres", pid: postmaster_pid, tree: true },
        Part { name: "orgtrail serve", pid: children.0[1].id(), tree: false },
    ];
    parts.extend(children.0[2..].iter().map(|w| Part { name: "orgtrail worker", pid: w.id(), tree: false }));
    parts.push(Part { name: "orgtrail s3-server", pid: children.0[0].id(), tree: false });
    if let Some(nats) = &nats_child {
        parts.push(Part { name: "nats-server", pid: nats.0[0].id(), tree: false });
    }
    let (wal_before, size_before) = wal_and_size(&pool).await?;
    if args.profile_postgres {
        sqlx::query("SELECT pg_stat_statements_reset()").execute(&pool).await?;
    }
    let cpu_before: Vec<f64> = parts.iter().map(Part::cpu).collect();
    let started = Instant::now();
    let started_at = Utc::now();
    let acks: Arc<std::sync::Mutex<HashMap<String, DateTime<Utc>>>> = Arc::default();
    let pace = (args.rate > 0).then(|| Duration::from_secs_f64(100.0 / args.rate as f64));
    let start_line = tokio::time::Instant::now();
    let mut stream = futures::stream::iter(calls.into_iter().enumerate().map(|(i, events)| {
        let mut client = clients.ingest.clone();
        let acks = acks.clone();
        async move {
            // Open loop at `--rate`: call i leaves at its own time, however the others fare.
            if let Some(pace) = pace {
                tokio::time::sleep_until(start_line + pace * i as u32).await;
            }
            let response = client
                .put_audit_events(pb::PutAuditEventsRequest {
                    audit_events: events,
                    channel_id: String::new(),
                })
                .await;
            let acked = Utc::now();
            if let Ok(response) = &response
                && let Some(ok) = response.get_ref().successful.first()
                && let Ok(mut acks) = acks.lock()
            {
                acks.insert(ok.event_id.clone(), acked);
            }
            response.map(|r| r.into_inner())
        }
    }))
    .buffer_unordered(args.concurrency.max(1));
    let mut rejected = 0usize;
    while let Some(response) = stream.next().await {
        rejected += response?.failed.len();
    }
    let ingest_seconds = started.elapsed().as_secs_f64();
    let expected = (args.events - rejected) as i64;
    loop {
        let delivered: i64 =
            sqlx::query_scalar("SELECT COALESCE(sum(record_count), 0)::bigint FROM delivered_files")
                .fetch_one(&pool)
                .await?;
        if delivered >= expected {
            break;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            anyhow::bail!("only {delivered} of {expected} events delivered after an hour");
        }
        // A poll sums every file (tens of thousands in the many-shard mode): rarely, so that it does
        // not count in Postgres's figures; the end time below is the last commit's, not a poll's.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // The end is the last file's commit, not the poll that saw it.
    let last_commit: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT max(delivered_at) FROM delivered_files").fetch_one(&pool).await?;
    let total_seconds = last_commit.map_or_else(
        || started.elapsed().as_secs_f64(),
        |last| (last - started_at).num_milliseconds().max(1) as f64 / 1000.0,
    );
    let cpu_after: Vec<f64> = parts.iter().map(Part::cpu).collect();
    let (wal_after, size_after) = wal_and_size(&pool).await?;
    let peaks: Vec<f64> = parts.iter().map(Part::peak_rss).collect();

    // Latency: the first event of every call, from its ack to the commit of the file holding it
    // (the commit follows the PUT, so the object is listed by then).
    let files: Vec<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT object_key, delivered_at FROM delivered_files").fetch_all(&pool).await?;
    let s3 =
        crate::dev::s3_client(&format!("http://127.0.0.1:{s3_port}"), s3_key, s3_secret, "us-east-1").await;
    let acks = acks.lock().map(|a| a.clone()).unwrap_or_default();
    let mut latencies = Vec::new();
    let mut copies: HashMap<String, u32> = HashMap::with_capacity(args.events);
    for (key, delivered_at) in &files {
        let object = s3.get_object().bucket("bench-bucket").key(key).send().await?;
        let body = object.body.collect().await?.into_bytes();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text)?;
        let value: serde_json::Value = serde_json::from_str(&text)?;
        for record in value["Records"].as_array().into_iter().flatten() {
            if let Some(id) = record["eventID"].as_str() {
                *copies.entry(id.to_owned()).or_default() += 1;
            }
            if let Some(acked) = record["eventID"].as_str().and_then(|id| acks.get(id)) {
                latencies.push((*delivered_at - *acked).num_milliseconds() as f64 / 1000.0);
            }
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));

    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method')",
    )
    .fetch_all(&pool)
    .await?;

    // The physical reference: one core compressing the same bytes at the same level.
    let gzip_started = Instant::now();
    let compressed =
        crate::pipeline::batch::build(std::iter::once(std::str::from_utf8(&all_bytes)?), args.gzip_level);
    let gzip_seconds = gzip_started.elapsed().as_secs_f64();

    let events = expected as f64;
    println!(
        "orgtrail bench pipeline ({} events, {} calls in flight{}, interval {} s, gzip {}, {} worker(s), {})",
        expected,
        args.concurrency,
        if args.rate > 0 { format!(" at {} events/s", args.rate) } else { String::new() },
        args.interval,
        args.gzip_level,
        args.workers.max(1),
        match &spread {
            Some(spread) => format!(
                "{} accounts x {} regions = {} shards",
                spread.accounts.len(),
                spread.regions,
                spread.accounts.len() * spread.regions
            ),
            None => format!("the records' own {} accounts", accounts.len()),
        }
    );
    println!("  started                {started_at}");
    println!("  ingest (all acked)     {:.2} s  ({:.0} events/s)", ingest_seconds, events / ingest_seconds);
    println!(
        "  end to end (delivered) {:.2} s  ({:.0} events/s, {:.1} MB/s of records)",
        total_seconds,
        events / total_seconds,
        payload_bytes as f64 / 1e6 / total_seconds
    );
    println!(
        "  log files              {} ({:.1} records each)",
        files.len(),
        events / files.len().max(1) as f64
    );
    println!(
        "  latency ack->listed    p50 {:.2} s, p99 {:.2} s, max {:.2} s ({} probes)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        latencies.len()
    );
    let delivered: u64 = copies.values().map(|&n| u64::from(n)).sum();
    println!(
        "  exactly once           {} distinct events in the files, {} extra copies, {} missing",
        copies.len(),
        delivered - copies.len() as u64,
        (expected as u64).saturating_sub(copies.len() as u64)
    );
    println!("  CPU seconds per 100k events, per process (client excluded):");
    let mut total_cpu = 0.0;
    for (i, part) in parts.iter().enumerate() {
        let used = cpu_after[i] - cpu_before[i];
        total_cpu += used;
        println!(
            "    {:<20} {:>7.2} s   ({:>5.1} µs/event, peak RSS {:.0} MiB)",
            part.name,
            used / events * 100_000.0,
            used / events * 1e6,
            peaks[i]
        );
    }
    println!(
        "    {:<20} {:>7.2} s   ({:>5.1} µs/event)",
        "all server-side",
        total_cpu / events * 100_000.0,
        total_cpu / events * 1e6
    );
    println!(
        "  postgres WAL           {:.0} bytes/event ({:.1} MB written)",
        (wal_after - wal_before) as f64 / events,
        (wal_after - wal_before) as f64 / 1e6
    );
    println!(
        "  postgres on disk       {:+.0} bytes/event once delivered ({:.1} MB -> {:.1} MB; history, dedupe, sealed batches)",
        (size_after - size_before) as f64 / events,
        size_before as f64 / 1e6,
        size_after as f64 / 1e6
    );
    if nats_child.is_some() {
        println!(
            "  jetstream on disk      {:.0} bytes/event once delivered (released events purged)",
            dir_bytes(&base.join("nats")) as f64 / events
        );
    }
    let tables: Vec<(String, i64)> = sqlx::query_as(
        "SELECT coalesce(p.relname, c.relname)::text, sum(pg_total_relation_size(c.oid))::int8
         FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent
         WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
         GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
    )
    .fetch_all(&pool)
    .await?;
    println!(
        "  largest tables         {}",
        tables
            .iter()
            .map(|(name, bytes)| format!("{name} {:.0} B/event", *bytes as f64 / events))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let history: Vec<(String, i64)> = sqlx::query_as(
        "SELECT coalesce(pi.relname, ci.relname)::text, sum(pg_relation_size(ci.oid))::int8
         FROM pg_index x JOIN pg_class ci ON ci.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
         LEFT JOIN pg_inherits i ON i.inhrelid = ci.oid LEFT JOIN pg_class pi ON pi.oid = i.inhparent
         WHERE t.relname LIKE 'event\\_history%' AND t.relkind = 'r'
         GROUP BY 1
         UNION ALL
         SELECT coalesce(p.relname, c.relname)::text || ' rows', sum(pg_table_size(c.oid))::int8
         FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent
         WHERE c.relname LIKE 'event\\_history%' AND c.relkind = 'r'
         GROUP BY 1 ORDER BY 2 DESC",
    )
    .fetch_all(&pool)
    .await?;
    println!(
        "  event history B/event {}",
        history
            .iter()
            .map(|(name, bytes)| format!(
                "{} {:.0}",
                name.trim_start_matches("event_history_"),
                *bytes as f64 / events
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if args.profile_postgres {
        let statements: Vec<(String, i64, i64, f64)> = sqlx::query_as(
            "SELECT regexp_replace(query, '\\s+', ' ', 'g'), calls, rows, total_exec_time
             FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15",
        )
        .fetch_all(&pool)
        .await?;
        println!("  postgres time by statement (execution only; commits and WAL flushes not included):");
        for (query, calls, rows, ms) in statements {
            let query: String = query.chars().take(110).collect();
            println!(
                "    {:>6.1} µs/event  {:>8} calls {:>9} rows  {query}",
                ms * 1000.0 / events,
                calls,
                rows
            );
        }
        // An update that is not HOT writes a new entry into every index of the table.
        let updated: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT relname::text, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
             WHERE n_tup_upd > 0 ORDER BY n_tup_upd DESC LIMIT 8",
        )
        .fetch_all(&pool)
        .await?;
        println!(
            "  row updates (HOT)      {}",
            updated
                .iter()
                .map(|(name, all, hot)| format!(
                    "{name} {all} ({:.0}%)",
                    *hot as f64 * 100.0 / (*all).max(1) as f64
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "  postgres settings      {}",
        settings.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    );
    println!(
        "  gzip-{} reference      {:.1} MB/s on one core ({:.1} µs/event; {} -> {} bytes)",
        args.gzip_level,
        all_bytes.len() as f64 / 1e6 / gzip_seconds,
        gzip_seconds / events * 1e6,
        compressed.uncompressed_len,
        compressed.body.len()
    );
    if args.workers > 1 {
        let workers = children.0[2..]
            .iter_mut()
            .zip(&metrics_ports)
            .map(|(child, &metrics_port)| fleet::FleetWorker { child, metrics_port })
            .collect();
        fleet::report(&pool, workers, Duration::from_secs(args.idle_seconds.max(1))).await?;
    }
    drop(children);
    drop(nats_child);
    pool.close().await;
    drop(pg);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&base);
    }
    Ok(())
}
