//! The real aws CLI (PyPI awscli) and boto3 manage trails on a real `orgtrail dev` as if it were
//! CloudTrail, with nothing but the endpoint changed: every trail action, its error codes,
//! pagination over one-trail pages (`dev --cloudtrail-list-page-size 1`), tags, and selectors that
//! read back byte for byte. What they did is checked through gRPC, and the other way round.

mod common;

use common::*;
use orgtrail::client::Clients;
use orgtrail::proto::v1 as pb;
use serde_json::{Value, json};

/// The member account the tests register (dev's management account is 123456789012).
const MEMBER: &str = "210987654321";

/// A dev stack with one registered member, and access key pairs for an admin, the member and an
/// auditor.
struct Setup {
    // Declared before the directory it runs in, so it stops before the directory goes.
    dev: DevProcess,
    _dir: tempfile::TempDir,
    grpc: Clients,
    member_key: (String, String),
    auditor_key: (String, String),
}

impl Setup {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dev = DevProcess::start(dir.path(), &["--cloudtrail-list-page-size", "1"]);
        let mut grpc = dev.admin().await;
        grpc.accounts
            .register_account(pb::RegisterAccountRequest {
                account_id: MEMBER.into(),
                name: "member".into(),
                email: "member@example.com".into(),
            })
            .await
            .unwrap();
        let member_key = key_pair(&mut grpc, pb::Role::Member, MEMBER).await;
        let auditor_key = key_pair(&mut grpc, pb::Role::Auditor, "").await;
        Self { dev, _dir: dir, grpc, member_key, auditor_key }
    }

    fn admin_key(&self) -> (String, String) {
        (self.dev.info.cloudtrail_access_key_id.clone(), self.dev.info.cloudtrail_secret_access_key.clone())
    }

    /// The environment the README documents: only the endpoint differs from talking to AWS.
    fn endpoint_env(&self) -> Vec<(&'static str, String)> {
        vec![("AWS_ENDPOINT_URL_CLOUDTRAIL", self.dev.info.cloudtrail_endpoint.clone())]
    }

    fn management(&self) -> &str {
        &self.dev.info.management_account_id
    }

    /// A trail of the member's, homed in eu-west-1, made through gRPC.
    async fn grpc_trail(&mut self, multi_region: Option<bool>) -> pb::Trail {
        let request = pb::CreateTrailRequest {
            name: "grpc-trail".into(),
            owner_account_id: MEMBER.into(),
            s3_bucket_name: self.dev.info.bucket.clone(),
            home_region: "eu-west-1".into(),
            is_multi_region_trail: multi_region,
            ..Default::default()
        };
        self.grpc.trails.create_trail(request).await.unwrap().into_inner()
    }
}

async fn key_pair(grpc: &mut Clients, role: pb::Role, account: &str) -> (String, String) {
    let issued = grpc
        .tokens
        .create_token(pb::CreateTokenRequest {
            name: format!("{} key", role.as_str_name()),
            role: role as i32,
            account_id: account.into(),
            expires_in_seconds: 0,
            with_access_key: true,
        })
        .await
        .unwrap()
        .into_inner();
    (issued.token.unwrap().access_key_id, issued.secret_access_key)
}

/// Runs `aws cloudtrail ARGS` with `key` against the dev stack.
fn aws(setup: &Setup, key: (String, String), args: &[&str]) -> Value {
    let env = setup.endpoint_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args: Vec<&str> = ["cloudtrail"].into_iter().chain(args.iter().copied()).collect();
    AwsCli::new(key).run(&env, &args)
}

/// Runs `aws cloudtrail ARGS` that must fail with `code`.
fn aws_fails(setup: &Setup, key: (String, String), code: &str, args: &[&str]) {
    let env = setup.endpoint_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args: Vec<&str> = ["cloudtrail"].into_iter().chain(args.iter().copied()).collect();
    let stderr = AwsCli::new(key).run_failing(&env, &args);
    assert!(stderr.contains(&format!("({code})")), "aws {args:?}: expected {code}, got: {stderr}");
}

/// The bytes the aws CLI prints for a JSON value (`--output json`: four-space indent).
fn cli_json(value: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut serializer).unwrap();
    String::from_utf8(out).unwrap() + "\n"
}

#[tokio::test(flavor = "multi_thread")]
async fn the_aws_cli_manages_trails_as_cloudtrail() {
    let mut setup = Setup::start().await;
    let admin = setup.admin_key();
    let bucket = setup.dev.info.bucket.clone();
    let arn = format!("arn:aws:cloudtrail:us-east-1:{}:trail/cli-trail", setup.management());

    // CreateTrail with CloudTrail's defaults; the trail is the management account's, and gRPC sees it.
    let created = aws(
        &setup,
        admin.clone(),
        &[
            "create-trail",
            "--name",
            "cli-trail",
            "--s3-bucket-name",
            &bucket,
            "--tags-list",
            "Key=team,Value=sec",
        ],
    );
    assert_eq!(created["TrailARN"], arn.as_str());
    assert_eq!(created["IsMultiRegionTrail"], false, "the API's default, unlike orgtrail's gRPC");
    assert_eq!(created["IncludeGlobalServiceEvents"], true);
    assert_eq!(created["LogFileValidationEnabled"], false);
    let seen =
        setup.grpc.trails.get_trail(pb::GetTrailRequest { name: arn.clone() }).await.unwrap().into_inner();
    assert_eq!((seen.owner_account_id.as_str(), seen.is_multi_region_trail), (setup.management(), false));
    assert_eq!(seen.tags, vec![pb::Tag { key: "team".into(), value: "sec".into() }]);

    // A trail made through gRPC is visible to the CLI.
    let grpc_trail = setup.grpc_trail(None).await;
    let got = aws(&setup, admin.clone(), &["get-trail", "--name", &grpc_trail.trail_arn]);
    assert_eq!(got["Trail"]["HomeRegion"], "eu-west-1");
    assert_eq!(got["Trail"]["IsMultiRegionTrail"], true, "gRPC's default");

    // ListTrails: the CLI follows NextToken over one-trail pages; --max-items/--starting-token resume.
    aws(
        &setup,
        setup.member_key.clone(),
        &["create-trail", "--name", "member-trail", "--s3-bucket-name", &bucket],
    );
    let all = aws(&setup, admin.clone(), &["list-trails"]);
    let mut names: Vec<&str> =
        all["Trails"].as_array().unwrap().iter().map(|t| t["Name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["cli-trail", "grpc-trail", "member-trail"]);
    let first = aws(&setup, admin.clone(), &["list-trails", "--max-items", "1"]);
    assert_eq!(first["Trails"].as_array().unwrap().len(), 1);
    let token = first["NextToken"].as_str().expect("a NextToken after one of three trails");
    let rest = aws(&setup, admin.clone(), &["list-trails", "--starting-token", token]);
    assert_eq!(rest["Trails"].as_array().unwrap().len(), 2);
    let member_sees = aws(&setup, setup.member_key.clone(), &["list-trails"]);
    assert_eq!(member_sees["Trails"].as_array().unwrap().len(), 2, "its own and grpc-trail: {member_sees}");

    // UpdateTrail, StopLogging/StartLogging with GetTrailStatus.
    let updated = aws(
        &setup,
        admin.clone(),
        &["update-trail", "--name", "cli-trail", "--is-multi-region-trail", "--enable-log-file-validation"],
    );
    assert_eq!(
        (updated["IsMultiRegionTrail"].clone(), updated["LogFileValidationEnabled"].clone()),
        (json!(true), json!(true))
    );
    aws(&setup, admin.clone(), &["stop-logging", "--name", &arn]);
    assert_eq!(aws(&setup, admin.clone(), &["get-trail-status", "--name", "cli-trail"])["IsLogging"], false);
    aws(&setup, admin.clone(), &["start-logging", "--name", "cli-trail"]);
    assert_eq!(aws(&setup, admin.clone(), &["get-trail-status", "--name", &arn])["IsLogging"], true);
    let status =
        setup.grpc.trails.get_trail_status(pb::GetTrailStatusRequest { name: arn.clone() }).await.unwrap();
    assert!(status.get_ref().is_logging, "gRPC sees the CLI's StartLogging");

    // Event selectors read back byte for byte, basic and advanced.
    let dir = tempfile::tempdir().unwrap();
    for selectors in [
        json!({"EventSelectors": [{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": false,
            "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::bucket-a/", "arn:aws:s3:::bucket-b/x"]},
                              {"Type": "AWS::Lambda::Function", "Values": ["arn:aws:lambda"]}],
            "ExcludeManagementEventSources": []}]}),
        json!({"AdvancedEventSelectors": [{"Name": "S3 writes", "FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Data"]},
            {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
            {"Field": "resources.ARN", "StartsWith": ["arn:aws:s3:::bucket-a/"], "NotEndsWith": [".tmp", ".part"]},
            {"Field": "readOnly", "Equals": ["false"]}]}]}),
    ] {
        let (kind, list) = selectors.as_object().unwrap().iter().next().unwrap();
        let file = dir.path().join("selectors.json");
        std::fs::write(&file, cli_json(list)).unwrap();
        let flag = if kind == "EventSelectors" { "--event-selectors" } else { "--advanced-event-selectors" };
        let file_arg = format!("file://{}", file.display());
        aws(&setup, admin.clone(), &["put-event-selectors", "--trail-name", "cli-trail", flag, &file_arg]);
        let output = AwsCli::new(admin.clone()).run_raw(
            &[("AWS_ENDPOINT_URL_CLOUDTRAIL", setup.dev.info.cloudtrail_endpoint.as_str())],
            &["cloudtrail", "get-event-selectors", "--trail-name", &arn],
        );
        let expected = cli_json(&json!({"TrailARN": arn, kind.as_str(): list}));
        assert_eq!(output, expected, "get-event-selectors printed other bytes than were put");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            cli_json(&serde_json::from_str::<Value>(&output).unwrap()[kind.as_str()]),
        );
    }
    let selectors = setup
        .grpc
        .trails
        .get_event_selectors(pb::GetEventSelectorsRequest { trail_name: arn.clone() })
        .await
        .unwrap();
    assert_eq!(
        selectors.get_ref().advanced_event_selectors[0].name,
        "S3 writes",
        "gRPC sees the CLI's selectors"
    );

    // Insights selectors.
    aws(
        &setup,
        admin.clone(),
        &[
            "put-insight-selectors",
            "--trail-name",
            "cli-trail",
            "--insight-selectors",
            r#"[{"InsightType":"ApiCallRateInsight"}]"#,
        ],
    );
    let insights = aws(&setup, admin.clone(), &["get-insight-selectors", "--trail-name", "cli-trail"]);
    // Left out, EventCategories is management events, as CloudTrail documents; it reads back so.
    assert_eq!(
        insights["InsightSelectors"],
        json!([{"InsightType": "ApiCallRateInsight", "EventCategories": ["Management"]}])
    );

    // Tags round-trip; ListTags pages one trail at a time.
    aws(
        &setup,
        admin.clone(),
        &["add-tags", "--resource-id", &arn, "--tags-list", "Key=env,Value=prod", "Key=empty"],
    );
    aws(
        &setup,
        admin.clone(),
        &["add-tags", "--resource-id", &grpc_trail.trail_arn, "--tags-list", "Key=k,Value=v"],
    );
    let tags = aws(&setup, admin.clone(), &["list-tags", "--resource-id-list", &arn, &grpc_trail.trail_arn]);
    assert_eq!(
        tags["ResourceTagList"],
        json!([
            {"ResourceId": arn, "TagsList": [{"Key": "team", "Value": "sec"}, {"Key": "env", "Value": "prod"}, {"Key": "empty"}]},
            {"ResourceId": grpc_trail.trail_arn, "TagsList": [{"Key": "k", "Value": "v"}]},
        ])
    );
    aws(
        &setup,
        admin.clone(),
        &["remove-tags", "--resource-id", &arn, "--tags-list", "Key=team", "Key=empty"],
    );
    let tags = aws(&setup, admin.clone(), &["list-tags", "--resource-id-list", &arn]);
    assert_eq!(tags["ResourceTagList"][0]["TagsList"], json!([{"Key": "env", "Value": "prod"}]));
    let seen =
        setup.grpc.trails.get_trail(pb::GetTrailRequest { name: arn.clone() }).await.unwrap().into_inner();
    assert_eq!(seen.tags, vec![pb::Tag { key: "env".into(), value: "prod".into() }]);

    // The error codes CloudTrail answers with.
    aws_fails(
        &setup,
        admin.clone(),
        "TrailAlreadyExistsException",
        &["create-trail", "--name", "cli-trail", "--s3-bucket-name", &bucket],
    );
    aws_fails(&setup, admin.clone(), "TrailNotFoundException", &["get-trail", "--name", "no-such-trail"]);
    aws_fails(
        &setup,
        admin.clone(),
        "InvalidTrailNameException",
        &["create-trail", "--name", "my--trail", "--s3-bucket-name", &bucket],
    );
    aws_fails(
        &setup,
        admin.clone(),
        "InvalidParameterCombinationException",
        &[
            "create-trail",
            "--name",
            "combo",
            "--s3-bucket-name",
            &bucket,
            "--is-multi-region-trail",
            "--no-include-global-service-events",
        ],
    );
    aws_fails(
        &setup,
        admin.clone(),
        "InvalidEventSelectorsException",
        &[
            "put-event-selectors",
            "--trail-name",
            "cli-trail",
            "--event-selectors",
            r#"[{"ReadWriteType":"Sometimes"}]"#,
        ],
    );
    aws_fails(
        &setup,
        setup.member_key.clone(),
        "NotOrganizationMasterAccountException",
        &["create-trail", "--name", "org", "--s3-bucket-name", &bucket, "--is-organization-trail"],
    );
    aws_fails(&setup, setup.auditor_key.clone(), "AccessDeniedException", &["delete-trail", "--name", &arn]);

    // DeleteTrail; gRPC sees it gone, and a trail deleted through gRPC is gone for the CLI.
    aws(&setup, admin.clone(), &["delete-trail", "--name", "cli-trail"]);
    let gone = setup.grpc.trails.get_trail(pb::GetTrailRequest { name: arn.clone() }).await;
    assert_eq!(code(gone), tonic::Code::NotFound);
    setup
        .grpc
        .trails
        .delete_trail(pb::DeleteTrailRequest { name: grpc_trail.trail_arn.clone() })
        .await
        .unwrap();
    aws_fails(
        &setup,
        admin.clone(),
        "TrailNotFoundException",
        &["get-trail", "--name", &grpc_trail.trail_arn],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn boto3_manages_trails_as_cloudtrail_and_parses_every_answer() {
    let mut setup = Setup::start().await;
    // Single-region, so it does not count towards the member's trails in us-east-1.
    let grpc_trail = setup.grpc_trail(Some(false)).await;
    // Event history for LookupEvents' paginator: three events, looked up one a page.
    let history_ids = ["b3-lookup-1", "b3-lookup-2", "b3-lookup-3"];
    let records: Vec<String> = history_ids
        .iter()
        .map(|id| event(MEMBER, "us-east-1", "iam.amazonaws.com", "CreateUser", id))
        .collect();
    put(&mut setup.grpc, &records).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let request = pb::LookupEventsRequest { max_results: 50, ..Default::default() };
        let found = setup.grpc.events.lookup_events(request).await.unwrap().into_inner().events.len();
        if found == history_ids.len() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the events did not reach the history ({found} found)");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let python = std::env::var("ORGTRAIL_TEST_PYTHON")
        .expect("ORGTRAIL_TEST_PYTHON is not set: run the suite with scripts/test, which installs boto3");
    let admin = setup.admin_key();
    let output = std::process::Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/cloudtrail_boto3.py"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CT_ENDPOINT", &setup.dev.info.cloudtrail_endpoint)
        .env("CT_BUCKET", &setup.dev.info.bucket)
        .env("CT_MANAGEMENT", setup.management())
        .env("CT_MEMBER", MEMBER)
        .env("CT_GRPC_TRAIL_ARN", &grpc_trail.trail_arn)
        .env("CT_HISTORY_EVENT_IDS", history_ids.join(","))
        .env("CT_ADMIN_KEY_ID", &admin.0)
        .env("CT_ADMIN_SECRET", &admin.1)
        .env("CT_MEMBER_KEY_ID", &setup.member_key.0)
        .env("CT_MEMBER_SECRET", &setup.member_key.1)
        .env("CT_AUDITOR_KEY_ID", &setup.auditor_key.0)
        .env("CT_AUDITOR_SECRET", &setup.auditor_key.1)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the boto3 script failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let checked: Value = serde_json::from_slice(&output.stdout).expect("the script prints what it checked");
    eprintln!("boto3 checked: {checked}");
    assert!(checked["responses"].as_u64().unwrap() > 50, "{checked}");
    for code in [
        "TrailAlreadyExistsException",
        "TrailNotFoundException",
        "InvalidTrailNameException",
        "InvalidParameterCombinationException",
        "InvalidEventSelectorsException",
        "NotOrganizationMasterAccountException",
        "InvalidHomeRegionException",
        "InvalidInsightSelectorsException",
        "InsightNotEnabledException",
        "InvalidTagParameterException",
        "TagsLimitExceededException",
        "ResourceNotFoundException",
        "CloudTrailARNInvalidException",
        "MaximumNumberOfTrailsExceededException",
        "InvalidS3BucketNameException",
        "InvalidS3PrefixException",
        "InvalidSnsTopicNameException",
        "InvalidKmsKeyIdException",
        "InvalidCloudWatchLogsLogGroupArnException",
        "InvalidNextTokenException",
        "InvalidTokenException",
        "AccessDeniedException",
    ] {
        assert!(checked["errors"][code].as_u64().is_some_and(|n| n > 0), "boto3 never saw {code}: {checked}");
    }

    // What boto3 did, as gRPC sees it.
    let mut names: Vec<(String, String, bool)> = setup
        .grpc
        .trails
        .list_trails(pb::ListTrailsRequest { page_size: 100, next_token: String::new() })
        .await
        .unwrap()
        .into_inner()
        .trails
        .into_iter()
        .map(|t| (t.name, t.owner_account_id, t.is_organization_trail))
        .collect();
    names.sort();
    let management = setup.management().to_owned();
    assert_eq!(
        names,
        [
            ("b3-member".to_owned(), MEMBER.to_owned(), false),
            ("b3-org".to_owned(), management, true),
            ("grpc-trail".to_owned(), MEMBER.to_owned(), false),
        ]
    );
}
