//! What a careful operator does to `orgtrail dev`: kill -9 of the process and, separately, of its
//! embedded Postgres while sixteen pushers send real records. Every acknowledged (account, eventID)
//! must end up in the bucket exactly once, the next start must need no manual step, and the stack
//! must stop on SIGTERM within a few seconds whatever state its Postgres is in.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use orgtrail::client::{self, Target};
use orgtrail::dev::DevInfo;
use orgtrail::proto::v1 as pb;

const BIN: &str = env!("CARGO_BIN_EXE_orgtrail");

/// Fixed ports, so that clients made before a restart reach the restarted stack.
#[derive(Debug, Clone, Copy)]
struct Ports {
    grpc: u16,
    s3: u16,
    cloudtrail: u16,
    metrics: u16,
    postgres: u16,
}

impl Ports {
    fn free() -> Self {
        let port = || orgtrail::dev::postgres::free_port().unwrap();
        Self { grpc: port(), s3: port(), cloudtrail: port(), metrics: port(), postgres: port() }
    }
}

/// One `orgtrail dev` process over a data directory that outlives it.
struct Dev {
    child: Child,
    info: DevInfo,
}

impl Dev {
    fn start(dir: &Path, ports: Ports) -> Self {
        let dev_json = dir.join(".orgtrail/dev.json");
        let _ = std::fs::remove_file(&dev_json);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("dev.log")).unwrap();
        let mut child = Command::new(BIN)
            .current_dir(dir)
            .args(["dev", "--grpc-listen", &format!("127.0.0.1:{}", ports.grpc)])
            .args(["--s3-listen", &format!("127.0.0.1:{}", ports.s3)])
            .args(["--cloudtrail-listen", &format!("127.0.0.1:{}", ports.cloudtrail)])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", ports.metrics)])
            .args(["--postgres-port", &ports.postgres.to_string()])
            .env_remove("ORGTRAIL_ENDPOINT")
            .env_remove("ORGTRAIL_TOKEN")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("orgtrail dev starts");
        let deadline = Instant::now() + Duration::from_secs(120);
        let info = loop {
            if let Ok(text) = std::fs::read_to_string(&dev_json)
                && let Ok(info) = serde_json::from_str::<DevInfo>(&text)
            {
                break info;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("dev.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                panic!("orgtrail dev exited early ({status}): {}", tail.join("\n"));
            }
            assert!(Instant::now() < deadline, "dev.json did not appear");
            std::thread::sleep(Duration::from_millis(100));
        };
        Self { child, info }
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; the process must be gone within `within`.
    fn stop_within(mut self, within: Duration) -> Duration {
        let started = Instant::now();
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "orgtrail dev exits cleanly on SIGTERM: {status}");
                return started.elapsed();
            }
            assert!(started.elapsed() < within, "orgtrail dev did not stop within {within:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A data directory the postgres system user may enter (the embedded cluster lives inside it).
fn data_dir() -> tempfile::TempDir {
    let temp = tempfile::Builder::new().prefix("orgtrail-reliability").tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    temp
}

/// The postmaster of the dev data directory, from its lock file.
fn postmaster_pid(dir: &Path) -> Option<i32> {
    let cluster = orgtrail::dev::postgres::cluster_dir_for(&dir.join(".orgtrail").canonicalize().ok()?);
    let text = std::fs::read_to_string(cluster.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Whether `pid` runs (a zombie nobody reaped yet has stopped running).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    state.is_some_and(|s| s != "Z" && s != "X")
}

fn kill9_pid(pid: i32) {
    // SAFETY: the test's own embedded postmaster.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The shared real records (JSON lines).
fn shared_records() -> Vec<String> {
    use std::io::BufRead;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/cloudtrail/records.jsonl.gz");
    let file = std::fs::File::open(path).expect("the shared records are beside the checkout");
    std::io::BufReader::new(flate2::read::GzDecoder::new(file)).lines().map(Result::unwrap).collect()
}

/// A real record with a fresh eventID.
fn fresh(record: &str, n: u64) -> Option<(String, String)> {
    let mut value: serde_json::Value = serde_json::from_str(record).ok()?;
    let event_id = format!("reliability-{n:08}-{}", uuid::Uuid::new_v4().simple());
    value.as_object_mut()?.insert("eventID".into(), event_id.clone().into());
    let account = value["recipientAccountId"].as_str()?.to_owned();
    Some((serde_json::to_string(&value).ok()?, format!("{account}/{event_id}")))
}

type Acked = Arc<Mutex<BTreeSet<String>>>;

/// Sixteen pushers sending real records (fresh eventIDs) until `stop`; every acknowledged
/// (account/eventID) goes into the returned set. Calls that fail are not retried: their events
/// were never acknowledged (they may still arrive, once).
fn start_pushers(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    records: Arc<Vec<String>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Acked, Vec<tokio::task::JoinHandle<()>>) {
    let acked: Acked = Default::default();
    let mut tasks = Vec::new();
    for pusher in 0..16u64 {
        let target = Target { endpoint: target.endpoint.clone(), token: target.token.clone(), ca_cert: None };
        let records = records.clone();
        let acked = acked.clone();
        let stop = stop.clone();
        tasks.push(runtime.spawn(async move {
            let mut clients = client::connect(&target).await.unwrap();
            let mut n = pusher * 10_000_000;
            let mut cursor = (pusher as usize * 151) % records.len();
            while !*stop.borrow() {
                let mut batch = Vec::new();
                let mut names = BTreeMap::new();
                while batch.len() < 50 {
                    cursor = (cursor + 1) % records.len();
                    n += 1;
                    if let Some((record, identity)) = fresh(&records[cursor], n) {
                        names.insert(format!("e{}", batch.len()), identity);
                        batch.push(record);
                    }
                }
                let call = tokio::time::timeout(
                    Duration::from_secs(20),
                    clients.ingest.put_audit_events(audit_request(&batch)),
                )
                .await;
                match call {
                    Ok(Ok(response)) => {
                        let mut acked = acked.lock().unwrap();
                        for entry in response.into_inner().successful {
                            acked.insert(names[&entry.id].clone());
                        }
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }));
    }
    (acked, tasks)
}

/// Each (account/eventID) in the bucket with how many times it is there; every object is checked
/// against CloudTrail's format on the way.
async fn delivered(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for object in list_objects(s3, bucket).await {
        for record in &object.records {
            let identity = format!(
                "{}/{}",
                record["recipientAccountId"].as_str().unwrap_or_default(),
                record["eventID"].as_str().unwrap_or_default()
            );
            *counts.entry(identity).or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn acked_events_are_delivered_exactly_once_through_kill9_of_dev_and_of_its_postgres() {
    let temp = data_dir();
    let dir = temp.path().to_owned();
    let ports = Ports::free();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let records = Arc::new(shared_records());

    let dev = Dev::start(&dir, ports);
    let info = dev.info.clone();
    let target =
        Target { endpoint: info.grpc_endpoint.clone(), token: info.admin_token.clone(), ca_cert: None };
    runtime.block_on(async {
        let mut admin = client::connect(&target).await.unwrap();
        register_accounts_of(&mut admin, &records).await;
        let mut trail = org_trail("org-trail");
        trail.s3_bucket_name = info.bucket.clone();
        trail.delivery_interval_seconds = Some(5);
        let trail = admin.trails.create_trail(trail).await.unwrap().into_inner();
        // The trail takes every kind of event the shared records hold (management, the one data
        // event, the pushed Insights records), so every acknowledged event must be delivered.
        let everything = vec![
            pb::AdvancedEventSelector {
                name: "management".into(),
                field_selectors: vec![field("eventCategory", &["Management"])],
            },
            pb::AdvancedEventSelector {
                name: "ses".into(),
                field_selectors: vec![
                    field("eventCategory", &["Data"]),
                    field("resources.type", &["AWS::SES::EmailIdentity"]),
                ],
            },
        ];
        admin
            .trails
            .put_event_selectors(pb::PutEventSelectorsRequest {
                trail_name: trail.trail_arn.clone(),
                event_selectors: vec![],
                advanced_event_selectors: everything,
            })
            .await
            .unwrap();
        admin
            .trails
            .put_insight_selectors(pb::PutInsightSelectorsRequest {
                trail_name: trail.trail_arn.clone(),
                insight_selectors: vec![pb::InsightSelector {
                    insight_type: "ApiCallRateInsight".into(),
                    event_categories: vec!["Management".into()],
                }],
            })
            .await
            .unwrap();
        admin.trails.start_logging(pb::StartLoggingRequest { name: trail.trail_arn }).await.unwrap();
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (acked, pushers) = start_pushers(&runtime, &target, records.clone(), stop_rx);
    let acked_count = || acked.lock().unwrap().len();
    wait_until("pushers get events acknowledged", Duration::from_secs(60), || acked_count() > 5_000);

    // kill -9 of the dev process mid-ingest; the next start must just work.
    let old_postmaster = postmaster_pid(&dir).expect("the embedded postgres runs");
    dev.kill9();
    let before_kill = acked_count();
    let dev = Dev::start(&dir, ports);
    assert!(!alive(old_postmaster), "the killed dev's postmaster is gone");
    wait_until("ingest resumes after the restart", Duration::from_secs(60), || {
        acked_count() > before_kill + 5_000
    });

    // kill -9 of its Postgres while dev keeps running; dev must bring it back by itself.
    let postmaster = postmaster_pid(&dir).expect("the embedded postgres runs");
    kill9_pid(postmaster);
    let before_pg_kill = acked_count();
    wait_until("ingest resumes after postgres was killed", Duration::from_secs(90), || {
        acked_count() > before_pg_kill + 5_000
    });
    assert_ne!(postmaster_pid(&dir), Some(postmaster), "a new postmaster");

    stop_tx.send(true).unwrap();
    runtime.block_on(async {
        for pusher in pushers {
            pusher.await.unwrap();
        }
    });
    let acked: BTreeSet<String> = acked.lock().unwrap().clone();
    assert!(acked.len() > 15_000, "only {} events acknowledged", acked.len());

    let s3 = runtime.block_on(orgtrail::dev::s3_client(
        &info.s3_endpoint,
        &info.s3_access_key_id,
        &info.s3_secret_access_key,
        &info.region,
    ));
    let deadline = Instant::now() + Duration::from_secs(240);
    let counts = loop {
        let counts = runtime.block_on(delivered(&s3, &info.bucket));
        let missing = acked.iter().filter(|id| !counts.contains_key(*id)).count();
        if missing == 0 {
            break counts;
        }
        if Instant::now() > deadline {
            let sample: Vec<&String> = acked.iter().filter(|id| !counts.contains_key(*id)).take(5).collect();
            panic!("{missing} of {} acknowledged events never delivered, e.g. {sample:?}", acked.len());
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "events delivered more than once: {twice:?}");

    // Nothing acknowledged is overdue, and `orgtrail status` says so.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let output = orgtrail_cli(&dir, &["--output", "json", "status", "--overdue-after", "60s"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        if status["backlog"]["overdue_events"] == 0 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(status["backlog"]["overdue_events"], 0, "{status}");
    assert_eq!(status["backlog"]["overdue_after_seconds"], 60, "{status}");

    let took = dev.stop_within(Duration::from_secs(10));
    eprintln!(
        "{} acknowledged, {} delivered (each once); stopped {took:?} after SIGTERM",
        acked.len(),
        counts.len()
    );
    assert!(postmaster_pid(&dir).is_none_or(|pid| !alive(pid)), "postgres stops with dev");
}

#[test]
fn dev_starts_again_after_kill9_with_no_manual_step() {
    let temp = data_dir();
    let dir = temp.path().to_owned();
    let ports = Ports::free();
    let dev = Dev::start(&dir, ports);
    let token = dev.info.admin_token.clone();
    let postmaster = postmaster_pid(&dir).expect("the embedded postgres runs");
    dev.kill9();
    // The embedded Postgres dies with its parent.
    wait_until("the orphaned postmaster stops", Duration::from_secs(20), || !alive(postmaster));
    let dev = Dev::start(&dir, ports);
    assert_eq!(dev.info.admin_token, token, "same state");
    let listed = orgtrail_cli(&dir, &["accounts", "list"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    dev.stop_within(Duration::from_secs(10));
}

#[test]
fn dev_adopts_a_postmaster_left_running_by_a_dead_dev() {
    // A postmaster left behind (as by an older orgtrail, or a parent killed before it could
    // arrange for its child to follow) is stopped safely by the next start.
    let temp = data_dir();
    let dir = temp.path().to_owned();
    let ports = Ports::free();
    let dev = Dev::start(&dir, ports);
    dev.stop_within(Duration::from_secs(10));
    let cluster = orgtrail::dev::postgres::cluster_dir_for(&dir.join(".orgtrail").canonicalize().unwrap());
    let bin = orgtrail::dev::postgres::find_binaries().unwrap();
    let started = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join("pg_ctl"))
        .arg("-D")
        .arg(&cluster)
        .arg("-o")
        .arg(format!("-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories=''", ports.postgres))
        .args(["-w", "-l"])
        .arg(cluster.join("stray.log"))
        .arg("start")
        .status()
        .unwrap();
    assert!(started.success());
    let stray = postmaster_pid(&dir).expect("the stray postmaster runs");
    let dev = Dev::start(&dir, ports);
    assert!(orgtrail_cli(&dir, &["accounts", "list"]).status.success());
    dev.stop_within(Duration::from_secs(10));
    assert!(!alive(stray), "the stray postmaster was stopped");
}

#[test]
fn dev_brings_its_postgres_back_and_stops_on_sigterm_when_it_is_gone() {
    let temp = data_dir();
    let dir = temp.path().to_owned();
    let ports = Ports::free();
    let dev = Dev::start(&dir, ports);
    let postmaster = postmaster_pid(&dir).expect("the embedded postgres runs");
    kill9_pid(postmaster);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = orgtrail_cli(&dir, &["accounts", "list"]);
        if output.status.success() {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("dev.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!(
                "dev does not answer after its postgres was killed: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_ne!(postmaster_pid(&dir), Some(postmaster));
    dev.stop_within(Duration::from_secs(10));

    // SIGTERM right after the postmaster died: stop within a few seconds all the same.
    let dev = Dev::start(&dir, ports);
    let postmaster = postmaster_pid(&dir).expect("the embedded postgres runs");
    kill9_pid(postmaster);
    std::thread::sleep(Duration::from_millis(300));
    dev.stop_within(Duration::from_secs(10));
}

/// An Insights record as CloudTrail writes them (AWS's documentation example) for `account`.
fn insight_record(account: &str, event_id: &str) -> String {
    serde_json::json!({
        "eventVersion": "1.07", "eventTime": "2019-11-14T00:52:00Z", "awsRegion": "us-east-1",
        "eventID": event_id, "eventType": "AwsCloudTrailInsight", "recipientAccountId": account,
        "sharedEventID": event_id, "eventCategory": "Insight",
        "insightDetails": {"state": "Start", "eventSource": "ssm.amazonaws.com",
            "eventName": "UpdateInstanceInformation", "insightType": "ApiCallRateInsight",
            "insightContext": {"statistics": {"baseline": {"average": 85.4}, "insight": {"average": 664.0}}}}
    })
    .to_string()
}

#[sqlx::test(migrations = "./migrations")]
async fn the_backlog_names_overdue_events_and_acknowledged_events_no_trail_takes(pool: sqlx::PgPool) {
    let stack = stack(pool).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    // The trail's bucket does not exist yet: its management events cannot be delivered.
    logging_trail(&mut admin, org_trail("org")).await;
    let management = event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "stuck-1");
    let mut data: serde_json::Value =
        serde_json::from_str(&event(MEMBER_A, "us-east-1", "s3.amazonaws.com", "GetObject", "data-1"))
            .unwrap();
    data["eventCategory"] = "Data".into();
    data["managementEvent"] = false.into();
    let data = data.to_string();
    let response = put(&mut admin, &[management, data, insight_record(MEMBER_A, "insight-1")]).await;
    assert_eq!(response.successful.len(), 3, "{:?}", response.failed);

    let request = pb::GetBacklogRequest { overdue_after_seconds: 1 };
    let untaken_of = |backlog: &pb::Backlog| {
        let mut untaken: Vec<(String, String, i64)> =
            backlog.untaken.iter().map(|u| (u.account_id.clone(), u.category.clone(), u.events)).collect();
        untaken.sort();
        untaken
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let backlog = loop {
        let backlog = admin.ingest.get_backlog(request).await.unwrap().into_inner();
        if (!backlog.untaken.is_empty() && backlog.overdue_events >= 1) || Instant::now() > deadline {
            break backlog;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // No insight selector is set: the Insights record is taken by no trail.
    assert_eq!(untaken_of(&backlog), vec![(MEMBER_A.into(), "Insight".into(), 1)]);
    assert!(backlog.overdue_events >= 1, "{backlog:?}");
    let shard = &backlog.overdue_shards[0];
    assert_eq!(
        (shard.account_id.as_str(), shard.region.as_str(), shard.source.as_str()),
        (MEMBER_A, "us-east-1", "push")
    );

    // A member sees its own account's backlog only.
    let mut member_b = stack.api.member(MEMBER_B).await;
    let theirs = member_b.ingest.get_backlog(request).await.unwrap().into_inner();
    assert_eq!((theirs.staged_events, theirs.untaken.len()), (0, 0), "{theirs:?}");
    let negative = admin.ingest.get_backlog(pb::GetBacklogRequest { overdue_after_seconds: -1 }).await;
    assert!(status(negative).message().contains("overdue_after_seconds"));

    // Once the bucket exists the management event is delivered, nothing is overdue, and the data
    // event (the default selectors take management events only) is counted as taken by no trail.
    stack.create_bucket("central-bucket").await;
    stack.wait_for_records("central-bucket", 1).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let backlog = admin.ingest.get_backlog(request).await.unwrap().into_inner();
        let expected = vec![(MEMBER_A.into(), "Data".into(), 1), (MEMBER_A.into(), "Insight".into(), 1)];
        if backlog.overdue_events == 0 && untaken_of(&backlog) == expected {
            break;
        }
        assert!(Instant::now() < deadline, "{backlog:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
