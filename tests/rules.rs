//! Alert rules end to end: rules and packs through RuleService, events through the real pipeline
//! (ingest → staging → worker's rules tap → outbox → dispatcher), alerts to an HTTPS webhook in the
//! test (a private CA the worker is told to trust) that checks the HMAC signature.

mod common;

use std::time::Duration;

use common::*;
use orgtrail::bench::webhook_receiver::{Received, WebhookReceiver};
use orgtrail::proto::v1 as pb;
use serde_json::Value;
use sqlx::PgPool;
use tonic::Code;

const SECRET: &str = "test-webhook-secret-0123";

const SIGMA: &str = r#"title: CloudTrail Logging Stopped In A Test
id: 4d2d4f6e-0000-4000-8000-000000000001
status: test
author: Jane Tester, Some Other Author
level: high
logsource:
    product: aws
    service: cloudtrail
detection:
    selection:
        eventSource: cloudtrail.amazonaws.com
        eventName|startswith: stoplog
    condition: selection
"#;

fn hmac_hex(body: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    format!("sha256={}", hex::encode(aws_lc_rs::hmac::sign(&key, body.as_bytes()).as_ref()))
}

fn webhook(receiver: &WebhookReceiver, path: &str) -> pb::AlertTarget {
    pb::AlertTarget {
        r#type: "webhook".into(),
        url: receiver.url(path),
        secret: SECRET.into(),
        secret_set: false,
    }
}

struct Setup {
    stack: Stack,
    receiver: WebhookReceiver,
    admin: orgtrail::client::Clients,
    _certs: tempfile::TempDir,
}

/// A stack whose dispatcher trusts the test CA, retries fast and gives up after `attempts`.
async fn setup(pool: PgPool, attempts: u32) -> Setup {
    let _ =
        tracing_subscriber::fmt().with_env_filter("info,sqlx=warn,aws=warn").with_test_writer().try_init();
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_certificates(certs.path());
    let receiver = WebhookReceiver::start(&cert, &key).await.unwrap();
    let stack = stack_with_settings(pool, |settings| {
        settings.alerts.ca_file = Some(ca);
        settings.alerts.poll_interval = Duration::from_millis(50);
        settings.alerts.retry_base = Duration::from_millis(50);
        settings.alerts.retry_max = Duration::from_millis(200);
        settings.alerts.max_attempts = attempts;
    })
    .await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    Setup { stack, receiver, admin, _certs: certs }
}

/// Sends records; every one must be accepted.
async fn send(admin: &mut orgtrail::client::Clients, records: &[String]) {
    let response = put(admin, records).await;
    assert!(response.failed.is_empty(), "refused: {:?}", response.failed);
}

fn bodies(received: &[Received], path: &str) -> Vec<Value> {
    received.iter().filter(|r| r.path == path).map(|r| serde_json::from_str(&r.body).unwrap()).collect()
}

async fn wait_for(receiver: &WebhookReceiver, path: &str, count: usize) -> Vec<Received> {
    let received = receiver
        .wait_until(Duration::from_secs(30), |r| r.iter().filter(|x| x.path == path).count() >= count)
        .await;
    let have = received.iter().filter(|r| r.path == path).count();
    assert!(have >= count, "{path}: {have} of {count} alerts arrived");
    received
}

fn sigma_rule(name: &str, target: pb::AlertTarget) -> pb::CreateRuleRequest {
    pb::CreateRuleRequest {
        name: name.into(),
        definition: Some(pb::create_rule_request::Definition::SigmaYaml(SIGMA.into())),
        target: Some(target),
        ..Default::default()
    }
}

fn pattern_rule(name: &str, pattern: &str, target: pb::AlertTarget) -> pb::CreateRuleRequest {
    pb::CreateRuleRequest {
        name: name.into(),
        definition: Some(pb::create_rule_request::Definition::EventPattern(pattern.into())),
        target: Some(target),
        ..Default::default()
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn matching_event_raises_exactly_one_signed_alert_with_the_sigma_title_and_author(pool: PgPool) {
    let Setup { stack: _stack, receiver, mut admin, _certs } = setup(pool, 8).await;
    admin.rules.create_rule(sigma_rule("stop-logging", webhook(&receiver, "/hook"))).await.unwrap();
    // The non-matching event first: the shard's events are evaluated in order, so once the
    // matching one's alert is in, the other one was evaluated too.
    let other = event(MEMBER_A, "us-east-1", "cloudtrail.amazonaws.com", "StartLogging", "evt-start");
    let matching = event(MEMBER_A, "us-east-1", "cloudtrail.amazonaws.com", "StopLogging", "evt-stop");
    send(&mut admin, &[other]).await;
    send(&mut admin, &[matching]).await;

    let received = wait_for(&receiver, "/hook", 1).await;
    let hooks: Vec<&Received> = received.iter().filter(|r| r.path == "/hook").collect();
    assert_eq!(hooks.len(), 1, "exactly one alert");
    let alert = hooks[0];
    assert_eq!(alert.signature.as_deref(), Some(hmac_hex(&alert.body).as_str()), "HMAC-SHA256 of the body");
    let body: Value = serde_json::from_str(&alert.body).unwrap();
    assert_eq!(body["rule"]["title"], "CloudTrail Logging Stopped In A Test");
    assert_eq!(body["rule"]["author"], "Jane Tester, Some Other Author");
    assert_eq!(body["rule"]["level"], "high");
    assert_eq!(body["rule"]["name"], "stop-logging");
    assert_eq!(body["record"]["eventID"], "evt-stop");
    assert!(body["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(body["id"].as_str().is_some_and(|id| id.ends_with("-stop-logging")));
}

#[sqlx::test(migrations = "./migrations")]
async fn failing_webhook_is_retried_then_dead_lettered_after_the_last_attempt(pool: PgPool) {
    let Setup { stack, receiver, mut admin, _certs } = setup(pool, 3).await;
    receiver.answer_with(500);
    admin.rules.create_rule(sigma_rule("stop-logging", webhook(&receiver, "/down"))).await.unwrap();
    send(&mut admin, &[event(MEMBER_A, "us-east-1", "cloudtrail.amazonaws.com", "StopLogging", "evt-1")])
        .await;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let letters = loop {
        let letters =
            admin.rules.list_dead_letters(pb::ListDeadLettersRequest::default()).await.unwrap().into_inner();
        if !letters.dead_letters.is_empty() {
            break letters.dead_letters;
        }
        assert!(std::time::Instant::now() < deadline, "no dead letter after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(letters[0].rule_name, "stop-logging");
    assert_eq!(letters[0].last_error, "HTTP 500 Internal Server Error");
    assert_eq!(letters[0].url, receiver.url("/down"));
    let body: Value = serde_json::from_str(&letters[0].body).unwrap();
    assert_eq!(body["record"]["eventID"], "evt-1");
    // Every attempt reached the receiver, and nothing is left to send.
    assert_eq!(receiver.received().iter().filter(|r| r.path == "/down").count(), 3);
    let pending = orgtrail::features::alerts::store::pending_count(&stack.api.pool).await.unwrap();
    assert_eq!(pending, 0);
    // Auditors see dead letters too.
    let mut auditor = stack.api.auditor().await;
    let seen = auditor.rules.list_dead_letters(pb::ListDeadLettersRequest::default()).await.unwrap();
    assert_eq!(seen.into_inner().dead_letters.len(), 1);
}

#[sqlx::test(migrations = "./migrations")]
async fn enabled_pack_alerts_and_disabled_pack_stops_while_rules_change_at_runtime(pool: PgPool) {
    let Setup { stack: _stack, receiver, mut admin, _certs } = setup(pool, 8).await;
    let packs = admin.rules.list_rule_packs(pb::ListRulePacksRequest {}).await.unwrap().into_inner().packs;
    let names: Vec<(&str, bool, usize)> =
        packs.iter().map(|p| (p.name.as_str(), p.enabled, p.rules.len())).collect();
    assert_eq!(names, [("cis-aws-foundations-4", false, 15), ("trail-tampering", false, 7)]);

    let enabled = admin
        .rules
        .enable_rule_pack(pb::EnableRulePackRequest {
            name: "trail-tampering".into(),
            target: Some(webhook(&receiver, "/pack")),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(enabled.enabled);
    assert!(enabled.target.as_ref().is_some_and(|t| t.secret_set && t.secret.is_empty()));
    let leave = event(MEMBER_A, "us-east-1", "organizations.amazonaws.com", "LeaveOrganization", "evt-leave");
    send(&mut admin, &[leave]).await;
    let received = wait_for(&receiver, "/pack", 1).await;
    let alerts = bodies(&received, "/pack");
    assert_eq!(alerts[0]["rule"]["name"], "trail-tampering/leave-organization");
    assert_eq!(alerts[0]["rule"]["pack"], "trail-tampering");

    // Disable, then prove with a marker rule created afterwards that the workers' rules moved on
    // (they pick changes up within a second or two): once a marker event raises an alert, later
    // events are evaluated without the pack.
    admin
        .rules
        .disable_rule_pack(pb::DisableRulePackRequest { name: "trail-tampering".into() })
        .await
        .unwrap();
    let marker = r#"{"detail":{"eventName":["MarkerCall"]}}"#;
    admin.rules.create_rule(pattern_rule("marker", marker, webhook(&receiver, "/marker"))).await.unwrap();
    until_alerted(&mut admin, &receiver, "MarkerCall").await;
    let again =
        event(MEMBER_A, "us-east-1", "organizations.amazonaws.com", "LeaveOrganization", "evt-leave-2");
    send(
        &mut admin,
        &[again, event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "MarkerCall", "marker-last")],
    )
    .await;
    let received = receiver
        .wait_until(Duration::from_secs(30), |r| {
            bodies(r, "/marker").iter().any(|b| b["record"]["eventID"] == "marker-last")
        })
        .await;
    assert!(bodies(&received, "/marker").iter().any(|b| b["record"]["eventID"] == "marker-last"));
    assert_eq!(bodies(&received, "/pack").len(), 1, "no alert from a disabled pack");

    // An updated rule applies to the next events: the marker now also takes RunInstances.
    admin
        .rules
        .update_rule(pb::UpdateRuleRequest {
            name: "marker".into(),
            definition: Some(pb::update_rule_request::Definition::EventPattern(
                r#"{"detail":{"eventName":["MarkerCall","RunInstances"]}}"#.into(),
            )),
            ..Default::default()
        })
        .await
        .unwrap();
    until_alerted(&mut admin, &receiver, "RunInstances").await;
}

/// Sends `name` events (fresh ids) until one raises an alert on /marker; fails after 10 s.
async fn until_alerted(admin: &mut orgtrail::client::Clients, receiver: &WebhookReceiver, name: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        send(admin, &[event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", name, &format!("{name}-{n}"))]).await;
        let alerted = |r: &[Received]| bodies(r, "/marker").iter().any(|b| b["record"]["eventName"] == name);
        if alerted(&receiver.wait_until(Duration::from_millis(300), alerted).await) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the rule change never applied to {name} events");
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn rule_crud_and_validation_errors_name_the_field(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    let bad = admin
        .rules
        .create_rule(pattern_rule(
            "bad",
            r#"{"detail":{"eventName":[{"prefix":1}]}}"#,
            pb::AlertTarget::default(),
        ))
        .await;
    let error = status(bad);
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().starts_with("event_pattern.detail.eventName[0].prefix: "), "{}", error.message());

    let bad_sigma = admin
        .rules
        .create_rule(pb::CreateRuleRequest {
            name: "bad-sigma".into(),
            definition: Some(pb::create_rule_request::Definition::SigmaYaml(
                SIGMA.replace("|startswith", "|cidr"),
            )),
            ..Default::default()
        })
        .await;
    let error = status(bad_sigma);
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().starts_with("sigma_yaml: detection.selection.eventName|cidr: the modifier |cidr"),
        "{}",
        error.message()
    );

    let no_secret = admin
        .rules
        .create_rule(pattern_rule(
            "hook",
            r#"{"detail":{"eventName":["X"]}}"#,
            pb::AlertTarget {
                r#type: "webhook".into(),
                url: "https://example.com/x".into(),
                ..Default::default()
            },
        ))
        .await;
    assert!(status(no_secret).message().starts_with("target.secret: "));
    let plain_http = admin
        .rules
        .create_rule(pattern_rule(
            "hook",
            r#"{"detail":{"eventName":["X"]}}"#,
            pb::AlertTarget {
                r#type: "webhook".into(),
                url: "http://example.com/x".into(),
                secret: SECRET.into(),
                ..Default::default()
            },
        ))
        .await;
    assert!(status(plain_http).message().starts_with("target.url: must be an https:// URL"));

    let created = admin
        .rules
        .create_rule(sigma_rule("sigma-one", pb::AlertTarget::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.title, "CloudTrail Logging Stopped In A Test");
    assert_eq!(created.author, "Jane Tester, Some Other Author");
    assert_eq!(created.target.unwrap().r#type, "log");
    assert_eq!(
        code(admin.rules.create_rule(sigma_rule("sigma-one", pb::AlertTarget::default())).await),
        Code::AlreadyExists
    );
    let updated = admin
        .rules
        .update_rule(pb::UpdateRuleRequest {
            name: "sigma-one".into(),
            enabled: Some(false),
            regions: Some(pb::ScopeList { values: vec!["eu-west-1".into()] }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!updated.enabled);
    assert_eq!(updated.regions, ["eu-west-1"]);
    assert_eq!(updated.title, "CloudTrail Logging Stopped In A Test");
    let bad_region = admin
        .rules
        .update_rule(pb::UpdateRuleRequest {
            name: "sigma-one".into(),
            regions: Some(pb::ScopeList { values: vec!["Not A Region".into()] }),
            ..Default::default()
        })
        .await;
    assert!(status(bad_region).message().starts_with("regions[0]"));
    let listed = admin.rules.list_rules(pb::ListRulesRequest {}).await.unwrap().into_inner().rules;
    assert_eq!(listed.len(), 1);
    admin.rules.delete_rule(pb::DeleteRuleRequest { name: "sigma-one".into() }).await.unwrap();
    assert_eq!(
        code(admin.rules.get_rule(pb::GetRuleRequest { name: "sigma-one".into() }).await),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .rules
                .enable_rule_pack(pb::EnableRulePackRequest { name: "nope".into(), target: None })
                .await
        ),
        Code::NotFound
    );
}
