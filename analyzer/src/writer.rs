//! The store's side of the ingest queue.

use crate::store::Store;
use graylens_collector::IngestBatch;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

/// Moves batches from the queue into the store and flushes when due, until
/// the queue closes or `stop` is cancelled; then drains what was accepted
/// and flushes it all, so nothing acknowledged is lost on shutdown.
pub async fn run_writer(store: Arc<Store>, mut rx: Receiver<IngestBatch>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                Some(b) => {
                    store.append(b.signal, b.batch);
                    if store.hot_rows(b.signal) >= store.config().flush_rows {
                        flush(&store).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => if store.flush_due() { flush(&store).await },
            _ = stop.cancelled() => break,
        }
    }
    rx.close();
    let mut drained = 0usize;
    while let Some(b) = rx.recv().await {
        drained += b.batch.num_rows();
        store.append(b.signal, b.batch);
    }
    flush(&store).await;
    tracing::info!(
        drained_rows = drained,
        "store writer stopped after final flush"
    );
}

async fn flush(store: &Arc<Store>) {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || s.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "flush failed"),
        Err(e) => tracing::error!(error = %e, "flush task panicked"),
    }
}
