//! Alerts: the worker's "rules" tap matches each event against the enabled rules and writes
//! alerts into an outbox in the tap's transaction (exactly once per event and rule); dispatchers
//! on every worker send them (webhook or log line), spread across workers with SKIP LOCKED, retry
//! with exponential backoff and move an alert to the dead letters after the last attempt.

pub mod cache;
pub mod dispatch;
pub mod rules;
pub mod store;
pub mod tap;
pub mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::value::RawValue;

use crate::features::alerts::rules::RuleInfo;

/// Alert delivery settings (see `config.rs` for their documentation).
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Attempts before an alert goes to the dead letters.
    pub max_attempts: u32,
    /// Wait after the first failure; doubled after each further one.
    pub retry_base: Duration,
    /// The longest wait between attempts.
    pub retry_max: Duration,
    /// Pause of an idle dispatcher between looks at the outbox.
    pub poll_interval: Duration,
    /// How long one webhook call may take.
    pub request_timeout: Duration,
    /// Alerts one dispatcher sends at once.
    pub batch: i64,
    /// PEM CA certificates trusted for webhooks besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Opens webhook secrets; without it, webhook alerts fail (and are retried).
    pub master_key: Option<Arc<crate::secrets::MasterKey>>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            poll_interval: Duration::from_millis(200),
            request_timeout: Duration::from_secs(10),
            batch: 32,
            ca_file: None,
            master_key: None,
        }
    }
}

impl AlertSettings {
    /// These settings with the key that opens webhook secrets.
    pub fn with_master_key(&self, master_key: Option<Arc<crate::secrets::MasterKey>>) -> Self {
        Self { master_key, ..self.clone() }
    }

    /// The wait before attempt `attempts + 1`, after `attempts` failures.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

/// The JSON body of an alert, exactly as sent and signed.
#[derive(serde::Serialize)]
pub struct AlertBody<'a> {
    /// Stable across retries: receivers can drop repeats.
    pub id: String,
    pub rule: &'a RuleInfo,
    /// When the rule matched.
    pub time: String,
    /// When orgtrail received the event.
    pub received_at: String,
    /// The CloudTrail record as received.
    pub record: &'a RawValue,
}

pub fn alert_body(
    shard_id: i64,
    seq: i64,
    rule: &RuleInfo,
    record: &str,
    received_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<String, serde_json::Error> {
    let record: &RawValue = serde_json::from_str(record)?;
    serde_json::to_string(&AlertBody {
        id: format!("{shard_id}-{seq}-{}", rule.name),
        rule,
        time: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        received_at: received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let settings = AlertSettings {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            ..Default::default()
        };
        let waits: Vec<u64> = (1..=6).map(|n| settings.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn body_embeds_the_record_verbatim() {
        let rule =
            RuleInfo { name: "r".into(), title: "T".into(), author: Some("A".into()), ..Default::default() };
        let record = r#"{"eventName":"StopLogging","n":1.50}"#;
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let body = alert_body(3, 7, &rule, record, now, now).unwrap();
        assert!(body.contains(r#""record":{"eventName":"StopLogging","n":1.50}"#), "{body}");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["id"], "3-7-r");
        assert_eq!(value["rule"]["author"], "A");
        assert_eq!(value["time"], "2023-11-14T22:13:20.000Z");
    }
}
