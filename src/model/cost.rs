//! Cost warnings for a trail's configuration: what CloudTrail would bill that the user may not
//! mean to pay for. Warnings never block a change; CreateTrail, UpdateTrail and PutEventSelectors
//! return them.

use super::AccountId;
use super::selectors::{EventSelectors, is_all_resources_value};
use super::trail::Trail;

const UNFILTERED: &str = "no resource filter: every object/function/table, billed per event";

/// Whether the trail's selectors deliver management events.
fn delivers_management(selectors: &EventSelectors) -> bool {
    match selectors {
        EventSelectors::Default => true,
        EventSelectors::Basic(basic) => basic.iter().any(|s| s.include_management_events),
        EventSelectors::Advanced(advanced) => advanced.iter().any(|s| {
            s.field_selectors
                .iter()
                .any(|f| f.field == "eventCategory" && f.equals.iter().any(|v| v == "Management"))
        }),
    }
}

/// Whether two trails cover a common (account, region). `is_member` says whether an account is
/// one an organization trail covers (an ACTIVE account of the organization).
fn scopes_overlap(a: &Trail, b: &Trail, is_member: &dyn Fn(&AccountId) -> bool) -> bool {
    let accounts = match (a.settings.is_organization_trail, b.settings.is_organization_trail) {
        (true, true) => true,
        (true, false) => is_member(b.owner()),
        (false, true) => is_member(a.owner()),
        (false, false) => a.owner() == b.owner(),
    };
    let regions = a.settings.is_multi_region_trail
        || b.settings.is_multi_region_trail
        || a.arn.home_region == b.arn.home_region;
    accounts && regions
}

/// Warnings about `trail` as saved, given every other trail.
pub fn trail_warnings(
    trail: &Trail,
    others: &[Trail],
    is_member: &dyn Fn(&AccountId) -> bool,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if delivers_management(&trail.event_selectors) {
        for other in others.iter().filter(|o| o.id != trail.id) {
            if delivers_management(&other.event_selectors) && scopes_overlap(trail, other, is_member) {
                warnings.push(format!(
                    "trail {} already delivers management events for an overlapping account and region; \
                     CloudTrail bills this second copy of management events",
                    other.arn
                ));
            }
        }
    }
    warnings.extend(selector_warnings(&trail.event_selectors));
    warnings
}

/// Warnings about data-event selectors without a resource filter.
pub fn selector_warnings(selectors: &EventSelectors) -> Vec<String> {
    let mut warnings = Vec::new();
    match selectors {
        EventSelectors::Default => {}
        EventSelectors::Basic(basic) => {
            for (i, selector) in basic.iter().enumerate() {
                for (j, resource) in selector.data_resources.iter().enumerate() {
                    if let Some(value) = resource.values.iter().find(|v| is_all_resources_value(v)) {
                        warnings.push(format!(
                            "event_selectors[{i}].data_resources[{j}]: {} value {value:?} has {UNFILTERED}",
                            resource.resource_type
                        ));
                    }
                }
            }
        }
        EventSelectors::Advanced(advanced) => {
            for (i, selector) in advanced.iter().enumerate() {
                let data = selector
                    .field_selectors
                    .iter()
                    .any(|f| f.field == "eventCategory" && f.equals.iter().any(|v| v == "Data"));
                let by_arn = selector.field_selectors.iter().any(|f| f.field == "resources.ARN");
                if data && !by_arn {
                    let name = selector.name.as_deref().map(|n| format!(" ({n:?})")).unwrap_or_default();
                    warnings.push(format!(
                        "advanced_event_selectors[{i}]{name}: eventCategory Data without a resources.ARN \
                         condition has {UNFILTERED}"
                    ));
                }
            }
        }
    }
    warnings
}
