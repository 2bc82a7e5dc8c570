//! Shards: the unit of collection, lease and cursor — one (account, region, source).

use super::{AccountId, FieldError, Region};

/// A shard's number, handed out by staging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
pub struct ShardId(pub i64);

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a shard's events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// Pushed through IngestService (including channels).
    Push,
    /// Pulled with CloudTrail LookupEvents from the member account.
    AwsLookup,
    /// Read from the member account's own CloudTrail bucket.
    AwsS3Trail,
    /// Insights records: made by orgtrail's detector, or pushed or pulled with eventCategory
    /// Insight. Delivered under the `CloudTrail-Insight` key layout.
    Insights,
}

impl Source {
    pub const ALL: [Source; 4] = [Self::Push, Self::AwsLookup, Self::AwsS3Trail, Self::Insights];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::AwsLookup => "aws_lookup",
            Self::AwsS3Trail => "aws_s3_trail",
            Self::Insights => "insights",
        }
    }

    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        Self::ALL.into_iter().find(|s| s.as_str() == value).ok_or_else(|| {
            FieldError::new(
                field,
                format!("{value:?} is not a source (push, aws_lookup, aws_s3_trail, insights)"),
            )
        })
    }

    /// Whether the shard's files are Insights files (their own folder).
    pub fn is_insights(self) -> bool {
        self == Self::Insights
    }
}

/// One shard: whose events, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: ShardId,
    pub account: AccountId,
    pub region: Region,
    pub source: Source,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_round_trip_their_names() {
        for source in Source::ALL {
            assert_eq!(Source::parse("source", source.as_str()), Ok(source));
        }
        assert!(Source::parse("source", "kafka").is_err());
        assert!(Source::Insights.is_insights() && !Source::Push.is_insights());
    }
}
