//! Event history (spec §5.3) over the shared real CloudTrail records, pushed through the real
//! pipeline (ingest → staging → worker → history tap). Every expectation is computed here from
//! the records' JSON with plain predicates, independently of the index.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;

use chrono::{DateTime, Utc};
use common::*;
use orgtrail::client::Clients;
use orgtrail::proto::v1 as pb;
use orgtrail::store::tokens::Role;
use serde_json::Value;
use sqlx::PgPool;
use tonic::Code;

const RECORDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/cloudtrail/records.jsonl.gz");

/// (recipientAccountId, eventID): what identifies an event.
type Key = (String, String);

/// One shared record the pipeline accepted.
#[derive(Debug, Clone)]
struct Record {
    text: String,
    json: Value,
}

impl Record {
    fn key(&self) -> Key {
        (self.text_of("recipientAccountId"), self.text_of("eventID"))
    }

    fn text_of(&self, field: &str) -> String {
        self.json[field].as_str().unwrap_or_default().to_owned()
    }

    fn time(&self) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(self.json["eventTime"].as_str().unwrap()).unwrap().with_timezone(&Utc)
    }

    /// The spec's category rule (§1.2): eventCategory, or for records older than 1.07 the
    /// Insights event type, managementEvent=false for data events, management otherwise.
    fn category(&self) -> &str {
        if let Some(category) = self.json["eventCategory"].as_str() {
            return category;
        }
        if self.json["eventType"] == "AwsCloudTrailInsight" {
            "Insight"
        } else if self.json["managementEvent"] == false {
            "Data"
        } else {
            "Management"
        }
    }

    fn is_insight(&self) -> bool {
        self.category() == "Insight"
    }

    fn non_empty(value: &Value) -> Option<String> {
        value.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
    }

    /// CloudTrail's Username as README documents it.
    fn username(&self) -> Option<String> {
        let identity = &self.json["userIdentity"];
        if let Some(name) = Self::non_empty(&identity["userName"]) {
            return Some(name);
        }
        match identity["type"].as_str() {
            Some("AssumedRole" | "FederatedUser") => {
                let arn = identity["arn"].as_str()?;
                let session = &arn[arn.rfind('/')? + 1..];
                (!session.is_empty()).then(|| session.to_owned())
            }
            Some("Root") => Some("root".to_owned()),
            Some("AWSService") => Self::non_empty(&identity["invokedBy"]),
            _ => None,
        }
    }

    fn event_name(&self) -> String {
        if self.is_insight() {
            self.json["insightDetails"]["eventName"].as_str().unwrap_or_default().to_owned()
        } else {
            self.text_of("eventName")
        }
    }

    fn event_source(&self) -> String {
        if self.is_insight() {
            self.json["insightDetails"]["eventSource"].as_str().unwrap_or_default().to_owned()
        } else {
            self.text_of("eventSource")
        }
    }

    fn resources(&self) -> Vec<(String, String)> {
        let Some(list) = self.json["resources"].as_array() else { return Vec::new() };
        list.iter()
            .map(|r| {
                (
                    r["type"].as_str().unwrap_or_default().to_owned(),
                    r["ARN"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    fn read_only(&self) -> Option<String> {
        match &self.json["readOnly"] {
            Value::Bool(b) => Some(b.to_string()),
            Value::String(s) if s == "true" || s == "false" => Some(s.clone()),
            _ => None,
        }
    }

    /// The values this record has for a lookup attribute.
    fn values(&self, key: &str) -> Vec<String> {
        match key {
            "EventId" => vec![self.text_of("eventID")],
            "EventName" => vec![self.event_name()],
            "EventSource" => vec![self.event_source()],
            "ReadOnly" => self.read_only().into_iter().collect(),
            "Username" => self.username().into_iter().collect(),
            "AccessKeyId" => Self::non_empty(&self.json["userIdentity"]["accessKeyId"]).into_iter().collect(),
            "ResourceType" => {
                self.resources().into_iter().map(|(t, _)| t).filter(|t| !t.is_empty()).collect()
            }
            "ResourceName" => {
                self.resources().into_iter().map(|(_, n)| n).filter(|n| !n.is_empty()).collect()
            }
            other => panic!("no attribute {other}"),
        }
    }
}

const ATTRIBUTES: [&str; 8] = [
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
];

/// The shared records loaded through the pipeline.
struct Loaded {
    stack: Stack,
    admin: Clients,
    /// Accepted by ingest (first copies), in file order.
    accepted: Vec<Record>,
}

impl Loaded {
    /// What the history should hold: accepted management and Insights events.
    fn kept(&self) -> impl Iterator<Item = &Record> {
        self.accepted.iter().filter(|r| matches!(r.category(), "Management" | "Insight"))
    }

    fn management(&self) -> Vec<&Record> {
        self.kept().filter(|r| !r.is_insight()).collect()
    }

    fn keys<'a>(records: impl IntoIterator<Item = &'a Record>) -> BTreeSet<Key> {
        records.into_iter().map(Record::key).collect()
    }
}

fn shared_lines() -> Vec<String> {
    let file = std::fs::File::open(RECORDS).expect("shared/data is beside the checkout");
    std::io::BufReader::new(flate2::read::GzDecoder::new(file)).lines().map(Result::unwrap).collect()
}

async fn load(pool: PgPool) -> Loaded {
    let stack = stack(pool.clone()).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    let lines = shared_lines();
    register_accounts_of(&mut admin, &lines).await;
    // In file order, one call after the other: the first copy of a repeated eventID wins.
    let mut accepted = Vec::new();
    for chunk in lines.chunks(100) {
        let response = put(&mut admin, chunk).await;
        for entry in response.successful {
            if !entry.duplicate {
                let index: usize = entry.id.trim_start_matches('e').parse().unwrap();
                let text = chunk[index].clone();
                accepted.push(Record { json: serde_json::from_str(&text).unwrap(), text });
            }
        }
    }
    assert!(accepted.len() > 2000, "only {} shared records were accepted", accepted.len());
    let loaded = Loaded { stack, admin, accepted };
    let expected = loaded.kept().count() as i64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let indexed = orgtrail::features::history::index::count(&pool).await.unwrap();
        if indexed == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{indexed} of {expected} events indexed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    loaded
}

fn attribute(key: &str, value: &str) -> Vec<pb::LookupAttribute> {
    vec![pb::LookupAttribute { attribute_key: key.into(), attribute_value: value.into() }]
}

fn timestamp(time: DateTime<Utc>) -> Option<pbjson_types::Timestamp> {
    Some(time.into())
}

fn event_time(event: &pb::Event) -> DateTime<Utc> {
    let t = event.event_time.as_ref().unwrap();
    DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap()
}

/// Every page of a lookup; checks that events come newest first and each once.
async fn lookup_all(clients: &mut Clients, mut request: pb::LookupEventsRequest) -> Vec<pb::Event> {
    let mut events: Vec<pb::Event> = Vec::new();
    loop {
        let page = clients.events.lookup_events(request.clone()).await.unwrap().into_inner();
        let page_size = if request.max_results == 0 { 50 } else { request.max_results as usize };
        assert!(page.events.len() <= page_size);
        events.extend(page.events);
        if page.next_token.is_empty() {
            break;
        }
        request.next_token = page.next_token;
    }
    assert!(events.windows(2).all(|w| event_time(&w[0]) >= event_time(&w[1])), "newest first");
    let keys: BTreeSet<Key> = events.iter().map(|e| (e.account_id.clone(), e.event_id.clone())).collect();
    assert_eq!(keys.len(), events.len(), "each event once");
    events
}

fn keys_of(events: &[pb::Event]) -> BTreeSet<Key> {
    events.iter().map(|e| (e.account_id.clone(), e.event_id.clone())).collect()
}

#[sqlx::test(migrations = "./migrations")]
async fn each_lookup_attribute_returns_exactly_the_matching_records(pool: PgPool) {
    let loaded = load(pool).await;
    let mut admin = loaded.admin.clone();
    let management: Vec<Record> = loaded.management().into_iter().cloned().collect();
    let mut lookups = 0;
    for key in ATTRIBUTES {
        let mut by_value: BTreeMap<String, BTreeSet<Key>> = BTreeMap::new();
        for record in &management {
            for value in record.values(key) {
                by_value.entry(value).or_default().insert(record.key());
            }
        }
        assert!(!by_value.is_empty(), "the shared records have {key} values");
        // Every value, except event ids: every 7th (and all of those shared by several events).
        let values: Vec<(&String, &BTreeSet<Key>)> = by_value
            .iter()
            .enumerate()
            .filter(|(i, (_, keys))| key != "EventId" || i % 7 == 0 || keys.len() > 1)
            .map(|(_, entry)| entry)
            .collect();
        for (value, expected) in values {
            let request =
                pb::LookupEventsRequest { lookup_attributes: attribute(key, value), ..Default::default() };
            let found = keys_of(&lookup_all(&mut admin, request).await);
            assert_eq!(&found, expected, "{key}={value}");
            lookups += 1;
        }
    }
    assert!(lookups > 500, "{lookups} lookups");
    // A value no record has finds nothing.
    let request = pb::LookupEventsRequest {
        lookup_attributes: attribute("Username", "nobody-at-all"),
        ..Default::default()
    };
    assert!(lookup_all(&mut admin, request).await.is_empty());
}

#[sqlx::test(migrations = "./migrations")]
async fn pages_return_every_record_once_newest_first_in_cloudtrails_event_shape(pool: PgPool) {
    let loaded = load(pool).await;
    let mut admin = loaded.admin.clone();
    let request = pb::LookupEventsRequest { max_results: 7, ..Default::default() };
    let events = lookup_all(&mut admin, request).await;
    let management = loaded.management();
    assert_eq!(keys_of(&events), Loaded::keys(management.iter().copied()));
    let by_key: HashMap<Key, &Record> = management.iter().map(|r| (r.key(), *r)).collect();
    for event in &events {
        let record = by_key[&(event.account_id.clone(), event.event_id.clone())];
        assert_eq!(event.cloud_trail_event, record.text, "the record exactly as received");
        assert_eq!(event_time(event), record.time());
        assert_eq!(event.event_name, record.event_name());
        assert_eq!(event.event_source, record.event_source());
        assert_eq!(event.region, record.text_of("awsRegion"));
        assert_eq!(event.read_only, record.read_only().unwrap_or_default());
        assert_eq!(event.username, record.username().unwrap_or_default());
        assert_eq!(event.access_key_id, record.values("AccessKeyId").join(""));
        let resources: Vec<(String, String)> =
            event.resources.iter().map(|r| (r.resource_type.clone(), r.resource_name.clone())).collect();
        assert_eq!(resources, record.resources());
    }

    // A token belongs to its parameters.
    let first = admin
        .events
        .lookup_events(pb::LookupEventsRequest { max_results: 7, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let reused = admin
        .events
        .lookup_events(pb::LookupEventsRequest {
            max_results: 7,
            next_token: first.next_token.clone(),
            lookup_attributes: attribute("ReadOnly", "true"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument);
    assert!(reused.message().starts_with("next_token"), "{}", reused.message());
    // The page size is not one of them.
    let next = admin
        .events
        .lookup_events(pb::LookupEventsRequest {
            max_results: 3,
            next_token: first.next_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys_of(&next.events), keys_of(&events[7..10]));
}

#[sqlx::test(migrations = "./migrations")]
async fn time_bounds_are_inclusive(pool: PgPool) {
    let loaded = load(pool).await;
    let mut admin = loaded.admin.clone();
    let management = loaded.management();
    // The busiest second: several events share it.
    let mut per_time: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for record in &management {
        *per_time.entry(record.time()).or_default() += 1;
    }
    let (&busiest, &count) = per_time.iter().max_by_key(|(_, n)| **n).unwrap();
    assert!(count > 1);
    let later = *per_time.keys().filter(|t| **t > busiest).nth(3).unwrap();
    let cases = [
        (Some(busiest), Some(busiest)),
        (Some(busiest), None),
        (None, Some(busiest)),
        (Some(busiest), Some(later)),
    ];
    for (start, end) in cases {
        let expected = Loaded::keys(
            management
                .iter()
                .copied()
                .filter(|r| start.is_none_or(|s| r.time() >= s) && end.is_none_or(|e| r.time() <= e)),
        );
        let request = pb::LookupEventsRequest {
            start_time: start.and_then(timestamp),
            end_time: end.and_then(timestamp),
            ..Default::default()
        };
        assert_eq!(keys_of(&lookup_all(&mut admin, request).await), expected, "{start:?}..={end:?}");
    }
    // Bounds and an attribute together.
    let name = management.iter().find(|r| r.time() == busiest).unwrap().event_name();
    let expected =
        Loaded::keys(management.iter().copied().filter(|r| r.time() >= busiest && r.event_name() == name));
    let request = pb::LookupEventsRequest {
        lookup_attributes: attribute("EventName", &name),
        start_time: timestamp(busiest),
        ..Default::default()
    };
    assert_eq!(keys_of(&lookup_all(&mut admin, request).await), expected);
}

#[sqlx::test(migrations = "./migrations")]
async fn members_see_only_their_own_account(pool: PgPool) {
    let loaded = load(pool).await;
    let mut admin = loaded.admin.clone();
    let management = loaded.management();
    let mut per_account: BTreeMap<String, usize> = BTreeMap::new();
    for record in &management {
        *per_account.entry(record.text_of("recipientAccountId")).or_default() += 1;
    }
    let (busiest, _) = per_account.iter().max_by_key(|(_, n)| **n).unwrap();
    let other = per_account.keys().find(|a| *a != busiest).unwrap();
    let own =
        Loaded::keys(management.iter().copied().filter(|r| &r.text_of("recipientAccountId") == busiest));

    let mut member = loaded.stack.api.member(busiest).await;
    let everything = lookup_all(&mut member, pb::LookupEventsRequest::default()).await;
    assert_eq!(keys_of(&everything), own, "a member's lookups cover its account only");
    let named = pb::LookupEventsRequest { account_id: busiest.clone(), ..Default::default() };
    assert_eq!(keys_of(&lookup_all(&mut member, named.clone()).await), own);
    let elsewhere = pb::LookupEventsRequest { account_id: other.clone(), ..Default::default() };
    let denied = member.events.lookup_events(elsewhere.clone()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    // With an attribute that other accounts' events have too.
    let name = management.iter().find(|r| &r.text_of("recipientAccountId") == other).unwrap().event_name();
    let expected = Loaded::keys(
        management
            .iter()
            .copied()
            .filter(|r| &r.text_of("recipientAccountId") == busiest && r.event_name() == name),
    );
    let by_name =
        pb::LookupEventsRequest { lookup_attributes: attribute("EventName", &name), ..Default::default() };
    assert_eq!(keys_of(&lookup_all(&mut member, by_name).await), expected);

    // Admins filter by account, auditors see the whole organization.
    assert_eq!(keys_of(&lookup_all(&mut admin, named).await), own);
    assert_eq!(
        keys_of(&lookup_all(&mut admin, elsewhere).await),
        Loaded::keys(management.iter().copied().filter(|r| &r.text_of("recipientAccountId") == other))
    );
    let mut auditor = loaded.stack.api.auditor().await;
    assert_eq!(
        keys_of(&lookup_all(&mut auditor, pb::LookupEventsRequest::default()).await),
        Loaded::keys(management.iter().copied())
    );
    // And by region.
    let region = management[0].text_of("awsRegion");
    let in_region = pb::LookupEventsRequest { region: region.clone(), ..Default::default() };
    assert_eq!(
        keys_of(&lookup_all(&mut auditor, in_region).await),
        Loaded::keys(management.iter().copied().filter(|r| r.text_of("awsRegion") == region))
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn data_events_are_absent_and_insights_come_only_with_their_category(pool: PgPool) {
    let loaded = load(pool).await;
    let mut admin = loaded.admin.clone();
    let data: Vec<&Record> = loaded.accepted.iter().filter(|r| r.category() == "Data").collect();
    assert!(!data.is_empty(), "the shared records hold a data event");
    for record in data {
        for event_category in ["", "insight"] {
            let request = pb::LookupEventsRequest {
                lookup_attributes: attribute("EventId", &record.text_of("eventID")),
                event_category: event_category.into(),
                ..Default::default()
            };
            assert!(lookup_all(&mut admin, request).await.is_empty(), "data event {:?}", record.key());
        }
    }

    let insights: Vec<&Record> = loaded.kept().filter(|r| r.is_insight()).collect();
    assert!(!insights.is_empty(), "the shared records hold Insights events");
    let request = pb::LookupEventsRequest { event_category: "insight".into(), ..Default::default() };
    let found = lookup_all(&mut admin, request).await;
    assert_eq!(keys_of(&found), Loaded::keys(insights.iter().copied()));
    let without = lookup_all(&mut admin, pb::LookupEventsRequest::default()).await;
    assert!(keys_of(&without).is_disjoint(&Loaded::keys(insights.iter().copied())), "no Insights by default");
    for key in ["EventId", "EventName", "EventSource"] {
        let value = insights[0].values(key).remove(0);
        let request = pb::LookupEventsRequest {
            lookup_attributes: attribute(key, &value),
            event_category: "insight".into(),
            ..Default::default()
        };
        let expected = Loaded::keys(insights.iter().copied().filter(|r| r.values(key).contains(&value)));
        assert_eq!(keys_of(&lookup_all(&mut admin, request).await), expected, "{key}={value}");
    }
}

/// The field path an InvalidArgument names first.
async fn refused(clients: &mut Clients, request: pb::LookupEventsRequest) -> String {
    let status = clients.events.lookup_events(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    status.message().split(':').next().unwrap_or_default().to_owned()
}

#[sqlx::test(migrations = "./migrations")]
async fn bad_lookups_are_refused_naming_the_field(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    let now = Utc::now();
    let two = vec![
        pb::LookupAttribute { attribute_key: "EventName".into(), attribute_value: "a".into() },
        pb::LookupAttribute { attribute_key: "EventSource".into(), attribute_value: "b".into() },
    ];
    let cases = [
        (pb::LookupEventsRequest { lookup_attributes: two, ..Default::default() }, "lookup_attributes"),
        (
            pb::LookupEventsRequest { lookup_attributes: attribute("UserName", "a"), ..Default::default() },
            "lookup_attributes[0].attribute_key",
        ),
        (
            pb::LookupEventsRequest { lookup_attributes: attribute("EventName", ""), ..Default::default() },
            "lookup_attributes[0].attribute_value",
        ),
        (
            pb::LookupEventsRequest { lookup_attributes: attribute("ReadOnly", "yes"), ..Default::default() },
            "lookup_attributes[0].attribute_value",
        ),
        (
            pb::LookupEventsRequest {
                lookup_attributes: attribute("Username", "alice"),
                event_category: "insight".into(),
                ..Default::default()
            },
            "lookup_attributes[0].attribute_key",
        ),
        (
            pb::LookupEventsRequest {
                start_time: timestamp(now),
                end_time: timestamp(now - chrono::Duration::seconds(1)),
                ..Default::default()
            },
            "start_time",
        ),
        (
            pb::LookupEventsRequest { event_category: "management".into(), ..Default::default() },
            "event_category",
        ),
        (pb::LookupEventsRequest { max_results: 51, ..Default::default() }, "max_results"),
        (pb::LookupEventsRequest { max_results: -1, ..Default::default() }, "max_results"),
        (pb::LookupEventsRequest { next_token: "not-a-token".into(), ..Default::default() }, "next_token"),
        (pb::LookupEventsRequest { account_id: "12".into(), ..Default::default() }, "account_id"),
        (pb::LookupEventsRequest { region: "Not A Region".into(), ..Default::default() }, "region"),
    ];
    for (request, field) in cases {
        assert_eq!(refused(&mut admin, request.clone()).await, field, "{request:?}");
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn the_aws_cli_looks_events_up_with_its_automatic_pagination(pool: PgPool) {
    let loaded = load(pool).await;
    let endpoint = format!("http://{}", loaded.stack.api.cloudtrail_api().await);
    let cli = AwsCli::new(loaded.stack.api.access_key(Role::Auditor, None).await);
    let management: Vec<Record> = loaded.management().into_iter().cloned().collect();
    let insight_count = loaded.kept().filter(|r| r.is_insight()).count();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for record in &management {
        *counts.entry(record.event_source()).or_default() += 1;
    }
    // A source with a few pages' worth of events at 4 per page.
    let (source, _) = counts.iter().filter(|(_, n)| (9..=60).contains(*n)).max_by_key(|(_, n)| **n).unwrap();
    let source = source.clone();
    let lookup = format!("AttributeKey=EventSource,AttributeValue={source}");
    // The aws CLI blocks: it runs beside the test's runtime, which serves its calls.
    tokio::task::spawn_blocking(move || {
        let answer = cli.run(
            &[],
            &[
                "cloudtrail",
                "--endpoint-url",
                &endpoint,
                "lookup-events",
                "--lookup-attributes",
                &lookup,
                "--page-size",
                "4",
            ],
        );
        let events = answer["Events"].as_array().unwrap();
        let expected: Vec<&Record> = management.iter().filter(|r| r.event_source() == source).collect();
        assert_eq!(events.len(), expected.len(), "every page fetched");
        let found: BTreeSet<String> =
            events.iter().map(|e| e["EventId"].as_str().unwrap().to_owned()).collect();
        assert_eq!(found, expected.iter().map(|r| r.text_of("eventID")).collect());
        let by_id: HashMap<String, &Record> = expected.iter().map(|r| (r.text_of("eventID"), *r)).collect();
        let mut previous = f64::INFINITY;
        for event in events {
            let record = by_id[event["EventId"].as_str().unwrap()];
            assert_eq!(event["CloudTrailEvent"].as_str().unwrap(), record.text);
            assert_eq!(event["EventSource"], source.as_str());
            assert_eq!(event["EventName"], record.event_name().as_str());
            // awscli 1.x prints the epoch seconds it received (its default timestamp format).
            let seconds = event["EventTime"].as_f64().unwrap();
            assert_eq!(DateTime::from_timestamp_millis((seconds * 1000.0) as i64).unwrap(), record.time());
            assert!(seconds <= previous, "newest first");
            previous = seconds;
            if let Some(username) = record.username() {
                assert_eq!(event["Username"], username.as_str());
            }
        }

        // Insights by category; CloudTrail's exceptions for bad input.
        let insights = cli.run(
            &[],
            &["cloudtrail", "--endpoint-url", &endpoint, "lookup-events", "--event-category", "insight"],
        );
        assert_eq!(insights["Events"].as_array().unwrap().len(), insight_count);
        let base = ["cloudtrail", "--endpoint-url", endpoint.as_str(), "lookup-events"];
        let failing = |extra: &[&str]| cli.run_failing(&[], &[base.as_slice(), extra].concat());
        assert!(failing(&["--max-results", "51"]).contains("InvalidMaxResultsException"));
        assert!(
            failing(&["--lookup-attributes", "AttributeKey=Nope,AttributeValue=x"])
                .contains("InvalidLookupAttributesException")
        );
        assert!(
            failing(&["--start-time", "2026-01-02T00:00:00Z", "--end-time", "2026-01-01T00:00:00Z"])
                .contains("InvalidTimeRangeException")
        );
        assert!(failing(&["--event-category", "data"]).contains("InvalidEventCategoryException"));
        assert!(failing(&["--starting-token", "bm90LWEtdG9rZW4"]).contains("InvalidNextTokenException"));
    })
    .await
    .unwrap();
}

#[sqlx::test(migrations = "./migrations")]
async fn orgtrail_events_lookup_prints_tables_and_json(pool: PgPool) {
    let loaded = load(pool).await;
    let token = loaded.stack.api.token(Role::Admin, None).await;
    let management = loaded.management();
    let record = management.iter().find(|r| r.username().is_some()).unwrap();
    let username = record.username().unwrap();
    let expected =
        Loaded::keys(management.iter().copied().filter(|r| r.username().as_deref() == Some(&username)));
    let endpoint = loaded.stack.api.endpoint();
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
    let attribute = format!("AttributeKey=Username,AttributeValue={username}");
    let (ok, stdout, stderr) = run(&[
        "--output",
        "json",
        "events",
        "lookup",
        "--lookup-attributes",
        &attribute,
        "--max-results",
        "1000",
    ])
    .await;
    assert!(ok, "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    let found: BTreeSet<Key> = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["account_id"].as_str().unwrap().to_owned(), e["event_id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(found, expected);

    let (ok, stdout, _) = run(&["events", "lookup", "--max-results", "3"]).await;
    assert!(ok);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("EVENT TIME"), "{stdout}");
    assert_eq!(lines.len(), 4, "a header and three events: {stdout}");

    let (ok, _, stderr) =
        run(&["events", "lookup", "--start-time", "2026-01-02", "--end-time", "2026-01-01"]).await;
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("start_time"), "{stderr}");
}

fn entry<'a>(
    account: &'a str,
    event_id: &'a str,
    time: DateTime<Utc>,
    record: &'a str,
) -> orgtrail::features::history::index::NewEntry<'a> {
    let view = orgtrail::model::record::RecordView::parse(record).unwrap();
    orgtrail::features::history::index::NewEntry {
        event_time: time,
        account_id: account,
        region: "us-east-1",
        event_id,
        fields: orgtrail::model::history::HistoryFields::of(record, &view),
        record,
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn an_event_twice_in_one_batch_is_one_row_with_its_resources_once(pool: PgPool) {
    orgtrail::node::maintenance::prepare(&pool, Default::default()).await.unwrap();
    let mut json: Value =
        serde_json::from_str(&event(MEMBER_A, "us-east-1", "s3.amazonaws.com", "CreateBucket", "e-1"))
            .unwrap();
    let now = Utc::now();
    json["eventTime"] = now.format("%Y-%m-%dT%H:%M:%SZ").to_string().into();
    json["resources"] = serde_json::json!([{"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::b"}]);
    let record = json.to_string();
    let time = DateTime::parse_from_rfc3339(json["eventTime"].as_str().unwrap()).unwrap().with_timezone(&Utc);
    // Across batches the history tap's cursor keeps an event from coming twice (the crash tests
    // check it under kill -9); within one batch the index itself leaves the copy out.
    let mut conn = pool.acquire().await.unwrap();
    let one = entry(MEMBER_A, "e-1", time, &record);
    let other_time = entry(MEMBER_A, "e-1", time - chrono::Duration::seconds(1), &record);
    let indexed =
        orgtrail::features::history::index::index(&mut conn, &[one.clone(), one, other_time]).await.unwrap();
    assert_eq!(indexed, 2, "the copy is left out; the same eventID at another time is another event");
    drop(conn);
    assert_eq!(orgtrail::features::history::index::count(&pool).await.unwrap(), 2);
    let postings: i64 =
        sqlx::query_scalar("SELECT count(*) FROM event_history_resources").fetch_one(&pool).await.unwrap();
    assert_eq!(postings, 4, "one type and one name posting for each of the two events");
    let week = orgtrail::features::history::index::week_start(now.date_naive());
    let in_today: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM event_history_w{}", week.format("%Y%m%d")))
            .fetch_one(&pool)
            .await
            .unwrap();
    let this_week = [time, time - chrono::Duration::seconds(1)]
        .iter()
        .filter(|t| orgtrail::features::history::index::week_start(t.date_naive()) == week)
        .count() as i64;
    assert_eq!(in_today, this_week, "this week's partition exists ahead and takes it");
}

#[sqlx::test(migrations = "./migrations")]
async fn expiry_drops_weekly_partitions_and_backfills_get_their_own(pool: PgPool) {
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    orgtrail::features::history::index::maintain_partitions(&pool, day("2026-06-10"), 90).await.unwrap();
    let record = event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "x");
    let mut conn = pool.acquire().await.unwrap();
    // A backfilled event (its day has no partition yet), one of today, one years old.
    for (id, time) in [
        ("backfill", "2026-05-01T12:00:00Z"),
        ("today", "2026-06-10T08:00:00Z"),
        ("ancient", "2014-03-06T21:22:54Z"),
    ] {
        orgtrail::features::history::index::index(&mut conn, &[entry(MEMBER_A, id, at(time), &record)])
            .await
            .unwrap();
    }
    drop(conn);
    let where_is = |id: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT tableoid::regclass::text FROM event_history WHERE event_id = $1",
            )
            .bind(id)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(where_is("backfill").await.as_deref(), Some("event_history_default"));
    assert_eq!(where_is("today").await.as_deref(), Some("event_history_w20260608"));
    // The next pass gives the backfilled week its partition and drops what is past the retention.
    orgtrail::features::history::index::maintain_partitions(&pool, day("2026-06-10"), 90).await.unwrap();
    assert_eq!(where_is("backfill").await.as_deref(), Some("event_history_w20260427"));
    assert_eq!(where_is("ancient").await, None, "older than the retention");
    // Each row's record block moved with it: same week, and none left behind for a dropped row.
    let placed: Vec<(String, String)> = sqlx::query_as(
        "SELECT h.tableoid::regclass::text, b.tableoid::regclass::text FROM event_history h
         JOIN event_history_blocks b ON b.id = h.block_id ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(placed.len(), 2, "{placed:?}");
    for (row, block) in &placed {
        assert_eq!(
            row.replace("event_history_", ""),
            block.replace("event_history_blocks_", ""),
            "{placed:?}"
        );
    }
    let blocks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM event_history_blocks").fetch_one(&pool).await.unwrap();
    assert_eq!(blocks, 2, "the ancient event's block went with it");
    // 50 days later the backfilled week is past a 60-day retention: its partition goes whole.
    orgtrail::features::history::index::maintain_partitions(&pool, day("2026-07-30"), 60).await.unwrap();
    assert_eq!(where_is("backfill").await, None);
    assert_eq!(where_is("today").await.as_deref(), Some("event_history_w20260608"));
    let partitions: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'event_history_resources' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!partitions.contains(&"event_history_resources_w20260427".to_owned()), "{partitions:?}");
    assert!(
        partitions.contains(&"event_history_resources_w20260810".to_owned()),
        "made ahead: {partitions:?}"
    );
}
