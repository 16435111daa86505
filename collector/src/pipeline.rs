//! The bounded hand-off between the receivers and the store.
//!
//! A receiver converts a request to Arrow, then waits (at most
//! `queue_wait`) for a place in the queue; only once the batch is in the
//! queue does the client get its success. A full queue answers with a
//! retryable status so that SDKs back off and resend, and nothing is lost.

use crate::schema::Signal;
use datafusion::arrow::record_batch::RecordBatch;
use std::time::Duration;
use tokio::sync::mpsc;

/// One converted request on its way to the store.
#[derive(Debug)]
pub struct IngestBatch {
    pub signal: Signal,
    pub batch: RecordBatch,
}

/// Sending side of the ingest queue.
#[derive(Debug, Clone)]
pub struct Pipeline {
    tx: mpsc::Sender<IngestBatch>,
    wait: Duration,
}

/// Why a batch did not enter the queue.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("ingest queue is full; retry later")]
    Full,
    #[error("graylens is shutting down")]
    Closed,
}

impl Pipeline {
    /// A queue of `capacity` batches; the receiver goes to the store.
    pub fn bounded(capacity: usize, wait: Duration) -> (Self, mpsc::Receiver<IngestBatch>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, wait }, rx)
    }

    pub async fn send(&self, item: IngestBatch) -> Result<(), SendError> {
        match tokio::time::timeout(self.wait, self.tx.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(item);
                Ok(())
            }
            Ok(Err(_)) => Err(SendError::Closed),
            Err(_) => Err(SendError::Full),
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
    tx: mpsc::WeakSender<IngestBatch>,
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
