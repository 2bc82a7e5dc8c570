//! The CloudWatch Logs stream against moto's CloudWatch Logs: each event a trail takes becomes a
//! log event in the trail's group, one stream per account and region; errors show in the status.

mod common;

use common::*;
use orgtrail::client::Clients;
use orgtrail::proto::v1 as pb;
use sqlx::PgPool;

const GROUP: &str = "CloudTrail/logs";
const ROLE: &str = "arn:aws:iam::123456789012:role/CloudTrail_CloudWatchLogs_Role";

fn group_arn(name: &str) -> String {
    format!("arn:aws:logs:us-east-1:123456789012:log-group:{name}:*")
}

/// Every message of a stream, oldest first (none while the stream does not exist).
async fn messages(logs: &aws_sdk_cloudwatchlogs::Client, group: &str, stream: &str) -> Vec<String> {
    match logs
        .get_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .start_from_head(true)
        .send()
        .await
    {
        Ok(output) => output.events().iter().filter_map(|e| e.message().map(str::to_owned)).collect(),
        Err(error) => {
            eprintln!(
                "GetLogEvents {stream}: {}",
                aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&error)
            );
            Vec::new()
        }
    }
}

async fn wait_for_messages(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
    count: usize,
) -> Vec<String> {
    // Long enough for a tap's longest backoff (30 s) after a failure.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let found = messages(logs, group, stream).await;
        if found.len() >= count {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "{stream} has {} of {count} events", found.len());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn trail_status(admin: &mut Clients, trail: &str) -> pb::TrailStatus {
    admin
        .trails
        .get_trail_status(pb::GetTrailStatusRequest { name: trail.into() })
        .await
        .unwrap()
        .into_inner()
}

#[sqlx::test(migrations = "./migrations")]
async fn each_event_a_trail_takes_is_streamed_once_per_account_and_region(pool: PgPool) {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    logs.create_log_group().log_group_name(GROUP).send().await.unwrap();
    let stack = stack_with_settings(pool, |settings| settings.aws = Some(sdk.clone())).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    stack.create_bucket("central-bucket").await;
    let mut trail = org_trail("org-trail");
    trail.is_multi_region_trail = Some(true);
    trail.include_global_service_events = Some(true);
    trail.cloud_watch_logs_log_group_arn = group_arn(GROUP);
    trail.cloud_watch_logs_role_arn = ROLE.into();
    logging_trail(&mut admin, trail).await;

    // Written out of time order on purpose: PutLogEvents needs them sorted.
    let mut a_east: Vec<String> = Vec::new();
    for (i, minute) in [3, 1, 2].into_iter().enumerate() {
        let record = event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", &format!("a-{i}"))
            .replace("2026-11-24T10:00:00Z", &format!("2026-11-24T10:0{minute}:00Z"));
        a_east.push(record);
    }
    let b_west: Vec<String> = (0..2)
        .map(|i| event(MEMBER_B, "eu-west-1", "s3.amazonaws.com", "CreateBucket", &format!("b-{i}")))
        .collect();
    put(&mut admin, &[a_east.clone(), b_west.clone()].concat()).await;

    let stream_a = format!("o-testorg1234_{MEMBER_A}_CloudTrail_us-east-1");
    let stream_b = format!("o-testorg1234_{MEMBER_B}_CloudTrail_eu-west-1");
    let got_a = wait_for_messages(&logs, GROUP, &stream_a, 3).await;
    let got_b = wait_for_messages(&logs, GROUP, &stream_b, 2).await;
    // Byte for byte, in event-time order.
    assert_eq!(got_a, vec![a_east[1].clone(), a_east[2].clone(), a_east[0].clone()]);
    assert_eq!(got_b, b_west);
    // The same events are in S3 as well.
    stack.wait_for_records("central-bucket", 5).await;

    // No repeats after more traffic and a worker restart (the cursor is durable).
    let mut stack = stack;
    stack.restart_worker().await;
    let later = event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "StopInstances", "a-later")
        .replace("2026-11-24T10:00:00Z", "2026-11-24T10:09:00Z");
    put(&mut admin, std::slice::from_ref(&later)).await;
    let got_a = wait_for_messages(&logs, GROUP, &stream_a, 4).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(messages(&logs, GROUP, &stream_a).await.len(), 4, "{got_a:?}");
    assert_eq!(got_a.last(), Some(&later));

    let status = trail_status(&mut admin, "org-trail").await;
    assert!(status.latest_cloud_watch_logs_delivery_time.is_some());
    assert_eq!(status.latest_cloud_watch_logs_delivery_error, "");
}

#[sqlx::test(migrations = "./migrations")]
async fn a_missing_log_group_shows_in_the_status_and_delays_only_the_stream(pool: PgPool) {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let stack = stack_with_settings(pool, |settings| settings.aws = Some(sdk.clone())).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    stack.create_bucket("member-bucket").await;
    let mut trail = account_trail("a-trail", MEMBER_A);
    trail.cloud_watch_logs_log_group_arn = group_arn("not-yet");
    trail.cloud_watch_logs_role_arn = ROLE.into();
    logging_trail(&mut admin, trail).await;
    let records: Vec<String> = (0..3)
        .map(|i| event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", &format!("m-{i}")))
        .collect();
    put(&mut admin, &records).await;

    // S3 delivery goes on; the stream reports why it cannot.
    stack.wait_for_records("member-bucket", 3).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let error = loop {
        let status = trail_status(&mut admin, "a-trail").await;
        if !status.latest_cloud_watch_logs_delivery_error.is_empty() {
            break status.latest_cloud_watch_logs_delivery_error;
        }
        assert!(std::time::Instant::now() < deadline, "no CloudWatch Logs error reported");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(error.contains("ResourceNotFound"), "{error}");

    // Once the group exists the held events arrive (after the tap's backoff), and the error clears.
    logs.create_log_group().log_group_name("not-yet").send().await.unwrap();
    let stream = format!("{MEMBER_A}_CloudTrail_us-east-1");
    assert_eq!(wait_for_messages(&logs, "not-yet", &stream, 3).await, records);
    // The put comes before the tap's transaction commits, and the status with it: a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        let status = trail_status(&mut admin, "a-trail").await;
        if status.latest_cloud_watch_logs_delivery_error.is_empty() || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(status.latest_cloud_watch_logs_delivery_error, "");
    assert!(status.latest_cloud_watch_logs_delivery_time.is_some());
}

#[sqlx::test(migrations = "./migrations")]
async fn a_bad_log_group_arn_is_rejected_naming_the_field(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    let mut trail = account_trail("a-trail", MEMBER_A);
    trail.cloud_watch_logs_log_group_arn = "arn:aws:logs:us-east-1:123456789012:destination:x".into();
    trail.cloud_watch_logs_role_arn = ROLE.into();
    let error = status(admin.trails.create_trail(trail).await);
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().starts_with("cloud_watch_logs_log_group_arn:"), "{}", error.message());
}
