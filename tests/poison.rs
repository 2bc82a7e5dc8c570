//! Bad records never stall anything: what CloudTrail never emits is refused at ingest with the
//! field named, what it may emit is indexed safely, and every later event of the same shard is
//! still delivered and indexed. Reads never write.

mod common;

use common::*;
use orgtrail::client::Clients;
use orgtrail::proto::v1 as pb;
use sqlx::PgPool;
use tonic::Code;

/// `len` characters that do not compress.
fn random_text(len: usize) -> String {
    let mut text = String::new();
    while text.len() < len {
        text.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    text.truncate(len);
    text
}

/// A management event of MEMBER_A in us-east-1 with `change` applied to its JSON.
fn event_with(event_id: &str, change: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut value: serde_json::Value =
        serde_json::from_str(&event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", event_id))
            .unwrap();
    change(&mut value);
    serde_json::to_string(&value).unwrap()
}

async fn lookup_event_id(clients: &mut Clients, event_id: &str) -> Result<Vec<pb::Event>, tonic::Status> {
    clients
        .events
        .lookup_events(pb::LookupEventsRequest {
            lookup_attributes: vec![pb::LookupAttribute {
                attribute_key: "EventId".into(),
                attribute_value: event_id.into(),
            }],
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().events)
}

/// Waits until LookupEvents finds `event_id`.
async fn wait_indexed(clients: &mut Clients, event_id: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if lookup_event_id(clients, event_id).await.unwrap().len() == 1 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{event_id} was never indexed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn nul_characters_are_refused_naming_the_field(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    logging_trail(&mut admin, org_trail("org")).await;
    stack.create_bucket("central-bucket").await;

    let cases: Vec<(&str, String)> = vec![
        ("eventName", event_with("nul-name", |v| v["eventName"] = "Run\u{0}Instances".into())),
        ("eventID", event_with("nul-id", |v| v["eventID"] = "nul\u{0}id".into())),
        ("eventSource", event_with("nul-source", |v| v["eventSource"] = "ec2\u{0}.amazonaws.com".into())),
        (
            "userIdentity.userName",
            event_with("nul-user", |v| v["userIdentity"]["userName"] = "ali\u{0}ce".into()),
        ),
        (
            "resources[0].ARN",
            event_with("nul-resource", |v| {
                v["resources"] =
                    serde_json::json!([{"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::b\u{0}"}])
            }),
        ),
    ];
    let records: Vec<String> = cases.iter().map(|(_, r)| r.clone()).collect();
    let response = put(&mut admin, &records).await;
    assert!(response.successful.is_empty(), "accepted: {:?}", response.successful);
    assert_eq!(response.failed.len(), cases.len());
    for (failure, (field, _)) in response.failed.iter().zip(&cases) {
        assert_eq!(failure.error_code, "InvalidField", "{failure:?}");
        assert!(
            failure.error_message.starts_with(&format!("{field}:")) && failure.error_message.contains("NUL"),
            "{field}: {}",
            failure.error_message
        );
    }

    // A lookup value with a NUL is a bad argument, not an internal error.
    let status = lookup_event_id(&mut admin, "nul\u{0}id").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("lookup_attributes[0].attribute_value"), "{}", status.message());

    // The shard goes on: a later event is delivered and indexed.
    put(&mut admin, &[event_with("after-nul", |_| {})]).await;
    wait_indexed(&mut admin, "after-nul").await;
    let delivered: Vec<String> =
        stack.wait_for_records("central-bucket", 1).await.iter().flat_map(|o| o.event_ids()).collect();
    assert_eq!(delivered, vec!["after-nul".to_owned()]);
}

#[sqlx::test(migrations = "./migrations")]
async fn very_long_names_are_indexed_and_found_and_do_not_stall_the_shard(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    logging_trail(&mut admin, org_trail("org")).await;
    stack.create_bucket("central-bucket").await;

    // Random text: a repeated character would compress below Postgres' index entry limit.
    let long_name = random_text(4000);
    let long_user = random_text(4000);
    let long_arn = format!("arn:aws:s3:::{}", random_text(4000));
    let records = vec![
        event_with("long-name", |v| v["eventName"] = long_name.clone().into()),
        event_with("long-user", |v| {
            v["userIdentity"] = serde_json::json!({"type": "IAMUser", "userName": long_user.clone()})
        }),
        event_with("long-resource", |v| {
            v["resources"] = serde_json::json!([{"type": "AWS::S3::Bucket", "ARN": long_arn.clone()}])
        }),
    ];
    let response = put(&mut admin, &records).await;
    assert_eq!(response.successful.len(), 3, "{:?}", response.failed);
    put(&mut admin, &[event_with("after-long", |_| {})]).await;
    wait_indexed(&mut admin, "after-long").await;

    // Each is in the history (found by its eventID); a lookup by a value longer than CloudTrail
    // lets a lookup ask for is refused naming the field.
    for (key, value, event_id) in [
        ("EventName", long_name.as_str(), "long-name"),
        ("Username", long_user.as_str(), "long-user"),
        ("ResourceName", long_arn.as_str(), "long-resource"),
    ] {
        assert_eq!(lookup_event_id(&mut admin, event_id).await.unwrap().len(), 1, "{event_id}");
        let status = admin
            .events
            .lookup_events(pb::LookupEventsRequest {
                lookup_attributes: vec![pb::LookupAttribute {
                    attribute_key: key.into(),
                    attribute_value: value.into(),
                }],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{key}");
        assert!(status.message().contains("lookup_attributes[0].attribute_value"), "{}", status.message());
    }
    let objects = stack.wait_for_records("central-bucket", 4).await;
    let mut delivered: Vec<String> = objects.iter().flat_map(|o| o.event_ids()).collect();
    delivered.sort();
    assert_eq!(delivered, vec!["after-long", "long-name", "long-resource", "long-user"]);
}

#[sqlx::test(migrations = "./migrations")]
async fn names_up_to_the_lookup_limit_are_found_exactly(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    logging_trail(&mut admin, org_trail("org")).await;
    stack.create_bucket("central-bucket").await;
    // 2,000 characters: the longest value a lookup may ask for, far past a B-tree entry's limit.
    let common = random_text(1999);
    let name_a = format!("{common}A");
    let name_b = format!("{common}B");
    let records = vec![
        event_with("name-a", |v| v["eventName"] = name_a.clone().into()),
        event_with("name-b", |v| v["eventName"] = name_b.clone().into()),
    ];
    put(&mut admin, &records).await;
    wait_indexed(&mut admin, "name-b").await;
    for (name, id) in [(&name_a, "name-a"), (&name_b, "name-b")] {
        let found = admin
            .events
            .lookup_events(pb::LookupEventsRequest {
                lookup_attributes: vec![pb::LookupAttribute {
                    attribute_key: "EventName".into(),
                    attribute_value: name.clone(),
                }],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        assert_eq!(found.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), vec![id]);
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn records_nested_too_deep_are_refused_with_the_limit_named(pool: PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    logging_trail(&mut admin, org_trail("org")).await;
    stack.create_bucket("central-bucket").await;

    let nested = |depth: usize| {
        let inner = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let base = event_with("x", |_| {});
        base.replacen("\"requestParameters\":null", &format!("\"requestParameters\":{inner}"), 1)
    };
    let deep = nested(100_000).replace("\"eventID\":\"x\"", "\"eventID\":\"deep\"");
    let limit = orgtrail::model::record::MAX_NESTING_DEPTH;
    // The record object itself is one level; requestParameters' value adds the rest.
    let at_limit = nested(limit - 1).replace("\"eventID\":\"x\"", "\"eventID\":\"at-limit\"");
    let past_limit = nested(limit).replace("\"eventID\":\"x\"", "\"eventID\":\"past-limit\"");
    let response = put(&mut admin, &[deep, at_limit, past_limit]).await;
    let accepted: Vec<&str> = response.successful.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(accepted, vec!["at-limit"]);
    assert_eq!(response.failed.len(), 2);
    for failure in &response.failed {
        assert_eq!(failure.error_code, "NestedTooDeep", "{failure:?}");
        assert!(failure.error_message.contains(&limit.to_string()), "{}", failure.error_message);
    }

    // The file holding the accepted record is readable by a standard consumer (Python's json).
    let objects = stack.wait_for_records("central-bucket", 1).await;
    let body = stack
        .s3_client
        .get_object()
        .bucket("central-bucket")
        .key(&objects[0].key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let python = std::env::var("ORGTRAIL_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = std::process::Command::new(python)
        .args(["-c", "import gzip, json, sys; print(len(json.loads(gzip.decompress(sys.stdin.buffer.read()))['Records']))"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "json.loads fails on the delivered file");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1");
}

#[sqlx::test(migrations = "./migrations")]
async fn listing_public_keys_never_creates_one(pool: PgPool) {
    let api = start(pool.clone()).await;
    let mut auditor = api.auditor().await;
    let keys = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM signing_keys").fetch_one(&pool).await.unwrap()
    };
    for region in ["", "eu-west-1", "ap-southeast-2"] {
        let listed = auditor
            .keys
            .list_public_keys(pb::ListPublicKeysRequest { region: region.into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert!(listed.public_key_list.is_empty(), "{region}: {listed:?}");
    }
    assert_eq!(keys().await, 0, "a read created a signing key");
}
