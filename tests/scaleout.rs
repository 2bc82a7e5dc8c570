//! Scale-out: one control plane (`orgtrail serve`) and three `orgtrail worker` processes on one
//! Postgres and a standalone S3 store (`orgtrail s3-server`), push traffic for ACCOUNTS × 4
//! regions, kill -9 one worker half-way, see its shards taken over (lease takeover metric, no lease
//! left with the dead process), and every pushed eventID delivered exactly once.
//!
//! `ORGTRAIL_SCALEOUT_ACCOUNTS` sets the accounts (default 100, so the suite stays quick; the
//! issue's size is 1000) and `ORGTRAIL_SCALEOUT_EVENTS` the events per shard (default 3).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use orgtrail::proto::v1 as pb;
use sqlx::PgPool;

const BIN: &str = env!("CARGO_BIN_EXE_orgtrail");
const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1"];
const BUCKET: &str = "scaleout-bucket";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(
    dir: &std::path::Path,
    db: &str,
    s3: &str,
    metrics_port: u16,
    n: usize,
    staging_env: &[(&'static str, String)],
) -> Process {
    let log = std::fs::File::create(dir.join(format!("worker-{n}.log"))).unwrap();
    Process(
        Command::new(BIN)
            .arg("worker")
            .env("DATABASE_URL", db)
            .env("ORGTRAIL_DATABASE_MAX_CONNECTIONS", "10")
            .env("ORGTRAIL_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
            // The production TTL (15 s): with a much shorter one, a pass over thousands of shards
            // outlasts the TTL and leases bounce between workers.
            .env("ORGTRAIL_LEASE_TTL_SECONDS", "15")
            .env("ORGTRAIL_S3_ENDPOINT", s3)
            .env("ORGTRAIL_S3_FORCE_PATH_STYLE", "true")
            .env("ORGTRAIL_S3_ACCESS_KEY_ID", "scaleout")
            .env("ORGTRAIL_S3_SECRET_ACCESS_KEY", "scaleout-secret")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(staging_env.iter().map(|(k, v)| (*k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

async fn takeovers(ports: &[u16]) -> f64 {
    let mut total = 0.0;
    for port in ports {
        let (_, body) = http_get(SocketAddr::from(([127, 0, 0, 1], *port)), "/metrics").await;
        total += body
            .lines()
            .filter_map(|l| l.strip_prefix("orgtrail_lease_takeovers_total "))
            .filter_map(|v| v.parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

#[sqlx::test]
async fn three_workers_survive_a_kill_without_loss_or_duplicates(pool: PgPool) {
    three_workers_and_a_kill(pool, &[]).await;
}

#[sqlx::test]
async fn three_workers_survive_a_kill_without_loss_or_duplicates_on_jetstream(pool: PgPool) {
    let nats = NatsServer::start();
    let env = [("ORGTRAIL_STAGING", "jetstream".to_owned()), ("ORGTRAIL_NATS_URL", nats.url())];
    three_workers_and_a_kill(pool, &env).await;
}

/// `serve`, three workers and the S3 store as processes, staging selected by `staging_env`.
async fn three_workers_and_a_kill(pool: PgPool, staging_env: &[(&'static str, String)]) {
    let accounts = env_number("ORGTRAIL_SCALEOUT_ACCOUNTS", 100);
    let per_shard = env_number("ORGTRAIL_SCALEOUT_EVENTS", 3);
    let temp = tempfile::tempdir().unwrap();
    let db = database_url(&pool);

    // The standalone S3 store and the control plane, each its own process.
    let s3_port = orgtrail::dev::postgres::free_port().unwrap();
    std::fs::create_dir_all(temp.path().join("s3")).unwrap();
    let _s3 = Process(
        Command::new(BIN)
            .args(["s3-server", "--dir", temp.path().join("s3").to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{s3_port}")])
            .args(["--access-key-id", "scaleout", "--secret-access-key", "scaleout-secret"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(s3_port);
    let s3_endpoint = format!("http://127.0.0.1:{s3_port}");
    let s3 = orgtrail::dev::s3_client(&s3_endpoint, "scaleout", "scaleout-secret", "us-east-1").await;
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();

    orgtrail::store::migrate(&pool).await.unwrap();
    let token = orgtrail::control::api::token::issue(
        &pool,
        None,
        "scaleout-admin",
        orgtrail::store::tokens::Role::Admin,
        None,
        0,
        false,
    )
    .await
    .unwrap()
    .secret;
    let grpc_port = orgtrail::dev::postgres::free_port().unwrap();
    let _serve = Process(
        Command::new(BIN)
            .arg("serve")
            .env("DATABASE_URL", &db)
            .env("ORGTRAIL_DATABASE_MAX_CONNECTIONS", "20")
            .env("ORGTRAIL_GRPC_LISTEN", format!("127.0.0.1:{grpc_port}"))
            .envs(staging_env.iter().map(|(k, v)| (*k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(temp.path().join("serve.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_port(grpc_port);
    let target =
        orgtrail::client::Target { endpoint: format!("http://127.0.0.1:{grpc_port}"), token, ca_cert: None };
    let mut admin = orgtrail::client::connect(&target).await.unwrap();

    let management = "100000000000".to_owned();
    admin
        .organizations
        .create_organization(pb::CreateOrganizationRequest {
            id: "o-scaleout123".into(),
            management_account_id: management.clone(),
            regions: REGIONS.iter().map(|r| r.to_string()).collect(),
        })
        .await
        .unwrap();
    let members: Vec<String> = (1..=accounts).map(|i| format!("{}", 100_000_000_000u64 + i as u64)).collect();
    for account in &members {
        admin
            .accounts
            .register_account(pb::RegisterAccountRequest {
                account_id: account.clone(),
                name: format!("member-{account}"),
                email: format!("{account}@example.com"),
            })
            .await
            .unwrap();
    }
    admin
        .trails
        .create_trail(pb::CreateTrailRequest {
            name: "scaleout".into(),
            s3_bucket_name: BUCKET.into(),
            is_organization_trail: true,
            is_multi_region_trail: Some(true),
            delivery_interval_seconds: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    admin.trails.start_logging(pb::StartLoggingRequest { name: "scaleout".into() }).await.unwrap();

    let metrics_ports: Vec<u16> = (0..3).map(|_| orgtrail::dev::postgres::free_port().unwrap()).collect();
    let mut workers: Vec<Option<Process>> = metrics_ports
        .iter()
        .enumerate()
        .map(|(n, port)| Some(worker(temp.path(), &db, &s3_endpoint, *port, n, staging_env)))
        .collect();
    for port in &metrics_ports {
        wait_for_port(*port);
    }

    // Every (account, region) gets `per_shard` events, sent in calls of 100.
    let mut records = Vec::new();
    for round in 0..per_shard {
        for account in &members {
            for region in REGIONS {
                let id = format!("{account}-{region}-{round}");
                records.push((
                    id.clone(),
                    event(account, region, "ec2.amazonaws.com", "DescribeInstances", &id),
                ));
            }
        }
    }
    let total = records.len();
    let started = Instant::now();
    let half = total / 2;
    let mut killed_pid = 0;
    let mut victim_slot = 0;
    let mut victim_shards = 0;
    for (n, chunk) in records.chunks(100).enumerate() {
        if n * 100 >= half && killed_pid == 0 {
            // Let the workers take the shards (and deliver some) before one dies.
            tokio::time::sleep(Duration::from_secs(3)).await;
            // The victim: the worker holding most shards (ids are `HOST-PID-UUID`).
            let owners: Vec<(String, i64)> = sqlx::query_as(
                "SELECT l.owner, count(*) FROM shard_leases l JOIN workers w ON w.owner = l.owner
                 WHERE w.expires_at > now() GROUP BY l.owner ORDER BY count(*) DESC",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            let (owner, held) = owners.first().expect("shards are leased").clone();
            let pid: u32 =
                owner.rsplit('-').nth(1).and_then(|p| p.parse().ok()).expect("pid in the owner id");
            let slot = workers.iter().position(|w| w.as_ref().is_some_and(|w| w.0.id() == pid)).unwrap();
            victim_slot = slot;
            let mut victim = workers[slot].take().unwrap();
            killed_pid = pid;
            victim_shards = held;
            victim.0.kill().unwrap(); // SIGKILL
            let _ = victim.0.wait();
        }
        let bodies: Vec<String> = chunk.iter().map(|(_, r)| r.clone()).collect();
        let response = put(&mut admin, &bodies).await;
        assert!(response.failed.is_empty(), "{:?}", response.failed.first());
    }
    let pushed_in = started.elapsed();

    // The dead worker's shards are taken over by the others.
    let survivors: Vec<u16> =
        metrics_ports.iter().enumerate().filter(|(n, _)| *n != victim_slot).map(|(_, p)| *p).collect();
    let survivors = &survivors[..];
    let deadline = Instant::now() + Duration::from_secs(120);
    while takeovers(survivors).await < 1.0 {
        assert!(Instant::now() < deadline, "no lease takeover seen");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pattern = format!("%-{killed_pid}-%");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM shard_leases WHERE owner LIKE $1")
            .bind(&pattern)
            .fetch_one(&pool)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} shards still leased to the killed worker");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let taken_over = takeovers(survivors).await;

    // Every pushed event is delivered exactly once.
    let deadline = Instant::now() + Duration::from_secs(600);
    let seen = loop {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for object in list_objects(&s3, BUCKET).await {
            for id in object.event_ids() {
                *seen.entry(id).or_default() += 1;
            }
        }
        let delivered: usize = seen.values().sum();
        if delivered >= total {
            break seen;
        }
        assert!(Instant::now() < deadline, "{delivered} of {total} events delivered");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let delivered_in = started.elapsed();
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(duplicates.is_empty(), "delivered more than once: {duplicates:?}");
    let missing: Vec<_> =
        records.iter().filter(|(id, _)| !seen.contains_key(id)).take(5).map(|(id, _)| id).collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_eq!(seen.len(), total, "only the pushed events");
    println!(
        "scaleout: {accounts} accounts x {} regions = {} shards, {total} events; pushed in {:.1}s, all \
         delivered exactly once {:.1}s after the first push; one worker killed (pid {killed_pid}) half-way \
         holding {victim_shards} shards, {taken_over} lease takeovers by the others",
        REGIONS.len(),
        accounts * REGIONS.len(),
        pushed_in.as_secs_f64(),
        delivered_in.as_secs_f64(),
    );
    for worker in workers.iter_mut().flatten() {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(worker.0.id() as i32, libc::SIGTERM) };
    }
}
