//! `orgtrail worker` with `metrics_listen`: serves the Prometheus text format on `/metrics`, 404
//! elsewhere, and stops with the worker. What the collector metrics count is checked in
//! tests/collectors.rs against a running collector.

mod common;

use std::process::{Command, Stdio};

use common::*;
use sqlx::PgPool;

#[sqlx::test]
async fn worker_serves_metrics_while_it_runs(pool: PgPool) {
    let port = orgtrail::dev::postgres::free_port().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_orgtrail"))
        .arg("worker")
        .env("DATABASE_URL", database_url(&pool))
        .env("ORGTRAIL_METRICS_LISTEN", format!("127.0.0.1:{port}"))
        // Nothing is delivered or collected here; the store only has to be configured.
        .env("ORGTRAIL_S3_ENDPOINT", "http://127.0.0.1:9")
        .env("ORGTRAIL_S3_ACCESS_KEY_ID", "test")
        .env("ORGTRAIL_S3_SECRET_ACCESS_KEY", "test")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));

    let (status, body) = http_get(address, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    // No collector target yet: no collector series; every line is exposition format.
    assert!(!body.contains("orgtrail_collector_events_total{"), "{body}");
    assert!(
        body.lines().all(|line| line.is_empty()
            || line.starts_with('#')
            || line.starts_with("orgtrail_")
                && line.rsplit_once(' ').is_some_and(|(_, v)| v.parse::<f64>().is_ok())),
        "{body}"
    );
    assert!(body.contains("# TYPE orgtrail_ingest_events_received_total counter"), "{body}");
    assert_eq!(http_get(address, "/").await.0, 404);
    assert_eq!(http_get(address, "/metric").await.0, 404);

    stop_cleanly(child);
    assert!(tokio::net::TcpStream::connect(address).await.is_err(), "metrics stop with the worker");
}

#[sqlx::test]
async fn worker_refuses_a_bad_metrics_address(pool: PgPool) {
    let output = Command::new(env!("CARGO_BIN_EXE_orgtrail"))
        .arg("worker")
        .env("DATABASE_URL", database_url(&pool))
        .env("ORGTRAIL_METRICS_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.to_lowercase().contains("metrics_listen"), "{stderr}");
}
