//! The history tap: indexes every management and Insights event for LookupEvents, in the same
//! transaction that advances its cursor, so each staged event is indexed once.

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
    // Reading identities out of thousands of records and deflating them is CPU work: off the
    // async runtime.
    let (kept, fields, layout) = tokio::task::spawn_blocking(move || {
        let fields = kept.iter().map(|(record, view)| HistoryFields::of(record, view)).collect();
        let entries = entries_of(&kept, fields);
        let layout = index::Layout::of(&entries);
        let fields: Vec<HistoryFields> = entries.into_iter().map(|entry| entry.fields).collect();
        (kept, fields, layout)
    })
    .await
    .map_err(|e| TapError::External(format!("indexing panicked: {e}")))?;
    index::index_laid_out(tx, &entries_of(&kept, fields), &layout).await?;
    Ok(())
}

fn entries_of(kept: &[(String, RecordView)], fields: Vec<HistoryFields>) -> Vec<NewEntry<'_>> {
    kept.iter()
        .zip(fields)
        .map(|((record, view), fields)| NewEntry {
            event_time: view.event_time,
            account_id: view.recipient_account_id.as_str(),
            region: view.aws_region.as_str(),
            event_id: view.event_id.as_str(),
            fields,
            record,
        })
        .collect()
}
