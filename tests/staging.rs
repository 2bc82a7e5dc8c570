//! Staging under concurrency, on both backends: calls made durable together (group commit) still
//! stage every event exactly once, each caller gets its own outcomes, sequence numbers stay gapless
//! per shard (Postgres) or increasing (JetStream), and workers hear at commit which shards got news.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use orgtrail::model::shard::{ShardId, Source};
use orgtrail::model::{AccountId, Region};
use orgtrail::pipeline::staging::postgres::{Dirty, STAGED_CHANNEL, parse_dirty};
use orgtrail::pipeline::staging::{Incoming, PgStaging, StageOutcome, Staging};
use sqlx::PgPool;

fn incoming(account: &str, region: &str, event_id: &str) -> Incoming {
    Incoming {
        account_id: AccountId::parse("account", account).unwrap(),
        region: Region::parse("region", region).unwrap(),
        source: Source::Push,
        event_id: event_id.to_owned(),
        record: format!("{{\"eventID\":\"{event_id}\"}}"),
    }
}

const ACCOUNTS: [&str; 3] = ["111111111111", "222222222222", "333333333333"];
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

#[sqlx::test(migrations = "./migrations")]
async fn concurrent_calls_stage_each_event_once_with_gapless_sequences(pool: PgPool) {
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.unwrap();
    listener.listen(STAGED_CHANNEL).await.unwrap();
    let staging: Arc<dyn Staging> = Arc::new(PgStaging::new(pool.clone()));
    let (calls, per_call, distinct) = race(&staging).await;

    // Every shard's events are numbered 1..=n without gaps or overlaps.
    let chunks: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT shard_id, first_seq, last_seq FROM staged_chunks ORDER BY shard_id, first_seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut expected_next = std::collections::HashMap::new();
    let mut staged = 0;
    for (shard, first, last) in &chunks {
        let next = expected_next.entry(*shard).or_insert(1);
        assert_eq!(first, next, "shard {shard}: chunk starts where the previous ended");
        *next = last + 1;
        staged += last - first + 1;
    }
    assert_eq!(staged as usize, distinct);
    assert_eq!(expected_next.len(), 6, "3 accounts x 2 regions");
    let heads: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, next_seq FROM shards ORDER BY id").fetch_all(&pool).await.unwrap();
    for (shard, next_seq) in heads {
        assert_eq!(expected_next.get(&shard), Some(&next_seq));
    }
    // Every event staged is readable, once, in order.
    let mut read = 0;
    for shard in expected_next.keys() {
        let events = staging.read(orgtrail::model::shard::ShardId(*shard), 0, 100_000).await.unwrap();
        assert!(events.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        read += events.len();
    }
    assert_eq!(read, distinct);
    counters_agree(&pool, calls * per_call, distinct).await;
    let shards: HashSet<i64> = expected_next.keys().copied().collect();
    heard_of(&mut listener, &shards).await;
}

/// 64 callers at once, 50 events each; every event is sent by two callers (a retry racing the
/// original), so half of all outcomes must be duplicates, whichever caller wins. Returns the
/// calls, the events per call and the distinct events.
async fn race(staging: &Arc<dyn Staging>) -> (usize, usize, usize) {
    let calls = 64usize;
    let per_call = 50usize;
    let tasks: Vec<_> = (0..calls)
        .map(|c| {
            let staging = staging.clone();
            tokio::spawn(async move {
                let events: Vec<Incoming> = (0..per_call)
                    .map(|i| {
                        let n = (c / 2) * per_call + i;
                        incoming(ACCOUNTS[n % 3], REGIONS[n % 2], &format!("event-{n}"))
                    })
                    .collect();
                staging.stage(events, &[]).await.unwrap()
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        let outcomes = task.await.unwrap();
        assert_eq!(outcomes.len(), per_call, "each caller gets one outcome per event it sent");
        accepted += outcomes.iter().filter(|o| **o == StageOutcome::Accepted).count();
    }
    let distinct = calls / 2 * per_call;
    assert_eq!(accepted, distinct);
    (calls, per_call, distinct)
}

#[sqlx::test(migrations = "./migrations")]
async fn a_call_repeating_an_event_keeps_the_first_copy(pool: PgPool) {
    let staging = PgStaging::new(pool.clone());
    let first = staging
        .stage(
            vec![incoming(ACCOUNTS[0], REGIONS[0], "same"), incoming(ACCOUNTS[0], REGIONS[0], "same")],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(first, vec![StageOutcome::Accepted, StageOutcome::Duplicate]);
    let again = staging.stage(vec![incoming(ACCOUNTS[0], REGIONS[0], "same")], &[]).await.unwrap();
    assert_eq!(again, vec![StageOutcome::Duplicate]);
    // The same eventID in another account is another event.
    let other = staging.stage(vec![incoming(ACCOUNTS[1], REGIONS[0], "same")], &[]).await.unwrap();
    assert_eq!(other, vec![StageOutcome::Accepted]);
    // Refusals alone are counted too.
    let rejected = AccountId::parse("account", ACCOUNTS[2]).unwrap();
    assert!(staging.stage(Vec::new(), &[rejected]).await.unwrap().is_empty());
    let counted: i64 = sqlx::query_scalar("SELECT rejected FROM ingest_counters WHERE account_id = $1")
        .bind(ACCOUNTS[2])
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(counted, 1);
}

/// The ingest counters agree with the outcomes of `sent` events of which `distinct` were new.
async fn counters_agree(pool: &PgPool, sent: usize, distinct: usize) {
    let (accepted_counted, duplicates_counted): (i64, i64) =
        sqlx::query_as("SELECT sum(accepted)::int8, sum(duplicates)::int8 FROM ingest_counters")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(accepted_counted as usize, distinct);
    assert_eq!(duplicates_counted as usize, sent - distinct);
}

/// Workers hear of every shard of `shards` (and of no other).
async fn heard_of(listener: &mut sqlx::postgres::PgListener, shards: &HashSet<i64>) {
    let mut heard = HashSet::new();
    while heard.len() < shards.len() {
        let notification =
            tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv()).await.unwrap().unwrap();
        match parse_dirty(notification.payload()) {
            Dirty::Shards(ids) => heard.extend(ids.into_iter().map(|id| id.0)),
            Dirty::All => panic!("a handful of shards is named, not summarised"),
        }
    }
    assert!(heard.iter().all(|id| shards.contains(id)));
}

#[sqlx::test(migrations = "./migrations")]
async fn jetstream_stages_each_event_once_in_order_with_only_identities_in_postgres(pool: PgPool) {
    let nats = common::NatsServer::start();
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.unwrap();
    listener.listen(STAGED_CHANNEL).await.unwrap();
    let staging = nats.staging(pool.clone()).await;
    let (calls, per_call, distinct) = race(&staging).await;

    let heads: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, next_seq FROM shards ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(heads.len(), 6, "3 accounts x 2 regions");
    let mut read = 0;
    for (shard, next_seq) in &heads {
        let events = staging.read(ShardId(*shard), 0, 100_000).await.unwrap();
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "shard {shard}: in order");
        assert_eq!(
            events.last().map(|e| e.seq + 1),
            Some(*next_seq),
            "shard {shard}: the head is its last event"
        );
        // Reading on from the middle gives the rest, small limits included.
        let middle = events[events.len() / 2].seq;
        let rest: Vec<i64> =
            staging.read(ShardId(*shard), middle, 3).await.unwrap().iter().map(|e| e.seq).collect();
        let expected: Vec<i64> = events.iter().map(|e| e.seq).filter(|s| *s > middle).take(3).collect();
        assert_eq!(rest, expected);
        read += events.len();
    }
    assert_eq!(read, distinct);
    let chunks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM staged_chunks").fetch_one(&pool).await.unwrap();
    assert_eq!(chunks, 0, "the events themselves are not in Postgres");
    let identities: i64 =
        sqlx::query_scalar("SELECT count(*) FROM event_identities").fetch_one(&pool).await.unwrap();
    assert_eq!(identities as usize, distinct);
    counters_agree(&pool, calls * per_call, distinct).await;
    let shards: HashSet<i64> = heads.iter().map(|(id, _)| *id).collect();
    heard_of(&mut listener, &shards).await;

    // A re-sent event is a duplicate however long ago it came (Postgres keeps the identities).
    let again = staging.stage(vec![incoming(ACCOUNTS[0], REGIONS[0], "event-0")], &[]).await.unwrap();
    assert_eq!(again, vec![StageOutcome::Duplicate]);
    let backlog = staging.backlog(None, chrono::Utc::now() + chrono::Duration::hours(1)).await.unwrap();
    assert_eq!(backlog.events as usize, distinct);
    assert_eq!(backlog.overdue_events as usize, distinct);
}

#[sqlx::test(migrations = "./migrations")]
async fn jetstream_release_forgets_whole_chunks_received_before_the_snapshot(pool: PgPool) {
    let nats = common::NatsServer::start();
    let staging = nats.staging(pool.clone()).await;
    // Two calls one after the other: two chunks of ten.
    for call in 0..2 {
        let events: Vec<Incoming> =
            (0..10).map(|i| incoming(ACCOUNTS[0], REGIONS[0], &format!("e{call}-{i}"))).collect();
        staging.stage(events, &[]).await.unwrap();
    }
    let shard = ShardId(sqlx::query_scalar("SELECT id FROM shards").fetch_one(&pool).await.unwrap());
    let staged = staging.read(shard, 0, 100).await.unwrap();
    assert_eq!(staged.len(), 20);
    let received = staged[0].received_at;
    assert_eq!(staging.first_after(shard, 0).await.unwrap(), Some(received));
    let later = staged[19].received_at + chrono::Duration::seconds(1);
    // Routing loaded before these events arrived knows nothing of them: nothing goes.
    let too_early = received - chrono::Duration::seconds(1);
    assert_eq!(staging.release(shard, staged[9].seq, too_early).await.unwrap(), 0);
    // Half a chunk released: the chunk stays.
    assert_eq!(staging.release(shard, staged[4].seq, later).await.unwrap(), 0);
    assert_eq!(staging.read(shard, staged[4].seq, 100).await.unwrap().len(), 15);
    // The whole first chunk: it goes, the second stays, in order.
    assert_eq!(staging.release(shard, staged[9].seq, later).await.unwrap(), 1);
    let left: Vec<i64> = staging.read(shard, 0, 100).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(left, staged[10..].iter().map(|e| e.seq).collect::<Vec<_>>());
    assert_eq!(staging.first_after(shard, staged[9].seq).await.unwrap(), Some(staged[10].received_at));
    assert_eq!(staging.first_after(shard, staged[19].seq).await.unwrap(), None);
    assert_eq!(staging.release(shard, staged[19].seq, later).await.unwrap(), 1);
    assert!(staging.read(shard, 0, 100).await.unwrap().is_empty());
}

#[sqlx::test(migrations = "./migrations")]
async fn jetstream_chunks_whose_group_never_committed_are_skipped(pool: PgPool) {
    let nats = common::NatsServer::start();
    let staging = nats.staging(pool.clone()).await;
    staging.stage(vec![incoming(ACCOUNTS[0], REGIONS[0], "first")], &[]).await.unwrap();
    let shard = ShardId(sqlx::query_scalar("SELECT id FROM shards").fetch_one(&pool).await.unwrap());
    // What a process that died between the log write and its Postgres commit leaves: a chunk in
    // the shard's subject whose group is not recorded.
    let settings = nats.settings();
    let subject = format!("{}.{}.{}", settings.prefix, shard.0 % i64::from(settings.partitions), shard.0);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut orphan = async_nats::HeaderMap::new();
    orphan.insert("Orgtrail-Group", uuid::Uuid::new_v4().to_string().as_str());
    orphan.insert("Orgtrail-Received-At", chrono::Utc::now().to_rfc3339().as_str());
    let packed = lz4_flex::compress_prepend_size(&[&7u32.to_le_bytes()[..], b"{\"x\":1}"].concat());
    js.publish_with_headers(subject, orphan, packed.into()).await.unwrap().await.unwrap();
    // Not read past the committed head, and skipped once a later group commits.
    assert_eq!(staging.read(shard, 0, 100).await.unwrap().len(), 1);
    staging.stage(vec![incoming(ACCOUNTS[0], REGIONS[0], "second")], &[]).await.unwrap();
    let read: Vec<String> =
        staging.read(shard, 0, 100).await.unwrap().into_iter().map(|e| e.record).collect();
    assert_eq!(read, vec!["{\"eventID\":\"first\"}".to_owned(), "{\"eventID\":\"second\"}".to_owned()]);
}
