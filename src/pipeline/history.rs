//! The history tap: indexes every management and Insights event for LookupEvents, in the same
//! transaction that advances its cursor, so each event is indexed exactly once per shard pass and
//! a re-delivered copy (another shard, a replay) stays one row.

use super::taps::{Tap, TapContext, TapError, TapEvent};
use crate::model::history::{self, HistoryFields};
use crate::store::history::{self as index, NewEntry};

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
        let entries: Vec<NewEntry<'_>> = events
            .iter()
            .filter(|event| history::is_kept(event.view.category))
            .map(|event| NewEntry {
                event_time: event.view.event_time,
                account_id: event.view.recipient_account_id.as_str(),
                region: event.view.aws_region.as_str(),
                event_id: event.view.event_id.as_str(),
                fields: HistoryFields::of(event.record, event.view),
                record: event.record,
            })
            .collect();
        index::index(tx, &entries).await?;
        Ok(())
    }
}
