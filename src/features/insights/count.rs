//! What the Insights counters count, and the tap that counts it (exactly once: the counts commit
//! with the tap's cursor).

use std::collections::BTreeSet;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Deserialize;

use super::record::{ERROR_CODE, USER_AGENT, USER_IDENTITY_ARN};
use crate::features::insights::store;
pub use crate::model::insights::{CountKey, Tallies, Tally};
use crate::model::record::{Category, RecordView};
use crate::model::{AccountId, Region};
use crate::pipeline::route::Snapshot;
use crate::pipeline::taps::{Tap, TapBatch, TapContext, TapError, TapEvent};

/// How an event counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub category: &'static str,
    /// ApiCallRateInsight analyses it: a write management event, or any data event.
    pub call: bool,
    /// ApiErrorRateInsight analyses it: a management or data event with an errorCode.
    pub error: bool,
}

/// None for events no insight type analyses (read-only successful management calls, network
/// activity, channel events, Insights records themselves).
pub fn classify(view: &RecordView) -> Option<Counted> {
    let error = view.error_code.as_deref().is_some_and(|code| !code.is_empty());
    let counted = match view.category {
        Category::Management => Counted { category: "Management", call: view.read_only != Some(true), error },
        Category::Data => Counted { category: "Data", call: true, error },
        Category::NetworkActivity | Category::Insight | Category::ActivityAuditLog => return None,
    };
    (counted.call || counted.error).then_some(counted)
}

/// The minute an event counts in.
pub fn minute_of(time: DateTime<Utc>) -> DateTime<Utc> {
    time.duration_trunc(TimeDelta::minutes(1)).unwrap_or(time)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Agent<'a> {
    #[serde(borrow, default)]
    user_agent: Option<std::borrow::Cow<'a, str>>,
}

/// Adds one event.
pub fn add(tallies: &mut Tallies, view: &RecordView, record: &str) {
    let Some(counted) = classify(view) else { return };
    let key = CountKey {
        account_id: view.recipient_account_id.to_string(),
        region: view.aws_region.to_string(),
        category: counted.category.to_owned(),
        event_source: view.event_source.clone(),
        event_name: view.event_name.clone(),
        minute: minute_of(view.event_time),
    };
    let (calls, errors) = (i64::from(counted.call), i64::from(counted.error));
    let tally = tallies.entry(key).or_default();
    tally.calls += calls;
    tally.errors += errors;
    let agent = serde_json::from_str::<Agent<'_>>(record).ok().and_then(|a| a.user_agent);
    let error_code = view.error_code.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| "null".to_owned());
    let values = [
        (USER_IDENTITY_ARN, view.user_identity_arn.clone()),
        (USER_AGENT, agent.map(|a| a.into_owned())),
        (ERROR_CODE, Some(error_code)),
    ];
    for (attribute, value) in values {
        if let Some(value) = value {
            let entry = tally.attributions.entry((attribute, value)).or_default();
            entry.0 += calls;
            entry.1 += errors;
        }
    }
}

/// (InsightType, category) pairs the logging trails covering (account, region) select.
pub fn enabled_types(snapshot: &Snapshot, account: &AccountId, region: &str) -> BTreeSet<(String, String)> {
    let mut enabled = BTreeSet::new();
    for trail in snapshot.trails_covering(account) {
        if !trail.is_logging
            || !(trail.settings.is_multi_region_trail || trail.arn.home_region.as_str() == region)
        {
            continue;
        }
        for selector in &trail.insight_selectors {
            if selector.event_categories.is_empty() {
                enabled.insert((selector.insight_type.clone(), "Management".to_owned()));
            }
            for category in &selector.event_categories {
                enabled.insert((selector.insight_type.clone(), category.clone()));
            }
        }
    }
    enabled
}

/// Which events are worth counting: those of a category some logging trail covering their
/// account and region selects an insight type for. Like CloudTrail, a baseline forms only once
/// Insights is enabled; counting every event of an organization without Insights cost a third of
/// the tap's Postgres time in the many-shard benchmark.
struct Wanted<'a> {
    snapshot: &'a Snapshot,
    /// Per (account, region) seen: a batch holds one shard's or a few, so a scan beats hashing
    /// and allocates only on a pair's first event.
    categories: Vec<(AccountId, Region, BTreeSet<String>)>,
}

impl<'a> Wanted<'a> {
    fn new(snapshot: &'a Snapshot) -> Self {
        Self { snapshot, categories: Vec::new() }
    }

    fn counts(&mut self, view: &RecordView) -> bool {
        let Some(counted) = classify(view) else { return false };
        let (account, region) = (&view.recipient_account_id, &view.aws_region);
        let known = self.categories.iter().position(|(a, r, _)| a == account && r == region);
        let index = known.unwrap_or_else(|| {
            let categories = enabled_types(self.snapshot, account, region.as_str())
                .into_iter()
                .map(|(_, category)| category)
                .collect();
            self.categories.push((account.clone(), region.clone(), categories));
            self.categories.len() - 1
        });
        self.categories[index].2.contains(counted.category)
    }
}

/// The `insights` tap.
pub struct InsightsTap;

/// The tap's name and cursor key.
pub const TAP_NAME: &str = "insights";

#[async_trait::async_trait]
impl Tap for InsightsTap {
    fn name(&self) -> &'static str {
        TAP_NAME
    }

    async fn consume(
        &self,
        _key: &str,
        context: &TapContext<'_>,
        events: &[TapEvent<'_>],
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), TapError> {
        // Insights records are outputs, never counted.
        if context.shard.source.is_insights() {
            return Ok(());
        }
        let mut tallies = Tallies::new();
        let mut wanted = Wanted::new(context.snapshot);
        for event in events.iter().filter(|e| wanted.counts(e.view)) {
            add(&mut tallies, event.view, event.record);
        }
        store::add_tallies(tx, &tallies).await?;
        Ok(())
    }

    /// The tallies of every shard of the group in one write (their keys name account and region).
    async fn consume_many(
        &self,
        batches: &[TapBatch<'_>],
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), TapError> {
        let mut tallies = Tallies::new();
        for batch in batches.iter().filter(|b| !b.context.shard.source.is_insights()) {
            let mut wanted = Wanted::new(batch.context.snapshot);
            for event in batch.events.iter().filter(|e| wanted.counts(e.view)) {
                add(&mut tallies, event.view, event.record);
            }
        }
        store::add_tallies(tx, &tallies).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(json: serde_json::Value) -> (RecordView, String) {
        let text = json.to_string();
        (RecordView::parse(&text).unwrap(), text)
    }

    fn base(name: &str, read_only: bool, category: &str) -> serde_json::Value {
        serde_json::json!({
            "eventID": format!("id-{name}"), "eventTime": "2026-11-24T10:00:42Z",
            "eventSource": "dynamodb.amazonaws.com", "eventName": name, "awsRegion": "eu-west-1",
            "recipientAccountId": "123456789012", "readOnly": read_only, "eventCategory": category,
            "userIdentity": {"arn": "arn:aws:iam::123456789012:user/alice"}, "userAgent": "sdk/1"
        })
    }

    #[test]
    fn calls_are_writes_of_management_and_all_data_events() {
        let (put_item, _) = view(base("PutItem", false, "Data"));
        let (get_item, _) = view(base("GetItem", true, "Data"));
        let (describe, _) = view(base("DescribeTable", true, "Management"));
        let (create, _) = view(base("CreateTable", false, "Management"));
        let mut failed = base("DescribeTable", true, "Management");
        failed["errorCode"] = "AccessDenied".into();
        let (failed, _) = view(failed);
        assert_eq!(classify(&put_item), Some(Counted { category: "Data", call: true, error: false }));
        assert_eq!(classify(&get_item), Some(Counted { category: "Data", call: true, error: false }));
        assert_eq!(classify(&describe), None);
        assert_eq!(classify(&create), Some(Counted { category: "Management", call: true, error: false }));
        assert_eq!(classify(&failed), Some(Counted { category: "Management", call: false, error: true }));
    }

    #[test]
    fn tallies_group_by_minute_and_attribute() {
        let mut tallies = Tallies::new();
        for name in ["PutItem", "PutItem"] {
            let (v, text) = view(base(name, false, "Data"));
            add(&mut tallies, &v, &text);
        }
        let (key, tally) = tallies.iter().next().unwrap();
        assert_eq!(key.minute.to_rfc3339(), "2026-11-24T10:00:00+00:00");
        assert_eq!((tally.calls, tally.errors), (2, 0));
        assert_eq!(tally.attributions[&(USER_AGENT, "sdk/1".to_owned())], (2, 0));
        assert_eq!(tally.attributions[&(ERROR_CODE, "null".to_owned())], (2, 0));
    }

    #[test]
    fn only_categories_with_an_insight_selector_covering_the_region_count() {
        use crate::model::selectors::InsightSelector;
        use crate::pipeline::route::tests::{snapshot, trail};
        const ACCOUNT: &str = "123456789012";
        let (data, _) = view(base("PutItem", false, "Data"));
        let (management, _) = view(base("CreateTable", false, "Management"));
        let mut other_region = base("PutItem", false, "Data");
        other_region["awsRegion"] = "us-west-2".into();
        let (other_region, _) = view(other_region);

        let mut single = trail(1, ACCOUNT, "eu-west-1", false, false);
        let without = snapshot(vec![single.clone()], &[ACCOUNT]);
        assert!(!Wanted::new(&without).counts(&data), "no insight selectors: nothing counts");
        single.insight_selectors = vec![InsightSelector {
            insight_type: "ApiCallRateInsight".to_owned(),
            event_categories: vec!["Data".to_owned()],
        }];
        let with = snapshot(vec![single.clone()], &[ACCOUNT]);
        let mut wanted = Wanted::new(&with);
        assert!(wanted.counts(&data));
        assert!(!wanted.counts(&management), "Management is not selected");
        assert!(!wanted.counts(&other_region), "a single-region trail covers its home region");
        single.is_logging = false;
        let stopped = snapshot(vec![single], &[ACCOUNT]);
        assert!(!Wanted::new(&stopped).counts(&data), "a stopped trail enables nothing");
    }
}
