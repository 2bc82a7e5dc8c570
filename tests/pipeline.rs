//! The event pipeline end to end: gRPC ingest → Postgres staging → worker → S3 (real protocol).

mod common;

use std::collections::BTreeSet;

use common::*;
use orgtrail::proto::v1 as pb;
use sqlx::PgPool;

fn ids(objects: &[LogObject]) -> BTreeSet<String> {
    objects.iter().flat_map(|o| o.event_ids()).collect()
}

fn all_ids(objects: &[LogObject]) -> Vec<String> {
    let mut ids: Vec<String> = objects.iter().flat_map(|o| o.event_ids()).collect();
    ids.sort();
    ids
}

#[sqlx::test(migrations = "./migrations")]
async fn org_trail_receives_events_of_an_account_registered_after_the_trail(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    stack.create_bucket("central-bucket").await;
    logging_trail(&mut admin, org_trail("org-trail")).await;
    admin
        .accounts
        .register_account(pb::RegisterAccountRequest {
            account_id: "444444444444".into(),
            name: "late".into(),
            email: String::new(),
        })
        .await
        .unwrap();
    let mut late = stack.api.member("444444444444").await;
    let response =
        put(&mut late, &[event("444444444444", "eu-west-1", "ec2.amazonaws.com", "RunInstances", "late-1")])
            .await;
    assert!(response.failed.is_empty(), "{:?}", response.failed);
    let objects = stack.wait_for_records("central-bucket", 1).await;
    assert_eq!(objects.len(), 1);
    assert!(
        objects[0].key.starts_with("AWSLogs/o-testorg1234/444444444444/CloudTrail/eu-west-1/"),
        "{}",
        objects[0].key
    );
    assert_eq!(objects[0].event_ids(), vec!["late-1"]);
}

#[sqlx::test(migrations = "./migrations")]
async fn records_are_delivered_byte_for_byte(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    stack.create_bucket("central-bucket").await;
    logging_trail(&mut admin, org_trail("org-trail")).await;
    // Odd spacing, key order and a field orgtrail does not know survive untouched.
    let record = format!(
        r#"{{ "eventID" : "raw-1","eventTime":"2026-11-24T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","recipientAccountId":"{MEMBER_A}","sessionCredentialFromConsole":"true","futureField":{{"a":[1,2.50]}} }}"#
    );
    put(&mut admin, std::slice::from_ref(&record)).await;
    stack.wait_for_records("central-bucket", 1).await;
    let list = stack.s3_client.list_objects_v2().bucket("central-bucket").send().await.unwrap();
    let key = list.contents()[0].key().unwrap().to_owned();
    let object = stack.s3_client.get_object().bucket("central-bucket").key(&key).send().await.unwrap();
    assert_eq!(object.content_type(), Some("application/json"));
    let body = object.body.collect().await.unwrap().into_bytes();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text).unwrap();
    assert_eq!(text, format!("{{\"Records\":[{record}]}}"));
}

#[sqlx::test(migrations = "./migrations")]
async fn account_trail_gets_only_its_owners_events(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    stack.create_bucket("member-bucket").await;
    logging_trail(&mut admin, account_trail("a-trail", MEMBER_A)).await;
    let records = [
        event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "a-1"),
        event(MEMBER_B, "us-east-1", "ec2.amazonaws.com", "RunInstances", "b-1"),
        event(MEMBER_A, "eu-west-1", "s3.amazonaws.com", "CreateBucket", "a-2"),
    ];
    put(&mut admin, &records).await;
    stack.wait_for_records("member-bucket", 2).await;
    // Give the other account's event every chance to (wrongly) arrive.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let objects = stack.objects("member-bucket").await;
    assert_eq!(all_ids(&objects), vec!["a-1", "a-2"]);
    assert!(
        objects.iter().all(|o| o.key.starts_with(&format!("AWSLogs/{MEMBER_A}/CloudTrail/"))),
        "no org id for account trails"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn regions_and_global_service_events_follow_cloudtrail(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    for bucket in ["multi", "single-eu", "single-use1", "single-use1-noglobal"] {
        stack.create_bucket(bucket).await;
    }
    let trail = |name: &str, bucket: &str, home: &str, multi: bool, global: bool| pb::CreateTrailRequest {
        name: name.into(),
        s3_bucket_name: bucket.into(),
        home_region: home.into(),
        owner_account_id: MEMBER_A.into(),
        is_multi_region_trail: Some(multi),
        include_global_service_events: Some(global),
        ..Default::default()
    };
    logging_trail(&mut admin, trail("multi", "multi", "eu-west-1", true, true)).await;
    logging_trail(&mut admin, trail("single-eu", "single-eu", "eu-west-1", false, true)).await;
    logging_trail(&mut admin, trail("single-use1", "single-use1", "us-east-1", false, true)).await;
    logging_trail(&mut admin, trail("single-noglobal", "single-use1-noglobal", "us-east-1", false, false))
        .await;
    let records = [
        event(MEMBER_A, "eu-west-1", "ec2.amazonaws.com", "RunInstances", "eu-regional"),
        event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "use1-regional"),
        event(MEMBER_A, "us-east-1", "iam.amazonaws.com", "CreateUser", "global-iam"),
        event(MEMBER_A, "ap-south-1", "ec2.amazonaws.com", "StopInstances", "ap-regional"),
    ];
    put(&mut admin, &records).await;
    let multi = stack.wait_for_records("multi", 4).await;
    assert_eq!(all_ids(&multi), vec!["ap-regional", "eu-regional", "global-iam", "use1-regional"]);
    let use1 = stack.wait_for_records("single-use1", 2).await;
    let noglobal = stack.wait_for_records("single-use1-noglobal", 1).await;
    let eu = stack.wait_for_records("single-eu", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        all_ids(&stack.objects("single-eu").await),
        vec!["eu-regional"],
        "global events skip single-region trails outside us-east-1"
    );
    assert_eq!(all_ids(&stack.objects("single-use1").await), vec!["global-iam", "use1-regional"]);
    assert_eq!(all_ids(&stack.objects("single-use1-noglobal").await), vec!["use1-regional"]);
    drop((use1, noglobal, eu));
}

#[sqlx::test(migrations = "./migrations")]
async fn two_trails_get_two_copies_and_a_failing_bucket_does_not_delay_the_other(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    stack.create_bucket("healthy").await;
    let mut healthy = org_trail("healthy");
    healthy.s3_bucket_name = "healthy".into();
    let mut broken = org_trail("broken");
    broken.s3_bucket_name = "not-created-yet".into();
    logging_trail(&mut admin, healthy).await;
    logging_trail(&mut admin, broken).await;
    let records: Vec<String> = (0..10)
        .map(|i| event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", &format!("copy-{i}")))
        .collect();
    put(&mut admin, &records).await;
    let delivered = stack.wait_for_records("healthy", 10).await;
    assert_eq!(ids(&delivered).len(), 10);

    // The broken trail reports its error and keeps the events.
    let status =
        trail_status_when(&mut admin, "broken", |s| s.latest_delivery_error.contains("NoSuchBucket")).await;
    assert!(status.latest_delivery_attempt_time.is_some());
    assert!(status.latest_delivery_time.is_none());
    // Recovery: the bucket appears, the same events arrive, the error clears.
    stack.create_bucket("not-created-yet").await;
    let recovered = stack.wait_for_records("not-created-yet", 10).await;
    assert_eq!(ids(&recovered), ids(&delivered));
    // The object is listed once put; the status is written after the commit (and its group).
    let status = trail_status_when(&mut admin, "broken", |s| s.latest_delivery_error.is_empty()).await;
    assert!(status.latest_delivery_time.is_some(), "{status:?}");
}

/// The trail's status once `ready` holds (within 20 s).
async fn trail_status_when(
    admin: &mut orgtrail::client::Clients,
    name: &str,
    ready: impl Fn(&pb::TrailStatus) -> bool,
) -> pb::TrailStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = admin
            .trails
            .get_trail_status(pb::GetTrailStatusRequest { name: name.into() })
            .await
            .unwrap()
            .into_inner();
        if ready(&status) {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "trail {name}: status never got there: {status:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn stop_logging_stops_delivery_and_start_logging_resumes(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    stack.create_bucket("central-bucket").await;
    logging_trail(&mut admin, org_trail("org-trail")).await;
    put(&mut admin, &[event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "before-stop")])
        .await;
    stack.wait_for_records("central-bucket", 1).await;
    admin.trails.stop_logging(pb::StopLoggingRequest { name: "org-trail".into() }).await.unwrap();
    put(&mut admin, &[event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "while-stopped")])
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    admin.trails.start_logging(pb::StartLoggingRequest { name: "org-trail".into() }).await.unwrap();
    put(&mut admin, &[event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "after-start")])
        .await;
    stack.wait_for_records("central-bucket", 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(all_ids(&stack.objects("central-bucket").await), vec!["after-start", "before-stop"]);
}

#[sqlx::test(migrations = "./migrations")]
async fn selectors_decide_what_is_delivered(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    stack.create_bucket("central-bucket").await;
    logging_trail(&mut admin, org_trail("org-trail")).await;
    admin
        .trails
        .put_event_selectors(pb::PutEventSelectorsRequest {
            trail_name: "org-trail".into(),
            event_selectors: vec![],
            advanced_event_selectors: vec![
                pb::AdvancedEventSelector {
                    name: "writes except kms".into(),
                    field_selectors: vec![
                        field("eventCategory", &["Management"]),
                        field("readOnly", &["false"]),
                        pb::AdvancedFieldSelector {
                            field: "eventSource".into(),
                            not_equals: vec!["kms.amazonaws.com".into()],
                            ..Default::default()
                        },
                    ],
                },
                pb::AdvancedEventSelector {
                    name: "one bucket's objects".into(),
                    field_selectors: vec![
                        field("eventCategory", &["Data"]),
                        field("resources.type", &["AWS::S3::Object"]),
                        pb::AdvancedFieldSelector {
                            field: "resources.ARN".into(),
                            starts_with: vec!["arn:aws:s3:::watched/".into()],
                            ..Default::default()
                        },
                    ],
                },
            ],
        })
        .await
        .unwrap();
    let data = |id: &str, arn: &str| {
        serde_json::json!({"eventID": id, "eventTime": "2026-11-24T10:00:00Z", "eventSource": "s3.amazonaws.com",
            "eventName": "PutObject", "awsRegion": "us-east-1", "recipientAccountId": MEMBER_A, "readOnly": false,
            "eventCategory": "Data", "managementEvent": false,
            "resources": [{"type": "AWS::S3::Object", "ARN": arn}, {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::x"}]})
        .to_string()
    };
    let records = [
        event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "write"),
        event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "DescribeInstances", "read"),
        event(MEMBER_A, "us-east-1", "kms.amazonaws.com", "Encrypt", "kms-write"),
        data("data-watched", "arn:aws:s3:::watched/file.txt"),
        data("data-other", "arn:aws:s3:::other/file.txt"),
    ];
    put(&mut admin, &records).await;
    stack.wait_for_records("central-bucket", 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(all_ids(&stack.objects("central-bucket").await), vec!["data-watched", "write"]);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_bad_record_is_rejected_with_its_reason_while_the_rest_is_accepted(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    stack.create_bucket("central-bucket").await;
    logging_trail(&mut admin, org_trail("org-trail")).await;
    let records = [
        event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "good-1"),
        "{not json".to_owned(),
        r#"{"eventID":"x","eventTime":"2026-11-24T10:00:00Z","eventSource":"ec2.amazonaws.com","eventName":"A","awsRegion":"us-east-1"}"#.to_owned(),
        event("999999999999", "us-east-1", "ec2.amazonaws.com", "RunInstances", "unregistered"),
        event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "good-2"),
        event(MEMBER_A, "US-EAST-1", "ec2.amazonaws.com", "RunInstances", "bad-region"),
    ];
    let response = put(&mut admin, &records).await;
    let accepted: Vec<&str> = response.successful.iter().map(|s| s.event_id.as_str()).collect();
    assert_eq!(accepted, vec!["good-1", "good-2"]);
    let failed: Vec<(&str, &str)> =
        response.failed.iter().map(|f| (f.id.as_str(), f.error_code.as_str())).collect();
    assert_eq!(
        failed,
        vec![
            ("e1", "InvalidJson"),
            ("e2", "MissingRequiredField"),
            ("e3", "UnregisteredAccount"),
            ("e5", "InvalidField")
        ]
    );
    assert!(response.failed[1].error_message.contains("recipientAccountId"), "{:?}", response.failed[1]);
    let objects = stack.wait_for_records("central-bucket", 2).await;
    assert_eq!(all_ids(&objects), vec!["good-1", "good-2"]);

    // A member may send only its own account's events.
    let mut member = stack.api.member(MEMBER_A).await;
    let response =
        put(&mut member, &[event(MEMBER_B, "us-east-1", "ec2.amazonaws.com", "A", "foreign")]).await;
    assert_eq!(response.failed[0].error_code, "WrongAccount");
}

#[sqlx::test(migrations = "./migrations")]
async fn a_request_with_repeated_entry_ids_is_rejected_whole(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    let record = event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "x");
    let entry = |id: &str| pb::AuditEvent {
        id: id.into(),
        event_data: record.clone(),
        event_data_checksum: String::new(),
    };
    let error = admin
        .ingest
        .put_audit_events(pb::PutAuditEventsRequest {
            audit_events: vec![entry("a"), entry("a")],
            channel_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().starts_with("audit_events[1].id:"), "{}", error.message());
    let too_many: Vec<pb::AuditEvent> = (0..101).map(|i| entry(&format!("e{i}"))).collect();
    let error = admin
        .ingest
        .put_audit_events(pb::PutAuditEventsRequest { audit_events: too_many, channel_id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    let staged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM staged_chunks").fetch_one(&stack.api.pool).await.unwrap();
    assert_eq!(staged, 0, "nothing of a rejected request is kept");
}

#[sqlx::test(migrations = "./migrations")]
async fn duplicates_are_dropped_and_the_first_copy_wins(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    stack.create_bucket("central-bucket").await;
    logging_trail(&mut admin, org_trail("org-trail")).await;
    let first = event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "same-id");
    let second = event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "TerminateInstances", "same-id");
    let response = put(&mut admin, &[first.clone(), second.clone()]).await;
    assert_eq!(response.successful.iter().map(|s| s.duplicate).collect::<Vec<_>>(), vec![false, true]);
    let response = put(&mut admin, &[second]).await;
    assert!(response.successful[0].duplicate);
    // The same eventID in another account is another event.
    let response =
        put(&mut admin, &[event(MEMBER_B, "us-east-1", "ec2.amazonaws.com", "RunInstances", "same-id")])
            .await;
    assert!(!response.successful[0].duplicate);
    stack.wait_for_records("central-bucket", 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let objects = stack.objects("central-bucket").await;
    let names: Vec<&str> =
        objects.iter().flat_map(|o| o.records.iter()).map(|r| r["eventName"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"RunInstances") && !names.contains(&"TerminateInstances"));
    let counters = orgtrail::pipeline::staging::postgres::ingest_counters(
        &stack.api.pool,
        &orgtrail::model::AccountId::parse("a", MEMBER_A).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(counters, (1, 2, 0), "accepted, duplicates, rejected");
    let account = admin
        .accounts
        .describe_account(pb::DescribeAccountRequest { account_id: MEMBER_A.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((account.events_accepted, account.events_duplicate, account.events_rejected), (1, 2, 0));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_channel_event_is_partitioned_under_its_channels_account_and_region(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    stack.create_bucket("central-bucket").await;
    logging_trail(&mut admin, org_trail("org-trail")).await;
    let mut member = stack.api.member(MEMBER_B).await;
    let channel = member
        .ingest
        .create_channel(pb::CreateChannelRequest {
            name: "okta".into(),
            account_id: String::new(),
            region: "eu-central-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(channel.account_id, MEMBER_B);
    let record = r#"{"eventID":"okta-1","eventTime":"2026-11-24T10:00:00Z","eventSource":"okta.com","eventName":"user.session.start","userIdentity":{"type":"Okta","principalId":"alice"}}"#;
    let response = member
        .ingest
        .put_audit_events(pb::PutAuditEventsRequest {
            audit_events: vec![pb::AuditEvent {
                id: "1".into(),
                event_data: record.into(),
                event_data_checksum: String::new(),
            }],
            channel_id: channel.channel_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.failed.is_empty(), "{:?}", response.failed);
    let objects = stack.wait_for_records("central-bucket", 1).await;
    assert!(
        objects[0].key.starts_with(&format!("AWSLogs/o-testorg1234/{MEMBER_B}/CloudTrail/eu-central-1/")),
        "{}",
        objects[0].key
    );
    let delivered = &objects[0].records[0];
    assert_eq!(delivered["eventCategory"], "ActivityAuditLog");
    assert_eq!(delivered["eventType"], "ActivityLog");
    assert_eq!(delivered["recipientAccountId"], MEMBER_B);
    assert_eq!(delivered["userIdentity"]["principalId"], "alice");
}

#[sqlx::test(migrations = "./migrations")]
async fn checksums_are_verified(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    let record = event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "sum-1");
    let good = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, record.as_bytes()).as_ref());
    let response = admin
        .ingest
        .put_audit_events(pb::PutAuditEventsRequest {
            audit_events: vec![
                pb::AuditEvent { id: "good".into(), event_data: record.clone(), event_data_checksum: good },
                pb::AuditEvent { id: "bad".into(), event_data: record, event_data_checksum: "00".repeat(32) },
            ],
            channel_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.successful.len(), 1);
    assert_eq!(response.failed[0].error_code, "InvalidChecksum");
}

#[sqlx::test(migrations = "./migrations")]
async fn a_trail_with_a_kms_key_writes_objects_with_sse_kms(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    stack.create_bucket("central-bucket").await;
    let mut trail = org_trail("org-trail");
    trail.kms_key_id = "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab".into();
    logging_trail(&mut admin, trail).await;
    put(&mut admin, &[event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "kms-1")]).await;
    let objects = stack.wait_for_records("central-bucket", 1).await;
    let head =
        stack.s3_client.head_object().bucket("central-bucket").key(&objects[0].key).send().await.unwrap();
    assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"));
    assert_eq!(
        head.ssekms_key_id(),
        Some("arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    );
    assert_eq!(head.content_encoding(), Some("gzip"));
}
