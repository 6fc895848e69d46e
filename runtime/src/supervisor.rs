//! The one place a role keeps its long-running tasks (the processor, the dispatcher, the
//! configuration fold, index followers, sweeps, poll streams, recoveries): each by name. A task
//! that ends or panics while the role is running is a failure of the whole process: it turns
//! `/readyz` to 503 (a check `task: <name>` appears, not ready) and is reported to whoever waits
//! on [`Failures::first`], which drains the role and exits non-zero so Kubernetes restarts it.
//! A process that silently lost its processor would otherwise keep answering `ready`.
//!
//! Debug builds accept `ERP_TOOLKIT_FAIL_TASK=<task name>` (and optionally
//! `ERP_TOOLKIT_FAIL_TASK_AFTER_MS`, default 1000): that task is made to fail, so tests can
//! check what an operator would see. Release builds ignore the variables.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::health::{Readiness, ReadyFlag};

/// A role's long-running tasks.
#[derive(Default)]
pub struct Supervisor {
    tasks: Vec<Supervised>,
    failures: Failures,
}

struct Supervised {
    abort: AbortHandle,
    /// Awaits the task and reports how it ended.
    watcher: JoinHandle<()>,
}

/// The failures of a supervisor's tasks, shared with whoever decides to stop the process.
#[derive(Clone, Default)]
pub struct Failures {
    inner: Arc<FailuresInner>,
}

#[derive(Default)]
struct FailuresInner {
    failed: CancellationToken,
    first: Mutex<Option<String>>,
    /// Once cancelled, tasks ending are part of the stop, not failures.
    stopping: CancellationToken,
    readiness: Option<Readiness>,
}

impl Failures {
    fn report(&self, task: &str, how: &str) {
        if self.inner.stopping.is_cancelled() {
            warn!(task, how, "task ended while stopping");
            return;
        }
        error!(
            task,
            how, "supervised task ended; the process is not ready and stops"
        );
        if let Some(readiness) = &self.inner.readiness {
            let _: ReadyFlag = readiness.flag(format!("task: {task}"));
        }
        if let Ok(mut first) = self.inner.first.lock()
            && first.is_none()
        {
            *first = Some(format!("task `{task}` {how}"));
        }
        self.inner.failed.cancel();
    }

    /// The first failure so far, if any.
    pub fn failed(&self) -> Option<String> {
        self.inner.first.lock().ok().and_then(|first| first.clone())
    }

    /// Waits for the first failure and describes it (which task, how it ended).
    pub async fn first(&self) -> String {
        self.inner.failed.cancelled().await;
        self.failed().unwrap_or_else(|| "a task failed".into())
    }
}

impl Supervisor {
    /// No tasks yet; failures are logged and reported to [`Self::failures`] but touch no
    /// readiness check.
    pub fn new() -> Self {
        Self::default()
    }

    /// A supervisor whose task failures turn `readiness` to not ready. Tasks ending once
    /// `shutdown` is cancelled are part of the stop, not failures.
    pub fn watching(readiness: &Readiness, shutdown: &CancellationToken) -> Self {
        Self {
            tasks: Vec::new(),
            failures: Failures {
                inner: Arc::new(FailuresInner {
                    failed: CancellationToken::new(),
                    first: Mutex::new(None),
                    stopping: shutdown.clone(),
                    readiness: Some(readiness.clone()),
                }),
            },
        }
    }

    /// The failures of this supervisor's tasks.
    pub fn failures(&self) -> Failures {
        self.failures.clone()
    }

    /// Spawns `task` under `name`.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.adopt(name, tokio::spawn(task));
    }

    /// Takes charge of a task a part of the role has already spawned.
    pub fn adopt(&mut self, name: &'static str, task: JoinHandle<()>) {
        let abort = task.abort_handle();
        let failures = self.failures.clone();
        let injected = injected_failure(name);
        let watcher = tokio::spawn(async move {
            let ended = tokio::select! {
                ended = task => ended,
                () = sleep_or_forever(injected) => {
                    abort_on_injection(&failures, name);
                    return;
                }
            };
            match ended {
                // Stopped by `stop`: nothing to report.
                Err(ended) if ended.is_cancelled() => {}
                Err(ended) => failures.report(name, &format!("panicked: {ended}")),
                Ok(()) => failures.report(name, "ended"),
            }
        });
        self.tasks.push(Supervised { abort, watcher });
    }

    /// Takes charge of several tasks of one name.
    pub fn adopt_all(
        &mut self,
        name: &'static str,
        tasks: impl IntoIterator<Item = JoinHandle<()>>,
    ) {
        for task in tasks {
            self.adopt(name, task);
        }
    }

    /// Watches a task whose result someone else awaits (the processor, the dispatcher): its
    /// ending before the stop, an error result at any time, or a panic (the future is dropped
    /// unfinished) is reported as a failure of `name`.
    pub fn watch<T, E, F>(
        &self,
        name: &'static str,
        task: F,
    ) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let failures = self.failures.clone();
        let injected = injected_failure(name);
        async move {
            let mut guard = DropReport {
                failures: failures.clone(),
                name,
                armed: true,
            };
            let outcome = tokio::select! {
                outcome = task => outcome,
                () = sleep_or_forever(injected) => {
                    panic!("injected failure of task `{name}` (ERP_TOOLKIT_FAIL_TASK)")
                }
            };
            guard.armed = false;
            match &outcome {
                Err(error) => {
                    // An error is a failure even during the stop: the process must not exit 0.
                    if failures.inner.stopping.is_cancelled() {
                        error!(task = name, %error, "task failed while stopping");
                    } else {
                        failures.report(name, &format!("failed: {error}"));
                    }
                }
                Ok(_) => failures.report(name, "ended"),
            }
            outcome
        }
    }

    /// How many tasks are supervised.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task is supervised.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops every task and waits until each has stopped.
    pub async fn stop(self) {
        self.failures.inner.stopping.cancel();
        for task in &self.tasks {
            task.abort.abort();
        }
        for task in self.tasks {
            let _ = task.watcher.await;
        }
    }
}

/// Reports a watched future dropped before it finished: it panicked (or was abandoned).
struct DropReport {
    failures: Failures,
    name: &'static str,
    armed: bool,
}

impl Drop for DropReport {
    fn drop(&mut self) {
        if self.armed {
            let how = if std::thread::panicking() {
                "panicked"
            } else {
                "was dropped unfinished"
            };
            self.failures.report(self.name, how);
        }
    }
}

fn abort_on_injection(failures: &Failures, name: &'static str) {
    failures.report(name, "failed: injected failure (ERP_TOOLKIT_FAIL_TASK)");
}

async fn sleep_or_forever(after: Option<std::time::Duration>) {
    match after {
        Some(after) => tokio::time::sleep(after).await,
        None => std::future::pending().await,
    }
}

/// When `name` is to fail (debug builds only, from `ERP_TOOLKIT_FAIL_TASK`).
#[cfg(debug_assertions)]
fn injected_failure(name: &str) -> Option<std::time::Duration> {
    let wanted = std::env::var("ERP_TOOLKIT_FAIL_TASK").ok()?;
    if wanted != name {
        return None;
    }
    let after = std::env::var("ERP_TOOLKIT_FAIL_TASK_AFTER_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(1000);
    Some(std::time::Duration::from_millis(after))
}

#[cfg(not(debug_assertions))]
fn injected_failure(_name: &str) -> Option<std::time::Duration> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_ends_every_task() {
        let mut supervisor = Supervisor::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        supervisor.spawn("forever", async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        supervisor.adopt("done", tokio::spawn(async {}));
        assert_eq!(supervisor.len(), 2);
        supervisor.stop().await;
        // The sender was dropped with the aborted task.
        assert!(rx.await.is_err());
    }

    #[tokio::test]
    async fn an_ending_task_is_a_failure_and_turns_readiness_off() {
        let readiness = Readiness::new();
        let shutdown = CancellationToken::new();
        let mut supervisor = Supervisor::watching(&readiness, &shutdown);
        supervisor.spawn("forever", std::future::pending());
        supervisor.spawn("short", async {});
        let failure = supervisor.failures().first().await;
        assert!(failure.contains("short"), "{failure}");
        assert!(!readiness.is_ready());
        assert_eq!(readiness.checks().get("task: short"), Some(&false));
        supervisor.stop().await;
    }

    #[tokio::test]
    async fn a_panicking_watched_task_is_a_failure() {
        let readiness = Readiness::new();
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::watching(&readiness, &shutdown);
        let task = tokio::spawn(supervisor.watch("worker", async {
            if true {
                panic!("boom");
            }
            Ok::<(), String>(())
        }));
        assert!(task.await.is_err());
        let failure = supervisor.failures().first().await;
        assert!(failure.contains("worker") && failure.contains("panicked"));
    }

    #[tokio::test]
    async fn tasks_ending_with_the_stop_are_no_failure() {
        let readiness = Readiness::new();
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::watching(&readiness, &shutdown);
        let token = shutdown.clone();
        let task = tokio::spawn(supervisor.watch("worker", async move {
            token.cancelled().await;
            Ok::<(), String>(())
        }));
        shutdown.cancel();
        assert!(task.await.is_ok());
        assert!(supervisor.failures().failed().is_none());
        assert!(readiness.is_ready());
    }
}
