//! `orgtrail trails athena-ddl` (spec §7), checked from outside: the shared real records go
//! through the real pipeline into an organization trail, the delivered objects are copied to a
//! directory laid out as the bucket, and DuckDB reads them through the printed DDL alone (its
//! LOCATION, partition projection, template and column types; tests/support/athena_check.py).
//! Each partition must hold exactly the records delivered under its folder, and per (account,
//! region) exactly the management events we pushed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use chrono::Utc;
use common::*;
use orgtrail::proto::v1 as pb;
use orgtrail::store::tokens::Role;
use serde_json::Value;
use sqlx::PgPool;

const RECORDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/cloudtrail/records.jsonl.gz");
const BUCKET: &str = "central-bucket";
const ORGANIZATION: &str = "o-athenatest01";
/// Real regions of the shared records (the others are anonymized names).
const REGIONS: [&str; 3] = ["us-east-1", "us-east-2", "us-west-2"];

/// (account, region, folder date yyyy/MM/dd)
type Partition = (String, String, String);

fn text(record: &Value, field: &str) -> String {
    record[field].as_str().unwrap_or_default().to_owned()
}

/// The spec's category rule (§1.2): eventCategory, else Insight / Data / Management.
fn category(record: &Value) -> &str {
    if let Some(category) = record["eventCategory"].as_str() {
        return category;
    }
    if record["eventType"] == "AwsCloudTrailInsight" {
        "Insight"
    } else if record["managementEvent"] == false {
        "Data"
    } else {
        "Management"
    }
}

/// Shared records of real regions and well-formed accounts.
fn shared_records() -> Vec<String> {
    let file = std::fs::File::open(RECORDS).expect("shared/data is beside the checkout");
    std::io::BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(Result::unwrap)
        .filter(|line| {
            let Ok(record) = serde_json::from_str::<Value>(line) else { return false };
            let account = text(&record, "recipientAccountId");
            REGIONS.contains(&text(&record, "awsRegion").as_str())
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
        })
        .collect()
}

/// Copies every object of the bucket to `root`, keys as paths.
async fn download_bucket(s3: &aws_sdk_s3::Client, root: &Path) -> usize {
    let mut count = 0;
    let mut token = None;
    loop {
        let page = s3.list_objects_v2().bucket(BUCKET).set_continuation_token(token).send().await.unwrap();
        for item in page.contents() {
            let key = item.key().unwrap();
            let body = s3.get_object().bucket(BUCKET).key(key).send().await.unwrap();
            let path = root.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, body.body.collect().await.unwrap().into_bytes()).unwrap();
            count += 1;
        }
        if page.is_truncated() != Some(true) {
            return count;
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
}

/// The partition a delivered key sits in, read off the key.
fn partition_of(key: &str) -> Partition {
    let parts: Vec<&str> = key.split('/').collect();
    let at = parts.iter().position(|p| *p == "CloudTrail").unwrap_or_else(|| panic!("{key}"));
    (parts[at - 1].to_owned(), parts[at + 1].to_owned(), parts[at + 2..at + 5].join("/"))
}

struct Cli {
    endpoint: String,
    token: String,
}

impl Cli {
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_orgtrail"))
            .args(["--endpoint", &self.endpoint, "--token", &self.token])
            .args(args)
            .output()
            .await
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

fn athena_check(ddl: &Path, bucket_dir: &Path) -> Value {
    let python = std::env::var("ORGTRAIL_TEST_PYTHON")
        .expect("ORGTRAIL_TEST_PYTHON names a python with duckdb (run scripts/test)");
    let script: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/athena_check.py");
    let output =
        std::process::Command::new(python).arg(script).arg(ddl).arg(BUCKET).arg(bucket_dir).output().unwrap();
    assert!(output.status.success(), "athena_check failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn duckdb_reads_every_delivered_record_through_the_org_trail_ddl(pool: PgPool) {
    let stack = stack(pool).await;
    stack.create_bucket(BUCKET).await;
    let mut admin = stack.api.admin().await;
    admin
        .organizations
        .create_organization(pb::CreateOrganizationRequest {
            id: ORGANIZATION.into(),
            management_account_id: MANAGEMENT.into(),
            regions: REGIONS.iter().map(|r| r.to_string()).collect(),
        })
        .await
        .unwrap();
    let lines = shared_records();
    let accounts: BTreeSet<String> =
        lines.iter().map(|l| text(&serde_json::from_str(l).unwrap(), "recipientAccountId")).collect();
    for account in accounts.iter().filter(|a| a.as_str() != MANAGEMENT) {
        let request = pb::RegisterAccountRequest {
            account_id: account.clone(),
            name: format!("shared-{account}"),
            email: String::new(),
        };
        admin.accounts.register_account(request).await.unwrap();
    }
    let mut request = org_trail("Central.Org-Trail");
    request.s3_key_prefix = "logs/central".into();
    logging_trail(&mut admin, request).await;

    let first_day = Utc::now().date_naive();
    // Management events accepted (first copies), per (account, region).
    let mut pushed: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut pushed_identity_arns = 0;
    for chunk in lines.chunks(100) {
        let response = put(&mut admin, chunk).await;
        for entry in response.successful.iter().filter(|e| !e.duplicate) {
            let index: usize = entry.id.trim_start_matches('e').parse().unwrap();
            let record: Value = serde_json::from_str(&chunk[index]).unwrap();
            if category(&record) == "Management" {
                let key = (text(&record, "recipientAccountId"), text(&record, "awsRegion"));
                pushed.entry(key).or_default().insert(text(&record, "eventID"));
                pushed_identity_arns += usize::from(record["userIdentity"]["arn"].is_string());
            }
        }
    }
    let expected_total: usize = pushed.values().map(BTreeSet::len).sum();
    assert!(
        pushed.len() >= 5 && expected_total > 1500,
        "{} partitions, {expected_total} events",
        pushed.len()
    );
    let objects = stack.wait_for_records(BUCKET, expected_total).await;
    let last_day = Utc::now().date_naive();
    let mut delivered: BTreeMap<Partition, usize> = BTreeMap::new();
    for object in &objects {
        *delivered.entry(partition_of(&object.key)).or_default() += object.records.len();
    }

    let dir = tempfile::tempdir().unwrap();
    let bucket_dir = dir.path().join("bucket");
    let copied = download_bucket(&stack.s3_client, &bucket_dir).await;
    assert_eq!(copied, objects.len());

    let cli = Cli { endpoint: stack.api.endpoint(), token: stack.api.token(Role::Admin, None).await };
    let (ok, ddl, stderr) =
        cli.run(&["trails", "athena-ddl", "Central.Org-Trail", "--database", "audit"]).await;
    assert!(ok, "{stderr}");
    assert!(ddl.starts_with("CREATE EXTERNAL TABLE audit.cloudtrail_central_org_trail ("), "{ddl}");
    assert!(ddl.contains(&format!("LOCATION 's3://{BUCKET}/logs/central/AWSLogs/{ORGANIZATION}/'")), "{ddl}");
    let ddl_path = dir.path().join("table.sql");
    std::fs::write(&ddl_path, &ddl).unwrap();

    let report = athena_check(&ddl_path, &bucket_dir);
    assert_eq!(report["partition_keys"], serde_json::json!(["account", "region", "timestamp"]));
    assert_eq!(report["unreachable_files"], serde_json::json!([]), "files the projection does not reach");
    let mut read: BTreeMap<Partition, usize> = BTreeMap::new();
    let mut per_account_region: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut identity_arns = 0;
    for partition in report["partitions"].as_array().unwrap() {
        let values = &partition["values"];
        let key = (text(values, "account"), text(values, "region"), text(values, "timestamp"));
        let rows = partition["rows"].as_u64().unwrap() as usize;
        assert_eq!(partition["distinct_event_ids"].as_u64(), Some(rows as u64), "{key:?}: duplicate rows");
        for check in ["other_account", "other_region", "after_folder_date", "odd_readonly"] {
            assert_eq!(partition[check], 0, "{key:?}: {check}");
        }
        identity_arns += partition["identity_arns"].as_u64().unwrap() as usize;
        let day = chrono::NaiveDate::parse_from_str(&key.2, "%Y/%m/%d").unwrap();
        assert!(first_day <= day && day <= last_day, "{key:?}: folder date is the delivery date");
        *per_account_region.entry((key.0.clone(), key.1.clone())).or_default() += rows;
        read.insert(key, rows);
    }
    assert_eq!(read, delivered, "rows per partition through the DDL = records delivered under its folder");
    let expected: BTreeMap<(String, String), usize> =
        pushed.iter().map(|(k, v)| (k.clone(), v.len())).collect();
    assert_eq!(per_account_region, expected, "rows per (account, region) = management events pushed");
    assert_eq!(identity_arns, pushed_identity_arns, "useridentity.arn read through the STRUCT type");
    for column in ["eventversion", "useridentity", "eventtime", "eventsource", "eventname", "eventid"] {
        assert_eq!(report["non_null"][column].as_u64(), Some(expected_total as u64), "column {column}");
    }
    for column in ["readonly", "errorcode", "requestparameters", "resources", "managementevent", "tlsdetails"]
    {
        assert!(report["non_null"][column].as_u64().unwrap() > 0, "column {column} never read");
    }
    let accounts: BTreeSet<&String> = read.keys().map(|k| &k.0).collect();
    let regions: BTreeSet<&String> = read.keys().map(|k| &k.1).collect();
    println!(
        "athena: {} partitions ({} accounts, {} regions), {} rows, {} files through the DDL",
        read.len(),
        accounts.len(),
        regions.len(),
        read.values().sum::<usize>(),
        copied
    );

    let (ok, stdout, stderr) = cli.run(&["trails", "athena-ddl", "no-such-trail"]).await;
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    let (ok, _, stderr) =
        cli.run(&["trails", "athena-ddl", "Central.Org-Trail", "--table-name", "Bad-Name"]).await;
    assert!(!ok && stderr.contains("table_name"), "{stderr}");
}

#[sqlx::test(migrations = "./migrations")]
async fn account_trail_ddl_sits_under_its_owner_without_an_account_partition(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    let mut request = account_trail("member-trail", MEMBER_A);
    request.is_multi_region_trail = Some(true);
    admin.trails.create_trail(request).await.unwrap();
    let cli = Cli { endpoint: api.endpoint(), token: api.token(Role::Admin, None).await };
    let (ok, ddl, stderr) = cli.run(&["trails", "athena-ddl", "member-trail"]).await;
    assert!(ok, "{stderr}");
    assert!(ddl.contains("LOCATION 's3://member-bucket/AWSLogs/222222222222/CloudTrail/'"), "{ddl}");
    assert!(ddl.contains("PARTITIONED BY (\n    region STRING,\n    `timestamp` STRING\n)"), "{ddl}");
    assert!(ddl.contains("'projection.region.values' = 'eu-west-1,us-east-1'"), "{ddl}");
    assert!(ddl.contains(
        "'storage.location.template' = 's3://member-bucket/AWSLogs/222222222222/CloudTrail/${region}/${timestamp}'"
    ));
}
