//! Where one (trail, account, region) chain lives in S3, and reading times back out of its keys.
//! A key belongs to the chain only if rebuilding it from the time it names gives the same key, so a
//! look-alike (another folder date, extra characters) is never taken for one of ours. The layout
//! itself is `model::layout`'s.

use chrono::{DateTime, Utc};

use crate::model::layout::{self, Folder, Root};
use crate::model::{AccountId, OrganizationId, Region};

/// Where a trail writes: what `orgtrail validate` needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailLocation {
    pub trail_arn: String,
    pub trail_name: String,
    pub home_region: Region,
    pub bucket: String,
    /// Key prefix before `AWSLogs/`, without leading or trailing `/`; empty for none.
    pub prefix: String,
    /// Set for organization trails: keys then run through `AWSLogs/o-ID/`.
    pub organization_id: Option<OrganizationId>,
}

impl TrailLocation {
    fn layout_root(&self) -> Root<'_> {
        Root { prefix: &self.prefix, organization: self.organization_id.as_ref() }
    }

    /// `[prefix/]AWSLogs/[o-ID/]`
    pub fn root(&self) -> String {
        self.layout_root().path()
    }
}

/// One digest chain: a trail's digests for one account and source region.
#[derive(Debug, Clone)]
pub struct ChainLocation {
    pub trail: TrailLocation,
    pub account: AccountId,
    pub region: Region,
}

impl ChainLocation {
    /// `ROOT/ACCOUNT/CloudTrail-Digest/REGION/`: digests of every trail writing here.
    pub fn digest_folder(&self) -> String {
        self.trail.layout_root().folder(&self.account, Folder::Digests, &self.region)
    }

    /// `ROOT/ACCOUNT/CloudTrail/REGION/`: log files of every trail writing here.
    pub fn log_folder(&self) -> String {
        self.trail.layout_root().folder(&self.account, Folder::Logs, &self.region)
    }

    /// `ROOT/ACCOUNT/CloudTrail-Insight/REGION/`: Insights files of every trail writing here (the
    /// same digests cover them).
    pub fn insight_folder(&self) -> String {
        self.trail.layout_root().folder(&self.account, Folder::Insights, &self.region)
    }

    /// The key of this chain's digest ending at `end`.
    pub fn digest_key(&self, end: DateTime<Utc>) -> String {
        self.trail.layout_root().digest_key(
            &self.account,
            &self.region,
            &self.trail.trail_name,
            &self.trail.home_region,
            end,
        )
    }

    /// The end time named by a digest key of this chain; None for any other key (other trails,
    /// backfill digests, strays).
    pub fn digest_time(&self, key: &str) -> Option<DateTime<Utc>> {
        let time = layout::digest_name_time(layout::file_name(key))?;
        (self.digest_key(time) == key).then_some(time)
    }

    /// Whether a key in the digest folder is a regular digest of some other trail; its end time.
    pub fn other_trail_digest_time(&self, key: &str) -> Option<DateTime<Utc>> {
        let name = layout::file_name(key);
        let own_prefix = format!("{}_CloudTrail-Digest_{}_", self.account, self.region);
        name.strip_prefix(&own_prefix)?;
        let time = layout::digest_name_time(name)?;
        let in_date_folder =
            key.strip_prefix(&self.digest_folder())?.starts_with(&time.format("%Y/%m/%d/").to_string());
        (in_date_folder && self.digest_time(key).is_none()).then_some(time)
    }

    /// The delivery time (minute precision) named by a log file or Insights file key of this
    /// account and region; None when the key does not follow CloudTrail's layout exactly.
    pub fn log_time(&self, key: &str) -> Option<DateTime<Utc>> {
        let name = layout::file_name(key);
        [Folder::Logs, Folder::Insights].into_iter().find_map(|folder| {
            let (time, unique) = layout::file_name_parts(name, &self.account, folder, &self.region)?;
            let rebuilt =
                self.trail.layout_root().file_key(&self.account, folder, &self.region, time, unique);
            (rebuilt == key).then_some(time)
        })
    }
}

/// `FOLDER/YYYY/MM/DD`: lists from here include that day (every key there continues with `/`).
pub fn day_marker(folder: &str, time: DateTime<Utc>) -> String {
    format!("{folder}{}", time.format("%Y/%m/%d"))
}

/// `FOLDER/YYYY/MM/DD/` of the day after `time`: listing stops before it.
pub fn after_day(folder: &str, time: DateTime<Utc>) -> String {
    let next = time + chrono::Duration::days(1);
    format!("{folder}{}", next.format("%Y/%m/%d/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(org: Option<&str>) -> ChainLocation {
        ChainLocation {
            trail: TrailLocation {
                trail_arn: "arn:aws:cloudtrail:us-east-1:111111111111:trail/org-trail".into(),
                trail_name: "org-trail".into(),
                home_region: Region::parse("r", "us-east-1").unwrap(),
                bucket: "b".into(),
                prefix: "audit".into(),
                organization_id: org.map(|o| OrganizationId::parse("o", o).unwrap()),
            },
            account: AccountId::parse("a", "222222222222").unwrap(),
            region: Region::parse("r", "eu-west-1").unwrap(),
        }
    }

    fn file_key(chain: &ChainLocation, folder: Folder, at: DateTime<Utc>) -> String {
        chain.trail.layout_root().file_key(&chain.account, folder, &chain.region, at, "AbCdEfGhIjKlMnOp")
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn digest_keys_round_trip_and_look_alikes_do_not() {
        let chain = chain(Some("o-abcdefghij"));
        let end = at("2026-11-24T05:00:00Z");
        let key = chain.digest_key(end);
        assert_eq!(chain.digest_time(&key), Some(end));
        assert_eq!(chain.digest_time(&key.replace("2026/11/24", "2026/11/23")), None, "wrong folder date");
        assert_eq!(chain.digest_time(&key.replace(".json.gz", "_backfill.json.gz")), None);
        let other = key.replace("_org-trail_", "_other-trail_");
        assert_eq!(chain.digest_time(&other), None);
        assert_eq!(chain.other_trail_digest_time(&other), Some(end));
        assert_eq!(chain.other_trail_digest_time(&key), None, "ours, not another trail's");
    }

    #[test]
    fn log_keys_name_their_delivery_minute() {
        let chain = chain(None);
        let at_time = at("2026-11-24T05:07:00Z");
        let key = file_key(&chain, Folder::Logs, at_time);
        assert_eq!(chain.log_time(&key), Some(at_time));
        assert_eq!(chain.log_time(&key.replace("2026/11/24", "2026/11/25")), None);
        assert_eq!(
            chain.log_time("audit/AWSLogs/222222222222/CloudTrail/eu-west-1/2026/11/24/evil.json.gz"),
            None
        );
        let insight = file_key(&chain, Folder::Insights, at_time);
        assert!(insight.starts_with(&chain.insight_folder()), "{insight}");
        assert_eq!(chain.log_time(&insight), Some(at_time));
        assert_eq!(chain.log_time(&insight.replace("/CloudTrail-Insight/", "/CloudTrail/")), None);
    }
}
