//! Taps see every staged event of a shard once, beside trail delivery; staged events wait for them.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use orgtrail::pipeline::taps::{Tap, TapContext, TapError, TapEvent};
use sqlx::PgPool;

/// Records each event it gets in `tap_seen`, in the tap's transaction; fails its first `failures`
/// calls after writing (so a failed call must leave nothing behind).
struct Recorder {
    failures: AtomicUsize,
}

#[async_trait::async_trait]
impl Tap for Recorder {
    fn name(&self) -> &'static str {
        "test_recorder"
    }

    async fn consume(
        &self,
        key: &str,
        context: &TapContext<'_>,
        events: &[TapEvent<'_>],
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), TapError> {
        assert_eq!(key, "test_recorder");
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "in sequence order");
        for event in events {
            sqlx::query("INSERT INTO tap_seen (shard_id, seq, event_id) VALUES ($1, $2, $3)")
                .bind(context.shard.id)
                .bind(event.seq)
                .bind(event.view.event_id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(TapError::External("induced failure".into()));
        }
        Ok(())
    }
}

async fn seen(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT event_id FROM tap_seen ORDER BY event_id").fetch_all(pool).await.unwrap()
}

async fn staged(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM staged_chunks").fetch_one(pool).await.unwrap()
}

async fn wait_until<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The control plane with an organization, an S3 store and a `tap_seen` table; the worker is the
/// test's own.
struct Fixture {
    _api: TestApi,
    admin: orgtrail::client::Clients,
    _s3: orgtrail::dev::s3::S3Server,
    _dir: tempfile::TempDir,
    s3_client: aws_sdk_s3::Client,
}

async fn fixture(pool: &PgPool) -> Fixture {
    sqlx::query("CREATE TABLE tap_seen (shard_id BIGINT, seq BIGINT, event_id TEXT)")
        .execute(pool)
        .await
        .unwrap();
    let api = start(pool.clone()).await;
    let mut admin = api.admin().await;
    org_with_members(&mut admin).await;
    let dir = tempfile::tempdir().unwrap();
    let s3 = orgtrail::dev::s3::S3Server::start_with_keys(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        &[(S3_KEY, S3_SECRET)],
    )
    .await
    .unwrap();
    let s3_client = orgtrail::dev::s3_client(&s3.endpoint(), S3_KEY, S3_SECRET, "us-east-1").await;
    Fixture { _api: api, admin, _s3: s3, _dir: dir, s3_client }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_tap_sees_each_event_once_even_after_failures_and_staging_waits_for_it(pool: PgPool) {
    let Fixture { _api, mut admin, _s3, _dir, s3_client } = fixture(&pool).await;
    s3_client.create_bucket().bucket("central-bucket").send().await.unwrap();
    // One account under an organization trail, the other under no trail at all: the tap sees both.
    let mut trail = account_trail("a-trail", MEMBER_A);
    trail.s3_bucket_name = "central-bucket".into();
    logging_trail(&mut admin, trail).await;
    let records: Vec<String> = (0..30)
        .map(|i| {
            let account = if i % 2 == 0 { MEMBER_A } else { MEMBER_B };
            event(account, "us-east-1", "ec2.amazonaws.com", "RunInstances", &format!("ev-{i:02}"))
        })
        .collect();
    put(&mut admin, &records).await;

    let tap = Arc::new(Recorder { failures: AtomicUsize::new(2) });
    let run = |tap: Arc<Recorder>| {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let worker = test_worker(pool.clone(), &s3_client).with_tap(tap);
        let handle = tokio::spawn(worker.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        (stop, handle)
    };
    let (stop, handle) = run(tap.clone());
    wait_until("the tap", || async { seen(&pool).await.len() >= 30 }).await;
    wait_until("staging to be released", || async { staged(&pool).await == 0 }).await;
    assert_eq!(tap.failures.load(Ordering::SeqCst), 0, "both induced failures happened");
    let expected: Vec<String> = (0..30).map(|i| format!("ev-{i:02}")).collect();
    assert_eq!(seen(&pool).await, expected, "each event exactly once: failed calls left nothing");
    stop.send(true).unwrap();
    handle.await.unwrap().unwrap();

    // A new worker (cursors from Postgres) sees only what came after.
    let (stop, handle) = run(Arc::new(Recorder { failures: AtomicUsize::new(0) }));
    put(&mut admin, &[event(MEMBER_B, "us-east-1", "ec2.amazonaws.com", "RunInstances", "ev-30")]).await;
    wait_until("the new event", || async { seen(&pool).await.len() >= 31 }).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut expected = expected;
    expected.push("ev-30".into());
    assert_eq!(seen(&pool).await, expected);
    stop.send(true).unwrap();
    handle.await.unwrap().unwrap();
}

/// Fails forever: the events it has not consumed stay staged, and trails still deliver.
struct Stuck;

#[async_trait::async_trait]
impl Tap for Stuck {
    fn name(&self) -> &'static str {
        "test_stuck"
    }

    async fn consume(
        &self,
        _key: &str,
        _context: &TapContext<'_>,
        _events: &[TapEvent<'_>],
        _tx: &mut sqlx::PgConnection,
    ) -> Result<(), TapError> {
        Err(TapError::External("destination down".into()))
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_failing_tap_holds_staged_events_but_never_delivery(pool: PgPool) {
    let Fixture { _api, mut admin, _s3, _dir, s3_client } = fixture(&pool).await;
    s3_client.create_bucket().bucket("central-bucket").send().await.unwrap();
    let mut trail = org_trail("org-trail");
    trail.s3_bucket_name = "central-bucket".into();
    logging_trail(&mut admin, trail).await;
    let mut settings = test_worker_settings();
    settings.master_key = None;
    let worker = worker_with(pool.clone(), &s3_client, settings).with_tap(Arc::new(Stuck));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(worker.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    let records: Vec<String> = (0..5)
        .map(|i| event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", &format!("st-{i}")))
        .collect();
    put(&mut admin, &records).await;
    let objects = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let objects = list_objects(&s3_client, "central-bucket").await;
            if objects.iter().map(|o| o.records.len()).sum::<usize>() >= 5 {
                break objects;
            }
            assert!(std::time::Instant::now() < deadline, "delivery blocked by a failing tap");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    assert_eq!(objects.iter().map(|o| o.records.len()).sum::<usize>(), 5);
    assert!(staged(&pool).await > 0, "events the tap has not consumed stay staged");
    stop.send(true).unwrap();
    handle.await.unwrap().unwrap();
}

#[sqlx::test(migrations = "./migrations")]
async fn a_stuck_tap_never_stalls_delivery_even_past_a_full_buffer(pool: PgPool) {
    let Fixture { _api, mut admin, _s3, _dir, s3_client } = fixture(&pool).await;
    s3_client.create_bucket().bucket("central-bucket").send().await.unwrap();
    let mut trail = org_trail("org-trail");
    trail.s3_bucket_name = "central-bucket".into();
    logging_trail(&mut admin, trail).await;
    let mut settings = test_worker_settings();
    settings.master_key = None;
    // The smallest buffer a shard may have: more events than that wait behind the stuck tap.
    settings.pipeline.read_limit = 2_000;
    let worker = worker_with(pool.clone(), &s3_client, settings).with_tap(Arc::new(Stuck));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(worker.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    let total = 3_000;
    for call in 0..total / 100 {
        let records: Vec<String> = (0..100)
            .map(|i| {
                let id = format!("full-{:05}", call * 100 + i);
                event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", &id)
            })
            .collect();
        put(&mut admin, &records).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let delivered: usize =
            list_objects(&s3_client, "central-bucket").await.iter().map(|o| o.records.len()).sum();
        if delivered >= total {
            assert_eq!(delivered, total);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{delivered} of {total} delivered behind a stuck tap");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    stop.send(true).unwrap();
    handle.await.unwrap().unwrap();
}

/// Records each event, and makes Postgres refuse the one named `poison` (a cast error, SQLSTATE
/// class 22): the data itself, not the tap or the database, is at fault.
struct Picky;

#[async_trait::async_trait]
impl Tap for Picky {
    fn name(&self) -> &'static str {
        "test_picky"
    }

    async fn consume(
        &self,
        _key: &str,
        context: &TapContext<'_>,
        events: &[TapEvent<'_>],
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), TapError> {
        for event in events {
            sqlx::query("INSERT INTO tap_seen (shard_id, seq, event_id) VALUES ($1, $2, $3)")
                .bind(context.shard.id)
                .bind(event.seq)
                .bind(event.view.event_id.as_str())
                .execute(&mut *tx)
                .await?;
            let number = if event.view.event_id == "poison" { "not a number" } else { "1" };
            sqlx::query("SELECT $1::text::int").bind(number).execute(&mut *tx).await?;
        }
        Ok(())
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn an_event_the_taps_store_refuses_is_left_out_and_the_tap_goes_on(pool: PgPool) {
    let Fixture { _api, mut admin, _s3, _dir, s3_client } = fixture(&pool).await;
    let refused_before = orgtrail::metrics::pipeline().tap_refused.with_label_values(&["test_picky"]).get();
    let worker = test_worker(pool.clone(), &s3_client).with_tap(Arc::new(Picky));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(worker.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    let ids = ["a", "b", "poison", "c", "d", "e", "f"];
    let records: Vec<String> =
        ids.iter().map(|id| event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", id)).collect();
    put(&mut admin, &records).await;
    wait_until("the tap", || async { seen(&pool).await.len() >= 6 }).await;
    put(&mut admin, &[event(MEMBER_A, "us-east-1", "ec2.amazonaws.com", "RunInstances", "later")]).await;
    wait_until("the later event", || async { seen(&pool).await.len() >= 7 }).await;
    assert_eq!(
        seen(&pool).await,
        vec!["a", "b", "c", "d", "e", "f", "later"],
        "all but the refused one, once"
    );
    let refused = orgtrail::metrics::pipeline().tap_refused.with_label_values(&["test_picky"]).get();
    assert_eq!(refused - refused_before, 1);
    stop.send(true).unwrap();
    handle.await.unwrap().unwrap();
}
