//! Shard ownership: one owner at a time, through a lease with a fencing generation. A worker claims
//! shards nobody holds, renews what it holds, gives them up when it stops; every write of progress
//! checks the generation it claimed ([`check_fence`]), so a worker that lost a lease can commit
//! nothing.

use std::collections::HashMap;

use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::model::shard::{ShardId, ShardInfo, Source};
use crate::model::{AccountId, Region};
use crate::store::StoreError;

/// A lease a worker holds on a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Lease {
    pub shard_id: ShardId,
    pub generation: i64,
}

/// A lease just claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Claim {
    #[sqlx(flatten)]
    pub lease: Lease,
    /// The lease had expired under another worker (not given up, never held): a takeover.
    pub taken_over: bool,
}

/// Claims up to `limit` shards nobody holds: never taken or given up first, then those of
/// workers whose heartbeat expired (a takeover). The claimer's own heartbeat must be alive
/// ([`renew`]).
pub async fn claim(pool: &PgPool, owner: &str, limit: i64) -> Result<Vec<Claim>, StoreError> {
    let mut claims = claim_where(pool, owner, limit, "owner IS NULL").await?;
    let room = limit - claims.len() as i64;
    claims.extend(
        claim_where(pool, owner, room, "owner IN (SELECT owner FROM workers WHERE expires_at < now())")
            .await?,
    );
    Ok(claims)
}

/// Claims up to `limit` leases matching `filter`, through its index: locked ones are skipped (a
/// concurrent claimer has them), and each is checked again once locked.
async fn claim_where(
    pool: &PgPool,
    owner: &str,
    limit: i64,
    filter: &'static str,
) -> Result<Vec<Claim>, StoreError> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as::<_, Claim>(&format!(
        "WITH picked AS (SELECT shard_id, owner FROM shard_leases WHERE {filter}
                         ORDER BY shard_id LIMIT $2 FOR UPDATE SKIP LOCKED)
         UPDATE shard_leases l SET owner = $1, generation = l.generation + 1
         FROM picked WHERE l.shard_id = picked.shard_id
         RETURNING l.shard_id, l.generation, picked.owner IS NOT NULL AS taken_over"
    ))
    .bind(owner)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Renews `owner`'s heartbeat, which holds all its leases at once: one row however many shards.
/// `None`: every lease it held is still its own. `Some`: the heartbeat had expired (a stall longer
/// than the TTL), so others may have taken shards over; these are the leases it still holds.
pub async fn renew(
    conn: &mut PgConnection,
    owner: &str,
    ttl_ms: i64,
) -> Result<Option<Vec<Lease>>, StoreError> {
    let alive: bool = sqlx::query_scalar(
        "WITH prior AS (SELECT expires_at > now() AS alive FROM workers WHERE owner = $1)
         INSERT INTO workers (owner, expires_at)
         VALUES ($1, now() + make_interval(secs => $2::double precision / 1000))
         ON CONFLICT (owner) DO UPDATE SET expires_at = EXCLUDED.expires_at
         RETURNING coalesce((SELECT alive FROM prior), true)",
    )
    .bind(owner)
    .bind(ttl_ms)
    .fetch_one(&mut *conn)
    .await?;
    if alive {
        return Ok(None);
    }
    Ok(Some(held(conn, owner).await?))
}

/// The leases `owner` holds.
pub async fn held(db: impl PgExecutor<'_>, owner: &str) -> Result<Vec<Lease>, StoreError> {
    Ok(sqlx::query_as::<_, Lease>("SELECT shard_id, generation FROM shard_leases WHERE owner = $1")
        .bind(owner)
        .fetch_all(db)
        .await?)
}

/// Gives the leases of `ids` up (to balance the fleet): others claim them at once, no takeover.
pub async fn give_up(pool: &PgPool, owner: &str, ids: &[ShardId]) -> Result<(), StoreError> {
    sqlx::query("UPDATE shard_leases SET owner = NULL WHERE owner = $1 AND shard_id = ANY($2)")
        .bind(owner)
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(())
}

/// Gives every lease of `owner` up (graceful shutdown), so others take over at once.
pub async fn release_all(pool: &PgPool, owner: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE shard_leases SET owner = NULL WHERE owner = $1")
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM workers WHERE owner = $1").bind(owner).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Live workers and all shards: a worker's fair share is `shards / workers`, rounded up.
pub async fn fleet(db: impl PgExecutor<'_>) -> Result<(i64, i64), StoreError> {
    Ok(sqlx::query_as(
        "SELECT (SELECT count(*) FROM workers WHERE expires_at > now()), (SELECT count(*) FROM shard_leases)",
    )
    .fetch_one(db)
    .await?)
}

/// Forgets workers dead for an hour that hold nothing any more.
pub async fn forget_dead_workers(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM workers w WHERE expires_at < now() - interval '1 hour'
         AND NOT EXISTS (SELECT 1 FROM shard_leases l WHERE l.owner = w.owner)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// How many shards a worker holding `held` may claim (positive) or should give up (negative) to
/// stay near its fair share. The share has a little slack above it: new shards find room at once,
/// and shards do not bounce between workers on every round (one over the slack gives down to the
/// share, so the others have room to take them). A round moves half the way at a time, at least
/// `step`: a dead worker's shards are taken back in a few rounds, and workers starting together
/// do not each grab the whole fleet first.
pub fn rebalance(held: i64, live_workers: i64, shards: i64, step: i64) -> i64 {
    let live = live_workers.max(1);
    let share = (shards + live - 1) / live;
    let ceiling = share + (share / 20).max(1);
    if held > ceiling {
        let excess = held - share;
        -excess.min(step.max(excess / 2))
    } else {
        let room = ceiling - held;
        room.min(step.max(room / 2))
    }
}

/// Fails unless `lease` is still current; holds a share lock on the lease row until the
/// transaction ends, so no takeover can slip in before the commit.
pub async fn check_fence(conn: &mut sqlx::PgConnection, owner: &str, lease: Lease) -> Result<(), StoreError> {
    let current: Option<i64> = sqlx::query_scalar(
        "SELECT l.generation FROM shard_leases l JOIN workers w ON w.owner = l.owner
         WHERE l.shard_id = $1 AND l.owner = $2 AND l.generation = $3 AND w.expires_at > now()
         FOR SHARE OF l",
    )
    .bind(lease.shard_id)
    .bind(owner)
    .bind(lease.generation)
    .fetch_optional(conn)
    .await?;
    match current {
        Some(_) => Ok(()),
        None => Err(lost(lease)),
    }
}

/// The error of a write whose lease is no longer held.
pub fn lost(lease: Lease) -> StoreError {
    StoreError::Fenced(format!("lease on shard {} (generation {}) is lost", lease.shard_id, lease.generation))
}

/// The shards of `leases` still held under these generations, share-locked like [`check_fence`]
/// until the transaction ends: one statement for a whole group of shards.
pub async fn check_fences(
    conn: &mut sqlx::PgConnection,
    owner: &str,
    leases: &[Lease],
) -> Result<std::collections::HashSet<ShardId>, StoreError> {
    let shards: Vec<i64> = leases.iter().map(|l| l.shard_id.0).collect();
    let generations: Vec<i64> = leases.iter().map(|l| l.generation).collect();
    let held: Vec<ShardId> = sqlx::query_scalar(
        "SELECT l.shard_id FROM shard_leases l JOIN workers w ON w.owner = l.owner
         JOIN unnest($2::bigint[], $3::bigint[]) AS u(shard_id, generation)
           ON u.shard_id = l.shard_id AND u.generation = l.generation
         WHERE l.owner = $1 AND w.expires_at > now()
         FOR SHARE OF l",
    )
    .bind(owner)
    .bind(&shards)
    .bind(&generations)
    .fetch_all(conn)
    .await?;
    Ok(held.into_iter().collect())
}

/// A transaction that can commit nothing once the lease is lost: the lease row stays
/// share-locked until it ends.
pub async fn begin_fenced(
    pool: &PgPool,
    owner: &str,
    lease: Lease,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
    let mut tx = pool.begin().await?;
    check_fence(&mut tx, owner, lease).await?;
    Ok(tx)
}

/// The shards of `ids` (unknown ones left out).
pub async fn infos(pool: &PgPool, ids: &[ShardId]) -> Result<Vec<ShardInfo>, StoreError> {
    let rows: Vec<(ShardId, String, String, String)> =
        sqlx::query_as("SELECT id, account_id, region, source FROM shards WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    rows.into_iter()
        .map(|(id, account, region, source)| {
            Ok(ShardInfo {
                id,
                account: AccountId::parse("account_id", &account)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                region: Region::parse("region", &region).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                source: Source::parse("source", &source).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            })
        })
        .collect()
}

/// The last sequence number handed out in each shard of `ids` (0: none yet).
pub async fn heads(pool: &PgPool, ids: &[ShardId]) -> Result<HashMap<ShardId, i64>, StoreError> {
    let rows: Vec<(ShardId, i64)> = sqlx::query_as("SELECT id, next_seq - 1 FROM shards WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::rebalance;

    #[test]
    fn a_worker_moves_toward_its_fair_share_half_the_way_at_a_time() {
        // Alone: claims half of everything, then half of the rest.
        assert_eq!(rebalance(0, 1, 34_000, 500), 17_850);
        assert_eq!(rebalance(17_850, 1, 34_000, 500), 8_925);
        // A second worker joined: the first gives half its excess up, the newcomer claims.
        assert_eq!(rebalance(34_000, 2, 34_000, 500), -8_500);
        assert_eq!(rebalance(17_900, 2, 34_000, 500), -500);
        assert_eq!(rebalance(0, 2, 34_000, 500), 8_925);
        // At its share: room up to the slack (850 here) for new shards, no more.
        assert_eq!(rebalance(17_000, 2, 34_000, 500), 500);
        assert_eq!(rebalance(17_800, 2, 34_000, 500), 50);
        assert_eq!(rebalance(17_850, 2, 34_000, 500), 0);
        // A worker of three died: the two left move half the way to the new share each round.
        assert_eq!(rebalance(11_334, 2, 34_000, 500), 3_258);
        // Rounding up: three workers over 10 shards hold 4, 3, 3 and nobody gives up.
        assert!(rebalance(4, 3, 10, 500) >= 0);
        // Its own heartbeat not counted yet: still claims.
        assert_eq!(rebalance(0, 0, 10, 500), 11);
    }
}
