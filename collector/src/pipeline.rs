//! The bounded hand-off between the receivers and the store.
//!
//! A receiver converts a request to Arrow, then waits (at most
//! `queue_wait`) for a place in the queue, then for the store's word that
//! the request is in the write-ahead log (and, with `wal.sync = "always"`,
//! on disk). Only then does the client get its success: what graylens
//! acknowledged survives a crash. A full queue, a log that cannot be
//! written or a shutdown answer with a retryable status so that SDKs back
//! off and resend, and nothing is lost.

use crate::memory::Reservation;
use crate::schema::Signal;
use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// One converted request on its way to the store.
#[derive(Debug)]
pub struct IngestBatch {
    pub signal: Signal,
    /// When the request arrived (ns since the epoch).
    pub received_ns: i64,
    /// The request as protobuf bytes: what the write-ahead log keeps.
    pub payload: Bytes,
    /// The accepted records, one batch per service.
    pub batches: Vec<RecordBatch>,
    /// Memory held for the payload and the batches.
    pub memory: Reservation,
}

impl IngestBatch {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// A batch and the receiver waiting for it to be durable.
#[derive(Debug)]
pub struct Commit {
    pub batch: IngestBatch,
    done: oneshot::Sender<Result<(), String>>,
}

impl Commit {
    /// A commit whose outcome nobody waits for (tests, replay).
    pub fn detached(batch: IngestBatch) -> Self {
        Commit {
            batch,
            done: oneshot::channel().0,
        }
    }

    /// Tells the waiting receiver how it went (`Err` → retryable refusal).
    pub fn finish(self, outcome: Result<(), String>) -> IngestBatch {
        let _ = self.done.send(outcome);
        self.batch
    }

    /// Splits the commit into its batch and its reply handle.
    pub fn into_parts(self) -> (IngestBatch, Reply) {
        (self.batch, Reply(self.done))
    }
}

/// The answer to one commit, sent once its batch is durable (or not).
#[derive(Debug)]
pub struct Reply(oneshot::Sender<Result<(), String>>);

impl Reply {
    pub fn send(self, outcome: Result<(), String>) {
        let _ = self.0.send(outcome);
    }
}

/// Sending side of the ingest queue.
#[derive(Debug, Clone)]
pub struct Pipeline {
    tx: mpsc::Sender<Commit>,
    wait: Duration,
}

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommitError {
    #[error("ingest queue is full; retry later")]
    Full,
    #[error("graylens is shutting down; retry later")]
    Closed,
    #[error("could not write the write-ahead log ({0}); retry later")]
    Failed(String),
}

impl Pipeline {
    /// A queue of `capacity` batches; the receiver goes to the store.
    pub fn bounded(capacity: usize, wait: Duration) -> (Self, mpsc::Receiver<Commit>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, wait }, rx)
    }

    /// Hands `item` to the store and waits until it is durable.
    pub async fn commit(&self, item: IngestBatch) -> Result<(), CommitError> {
        let permit = match tokio::time::timeout(self.wait, self.tx.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(CommitError::Closed),
            Err(_) => return Err(CommitError::Full),
        };
        let (done, outcome) = oneshot::channel();
        permit.send(Commit { batch: item, done });
        match outcome.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(CommitError::Failed(why)),
            // The store dropped the commit unanswered: it is stopping.
            Err(_) => Err(CommitError::Closed),
        }
    }

    /// Batches waiting in the queue.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// A reader of the queue depth that does not keep the queue open.
    pub fn gauge(&self) -> QueueGauge {
        QueueGauge {
            tx: self.tx.downgrade(),
            capacity: self.tx.max_capacity(),
        }
    }
}

/// Reads the queue depth for `/metrics` without holding a sender, so the
/// store writer still sees the queue close at shutdown.
#[derive(Debug, Clone)]
pub struct QueueGauge {
    tx: mpsc::WeakSender<Commit>,
    capacity: usize,
}

impl QueueGauge {
    pub fn depth(&self) -> usize {
        self.tx
            .upgrade()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}
