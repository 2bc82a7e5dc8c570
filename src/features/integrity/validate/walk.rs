//! One chain's walk: from the newest digest in range back along the signed pointers, checking
//! each digest and the log files it lists, naming what is missing, then the log files no digest
//! lists.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;

use super::layout::{after_day, day_marker};
use super::*;
use crate::features::integrity::digest::DigestLogFile;

/// This chain's digest keys around the range, read once.
#[derive(Debug, Default)]
struct DigestListing {
    /// Digests ending in [start, end + 1 h], by end time.
    in_range: BTreeMap<DateTime<Utc>, String>,
    /// End of the newest digest before start (up to a day before): anchors naming deleted digests.
    predecessor: Option<DateTime<Utc>>,
    /// The oldest digest after end + 1 h: its signed pointer vouches for the newest in range.
    successor: Option<String>,
    /// Regular digests of other trails writing to the same folders: their files are not strays.
    other_trails: Vec<String>,
}

/// What a newer, validly signed digest says about the one before it.
#[derive(Debug, Clone)]
struct Link {
    newer_start: DateTime<Utc>,
    period: Duration,
    previous_hash: Option<String>,
    previous_signature: Option<String>,
}

impl Link {
    fn from(newer: &VerifiedDigest) -> Self {
        Self {
            newer_start: newer.start,
            period: newer.end - newer.start,
            previous_hash: newer.digest.previous_digest_hash_value.clone(),
            previous_signature: newer.digest.previous_digest_signature.clone(),
        }
    }

    fn matches(&self, older: &VerifiedDigest) -> bool {
        self.previous_hash.as_deref() == Some(older.sha256_hex.as_str())
            && self.previous_signature.as_deref() == Some(older.signature_hex.as_str())
    }
}

/// The next digest to look at.
struct Step {
    bucket: String,
    key: String,
    /// Set when a signed pointer led here.
    link: Option<Link>,
}

pub(super) struct Walk<'a> {
    objects: &'a dyn ObjectSource,
    chain: ChainLocation,
    public_keys: Arc<HashMap<String, Vec<u8>>>,
    request: &'a Request,
    listing: DigestListing,
    entries: Vec<Entry>,
    /// (bucket, key) of every log file a validly signed digest lists.
    listed_files: HashSet<(String, String)>,
    /// Windows of the digests walked, valid or not: log files delivered inside must be listed.
    coverage: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// The chain's digest period, from its first regular (non-starting) valid digest.
    period: Option<Duration>,
    visited: HashSet<(String, String)>,
    found: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl<'a> Walk<'a> {
    pub(super) async fn new(
        objects: &'a dyn ObjectSource,
        chain: ChainLocation,
        public_keys: Arc<HashMap<String, Vec<u8>>>,
        request: &'a Request,
    ) -> Result<Self, SourceError> {
        let listing = list_digests(objects, &chain, request).await?;
        Ok(Self {
            objects,
            chain,
            public_keys,
            request,
            listing,
            entries: Vec::new(),
            listed_files: HashSet::new(),
            coverage: Vec::new(),
            period: None,
            visited: HashSet::new(),
            found: None,
        })
    }

    fn bucket(&self) -> &str {
        &self.chain.trail.bucket
    }

    pub(super) async fn run(mut self) -> Result<Option<ChainReport>, SourceError> {
        if self.listing.in_range.is_empty() && self.listing.successor.is_none() {
            return Ok(None);
        }
        self.accept_other_trails().await?;
        let mut next = self.first_step().await?;
        while let Some(step) = next {
            next = self.visit(step).await?;
        }
        self.check_unreached().await?;
        if self.entries.is_empty() {
            return Ok(None);
        }
        let uncovered = self.check_log_folder().await?;
        Ok(Some(ChainReport {
            account_id: self.chain.account.to_string(),
            region: self.chain.region.to_string(),
            entries: self.entries,
            uncovered_log_files: uncovered,
            found_start: self.found.map(|f| f.0),
            found_end: self.found.map(|f| f.1),
        }))
    }

    /// Gets and checks a digest: NotFound, another problem, or verified.
    async fn load(&self, bucket: &str, key: &str) -> Result<Result<VerifiedDigest, Problem>, SourceError> {
        let Some(object) = self.objects.get(bucket, key).await? else { return Ok(Err(Problem::NotFound)) };
        let (bucket, key, region) = (bucket.to_owned(), key.to_owned(), self.chain.region.to_string());
        let public_keys = self.public_keys.clone();
        tokio::task::spawn_blocking(move || {
            check::check_digest(&bucket, &key, &object.body, &object.metadata, &region, &public_keys)
        })
        .await
        .map_err(|e| SourceError(format!("checking a digest failed: {e}")))
    }

    fn accept_listed_files(&mut self, digest: &VerifiedDigest) {
        for file in &digest.digest.log_files {
            self.listed_files.insert((file.s3_bucket.clone(), file.s3_object.clone()));
        }
    }

    /// Files listed by other trails' validly signed digests in the same folders are theirs, not
    /// strays. Their digests are not reported: they belong to another trail's validation.
    async fn accept_other_trails(&mut self) -> Result<(), SourceError> {
        for key in std::mem::take(&mut self.listing.other_trails) {
            if let Ok(digest) = self.load(self.bucket(), &key).await? {
                self.accept_listed_files(&digest);
            }
        }
        Ok(())
    }

    /// Start at the newest digest in range, or where the digest just past the range points if
    /// that is newer: a deleted newest digest is then `not found` rather than unnoticed.
    async fn first_step(&mut self) -> Result<Option<Step>, SourceError> {
        let newest = self.listing.in_range.last_key_value().map(|(time, key)| (*time, key.clone()));
        if let Some(successor_key) = self.listing.successor.clone()
            && let Ok(successor) = self.load(self.bucket(), &successor_key).await?
        {
            // Its log files may include late deliveries of the range.
            self.accept_listed_files(&successor);
            if let Some((bucket, key)) = successor.previous()
                && bucket == self.bucket()
                && let Some(time) = self.chain.digest_time(key)
                && time >= self.request.start
                && time <= self.request.end + LOOK_AHEAD
                && newest.as_ref().is_none_or(|(newest_time, _)| time >= *newest_time)
            {
                let step = Step {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    link: Some(Link::from(&successor)),
                };
                return Ok(Some(step));
            }
        }
        Ok(newest.map(|(_, key)| Step { bucket: self.bucket().to_owned(), key, link: None }))
    }

    /// The newest listed digest ending before `before` not yet visited.
    fn next_older(&self, before: DateTime<Utc>) -> Option<(DateTime<Utc>, Step)> {
        self.listing
            .in_range
            .range(..before)
            .rev()
            .find(|(_, key)| !self.visited.contains(&(self.bucket().to_owned(), (*key).clone())))
            .map(|(time, key)| {
                (*time, Step { bucket: self.bucket().to_owned(), key: key.clone(), link: None })
            })
    }

    fn push_digest(&mut self, bucket: &str, key: &str, outcome: Outcome, inferred: bool) {
        self.entries.push(Entry::Digest {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            outcome,
            inferred,
        });
    }

    /// A digest that cannot be read or trusted still covered its window: files delivered then
    /// are unverifiable and reported.
    fn cover_window_ending(&mut self, end: Option<DateTime<Utc>>, period: Duration) {
        if let Some(end) = end {
            self.coverage.push((end - period, end));
        }
    }

    async fn visit(&mut self, step: Step) -> Result<Option<Step>, SourceError> {
        let Step { bucket, key, link } = step;
        if !self.visited.insert((bucket.clone(), key.clone())) {
            return Ok(None);
        }
        let key_time = self.chain.digest_time(&key).filter(|_| bucket == self.bucket());
        // Where this digest sits among the listed ones: "next older" is relative to it.
        let position = key_time.or(link.as_ref().map(|l| l.newer_start));
        let period = link.as_ref().map(|l| l.period).or(self.period).unwrap_or(DEFAULT_PERIOD);
        let problem = match self.load(&bucket, &key).await? {
            Ok(verified) if link.as_ref().is_none_or(|l| l.matches(&verified)) => {
                return self.accept_valid(verified, position).await;
            }
            Ok(_) => Problem::NotThePrevious,
            Err(problem) => problem,
        };
        let not_found = problem == Problem::NotFound;
        self.push_digest(&bucket, &key, Outcome::Invalid(problem), false);
        self.cover_window_ending(key_time, period);
        let older = position.and_then(|position| self.next_older(position));
        if not_found && let Some(link) = &link {
            let older_end = older.as_ref().map(|(time, _)| *time).or(self.listing.predecessor);
            self.name_deleted_between(older_end, link, &bucket, &key);
        }
        Ok(older.map(|(_, step)| step))
    }

    /// A signed digest pointed to `pointed`, which is gone; the next older surviving digest ends at
    /// `older_end`. Names every digest that must have existed in between (see [`gaps`]), newest
    /// first, within the requested range. Only when the pointer is the key the layout gives for
    /// that boundary: otherwise the chain does not follow the contract and nothing is inferred.
    fn name_deleted_between(
        &mut self,
        older_end: Option<DateTime<Utc>>,
        link: &Link,
        bucket: &str,
        pointed: &str,
    ) {
        let Some(older_end) = older_end else { return };
        if bucket != self.bucket() || pointed != self.chain.digest_key(link.newer_start) {
            return;
        }
        let ends = match gaps::missing_digest_ends(older_end, link.newer_start, link.period) {
            Ok(ends) => ends,
            Err(error) => {
                tracing::debug!(%error, key = pointed, "deleted digests before this one not named");
                return;
            }
        };
        for end in ends.into_iter().rev().filter(|end| *end != link.newer_start && *end >= self.request.start)
        {
            let key = self.chain.digest_key(end);
            if self.visited.insert((bucket.to_owned(), key.clone())) {
                self.push_digest(bucket, &key, Outcome::Invalid(Problem::NotFound), true);
                self.coverage.push((end - link.period, end));
            }
        }
    }

    /// Records a verified digest, checks its log files, and says where the walk goes next: its
    /// predecessor, or after a starting digest the next older listed one (a gap).
    async fn accept_valid(
        &mut self,
        verified: VerifiedDigest,
        position: Option<DateTime<Utc>>,
    ) -> Result<Option<Step>, SourceError> {
        let bucket = verified.digest.digest_s3_bucket.clone();
        let key = verified.digest.digest_s3_object.clone();
        self.push_digest(&bucket, &key, Outcome::Valid, false);
        self.accept_listed_files(&verified);
        self.coverage.push((verified.start, verified.end));
        let found_start = verified.start.max(self.request.start);
        let found_end = verified.end.min(self.request.end);
        self.found = Some(match self.found {
            Some((start, end)) => (start.min(found_start), end.max(found_end)),
            None => (found_start, found_end),
        });
        let previous = verified.previous().map(|(b, k)| (b.to_owned(), k.to_owned()));
        if previous.is_some() && self.period.is_none() {
            self.period = Some(verified.end - verified.start);
        }
        for (file, outcome) in self.check_log_files(&verified.digest.log_files).await? {
            self.entries.push(Entry::LogFile { bucket: file.s3_bucket, key: file.s3_object, outcome });
        }
        if verified.start < self.request.start {
            return Ok(None);
        }
        if let Some((bucket, key)) = previous {
            return Ok(Some(Step { bucket, key, link: Some(Link::from(&verified)) }));
        }
        // A starting digest: validation was (re-)enabled at its start.
        let older = self.next_older(position.unwrap_or(verified.end));
        if let Some((older_end, _)) = &older {
            self.entries.push(Entry::Gap { from: *older_end, to: verified.start });
        }
        Ok(older.map(|(_, step)| step))
    }

    /// Each listed log file against its hash, a few at a time, results in listing order.
    async fn check_log_files(
        &self,
        files: &[DigestLogFile],
    ) -> Result<Vec<(DigestLogFile, Outcome)>, SourceError> {
        let checks = files.iter().map(|file| async move {
            let outcome = match self.objects.get(&file.s3_bucket, &file.s3_object).await? {
                None => Outcome::Invalid(Problem::NotFound),
                Some(object) => {
                    let hash = file.hash_value.clone();
                    let checked =
                        tokio::task::spawn_blocking(move || check::check_log_file(&object.body, &hash))
                            .await
                            .map_err(|e| SourceError(format!("checking a log file failed: {e}")))?;
                    match checked {
                        Ok(()) => Outcome::Valid,
                        Err(problem) => Outcome::Invalid(problem),
                    }
                }
            };
            Ok::<_, SourceError>((file.clone(), outcome))
        });
        futures::stream::iter(checks)
            .buffered(LOG_FILE_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// Digest keys in range that the walk never reached: every digest of a contiguous chain is
    /// pointed to by the next one, and a restart is reached through the listing, so a key skipped
    /// over is not a digest the writer chained (a planted or copied object). Reported with what is
    /// wrong with it, or as not part of the chain when it checks out on its own.
    async fn check_unreached(&mut self) -> Result<(), SourceError> {
        let bucket = self.bucket().to_owned();
        let unreached: Vec<String> = self
            .listing
            .in_range
            .values()
            .rev()
            .filter(|key| !self.visited.contains(&(bucket.clone(), (*key).clone())))
            .cloned()
            .collect();
        for key in unreached {
            let problem = self.load(&bucket, &key).await?.err().unwrap_or(Problem::NotOnChain);
            self.push_digest(&bucket, &key, Outcome::Invalid(problem), false);
        }
        Ok(())
    }

    /// Log and Insights files in the account and region folders for the requested days that no valid digest
    /// lists: INVALID when their delivery lies inside a covered window with a period to spare (a
    /// file delivered late in a window may be listed by the next digest); otherwise reported as
    /// not covered. A key that does not follow CloudTrail's layout is never a delivery: INVALID.
    async fn check_log_folder(&mut self) -> Result<Vec<UncoveredLogFile>, SourceError> {
        // Insights files sit in their own folder and are covered by the same digests.
        let mut keys = Vec::new();
        for folder in [self.chain.log_folder(), self.chain.insight_folder()] {
            keys.extend(
                self.objects
                    .list_keys(
                        self.bucket(),
                        &folder,
                        Some(&day_marker(&folder, self.request.start)),
                        Some(&after_day(&folder, self.request.end)),
                    )
                    .await?,
            );
        }
        let period = self.period.unwrap_or(DEFAULT_PERIOD);
        let spans = merge(std::mem::take(&mut self.coverage));
        let newest_covered = spans.last().map(|(_, end)| *end);
        let mut uncovered = Vec::new();
        for key in keys {
            let bucket = self.bucket().to_owned();
            if self.listed_files.contains(&(bucket.clone(), key.clone())) {
                continue;
            }
            let Some(delivered) = self.chain.log_time(&key) else {
                self.entries.push(Entry::LogFile {
                    bucket,
                    key,
                    outcome: Outcome::Invalid(Problem::NotListed),
                });
                continue;
            };
            if delivered < self.request.start || delivered > self.request.end {
                continue;
            }
            // The key names the minute; the file may have landed up to a minute later.
            let latest = delivered + Duration::minutes(1);
            if spans.iter().any(|(start, end)| delivered >= *start && latest + period <= *end) {
                self.entries.push(Entry::LogFile {
                    bucket,
                    key,
                    outcome: Outcome::Invalid(Problem::NotListed),
                });
            } else {
                let reason = if newest_covered.is_none_or(|newest| latest + period > newest) {
                    Uncovered::NotYetCovered
                } else {
                    Uncovered::OutsideChain
                };
                uncovered.push(UncoveredLogFile { bucket, key, reason });
            }
        }
        Ok(uncovered)
    }
}

/// Windows merged into the spans they cover without a break, oldest first. The one-period
/// allowance for late listing applies at the end of a span, not of each window: a late file is
/// listed by the next digest of the same span.
fn merge(mut windows: Vec<(DateTime<Utc>, DateTime<Utc>)>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    windows.sort();
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for (start, end) in windows {
        match spans.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => spans.push((start, end)),
        }
    }
    spans
}

async fn list_digests(
    objects: &dyn ObjectSource,
    chain: &ChainLocation,
    request: &Request,
) -> Result<DigestListing, SourceError> {
    let folder = chain.digest_folder();
    let range_end = request.end + LOOK_AHEAD;
    // The successor of the newest digest in range ends at most one period later.
    let successor_end = range_end + MAX_PERIOD;
    let keys = objects
        .list_keys(
            &chain.trail.bucket,
            &folder,
            Some(&day_marker(&folder, request.start - Duration::days(1))),
            Some(&after_day(&folder, successor_end)),
        )
        .await?;
    let mut listing = DigestListing::default();
    let mut successor: Option<(DateTime<Utc>, String)> = None;
    for key in keys {
        if let Some(end) = chain.digest_time(&key) {
            if end < request.start {
                listing.predecessor = listing.predecessor.max(Some(end));
            } else if end <= range_end {
                listing.in_range.insert(end, key);
            } else if end <= successor_end && successor.as_ref().is_none_or(|(t, _)| end < *t) {
                successor = Some((end, key));
            }
        } else if let Some(end) = chain.other_trail_digest_time(&key)
            && end >= request.start
            && end <= successor_end
        {
            listing.other_trails.push(key);
        }
    }
    listing.successor = successor.map(|(_, key)| key);
    Ok(listing)
}
