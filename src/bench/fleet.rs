//! The fleet figures of `orgtrail bench pipeline` with several workers, taken once every event is
//! delivered: each worker's CPU while no events arrive, the lease takeovers counted while all were
//! alive, and how long the shards of a `kill -9`ed worker take to be owned again.

use std::io::{Read, Write};
use std::process::Child;
use std::time::{Duration, Instant};

use sqlx::PgPool;

/// How long after the last delivery the idle CPU starts being measured.
const IDLE_SETTLE: Duration = Duration::from_secs(5);

/// What one worker process is, for the fleet figures.
pub(crate) struct FleetWorker<'a> {
    pub child: &'a mut Child,
    pub metrics_port: u16,
}

/// The value of counter `name` on the Prometheus endpoint at `port` (0 when absent).
fn scrape_counter(port: u16, name: &str) -> anyhow::Result<f64> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text
        .lines()
        .filter(|line| line.split_whitespace().next() == Some(name))
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        .sum())
}

/// Prints the fleet figures; kills the worker holding most shards at the end.
pub(crate) async fn report(
    pool: &PgPool,
    mut workers: Vec<FleetWorker<'_>>,
    idle: Duration,
) -> anyhow::Result<()> {
    let mut takeovers = Vec::new();
    for worker in &workers {
        takeovers.push(scrape_counter(worker.metrics_port, "orgtrail_lease_takeovers_total")?);
    }
    // The rounds that finish the last files (buffers emptied, staging released) are delivery,
    // not idling: measured from a little after the last commit.
    tokio::time::sleep(IDLE_SETTLE).await;
    let before: Vec<f64> = workers.iter().map(|w| super::cpu_seconds(w.child.id())).collect();
    tokio::time::sleep(idle).await;
    let idle_cpu: Vec<String> = workers
        .iter()
        .zip(&before)
        .map(|(w, cpu)| {
            format!("{:.1}%", (super::cpu_seconds(w.child.id()) - cpu) / idle.as_secs_f64() * 100.0)
        })
        .collect();
    println!(
        "  idle workers           {} of one core each, over {} s without events (from {} s after the last delivery)",
        idle_cpu.join(", "),
        idle.as_secs(),
        IDLE_SETTLE.as_secs()
    );
    println!(
        "  lease takeovers        {} (per worker: {}), all workers alive",
        takeovers.iter().sum::<f64>(),
        takeovers.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
    );

    // Each worker's id holds its pid: `<host>-<pid>-<uuid>`.
    let mut held = Vec::new();
    for worker in &workers {
        let pattern = format!("%-{}-%", worker.child.id());
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM shard_leases WHERE owner LIKE $1")
            .bind(&pattern)
            .fetch_one(pool)
            .await?;
        held.push(count);
    }
    println!(
        "  shards per worker      {}",
        held.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", ")
    );
    let Some((victim, &shards)) = held.iter().enumerate().max_by_key(|(_, h)| **h) else { return Ok(()) };
    let pattern = format!("%-{}-%", workers[victim].child.id());
    workers[victim].child.kill()?;
    let _ = workers[victim].child.wait();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(300);
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM shard_leases WHERE owner LIKE $1")
            .bind(&pattern)
            .fetch_one(pool)
            .await?;
        if left == 0 {
            println!(
                "  kill -9 of a worker    its {shards} shards all owned by the others {:.1} s later",
                killed.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            println!("  kill -9 of a worker    {left} of its {shards} shards still not owned after 300 s");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
