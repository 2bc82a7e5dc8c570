//! Usage and cost visibility: shared CloudTrail records (plus copies of the shared data event in
//! the member accounts) go through the pipeline to two trails; GetTrailUsage must report exactly
//! what was delivered (events per category from the pushed records, bytes from the S3 listing),
//! scoped for members; CreateTrail / PutEventSelectors warn about billed duplicates and unfiltered
//! data selectors.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;

use common::*;
use orgtrail::client::Clients;
use orgtrail::proto::v1 as pb;
use serde_json::Value;
use sqlx::PgPool;
use tonic::Code;

const RECORDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/cloudtrail/records.jsonl.gz");
const MGMT_BUCKET: &str = "central-bucket";
const DATA_BUCKET: &str = "data-bucket";

/// The spec's category rule (§1.2), as the usage rows name it.
fn category(record: &Value) -> String {
    if let Some(category) = record["eventCategory"].as_str() {
        return category.to_owned();
    }
    if record["eventType"] == "AwsCloudTrailInsight" {
        "Insight".into()
    } else if record["managementEvent"] == false {
        "Data".into()
    } else {
        "Management".into()
    }
}

/// The shared records, and copies of the shared data event (SES SendEmail) in both members'
/// accounts with fresh event IDs, so members have data-event usage of their own.
fn records() -> Vec<String> {
    let file = std::fs::File::open(RECORDS).expect("shared/data is beside the checkout");
    let mut lines: Vec<String> =
        std::io::BufReader::new(flate2::read::GzDecoder::new(file)).lines().map(Result::unwrap).collect();
    let data_event: Value = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["eventCategory"] == "Data")
        .expect("the shared records hold a data event");
    for (i, account) in [MEMBER_A, MEMBER_B, MEMBER_A, MEMBER_B, MEMBER_A].iter().enumerate() {
        let mut copy = data_event.clone();
        copy["recipientAccountId"] = (*account).into();
        copy["resources"][0]["accountId"] = (*account).into();
        copy["eventID"] = format!("0c5e1a9e-usage-copy-{i:04}").into();
        lines.push(copy.to_string());
    }
    lines
}

/// Registers every account the records name, pushes them; returns the accepted (first) copies.
async fn push(admin: &mut Clients, lines: &[String]) -> Vec<Value> {
    register_accounts_of(admin, lines).await;
    let mut accepted = Vec::new();
    for chunk in lines.chunks(100) {
        for entry in put(admin, chunk).await.successful {
            if !entry.duplicate {
                let index: usize = entry.id.trim_start_matches('e').parse().unwrap();
                accepted.push(serde_json::from_str(&chunk[index]).unwrap());
            }
        }
    }
    accepted
}

type Tally = BTreeMap<(String, String), i64>;

/// (account, category) → events, from records.
fn tally<'a>(records: impl IntoIterator<Item = &'a Value>) -> Tally {
    let mut tally = Tally::new();
    for record in records {
        let account = record["recipientAccountId"].as_str().unwrap_or_default().to_owned();
        *tally.entry((account, category(record))).or_default() += 1;
    }
    tally
}

/// account → summed size of the delivered log files in `bucket` (the S3 listing's sizes).
async fn object_bytes(stack: &Stack, bucket: &str) -> BTreeMap<String, i64> {
    let account = regex::Regex::new(r"AWSLogs/(?:o-[a-z0-9]+/)?(\d{12})/").unwrap();
    let mut bytes = BTreeMap::new();
    for item in list_all(&stack.s3_client, bucket).await {
        let key = item.key().unwrap_or_default();
        let owner = account.captures(key).unwrap_or_else(|| panic!("unexpected key {key}"))[1].to_owned();
        *bytes.entry(owner).or_default() += item.size().unwrap_or_default();
    }
    bytes
}

async fn usage(clients: &mut Clients, request: pb::GetTrailUsageRequest) -> Vec<pb::TrailUsage> {
    clients.trails.get_trail_usage(request).await.unwrap().into_inner().usage
}

fn by_trail(rows: &[pb::TrailUsage], trail_arn: &str) -> (Tally, BTreeMap<String, i64>) {
    let mut events = Tally::new();
    let mut bytes = BTreeMap::new();
    for row in rows.iter().filter(|r| r.trail_arn == trail_arn) {
        *events.entry((row.account_id.clone(), row.category.clone())).or_default() += row.events;
        *bytes.entry(row.account_id.clone()).or_default() += row.bytes;
    }
    (events, bytes)
}

#[sqlx::test(migrations = "./migrations")]
async fn usage_equals_what_was_delivered(pool: PgPool) {
    let stack = stack(pool).await;
    stack.create_bucket(MGMT_BUCKET).await;
    stack.create_bucket(DATA_BUCKET).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;

    // Two organization trails: all management events, and data events only.
    let management = logging_trail(&mut admin, org_trail("org-management")).await;
    let data = admin
        .trails
        .create_trail(pb::CreateTrailRequest {
            s3_bucket_name: DATA_BUCKET.into(),
            delivery_interval_seconds: Some(1),
            ..org_trail("org-data")
        })
        .await
        .unwrap()
        .into_inner();
    let selectors = admin
        .trails
        .put_event_selectors(pb::PutEventSelectorsRequest {
            trail_name: data.trail_arn.clone(),
            event_selectors: vec![],
            advanced_event_selectors: vec![pb::AdvancedEventSelector {
                name: "ses".into(),
                field_selectors: vec![
                    field("eventCategory", &["Data"]),
                    field("resources.type", &["AWS::SES::EmailIdentity"]),
                ],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(selectors.warnings.len(), 1, "{:?}", selectors.warnings);
    assert!(selectors.warnings[0].starts_with("advanced_event_selectors[0]"), "{:?}", selectors.warnings);
    admin.trails.start_logging(pb::StartLoggingRequest { name: data.trail_arn.clone() }).await.unwrap();

    let accepted = push(&mut admin, &records()).await;
    let pushed = tally(&accepted);
    let expected_management: Tally =
        pushed.iter().filter(|((_, c), _)| c == "Management").map(|(k, v)| (k.clone(), *v)).collect();
    let expected_data: Tally =
        pushed.iter().filter(|((_, c), _)| c == "Data").map(|(k, v)| (k.clone(), *v)).collect();
    assert!(expected_management.values().sum::<i64>() > 2000);
    assert_eq!(expected_data.values().sum::<i64>(), 6);

    stack.wait_for_records(MGMT_BUCKET, expected_management.values().sum::<i64>() as usize).await;
    stack.wait_for_records(DATA_BUCKET, 6).await;

    // Delivery commits (and counts) right after the PUT: wait until usage caught up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let rows = loop {
        let rows = usage(&mut admin, pb::GetTrailUsageRequest::default()).await;
        let delivered = stack.objects(MGMT_BUCKET).await.iter().map(|o| o.records.len()).sum::<usize>()
            + stack.objects(DATA_BUCKET).await.iter().map(|o| o.records.len()).sum::<usize>();
        if rows.iter().map(|r| r.events).sum::<i64>() == delivered as i64 {
            break rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "usage never matched the {delivered} delivered records"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };

    // Events: the management trail's Management rows are the pushed management events; whatever
    // else it delivered (Insights records) is counted by category as delivered.
    let (events, bytes) = by_trail(&rows, &management.trail_arn);
    let management_rows: Tally =
        events.iter().filter(|((_, c), _)| c == "Management").map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(management_rows, expected_management);
    assert_eq!(events, tally(stack.objects(MGMT_BUCKET).await.iter().flat_map(|o| o.records.iter())));
    assert_eq!(bytes, object_bytes(&stack, MGMT_BUCKET).await);

    let (events, bytes) = by_trail(&rows, &data.trail_arn);
    assert_eq!(events, expected_data);
    assert_eq!(bytes, object_bytes(&stack, DATA_BUCKET).await);
    assert_eq!(rows.iter().map(|r| r.trail_arn.as_str()).collect::<BTreeSet<_>>().len(), 2);

    // Daily rows sum to the hourly ones; filters narrow.
    let daily = usage(
        &mut admin,
        pb::GetTrailUsageRequest { granularity: pb::UsageGranularity::Day as i32, ..Default::default() },
    )
    .await;
    assert_eq!(by_trail(&daily, &data.trail_arn), by_trail(&rows, &data.trail_arn));
    assert_eq!(by_trail(&daily, &management.trail_arn), by_trail(&rows, &management.trail_arn));
    let only_data = usage(
        &mut admin,
        pb::GetTrailUsageRequest {
            trail: "org-data".into(),
            account_id: MEMBER_B.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(only_data.iter().map(|r| r.events).sum::<i64>(), 2);
    assert!(only_data.iter().all(|r| r.trail_arn == data.trail_arn && r.account_id == MEMBER_B));
    let past = usage(
        &mut admin,
        pb::GetTrailUsageRequest {
            end_time: Some(pbjson_types::Timestamp { seconds: 1_000_000_000, nanos: 0 }),
            ..Default::default()
        },
    )
    .await;
    assert!(past.is_empty());

    // Members see their own account only, whatever trail delivered it.
    let mut member = stack.api.member(MEMBER_A).await;
    let own = usage(&mut member, pb::GetTrailUsageRequest::default()).await;
    assert!(!own.is_empty());
    assert!(own.iter().all(|r| r.account_id == MEMBER_A), "{own:?}");
    assert_eq!(own.iter().filter(|r| r.category == "Data").map(|r| r.events).sum::<i64>(), 3);
    let admin_view: Vec<_> = rows.iter().filter(|r| r.account_id == MEMBER_A).cloned().collect();
    assert_eq!(own, admin_view);
    let other = status(
        member
            .trails
            .get_trail_usage(pb::GetTrailUsageRequest { account_id: MEMBER_B.into(), ..Default::default() })
            .await,
    );
    assert_eq!(other.code(), Code::PermissionDenied, "{other:?}");

    // Bad input names its field.
    let now = chrono::Utc::now();
    for (request, field, code) in [
        (
            pb::GetTrailUsageRequest { account_id: "12".into(), ..Default::default() },
            "account_id",
            Code::InvalidArgument,
        ),
        (
            pb::GetTrailUsageRequest { granularity: 7, ..Default::default() },
            "granularity",
            Code::InvalidArgument,
        ),
        (
            pb::GetTrailUsageRequest {
                start_time: Some(now.into()),
                end_time: Some((now - chrono::Duration::hours(1)).into()),
                ..Default::default()
            },
            "end_time",
            Code::InvalidArgument,
        ),
        (
            pb::GetTrailUsageRequest { trail: "not a name!".into(), ..Default::default() },
            "trail",
            Code::InvalidArgument,
        ),
        (
            pb::GetTrailUsageRequest { trail: "no-such-trail".into(), ..Default::default() },
            "trail",
            Code::NotFound,
        ),
    ] {
        let failed = status(admin.trails.get_trail_usage(request).await);
        assert_eq!(failed.code(), code, "{failed:?}");
        if code == Code::InvalidArgument {
            assert!(failed.message().starts_with(field), "{field}: {}", failed.message());
        }
    }
}

fn s3_selector(values: &[&str]) -> pb::PutEventSelectorsRequest {
    pb::PutEventSelectorsRequest {
        trail_name: "member-trail".into(),
        event_selectors: vec![pb::EventSelector {
            read_write_type: "All".into(),
            include_management_events: Some(false),
            data_resources: vec![pb::DataResource {
                r#type: "AWS::S3::Object".into(),
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
            ..Default::default()
        }],
        advanced_event_selectors: vec![],
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn cost_warnings(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;

    let first = admin.trails.create_trail(org_trail("first-org-trail")).await.unwrap().into_inner();
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);
    // GetTrail never carries warnings.
    let got = admin.trails.get_trail(pb::GetTrailRequest { name: "first-org-trail".into() }).await.unwrap();
    assert!(got.into_inner().warnings.is_empty());

    // A second organization trail with management events: CloudTrail bills the second copy.
    let second = admin.trails.create_trail(org_trail("second-org-trail")).await.unwrap().into_inner();
    assert_eq!(second.warnings.len(), 1, "{:?}", second.warnings);
    assert!(second.warnings[0].contains(&first.trail_arn), "{:?}", second.warnings);
    let updated = admin
        .trails
        .update_trail(pb::UpdateTrailRequest {
            name: "second-org-trail".into(),
            s3_key_prefix: Some("copy".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(updated.warnings.iter().any(|w| w.contains(&first.trail_arn)), "{:?}", updated.warnings);

    // A member's account trail in a region overlaps the organization trails too.
    let member =
        admin.trails.create_trail(account_trail("member-trail", MEMBER_A)).await.unwrap().into_inner();
    assert_eq!(member.warnings.len(), 2, "{:?}", member.warnings);

    // Once it logs data events only, it no longer duplicates management events; a data resource
    // of just the service prefix is unfiltered, a bucket prefix is not.
    let unfiltered =
        admin.trails.put_event_selectors(s3_selector(&["arn:aws:s3"])).await.unwrap().into_inner();
    assert_eq!(unfiltered.warnings.len(), 1, "{:?}", unfiltered.warnings);
    assert!(
        unfiltered.warnings[0].starts_with("event_selectors[0].data_resources[0]")
            && unfiltered.warnings[0].contains("no resource filter"),
        "{:?}",
        unfiltered.warnings
    );
    let updated = admin
        .trails
        .update_trail(pb::UpdateTrailRequest {
            name: "member-trail".into(),
            s3_key_prefix: Some("m".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.warnings.len(), 1, "{:?}", updated.warnings);
    assert!(updated.warnings[0].contains("no resource filter"));
    let scoped = admin
        .trails
        .put_event_selectors(s3_selector(&["arn:aws:s3:::bucket-a/logs/"]))
        .await
        .unwrap()
        .into_inner();
    assert!(scoped.warnings.is_empty(), "{:?}", scoped.warnings);
    let updated = admin
        .trails
        .update_trail(pb::UpdateTrailRequest {
            name: "member-trail".into(),
            s3_key_prefix: Some("n".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(updated.warnings.is_empty(), "{:?}", updated.warnings);

    // Scoped advanced data selectors pass; unscoped ones warn.
    let advanced = |with_arn: bool| {
        let mut fields =
            vec![field("eventCategory", &["Data"]), field("resources.type", &["AWS::S3::Object"])];
        if with_arn {
            fields.push(pb::AdvancedFieldSelector {
                field: "resources.ARN".into(),
                starts_with: vec!["arn:aws:s3:::bucket-a/".into()],
                ..Default::default()
            });
        }
        pb::PutEventSelectorsRequest {
            trail_name: "member-trail".into(),
            event_selectors: vec![],
            advanced_event_selectors: vec![pb::AdvancedEventSelector {
                name: "objects".into(),
                field_selectors: fields,
            }],
        }
    };
    let response = admin.trails.put_event_selectors(advanced(false)).await.unwrap().into_inner();
    assert_eq!(response.warnings.len(), 1, "{:?}", response.warnings);
    let response = admin.trails.put_event_selectors(advanced(true)).await.unwrap().into_inner();
    assert!(response.warnings.is_empty(), "{:?}", response.warnings);
    // GetEventSelectors never carries warnings.
    let got = admin
        .trails
        .get_event_selectors(pb::GetEventSelectorsRequest { trail_name: "member-trail".into() })
        .await
        .unwrap();
    assert!(got.into_inner().warnings.is_empty());
}

#[sqlx::test(migrations = "./migrations")]
async fn cli_prints_usage_and_warnings(pool: PgPool) {
    let stack = stack(pool).await;
    stack.create_bucket(MGMT_BUCKET).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    let trail = logging_trail(&mut admin, org_trail("cli-trail")).await;
    let records: Vec<String> = (0..3)
        .map(|i| event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", &format!("cli-{i}")))
        .collect();
    put(&mut admin, &records).await;
    stack.wait_for_records(MGMT_BUCKET, 3).await;

    let token = stack.api.token(orgtrail::store::tokens::Role::Admin, None).await;
    let endpoint = stack.api.endpoint();
    let run = async |args: &[&str]| {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_orgtrail"))
            .args(["--endpoint", &endpoint, "--token", &token])
            .args(args)
            .output()
            .await
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (ok, stdout, stderr) =
            run(&["--output", "json", "usage", "--trail", "cli-trail", "--by", "day"]).await;
        assert!(ok, "{stderr}");
        let answer: Value = serde_json::from_str(&stdout).unwrap();
        let events: i64 = answer["usage"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                assert_eq!(row["trail_arn"], trail.trail_arn.as_str());
                row["events"].as_str().and_then(|e| e.parse().ok()).or(row["events"].as_i64()).unwrap()
            })
            .sum();
        if events == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "usage shows {events} of 3 events");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (ok, stdout, _) = run(&["usage", "--account", MEMBER_A]).await;
    assert!(ok);
    assert!(stdout.starts_with("PERIOD_START") && stdout.contains("Management"), "{stdout}");

    // Bad input: one line naming the field, non-zero exit.
    let (ok, _, stderr) = run(&["usage", "--account", "12"]).await;
    assert!(!ok);
    assert!(stderr.contains("account_id"), "{stderr}");

    // Warnings go to stderr; stdout stays the trail.
    let (ok, stdout, stderr) = run(&[
        "trails",
        "create",
        "--name",
        "cli-second",
        "--s3-bucket-name",
        MGMT_BUCKET,
        "--is-organization-trail",
    ])
    .await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("warning: trail ") && stderr.contains(&trail.trail_arn), "{stderr}");
    assert!(!stdout.contains("warning"), "{stdout}");
}
