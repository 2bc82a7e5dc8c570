//! Features: each plugs into the delivery pipeline from above — as a tap that sees every staged
//! event, a hook in the transaction that records a delivered file, or a loop of its own — and keeps
//! its own tables.

pub mod alerts;
pub mod athena;
pub mod cloudwatch_logs;
pub mod history;
pub mod insights;
pub mod integrity;
pub mod notifications;
pub mod outbox;
pub mod usage;
