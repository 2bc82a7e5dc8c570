//! The digest writer: for every trail with log file validation on (and logging), every digest
//! period, per (account, region) the trail covers, one signed digest listing the log files
//! delivered since the previous one, chained to it — written even when no file was delivered.
//!
//! Windows: a chain starts when validation (or logging) is switched on; its first digest (a
//! starting digest, every `previousDigest*` null) ends at the next multiple of the period since
//! the Unix epoch, and each further digest covers exactly one period. So the digest that should
//! exist for any instant can be named, which `orgtrail validate` uses to name deleted digests.
//! A file committed after its window's digest was sealed is listed by the next digest.
//! When validation or logging is switched off, or the trail is deleted, one final digest at the
//! next boundary lists what is left; switching on again starts a new chain.
//!
//! Covered regions: the trail's home region, and for multi-region trails the organization's
//! declared regions plus every region events were ever received for from the account.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use sqlx::PgPool;

use crate::features::integrity::chains::{self as digests, ChainHead, PendingDigest, SealedDigest};
use crate::features::integrity::digest::{self, Digest, DigestLogFile, digest_time};
use crate::features::integrity::keyring::{Keyring, KeyringError};
use crate::features::integrity::keys::SIGNATURE_ALGORITHM;
use crate::integrations::s3::S3Sink;
use crate::model::layout::Root;
use crate::model::{AccountId, OrganizationId, Region};
use crate::pipeline::failpoints::abort_at as failpoint;
use crate::pipeline::route::Snapshot;
use crate::store::StoreError;
use crate::store::accounts::AccountStatus;

/// CloudTrail's digest period. Shorter periods (down to a minute) are for tests and demos.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(3600);

/// How often the writer looks for due digests.
const PASS_EVERY: Duration = Duration::from_secs(1);

/// Digests one chain may catch up on in one pass (after downtime), so other chains keep moving.
const CATCH_UP_PER_PASS: usize = 24;

/// Sealed digests written per pass.
const PUTS_PER_PASS: i64 = 200;

/// The end of the window that starts at `start`: the first multiple of the period after it.
pub fn window_end(start: DateTime<Utc>, period_seconds: i64) -> DateTime<Utc> {
    let period = period_seconds.max(1);
    let next = (start.timestamp().div_euclid(period) + 1) * period;
    DateTime::from_timestamp(next, 0).unwrap_or(start)
}

#[derive(Debug, thiserror::Error)]
enum DigestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyringError),
    #[error("{0}")]
    Build(String),
}

type ChainKey = (String, String, String);

fn chain_key(head: &ChainHead) -> ChainKey {
    (head.trail_arn.clone(), head.account_id.clone(), head.region.clone())
}

pub struct DigestWriter {
    pool: PgPool,
    sink: S3Sink,
    keyring: Keyring,
    period_seconds: i64,
    last_pass: Option<Instant>,
    /// Per chain and chain start: no digest is due before this instant.
    not_before: HashMap<(ChainKey, DateTime<Utc>), DateTime<Utc>>,
    /// Per pending digest: no PUT attempt before this instant (backoff after failures).
    retry_at: HashMap<(String, String), (Instant, Duration)>,
    /// What the last sealing pass saw (configuration version, newest shard) and the earliest
    /// instant a digest of any chain is due: until one of them moves, there is nothing to seal,
    /// and a pass reads no trail, account or chain (at organization scale, tens of thousands).
    settled: Option<(Inputs, DateTime<Utc>)>,
}

/// What decides which chains exist: the configuration version and the newest shard.
type Inputs = (i64, i64);

impl DigestWriter {
    pub fn new(pool: PgPool, sink: S3Sink, keyring: Keyring, period: Duration) -> Self {
        Self {
            pool,
            sink,
            keyring,
            period_seconds: period.as_secs().max(1) as i64,
            last_pass: None,
            not_before: HashMap::new(),
            retry_at: HashMap::new(),
            settled: None,
        }
    }

    /// Passes until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            self.pass().await;
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(PASS_EVERY) => {}
            }
        }
    }

    /// Seals the digests that are due (with a fresh snapshot of the control plane, when anything
    /// may be due) and writes sealed ones; cheap when nothing is due.
    pub async fn pass(&mut self) {
        if self.last_pass.is_some_and(|at| at.elapsed() < PASS_EVERY) {
            return;
        }
        self.last_pass = Some(Instant::now());
        match self.inputs().await {
            Ok(inputs) if self.settled.is_some_and(|(seen, due)| seen == inputs && Utc::now() < due) => {}
            Ok(inputs) => match Snapshot::load(&self.pool).await {
                Ok(snapshot) => match self.seal_due(&snapshot).await {
                    Ok(due) => self.settled = Some((inputs, due)),
                    Err(error) => tracing::warn!(%error, "digest pass failed"),
                },
                Err(error) => tracing::warn!(%error, "digest writer cannot load trails"),
            },
            Err(error) => tracing::warn!(%error, "digest writer cannot read the configuration version"),
        }
        if let Err(error) = self.write_pending().await {
            tracing::warn!(%error, "writing digests failed");
        }
    }

    async fn inputs(&self) -> Result<Inputs, StoreError> {
        Ok(sqlx::query_as(
            "SELECT (SELECT version FROM config_version), (SELECT coalesce(max(id), 0) FROM shards)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// The chains that should be running now, as fresh chain heads.
    async fn active_chains(&self, snapshot: &Snapshot) -> Result<Vec<ChainHead>, StoreError> {
        let mut regions_by_account: HashMap<String, HashSet<String>> = HashMap::new();
        for (account, region) in digests::shard_pairs(&self.pool).await? {
            regions_by_account.entry(account).or_default().insert(region);
        }
        let active_accounts: Vec<&crate::model::AccountId> = snapshot
            .account_status
            .iter()
            .filter(|(_, status)| **status == AccountStatus::Active)
            .map(|(account, _)| account)
            .collect();
        let mut chains = Vec::new();
        for trail in &snapshot.trails {
            let Some(started) = trail.digest_chain_start() else { continue };
            let organization_id = if trail.settings.is_organization_trail {
                snapshot.organization_id.as_ref().map(|o| o.to_string())
            } else {
                None
            };
            for account in &active_accounts {
                if !(trail.settings.is_organization_trail || trail.owner() == *account) {
                    continue;
                }
                let home = trail.arn.home_region.as_str().to_owned();
                let mut regions: Vec<String> = vec![home.clone()];
                if trail.settings.is_multi_region_trail {
                    let seen = regions_by_account.get(account.as_str()).into_iter().flatten();
                    let declared = snapshot.organization_regions.iter().map(|r| r.as_str().to_owned());
                    for region in declared.chain(seen.cloned()) {
                        if !regions.contains(&region) {
                            regions.push(region);
                        }
                    }
                }
                for region in regions {
                    chains.push(ChainHead {
                        trail_arn: trail.arn.to_string(),
                        account_id: account.as_str().to_owned(),
                        region,
                        trail_id: Some(trail.id),
                        bucket: trail.settings.s3_bucket_name.to_string(),
                        key_prefix: trail.settings.s3_key_prefix.clone(),
                        organization_id: organization_id.clone(),
                        trail_name: trail.arn.name.as_str().to_owned(),
                        home_region: home.clone(),
                        chain_started_at: started,
                        last_end: None,
                        last_bucket: None,
                        last_key: None,
                        last_sha256_hex: None,
                        last_signature_hex: None,
                        closed: false,
                    });
                }
            }
        }
        Ok(chains)
    }

    /// Seals every chain's due digests; returns when the next one is due (now: at once, when a
    /// chain could not be finished).
    async fn seal_due(&mut self, snapshot: &Snapshot) -> Result<DateTime<Utc>, StoreError> {
        let now = Utc::now();
        let mut next_due = DateTime::<Utc>::MAX_UTC;
        let active = self.active_chains(snapshot).await?;
        let active_keys: HashSet<ChainKey> = active.iter().map(chain_key).collect();
        // Chains whose trail stopped validating or logging, or was deleted: one final digest.
        let ending: Vec<ChainHead> = digests::open_chains(&self.pool)
            .await?
            .into_iter()
            .filter(|h| !active_keys.contains(&chain_key(h)))
            .collect();
        let work = active.into_iter().map(|h| (h, true)).chain(ending.into_iter().map(|h| (h, false)));
        for (head, is_active) in work {
            let memo = (chain_key(&head), head.chain_started_at);
            if let Some(at) = self.not_before.get(&memo).filter(|at| now < **at) {
                next_due = next_due.min(*at);
                continue;
            }
            // Caught up only once the chain says when its next digest is due.
            let mut settled = false;
            for _ in 0..CATCH_UP_PER_PASS {
                match self.seal_next(&head, is_active, now).await {
                    Ok(Step::Sealed) => continue,
                    Ok(Step::NotDue(at)) => {
                        self.not_before.insert(memo.clone(), at);
                        next_due = next_due.min(at);
                        settled = true;
                        break;
                    }
                    Ok(Step::Busy) => break,
                    Err(error) => {
                        tracing::warn!(trail = %head.trail_arn, account = %head.account_id, region = %head.region,
                                       %error, "digest not sealed");
                        if let Some(trail_id) = head.trail_id {
                            let _ = digests::record_failure(&self.pool, trail_id, &error.to_string()).await;
                        }
                        break;
                    }
                }
            }
            if !settled {
                next_due = now;
            }
        }
        Ok(next_due)
    }

    /// Seals the chain's next digest if its window has ended.
    async fn seal_next(
        &self,
        wanted: &ChainHead,
        active: bool,
        now: DateTime<Utc>,
    ) -> Result<Step, DigestError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let key = (wanted.trail_arn.as_str(), wanted.account_id.as_str(), wanted.region.as_str());
        let Some(stored) = digests::lock_head(&mut tx, active.then_some(wanted), key).await? else {
            return Ok(Step::Busy);
        };
        if !active && stored.closed {
            return Ok(Step::NotDue(DateTime::<Utc>::MAX_UTC));
        }
        let continues = !active || (!stored.closed && stored.chain_started_at == wanted.chain_started_at);
        // What the head becomes: the wanted location for running chains, the stored one for ending ones.
        let mut next = if active { wanted.clone() } else { stored.clone() };
        let previous = if continues {
            next.chain_started_at = stored.chain_started_at;
            stored.last_end.map(|end| (end, stored.clone()))
        } else {
            None
        };
        let start = previous.as_ref().map(|(end, _)| *end).unwrap_or(next.chain_started_at);
        let end = window_end(start, self.period_seconds);
        if end > now {
            return Ok(Step::NotDue(end));
        }
        let files = digests::take_files(&mut tx, &next, next.chain_started_at, end).await?;
        let bad = |e: crate::model::FieldError| DigestError::Build(e.to_string());
        let region = Region::parse("region", &next.region).map_err(bad)?;
        let account = AccountId::parse("account_id", &next.account_id).map_err(bad)?;
        let home_region = Region::parse("home_region", &next.home_region).map_err(bad)?;
        let organization = next
            .organization_id
            .as_deref()
            .map(|o| OrganizationId::parse("organization_id", o))
            .transpose()
            .map_err(bad)?;
        let root = Root { prefix: &next.key_prefix, organization: organization.as_ref() };
        let object_key = root.digest_key(&account, &region, &next.trail_name, &home_region, end);
        let signer = self.keyring.signer(&region).await?;
        let prev = previous.as_ref().map(|(_, head)| head);
        let content = Digest {
            aws_account_id: next.account_id.clone(),
            digest_start_time: digest_time(start),
            digest_end_time: digest_time(end),
            digest_s3_bucket: next.bucket.clone(),
            digest_s3_object: object_key.clone(),
            digest_public_key_fingerprint: signer.fingerprint.clone(),
            digest_signature_algorithm: SIGNATURE_ALGORITHM.to_owned(),
            newest_event_time: files.iter().map(|f| f.newest_event_time).max().map(digest_time),
            oldest_event_time: files.iter().map(|f| f.oldest_event_time).min().map(digest_time),
            previous_digest_s3_bucket: prev.and_then(|p| p.last_bucket.clone()),
            previous_digest_s3_object: prev.and_then(|p| p.last_key.clone()),
            previous_digest_hash_value: prev.and_then(|p| p.last_sha256_hex.clone()),
            previous_digest_hash_algorithm: prev.map(|_| "SHA-256".to_owned()),
            previous_digest_signature: prev.and_then(|p| p.last_signature_hex.clone()),
            log_files: files
                .iter()
                .map(|f| DigestLogFile {
                    s3_bucket: f.bucket.clone(),
                    s3_object: f.object_key.clone(),
                    hash_value: hex::encode(&f.content_sha256),
                    hash_algorithm: "SHA-256".to_owned(),
                    newest_event_time: digest_time(f.newest_event_time),
                    oldest_event_time: digest_time(f.oldest_event_time),
                })
                .collect(),
        };
        let signed = digest::sign(&content, &signer.key).map_err(|e| DigestError::Build(e.to_string()))?;
        let body = gzip(&signed.json);
        let sealed = SealedDigest {
            bucket: next.bucket.clone(),
            object_key,
            trail_id: next.trail_id,
            body_sha256: aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body).as_ref().to_vec(),
            body,
            signature_hex: signed.signature_hex,
            json_sha256_hex: signed.sha256_hex,
            start,
            end,
            file_ids: files.iter().map(|f| f.id).collect(),
        };
        digests::seal(&mut tx, &next, &sealed, !active).await?;
        tx.commit().await.map_err(StoreError::from)?;
        failpoint("after-digest-seal");
        tracing::debug!(key = %sealed.object_key, files = sealed.file_ids.len(), "digest sealed");
        Ok(Step::Sealed)
    }

    /// PUTs sealed digests (only if absent, or already identical) and confirms them.
    async fn write_pending(&mut self) -> Result<(), StoreError> {
        let now = Instant::now();
        self.retry_at.retain(|_, (at, _)| *at > now - Duration::from_secs(600));
        for pending in digests::pending(&self.pool, PUTS_PER_PASS).await? {
            let id = (pending.bucket.clone(), pending.object_key.clone());
            if self.retry_at.get(&id).is_some_and(|(at, _)| now < *at) {
                continue;
            }
            match self.put(&pending).await {
                Ok(()) => {
                    self.retry_at.remove(&id);
                }
                Err(error) => {
                    tracing::warn!(key = %pending.object_key, %error, "digest delivery failed; will retry");
                    if let Some(trail_id) = pending.trail_id {
                        digests::record_failure(&self.pool, trail_id, &error).await?;
                    }
                    let backoff = self
                        .retry_at
                        .get(&id)
                        .map_or(Duration::from_secs(1), |(_, b)| (*b * 2).min(Duration::from_secs(30)));
                    self.retry_at.insert(id, (Instant::now() + backoff, backoff));
                }
            }
        }
        Ok(())
    }

    async fn put(&self, pending: &PendingDigest) -> Result<(), String> {
        self.sink
            .put_digest(
                &pending.bucket,
                &pending.object_key,
                &pending.body,
                &pending.body_sha256,
                &[("signature", &pending.signature_hex), ("signature-algorithm", SIGNATURE_ALGORITHM)],
            )
            .await
            .map_err(|e| e.to_string())?;
        failpoint("after-digest-put");
        digests::confirm(&self.pool, pending).await.map_err(|e| e.to_string())
    }
}

enum Step {
    Sealed,
    NotDue(DateTime<Utc>),
    /// Another worker holds the chain right now.
    Busy,
}

/// One gzip member, like log files.
fn gzip(json: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 3 + 64), Compression::new(6));
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(json);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn windows_end_on_period_boundaries() {
        assert_eq!(window_end(at("2026-11-24T04:17:31Z"), 3600), at("2026-11-24T05:00:00Z"));
        // A window starting on a boundary lasts a whole period.
        assert_eq!(window_end(at("2026-11-24T05:00:00Z"), 3600), at("2026-11-24T06:00:00Z"));
        assert_eq!(window_end(at("2026-11-24T05:00:00.250Z"), 60), at("2026-11-24T05:01:00Z"));
        assert_eq!(window_end(at("2026-11-24T05:00:59Z"), 60), at("2026-11-24T05:01:00Z"));
    }
}
