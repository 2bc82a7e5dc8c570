//! A client in another language can use the API: grpcurl (a Go client) lists the services through
//! reflection and calls ListTrails. scripts/test installs grpcurl and sets ORGTRAIL_TEST_GRPCURL.

mod common;

use std::process::Command;

use common::*;
use orgtrail::store::tokens::Role;
use sqlx::PgPool;

fn grpcurl() -> String {
    std::env::var("ORGTRAIL_TEST_GRPCURL")
        .expect("ORGTRAIL_TEST_GRPCURL is not set: run the suite with scripts/test, which installs grpcurl")
}

fn run(args: &[&str]) -> String {
    let output = Command::new(grpcurl()).args(args).output().expect("grpcurl runs");
    assert!(output.status.success(), "grpcurl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn grpcurl_lists_services_and_calls_list_trails(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    admin.trails.create_trail(org_trail("org-trail")).await.unwrap();
    let token = api.token(Role::Auditor, None).await;
    let addr = api.addr.to_string();
    let (services, described, listed) = tokio::task::spawn_blocking(move || {
        let services = run(&["-plaintext", &addr, "list"]);
        let described = run(&["-plaintext", &addr, "describe", "orgtrail.v1.Trail"]);
        let header = format!("authorization: Bearer {token}");
        let listed =
            run(&["-plaintext", "-H", &header, "-d", "{}", &addr, "orgtrail.v1.TrailService/ListTrails"]);
        (services, described, listed)
    })
    .await
    .unwrap();
    for service in [
        "orgtrail.v1.TrailService",
        "orgtrail.v1.AccountService",
        "orgtrail.v1.OrganizationService",
        "orgtrail.v1.TokenService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.lines().any(|l| l.trim() == service), "{service} missing from:\n{services}");
    }
    assert!(described.contains("s3_bucket_name"), "{described}");
    let body: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(body["trails"][0]["trailArn"], "arn:aws:cloudtrail:us-east-1:111111111111:trail/org-trail");
}
