//! `orgtrail bench lookup`: fills the event history with N synthetic management events spread over
//! the retention window (SQL generate_series, a day per statement, the records then moved into
//! blocks as the history tap writes them, secondary indexes built after the load), then sends LookupEvents through the gRPC API at a target rate — a mix of
//! attributes, time ranges, account and region filters and follow-up pages — and prints latency
//! percentiles and the rate achieved.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use rand::Rng;
use rand::seq::IndexedRandom;
use sqlx::PgPool;

use crate::dev::postgres::Durability;
use crate::proto::v1 as pb;

#[derive(Debug, Clone, clap::Args)]
pub struct LookupBenchArgs {
    /// Events in the index (filled up to this many when it holds fewer).
    #[arg(long, default_value_t = 10_000_000)]
    pub events: i64,
    /// Days the events span, ending now (the retention window).
    #[arg(long, default_value_t = 90)]
    pub days: i64,
    /// Lookups sent per second (open loop).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds of lookups.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Lookups in flight at most.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Use this database instead of a throwaway cluster (its data is left in place).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where the throwaway cluster lives (default: a fresh directory under the temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the throwaway cluster's directory (and print where it is) instead of removing it.
    #[arg(long)]
    pub keep: bool,
}

const REGIONS: &[&str] = &[
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-northeast-1",
    "us-east-2",
    "eu-west-2",
    "ap-south-1",
    "sa-east-1",
    "ca-central-1",
    "eu-north-1",
];

const SERVICES: &[(&str, &[&str])] = &[
    ("ec2.amazonaws.com", &["Instances", "Volumes", "SecurityGroups", "Snapshots", "Vpcs", "Subnets"]),
    ("s3.amazonaws.com", &["Bucket", "BucketPolicy", "BucketAcl", "BucketEncryption"]),
    ("iam.amazonaws.com", &["User", "Role", "Policy", "AccessKey", "RolePolicy", "Group"]),
    ("sts.amazonaws.com", &["CallerIdentity", "SessionToken"]),
    ("lambda.amazonaws.com", &["Function", "FunctionConfiguration", "Alias", "EventSourceMapping"]),
    ("kms.amazonaws.com", &["Key", "Alias", "KeyPolicy", "Grant"]),
    ("cloudtrail.amazonaws.com", &["Trail", "TrailStatus", "EventSelectors"]),
    ("dynamodb.amazonaws.com", &["Table", "Backup", "GlobalTable"]),
    ("rds.amazonaws.com", &["DBInstance", "DBCluster", "DBSnapshot"]),
    ("logs.amazonaws.com", &["LogGroup", "LogStream", "SubscriptionFilter"]),
    ("sns.amazonaws.com", &["Topic", "Subscription"]),
    ("sqs.amazonaws.com", &["Queue", "QueueAttributes"]),
    ("cloudformation.amazonaws.com", &["Stack", "StackSet", "ChangeSet"]),
    ("ecs.amazonaws.com", &["Cluster", "Service", "TaskDefinition"]),
    ("secretsmanager.amazonaws.com", &["Secret", "SecretValue"]),
    ("config.amazonaws.com", &["ConfigRule", "ConfigurationRecorder"]),
];

const VERBS: &[&str] = &["Describe", "Get", "List", "Create", "Delete", "Put", "Update", "Modify"];

const RESOURCE_TYPES: &[&str] = &[
    "AWS::EC2::Instance",
    "AWS::S3::Bucket",
    "AWS::IAM::Role",
    "AWS::IAM::User",
    "AWS::Lambda::Function",
    "AWS::KMS::Key",
    "AWS::DynamoDB::Table",
    "AWS::RDS::DBInstance",
    "AWS::SQS::Queue",
    "AWS::SNS::Topic",
    "AWS::EC2::SecurityGroup",
    "AWS::EC2::Volume",
];

/// Event names with their sources, most frequent first (the fill draws them skewed).
fn catalogue() -> (Vec<String>, Vec<String>, Vec<bool>) {
    let (mut names, mut sources, mut read_only) = (Vec::new(), Vec::new(), Vec::new());
    for verb in VERBS {
        for (source, nouns) in SERVICES {
            for noun in *nouns {
                names.push(format!("{verb}{noun}"));
                sources.push((*source).to_owned());
                read_only.push(matches!(*verb, "Describe" | "Get" | "List"));
            }
        }
    }
    (names, sources, read_only)
}

/// One day's events, with their resource postings, in one statement. Skewed draws (`random()^k`)
/// give a few busy accounts, regions, APIs and users and a long tail, as real organizations have.
const FILL_DAY: &str = r#"
WITH gen AS MATERIALIZED (
    SELECT
        date_trunc('second', $1::timestamptz + random() * interval '1 day') AS event_time,
        (100000000000 + floor(200 * power(random(), 2)))::bigint::text AS account_id,
        ($3::text[])[1 + floor(array_length($3::text[], 1) * power(random(), 2))::int] AS region,
        1 + floor(array_length($4::text[], 1) * power(random(), 3))::int AS name_index,
        'user-' || floor(5000 * power(random(), 2))::int AS username,
        random() < 0.8 AS with_key,
        CASE WHEN random() < 0.4
             THEN 1 + floor(array_length($7::text[], 1) * power(random(), 2))::int END AS resource_type,
        floor(100000 * power(random(), 3))::int AS resource_number,
        gen_random_uuid()::text AS event_id
    FROM generate_series(1, $2::int)
), rows AS MATERIALIZED (
    SELECT g.*, ($4::text[])[name_index] AS event_name, ($5::text[])[name_index] AS event_source,
           ($6::bool[])[name_index] AS read_only,
           CASE WHEN with_key THEN 'AKIA' || upper(substr(md5(username || account_id), 1, 16)) END AS access_key_id,
           ($7::text[])[resource_type] AS rtype,
           CASE WHEN resource_type IS NOT NULL
                THEN 'arn:aws:' || split_part(lower(($7::text[])[resource_type]), '::', 2) || ':' || region || ':'
                     || account_id || ':resource/r-' || resource_number END AS rname
    FROM gen g
), inserted AS (
    INSERT INTO event_history (event_time, account_id, region, insight, event_id, event_name, event_source,
                               read_only, username, access_key_id, record)
    SELECT event_time, account_id, region, false, event_id, event_name, event_source, read_only, username,
           access_key_id,
           json_build_object(
               'eventVersion', '1.09',
               'userIdentity', json_build_object('type', 'IAMUser', 'principalId', 'AIDA' || md5(username),
                   'arn', 'arn:aws:iam::' || account_id || ':user/' || username, 'accountId', account_id,
                   'accessKeyId', coalesce(access_key_id, ''), 'userName', username),
               'eventTime', to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
               'eventSource', event_source, 'eventName', event_name, 'awsRegion', region,
               'sourceIPAddress', '198.51.100.' || (resource_number % 250),
               'userAgent', 'aws-cli/2.17.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.11',
               'requestParameters', json_build_object('maxResults', 100, 'filterSet', json_build_object()),
               'responseElements', NULL,
               'requestID', gen_random_uuid(), 'eventID', event_id, 'readOnly', read_only,
               'resources', CASE WHEN rtype IS NULL THEN NULL
                   ELSE json_build_array(json_build_object('accountId', account_id, 'type', rtype, 'ARN', rname)) END,
               'eventType', 'AwsApiCall', 'managementEvent', true, 'recipientAccountId', account_id,
               'eventCategory', 'Management',
               'tlsDetails', json_build_object('tlsVersion', 'TLSv1.3', 'cipherSuite', 'TLS_AES_128_GCM_SHA256',
                   'clientProvidedHostHeader', split_part(event_source, '.', 1) || '.' || region || '.amazonaws.com')
           )::text
    FROM rows
    RETURNING id, event_time, account_id, region, event_id
)
INSERT INTO event_history_resources (event_time, id, account_id, region, kind, value)
SELECT i.event_time, i.id, i.account_id, i.region, p.kind, p.value
FROM inserted i JOIN rows r ON r.event_id = i.event_id
CROSS JOIN LATERAL (VALUES ('T'::"char", r.rtype), ('N'::"char", r.rname)) AS p(kind, value)
WHERE r.rtype IS NOT NULL
"#;

/// The secondary indexes of the two tables (not those behind constraints), as SQL.
async fn secondary_indexes(pool: &PgPool) -> anyhow::Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT i.relname::text, pg_get_indexdef(i.oid) FROM pg_index x
         JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
         WHERE t.relname IN ('event_history', 'event_history_resources')
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)",
    )
    .fetch_all(pool)
    .await?)
}

async fn fill(pool: &PgPool, target: i64, days: i64) -> anyhow::Result<()> {
    let have = crate::features::history::index::count(pool).await?;
    if have >= target {
        eprintln!("bench: the index holds {have} events already");
        return Ok(());
    }
    let missing = target - have;
    let today = Utc::now().date_naive();
    let day_list: Vec<chrono::NaiveDate> = (0..days).map(|d| today - chrono::Duration::days(d)).collect();
    crate::features::history::index::create_partitions(pool, day_list.clone()).await?;
    // Building an index once over loaded rows is far cheaper than keeping it up row by row.
    let indexes = secondary_indexes(pool).await?;
    for (name, _) in &indexes {
        sqlx::query(&format!("DROP INDEX {name}")).execute(pool).await?;
    }
    let (names, sources, read_only) = catalogue();
    let regions: Vec<String> = REGIONS.iter().map(|r| (*r).to_owned()).collect();
    let types: Vec<String> = RESOURCE_TYPES.iter().map(|t| (*t).to_owned()).collect();
    let started = Instant::now();
    let per_day = missing / days;
    let mut filled = 0;
    // Two days at a time: one per core.
    let mut work = futures::stream::iter(day_list.iter().enumerate().map(|(i, day)| {
        let count = if i as i64 == days - 1 { missing - per_day * (days - 1) } else { per_day };
        let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        let (names, sources, read_only, regions, types) =
            (names.clone(), sources.clone(), read_only.clone(), regions.clone(), types.clone());
        async move {
            sqlx::query(FILL_DAY)
                .bind(start)
                .bind(count as i32)
                .bind(&regions)
                .bind(&names)
                .bind(&sources)
                .bind(&read_only)
                .bind(&types)
                .execute(pool)
                .await
                .map(|_| count)
        }
    }))
    .buffer_unordered(2);
    use futures::StreamExt;
    while let Some(done) = work.next().await {
        filled += done.context("filling a day")?;
        eprint!("\rbench: filled {filled} of {missing} events ({:.0} s)", started.elapsed().as_secs_f64());
    }
    eprintln!();
    // The history tap writes records in blocks; the SQL above wrote them in line.
    let packing = Instant::now();
    let mut last = 0i64;
    let mut packed = 0usize;
    loop {
        let rows: Vec<(i64, chrono::DateTime<Utc>, String, String)> = sqlx::query_as(
            "SELECT id, event_time, account_id, record FROM event_history
             WHERE id > $1 AND record IS NOT NULL ORDER BY id LIMIT 16384",
        )
        .bind(last)
        .fetch_all(pool)
        .await?;
        let Some(end) = rows.last().map(|r| r.0) else { break };
        last = end;
        let mut conn = pool.acquire().await?;
        crate::features::history::index::move_into_blocks(&mut conn, &rows).await?;
        packed += rows.len();
        eprint!("\rbench: {packed} records moved into blocks ({:.0} s)", packing.elapsed().as_secs_f64());
    }
    eprintln!();
    // The moves left the in-line versions behind as dead rows: gone, the sizes and the scans are
    // those of rows the tap wrote.
    sqlx::query("VACUUM FULL event_history").execute(pool).await?;
    let indexing = Instant::now();
    let mut conn = pool.acquire().await?;
    sqlx::query("SET maintenance_work_mem = '1GB'").execute(&mut *conn).await?;
    sqlx::query("SET max_parallel_maintenance_workers = 2").execute(&mut *conn).await?;
    for (name, definition) in &indexes {
        // The parent's definition reads `ON ONLY`; built without it, it covers every partition.
        let definition = definition.replacen(" ON ONLY ", " ON ", 1);
        sqlx::query(&definition).execute(&mut *conn).await.with_context(|| format!("rebuilding {name}"))?;
        eprintln!("bench: index {name} built ({:.0} s)", indexing.elapsed().as_secs_f64());
    }
    sqlx::query("ANALYZE event_history").execute(&mut *conn).await?;
    sqlx::query("ANALYZE event_history_resources").execute(&mut *conn).await?;
    eprintln!(
        "bench: fill {:.0} s, indexes and statistics {:.0} s",
        indexing.duration_since(started).as_secs_f64(),
        indexing.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Values that occur in the data, drawn in proportion to how often they occur.
struct Samples {
    event_ids: Vec<String>,
    names: Vec<String>,
    sources: Vec<String>,
    usernames: Vec<String>,
    access_keys: Vec<String>,
    accounts: Vec<String>,
    regions: Vec<String>,
    resource_types: Vec<String>,
    resource_names: Vec<String>,
}

/// event_id, event_name, event_source, username, access_key_id, account_id, region.
type SampleRow = (String, String, String, Option<String>, Option<String>, String, String);

async fn samples(pool: &PgPool) -> anyhow::Result<Samples> {
    let rows: Vec<SampleRow> = sqlx::query_as(
        "SELECT event_id, event_name, event_source, username, access_key_id, account_id, region
         FROM event_history TABLESAMPLE SYSTEM (1) WHERE NOT insight LIMIT 5000",
    )
    .fetch_all(pool)
    .await?;
    let resources: Vec<(String, String)> = sqlx::query_as(
        "SELECT kind::text, value FROM event_history_resources TABLESAMPLE SYSTEM (1) LIMIT 5000",
    )
    .fetch_all(pool)
    .await?;
    anyhow::ensure!(!rows.is_empty() && !resources.is_empty(), "the index holds too few events to sample");
    Ok(Samples {
        event_ids: rows.iter().map(|r| r.0.clone()).collect(),
        names: rows.iter().map(|r| r.1.clone()).collect(),
        sources: rows.iter().map(|r| r.2.clone()).collect(),
        usernames: rows.iter().filter_map(|r| r.3.clone()).collect(),
        access_keys: rows.iter().filter_map(|r| r.4.clone()).collect(),
        accounts: rows.iter().map(|r| r.5.clone()).collect(),
        regions: rows.iter().map(|r| r.6.clone()).collect(),
        resource_types: resources.iter().filter(|r| r.0 == "T").map(|r| r.1.clone()).collect(),
        resource_names: resources.iter().filter(|r| r.0 == "N").map(|r| r.1.clone()).collect(),
    })
}

/// A random lookup of the mix: (label, request, pages to follow).
fn draw(samples: &Samples, rng: &mut impl Rng) -> (&'static str, pb::LookupEventsRequest, usize) {
    let pick =
        |list: &Vec<String>, rng: &mut dyn rand::RngCore| list.choose(rng).cloned().unwrap_or_default();
    let roll = rng.random_range(0..100);
    let (label, key, value) = match roll {
        0..20 => ("none", "", String::new()),
        20..32 => ("EventName", "EventName", pick(&samples.names, rng)),
        32..40 => ("EventSource", "EventSource", pick(&samples.sources, rng)),
        40..52 => ("Username", "Username", pick(&samples.usernames, rng)),
        52..60 => ("AccessKeyId", "AccessKeyId", pick(&samples.access_keys, rng)),
        60..68 => ("ResourceType", "ResourceType", pick(&samples.resource_types, rng)),
        68..78 => ("ResourceName", "ResourceName", pick(&samples.resource_names, rng)),
        78..85 => ("ReadOnly", "ReadOnly", if rng.random_bool(0.5) { "true" } else { "false" }.to_owned()),
        _ => ("EventId", "EventId", pick(&samples.event_ids, rng)),
    };
    let mut request = pb::LookupEventsRequest::default();
    if !key.is_empty() {
        request.lookup_attributes =
            vec![pb::LookupAttribute { attribute_key: key.into(), attribute_value: value }];
    }
    if rng.random_bool(0.3) {
        // A window of an hour to a week, somewhere in the last 90 days.
        let hours = rng.random_range(1..=168);
        let end = Utc::now() - chrono::Duration::hours(rng.random_range(0..(90 * 24 - hours)));
        request.start_time = Some((end - chrono::Duration::hours(hours)).into());
        request.end_time = Some(end.into());
    }
    if rng.random_bool(0.2) {
        request.account_id = pick(&samples.accounts, rng);
    }
    if rng.random_bool(0.1) {
        request.region = pick(&samples.regions, rng);
    }
    let pages = if rng.random_bool(0.2) { rng.random_range(2..=3) } else { 1 };
    (label, request, pages)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

pub async fn lookup(args: LookupBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.days >= 1 && args.events >= args.days, "--events must be at least --days");
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let base = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("orgtrail-bench-lookup-{}", uuid::Uuid::new_v4().simple()))
    });
    // Lookups only read: a throwaway cluster (fsync off) only speeds the fill up.
    let (database_url, cluster) =
        super::bench_database(args.database_url.as_deref(), &base, Durability::Throwaway).await?;
    let outcome = run(&args, &database_url).await;
    if let Some(mut pg) = cluster {
        pg.stop();
        if args.keep {
            eprintln!("bench: cluster kept in {}", base.display());
        } else {
            let _ = std::fs::remove_dir_all(&base);
        }
    }
    outcome
}

async fn run(args: &LookupBenchArgs, database_url: &str) -> anyhow::Result<()> {
    use sqlx::ConnectOptions;
    // The fill's statements are slow on purpose: no warnings about them.
    let options: sqlx::postgres::PgConnectOptions = database_url.parse()?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections((args.concurrency as u32).clamp(4, 64))
        .connect_with(options.disable_statement_logging())
        .await?;
    crate::store::migrate(&pool).await?;
    fill(&pool, args.events, args.days).await?;
    let size: i64 = sqlx::query_scalar(
        "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname IN ('event_history', 'event_history_resources')",
    )
    .fetch_one(&pool)
    .await?;
    let events = crate::features::history::index::count(&pool).await?;
    eprintln!("bench: {events} events indexed, {:.2} GiB on disk", size as f64 / (1u64 << 30) as f64);

    let listener = crate::control::api::bind("127.0.0.1:0".parse()?).await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    // The server's pool as `serve` has it by default (database_max_connections).
    let server_pool =
        crate::store::connect(database_url, crate::node::config::Config::default().database_max_connections)
            .await?;
    let ctx = crate::control::api::Ctx {
        pool: server_pool.clone(),
        default_region: crate::model::Region::us_east_1(),
        master_key: None,
        staging: Arc::new(crate::pipeline::staging::PgStaging::new(server_pool)),
        aws: None,
        aggregator_principal_arn: None,
    };
    let (stop, stopped) = crate::node::Stop::new();
    let servers: Vec<_> = crate::node::control_plane(ctx, listener, None, None, &stopped)
        .into_iter()
        .map(|(_, part)| tokio::spawn(part))
        .collect();
    let clients = super::admin_clients(&pool, None, endpoint).await?;
    let samples = Arc::new(samples(&pool).await?);

    let total = (args.rate * args.seconds as f64).round() as usize;
    eprintln!("bench: {total} lookups at {} per second, at most {} in flight", args.rate, args.concurrency);
    let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    let mut rng = rand::rng();
    for _ in 0..total {
        ticker.tick().await;
        let permit = permits.clone().acquire_owned().await?;
        let (label, request, pages) = draw(&samples, &mut rng);
        let mut client = clients.events.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            // Each page is one request; follow-up pages use the token, as a client paging would.
            let mut timings = Vec::new();
            let mut request = request;
            for _ in 0..pages {
                let sent = Instant::now();
                let answer = client.lookup_events(request.clone()).await;
                let elapsed = sent.elapsed().as_secs_f64() * 1000.0;
                match answer {
                    Ok(page) => {
                        let page = page.into_inner();
                        timings.push((label, elapsed, true, page.events.len()));
                        if page.next_token.is_empty() {
                            break;
                        }
                        request.next_token = page.next_token;
                    }
                    Err(status) => {
                        eprintln!("bench: lookup failed: {status}");
                        timings.push((label, elapsed, false, 0));
                        break;
                    }
                }
            }
            timings
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.extend(task.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    for server in servers {
        let _ = server.await;
    }

    let mut all: Vec<f64> = results.iter().filter(|r| r.2).map(|r| r.1).collect();
    all.sort_by(f64::total_cmp);
    let errors = results.iter().filter(|r| !r.2).count();
    let returned: usize = results.iter().map(|r| r.3).sum();
    println!(
        "lookup benchmark: {events} events indexed over {} days, {:.2} GiB",
        args.days,
        size as f64 / (1u64 << 30) as f64
    );
    println!(
        "requests: {} in {elapsed:.1} s = {:.1} req/s (target {}), {errors} errors, {returned} events returned",
        results.len(),
        results.len() as f64 / elapsed,
        args.rate
    );
    println!(
        "latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        percentile(&all, 0.5),
        percentile(&all, 0.9),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(f64::NAN)
    );
    let mut by_label: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (label, ms, ok, _) in &results {
        if *ok {
            by_label.entry(label).or_default().push(*ms);
        }
    }
    for (label, mut times) in by_label {
        times.sort_by(f64::total_cmp);
        println!(
            "  {label:<13} n={:<6} p50 {:>6.1}  p99 {:>7.1}",
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    Ok(())
}
