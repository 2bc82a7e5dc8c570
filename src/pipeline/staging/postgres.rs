//! Staging in Postgres (the default): accepted events in per-call chunks per shard, dedupe
//! identities in weekly partitions, ingest counters.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use sqlx::PgPool;

use super::group::{Call, CommitCalls, GroupCommit, GroupLimits};
use super::{
    Incoming, OVERDUE_SHARDS_LISTED, ShardBacklog, StageOutcome, StagedBacklog, StagedEvent, Staging,
};
use crate::model::AccountId;
use crate::model::shard::ShardId;
use crate::store::StoreError;

pub struct PgStaging {
    pool: PgPool,
    group: GroupCommit,
}

impl PgStaging {
    /// Staging in `pool`; its group committers run on the current runtime.
    pub fn new(pool: PgPool) -> Self {
        let group = start_group(pool.clone(), Chunks);
        Self { pool, group }
    }
}

/// The group committer of a staging whose fresh events go to `append`; dedupe identities and
/// counters are Postgres's in every backend.
pub fn start_group(pool: PgPool, append: impl Append) -> GroupCommit {
    GroupCommit::start(Arc::new(PgCommit { pool, append }), GroupLimits::default())
}

/// A group's fresh events, per shard key (account, region, source), in order, with their dedupe keys.
pub type ByShard<'a> = BTreeMap<(&'a str, &'a str, &'a str), Vec<(&'a Incoming, uuid::Uuid)>>;

/// Where a group's fresh events are kept: called inside the group's transaction, under the
/// accounts' ingest locks, before the identities are recorded. It must leave the events durable
/// (or fail), move the shards' heads and tell the workers.
#[async_trait::async_trait]
pub trait Append: Send + Sync + 'static {
    async fn append(&self, tx: &mut sqlx::PgConnection, by_shard: ByShard<'_>) -> Result<(), StoreError>;
}

/// Commits a group of stage calls in one transaction, with one statement per table however many
/// calls, shards and accounts the group holds.
struct PgCommit<A> {
    pool: PgPool,
    append: A,
}

/// The Postgres backend's events: one chunk per shard and group in `staged_chunks`.
struct Chunks;

#[async_trait::async_trait]
impl Append for Chunks {
    async fn append(&self, tx: &mut sqlx::PgConnection, by_shard: ByShard<'_>) -> Result<(), StoreError> {
        let by_shard = by_shard
            .into_iter()
            .map(|(key, events)| (key, events.into_iter().map(|(e, _)| e.record.as_str()).collect()))
            .collect();
        append_chunks(tx, by_shard).await
    }
}

#[async_trait::async_trait]
impl<A: Append> CommitCalls for PgCommit<A> {
    async fn commit(&self, calls: &[Call]) -> Result<Vec<Vec<StageOutcome>>, StoreError> {
        let events: Vec<&Incoming> = calls.iter().flat_map(|c| &c.events).collect();
        let rejected: Vec<&AccountId> = calls.iter().flat_map(|c| &c.rejected).collect();
        let mut tx = self.pool.begin().await?;
        // One ingest at a time per account (locks taken in one fixed order, so no deadlock):
        // dedupe checks and sequence numbers stay consistent under concurrent groups.
        let accounts: Vec<&str> = events
            .iter()
            .map(|e| e.account_id.as_str())
            .chain(rejected.iter().map(|a| a.as_str()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        sqlx::query(
            "SELECT pg_advisory_xact_lock(k) FROM
             (SELECT DISTINCT hashtext('ingest:' || a) AS k FROM unnest($1::text[]) AS a) AS l ORDER BY k",
        )
        .bind(&accounts)
        .execute(&mut *tx)
        .await?;

        let event_accounts: Vec<&str> = events.iter().map(|e| e.account_id.as_str()).collect();
        let event_keys: Vec<uuid::Uuid> = events.iter().map(|e| event_key(&e.event_id)).collect();
        // Positions (1-based) of the events whose identity is already known.
        let seen: HashSet<i64> = sqlx::query_scalar(
            "SELECT DISTINCT i.position FROM unnest($1::text[], $2::uuid[]) WITH ORDINALITY AS i(account, event_key, position)
             JOIN event_identities e ON e.recipient_account_id = i.account AND e.event_key = i.event_key",
        )
        .bind(&event_accounts)
        .bind(&event_keys)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let mut known: HashSet<(&str, uuid::Uuid)> = HashSet::with_capacity(events.len());
        let mut outcomes = Vec::with_capacity(events.len());
        let mut fresh: Vec<(&Incoming, uuid::Uuid)> = Vec::new();
        for (position, (event, key)) in (1i64..).zip(events.iter().zip(&event_keys)) {
            let first = !seen.contains(&position) && known.insert((event.account_id.as_str(), *key));
            if first {
                outcomes.push(StageOutcome::Accepted);
                fresh.push((event, *key));
            } else {
                outcomes.push(StageOutcome::Duplicate);
            }
        }

        let mut by_shard: ByShard = BTreeMap::new();
        for (event, key) in &fresh {
            by_shard
                .entry((event.account_id.as_str(), event.region.as_str(), event.source.as_str()))
                .or_default()
                .push((*event, *key));
        }
        if !by_shard.is_empty() {
            // The events first: an identity is only ever recorded for a kept event.
            self.append.append(&mut tx, by_shard).await?;
        }

        if !fresh.is_empty() {
            let accounts: Vec<&str> = fresh.iter().map(|(e, _)| e.account_id.as_str()).collect();
            let keys: Vec<uuid::Uuid> = fresh.iter().map(|(_, k)| *k).collect();
            sqlx::query(
                "INSERT INTO event_identities (recipient_account_id, event_key, first_seen)
                 SELECT account, event_key, current_date FROM unnest($1::text[], $2::uuid[]) AS i(account, event_key)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&accounts)
            .bind(&keys)
            .execute(&mut *tx)
            .await?;
        }

        let mut counters: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
        for (event, outcome) in events.iter().zip(&outcomes) {
            let entry = counters.entry(event.account_id.as_str()).or_default();
            match outcome {
                StageOutcome::Accepted => entry.0 += 1,
                StageOutcome::Duplicate => entry.1 += 1,
            }
        }
        for account in &rejected {
            counters.entry(account.as_str()).or_default().2 += 1;
        }
        let counted: Vec<&str> = counters.keys().copied().collect();
        let column = |pick: fn(&(i64, i64, i64)) -> i64| counters.values().map(pick).collect::<Vec<i64>>();
        sqlx::query(
            "INSERT INTO ingest_counters (account_id, accepted, duplicates, rejected)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[])
             ON CONFLICT (account_id) DO UPDATE SET accepted = ingest_counters.accepted + EXCLUDED.accepted,
                 duplicates = ingest_counters.duplicates + EXCLUDED.duplicates,
                 rejected = ingest_counters.rejected + EXCLUDED.rejected",
        )
        .bind(&counted)
        .bind(column(|c| c.0))
        .bind(column(|c| c.1))
        .bind(column(|c| c.2))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;

        let mut outcomes = outcomes.into_iter();
        Ok(calls.iter().map(|call| outcomes.by_ref().take(call.events.len()).collect()).collect())
    }
}

/// Appends one chunk per shard of `by_shard` (creating shards first seen), numbering its records
/// after the shard's last sequence number.
async fn append_chunks(
    tx: &mut sqlx::PgConnection,
    by_shard: BTreeMap<(&str, &str, &str), Vec<&str>>,
) -> Result<(), StoreError> {
    let keys: Vec<(&str, &str, &str)> = by_shard.keys().copied().collect();
    create_shards(tx, &keys).await?;
    let (accounts, regions, sources) = columns(&keys);
    let counts: Vec<i64> = by_shard.values().map(|records| records.len() as i64).collect();
    let numbered: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
        "UPDATE shards s SET next_seq = s.next_seq + w.n
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) AS w(account_id, region, source, n)
         WHERE s.account_id = w.account_id AND s.region = w.region AND s.source = w.source
         RETURNING s.account_id, s.region, s.source, s.id, s.next_seq - w.n",
    )
    .bind(&accounts)
    .bind(&regions)
    .bind(&sources)
    .bind(&counts)
    .fetch_all(&mut *tx)
    .await?;
    let first_seqs: HashMap<(&str, &str, &str), (i64, i64)> = numbered
        .iter()
        .map(|(a, r, s, id, first)| ((a.as_str(), r.as_str(), s.as_str()), (*id, *first)))
        .collect();
    let mut shard_ids = Vec::with_capacity(by_shard.len());
    let mut firsts = Vec::with_capacity(by_shard.len());
    let mut lasts = Vec::with_capacity(by_shard.len());
    let mut bodies = Vec::with_capacity(by_shard.len());
    for (key, records) in &by_shard {
        let (id, first) = *first_seqs
            .get(key)
            .ok_or_else(|| StoreError::Corrupt(format!("shard {key:?} vanished while staging")))?;
        shard_ids.push(id);
        firsts.push(first);
        lasts.push(first + records.len() as i64 - 1);
        bodies.push(pack(records));
    }
    sqlx::query(
        "INSERT INTO staged_chunks (shard_id, first_seq, last_seq, received_at, records)
         SELECT shard_id, first_seq, last_seq, now(), records
         FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::bytea[]) AS c(shard_id, first_seq, last_seq, records)",
    )
    .bind(&shard_ids)
    .bind(&firsts)
    .bind(&lasts)
    .bind(&bodies)
    .execute(&mut *tx)
    .await?;
    notify_staged(tx, &shard_ids.iter().map(|&id| ShardId(id)).collect::<Vec<_>>()).await
}

/// The account, region and source columns of shard keys.
fn columns<'a>(keys: &[(&'a str, &'a str, &'a str)]) -> (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    (
        keys.iter().map(|k| k.0).collect(),
        keys.iter().map(|k| k.1).collect(),
        keys.iter().map(|k| k.2).collect(),
    )
}

/// Creates the shards of `keys` first seen (with their leases); must run under the accounts'
/// ingest locks, so that nobody else creates them concurrently.
pub async fn create_shards(
    tx: &mut sqlx::PgConnection,
    keys: &[(&str, &str, &str)],
) -> Result<(), StoreError> {
    let (accounts, regions, sources) = columns(keys);
    let created: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO shards (account_id, region, source)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS w(account_id, region, source)
         WHERE NOT EXISTS (SELECT 1 FROM shards s WHERE s.account_id = w.account_id
                           AND s.region = w.region AND s.source = w.source)
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(&accounts)
    .bind(&regions)
    .bind(&sources)
    .fetch_all(&mut *tx)
    .await?;
    if !created.is_empty() {
        sqlx::query("INSERT INTO shard_leases (shard_id) SELECT * FROM unnest($1::int8[])")
            .bind(&created)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// The ids of the shards of `keys` (all of which exist).
pub async fn shard_ids(
    tx: &mut sqlx::PgConnection,
    keys: &[(&str, &str, &str)],
) -> Result<Vec<ShardId>, StoreError> {
    let (accounts, regions, sources) = columns(keys);
    let found: Vec<(String, String, String, ShardId)> = sqlx::query_as(
        "SELECT s.account_id, s.region, s.source, s.id FROM shards s
         JOIN unnest($1::text[], $2::text[], $3::text[]) AS w(account_id, region, source)
           ON s.account_id = w.account_id AND s.region = w.region AND s.source = w.source",
    )
    .bind(&accounts)
    .bind(&regions)
    .bind(&sources)
    .fetch_all(&mut *tx)
    .await?;
    let ids: HashMap<(&str, &str, &str), ShardId> =
        found.iter().map(|(a, r, s, id)| ((a.as_str(), r.as_str(), s.as_str()), *id)).collect();
    keys.iter()
        .map(|key| {
            ids.get(key)
                .copied()
                .ok_or_else(|| StoreError::Corrupt(format!("shard {key:?} vanished while staging")))
        })
        .collect()
}

/// Tells waiting workers, at commit, that `shards` got new events.
pub async fn notify_staged(tx: &mut sqlx::PgConnection, shards: &[ShardId]) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(STAGED_CHANNEL)
        .bind(dirty_payload(shards))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl Staging for PgStaging {
    async fn stage(
        &self,
        events: Vec<Incoming>,
        rejected: &[AccountId],
    ) -> Result<Vec<StageOutcome>, StoreError> {
        self.group.stage(Call { events, rejected: rejected.to_vec() }).await
    }

    async fn read(
        &self,
        shard_id: ShardId,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StagedEvent>, StoreError> {
        let chunks: Vec<(i64, i64, DateTime<Utc>, Vec<u8>)> = sqlx::query_as(
            "SELECT first_seq, last_seq, received_at, records FROM staged_chunks
             WHERE shard_id = $1 AND last_seq > $2 ORDER BY last_seq LIMIT $3",
        )
        .bind(shard_id)
        .bind(after_seq)
        .bind(limit / 100 + 1)
        .fetch_all(&self.pool)
        .await?;
        // Decompression is CPU work: off the async runtime.
        tokio::task::spawn_blocking(move || unpack_chunks(shard_id, after_seq, chunks))
            .await
            .map_err(|e| StoreError::Corrupt(format!("unpacking panicked: {e}")))?
    }

    async fn read_many(&self, reads: &[(ShardId, i64, i64)]) -> Result<Vec<Vec<StagedEvent>>, StoreError> {
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let shards: Vec<i64> = reads.iter().map(|r| r.0.0).collect();
        let after: Vec<i64> = reads.iter().map(|r| r.1).collect();
        let chunks: Vec<i64> = reads.iter().map(|r| r.2 / 100 + 1).collect();
        let rows: Vec<(i64, i64, i64, DateTime<Utc>, Vec<u8>)> = sqlx::query_as(
            "SELECT u.i, c.first_seq, c.last_seq, c.received_at, c.records
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS u(shard_id, after, n, i)
             CROSS JOIN LATERAL (SELECT first_seq, last_seq, received_at, records FROM staged_chunks
                                 WHERE shard_id = u.shard_id AND last_seq > u.after
                                 ORDER BY last_seq LIMIT u.n) c
             ORDER BY u.i, c.last_seq",
        )
        .bind(&shards)
        .bind(&after)
        .bind(&chunks)
        .fetch_all(&self.pool)
        .await?;
        let reads = reads.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut per_read: Vec<Vec<(i64, i64, DateTime<Utc>, Vec<u8>)>> = vec![Vec::new(); reads.len()];
            for (ordinal, first, last, received_at, packed) in rows {
                if let Some(read) = usize::try_from(ordinal - 1).ok().and_then(|i| per_read.get_mut(i)) {
                    read.push((first, last, received_at, packed));
                }
            }
            reads
                .iter()
                .zip(per_read)
                .map(|((shard, after, _), chunks)| unpack_chunks(*shard, *after, chunks))
                .collect()
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("unpacking panicked: {e}")))?
    }

    async fn release(
        &self,
        shard_id: ShardId,
        through_seq: i64,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done =
            // A chunk goes once every event in it is released.
            sqlx::query("DELETE FROM staged_chunks WHERE shard_id = $1 AND last_seq <= $2 AND received_at < $3")
                .bind(shard_id)
                .bind(through_seq)
                .bind(before)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    async fn release_many(
        &self,
        shards: &[(ShardId, i64)],
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if shards.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = shards.iter().map(|s| s.0.0).collect();
        let through: Vec<i64> = shards.iter().map(|s| s.1).collect();
        let done = sqlx::query(
            "DELETE FROM staged_chunks c USING unnest($1::bigint[], $2::bigint[]) AS u(shard_id, through)
             WHERE c.shard_id = u.shard_id AND c.last_seq <= u.through AND c.received_at < $3",
        )
        .bind(&ids)
        .bind(&through)
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn first_after(
        &self,
        shard_id: ShardId,
        after_seq: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT min(received_at) FROM staged_chunks WHERE shard_id = $1 AND last_seq > $2",
        )
        .bind(shard_id)
        .bind(after_seq)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn backlog(
        &self,
        account: Option<&AccountId>,
        overdue_before: DateTime<Utc>,
    ) -> Result<StagedBacklog, StoreError> {
        // Counted by whole chunks: a chunk leaves staging once every event in it is released.
        let account = account.map(AccountId::as_str);
        let (events, oldest, overdue_events): (i64, Option<DateTime<Utc>>, i64) = sqlx::query_as(
            "SELECT coalesce(sum(c.last_seq - c.first_seq + 1), 0)::int8, min(c.received_at),
                    coalesce(sum(c.last_seq - c.first_seq + 1) FILTER (WHERE c.received_at < $2), 0)::int8
             FROM staged_chunks c JOIN shards s ON s.id = c.shard_id
             WHERE $1::text IS NULL OR s.account_id = $1",
        )
        .bind(account)
        .bind(overdue_before)
        .fetch_one(&self.pool)
        .await?;
        let overdue_shards = sqlx::query_as::<_, ShardBacklog>(
            "SELECT s.account_id, s.region, s.source, sum(c.last_seq - c.first_seq + 1)::int8 AS events,
                    min(c.received_at) AS oldest
             FROM staged_chunks c JOIN shards s ON s.id = c.shard_id
             WHERE c.received_at < $2 AND ($1::text IS NULL OR s.account_id = $1)
             GROUP BY s.account_id, s.region, s.source ORDER BY min(c.received_at) LIMIT $3",
        )
        .bind(account)
        .bind(overdue_before)
        .bind(OVERDUE_SHARDS_LISTED)
        .fetch_all(&self.pool)
        .await?;
        Ok(StagedBacklog { events, oldest, overdue_events, overdue_shards })
    }
}

/// Acknowledged events of one account no trail took, by category.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Untaken {
    pub account_id: String,
    pub category: String,
    pub events: i64,
    pub latest_at: DateTime<Utc>,
}

/// Counts events of `account` that left staging without any trail taking them.
pub async fn add_untaken(
    pool: &PgPool,
    account: &AccountId,
    by_category: &BTreeMap<&'static str, i64>,
) -> Result<(), StoreError> {
    let categories: Vec<&str> = by_category.keys().copied().collect();
    let counts: Vec<i64> = by_category.values().copied().collect();
    sqlx::query(
        "INSERT INTO untaken_counters (account_id, category, events)
         SELECT $1, category, events FROM unnest($2::text[], $3::int8[]) AS u(category, events)
         ON CONFLICT (account_id, category) DO UPDATE
         SET events = untaken_counters.events + EXCLUDED.events, latest_at = now()",
    )
    .bind(account.as_str())
    .bind(&categories)
    .bind(&counts)
    .execute(pool)
    .await?;
    Ok(())
}

/// The untaken counts, of one account or all, largest first.
pub async fn untaken(pool: &PgPool, account: Option<&AccountId>) -> Result<Vec<Untaken>, StoreError> {
    Ok(sqlx::query_as::<_, Untaken>(
        "SELECT account_id, category, events, latest_at FROM untaken_counters
         WHERE $1::text IS NULL OR account_id = $1 ORDER BY events DESC, account_id, category",
    )
    .bind(account.map(AccountId::as_str))
    .fetch_all(pool)
    .await?)
}

/// The channel staging notifies at commit with the shards that got new events.
pub const STAGED_CHANNEL: &str = "orgtrail_staged";

/// Longest notification payload sent (Postgres refuses 8,000 bytes and more).
const MAX_PAYLOAD: usize = 7_900;

/// Which shards a staging notification names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dirty {
    Shards(Vec<ShardId>),
    /// Too many to name: every shard may have new events.
    All,
}

/// The payload naming `shards`: their ids, comma-separated, or `*` when that would be too long.
pub fn dirty_payload(shards: &[ShardId]) -> String {
    let mut payload = String::new();
    for id in shards {
        if !payload.is_empty() {
            payload.push(',');
        }
        payload.push_str(&id.to_string());
        if payload.len() > MAX_PAYLOAD {
            return "*".to_owned();
        }
    }
    payload
}

/// Reads a payload of [`dirty_payload`]; anything else counts as every shard.
pub fn parse_dirty(payload: &str) -> Dirty {
    let ids: Result<Vec<ShardId>, _> = payload.split(',').map(|id| id.parse().map(ShardId)).collect();
    match ids {
        Ok(ids) => Dirty::Shards(ids),
        Err(_) => Dirty::All,
    }
}

/// The dedupe key of an eventID: its SHA-256, truncated to 128 bits.
fn event_key(event_id: &str) -> uuid::Uuid {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, event_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Uuid::from_bytes(bytes)
}

/// Records as one value: each a little-endian u32 length and its bytes, then lz4.
pub(super) fn pack(records: &[&str]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(records.iter().map(|r| r.len() + 4).sum());
    for record in records {
        raw.extend_from_slice(&(record.len() as u32).to_le_bytes());
        raw.extend_from_slice(record.as_bytes());
    }
    lz4_flex::compress_prepend_size(&raw)
}

/// The events of a shard's chunks (in order) with `seq > after_seq`.
fn unpack_chunks(
    shard_id: ShardId,
    after_seq: i64,
    chunks: Vec<(i64, i64, DateTime<Utc>, Vec<u8>)>,
) -> Result<Vec<StagedEvent>, StoreError> {
    let mut events = Vec::new();
    for (first_seq, last_seq, received_at, packed) in chunks {
        let records = unpack(&packed)?;
        if records.len() as i64 != last_seq - first_seq + 1 {
            return Err(StoreError::Corrupt(format!(
                "chunk {first_seq}..={last_seq} of shard {shard_id} holds {} records",
                records.len()
            )));
        }
        for (seq, record) in (first_seq..=last_seq).zip(records) {
            if seq > after_seq {
                events.push(StagedEvent { seq, received_at, record });
            }
        }
    }
    Ok(events)
}

pub(super) fn unpack(packed: &[u8]) -> Result<Vec<String>, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("staged chunk: {what}"));
    let raw = lz4_flex::decompress_size_prepended(packed).map_err(|e| corrupt(&e.to_string()))?;
    let mut records = Vec::new();
    let mut rest = raw.as_slice();
    while !rest.is_empty() {
        let (length, tail) = rest.split_at_checked(4).ok_or_else(|| corrupt("truncated length"))?;
        let length = u32::from_le_bytes([length[0], length[1], length[2], length[3]]) as usize;
        let (record, tail) = tail.split_at_checked(length).ok_or_else(|| corrupt("truncated record"))?;
        records.push(String::from_utf8(record.to_vec()).map_err(|_| corrupt("not UTF-8"))?);
        rest = tail;
    }
    Ok(records)
}

/// Monday of the week holding `day`: dedupe partitions are weekly.
fn week_start(day: NaiveDate) -> NaiveDate {
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

/// Keeps the dedupe table's weekly partitions ahead of time (this week and the next two) and drops
/// partitions entirely older than the horizon. Safe to run from several processes at once.
pub async fn maintain_identity_partitions(
    pool: &PgPool,
    today: NaiveDate,
    horizon_days: i64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('event_identities:partitions'))")
        .execute(&mut *tx)
        .await?;
    let this_week = week_start(today);
    for week in 0..3 {
        let from = this_week + Duration::days(7 * week);
        let to = from + Duration::days(7);
        let name = format!("event_identities_w{}", from.format("%Y%m%d"));
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF event_identities FOR VALUES FROM ('{from}') TO ('{to}')"
        ))
        .execute(&mut *tx)
        .await?;
    }
    let oldest_kept = today - Duration::days(horizon_days);
    let partitions: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'event_identities'",
    )
    .fetch_all(&mut *tx)
    .await?;
    for name in partitions {
        let Some(start) =
            name.strip_prefix("event_identities_w").and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
        else {
            continue;
        };
        if start + Duration::days(7) <= oldest_kept {
            sqlx::query(&format!("DROP TABLE {name}")).execute(&mut *tx).await?;
            tracing::info!(partition = %name, "expired dedupe partition dropped");
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Accepted/duplicate/rejected counts of one account.
pub async fn ingest_counters(pool: &PgPool, account: &AccountId) -> Result<(i64, i64, i64), StoreError> {
    let row: Option<(i64, i64, i64)> =
        sqlx::query_as("SELECT accepted, duplicates, rejected FROM ingest_counters WHERE account_id = $1")
            .bind(account.as_str())
            .fetch_optional(pool)
            .await?;
    Ok(row.unwrap_or_default())
}

/// Accepted/duplicate/rejected counts of several accounts (absent: no events yet).
pub async fn ingest_counters_for(
    pool: &PgPool,
    accounts: &[&str],
) -> Result<std::collections::HashMap<String, (i64, i64, i64)>, StoreError> {
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT account_id, accepted, duplicates, rejected FROM ingest_counters WHERE account_id = ANY($1)",
    )
    .bind(accounts)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(a, x, y, z)| (a, (x, y, z))).collect())
}

/// Drops staged chunks received before `older_than`, delivered or not; how many. (The JetStream
/// backend's streams drop theirs by age; only its group records are forgotten here.)
pub async fn expire(pool: &PgPool, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM staged_chunks WHERE received_at < $1")
        .bind(older_than)
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM staged_groups WHERE committed_at < $1").bind(older_than).execute(pool).await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_shards_round_trip_and_too_many_mean_all() {
        let ids = vec![ShardId(3), ShardId(17), ShardId(4)];
        assert_eq!(parse_dirty(&dirty_payload(&ids)), Dirty::Shards(ids));
        let many: Vec<ShardId> = (1_000_000..1_002_000).map(ShardId).collect();
        assert_eq!(dirty_payload(&many), "*");
        assert_eq!(parse_dirty("*"), Dirty::All);
        assert_eq!(parse_dirty("12,x"), Dirty::All);
    }

    #[test]
    fn packed_records_round_trip() {
        let records = ["{\"a\":1}", "", "{\n \"multi\": \"line\"\n}"];
        assert_eq!(unpack(&pack(&records)).unwrap(), records);
        assert!(unpack(b"garbage").is_err());
    }
}
