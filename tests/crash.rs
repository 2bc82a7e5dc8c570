//! Crash safety with real processes: workers (and the control plane) are `orgtrail` processes that
//! get SIGKILLed, aborted at failpoints and frozen with SIGSTOP while events flow; the S3 server is
//! a separate process that goes away for a while. Afterwards every accepted (account, eventID) is
//! in each trail's bucket exactly once, every object is a valid log file, and no object exists that
//! Postgres does not record as delivered.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use orgtrail::proto::v1 as pb;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;

const BIN: &str = env!("CARGO_BIN_EXE_orgtrail");

/// Workers' master key (decrypts the digest signing keys they create); any fixed 32 bytes.
const WORKER_MASTER_KEY: &str = "b3JndHJhaWwtY3Jhc2gtdGVzdHMtbWFzdGVyLWtleSE=";

/// A fresh database on the suite's Postgres, migrated.
async fn fresh_database() -> (PgPool, String) {
    let master = std::env::var("DATABASE_URL").expect("DATABASE_URL: run with scripts/test");
    let name = format!("crash_{}", uuid::Uuid::new_v4().simple());
    let admin = orgtrail::store::connect(&master, 1).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.unwrap();
    admin.close().await;
    let (base, _) = master.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    let pool = orgtrail::store::connect(&url, 8).await.unwrap();
    orgtrail::store::migrate(&pool).await.unwrap();
    orgtrail::node::maintenance::prepare(&pool, Default::default()).await.unwrap();
    (pool, url)
}

fn free_port() -> u16 {
    orgtrail::dev::postgres::free_port().unwrap()
}

struct S3Process {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl S3Process {
    fn start(dir: &Path, port: u16) -> Self {
        let child = Command::new(BIN)
            .args(["s3-server", "--dir"])
            .arg(dir)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--access-key-id",
                S3_KEY,
                "--secret-access-key",
                S3_SECRET,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, dir: dir.to_owned() }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        *self = Self::start(&self.dir.clone(), self.port);
    }
}

impl Drop for S3Process {
    fn drop(&mut self) {
        self.kill();
    }
}

struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    fn start(
        database_url: &str,
        s3_endpoint: &str,
        failpoint: Option<&str>,
        log: &Path,
        pause_ms: u64,
        staging_env: &[(&'static str, String)],
    ) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut command = Command::new(BIN);
        command
            .arg("worker")
            .env("DATABASE_URL", database_url)
            .env("ORGTRAIL_S3_ENDPOINT", s3_endpoint)
            .env("ORGTRAIL_S3_ACCESS_KEY_ID", S3_KEY)
            .env("ORGTRAIL_S3_SECRET_ACCESS_KEY", S3_SECRET)
            .env("ORGTRAIL_S3_FORCE_PATH_STYLE", "true")
            .env("ORGTRAIL_LEASE_TTL_SECONDS", "2")
            .env("ORGTRAIL_POLL_INTERVAL_MS", "50")
            .env("ORGTRAIL_DATABASE_MAX_CONNECTIONS", "4")
            .env("RUST_LOG", "info")
            .env("ORGTRAIL_MASTER_KEY", WORKER_MASTER_KEY)
            .env("ORGTRAIL_DIGEST_PERIOD_SECONDS", "60")
            .envs(staging_env.iter().map(|(k, v)| (*k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        command.env("FAILPOINTS", failpoints(failpoint, pause_ms));
        Self { child: command.spawn().unwrap() }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Waits for the process to end by itself (a failpoint abort).
    fn wait_exit(mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "worker did not stop at its failpoint");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `fail` crate's configuration: abort at `abort_at`, widen each delivery step by `pause_ms`.
fn failpoints(abort_at: Option<&str>, pause_ms: u64) -> String {
    let mut points: Vec<String> = abort_at.map(|name| format!("{name}=return")).into_iter().collect();
    if pause_ms > 0 {
        points.push(format!("delivery-pause=return({pause_ms})"));
    }
    points.join(";")
}

type Identity = (String, String);

/// What a kill interrupted, read from Postgres and the bucket at that moment.
async fn phase(pool: &PgPool, s3: &aws_sdk_s3::Client) -> &'static str {
    let sealed: Vec<(String, String)> = sqlx::query_as("SELECT bucket, object_key FROM sealed_batches")
        .fetch_all(pool)
        .await
        .unwrap_or_default();
    let Some((bucket, key)) = sealed.first() else { return "no batch in flight" };
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => "object PUT, not yet committed",
        Err(_) => "batch sealed, not yet PUT",
    }
}

/// Waits until every expected identity is in `bucket`, then checks exactly-once and no orphans.
async fn assert_exactly_once(
    pool: &PgPool,
    stack_s3: &aws_sdk_s3::Client,
    bucket: &str,
    expected: &BTreeSet<Identity>,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let objects = loop {
        let objects = list_objects(stack_s3, bucket).await;
        let have: BTreeSet<Identity> = identities(&objects).into_keys().collect();
        let sealed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sealed_batches").fetch_one(pool).await.unwrap();
        if expected.is_subset(&have) && sealed == 0 {
            break objects;
        }
        assert!(
            Instant::now() < deadline,
            "bucket {bucket}: {} of {} identities delivered, {sealed} batches still sealed",
            expected.intersection(&have).count(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let counts = identities(&objects);
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "{bucket}: delivered more than once: {:?}",
        &duplicated[..duplicated.len().min(5)]
    );
    let unexpected: Vec<_> = counts.keys().filter(|k| !expected.contains(*k)).collect();
    assert!(unexpected.is_empty(), "{bucket}: never accepted: {:?}", &unexpected[..unexpected.len().min(5)]);
    let recorded: BTreeSet<String> =
        sqlx::query_scalar("SELECT object_key FROM delivered_files WHERE bucket = $1")
            .bind(bucket)
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let in_bucket: BTreeSet<String> = objects.iter().map(|o| o.key.clone()).collect();
    let orphans: Vec<_> = in_bucket.difference(&recorded).collect();
    assert!(orphans.is_empty(), "{bucket}: objects Postgres does not record: {orphans:?}");
    let missing: Vec<_> = recorded.difference(&in_bucket).collect();
    assert!(missing.is_empty(), "{bucket}: recorded but absent: {missing:?}");
}

/// The event history holds each of `expected` exactly once (nothing checks uniqueness on insert:
/// the history tap's cursor, moved in the transaction that indexes, is what keeps it so).
async fn assert_indexed_once(pool: &PgPool, expected: &BTreeSet<Identity>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT account_id, event_id, count(*) FROM event_history GROUP BY account_id, event_id",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let twice: Vec<_> = rows.iter().filter(|(_, _, n)| *n > 1).collect();
        assert!(twice.is_empty(), "indexed more than once: {:?}", &twice[..twice.len().min(5)]);
        let have: BTreeSet<Identity> = rows.into_iter().map(|(a, e, _)| (a, e)).collect();
        if &have == expected {
            return;
        }
        assert!(
            Instant::now() < deadline && have.is_subset(expected),
            "{} of {} events indexed, {} never accepted",
            have.intersection(expected).count(),
            expected.len(),
            have.difference(expected).count()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn identities(objects: &[LogObject]) -> BTreeMap<Identity, usize> {
    let mut counts = BTreeMap::new();
    for record in objects.iter().flat_map(|o| o.records.iter()) {
        let identity = (
            record["recipientAccountId"].as_str().unwrap().to_owned(),
            record["eventID"].as_str().unwrap().to_owned(),
        );
        *counts.entry(identity).or_insert(0) += 1;
    }
    counts
}

/// Where accepted events wait: every test runs on both staging backends.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Postgres,
    JetStream,
}

struct Fixture {
    /// The JetStream server of the `JetStream` backend (dropped last: workers use it).
    nats: Option<NatsServer>,
    pool: PgPool,
    database_url: String,
    api: TestApi,
    admin: orgtrail::client::Clients,
    s3: S3Process,
    s3_client: aws_sdk_s3::Client,
    dir: tempfile::TempDir,
}

async fn fixture(backend: Backend) -> Fixture {
    let (pool, database_url) = fresh_database().await;
    let nats = matches!(backend, Backend::JetStream).then(NatsServer::start);
    let api = match &nats {
        Some(nats) => start_with_staging(pool.clone(), nats.staging(pool.clone()).await).await,
        None => start(pool.clone()).await,
    };
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("s3")).unwrap();
    let s3 = S3Process::start(&dir.path().join("s3"), free_port());
    let s3_client = orgtrail::dev::s3_client(&s3.endpoint(), S3_KEY, S3_SECRET, "us-east-1").await;
    for bucket in ["central-bucket", "member-bucket"] {
        s3_client.create_bucket().bucket(bucket).send().await.unwrap();
    }
    logging_trail(&mut admin, org_trail("org-trail")).await;
    logging_trail(&mut admin, account_trail("a-trail", MEMBER_A)).await;
    Fixture { nats, pool, database_url, api, admin, s3, s3_client, dir }
}

impl Fixture {
    fn log(&self) -> PathBuf {
        self.dir.path().join("worker.log")
    }

    /// The environment selecting the fixture's staging backend in `orgtrail` processes.
    fn staging_env(&self) -> Vec<(&'static str, String)> {
        match &self.nats {
            Some(nats) => vec![
                ("ORGTRAIL_STAGING", "jetstream".into()),
                ("ORGTRAIL_NATS_URL", nats.url()),
                ("ORGTRAIL_JETSTREAM_PARTITIONS", nats.settings().partitions.to_string()),
            ],
            None => Vec::new(),
        }
    }

    fn worker(&self, failpoint: Option<&str>) -> WorkerProcess {
        WorkerProcess::start(
            &self.database_url,
            &self.s3.endpoint(),
            failpoint,
            &self.log(),
            0,
            &self.staging_env(),
        )
    }

    /// A worker whose seal→PUT→commit steps each take 150 ms more, so random kills land inside.
    fn slow_worker(&self) -> WorkerProcess {
        WorkerProcess::start(
            &self.database_url,
            &self.s3.endpoint(),
            None,
            &self.log(),
            150,
            &self.staging_env(),
        )
    }

    /// Expected identities per bucket for the events accepted so far.
    fn expected(accepted: &BTreeSet<Identity>) -> (BTreeSet<Identity>, BTreeSet<Identity>) {
        let member: BTreeSet<Identity> = accepted.iter().filter(|(a, _)| a == MEMBER_A).cloned().collect();
        (accepted.clone(), member)
    }
}

fn batch_of_events(batch: usize, size: usize) -> Vec<String> {
    let accounts = [MEMBER_A, MEMBER_B, MANAGEMENT];
    let regions = ["us-east-1", "eu-west-1"];
    (0..size)
        .map(|i| {
            let n = batch * size + i;
            event(
                accounts[n % 3],
                regions[(n / 3) % 2],
                "ec2.amazonaws.com",
                "RunInstances",
                &format!("ev-{n}"),
            )
        })
        .collect()
}

async fn send(admin: &mut orgtrail::client::Clients, records: &[String], accepted: &mut BTreeSet<Identity>) {
    let response = put(admin, records).await;
    assert!(response.failed.is_empty(), "{:?}", response.failed);
    for record in records {
        let value: serde_json::Value = serde_json::from_str(record).unwrap();
        accepted.insert((
            value["recipientAccountId"].as_str().unwrap().into(),
            value["eventID"].as_str().unwrap().into(),
        ));
    }
}

async fn twenty_sigkills_while_events_flow_lose_and_duplicate_nothing(backend: Backend) {
    let mut f = fixture(backend).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261124);
    let mut worker = Some(f.slow_worker());
    let mut accepted = BTreeSet::new();
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    let kills = 24;
    for round in 0..kills {
        send(&mut f.admin, &batch_of_events(round, 60), &mut accepted).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1400))).await;
        let hit = phase(&f.pool, &f.s3_client).await;
        worker.take().unwrap().kill9();
        eprintln!("kill {round:2}: {hit}");
        *phases.entry(hit).or_default() += 1;
        worker = Some(f.slow_worker());
    }
    eprintln!("kills by phase: {phases:?}");
    let (all, member) = Fixture::expected(&accepted);
    assert_exactly_once(&f.pool, &f.s3_client, "central-bucket", &all).await;
    assert_exactly_once(&f.pool, &f.s3_client, "member-bucket", &member).await;
    assert_indexed_once(&f.pool, &accepted).await;
    drop(worker);
    f.s3.kill();
}

async fn a_crash_between_seal_and_put_or_put_and_commit_repeats_the_same_object(backend: Backend) {
    let mut f = fixture(backend).await;
    let mut accepted = BTreeSet::new();
    for (round, failpoint) in ["after-seal", "after-put"].into_iter().enumerate() {
        send(&mut f.admin, &batch_of_events(round, 30), &mut accepted).await;
        let status = f.worker(Some(failpoint)).wait_exit(Duration::from_secs(30));
        assert!(!status.success(), "the worker aborts at {failpoint}");
        let sealed: Vec<(String, String)> =
            sqlx::query_as("SELECT bucket, object_key FROM sealed_batches").fetch_all(&f.pool).await.unwrap();
        // Shards are processed in parallel: the first batch to reach the failpoint aborts the
        // process, others may be sealed too.
        assert!(!sealed.is_empty(), "a batch is left sealed at {failpoint}");
        let mut present = 0;
        for (bucket, key) in &sealed {
            let found = f.s3_client.head_object().bucket(bucket).key(key).send().await.is_ok();
            present += usize::from(found);
            let recorded: i64 =
                sqlx::query_scalar("SELECT count(*) FROM delivered_files WHERE object_key = $1")
                    .bind(key)
                    .fetch_one(&f.pool)
                    .await
                    .unwrap();
            assert_eq!(recorded, 0, "{key} is sealed, not committed");
        }
        match failpoint {
            "after-seal" => assert_eq!(present, 0, "nothing is PUT before the failpoint after seal"),
            _ => assert!(present >= 1, "the batch that reached the failpoint after PUT is in the bucket"),
        }
        // A healthy worker finishes the very same objects.
        let worker = f.worker(None);
        let deadline = Instant::now() + Duration::from_secs(30);
        for (_, key) in &sealed {
            loop {
                let done: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM delivered_files WHERE object_key = $1")
                        .bind(key)
                        .fetch_one(&f.pool)
                        .await
                        .unwrap();
                if done == 1 {
                    break;
                }
                assert!(Instant::now() < deadline, "sealed batch {key} never committed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        drop(worker);
    }
    let _worker = f.worker(None);
    let (all, member) = Fixture::expected(&accepted);
    assert_exactly_once(&f.pool, &f.s3_client, "central-bucket", &all).await;
    assert_exactly_once(&f.pool, &f.s3_client, "member-bucket", &member).await;
}

async fn a_frozen_worker_that_lost_its_lease_can_neither_commit_nor_overwrite(backend: Backend) {
    let mut f = fixture(backend).await;
    let mut accepted = BTreeSet::new();
    let first = f.worker(None);
    for round in 0..3 {
        send(&mut f.admin, &batch_of_events(round, 40), &mut accepted).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    first.signal(libc::SIGSTOP);
    // Past the 2-second lease: a second worker takes the shards over and keeps delivering.
    let second = f.worker(None);
    for round in 3..6 {
        send(&mut f.admin, &batch_of_events(round, 40), &mut accepted).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    first.signal(libc::SIGCONT);
    for round in 6..8 {
        send(&mut f.admin, &batch_of_events(round, 40), &mut accepted).await;
    }
    let (all, member) = Fixture::expected(&accepted);
    assert_exactly_once(&f.pool, &f.s3_client, "central-bucket", &all).await;
    assert_exactly_once(&f.pool, &f.s3_client, "member-bucket", &member).await;
    let generations: i64 =
        sqlx::query_scalar("SELECT max(generation) FROM shard_leases").fetch_one(&f.pool).await.unwrap();
    assert!(generations >= 2, "the shards changed hands");
    drop((first, second));
}

/// Each delivery step of this worker takes longer than its 2-second lease: the heartbeat, renewed
/// beside the passes, keeps the leases all the same (renewed from the loop, it lapsed and every
/// commit was fenced off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_steps_longer_than_the_lease_keep_the_lease() {
    let mut f = fixture(Backend::Postgres).await;
    let mut accepted = BTreeSet::new();
    send(&mut f.admin, &batch_of_events(0, 30), &mut accepted).await;
    let _worker =
        WorkerProcess::start(&f.database_url, &f.s3.endpoint(), None, &f.log(), 3_000, &f.staging_env());
    let (all, member) = Fixture::expected(&accepted);
    assert_exactly_once(&f.pool, &f.s3_client, "central-bucket", &all).await;
    assert_exactly_once(&f.pool, &f.s3_client, "member-bucket", &member).await;
    let generation: i64 =
        sqlx::query_scalar("SELECT max(generation) FROM shard_leases").fetch_one(&f.pool).await.unwrap();
    let log = std::fs::read_to_string(f.log()).unwrap_or_default();
    assert_eq!(generation, 1, "every shard was claimed once and never lost; worker log:\n{log}");
}

async fn s3_unreachable_for_a_while_loses_nothing_and_reports_the_error(backend: Backend) {
    let mut f = fixture(backend).await;
    let mut accepted = BTreeSet::new();
    let _worker = f.worker(None);
    send(&mut f.admin, &batch_of_events(0, 30), &mut accepted).await;
    let (all, _) = Fixture::expected(&accepted);
    assert_exactly_once(&f.pool, &f.s3_client, "central-bucket", &all).await;

    f.s3.kill();
    send(&mut f.admin, &batch_of_events(1, 30), &mut accepted).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = f
            .admin
            .trails
            .get_trail_status(pb::GetTrailStatusRequest { name: "org-trail".into() })
            .await
            .unwrap()
            .into_inner();
        if !status.latest_delivery_error.is_empty() {
            eprintln!("status while S3 is down: {}", status.latest_delivery_error);
            break;
        }
        assert!(Instant::now() < deadline, "no delivery error while S3 is down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    f.s3.restart();
    let (all, member) = Fixture::expected(&accepted);
    assert_exactly_once(&f.pool, &f.s3_client, "central-bucket", &all).await;
    assert_exactly_once(&f.pool, &f.s3_client, "member-bucket", &member).await;
    let status = f
        .admin
        .trails
        .get_trail_status(pb::GetTrailStatusRequest { name: "org-trail".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(status.latest_delivery_error.is_empty(), "recovery clears the error: {status:?}");
}

async fn ingest_killed_between_durable_commit_and_ack_is_retried_without_duplicates(backend: Backend) {
    ingest_killed_at(backend, "after-ingest-commit", true).await;
}

/// JetStream holds the events, Postgres has not recorded their group (nor acked anyone): the
/// retry is accepted and staged again, and readers skip the chunks of the group that never
/// committed, so every event is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_ingest_killed_between_log_write_and_postgres_commit_stages_the_retry_once() {
    ingest_killed_at(Backend::JetStream, "after-log-append", false).await;
}

/// A `serve` process aborted at `failpoint` while ingesting; the retry to a healthy one finds
/// duplicates (`retry_finds_duplicates`) or not, and every event is delivered exactly once.
async fn ingest_killed_at(backend: Backend, failpoint: &str, retry_finds_duplicates: bool) {
    let f = fixture(backend).await;
    let port = free_port();
    let serve = |failpoint: Option<&str>| {
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .env("DATABASE_URL", &f.database_url)
            .env("ORGTRAIL_GRPC_LISTEN", format!("127.0.0.1:{port}"))
            .envs(f.staging_env())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(name) = failpoint {
            command.env("FAILPOINTS", failpoints(Some(name), 0));
        }
        let child = command.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    };
    let token = f.api.token(orgtrail::store::tokens::Role::Admin, None).await;
    let target =
        orgtrail::client::Target { endpoint: format!("http://127.0.0.1:{port}"), token, ca_cert: None };
    let records = batch_of_events(0, 20);
    let request = audit_request(&records);

    let mut crashing = serve(Some(failpoint));
    let mut clients = orgtrail::client::connect(&target).await.unwrap();
    let lost_ack = clients.ingest.put_audit_events(request.clone()).await;
    assert!(lost_ack.is_err(), "the server dies before acknowledging");
    let _ = crashing.wait();

    let mut healthy = serve(None);
    let mut clients = orgtrail::client::connect(&target).await.unwrap();
    let retried = clients.ingest.put_audit_events(request).await.unwrap().into_inner();
    assert!(retried.failed.is_empty());
    assert_eq!(retried.successful.len(), records.len());
    assert!(
        retried.successful.iter().all(|s| s.duplicate == retry_finds_duplicates),
        "after a crash at {failpoint} the retry finds duplicates: {retry_finds_duplicates}"
    );

    let _worker = f.worker(None);
    let accepted: BTreeSet<Identity> = records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r).unwrap();
            (v["recipientAccountId"].as_str().unwrap().into(), v["eventID"].as_str().unwrap().into())
        })
        .collect();
    let (all, member) = Fixture::expected(&accepted);
    assert_exactly_once(&f.pool, &f.s3_client, "central-bucket", &all).await;
    assert_exactly_once(&f.pool, &f.s3_client, "member-bucket", &member).await;
    let _ = healthy.kill();
    let _ = healthy.wait();
}

async fn a_batch_of_a_trail_deleted_mid_delivery_is_still_recorded(backend: Backend) {
    let mut f = fixture(backend).await;
    let mut accepted = BTreeSet::new();
    send(&mut f.admin, &batch_of_events(0, 30), &mut accepted).await;
    let status = f.worker(Some("after-put")).wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let sealed: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT trail_id, bucket, object_key FROM sealed_batches")
            .fetch_all(&f.pool)
            .await
            .unwrap();
    assert!(!sealed.is_empty());
    // Delete every trail that has a batch in flight.
    let arns: BTreeSet<String> = sqlx::query_scalar("SELECT trail_arn FROM sealed_batches")
        .fetch_all(&f.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    for arn in &arns {
        f.admin.trails.delete_trail(pb::DeleteTrailRequest { name: arn.clone() }).await.unwrap();
    }
    let _worker = f.worker(None);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sealed_batches").fetch_one(&f.pool).await.unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} batches of deleted trails never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for bucket in ["central-bucket", "member-bucket"] {
        let in_bucket: BTreeSet<String> =
            list_objects(&f.s3_client, bucket).await.into_iter().map(|o| o.key).collect();
        let recorded: BTreeSet<String> =
            sqlx::query_scalar("SELECT object_key FROM delivered_files WHERE bucket = $1")
                .bind(bucket)
                .fetch_all(&f.pool)
                .await
                .unwrap()
                .into_iter()
                .collect();
        assert_eq!(in_bucket, recorded, "{bucket}: every object is recorded");
    }
    for (_, bucket, key) in &sealed {
        assert!(
            f.s3_client.head_object().bucket(bucket).key(key).send().await.is_ok(),
            "{key} was delivered"
        );
    }
}

/// Digest objects in the bucket with the SHA-256 of their stored bytes.
async fn digest_objects(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let page = s3.list_objects_v2().bucket(bucket).prefix("AWSLogs/").send().await.unwrap();
    for key in page.contents().iter().filter_map(|o| o.key()).filter(|k| k.contains("/CloudTrail-Digest/")) {
        let body =
            s3.get_object().bucket(bucket).key(key).send().await.unwrap().body.collect().await.unwrap();
        let hash =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body.into_bytes()).as_ref().to_vec();
        out.insert(key.to_owned(), hash);
    }
    out
}

async fn pending_digests(pool: &PgPool) -> BTreeSet<String> {
    sqlx::query_scalar::<_, String>("SELECT object_key FROM pending_digests")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn a_crash_after_sealing_or_writing_a_digest_repeats_the_same_digest(backend: Backend) {
    let mut f = fixture(backend).await;
    f.admin
        .trails
        .update_trail(pb::UpdateTrailRequest {
            name: format!("arn:aws:cloudtrail:us-east-1:{MEMBER_A}:trail/a-trail"),
            log_file_validation_enabled: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut accepted = BTreeSet::new();
    send(&mut f.admin, &batch_of_events(0, 30), &mut accepted).await;

    // Aborted right after sealing the first digests (at the next minute boundary): none is in S3.
    let status = f.worker(Some("after-digest-seal")).wait_exit(Duration::from_secs(90));
    assert!(!status.success(), "the worker aborts after sealing a digest");
    let sealed = pending_digests(&f.pool).await;
    assert!(!sealed.is_empty(), "a digest is left sealed");
    let in_bucket = digest_objects(&f.s3_client, "member-bucket").await;
    assert!(sealed.iter().all(|k| !in_bucket.contains_key(k)), "nothing is PUT before the failpoint");

    // Aborted right after the PUT: the object is there, not yet confirmed.
    let status = f.worker(Some("after-digest-put")).wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "the worker aborts after writing a digest");
    let written = digest_objects(&f.s3_client, "member-bucket").await;
    assert!(sealed.iter().any(|k| written.contains_key(k)), "the digest that reached the failpoint is in S3");
    assert!(!pending_digests(&f.pool).await.is_empty(), "not yet confirmed");

    // A healthy worker confirms the same objects (identical bytes) and continues the chains.
    let _worker = f.worker(None);
    let deadline = Instant::now() + Duration::from_secs(150);
    let first_keys: BTreeSet<String> = sealed.clone();
    loop {
        let digests = digest_objects(&f.s3_client, "member-bucket").await;
        let pending = pending_digests(&f.pool).await;
        // Chained successors of the crashed digests exist and everything is confirmed.
        let successors = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM delivered_digests WHERE delivered_at IS NOT NULL AND NOT (object_key = ANY($1))
               AND (account_id, region) IN (SELECT account_id, region FROM delivered_digests WHERE object_key = ANY($1))",
        )
        .bind(first_keys.iter().cloned().collect::<Vec<_>>())
        .fetch_one(&f.pool)
        .await
        .unwrap();
        if pending.is_empty() && successors >= first_keys.len() as i64 {
            for (key, hash) in &written {
                assert_eq!(digests.get(key), Some(hash), "{key} was rewritten with other bytes");
            }
            let recorded: BTreeSet<String> = sqlx::query_scalar::<_, String>(
                "SELECT object_key FROM delivered_digests WHERE bucket = 'member-bucket'",
            )
            .fetch_all(&f.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
            assert_eq!(
                digests.keys().cloned().collect::<BTreeSet<_>>(),
                recorded,
                "bucket and records agree"
            );
            break;
        }
        assert!(Instant::now() < deadline, "digests after the crash never completed");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The first successor of each crashed digest points at it, with its hash.
    let successors: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT ON (account_id, region) object_key FROM delivered_digests
         WHERE NOT (object_key = ANY($1))
           AND (account_id, region) IN (SELECT account_id, region FROM delivered_digests WHERE object_key = ANY($1))
         ORDER BY account_id, region, id",
    )
    .bind(first_keys.iter().cloned().collect::<Vec<_>>())
    .fetch_all(&f.pool)
    .await
    .unwrap();
    for key in successors {
        let body = f.s3_client.get_object().bucket("member-bucket").key(&key).send().await.unwrap();
        let mut json = Vec::new();
        use std::io::Read;
        flate2::read::GzDecoder::new(&body.body.collect().await.unwrap().into_bytes()[..])
            .read_to_end(&mut json)
            .unwrap();
        let digest: orgtrail::features::integrity::digest::Digest = serde_json::from_slice(&json).unwrap();
        let previous = digest.previous_digest_s3_object.unwrap_or_default();
        assert!(first_keys.contains(&previous), "{key} follows {previous}, not a crashed digest");
    }
}

/// Each crash test, once per staging backend (`postgres::…` and `jetstream::…`).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )*
        }
        mod jetstream {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::JetStream).await
                }
            )*
        }
    };
}

on_both_backends!(
    twenty_sigkills_while_events_flow_lose_and_duplicate_nothing,
    a_crash_between_seal_and_put_or_put_and_commit_repeats_the_same_object,
    a_frozen_worker_that_lost_its_lease_can_neither_commit_nor_overwrite,
    s3_unreachable_for_a_while_loses_nothing_and_reports_the_error,
    ingest_killed_between_durable_commit_and_ack_is_retried_without_duplicates,
    a_batch_of_a_trail_deleted_mid_delivery_is_still_recorded,
    a_crash_after_sealing_or_writing_a_digest_repeats_the_same_digest,
);
