//! `orgtrail dev` serves the pipeline metrics on its own port (named in dev.json): a scrape before
//! and after real traffic (the shared CloudTrail files through `orgtrail events put`) sees the
//! ingest, delivery and latency counters move and the per-shard lag gauge; every metric served is
//! documented in the README. `events put --progress` reports on stderr.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use orgtrail::dev::DevInfo;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/cloudtrail/sources/invictus-ir_aws_dataset/CloudTrail"
);

fn cli(dir: &Path, args: &[&str]) -> Output {
    common::orgtrail_cli(dir, args)
}

/// The sum of every sample of `name` (any labels) whose labels contain `labels`.
fn sample(scrape: &str, name: &str, labels: &str) -> Option<f64> {
    let mut found = None;
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (metric, series_labels) = series.split_once('{').unwrap_or((series, ""));
        if metric == name && series_labels.contains(labels) {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap();
        }
    }
    found
}

fn scrape(runtime: &tokio::runtime::Runtime, info: &DevInfo) -> String {
    let address = info.metrics_endpoint.trim_start_matches("http://").trim_end_matches("/metrics");
    let (status, body) = runtime.block_on(common::http_get(address.parse().unwrap(), "/metrics"));
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn dev_metrics_move_with_traffic_and_are_documented() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    // The embedded Postgres runs as the postgres system user when we are root: let it in.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dev = common::DevProcess::start(dir, &["--demo"]);
    let info = dev.info.clone();
    assert!(info.metrics_endpoint.starts_with("http://127.0.0.1:"), "{}", info.metrics_endpoint);
    assert!(info.metrics_endpoint.ends_with("/metrics"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The demo trail (5-second delivery, organization-wide) exists once the demo has said so.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&cli(dir, &["trails", "list"]).stdout).contains("demo-org-trail") {
        assert!(Instant::now() < deadline, "the demo trail did not appear");
        std::thread::sleep(Duration::from_millis(200));
    }

    let before = scrape(&runtime, &info);
    let count = |scrape: &str, name: &str| sample(scrape, name, "").unwrap_or(0.0);

    let put = cli(dir, &["events", "put", "--file", DATA, "--register-missing-accounts", "--progress"]);
    let stderr = String::from_utf8_lossy(&put.stderr);
    assert!(put.status.success(), "{stderr}");
    assert!(stderr.contains("read 37/37 files, 1871 events"), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("sent ") && l.contains(" accepted, ")), "{stderr}");
    // An event for an account nobody registered is refused, with its reason as the label.
    let stray = dir.join("stray.json");
    std::fs::write(
        &stray,
        common::event("999999999999", "us-east-1", "s3.amazonaws.com", "GetObject", "stray-event-1"),
    )
    .unwrap();
    cli(dir, &["events", "put", "--file", stray.to_str().unwrap()]);

    let after = scrape(&runtime, &info);
    let received = count(&after, "orgtrail_ingest_events_received_total")
        - count(&before, "orgtrail_ingest_events_received_total");
    assert!(received >= 1872.0, "received moved by {received}");
    let staged = count(&after, "orgtrail_ingest_events_accepted_total")
        - count(&before, "orgtrail_ingest_events_accepted_total");
    let accepted = staged + count(&after, "orgtrail_ingest_events_duplicate_total")
        - count(&before, "orgtrail_ingest_events_duplicate_total");
    assert!(accepted >= 1871.0, "accepted + duplicates moved by {accepted}");
    assert!(
        sample(&after, "orgtrail_ingest_events_rejected_total", "reason=\"UnregisteredAccount\"")
            .is_some_and(|n| n >= 1.0),
        "{after}"
    );

    // Delivery is asynchronous: wait until the worker has delivered what was put.
    let moved = |name: &str, scrape: &str| count(scrape, name) > count(&before, name);
    let deadline = Instant::now() + Duration::from_secs(180);
    let delivered = loop {
        let now = scrape(&runtime, &info);
        let events = count(&now, "orgtrail_delivered_events_total")
            - count(&before, "orgtrail_delivered_events_total");
        if events >= staged {
            break now;
        }
        assert!(Instant::now() < deadline, "only {events} events delivered:\n{now}");
        std::thread::sleep(Duration::from_millis(500));
    };
    for name in [
        "orgtrail_delivered_files_total",
        "orgtrail_delivered_bytes_total",
        "orgtrail_delivery_latency_seconds_count",
        "orgtrail_delivery_latency_seconds_sum",
    ] {
        assert!(moved(name, &delivered), "{name} did not move:\n{delivered}");
    }
    assert!(sample(&delivered, "orgtrail_delivered_files_total", "kind=\"log\"").is_some());
    assert!(
        count(&delivered, "orgtrail_delivery_latency_seconds_count")
            - count(&before, "orgtrail_delivery_latency_seconds_count")
            >= staged,
        "one latency sample per delivered event"
    );
    assert!(sample(&delivered, "orgtrail_shard_lag_seconds", "").is_some(), "lag gauge:\n{delivered}");
    assert!(count(&delivered, "orgtrail_shards_held") >= 1.0);
    for always in ["orgtrail_lease_takeovers_total", "orgtrail_digest_writes_total"] {
        assert!(delivered.contains(&format!("# TYPE {always} ")), "{always} missing:\n{delivered}");
    }

    // `orgtrail status` sums it up from the API and dev.json's metrics endpoint.
    let status = cli(dir, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(text.contains(&format!("organization      {}", info.organization_id)), "{text}");
    assert!(
        text.contains("ACTIVE") && text.contains("demo-org-trail") && text.contains("oldest lag"),
        "{text}"
    );
    let json = cli(dir, &["--output", "json", "status"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["organization"]["id"], info.organization_id.as_str(), "{json}");
    assert!(json["accounts"]["ACTIVE"].as_u64().is_some_and(|n| n >= 4), "{json}");
    let trail = json["trails"].as_array().unwrap().iter().find(|t| t["name"] == "demo-org-trail").unwrap();
    assert_eq!(trail["is_logging"], true, "{json}");
    assert!(trail["latest_delivery_time"].is_string(), "{json}");
    assert!(json["pipeline"]["shards_held"].as_u64().is_some_and(|n| n >= 1), "{json}");
    assert!(json["pipeline"]["events_delivered"].as_u64().is_some_and(|n| n as f64 >= staged), "{json}");
    let unreachable = cli(dir, &["status", "--metrics-endpoint", "ftp://x"]);
    assert!(!unreachable.status.success());
    assert_eq!(String::from_utf8_lossy(&unreachable.stderr).lines().count(), 1);

    // Every metric served has a row in the README's table.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for line in delivered.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = line.split(' ').next().unwrap();
        assert!(readme.contains(&format!("| `{name}`")), "README documents no {name}");
    }
}
