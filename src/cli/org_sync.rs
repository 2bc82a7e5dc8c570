//! `orgtrail org sync`: AWS Organizations sync, run by the server, reported here.

use super::call_error;
use super::output::{self, Output};
use crate::client::Clients;
use crate::proto::v1 as pb;

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Only accounts in this organizational unit (ou-...) or root (r-...), child OUs included;
    /// repeat for several. Default: the server's org_sync_ou_ids, or the whole organization.
    #[arg(long = "ou-id")]
    pub ou_ids: Vec<String>,
    /// Show what would change without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(mut clients: Clients, args: SyncArgs, format: Output) -> anyhow::Result<()> {
    let report = clients
        .organizations
        .sync_accounts(pb::SyncAccountsRequest { ou_ids: args.ou_ids, dry_run: args.dry_run })
        .await
        .map_err(call_error)?
        .into_inner();
    if format == Output::Json {
        return output::json(&report);
    }
    let rows: Vec<Vec<String>> = report
        .accounts
        .iter()
        .map(|account| {
            vec![
                account.account_id.clone(),
                action_name(account.action),
                account.name.clone(),
                account.reason.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        output::table(&["ACCOUNT_ID", "ACTION", "NAME", "REASON"], &rows);
    }
    let counts = report.counts.unwrap_or_default();
    println!(
        "{}registered {}, reactivated {}, suspended {}, removed {}, unchanged {}",
        if report.dry_run { "dry run, nothing changed: would have " } else { "" },
        counts.registered,
        counts.reactivated,
        counts.suspended,
        counts.removed,
        counts.unchanged
    );
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

fn action_name(value: i32) -> String {
    pb::SyncAction::try_from(value)
        .map(|a| a.as_str_name().trim_start_matches("SYNC_ACTION_").to_owned())
        .unwrap_or_else(|_| value.to_string())
}

/// The last sync's lines under `org describe`.
pub fn print_status(sync: &pb::OrganizationSyncStatus) {
    let counts = sync.counts.unwrap_or_default();
    output::fields(&[
        ("last_sync_time", output::time(&sync.last_sync_time)),
        ("last_sync_error", output::or_dash(&sync.last_sync_error)),
        ("last_sync_success_time", output::time(&sync.last_success_time)),
        (
            "last_sync_counts",
            format!(
                "registered {}, reactivated {}, suspended {}, removed {}, unchanged {}",
                counts.registered, counts.reactivated, counts.suspended, counts.removed, counts.unchanged
            ),
        ),
    ]);
}
