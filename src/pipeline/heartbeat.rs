//! The worker's heartbeat, in a task of its own, on a connection of its own. One row holds all of
//! a worker's leases ([`shards::renew`]); renewed from the worker's loop, it lapsed whenever a pass
//! outlasted the TTL (thousands of shards just claimed, a saturated Postgres) and live workers
//! took each other's shards over. Here it is renewed every third of the TTL whatever the passes
//! do, unless the worker stopped moving altogether (no round finished for minutes): then it is
//! left to lapse, so that a stuck worker does not hold its shards forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection, PgPool};
use tokio::sync::{mpsc, watch};

use super::shards::{self, Lease};
use crate::store::StoreError;

/// The worker counts as stuck when its pulse was quiet for this many TTLs, and at least
/// [`STUCK_AFTER_AT_LEAST`]: a group of rounds waiting on a slow bucket is not stuck.
const STUCK_AFTER_TTLS: u32 = 4;
const STUCK_AFTER_AT_LEAST: Duration = Duration::from_secs(120);

/// What the heartbeat tells the worker's loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fleet {
    /// Live workers (this one included once its first renewal is in).
    pub live_workers: i64,
    /// All shards there are.
    pub shards: i64,
}

/// How the worker shows it is moving: stamped each time round its loop and after each group of
/// shard rounds.
#[derive(Clone)]
pub struct Pulse {
    /// Milliseconds since `started` at the last stamp.
    last: Arc<AtomicU64>,
    started: Instant,
}

impl Pulse {
    pub fn beat(&self) {
        self.last.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long since the last stamp.
    fn quiet(&self) -> Duration {
        self.started.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// The loop's side of the heartbeat.
pub struct Heartbeat {
    pub pulse: Pulse,
    /// The fleet as counted at the last renewal.
    pub fleet: watch::Receiver<Fleet>,
    /// Sent when a renewal found the heartbeat expired: the leases still held.
    pub lapsed: mpsc::UnboundedReceiver<Vec<Lease>>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// Renews once (so that the worker may claim at once), then keeps renewing in a task.
    pub async fn start(pool: &PgPool, owner: &str, ttl: Duration) -> Result<Self, StoreError> {
        let options = pool.connect_options().as_ref().clone();
        let mut beat = Beat { options, conn: None, owner: owner.to_owned(), ttl };
        let (fleet_tx, fleet) = watch::channel(Fleet::default());
        let (lapsed_tx, lapsed) = mpsc::unbounded_channel();
        // The first renewal creates the heartbeat row; a lapse cannot have happened yet.
        let counted = beat.renew().await?.1;
        fleet_tx.send_replace(counted);
        let pulse = Pulse { last: Arc::new(AtomicU64::new(0)), started: Instant::now() };
        let task = tokio::spawn(beat.run(pulse.clone(), fleet_tx, lapsed_tx));
        Ok(Self { pulse, fleet, lapsed, task })
    }

    /// Stops renewing (the worker then gives its leases up itself).
    pub fn stop(self) {
        self.task.abort();
    }
}

struct Beat {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
    owner: String,
    ttl: Duration,
}

impl Beat {
    async fn run(
        mut self,
        pulse: Pulse,
        fleet: watch::Sender<Fleet>,
        lapsed: mpsc::UnboundedSender<Vec<Lease>>,
    ) {
        let every = self.ttl / 3;
        let stuck_after = (self.ttl * STUCK_AFTER_TTLS).max(STUCK_AFTER_AT_LEAST);
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let quiet = pulse.quiet();
            if quiet > stuck_after {
                tracing::error!(worker = %self.owner, quiet_s = quiet.as_secs(),
                    "worker loop stuck; heartbeat left to lapse so that others take its shards");
                continue;
            }
            match self.renew().await {
                Ok((held, counted)) => {
                    fleet.send_replace(counted);
                    if let Some(held) = held {
                        tracing::warn!(worker = %self.owner, "heartbeat had expired; keeping only the leases still held");
                        if lapsed.send(held).is_err() {
                            return;
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(worker = %self.owner, %error, "heartbeat failed; trying again");
                    // The connection may be broken: a new one next time.
                    self.conn = None;
                }
            }
        }
    }

    /// One renewal and one count of the fleet, on the heartbeat's own connection.
    async fn renew(&mut self) -> Result<(Option<Vec<Lease>>, Fleet), StoreError> {
        let conn = match self.conn.as_mut() {
            Some(conn) => conn,
            None => self.conn.insert(self.options.connect().await?),
        };
        let ttl_ms = self.ttl.as_millis() as i64;
        let held = shards::renew(&mut *conn, &self.owner, ttl_ms).await?;
        let (live_workers, shards) = shards::fleet(&mut *conn).await?;
        Ok((held, Fleet { live_workers, shards }))
    }
}
