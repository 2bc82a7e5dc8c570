//! `aws_s3_trail`: reads a member's own CloudTrail bucket.
//!
//! Per (account, region) the collector lists
//! `[prefix/]AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/` with ListObjectsV2 `StartAfter` = the
//! last key it processed, walking the day folders from the cursor's day to today. For an
//! organization trail's bucket, set the account's `trail_prefix` to `[prefix/]AWSLogs/o-ID`: a
//! prefix whose last two segments are `AWSLogs/o-…` is used as is, and files are read from
//! `[prefix/]AWSLogs/o-ID/ACCOUNT/CloudTrail/REGION/...`.
//!
//! The folder date is CloudTrail's delivery time, so yesterday's folder is listed again until an
//! hour into today (a file written just before midnight may show up in listings a little later).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::CollectError;
use super::stage::{StageReport, stage_records};
use super::state;
use super::{Collector, TargetRun};
use crate::model::layout::{self, Folder};
use crate::model::shard::Source;
use crate::model::{AccountId, Region};
use crate::store::StoreError;

/// Where the collector resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Cursor {
    /// The day folder being read.
    pub day: NaiveDate,
    /// The last key processed in that folder (ListObjectsV2 StartAfter).
    pub last_key: Option<String>,
}

impl S3Cursor {
    /// A first run starts `backfill_days` before today.
    pub fn initial(now: DateTime<Utc>, backfill_days: u32) -> Self {
        Self { day: now.date_naive() - Duration::days(i64::from(backfill_days)), last_key: None }
    }
}

/// The folder of one day's log files of an account and region in the member's bucket.
pub fn day_prefix(trail_prefix: &str, account: &AccountId, region: &Region, day: NaiveDate) -> String {
    let folder = layout::folder_under(&layout::member_logs_root(trail_prefix), account, Folder::Logs, region);
    format!("{folder}{}/", day.format("%Y/%m/%d"))
}

/// Whether reading may move on from `day` to the next day folder at `now`.
pub fn day_is_over(day: NaiveDate, now: DateTime<Utc>) -> bool {
    let next_midnight = (day + Duration::days(1)).and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    next_midnight.is_some_and(|midnight| now >= midnight + Duration::hours(1))
}

/// Why a delivered file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("not gzip: {0}")]
    NotGzip(std::io::Error),
    #[error("unexpected data after the end of the gzip stream")]
    TrailingData,
    #[error("not a CloudTrail log file ({{\"Records\":[...]}}): {0}")]
    NotRecords(serde_json::Error),
}

#[derive(Deserialize)]
struct LogFile<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<&'a RawValue>,
}

/// The records of a delivered log file, each exactly as it is in the file. A file must be one
/// gzip member with nothing after it (what CloudTrail writes).
pub fn read_log_file(body: &[u8]) -> Result<Vec<String>, FileError> {
    use std::io::Read;
    let mut decoder = flate2::bufread::GzDecoder::new(body);
    let mut text = String::new();
    decoder.read_to_string(&mut text).map_err(FileError::NotGzip)?;
    let mut rest = [0u8; 1];
    if decoder.into_inner().read(&mut rest).map_err(FileError::NotGzip)? > 0 {
        return Err(FileError::TrailingData);
    }
    let file: LogFile = serde_json::from_str(&text).map_err(FileError::NotRecords)?;
    Ok(file.records.into_iter().map(|r| r.get().to_owned()).collect())
}

/// One pass: reads every new file up to now, staging each before moving the cursor past it.
pub async fn collect(collector: &Collector, run: &TargetRun) -> Result<i64, CollectError> {
    let target = &run.target;
    let now = Utc::now();
    let mut cursor: S3Cursor = state::load_cursor(&collector.pool, target)
        .await?
        .unwrap_or_else(|| S3Cursor::initial(now, collector.config.backfill_days));
    let clients = collector.clients.for_account(&run.settings).await;
    let bucket = &run.settings.trail_bucket;
    let bad_target = |e: crate::model::FieldError| CollectError::Store(StoreError::Corrupt(e.to_string()));
    let account = AccountId::parse("account_id", &target.account_id).map_err(bad_target)?;
    let region = Region::parse("region", &target.region).map_err(bad_target)?;
    let mut accepted = 0;
    loop {
        let prefix = day_prefix(&run.settings.trail_prefix, &account, &region, cursor.day);
        let mut continuation: Option<String> = None;
        loop {
            let page = clients
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(&prefix)
                .set_start_after(cursor.last_key.clone())
                .set_continuation_token(continuation.clone())
                .send()
                .await
                .map_err(|e| CollectError::from_sdk("ListObjectsV2", e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if key.ends_with(".json.gz") {
                    accepted += read_and_stage(collector, run, &clients.s3, bucket, key).await?.accepted;
                }
                cursor.last_key = Some(key.to_owned());
                collector.save_cursor(target, &cursor).await?;
            }
            continuation = page.next_continuation_token().map(str::to_owned);
            if page.is_truncated() != Some(true) || continuation.is_none() {
                break;
            }
        }
        if !day_is_over(cursor.day, now) {
            return Ok(accepted);
        }
        cursor = S3Cursor { day: cursor.day + Duration::days(1), last_key: None };
        collector.save_cursor(target, &cursor).await?;
    }
}

async fn read_and_stage(
    collector: &Collector,
    run: &TargetRun,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<StageReport, CollectError> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| CollectError::from_sdk("GetObject", e))?;
    let body = object
        .body
        .collect()
        .await
        .map_err(|e| CollectError::Network(format!("GetObject {key}: {e}")))?
        .into_bytes();
    let records = tokio::task::spawn_blocking(move || read_log_file(&body))
        .await
        .map_err(|e| CollectError::Service(format!("reading {key} panicked: {e}")))?;
    let records = match records {
        Ok(records) => records,
        Err(error) => {
            // A file that can never be read must not stop the account: skipped, and said loudly.
            tracing::warn!(account = %run.account, bucket, key, %error, "unreadable log file skipped");
            return Ok(StageReport::default());
        }
    };
    let context = format!("s3://{bucket}/{key}");
    let report = stage_records(
        &collector.pool,
        &*collector.staging,
        Source::AwsS3Trail,
        &run.account,
        &context,
        records,
    )
    .await?;
    tracing::debug!(account = %run.account, key, accepted = report.accepted, duplicates = report.duplicates,
        rejected = report.rejected, "log file staged");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn day_prefixes_follow_cloudtrails_layouts() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 9).unwrap();
        let member = AccountId::parse("a", "222222222222").unwrap();
        let (eu, us) = (Region::parse("r", "eu-west-1").unwrap(), Region::parse("r", "us-east-1").unwrap());
        assert_eq!(
            day_prefix("", &member, &eu, day),
            "AWSLogs/222222222222/CloudTrail/eu-west-1/2026/03/09/"
        );
        assert_eq!(
            day_prefix("trails/prod", &member, &us, day),
            "trails/prod/AWSLogs/222222222222/CloudTrail/us-east-1/2026/03/09/"
        );
        assert_eq!(
            day_prefix("org/AWSLogs/o-abcdefghij", &member, &us, day),
            "org/AWSLogs/o-abcdefghij/222222222222/CloudTrail/us-east-1/2026/03/09/"
        );
        assert_eq!(
            day_prefix("AWSLogs/o-abcdefghij", &member, &us, day),
            "AWSLogs/o-abcdefghij/222222222222/CloudTrail/us-east-1/2026/03/09/"
        );
    }

    #[test]
    fn a_day_is_left_an_hour_after_midnight() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 9).unwrap();
        let at = |h, m| NaiveDate::from_ymd_opt(2026, 3, 10).unwrap().and_hms_opt(h, m, 0).unwrap().and_utc();
        assert!(!day_is_over(day, at(0, 59)));
        assert!(day_is_over(day, at(1, 0)));
    }

    #[test]
    fn log_files_give_their_records_byte_for_byte() {
        let file = br#"{"Records":[{"b": 1,  "a":2},
  {"eventID":"x"}]}"#;
        assert_eq!(read_log_file(&gzip(file)).unwrap(), vec![r#"{"b": 1,  "a":2}"#, r#"{"eventID":"x"}"#]);
        let mut two_members = gzip(file);
        two_members.extend(gzip(file));
        assert!(matches!(read_log_file(&two_members), Err(FileError::TrailingData)));
        assert!(matches!(read_log_file(b"plain"), Err(FileError::NotGzip(_))));
        assert!(matches!(read_log_file(&gzip(b"[1,2]")), Err(FileError::NotRecords(_))));
    }
}
