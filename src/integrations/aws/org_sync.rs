//! AWS Organizations sync: reconciles orgtrail's member accounts with the organization's.
//!
//! - an ACTIVE AWS account orgtrail does not know is registered (source AWS_ORGANIZATIONS);
//! - an account AWS reports suspended or closed is SUSPENDED;
//! - an account this sync registered that is no longer listed (left the organization, or the OU
//!   filter) is REMOVED — DeregisterAccount's semantics: its delivered data stays;
//! - a REMOVED account listed ACTIVE again, or one the sync suspended, is ACTIVE again.
//!
//! The management account is never changed, and accounts registered by hand or by bootstrap are
//! never removed (they are reported as warnings instead). Changes happen in one transaction under
//! an advisory lock, so replicas never sync at the same time.

use std::collections::HashMap;

use sqlx::PgPool;

use super::OrgSyncError;
use super::org_listing::{self, AwsAccount, AwsState, Listing, OuId};
use crate::model::AccountId;
use crate::model::collector::CollectorSettings;
use crate::store::accounts::{AccountStatus, RegistrationSource};
use crate::store::org_sync::{self, Counts, KnownAccount};
use crate::store::organizations;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Register,
    Reactivate,
    Suspend,
    Remove,
}

/// One account the sync changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub account_id: AccountId,
    pub name: String,
    pub email: String,
    pub action: Action,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub dry_run: bool,
    /// Ordered by account id.
    pub changes: Vec<Change>,
    pub counts: Counts,
    pub warnings: Vec<String>,
}

/// What to sync and how.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Only accounts under these OUs (recursively); empty: the whole organization.
    pub ou_ids: Vec<OuId>,
    /// Compute the report without changing anything.
    pub dry_run: bool,
    /// Non-empty: newly registered accounts are pulled through this role in their account.
    pub member_role_name: String,
    /// Wait for a running sync to finish (on demand); otherwise skip (schedule).
    pub wait_for_lock: bool,
    /// Skip when another replica synced more recently than this (the schedule's interval).
    pub skip_if_synced_within: Option<std::time::Duration>,
}

/// Lists the organization and reconciles the accounts. None: skipped (another replica is syncing
/// or has just synced). A failed non-dry-run sync is recorded as the latest outcome.
pub async fn sync_accounts(
    client: &aws_sdk_organizations::Client,
    pool: &PgPool,
    options: &SyncOptions,
) -> Result<Option<SyncReport>, OrgSyncError> {
    let result = sync_locked(client, pool, options).await;
    if let Err(error) = &result
        && !options.dry_run
        && !matches!(error, OrgSyncError::Busy | OrgSyncError::InvalidArgument(_))
        && let Err(store_error) = org_sync::record_failure(pool, &error.to_string()).await
    {
        tracing::warn!(error = %store_error, "cannot record the failed organizations sync");
    }
    result
}

async fn sync_locked(
    client: &aws_sdk_organizations::Client,
    pool: &PgPool,
    options: &SyncOptions,
) -> Result<Option<SyncReport>, OrgSyncError> {
    let organization = organizations::get(pool).await?.ok_or(OrgSyncError::NoOrganization)?;
    // The transaction holds the lock until commit or rollback, also when this task is dropped.
    let mut tx = pool.begin().await.map_err(crate::store::StoreError::from)?;
    if !options.dry_run {
        if !org_sync::lock(&mut tx, options.wait_for_lock).await? {
            return if options.wait_for_lock { Err(OrgSyncError::Busy) } else { Ok(None) };
        }
        if let Some(within) = options.skip_if_synced_within
            && let Some(last) = org_sync::last_sync_time(&mut tx).await?
            && chrono::Utc::now().signed_duration_since(last).to_std().is_ok_and(|age| age < within)
        {
            return Ok(None);
        }
    }
    let listing = org_listing::list(client, &options.ou_ids).await?;
    let known = org_sync::known_accounts(&mut tx).await?;
    let mut report = plan(&listing, &known, &organization.management_account_id, !options.ou_ids.is_empty());
    report.dry_run = options.dry_run;
    if options.dry_run {
        return Ok(Some(report));
    }
    let mut applied = Vec::with_capacity(report.changes.len());
    for change in report.changes {
        let collector = pull_settings(&change.account_id, &options.member_role_name);
        let done = match change.action {
            Action::Register => {
                org_sync::register(&mut tx, &change.account_id, &change.name, &change.email, &collector)
                    .await?
            }
            Action::Reactivate => {
                org_sync::reactivate(&mut tx, &change.account_id, &change.name, &change.email, &collector)
                    .await?
            }
            Action::Suspend => org_sync::suspend(&mut tx, &change.account_id).await?,
            Action::Remove => org_sync::remove(&mut tx, &change.account_id).await?,
        };
        // Under the lock only an admin's concurrent call can get in between; its change stands.
        if done {
            applied.push(change);
        } else {
            report.counts.unchanged += 1;
        }
    }
    report.changes = applied;
    report.counts = Counts { unchanged: report.counts.unchanged, ..count(&report.changes) };
    org_sync::record_success(&mut tx, report.counts).await?;
    tx.commit().await.map_err(crate::store::StoreError::from)?;
    Ok(Some(report))
}

/// Pull settings for a newly synced account: its `member_role_name` role with LookupEvents; none
/// (push only) without a role name.
fn pull_settings(account_id: &AccountId, member_role_name: &str) -> CollectorSettings {
    if member_role_name.is_empty() {
        return CollectorSettings::default();
    }
    CollectorSettings {
        role_arn: format!("arn:aws:iam::{account_id}:role/{member_role_name}"),
        lookup_events: true,
        ..Default::default()
    }
}

fn count(changes: &[Change]) -> Counts {
    let mut counts = Counts::default();
    for change in changes {
        match change.action {
            Action::Register => counts.registered += 1,
            Action::Reactivate => counts.reactivated += 1,
            Action::Suspend => counts.suspended += 1,
            Action::Remove => counts.removed += 1,
        }
    }
    counts
}

/// Decides every change from what AWS lists and what orgtrail knows. `filtered`: the listing is
/// limited to some OUs, so "not listed" means "outside the filter".
pub fn plan(listing: &Listing, known: &[KnownAccount], management: &AccountId, filtered: bool) -> SyncReport {
    let mut report = SyncReport { warnings: listing.warnings.clone(), ..Default::default() };
    if let Some(aws_management) = &listing.management_account_id
        && aws_management != management.as_str()
    {
        report.warnings.push(format!(
            "the AWS organization's management account is {aws_management}, orgtrail's is {management}"
        ));
    }
    let by_id: HashMap<&AccountId, &KnownAccount> = known.iter().map(|k| (&k.account_id, k)).collect();
    let mut unchanged = 0;
    for aws in &listing.accounts {
        if &aws.account_id == management {
            // It owns every organization trail: its status is never the sync's to change.
            unchanged += 1;
            continue;
        }
        match decide_listed(aws, by_id.get(&aws.account_id).copied()) {
            Some((action, reason)) => report.changes.push(change(aws, action, reason)),
            None => unchanged += 1,
        }
    }
    let listed: std::collections::HashSet<&AccountId> =
        listing.accounts.iter().map(|a| &a.account_id).collect();
    let absence =
        if filtered { "not in the selected organizational units" } else { "not in AWS Organizations" };
    for account in known {
        if &account.account_id == management
            || listed.contains(&account.account_id)
            || account.status == AccountStatus::Removed
        {
            continue;
        }
        match account.registration_source {
            RegistrationSource::AwsOrganizations => report.changes.push(Change {
                account_id: account.account_id.clone(),
                name: account.name.clone(),
                email: String::new(),
                action: Action::Remove,
                reason: absence.to_owned(),
            }),
            RegistrationSource::Manual | RegistrationSource::Bootstrap => {
                unchanged += 1;
                report.warnings.push(format!(
                    "account {} ({}, registered {}) is {absence}; left {}",
                    account.account_id,
                    account.name,
                    account.registration_source.as_str(),
                    account.status.as_str()
                ));
            }
        }
    }
    report.changes.sort_by(|a, b| a.account_id.cmp(&b.account_id));
    report.counts = Counts { unchanged, ..count(&report.changes) };
    report
}

/// The change for an account AWS lists, if any.
fn decide_listed(aws: &AwsAccount, known: Option<&KnownAccount>) -> Option<(Action, &'static str)> {
    match (aws.state, known) {
        (AwsState::Active, None) => Some((Action::Register, "new ACTIVE account in AWS Organizations")),
        // Nothing to collect from an account that is not (or no longer) usable.
        (AwsState::Suspended | AwsState::Other, None) => None,
        (AwsState::Active, Some(known)) => match known.status {
            AccountStatus::Active => None,
            AccountStatus::Removed => Some((Action::Reactivate, "ACTIVE in AWS Organizations again")),
            AccountStatus::Suspended if known.suspended_by_org_sync => {
                Some((Action::Reactivate, "ACTIVE in AWS Organizations again"))
            }
            // Suspended by an admin: the admin lifts it.
            AccountStatus::Suspended => None,
        },
        (AwsState::Suspended, Some(known)) => match known.status {
            AccountStatus::Active => Some((Action::Suspend, "suspended or closed in AWS Organizations")),
            AccountStatus::Suspended | AccountStatus::Removed => None,
        },
        (AwsState::Other, Some(_)) => None,
    }
}

fn change(aws: &AwsAccount, action: Action, reason: &str) -> Change {
    // Names must be 1 to 128 printable characters; AWS's are up to 50, but never trust the far side.
    let name: String = aws.name.chars().filter(|c| !c.is_control()).take(128).collect();
    Change {
        account_id: aws.account_id.clone(),
        name: if name.is_empty() { aws.account_id.to_string() } else { name },
        email: aws.email.clone(),
        action,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: &str) -> AccountId {
        AccountId::parse("id", value).unwrap()
    }

    fn aws(account: &str, state: AwsState) -> AwsAccount {
        AwsAccount { account_id: id(account), name: format!("n{account}"), email: String::new(), state }
    }

    fn known(
        account: &str,
        status: AccountStatus,
        source: RegistrationSource,
        by_sync: bool,
    ) -> KnownAccount {
        KnownAccount {
            account_id: id(account),
            name: "x".into(),
            status,
            registration_source: source,
            suspended_by_org_sync: by_sync,
        }
    }

    #[test]
    fn plan_covers_every_transition_and_spares_the_management_and_manual_accounts() {
        use RegistrationSource::*;
        let management = id("100000000000");
        let listing = Listing {
            management_account_id: Some("100000000000".into()),
            accounts: vec![
                aws("100000000000", AwsState::Suspended),
                aws("200000000001", AwsState::Active),
                aws("200000000002", AwsState::Active),
                aws("200000000003", AwsState::Suspended),
                aws("200000000004", AwsState::Active),
                aws("200000000005", AwsState::Active),
                aws("200000000006", AwsState::Suspended),
            ],
            warnings: vec![],
        };
        let known = vec![
            known("100000000000", AccountStatus::Active, Manual, false),
            known("200000000002", AccountStatus::Removed, AwsOrganizations, false),
            known("200000000003", AccountStatus::Active, AwsOrganizations, false),
            known("200000000004", AccountStatus::Suspended, AwsOrganizations, true),
            known("200000000005", AccountStatus::Suspended, Manual, false),
            known("300000000001", AccountStatus::Active, AwsOrganizations, false),
            known("300000000002", AccountStatus::Active, Bootstrap, false),
            known("300000000003", AccountStatus::Removed, AwsOrganizations, false),
        ];
        let report = plan(&listing, &known, &management, false);
        let actions: Vec<(&str, Action)> =
            report.changes.iter().map(|c| (c.account_id.as_str(), c.action)).collect();
        assert_eq!(
            actions,
            vec![
                ("200000000001", Action::Register),
                ("200000000002", Action::Reactivate),
                ("200000000003", Action::Suspend),
                ("200000000004", Action::Reactivate),
                ("300000000001", Action::Remove),
            ]
        );
        assert_eq!(
            report.counts,
            Counts { registered: 1, reactivated: 2, suspended: 1, removed: 1, unchanged: 4 }
        );
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(report.warnings[0].contains("300000000002"), "{:?}", report.warnings);
    }
}
