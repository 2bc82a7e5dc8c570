//! `orgtrail bench rules`: (a) rule evaluation cost per event with both built-in packs on, over the
//! shared real records; (b) alert latency ingest → webhook (p50/p99) through the real stack
//! (embedded Postgres, gRPC ingest, a worker with the rules tap and the dispatcher) to a local
//! HTTPS receiver. Prints figures; nothing is asserted.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::webhook_receiver::WebhookReceiver;
use crate::dev::postgres::{Durability, EmbeddedPostgres};
use crate::features::alerts::rules::{Event, LoadedRule, Target, packs};
use crate::proto::v1 as pb;

#[derive(Debug, Clone, clap::Args)]
pub struct RulesBenchArgs {
    /// Passes over the shared records for the evaluation cost.
    #[arg(long, default_value_t = 50)]
    pub iterations: usize,
    /// Alerts to time ingest → webhook (0: skip the latency part).
    #[arg(long, default_value_t = 300)]
    pub alerts: usize,
    /// Pause between two timed events, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub gap_ms: u64,
    /// The shared records (JSON lines, gzipped).
    #[arg(long, default_value = "../shared/data/cloudtrail/records.jsonl.gz")]
    pub records: PathBuf,
    /// Where the benchmark keeps its data (default: a fresh temporary directory under /var/tmp).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

fn load_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    Ok(reader.lines().collect::<Result<_, _>>()?)
}

fn both_packs() -> Vec<LoadedRule> {
    let target = Arc::new(Target::Log);
    packs::PACKS
        .iter()
        .flat_map(|pack| crate::features::alerts::rules::pack_rules(pack, target.clone()))
        .collect()
}

pub async fn run(args: RulesBenchArgs) -> anyhow::Result<()> {
    evaluation_cost(&args)?;
    if args.alerts > 0 {
        alert_latency(&args).await?;
    }
    Ok(())
}

fn evaluation_cost(args: &RulesBenchArgs) -> anyhow::Result<()> {
    let lines = load_lines(&args.records)?;
    let rules = both_packs();
    let events: Vec<Event> = lines.iter().map(|l| Event::parse(l)).collect::<Result<_, _>>()?;
    let iterations = args.iterations.max(1);
    let total = (lines.len() * iterations) as f64;

    let mut matches = 0usize;
    let started = Instant::now();
    for _ in 0..iterations {
        for event in &events {
            matches += rules.iter().filter(|r| r.matches(std::hint::black_box(event))).count();
        }
    }
    let match_only = started.elapsed();

    let started = Instant::now();
    for _ in 0..iterations {
        for line in &lines {
            let event = Event::parse(std::hint::black_box(line))?;
            std::hint::black_box(rules.iter().filter(|r| r.matches(&event)).count());
        }
    }
    let with_parse = started.elapsed();
    println!(
        "rule evaluation, both packs on ({} rules), {} shared records x {iterations}:",
        rules.len(),
        lines.len()
    );
    println!("  match only:        {:>8.0} ns/event", match_only.as_nanos() as f64 / total);
    println!(
        "  parse + match:     {:>8.0} ns/event (what the rules tap does per event)",
        with_parse.as_nanos() as f64 / total
    );
    println!("  matches per pass:  {}", matches / iterations);
    Ok(())
}

const ACCOUNT: &str = "111111111111";

fn stop_logging(event_id: &str) -> String {
    serde_json::json!({
        "eventVersion": "1.11",
        "userIdentity": {"type": "AssumedRole", "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/Admin/alice"), "accountId": ACCOUNT},
        "eventTime": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": "cloudtrail.amazonaws.com",
        "eventName": "StopLogging",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "192.0.2.10",
        "userAgent": "aws-cli/2.17.0",
        "requestParameters": {"name": "org-trail"},
        "responseElements": null,
        "requestID": format!("req-{event_id}"),
        "eventID": event_id,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management"
    })
    .to_string()
}

/// A private CA and a server certificate it signs for localhost and 127.0.0.1, made with openssl
/// in `dir`; returns (CA, certificate, key) PEM paths. The tests use it too.
pub fn make_certificates(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let script = r#"
        set -e
        openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=orgtrail-test-ca -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout key.pem -out server.csr
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out cert.pem
    "#;
    let status = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("cannot run openssl to make the receiver's certificate")?;
    anyhow::ensure!(status.success(), "openssl failed to make the receiver's certificate");
    Ok((dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem")))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn alert_latency(args: &RulesBenchArgs) -> anyhow::Result<()> {
    let base = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("orgtrail-bench-rules-{}", std::process::id())),
    };
    std::fs::create_dir_all(&base)?;
    // Postgres runs as its own user when we are root; it needs to reach its directory.
    let _ = std::process::Command::new("chmod").arg("755").arg(&base).status();
    let (ca, cert, key) = make_certificates(&base)?;
    let receiver = WebhookReceiver::start(&cert, &key).await?;

    let pg_dir = base.join("postgres");
    let pg = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(&pg_dir, 0, "bench", Durability::Durable)
    })
    .await??;
    crate::dev::postgres::ensure_database(&pg.url("postgres"), "orgtrail").await?;
    let pool = crate::store::connect(&pg.url("orgtrail"), 8).await?;
    crate::store::migrate(&pool).await?;
    crate::node::maintenance::prepare(&pool, Default::default()).await?;

    let master_key =
        Arc::new(crate::secrets::MasterKey::from_base64(&crate::secrets::MasterKey::generate_base64()?)?);
    let listener = crate::control::api::bind("127.0.0.1:0".parse()?).await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopped_future = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let ctx = crate::control::api::Ctx {
        pool: pool.clone(),
        default_region: crate::model::Region::parse("region", "us-east-1")?,
        master_key: Some(master_key.clone()),
        staging: Arc::new(crate::pipeline::staging::PgStaging::new(pool.clone())),
        aws: None,
        aggregator_principal_arn: None,
    };
    let (_stop_servers, servers_stop) = crate::node::Stop::new();
    for (_, part) in crate::node::control_plane(ctx, listener, None, None, &servers_stop) {
        tokio::spawn(part);
    }
    let mut clients = super::admin_clients(&pool, Some(&master_key), endpoint).await?;
    clients
        .organizations
        .create_organization(pb::CreateOrganizationRequest {
            id: "o-benchrules12".into(),
            management_account_id: ACCOUNT.into(),
            regions: vec!["us-east-1".into()],
        })
        .await?;
    clients
        .rules
        .enable_rule_pack(pb::EnableRulePackRequest {
            name: packs::TAMPERING.name.into(),
            target: Some(pb::AlertTarget {
                r#type: "webhook".into(),
                url: receiver.url("/alerts"),
                secret: "bench-secret-0123456789".into(),
                secret_set: false,
            }),
        })
        .await?;
    clients
        .rules
        .enable_rule_pack(pb::EnableRulePackRequest { name: packs::CIS.name.into(), target: None })
        .await?;

    // The worker with its production defaults, trusting the receiver's CA.
    let mut settings =
        crate::node::WorkerSettings { master_key: Some(master_key.clone()), ..Default::default() };
    settings.alerts.ca_file = Some(ca);
    let s3 = crate::integrations::s3::client(
        Some("http://127.0.0.1:9"),
        "us-east-1",
        Some(("unused", "unused")),
        true,
    )
    .await;
    let worker = crate::node::WorkerNode::new(
        pool.clone(),
        Arc::new(crate::pipeline::staging::PgStaging::new(pool.clone())),
        crate::integrations::s3::S3Sink::new(s3),
        settings,
    );
    let worker = tokio::spawn(worker.run(stopped_future(stopped.clone())));

    let put = |clients: &mut crate::client::Clients, record: String| {
        let mut ingest = clients.ingest.clone();
        async move {
            ingest
                .put_audit_events(pb::PutAuditEventsRequest {
                    audit_events: vec![pb::AuditEvent {
                        id: "e".into(),
                        event_data: record,
                        event_data_checksum: String::new(),
                    }],
                    channel_id: String::new(),
                })
                .await
        }
    };
    // Warm up: the worker claims the shard and the rules are loaded before timing starts.
    put(&mut clients, stop_logging("warmup")).await?;
    let warm = receiver.wait_until(Duration::from_secs(60), |r| !r.is_empty()).await;
    anyhow::ensure!(!warm.is_empty(), "no alert reached the receiver within 60 s");

    let mut sent: HashMap<String, Instant> = HashMap::new();
    for i in 0..args.alerts {
        let id = format!("bench-{i}");
        let record = stop_logging(&id);
        sent.insert(id, Instant::now());
        put(&mut clients, record).await?;
        tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
    }
    let expected = args.alerts + warm.len();
    let received = receiver.wait_until(Duration::from_secs(120), |r| r.len() >= expected).await;
    let mut latencies: Vec<Duration> = received
        .iter()
        .filter_map(|r| {
            let body: serde_json::Value = serde_json::from_str(&r.body).ok()?;
            let id = body["record"]["eventID"].as_str()?;
            sent.get(id).map(|at| r.at.saturating_duration_since(*at))
        })
        .collect();
    latencies.sort();
    let _ = stop.send(true);
    let _ = worker.await;
    println!(
        "alert latency ingest → webhook (tampering pack, HTTPS receiver; worker poll 200 ms, dispatcher poll 200 ms):"
    );
    println!("  alerts timed:  {} of {}", latencies.len(), args.alerts);
    println!("  p50:           {:>6} ms", percentile(&latencies, 50.0).as_millis());
    println!("  p99:           {:>6} ms (target ≤ 2000 ms)", percentile(&latencies, 99.0).as_millis());
    println!("  max:           {:>6} ms", latencies.last().copied().unwrap_or_default().as_millis());
    drop(pg);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&base);
    }
    Ok(())
}
