//! The moto harness works: its own server per test, reachable with the Rust SDK.

mod common;

use common::*;

#[tokio::test]
async fn moto_serves_organizations_and_sts() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let organizations = aws_sdk_organizations::Client::new(&config);
    organizations
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .unwrap();
    let accounts = organizations.list_accounts().send().await.unwrap();
    assert_eq!(accounts.accounts().len(), 1, "the management account");
    let caller = aws_sdk_sts::Client::new(&config).get_caller_identity().send().await.unwrap();
    assert_eq!(caller.account(), Some("123456789012"));
}
