//! Conversions between domain types and proto messages.

use chrono::{DateTime, Utc};

use crate::model::collector::CollectorSettings;
use crate::model::selectors::{
    AdvancedEventSelector, AdvancedFieldSelector, DataResource, EventSelector, InsightSelector, ReadWriteType,
};
use crate::model::trail::{Tag, Trail};
use crate::model::{FieldError, Region};
use crate::proto::v1 as pb;
use crate::store::accounts::{Account, AccountStatus, RegistrationSource};
use crate::store::organizations::Organization;
use crate::store::tokens::{Role, Token};

pub fn timestamp(time: DateTime<Utc>) -> pbjson_types::Timestamp {
    time.into()
}

pub fn opt_timestamp(time: Option<DateTime<Utc>>) -> Option<pbjson_types::Timestamp> {
    time.map(timestamp)
}

pub fn organization(org: &Organization) -> pb::Organization {
    pb::Organization {
        id: org.id.to_string(),
        management_account_id: org.management_account_id.to_string(),
        regions: org.regions.iter().map(Region::to_string).collect(),
        created_time: Some(timestamp(org.created_time)),
        updated_time: Some(timestamp(org.updated_time)),
        // Only DescribeOrganization reads the sync's status (see `org_sync_status`).
        last_sync: None,
    }
}

pub fn sync_counts(counts: &crate::store::org_sync::Counts) -> pb::SyncCounts {
    pb::SyncCounts {
        registered: counts.registered,
        reactivated: counts.reactivated,
        suspended: counts.suspended,
        removed: counts.removed,
        unchanged: counts.unchanged,
    }
}

pub fn org_sync_status(status: &crate::store::org_sync::SyncStatus) -> pb::OrganizationSyncStatus {
    pb::OrganizationSyncStatus {
        last_sync_time: Some(timestamp(status.last_sync_time)),
        last_sync_error: status.last_error.clone(),
        last_success_time: opt_timestamp(status.last_success_time),
        counts: Some(sync_counts(&status.counts)),
    }
}

pub fn sync_report(report: &crate::integrations::aws::org_sync::SyncReport) -> pb::SyncAccountsResponse {
    use crate::integrations::aws::org_sync::Action;
    pb::SyncAccountsResponse {
        dry_run: report.dry_run,
        accounts: report
            .changes
            .iter()
            .map(|change| pb::SyncedAccount {
                account_id: change.account_id.to_string(),
                name: change.name.clone(),
                action: match change.action {
                    Action::Register => pb::SyncAction::Registered,
                    Action::Reactivate => pb::SyncAction::Reactivated,
                    Action::Suspend => pb::SyncAction::Suspended,
                    Action::Remove => pb::SyncAction::Removed,
                } as i32,
                reason: change.reason.clone(),
            })
            .collect(),
        counts: Some(sync_counts(&report.counts)),
        warnings: report.warnings.clone(),
    }
}

pub fn account_status(status: AccountStatus) -> pb::AccountStatus {
    match status {
        AccountStatus::Active => pb::AccountStatus::Active,
        AccountStatus::Suspended => pb::AccountStatus::Suspended,
        AccountStatus::Removed => pb::AccountStatus::Removed,
    }
}

pub fn account(account: &Account) -> pb::Account {
    let source = match account.registration_source {
        RegistrationSource::Manual => pb::RegistrationSource::Manual,
        RegistrationSource::Bootstrap => pb::RegistrationSource::Bootstrap,
        RegistrationSource::AwsOrganizations => pb::RegistrationSource::AwsOrganizations,
    };
    pb::Account {
        account_id: account.account_id.to_string(),
        name: account.name.clone(),
        email: account.email.clone(),
        status: account_status(account.status).into(),
        joined_time: Some(timestamp(account.joined_time)),
        registration_source: source.into(),
        updated_time: Some(timestamp(account.updated_time)),
        events_accepted: 0,
        events_duplicate: 0,
        events_rejected: 0,
        collector: (account.collector != CollectorSettings::default()).then(|| pb::CollectorSettings {
            role_arn: account.collector.role_arn.clone(),
            external_id: account.collector.external_id.clone(),
            lookup_events: account.collector.lookup_events,
            trail_bucket: account.collector.trail_bucket.clone(),
            trail_prefix: account.collector.trail_prefix.clone(),
            regions: account.collector.regions.clone(),
        }),
        collector_status: vec![],
    }
}

pub fn collector_settings(settings: pb::CollectorSettings) -> CollectorSettings {
    CollectorSettings {
        role_arn: settings.role_arn,
        external_id: settings.external_id,
        lookup_events: settings.lookup_events,
        trail_bucket: settings.trail_bucket,
        trail_prefix: settings.trail_prefix,
        regions: settings.regions,
    }
}

pub fn collector_status(status: &crate::store::accounts::CollectorStatus) -> pb::CollectorStatus {
    pb::CollectorStatus {
        source: status.source.clone(),
        region: status.region.clone(),
        last_success_time: opt_timestamp(status.last_success_at),
        last_error: status.last_error.clone(),
        last_error_time: opt_timestamp(status.last_error_at),
        events_collected: status.events_collected,
    }
}

pub fn role(role: Role) -> pb::Role {
    match role {
        Role::Admin => pb::Role::Admin,
        Role::Auditor => pb::Role::Auditor,
        Role::Member => pb::Role::Member,
    }
}

pub fn token(token: &Token) -> pb::Token {
    pb::Token {
        token_id: token.id.to_string(),
        name: token.name.clone(),
        role: role(token.role).into(),
        account_id: token.account_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        access_key_id: token.access_key_id.clone().unwrap_or_default(),
        created_time: Some(timestamp(token.created_time)),
        expire_time: opt_timestamp(token.expire_time),
        revoked_time: opt_timestamp(token.revoked_time),
    }
}

pub fn tag(tag: &Tag) -> pb::Tag {
    pb::Tag { key: tag.key.clone(), value: tag.value.clone() }
}

pub fn tags_from(tags: Vec<pb::Tag>) -> Vec<Tag> {
    tags.into_iter().map(|t| Tag { key: t.key, value: t.value }).collect()
}

pub fn trail(trail: &Trail) -> pb::Trail {
    let s = &trail.settings;
    pb::Trail {
        name: trail.arn.name.to_string(),
        home_region: trail.arn.home_region.to_string(),
        trail_arn: trail.arn.to_string(),
        owner_account_id: trail.arn.owner_account_id.to_string(),
        s3_bucket_name: s.s3_bucket_name.to_string(),
        s3_key_prefix: s.s3_key_prefix.clone(),
        is_multi_region_trail: s.is_multi_region_trail,
        include_global_service_events: s.include_global_service_events,
        is_organization_trail: s.is_organization_trail,
        log_file_validation_enabled: s.log_file_validation_enabled,
        cloud_watch_logs_log_group_arn: s.cloud_watch_logs_log_group_arn.clone(),
        cloud_watch_logs_role_arn: s.cloud_watch_logs_role_arn.clone(),
        kms_key_id: s.kms_key_id.clone(),
        sns_topic_name: s.sns_topic_name.clone(),
        tags: trail.tags.iter().map(tag).collect(),
        has_custom_event_selectors: trail.event_selectors.is_custom(),
        has_insight_selectors: !trail.insight_selectors.is_empty(),
        created_time: Some(timestamp(trail.created_time)),
        updated_time: Some(timestamp(trail.updated_time)),
        delivery_interval_seconds: s.delivery_interval_seconds,
        warnings: Vec::new(),
    }
}

pub fn event_selector(selector: &EventSelector) -> pb::EventSelector {
    pb::EventSelector {
        read_write_type: selector.read_write_type.as_str().to_owned(),
        include_management_events: Some(selector.include_management_events),
        data_resources: selector
            .data_resources
            .iter()
            .map(|r| pb::DataResource { r#type: r.resource_type.clone(), values: r.values.clone() })
            .collect(),
        exclude_management_event_sources: selector.exclude_management_event_sources.clone(),
    }
}

pub fn event_selector_from(index: usize, selector: pb::EventSelector) -> Result<EventSelector, FieldError> {
    Ok(EventSelector {
        read_write_type: ReadWriteType::parse(
            &format!("event_selectors[{index}].read_write_type"),
            &selector.read_write_type,
        )?,
        include_management_events: selector.include_management_events.unwrap_or(true),
        data_resources: selector
            .data_resources
            .into_iter()
            .map(|r| DataResource { resource_type: r.r#type, values: r.values })
            .collect(),
        exclude_management_event_sources: selector.exclude_management_event_sources,
    })
}

pub fn advanced_selector(selector: &AdvancedEventSelector) -> pb::AdvancedEventSelector {
    pb::AdvancedEventSelector {
        name: selector.name.clone().unwrap_or_default(),
        field_selectors: selector
            .field_selectors
            .iter()
            .map(|f| pb::AdvancedFieldSelector {
                field: f.field.clone(),
                equals: f.equals.clone(),
                starts_with: f.starts_with.clone(),
                ends_with: f.ends_with.clone(),
                not_equals: f.not_equals.clone(),
                not_starts_with: f.not_starts_with.clone(),
                not_ends_with: f.not_ends_with.clone(),
            })
            .collect(),
    }
}

pub fn advanced_selector_from(selector: pb::AdvancedEventSelector) -> AdvancedEventSelector {
    AdvancedEventSelector {
        name: Some(selector.name).filter(|n| !n.is_empty()),
        field_selectors: selector
            .field_selectors
            .into_iter()
            .map(|f| AdvancedFieldSelector {
                field: f.field,
                equals: f.equals,
                starts_with: f.starts_with,
                ends_with: f.ends_with,
                not_equals: f.not_equals,
                not_starts_with: f.not_starts_with,
                not_ends_with: f.not_ends_with,
            })
            .collect(),
    }
}

pub fn insight_selector(selector: &InsightSelector) -> pb::InsightSelector {
    pb::InsightSelector {
        insight_type: selector.insight_type.clone(),
        event_categories: selector.event_categories.clone(),
    }
}

pub fn insight_selector_from(selector: pb::InsightSelector) -> InsightSelector {
    InsightSelector { insight_type: selector.insight_type, event_categories: selector.event_categories }
}
