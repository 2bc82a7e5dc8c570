//! Selector semantics (spec §4) over the shared real CloudTrail records and synthetic data events
//! of every data resource type. Each case states its expectation as a plain predicate over the
//! record's JSON, independently of the matcher.

use std::io::BufRead;

use orgtrail::model::record::RecordView;
use orgtrail::model::selectors::matching::selects;
use orgtrail::model::selectors::{AdvancedEventSelector, EventSelector, EventSelectors};
use serde_json::Value;

fn shared_records() -> Vec<(Value, RecordView)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/cloudtrail/records.jsonl.gz");
    let file = std::fs::File::open(path).expect("shared/data is beside the checkout");
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    let mut records = Vec::new();
    for line in reader.lines() {
        let line = line.unwrap();
        if let Ok(view) = RecordView::parse(&line) {
            records.push((serde_json::from_str(&line).unwrap(), view));
        }
    }
    assert!(records.len() > 2300);
    records
}

const DATA_TYPES: &[(&str, &str, &str)] = &[
    ("AWS::S3::Object", "s3.amazonaws.com", "arn:aws:s3:::bucket-a/path/file.txt"),
    ("AWS::S3::Object", "s3.amazonaws.com", "arn:aws:s3:::bucket-b/other.txt"),
    (
        "AWS::Lambda::Function",
        "lambda.amazonaws.com",
        "arn:aws:lambda:us-east-1:111122223333:function:helloworld",
    ),
    (
        "AWS::DynamoDB::Table",
        "dynamodb.amazonaws.com",
        "arn:aws:dynamodb:us-east-1:111122223333:table/orders",
    ),
    (
        "AWS::DynamoDB::Stream",
        "dynamodb.amazonaws.com",
        "arn:aws:dynamodb:us-east-1:111122223333:table/orders/stream/x",
    ),
    (
        "AWS::S3Outposts::Object",
        "s3-outposts.amazonaws.com",
        "arn:aws:s3-outposts:us-east-1:111122223333:outpost/op/object/k",
    ),
    ("AWS::S3::AccessPoint", "s3.amazonaws.com", "arn:aws:s3:us-east-1:111122223333:accesspoint/ap/object/k"),
    (
        "AWS::S3ObjectLambda::AccessPoint",
        "s3-object-lambda.amazonaws.com",
        "arn:aws:s3-object-lambda:us-east-1:111122223333:accesspoint/olap",
    ),
    ("AWS::EC2::Snapshot", "ebs.amazonaws.com", "arn:aws:ec2:us-east-1::snapshot/snap-1"),
    ("AWS::SNS::Topic", "sns.amazonaws.com", "arn:aws:sns:us-east-1:111122223333:alerts"),
    ("AWS::SQS::Queue", "sqs.amazonaws.com", "arn:aws:sqs:us-east-1:111122223333:jobs"),
    (
        "AWS::SecretsManager::Secret",
        "secretsmanager.amazonaws.com",
        "arn:aws:secretsmanager:us-east-1:111122223333:secret:db",
    ),
    ("AWS::Glue::Table", "glue.amazonaws.com", "arn:aws:glue:us-east-1:111122223333:table/db/t"),
    (
        "AWS::ManagedBlockchain::Node",
        "managedblockchain.amazonaws.com",
        "arn:aws:managedblockchain:us-east-1:111122223333:nodes/n",
    ),
    (
        "AWS::CloudTrail::Channel",
        "cloudtrail-data.amazonaws.com",
        "arn:aws:cloudtrail:us-east-1:111122223333:channel/c",
    ),
];

fn data_event(resource_type: &str, source: &str, arn: &str, read_only: bool) -> (Value, RecordView) {
    let json = serde_json::json!({
        "eventVersion": "1.11", "eventTime": "2026-11-24T10:00:00Z", "eventSource": source,
        "eventName": match (resource_type, read_only) {
            ("AWS::S3::Object", true) => "GetObject",
            ("AWS::S3::Object", false) => "PutObject",
            (_, true) => "GetThing",
            (_, false) => "PutThing",
        },
        "awsRegion": "us-east-1",
        "eventID": format!("{arn}-{read_only}"), "readOnly": read_only, "eventType": "AwsApiCall",
        "managementEvent": false, "recipientAccountId": "111122223333", "eventCategory": "Data",
        "resources": [{"accountId": "111122223333", "type": resource_type, "ARN": arn}]
    });
    let view = RecordView::parse(&json.to_string()).unwrap();
    (json, view)
}

fn synthetic_data_events() -> Vec<(Value, RecordView)> {
    DATA_TYPES.iter().flat_map(|(t, s, a)| [data_event(t, s, a, true), data_event(t, s, a, false)]).collect()
}

fn is_management(r: &Value) -> bool {
    match r.get("eventCategory").and_then(Value::as_str) {
        Some(category) => category == "Management",
        None => {
            r.get("managementEvent") != Some(&Value::Bool(false)) && r["eventType"] != "AwsCloudTrailInsight"
        }
    }
}

fn resource_types(r: &Value) -> Vec<String> {
    r.get("resources")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(|x| x["type"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn basic(json: &str) -> EventSelectors {
    let list: Vec<EventSelector> = serde_json::from_str(json).unwrap();
    EventSelectors::new(list, vec![]).unwrap()
}

fn advanced(json: &str) -> EventSelectors {
    let list: Vec<AdvancedEventSelector> = serde_json::from_str(json).unwrap();
    EventSelectors::new(vec![], list).unwrap()
}

type Expectation = Box<dyn Fn(&Value) -> bool>;

fn cases() -> Vec<(&'static str, EventSelectors, Expectation)> {
    vec![
        ("no selectors: all management events", EventSelectors::Default, Box::new(is_management)),
        (
            "basic ReadOnly",
            basic(r#"[{"ReadWriteType":"ReadOnly","IncludeManagementEvents":true}]"#),
            Box::new(|r| is_management(r) && r["readOnly"] == Value::Bool(true)),
        ),
        (
            "basic WriteOnly without KMS",
            basic(r#"[{"ReadWriteType":"WriteOnly","ExcludeManagementEventSources":["kms.amazonaws.com"]}]"#),
            Box::new(|r| {
                is_management(r)
                    && r["readOnly"] != Value::Bool(true)
                    && r["eventSource"] != "kms.amazonaws.com"
            }),
        ),
        (
            "basic data only: every S3 object",
            basic(
                r#"[{"IncludeManagementEvents":false,"DataResources":[{"Type":"AWS::S3::Object","Values":["arn:aws:s3"]}]}]"#,
            ),
            Box::new(|r| !is_management(r) && resource_types(r).iter().any(|t| t == "AWS::S3::Object")),
        ),
        (
            "basic: one Lambda function, exact ARN",
            basic(
                r#"[{"IncludeManagementEvents":false,"DataResources":[{"Type":"AWS::Lambda::Function","Values":["arn:aws:lambda:us-east-1:111122223333:function:helloworld"]}]}]"#,
            ),
            Box::new(|r| {
                r["resources"][0]["ARN"] == "arn:aws:lambda:us-east-1:111122223333:function:helloworld"
                    && r["eventCategory"] == "Data"
            }),
        ),
        (
            "basic: Lambda ARN is not a prefix",
            basic(
                r#"[{"IncludeManagementEvents":false,"DataResources":[{"Type":"AWS::Lambda::Function","Values":["arn:aws:lambda:us-east-1:111122223333:function:hello"]}]}]"#,
            ),
            Box::new(|_| false),
        ),
        (
            "advanced: management writes except IAM and STS",
            advanced(
                r#"[{"FieldSelectors":[{"Field":"eventCategory","Equals":["Management"]},{"Field":"readOnly","Equals":["false"]}]},
                    {"FieldSelectors":[{"Field":"eventCategory","Equals":["Management"]},{"Field":"eventSource","NotEquals":["kms.amazonaws.com","rdsdata.amazonaws.com"]},{"Field":"readOnly","Equals":["true"]}]}]"#,
            ),
            Box::new(|r| {
                is_management(r)
                    && (r["readOnly"] == Value::Bool(false)
                        || (r["readOnly"] == Value::Bool(true)
                            && r["eventSource"] != "kms.amazonaws.com"
                            && r["eventSource"] != "rdsdata.amazonaws.com"))
            }),
        ),
        (
            "advanced: DynamoDB writes",
            advanced(
                r#"[{"FieldSelectors":[{"Field":"eventCategory","Equals":["Data"]},{"Field":"resources.type","Equals":["AWS::DynamoDB::Table"]},{"Field":"readOnly","Equals":["false"]}]}]"#,
            ),
            Box::new(|r| {
                resource_types(r).iter().any(|t| t == "AWS::DynamoDB::Table")
                    && r["readOnly"] == Value::Bool(false)
                    && !is_management(r)
            }),
        ),
        (
            "advanced: S3 objects outside one bucket, names ending in Object",
            advanced(
                r#"[{"FieldSelectors":[{"Field":"eventCategory","Equals":["Data"]},{"Field":"resources.type","Equals":["AWS::S3::Object"]},
                    {"Field":"resources.ARN","NotStartsWith":["arn:aws:s3:::bucket-a/"]},{"Field":"eventName","EndsWith":["Object"]}]}]"#,
            ),
            Box::new(|r| {
                !is_management(r)
                    && resource_types(r).iter().any(|t| t == "AWS::S3::Object")
                    && !r["resources"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x["ARN"].as_str().unwrap_or("").starts_with("arn:aws:s3:::bucket-a/"))
                    && r["eventName"].as_str().unwrap_or("").ends_with("Object")
            }),
        ),
    ]
}

#[test]
fn selectors_match_cloudtrail_semantics_on_real_and_synthetic_records() {
    let mut records = shared_records();
    records.extend(synthetic_data_events());
    let mut mismatches = Vec::new();
    for (name, selectors, expected) in cases() {
        let mut selected = 0;
        for (json, view) in &records {
            let got = selects(&selectors, view);
            selected += usize::from(got);
            if got != expected(json) {
                mismatches.push(format!("{name}: {} {} -> {got}", json["eventID"], json["eventName"]));
            }
        }
        assert!(
            selected > 0 || name.contains("not a prefix"),
            "{name} selects nothing: the case proves nothing"
        );
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
}

#[test]
fn every_data_resource_type_is_selected_by_its_own_advanced_selector_only() {
    let events = synthetic_data_events();
    for (resource_type, _, _) in DATA_TYPES {
        let selectors = advanced(&format!(
            r#"[{{"FieldSelectors":[{{"Field":"eventCategory","Equals":["Data"]}},{{"Field":"resources.type","Equals":["{resource_type}"]}}]}}]"#
        ));
        for (json, view) in &events {
            let own = json["resources"][0]["type"] == *resource_type;
            assert_eq!(selects(&selectors, view), own, "{resource_type} vs {}", json["resources"][0]["type"]);
        }
        // Management events never match a data selector.
        for (_, view) in shared_records().iter().filter(|(j, _)| is_management(j)).take(50) {
            assert!(!selects(&selectors, view));
        }
    }
}
