//! The threads mappings run on: a pool of threads with a [`MAPPING_STACK_BYTES`] stack, kept
//! between calls.
//!
//! Evaluation needs a large stack (see [`crate::jsonata`]), and it used to get one by starting
//! a fresh OS thread per call — per batch in the processor, per transformed delivery in the
//! dispatcher. Starting a thread with a 512 MiB reservation costs a `mmap`, a `clone` and a
//! `munmap` each time, and the caller's own blocking thread sat waiting meanwhile. The pool
//! keeps threads: a job goes to an idle one, or to a new one when all are busy (so a slow,
//! time-limited evaluation never makes another wait); threads beyond the number of cores end
//! after [`IDLE_EXIT`] without work.
//!
//! A panic in a job is caught on its thread and handed back as `Err`: the thread lives on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// Stack of the threads mappings run on: reserved, not committed, so only what a deep value's
/// drop touches costs memory. A value's depth grows at most as fast as the evaluation time
/// limit allows; 512 MiB holds millions of levels.
pub const MAPPING_STACK_BYTES: usize = 512 * 1024 * 1024;

/// How long a thread beyond the kept ones waits for work before it ends.
pub const IDLE_EXIT: Duration = Duration::from_secs(60);

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Pool {
    sender: Sender<Job>,
    receiver: Receiver<Job>,
    /// Threads waiting for a job that no submitter has claimed yet.
    idle: AtomicUsize,
    /// Threads alive.
    threads: AtomicUsize,
    /// Threads kept when idle: the number of cores.
    keep: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (sender, receiver) = crossbeam_channel::unbounded();
        Pool {
            sender,
            receiver,
            idle: AtomicUsize::new(0),
            threads: AtomicUsize::new(0),
            keep: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    })
}

/// Takes one from `counter` if it is above zero.
fn claim(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

impl Pool {
    /// Hands `job` to an idle thread, or starts one for it.
    fn submit(&'static self, job: Job) -> Result<(), String> {
        if claim(&self.idle) {
            // The claimed thread is waiting on the queue; the queue is never closed.
            return self
                .sender
                .send(job)
                .map_err(|_| "the mapping threads are gone".to_owned());
        }
        self.threads.fetch_add(1, Ordering::AcqRel);
        std::thread::Builder::new()
            .name("erp-mapping".into())
            .stack_size(MAPPING_STACK_BYTES)
            .spawn(move || self.work(job))
            .map(drop)
            .map_err(|e| {
                self.threads.fetch_sub(1, Ordering::AcqRel);
                format!("cannot start a mapping thread: {e}")
            })
    }

    /// A thread's life: its first job, then whatever the queue brings, until it has been idle
    /// for [`IDLE_EXIT`] while more than `keep` threads are alive.
    fn work(&self, first: Job) {
        first();
        loop {
            self.idle.fetch_add(1, Ordering::AcqRel);
            loop {
                match self.receiver.recv_timeout(IDLE_EXIT) {
                    // The submitter took this thread off the idle count.
                    Ok(job) => {
                        job();
                        break;
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        // Only a thread that can take itself off the idle count may end: if a
                        // submitter claimed it in the meantime, its job is on the way.
                        if self.threads.load(Ordering::Acquire) > self.keep && claim(&self.idle) {
                            self.threads.fetch_sub(1, Ordering::AcqRel);
                            return;
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        }
    }
}

/// The message of a caught panic.
fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the mapping thread panicked".into())
}

/// Runs `work` on a mapping thread and calls `done` there with its result (a panic in `work`
/// as `Err` with its message). For async callers: `done` sends on a oneshot channel. An `Err`
/// returned here means no thread could be started and neither closure ran.
pub fn spawn_on_mapping_stack<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
    done: impl FnOnce(Result<T, String>) + Send + 'static,
) -> Result<(), String> {
    pool().submit(Box::new(move || {
        let outcome = catch_unwind(AssertUnwindSafe(work)).map_err(panic_message);
        // `done` only hands the value over; a panic in it must not end the thread either.
        let _ = catch_unwind(AssertUnwindSafe(move || done(outcome)));
    }))
}

/// Runs `work` on a mapping thread and waits for it. A panic in `work` is returned as `Err`
/// with its message. Blocks: call it from a blocking context, never on an async thread.
pub fn on_mapping_stack<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    spawn_on_mapping_stack(work, move |outcome| {
        let _ = sender.send(outcome);
    })?;
    receiver
        .recv()
        .map_err(|_| "the mapping thread ended without an answer".to_owned())?
}

/// Runs `work` on a mapping thread and awaits it without holding an async thread or a
/// blocking one: the processor's batches and the dispatcher's transforms.
pub async fn run_on_mapping_stack<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    spawn_on_mapping_stack(work, move |outcome| {
        let _ = sender.send(outcome);
    })?;
    receiver
        .await
        .map_err(|_| "the mapping thread ended without an answer".to_owned())?
}

/// Threads alive in the pool now (for tests and metrics).
pub fn mapping_threads() -> usize {
    pool().threads.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_reused_between_calls() {
        for n in 0..200 {
            assert_eq!(on_mapping_stack(move || n * 2), Ok(n * 2));
        }
        // Calls in a row need one thread; other tests of this binary may add a few.
        assert!(mapping_threads() < 50, "{}", mapping_threads());
    }

    #[test]
    fn a_panic_is_an_error_and_the_thread_lives_on() {
        let outcome = on_mapping_stack(|| -> u8 { panic!("boom") });
        assert_eq!(outcome, Err("boom".to_owned()));
        assert_eq!(on_mapping_stack(|| 7), Ok(7));
    }

    #[test]
    fn a_busy_pool_starts_another_thread_instead_of_queueing() {
        // Two jobs that each wait for the other: they finish only if they run at once.
        let (a_tx, a_rx) = std::sync::mpsc::channel::<()>();
        let (b_tx, b_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let first = done_tx.clone();
        spawn_on_mapping_stack(
            move || {
                a_tx.send(()).ok();
                b_rx.recv_timeout(Duration::from_secs(10)).is_ok()
            },
            move |r| first.send(r).unwrap_or(()),
        )
        .expect("submitted");
        spawn_on_mapping_stack(
            move || {
                b_tx.send(()).ok();
                a_rx.recv_timeout(Duration::from_secs(10)).is_ok()
            },
            move |r| done_tx.send(r).unwrap_or(()),
        )
        .expect("submitted");
        for _ in 0..2 {
            assert_eq!(done_rx.recv_timeout(Duration::from_secs(20)), Ok(Ok(true)));
        }
    }

    #[test]
    fn the_stack_holds_deep_recursion() {
        fn down(n: usize) -> usize {
            if n == 0 { 0 } else { 1 + down(n - 1) }
        }
        // Far deeper than a default 2 MiB thread stack holds.
        assert_eq!(
            on_mapping_stack(|| down(std::hint::black_box(200_000))),
            Ok(200_000)
        );
    }
}
