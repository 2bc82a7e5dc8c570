//! Naming digests that were deleted between two surviving ones.
//!
//! Digest windows are contiguous and every `digestEndTime` is a multiple of the digest period since
//! the Unix epoch. When a validly signed digest starting at `S` points to a digest that is gone, and
//! the next older surviving digest ends at `E`, the chain between them held exactly one digest per
//! boundary `E + p, E + 2p, … , S`. Every one of those keys is missing.
//!
//! What this cannot know: if validation was disabled and re-enabled between `E` and `S` and the new
//! chain's starting digest was deleted too, the boundaries inside the disabled time never had a
//! digest, and they are named anyway. The run is invalid either way (a signed digest's predecessor
//! is gone); only the list of names can be too long in that case.

use chrono::{DateTime, Duration, Utc};

/// More missing digests than this between two survivors is not a deletion to enumerate (a 60-second
/// period over a week); the pointed-to digest is still reported.
pub const MAX_INFERRED: i64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GapError {
    #[error("the digest period must be positive")]
    NoPeriod,
    #[error("the older digest does not end before the newer one starts")]
    NotOlder,
    #[error("digest times are not on boundaries of the {0}-second period")]
    OffBoundary(i64),
    #[error("{0} digests would be missing, more than can be named")]
    TooMany(i64),
}

/// End times of the digests that must have existed after a digest ending at `older_end` and up to
/// the one ending at `newer_start` (the start of the digest that vouches for the chain), oldest
/// first. Empty when the two are adjacent.
pub fn missing_digest_ends(
    older_end: DateTime<Utc>,
    newer_start: DateTime<Utc>,
    period: Duration,
) -> Result<Vec<DateTime<Utc>>, GapError> {
    let period_seconds = period.num_seconds();
    if period_seconds <= 0 || period.subsec_nanos() != 0 {
        return Err(GapError::NoPeriod);
    }
    if older_end > newer_start {
        return Err(GapError::NotOlder);
    }
    let on_boundary =
        |t: DateTime<Utc>| t.timestamp_subsec_nanos() == 0 && t.timestamp() % period_seconds == 0;
    if !on_boundary(older_end) || !on_boundary(newer_start) {
        return Err(GapError::OffBoundary(period_seconds));
    }
    let count = (newer_start - older_end).num_seconds() / period_seconds;
    if count > MAX_INFERRED {
        return Err(GapError::TooMany(count));
    }
    Ok((1..=count).map(|i| older_end + period * i as i32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    const HOUR: Duration = Duration::hours(1);

    #[test]
    fn one_deleted_digest_is_the_newer_ones_start() {
        let missing = missing_digest_ends(at("2026-11-24T04:00:00Z"), at("2026-11-24T05:00:00Z"), HOUR);
        assert_eq!(missing, Ok(vec![at("2026-11-24T05:00:00Z")]));
    }

    #[test]
    fn consecutive_deleted_digests_are_all_named_oldest_first() {
        let missing = missing_digest_ends(at("2026-11-24T02:00:00Z"), at("2026-11-24T05:00:00Z"), HOUR);
        assert_eq!(
            missing,
            Ok(vec![at("2026-11-24T03:00:00Z"), at("2026-11-24T04:00:00Z"), at("2026-11-24T05:00:00Z")])
        );
        let minutes =
            missing_digest_ends(at("2026-11-24T05:57:00Z"), at("2026-11-24T06:01:00Z"), Duration::minutes(1));
        assert_eq!(minutes.map(|m| m.len()), Ok(4), "across an hour and with a one-minute period");
    }

    #[test]
    fn adjacent_digests_leave_nothing_missing() {
        assert_eq!(
            missing_digest_ends(at("2026-11-24T05:00:00Z"), at("2026-11-24T05:00:00Z"), HOUR),
            Ok(vec![])
        );
    }

    #[test]
    fn nothing_is_inferred_from_times_that_break_the_contract() {
        let older = at("2026-11-24T04:00:00Z");
        assert_eq!(
            missing_digest_ends(older, at("2026-11-24T05:30:00Z"), HOUR),
            Err(GapError::OffBoundary(3600))
        );
        assert_eq!(
            missing_digest_ends(at("2026-11-24T04:00:01Z"), at("2026-11-24T05:00:00Z"), HOUR),
            Err(GapError::OffBoundary(3600))
        );
        assert_eq!(
            missing_digest_ends(at("2026-11-24T06:00:00Z"), at("2026-11-24T05:00:00Z"), HOUR),
            Err(GapError::NotOlder)
        );
        assert_eq!(
            missing_digest_ends(older, at("2026-11-24T05:00:00Z"), Duration::zero()),
            Err(GapError::NoPeriod)
        );
        assert_eq!(
            missing_digest_ends(older, older + Duration::minutes(MAX_INFERRED + 1), Duration::minutes(1)),
            Err(GapError::TooMany(MAX_INFERRED + 1))
        );
    }
}
