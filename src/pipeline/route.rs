//! Route: which trails take which record — account scope (organization or account trail, account
//! ACTIVE), logging at arrival, regions and global service events, then the trail's selectors.
//! Pure, given a [`Snapshot`] of the control plane.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::model::record::{Category, RecordView};
use crate::model::selectors::matching::selects;
use crate::model::trail::Trail;
use crate::model::{AccountId, OrganizationId, Region};
use crate::store::accounts::{self, AccountStatus};
use crate::store::{StoreError, organizations, trails};

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
    pub organization_id: Option<OrganizationId>,
    /// The regions the organization declares (what "all regions" means for multi-region trails).
    pub organization_regions: Vec<Region>,
    pub account_status: HashMap<AccountId, AccountStatus>,
    /// When it was loaded: only events received before this are judged with it.
    pub loaded_at: DateTime<Utc>,
}

impl Snapshot {
    /// Reads trails, the organization and account states. `loaded_at` is taken first, so that
    /// everything committed before it is in the snapshot.
    pub async fn load(pool: &PgPool) -> Result<Self, StoreError> {
        let loaded_at = Utc::now();
        let trails = trails::all(pool).await?;
        let organization = organizations::get(pool).await?;
        let organization_id = organization.as_ref().map(|o| o.id.clone());
        let organization_regions = organization.map(|o| o.regions).unwrap_or_default();
        let account_status = accounts::statuses(pool).await?.into_iter().collect();
        Ok(Self { trails, organization_id, organization_regions, account_status, loaded_at })
    }

    fn active(&self, account: &AccountId) -> bool {
        self.account_status.get(account) == Some(&AccountStatus::Active)
    }

    /// Trails whose account scope covers `account` (before regions and selectors).
    pub fn trails_covering<'a, 'b>(
        &'a self,
        account: &'b AccountId,
    ) -> impl Iterator<Item = &'a Trail> + use<'a, 'b> {
        let active = self.active(account);
        self.trails.iter().filter(move |t| {
            active && if t.settings.is_organization_trail { true } else { t.owner() == account }
        })
    }

    /// Whether the trail still exists.
    pub fn has_trail(&self, trail_id: i64) -> bool {
        self.trails.iter().any(|t| t.id == trail_id)
    }
}

/// The configuration's version and the database's clock, read together: a snapshot loaded after
/// this read, while the version is unchanged, is current as of that instant (migration 0018's
/// trigger moves the version in the same transaction as any change of trails, accounts or the
/// organization).
pub async fn config_clock(pool: &PgPool) -> Result<(i64, DateTime<Utc>), StoreError> {
    Ok(sqlx::query_as("SELECT version, now() FROM config_version").fetch_one(pool).await?)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::selectors::{EventSelectors, InsightSelector};
    use crate::model::trail::TrailSettings;
    use crate::model::{TrailArn, TrailName};

    pub fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    /// A logging trail of `owner` homed in `home`, created and started at 2026-01-01.
    pub fn trail(id: i64, owner: &str, home: &str, organization: bool, multi_region: bool) -> Trail {
        let region = Region::parse("r", home).unwrap();
        Trail {
            id,
            arn: TrailArn::new(
                region,
                AccountId::parse("a", owner).unwrap(),
                TrailName::parse("n", &format!("trail-{id}")).unwrap(),
            ),
            settings: TrailSettings {
                is_multi_region_trail: multi_region,
                is_organization_trail: organization,
                ..crate::model::trail::example_settings()
            },
            tags: Vec::new(),
            event_selectors: EventSelectors::Default,
            insight_selectors: Vec::new(),
            is_logging: true,
            start_logging_time: Some(at("2026-01-01T00:00:00Z")),
            stop_logging_time: None,
            validation_enabled_time: None,
            created_time: at("2026-01-01T00:00:00Z"),
            updated_time: at("2026-01-01T00:00:00Z"),
        }
    }

    pub fn record(account: &str, region: &str, source: &str, name: &str, category: &str) -> RecordView {
        RecordView::parse(&format!(
            r#"{{"eventID":"e-{name}","eventTime":"2026-02-01T00:00:00Z","eventSource":"{source}","eventName":"{name}","awsRegion":"{region}","recipientAccountId":"{account}","eventCategory":"{category}","readOnly":false}}"#
        ))
        .unwrap()
    }

    pub fn snapshot(trails: Vec<Trail>, active: &[&str]) -> Snapshot {
        Snapshot {
            trails,
            organization_id: None,
            organization_regions: Vec::new(),
            account_status: active
                .iter()
                .map(|a| (AccountId::parse("a", a).unwrap(), AccountStatus::Active))
                .collect(),
            loaded_at: at("2026-03-01T00:00:00Z"),
        }
    }

    const OWNER: &str = "111111111111";
    const MEMBER: &str = "222222222222";
    const OTHER: &str = "333333333333";

    #[test]
    fn organization_trails_cover_active_accounts_and_account_trails_their_owner() {
        let org = trail(1, OWNER, "us-east-1", true, true);
        let own = trail(2, MEMBER, "us-east-1", false, true);
        let snapshot = snapshot(vec![org, own], &[OWNER, MEMBER]);
        let ids = |account: &str| -> Vec<i64> {
            let account = AccountId::parse("a", account).unwrap();
            snapshot.trails_covering(&account).map(|t| t.id).collect()
        };
        assert_eq!(ids(MEMBER), vec![1, 2]);
        assert_eq!(ids(OWNER), vec![1]);
        assert!(ids(OTHER).is_empty(), "an account that is not ACTIVE is covered by nothing");
    }

    #[test]
    fn regions_and_global_service_events_follow_cloudtrail() {
        let multi = trail(1, OWNER, "eu-west-1", false, true);
        let single = trail(2, OWNER, "eu-west-1", false, false);
        let single_us = trail(3, OWNER, "us-east-1", false, false);
        let arrival = at("2026-02-01T00:00:00Z");
        let in_eu = record(OWNER, "eu-west-1", "ec2.amazonaws.com", "RunInstances", "Management");
        let in_ap = record(OWNER, "ap-southeast-2", "ec2.amazonaws.com", "RunInstances", "Management");
        let global = record(OWNER, "us-east-1", "iam.amazonaws.com", "CreateUser", "Management");
        assert!(routes(&multi, &in_ap, arrival) && routes(&single, &in_eu, arrival));
        assert!(!routes(&single, &in_ap, arrival));
        assert!(routes(&multi, &global, arrival) && routes(&single_us, &global, arrival));
        assert!(
            !routes(&single, &global, arrival),
            "global events go to us-east-1 single-region trails only"
        );
        let mut without_global = multi.clone();
        without_global.settings.include_global_service_events = false;
        assert!(!routes(&without_global, &global, arrival));
    }

    #[test]
    fn events_count_only_while_the_trail_was_logging() {
        let mut stopped = trail(1, OWNER, "us-east-1", false, true);
        stopped.is_logging = false;
        stopped.stop_logging_time = Some(at("2026-02-01T00:00:00Z"));
        let event = record(OWNER, "us-east-1", "ec2.amazonaws.com", "RunInstances", "Management");
        assert!(routes(&stopped, &event, at("2026-01-31T23:59:59Z")));
        assert!(!routes(&stopped, &event, at("2026-02-01T00:00:00Z")));
        assert!(!routes(&stopped, &event, at("2025-12-31T00:00:00Z")), "before it started");
    }

    #[test]
    fn default_selectors_take_management_events_and_insights_need_insight_selectors() {
        let mut trail = trail(1, OWNER, "us-east-1", false, true);
        let arrival = at("2026-02-01T00:00:00Z");
        let data = record(OWNER, "us-east-1", "s3.amazonaws.com", "GetObject", "Data");
        assert!(!routes(&trail, &data, arrival));
        let insight = RecordView::parse(r#"{"eventVersion":"1.07","eventTime":"2026-02-01T00:00:00Z","awsRegion":"us-east-1","eventID":"i-1","eventType":"AwsCloudTrailInsight","recipientAccountId":"111111111111","insightDetails":{"state":"Start","eventSource":"ssm.amazonaws.com","eventName":"UpdateInstanceInformation","insightType":"ApiCallRateInsight"},"eventCategory":"Insight"}"#).unwrap();
        assert!(!routes(&trail, &insight, arrival));
        trail.insight_selectors =
            vec![InsightSelector { insight_type: "ApiCallRateInsight".into(), event_categories: vec![] }];
        assert!(routes(&trail, &insight, arrival));
    }
}
