//! Log file integrity validation (`orgtrail validate`): walks a trail's digest chains the way
//! `aws cloudtrail validate-logs` does (spec §3.6) and goes further in two places.
//!
//! - **Deleted digests.** A digest a signed digest points to that is gone is `not found`, as in
//!   validate-logs; in addition every digest deleted between it and the next older survivor is
//!   named ([`gaps`]), and the newest digest in range is checked against its successor just past
//!   the range, whose signed pointer names it.
//! - **Forged log files.** Every log file in the account and region folders whose delivery time
//!   lies inside the span the chains cover must be listed by a validly signed digest; one that is
//!   not is `not listed in any digest`.
//!
//! What no reader of the bucket can detect, and this does not claim to:
//! - the tail of a chain: the newest digests of a chain with no surviving successor (the newest
//!   of all, or the last ones before validation was turned off) can be deleted without trace,
//!   because "no digest yet" and "validation off" look the same as "deleted";
//! - a whole chain (every digest of an account and region) deleted;
//! - log files delivered while validation was off, or after the newest digest minus one period
//!   (reported as not covered, not as INVALID).
//!
//! S3 reads and public-key lookups come in through [`ObjectSource`] and [`KeySource`].

mod check;
pub mod gaps;
pub mod layout;
pub mod report;
pub mod source;
mod walk;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;

pub use check::VerifiedDigest;
pub use layout::{ChainLocation, TrailLocation};
pub use report::{ChainReport, Entry, Outcome, Problem, Report, Summary, Uncovered, UncoveredLogFile};
pub use source::{KeySource, ObjectSource, S3Source, SourceError, StoredObject};

use crate::features::integrity::keys;
use walk::Walk;

/// validate-logs lists digests ending up to this long after the requested end: a log file
/// delivered just before the end is listed by a digest written after it.
pub(crate) const LOOK_AHEAD: Duration = Duration::hours(1);
/// The period assumed when a chain shows none (only starting digests): CloudTrail's hour.
pub(crate) const DEFAULT_PERIOD: Duration = Duration::hours(1);
/// The longest digest period a writer may use (`digest_period_seconds` ≤ 86400): the successor of
/// the newest digest in range ends at most this long after it.
pub(crate) const MAX_PERIOD: Duration = Duration::days(1);
/// Log files fetched at once per digest.
pub(crate) const LOG_FILE_CONCURRENCY: usize = 8;
/// (account, region) chains walked at once.
const CHAIN_CONCURRENCY: usize = 4;

/// Which accounts to validate.
#[derive(Debug, Clone)]
pub enum Accounts {
    Given(Vec<String>),
    /// Every account folder under `[prefix/]AWSLogs/[o-ID/]` (organization trails).
    Discover,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub trail: TrailLocation,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub accounts: Accounts,
    /// None: every region folder under `ACCOUNT/CloudTrail-Digest/`.
    pub regions: Option<Vec<String>>,
}

/// Validates every selected (account, region) chain of the trail.
pub async fn validate(
    objects: &dyn ObjectSource,
    public_keys: &dyn KeySource,
    request: &Request,
) -> Result<Report, SourceError> {
    let trail = &request.trail;
    let accounts = match &request.accounts {
        Accounts::Given(accounts) => accounts.clone(),
        Accounts::Discover => {
            let root = trail.root();
            folders(objects, &trail.bucket, &root, |name| crate::model::AccountId::parse("", name).is_ok())
                .await?
        }
    };
    let mut keys_by_region: HashMap<String, Arc<HashMap<String, Vec<u8>>>> = HashMap::new();
    let mut selected = Vec::new();
    for account in accounts {
        let regions = match &request.regions {
            Some(regions) => regions.clone(),
            None => {
                let folder = format!("{}{account}/CloudTrail-Digest/", trail.root());
                folders(objects, &trail.bucket, &folder, |name| crate::model::Region::parse("", name).is_ok())
                    .await?
            }
        };
        for region in regions {
            if !keys_by_region.contains_key(&region) {
                keys_by_region.insert(region.clone(), fetch_keys(public_keys, &region, request).await?);
            }
            let region_keys = keys_by_region[&region].clone();
            let (Ok(account), Ok(region)) = (
                crate::model::AccountId::parse("account", &account),
                crate::model::Region::parse("region", &region),
            ) else {
                return Err(SourceError(format!("{account}/{region} is not an account and a region")));
            };
            selected.push((ChainLocation { trail: trail.clone(), account, region }, region_keys));
        }
    }
    // Chains are independent: walk a few at once (each walk is a sequence of S3 round trips),
    // reports in selection order.
    let walks = selected.into_iter().map(|(chain, region_keys)| async move {
        Walk::new(objects, chain, region_keys, request).await?.run().await
    });
    let chains: Vec<ChainReport> = futures::stream::iter(walks)
        .buffered(CHAIN_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    Ok(Report::new(trail.trail_arn.clone(), request.start, request.end, chains))
}

/// Names of the folders directly under `prefix` that `accept` takes.
async fn folders(
    objects: &dyn ObjectSource,
    bucket: &str,
    prefix: &str,
    accept: impl Fn(&str) -> bool,
) -> Result<Vec<String>, SourceError> {
    let found = objects.list_folders(bucket, prefix).await?;
    Ok(found
        .iter()
        .filter_map(|folder| folder.strip_prefix(prefix)?.strip_suffix('/'))
        .filter(|name| accept(name))
        .map(str::to_owned)
        .collect())
}

/// The region's keys for the range (as validate-logs asks: start to end + 2 h), by fingerprint.
/// Fingerprints are computed here, never taken from the key service.
async fn fetch_keys(
    public_keys: &dyn KeySource,
    region: &str,
    request: &Request,
) -> Result<Arc<HashMap<String, Vec<u8>>>, SourceError> {
    let listed = public_keys.public_keys(region, request.start, request.end + Duration::hours(2)).await?;
    Ok(Arc::new(listed.into_iter().map(|der| (keys::fingerprint(&der), der)).collect()))
}
