//! The result of a validation run: every digest and log file looked at, in the order the chain
//! was walked, with validate-logs' words for what is wrong.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::features::integrity::digest::digest_time;

/// Why a digest or log file is INVALID, worded as validate-logs words it where it has words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    NotFound,
    InvalidFormat,
    Moved,
    PublicKeyNotFound {
        region: String,
        fingerprint: String,
    },
    SignatureFailed,
    /// The digest verifies on its own but is not the one the next digest's signed
    /// `previousDigestHashValue` / `previousDigestSignature` name (a substituted digest).
    NotThePrevious,
    /// A digest key in range the chain never reaches: no newer digest points to it.
    NotOnChain,
    HashMismatch,
    TrailingData,
    /// A log file in the trail's folders that no validly signed digest lists (forged, or its
    /// digest is gone).
    NotListed,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NotFound => f.write_str("not found"),
            Problem::InvalidFormat => f.write_str("invalid format"),
            Problem::Moved => f.write_str("has been moved from its original location"),
            Problem::PublicKeyNotFound { region, fingerprint } => {
                write!(f, "public key not found in region {region} for fingerprint {fingerprint}")
            }
            Problem::SignatureFailed => f.write_str("signature verification failed"),
            Problem::NotThePrevious => f.write_str(
                "does not match the previous digest hash and signature recorded in the next digest",
            ),
            Problem::NotOnChain => f.write_str("is not part of the digest chain"),
            Problem::HashMismatch => f.write_str("hash value doesn't match"),
            Problem::TrailingData => f.write_str("unexpected data after end of compressed stream"),
            Problem::NotListed => f.write_str("not listed in any digest"),
        }
    }
}

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `valid`, or `invalid` with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Outcome {
    Valid,
    Invalid(Problem),
}

/// One line of the walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    Digest {
        bucket: String,
        key: String,
        #[serde(flatten)]
        outcome: Outcome,
        /// Named because the digests around it prove it existed (no pointer to it survives).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        inferred: bool,
    },
    LogFile {
        bucket: String,
        key: String,
        #[serde(flatten)]
        outcome: Outcome,
    },
    /// A chain restarted (validation was off in between): validate-logs' "No log files were
    /// delivered by CloudTrail between FROM and TO".
    Gap {
        #[serde(serialize_with = "display_time")]
        from: DateTime<Utc>,
        #[serde(serialize_with = "display_time")]
        to: DateTime<Utc>,
    },
}

impl Entry {
    pub fn is_invalid(&self) -> bool {
        matches!(
            self,
            Entry::Digest { outcome: Outcome::Invalid(_), .. }
                | Entry::LogFile { outcome: Outcome::Invalid(_), .. }
        )
    }
}

/// Why a log file in the trail's folders is neither verified nor INVALID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Uncovered {
    /// Newer than the newest digest's end minus one period: may be waiting for the next digest.
    NotYetCovered,
    /// Delivered while no digest chain of this trail ran (validation off, before it was enabled).
    OutsideChain,
}

impl std::fmt::Display for Uncovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Uncovered::NotYetCovered => "not yet covered by a digest",
            Uncovered::OutsideChain => "not covered by a digest chain (validation was off)",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UncoveredLogFile {
    pub bucket: String,
    pub key: String,
    pub reason: Uncovered,
}

/// One (account, source region) chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub account_id: String,
    pub region: String,
    pub entries: Vec<Entry>,
    pub uncovered_log_files: Vec<UncoveredLogFile>,
    /// The span the valid digests cover, clipped to the requested range (validate-logs' "Results
    /// found for").
    #[serde(serialize_with = "display_opt_time")]
    pub found_start: Option<DateTime<Utc>>,
    #[serde(serialize_with = "display_opt_time")]
    pub found_end: Option<DateTime<Utc>>,
}

/// Counts over all chains, as the summary lines print them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub valid_digests: usize,
    pub invalid_digests: usize,
    pub valid_log_files: usize,
    pub invalid_log_files: usize,
    pub uncovered_log_files: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub trail_arn: String,
    #[serde(serialize_with = "display_time")]
    pub start_time: DateTime<Utc>,
    #[serde(serialize_with = "display_time")]
    pub end_time: DateTime<Utc>,
    pub chains: Vec<ChainReport>,
    pub summary: Summary,
    /// False when any digest or log file is INVALID (missing included).
    pub valid: bool,
}

impl Report {
    pub fn new(
        trail_arn: String,
        start_time: DateTime<Utc>,
        end_time: DateTime<Utc>,
        chains: Vec<ChainReport>,
    ) -> Self {
        let mut summary = Summary::default();
        for chain in &chains {
            summary.uncovered_log_files += chain.uncovered_log_files.len();
            for entry in &chain.entries {
                match entry {
                    Entry::Digest { outcome: Outcome::Valid, .. } => summary.valid_digests += 1,
                    Entry::Digest { outcome: Outcome::Invalid(_), .. } => summary.invalid_digests += 1,
                    Entry::LogFile { outcome: Outcome::Valid, .. } => summary.valid_log_files += 1,
                    Entry::LogFile { outcome: Outcome::Invalid(_), .. } => summary.invalid_log_files += 1,
                    Entry::Gap { .. } => {}
                }
            }
        }
        let valid = summary.invalid_digests == 0 && summary.invalid_log_files == 0;
        Self { trail_arn, start_time, end_time, chains, summary, valid }
    }

    /// The span found over all chains.
    pub fn found(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let start = self.chains.iter().filter_map(|c| c.found_start).min()?;
        let end = self.chains.iter().filter_map(|c| c.found_end).max()?;
        Some((start, end))
    }
}

fn display_time<S: serde::Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&digest_time(*time))
}

fn display_opt_time<S: serde::Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serializer.serialize_str(&digest_time(*time)),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_serialize_with_validate_logs_reasons() {
        let entry = Entry::Digest {
            bucket: "b".into(),
            key: "k".into(),
            outcome: Outcome::Invalid(Problem::NotFound),
            inferred: true,
        };
        assert_eq!(
            serde_json::to_value(&entry).unwrap(),
            serde_json::json!({"type": "digest", "bucket": "b", "key": "k", "status": "invalid", "reason": "not found", "inferred": true})
        );
        let valid = Entry::LogFile { bucket: "b".into(), key: "k".into(), outcome: Outcome::Valid };
        assert_eq!(
            serde_json::to_value(&valid).unwrap(),
            serde_json::json!({"type": "log_file", "bucket": "b", "key": "k", "status": "valid"})
        );
    }
}
