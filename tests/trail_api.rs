//! TrailService over a real socket and a real Postgres: CloudTrail's behaviour and validation rules.

mod common;

use common::*;
use orgtrail::proto::v1 as pb;
use sqlx::PgPool;
use tonic::Code;

#[sqlx::test(migrations = "./migrations")]
async fn org_trail_gets_cloudtrail_defaults_and_the_management_account_as_owner(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    let trail = admin.trails.create_trail(org_trail("org-trail")).await.unwrap().into_inner();
    assert_eq!(trail.trail_arn, "arn:aws:cloudtrail:us-east-1:111111111111:trail/org-trail");
    assert_eq!(trail.owner_account_id, MANAGEMENT);
    assert!(trail.is_organization_trail);
    assert!(trail.is_multi_region_trail, "multi-region by default");
    assert!(trail.include_global_service_events);
    assert!(!trail.log_file_validation_enabled);
    assert!(!trail.has_custom_event_selectors);

    let status =
        admin.trails.get_trail_status(pb::GetTrailStatusRequest { name: "org-trail".into() }).await.unwrap();
    assert!(!status.get_ref().is_logging, "CloudTrail creates trails with logging off");
}

#[sqlx::test(migrations = "./migrations")]
async fn trail_is_addressable_by_name_and_by_arn(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    let created = admin.trails.create_trail(org_trail("org-trail")).await.unwrap().into_inner();
    let by_name = admin.trails.get_trail(pb::GetTrailRequest { name: "org-trail".into() }).await.unwrap();
    let by_arn =
        admin.trails.get_trail(pb::GetTrailRequest { name: created.trail_arn.clone() }).await.unwrap();
    assert_eq!(by_name.get_ref().trail_arn, created.trail_arn);
    assert_eq!(by_arn.get_ref().trail_arn, created.trail_arn);
    let missing = admin.trails.get_trail(pb::GetTrailRequest { name: "nope-trail".into() }).await;
    assert_eq!(code(missing), Code::NotFound);
}

#[sqlx::test(migrations = "./migrations")]
async fn invalid_trail_names_are_rejected_naming_the_field(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    for bad in
        ["ab", "-trail", "trail-", "my--trail", "my-_namespace", "192.168.5.4", "has space", &"x".repeat(129)]
    {
        let error = status(admin.trails.create_trail(org_trail(bad)).await);
        assert_eq!(error.code(), Code::InvalidArgument, "{bad}");
        assert!(error.message().starts_with("name:"), "{bad}: {}", error.message());
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn invalid_bucket_names_are_rejected_naming_the_field(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    for bad in ["", "Upper-Case", "ab", "a..b", "10.1.2.3", "under_score", "xn--punycode", "-dash"] {
        let mut request = org_trail("org-trail");
        request.s3_bucket_name = bad.into();
        let error = status(admin.trails.create_trail(request).await);
        assert_eq!(error.code(), Code::InvalidArgument, "{bad}");
        assert!(error.message().starts_with("s3_bucket_name:"), "{bad}: {}", error.message());
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn multi_region_trail_must_include_global_service_events(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    let mut request = org_trail("org-trail");
    request.include_global_service_events = Some(false);
    let error = status(admin.trails.create_trail(request.clone()).await);
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("InvalidParameterCombination"), "{}", error.message());
    request.is_multi_region_trail = Some(false);
    let trail = admin.trails.create_trail(request).await.unwrap().into_inner();
    assert!(!trail.is_multi_region_trail && !trail.include_global_service_events);
}

#[sqlx::test(migrations = "./migrations")]
async fn duplicate_trail_names_in_one_account_already_exist(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    admin.trails.create_trail(org_trail("org-trail")).await.unwrap();
    assert_eq!(code(admin.trails.create_trail(org_trail("org-trail")).await), Code::AlreadyExists);
    // The same name in another account is another trail.
    admin.trails.create_trail(account_trail("org-trail", MEMBER_A)).await.unwrap();
    let ambiguous = status(admin.trails.get_trail(pb::GetTrailRequest { name: "org-trail".into() }).await);
    assert_eq!(ambiguous.code(), Code::InvalidArgument);
    assert!(ambiguous.message().contains("ARN"), "{}", ambiguous.message());
}

#[sqlx::test(migrations = "./migrations")]
async fn at_most_five_trails_per_account_and_region(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    for i in 0..5 {
        admin.trails.create_trail(account_trail(&format!("trail-{i}"), MEMBER_A)).await.unwrap();
    }
    assert_eq!(
        code(admin.trails.create_trail(account_trail("trail-5", MEMBER_A)).await),
        Code::ResourceExhausted
    );
    // Another account has its own budget.
    admin.trails.create_trail(account_trail("trail-5", MEMBER_B)).await.unwrap();
}

#[sqlx::test(migrations = "./migrations")]
async fn account_trail_needs_a_registered_owner(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    let mut request = account_trail("acct-trail", "");
    let error = status(admin.trails.create_trail(request.clone()).await);
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().starts_with("owner_account_id:"));
    request.owner_account_id = "999999999999".into();
    assert_eq!(code(admin.trails.create_trail(request).await), Code::FailedPrecondition);
}

#[sqlx::test(migrations = "./migrations")]
async fn organization_trail_needs_an_organization(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    assert_eq!(code(admin.trails.create_trail(org_trail("org-trail")).await), Code::FailedPrecondition);
}

#[sqlx::test(migrations = "./migrations")]
async fn update_changes_only_the_given_fields(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    admin.trails.create_trail(org_trail("org-trail")).await.unwrap();
    let updated = admin
        .trails
        .update_trail(pb::UpdateTrailRequest {
            name: "org-trail".into(),
            s3_key_prefix: Some("audit".into()),
            log_file_validation_enabled: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.s3_key_prefix, "audit");
    assert!(updated.log_file_validation_enabled);
    assert_eq!(updated.s3_bucket_name, "central-bucket");
    assert!(updated.is_organization_trail);

    let bad = admin
        .trails
        .update_trail(pb::UpdateTrailRequest {
            name: "org-trail".into(),
            include_global_service_events: Some(false),
            ..Default::default()
        })
        .await;
    assert_eq!(code(bad), Code::InvalidArgument);
    let unchanged = admin.trails.get_trail(pb::GetTrailRequest { name: "org-trail".into() }).await.unwrap();
    assert!(unchanged.get_ref().include_global_service_events, "a rejected update changes nothing");
}

#[sqlx::test(migrations = "./migrations")]
async fn only_management_account_trails_become_organization_trails(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    admin.trails.create_trail(account_trail("member-trail", MEMBER_A)).await.unwrap();
    let convert = |name: &str| pb::UpdateTrailRequest {
        name: name.into(),
        is_organization_trail: Some(true),
        ..Default::default()
    };
    assert_eq!(code(admin.trails.update_trail(convert("member-trail")).await), Code::FailedPrecondition);
    admin.trails.create_trail(account_trail("mgmt-trail", MANAGEMENT)).await.unwrap();
    let converted = admin.trails.update_trail(convert("mgmt-trail")).await.unwrap().into_inner();
    assert!(converted.is_organization_trail);
}

#[sqlx::test(migrations = "./migrations")]
async fn delete_removes_the_trail(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    admin.trails.create_trail(org_trail("org-trail")).await.unwrap();
    admin.trails.delete_trail(pb::DeleteTrailRequest { name: "org-trail".into() }).await.unwrap();
    assert_eq!(
        code(admin.trails.get_trail(pb::GetTrailRequest { name: "org-trail".into() }).await),
        Code::NotFound
    );
    assert_eq!(
        code(admin.trails.delete_trail(pb::DeleteTrailRequest { name: "org-trail".into() }).await),
        Code::NotFound
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn start_and_stop_logging_are_reported_by_status(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    admin.trails.create_trail(org_trail("org-trail")).await.unwrap();
    let status_of = |s: Result<tonic::Response<pb::TrailStatus>, tonic::Status>| s.unwrap().into_inner();

    admin.trails.start_logging(pb::StartLoggingRequest { name: "org-trail".into() }).await.unwrap();
    let on = status_of(
        admin.trails.get_trail_status(pb::GetTrailStatusRequest { name: "org-trail".into() }).await,
    );
    assert!(on.is_logging);
    assert!(on.start_logging_time.is_some());
    assert!(on.stop_logging_time.is_none());
    assert!(on.latest_delivery_error.is_empty());

    admin.trails.stop_logging(pb::StopLoggingRequest { name: "org-trail".into() }).await.unwrap();
    let off = status_of(
        admin.trails.get_trail_status(pb::GetTrailStatusRequest { name: "org-trail".into() }).await,
    );
    assert!(!off.is_logging);
    assert!(off.stop_logging_time.is_some());
    assert_eq!(off.start_logging_time, on.start_logging_time);
}

#[sqlx::test(migrations = "./migrations")]
async fn list_trails_paginates(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    let mut created = Vec::new();
    for (i, owner) in [MEMBER_A, MEMBER_A, MEMBER_B, MEMBER_B, MANAGEMENT].iter().enumerate() {
        let trail = admin.trails.create_trail(account_trail(&format!("trail-{i}"), owner)).await.unwrap();
        created.push(trail.into_inner().trail_arn);
    }
    let mut seen = Vec::new();
    let mut next_token = String::new();
    let mut pages = 0;
    loop {
        let page = admin
            .trails
            .list_trails(pb::ListTrailsRequest { page_size: 2, next_token })
            .await
            .unwrap()
            .into_inner();
        assert!(page.trails.len() <= 2);
        pages += 1;
        seen.extend(page.trails.into_iter().map(|t| t.trail_arn));
        if page.next_token.is_empty() {
            break;
        }
        next_token = page.next_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);

    let bad =
        admin.trails.list_trails(pb::ListTrailsRequest { page_size: 2, next_token: "garbage".into() }).await;
    assert_eq!(code(bad), Code::InvalidArgument);
    let too_big =
        admin.trails.list_trails(pb::ListTrailsRequest { page_size: 5000, next_token: String::new() }).await;
    assert_eq!(code(too_big), Code::InvalidArgument);
}

#[sqlx::test(migrations = "./migrations")]
async fn default_selectors_are_all_management_events(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    admin.trails.create_trail(org_trail("org-trail")).await.unwrap();
    let selectors = admin
        .trails
        .get_event_selectors(pb::GetEventSelectorsRequest { trail_name: "org-trail".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(selectors.event_selectors.len(), 1);
    assert_eq!(selectors.event_selectors[0].read_write_type, "All");
    assert_eq!(selectors.event_selectors[0].include_management_events, Some(true));
    assert!(selectors.advanced_event_selectors.is_empty());
}

#[sqlx::test(migrations = "./migrations")]
async fn advanced_selectors_replace_basic_ones_and_round_trip(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    admin.trails.create_trail(org_trail("org-trail")).await.unwrap();
    let advanced = vec![
        pb::AdvancedEventSelector {
            name: "management".into(),
            field_selectors: vec![field("eventCategory", &["Management"]), field("readOnly", &["false"])],
        },
        pb::AdvancedEventSelector {
            name: "s3 objects".into(),
            field_selectors: vec![
                field("eventCategory", &["Data"]),
                field("resources.type", &["AWS::S3::Object"]),
                pb::AdvancedFieldSelector {
                    field: "resources.ARN".into(),
                    starts_with: vec!["arn:aws:s3:::central-bucket/".into()],
                    ..Default::default()
                },
            ],
        },
    ];
    let put = admin
        .trails
        .put_event_selectors(pb::PutEventSelectorsRequest {
            trail_name: "org-trail".into(),
            event_selectors: vec![],
            advanced_event_selectors: advanced.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(put.advanced_event_selectors, advanced);
    assert!(put.event_selectors.is_empty());
    let got = admin
        .trails
        .get_event_selectors(pb::GetEventSelectorsRequest { trail_name: "org-trail".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.advanced_event_selectors, advanced);
    let trail = admin.trails.get_trail(pb::GetTrailRequest { name: "org-trail".into() }).await.unwrap();
    assert!(trail.get_ref().has_custom_event_selectors);

    // Putting basic selectors removes the advanced ones.
    let basic = admin
        .trails
        .put_event_selectors(pb::PutEventSelectorsRequest {
            trail_name: "org-trail".into(),
            event_selectors: vec![pb::EventSelector {
                read_write_type: "WriteOnly".into(),
                include_management_events: Some(true),
                data_resources: vec![pb::DataResource {
                    r#type: "AWS::S3::Object".into(),
                    values: vec!["arn:aws:s3:::central-bucket/".into()],
                }],
                exclude_management_event_sources: vec!["kms.amazonaws.com".into()],
            }],
            advanced_event_selectors: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(basic.advanced_event_selectors.is_empty());
    assert_eq!(basic.event_selectors[0].read_write_type, "WriteOnly");
}

#[sqlx::test(migrations = "./migrations")]
async fn invalid_selectors_are_rejected_and_change_nothing(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    admin.trails.create_trail(org_trail("org-trail")).await.unwrap();
    let put = |basic: Vec<pb::EventSelector>, advanced: Vec<pb::AdvancedEventSelector>| {
        pb::PutEventSelectorsRequest {
            trail_name: "org-trail".into(),
            event_selectors: basic,
            advanced_event_selectors: advanced,
        }
    };
    let management = pb::EventSelector { read_write_type: "All".into(), ..Default::default() };
    let advanced_management = pb::AdvancedEventSelector {
        name: String::new(),
        field_selectors: vec![field("eventCategory", &["Management"])],
    };

    let cases: Vec<(pb::PutEventSelectorsRequest, &str)> = vec![
        (put(vec![management.clone(); 6], vec![]), "event_selectors"),
        (put(vec![management.clone()], vec![advanced_management.clone()]), "advanced_event_selectors"),
        (put(vec![], vec![]), "event_selectors"),
        (
            put(
                vec![pb::EventSelector { read_write_type: "Sometimes".into(), ..Default::default() }],
                vec![],
            ),
            "event_selectors[0].read_write_type",
        ),
        (
            put(
                vec![pb::EventSelector {
                    data_resources: vec![pb::DataResource {
                        r#type: "AWS::SNS::Topic".into(),
                        values: vec!["arn:aws:sns".into()],
                    }],
                    ..Default::default()
                }],
                vec![],
            ),
            "event_selectors[0].data_resources[0].type",
        ),
        (
            put(
                vec![pb::EventSelector {
                    exclude_management_event_sources: vec!["iam.amazonaws.com".into()],
                    ..Default::default()
                }],
                vec![],
            ),
            "event_selectors[0].exclude_management_event_sources[0]",
        ),
        (
            put(
                vec![],
                vec![pb::AdvancedEventSelector {
                    name: String::new(),
                    field_selectors: vec![
                        field("eventCategory", &["Management"]),
                        field("eventColour", &["red"]),
                    ],
                }],
            ),
            "advanced_event_selectors[0].field_selectors[1].field",
        ),
        (
            put(
                vec![],
                vec![pb::AdvancedEventSelector {
                    name: String::new(),
                    field_selectors: vec![field("readOnly", &["true"])],
                }],
            ),
            "advanced_event_selectors[0].field_selectors",
        ),
        (
            put(
                vec![],
                vec![pb::AdvancedEventSelector {
                    name: String::new(),
                    field_selectors: vec![field("eventCategory", &["Data"])],
                }],
            ),
            "advanced_event_selectors[0].field_selectors",
        ),
        (
            put(
                vec![],
                vec![pb::AdvancedEventSelector {
                    name: String::new(),
                    field_selectors: vec![
                        field("eventCategory", &["Management"]),
                        pb::AdvancedFieldSelector {
                            field: "readOnly".into(),
                            starts_with: vec!["t".into()],
                            ..Default::default()
                        },
                    ],
                }],
            ),
            "advanced_event_selectors[0].field_selectors[1].starts_with",
        ),
        (
            put(
                vec![],
                vec![pb::AdvancedEventSelector {
                    name: String::new(),
                    field_selectors: vec![
                        field("eventCategory", &["Data"]),
                        field("resources.type", &["AWS::S3::Object"]),
                        pb::AdvancedFieldSelector {
                            field: "resources.ARN".into(),
                            starts_with: (0..500).map(|i| format!("arn:aws:s3:::bucket-{i}/")).collect(),
                            ..Default::default()
                        },
                    ],
                }],
            ),
            "advanced_event_selectors",
        ),
    ];
    for (request, expected_field) in cases {
        let error = status(admin.trails.put_event_selectors(request).await);
        assert_eq!(error.code(), Code::InvalidArgument, "{expected_field}: {}", error.message());
        assert!(
            error.message().starts_with(&format!("{expected_field}:")),
            "expected field {expected_field}, got {}",
            error.message()
        );
    }
    let trail = admin.trails.get_trail(pb::GetTrailRequest { name: "org-trail".into() }).await.unwrap();
    assert!(!trail.get_ref().has_custom_event_selectors, "rejected puts change nothing");
}

#[sqlx::test(migrations = "./migrations")]
async fn insight_selectors_round_trip_and_are_validated(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    admin.trails.create_trail(org_trail("org-trail")).await.unwrap();
    let empty = admin
        .trails
        .get_insight_selectors(pb::GetInsightSelectorsRequest { trail_name: "org-trail".into() })
        .await
        .unwrap();
    assert!(empty.get_ref().insight_selectors.is_empty());
    let put = admin
        .trails
        .put_insight_selectors(pb::PutInsightSelectorsRequest {
            trail_name: "org-trail".into(),
            insight_selectors: vec![
                pb::InsightSelector { insight_type: "ApiCallRateInsight".into(), event_categories: vec![] },
                pb::InsightSelector {
                    insight_type: "ApiErrorRateInsight".into(),
                    event_categories: vec!["Management".into(), "Data".into()],
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(put.insight_selectors[0].event_categories, vec!["Management".to_string()], "default category");
    let trail = admin.trails.get_trail(pb::GetTrailRequest { name: "org-trail".into() }).await.unwrap();
    assert!(trail.get_ref().has_insight_selectors);

    for bad in [
        vec![pb::InsightSelector { insight_type: "ApiMoodInsight".into(), event_categories: vec![] }],
        vec![pb::InsightSelector {
            insight_type: "ApiCallRateInsight".into(),
            event_categories: vec!["Network".into()],
        }],
        vec![
            pb::InsightSelector { insight_type: "ApiCallRateInsight".into(), event_categories: vec![] },
            pb::InsightSelector { insight_type: "ApiCallRateInsight".into(), event_categories: vec![] },
        ],
    ] {
        let request =
            pb::PutInsightSelectorsRequest { trail_name: "org-trail".into(), insight_selectors: bad };
        let error = status(admin.trails.put_insight_selectors(request).await);
        assert_eq!(error.code(), Code::InvalidArgument);
        assert!(error.message().starts_with("insight_selectors["), "{}", error.message());
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn tags_are_added_overwritten_and_removed(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    let mut request = org_trail("org-trail");
    request.tags = vec![pb::Tag { key: "team".into(), value: "security".into() }];
    admin.trails.create_trail(request).await.unwrap();
    let tag = |k: &str, v: &str| pb::Tag { key: k.into(), value: v.into() };
    let trail = admin
        .trails
        .add_tags(pb::AddTagsRequest {
            name: "org-trail".into(),
            tags: vec![tag("team", "audit"), tag("env", "prod")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trail.tags, vec![tag("team", "audit"), tag("env", "prod")]);
    let trail = admin
        .trails
        .remove_tags(pb::RemoveTagsRequest { name: "org-trail".into(), keys: vec!["team".into()] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trail.tags, vec![tag("env", "prod")]);
    let too_many: Vec<pb::Tag> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
    let error = admin.trails.add_tags(pb::AddTagsRequest { name: "org-trail".into(), tags: too_many }).await;
    assert_eq!(code(error), Code::InvalidArgument);
}

#[sqlx::test(migrations = "./migrations")]
async fn org_trail_covers_an_account_registered_later(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    admin.trails.create_trail(org_trail("org-trail")).await.unwrap();
    admin
        .accounts
        .register_account(pb::RegisterAccountRequest {
            account_id: "444444444444".into(),
            name: "late".into(),
            email: String::new(),
        })
        .await
        .unwrap();
    let mut late = api.member("444444444444").await;
    let trails = late.trails.list_trails(pb::ListTrailsRequest::default()).await.unwrap().into_inner().trails;
    assert_eq!(trails.len(), 1);
    assert!(trails[0].is_organization_trail);
}
