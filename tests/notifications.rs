//! Delivery notifications against moto's SNS and SQS: a queue subscribed to a trail's topic gets
//! CloudTrail's notification (`{"s3Bucket","s3ObjectKey":[key]}` in the SNS envelope) once per
//! delivered log file; a topic that does not exist shows in the trail status and the notifications
//! wait, retried, until the trail names one that does.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::time::{Duration, Instant};

use common::*;
use orgtrail::client::Clients;
use orgtrail::proto::v1 as pb;
use serde_json::Value;
use sqlx::PgPool;

const RECORDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/cloudtrail/records.jsonl.gz");

/// moto's own account: a bare topic name of a trail owned by it resolves to a moto topic.
const MOTO_ACCOUNT: &str = "123456789012";

/// The shared CloudTrail records.
fn shared_records() -> Vec<String> {
    let file = std::fs::File::open(RECORDS).expect("shared/data is beside the checkout");
    std::io::BufReader::new(flate2::read::GzDecoder::new(file)).lines().map(Result::unwrap).collect()
}

fn account_of(record: &str) -> Option<String> {
    serde_json::from_str::<Value>(record).ok()?["recipientAccountId"].as_str().map(str::to_owned)
}

/// Pushes `records`; returns how many management events were accepted (first copies).
async fn push(admin: &mut Clients, records: &[String]) -> usize {
    let mut management = 0;
    for chunk in records.chunks(100) {
        for entry in put(admin, chunk).await.successful {
            if entry.duplicate {
                continue;
            }
            let index: usize = entry.id.trim_start_matches('e').parse().unwrap();
            let record: Value = serde_json::from_str(&chunk[index]).unwrap();
            // The spec's category rule (§1.2): trails without selectors take management events.
            let management_event = match record["eventCategory"].as_str() {
                Some(category) => category == "Management",
                None => record["eventType"] != "AwsCloudTrailInsight" && record["managementEvent"] != false,
            };
            management += usize::from(management_event);
        }
    }
    management
}

/// A queue subscribed to `topic_arn` (the normal SNS envelope, as CloudTrail's subscribers get).
async fn subscribed_queue(
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    topic_arn: &str,
    name: &str,
) -> String {
    let url = sqs.create_queue().queue_name(name).send().await.unwrap().queue_url().unwrap().to_owned();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let queue_arn =
        attributes.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
    sns.subscribe().topic_arn(topic_arn).protocol("sqs").endpoint(queue_arn).send().await.unwrap();
    url
}

/// One notification as an SQS subscriber sees it.
#[derive(Debug)]
struct Received {
    topic_arn: String,
    bucket: String,
    key: String,
}

/// Takes (and deletes) what the queue holds now; checks each message's shape on the way.
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Received> {
    let mut received = Vec::new();
    loop {
        let output = sqs.receive_message().queue_url(url).max_number_of_messages(10).send().await.unwrap();
        let messages = output.messages();
        if messages.is_empty() {
            return received;
        }
        for message in messages {
            let envelope: Value = serde_json::from_str(message.body().unwrap()).unwrap();
            assert_eq!(envelope["Type"], "Notification", "{envelope}");
            let inner = envelope["Message"].as_str().unwrap();
            let notification: Value = serde_json::from_str(inner).unwrap();
            // Exactly CloudTrail's shape: two fields, one key per delivered object.
            let fields: Vec<&str> = notification.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(fields, ["s3Bucket", "s3ObjectKey"], "{inner}");
            let keys = notification["s3ObjectKey"].as_array().unwrap();
            assert_eq!(keys.len(), 1, "{inner}");
            received.push(Received {
                topic_arn: envelope["TopicArn"].as_str().unwrap().to_owned(),
                bucket: notification["s3Bucket"].as_str().unwrap().to_owned(),
                key: keys[0].as_str().unwrap().to_owned(),
            });
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// Checks `received` is one notification of `bucket`'s topic per log file in `keys`.
fn assert_one_per_file(received: &[Received], keys: &BTreeSet<String>, bucket: &str, topic_arn: &str) {
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for notification in received {
        *per_key.entry(notification.key.as_str()).or_default() += 1;
        assert_eq!(notification.bucket, bucket);
        assert_eq!(notification.topic_arn, topic_arn);
    }
    assert!(per_key.values().all(|n| *n == 1), "announced more than once: {per_key:?}");
    let announced: BTreeSet<String> = per_key.keys().map(|k| k.to_string()).collect();
    assert_eq!(&announced, keys, "announced keys differ from the bucket's log files");
}

/// Keys of the delivered log files in `bucket` (digests excluded).
async fn log_keys(stack: &Stack, bucket: &str) -> BTreeSet<String> {
    stack.objects(bucket).await.into_iter().map(|o| o.key).collect()
}

async fn digest_count(stack: &Stack, bucket: &str) -> usize {
    let objects = list_all(&stack.s3_client, bucket).await;
    objects.iter().filter(|o| o.key().is_some_and(|k| k.contains("/CloudTrail-Digest/"))).count()
}

async fn outbox(pool: &PgPool) -> Vec<(i32, Option<String>)> {
    sqlx::query_as("SELECT attempts, last_error FROM outbox WHERE kind = 'notification' ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn trail_status(admin: &mut Clients, trail: &str) -> pb::TrailStatus {
    admin
        .trails
        .get_trail_status(pb::GetTrailStatusRequest { name: trail.into() })
        .await
        .unwrap()
        .into_inner()
}

/// Receives into `received` until it holds as many notifications as the bucket holds log files
/// and nothing is left to publish; returns the log files' keys.
async fn wait_for_notifications(
    stack: &Stack,
    pool: &PgPool,
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    bucket: &str,
    received: &mut Vec<Received>,
) -> BTreeSet<String> {
    // Generous: covers the notifier's backoff after failures.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        received.extend(drain(sqs, url).await);
        let keys = log_keys(stack, bucket).await;
        if !keys.is_empty() && received.len() >= keys.len() && outbox(pool).await.is_empty() {
            return keys;
        }
        assert!(
            Instant::now() < deadline,
            "{} notifications for {} log files; outbox {:?}",
            received.len(),
            keys.len(),
            outbox(pool).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn each_delivered_log_file_is_announced_once_to_the_trails_topic(pool: PgPool) {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let topic_arn =
        sns.create_topic().name("org-trail-topic").send().await.unwrap().topic_arn().unwrap().to_owned();
    let queue = subscribed_queue(&sns, &sqs, &topic_arn, "siem-queue").await;

    let stack = stack_with_settings(pool.clone(), |settings| {
        settings.aws = Some(sdk.clone());
    })
    .await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    stack.create_bucket("central-bucket").await;
    // The topic by ARN: it lives in moto's account, not the trail owner's.
    let trail = logging_trail(
        &mut admin,
        pb::CreateTrailRequest { sns_topic_name: topic_arn.clone(), ..org_trail("org-trail") },
    )
    .await;
    assert_eq!(trail.sns_topic_name, topic_arn);

    let records = shared_records();
    register_accounts_of(&mut admin, &records).await;
    let management = push(&mut admin, &records).await;
    assert!(management > 2000, "{management}");
    stack.wait_for_records("central-bucket", management).await;
    let mut received = Vec::new();
    let keys = wait_for_notifications(&stack, &pool, &sqs, &queue, "central-bucket", &mut received).await;
    // One per delivered log file, each naming an object that is there, none twice.
    assert_one_per_file(&received, &keys, "central-bucket", &topic_arn);
    assert!(keys.len() > 40, "the shared records span many accounts and regions: {}", keys.len());

    let status = trail_status(&mut admin, "org-trail").await;
    assert!(status.latest_notification_time.is_some(), "{status:?}");
    assert_eq!(status.latest_notification_error, "");
    assert!(orgtrail::metrics::pipeline().notifications_published.get() >= keys.len() as u64);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_missing_topic_shows_in_the_status_and_its_notifications_wait_for_a_good_one(pool: PgPool) {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let stack = stack_with_settings(pool.clone(), |settings| {
        settings.aws = Some(sdk.clone());
        settings.notifications.retry_base = Duration::from_millis(200);
        settings.notifications.retry_max = Duration::from_secs(1);
        // The trail's files are signed into digests, which must not be announced.
        settings.digest_period = Duration::from_secs(1);
    })
    .await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    stack.create_bucket("member-bucket").await;
    let records: Vec<String> =
        shared_records().into_iter().filter(|r| account_of(r).as_deref() == Some(MOTO_ACCOUNT)).collect();
    assert!(!records.is_empty());
    register_accounts_of(&mut admin, &records).await;
    // A bare name: the topic of that name in the trail's home region and owner account.
    let trail = logging_trail(
        &mut admin,
        pb::CreateTrailRequest {
            sns_topic_name: "late-topic".into(),
            is_multi_region_trail: Some(true),
            log_file_validation_enabled: true,
            include_global_service_events: Some(true),
            ..account_trail("a-trail", MOTO_ACCOUNT)
        },
    )
    .await;
    let management = push(&mut admin, &records).await;
    stack.wait_for_records("member-bucket", management).await;
    let files = log_keys(&stack, "member-bucket").await.len();

    // The error shows; every notification is kept and retried.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = trail_status(&mut admin, &trail.trail_arn).await;
        let pending = outbox(&pool).await;
        if !status.latest_notification_error.is_empty()
            && pending.len() == files
            && pending.iter().all(|(attempts, _)| *attempts >= 2)
        {
            let error = &status.latest_notification_error;
            assert!(error.contains("arn:aws:sns:us-east-1:123456789012:late-topic"), "{error}");
            assert!(error.contains("NotFound"), "{error}");
            assert!(status.latest_notification_time.is_none());
            assert!(pending.iter().all(|(_, last)| last.as_deref() == Some(error.as_str())), "{pending:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{status:?} {pending:?} ({files} files)");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Once the trail names a topic that exists, what waited is delivered and the error clears.
    // (A topic subscribed to before the trail names it: creating the missing one would race the
    // retries against the subscription, and SNS drops what it gets before a subscriber exists.)
    let topic_arn =
        sns.create_topic().name("fixed-topic").send().await.unwrap().topic_arn().unwrap().to_owned();
    assert_eq!(topic_arn, "arn:aws:sns:us-east-1:123456789012:fixed-topic");
    let queue = subscribed_queue(&sns, &sqs, &topic_arn, "siem-queue").await;
    admin
        .trails
        .update_trail(pb::UpdateTrailRequest {
            name: trail.trail_arn.clone(),
            sns_topic_name: Some("fixed-topic".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut received = Vec::new();
    let keys = wait_for_notifications(&stack, &pool, &sqs, &queue, "member-bucket", &mut received).await;
    assert_eq!(keys.len(), files);
    assert_one_per_file(&received, &keys, "member-bucket", &topic_arn);

    // Digest files are not announced: once some are written, still one notification per log file.
    let deadline = Instant::now() + Duration::from_secs(60);
    while digest_count(&stack, "member-bucket").await == 0 {
        assert!(Instant::now() < deadline, "no digest file was written");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let keys = wait_for_notifications(&stack, &pool, &sqs, &queue, "member-bucket", &mut received).await;
    assert_one_per_file(&received, &keys, "member-bucket", &topic_arn);
    let status = trail_status(&mut admin, &trail.trail_arn).await;
    assert!(status.latest_notification_time.is_some(), "{status:?}");
    assert_eq!(status.latest_notification_error, "");
}
