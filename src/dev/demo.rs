//! `orgtrail dev --demo`: a few member accounts, an organization trail with data events selected,
//! and a steady stream of realistic synthetic API activity, so a newcomer sees partitioned log files
//! appear in the bucket within seconds.

use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

use crate::client::{Clients, Target, connect};
use crate::proto::v1 as pb;

pub const DEMO_ACCOUNTS: &[(&str, &str)] =
    &[("210987654321", "payments"), ("345678901234", "data-platform"), ("456789012345", "sandbox")];
const REGIONS: &[&str] = &["us-east-1", "eu-west-1", "ap-southeast-2"];
const PEOPLE: &[&str] = &["alice", "bob", "carol", "deploy-bot"];
const AGENTS: &[&str] = &[
    "aws-cli/2.17.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.11.8",
    "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#5.10 lang/python#3.12.1",
    "terraform-provider-aws/5.40.0 (+https://registry.terraform.io)",
    "console.amazonaws.com",
];

/// (eventSource, eventName, readOnly, data resource type if a data event)
const CALLS: &[(&str, &str, bool, Option<&str>)] = &[
    ("ec2.amazonaws.com", "DescribeInstances", true, None),
    ("ec2.amazonaws.com", "RunInstances", false, None),
    ("ec2.amazonaws.com", "AuthorizeSecurityGroupIngress", false, None),
    ("iam.amazonaws.com", "CreateAccessKey", false, None),
    ("iam.amazonaws.com", "ListRoles", true, None),
    ("sts.amazonaws.com", "AssumeRole", true, None),
    ("s3.amazonaws.com", "CreateBucket", false, None),
    ("s3.amazonaws.com", "GetObject", true, Some("AWS::S3::Object")),
    ("s3.amazonaws.com", "PutObject", false, Some("AWS::S3::Object")),
    ("dynamodb.amazonaws.com", "PutItem", false, Some("AWS::DynamoDB::Table")),
    ("lambda.amazonaws.com", "Invoke", false, Some("AWS::Lambda::Function")),
    ("kms.amazonaws.com", "Decrypt", true, None),
    ("cloudtrail.amazonaws.com", "LookupEvents", true, None),
];

fn demo_event(rng: &mut impl Rng) -> String {
    let (account, _) = DEMO_ACCOUNTS.choose(rng).copied().unwrap_or(DEMO_ACCOUNTS[0]);
    let (source, name, read_only, data_type) = CALLS.choose(rng).copied().unwrap_or(CALLS[0]);
    let global = matches!(source, "iam.amazonaws.com" | "sts.amazonaws.com");
    let region = if global { "us-east-1" } else { REGIONS.choose(rng).copied().unwrap_or("us-east-1") };
    let person = PEOPLE.choose(rng).copied().unwrap_or("alice");
    let denied = rng.random_bool(0.08);
    let now = Utc::now();
    let mut record = json!({
        "eventVersion": "1.11",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": format!("AROADEMO{}:{person}", account),
            "arn": format!("arn:aws:sts::{account}:assumed-role/PlatformAdmin/{person}"),
            "accountId": account,
            "accessKeyId": format!("ASIADEMO{:012}", rng.random_range(0..1_000_000_000_000u64)),
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": format!("AROADEMO{account}"),
                    "arn": format!("arn:aws:iam::{account}:role/PlatformAdmin"), "accountId": account, "userName": "PlatformAdmin"},
                "attributes": {"creationDate": (now - chrono::Duration::minutes(17)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    "mfaAuthenticated": "true"}
            }
        },
        "eventTime": now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": source,
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": format!("198.51.100.{}", rng.random_range(1..255)),
        "userAgent": AGENTS.choose(rng).copied().unwrap_or(AGENTS[0]),
    });
    let object = record.as_object_mut().expect("a JSON object literal");
    if denied {
        object.insert("errorCode".into(), "AccessDenied".into());
        object.insert(
            "errorMessage".into(),
            format!("User: arn:aws:sts::{account}:assumed-role/PlatformAdmin/{person} is not authorized to perform: {name}").into(),
        );
    }
    object.insert("requestParameters".into(), json!({"demo": true}));
    object.insert(
        "responseElements".into(),
        if read_only || denied { Value::Null } else { json!({"ok": true}) },
    );
    object.insert("requestID".into(), uuid::Uuid::new_v4().to_string().into());
    object.insert("eventID".into(), uuid::Uuid::new_v4().to_string().into());
    object.insert("readOnly".into(), read_only.into());
    if let Some(resource_type) = data_type {
        let arn = match resource_type {
            "AWS::S3::Object" => {
                format!("arn:aws:s3:::demo-{account}/reports/{}.csv", rng.random_range(1..100))
            }
            "AWS::DynamoDB::Table" => format!("arn:aws:dynamodb:{region}:{account}:table/orders"),
            _ => format!("arn:aws:lambda:{region}:{account}:function:thumbnailer"),
        };
        object.insert("resources".into(), json!([{"accountId": account, "type": resource_type, "ARN": arn}]));
    }
    object.insert("eventType".into(), "AwsApiCall".into());
    object.insert("managementEvent".into(), data_type.is_none().into());
    object.insert("recipientAccountId".into(), account.into());
    object.insert("eventCategory".into(), if data_type.is_some() { "Data" } else { "Management" }.into());
    object.insert(
        "tlsDetails".into(),
        json!({"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
               "clientProvidedHostHeader": format!("{}.{region}.amazonaws.com", source.trim_end_matches(".amazonaws.com"))}),
    );
    record.to_string()
}

async fn setup(clients: &mut Clients, bucket: &str) -> anyhow::Result<()> {
    for (account_id, name) in DEMO_ACCOUNTS {
        let known = clients
            .accounts
            .describe_account(pb::DescribeAccountRequest { account_id: (*account_id).into() })
            .await;
        if known.is_err() {
            clients
                .accounts
                .register_account(pb::RegisterAccountRequest {
                    account_id: (*account_id).into(),
                    name: (*name).into(),
                    email: format!("{name}@example.com"),
                })
                .await?;
        }
    }
    let exists =
        clients.trails.get_trail(pb::GetTrailRequest { name: "demo-org-trail".into() }).await.is_ok();
    if !exists {
        clients
            .trails
            .create_trail(pb::CreateTrailRequest {
                name: "demo-org-trail".into(),
                s3_bucket_name: bucket.into(),
                is_organization_trail: true,
                delivery_interval_seconds: Some(5),
                log_file_validation_enabled: true,
                ..Default::default()
            })
            .await?;
        let field = |name: &str, value: &str| pb::AdvancedFieldSelector {
            field: name.into(),
            equals: vec![value.into()],
            ..Default::default()
        };
        let mut selectors = vec![pb::AdvancedEventSelector {
            name: "all management events".into(),
            field_selectors: vec![field("eventCategory", "Management")],
        }];
        for resource_type in ["AWS::S3::Object", "AWS::DynamoDB::Table", "AWS::Lambda::Function"] {
            selectors.push(pb::AdvancedEventSelector {
                name: format!("data events of {resource_type}"),
                field_selectors: vec![field("eventCategory", "Data"), field("resources.type", resource_type)],
            });
        }
        clients
            .trails
            .put_event_selectors(pb::PutEventSelectorsRequest {
                trail_name: "demo-org-trail".into(),
                event_selectors: vec![],
                advanced_event_selectors: selectors,
            })
            .await?;
    }
    clients.trails.start_logging(pb::StartLoggingRequest { name: "demo-org-trail".into() }).await?;
    Ok(())
}

/// Sets the demo up and sends about 50 events a second until `shutdown` resolves.
pub async fn run(target: Target, bucket: String, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut clients = connect(&target).await?;
    setup(&mut clients, &bucket).await?;
    tracing::info!("demo: 3 member accounts, trail demo-org-trail, synthetic traffic flowing");
    tokio::pin!(shutdown);
    loop {
        let records: Vec<String> = {
            let mut rng = rand::rng();
            let count = rng.random_range(5..15);
            (0..count).map(|_| demo_event(&mut rng)).collect()
        };
        let audit_events = records
            .into_iter()
            .enumerate()
            .map(|(i, event_data)| pb::AuditEvent {
                id: format!("d{i}"),
                event_data,
                event_data_checksum: String::new(),
            })
            .collect();
        if let Err(status) = clients
            .ingest
            .put_audit_events(pb::PutAuditEventsRequest { audit_events, channel_id: String::new() })
            .await
        {
            tracing::warn!(%status, "demo traffic rejected");
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::RecordView;

    #[test]
    fn demo_events_are_valid_records() {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let record = demo_event(&mut rng);
            RecordView::parse(&record).unwrap();
        }
    }
}
