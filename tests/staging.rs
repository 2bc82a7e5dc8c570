//! Postgres staging under concurrency: calls made durable together (group commit) still stage
//! every event exactly once, each caller gets its own outcomes, sequence numbers stay gapless per
//! shard, and workers hear at commit which shards got news.

use std::sync::Arc;

use orgtrail::model::shard::Source;
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
    let staging = Arc::new(PgStaging::new(pool.clone()));
    // 64 callers at once, 50 events each; every event is sent by two callers (a retry racing the
    // original), so half of all outcomes must be duplicates, whichever caller wins.
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
    // Counters agree with the outcomes.
    let (accepted_counted, duplicates_counted): (i64, i64) =
        sqlx::query_as("SELECT sum(accepted)::int8, sum(duplicates)::int8 FROM ingest_counters")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(accepted_counted as usize, distinct);
    assert_eq!(duplicates_counted as usize, calls * per_call - distinct);

    // Workers heard of every shard that got events.
    let mut heard = std::collections::HashSet::new();
    while heard.len() < 6 {
        let notification =
            tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv()).await.unwrap().unwrap();
        match parse_dirty(notification.payload()) {
            Dirty::Shards(ids) => heard.extend(ids.into_iter().map(|id| id.0)),
            Dirty::All => panic!("a handful of shards is named, not summarised"),
        }
    }
    assert!(heard.iter().all(|id| expected_next.contains_key(id)));
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
