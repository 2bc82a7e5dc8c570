//! Which trails take which record: scope (organization or account, regions, global service
//! events, logging on at arrival) and then the trail's selectors.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::model::record::{Category, RecordView};
use crate::model::selectors::matching::selects;
use crate::model::trail::Trail;
use crate::model::{AccountId, Region};
use crate::store::accounts::AccountStatus;

/// Services whose events CloudTrail records in us-east-1 as global service events.
pub const GLOBAL_SERVICES: &[&str] = &[
    "iam.amazonaws.com",
    "sts.amazonaws.com",
    "cloudfront.amazonaws.com",
    "route53.amazonaws.com",
    "organizations.amazonaws.com",
    "signin.amazonaws.com",
    "waf.amazonaws.com",
    "shield.amazonaws.com",
    "globalaccelerator.amazonaws.com",
];

/// Whether a record is a global service event (a global service, recorded in us-east-1).
pub fn is_global_service_event(record: &RecordView) -> bool {
    record.aws_region.as_str() == "us-east-1" && GLOBAL_SERVICES.contains(&record.event_source.as_str())
}

/// The control-plane state routing needs, loaded together.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub trails: Vec<Trail>,
    pub organization_id: Option<String>,
    /// The regions the organization declares (what "all regions" means for multi-region trails).
    pub organization_regions: Vec<String>,
    pub account_status: HashMap<AccountId, AccountStatus>,
    /// When it was loaded: only events received before this are judged with it.
    pub loaded_at: DateTime<Utc>,
}

impl Snapshot {
    fn active(&self, account: &AccountId) -> bool {
        self.account_status.get(account) == Some(&AccountStatus::Active)
    }

    /// Trails whose account scope covers `account` (before regions and selectors).
    pub fn trails_covering<'a>(&'a self, account: &'a AccountId) -> impl Iterator<Item = &'a Trail> + 'a {
        let active = self.active(account);
        self.trails.iter().filter(move |t| {
            active && if t.settings.is_organization_trail { true } else { t.owner() == account }
        })
    }
}

/// Whether `trail` was logging when an event arrived at `received_at`.
fn logging_at(trail: &Trail, received_at: DateTime<Utc>) -> bool {
    let Some(started) = trail.start_logging_time else { return false };
    received_at >= started
        && received_at >= trail.created_time
        && (trail.is_logging || trail.stop_logging_time.is_none_or(|stopped| received_at < stopped))
}

/// Whether the trail's regions take the record.
fn region_accepts(trail: &Trail, record: &RecordView) -> bool {
    let s = &trail.settings;
    if is_global_service_event(record) {
        // Current CloudTrail: global events go to multi-region trails that include them, and to
        // single-region trails only in us-east-1.
        s.include_global_service_events
            && (s.is_multi_region_trail || trail.arn.home_region == Region::us_east_1())
    } else {
        s.is_multi_region_trail || trail.arn.home_region == record.aws_region
    }
}

/// Whether the trail's insight selectors take an Insights record: its InsightType is selected,
/// for the category the insight was computed on. Event selectors never take Insights records.
fn insight_selects(trail: &Trail, record: &RecordView) -> bool {
    let Some(insight) = &record.insight else { return false };
    trail.insight_selectors.iter().any(|selector| {
        selector.insight_type == insight.insight_type
            && (selector.event_categories.iter().any(|c| c == insight.computed_on.as_str())
                || (selector.event_categories.is_empty() && insight.computed_on == Category::Management))
    })
}

/// Whether `trail` (already known to cover the record's account) takes the record.
pub fn routes(trail: &Trail, record: &RecordView, received_at: DateTime<Utc>) -> bool {
    let selected = if record.category == Category::Insight {
        insight_selects(trail, record)
    } else {
        selects(&trail.event_selectors, record)
    };
    logging_at(trail, received_at) && region_accepts(trail, record) && selected
}
