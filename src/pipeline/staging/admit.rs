//! Admit: the one way into staging, for pushed and pulled records alike. Each record, checked by
//! its caller, must belong to a registered ACTIVE account; it is staged under its own account and
//! region (Insights records in their account's Insights shard), durably before this returns.

use std::collections::HashMap;

use sqlx::PgPool;

use super::{Incoming, StageOutcome, Staging};
use crate::model::AccountId;
use crate::model::record::{Category, RecordError, RecordView};
use crate::model::shard::Source;
use crate::store::StoreError;
use crate::store::accounts::{self, AccountStatus};

/// A record its caller checked: parsed, and allowed to the caller.
#[derive(Debug, Clone)]
pub struct Checked {
    pub view: RecordView,
    /// The record JSON, exactly as it will be delivered.
    pub record: String,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    Accepted,
    /// Its identity was seen within the dedupe horizon: dropped, the first copy wins.
    Duplicate,
    Refused(RecordError),
}

/// Admits `records` (in order; an `Err` is the caller's own refusal) from `source`. Refusals are
/// counted against `refused_by` (the member that pushed, the account a collector pulls for).
pub async fn admit(
    pool: &PgPool,
    staging: &dyn Staging,
    source: Source,
    records: Vec<Result<Checked, RecordError>>,
    refused_by: Option<&AccountId>,
) -> Result<Vec<Admitted>, StoreError> {
    let mut wanted: Vec<&AccountId> =
        records.iter().flatten().map(|c| &c.view.recipient_account_id).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let statuses: HashMap<AccountId, AccountStatus> = if wanted.is_empty() {
        HashMap::new()
    } else {
        accounts::statuses_of(pool, &wanted).await?.into_iter().collect()
    };
    let mut verdicts: Vec<Option<Admitted>> = Vec::with_capacity(records.len());
    let mut incoming = Vec::new();
    let mut refusals = 0usize;
    for record in records {
        let checked = record.and_then(|checked| {
            let account = &checked.view.recipient_account_id;
            match statuses.get(account).copied() {
                Some(AccountStatus::Active) => Ok(checked),
                Some(status) => Err(RecordError::new(
                    "AccountNotActive",
                    format!("account {account} is {}", status.as_str()),
                )),
                None => Err(RecordError::new(
                    "UnregisteredAccount",
                    format!("account {account} is not registered"),
                )),
            }
        });
        match checked {
            Ok(Checked { view, record }) => {
                verdicts.push(None);
                incoming.push(Incoming {
                    account_id: view.recipient_account_id,
                    region: view.aws_region,
                    source: if view.category == Category::Insight { Source::Insights } else { source },
                    event_id: view.event_id,
                    record,
                });
            }
            Err(error) => {
                refusals += 1;
                verdicts.push(Some(Admitted::Refused(error)));
            }
        }
    }
    let refused: Vec<AccountId> = refused_by.map(|a| vec![a.clone(); refusals]).unwrap_or_default();
    let mut outcomes = if incoming.is_empty() && refused.is_empty() {
        Vec::new().into_iter()
    } else {
        staging.stage(incoming, &refused).await?.into_iter()
    };
    Ok(verdicts
        .into_iter()
        .map(|verdict| {
            verdict.unwrap_or_else(|| match outcomes.next() {
                Some(StageOutcome::Duplicate) => Admitted::Duplicate,
                Some(StageOutcome::Accepted) | None => Admitted::Accepted,
            })
        })
        .collect())
}
