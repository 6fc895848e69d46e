//! Recovery (our extension, after Svix "recover"): re-send every failed delivery of an endpoint
//! in a time window, in the background, rate-limited, with visible progress.
//!
//! - `POST /v1/webhooks/configs/{configId}/recover {since, until?}` answers 202 `{task_id}`.
//! - `GET …/recover/{taskId}` answers `{task_id, status, total, sent, failed}`.
//!
//! A recovery is stored beside the attempt log's index (same sled tree): the deliveries it
//! re-sends, chosen when it starts, and how far it got, saved after each one. An API process
//! that stops mid-way resumes its recoveries when it starts again, from the first delivery not
//! yet written; one written just before a crash may be written twice (a replay is idempotent for
//! the receiver: same `webhook-id`). Recoveries live in the API instance that started them.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use erp_schemas::topics::Topics;

use crate::webhooks::attempt_log::{AttemptLog, enqueue_replay};

pub(crate) const RUNNING: &str = "running";
const DONE: &str = "done";

/// One recovery as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Recovery {
    pub(crate) task_id: String,
    pub(crate) org_id: String,
    pub(crate) webhook_config_id: String,
    pub(crate) status: String,
    /// The deliveries (core event ids) to re-send, in order.
    pub(crate) event_ids: Vec<String>,
    /// How many of `event_ids` have been handled.
    pub(crate) next: usize,
    pub(crate) sent: u64,
    pub(crate) failed: u64,
}

impl Recovery {
    /// What the API shows.
    pub(crate) fn progress(&self) -> Value {
        json!({
            "task_id": self.task_id,
            "status": self.status,
            "total": self.event_ids.len(),
            "sent": self.sent,
            "failed": self.failed,
        })
    }
}

fn key(task_id: &str) -> Vec<u8> {
    let mut key = vec![b'p'];
    key.extend_from_slice(task_id.as_bytes());
    key
}

pub(crate) fn load(log: &AttemptLog, task_id: &str) -> Option<Recovery> {
    let value = log.tree.get(key(task_id)).ok().flatten()?;
    serde_json::from_slice(&value).ok()
}

pub(crate) fn save(log: &AttemptLog, recovery: &Recovery) -> Result<(), String> {
    let value = serde_json::to_vec(recovery).map_err(|e| e.to_string())?;
    log.tree
        .insert(key(&recovery.task_id), value)
        .map_err(|e| e.to_string())?;
    // A saved position must survive a crash, or a resume would repeat more than one delivery.
    log.tree.flush().map(|_| ()).map_err(|e| e.to_string())
}

/// Runs `recovery` from where it stands until it is done or the process stops.
pub(crate) async fn run(
    producer: FutureProducer,
    topics: Topics,
    log: Arc<AttemptLog>,
    mut recovery: Recovery,
) {
    let pause = Duration::from_secs(1) / log.settings.recover_rate.max(1);
    while let Some(event_id) = recovery.event_ids.get(recovery.next).cloned() {
        let row = log.row(&recovery.webhook_config_id, &event_id);
        let sent = match row {
            Some(row) => enqueue_replay(&producer, &topics, &log, &row, true)
                .await
                .is_ok(),
            // Pruned since the recovery started.
            None => false,
        };
        if sent {
            recovery.sent += 1;
        } else {
            recovery.failed += 1;
        }
        recovery.next += 1;
        if let Err(error) = save(&log, &recovery) {
            warn!(task_id = %recovery.task_id, %error, "recovery progress not saved");
        }
        tokio::select! {
            _ = log.shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    recovery.status = DONE.into();
    if let Err(error) = save(&log, &recovery) {
        warn!(task_id = %recovery.task_id, %error, "recovery end not saved");
    }
    info!(task_id = %recovery.task_id, sent = recovery.sent, failed = recovery.failed,
        "recovery done");
}

/// Resumes the recoveries this API instance had not finished when it stopped.
pub fn resume(
    log: &Arc<AttemptLog>,
    producer: &FutureProducer,
    topics: &Topics,
) -> Vec<JoinHandle<()>> {
    log.tree
        .scan_prefix([b'p'])
        .filter_map(Result::ok)
        .filter_map(|(_, value)| serde_json::from_slice::<Recovery>(&value).ok())
        .filter(|recovery| recovery.status == RUNNING)
        .map(|recovery| {
            info!(task_id = %recovery.task_id, next = recovery.next,
                total = recovery.event_ids.len(), "resuming recovery");
            tokio::spawn(run(
                producer.clone(),
                topics.clone(),
                Arc::clone(log),
                recovery,
            ))
        })
        .collect()
}
