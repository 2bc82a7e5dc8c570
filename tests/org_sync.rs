//! AWS Organizations sync against moto: the real control plane over a fresh database, a moto
//! server per test, the sync run by the server (SyncAccounts) or by the schedule.

mod common;

use common::*;
use orgtrail::integrations::aws::sdk::AwsSettings;
use orgtrail::proto::v1 as pb;
use sqlx::PgPool;
use tonic::Code;

/// moto's management account (the static test credentials act as it).
const AWS_MANAGEMENT: &str = "123456789012";

struct AwsOrg {
    client: aws_sdk_organizations::Client,
    root_id: String,
}

impl AwsOrg {
    async fn create(moto: &Moto) -> Self {
        let client = aws_sdk_organizations::Client::new(&moto.sdk_config().await);
        client
            .create_organization()
            .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
            .send()
            .await
            .unwrap();
        let roots = client.list_roots().send().await.unwrap();
        let root_id = roots.roots()[0].id().unwrap().to_owned();
        Self { client, root_id }
    }

    /// A new member account (moto: SUCCEEDED at once, random id); returns its id.
    async fn create_account(&self, name: &str) -> String {
        let created = self
            .client
            .create_account()
            .account_name(name)
            .email(format!("{name}@example.com"))
            .send()
            .await
            .unwrap();
        created.create_account_status().unwrap().account_id().unwrap().to_owned()
    }

    async fn create_ou(&self, parent: &str, name: &str) -> String {
        let created =
            self.client.create_organizational_unit().parent_id(parent).name(name).send().await.unwrap();
        created.organizational_unit().unwrap().id().unwrap().to_owned()
    }

    async fn move_account(&self, account: &str, to: &str) {
        self.client
            .move_account()
            .account_id(account)
            .source_parent_id(&self.root_id)
            .destination_parent_id(to)
            .send()
            .await
            .unwrap();
    }

    async fn remove_account(&self, account: &str) {
        self.client.remove_account_from_organization().account_id(account).send().await.unwrap();
    }
}

async fn settings(moto: &Moto, member_role_name: &str) -> AwsSettings {
    AwsSettings::new(moto.sdk_config().await, member_role_name, &[]).unwrap()
}

/// orgtrail's organization, mirroring moto's (same management account).
async fn create_org(admin: &mut orgtrail::client::Clients) {
    admin
        .organizations
        .create_organization(pb::CreateOrganizationRequest {
            id: "o-synctest123".into(),
            management_account_id: AWS_MANAGEMENT.into(),
            regions: vec!["us-east-1".into()],
        })
        .await
        .unwrap();
}

async fn sync(
    admin: &mut orgtrail::client::Clients,
    ou_ids: &[&str],
    dry_run: bool,
) -> pb::SyncAccountsResponse {
    admin
        .organizations
        .sync_accounts(pb::SyncAccountsRequest {
            ou_ids: ou_ids.iter().map(|s| s.to_string()).collect(),
            dry_run,
        })
        .await
        .unwrap()
        .into_inner()
}

fn counts(report: &pb::SyncAccountsResponse) -> (i32, i32, i32, i32, i32) {
    let c = report.counts.unwrap();
    (c.registered, c.reactivated, c.suspended, c.removed, c.unchanged)
}

fn changed(report: &pb::SyncAccountsResponse, action: pb::SyncAction) -> Vec<String> {
    let mut ids: Vec<String> =
        report.accounts.iter().filter(|a| a.action == action as i32).map(|a| a.account_id.clone()).collect();
    ids.sort();
    ids
}

async fn account(admin: &mut orgtrail::client::Clients, id: &str) -> pb::Account {
    admin
        .accounts
        .describe_account(pb::DescribeAccountRequest { account_id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[sqlx::test(migrations = "./migrations")]
async fn sync_registers_new_accounts_with_their_aws_names_and_spares_the_management_and_manual_accounts(
    pool: PgPool,
) {
    let moto = Moto::start();
    let aws = AwsOrg::create(&moto).await;
    let a = aws.create_account("member-a").await;
    let b = aws.create_account("member-b").await;
    let api = start_with_aws(pool, Some(settings(&moto, "OrganizationAccountAccessRole").await)).await;
    let mut admin = api.admin().await;
    create_org(&mut admin).await;
    admin
        .accounts
        .register_account(pb::RegisterAccountRequest {
            account_id: MEMBER_A.into(),
            name: "by-hand".into(),
            email: String::new(),
        })
        .await
        .unwrap();

    let report = sync(&mut admin, &[], false).await;
    assert!(!report.dry_run);
    assert_eq!(changed(&report, pb::SyncAction::Registered), sorted(vec![a.clone(), b.clone()]));
    // Unchanged: the management account, and the manual account (reported, never removed).
    assert_eq!(counts(&report), (2, 0, 0, 0, 2));
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].contains(MEMBER_A) && report.warnings[0].contains("not in AWS Organizations"));

    let synced = account(&mut admin, &a).await;
    assert_eq!(synced.name, "member-a");
    assert_eq!(synced.email, "member-a@example.com");
    assert_eq!(synced.status, pb::AccountStatus::Active as i32);
    assert_eq!(synced.registration_source, pb::RegistrationSource::AwsOrganizations as i32);
    let collector = synced.collector.unwrap();
    assert_eq!(collector.role_arn, format!("arn:aws:iam::{a}:role/OrganizationAccountAccessRole"));
    assert!(collector.lookup_events);
    let management = account(&mut admin, AWS_MANAGEMENT).await;
    assert_eq!(management.name, "management");
    assert_eq!(management.registration_source, pb::RegistrationSource::Manual as i32);
    let manual = account(&mut admin, MEMBER_A).await;
    assert_eq!(manual.status, pb::AccountStatus::Active as i32);

    // A second sync finds nothing to do.
    let again = sync(&mut admin, &[], false).await;
    assert!(again.accounts.is_empty(), "{:?}", again.accounts);
    assert_eq!(counts(&again), (0, 0, 0, 0, 4));
    let org = admin.organizations.describe_organization(pb::DescribeOrganizationRequest {}).await.unwrap();
    let last = org.into_inner().last_sync.unwrap();
    assert!(last.last_sync_time.is_some() && last.last_success_time.is_some());
    assert_eq!(last.last_sync_error, "");
    assert_eq!(last.counts.unwrap().unchanged, 4);
}

#[sqlx::test(migrations = "./migrations")]
async fn org_trail_delivers_events_of_an_account_created_later_and_stops_when_it_leaves_the_organization(
    pool: PgPool,
) {
    let moto = Moto::start();
    let aws = AwsOrg::create(&moto).await;
    let stack = stack_with_aws(pool, settings(&moto, "").await).await;
    stack.create_bucket("central-bucket").await;
    let mut admin = stack.api.admin().await;
    create_org(&mut admin).await;
    logging_trail(&mut admin, org_trail("org-trail")).await;
    assert_eq!(counts(&sync(&mut admin, &[], false).await), (0, 0, 0, 0, 1));

    // A new account in AWS is unknown to orgtrail until the next sync...
    let new = aws.create_account("newcomer").await;
    let early =
        put(&mut admin, &[event(&new, "us-east-1", "ec2.amazonaws.com", "RunInstances", "early")]).await;
    assert_eq!(early.failed[0].error_code, "UnregisteredAccount");
    // ...which registers it, and the organization trail covers it at once.
    let report = sync(&mut admin, &[], false).await;
    assert_eq!(changed(&report, pb::SyncAction::Registered), vec![new.clone()]);
    let pushed =
        put(&mut admin, &[event(&new, "us-east-1", "ec2.amazonaws.com", "RunInstances", "n-1")]).await;
    assert!(pushed.failed.is_empty(), "{:?}", pushed.failed);
    let delivered = stack.wait_for_records("central-bucket", 1).await;
    assert_eq!(delivered.len(), 1);
    assert!(
        delivered[0].key.contains(&format!("AWSLogs/o-synctest123/{new}/CloudTrail/us-east-1/")),
        "{}",
        delivered[0].key
    );

    // It leaves the organization: the next sync removes it, and it is no longer collected.
    aws.remove_account(&new).await;
    let report = sync(&mut admin, &[], false).await;
    assert_eq!(changed(&report, pb::SyncAction::Removed), vec![new.clone()]);
    assert_eq!(account(&mut admin, &new).await.status, pb::AccountStatus::Removed as i32);
    let late = put(&mut admin, &[event(&new, "us-east-1", "ec2.amazonaws.com", "RunInstances", "n-2")]).await;
    assert_eq!(late.failed.len(), 1);
    assert_eq!(late.failed[0].error_code, "AccountNotActive");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let after = stack.objects("central-bucket").await;
    assert_eq!(after.len(), 1, "what was delivered stays, nothing new arrives");
    assert_eq!(after[0].key, delivered[0].key);
    assert_eq!(after[0].event_ids(), vec!["n-1"]);
}

#[sqlx::test(migrations = "./migrations")]
async fn ou_filter_covers_child_ous_and_removes_synced_accounts_outside_it(pool: PgPool) {
    let moto = Moto::start();
    let aws = AwsOrg::create(&moto).await;
    let prod = aws.create_ou(&aws.root_id.clone(), "Prod").await;
    let prod_eu = aws.create_ou(&prod, "ProdEU").await;
    let in_prod = aws.create_account("in-prod").await;
    let in_child = aws.create_account("in-child").await;
    let at_root = aws.create_account("at-root").await;
    aws.move_account(&in_prod, &prod).await;
    aws.move_account(&in_child, &prod_eu).await;
    let api = start_with_aws(pool, Some(settings(&moto, "").await)).await;
    let mut admin = api.admin().await;
    create_org(&mut admin).await;

    let report = sync(&mut admin, &[&prod], false).await;
    assert_eq!(changed(&report, pb::SyncAction::Registered), sorted(vec![in_prod.clone(), in_child.clone()]));
    assert_eq!(
        admin
            .accounts
            .describe_account(pb::DescribeAccountRequest { account_id: at_root.clone() })
            .await
            .map(drop)
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    // The whole organization, then the filter again: the account outside it is removed.
    let report = sync(&mut admin, &[], false).await;
    assert_eq!(changed(&report, pb::SyncAction::Registered), vec![at_root.clone()]);
    let report = sync(&mut admin, &[&prod], false).await;
    assert_eq!(changed(&report, pb::SyncAction::Removed), vec![at_root.clone()]);
    assert!(report.accounts[0].reason.contains("selected organizational units"), "{:?}", report.accounts);
    // Back in scope: REMOVED → ACTIVE again.
    let report = sync(&mut admin, &[], false).await;
    assert_eq!(changed(&report, pb::SyncAction::Reactivated), vec![at_root.clone()]);
    assert_eq!(account(&mut admin, &at_root).await.status, pb::AccountStatus::Active as i32);

    let bad = status(
        admin
            .organizations
            .sync_accounts(pb::SyncAccountsRequest { ou_ids: vec!["prod".into()], dry_run: false })
            .await,
    );
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("ou_ids[0]"), "{}", bad.message());
}

#[sqlx::test(migrations = "./migrations")]
async fn closed_account_is_suspended_and_an_admin_suspension_is_left_alone(pool: PgPool) {
    let moto = Moto::start();
    let aws = AwsOrg::create(&moto).await;
    let closing = aws.create_account("closing").await;
    let kept = aws.create_account("kept").await;
    let api = start_with_aws(pool, Some(settings(&moto, "").await)).await;
    let mut admin = api.admin().await;
    create_org(&mut admin).await;
    sync(&mut admin, &[], false).await;
    admin
        .accounts
        .update_account(pb::UpdateAccountRequest {
            account_id: kept.clone(),
            status: Some(pb::AccountStatus::Suspended as i32),
            ..Default::default()
        })
        .await
        .unwrap();
    aws.client.close_account().account_id(&closing).send().await.unwrap();

    let report = sync(&mut admin, &[], false).await;
    assert_eq!(changed(&report, pb::SyncAction::Suspended), vec![closing.clone()]);
    assert!(changed(&report, pb::SyncAction::Reactivated).is_empty(), "the admin's suspension stands");
    assert_eq!(account(&mut admin, &closing).await.status, pb::AccountStatus::Suspended as i32);
    assert_eq!(account(&mut admin, &kept).await.status, pb::AccountStatus::Suspended as i32);
}

#[sqlx::test(migrations = "./migrations")]
async fn dry_run_reports_the_changes_and_makes_none(pool: PgPool) {
    let moto = Moto::start();
    let aws = AwsOrg::create(&moto).await;
    let a = aws.create_account("member-a").await;
    let api = start_with_aws(pool, Some(settings(&moto, "").await)).await;
    let mut admin = api.admin().await;
    create_org(&mut admin).await;

    let report = sync(&mut admin, &[], true).await;
    assert!(report.dry_run);
    assert_eq!(changed(&report, pb::SyncAction::Registered), vec![a.clone()]);
    let listed = admin.accounts.list_accounts(pb::ListAccountsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.accounts.len(), 1, "only the management account");
    let org = admin.organizations.describe_organization(pb::DescribeOrganizationRequest {}).await.unwrap();
    assert!(org.into_inner().last_sync.is_none(), "a dry run is not the latest sync");
}

#[sqlx::test(migrations = "./migrations")]
async fn sync_failures_say_what_to_fix_and_are_recorded(pool: PgPool) {
    // No AWS configuration at all.
    let plain = start(pool.clone()).await;
    let mut admin = plain.admin().await;
    let error = status(admin.organizations.sync_accounts(pb::SyncAccountsRequest::default()).await);
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(error.message().contains("AWS_ACCESS_KEY_ID"), "{}", error.message());
    drop(plain);

    // AWS, but no organization in it yet.
    let moto = Moto::start();
    let api = start_with_aws(pool, Some(settings(&moto, "").await)).await;
    let mut admin = api.admin().await;
    let error = status(admin.organizations.sync_accounts(pb::SyncAccountsRequest::default()).await);
    assert_eq!(error.code(), Code::FailedPrecondition, "{}", error.message());
    assert!(error.message().contains("CreateOrganization"), "{}", error.message());
    create_org(&mut admin).await;
    let error = status(admin.organizations.sync_accounts(pb::SyncAccountsRequest::default()).await);
    assert_eq!(error.code(), Code::FailedPrecondition, "{}", error.message());
    assert!(error.message().contains("AWSOrganizationsNotInUse"), "{}", error.message());
    let org = admin.organizations.describe_organization(pb::DescribeOrganizationRequest {}).await.unwrap();
    let last = org.into_inner().last_sync.unwrap();
    assert!(last.last_sync_error.contains("AWSOrganizationsNotInUse"), "{}", last.last_sync_error);
    assert!(last.last_success_time.is_none());
}

#[sqlx::test(migrations = "./migrations")]
async fn scheduled_sync_runs_and_records_its_last_result(pool: PgPool) {
    let moto = Moto::start();
    let aws = AwsOrg::create(&moto).await;
    let a = aws.create_account("member-a").await;
    let api = start_with_aws(pool.clone(), Some(settings(&moto, "").await)).await;
    let mut admin = api.admin().await;
    create_org(&mut admin).await;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let schedule = tokio::spawn(orgtrail::integrations::aws::schedule::run(
        pool,
        api.aws.clone().unwrap(),
        std::time::Duration::from_secs(1),
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let last = loop {
        let org =
            admin.organizations.describe_organization(pb::DescribeOrganizationRequest {}).await.unwrap();
        if let Some(last) = org.into_inner().last_sync {
            break last;
        }
        assert!(std::time::Instant::now() < deadline, "the schedule never synced");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(last.last_sync_error, "");
    assert_eq!(last.counts.unwrap().registered, 1);
    assert_eq!(
        account(&mut admin, &a).await.registration_source,
        pb::RegistrationSource::AwsOrganizations as i32
    );
    // Turns keep coming: an account created now is registered without anyone asking.
    let b = aws.create_account("member-b").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while admin.accounts.describe_account(pb::DescribeAccountRequest { account_id: b.clone() }).await.is_err()
    {
        assert!(std::time::Instant::now() < deadline, "the schedule did not sync again");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    stop.send(true).unwrap();
    schedule.await.unwrap();
}

#[sqlx::test(migrations = "./migrations")]
async fn cli_org_sync_prints_the_report_and_fails_with_one_line(pool: PgPool) {
    let moto = Moto::start();
    let aws = AwsOrg::create(&moto).await;
    let a = aws.create_account("member-a").await;
    let api = start_with_aws(pool, Some(settings(&moto, "").await)).await;
    let mut admin = api.admin().await;
    create_org(&mut admin).await;
    let token = api.token(orgtrail::store::tokens::Role::Admin, None).await;
    // The CLI runs as its own process while this test's runtime keeps serving the API.
    let endpoint = api.endpoint();
    let run = |args: &'static [&'static str]| {
        let (endpoint, token) = (endpoint.clone(), token.clone());
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_orgtrail"))
                .args(args)
                .env("ORGTRAIL_ENDPOINT", endpoint)
                .env("ORGTRAIL_TOKEN", token)
                .output()
                .await
                .unwrap()
        }
    };
    let dry = run(&["org", "sync", "--dry-run", "--output", "json"]).await;
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["accounts"][0]["account_id"], a.as_str());
    assert_eq!(report["accounts"][0]["action"], "SYNC_ACTION_REGISTERED");

    let done = run(&["org", "sync"]).await;
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let text = String::from_utf8_lossy(&done.stdout);
    assert!(text.contains(&a) && text.contains("REGISTERED") && text.contains("registered 1"), "{text}");

    let failed = run(&["org", "sync", "--ou-id", "nope"]).await;
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("ou_ids[0]"), "{stderr}");
}
