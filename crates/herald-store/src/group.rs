//! Group commit: the ingest requests that wait while a transaction commits are stored together
//! in the next one, and each is answered once that transaction has committed. On SQLite one
//! writer task does it (the one ingest writer: no two ingest transactions wait on each other's
//! lock); on PostgreSQL a few do, each with a group of its own.

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot, Mutex};
use tracing::{info, warn};

use crate::records::{now_ms, store_group};
use crate::{Backend, EventRecord, IngestResult, Store, StoreError};

/// Most events one group transaction takes (a request is never split, so a group may exceed it
/// by one request's batch).
pub const MAX_GROUP_EVENTS: usize = 512;
/// Requests waiting for a writer, at most; further requests wait to be queued.
const QUEUED_REQUESTS: usize = 4096;

/// What one request gets: its events' results, or why none of them was stored.
type Answer = Result<Vec<IngestResult>, StoreError>;

/// One request's batch, waiting for its group.
struct Pending {
    records: Vec<EventRecord>,
    answer: oneshot::Sender<Answer>,
}

/// The way into the ingest writers. They start with the first request, on its tokio runtime,
/// and stop once the queue is dropped.
#[derive(Debug)]
pub struct IngestQueue {
    store: Store,
    sender: OnceLock<mpsc::Sender<Pending>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("records", &self.records.len()).finish()
    }
}

impl IngestQueue {
    pub fn new(store: Store) -> IngestQueue {
        IngestQueue { store, sender: OnceLock::new() }
    }

    /// Starts the writers on the current tokio runtime: one on SQLite (its single writer), four
    /// on PostgreSQL (which commits concurrent transactions in parallel).
    fn start(&self) -> mpsc::Sender<Pending> {
        let writers = match self.store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        let (sender, receiver) = mpsc::channel(QUEUED_REQUESTS);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..writers {
            tokio::spawn(write_groups(self.store.clone(), receiver.clone()));
        }
        sender
    }

    /// Stores one request's batch, as [`Store::ingest`] does, in the transaction of its group:
    /// all of the batch or none of it, answered after the group has committed. Another request's
    /// failure in the same group does not fail this one.
    pub async fn ingest(&self, records: Vec<EventRecord>) -> Answer {
        let (answer, answered) = oneshot::channel();
        let sender = self.sender.get_or_init(|| self.start());
        if sender.send(Pending { records, answer }).await.is_err() {
            return Err(StoreError::Unavailable(sqlx::Error::PoolClosed));
        }
        // A writer that went away (the runtime shutting down) answered nothing: nothing committed
        // that the caller would be told about.
        answered.await.unwrap_or(Err(StoreError::Unavailable(sqlx::Error::PoolClosed)))
    }
}

/// One writer: takes every request waiting (up to [`MAX_GROUP_EVENTS`] events) once it is free,
/// commits them as one group, answers them, and goes again.
async fn write_groups(store: Store, receiver: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    loop {
        let group = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else { return };
            // Let the requests already on their way (tasks ready to run) join this group: larger
            // groups mean fewer transactions, statements and pages written per event, at the
            // cost of one turn of the scheduler.
            if receiver.is_empty() {
                tokio::task::yield_now().await;
            }
            let mut events = first.records.len();
            let mut group = vec![first];
            while events < MAX_GROUP_EVENTS {
                match receiver.try_recv() {
                    Ok(pending) => {
                        events += pending.records.len();
                        group.push(pending);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        let batches: Vec<&[EventRecord]> = group.iter().map(|pending| pending.records.as_slice()).collect();
        let answers = store.commit_group(&batches).await;
        for (pending, answer) in group.into_iter().zip(answers) {
            // The caller may have gone (its connection closed): its events are stored all the same.
            let _ = pending.answer.send(answer);
        }
    }
}

/// Why a group's single transaction did not commit.
enum GroupFailure {
    /// A statement failed: nothing was committed; the group is tried again request by request.
    Statement(sqlx::Error),
    /// The commit itself failed: whether it took effect is unknown, so it is not tried again.
    Commit(sqlx::Error),
}

impl Store {
    /// Stores each batch of `batches` as [`Store::ingest`] would, one after the other in one
    /// transaction, and answers each (in order) once it has committed. First all in one go;
    /// when a statement fails, again with a savepoint per batch, so that only the batch at fault
    /// fails (a unique conflict is its `Conflict`) and the others are committed.
    pub async fn commit_group(&self, batches: &[&[EventRecord]]) -> Vec<Answer> {
        let now = now_ms();
        match self.commit_together(batches, now).await {
            Ok(answers) => answers.into_iter().map(Ok).collect(),
            Err(GroupFailure::Statement(error)) if batches.len() > 1 => {
                info!(%error, requests = batches.len(), "a grouped ingest failed; storing its requests apart");
                self.commit_apart(batches, now).await
            }
            Err(GroupFailure::Statement(error) | GroupFailure::Commit(error)) => every_one(batches, error),
        }
    }

    /// Every batch in one transaction, without savepoints (the usual case: nothing fails).
    async fn commit_together(
        &self,
        batches: &[&[EventRecord]],
        now: i64,
    ) -> Result<Vec<Vec<IngestResult>>, GroupFailure> {
        let _writing = self.writing().await;
        with_writer!(self, pool => {
            let mut tx = pool.begin().await.map_err(GroupFailure::Statement)?;
            let answers = store_group!(tx, batches, now, self.backend() == Backend::Sqlite).await.map_err(GroupFailure::Statement)?;
            tx.commit().await.map_err(GroupFailure::Commit)?;
            Ok(answers)
        })
    }

    /// Every batch in one transaction, each in a savepoint of its own: a batch that fails is
    /// rolled back alone and answered its error.
    async fn commit_apart(&self, batches: &[&[EventRecord]], now: i64) -> Vec<Answer> {
        let _writing = self.writing().await;
        let outcome: Result<Vec<Answer>, sqlx::Error> = with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                let mut answers = Vec::with_capacity(batches.len());
                for batch in batches {
                    sqlx::query("SAVEPOINT ingest_request").execute(&mut *tx).await?;
                    match store_group!(tx, std::slice::from_ref(batch), now, self.backend() == Backend::Sqlite).await {
                        Ok(mut results) => {
                            let results = results.pop().unwrap_or_default();
                            sqlx::query("RELEASE SAVEPOINT ingest_request").execute(&mut *tx).await?;
                            answers.push(Ok(results));
                        }
                        Err(error) => {
                            sqlx::query("ROLLBACK TO SAVEPOINT ingest_request").execute(&mut *tx).await?;
                            sqlx::query("RELEASE SAVEPOINT ingest_request").execute(&mut *tx).await?;
                            answers.push(Err(StoreError::from(error)));
                        }
                    }
                }
                tx.commit().await?;
                Ok(answers)
            }
            .await
        });
        outcome.unwrap_or_else(|error| every_one(batches, error))
    }
}

/// The same failure for every request of the group: a lone request gets it as it is (a conflict
/// stays a conflict); in a group nothing was committed, and the cause is the database's.
fn every_one(batches: &[&[EventRecord]], error: sqlx::Error) -> Vec<Answer> {
    if batches.len() == 1 {
        return vec![Err(StoreError::from(error))];
    }
    warn!(%error, requests = batches.len(), "a grouped ingest could not be stored");
    let message = error.to_string();
    batches.iter().map(|_| Err(StoreError::Unavailable(sqlx::Error::Protocol(message.clone())))).collect()
}
