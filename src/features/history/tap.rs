//! The history tap: indexes every management and Insights event for LookupEvents, in the same
//! transaction that advances its cursor, so each event is indexed once per pass over a shard and
//! a re-delivered copy stays one row.

use crate::features::history::index::{self as index, NewEntry};
use crate::model::history::{self, HistoryFields};
use crate::model::record::RecordView;
use crate::pipeline::taps::{Tap, TapBatch, TapContext, TapError, TapEvent};

pub struct HistoryTap;

#[async_trait::async_trait]
impl Tap for HistoryTap {
    fn name(&self) -> &'static str {
        "history"
    }

    async fn consume(
        &self,
        _key: &str,
        _context: &TapContext<'_>,
        events: &[TapEvent<'_>],
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), TapError> {
        index_events(events.iter(), tx).await
    }

    /// One insert for every shard of the group: the insert's cost is mostly per call.
    async fn consume_many(
        &self,
        batches: &[TapBatch<'_>],
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), TapError> {
        index_events(batches.iter().flat_map(|b| b.events.iter()), tx).await
    }
}

/// Indexes the kept events of `events` in one insert.
async fn index_events<'e, 'r: 'e>(
    events: impl Iterator<Item = &'e TapEvent<'r>>,
    tx: &mut sqlx::PgConnection,
) -> Result<(), TapError> {
    let kept: Vec<(String, RecordView)> = events
        .filter(|event| history::is_kept(event.view.category))
        .map(|event| (event.record.to_owned(), event.view.clone()))
        .collect();
    if kept.is_empty() {
        return Ok(());
    }
    // Reading identities out of thousands of records is CPU work: off the async runtime.
    let (kept, fields) = tokio::task::spawn_blocking(move || {
        let fields: Vec<HistoryFields> =
            kept.iter().map(|(record, view)| HistoryFields::of(record, view)).collect();
        (kept, fields)
    })
    .await
    .map_err(|e| TapError::External(format!("indexing panicked: {e}")))?;
    let entries: Vec<NewEntry<'_>> = kept
        .iter()
        .zip(fields)
        .map(|((record, view), fields)| NewEntry {
            event_time: view.event_time,
            account_id: view.recipient_account_id.as_str(),
            region: view.aws_region.as_str(),
            event_id: view.event_id.as_str(),
            fields,
            record,
        })
        .collect();
    index::index(tx, &entries).await?;
    Ok(())
}
