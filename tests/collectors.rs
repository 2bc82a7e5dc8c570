//! Pull collectors end to end: a member's trail bucket on moto's S3 (`aws_s3_trail`) and
//! CloudTrail LookupEvents from a test double (`aws_lookup`), with STS AssumeRole on moto, through
//! the worker into the central bucket.

mod common;
#[path = "support/lookup_double.rs"]
mod lookup_double;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use lookup_double::LookupDouble;
use orgtrail::client::Clients;
use orgtrail::integrations::collectors::CollectorConfig;
use orgtrail::proto::v1 as pb;
use serde_json::Value;
use sqlx::PgPool;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/cloudtrail/sources");
const CENTRAL: &str = "central-bucket";
const MEMBER_BUCKET: &str = "member-trails";

/// The invictus-ir files: object names carry this account, records carry [`INVICTUS_RECORDS`].
const INVICTUS_KEY_ACCOUNT: &str = "218007301253";
const INVICTUS_RECORDS: &str = "123837392027";

/// Stratus Red Team files used here: (file, account, region).
const STRATUS: &[(&str, &str, &str)] = &[
    ("aws.credential-access.ec2-get-password-data.json", "457448411975", "apiso-northsouth-3r"),
    ("aws.credential-access.ec2-steal-instance-credentials.json", "017622104382", "us-north-2r"),
    ("aws.credential-access.secretsmanager-retrieve-secrets.json", "903144391865", "cn-centraleast-1r"),
    ("aws.execution.ssm-start-session.json", "294599468799", "me-northwest-3r"),
];

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/orgtrail-collector")
}

fn s3_settings(account: &str, prefix: &str, region: &str) -> pb::CollectorSettings {
    pb::CollectorSettings {
        role_arn: role(account),
        external_id: "orgtrail-test".into(),
        lookup_events: false,
        trail_bucket: MEMBER_BUCKET.into(),
        trail_prefix: prefix.into(),
        regions: vec![region.into()],
    }
}

fn lookup_settings(account: &str, region: &str) -> pb::CollectorSettings {
    pb::CollectorSettings {
        role_arn: role(account),
        external_id: "orgtrail-test".into(),
        lookup_events: true,
        trail_bucket: String::new(),
        trail_prefix: String::new(),
        regions: vec![region.into()],
    }
}

/// An organization, the given accounts registered, and a logging multi-region org trail.
async fn organization(stack: &Stack, accounts: &[&str]) -> Clients {
    let mut admin = stack.api.admin().await;
    admin
        .organizations
        .create_organization(pb::CreateOrganizationRequest {
            id: "o-testorg1234".into(),
            management_account_id: MANAGEMENT.into(),
            regions: vec!["us-east-1".into(), "eu-west-1".into()],
        })
        .await
        .unwrap();
    for account in accounts {
        admin
            .accounts
            .register_account(pb::RegisterAccountRequest {
                account_id: account.to_string(),
                name: format!("member-{account}"),
                email: format!("{account}@example.com"),
            })
            .await
            .unwrap();
    }
    stack.create_bucket(CENTRAL).await;
    let mut trail = org_trail("org");
    trail.is_multi_region_trail = Some(true);
    logging_trail(&mut admin, trail).await;
    admin
}

async fn set_collector(
    admin: &mut Clients,
    account: &str,
    settings: pb::CollectorSettings,
    status: Option<i32>,
) {
    admin
        .accounts
        .update_account(pb::UpdateAccountRequest {
            account_id: account.into(),
            collector: Some(settings),
            status,
            ..Default::default()
        })
        .await
        .unwrap();
}

fn collector_config(sdk_config: aws_config::SdkConfig) -> CollectorConfig {
    let mut config = CollectorConfig::new(sdk_config);
    config.interval = Duration::from_secs(1);
    config
}

/// eventIDs per (account, region) in the central bucket, sorted (repeats stay visible).
async fn delivered(stack: &Stack) -> BTreeMap<(String, String), Vec<String>> {
    let mut found: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for object in stack.objects(CENTRAL).await {
        for record in &object.records {
            let key = (
                record["recipientAccountId"].as_str().unwrap().to_owned(),
                record["awsRegion"].as_str().unwrap().to_owned(),
            );
            found.entry(key).or_default().push(record["eventID"].as_str().unwrap().to_owned());
        }
    }
    for ids in found.values_mut() {
        ids.sort();
    }
    found
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn event_ids(records_json: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(records_json).unwrap();
    let records = value.get("Records").and_then(Value::as_array).or(value.as_array()).unwrap();
    records.iter().map(|r| r["eventID"].as_str().unwrap().to_owned()).collect()
}

/// Waits until every (account, source, region) status shows a success after `since`.
async fn wait_for_passes(pool: &PgPool, source: &str, targets: &[(&str, &str)], since: DateTime<Utc>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut done = 0;
        for (account, region) in targets {
            let last: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
                "SELECT last_success_at FROM collector_status WHERE account_id = $1 AND source = $2 AND region = $3",
            )
            .bind(account)
            .bind(source)
            .bind(region)
            .fetch_optional(pool)
            .await
            .unwrap();
            if last.flatten().is_some_and(|t| t > since) {
                done += 1;
            }
        }
        if done == targets.len() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "collectors did not pass again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn duplicates(pool: &PgPool, accounts: &[&str]) -> i64 {
    let mut total = 0;
    for account in accounts {
        let account = orgtrail::model::AccountId::parse("account_id", account).unwrap();
        total += orgtrail::pipeline::staging::postgres::ingest_counters(pool, &account).await.unwrap().1;
    }
    total
}

#[sqlx::test]
async fn member_trail_bucket_files_reach_the_central_bucket_once_under_their_accounts(pool: PgPool) {
    let moto = Moto::start();
    let sdk_config = moto.sdk_config().await;
    let member_s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk_config).force_path_style(true).build(),
    );
    member_s3.create_bucket().bucket(MEMBER_BUCKET).send().await.unwrap();
    let today = Utc::now().format("%Y/%m/%d").to_string();
    let mut expected: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let put = |key: String, body: Vec<u8>| {
        let member_s3 = member_s3.clone();
        async move {
            member_s3.put_object().bucket(MEMBER_BUCKET).key(key).body(body.into()).send().await.unwrap();
        }
    };

    // The invictus-ir delivery files, byte for byte (gzipped as CloudTrail delivers them), under
    // the account their names carry; their records belong to another account.
    let invictus = std::path::Path::new(DATA).join("invictus-ir_aws_dataset/CloudTrail");
    let mut names: Vec<_> = std::fs::read_dir(&invictus).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for name in &names {
        let name = name.to_str().unwrap();
        let text = std::fs::read_to_string(invictus.join(name)).unwrap();
        expected.entry((INVICTUS_RECORDS.into(), "us-east-1".into())).or_default().extend(event_ids(&text));
        let key = format!("AWSLogs/{INVICTUS_KEY_ACCOUNT}/CloudTrail/us-east-1/{today}/{name}.gz");
        put(key, gzip(text.as_bytes())).await;
    }
    // Stratus Red Team records (one account and region each) as CloudTrail files; the last one
    // under an organization trail's layout.
    for (i, (file, account, region)) in STRATUS.iter().enumerate() {
        let array = std::fs::read_to_string(
            std::path::Path::new(DATA).join("stratus-red-team_detonation-logs").join(file),
        )
        .unwrap();
        let text = format!("{{\"Records\":{array}}}");
        expected.entry((account.to_string(), region.to_string())).or_default().extend(event_ids(&text));
        let stamp = Utc::now().format("%Y%m%dT%H%MZ");
        let root = if i == STRATUS.len() - 1 { "org/AWSLogs/o-testorg1234" } else { "AWSLogs" };
        let key = format!(
            "{root}/{account}/CloudTrail/{region}/{today}/{account}_CloudTrail_{region}_{stamp}_Ab{i}cdefghijklmn.json.gz"
        );
        put(key, gzip(text.as_bytes())).await;
    }
    // Garbage beside them: two gzip members, and not gzip at all. Skipped, nothing else stops.
    let (_, account, region) = STRATUS[0];
    let mut two_members = gzip(b"{\"Records\":[]}");
    two_members.extend(gzip(b"{\"Records\":[]}"));
    put(format!("AWSLogs/{account}/CloudTrail/{region}/{today}/{account}_CloudTrail_{region}_20000101T0000Z_0000000000000000.json.gz"), two_members).await;
    put(format!("AWSLogs/{account}/CloudTrail/{region}/{today}/{account}_CloudTrail_{region}_20000101T0000Z_0000000000000001.json.gz"), b"plain".to_vec()).await;
    let expected: BTreeMap<_, _> = expected.into_iter().map(|(k, v)| (k, sorted(v))).collect();
    let total: usize = expected.values().map(Vec::len).sum();

    let mut stack =
        stack_with_settings(pool.clone(), |s| s.collectors = Some(collector_config(sdk_config.clone())))
            .await;
    let mut accounts = vec![INVICTUS_KEY_ACCOUNT, INVICTUS_RECORDS];
    accounts.extend(STRATUS.iter().map(|(_, account, _)| *account));
    let mut admin = organization(&stack, &accounts).await;
    set_collector(&mut admin, INVICTUS_KEY_ACCOUNT, s3_settings(INVICTUS_KEY_ACCOUNT, "", "us-east-1"), None)
        .await;
    for (i, (_, account, region)) in STRATUS.iter().enumerate() {
        let prefix = if i == STRATUS.len() - 1 { "org/AWSLogs/o-testorg1234" } else { "" };
        set_collector(&mut admin, account, s3_settings(account, prefix, region), None).await;
    }

    stack.wait_for_records(CENTRAL, total).await;
    assert_eq!(delivered(&stack).await, expected, "every record once, under its own account and region");

    // A restart reads on from the cursors: nothing is pulled again, nothing delivered twice.
    let mut targets = vec![(INVICTUS_KEY_ACCOUNT, "us-east-1")];
    targets.extend(STRATUS.iter().map(|(_, account, region)| (*account, *region)));
    let restarted = Utc::now();
    stack.restart_worker().await;
    wait_for_passes(&pool, "aws_s3_trail", &targets, restarted).await;
    wait_for_passes(&pool, "aws_s3_trail", &targets, Utc::now()).await;
    assert_eq!(duplicates(&pool, &accounts).await, 0, "no file was read twice");
    assert_eq!(delivered(&stack).await, expected);

    let described = admin
        .accounts
        .describe_account(pb::DescribeAccountRequest { account_id: INVICTUS_KEY_ACCOUNT.into() })
        .await
        .unwrap()
        .into_inner();
    let status = &described.collector_status;
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!((status[0].source.as_str(), status[0].last_error.as_str()), ("aws_s3_trail", ""));
    assert_eq!(
        status[0].events_collected,
        expected[&(INVICTUS_RECORDS.to_owned(), "us-east-1".to_owned())].len() as i64
    );
}

/// Shared real records of `account` re-dated into the last minutes (newest first, 10 s apart,
/// the newest 30 s ago), so that they fall into LookupEvents windows.
fn recent_records(file: &std::path::Path, count: usize) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    let records = value.get("Records").and_then(Value::as_array).or(value.as_array()).unwrap().clone();
    let now = Utc::now();
    records
        .into_iter()
        .take(count)
        .enumerate()
        .map(|(i, mut record)| {
            let time = now - chrono::Duration::seconds(30 + 10 * i as i64);
            record["eventTime"] = Value::String(time.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            record.to_string()
        })
        .collect()
}

/// ≤ `limit` requests in every one-second window of `times` (sorted); returns the most seen.
fn most_in_one_second(times: &[std::time::Instant]) -> usize {
    (0..times.len())
        .map(|i| {
            times[i..].iter().take_while(|t| t.duration_since(times[i]) < Duration::from_secs(1)).count()
        })
        .max()
        .unwrap_or(0)
}

#[sqlx::test]
async fn lookup_events_are_pulled_at_most_twice_a_second_once_each_and_resume_from_the_cursor(pool: PgPool) {
    let moto = Moto::start();
    let sdk_config = moto.sdk_config().await;
    let double = LookupDouble::start(sdk_config.clone()).await;

    // Flowing: invictus records (more than three pages) and a Stratus account. Denied: another.
    let invictus = std::path::Path::new(DATA).join("invictus-ir_aws_dataset/CloudTrail");
    let mut files: Vec<_> = std::fs::read_dir(&invictus).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut flowing_records = Vec::new();
    for file in files.iter().take(3) {
        flowing_records.extend(recent_records(file, usize::MAX));
    }
    flowing_records.truncate(180);
    let stratus = std::path::Path::new(DATA).join("stratus-red-team_detonation-logs");
    let (second_file, second, second_region) = STRATUS[0];
    let second_records = recent_records(&stratus.join(second_file), usize::MAX);
    let (_, denied, denied_region) = STRATUS[1];
    let (suspended_file, suspended, suspended_region) = STRATUS[2];
    double.add_records(INVICTUS_RECORDS, "us-east-1", &flowing_records);
    double.add_records(second, second_region, &second_records);
    double.add_records(
        suspended,
        suspended_region,
        &recent_records(&stratus.join(suspended_file), usize::MAX),
    );
    double.deny(denied);
    let mut expected: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    expected.insert(
        (INVICTUS_RECORDS.into(), "us-east-1".into()),
        sorted(flowing_records.iter().flat_map(|r| event_ids(&format!("[{r}]"))).collect()),
    );
    expected.insert(
        (second.into(), second_region.into()),
        sorted(second_records.iter().flat_map(|r| event_ids(&format!("[{r}]"))).collect()),
    );
    let total: usize = expected.values().map(Vec::len).sum();

    let mut config = collector_config(sdk_config.clone());
    config.backfill_days = 1;
    config.cloudtrail_endpoint = Some(double.endpoint.clone());
    // The worker's metrics, served the way `orgtrail worker` serves them with `metrics_listen`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_address = listener.local_addr().unwrap();
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = tokio::spawn(orgtrail::metrics::serve(config.metrics.clone(), listener, async {
        let _ = metrics_stopped.await;
    }));
    let mut stack = stack_with_settings(pool.clone(), |s| s.collectors = Some(config)).await;
    let mut admin = organization(&stack, &[INVICTUS_RECORDS, second, denied, suspended]).await;
    set_collector(
        &mut admin,
        suspended,
        lookup_settings(suspended, suspended_region),
        Some(pb::AccountStatus::Suspended as i32),
    )
    .await;
    set_collector(&mut admin, INVICTUS_RECORDS, lookup_settings(INVICTUS_RECORDS, "us-east-1"), None).await;
    set_collector(&mut admin, second, lookup_settings(second, second_region), None).await;
    set_collector(&mut admin, denied, lookup_settings(denied, denied_region), None).await;

    stack.wait_for_records(CENTRAL, total).await;
    assert_eq!(delivered(&stack).await, expected, "every event once, across pages and window overlaps");

    // The denied account shows its error; the others kept flowing meanwhile.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let described = admin
            .accounts
            .describe_account(pb::DescribeAccountRequest { account_id: denied.into() })
            .await
            .unwrap()
            .into_inner();
        if let Some(status) = described.collector_status.iter().find(|s| s.source == "aws_lookup") {
            assert_eq!(status.region, denied_region);
            if status.last_error.contains("AccessDenied") {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "the denied account shows no error: {described:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Metrics: events of the flowing accounts, AccessDenied errors of the denied one, per target.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(metrics_address, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        let samples = samples(&body);
        let wanted = [
            ("orgtrail_collector_events_total", INVICTUS_RECORDS, "us-east-1", None),
            ("orgtrail_collector_events_total", second, second_region, None),
            ("orgtrail_collector_last_success_timestamp_seconds", INVICTUS_RECORDS, "us-east-1", None),
            ("orgtrail_collector_errors_total", denied, denied_region, Some("AccessDenied")),
        ];
        let all_positive = wanted.iter().all(|(name, account, region, error)| {
            let mut labels = BTreeMap::from([
                ("account".to_owned(), account.to_string()),
                ("source".to_owned(), "aws_lookup".to_owned()),
                ("region".to_owned(), region.to_string()),
            ]);
            if let Some(error) = error {
                labels.insert("error".to_owned(), error.to_string());
            }
            samples.get(&(name.to_string(), labels)).is_some_and(|value| *value > 0.0)
        });
        let events = |account: &str| {
            samples
                .iter()
                .filter(|((name, labels), _)| {
                    name == "orgtrail_collector_events_total" && labels["account"] == account
                })
                .map(|(_, value)| *value)
                .sum::<f64>()
        };
        // The counter of a pass moves just after its events are staged, so wait for all of them.
        let flowing_events = expected[&(INVICTUS_RECORDS.to_owned(), "us-east-1".to_owned())].len() as f64;
        if all_positive && events(INVICTUS_RECORDS) == flowing_events {
            assert_eq!(events(denied), 0.0, "the denied account accepted nothing: {body}");
            assert!(
                !samples.keys().any(|(name, labels)| name == "orgtrail_collector_errors_total"
                    && labels["error"] == "AccessDenied"
                    && labels["account"] != denied),
                "only the denied account was denied: {body}"
            );
            // Pipeline series share the endpoint and carry no account label.
            let of_suspended =
                |labels: &BTreeMap<String, String>| labels.get("account").is_some_and(|a| a == suspended);
            assert!(!samples.keys().any(|(_, labels)| of_suspended(labels)), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "metrics incomplete:\n{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(http_get(metrics_address, "/").await.0, 404);
    assert_eq!(http_get(metrics_address, "/metrics/x").await.0, 404);

    // Wait for the backfill to finish, so that after the restart only live windows remain.
    let target = (INVICTUS_RECORDS, "aws_lookup", "us-east-1");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let cursor: Value = sqlx::query_scalar(
            "SELECT cursor FROM collector_cursors WHERE account_id = $1 AND source = $2 AND region = $3",
        )
        .bind(target.0)
        .bind(target.1)
        .bind(target.2)
        .fetch_one(&pool)
        .await
        .unwrap();
        if cursor["backfill"].is_null() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "backfill not done: {cursor}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.restart_worker().await;
    let seen_before = double.log().len();
    let cursor: Value = sqlx::query_scalar(
        "SELECT cursor FROM collector_cursors WHERE account_id = $1 AND source = $2 AND region = $3",
    )
    .bind(target.0)
    .bind(target.1)
    .bind(target.2)
    .fetch_one(&pool)
    .await
    .unwrap();
    let live_from: DateTime<Utc> = serde_json::from_value(cursor["live_from"].clone()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let first_after = loop {
        if let Some(request) =
            double.log()[seen_before..].iter().find(|r| r.account == INVICTUS_RECORDS).cloned()
        {
            break request;
        }
        assert!(std::time::Instant::now() < deadline, "no request after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(first_after.token, None);
    assert_eq!(
        first_after.start as i64,
        live_from.timestamp() - 300,
        "resumed at the cursor minus the overlap"
    );
    let newest = flowing_records
        .iter()
        .map(|r| serde_json::from_str::<Value>(r).unwrap()["eventTime"].as_str().unwrap().to_owned())
        .max()
        .unwrap();
    // The newest event seen, or the first run's start when the backfill had the newer events.
    assert!(live_from.format("%Y-%m-%dT%H:%M:%SZ").to_string() >= newest, "{live_from} is before {newest}");
    wait_for_passes(
        &pool,
        "aws_lookup",
        &[(INVICTUS_RECORDS, "us-east-1"), (second, second_region)],
        Utc::now(),
    )
    .await;
    assert_eq!(delivered(&stack).await, expected, "nothing delivered twice after the restart");
    assert!(
        duplicates(&pool, &[INVICTUS_RECORDS]).await > 0,
        "the windows did overlap (repeats were dropped)"
    );

    // Measured from the double's log: pages were followed, the rate held, suspended untouched.
    let log = double.log();
    let mut times: HashMap<(String, String), Vec<std::time::Instant>> = HashMap::new();
    for request in &log {
        times.entry((request.account.clone(), request.region.clone())).or_default().push(request.at);
    }
    let mut report = Vec::new();
    for ((account, region), times) in &mut times {
        times.sort();
        let most = most_in_one_second(times);
        let min_gap = times.windows(2).map(|w| w[1] - w[0]).min().unwrap_or_default();
        report.push(format!(
            "{account}/{region}: {} requests, at most {most} in one second, min gap {min_gap:?}",
            times.len()
        ));
        assert!(
            most <= lookup_double::LIMIT_PER_SECOND,
            "{account}/{region}: {most} requests within one second"
        );
    }
    println!("measured LookupEvents rate:\n  {}", report.join("\n  "));
    assert!(log.iter().all(|r| r.outcome != "throttled"), "never throttled");
    assert!(log.iter().any(|r| r.account == INVICTUS_RECORDS && r.token.is_some()), "pages were followed");
    assert!(!log.iter().any(|r| r.account == suspended), "a SUSPENDED account is not collected");

    let _ = stop_metrics.send(());
    metrics_server.await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(metrics_address).await.is_err(), "metrics stopped");
}

/// Samples of a Prometheus text exposition: (name, labels) → value.
fn samples(text: &str) -> HashMap<(String, BTreeMap<String, String>), f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let labels = labels
                .trim_end_matches('}')
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap();
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            ((name.to_owned(), labels), value.parse().unwrap())
        })
        .collect()
}
