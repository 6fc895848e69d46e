//! The one place a role keeps its long-running background tasks (the configuration fold, index
//! followers, sweeps, poll streams, recoveries): each by name, reported in the log when it ends
//! on its own, and stopped together when the role stops.

use std::future::Future;

use tokio::task::{AbortHandle, JoinHandle};
use tracing::{error, warn};

/// A role's background tasks.
#[derive(Default)]
pub struct Supervisor {
    tasks: Vec<Supervised>,
}

struct Supervised {
    abort: AbortHandle,
    /// Awaits the task and reports how it ended.
    watcher: JoinHandle<()>,
}

impl Supervisor {
    /// No tasks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `task` under `name`.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.adopt(name, tokio::spawn(task));
    }

    /// Takes charge of a task a part of the role has already spawned.
    pub fn adopt(&mut self, name: &'static str, task: JoinHandle<()>) {
        let abort = task.abort_handle();
        let watcher = tokio::spawn(async move {
            match task.await {
                // Stopped by `stop`: nothing to report.
                Err(ended) if ended.is_cancelled() => {}
                Err(ended) => error!(task = name, error = %ended, "background task failed"),
                Ok(()) => warn!(task = name, "background task ended"),
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
        for task in &self.tasks {
            task.abort.abort();
        }
        for task in self.tasks {
            let _ = task.watcher.await;
        }
    }
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
}
