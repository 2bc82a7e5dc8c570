//! Changes: what a worker hears from Postgres instead of rescanning every shard — the shards that
//! got new staged events (staging notifies at commit). A notification can be missed (the
//! connection dropped, another staging backend); then, and every [`FULL_LOOK_EVERY`] anyway,
//! every shard counts as changed. (Configuration changes are read from a version number instead,
//! see `route::config_clock`: a pass must know every change committed before it started.)

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::staging::postgres::{Dirty, STAGED_CHANNEL, parse_dirty};
use crate::model::shard::ShardId;

/// However quiet the channels, everything is looked at again this often.
pub const FULL_LOOK_EVERY: Duration = Duration::from_secs(30);

/// What changed since the last [`Changes::take`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// Every shard may have new events.
    pub all_shards: bool,
    pub shards: HashSet<ShardId>,
}

impl Changed {
    fn everything() -> Self {
        Self { all_shards: true, shards: HashSet::new() }
    }

    /// Whether `shard` may have new events.
    pub fn shard(&self, shard: ShardId) -> bool {
        self.all_shards || self.shards.contains(&shard)
    }

    fn hear(&mut self, payload: &str) {
        match parse_dirty(payload) {
            Dirty::Shards(ids) => self.shards.extend(ids),
            Dirty::All => self.all_shards = true,
        }
    }
}

pub struct Changes {
    pool: PgPool,
    listener: Option<PgListener>,
    pending: Changed,
    last_full_look: Instant,
    /// The connection was lost: the listener listens again on its next wait, and what was
    /// notified until then is unknown.
    relistening: bool,
}

impl Changes {
    /// Listens on `pool`'s database; until that works, everything counts as changed every time.
    pub async fn listen(pool: &PgPool) -> Self {
        let mut changes = Self {
            pool: pool.clone(),
            listener: None,
            pending: Changed::everything(),
            last_full_look: Instant::now(),
            relistening: false,
        };
        changes.connect().await;
        changes
    }

    async fn connect(&mut self) {
        let listener = async {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            listener.listen(STAGED_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listener.await {
            Ok(listener) => self.listener = Some(listener),
            Err(error) => tracing::warn!(%error, "cannot listen for changes; looking at everything"),
        }
        // Whatever happened before listening started is unknown.
        self.pending = Changed::everything();
    }

    /// Waits until something changed or `timeout` passed, then gathers everything queued.
    pub async fn wait(&mut self, timeout: Duration) {
        let Some(listener) = self.listener.as_mut() else {
            tokio::time::sleep(timeout).await;
            self.connect().await;
            return;
        };
        let lost = match tokio::time::timeout(timeout, listener.try_recv()).await {
            Err(_) => false,
            Ok(Ok(Some(notification))) => {
                self.pending.hear(notification.payload());
                false
            }
            Ok(Ok(None)) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "change listener failed");
                true
            }
        };
        if lost || std::mem::take(&mut self.relistening) {
            // Notifications sent while disconnected are gone; the next try_recv reconnects, and
            // what is notified until it listens again is covered by one more look at everything.
            self.relistening = lost;
            self.pending = Changed::everything();
            return;
        }
        // Everything else already queued, without waiting.
        while let Some(notification) = listener.next_buffered() {
            self.pending.hear(notification.payload());
        }
    }

    /// What changed since the last call (everything, now and then).
    pub fn take(&mut self) -> Changed {
        if self.last_full_look.elapsed() >= FULL_LOOK_EVERY {
            self.last_full_look = Instant::now();
            self.pending = Changed::everything();
        }
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_add_up_to_what_changed() {
        let mut changed = Changed::default();
        changed.hear("4,9");
        changed.hear("9,12");
        assert!(!changed.all_shards);
        assert!(changed.shard(ShardId(4)) && changed.shard(ShardId(12)) && !changed.shard(ShardId(5)));
        changed.hear("*");
        assert!(changed.shard(ShardId(5)));
    }
}
