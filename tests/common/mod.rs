//! Test harness: the real control plane on a real socket over a fresh Postgres database
//! (`#[sqlx::test]` gives each test its own), called through the real gRPC clients.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use orgtrail::client::{self, Clients, Target};
use orgtrail::control::api::{self, Ctx};
use orgtrail::model::{AccountId, Region};
use orgtrail::proto::v1 as pb;
use orgtrail::secrets::MasterKey;
use orgtrail::store::tokens::Role;
use sqlx::PgPool;
use tokio::sync::watch;

pub const MANAGEMENT: &str = "111111111111";
pub const MEMBER_A: &str = "222222222222";
pub const MEMBER_B: &str = "333333333333";

pub struct TestApi {
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub master_key: Arc<MasterKey>,
    /// AWS for Organizations sync (a moto server's); None: SyncAccounts has no AWS.
    pub aws: Option<Arc<orgtrail::integrations::aws::sdk::AwsSettings>>,
    /// The staging backend ingest uses; None: Postgres.
    pub staging: Option<Arc<dyn orgtrail::pipeline::staging::Staging>>,
    stop: watch::Sender<bool>,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub async fn start(pool: PgPool) -> TestApi {
    start_with_aws(pool, None).await
}

/// The control plane with ingest staging into `staging`.
pub async fn start_with_staging(
    pool: PgPool,
    staging: Arc<dyn orgtrail::pipeline::staging::Staging>,
) -> TestApi {
    start_serving(pool, None, Some(staging)).await
}

/// `ORGTRAIL_TEST_LOG=<filter>` (e.g. `warn` or `orgtrail=debug`) prints the test's server and
/// worker logs, for diagnosing a failure.
fn init_test_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("ORGTRAIL_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// The control plane with AWS settings (for Organizations sync against moto).
pub async fn start_with_aws(
    pool: PgPool,
    aws: Option<orgtrail::integrations::aws::sdk::AwsSettings>,
) -> TestApi {
    start_serving(pool, aws, None).await
}

async fn start_serving(
    pool: PgPool,
    aws: Option<orgtrail::integrations::aws::sdk::AwsSettings>,
    staging: Option<Arc<dyn orgtrail::pipeline::staging::Staging>>,
) -> TestApi {
    init_test_log();
    let master_key = Arc::new(MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap());
    let listener = api::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, _) = watch::channel(false);
    let test_api = TestApi { addr, pool, master_key, aws: aws.map(Arc::new), staging, stop };
    tokio::spawn(api::serve(test_api.ctx(), listener, None, test_api.stopped()));
    test_api
}

impl TestApi {
    fn ctx(&self) -> Ctx {
        Ctx {
            pool: self.pool.clone(),
            default_region: Region::parse("region", "us-east-1").unwrap(),
            master_key: Some(self.master_key.clone()),
            staging: self
                .staging
                .clone()
                .unwrap_or_else(|| Arc::new(orgtrail::pipeline::staging::PgStaging::new(self.pool.clone()))),
            aws: self.aws.clone(),
            aggregator_principal_arn: None,
        }
    }

    /// Resolves when the test's servers stop (the TestApi is dropped).
    fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopped = self.stop.subscribe();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    }

    /// Starts the CloudTrail-compatible HTTP API over the same database; returns its address.
    pub async fn cloudtrail_api(&self) -> SocketAddr {
        let listener = api::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(orgtrail::control::cloudtrail_api::serve(
            self.ctx(),
            orgtrail::control::cloudtrail_api::Settings::default(),
            listener,
            None,
            self.stopped(),
        ));
        addr
    }

    /// A fresh token of `role` with an access key pair; returns (access key id, secret access key).
    pub async fn access_key(&self, role: Role, account: Option<&str>) -> (String, String) {
        let account = account.map(|a| AccountId::parse("account_id", a).unwrap());
        let issued =
            api::token::issue(&self.pool, Some(&self.master_key), "test", role, account.as_ref(), 0, true)
                .await
                .unwrap();
        (issued.token.access_key_id.unwrap(), issued.secret_access_key.unwrap())
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A fresh bearer secret of `role` (member tokens need `account`).
    pub async fn token(&self, role: Role, account: Option<&str>) -> String {
        let account = account.map(|a| AccountId::parse("account_id", a).unwrap());
        let issued =
            api::token::issue(&self.pool, Some(&self.master_key), "test", role, account.as_ref(), 0, false)
                .await
                .unwrap();
        issued.secret
    }

    pub async fn clients(&self, token: &str) -> Clients {
        client::connect(&Target { endpoint: self.endpoint(), token: token.to_owned(), ca_cert: None })
            .await
            .unwrap()
    }

    pub async fn admin(&self) -> Clients {
        let token = self.token(Role::Admin, None).await;
        self.clients(&token).await
    }

    pub async fn member(&self, account: &str) -> Clients {
        let token = self.token(Role::Member, Some(account)).await;
        self.clients(&token).await
    }

    pub async fn auditor(&self) -> Clients {
        let token = self.token(Role::Auditor, None).await;
        self.clients(&token).await
    }
}

/// An organization (management account 111111111111) with two registered members.
pub async fn org_with_members(admin: &mut Clients) {
    admin
        .organizations
        .create_organization(pb::CreateOrganizationRequest {
            id: "o-testorg1234".into(),
            management_account_id: MANAGEMENT.into(),
            regions: vec!["us-east-1".into(), "eu-west-1".into()],
        })
        .await
        .unwrap();
    for (account_id, name) in [(MEMBER_A, "member-a"), (MEMBER_B, "member-b")] {
        admin
            .accounts
            .register_account(pb::RegisterAccountRequest {
                account_id: account_id.into(),
                name: name.into(),
                email: format!("{name}@example.com"),
            })
            .await
            .unwrap();
    }
}

pub fn org_trail(name: &str) -> pb::CreateTrailRequest {
    pb::CreateTrailRequest {
        name: name.into(),
        s3_bucket_name: "central-bucket".into(),
        is_organization_trail: true,
        ..Default::default()
    }
}

pub fn account_trail(name: &str, owner: &str) -> pb::CreateTrailRequest {
    pb::CreateTrailRequest {
        name: name.into(),
        s3_bucket_name: "member-bucket".into(),
        owner_account_id: owner.into(),
        ..Default::default()
    }
}

/// The status code of a call that must fail.
pub fn code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> tonic::Code {
    match result {
        Ok(response) => panic!("expected an error, got {:?}", response.into_inner()),
        Err(status) => status.code(),
    }
}

/// The status of a call that must fail.
pub fn status<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> tonic::Status {
    match result {
        Ok(response) => panic!("expected an error, got {:?}", response.into_inner()),
        Err(status) => status,
    }
}

/// The whole pipeline in one test: control plane, a worker, and an S3-compatible server (the real
/// S3 protocol, SigV4-checked), each on its own socket or task.
pub struct Stack {
    pub api: TestApi,
    /// An admin token's access key pair, accepted by the S3 server too (as in `orgtrail dev`).
    pub access_key: (String, String),
    pub s3: orgtrail::dev::s3::S3Server,
    pub s3_client: aws_sdk_s3::Client,
    _s3_dir: tempfile::TempDir,
    stop_worker: watch::Sender<bool>,
    worker_settings: orgtrail::node::WorkerSettings,
    worker: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.stop_worker.send(true);
    }
}

pub const S3_KEY: &str = "testaccesskey";
pub const S3_SECRET: &str = "testsecretkey";

pub async fn stack(pool: PgPool) -> Stack {
    stack_with_digest_period(pool, orgtrail::features::integrity::writer::DEFAULT_PERIOD).await
}

/// A stack whose worker writes digests every `period` (whole seconds; tests go below the
/// configurable minute so that chains grow in seconds).
pub async fn stack_with_digest_period(pool: PgPool, period: std::time::Duration) -> Stack {
    stack_with_settings(pool, |settings| settings.digest_period = period).await
}

/// A stack whose worker settings `adjust` changes (the worker gets the API's master key).
pub async fn stack_with_settings(
    pool: PgPool,
    adjust: impl FnOnce(&mut orgtrail::node::WorkerSettings),
) -> Stack {
    let api = start(pool.clone()).await;
    stack_over(api, adjust).await
}

/// A stack whose control plane has AWS settings (Organizations sync against moto).
pub async fn stack_with_aws(pool: PgPool, aws: orgtrail::integrations::aws::sdk::AwsSettings) -> Stack {
    let api = start_with_aws(pool, Some(aws)).await;
    stack_over(api, |_| {}).await
}

/// A stack around an already started control plane.
pub async fn stack_over(api: TestApi, adjust: impl FnOnce(&mut orgtrail::node::WorkerSettings)) -> Stack {
    let pool = api.pool.clone();
    let dir = tempfile::tempdir().unwrap();
    let access_key = api.access_key(Role::Admin, None).await;
    let s3 = orgtrail::dev::s3::S3Server::start_with_keys(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        &[(S3_KEY, S3_SECRET), (&access_key.0, &access_key.1)],
    )
    .await
    .unwrap();
    let s3_client = orgtrail::dev::s3_client(&s3.endpoint(), S3_KEY, S3_SECRET, "us-east-1").await;
    orgtrail::node::maintenance::prepare(&pool, Default::default()).await.unwrap();
    let (stop_worker, mut stopped) = watch::channel(false);
    let mut worker_settings = test_worker_settings();
    worker_settings.master_key = Some(api.master_key.clone());
    adjust(&mut worker_settings);
    let worker = worker_with(pool, &s3_client, worker_settings.clone());
    let worker = tokio::spawn(worker.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    Stack { api, access_key, s3, s3_client, _s3_dir: dir, stop_worker, worker_settings, worker: Some(worker) }
}

pub fn test_worker_settings() -> orgtrail::node::WorkerSettings {
    let mut settings = orgtrail::node::WorkerSettings::default();
    settings.pipeline.lease_ttl = std::time::Duration::from_secs(3);
    settings.pipeline.poll_interval = std::time::Duration::from_millis(50);
    settings
}

pub fn test_worker(pool: PgPool, s3_client: &aws_sdk_s3::Client) -> orgtrail::node::WorkerNode {
    worker_with(pool, s3_client, test_worker_settings())
}

pub fn worker_with(
    pool: PgPool,
    s3_client: &aws_sdk_s3::Client,
    settings: orgtrail::node::WorkerSettings,
) -> orgtrail::node::WorkerNode {
    orgtrail::node::WorkerNode::new(
        pool.clone(),
        Arc::new(orgtrail::pipeline::staging::PgStaging::new(pool)),
        orgtrail::integrations::s3::S3Sink::new(s3_client.clone()),
        settings,
    )
}

/// One delivered object, checked against CloudTrail's format on the way.
#[derive(Debug, Clone)]
pub struct LogObject {
    pub key: String,
    pub records: Vec<serde_json::Value>,
}

impl LogObject {
    pub fn event_ids(&self) -> Vec<String> {
        self.records.iter().map(|r| r["eventID"].as_str().unwrap_or_default().to_owned()).collect()
    }
}

/// Decompresses (exactly one gzip member, nothing after it), parses `{"Records":[...]}`, and
/// checks the key layout against the records.
pub fn check_object(key: &str, body: &[u8]) -> LogObject {
    use std::io::Read;
    let mut decoder = flate2::bufread::GzDecoder::new(body);
    let mut text = String::new();
    decoder.read_to_string(&mut text).unwrap_or_else(|e| panic!("{key}: not gzip: {e}"));
    let mut rest = Vec::new();
    decoder.into_inner().read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{key}: bytes after the first gzip member");
    let value: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{key}: not JSON: {e}"));
    let object = value.as_object().unwrap_or_else(|| panic!("{key}: not an object"));
    assert_eq!(object.len(), 1, "{key}: only Records at the top");
    let records =
        object["Records"].as_array().unwrap_or_else(|| panic!("{key}: Records is not a list")).clone();
    let pattern = regex::Regex::new(
        r"^(?:.+/)?AWSLogs/(?:o-[a-z0-9]{10,32}/)?(\d{12})/CloudTrail(?:-Insight)?/([a-z0-9-]+)/(\d{4})/(\d{2})/(\d{2})/(\d{12})_CloudTrail(?:-Insight)?_([a-z0-9-]+)_(\d{4})(\d{2})(\d{2})T\d{4}Z_[A-Za-z0-9]{16}\.json\.gz$",
    )
    .unwrap();
    let captures =
        pattern.captures(key).unwrap_or_else(|| panic!("key does not follow CloudTrail's layout: {key}"));
    assert_eq!(&captures[1], &captures[6], "{key}");
    assert_eq!(&captures[2], &captures[7], "{key}");
    assert_eq!(
        (&captures[3], &captures[4], &captures[5]),
        (&captures[8], &captures[9], &captures[10]),
        "{key}"
    );
    for record in &records {
        assert_eq!(record["recipientAccountId"], captures[1].to_string(), "{key}: record of another account");
        assert_eq!(record["awsRegion"], captures[2].to_string(), "{key}: record of another region");
    }
    LogObject { key: key.to_owned(), records }
}

impl Stack {
    /// Stops the worker (it gives its leases up and ends) and starts a new one with the same settings.
    pub async fn restart_worker(&mut self) {
        let _ = self.stop_worker.send(true);
        if let Some(worker) = self.worker.take() {
            worker.await.unwrap().unwrap();
        }
        let (stop_worker, mut stopped) = watch::channel(false);
        self.stop_worker = stop_worker;
        let worker = worker_with(self.api.pool.clone(), &self.s3_client, self.worker_settings.clone());
        self.worker = Some(tokio::spawn(worker.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }

    pub async fn create_bucket(&self, bucket: &str) {
        self.s3_client.create_bucket().bucket(bucket).send().await.unwrap();
    }

    /// Every object in the bucket, checked.
    pub async fn objects(&self, bucket: &str) -> Vec<LogObject> {
        list_objects(&self.s3_client, bucket).await
    }

    /// Waits until the bucket holds at least `count` records; returns the objects.
    pub async fn wait_for_records(&self, bucket: &str, count: usize) -> Vec<LogObject> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let objects = self.objects(bucket).await;
            let have: usize = objects.iter().map(|o| o.records.len()).sum();
            if have >= count {
                return objects;
            }
            assert!(std::time::Instant::now() < deadline, "bucket {bucket} has {have} of {count} records");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// A synthetic management event.
pub fn event(account: &str, region: &str, source: &str, name: &str, event_id: &str) -> String {
    serde_json::json!({
        "eventVersion": "1.11",
        "userIdentity": {"type": "AssumedRole", "arn": format!("arn:aws:sts::{account}:assumed-role/Admin/alice"), "accountId": account},
        "eventTime": "2026-11-24T10:00:00Z",
        "eventSource": source,
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": "192.0.2.10",
        "userAgent": "aws-cli/2.17.0",
        "requestParameters": null,
        "responseElements": null,
        "requestID": format!("req-{event_id}"),
        "eventID": event_id,
        "readOnly": name.starts_with("Describe") || name.starts_with("Get") || name.starts_with("List"),
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management"
    })
    .to_string()
}

/// One PutAuditEvents request carrying `records` (entry ids e0, e1, ...).
pub fn audit_request(records: &[String]) -> pb::PutAuditEventsRequest {
    let audit_events = records
        .iter()
        .enumerate()
        .map(|(i, r)| pb::AuditEvent {
            id: format!("e{i}"),
            event_data: r.clone(),
            event_data_checksum: String::new(),
        })
        .collect();
    pb::PutAuditEventsRequest { audit_events, channel_id: String::new() }
}

/// Sends records as one PutAuditEvents call; returns the response.
pub async fn put(clients: &mut Clients, records: &[String]) -> pb::PutAuditEventsResponse {
    clients.ingest.put_audit_events(audit_request(records)).await.unwrap().into_inner()
}

/// Every object in the bucket, checked (none when the bucket is unreachable).
pub async fn list_objects(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<LogObject> {
    let mut objects = Vec::new();
    for item in list_all(s3, bucket).await {
        let key = item.key().unwrap_or_default().to_owned();
        if key.contains("/CloudTrail-Digest/") {
            continue;
        }
        let body = s3.get_object().bucket(bucket).key(&key).send().await.unwrap();
        objects.push(check_object(&key, &body.body.collect().await.unwrap().into_bytes()));
    }
    objects
}

/// Every object in `bucket` as listed (all pages); none while the bucket does not exist yet.
pub async fn list_all(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<aws_sdk_s3::types::Object> {
    let mut objects = Vec::new();
    let mut token = None;
    loop {
        let Ok(page) = s3.list_objects_v2().bucket(bucket).set_continuation_token(token).send().await else {
            return objects;
        };
        objects.extend(page.contents().iter().cloned());
        if page.is_truncated() != Some(true) {
            return objects;
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
}

/// A logging trail with a 1-second delivery interval.
pub async fn logging_trail(admin: &mut Clients, mut request: pb::CreateTrailRequest) -> pb::Trail {
    request.delivery_interval_seconds = Some(1);
    let trail = admin.trails.create_trail(request).await.unwrap().into_inner();
    admin.trails.start_logging(pb::StartLoggingRequest { name: trail.trail_arn.clone() }).await.unwrap();
    trail
}

/// An advanced field selector with `equals` values.
pub fn field(name: &str, equals: &[&str]) -> pb::AdvancedFieldSelector {
    pb::AdvancedFieldSelector {
        field: name.into(),
        equals: equals.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A private CA and a server certificate it signs for localhost and 127.0.0.1, made with openssl
/// in `dir`; returns (CA, certificate, key) PEM paths.
pub fn test_certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    orgtrail::bench::rules::make_certificates(dir).expect("openssl makes test certificates")
}

/// The URL of a test's database, for server processes.
pub fn database_url(pool: &PgPool) -> String {
    let options = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    )
}

/// Waits until something listens on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends SIGTERM to a server process and checks that it exits cleanly.
pub fn stop_cleanly(mut child: std::process::Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the server exits cleanly on SIGTERM: {status}");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the server ignored SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The aws CLI scripts/test installs (awscli 1.x). Required: a run without it fails, never skips.
pub fn aws_binary() -> String {
    std::env::var("ORGTRAIL_TEST_AWS")
        .expect("ORGTRAIL_TEST_AWS is not set: run the suite with scripts/test, which installs the aws CLI")
}

/// The real aws CLI with its own HOME and config files, one key pair, and only the endpoints given.
pub struct AwsCli {
    home: tempfile::TempDir,
    key_id: String,
    secret: String,
}

impl AwsCli {
    pub fn new((key_id, secret): (String, String)) -> Self {
        let home = tempfile::tempdir().unwrap();
        // Path-style S3 addressing, as S3-compatible stores on an IP need.
        std::fs::write(home.path().join("config"), "[default]\ns3 =\n    addressing_style = path\n").unwrap();
        std::fs::write(home.path().join("credentials"), "").unwrap();
        Self { home, key_id, secret }
    }

    /// Runs `aws ARGS --output json` with extra environment variables (`AWS_ENDPOINT_URL_S3`, ...);
    /// returns the parsed output (null when it printed nothing).
    pub fn run(&self, env: &[(&str, &str)], args: &[&str]) -> serde_json::Value {
        let stdout = self.run_raw(env, args);
        if stdout.trim().is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("aws {args:?} printed no JSON ({e}): {stdout}"))
    }

    /// Runs `aws ARGS --output json` that must succeed; returns exactly what it printed.
    pub fn run_raw(&self, env: &[(&str, &str)], args: &[&str]) -> String {
        let output = self.command(env, args).output().expect("the aws CLI runs");
        assert!(
            output.status.success(),
            "aws {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("the aws CLI prints UTF-8")
    }

    /// Runs `aws ARGS` that must fail; returns what it printed on stderr.
    pub fn run_failing(&self, env: &[(&str, &str)], args: &[&str]) -> String {
        let output = self.command(env, args).output().expect("the aws CLI runs");
        assert!(
            !output.status.success(),
            "aws {args:?} succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    fn command(&self, env: &[(&str, &str)], args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(aws_binary());
        for (name, _) in std::env::vars() {
            if name.starts_with("AWS_") {
                command.env_remove(name);
            }
        }
        command
            .env("HOME", self.home.path())
            .env("AWS_CONFIG_FILE", self.home.path().join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.home.path().join("credentials"))
            .env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("AWS_PAGER", "")
            .envs(env.iter().copied())
            .args(args)
            .args(["--output", "json"]);
        command
    }
}

/// A moto server (AWS APIs: STS, IAM, Organizations, S3) of its own on 127.0.0.1, killed on drop.
/// scripts/test installs it and sets ORGTRAIL_TEST_MOTO; a run without it fails, never skips.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Self {
        let binary = std::env::var("ORGTRAIL_TEST_MOTO")
            .expect("ORGTRAIL_TEST_MOTO is not set: run the suite with scripts/test, which installs moto");
        let port = orgtrail::dev::postgres::free_port().unwrap();
        let child = std::process::Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env_remove("MOTO_ACCOUNT_ID")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server starts");
        wait_for_port(port);
        Self { child, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// SDK configuration for moto: static test credentials (moto's management account
    /// 123456789012), us-east-1, no retries (moto answers unimplemented actions with 500).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .endpoint_url(&self.endpoint)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP/1.1 GET: (status, body).
pub async fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// `orgtrail dev` as a child process in `dir` on free ports, with `extra` arguments; its
/// dev.json once written. Stopped with SIGTERM (then killed) on drop.
pub struct DevProcess {
    child: std::process::Child,
    pub info: orgtrail::dev::DevInfo,
}

impl DevProcess {
    pub fn start(dir: &std::path::Path, extra: &[&str]) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_orgtrail"))
            .current_dir(dir)
            .args(["dev", "--grpc-listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("ORGTRAIL_ENDPOINT")
            .env_remove("ORGTRAIL_TOKEN")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("orgtrail dev starts");
        let path = dir.join(".orgtrail/dev.json");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(info) = serde_json::from_str(&text)
            {
                return Self { child, info };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("orgtrail dev exited early: {status}");
            }
            assert!(std::time::Instant::now() < deadline, "dev.json did not appear");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// gRPC clients with the dev admin token.
    pub async fn admin(&self) -> Clients {
        client::connect(&Target {
            endpoint: self.info.grpc_endpoint.clone(),
            token: self.info.admin_token.clone(),
            ca_cert: None,
        })
        .await
        .unwrap()
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers every account that `records` (CloudTrail records as JSON lines) were recorded in
/// and that is not registered yet, so their events are accepted.
pub async fn register_accounts_of(admin: &mut Clients, records: &[String]) {
    let accounts: std::collections::BTreeSet<String> = records
        .iter()
        .filter_map(|r| {
            serde_json::from_str::<serde_json::Value>(r).ok()?["recipientAccountId"]
                .as_str()
                .map(str::to_owned)
        })
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    for account in accounts {
        let registered = admin
            .accounts
            .register_account(pb::RegisterAccountRequest {
                account_id: account.clone(),
                name: format!("shared-{account}"),
                email: String::new(),
            })
            .await;
        // The fixture's (or dev's) own accounts are there already.
        if let Err(status) = registered {
            assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
        }
    }
}

/// Runs the `orgtrail` CLI in `dir` (where `dev` keeps dev.json), without the endpoint and token
/// variables of the environment the tests run in.
pub fn orgtrail_cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_orgtrail"))
        .current_dir(dir)
        .args(args)
        .env_remove("ORGTRAIL_ENDPOINT")
        .env_remove("ORGTRAIL_TOKEN")
        .output()
        .expect("orgtrail runs")
}

/// A NATS server with JetStream (the distributed-log staging backend), on its own port and
/// directory, writing every acknowledged message to disk before the ack (`sync_interval: always`).
/// The binary comes from `ORGTRAIL_TEST_NATS` (scripts/test installs it).
pub struct NatsServer {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    pub fn start() -> Self {
        let binary = std::env::var("ORGTRAIL_TEST_NATS").expect("ORGTRAIL_TEST_NATS: run with scripts/test");
        let dir = tempfile::tempdir().unwrap();
        let port = orgtrail::dev::postgres::free_port().unwrap();
        let config = dir.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
                dir.path().join("js").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self { child, port, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The JetStream staging backend's settings for this server.
    pub fn settings(&self) -> orgtrail::pipeline::staging::jetstream::JetStreamSettings {
        orgtrail::pipeline::staging::jetstream::JetStreamSettings {
            url: self.url(),
            partitions: 4,
            prefix: "ORGTRAIL_STAGING".into(),
            duplicate_window: std::time::Duration::from_secs(600),
            max_age: std::time::Duration::from_secs(86_400),
            replicas: 1,
        }
    }

    /// Staging into this server (identities and shards in `pool`).
    pub async fn staging(&self, pool: PgPool) -> Arc<dyn orgtrail::pipeline::staging::Staging> {
        Arc::new(
            orgtrail::pipeline::staging::jetstream::JetStreamStaging::connect(pool, &self.settings())
                .await
                .unwrap(),
        )
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
