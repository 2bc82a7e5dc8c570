//! The event-history index: written by the history tap, read by LookupEvents, expired by the
//! maintenance pass (weekly partitions; see migration 0010).

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::blocks;
use crate::model::history::{AttributeKey, HistoryFields, LookupAttribute, index_key, is_digest_key};
use crate::model::{AccountId, Region};
use crate::store::StoreError;

/// One event to index.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub event_time: DateTime<Utc>,
    pub account_id: &'a str,
    pub region: &'a str,
    pub event_id: &'a str,
    pub fields: HistoryFields,
    /// The record exactly as staged.
    pub record: &'a str,
}

/// How a batch of entries is written: which are kept (a second copy within the batch, same
/// eventID, account and time, is left out), the record blocks, and each kept entry's place in
/// them. CPU work (deflating): callers on the async runtime build it off it.
#[derive(Debug, Default)]
pub struct Layout {
    /// Indexes into the entries, first copies only, in the order they are written.
    kept: Vec<usize>,
    /// Per kept entry: its block (an index into `blocks`) and slot.
    places: Vec<(i32, i16)>,
    blocks: Vec<PackedBlock>,
}

#[derive(Debug)]
struct PackedBlock {
    /// The newest event time of its records.
    event_time: DateTime<Utc>,
    bytes: Vec<u8>,
}

impl Layout {
    /// Blocks of one week each (a block is expired with its week's partition), at most
    /// [`blocks::BLOCK_RECORDS`] records: an account's own blocks while it has that many events
    /// of the week, newest first (a lookup of one account then reads few blocks); the rest of every
    /// account pooled into shared blocks, so that a round of a few events per shard over thousands
    /// of shards still fills its blocks (a block of one or two records compresses no better than
    /// a record alone).
    pub fn of(entries: &[NewEntry<'_>]) -> Self {
        let items: Vec<Item<'_>> = entries
            .iter()
            .map(|e| Item {
                account_id: e.account_id,
                key: e.event_id,
                event_time: e.event_time,
                record: e.record,
            })
            .collect();
        Self::plan(&items)
    }

    fn plan(entries: &[Item<'_>]) -> Self {
        let mut seen = std::collections::HashSet::new();
        let kept: Vec<usize> = (0..entries.len())
            .filter(|&i| seen.insert((entries[i].account_id, entries[i].key, entries[i].event_time)))
            .collect();
        let time = |position: usize| entries[kept[position]].event_time;
        let mut groups: std::collections::BTreeMap<(NaiveDate, &str), Vec<usize>> = Default::default();
        for (position, &i) in kept.iter().enumerate() {
            let entry = &entries[i];
            groups
                .entry((week_start(entry.event_time.date_naive()), entry.account_id))
                .or_default()
                .push(position);
        }
        let mut chunks: Vec<Vec<usize>> = Vec::new();
        let mut pooled: std::collections::BTreeMap<NaiveDate, Vec<usize>> = Default::default();
        for ((week, _), mut members) in groups {
            members.sort_by_key(|&position| std::cmp::Reverse(time(position)));
            let whole = members.len() - members.len() % blocks::BLOCK_RECORDS;
            pooled.entry(week).or_default().extend(members.drain(whole..));
            chunks.extend(members.chunks(blocks::BLOCK_RECORDS).map(<[usize]>::to_vec));
        }
        for members in pooled.into_values() {
            chunks.extend(members.chunks(blocks::BLOCK_RECORDS).map(<[usize]>::to_vec));
        }
        let mut places = vec![(0, 0); kept.len()];
        let mut packed = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let block = packed.len() as i32;
            for (slot, &position) in chunk.iter().enumerate() {
                places[position] = (block, slot as i16);
            }
            packed.push(PackedBlock {
                event_time: chunk.iter().map(|&position| time(position)).max().unwrap_or_default(),
                bytes: blocks::pack(chunk.iter().map(|&position| entries[kept[position]].record)),
            });
        }
        Self { kept, places, blocks: packed }
    }

    /// The statement parameters of the blocks (see [`BLOCKS_CTE`]) and of the rows' places in them.
    fn columns(&self) -> BlockColumns<'_> {
        BlockColumns {
            times: self.blocks.iter().map(|b| b.event_time).collect(),
            bytes: self.blocks.iter().map(|b| b.bytes.as_slice()).collect(),
            numbers: self.places.iter().map(|p| p.0).collect(),
            slots: self.places.iter().map(|p| p.1).collect(),
        }
    }
}

/// What a block needs of an entry: whose it is, its identity within the batch, its time, its record.
struct Item<'a> {
    account_id: &'a str,
    key: &'a str,
    event_time: DateTime<Utc>,
    record: &'a str,
}

struct BlockColumns<'a> {
    times: Vec<DateTime<Utc>>,
    bytes: Vec<&'a [u8]>,
    /// Per row: its block (`ids.n` in [`BLOCKS_CTE`]) and its slot.
    numbers: Vec<i32>,
    slots: Vec<i16>,
}

/// Writes the blocks of `$1` (times) and `$2` (bodies), ids drawn first so that the rest of the
/// statement can name each row's: `ids(n, id)`, n counting from 0.
const BLOCKS_CTE: &str = "WITH ids AS MATERIALIZED (
         SELECT n - 1 AS n, nextval('event_history_blocks_id_seq') AS id
         FROM generate_series(1, cardinality($1::timestamptz[])) AS n
     ), blocks AS (
         INSERT INTO event_history_blocks (id, event_time, records)
         SELECT ids.id, b.event_time, b.records
         FROM unnest($1::timestamptz[], $2::bytea[]) WITH ORDINALITY AS b(event_time, records, n)
         JOIN ids ON ids.n = b.n - 1
     )";

/// Indexes `entries` in one statement (see [`Layout`]), deflating on the caller's thread (fine for a
/// few events; the history tap builds the layout off the async runtime and calls
/// [`index_laid_out`]). Returns how many were indexed.
///
/// Nothing checks `entries` against what is indexed already (migration 0020 dropped that unique
/// index): the history tap hands each staged event over once, in the transaction that moves its
/// cursor past it under the shard's lease, and ingest admits an event identity once per dedupe
/// horizon. An event staged again after the horizon is delivered again, and listed again.
pub async fn index(conn: &mut sqlx::PgConnection, entries: &[NewEntry<'_>]) -> Result<u64, StoreError> {
    let layout = Layout::of(entries);
    index_laid_out(conn, entries, &layout).await
}

/// [`index`] with the layout built already.
pub async fn index_laid_out(
    conn: &mut sqlx::PgConnection,
    entries: &[NewEntry<'_>],
    layout: &Layout,
) -> Result<u64, StoreError> {
    if layout.kept.is_empty() {
        return Ok(0);
    }
    let entries: Vec<&NewEntry<'_>> = layout.kept.iter().map(|&i| &entries[i]).collect();
    let mut times = Vec::with_capacity(entries.len());
    let mut accounts = Vec::with_capacity(entries.len());
    let mut regions = Vec::with_capacity(entries.len());
    let mut insights = Vec::with_capacity(entries.len());
    let mut event_ids = Vec::with_capacity(entries.len());
    let mut names = Vec::with_capacity(entries.len());
    let mut sources = Vec::with_capacity(entries.len());
    let mut read_only = Vec::with_capacity(entries.len());
    let mut usernames = Vec::with_capacity(entries.len());
    let mut access_keys = Vec::with_capacity(entries.len());
    // Resource postings, keyed by the event they belong to.
    let (mut posting_accounts, mut posting_ids, mut posting_times, mut kinds, mut values) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for entry in &entries {
        times.push(entry.event_time);
        accounts.push(entry.account_id);
        regions.push(entry.region);
        insights.push(entry.fields.insight);
        event_ids.push(entry.event_id);
        names.push(index_key(&entry.fields.event_name));
        sources.push(index_key(&entry.fields.event_source));
        read_only.push(entry.fields.read_only);
        usernames.push(entry.fields.username.as_deref().map(index_key));
        access_keys.push(entry.fields.access_key_id.as_deref().map(index_key));
        let postings = entry
            .fields
            .resource_types
            .iter()
            .map(|v| ("T", v))
            .chain(entry.fields.resource_names.iter().map(|v| ("N", v)));
        for (kind, value) in postings {
            posting_accounts.push(entry.account_id);
            posting_ids.push(entry.event_id);
            posting_times.push(entry.event_time);
            kinds.push(kind);
            values.push(index_key(value));
        }
    }
    let columns = layout.columns();
    // The postings find their event's new id through the event's identity.
    let statement = format!(
        "{BLOCKS_CTE}, inserted AS (
             INSERT INTO event_history (event_time, account_id, region, insight, event_id, event_name,
                                        event_source, read_only, username, access_key_id, block_id, block_slot)
             SELECT e.event_time, e.account_id, e.region, e.insight, e.event_id, e.event_name, e.event_source,
                    e.read_only, e.username, e.access_key_id, ids.id, e.slot
             FROM unnest($3::timestamptz[], $4::text[], $5::text[], $6::bool[], $7::text[], $8::text[],
                         $9::text[], $10::bool[], $11::text[], $12::text[], $18::int4[], $19::int2[])
                  AS e(event_time, account_id, region, insight, event_id, event_name, event_source,
                       read_only, username, access_key_id, block, slot)
             JOIN ids ON ids.n = e.block
             RETURNING id, event_time, account_id, region, event_id
         ), postings AS (
             INSERT INTO event_history_resources (event_time, id, account_id, region, kind, value)
             SELECT i.event_time, i.id, i.account_id, i.region, p.kind::\"char\", p.value
             FROM inserted i
             JOIN unnest($13::text[], $14::text[], $15::timestamptz[], $16::text[], $17::text[])
                  AS p(account_id, event_id, event_time, kind, value)
               ON p.account_id = i.account_id AND p.event_id = i.event_id AND p.event_time = i.event_time
         )
         SELECT count(*) FROM inserted"
    );
    let done = sqlx::query(&statement)
        .bind(&columns.times)
        .bind(&columns.bytes)
        .bind(&times)
        .bind(&accounts)
        .bind(&regions)
        .bind(&insights)
        .bind(&event_ids)
        .bind(&names)
        .bind(&sources)
        .bind(&read_only)
        .bind(&usernames)
        .bind(&access_keys)
        .bind(&posting_accounts)
        .bind(&posting_ids)
        .bind(&posting_times)
        .bind(&kinds)
        .bind(&values)
        .bind(&columns.numbers)
        .bind(&columns.slots)
        .fetch_one(&mut *conn)
        .await?;
    let inserted: i64 = sqlx::Row::try_get(&done, 0)?;
    Ok(inserted as u64)
}

/// Moves the records of rows written in line into blocks, as the history tap would have written
/// them: `(id, event_time, account, record)` of rows of one batch. For the lookup benchmark, whose
/// SQL filler cannot deflate.
pub async fn move_into_blocks(
    conn: &mut sqlx::PgConnection,
    rows: &[(i64, DateTime<Utc>, String, String)],
) -> Result<(), StoreError> {
    let keys: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
    let items: Vec<Item<'_>> = rows
        .iter()
        .zip(&keys)
        .map(|((_, time, account, record), key)| Item { account_id: account, key, event_time: *time, record })
        .collect();
    let layout = Layout::plan(&items);
    let columns = layout.columns();
    let ids: Vec<i64> = layout.kept.iter().map(|&i| rows[i].0).collect();
    let times: Vec<DateTime<Utc>> = layout.kept.iter().map(|&i| rows[i].1).collect();
    let statement = format!(
        "{BLOCKS_CTE}
         UPDATE event_history h SET record = NULL, block_id = ids.id, block_slot = u.slot
         FROM unnest($3::bigint[], $4::timestamptz[], $5::int4[], $6::int2[]) AS u(id, event_time, block, slot)
         JOIN ids ON ids.n = u.block
         WHERE h.id = u.id AND h.event_time = u.event_time"
    );
    sqlx::query(&statement)
        .bind(&columns.times)
        .bind(&columns.bytes)
        .bind(&ids)
        .bind(&times)
        .bind(&columns.numbers)
        .bind(&columns.slots)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Where a page starts: after this (event_time, id), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub event_time: DateTime<Utc>,
    pub id: i64,
}

/// A lookup, checked by the API layer.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    pub attribute: Option<LookupAttribute>,
    /// Inclusive bounds.
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// Insights only (true) or everything else (false).
    pub insight: bool,
    pub account_id: Option<AccountId>,
    pub region: Option<Region>,
    pub after: Option<Position>,
    pub limit: i64,
}

/// An indexed event as a lookup returns it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: i64,
    pub event_time: DateTime<Utc>,
    pub account_id: String,
    pub region: String,
    pub event_id: String,
    pub event_name: String,
    pub event_source: String,
    pub read_only: Option<bool>,
    pub username: Option<String>,
    pub access_key_id: Option<String>,
    pub record: String,
}

impl Entry {
    pub fn position(&self) -> Position {
        Position { event_time: self.event_time, id: self.id }
    }
}

/// A row as read: the record in line (rows written before migration 0021) or in a block.
#[derive(Debug, sqlx::FromRow)]
struct Found {
    id: i64,
    event_time: DateTime<Utc>,
    account_id: String,
    region: String,
    event_id: String,
    event_name: String,
    event_source: String,
    read_only: Option<bool>,
    username: Option<String>,
    access_key_id: Option<String>,
    record: Option<String>,
    block_id: Option<i64>,
    block_slot: Option<i16>,
}

const COLUMNS: &str = "id, event_time, account_id, region, event_id, event_name, event_source, read_only, username, access_key_id, record, block_id, block_slot";

/// The entries of `rows` with their records, reading each block they name once, and of it only
/// the slots up to the last one wanted.
async fn with_records(pool: &PgPool, rows: Vec<Found>) -> Result<Vec<Entry>, StoreError> {
    let mut wanted: std::collections::HashMap<i64, (DateTime<Utc>, usize)> = Default::default();
    for row in &rows {
        if let (None, Some(block), Some(slot)) = (&row.record, row.block_id, row.block_slot) {
            let want = wanted.entry(block).or_insert((row.event_time, 0));
            // The block's time is the newest of its records: at least each row's.
            want.0 = want.0.max(row.event_time);
            want.1 = want.1.max(usize::try_from(slot).unwrap_or(0));
        }
    }
    let mut records: std::collections::HashMap<i64, Vec<String>> = Default::default();
    if !wanted.is_empty() {
        let ids: Vec<i64> = wanted.keys().copied().collect();
        // Each block is in the partition of its week, at or after its rows' times (the lower
        // bound lets the planner skip older partitions).
        let oldest = wanted.values().map(|w| w.0).min().unwrap_or_default();
        let found: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, records FROM event_history_blocks WHERE id = ANY($1) AND event_time >= $2",
        )
        .bind(&ids)
        .bind(oldest)
        .fetch_all(pool)
        .await?;
        let throughs: Vec<usize> = found.iter().map(|(id, _)| wanted.get(id).map_or(0, |w| w.1)).collect();
        // Up to a page's worth of blocks to inflate (a millisecond or so): off the async runtime.
        records = tokio::task::spawn_blocking(move || {
            found
                .into_iter()
                .zip(throughs)
                .map(|((id, bytes), through)| {
                    let unpacked = blocks::unpack(&bytes, through)
                        .map_err(|e| StoreError::Corrupt(format!("block {id}: {e}")))?;
                    Ok((id, unpacked))
                })
                .collect::<Result<_, StoreError>>()
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("inflating blocks panicked: {e}")))??;
    }
    rows.into_iter()
        .map(|row| {
            let record = match (row.record, row.block_id, row.block_slot) {
                (Some(record), _, _) => record,
                (None, Some(block), Some(slot)) => {
                    records.get(&block).and_then(|r| r.get(usize::try_from(slot).ok()?)).cloned().ok_or_else(
                        || {
                            StoreError::Corrupt(format!(
                                "event {}: slot {slot} of block {block} is missing",
                                row.event_id
                            ))
                        },
                    )?
                }
                (None, _, _) => {
                    return Err(StoreError::Corrupt(format!(
                        "event {} has neither record nor block",
                        row.event_id
                    )));
                }
            };
            Ok(Entry {
                id: row.id,
                event_time: row.event_time,
                account_id: row.account_id,
                region: row.region,
                event_id: row.event_id,
                event_name: row.event_name,
                event_source: row.event_source,
                read_only: row.read_only,
                username: row.username,
                access_key_id: row.access_key_id,
                record,
            })
        })
        .collect()
}

/// The conditions every lookup shares (scope, time bounds, page start), on a table whose
/// columns are named as in event_history.
fn push_common(query: &mut QueryBuilder<'_, Postgres>, lookup: &Lookup) {
    if let Some(account) = &lookup.account_id {
        query.push(" AND account_id = ").push_bind(account.as_str().to_owned());
    }
    if let Some(region) = &lookup.region {
        query.push(" AND region = ").push_bind(region.as_str().to_owned());
    }
    if let Some(start) = lookup.start_time {
        query.push(" AND event_time >= ").push_bind(start);
    }
    if let Some(end) = lookup.end_time {
        query.push(" AND event_time <= ").push_bind(end);
    }
    if let Some(after) = lookup.after {
        query
            .push(" AND (event_time, id) < (")
            .push_bind(after.event_time)
            .push(", ")
            .push_bind(after.id)
            .push(")");
    }
    query.push(" ORDER BY event_time DESC, id DESC LIMIT ").push_bind(lookup.limit);
}

/// One page of a lookup, newest first: at most `lookup.limit` events.
pub async fn lookup(pool: &PgPool, lookup: &Lookup) -> Result<Vec<Entry>, StoreError> {
    let mut query = QueryBuilder::<Postgres>::new("");
    let resource_kind = match lookup.attribute.as_ref().map(|a| a.key) {
        Some(AttributeKey::ResourceType) => Some("T"),
        Some(AttributeKey::ResourceName) => Some("N"),
        _ => None,
    };
    match (&lookup.attribute, resource_kind) {
        (Some(attribute), Some(kind)) => {
            // The page comes from the postings' index, then the events by primary key.
            query.push(format!(
                "SELECT {} FROM (SELECT event_time, id FROM event_history_resources WHERE kind = ",
                prefixed("h.")
            ));
            query
                .push_bind(kind)
                .push("::\"char\" AND value = ")
                .push_bind(index_key(&attribute.value).into_owned());
            push_common(&mut query, lookup);
            query.push(
                ") r JOIN event_history h ON h.id = r.id AND h.event_time = r.event_time
                 ORDER BY h.event_time DESC, h.id DESC",
            );
        }
        (attribute, _) => {
            query.push(format!("SELECT {COLUMNS} FROM event_history WHERE insight = "));
            query.push_bind(lookup.insight);
            if let Some(attribute) = attribute {
                let column = match attribute.key {
                    AttributeKey::EventId => "event_id",
                    AttributeKey::EventName => "event_name",
                    AttributeKey::EventSource => "event_source",
                    AttributeKey::Username => "username",
                    AttributeKey::AccessKeyId => "access_key_id",
                    AttributeKey::ReadOnly => "read_only",
                    AttributeKey::ResourceType | AttributeKey::ResourceName => "",
                };
                query.push(format!(" AND {column} = "));
                match attribute.key {
                    AttributeKey::ReadOnly => query.push_bind(attribute.value == "true"),
                    // eventIDs are at most 128 characters: always kept as they are.
                    AttributeKey::EventId => query.push_bind(attribute.value.clone()),
                    _ => query.push_bind(index_key(&attribute.value).into_owned()),
                };
            }
            push_common(&mut query, lookup);
        }
    }
    // Unnamed statements are planned with the actual values: the best index for a lookup
    // depends on them (a rare user name or a common event name, one account or all).
    let rows = query.build_query_as::<Found>().persistent(false).fetch_all(pool).await?;
    let mut entries = with_records(pool, rows).await?;
    for entry in &mut entries {
        restore_long_values(entry);
    }
    Ok(entries)
}

/// Puts back the values the index keeps as digests (see [`index_key`]), from the record.
fn restore_long_values(entry: &mut Entry) {
    let hashed = |v: &Option<String>| v.as_deref().is_some_and(is_digest_key);
    if !is_digest_key(&entry.event_name)
        && !is_digest_key(&entry.event_source)
        && !hashed(&entry.username)
        && !hashed(&entry.access_key_id)
    {
        return;
    }
    let Ok(view) = crate::model::record::RecordView::parse(&entry.record) else { return };
    let fields = HistoryFields::of(&entry.record, &view);
    entry.event_name = fields.event_name;
    entry.event_source = fields.event_source;
    entry.username = fields.username;
    entry.access_key_id = fields.access_key_id;
}

fn prefixed(prefix: &str) -> String {
    COLUMNS.split(", ").map(|c| format!("{prefix}{c}")).collect::<Vec<_>>().join(", ")
}

/// Weeks of partitions created ahead of this one.
const WEEKS_AHEAD: i64 = 2;

/// The partitioned tables and their partitions' name prefixes.
const TABLES: [(&str, &str); 3] = [
    ("event_history", "event_history_w"),
    ("event_history_resources", "event_history_resources_w"),
    ("event_history_blocks", "event_history_blocks_w"),
];

/// Monday of the week holding `day`: partitions are weekly. Weekly rather than daily because a
/// lookup without time bounds plans and scans every partition: 14 weeks cost a few milliseconds
/// where 90 days cost tens.
pub fn week_start(day: NaiveDate) -> NaiveDate {
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

/// Keeps the weekly partitions: this week's and the next weeks' exist; a past week within the
/// retention gets its partition when the default partition holds events of it (a backfill);
/// partitions entirely older than the retention are dropped (so an event is kept for the
/// retention and at most a week more), and so are default-partition rows that old. Safe to run
/// from several processes at once.
pub async fn maintain_partitions(
    pool: &PgPool,
    today: NaiveDate,
    retention_days: i64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('event_history:partitions'))")
        .execute(&mut *tx)
        .await?;
    let oldest_kept = today - Duration::days(retention_days);
    let cutoff = oldest_kept.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    for (table, _) in TABLES {
        let deleted = sqlx::query(&format!("DELETE FROM {table}_default WHERE event_time < $1"))
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() > 0 {
            tracing::info!(table, rows = deleted.rows_affected(), "expired event history rows dropped");
        }
    }
    let backfilled: Vec<NaiveDate> = sqlx::query_scalar(
        "SELECT DISTINCT (event_time AT TIME ZONE 'UTC')::date FROM event_history_default WHERE event_time >= $1",
    )
    .bind(cutoff)
    .fetch_all(&mut *tx)
    .await?;
    let this_week = week_start(today);
    let mut weeks: Vec<NaiveDate> = (0..=WEEKS_AHEAD).map(|w| this_week + Duration::days(7 * w)).collect();
    weeks.extend(backfilled);
    ensure_weeks(&mut tx, weeks).await?;
    for (table, _) in TABLES {
        for (name, week) in partitions(&mut tx, table).await? {
            if week + Duration::days(7) <= oldest_kept {
                sqlx::query(&format!("DROP TABLE {name}")).execute(&mut *tx).await?;
                tracing::info!(partition = %name, "expired event history partition dropped");
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Makes sure the weeks holding `days` have their partitions (the benchmark fills them this way).
pub async fn create_partitions(pool: &PgPool, days: Vec<NaiveDate>) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('event_history:partitions'))")
        .execute(&mut *tx)
        .await?;
    ensure_weeks(&mut tx, days).await?;
    tx.commit().await?;
    Ok(())
}

/// Creates the partitions of the weeks holding `days` that do not exist yet.
async fn ensure_weeks(tx: &mut sqlx::PgConnection, days: Vec<NaiveDate>) -> Result<(), StoreError> {
    let mut weeks: Vec<NaiveDate> = days.into_iter().map(week_start).collect();
    weeks.sort();
    weeks.dedup();
    for (table, prefix) in TABLES {
        let existing = partitions(&mut *tx, table).await?;
        for week in &weeks {
            let name = format!("{prefix}{}", week.format("%Y%m%d"));
            if !existing.iter().any(|(n, _)| *n == name) {
                create_partition(&mut *tx, table, &name, *week).await?;
            }
        }
    }
    Ok(())
}

/// The weekly partitions of `table` with the Monday they start on.
async fn partitions(
    tx: &mut sqlx::PgConnection,
    table: &str,
) -> Result<Vec<(String, NaiveDate)>, StoreError> {
    let prefix = TABLES.iter().find(|(t, _)| *t == table).map(|(_, p)| *p).unwrap_or_default();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1",
    )
    .bind(table)
    .fetch_all(&mut *tx)
    .await?;
    Ok(names
        .into_iter()
        .filter_map(|name| {
            let week = NaiveDate::parse_from_str(name.strip_prefix(prefix)?, "%Y%m%d").ok()?;
            Some((name, week))
        })
        .collect())
}

/// Creates the partition of the week starting on `week`, taking over the default partition's rows
/// of that week (a partition cannot be added while the default one holds rows in its range).
async fn create_partition(
    tx: &mut sqlx::PgConnection,
    table: &str,
    name: &str,
    week: NaiveDate,
) -> Result<(), StoreError> {
    let from = week.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let to = from + Duration::days(7);
    // Records above ~256 bytes are compressed inline (lz4) rather than at TOAST's 2 kB threshold.
    // Blocks (deflated already) stay in line up to a page.
    let storage = match table {
        "event_history" => " WITH (toast_tuple_target = 256)",
        "event_history_blocks" => " WITH (toast_tuple_target = 8160)",
        _ => "",
    };
    sqlx::query(&format!(
        "CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION){storage}"
    ))
    .execute(&mut *tx)
    .await?;
    // No event may reach the default partition between the move and the attach (readers go on).
    sqlx::query(&format!("LOCK TABLE {table}_default IN SHARE ROW EXCLUSIVE MODE")).execute(&mut *tx).await?;
    let moved = sqlx::query(&format!(
        "WITH moved AS (DELETE FROM {table}_default WHERE event_time >= $1 AND event_time < $2 RETURNING *)
         INSERT INTO {name} SELECT * FROM moved"
    ))
    .bind(from)
    .bind(to)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{}') TO ('{}')",
        from.to_rfc3339(),
        to.to_rfc3339()
    ))
    .execute(&mut *tx)
    .await?;
    tracing::debug!(partition = %name, moved = moved.rows_affected(), "event history partition created");
    Ok(())
}

/// How many events the index holds (for the benchmark and tests).
pub async fn count(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM event_history").fetch_one(pool).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> HistoryFields {
        HistoryFields {
            insight: false,
            event_name: "RunInstances".into(),
            event_source: "ec2.amazonaws.com".into(),
            read_only: Some(false),
            username: None,
            access_key_id: None,
            resource_types: Vec::new(),
            resource_names: Vec::new(),
        }
    }

    #[test]
    fn full_blocks_are_an_accounts_own_the_rest_is_pooled_by_week_and_nothing_is_lost() {
        let monday =
            chrono::DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z").unwrap().with_timezone(&Utc);
        // 20 events of A, 3 of B, 2 of C this week; 1 of C the week before; and a copy of one of A.
        let mut specs: Vec<(&str, String, DateTime<Utc>)> = (0..20)
            .map(|i| ("111111111111", format!("a-{i}"), monday + Duration::seconds(i)))
            .chain((0..3).map(|i| ("222222222222", format!("b-{i}"), monday + Duration::seconds(100 + i))))
            .chain((0..2).map(|i| ("333333333333", format!("c-{i}"), monday + Duration::seconds(200 + i))))
            .collect();
        specs.push(("333333333333", "c-old".into(), monday - Duration::days(1)));
        specs.push(("111111111111", "a-3".into(), monday + Duration::seconds(3)));
        let records: Vec<String> =
            specs.iter().map(|(_, id, _)| format!("{{\"eventID\":\"{id}\"}}")).collect();
        let entries: Vec<NewEntry<'_>> = specs
            .iter()
            .zip(&records)
            .map(|((account, id, time), record)| NewEntry {
                event_time: *time,
                account_id: account,
                region: "us-east-1",
                event_id: id,
                fields: fields(),
                record,
            })
            .collect();
        let layout = Layout::of(&entries);
        assert_eq!(layout.kept.len(), 26, "the copy is left out");
        // A's 16 newest alone; then the pools, week by week: last week's C; A's 4 oldest, B and C.
        let sizes: Vec<usize> = (0..layout.blocks.len())
            .map(|b| layout.places.iter().filter(|p| p.0 == b as i32).count())
            .collect();
        assert_eq!(sizes, vec![16, 1, 9], "last week pooled first (weeks in order)");
        for (position, &(block, slot)) in layout.places.iter().enumerate() {
            let entry = &entries[layout.kept[position]];
            let packed = &layout.blocks[block as usize];
            let unpacked = blocks::unpack(&packed.bytes, slot as usize).unwrap();
            assert_eq!(unpacked[slot as usize], entry.record, "each record is where its row says");
            assert!(packed.event_time >= entry.event_time, "a block's time is its newest record's");
            assert_eq!(week_start(packed.event_time.date_naive()), week_start(entry.event_time.date_naive()));
        }
        let first = blocks::unpack(&layout.blocks[0].bytes, 0).unwrap();
        assert_eq!(first[0], "{\"eventID\":\"a-19\"}", "an account's own block is newest first");
    }
}
