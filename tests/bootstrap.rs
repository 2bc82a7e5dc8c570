//! Enrollment tokens and `orgtrail bootstrap`: the real binary, as a member account would run it
//! (its own AWS credentials: moto AssumeRole into an Organizations member), against the real
//! control plane; and the enrollment RPCs' rules directly.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use orgtrail::integrations::aws::iam_policy::{parse_document, same_policy};
use orgtrail::proto::v1 as pb;
use serde_json::{Value, json};
use sqlx::PgPool;
use tonic::Code;

/// moto's management account: the organization's, and so the default aggregator principal's.
const MOTO_MANAGEMENT: &str = "123456789012";

/// A member account in moto and its own credentials (assumed-role keys act as the member).
struct Member {
    account_id: String,
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    iam: aws_sdk_iam::Client,
}

async fn moto_member(moto: &Moto, name: &str) -> Member {
    let config = moto.sdk_config().await;
    let organizations = aws_sdk_organizations::Client::new(&config);
    // One organization per moto server; later members join it.
    let _ = organizations
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await;
    let created = organizations
        .create_account()
        .account_name(name)
        .email(format!("{name}@example.com"))
        .send()
        .await
        .unwrap();
    let account_id = created.create_account_status.unwrap().account_id.unwrap();
    let assumed = aws_sdk_sts::Client::new(&config)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole"))
        .role_session_name("bootstrap-test")
        .send()
        .await
        .unwrap();
    let credentials = assumed.credentials.unwrap();
    let member_config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iam::config::Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_owned()),
            None,
            "member",
        ))
        .endpoint_url(&moto.endpoint)
        .load()
        .await;
    Member {
        account_id,
        access_key_id: credentials.access_key_id().to_owned(),
        secret_access_key: credentials.secret_access_key().to_owned(),
        session_token: credentials.session_token().to_owned(),
        iam: aws_sdk_iam::Client::new(&member_config),
    }
}

/// Where one member runs bootstrap: its own HOME and working directory.
struct Workdir {
    dir: tempfile::TempDir,
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("no JSON report ({e}): {}", self.stdout))
    }
}

impl Workdir {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn state_file(&self) -> PathBuf {
        self.dir.path().join(".orgtrail/member.json")
    }

    /// `orgtrail bootstrap ARGS` with only the member's AWS environment (no shared config files).
    /// Runs on a blocking thread: the control plane shares the test's single-threaded runtime.
    async fn bootstrap(&self, moto: Option<(&Moto, &Member)>, args: &[&str]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_orgtrail"));
        for (name, _) in std::env::vars() {
            if name.starts_with("AWS_") || name.starts_with("ORGTRAIL_") {
                command.env_remove(name);
            }
        }
        let home = self.dir.path();
        command
            .current_dir(home)
            .env("HOME", home)
            .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-aws-credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_MAX_ATTEMPTS", "1")
            .arg("bootstrap")
            .args(args);
        if let Some((moto, member)) = moto {
            command
                .env("AWS_ENDPOINT_URL", &moto.endpoint)
                .env("AWS_ACCESS_KEY_ID", &member.access_key_id)
                .env("AWS_SECRET_ACCESS_KEY", &member.secret_access_key)
                .env("AWS_SESSION_TOKEN", &member.session_token);
        }
        let output =
            tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("orgtrail runs");
        Run {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// The control plane with an organization whose management account is moto's.
async fn control_plane(pool: PgPool) -> (TestApi, orgtrail::client::Clients) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    admin
        .organizations
        .create_organization(pb::CreateOrganizationRequest {
            id: "o-bootstrap123".into(),
            management_account_id: MOTO_MANAGEMENT.into(),
            regions: vec!["us-east-1".into()],
        })
        .await
        .unwrap();
    (api, admin)
}

async fn enrollment_token(
    admin: &mut orgtrail::client::Clients,
    account_id: &str,
) -> pb::CreateEnrollmentTokenResponse {
    admin
        .accounts
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            expires_in_seconds: 0,
            account_id: account_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn role_documents(member: &Member, role: &str) -> (Value, Value) {
    let found = member.iam.get_role().role_name(role).send().await.unwrap().role.unwrap();
    let trust = parse_document(found.assume_role_policy_document.as_deref().unwrap()).unwrap();
    let policy =
        member.iam.get_role_policy().role_name(role).policy_name("orgtrail-collector").send().await.unwrap();
    (trust, parse_document(&policy.policy_document).unwrap())
}

fn expected_trust(external_id: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "OrgtrailCollector",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{MOTO_MANAGEMENT}:root")},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}}
        }]
    })
}

#[sqlx::test(migrations = "./migrations")]
async fn bootstrap_creates_the_role_and_registers_the_account(pool: PgPool) {
    let moto = Moto::start();
    let member = moto_member(&moto, "member-a").await;
    let (api, mut admin) = control_plane(pool).await;
    let issued = enrollment_token(&mut admin, "").await;
    assert!(issued.enrollment_token.starts_with("oten_"));
    let work = Workdir::new();
    let run = work
        .bootstrap(
            Some((&moto, &member)),
            &[
                "--endpoint",
                &api.endpoint(),
                "--enrollment-token",
                &issued.enrollment_token,
                "--trail-bucket",
                "member-a-trail",
                "--trail-prefix",
                "org",
                "--name",
                "member a",
                "--output",
                "json",
            ],
        )
        .await;
    assert!(run.success, "bootstrap failed: {}", run.stderr);
    let report = run.json();
    let role_arn = format!("arn:aws:iam::{}:role/orgtrail-collector", member.account_id);
    assert_eq!(report["account_id"], member.account_id.as_str());
    assert_eq!(report["role_arn"], role_arn.as_str());
    assert_eq!(report["changed"], true);
    assert_eq!(report["enrolled"], true);

    // IAM, read back with the member's own credentials.
    let (trust, policy) = role_documents(&member, "orgtrail-collector").await;
    assert!(same_policy(&trust, &expected_trust(&issued.external_id)), "trust policy: {trust}");
    let expected_policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "LookupEvents", "Effect": "Allow", "Action": "cloudtrail:LookupEvents", "Resource": "*"},
            {"Sid": "ReadTrailObjects", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": format!("arn:aws:s3:::member-a-trail/org/AWSLogs/{}/*", member.account_id)},
            {"Sid": "ListTrailPrefix", "Effect": "Allow", "Action": "s3:ListBucket",
             "Resource": "arn:aws:s3:::member-a-trail",
             "Condition": {"StringLike": {"s3:prefix": format!("org/AWSLogs/{}/*", member.account_id)}}}
        ]
    });
    assert!(same_policy(&policy, &expected_policy), "inline policy: {policy}");

    // The control plane: registered by bootstrap, with the role to assume.
    let account = admin
        .accounts
        .describe_account(pb::DescribeAccountRequest { account_id: member.account_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(account.registration_source, pb::RegistrationSource::Bootstrap as i32);
    assert_eq!(account.status, pb::AccountStatus::Active as i32);
    assert_eq!(account.name, "member a");
    let collector = account.collector.unwrap();
    assert_eq!(collector.role_arn, role_arn);
    assert_eq!(collector.external_id, issued.external_id);
    assert!(collector.lookup_events);
    assert_eq!((collector.trail_bucket.as_str(), collector.trail_prefix.as_str()), ("member-a-trail", "org"));

    // The state file: private, and its member token works for this account only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(work.state_file()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let state: Value = serde_json::from_str(&std::fs::read_to_string(work.state_file()).unwrap()).unwrap();
    assert_eq!(state["account_id"], member.account_id.as_str());
    assert_eq!(state["endpoint"], api.endpoint().as_str());
    assert_eq!(state["role_arn"], role_arn.as_str());
    assert_eq!(state["external_id"], issued.external_id.as_str());
    let mut as_member = api.clients(state["member_token"].as_str().unwrap()).await;
    let me = as_member.tokens.who_am_i(pb::WhoAmIRequest {}).await.unwrap().into_inner();
    assert_eq!((me.role, me.account_id.as_str()), (pb::Role::Member as i32, member.account_id.as_str()));
}

#[sqlx::test(migrations = "./migrations")]
async fn rerun_changes_nothing(pool: PgPool) {
    let moto = Moto::start();
    let member = moto_member(&moto, "member-a").await;
    let (api, mut admin) = control_plane(pool).await;
    let issued = enrollment_token(&mut admin, "").await;
    let work = Workdir::new();
    let endpoint = api.endpoint();
    let args = ["--endpoint", &endpoint, "--enrollment-token", &issued.enrollment_token, "--output", "json"];
    let first = work.bootstrap(Some((&moto, &member)), &args).await;
    assert!(first.success, "{}", first.stderr);
    let role_before =
        member.iam.get_role().role_name("orgtrail-collector").send().await.unwrap().role.unwrap();
    let documents_before = role_documents(&member, "orgtrail-collector").await;
    let state_before = std::fs::read_to_string(work.state_file()).unwrap();

    // The same command again, with the (now used) enrollment token: no error, nothing written.
    let second = work.bootstrap(Some((&moto, &member)), &args).await;
    assert!(second.success, "re-run failed: {}", second.stderr);
    let report = second.json();
    assert_eq!(report["changed"], false, "{report}");
    assert_eq!(report["changes"], json!([]));
    assert_eq!(report["enrolled"], false);
    let role_after =
        member.iam.get_role().role_name("orgtrail-collector").send().await.unwrap().role.unwrap();
    assert_eq!(role_before.create_date, role_after.create_date);
    assert_eq!(role_before.role_id, role_after.role_id);
    assert_eq!(documents_before, role_documents(&member, "orgtrail-collector").await);
    assert_eq!(state_before, std::fs::read_to_string(work.state_file()).unwrap());
    // Human output says so too.
    let third = work.bootstrap(Some((&moto, &member)), &args[..4]).await;
    assert!(third.success, "{}", third.stderr);
    assert!(third.stdout.contains("nothing changed"), "{}", third.stdout);
}

#[sqlx::test(migrations = "./migrations")]
async fn rerun_repairs_only_the_trust_policy_that_drifted(pool: PgPool) {
    let moto = Moto::start();
    let member = moto_member(&moto, "member-a").await;
    let (api, mut admin) = control_plane(pool).await;
    let issued = enrollment_token(&mut admin, "").await;
    let work = Workdir::new();
    let endpoint = api.endpoint();
    let args = ["--endpoint", &endpoint, "--enrollment-token", &issued.enrollment_token, "--output", "json"];
    assert!(work.bootstrap(Some((&moto, &member)), &args).await.success);
    member
        .iam
        .update_assume_role_policy()
        .role_name("orgtrail-collector")
        .policy_document(expected_trust("someone-else").to_string())
        .send()
        .await
        .unwrap();
    let run = work.bootstrap(Some((&moto, &member)), &args).await;
    assert!(run.success, "{}", run.stderr);
    assert_eq!(run.json()["changes"], json!(["iam:UpdateAssumeRolePolicy orgtrail-collector"]));
    let (trust, _) = role_documents(&member, "orgtrail-collector").await;
    assert!(same_policy(&trust, &expected_trust(&issued.external_id)));
}

#[sqlx::test(migrations = "./migrations")]
async fn expired_enrollment_token_is_refused(pool: PgPool) {
    let moto = Moto::start();
    let member = moto_member(&moto, "member-a").await;
    let (api, mut admin) = control_plane(pool.clone()).await;
    let issued = enrollment_token(&mut admin, "").await;
    sqlx::query("UPDATE enrollments SET expires_at = now() - interval '1 minute'")
        .execute(&pool)
        .await
        .unwrap();
    let work = Workdir::new();
    let run = work
        .bootstrap(
            Some((&moto, &member)),
            &["--endpoint", &api.endpoint(), "--enrollment-token", &issued.enrollment_token],
        )
        .await;
    assert!(!run.success);
    assert!(run.stderr.contains("enrollment token expired at"), "{}", run.stderr);
    assert_eq!(run.stderr.trim().lines().count(), 1, "one line: {}", run.stderr);
    // Refused before anything was made in IAM.
    assert!(member.iam.get_role().role_name("orgtrail-collector").send().await.is_err());
}

#[sqlx::test(migrations = "./migrations")]
async fn token_used_by_another_account_is_refused(pool: PgPool) {
    let moto = Moto::start();
    let first = moto_member(&moto, "member-a").await;
    let second = moto_member(&moto, "member-b").await;
    let (api, mut admin) = control_plane(pool).await;
    let issued = enrollment_token(&mut admin, "").await;
    let endpoint = api.endpoint();
    let args = ["--endpoint", &endpoint, "--enrollment-token", &issued.enrollment_token];
    assert!(Workdir::new().bootstrap(Some((&moto, &first)), &args).await.success);
    let run = Workdir::new().bootstrap(Some((&moto, &second)), &args).await;
    assert!(!run.success);
    assert!(
        run.stderr.contains(&format!("enrollment token was already used by account {}", first.account_id)),
        "{}",
        run.stderr
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn account_registered_manually_is_refused(pool: PgPool) {
    let moto = Moto::start();
    let member = moto_member(&moto, "member-a").await;
    let (api, mut admin) = control_plane(pool).await;
    admin
        .accounts
        .register_account(pb::RegisterAccountRequest {
            account_id: member.account_id.clone(),
            name: "by hand".into(),
            email: String::new(),
        })
        .await
        .unwrap();
    let issued = enrollment_token(&mut admin, "").await;
    let run = Workdir::new()
        .bootstrap(
            Some((&moto, &member)),
            &["--endpoint", &api.endpoint(), "--enrollment-token", &issued.enrollment_token],
        )
        .await;
    assert!(!run.success);
    assert!(run.stderr.contains("is already registered (manually by an admin)"), "{}", run.stderr);
}

#[sqlx::test(migrations = "./migrations")]
async fn unreachable_control_plane_is_one_clear_error(pool: PgPool) {
    let moto = Moto::start();
    let member = moto_member(&moto, "member-a").await;
    drop(pool);
    let dead = format!("http://127.0.0.1:{}", orgtrail::dev::postgres::free_port().unwrap());
    let run = Workdir::new()
        .bootstrap(Some((&moto, &member)), &["--endpoint", &dead, "--enrollment-token", "oten_whatever"])
        .await;
    assert!(!run.success);
    assert!(run.stderr.contains(&format!("cannot connect to {dead}")), "{}", run.stderr);
}

#[tokio::test]
async fn dry_run_prints_the_documents_and_contacts_nothing() {
    let dead = "http://127.0.0.1:9";
    let work = Workdir::new();
    // No AWS credentials or endpoint at all: any AWS or control-plane call would fail.
    let run = work
        .bootstrap(
            None,
            &[
                "--endpoint",
                dead,
                "--dry-run",
                "--account-id",
                "222222222222",
                "--external-id",
                "orgtrail-x1",
                "--aggregator-principal",
                "arn:aws:iam::111111111111:root",
                "--trail-bucket",
                "trail-b",
                "--output",
                "json",
            ],
        )
        .await;
    assert!(run.success, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(
        report["trust_policy"]["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        "orgtrail-x1"
    );
    assert_eq!(report["trust_policy"]["Statement"][0]["Principal"]["AWS"], "arn:aws:iam::111111111111:root");
    assert_eq!(
        report["inline_policy"]["Statement"][1]["Resource"],
        "arn:aws:s3:::trail-b/AWSLogs/222222222222/*"
    );
    let calls: Vec<&str> =
        report["planned_calls"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let position = |needle: &str| {
        calls.iter().position(|c| c.contains(needle)).unwrap_or_else(|| panic!("{needle} in {calls:?}"))
    };
    assert!(position("sts:GetCallerIdentity") < position("DescribeEnrollment"));
    assert!(position("DescribeEnrollment") < position("iam:CreateRole"));
    assert!(position("iam:PutRolePolicy") < position("AccountService.Enroll"));
    assert!(!work.state_file().exists());

    // Without the flags: placeholders, and the human form shows the documents.
    let run = work.bootstrap(None, &["--dry-run"]).await;
    assert!(run.success, "{}", run.stderr);
    assert!(run.stdout.contains("<EXTERNAL_ID>") && run.stdout.contains("<ACCOUNT_ID>"), "{}", run.stdout);
    assert!(run.stdout.contains("cloudtrail:LookupEvents"), "{}", run.stdout);
}

// --- the enrollment RPCs ------------------------------------------------------------------------

/// An AccountService client with no bearer token, as a member that is not enrolled yet.
async fn anonymous(
    api: &TestApi,
) -> pb::account_service_client::AccountServiceClient<tonic::transport::Channel> {
    let channel = orgtrail::client::channel(&api.endpoint(), None).await.unwrap();
    pb::account_service_client::AccountServiceClient::new(channel)
}

fn enroll_request(token: &str, account_id: &str, external_id: &str) -> pb::EnrollRequest {
    pb::EnrollRequest {
        enrollment_token: token.into(),
        account_id: account_id.into(),
        name: String::new(),
        email: String::new(),
        collector: Some(pb::CollectorSettings {
            role_arn: format!("arn:aws:iam::{account_id}:role/orgtrail-collector"),
            external_id: external_id.into(),
            lookup_events: true,
            ..Default::default()
        }),
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn enrollment_needs_no_bearer_token_and_issues_a_member_token(pool: PgPool) {
    let (api, mut admin) = control_plane(pool).await;
    let issued = enrollment_token(&mut admin, "").await;
    assert_eq!(issued.aggregator_principal, format!("arn:aws:iam::{MOTO_MANAGEMENT}:root"));
    let mut client = anonymous(&api).await;
    let described = client
        .describe_enrollment(pb::DescribeEnrollmentRequest {
            enrollment_token: issued.enrollment_token.clone(),
            account_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.external_id, issued.external_id);
    assert_eq!(described.aggregator_principal, issued.aggregator_principal);
    assert_eq!(described.organization_id, "o-bootstrap123");
    assert_eq!(described.expire_time, issued.expire_time);
    let enrolled = client
        .enroll(enroll_request(&issued.enrollment_token, MEMBER_A, &issued.external_id))
        .await
        .unwrap()
        .into_inner();
    let account = enrolled.account.unwrap();
    assert_eq!(account.name, MEMBER_A, "no name given: the account id");
    assert_eq!(account.registration_source, pb::RegistrationSource::Bootstrap as i32);
    let mut member = api.clients(&enrolled.member_token).await;
    let me = member.tokens.who_am_i(pb::WhoAmIRequest {}).await.unwrap().into_inner();
    assert_eq!((me.account_id.as_str(), me.token_id), (MEMBER_A, enrolled.member_token_id));
    // Anything else still needs a bearer token.
    let error = client.list_accounts(pb::ListAccountsRequest::default()).await.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated);
}

#[sqlx::test(migrations = "./migrations")]
async fn enrollment_rules_name_the_problem(pool: PgPool) {
    let (api, mut admin) = control_plane(pool.clone()).await;
    let mut client = anonymous(&api).await;

    // Lifetime: 60 seconds to 7 days.
    for bad in [59, 7 * 24 * 3600 + 1, -1] {
        let error = admin
            .accounts
            .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
                expires_in_seconds: bad,
                account_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{bad}");
        assert!(error.message().contains("expires_in_seconds"), "{}", error.message());
    }

    // Unknown token.
    let error = client.enroll(enroll_request("oten_nope", MEMBER_A, "x1")).await.unwrap_err();
    assert_eq!((error.code(), error.message()), (Code::Unauthenticated, "unknown enrollment token"));

    // Pinned to another account: refused by Describe (with the account) and by Enroll.
    let pinned = enrollment_token(&mut admin, MEMBER_B).await;
    let error = client
        .describe_enrollment(pb::DescribeEnrollmentRequest {
            enrollment_token: pinned.enrollment_token.clone(),
            account_id: MEMBER_A.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(
        error.message().contains(&format!("is for account {MEMBER_B}, not {MEMBER_A}")),
        "{}",
        error.message()
    );
    let error = client
        .enroll(enroll_request(&pinned.enrollment_token, MEMBER_A, &pinned.external_id))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);

    // The role must require this enrollment's ExternalId and be in the enrolling account.
    let open = enrollment_token(&mut admin, "").await;
    let error =
        client.enroll(enroll_request(&open.enrollment_token, MEMBER_A, "orgtrail-other")).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("collector.external_id"), "{}", error.message());
    let mut elsewhere = enroll_request(&open.enrollment_token, MEMBER_A, &open.external_id);
    elsewhere.collector.as_mut().unwrap().role_arn =
        format!("arn:aws:iam::{MEMBER_B}:role/orgtrail-collector");
    let error = client.enroll(elsewhere).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("collector.role_arn"), "{}", error.message());

    // Single use.
    client.enroll(enroll_request(&open.enrollment_token, MEMBER_A, &open.external_id)).await.unwrap();
    let error =
        client.enroll(enroll_request(&open.enrollment_token, MEMBER_B, &open.external_id)).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(error.message().contains(&format!("already used by account {MEMBER_A}")), "{}", error.message());

    // An account enrolled once is taken for other enrollments.
    let again = enrollment_token(&mut admin, "").await;
    let error = client
        .enroll(enroll_request(&again.enrollment_token, MEMBER_A, &again.external_id))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);
    assert!(error.message().contains("by another enrollment"), "{}", error.message());

    // Expired.
    sqlx::query("UPDATE enrollments SET expires_at = now() - interval '1 second' WHERE used_at IS NULL")
        .execute(&pool)
        .await
        .unwrap();
    let error = client
        .enroll(enroll_request(&again.enrollment_token, MEMBER_B, &again.external_id))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(error.message().starts_with("enrollment token expired at "), "{}", error.message());
}

#[sqlx::test(migrations = "./migrations")]
async fn accounts_from_organizations_sync_and_removed_accounts_can_enroll(pool: PgPool) {
    let (api, mut admin) = control_plane(pool.clone()).await;
    let mut client = anonymous(&api).await;
    sqlx::query(
        "INSERT INTO accounts (account_id, name, status, registration_source) VALUES ($1, 'synced', 'ACTIVE', 'AWS_ORGANIZATIONS')",
    )
    .bind(MEMBER_A)
    .execute(&pool)
    .await
    .unwrap();
    let token = enrollment_token(&mut admin, "").await;
    let account = client
        .enroll(enroll_request(&token.enrollment_token, MEMBER_A, &token.external_id))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(
        (account.name.as_str(), account.registration_source),
        ("synced", pb::RegistrationSource::AwsOrganizations as i32)
    );
    assert_eq!(account.collector.unwrap().external_id, token.external_id);

    admin
        .accounts
        .register_account(pb::RegisterAccountRequest {
            account_id: MEMBER_B.into(),
            name: "b".into(),
            email: String::new(),
        })
        .await
        .unwrap();
    admin
        .accounts
        .deregister_account(pb::DeregisterAccountRequest { account_id: MEMBER_B.into() })
        .await
        .unwrap();
    let token = enrollment_token(&mut admin, MEMBER_B).await;
    let account = client
        .enroll(enroll_request(&token.enrollment_token, MEMBER_B, &token.external_id))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(account.status, pb::AccountStatus::Active as i32);
    assert_eq!(account.registration_source, pb::RegistrationSource::Bootstrap as i32);
}
