//! The authorization matrix: every RPC of every service × every role, table-driven. The table
//! must name every RPC in the proto, so a new RPC cannot ship without its row.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use futures::future::BoxFuture;
use orgtrail::client::Clients;
use orgtrail::proto::v1 as pb;
use prost::Message;
use sqlx::PgPool;
use tonic::{Code, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    Fail(Code),
}
use Expect::{Fail, Ok as Allow};

const DENIED: Expect = Fail(Code::PermissionDenied);

type Call = Box<dyn Fn(Clients, Clients) -> BoxFuture<'static, Result<(), Status>> + Send + Sync>;

fn call<F, Fut>(f: F) -> Call
where
    F: Fn(Clients, Clients) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    Box::new(move |admin, caller| Box::pin(f(admin, caller)))
}

/// An RPC on trails and its expectations on the org trail, the member's trail, another's trail.
type TrailRow = (&'static str, [Expect; 3], [Expect; 3], [Expect; 3]);

struct Case {
    rpc: &'static str,
    what: &'static str,
    /// Expected outcome for admin, auditor, member of MEMBER_A.
    expect: [Expect; 3],
    call: Call,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", COUNTER.fetch_add(1, Ordering::SeqCst))
}
fn unique_account() -> String {
    format!("5{:011}", COUNTER.fetch_add(1, Ordering::SeqCst))
}

async fn fresh_trail(admin: &mut Clients, organization: bool) -> String {
    let name = unique("tmp");
    let request = if organization { org_trail(&name) } else { account_trail(&name, MEMBER_A) };
    admin.trails.create_trail(request).await.unwrap().into_inner().trail_arn
}

async fn drop_trail(admin: &mut Clients, name: &str) {
    let _ = admin.trails.delete_trail(pb::DeleteTrailRequest { name: name.into() }).await;
}

fn cases() -> Vec<Case> {
    let mut cases = vec![
        Case {
            rpc: "CreateOrganization",
            what: "a second organization",
            expect: [Fail(Code::AlreadyExists), DENIED, DENIED],
            call: call(|_, mut c| async move {
                c.organizations
                    .create_organization(pb::CreateOrganizationRequest {
                        id: String::new(),
                        management_account_id: MANAGEMENT.into(),
                        regions: vec![],
                    })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "DescribeOrganization",
            what: "the organization",
            expect: [Allow, Allow, Allow],
            call: call(|_, mut c| async move {
                c.organizations.describe_organization(pb::DescribeOrganizationRequest {}).await.map(drop)
            }),
        },
        Case {
            rpc: "UpdateOrganization",
            what: "regions",
            expect: [Allow, DENIED, DENIED],
            call: call(|_, mut c| async move {
                c.organizations
                    .update_organization(pb::UpdateOrganizationRequest {
                        regions: Some(pb::RegionList { regions: vec!["us-east-1".into()] }),
                    })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "SyncAccounts",
            what: "a dry run (the test server has no AWS configuration)",
            expect: [Fail(Code::FailedPrecondition), DENIED, DENIED],
            call: call(|_, mut c| async move {
                c.organizations
                    .sync_accounts(pb::SyncAccountsRequest { ou_ids: vec![], dry_run: true })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "RegisterAccount",
            what: "a new account",
            expect: [Allow, DENIED, DENIED],
            call: call(|_, mut c| async move {
                c.accounts
                    .register_account(pb::RegisterAccountRequest {
                        account_id: unique_account(),
                        name: "new".into(),
                        email: String::new(),
                    })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "DescribeAccount",
            what: "own account",
            expect: [Allow, Allow, Allow],
            call: call(|_, mut c| async move {
                c.accounts
                    .describe_account(pb::DescribeAccountRequest { account_id: MEMBER_A.into() })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "DescribeAccount",
            what: "another account",
            expect: [Allow, Allow, DENIED],
            call: call(|_, mut c| async move {
                c.accounts
                    .describe_account(pb::DescribeAccountRequest { account_id: MEMBER_B.into() })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "ListAccounts",
            what: "all visible",
            expect: [Allow, Allow, Allow],
            call: call(|_, mut c| async move {
                c.accounts.list_accounts(pb::ListAccountsRequest::default()).await.map(drop)
            }),
        },
        Case {
            rpc: "UpdateAccount",
            what: "another account's name",
            expect: [Allow, DENIED, DENIED],
            call: call(|_, mut c| async move {
                c.accounts
                    .update_account(pb::UpdateAccountRequest {
                        account_id: MEMBER_B.into(),
                        name: Some("renamed".into()),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "DeregisterAccount",
            what: "a fresh account",
            expect: [Allow, DENIED, DENIED],
            call: call(|mut a, mut c| async move {
                let account_id = unique_account();
                a.accounts
                    .register_account(pb::RegisterAccountRequest {
                        account_id: account_id.clone(),
                        name: "x".into(),
                        email: String::new(),
                    })
                    .await
                    .unwrap();
                c.accounts.deregister_account(pb::DeregisterAccountRequest { account_id }).await.map(drop)
            }),
        },
        Case {
            rpc: "CreateTrail",
            what: "an organization trail",
            expect: [Allow, DENIED, DENIED],
            call: call(|mut a, mut c| async move {
                let name = unique("org");
                let result = c.trails.create_trail(org_trail(&name)).await.map(drop);
                drop_trail(&mut a, &name).await;
                result
            }),
        },
        Case {
            rpc: "CreateTrail",
            what: "an account trail of the member's account",
            expect: [Allow, DENIED, Allow],
            call: call(|mut a, mut c| async move {
                let name = unique("own");
                let result = c.trails.create_trail(account_trail(&name, MEMBER_A)).await.map(drop);
                drop_trail(&mut a, &format!("arn:aws:cloudtrail:us-east-1:{MEMBER_A}:trail/{name}")).await;
                result
            }),
        },
        Case {
            rpc: "CreateTrail",
            what: "an account trail of another account",
            expect: [Allow, DENIED, DENIED],
            call: call(|mut a, mut c| async move {
                let name = unique("other");
                let result = c.trails.create_trail(account_trail(&name, MEMBER_B)).await.map(drop);
                drop_trail(&mut a, &format!("arn:aws:cloudtrail:us-east-1:{MEMBER_B}:trail/{name}")).await;
                result
            }),
        },
    ];

    // Trail RPCs on the organization trail, the member's own trail and another account's trail:
    // members read the organization trail but never change it; another account's trail is invisible.
    let on_trails: Vec<TrailRow> = vec![
        (
            "UpdateTrail",
            [Allow, DENIED, DENIED],
            [Allow, DENIED, Allow],
            [Allow, DENIED, Fail(Code::NotFound)],
        ),
        (
            "DeleteTrail",
            [Allow, DENIED, DENIED],
            [Allow, DENIED, Allow],
            [Allow, DENIED, Fail(Code::NotFound)],
        ),
        ("GetTrail", [Allow, Allow, Allow], [Allow, Allow, Allow], [Allow, Allow, Fail(Code::NotFound)]),
        (
            "StartLogging",
            [Allow, DENIED, DENIED],
            [Allow, DENIED, Allow],
            [Allow, DENIED, Fail(Code::NotFound)],
        ),
        (
            "StopLogging",
            [Allow, DENIED, DENIED],
            [Allow, DENIED, Allow],
            [Allow, DENIED, Fail(Code::NotFound)],
        ),
        (
            "GetTrailStatus",
            [Allow, Allow, Allow],
            [Allow, Allow, Allow],
            [Allow, Allow, Fail(Code::NotFound)],
        ),
        (
            "PutEventSelectors",
            [Allow, DENIED, DENIED],
            [Allow, DENIED, Allow],
            [Allow, DENIED, Fail(Code::NotFound)],
        ),
        (
            "GetEventSelectors",
            [Allow, Allow, Allow],
            [Allow, Allow, Allow],
            [Allow, Allow, Fail(Code::NotFound)],
        ),
        (
            "PutInsightSelectors",
            [Allow, DENIED, DENIED],
            [Allow, DENIED, Allow],
            [Allow, DENIED, Fail(Code::NotFound)],
        ),
        (
            "GetInsightSelectors",
            [Allow, Allow, Allow],
            [Allow, Allow, Allow],
            [Allow, Allow, Fail(Code::NotFound)],
        ),
        ("GetTrailUsage", [Allow, Allow, Allow], [Allow, Allow, Allow], [Allow, Allow, Fail(Code::NotFound)]),
        ("AddTags", [Allow, DENIED, DENIED], [Allow, DENIED, Allow], [Allow, DENIED, Fail(Code::NotFound)]),
        (
            "RemoveTags",
            [Allow, DENIED, DENIED],
            [Allow, DENIED, Allow],
            [Allow, DENIED, Fail(Code::NotFound)],
        ),
    ];
    for (rpc, on_org, on_own, on_other) in on_trails {
        for (what, target, expect) in [
            ("the organization trail", "org-trail", on_org),
            ("the member's own trail", "arn:aws:cloudtrail:us-east-1:222222222222:trail/a-trail", on_own),
            ("another account's trail", "arn:aws:cloudtrail:us-east-1:333333333333:trail/b-trail", on_other),
        ] {
            let fresh = rpc == "DeleteTrail";
            cases.push(Case {
                rpc,
                what,
                expect,
                call: call(move |mut a, c| async move {
                    let target = if fresh {
                        // Delete a throwaway copy so the fixture survives.
                        if target == "org-trail" {
                            fresh_trail(&mut a, true).await
                        } else if target.contains(MEMBER_A) {
                            fresh_trail(&mut a, false).await
                        } else {
                            let name = unique("b-tmp");
                            a.trails
                                .create_trail(account_trail(&name, MEMBER_B))
                                .await
                                .unwrap()
                                .into_inner()
                                .trail_arn
                        }
                    } else {
                        target.to_owned()
                    };
                    let result = trail_rpc(rpc, c, &target).await;
                    if fresh {
                        drop_trail(&mut a, &target).await;
                    }
                    result
                }),
            });
        }
    }

    cases.push(Case {
        rpc: "ListTrails",
        what: "visible trails",
        expect: [Allow, Allow, Allow],
        call: call(|_, mut c| async move {
            c.trails.list_trails(pb::ListTrailsRequest::default()).await.map(drop)
        }),
    });
    cases.extend([
        Case {
            rpc: "CreateToken",
            what: "an auditor token",
            expect: [Allow, DENIED, DENIED],
            call: call(|_, mut c| async move {
                c.tokens
                    .create_token(pb::CreateTokenRequest {
                        name: "t".into(),
                        role: pb::Role::Auditor as i32,
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "ListTokens",
            what: "tokens",
            expect: [Allow, DENIED, DENIED],
            call: call(|_, mut c| async move {
                c.tokens.list_tokens(pb::ListTokensRequest::default()).await.map(drop)
            }),
        },
        Case {
            rpc: "RevokeToken",
            what: "a fresh token",
            expect: [Allow, DENIED, DENIED],
            call: call(|mut a, mut c| async move {
                let created = a
                    .tokens
                    .create_token(pb::CreateTokenRequest {
                        name: "victim".into(),
                        role: pb::Role::Auditor as i32,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let token_id = created.token.unwrap().token_id;
                c.tokens.revoke_token(pb::RevokeTokenRequest { token_id }).await.map(drop)
            }),
        },
        Case {
            rpc: "PutAuditEvents",
            what: "an event of the member's account",
            expect: [Allow, DENIED, Allow],
            call: call(|_, c| async move { put_one(c, MEMBER_A).await }),
        },
        Case {
            rpc: "PutAuditEvents",
            what: "an event of another account (refused per event)",
            expect: [Allow, DENIED, DENIED],
            call: call(|_, c| async move { put_one(c, MEMBER_B).await }),
        },
        Case {
            rpc: "CreateChannel",
            what: "a channel of the member's account",
            expect: [Allow, DENIED, Allow],
            call: call(|_, mut c| async move {
                c.ingest
                    .create_channel(pb::CreateChannelRequest {
                        name: unique("ch"),
                        account_id: MEMBER_A.into(),
                        region: "us-east-1".into(),
                    })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "CreateChannel",
            what: "a channel of another account",
            expect: [Allow, DENIED, DENIED],
            call: call(|_, mut c| async move {
                c.ingest
                    .create_channel(pb::CreateChannelRequest {
                        name: unique("ch"),
                        account_id: MEMBER_B.into(),
                        region: "us-east-1".into(),
                    })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "ListChannels",
            what: "visible channels",
            expect: [Allow, Allow, Allow],
            call: call(|_, mut c| async move {
                c.ingest.list_channels(pb::ListChannelsRequest {}).await.map(drop)
            }),
        },
        Case {
            rpc: "GetBacklog",
            what: "the backlog (members: their account's)",
            expect: [Allow, Allow, Allow],
            call: call(|_, mut c| async move {
                c.ingest.get_backlog(pb::GetBacklogRequest::default()).await.map(drop)
            }),
        },
        Case {
            rpc: "ListPublicKeys",
            what: "the current key",
            expect: [Allow, Allow, Allow],
            call: call(|_, mut c| async move {
                c.keys.list_public_keys(pb::ListPublicKeysRequest::default()).await.map(drop)
            }),
        },
        Case {
            rpc: "LookupEvents",
            what: "the whole organization (members: narrowed to their account)",
            expect: [Allow, Allow, Allow],
            call: call(|_, mut c| async move {
                c.events.lookup_events(pb::LookupEventsRequest::default()).await.map(drop)
            }),
        },
        Case {
            rpc: "LookupEvents",
            what: "the member's own account by name",
            expect: [Allow, Allow, Allow],
            call: call(|_, mut c| async move {
                c.events
                    .lookup_events(pb::LookupEventsRequest {
                        account_id: MEMBER_A.into(),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "LookupEvents",
            what: "another account by name",
            expect: [Allow, Allow, DENIED],
            call: call(|_, mut c| async move {
                c.events
                    .lookup_events(pb::LookupEventsRequest {
                        account_id: MEMBER_B.into(),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "RotateSigningKey",
            what: "a region's key",
            expect: [Allow, DENIED, DENIED],
            call: call(|_, mut c| async move {
                c.keys
                    .rotate_signing_key(pb::RotateSigningKeyRequest { region: "eu-west-1".into() })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "CreateEnrollmentToken",
            what: "an enrollment token",
            expect: [Allow, DENIED, DENIED],
            call: call(|_, mut c| async move {
                c.accounts
                    .create_enrollment_token(pb::CreateEnrollmentTokenRequest::default())
                    .await
                    .map(drop)
            }),
        },
        // Public with an enrollment token: the bearer token (any, or a bad one) plays no part.
        Case {
            rpc: "DescribeEnrollment",
            what: "a valid enrollment token",
            expect: [Allow, Allow, Allow],
            call: call(|mut a, mut c| async move {
                let token = fresh_enrollment_token(&mut a).await;
                c.accounts
                    .describe_enrollment(pb::DescribeEnrollmentRequest {
                        enrollment_token: token.enrollment_token,
                        account_id: String::new(),
                    })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "DescribeEnrollment",
            what: "an unknown enrollment token",
            expect: [Fail(Code::Unauthenticated); 3],
            call: call(|_, mut c| async move {
                c.accounts
                    .describe_enrollment(pb::DescribeEnrollmentRequest {
                        enrollment_token: "oten_unknown".into(),
                        account_id: String::new(),
                    })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "Enroll",
            what: "a fresh account with a valid enrollment token",
            expect: [Allow, Allow, Allow],
            call: call(|mut a, mut c| async move {
                let token = fresh_enrollment_token(&mut a).await;
                c.accounts.enroll(enroll_request(token.enrollment_token, token.external_id)).await.map(drop)
            }),
        },
        Case {
            rpc: "Enroll",
            what: "an unknown enrollment token",
            expect: [Fail(Code::Unauthenticated); 3],
            call: call(|_, mut c| async move {
                c.accounts.enroll(enroll_request("oten_unknown".into(), "x1".into())).await.map(drop)
            }),
        },
        Case {
            rpc: "CreateRule",
            what: "an event-pattern rule",
            expect: [Allow, DENIED, DENIED],
            call: call(|_, mut c| async move {
                c.rules.create_rule(rule_request(&unique("rule"))).await.map(drop)
            }),
        },
        Case {
            rpc: "GetRule",
            what: "a rule",
            expect: [Allow, Allow, DENIED],
            call: call(|mut a, mut c| async move {
                let name = fresh_rule(&mut a).await;
                c.rules.get_rule(pb::GetRuleRequest { name }).await.map(drop)
            }),
        },
        Case {
            rpc: "ListRules",
            what: "every rule",
            expect: [Allow, Allow, DENIED],
            call: call(|_, mut c| async move { c.rules.list_rules(pb::ListRulesRequest {}).await.map(drop) }),
        },
        Case {
            rpc: "UpdateRule",
            what: "disable a rule",
            expect: [Allow, DENIED, DENIED],
            call: call(|mut a, mut c| async move {
                let name = fresh_rule(&mut a).await;
                c.rules
                    .update_rule(pb::UpdateRuleRequest { name, enabled: Some(false), ..Default::default() })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "DeleteRule",
            what: "a rule",
            expect: [Allow, DENIED, DENIED],
            call: call(|mut a, mut c| async move {
                let name = fresh_rule(&mut a).await;
                c.rules.delete_rule(pb::DeleteRuleRequest { name }).await.map(drop)
            }),
        },
        Case {
            rpc: "ListRulePacks",
            what: "the built-in packs",
            expect: [Allow, Allow, DENIED],
            call: call(|_, mut c| async move {
                c.rules.list_rule_packs(pb::ListRulePacksRequest {}).await.map(drop)
            }),
        },
        Case {
            rpc: "EnableRulePack",
            what: "the tampering pack",
            expect: [Allow, DENIED, DENIED],
            call: call(|_, mut c| async move {
                c.rules
                    .enable_rule_pack(pb::EnableRulePackRequest {
                        name: "trail-tampering".into(),
                        target: None,
                    })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "DisableRulePack",
            what: "the tampering pack",
            expect: [Allow, DENIED, DENIED],
            call: call(|_, mut c| async move {
                c.rules
                    .disable_rule_pack(pb::DisableRulePackRequest { name: "trail-tampering".into() })
                    .await
                    .map(drop)
            }),
        },
        Case {
            rpc: "ListDeadLetters",
            what: "dead letters",
            expect: [Allow, Allow, DENIED],
            call: call(|_, mut c| async move {
                c.rules.list_dead_letters(pb::ListDeadLettersRequest::default()).await.map(drop)
            }),
        },
        Case {
            rpc: "WhoAmI",
            what: "own token",
            expect: [Allow, Allow, Allow],
            call: call(|_, mut c| async move { c.tokens.who_am_i(pb::WhoAmIRequest {}).await.map(drop) }),
        },
    ]);
    cases
}

/// RPCs authenticated by an enrollment token in the request, not by the bearer token.
const ENROLLMENT_RPCS: &[&str] = &["DescribeEnrollment", "Enroll"];

async fn fresh_enrollment_token(admin: &mut Clients) -> pb::CreateEnrollmentTokenResponse {
    admin
        .accounts
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest::default())
        .await
        .unwrap()
        .into_inner()
}

fn enroll_request(enrollment_token: String, external_id: String) -> pb::EnrollRequest {
    let account_id = unique_account();
    pb::EnrollRequest {
        enrollment_token,
        collector: Some(pb::CollectorSettings {
            role_arn: format!("arn:aws:iam::{account_id}:role/orgtrail-collector"),
            external_id,
            lookup_events: true,
            ..Default::default()
        }),
        account_id,
        name: String::new(),
        email: String::new(),
    }
}

fn rule_request(name: &str) -> pb::CreateRuleRequest {
    pb::CreateRuleRequest {
        name: name.into(),
        definition: Some(pb::create_rule_request::Definition::EventPattern(
            r#"{"detail":{"eventName":["StopLogging"]}}"#.into(),
        )),
        ..Default::default()
    }
}

async fn fresh_rule(admin: &mut Clients) -> String {
    let name = unique("rule");
    admin.rules.create_rule(rule_request(&name)).await.unwrap();
    name
}

/// Sends one event of `account`; a per-event refusal counts as PermissionDenied here.
async fn put_one(mut c: Clients, account: &str) -> Result<(), Status> {
    let record = event(account, "us-east-1", "ec2.amazonaws.com", "RunInstances", &unique("authz"));
    let response = c
        .ingest
        .put_audit_events(pb::PutAuditEventsRequest {
            audit_events: vec![pb::AuditEvent {
                id: "a".into(),
                event_data: record,
                event_data_checksum: String::new(),
            }],
            channel_id: String::new(),
        })
        .await?
        .into_inner();
    match response.failed.first() {
        None => Ok(()),
        Some(failed) => Err(Status::permission_denied(failed.error_message.clone())),
    }
}

async fn trail_rpc(rpc: &str, mut c: Clients, target: &str) -> Result<(), Status> {
    let name = target.to_owned();
    match rpc {
        "UpdateTrail" => c
            .trails
            .update_trail(pb::UpdateTrailRequest {
                name,
                s3_key_prefix: Some("p".into()),
                ..Default::default()
            })
            .await
            .map(drop),
        "DeleteTrail" => c.trails.delete_trail(pb::DeleteTrailRequest { name }).await.map(drop),
        "GetTrail" => c.trails.get_trail(pb::GetTrailRequest { name }).await.map(drop),
        "StartLogging" => c.trails.start_logging(pb::StartLoggingRequest { name }).await.map(drop),
        "StopLogging" => c.trails.stop_logging(pb::StopLoggingRequest { name }).await.map(drop),
        "GetTrailStatus" => c.trails.get_trail_status(pb::GetTrailStatusRequest { name }).await.map(drop),
        "GetTrailUsage" => c
            .trails
            .get_trail_usage(pb::GetTrailUsageRequest { trail: name, ..Default::default() })
            .await
            .map(drop),
        "PutEventSelectors" => c
            .trails
            .put_event_selectors(pb::PutEventSelectorsRequest {
                trail_name: name,
                event_selectors: vec![pb::EventSelector {
                    read_write_type: "WriteOnly".into(),
                    ..Default::default()
                }],
                advanced_event_selectors: vec![],
            })
            .await
            .map(drop),
        "GetEventSelectors" => {
            c.trails.get_event_selectors(pb::GetEventSelectorsRequest { trail_name: name }).await.map(drop)
        }
        "PutInsightSelectors" => c
            .trails
            .put_insight_selectors(pb::PutInsightSelectorsRequest {
                trail_name: name,
                insight_selectors: vec![pb::InsightSelector {
                    insight_type: "ApiCallRateInsight".into(),
                    event_categories: vec![],
                }],
            })
            .await
            .map(drop),
        "GetInsightSelectors" => c
            .trails
            .get_insight_selectors(pb::GetInsightSelectorsRequest { trail_name: name })
            .await
            .map(drop),
        "AddTags" => c
            .trails
            .add_tags(pb::AddTagsRequest { name, tags: vec![pb::Tag { key: "k".into(), value: "v".into() }] })
            .await
            .map(drop),
        "RemoveTags" => {
            c.trails.remove_tags(pb::RemoveTagsRequest { name, keys: vec!["k".into()] }).await.map(drop)
        }
        other => panic!("no trail rpc {other}"),
    }
}

fn outcome(result: Result<(), Status>) -> Expect {
    match result {
        Ok(()) => Allow,
        Err(status) => Fail(status.code()),
    }
}

/// Every RPC of every orgtrail service, read from the compiled descriptor set.
fn all_rpcs() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(orgtrail::proto::FILE_DESCRIPTOR_SET).unwrap();
    set.file
        .iter()
        .filter(|f| f.package() == "orgtrail.v1")
        .flat_map(|f| f.service.iter())
        .flat_map(|s| s.method.iter().map(|m| m.name().to_owned()))
        .collect()
}

#[sqlx::test(migrations = "./migrations")]
async fn every_rpc_enforces_the_role_matrix(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    admin.trails.create_trail(org_trail("org-trail")).await.unwrap();
    admin.trails.create_trail(account_trail("a-trail", MEMBER_A)).await.unwrap();
    admin.trails.create_trail(account_trail("b-trail", MEMBER_B)).await.unwrap();
    let callers = [
        ("admin", api.admin().await),
        ("auditor", api.auditor().await),
        ("member", api.member(MEMBER_A).await),
    ];
    let anonymous = api.clients("otk_not-a-real-token").await;

    let cases = cases();
    let covered: BTreeSet<String> = cases.iter().map(|c| c.rpc.to_owned()).collect();
    assert_eq!(covered, all_rpcs(), "the matrix must cover every RPC");

    let mut failures = Vec::new();
    for case in &cases {
        for (i, (role, caller)) in callers.iter().enumerate() {
            let got = outcome((case.call)(admin.clone(), caller.clone()).await);
            if got != case.expect[i] {
                failures.push(format!(
                    "{} ({}) as {role}: expected {:?}, got {:?}",
                    case.rpc, case.what, case.expect[i], got
                ));
            }
        }
        let got = outcome((case.call)(admin.clone(), anonymous.clone()).await);
        let expected =
            if ENROLLMENT_RPCS.contains(&case.rpc) { case.expect[0] } else { Fail(Code::Unauthenticated) };
        if got != expected {
            failures.push(format!("{} ({}) with a bad token: got {got:?}", case.rpc, case.what));
        }
    }
    assert!(failures.is_empty(), "authorization matrix violations:\n{}", failures.join("\n"));
}

#[sqlx::test(migrations = "./migrations")]
async fn missing_token_is_unauthenticated_but_health_is_public(pool: PgPool) {
    let api = start(pool).await;
    let channel = tonic::transport::Channel::from_shared(api.endpoint()).unwrap().connect().await.unwrap();
    let mut trails = pb::trail_service_client::TrailServiceClient::new(channel.clone());
    let error = trails.list_trails(pb::ListTrailsRequest::default()).await.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated);
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let response = health
        .check(tonic_health::pb::HealthCheckRequest { service: "orgtrail.v1.TrailService".into() })
        .await
        .unwrap();
    assert_eq!(
        response.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn revoked_and_expired_tokens_stop_working(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    let created = admin
        .tokens
        .create_token(pb::CreateTokenRequest {
            name: "short".into(),
            role: pb::Role::Auditor as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut auditor = api.clients(&created.secret).await;
    auditor.tokens.who_am_i(pb::WhoAmIRequest {}).await.unwrap();
    let token_id = created.token.unwrap().token_id;
    admin.tokens.revoke_token(pb::RevokeTokenRequest { token_id }).await.unwrap();
    // A fresh connection avoids nothing: the server caches a token for at most 5 seconds.
    tokio::time::sleep(std::time::Duration::from_millis(5_200)).await;
    let error = auditor.tokens.who_am_i(pb::WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated);
}

#[sqlx::test(migrations = "./migrations")]
async fn member_sees_only_its_account_and_covering_org_trails(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    admin.trails.create_trail(org_trail("org-trail")).await.unwrap();
    admin.trails.create_trail(account_trail("a-trail", MEMBER_A)).await.unwrap();
    admin.trails.create_trail(account_trail("b-trail", MEMBER_B)).await.unwrap();
    let mut member = api.member(MEMBER_A).await;
    let names: Vec<String> = member
        .trails
        .list_trails(pb::ListTrailsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .trails
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["org-trail", "a-trail"]);
    let accounts =
        member.accounts.list_accounts(pb::ListAccountsRequest::default()).await.unwrap().into_inner();
    assert_eq!(accounts.accounts.len(), 1);
    assert_eq!(accounts.accounts[0].account_id, MEMBER_A);

    // A suspended member is no longer covered by the organization trail.
    admin
        .accounts
        .update_account(pb::UpdateAccountRequest {
            account_id: MEMBER_A.into(),
            status: Some(pb::AccountStatus::Suspended as i32),
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<String> = member
        .trails
        .list_trails(pb::ListTrailsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .trails
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["a-trail"]);
}
