//! Pull collector settings on accounts: validated with the field named, stored whole, shown with
//! the per-source status.

mod common;

use common::*;
use orgtrail::model::AccountId;
use orgtrail::proto::v1 as pb;
use sqlx::PgPool;

fn settings(role: &str) -> pb::CollectorSettings {
    pb::CollectorSettings {
        role_arn: role.into(),
        external_id: "o-testorg1234-collector".into(),
        lookup_events: true,
        trail_bucket: "member-trail-bucket".into(),
        trail_prefix: "org".into(),
        regions: vec!["us-east-1".into(), "eu-west-1".into()],
    }
}

#[sqlx::test]
async fn collector_settings_round_trip_and_bad_ones_name_the_field(pool: PgPool) {
    let api = start(pool.clone()).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    let update = |collector: pb::CollectorSettings| pb::UpdateAccountRequest {
        account_id: MEMBER_A.into(),
        collector: Some(collector),
        ..Default::default()
    };
    let wanted = settings(&format!("arn:aws:iam::{MEMBER_A}:role/orgtrail-collector"));
    let updated = admin.accounts.update_account(update(wanted.clone())).await.unwrap().into_inner();
    assert_eq!(updated.collector, Some(wanted.clone()));

    for (bad, field) in [
        (settings("arn:aws:iam::333333333333:role/x"), "collector.role_arn"),
        (settings("not-an-arn"), "collector.role_arn"),
        (pb::CollectorSettings { role_arn: String::new(), ..wanted.clone() }, "collector.role_arn"),
        (pb::CollectorSettings { external_id: "x".into(), ..wanted.clone() }, "collector.external_id"),
        (
            pb::CollectorSettings { trail_bucket: "Bad_Bucket".into(), ..wanted.clone() },
            "collector.trail_bucket",
        ),
        (pb::CollectorSettings { regions: vec!["Mars 1".into()], ..wanted.clone() }, "collector.regions[0]"),
    ] {
        let error = status(admin.accounts.update_account(update(bad)).await);
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(error.message().starts_with(field), "{field}: {}", error.message());
    }
    // Nothing was changed by the rejected calls.
    let described = admin
        .accounts
        .describe_account(pb::DescribeAccountRequest { account_id: MEMBER_A.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.collector, Some(wanted));

    // Collector outcomes show on the account.
    let account = AccountId::parse("account_id", MEMBER_A).unwrap();
    orgtrail::store::accounts::record_collection(&pool, &account, "aws_lookup", "us-east-1", 7)
        .await
        .unwrap();
    orgtrail::store::accounts::record_collection_error(
        &pool,
        &account,
        "aws_lookup",
        "eu-west-1",
        "AccessDenied: no",
    )
    .await
    .unwrap();
    let described = admin
        .accounts
        .describe_account(pb::DescribeAccountRequest { account_id: MEMBER_A.into() })
        .await
        .unwrap()
        .into_inner();
    let status: Vec<(String, String, i64)> = described
        .collector_status
        .iter()
        .map(|s| (s.region.clone(), s.last_error.clone(), s.events_collected))
        .collect();
    assert_eq!(
        status,
        vec![("eu-west-1".into(), "AccessDenied: no".into(), 0), ("us-east-1".into(), String::new(), 7)]
    );
}
