//! Group commit: concurrent stage calls are made durable together. Calls queue while a group is
//! being committed; the next group takes everything queued (up to a bound), so under load one
//! transaction and one WAL flush carry many calls, and an idle system adds no wait. Each caller is
//! answered only after its group committed.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Incoming, StageOutcome};
use crate::model::AccountId;
use crate::store::StoreError;

/// One caller's events and refusals.
#[derive(Debug, Default)]
pub struct Call {
    pub events: Vec<Incoming>,
    pub rejected: Vec<AccountId>,
}

type Reply = oneshot::Sender<Result<Vec<StageOutcome>, StoreError>>;

/// What makes a group durable.
#[async_trait::async_trait]
pub trait CommitCalls: Send + Sync + 'static {
    /// Stages every call of `calls` in one transaction (all or nothing); per call, in order, its
    /// outcomes.
    async fn commit(&self, calls: &[Call]) -> Result<Vec<Vec<StageOutcome>>, StoreError>;
}

type CommitGroup = Arc<dyn CommitCalls>;

/// Bounds of one group.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    /// Events in one group at most (a call is never split).
    pub max_events: usize,
    /// Groups committing at once: while one waits for its flush the next one gathers and starts.
    pub committers: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self { max_events: 20_000, committers: 2 }
    }
}

/// Calls queued before a caller is made to wait for room (backpressure).
const QUEUE: usize = 4096;

pub struct GroupCommit {
    queue: mpsc::Sender<(Call, Reply)>,
}

impl GroupCommit {
    /// Starts the committers on the current runtime; they stop once this is dropped and the queue
    /// is drained.
    pub fn start(commit: CommitGroup, limits: GroupLimits) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..limits.committers.max(1) {
            tokio::spawn(committer(receiver.clone(), commit.clone(), limits.max_events));
        }
        Self { queue }
    }

    /// Stages one call's events with whatever else is queued; returns once they are durable.
    pub async fn stage(&self, call: Call) -> Result<Vec<StageOutcome>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((call, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

async fn committer(
    receiver: Arc<Mutex<mpsc::Receiver<(Call, Reply)>>>,
    commit: CommitGroup,
    max_events: usize,
) {
    loop {
        let group = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else { return };
            gather(first, &mut receiver, max_events)
        };
        commit_group(&commit, group).await;
    }
}

/// `first` and whatever is queued behind it, until `max_events` would be passed.
fn gather(
    first: (Call, Reply),
    receiver: &mut mpsc::Receiver<(Call, Reply)>,
    max_events: usize,
) -> Vec<(Call, Reply)> {
    // A call over the bound still goes whole, in a group of its own or as the last one.
    let mut events = first.0.events.len();
    let mut group = vec![first];
    while events < max_events {
        match receiver.try_recv() {
            Ok(next) => {
                events += next.0.events.len();
                group.push(next);
            }
            Err(_) => break,
        }
    }
    group
}

async fn commit_group(commit: &CommitGroup, group: Vec<(Call, Reply)>) {
    let (calls, replies): (Vec<Call>, Vec<Reply>) = group.into_iter().unzip();
    let alone = calls.len() == 1;
    match commit.commit(&calls).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(error) if !alone && rolled_back(&error) => {
            // Postgres refused the group and rolled it back: one caller's bad call must not fail
            // the others, so each goes again on its own.
            tracing::warn!(%error, calls = replies.len(), "group commit refused; staging its calls one by one");
            for (reply, call) in replies.into_iter().zip(calls.chunks(1)) {
                let outcome = commit.commit(call).await.map(|mut o| o.pop().unwrap_or_default());
                let _ = reply.send(outcome);
            }
        }
        Err(error) => {
            // The outcome is unknown (the connection failed, perhaps after the commit): every
            // caller is told so and retries; dedupe keeps a retried event once.
            let text = error.to_string();
            let mut error = Some(error);
            for reply in replies {
                let this = error.take().unwrap_or_else(|| {
                    StoreError::Database(sqlx::Error::Io(std::io::Error::other(format!(
                        "group commit failed: {text}"
                    ))))
                });
                let _ = reply.send(Err(this));
            }
        }
    }
}

/// Whether the server answered with an error: the transaction is rolled back, nothing of it kept.
fn rolled_back(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(sqlx::Error::Database(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Region;
    use crate::model::shard::Source;

    fn call(ids: &[&str]) -> Call {
        let account = AccountId::parse("account", "111111111111").unwrap();
        let region = Region::parse("region", "us-east-1").unwrap();
        Call {
            events: ids
                .iter()
                .map(|id| Incoming {
                    account_id: account.clone(),
                    region: region.clone(),
                    source: Source::Push,
                    event_id: (*id).to_owned(),
                    record: format!("{{\"eventID\":\"{id}\"}}"),
                })
                .collect(),
            rejected: Vec::new(),
        }
    }

    #[tokio::test]
    async fn queued_calls_share_a_group_and_each_gets_its_own_outcomes() {
        let (queue, mut receiver) = mpsc::channel(16);
        let mut answers = Vec::new();
        for ids in [&["a", "b"][..], &["c"], &["d", "e", "f"]] {
            let (reply, answer) = oneshot::channel();
            queue.send((call(ids), reply)).await.unwrap();
            answers.push(answer);
        }
        let first = receiver.recv().await.unwrap();
        let group = gather(first, &mut receiver, 100);
        assert_eq!(group.len(), 3);
        let commit: CommitGroup = Arc::new(AcceptUnless("never"));
        commit_group(&commit, group).await;
        let sizes: Vec<usize> =
            futures::future::join_all(answers).await.into_iter().map(|a| a.unwrap().unwrap().len()).collect();
        assert_eq!(sizes, vec![2, 1, 3]);
    }

    #[tokio::test]
    async fn a_group_stops_gathering_at_its_bound() {
        let (queue, mut receiver) = mpsc::channel(16);
        for ids in [&["a", "b"][..], &["c", "d"], &["e"]] {
            let (reply, _answer) = oneshot::channel();
            queue.send((call(ids), reply)).await.unwrap();
        }
        let first = receiver.recv().await.unwrap();
        assert_eq!(gather(first, &mut receiver, 3).len(), 2);
        let next = receiver.recv().await.unwrap();
        assert_eq!(gather(next, &mut receiver, 3).len(), 1);
    }

    #[tokio::test]
    async fn a_refused_group_is_retried_call_by_call() {
        let (queue, mut receiver) = mpsc::channel(16);
        let mut answers = Vec::new();
        for ids in [&["good"][..], &["bad"], &["fine"]] {
            let (reply, answer) = oneshot::channel();
            queue.send((call(ids), reply)).await.unwrap();
            answers.push(answer);
        }
        let first = receiver.recv().await.unwrap();
        let group = gather(first, &mut receiver, 100);
        let commit: CommitGroup = Arc::new(AcceptUnless("bad"));
        commit_group(&commit, group).await;
        let results: Vec<bool> =
            futures::future::join_all(answers).await.into_iter().map(|a| a.unwrap().is_ok()).collect();
        assert_eq!(results, vec![true, false, true]);
    }

    /// Accepts everything, but refuses any group holding the named event, as Postgres refuses
    /// a statement with a bad value.
    struct AcceptUnless(&'static str);

    #[async_trait::async_trait]
    impl CommitCalls for AcceptUnless {
        async fn commit(&self, calls: &[Call]) -> Result<Vec<Vec<StageOutcome>>, StoreError> {
            if calls.iter().flat_map(|c| &c.events).any(|e| e.event_id == self.0) {
                return Err(StoreError::Database(sqlx::Error::Database(Box::new(Refused))));
            }
            Ok(calls.iter().map(|c| vec![StageOutcome::Accepted; c.events.len()]).collect())
        }
    }

    #[derive(Debug)]
    struct Refused;

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("invalid input value")
        }
    }

    impl std::error::Error for Refused {}

    impl sqlx::error::DatabaseError for Refused {
        fn message(&self) -> &str {
            "invalid input value"
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }
}
