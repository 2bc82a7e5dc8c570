//! `orgtrail validate` against chains built here: real gzip log files and digests signed with a key
//! installed in the real key store (so ListPublicKeys over gRPC serves it), stored in the in-process
//! S3 server over the S3 protocol, then tampered with the way an attacker with bucket access would.

mod common;

use std::io::Write;

use chrono::{DateTime, Duration, DurationRound, Utc};
use common::*;
use orgtrail::cli::validate::GrpcKeys;
use orgtrail::client::Clients;
use orgtrail::features::integrity::digest::{self, Digest, DigestLogFile};
use orgtrail::features::integrity::keys::SigningKey;
use orgtrail::features::integrity::validate::{
    self, Accounts, ChainLocation, Entry, Outcome, Problem, Report, Request, S3Source, TrailLocation,
    Uncovered,
};
use orgtrail::model::Region;
use orgtrail::proto::v1 as pb;
use sqlx::PgPool;

const BUCKET: &str = "central-bucket";
const ORG: &str = "o-testorg1234";
const SOURCE_REGION: &str = "eu-west-1";
/// Five-minute digests keep a chain of several windows within the last hour.
const PERIOD: Duration = Duration::minutes(5);

struct Fixture {
    api: TestApi,
    _s3_dir: tempfile::TempDir,
    s3: orgtrail::dev::s3::S3Server,
    s3_client: aws_sdk_s3::Client,
    admin: Clients,
    admin_token: String,
    access_key: (String, String),
    trail: pb::Trail,
    chain: ChainLocation,
}

async fn fixture(pool: PgPool) -> Fixture {
    let api = start(pool).await;
    let admin_token = api.token(orgtrail::store::tokens::Role::Admin, None).await;
    let mut admin = api.clients(&admin_token).await;
    org_with_members(&mut admin).await;
    let mut request = org_trail("org-trail");
    request.s3_key_prefix = "audit".into();
    let trail = admin.trails.create_trail(request).await.unwrap().into_inner();
    let s3_dir = tempfile::tempdir().unwrap();
    // The admin's access key reaches S3 too, as `aws cloudtrail validate-logs` signs both with one key.
    let access_key = api.access_key(orgtrail::store::tokens::Role::Admin, None).await;
    let s3 = orgtrail::dev::s3::S3Server::start_with_keys(
        s3_dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        &[(S3_KEY, S3_SECRET), (&access_key.0, &access_key.1)],
    )
    .await
    .unwrap();
    let s3_client = orgtrail::dev::s3_client(&s3.endpoint(), S3_KEY, S3_SECRET, "us-east-1").await;
    s3_client.create_bucket().bucket(BUCKET).send().await.unwrap();
    let chain = ChainLocation {
        trail: TrailLocation {
            trail_arn: trail.trail_arn.clone(),
            trail_name: trail.name.clone(),
            home_region: Region::parse("home_region", &trail.home_region).unwrap(),
            bucket: BUCKET.into(),
            prefix: "audit".into(),
            organization_id: Some(orgtrail::model::OrganizationId::parse("o", ORG).unwrap()),
        },
        account: orgtrail::model::AccountId::parse("a", MEMBER_A).unwrap(),
        region: Region::parse("r", SOURCE_REGION).unwrap(),
    };
    Fixture { api, _s3_dir: s3_dir, s3, s3_client, admin, admin_token, access_key, trail, chain }
}

/// A key made here and installed as the region's current key, as KeyService would install it.
async fn install_key(api: &TestApi) -> SigningKey {
    let key = SigningKey::generate().unwrap();
    let sealed = api.master_key.encrypt(&key.to_pkcs8().unwrap()).unwrap();
    let region = Region::parse("region", SOURCE_REGION).unwrap();
    orgtrail::features::integrity::signing_keys::install(
        &api.pool,
        &region,
        &key.public_key_pkcs1(),
        &key.fingerprint(),
        &sealed,
        orgtrail::features::integrity::signing_keys::Replace::Always,
    )
    .await
    .unwrap();
    key
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Writes a chain the way the digest writer does (contract in the brief of `orgtrail validate`).
struct ChainWriter<'a> {
    fixture: &'a Fixture,
    /// Where the digests go: the fixture's chain unless another trail's is wanted.
    chain: ChainLocation,
    /// (hash, signature) of the last digest written: the next one chains to it.
    previous: Option<(String, String, String)>,
    files_written: usize,
}

impl<'a> ChainWriter<'a> {
    fn new(fixture: &'a Fixture) -> Self {
        Self { fixture, chain: fixture.chain.clone(), previous: None, files_written: 0 }
    }

    /// A one-record log file delivered at `delivered`, as the pipeline writes it.
    async fn log_file(&mut self, delivered: DateTime<Utc>) -> DigestLogFile {
        self.files_written += 1;
        let chain = &self.chain;
        let unique = format!("U{:015}", self.files_written);
        let root = orgtrail::model::layout::Root {
            prefix: &chain.trail.prefix,
            organization: chain.trail.organization_id.as_ref(),
        };
        let key = root.file_key(
            &chain.account,
            orgtrail::model::layout::Folder::Logs,
            &chain.region,
            delivered,
            &unique,
        );
        let record = event(
            chain.account.as_str(),
            chain.region.as_str(),
            "ec2.amazonaws.com",
            "RunInstances",
            &unique,
        );
        let plain = format!("{{\"Records\":[{record}]}}");
        self.put(&key, gzip(plain.as_bytes()), None).await;
        DigestLogFile {
            s3_bucket: BUCKET.into(),
            s3_object: key,
            hash_value: sha256_hex(plain.as_bytes()),
            hash_algorithm: "SHA-256".into(),
            newest_event_time: "2026-11-24T10:00:00Z".into(),
            oldest_event_time: "2026-11-24T10:00:00Z".into(),
        }
    }

    fn digest_for(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        key: &SigningKey,
        files: Vec<DigestLogFile>,
    ) -> Digest {
        let (previous_key, previous_hash, previous_signature) = match &self.previous {
            Some((k, h, s)) => (Some(k.clone()), Some(h.clone()), Some(s.clone())),
            None => (None, None, None),
        };
        Digest {
            aws_account_id: self.chain.account.to_string(),
            digest_start_time: digest::digest_time(start),
            digest_end_time: digest::digest_time(end),
            digest_s3_bucket: BUCKET.into(),
            digest_s3_object: self.chain.digest_key(end),
            digest_public_key_fingerprint: key.fingerprint(),
            digest_signature_algorithm: "SHA256withRSA".into(),
            newest_event_time: files.first().map(|f| f.newest_event_time.clone()),
            oldest_event_time: files.first().map(|f| f.oldest_event_time.clone()),
            previous_digest_s3_bucket: previous_key.as_ref().map(|_| BUCKET.to_owned()),
            previous_digest_s3_object: previous_key,
            previous_digest_hash_value: previous_hash,
            previous_digest_hash_algorithm: self.previous.as_ref().map(|_| "SHA-256".to_owned()),
            previous_digest_signature: previous_signature,
            log_files: files,
        }
    }

    /// Signs and stores the digest for [start, end]; returns its key.
    async fn digest(
        &mut self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        key: &SigningKey,
        files: Vec<DigestLogFile>,
    ) -> String {
        let digest = self.digest_for(start, end, key, files);
        let signed = digest::sign(&digest, key).unwrap();
        self.put(&digest.digest_s3_object, gzip(&signed.json), Some(&signed.signature_hex)).await;
        self.previous = Some((digest.digest_s3_object.clone(), signed.sha256_hex, signed.signature_hex));
        digest.digest_s3_object
    }

    async fn put(&self, key: &str, body: Vec<u8>, signature: Option<&str>) {
        let mut put = self.fixture.s3_client.put_object().bucket(BUCKET).key(key).body(body.into());
        if let Some(signature) = signature {
            put = put.metadata("signature", signature).metadata("signature-algorithm", "SHA256withRSA");
        }
        put.send().await.unwrap();
    }

    /// Validation was switched off: the next digest starts a new chain.
    fn restart(&mut self) {
        self.previous = None;
    }
}

/// A chain of `windows` digests ending at the last period boundary, the first one a starting digest
/// (validation enabled 17 s into its window), each window with a log file delivered a minute in.
/// Returns (range start, digest keys oldest first, log file keys oldest first).
async fn clean_chain(
    fixture: &Fixture,
    key: &SigningKey,
    windows: i32,
) -> (DateTime<Utc>, Vec<String>, Vec<String>) {
    let last_end = Utc::now().duration_trunc(PERIOD).unwrap();
    let first_end = last_end - PERIOD * (windows - 1);
    let enabled = first_end - PERIOD + Duration::seconds(17);
    let mut writer = ChainWriter::new(fixture);
    let (mut digests, mut logs) = (Vec::new(), Vec::new());
    for i in 0..windows {
        let end = first_end + PERIOD * i;
        let start = if i == 0 { enabled } else { end - PERIOD };
        let file = writer.log_file(end - PERIOD + Duration::minutes(1)).await;
        logs.push(file.s3_object.clone());
        digests.push(writer.digest(start, end, key, vec![file]).await);
    }
    (enabled, digests, logs)
}

async fn run_library(fixture: &Fixture, start: DateTime<Utc>) -> Report {
    let request = Request {
        trail: fixture.chain.trail.clone(),
        start,
        end: Utc::now(),
        accounts: Accounts::Discover,
        regions: None,
    };
    let source = S3Source::new(fixture.s3_client.clone());
    validate::validate(&source, &GrpcKeys(fixture.admin.keys.clone()), &request).await.unwrap()
}

struct CliRun {
    code: i32,
    stdout: String,
    stderr: String,
}

/// The real binary, with S3 reached through the standard AWS environment.
async fn run_cli(fixture: &Fixture, extra: &[&str]) -> CliRun {
    let trail = ["--trail", fixture.trail.trail_arn.as_str()];
    let args: Vec<&str> = trail.iter().chain(extra).copied().collect();
    run_binary(&fixture.api, &fixture.admin_token, &fixture.s3, &args).await
}

async fn run_binary(api: &TestApi, token: &str, s3: &orgtrail::dev::s3::S3Server, args: &[&str]) -> CliRun {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_orgtrail"))
        .current_dir(dir.path())
        .args(["validate", "--endpoint", &api.endpoint(), "--token", token])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", S3_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_S3", s3.endpoint())
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .env_remove("ORGTRAIL_ENDPOINT")
        .env_remove("ORGTRAIL_TOKEN")
        .env_remove("ORGTRAIL_OUTPUT")
        .output()
        .await
        .unwrap();
    CliRun {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn time_arg(time: DateTime<Utc>) -> String {
    digest::digest_time(time)
}

/// The INVALID entries of a report as (key, reason).
fn invalid(report: &Report) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for chain in &report.chains {
        for entry in &chain.entries {
            match entry {
                Entry::Digest { key, outcome: Outcome::Invalid(problem), .. }
                | Entry::LogFile { key, outcome: Outcome::Invalid(problem), .. } => {
                    found.push((key.clone(), problem.to_string()))
                }
                _ => {}
            }
        }
    }
    found
}

fn line(kind: &str, key: &str, problem: Problem) -> String {
    format!("{kind}\ts3://{BUCKET}/{key}\tINVALID: {problem}")
}

#[sqlx::test(migrations = "./migrations")]
async fn a_clean_chain_validates(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let (start, digests, logs) = clean_chain(&fixture, &key, 4).await;

    let report = run_library(&fixture, start).await;
    assert!(report.valid, "{:?}", invalid(&report));
    assert_eq!((report.summary.valid_digests, report.summary.valid_log_files), (4, 4));
    assert_eq!(report.chains.len(), 1, "the one account and region, discovered");
    assert_eq!(
        (report.chains[0].account_id.as_str(), report.chains[0].region.as_str()),
        (MEMBER_A, SOURCE_REGION)
    );

    let run = run_cli(&fixture, &["--start-time", &time_arg(start), "--verbose"]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .starts_with(&format!("Validating log files for trail {} between", fixture.trail.trail_arn))
    );
    for key in &digests {
        assert!(run.stdout.contains(&format!("Digest file\ts3://{BUCKET}/{key}\tvalid\n")), "{}", run.stdout);
    }
    for key in &logs {
        assert!(run.stdout.contains(&format!("Log file\ts3://{BUCKET}/{key}\tvalid\n")), "{}", run.stdout);
    }
    assert!(run.stdout.contains("4/4 digest files valid\n4/4 log files valid\n"), "{}", run.stdout);
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    let quiet = run_cli(
        &fixture,
        &["--start-time", &time_arg(start), "--account", MEMBER_A, "--region", SOURCE_REGION],
    )
    .await;
    assert_eq!(quiet.code, 0);
    assert!(!quiet.stdout.contains("\tvalid"), "valid lines only with --verbose");
}

#[sqlx::test(migrations = "./migrations")]
async fn a_modified_log_file_is_named(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let (start, _, logs) = clean_chain(&fixture, &key, 3).await;
    let writer = ChainWriter::new(&fixture);
    writer.put(&logs[1], gzip(br#"{"Records":[]}"#), None).await;

    let run = run_cli(&fixture, &["--start-time", &time_arg(start)]).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stderr.trim_end(), line("Log file", &logs[1], Problem::HashMismatch));
    assert!(
        run.stdout.contains("3/3 digest files valid\n2/3 log files valid, 1/3 log files INVALID\n"),
        "{}",
        run.stdout
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_deleted_log_file_is_not_found(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let (start, _, logs) = clean_chain(&fixture, &key, 3).await;
    fixture.s3_client.delete_object().bucket(BUCKET).key(&logs[0]).send().await.unwrap();

    let run = run_cli(&fixture, &["--start-time", &time_arg(start)]).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stderr.trim_end(), line("Log file", &logs[0], Problem::NotFound));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_log_file_no_digest_lists_is_a_forgery_unless_it_may_still_be_listed(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let (start, _, _) = clean_chain(&fixture, &key, 4).await;
    let newest_end = Utc::now().duration_trunc(PERIOD).unwrap();
    let mut writer = ChainWriter::new(&fixture);
    writer.files_written = 100;
    // Inside the covered span: a forgery.
    let forged = writer.log_file(newest_end - PERIOD * 3 + Duration::minutes(2)).await.s3_object;
    // Within the newest digest's last period: may wait for the next digest.
    let pending = writer.log_file(newest_end - Duration::minutes(1)).await.s3_object;
    // Not CloudTrail's layout at all, in the same folder.
    let odd =
        format!("{}{}/extra.json.gz", fixture.chain.log_folder(), (newest_end - PERIOD).format("%Y/%m/%d"));
    writer.put(&odd, gzip(b"{}"), None).await;

    let report = run_library(&fixture, start).await;
    let mut expected = vec![
        (forged.clone(), "not listed in any digest".to_owned()),
        (odd.clone(), "not listed in any digest".to_owned()),
    ];
    expected.sort();
    let mut found = invalid(&report);
    found.sort();
    assert_eq!(found, expected);
    let uncovered = &report.chains[0].uncovered_log_files;
    assert_eq!(uncovered.len(), 1);
    assert_eq!(
        (uncovered[0].key.as_str(), uncovered[0].reason),
        (pending.as_str(), Uncovered::NotYetCovered)
    );

    let run = run_cli(&fixture, &["--start-time", &time_arg(start)]).await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains(&line("Log file", &forged, Problem::NotListed)), "{}", run.stderr);
    assert!(!run.stderr.contains(&pending), "{}", run.stderr);
    assert!(run.stdout.contains("1 log files not yet covered by a digest"), "{}", run.stdout);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_deleted_digest_is_not_found_and_the_walk_goes_on(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let (start, digests, logs) = clean_chain(&fixture, &key, 4).await;
    fixture.s3_client.delete_object().bucket(BUCKET).key(&digests[2]).send().await.unwrap();

    let report = run_library(&fixture, start).await;
    assert_eq!(
        invalid(&report),
        vec![(digests[2].clone(), "not found".into()), (logs[2].clone(), "not listed in any digest".into())],
        "the deleted digest, and the file only it listed"
    );
    assert_eq!(report.summary.valid_digests, 3, "the older digests are still walked");
}

#[sqlx::test(migrations = "./migrations")]
async fn consecutive_deleted_digests_are_all_named(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let (start, digests, _) = clean_chain(&fixture, &key, 5).await;
    for deleted in &digests[1..3] {
        fixture.s3_client.delete_object().bucket(BUCKET).key(deleted).send().await.unwrap();
    }

    let report = run_library(&fixture, start).await;
    let missing: Vec<(String, bool)> = report.chains[0]
        .entries
        .iter()
        .filter_map(|entry| match entry {
            Entry::Digest { key, outcome: Outcome::Invalid(Problem::NotFound), inferred, .. } => {
                Some((key.clone(), *inferred))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        missing,
        vec![(digests[2].clone(), false), (digests[1].clone(), true)],
        "pointed to, then inferred"
    );
    assert_eq!(report.summary.valid_digests, 3);

    let run = run_cli(&fixture, &["--start-time", &time_arg(start)]).await;
    assert_eq!(run.code, 1);
    for deleted in &digests[1..3] {
        assert!(run.stderr.contains(&line("Digest file", deleted, Problem::NotFound)), "{}", run.stderr);
    }
    assert!(run.stdout.contains("3/5 digest files valid, 2/5 digest files INVALID"), "{}", run.stdout);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_deleted_newest_digest_is_named_by_its_successor_past_the_range(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    // 20 windows of 5 minutes: the last ones end more than an hour after the requested end.
    let (start, digests, _) = clean_chain(&fixture, &key, 20).await;
    let end = start + Duration::minutes(20);
    let in_range: Vec<&String> = digests
        .iter()
        .filter(|k| fixture.chain.digest_time(k).is_some_and(|t| t <= end + Duration::hours(1)))
        .collect();
    let newest_in_range = in_range.last().unwrap().to_string();
    fixture.s3_client.delete_object().bucket(BUCKET).key(&newest_in_range).send().await.unwrap();

    let request = Request {
        trail: fixture.chain.trail.clone(),
        start,
        end,
        accounts: Accounts::Given(vec![MEMBER_A.into()]),
        regions: Some(vec![SOURCE_REGION.into()]),
    };
    let source = S3Source::new(fixture.s3_client.clone());
    let report = validate::validate(&source, &GrpcKeys(fixture.admin.keys.clone()), &request).await.unwrap();
    let digests_invalid: Vec<_> =
        invalid(&report).into_iter().filter(|(k, _)| k.contains("CloudTrail-Digest")).collect();
    assert_eq!(digests_invalid, vec![(newest_in_range, "not found".into())]);
}

#[sqlx::test(migrations = "./migrations")]
async fn an_altered_digest_fails_its_signature(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let (start, digests, logs) = clean_chain(&fixture, &key, 3).await;
    let stored = fixture.s3_client.get_object().bucket(BUCKET).key(&digests[1]).send().await.unwrap();
    let metadata = stored.metadata().cloned().unwrap_or_default();
    let compressed = stored.body.collect().await.unwrap().into_bytes();
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut plain).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&plain).unwrap();
    json["logFiles"] = serde_json::json!([]);
    let mut put = fixture
        .s3_client
        .put_object()
        .bucket(BUCKET)
        .key(&digests[1])
        .body(gzip(json.to_string().as_bytes()).into());
    for (name, value) in metadata {
        put = put.metadata(name, value);
    }
    put.send().await.unwrap();

    let run = run_cli(&fixture, &["--start-time", &time_arg(start)]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        vec![
            line("Digest file", &digests[1], Problem::SignatureFailed),
            line("Log file", &logs[1], Problem::NotListed)
        ],
        "the file the altered digest no longer lists cannot be proven either"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_digest_signed_with_another_key_fails(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let last_end = Utc::now().duration_trunc(PERIOD).unwrap();
    let mut writer = ChainWriter::new(&fixture);
    let first = writer.digest(last_end - PERIOD * 3, last_end - PERIOD * 2, &key, vec![]).await;
    // The attacker's key, claiming the real key's fingerprint.
    let attacker = SigningKey::generate().unwrap();
    let digest = writer.digest_for(last_end - PERIOD * 2, last_end - PERIOD, &key, vec![]);
    let signed = digest::sign(&digest, &attacker).unwrap();
    writer.put(&digest.digest_s3_object, gzip(&signed.json), Some(&signed.signature_hex)).await;
    // And one claiming its own fingerprint, which the key service never published.
    writer.previous = Some((digest.digest_s3_object.clone(), signed.sha256_hex, signed.signature_hex));
    let unknown = writer.digest(last_end - PERIOD, last_end, &attacker, vec![]).await;

    let report = run_library(&fixture, last_end - PERIOD * 3).await;
    assert_eq!(
        invalid(&report),
        vec![
            (
                unknown,
                format!(
                    "public key not found in region {SOURCE_REGION} for fingerprint {}",
                    attacker.fingerprint()
                )
            ),
            (digest.digest_s3_object, "signature verification failed".into()),
        ]
    );
    assert!(!invalid(&report).iter().any(|(k, _)| *k == first));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_digest_without_signature_metadata_fails(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let (start, digests, logs) = clean_chain(&fixture, &key, 3).await;
    let stored = fixture.s3_client.get_object().bucket(BUCKET).key(&digests[0]).send().await.unwrap();
    let body = stored.body.collect().await.unwrap().into_bytes();
    ChainWriter::new(&fixture).put(&digests[0], body.to_vec(), None).await;

    let run = run_cli(&fixture, &["--start-time", &time_arg(start)]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        vec![
            line("Digest file", &digests[0], Problem::SignatureFailed),
            line("Log file", &logs[0], Problem::NotListed)
        ],
        "an unverified digest vouches for none of its files"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_digest_moved_to_another_key_is_caught_in_both_places(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let (start, digests, _) = clean_chain(&fixture, &key, 4).await;
    let original_end = fixture.chain.digest_time(&digests[1]).unwrap();
    let moved_to = fixture.chain.digest_key(original_end - Duration::seconds(1));
    // Copied with its metadata (the store has no CopyObject), then the original removed.
    let stored = fixture.s3_client.get_object().bucket(BUCKET).key(&digests[1]).send().await.unwrap();
    let signature = stored.metadata().and_then(|m| m.get("signature")).cloned().unwrap();
    let body = stored.body.collect().await.unwrap().into_bytes().to_vec();
    ChainWriter::new(&fixture).put(&moved_to, body, Some(&signature)).await;
    fixture.s3_client.delete_object().bucket(BUCKET).key(&digests[1]).send().await.unwrap();

    let report = run_library(&fixture, start).await;
    let digests_invalid: Vec<_> =
        invalid(&report).into_iter().filter(|(k, _)| k.contains("CloudTrail-Digest")).collect();
    assert_eq!(
        digests_invalid,
        vec![
            (digests[1].clone(), "not found".into()),
            (moved_to, "has been moved from its original location".into())
        ]
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_key_rotation_mid_chain_validates(pool: PgPool) {
    let fixture = fixture(pool).await;
    let first_key = install_key(&fixture.api).await;
    let last_end = Utc::now().duration_trunc(PERIOD).unwrap();
    let start = last_end - PERIOD * 4;
    let mut writer = ChainWriter::new(&fixture);
    // Two windows signed with the first key, then a rotation, then two with the second.
    let mut second_key = None;
    for i in 1..=4 {
        if i == 3 {
            second_key = Some(install_key(&fixture.api).await);
        }
        let key = second_key.as_ref().unwrap_or(&first_key);
        let end = start + PERIOD * i;
        let file = writer.log_file(end - Duration::minutes(3)).await;
        writer.digest(end - PERIOD, end, key, vec![file]).await;
    }
    let second_key = second_key.unwrap();
    let listed = fixture
        .admin
        .keys
        .clone()
        .list_public_keys(pb::ListPublicKeysRequest { region: SOURCE_REGION.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.public_key_list[0].fingerprint, second_key.fingerprint(), "rotated");

    let report = run_library(&fixture, start).await;
    assert!(report.valid, "{:?}", invalid(&report));
    assert_eq!(report.summary.valid_digests, 4);
    let run = run_cli(&fixture, &["--start-time", &time_arg(start)]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_restarted_chain_validates_with_a_gap(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let last_end = Utc::now().duration_trunc(PERIOD).unwrap();
    let mut writer = ChainWriter::new(&fixture);
    let enabled = last_end - PERIOD * 6 + Duration::seconds(40);
    let first_end = last_end - PERIOD * 5;
    writer.digest(enabled, first_end, &key, vec![]).await;
    let file = writer.log_file(first_end + Duration::minutes(1)).await;
    let old_end = first_end + PERIOD;
    writer.digest(first_end, old_end, &key, vec![file]).await;
    // Validation off for two windows, then on again 90 s into a window.
    writer.restart();
    let reenabled = old_end + PERIOD * 2 + Duration::seconds(90);
    writer.digest(reenabled, last_end - PERIOD, &key, vec![]).await;
    let file = writer.log_file(last_end - Duration::minutes(4)).await;
    writer.digest(last_end - PERIOD, last_end, &key, vec![file]).await;

    let report = run_library(&fixture, enabled).await;
    assert!(report.valid, "{:?}", invalid(&report));
    assert_eq!(report.summary.valid_digests, 4);
    let gaps: Vec<_> = report.chains[0].entries.iter().filter(|e| matches!(e, Entry::Gap { .. })).collect();
    assert_eq!(gaps, vec![&Entry::Gap { from: old_end, to: reenabled }]);

    let run = run_cli(&fixture, &["--start-time", &time_arg(enabled)]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "No log files were delivered by CloudTrail between {} and {}",
            time_arg(old_end),
            time_arg(reenabled)
        )),
        "{}",
        run.stderr
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn an_auditor_without_trail_lookup_validates_from_the_bucket(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let (start, _, logs) = clean_chain(&fixture, &key, 3).await;
    ChainWriter::new(&fixture).put(&logs[2], gzip(b"{\"Records\":[1]}"), None).await;

    let auditor = fixture.api.token(orgtrail::store::tokens::Role::Auditor, None).await;
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_orgtrail"))
        .current_dir(dir.path())
        .args(["--output", "json", "validate", "--endpoint", &fixture.api.endpoint(), "--token", &auditor])
        .args(["--trail", &fixture.trail.trail_arn, "--start-time", &time_arg(start)])
        .args(["--s3-bucket", BUCKET, "--s3-prefix", "audit", "--organization-id", ORG])
        .args(["--s3-endpoint-url", &fixture.s3.endpoint()])
        .env("AWS_ACCESS_KEY_ID", S3_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["summary"]["invalid_log_files"], 1);
    let entries = report["chains"][0]["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["key"] == logs[2].as_str() && e["reason"] == "hash value doesn't match")
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn bad_arguments_are_one_line_errors(pool: PgPool) {
    let fixture = fixture(pool).await;
    let backwards =
        run_cli(&fixture, &["--start-time", "2026-11-24T05:00:00Z", "--end-time", "2026-11-24"]).await;
    assert_eq!(backwards.code, 2);
    assert_eq!(backwards.stderr.lines().count(), 1, "{}", backwards.stderr);
    assert!(backwards.stderr.contains("--end-time"), "{}", backwards.stderr);
    let not_a_time = run_cli(&fixture, &["--start-time", "yesterday"]).await;
    assert_eq!(not_a_time.code, 2);
    assert!(not_a_time.stderr.contains("--start-time"), "{}", not_a_time.stderr);
    let no_such_bucket = run_cli(
        &fixture,
        &["--start-time", "2026-11-24", "--s3-bucket", "no-such-bucket", "--account", MEMBER_A],
    )
    .await;
    assert_eq!(no_such_bucket.code, 1);
    assert_eq!(no_such_bucket.stderr.lines().count(), 1, "{}", no_such_bucket.stderr);
    assert!(no_such_bucket.stderr.contains("NoSuchBucket"), "{}", no_such_bucket.stderr);
}

/// The real pipeline end to end: the worker writes log files and digest chains (2-second period)
/// for an organization trail, `orgtrail validate` proves them, then catches tampering.
#[sqlx::test(migrations = "./migrations")]
async fn chains_the_pipeline_writes_validate_and_tampering_is_caught(pool: PgPool) {
    let period = std::time::Duration::from_secs(2);
    let stack = stack_with_digest_period(pool, period).await;
    stack.create_bucket(BUCKET).await;
    let token = stack.api.token(orgtrail::store::tokens::Role::Admin, None).await;
    let mut admin = stack.api.clients(&token).await;
    org_with_members(&mut admin).await;
    let mut request = org_trail("org-trail");
    request.log_file_validation_enabled = true;
    let trail = logging_trail(&mut admin, request).await;
    let start = time_arg(Utc::now() - Duration::minutes(1));
    let mut member = stack.api.member(MEMBER_A).await;
    for round in 0..3 {
        let records: Vec<String> = (0..4)
            .map(|i| {
                event(
                    MEMBER_A,
                    SOURCE_REGION,
                    "ec2.amazonaws.com",
                    "RunInstances",
                    &format!("e2e-{round}-{i}"),
                )
            })
            .collect();
        put(&mut member, &records).await;
        tokio::time::sleep(period).await;
    }
    let logs: Vec<String> = stack.wait_for_records(BUCKET, 12).await.into_iter().map(|o| o.key).collect();

    // Until digests list every delivered file and three more windows have passed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let chain = loop {
        let mut chain: Vec<(String, Vec<String>)> = Vec::new();
        let keys = stack.s3_client.list_objects_v2().bucket(BUCKET).send().await.unwrap();
        for key in keys.contents().iter().filter_map(|o| o.key()) {
            if key.contains(&format!("/{MEMBER_A}/CloudTrail-Digest/{SOURCE_REGION}/")) {
                let body = stack.s3_client.get_object().bucket(BUCKET).key(key).send().await.unwrap();
                let bytes = body.body.collect().await.unwrap().into_bytes();
                let mut plain = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain)
                    .unwrap();
                let digest: Digest = serde_json::from_slice(&plain).unwrap();
                chain.push((key.to_owned(), digest.log_files.into_iter().map(|f| f.s3_object).collect()));
            }
        }
        chain.sort();
        let listed_by = |log: &String| chain.iter().position(|(_, files)| files.contains(log));
        let last_listing =
            logs.iter().map(listed_by).collect::<Option<Vec<usize>>>().and_then(|at| at.into_iter().max());
        if last_listing.is_some_and(|at| chain.len() >= at + 4) {
            break chain;
        }
        assert!(std::time::Instant::now() < deadline, "the worker did not list every file in a digest");
        tokio::time::sleep(period).await;
    };

    let run =
        run_binary(&stack.api, &token, &stack.s3, &["--trail", &trail.trail_arn, "--start-time", &start])
            .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains(&format!("{0}/{0} log files valid", logs.len())), "{}", run.stdout);
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    // Tampering: a log file rewritten, two consecutive digests deleted from the middle of a chain.
    stack
        .s3_client
        .put_object()
        .bucket(BUCKET)
        .key(&logs[0])
        .body(gzip(b"{\"Records\":[]}").into())
        .send()
        .await
        .unwrap();
    // Newer than every digest listing a file, older than the newest: the chain points through them.
    let deleted: Vec<&String> = chain[chain.len() - 3..chain.len() - 1].iter().map(|(key, _)| key).collect();
    for key in &deleted {
        stack.s3_client.delete_object().bucket(BUCKET).key(*key).send().await.unwrap();
    }
    let run =
        run_binary(&stack.api, &token, &stack.s3, &["--trail", &trail.trail_arn, "--start-time", &start])
            .await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(&line("Log file", &logs[0], Problem::HashMismatch)), "{}", run.stderr);
    for key in deleted {
        assert!(run.stderr.contains(&line("Digest file", key, Problem::NotFound)), "{}", run.stderr);
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn files_of_another_trail_in_the_same_folders_are_not_strays(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let (start, _, _) = clean_chain(&fixture, &key, 4).await;
    let last_end = Utc::now().duration_trunc(PERIOD).unwrap();
    let mut other = ChainWriter::new(&fixture);
    other.chain.trail.trail_name = "other-trail".into();
    other.files_written = 200;
    let theirs = other.log_file(last_end - PERIOD * 3 + Duration::minutes(1)).await;
    let their_key = theirs.s3_object.clone();
    other.digest(last_end - PERIOD * 3, last_end - PERIOD * 2, &key, vec![theirs]).await;
    // Listed only by a digest whose signature does not hold: still a stray.
    let forged = other.log_file(last_end - PERIOD * 3 + Duration::minutes(2)).await;
    let forged_key = forged.s3_object.clone();
    let digest = other.digest_for(last_end - PERIOD * 2, last_end - PERIOD, &key, vec![forged]);
    other.put(&digest.digest_s3_object, gzip(&serde_json::to_vec(&digest).unwrap()), Some("00")).await;

    let report = run_library(&fixture, start).await;
    assert_eq!(invalid(&report), vec![(forged_key, "not listed in any digest".to_owned())]);
    assert!(report.chains[0].uncovered_log_files.iter().all(|f| f.key != their_key), "theirs is listed");
}

#[sqlx::test(migrations = "./migrations")]
async fn a_signed_digest_no_newer_digest_points_to_is_not_part_of_the_chain(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let (start, digests, _) = clean_chain(&fixture, &key, 3).await;
    let end = fixture.chain.digest_time(&digests[1]).unwrap() - Duration::seconds(1);
    // Signed with the real key (a writer bug, or a stolen key), but chained to nothing.
    let mut planter = ChainWriter::new(&fixture);
    let planted = planter.digest(end - PERIOD, end, &key, vec![]).await;

    let report = run_library(&fixture, start).await;
    assert_eq!(invalid(&report), vec![(planted, "is not part of the digest chain".to_owned())]);
    assert_eq!(report.summary.valid_digests, 3);
}

/// `aws cloudtrail validate-logs` (the real aws CLI) against orgtrail's CloudTrail-compatible API and
/// S3: (exit code, stdout, stderr).
async fn validate_logs(fixture: &Fixture, start: &str) -> (i32, String, String) {
    let target = ValidateLogs {
        api: &fixture.api,
        s3: &fixture.s3,
        access_key: &fixture.access_key,
        trail_arn: &fixture.trail.trail_arn,
        region: SOURCE_REGION,
    };
    target.run(MEMBER_A, start).await
}

/// Where `aws cloudtrail validate-logs` points, with the environment the README documents.
struct ValidateLogs<'a> {
    api: &'a TestApi,
    s3: &'a orgtrail::dev::s3::S3Server,
    access_key: &'a (String, String),
    trail_arn: &'a str,
    region: &'a str,
}

impl ValidateLogs<'_> {
    async fn run(&self, account: &str, start: &str) -> (i32, String, String) {
        let endpoint = format!("http://{}", self.api.cloudtrail_api().await);
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("config"), "[default]\ns3 =\n    addressing_style = path\n").unwrap();
        let mut command = tokio::process::Command::new(aws_binary());
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("AWS_")) {
            command.env_remove(name);
        }
        let output = command
            .env("HOME", home.path())
            .env("AWS_CONFIG_FILE", home.path().join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("credentials"))
            .env("AWS_ACCESS_KEY_ID", &self.access_key.0)
            .env("AWS_SECRET_ACCESS_KEY", &self.access_key.1)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("AWS_ENDPOINT_URL_S3", self.s3.endpoint())
            .env("AWS_ENDPOINT_URL_ORGANIZATIONS", &endpoint)
            .args(["cloudtrail", "validate-logs", "--endpoint-url", &endpoint, "--region", self.region])
            .args(["--trail-arn", self.trail_arn, "--account-id", account, "--start-time", start])
            .output()
            .await
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// Lines of `text` that name a digest or log file as INVALID, sorted.
fn invalid_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().filter(|l| l.contains("\tINVALID: ")).collect();
    lines.sort();
    lines
}

#[sqlx::test(migrations = "./migrations")]
async fn orgtrail_validate_finds_everything_aws_validate_logs_finds(pool: PgPool) {
    let fixture = fixture(pool).await;
    let key = install_key(&fixture.api).await;
    let (start, digests, logs) = clean_chain(&fixture, &key, 5).await;
    let start = time_arg(start);

    let (code, stdout, stderr) = validate_logs(&fixture, &start).await;
    assert_eq!(code, 0, "validate-logs on the clean chain: {stdout}{stderr}");
    assert!(stdout.contains("5/5 digest files valid"), "{stdout}");
    let ours =
        run_cli(&fixture, &["--start-time", &start, "--account", MEMBER_A, "--region", SOURCE_REGION]).await;
    assert_eq!(ours.code, 0);
    let found = |text: &str| text.lines().find(|l| l.starts_with("Results found for")).map(str::to_owned);
    assert_eq!(found(&ours.stdout), found(&stdout), "the same span found");

    // A rewritten log file, one digest deleted, one digest's signature metadata gone.
    ChainWriter::new(&fixture).put(&logs[0], gzip(br#"{"Records":[]}"#), None).await;
    fixture.s3_client.delete_object().bucket(BUCKET).key(&digests[3]).send().await.unwrap();
    let stored = fixture.s3_client.get_object().bucket(BUCKET).key(&digests[1]).send().await.unwrap();
    let body = stored.body.collect().await.unwrap().into_bytes();
    ChainWriter::new(&fixture).put(&digests[1], body.to_vec(), None).await;

    let (code, stdout, stderr) = validate_logs(&fixture, &start).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    let theirs = invalid_lines(&stderr);
    assert_eq!(theirs.len(), 3, "{stderr}");
    let ours = run_cli(&fixture, &["--start-time", &start]).await;
    assert_eq!(ours.code, 1);
    let mine = invalid_lines(&ours.stderr);
    for line in &theirs {
        assert!(
            mine.contains(line),
            "validate-logs found {line:?}; orgtrail validate said:\n{}",
            ours.stderr
        );
    }
    let summary = |text: &str| text.lines().find(|l| l.contains("digest files valid")).map(str::to_owned);
    assert_eq!(summary(&ours.stdout), summary(&stdout), "the same digest counts");
}

/// The digests of one (account, us-east-1) chain in the bucket, oldest first, with what they list.
async fn pipeline_chain(s3: &aws_sdk_s3::Client, account: &str) -> Vec<(String, Digest)> {
    let prefix = format!("AWSLogs/{ORG}/{account}/CloudTrail-Digest/us-east-1/");
    let page = s3.list_objects_v2().bucket(BUCKET).prefix(&prefix).send().await.unwrap();
    let mut chain = Vec::new();
    for key in page.contents().iter().filter_map(|o| o.key()) {
        let body = s3.get_object().bucket(BUCKET).key(key).send().await.unwrap();
        let bytes = body.body.collect().await.unwrap().into_bytes();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain).unwrap();
        chain.push((key.to_owned(), serde_json::from_slice::<Digest>(&plain).unwrap()));
    }
    chain.sort_by(|a, b| a.1.digest_end_time.cmp(&b.1.digest_end_time));
    chain
}

/// Every scenario of the integrity issue, each on its own account's chain as the real pipeline
/// writes it (two-second digests, a key rotation in the middle), judged by the real
/// `aws cloudtrail validate-logs` through the CloudTrail-compatible API and by `orgtrail validate`.
#[sqlx::test(migrations = "./migrations")]
async fn each_tampering_gets_the_same_verdict_from_aws_validate_logs_and_orgtrail_validate(pool: PgPool) {
    const SCENARIOS: [&str; 8] = [
        "clean",
        "modified log file",
        "deleted log file",
        "stray log file",
        "deleted digest",
        "two consecutive deleted digests",
        "altered digest",
        "digest signed with a wrong key",
    ];
    let period = std::time::Duration::from_secs(2);
    let stack = stack_with_digest_period(pool, period).await;
    stack.create_bucket(BUCKET).await;
    let token = stack.api.token(orgtrail::store::tokens::Role::Admin, None).await;
    let mut admin = stack.api.clients(&token).await;
    org_with_members(&mut admin).await;
    let accounts: Vec<String> = (0..SCENARIOS.len()).map(|i| format!("4444444444{i:02}")).collect();
    for account in &accounts {
        admin
            .accounts
            .register_account(pb::RegisterAccountRequest {
                account_id: account.clone(),
                name: format!("scenario-{account}"),
                email: format!("{account}@example.com"),
            })
            .await
            .unwrap();
    }
    let mut request = org_trail("org-trail");
    request.log_file_validation_enabled = true;
    request.is_multi_region_trail = Some(false);
    let trail = logging_trail(&mut admin, request).await;
    let start = time_arg(Utc::now() - Duration::minutes(1));

    // Traffic over several windows; the region's key is rotated halfway.
    for round in 0..4 {
        let records: Vec<String> = accounts
            .iter()
            .flat_map(|account| {
                (0..3).map(move |i| {
                    event(
                        account,
                        "us-east-1",
                        "ec2.amazonaws.com",
                        "RunInstances",
                        &format!("{account}-{round}-{i}"),
                    )
                })
            })
            .collect();
        put(&mut admin, &records).await;
        if round == 2 {
            admin
                .keys
                .rotate_signing_key(pb::RotateSigningKeyRequest { region: "us-east-1".into() })
                .await
                .unwrap();
        }
        tokio::time::sleep(period).await;
    }
    let objects = stack.wait_for_records(BUCKET, accounts.len() * 12).await;
    let logs_of = |account: &str| -> Vec<String> {
        objects
            .iter()
            .filter(|o| o.key.contains(&format!("/{account}/CloudTrail/")))
            .map(|o| o.key.clone())
            .collect()
    };
    // Until each chain lists all its files and has four more digests after the last listing.
    let mut chains = Vec::new();
    for account in &accounts {
        let logs = logs_of(account);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let chain = loop {
            let chain = pipeline_chain(&stack.s3_client, account).await;
            let last = logs
                .iter()
                .map(|log| chain.iter().position(|(_, d)| d.log_files.iter().any(|f| &f.s3_object == log)))
                .collect::<Option<Vec<usize>>>()
                .and_then(|at| at.into_iter().max());
            if last.is_some_and(|at| chain.len() >= at + 5) {
                break chain;
            }
            assert!(std::time::Instant::now() < deadline, "{account}: the chain never listed every file");
            tokio::time::sleep(period).await;
        };
        let fingerprints: std::collections::BTreeSet<&str> =
            chain.iter().map(|(_, d)| d.digest_public_key_fingerprint.as_str()).collect();
        assert_eq!(fingerprints.len(), 2, "{account}: the chain spans the key rotation");
        chains.push(chain);
    }

    let s3 = &stack.s3_client;
    let mut expected: Vec<Vec<String>> = Vec::new();
    for (i, scenario) in SCENARIOS.iter().enumerate() {
        let logs = logs_of(&accounts[i]);
        let chain = &chains[i];
        let n = chain.len();
        let digest_line = |k: usize, problem: Problem| line("Digest file", &chain[k].0, problem);
        let lines = match *scenario {
            "clean" => vec![],
            "modified log file" => {
                s3.put_object()
                    .bucket(BUCKET)
                    .key(&logs[0])
                    .body(gzip(br#"{"Records":[]}"#).into())
                    .send()
                    .await
                    .unwrap();
                vec![line("Log file", &logs[0], Problem::HashMismatch)]
            }
            "deleted log file" => {
                s3.delete_object().bucket(BUCKET).key(&logs[1]).send().await.unwrap();
                vec![line("Log file", &logs[1], Problem::NotFound)]
            }
            "stray log file" => {
                // Key times have minute precision, and files named in a chain's first minute may
                // predate it: a forged name is judged once its whole minute, and a period to list
                // late files, lie inside the chain.
                let first_start = time(&chain[0].1.digest_start_time);
                let minute = first_start.duration_trunc(Duration::minutes(1)).unwrap() + Duration::minutes(1);
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
                while pipeline_chain(s3, &accounts[i])
                    .await
                    .last()
                    .is_none_or(|(_, d)| time(&d.digest_end_time) < minute + Duration::seconds(66))
                {
                    assert!(std::time::Instant::now() < deadline, "the chain never covered a whole minute");
                    tokio::time::sleep(period).await;
                }
                let stray = format!(
                    "AWSLogs/{ORG}/{0}/CloudTrail/us-east-1/{1}/{0}_CloudTrail_us-east-1_{2}_XXXXXXXXXXXXXXXX.json.gz",
                    accounts[i],
                    minute.format("%Y/%m/%d"),
                    minute.format("%Y%m%dT%H%MZ"),
                );
                s3.put_object()
                    .bucket(BUCKET)
                    .key(&stray)
                    .body(gzip(br#"{"Records":[]}"#).into())
                    .send()
                    .await
                    .unwrap();
                vec![line("Log file", &stray, Problem::NotListed)]
            }
            "deleted digest" => {
                s3.delete_object().bucket(BUCKET).key(&chain[n - 3].0).send().await.unwrap();
                vec![digest_line(n - 3, Problem::NotFound)]
            }
            "two consecutive deleted digests" => {
                for k in [n - 4, n - 3] {
                    s3.delete_object().bucket(BUCKET).key(&chain[k].0).send().await.unwrap();
                }
                vec![digest_line(n - 4, Problem::NotFound), digest_line(n - 3, Problem::NotFound)]
            }
            "altered digest" => {
                // A forger slips an entry into a signed digest and keeps its signature.
                let stored = s3.get_object().bucket(BUCKET).key(&chain[n - 3].0).send().await.unwrap();
                let metadata = stored.metadata().cloned().unwrap_or_default();
                let mut altered = chain[n - 3].1.clone();
                altered.log_files.push(DigestLogFile {
                    s3_bucket: BUCKET.into(),
                    s3_object: logs[0].clone(),
                    hash_value: "0".repeat(64),
                    hash_algorithm: "SHA-256".into(),
                    newest_event_time: altered.digest_end_time.clone(),
                    oldest_event_time: altered.digest_end_time.clone(),
                });
                s3.put_object()
                    .bucket(BUCKET)
                    .key(&chain[n - 3].0)
                    .body(gzip(&serde_json::to_vec(&altered).unwrap()).into())
                    .set_metadata(Some(metadata))
                    .send()
                    .await
                    .unwrap();
                vec![digest_line(n - 3, Problem::SignatureFailed)]
            }
            "digest signed with a wrong key" => {
                let stored = s3.get_object().bucket(BUCKET).key(&chain[n - 3].0).send().await.unwrap();
                let body = stored.body.collect().await.unwrap().into_bytes();
                let mut plain = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain).unwrap();
                let forged = digest::sign(&chain[n - 3].1, &SigningKey::generate().unwrap()).unwrap();
                assert_eq!(forged.json, plain, "re-signing the very same bytes");
                s3.put_object()
                    .bucket(BUCKET)
                    .key(&chain[n - 3].0)
                    .body(body.to_vec().into())
                    .metadata("signature", &forged.signature_hex)
                    .metadata("signature-algorithm", "SHA256withRSA")
                    .send()
                    .await
                    .unwrap();
                vec![digest_line(n - 3, Problem::SignatureFailed)]
            }
            other => unreachable!("{other}"),
        };
        expected.push(lines);
    }

    let aws = ValidateLogs {
        api: &stack.api,
        s3: &stack.s3,
        access_key: &stack.access_key,
        trail_arn: &trail.trail_arn,
        region: "us-east-1",
    };
    for (i, scenario) in SCENARIOS.iter().enumerate() {
        let account = accounts[i].as_str();
        let (aws_code, aws_out, aws_err) = aws.run(account, &start).await;
        let ours = run_binary(
            &stack.api,
            &token,
            &stack.s3,
            &[
                "--trail",
                &trail.trail_arn,
                "--start-time",
                &start,
                "--account",
                account,
                "--region",
                "us-east-1",
            ],
        )
        .await;
        let context = format!(
            "{scenario} ({account})\n--- aws validate-logs ({aws_code}):\n{aws_out}{aws_err}\n--- orgtrail validate ({}):\n{}{}",
            ours.code, ours.stdout, ours.stderr
        );
        for wanted in &expected[i] {
            assert!(ours.stderr.contains(wanted.as_str()), "orgtrail validate misses {wanted:?}: {context}");
        }
        if expected[i].is_empty() {
            assert_eq!((aws_code, ours.code), (0, 0), "{context}");
            assert!(aws_out.contains("digest files valid") && !aws_out.contains("INVALID"), "{context}");
            continue;
        }
        assert_eq!(ours.code, 1, "{context}");
        if *scenario == "stray log file" {
            // validate-logs checks only the files digests list; a forged extra file passes it.
            assert_eq!(aws_code, 0, "{context}");
            continue;
        }
        assert_eq!(aws_code, 1, "{context}");
        let theirs = invalid_lines(&aws_err);
        assert!(!theirs.is_empty(), "{context}");
        let mine = invalid_lines(&ours.stderr);
        for line in theirs {
            assert!(
                mine.contains(&line),
                "validate-logs found {line:?}, orgtrail validate did not: {context}"
            );
        }
    }
}
