//! The CloudTrail-compatible HTTP API: AWS JSON 1.1 requests signed with real SigV4 (the aws-sigv4
//! crate the AWS SDK uses), and the real aws CLI (scripts/test installs it and sets
//! ORGTRAIL_TEST_AWS) against it and against the in-process S3 store with the same credentials.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use orgtrail::proto::v1 as pb;
use orgtrail::store::tokens::Role;
use serde_json::{Value, json};
use sqlx::PgPool;

const CLOUDTRAIL: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.";
const ORGANIZATIONS: &str = "AWSOrganizationsV20161128.";

/// A SigV4-signing client for one access key pair and region.
struct Signed {
    addr: SocketAddr,
    key_id: String,
    secret: String,
    region: String,
    /// The signing time; tests of clock skew move it.
    time: SystemTime,
}

/// An answer: HTTP status and the JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    /// The body of a successful answer.
    fn ok(self) -> Value {
        assert_eq!(self.status, 200, "{}", self.body);
        self.body
    }

    /// The AWS exception name of a failed answer (HTTP 400).
    fn error(self) -> String {
        assert_eq!(self.status, 400, "{}", self.body);
        assert!(self.body["message"].is_string(), "{}", self.body);
        self.body["__type"].as_str().unwrap_or_default().to_owned()
    }
}

impl Signed {
    fn new(addr: SocketAddr, (key_id, secret): (String, String), region: &str) -> Self {
        Self { addr, key_id, secret, region: region.to_owned(), time: SystemTime::now() }
    }

    async fn cloudtrail(&self, operation: &str, input: Value) -> Answer {
        self.call("cloudtrail", &format!("{CLOUDTRAIL}{operation}"), &input.to_string()).await
    }

    async fn organizations(&self, operation: &str) -> Answer {
        self.call("organizations", &format!("{ORGANIZATIONS}{operation}"), "{}").await
    }

    /// A request signed for `service` the way botocore signs it.
    async fn call(&self, service: &str, target: &str, body: &str) -> Answer {
        let host = self.addr.to_string();
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("host", host.as_str()),
            ("x-amz-target", target),
        ];
        let identity =
            aws_sdk_s3::config::Credentials::new(&self.key_id, &self.secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(self.time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            "POST",
            format!("http://{host}/"),
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut request = http::Request::post("/");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let mut request = request.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        instructions.apply_to_request_http1x(&mut request);
        send(self.addr, request).await
    }
}

async fn send(addr: SocketAddr, request: http::Request<Full<Bytes>>) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], "application/x-amz-json-1.1");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer { status, body: serde_json::from_slice(&body).unwrap() }
}

/// An unsigned request with this target and body.
async fn unsigned(addr: SocketAddr, target: &str, body: &str) -> Answer {
    let request = http::Request::post("/")
        .header("host", addr.to_string())
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", target)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    send(addr, request).await
}

fn names(trails: &Value) -> Vec<&str> {
    let list = trails["trailList"].as_array().unwrap_or_else(|| panic!("no trailList in {trails}"));
    let mut names: Vec<&str> = list.iter().map(|t| t["Name"].as_str().unwrap()).collect();
    names.sort_unstable();
    names
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

/// An organization with an organization trail, one account trail per member in us-east-1, and a
/// single-region trail of member A homed in eu-west-1.
async fn trails_of_an_organization(api: &TestApi) -> pb::Trail {
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    let org = admin
        .trails
        .create_trail(pb::CreateTrailRequest {
            s3_key_prefix: "org".into(),
            log_file_validation_enabled: true,
            ..org_trail("org-trail")
        })
        .await
        .unwrap()
        .into_inner();
    for (name, owner) in [("a-trail", MEMBER_A), ("b-trail", MEMBER_B)] {
        let request =
            pb::CreateTrailRequest { is_multi_region_trail: Some(false), ..account_trail(name, owner) };
        admin.trails.create_trail(request).await.unwrap();
    }
    let eu = pb::CreateTrailRequest {
        home_region: "eu-west-1".into(),
        is_multi_region_trail: Some(false),
        kms_key_id: "alias/trail-key".into(),
        ..account_trail("a-eu-trail", MEMBER_A)
    };
    admin.trails.create_trail(eu).await.unwrap();
    org
}

#[sqlx::test(migrations = "./migrations")]
async fn describe_trails_lists_the_regions_trails_in_cloudtrails_shape(pool: PgPool) {
    let api = start(pool).await;
    let org = trails_of_an_organization(&api).await;
    let addr = api.cloudtrail_api().await;
    let keys = api.access_key(Role::Admin, None).await;
    let us = Signed::new(addr, keys.clone(), "us-east-1");

    let listed = us.cloudtrail("DescribeTrails", json!({})).await.ok();
    assert_eq!(names(&listed), vec!["a-trail", "b-trail", "org-trail"], "trails that apply in us-east-1");
    let shape = listed["trailList"].as_array().unwrap().iter().find(|t| t["Name"] == "org-trail").unwrap();
    assert_eq!(
        shape,
        &json!({
            "Name": "org-trail",
            "S3BucketName": "central-bucket",
            "S3KeyPrefix": "org",
            "IncludeGlobalServiceEvents": true,
            "IsMultiRegionTrail": true,
            "HomeRegion": "us-east-1",
            "TrailARN": org.trail_arn,
            "LogFileValidationEnabled": true,
            "HasCustomEventSelectors": false,
            "HasInsightSelectors": false,
            "IsOrganizationTrail": true,
        }),
        "optional strings that are empty are left out"
    );

    let eu = Signed::new(addr, keys, "eu-west-1");
    let listed = eu.cloudtrail("DescribeTrails", json!({})).await.ok();
    assert_eq!(names(&listed), vec!["a-eu-trail", "org-trail"], "the multi-region trail is a shadow here");
    let eu_trail =
        listed["trailList"].as_array().unwrap().iter().find(|t| t["Name"] == "a-eu-trail").unwrap();
    assert_eq!(eu_trail["KmsKeyId"], "alias/trail-key");
    assert_eq!(eu_trail["HomeRegion"], "eu-west-1");
    let own = eu.cloudtrail("DescribeTrails", json!({"includeShadowTrails": false})).await.ok();
    assert_eq!(names(&own), vec!["a-eu-trail"]);

    let by_name =
        eu.cloudtrail("DescribeTrails", json!({"trailNameList": ["org-trail", "a-eu-trail"]})).await.ok();
    assert_eq!(names(&by_name), vec!["a-eu-trail"], "names match only trails homed in the region");
    let by_arn = eu.cloudtrail("DescribeTrails", json!({"trailNameList": [org.trail_arn]})).await.ok();
    assert_eq!(names(&by_arn), vec!["org-trail"], "ARNs match any visible trail");
}

#[sqlx::test(migrations = "./migrations")]
async fn get_trail_and_status_answer_by_name_or_arn(pool: PgPool) {
    let api = start(pool).await;
    let org = trails_of_an_organization(&api).await;
    let mut admin = api.admin().await;
    admin.trails.start_logging(pb::StartLoggingRequest { name: org.trail_arn.clone() }).await.unwrap();
    let addr = api.cloudtrail_api().await;
    let client = Signed::new(addr, api.access_key(Role::Auditor, None).await, "us-east-1");

    let by_name = client.cloudtrail("GetTrail", json!({"Name": "org-trail"})).await.ok();
    let by_arn = client.cloudtrail("GetTrail", json!({"Name": org.trail_arn})).await.ok();
    assert_eq!(by_name, by_arn);
    assert_eq!(by_name["Trail"]["TrailARN"], org.trail_arn.as_str());
    assert_eq!(by_name["Trail"]["IsOrganizationTrail"], true);
    assert_eq!(
        client.cloudtrail("GetTrail", json!({"Name": "no-such-trail"})).await.error(),
        "TrailNotFoundException"
    );
    assert_eq!(
        client.cloudtrail("GetTrail", json!({"Name": "x"})).await.error(),
        "InvalidTrailNameException"
    );

    let status = client.cloudtrail("GetTrailStatus", json!({"Name": org.trail_arn})).await.ok();
    assert_eq!(status["IsLogging"], true);
    let started = status["StartLoggingTime"].as_f64().expect("StartLoggingTime is epoch seconds");
    assert!((started - chrono::Utc::now().timestamp() as f64).abs() < 60.0, "{status}");
    let iso = chrono::DateTime::from_timestamp(started as i64, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ");
    assert_eq!(status["TimeLoggingStarted"], iso.to_string(), "the deprecated string form");
    for absent in ["StopLoggingTime", "TimeLoggingStopped", "LatestDeliveryError", "LatestDeliveryTime"] {
        assert!(status.get(absent).is_none(), "{absent} has no value yet: {status}");
    }
    let idle = client.cloudtrail("GetTrailStatus", json!({"Name": "a-trail"})).await.ok();
    assert_eq!(idle, json!({"IsLogging": false}));
    assert_eq!(
        client.cloudtrail("GetTrailStatus", json!({"Name": "no-such-trail"})).await.error(),
        "TrailNotFoundException"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn list_public_keys_serves_base64_pkcs1_per_signing_region(pool: PgPool) {
    let api = start(pool).await;
    let addr = api.cloudtrail_api().await;
    let keys = api.access_key(Role::Auditor, None).await;
    let us = Signed::new(addr, keys.clone(), "us-east-1");
    let none = us.cloudtrail("ListPublicKeys", json!({})).await.ok();
    assert_eq!(none["PublicKeyList"], json!([]), "a read creates no key: {none}");
    let mut admin = api.admin().await;
    for region in ["us-east-1", "eu-west-1"] {
        admin.keys.rotate_signing_key(pb::RotateSigningKeyRequest { region: region.into() }).await.unwrap();
    }
    let listed = us.cloudtrail("ListPublicKeys", json!({})).await.ok();
    let list = listed["PublicKeyList"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{listed}");
    let key = &list[0];
    let der = base64::engine::general_purpose::STANDARD.decode(key["Value"].as_str().unwrap()).unwrap();
    // SEQUENCE (266 bytes) { INTEGER (257 bytes) modulus, ... }: an RSA-2048 RSAPublicKey, not SPKI.
    assert_eq!(&der[..9], &[0x30, 0x82, 0x01, 0x0a, 0x02, 0x82, 0x01, 0x01, 0x00]);
    assert_eq!(key["Fingerprint"], md5_hex(&der));
    assert!(key["ValidityStartTime"].is_f64(), "{key}");
    assert!(key.get("ValidityEndTime").is_none(), "the current key's validity is open");

    let eu = Signed::new(addr, keys, "eu-west-1").cloudtrail("ListPublicKeys", json!({})).await.ok();
    assert_ne!(eu["PublicKeyList"][0]["Fingerprint"], key["Fingerprint"], "keys are per region");

    // Whole seconds truncate: the key may have become valid later within this second.
    let now = chrono::Utc::now().timestamp();
    let range = json!({"StartTime": now - 60, "EndTime": now as f64 + 1.5});
    let in_range = us.cloudtrail("ListPublicKeys", range).await.ok();
    assert_eq!(in_range["PublicKeyList"][0]["Fingerprint"], key["Fingerprint"], "integer and float epochs");
    let backwards = json!({"StartTime": now, "EndTime": now - 3600});
    assert_eq!(us.cloudtrail("ListPublicKeys", backwards).await.error(), "InvalidTimeRangeException");
}

#[sqlx::test(migrations = "./migrations")]
async fn describe_organization_answers_as_aws_organizations(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    admin
        .accounts
        .update_account(pb::UpdateAccountRequest {
            account_id: MANAGEMENT.into(),
            email: Some("root@example.com".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let addr = api.cloudtrail_api().await;
    let admin_keys = api.access_key(Role::Admin, None).await;
    let described =
        Signed::new(addr, admin_keys, "us-east-1").organizations("DescribeOrganization").await.ok();
    assert_eq!(
        described,
        json!({"Organization": {
            "Id": "o-testorg1234",
            "Arn": "arn:aws:organizations::111111111111:organization/o-testorg1234",
            "FeatureSet": "ALL",
            "MasterAccountId": "111111111111",
            "MasterAccountArn": "arn:aws:organizations::111111111111:account/o-testorg1234/111111111111",
            "MasterAccountEmail": "root@example.com",
            "AvailablePolicyTypes": [],
        }})
    );
    let member_keys = api.access_key(Role::Member, Some(MEMBER_A)).await;
    let seen_by_member =
        Signed::new(addr, member_keys, "us-east-1").organizations("DescribeOrganization").await.ok();
    assert_eq!(seen_by_member["Organization"]["Id"], "o-testorg1234");
    assert!(
        seen_by_member["Organization"].get("MasterAccountEmail").is_none(),
        "members may not read the management account"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn describe_organization_without_one_is_not_in_use(pool: PgPool) {
    let api = start(pool).await;
    let addr = api.cloudtrail_api().await;
    let client = Signed::new(addr, api.access_key(Role::Admin, None).await, "us-east-1");
    assert_eq!(
        client.organizations("DescribeOrganization").await.error(),
        "AWSOrganizationsNotInUseException"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_member_sees_its_own_trails_and_the_organization_trails_that_cover_it(pool: PgPool) {
    let api = start(pool).await;
    let org = trails_of_an_organization(&api).await;
    let mut admin = api.admin().await;
    let b_arn = admin
        .trails
        .get_trail(pb::GetTrailRequest {
            name: format!("arn:aws:cloudtrail:us-east-1:{MEMBER_B}:trail/b-trail"),
        })
        .await
        .unwrap()
        .into_inner()
        .trail_arn;
    let addr = api.cloudtrail_api().await;
    let member = Signed::new(addr, api.access_key(Role::Member, Some(MEMBER_A)).await, "us-east-1");

    let listed = member.cloudtrail("DescribeTrails", json!({})).await.ok();
    assert_eq!(names(&listed), vec!["a-trail", "org-trail"], "not member B's trail");
    let own = member.cloudtrail("DescribeTrails", json!({"includeShadowTrails": false})).await.ok();
    assert_eq!(names(&own), vec!["a-trail"], "the organization trail is a shadow trail in a member account");
    let by_name =
        member.cloudtrail("DescribeTrails", json!({"trailNameList": ["org-trail", "b-trail"]})).await.ok();
    assert_eq!(names(&by_name), Vec::<&str>::new(), "names match only the member's own trails");
    let by_arn =
        member.cloudtrail("DescribeTrails", json!({"trailNameList": [org.trail_arn, b_arn]})).await.ok();
    assert_eq!(names(&by_arn), vec!["org-trail"]);

    assert_eq!(member.cloudtrail("GetTrail", json!({"Name": b_arn})).await.error(), "TrailNotFoundException");
    let status = member.cloudtrail("GetTrailStatus", json!({"Name": org.trail_arn})).await.ok();
    assert_eq!(status["IsLogging"], false);
}

#[sqlx::test(migrations = "./migrations")]
async fn requests_that_are_not_signed_by_a_known_key_are_refused_in_aws_terms(pool: PgPool) {
    let api = start(pool.clone()).await;
    let addr = api.cloudtrail_api().await;
    let (key_id, secret) = api.access_key(Role::Admin, None).await;
    let target = format!("{CLOUDTRAIL}DescribeTrails");

    let missing = unsigned(addr, &target, "{}").await;
    assert_eq!(missing.error(), "MissingAuthenticationTokenException");
    let garbled = http::Request::post("/")
        .header("host", addr.to_string())
        .header("x-amz-target", &target)
        .header("x-amz-date", "20260101T000000Z")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=only-a-key")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(send(addr, garbled).await.error(), "IncompleteSignatureException");

    let wrong_secret = Signed::new(addr, (key_id.clone(), "not-the-secret".into()), "us-east-1");
    assert_eq!(
        wrong_secret.cloudtrail("DescribeTrails", json!({})).await.error(),
        "InvalidSignatureException"
    );
    let unknown = Signed::new(addr, ("AKOTNOSUCHKEY0000000".into(), secret.clone()), "us-east-1");
    assert_eq!(unknown.cloudtrail("DescribeTrails", json!({})).await.error(), "UnrecognizedClientException");
    let mut skewed = Signed::new(addr, (key_id.clone(), secret.clone()), "us-east-1");
    skewed.time = SystemTime::now() - Duration::from_secs(20 * 60);
    let answer = skewed.cloudtrail("DescribeTrails", json!({})).await;
    assert!(answer.body["message"].as_str().unwrap_or_default().contains("clock skew"), "{}", answer.body);
    assert_eq!(answer.error(), "InvalidSignatureException");
    let other_service = Signed::new(addr, (key_id.clone(), secret.clone()), "us-east-1");
    let answer = other_service.call("organizations", &target, "{}").await;
    assert_eq!(answer.error(), "InvalidSignatureException", "a signature for another service");

    let good = Signed::new(addr, (key_id.clone(), secret), "us-east-1");
    assert_eq!(
        good.call("cloudtrail", &format!("{CLOUDTRAIL}NoSuchAction"), "{}").await.error(),
        "UnknownOperationException"
    );
    assert_eq!(unsigned(addr, "", "{}").await.error(), "UnknownOperationException");
    assert_eq!(good.call("cloudtrail", &target, "{not json").await.error(), "SerializationException");
    assert_eq!(
        good.call("cloudtrail", &target, r#"{"trailNameList": "not-a-list"}"#).await.error(),
        "SerializationException"
    );
    let huge = format!(r#"{{"trailNameList": ["{}"]}}"#, "a".repeat(2 * 1024 * 1024));
    let too_large = good.call("cloudtrail", &target, &huge).await;
    assert_eq!(too_large.status, 413, "{}", too_large.body);
    good.cloudtrail("DescribeTrails", json!({})).await.ok();

    // A revoked token's key stops working at once.
    let token = orgtrail::store::tokens::list(&pool, None, 100, false)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.access_key_id.as_deref() == Some(key_id.as_str()))
        .unwrap();
    orgtrail::store::tokens::revoke(&pool, token.id).await.unwrap();
    assert_eq!(good.cloudtrail("DescribeTrails", json!({})).await.error(), "UnrecognizedClientException");
}

#[sqlx::test(migrations = "./migrations")]
async fn the_aws_cli_reads_trails_keys_and_the_organization(pool: PgPool) {
    let api = start(pool).await;
    let org = trails_of_an_organization(&api).await;
    let addr = api.cloudtrail_api().await;
    let cli = AwsCli::new(api.access_key(Role::Admin, None).await);
    let endpoint = format!("http://{addr}");
    let org_arn = org.trail_arn.clone();
    // The region's first key (digests make it; a read never does).
    let mut admin = api.admin().await;
    admin.keys.rotate_signing_key(pb::RotateSigningKeyRequest::default()).await.unwrap();
    let (described, got, status, keys, organization) = tokio::task::spawn_blocking(move || {
        let cloudtrail = |args: &[&str]| {
            let mut all = vec!["cloudtrail", "--endpoint-url", endpoint.as_str()];
            all.extend_from_slice(args);
            cli.run(&[], &all)
        };
        let described = cloudtrail(&["describe-trails"]);
        let got = cloudtrail(&["get-trail", "--name", &org_arn]);
        let status = cloudtrail(&["get-trail-status", "--name", "org-trail"]);
        // validate-logs asks for the current key, then for a time range.
        let current = cloudtrail(&["list-public-keys"]);
        let in_range = cloudtrail(&["list-public-keys", "--start-time", "2020-01-01T00:00:00Z"]);
        // validate-logs reaches Organizations only through the configured endpoint.
        let organization = cli.run(
            &[("AWS_ENDPOINT_URL_ORGANIZATIONS", &endpoint)],
            &["organizations", "describe-organization"],
        );
        (described, got, status, (in_range, current), organization)
    })
    .await
    .unwrap();

    let arns: Vec<&str> =
        described["trailList"].as_array().unwrap().iter().map(|t| t["TrailARN"].as_str().unwrap()).collect();
    assert!(arns.contains(&org.trail_arn.as_str()), "validate-logs finds its --trail-arn here: {described}");
    assert_eq!(got["Trail"]["S3KeyPrefix"], "org");
    assert_eq!(status["IsLogging"], false);
    let (in_range, current) = keys;
    let current_key = &current["PublicKeyList"][0];
    // The CLI passes blobs through as the base64 text, which validate-logs decodes itself.
    let der =
        base64::engine::general_purpose::STANDARD.decode(current_key["Value"].as_str().unwrap()).unwrap();
    assert_eq!(current_key["Fingerprint"], md5_hex(&der));
    assert_eq!(in_range["PublicKeyList"][0]["Fingerprint"], current_key["Fingerprint"]);
    assert_eq!(organization["Organization"]["Id"], "o-testorg1234");
}

#[sqlx::test(migrations = "./migrations")]
async fn one_credential_set_reaches_the_cloudtrail_api_and_the_s3_store(pool: PgPool) {
    let api = start(pool).await;
    let (key_id, secret) = api.access_key(Role::Admin, None).await;
    let dir = tempfile::tempdir().unwrap();
    let s3 = orgtrail::dev::s3::S3Server::start_with_keys(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        &[(S3_KEY, S3_SECRET), (&key_id, &secret)],
    )
    .await
    .unwrap();
    let store = orgtrail::dev::s3_client(&s3.endpoint(), S3_KEY, S3_SECRET, "us-east-1").await;
    store.create_bucket().bucket("central-bucket").send().await.unwrap();
    let key = "AWSLogs/o-testorg1234/111111111111/CloudTrail/us-east-1/2026/11/24/x.json.gz";
    store.put_object().bucket("central-bucket").key(key).body(b"{}".to_vec().into()).send().await.unwrap();
    let addr = api.cloudtrail_api().await;
    let cli = AwsCli::new((key_id, secret));
    let (s3_endpoint, endpoint) = (s3.endpoint(), format!("http://{addr}"));
    let (objects, trails) = tokio::task::spawn_blocking(move || {
        let objects = cli.run(
            &[("AWS_ENDPOINT_URL_S3", &s3_endpoint)],
            &["s3api", "list-objects", "--bucket", "central-bucket"],
        );
        let trails = cli.run(&[], &["cloudtrail", "--endpoint-url", &endpoint, "describe-trails"]);
        (objects, trails)
    })
    .await
    .unwrap();
    assert_eq!(objects["Contents"][0]["Key"], key);
    assert_eq!(trails["trailList"], json!([]));
}

#[sqlx::test(migrations = "./migrations")]
async fn serve_offers_the_api_over_tls_with_the_grpc_certificate(pool: PgPool) {
    const BIN: &str = env!("CARGO_BIN_EXE_orgtrail");
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_certificates(dir.path());
    let master_key = orgtrail::secrets::MasterKey::generate_base64().unwrap();
    let sealing_key = orgtrail::secrets::MasterKey::from_base64(&master_key).unwrap();
    let issued =
        orgtrail::control::api::token::issue(&pool, Some(&sealing_key), "aws", Role::Auditor, None, 0, true)
            .await
            .unwrap();
    let credentials = (issued.token.access_key_id.unwrap(), issued.secret_access_key.unwrap());
    let (grpc_port, cloudtrail_port) =
        (orgtrail::dev::postgres::free_port().unwrap(), orgtrail::dev::postgres::free_port().unwrap());
    let server = |master_key: Option<&str>, cloudtrail_listen: &str| {
        let mut command = Command::new(BIN);
        command
            .env("DATABASE_URL", database_url(&pool))
            .env("ORGTRAIL_GRPC_LISTEN", format!("127.0.0.1:{grpc_port}"))
            .env("ORGTRAIL_CLOUDTRAIL_LISTEN", cloudtrail_listen)
            .env("ORGTRAIL_TLS_CERT_PATH", &cert)
            .env("ORGTRAIL_TLS_KEY_PATH", &key)
            .env_remove("ORGTRAIL_MASTER_KEY")
            .stdout(std::process::Stdio::null());
        if let Some(master_key) = master_key {
            command.env("ORGTRAIL_MASTER_KEY", master_key);
        }
        command
    };

    let off = server(None, "").arg("migrate").output().unwrap();
    assert!(
        off.status.success(),
        "an empty cloudtrail_listen is off: {}",
        String::from_utf8_lossy(&off.stderr)
    );
    let listen = format!("127.0.0.1:{cloudtrail_port}");
    let refused = server(None, &listen).arg("serve").output().unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("master_key"),
        "the error names what is missing"
    );

    let serve =
        server(Some(&master_key), &listen).arg("serve").stderr(std::process::Stdio::null()).spawn().unwrap();
    wait_for_port(cloudtrail_port);
    let cli = AwsCli::new(credentials);
    let endpoint = format!("https://localhost:{cloudtrail_port}");
    let ca = ca.to_string_lossy().into_owned();
    let described = tokio::task::spawn_blocking(move || {
        cli.run(&[("AWS_CA_BUNDLE", &ca)], &["cloudtrail", "--endpoint-url", &endpoint, "describe-trails"])
    })
    .await
    .unwrap();
    assert_eq!(described, json!({"trailList": []}));
    stop_cleanly(serve);
}

#[sqlx::test(migrations = "./migrations")]
async fn admin_keys_create_trails_as_the_management_account_in_the_signing_region(pool: PgPool) {
    let api = start(pool).await;
    let addr = api.cloudtrail_api().await;
    let keys = api.access_key(Role::Admin, None).await;
    let eu = Signed::new(addr, keys.clone(), "eu-west-1");
    let us = Signed::new(addr, keys, "us-east-1");
    let create = json!({"Name": "mgmt-trail", "S3BucketName": "central-bucket"});

    // Without an organization there is no management account to act as.
    assert_eq!(eu.cloudtrail("CreateTrail", create.clone()).await.error(), "OrganizationsNotInUseException");

    org_with_members(&mut api.admin().await).await;
    let created = eu.cloudtrail("CreateTrail", create.clone()).await.ok();
    let arn = format!("arn:aws:cloudtrail:eu-west-1:{MANAGEMENT}:trail/mgmt-trail");
    assert_eq!(created["TrailARN"], arn.as_str(), "the management account's, homed where signed");
    assert!(created.get("HomeRegion").is_none(), "CreateTrail's answer has no HomeRegion: {created}");
    assert_eq!(eu.cloudtrail("CreateTrail", create).await.error(), "TrailAlreadyExistsException");

    // Changes belong in the home region; reads work from anywhere.
    assert_eq!(
        us.cloudtrail("GetTrail", json!({"Name": arn})).await.ok()["Trail"]["HomeRegion"],
        "eu-west-1"
    );
    for (operation, input) in [
        ("DeleteTrail", json!({"Name": arn})),
        ("StopLogging", json!({"Name": arn})),
        ("UpdateTrail", json!({"Name": arn, "S3KeyPrefix": "x"})),
        ("PutEventSelectors", json!({"TrailName": arn, "EventSelectors": [{"ReadWriteType": "All"}]})),
        ("PutInsightSelectors", json!({"TrailName": arn, "InsightSelectors": []})),
    ] {
        assert_eq!(
            us.cloudtrail(operation, input).await.error(),
            "InvalidHomeRegionException",
            "{operation}"
        );
    }
    assert_eq!(eu.cloudtrail("DeleteTrail", json!({"Name": "mgmt-trail"})).await.ok(), json!({}));
    assert_eq!(eu.cloudtrail("GetTrail", json!({"Name": arn})).await.error(), "TrailNotFoundException");
}
