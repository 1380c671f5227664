//! Group commit: calls that arrive while a write is in progress are written together by the
//! next one. Each caller queues its item and waits for the turn to write; whoever gets the turn
//! writes everything queued by then in one call and hands every waiter its outcome. One caller
//! at a time writes alone, as before; under load one write serves many — on SQLite one
//! transaction (and with `SQLITE_SYNCHRONOUS=full` one fsync) instead of one each.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// Items waiting to be written, and where each one's outcome goes.
pub(crate) struct Together<T, R> {
    queue: Mutex<Vec<(T, oneshot::Sender<R>)>>,
    /// Held while a batch is written: one write at a time, the next taking all queued meanwhile.
    turn: tokio::sync::Mutex<()>,
}

impl<T, R> Default for Together<T, R> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T, R> Together<T, R> {
    fn queue(&self) -> MutexGuard<'_, Vec<(T, oneshot::Sender<R>)>> {
        // A queue of items and senders stays consistent whatever a panicking holder did.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `item`, with whatever else is queued when its turn comes, by `write` — which gets
    /// the batch in arrival order and returns one outcome per item, in the same order. `None`
    /// when the outcome never came: the caller writing the batch was cancelled mid-write, or
    /// `write` returned fewer outcomes than items.
    pub(crate) async fn write<F, Fut>(&self, item: T, write: F) -> Option<R>
    where
        F: FnOnce(Vec<T>) -> Fut,
        Fut: Future<Output = Vec<R>>,
    {
        let (outcome, answer) = oneshot::channel();
        self.queue().push((item, outcome));
        {
            let _turn = self.turn.lock().await;
            let queued = std::mem::take(&mut *self.queue());
            if !queued.is_empty() {
                let (items, waiters): (Vec<T>, Vec<_>) = queued.into_iter().unzip();
                for (waiter, outcome) in waiters.into_iter().zip(write(items).await) {
                    // A waiter that gave up no longer needs its outcome.
                    let _ = waiter.send(outcome);
                }
            }
        }
        // Written by this turn or an earlier one.
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_arriving_during_a_write_are_written_together_each_getting_its_own_outcome() {
        let together: Arc<Together<u32, u32>> = Arc::default();
        let batches: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
        let (started, mut first_started) = tokio::sync::mpsc::unbounded_channel();
        let (release, released) = tokio::sync::watch::channel(false);
        let call = |item: u32| {
            let (together, batches) = (Arc::clone(&together), Arc::clone(&batches));
            let (started, mut released) = (started.clone(), released.clone());
            tokio::spawn(async move {
                together
                    .write(item, |items| async move {
                        let _ = started.send(());
                        // The first write waits until the others have queued.
                        let _ = released.wait_for(|go| *go).await;
                        batches.lock().unwrap().push(items.clone());
                        items.into_iter().map(|i| i * 10).collect()
                    })
                    .await
            })
        };
        let first = call(1);
        first_started.recv().await.unwrap();
        let rest: Vec<_> = (2..=4).map(call).collect();
        // Let the three queue up behind the write in progress.
        while together.queue().len() < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Some(10));
        let mut outcomes = Vec::new();
        for r in rest {
            outcomes.push(r.await.unwrap());
        }
        assert_eq!(outcomes, [Some(20), Some(30), Some(40)]);
        assert_eq!(*batches.lock().unwrap(), [vec![1], vec![2, 3, 4]]);
    }

    #[tokio::test]
    async fn a_write_that_returns_too_few_outcomes_leaves_the_rest_without_one() {
        let together: Together<u32, u32> = Together::default();
        assert_eq!(together.write(7, |_| async { Vec::new() }).await, None);
        assert_eq!(together.write(8, |items| async { items }).await, Some(8));
    }
}
