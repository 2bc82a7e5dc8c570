//! CloudTrail Insights: golden series (our detector against an independent Python oracle), and
//! one burst through the whole pipeline (ingest → insights tap → detector → router → S3 under
//! CloudTrail-Insight → digests → `orgtrail validate`).

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use common::*;
use orgtrail::cli::validate::GrpcKeys;
use orgtrail::features::insights::detect::{self, Params, Transition};
use orgtrail::features::insights::detector::DetectorSettings;
use orgtrail::features::integrity::validate::{
    self, Accounts, Entry, Outcome, Request, S3Source, TrailLocation,
};
use orgtrail::model::record::RecordView;
use orgtrail::proto::v1 as pb;
use serde_json::{Value, json};
use sqlx::PgPool;

// --- golden series ------------------------------------------------------------------------------

const MINUTES_PER_DAY: usize = 1440;

/// A deterministic generator (64-bit LCG), so the series are the same on every run.
struct Noise(u64);

impl Noise {
    fn next(&mut self, below: i64) -> i64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below as u64) as i64
    }
}

/// Eight and a half days of per-minute counts: a daily rhythm plus noise.
fn quiet_series(seed: u64, level: i64, spread: i64) -> Vec<i64> {
    let mut noise = Noise(seed);
    (0..MINUTES_PER_DAY * 17 / 2)
        .map(|minute| {
            let daytime = (8 * 60..18 * 60).contains(&(minute % MINUTES_PER_DAY));
            (if daytime { level } else { level / 2 }) + noise.next(spread)
        })
        .collect()
}

/// Overwrites `series` from `start` with `burst`.
fn with_burst(mut series: Vec<i64>, start: usize, burst: &[i64]) -> Vec<i64> {
    series[start..start + burst.len()].copy_from_slice(burst);
    series
}

/// The oracle's transitions for every series, run through python3.
fn oracle(params: &Params, series: &BTreeMap<&str, Vec<i64>>) -> BTreeMap<String, Vec<Value>> {
    let request = json!({
        "params": {
            "baseline_minutes": params.baseline_minutes,
            "sigma_factor": params.sigma_factor,
            "mean_factor": params.mean_factor,
            "min_count": params.min_count,
            "end_after_minutes": params.end_after_minutes,
        },
        "series": series,
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/insights_oracle.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), request.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the oracle failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Our transitions in the oracle's shape.
fn ours(params: &Params, series: &[i64]) -> Vec<Value> {
    detect::detect(params, series)
        .into_iter()
        .map(|transition| match transition {
            Transition::Start { minute, baseline_average, insight_average } => json!({
                "state": "Start", "minute": minute, "baseline_average": baseline_average,
                "insight_average": insight_average,
            }),
            Transition::End { start, duration, baseline_average, insight_average } => json!({
                "state": "End", "start": start, "duration": duration, "baseline_average": baseline_average,
                "insight_average": insight_average,
            }),
        })
        .collect()
}

fn starts(transitions: &[Value]) -> Vec<i64> {
    transitions.iter().filter(|t| t["state"] == "Start").map(|t| t["minute"].as_i64().unwrap()).collect()
}

/// A DynamoDB PutItem data event (write) at `time`.
fn put_item(account: &str, time: DateTime<Utc>, id: &str) -> String {
    json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "AssumedRole", "arn": format!("arn:aws:sts::{account}:assumed-role/App/loader"), "accountId": account},
        "eventTime": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": "dynamodb.amazonaws.com",
        "eventName": "PutItem",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "192.0.2.44",
        "userAgent": "aws-sdk-java/2.25.0",
        "requestParameters": {"tableName": "orders"},
        "responseElements": null,
        "eventID": id,
        "readOnly": false,
        "resources": [{"accountId": account, "type": "AWS::DynamoDB::Table", "ARN": format!("arn:aws:dynamodb:us-east-1:{account}:table/orders")}],
        "eventType": "AwsApiCall",
        "managementEvent": false,
        "recipientAccountId": account,
        "eventCategory": "Data"
    })
    .to_string()
}

#[test]
fn golden_series_match_the_independent_oracle() {
    // CloudTrail's 7-day baseline; the first week only forms it.
    let params = Params::default();
    assert_eq!(params.baseline_minutes as usize, 7 * MINUTES_PER_DAY);
    let week = 7 * MINUTES_PER_DAY;
    // The data-event series counts what the insights tap counts for DynamoDB PutItem: a write data
    // event is a call ApiCallRateInsight analyses.
    let record = put_item(MEMBER_A, Utc::now(), "golden-put-item");
    let counted =
        orgtrail::features::insights::count::classify(&RecordView::parse(&record).unwrap()).unwrap();
    assert_eq!((counted.category, counted.call, counted.error), ("Data", true, false));

    let mut series: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    series.insert("ec2 RunInstances calls, no burst", quiet_series(1, 6, 5));
    series.insert(
        "ec2 RunInstances calls, two bursts and a lull inside one",
        with_burst(
            with_burst(quiet_series(2, 6, 5), week + 600, &[40, 55, 38]),
            week + 2000,
            &[70, 3, 65, 2, 2, 2, 2],
        ),
    );
    series.insert(
        "dynamodb PutItem calls (data), a write surge",
        with_burst(quiet_series(3, 40, 20), week + 900, &[400; 12]),
    );
    series.insert("s3 PutBucketPolicy errors, no burst", quiet_series(4, 0, 2));
    series.insert(
        "iam AttachRolePolicy errors (AccessDenied), a burst",
        with_burst(quiet_series(5, 0, 2), week + 1200, &[25, 30, 28, 0, 26]),
    );
    let expected = oracle(&params, &series);

    for (name, counts) in &series {
        assert!(counts.len() >= week + MINUTES_PER_DAY, "{name}: at least 8 days");
        assert_eq!(ours(&params, counts), expected[*name], "{name}");
    }
    // The oracle finds exactly the bursts put in, so agreeing with it means something.
    let starts_of = |name: &str| starts(&expected[name]);
    assert_eq!(starts_of("ec2 RunInstances calls, no burst"), Vec::<i64>::new());
    assert_eq!(starts_of("s3 PutBucketPolicy errors, no burst"), Vec::<i64>::new());
    let week = week as i64;
    assert_eq!(
        starts_of("ec2 RunInstances calls, two bursts and a lull inside one"),
        vec![week + 600, week + 2000]
    );
    assert_eq!(starts_of("dynamodb PutItem calls (data), a write surge"), vec![week + 900]);
    assert_eq!(starts_of("iam AttachRolePolicy errors (AccessDenied), a burst"), vec![week + 1200]);
    let surge = &expected["dynamodb PutItem calls (data), a write surge"];
    assert_eq!(
        (surge[1]["duration"].as_i64(), surge[1]["insight_average"].as_f64()),
        (Some(12), Some(400.0))
    );
    // The lull (3) inside the second burst is part of it: one insight of three minutes.
    let lull = &expected["ec2 RunInstances calls, two bursts and a lull inside one"][3];
    assert_eq!((lull["duration"].as_i64(), lull["insight_average"].as_f64()), (Some(3), Some(138.0 / 3.0)));
}

// --- through the pipeline -----------------------------------------------------------------------

/// The decompressed records of every object under `folder` in a bucket, by key.
async fn objects_under(s3: &aws_sdk_s3::Client, bucket: &str, folder: &str) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let Ok(page) = s3.list_objects_v2().bucket(bucket).send().await else { return found };
    for item in page.contents() {
        let key = item.key().unwrap_or_default();
        if !key.contains(folder) {
            continue;
        }
        let body = s3.get_object().bucket(bucket).key(key).send().await.unwrap();
        let bytes = body.body.collect().await.unwrap().into_bytes();
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut text).unwrap();
        found.insert(key.to_owned(), text);
    }
    found
}

fn records_of(objects: &BTreeMap<String, Vec<u8>>) -> Vec<(String, Value)> {
    let mut records = Vec::new();
    for (key, text) in objects {
        let file: Value = serde_json::from_slice(text).unwrap();
        for record in file["Records"].as_array().unwrap() {
            records.push((key.clone(), record.clone()));
        }
    }
    records
}

async fn insight_trail(
    admin: &mut orgtrail::client::Clients,
    name: &str,
    bucket: &str,
    selectors: Vec<pb::InsightSelector>,
) -> pb::Trail {
    let mut request = account_trail(name, MEMBER_A);
    request.s3_bucket_name = bucket.into();
    request.log_file_validation_enabled = true;
    let trail = logging_trail(admin, request).await;
    if !selectors.is_empty() {
        admin
            .trails
            .put_insight_selectors(pb::PutInsightSelectorsRequest {
                trail_name: trail.trail_arn.clone(),
                insight_selectors: selectors,
            })
            .await
            .unwrap();
    }
    trail
}

#[sqlx::test(migrations = "./migrations")]
async fn a_dynamodb_write_surge_is_delivered_as_start_and_end_insights(pool: PgPool) {
    let insights = stack_insights_settings();
    let mut stack = stack_with_settings(pool.clone(), |settings| {
        settings.digest_period = Duration::from_secs(3);
        settings.insights = insights;
    })
    .await;
    // A second worker: shards and pairs are shared, every insight still comes once.
    let (stop_second, mut second_stopped) = tokio::sync::watch::channel(false);
    let mut second_settings = test_worker_settings();
    second_settings.master_key = Some(stack.api.master_key.clone());
    second_settings.digest_period = Duration::from_secs(3);
    second_settings.insights = stack_insights_settings();
    let second = worker_with(pool.clone(), &stack.s3_client, second_settings);
    let second = tokio::spawn(second.run(async move {
        let _ = second_stopped.wait_for(|s| *s).await;
    }));
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    for bucket in ["data-insights", "management-insights", "no-insights"] {
        stack.create_bucket(bucket).await;
    }
    let selector = |insight_type: &str, categories: &[&str]| pb::InsightSelector {
        insight_type: insight_type.into(),
        event_categories: categories.iter().map(|c| c.to_string()).collect(),
    };
    let data_trail = insight_trail(
        &mut admin,
        "data-insights",
        "data-insights",
        vec![selector("ApiCallRateInsight", &["Data"]), selector("ApiErrorRateInsight", &["Data"])],
    )
    .await;
    insight_trail(
        &mut admin,
        "management-insights",
        "management-insights",
        vec![selector("ApiCallRateInsight", &[]), selector("ApiErrorRateInsight", &[])],
    )
    .await;
    insight_trail(&mut admin, "no-insights", "no-insights", vec![]).await;

    // A baseline: one write a minute over the three minutes before now.
    let now = Utc::now();
    let baseline: Vec<String> = (1..=3)
        .map(|back| put_item(MEMBER_A, now - TimeDelta::minutes(back), &format!("baseline-{back}")))
        .collect();
    assert!(put(&mut admin, &baseline).await.failed.is_empty());
    // A real CloudTrail Insights record, pushed: it takes the same path as the detector's.
    let pushed = shared_insight_record(MEMBER_A);
    assert!(put(&mut admin, std::slice::from_ref(&pushed)).await.failed.is_empty());
    // The detector takes the pair on once it was counted; judging starts with the next minute.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let through: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
            "SELECT evaluated_through FROM insight_scopes WHERE account_id = $1 AND region = 'us-east-1'",
        )
        .bind(MEMBER_A)
        .fetch_optional(&pool)
        .await
        .unwrap();
        if through.flatten().is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the detector never took the pair on");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The surge: 30 writes in the current minute (well before its end, so all arrive in time).
    if Utc::now().timestamp() % 60 > 50 {
        tokio::time::sleep(Duration::from_secs(11)).await;
    }
    let surge_at = Utc::now();
    let surge_minute = surge_at.duration_trunc(TimeDelta::minutes(1)).unwrap();
    // Half of them fail: a call-rate and an error-rate insight.
    let surge: Vec<String> = (0..30)
        .map(|i| {
            let record = put_item(MEMBER_A, surge_at, &format!("surge-{i}"));
            if i % 2 == 0 {
                return record;
            }
            let mut failed: Value = serde_json::from_str(&record).unwrap();
            failed["errorCode"] = "ConditionalCheckFailedException".into();
            failed["errorMessage"] = "The conditional request failed".into();
            failed.to_string()
        })
        .collect();
    assert!(put(&mut admin, &surge).await.failed.is_empty());

    // Start after the surge minute; a worker restart between Start and End neither repeats the
    // Start nor loses the End.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM insights").fetch_one(&pool).await.unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "no insight started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.restart_worker().await;

    // End after the quiet minute that follows the surge.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let objects = loop {
        let objects = objects_under(&stack.s3_client, "data-insights", "/CloudTrail-Insight/").await;
        if records_of(&objects).len() >= 4 {
            break objects;
        }
        assert!(std::time::Instant::now() < deadline, "no Start and End insight: {:?}", objects.keys());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let all = records_of(&objects);
    assert_eq!(all.len(), 4, "a Start and an End per type, once each: {all:?}");
    for (key, record) in &all {
        assert!(key.starts_with(&format!("AWSLogs/{MEMBER_A}/CloudTrail-Insight/us-east-1/")), "{key}");
        check_object(key, &gzip(&objects[key]));
        assert_eq!(record["eventCategory"], "Insight");
        assert_eq!(record["eventType"], "AwsCloudTrailInsight");
        assert_eq!(record["recipientAccountId"], MEMBER_A);
        assert_eq!(record["insightDetails"]["eventSource"], "dynamodb.amazonaws.com");
        assert_eq!(record["insightDetails"]["eventName"], "PutItem");
        RecordView::parse(&record.to_string()).unwrap();
    }
    let of_type = |insight_type: &str| -> Vec<(String, Value)> {
        all.iter().filter(|(_, r)| r["insightDetails"]["insightType"] == insight_type).cloned().collect()
    };
    let records = of_type("ApiCallRateInsight");
    let start = &records.iter().find(|(_, r)| r["insightDetails"]["state"] == "Start").unwrap().1;
    let end = &records.iter().find(|(_, r)| r["insightDetails"]["state"] == "End").unwrap().1;
    assert_eq!(start["sharedEventID"], end["sharedEventID"]);
    assert_ne!(start["eventID"], end["eventID"]);
    let minute_text = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(start["eventTime"], minute_text(surge_minute));
    assert_eq!(end["eventTime"], minute_text(surge_minute + TimeDelta::minutes(1)));
    // The baseline: the three minutes before the surge minute, from the writes put before it.
    let in_baseline = (1..=3)
        .filter(|back| {
            let minute = (now - TimeDelta::minutes(*back)).duration_trunc(TimeDelta::minutes(1)).unwrap();
            minute >= surge_minute - TimeDelta::minutes(3)
        })
        .count() as f64;
    let statistics = |r: &Value| r["insightDetails"]["insightContext"]["statistics"].clone();
    assert_eq!(statistics(start)["baseline"]["average"].as_f64(), Some(in_baseline / 3.0));
    assert_eq!(statistics(start)["insight"]["average"].as_f64(), Some(30.0));
    assert_eq!(statistics(end)["insight"]["average"].as_f64(), Some(30.0));
    assert_eq!(statistics(end)["insightDuration"], 1);
    assert_eq!(statistics(end)["baselineDuration"], 3);
    let attributions = &end["insightDetails"]["insightContext"]["attributions"];
    let attribution = |name: &str| {
        attributions.as_array().unwrap().iter().find(|a| a["attribute"] == name).unwrap()["insight"].clone()
    };
    assert_eq!(attribution("userAgent"), json!([{"value": "aws-sdk-java/2.25.0", "average": 30.0}]));
    assert_eq!(
        attribution("errorCode"),
        json!([{"value": "ConditionalCheckFailedException", "average": 15.0}, {"value": "null", "average": 15.0}])
    );
    assert!(start["insightDetails"].get("errorCode").is_none());

    // The error-rate insight: the 15 failures against a baseline without errors.
    let errors = of_type("ApiErrorRateInsight");
    assert_eq!(errors.len(), 2, "{errors:?}");
    for (_, record) in &errors {
        let details = &record["insightDetails"];
        assert_eq!(details["errorCode"], "ConditionalCheckFailedException");
        assert_eq!(details["insightContext"]["statistics"]["baseline"]["average"].as_f64(), Some(0.0));
        assert_eq!(details["insightContext"]["statistics"]["insight"]["average"].as_f64(), Some(15.0));
        let codes = details["insightContext"]["attributions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["attribute"] == "errorCode")
            .unwrap()
            .clone();
        assert_eq!(codes["insight"], json!([{"value": "ConditionalCheckFailedException", "average": 15.0}]));
        assert_eq!(codes["baseline"], json!([]));
    }
    assert_eq!(errors[0].1["sharedEventID"], errors[1].1["sharedEventID"]);
    assert_ne!(errors[0].1["sharedEventID"], start["sharedEventID"]);
    assert_eq!(
        attribution("userIdentityArn"),
        json!([{"value": format!("arn:aws:sts::{MEMBER_A}:assumed-role/App/loader"), "average": 30.0}])
    );

    // In the event history: lookup with the Insight category finds exactly these four, and a lookup
    // without it none of them.
    let ids: std::collections::BTreeSet<String> =
        all.iter().map(|(_, r)| r["eventID"].as_str().unwrap().to_owned()).collect();
    let lookup = |category: &str| pb::LookupEventsRequest {
        event_category: category.into(),
        account_id: MEMBER_A.into(),
        lookup_attributes: vec![pb::LookupAttribute {
            attribute_key: "EventSource".into(),
            attribute_value: "dynamodb.amazonaws.com".into(),
        }],
        ..Default::default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found: std::collections::BTreeSet<String> = admin
            .events
            .lookup_events(lookup("insight"))
            .await
            .unwrap()
            .into_inner()
            .events
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        if found == ids {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "lookup found {found:?}, not {ids:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let plain = admin.events.lookup_events(lookup("")).await.unwrap().into_inner().events;
    assert!(plain.iter().all(|e| !ids.contains(&e.event_id)), "Insights only with their category");

    // Measured: the end of the anomalous minute → the Start record staged.
    let shared = uuid::Uuid::parse_str(start["sharedEventID"].as_str().unwrap()).unwrap();
    let (_, start_staged, _, end_staged) =
        orgtrail::features::insights::store::staging_times(&pool, shared).await.unwrap().unwrap();
    let surge_end = surge_minute + TimeDelta::minutes(1);
    println!(
        "detection delay: Start staged {} ms after the anomalous minute ended; End staged {} ms after the quiet minute ended",
        (start_staged - surge_end).num_milliseconds(),
        (end_staged.unwrap() - (surge_end + TimeDelta::minutes(1))).num_milliseconds()
    );

    // Covered by the trail's digests and accepted by `orgtrail validate`.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let digests = objects_under(&stack.s3_client, "data-insights", "/CloudTrail-Digest/").await;
        let listed: Vec<String> = digests
            .values()
            .flat_map(|text| {
                let digest: Value = serde_json::from_slice(text).unwrap();
                digest["logFiles"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["s3Object"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        if objects.keys().all(|key| listed.contains(key)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "insight files not in a digest: {listed:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let request = Request {
        trail: TrailLocation {
            trail_arn: data_trail.trail_arn.clone(),
            trail_name: "data-insights".into(),
            home_region: orgtrail::model::Region::parse("home_region", "us-east-1").unwrap(),
            bucket: "data-insights".into(),
            prefix: String::new(),
            organization_id: None,
        },
        start: now - TimeDelta::minutes(10),
        end: Utc::now(),
        accounts: Accounts::Given(vec![MEMBER_A.into()]),
        regions: Some(vec!["us-east-1".into()]),
    };
    let report =
        validate::validate(&S3Source::new(stack.s3_client.clone()), &GrpcKeys(admin.keys.clone()), &request)
            .await
            .unwrap();
    for key in objects.keys() {
        let valid =
            report.chains.iter().flat_map(|c| &c.entries).any(
                |entry| matches!(entry, Entry::LogFile { key: k, outcome: Outcome::Valid, .. } if k == key),
            );
        assert!(valid, "{key} not validated: {report:?}");
    }
    assert!(report.valid, "{report:?}");

    // The management-insights trail gets only the pushed (management) insight; the trail without
    // insight selectors gets none; no trail gets an Insights record as a log file.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let management =
        records_of(&objects_under(&stack.s3_client, "management-insights", "/CloudTrail-Insight/").await);
    assert_eq!(management.len(), 1, "{management:?}");
    assert_eq!(management[0].1, serde_json::from_str::<Value>(&pushed).unwrap());
    assert!(objects_under(&stack.s3_client, "no-insights", "/CloudTrail-Insight/").await.is_empty());
    let _ = stop_second.send(true);
    second.await.unwrap().unwrap();
    for bucket in ["data-insights", "management-insights", "no-insights"] {
        let logs = records_of(&objects_under(&stack.s3_client, bucket, "/CloudTrail/").await);
        assert!(logs.iter().all(|(_, r)| r["eventCategory"] != "Insight"), "{bucket}: {logs:?}");
    }
}

/// A 3-minute baseline, an end after one quiet minute, judged 2 s after each minute.
fn stack_insights_settings() -> DetectorSettings {
    DetectorSettings {
        params: Params {
            baseline_minutes: 3,
            sigma_factor: 3.0,
            mean_factor: 2.0,
            min_count: 10,
            end_after_minutes: 1,
        },
        settle: Duration::from_secs(2),
        max_wait: Duration::from_secs(60),
        tick: Duration::from_millis(200),
    }
}

/// The Start record of the shared real Insights records, as `account`'s.
fn shared_insight_record(account: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/cloudtrail/records.jsonl.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut text).unwrap();
    let line = text
        .lines()
        .find(|line| {
            line.contains("\"eventName\":\"UpdateInstanceInformation\"")
                && line.contains("\"state\":\"Start\"")
        })
        .expect("the shared records hold CloudTrail's Insights example");
    let mut record: Value = serde_json::from_str(line).unwrap();
    record["recipientAccountId"] = account.into();
    record.to_string()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, bytes).unwrap();
    encoder.finish().unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn counts_older_than_the_baseline_window_are_deleted_in_bulk(pool: PgPool) {
    let now = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    let mut tallies = orgtrail::features::insights::count::Tallies::new();
    for (back, id) in [(10_200, "old"), (10_000, "kept")] {
        let record = put_item(MEMBER_A, now - TimeDelta::minutes(back), id);
        orgtrail::features::insights::count::add(&mut tallies, &RecordView::parse(&record).unwrap(), &record);
    }
    let mut conn = pool.acquire().await.unwrap();
    orgtrail::features::insights::store::add_tallies(&mut conn, &tallies).await.unwrap();
    // Counted twice (two transactions): the counts add up.
    orgtrail::features::insights::store::add_tallies(&mut conn, &tallies).await.unwrap();
    let minutes = |table: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(DISTINCT minute) FROM {table}"))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let calls: Vec<i64> = sqlx::query_scalar("SELECT calls FROM insight_counts ORDER BY minute")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(calls, vec![2, 2]);
    let first: DateTime<Utc> =
        sqlx::query_scalar("SELECT first_minute FROM insight_scopes").fetch_one(&pool).await.unwrap();
    assert_eq!(first, now - TimeDelta::minutes(10_200));

    // The default window: 7 days and an hour.
    let cutoff = now - TimeDelta::minutes(10_080 + 60);
    let deleted =
        orgtrail::features::insights::store::expire(&pool, cutoff, now - TimeDelta::days(90)).await.unwrap();
    assert_eq!(deleted, 1 + 3, "one count row and its three attribution rows");
    assert_eq!((minutes("insight_counts").await, minutes("insight_attributions").await), (1, 1));
}
