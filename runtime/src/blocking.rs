//! Blocking work that a synchronous caller must finish before it returns, such as a consumer's
//! rebalance callback: `rdkafka`'s `StreamConsumer` runs those callbacks inside `recv()`, on a
//! tokio worker thread, so a state restore there (changelog reads, sled writes and flushes,
//! committed-offset and watermark requests, retry pauses) would stall every other task queued
//! on that worker. The callback cannot hand the work to `spawn_blocking` and await it, because
//! the assignment must wait for the restore.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work` on the current thread after handing this tokio worker's other tasks to another
/// worker (`block_in_place`); outside a multi-thread runtime (a plain thread, a blocking-pool
/// thread, a current-thread runtime, where `block_in_place` is not allowed) it just runs it.
pub fn in_place<T>(work: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_outside_a_runtime() {
        assert_eq!(in_place(|| 7), 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn runs_on_a_current_thread_runtime() {
        assert_eq!(in_place(|| 7), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leaves_the_other_tasks_running_while_it_blocks() {
        // A task queued behind the blocking work makes progress meanwhile: the blocking work
        // waits for it, so without the hand-off this would only end by the timeout.
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = tokio::spawn(async move {
            let _ = tx.send(());
        });
        let got = in_place(|| rx.recv_timeout(std::time::Duration::from_secs(20)));
        assert!(got.is_ok());
        handle.await.expect("task ran");
    }
}
