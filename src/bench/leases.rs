//! `orgtrail bench leases`: shard leases at organization scale (10k accounts × 17 regions = 170,000
//! shards by default) against a real Postgres, through the worker's own lease queries
//! (`pipeline::shards::claim` / `renew`). Prints claim and renew latency percentiles
//! and the takeover time of a worker that stops renewing (as after kill -9).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::dev::postgres::Durability;
use crate::pipeline::shards;

#[derive(Debug, Clone, clap::Args)]
pub struct LeaseBenchArgs {
    /// Shards in the simulation (accounts × 17 regions, rounded up to whole accounts).
    #[arg(long, default_value_t = 170_000)]
    pub shards: i64,
    /// Workers claiming and renewing at once.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Shards one claim takes at most (the worker's `claim_limit`).
    #[arg(long, default_value_t = 500)]
    pub claim_limit: i64,
    /// Renewal rounds per worker measured.
    #[arg(long, default_value_t = 20)]
    pub renew_rounds: usize,
    /// Lease TTL in milliseconds during the takeover phase (the worker's default is 15 s; the
    /// takeover time is this plus the time to notice and claim).
    #[arg(long, default_value_t = 3_000)]
    pub takeover_ttl_ms: i64,
    /// Use this database instead of a throwaway cluster (its shards tables get the simulated rows).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where the throwaway cluster lives (default: a fresh directory under the temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

const REGIONS: usize = 17;
/// Claims run this often in a worker (`CLAIM_EVERY`); renewals every TTL/3.
const CLAIM_EVERY: Duration = Duration::from_secs(1);

pub async fn leases(args: LeaseBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.workers >= 2, "--workers must be at least 2 (one is killed)");
    anyhow::ensure!(args.shards >= 1 && args.claim_limit >= 1, "--shards and --claim-limit must be positive");
    let base = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("orgtrail-bench-leases-{}", uuid::Uuid::new_v4().simple()))
    });
    // Durable: lease writes pay for WAL flushes as in production.
    let (database_url, cluster) =
        super::bench_database(args.database_url.as_deref(), &base, Durability::Durable).await?;
    let outcome = run(&args, &database_url).await;
    if let Some(mut pg) = cluster {
        pg.stop();
        let _ = std::fs::remove_dir_all(&base);
    }
    outcome
}

async fn run(args: &LeaseBenchArgs, database_url: &str) -> anyhow::Result<()> {
    let pool = crate::store::connect(database_url, (args.workers as u32 + 4).max(8)).await?;
    crate::store::migrate(&pool).await?;
    let accounts = (args.shards + REGIONS as i64 - 1) / REGIONS as i64;
    let started = Instant::now();
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM shards").fetch_one(&pool).await?;
    if existing < args.shards {
        sqlx::query(
            "INSERT INTO shards (account_id, region, source)
             SELECT (100000000000 + a)::text, 'region-' || r, 'push'
             FROM generate_series(1, $1) a, generate_series(1, $2) r
             ON CONFLICT DO NOTHING",
        )
        .bind(accounts)
        .bind(REGIONS as i32)
        .execute(&pool)
        .await?;
        sqlx::query("INSERT INTO shard_leases (shard_id) SELECT id FROM shards ON CONFLICT DO NOTHING")
            .execute(&pool)
            .await?;
    }
    sqlx::query("UPDATE shard_leases SET owner = NULL").execute(&pool).await?;
    sqlx::query("DELETE FROM workers").execute(&pool).await?;
    sqlx::query("VACUUM ANALYZE shard_leases").execute(&pool).await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM shard_leases").fetch_one(&pool).await?;
    println!(
        "leases: {total} shards ({accounts} accounts x {REGIONS} regions), {} workers, claim limit {}; set up in {:.1}s",
        args.workers,
        args.claim_limit,
        started.elapsed().as_secs_f64()
    );

    // Phase 1: every worker claims its fair share (a balanced fleet), `claim_limit` at a time.
    let ttl_ms = 600_000;
    let share = (total + args.workers as i64 - 1) / args.workers as i64;
    let owners: Vec<String> = (0..args.workers).map(|i| format!("bench-worker-{i}")).collect();
    let started = Instant::now();
    let claims = futures::future::try_join_all(owners.iter().map(|owner| {
        let pool = pool.clone();
        let limit = args.claim_limit;
        async move {
            let mut latencies = Vec::new();
            let mut held = 0;
            shards::renew(&mut *pool.acquire().await?, owner, ttl_ms).await?;
            while held < share {
                let at = Instant::now();
                let claimed = shards::claim(&pool, owner, limit.min(share - held)).await?;
                latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                if claimed.is_empty() {
                    break;
                }
                held += claimed.len() as i64;
            }
            Ok::<_, anyhow::Error>(latencies)
        }
    }))
    .await?;
    let all_claimed = started.elapsed();
    let mut claim_ms: Vec<f64> = claims.into_iter().flatten().collect();
    report("claim", &mut claim_ms);
    println!("  all {total} shards claimed in {:.2}s", all_claimed.as_secs_f64());

    // Phase 2: renewals of everything held, every worker at once (one heartbeat row each).
    let renewals = futures::future::try_join_all(owners.iter().map(|owner| {
        let pool = pool.clone();
        let rounds = args.renew_rounds;
        async move {
            let mut latencies = Vec::new();
            for _ in 0..rounds {
                let at = Instant::now();
                shards::renew(&mut *pool.acquire().await?, owner, ttl_ms).await?;
                latencies.push(at.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(latencies)
        }
    }))
    .await?;
    let mut renew_ms: Vec<f64> = renewals.into_iter().flatten().collect();
    report("renew", &mut renew_ms);
    println!("  ({} shards per renewal on average)", total / args.workers as i64);

    // Phase 3: the fleet runs the worker's lease loop with a short TTL; worker 0 stops renewing
    // (kill -9). Takeover time: from its last renewal until no shard is owned by it any more.
    let ttl = args.takeover_ttl_ms;
    // The one that dies renews last, so its last renewal is the instant measured from.
    for owner in owners.iter().rev() {
        shards::renew(&mut *pool.acquire().await?, owner, ttl).await?;
    }
    let dead = &owners[0];
    let dead_shards: i64 = sqlx::query_scalar("SELECT count(*) FROM shard_leases WHERE owner = $1")
        .bind(dead)
        .fetch_one(&pool)
        .await?;
    let last_renewal = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let survivors: Vec<_> = owners[1..]
        .iter()
        .map(|owner| {
            tokio::spawn(lease_loop(pool.clone(), owner.clone(), ttl, args.claim_limit, done.clone()))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_millis(ttl as u64) * 4 + Duration::from_secs(120);
    let taken_over = loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM shard_leases WHERE owner = $1")
            .bind(dead)
            .fetch_one(&pool)
            .await?;
        if left == 0 {
            break last_renewal.elapsed();
        }
        anyhow::ensure!(Instant::now() < deadline, "{left} shards still held by the dead worker");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    done.store(true, Ordering::Relaxed);
    for survivor in survivors {
        survivor.await??;
    }
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM shard_leases WHERE owner IS NULL
             OR owner IN (SELECT owner FROM workers WHERE expires_at < now())",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "takeover: {dead_shards} shards of a stopped worker taken over in {:.2}s after its last renewal \
         (TTL {:.1}s, so {:.2}s to notice and claim); {orphans} shards left unowned",
        taken_over.as_secs_f64(),
        ttl as f64 / 1000.0,
        taken_over.as_secs_f64() - ttl as f64 / 1000.0
    );
    Ok(())
}

/// A worker's lease loop: renew every TTL/3, claim every second.
async fn lease_loop(
    pool: PgPool,
    owner: String,
    ttl_ms: i64,
    limit: i64,
    done: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let renew_every = Duration::from_millis(ttl_ms as u64 / 3);
    let mut last_renewal = Instant::now();
    let mut last_claim = Instant::now() - CLAIM_EVERY;
    while !done.load(Ordering::Relaxed) {
        if last_renewal.elapsed() >= renew_every {
            shards::renew(&mut *pool.acquire().await?, &owner, ttl_ms).await?;
            last_renewal = Instant::now();
        }
        if last_claim.elapsed() >= CLAIM_EVERY {
            last_claim = Instant::now();
            // As the worker: one claim per round; a full one means more wait for the next round.
            shards::claim(&pool, &owner, limit).await?;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn report(what: &str, latencies: &mut [f64]) {
    latencies.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if latencies.is_empty() {
            f64::NAN
        } else {
            latencies[(((latencies.len() - 1) as f64) * p).round() as usize]
        }
    };
    println!(
        "{what}: {} calls, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
}
