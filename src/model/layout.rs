//! CloudTrail's S3 key layout, the one home of it: where a trail's log files, Insights files and
//! digest files go, and the names' time parts read back. Used by the delivery pipeline, the digest
//! writer, `orgtrail validate` and the member-bucket collector.
//!
//! `[prefix/]AWSLogs/[o-ORGID/]ACCOUNT/FOLDER/REGION/YYYY/MM/DD/NAME`, with FOLDER `CloudTrail`,
//! `CloudTrail-Insight` or `CloudTrail-Digest`.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::{AccountId, OrganizationId, Region};

/// The three kinds of object a trail writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    /// Log files.
    Logs,
    /// Insights files (same shape as log files, their own folder).
    Insights,
    /// Digest files.
    Digests,
}

impl Folder {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logs => "CloudTrail",
            Self::Insights => "CloudTrail-Insight",
            Self::Digests => "CloudTrail-Digest",
        }
    }
}

/// Where a trail's keys start: its prefix and, for organization trails, the organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root<'a> {
    /// Key prefix before `AWSLogs/`, without leading or trailing `/`; empty for none.
    pub prefix: &'a str,
    pub organization: Option<&'a OrganizationId>,
}

impl Root<'_> {
    /// `[prefix/]AWSLogs/[o-ORGID/]`
    pub fn path(&self) -> String {
        let mut key = String::with_capacity(200);
        if !self.prefix.is_empty() {
            key.push_str(self.prefix);
            key.push('/');
        }
        key.push_str("AWSLogs/");
        if let Some(organization) = self.organization {
            key.push_str(organization.as_str());
            key.push('/');
        }
        key
    }

    /// `ROOT/ACCOUNT/FOLDER/REGION/`: everything of one kind for one account and region.
    pub fn folder(&self, account: &AccountId, folder: Folder, region: &Region) -> String {
        folder_under(&self.path(), account, folder, region)
    }

    /// A log file (`Folder::Logs`) or Insights file (`Folder::Insights`):
    /// `FOLDER-PATH/YYYY/MM/DD/ACCOUNT_FOLDER_REGION_YYYYMMDDTHHmmZ_UNIQUE.json.gz`.
    pub fn file_key(
        &self,
        account: &AccountId,
        folder: Folder,
        region: &Region,
        delivered_at: DateTime<Utc>,
        unique: &str,
    ) -> String {
        let folder_name = folder.as_str();
        format!(
            "{}{}/{account}_{folder_name}_{region}_{}_{unique}.json.gz",
            self.folder(account, folder, region),
            delivered_at.format("%Y/%m/%d"),
            delivered_at.format("%Y%m%dT%H%MZ"),
        )
    }

    /// A digest file:
    /// `DIGEST-FOLDER/YYYY/MM/DD/ACCOUNT_CloudTrail-Digest_REGION_TRAIL_HOMEREGION_YYYYMMDDTHHMMSSZ.json.gz`.
    pub fn digest_key(
        &self,
        account: &AccountId,
        region: &Region,
        trail_name: &str,
        home_region: &Region,
        end: DateTime<Utc>,
    ) -> String {
        format!(
            "{}{}/{account}_CloudTrail-Digest_{region}_{trail_name}_{home_region}_{}.json.gz",
            self.folder(account, Folder::Digests, region),
            end.format("%Y/%m/%d"),
            end.format("%Y%m%dT%H%M%SZ"),
        )
    }
}

/// `ROOT/ACCOUNT/FOLDER/REGION/` under a root path ending in `/` (ours, or a member bucket's).
pub fn folder_under(root: &str, account: &AccountId, folder: Folder, region: &Region) -> String {
    format!("{root}{account}/{}/{region}/", folder.as_str())
}

/// 16 letters and digits derived from a batch's identity: the same batch always gets the same key.
pub fn unique_part(identity: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, identity.as_bytes());
    digest.as_ref()[..16].iter().map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect()
}

/// The last path segment of a key.
pub fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The delivery time (minute precision) and unique part a log or Insights file name states, when
/// it is `ACCOUNT_FOLDER_REGION_YYYYMMDDTHHmmZ_UNIQUE.json.gz` for this account and region.
pub fn file_name_parts<'k>(
    name: &'k str,
    account: &AccountId,
    folder: Folder,
    region: &Region,
) -> Option<(DateTime<Utc>, &'k str)> {
    let rest = name.strip_prefix(&format!("{account}_{}_{region}_", folder.as_str()))?;
    let time = parse_time(rest.get(..14)?, "%Y%m%dT%H%MZ")?;
    let unique = rest.get(14..)?.strip_prefix('_')?.strip_suffix(".json.gz")?;
    Some((time, unique))
}

/// The end time a digest file name states (its last 16 characters before `.json.gz`).
pub fn digest_name_time(name: &str) -> Option<DateTime<Utc>> {
    let stem = name.strip_suffix(".json.gz")?;
    parse_time(stem.get(stem.len().checked_sub(16)?..)?, "%Y%m%dT%H%M%SZ")
}

fn parse_time(text: &str, format: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, format).ok().map(|t| t.and_utc())
}

/// Where a member account's own trail keeps its files in its bucket, from the trail prefix the
/// account registered: `[prefix/]AWSLogs/`, or for a prefix that already ends in `AWSLogs/o-ID`
/// (an organization trail's bucket) that prefix plus `/`.
pub fn member_logs_root(trail_prefix: &str) -> String {
    let prefix = trail_prefix.trim_end_matches('/');
    let mut segments = prefix.rsplit('/');
    let (last, before) = (segments.next().unwrap_or_default(), segments.next().unwrap_or_default());
    if before == "AWSLogs" && last.starts_with("o-") {
        format!("{prefix}/")
    } else if prefix.is_empty() {
        "AWSLogs/".to_owned()
    } else {
        format!("{prefix}/AWSLogs/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn ids() -> (AccountId, Region, OrganizationId) {
        (
            AccountId::parse("a", "111122223333").unwrap(),
            Region::parse("r", "eu-west-1").unwrap(),
            OrganizationId::parse("o", "o-abcdefghij").unwrap(),
        )
    }

    #[test]
    fn log_and_insights_keys_follow_cloudtrail() {
        let (account, region, org) = ids();
        let time = at("2026-01-02T03:04:05Z");
        let root = Root { prefix: "", organization: Some(&org) };
        assert_eq!(
            root.file_key(&account, Folder::Logs, &region, time, "AbCdEfGhIjKlMnOp"),
            "AWSLogs/o-abcdefghij/111122223333/CloudTrail/eu-west-1/2026/01/02/111122223333_CloudTrail_eu-west-1_20260102T0304Z_AbCdEfGhIjKlMnOp.json.gz"
        );
        let root = Root { prefix: "audit/x", organization: None };
        assert_eq!(
            root.file_key(&account, Folder::Insights, &region, time, "u"),
            "audit/x/AWSLogs/111122223333/CloudTrail-Insight/eu-west-1/2026/01/02/111122223333_CloudTrail-Insight_eu-west-1_20260102T0304Z_u.json.gz"
        );
    }

    #[test]
    fn digest_keys_follow_cloudtrail() {
        let (account, region, org) = ids();
        let home = Region::parse("r", "us-east-1").unwrap();
        let root = Root { prefix: "p", organization: Some(&org) };
        let key = root.digest_key(&account, &region, "org-trail", &home, at("2026-11-24T05:00:00Z"));
        assert_eq!(
            key,
            "p/AWSLogs/o-abcdefghij/111122223333/CloudTrail-Digest/eu-west-1/2026/11/24/111122223333_CloudTrail-Digest_eu-west-1_org-trail_us-east-1_20261124T050000Z.json.gz"
        );
        assert_eq!(digest_name_time(file_name(&key)), Some(at("2026-11-24T05:00:00Z")));
    }

    #[test]
    fn file_names_read_back_and_look_alikes_do_not() {
        let (account, region, _) = ids();
        let name = "111122223333_CloudTrail_eu-west-1_20260102T0304Z_AbCd.json.gz";
        assert_eq!(
            file_name_parts(name, &account, Folder::Logs, &region),
            Some((at("2026-01-02T03:04:00Z"), "AbCd"))
        );
        assert_eq!(file_name_parts(name, &account, Folder::Insights, &region), None);
        assert_eq!(
            file_name_parts(
                "111122223333_CloudTrail_eu-west-1_2026.json.gz",
                &account,
                Folder::Logs,
                &region
            ),
            None
        );
    }

    #[test]
    fn unique_parts_are_stable_and_distinct() {
        let unique = unique_part("1:2:3");
        assert_eq!(unique.len(), 16);
        assert!(unique.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(unique, unique_part("1:2:3"));
        assert_ne!(unique, unique_part("1:2:4"));
    }

    #[test]
    fn member_roots_take_organization_prefixes_as_they_are() {
        assert_eq!(member_logs_root(""), "AWSLogs/");
        assert_eq!(member_logs_root("logs/"), "logs/AWSLogs/");
        assert_eq!(member_logs_root("b/AWSLogs/o-abcdefghij"), "b/AWSLogs/o-abcdefghij/");
    }
}
