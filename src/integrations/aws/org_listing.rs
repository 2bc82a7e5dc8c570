//! Reading AWS Organizations: every account of the organization, or those under some OUs
//! (recursively through child OUs), with their state. Every list call is paginated.

use aws_sdk_organizations::Client;
use aws_sdk_organizations::types::{Account, AccountState, AccountStatus};

use super::OrgSyncError;
use crate::model::{AccountId, FieldError};

/// An organizational unit (`ou-xxxx-yyyyyyyy`) or a root (`r-xxxx`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuId(String);

impl OuId {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        let lower_alnum = |s: &str, min: usize| {
            s.len() >= min && s.len() <= 32 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        };
        let valid = if let Some(rest) = value.strip_prefix("ou-") {
            rest.split_once('-').is_some_and(|(root, unit)| lower_alnum(root, 4) && lower_alnum(unit, 8))
        } else if let Some(root) = value.strip_prefix("r-") {
            lower_alnum(root, 4)
        } else {
            false
        };
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(FieldError::new(field, format!("{value:?} is not an OU id (ou-...) or a root id (r-...)")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OuId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What AWS says about an account, reduced to what orgtrail acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsState {
    Active,
    /// Suspended, closed or being closed: nothing more to collect.
    Suspended,
    /// Not yet usable (PENDING_ACTIVATION) or a state this version does not know: left alone.
    Other,
}

impl AwsState {
    /// `State` (newer API) wins over the deprecated `Status` when AWS sends both.
    fn of(account: &Account) -> Self {
        if let Some(state) = account.state() {
            return match state {
                AccountState::Active => Self::Active,
                AccountState::Suspended | AccountState::PendingClosure | AccountState::Closed => {
                    Self::Suspended
                }
                _ => Self::Other,
            };
        }
        match account.status() {
            Some(AccountStatus::Active) => Self::Active,
            Some(AccountStatus::Suspended | AccountStatus::PendingClosure) => Self::Suspended,
            _ => Self::Other,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Suspended => "suspended or closed",
            Self::Other => "not yet active",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AwsAccount {
    pub account_id: AccountId,
    pub name: String,
    pub email: String,
    pub state: AwsState,
}

/// The accounts in scope, and what could not be read.
#[derive(Debug, Default)]
pub struct Listing {
    /// The organization's management account, per AWS.
    pub management_account_id: Option<String>,
    pub accounts: Vec<AwsAccount>,
    pub warnings: Vec<String>,
}

/// Lists the organization's accounts, or those under `ou_ids` and their child OUs.
pub async fn list(client: &Client, ou_ids: &[OuId]) -> Result<Listing, OrgSyncError> {
    let mut listing = Listing::default();
    let organization = client
        .describe_organization()
        .send()
        .await
        .map_err(|e| OrgSyncError::from_sdk("DescribeOrganization", None, e))?;
    listing.management_account_id =
        organization.organization().and_then(|o| o.master_account_id()).map(str::to_owned);
    let mut raw = Vec::new();
    if ou_ids.is_empty() {
        let mut pages = client.list_accounts().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| OrgSyncError::from_sdk("ListAccounts", None, e))?;
            raw.extend(page.accounts().iter().cloned());
        }
    } else {
        // Depth-first through the OU tree; an OU named twice (or inside another named one) is read once.
        let mut pending: Vec<String> = ou_ids.iter().rev().map(|id| id.as_str().to_owned()).collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(parent) = pending.pop() {
            if !seen.insert(parent.clone()) {
                continue;
            }
            raw.extend(accounts_for_parent(client, &parent).await?);
            pending.extend(child_units(client, &parent).await?);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for account in raw {
        let id = account.id().unwrap_or_default();
        let Ok(account_id) = AccountId::parse("id", id) else {
            listing.warnings.push(format!("AWS Organizations returned an account with an invalid id {id:?}"));
            continue;
        };
        if !seen.insert(account_id.clone()) {
            continue;
        }
        listing.accounts.push(AwsAccount {
            state: AwsState::of(&account),
            name: account.name().unwrap_or_default().to_owned(),
            email: account.email().unwrap_or_default().to_owned(),
            account_id,
        });
    }
    listing.accounts.sort_by(|a, b| a.account_id.as_str().cmp(b.account_id.as_str()));
    Ok(listing)
}

async fn accounts_for_parent(client: &Client, parent: &str) -> Result<Vec<Account>, OrgSyncError> {
    let mut accounts = Vec::new();
    let mut pages = client.list_accounts_for_parent().parent_id(parent).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| OrgSyncError::from_sdk("ListAccountsForParent", Some(parent), e))?;
        accounts.extend(page.accounts().iter().cloned());
    }
    Ok(accounts)
}

async fn child_units(client: &Client, parent: &str) -> Result<Vec<String>, OrgSyncError> {
    let mut units = Vec::new();
    let mut pages = client.list_organizational_units_for_parent().parent_id(parent).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| OrgSyncError::from_sdk("ListOrganizationalUnitsForParent", Some(parent), e))?;
        units.extend(page.organizational_units().iter().filter_map(|unit| unit.id().map(str::to_owned)));
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ou_ids_are_checked() {
        assert!(OuId::parse("ou_ids[0]", "ou-ab12-abcdefgh").is_ok());
        assert!(OuId::parse("ou_ids[0]", "r-ab12").is_ok());
        for bad in ["", "ou-", "ou-ab12", "OU-AB12-ABCDEFGH", "r-", "o-abcdefghij", "ou-ab12-abc"] {
            assert_eq!(OuId::parse("ou_ids[0]", bad).unwrap_err().field, "ou_ids[0]", "{bad:?}");
        }
    }
}
