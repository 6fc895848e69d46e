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

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::attempt_log::{AttemptLog, attempt_log, date, endpoint, enqueue_replay};
use crate::auth::Caller;
use crate::body::{object, read_optional_json};
use crate::error::ApiError;
use crate::state::ApiState;

const RUNNING: &str = "running";
const DONE: &str = "done";

/// One recovery as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recovery {
    task_id: String,
    org_id: String,
    webhook_config_id: String,
    status: String,
    /// The deliveries (core event ids) to re-send, in order.
    event_ids: Vec<String>,
    /// How many of `event_ids` have been handled.
    next: usize,
    sent: u64,
    failed: u64,
}

impl Recovery {
    /// What the API shows.
    fn progress(&self) -> Value {
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

fn load(log: &AttemptLog, task_id: &str) -> Option<Recovery> {
    let value = log.tree.get(key(task_id)).ok().flatten()?;
    serde_json::from_slice(&value).ok()
}

fn save(log: &AttemptLog, recovery: &Recovery) -> Result<(), String> {
    let value = serde_json::to_vec(recovery).map_err(|e| e.to_string())?;
    log.tree
        .insert(key(&recovery.task_id), value)
        .map_err(|e| e.to_string())?;
    // A saved position must survive a crash, or a resume would repeat more than one delivery.
    log.tree.flush().map(|_| ()).map_err(|e| e.to_string())
}

/// Runs `recovery` from where it stands until it is done or the process stops.
async fn run(state: web::Data<ApiState>, log: Arc<AttemptLog>, mut recovery: Recovery) {
    let pause = Duration::from_secs(1) / log.settings.recover_rate.max(1);
    while let Some(event_id) = recovery.event_ids.get(recovery.next).cloned() {
        let row = log.row(&recovery.webhook_config_id, &event_id);
        let sent = match row {
            Some(row) => enqueue_replay(&state, &log, &row, true).await.is_ok(),
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
pub fn resume(state: &web::Data<ApiState>) -> Vec<JoinHandle<()>> {
    let Some(log) = state.attempt_log.clone() else {
        return Vec::new();
    };
    log.tree
        .scan_prefix([b'p'])
        .filter_map(Result::ok)
        .filter_map(|(_, value)| serde_json::from_slice::<Recovery>(&value).ok())
        .filter(|recovery| recovery.status == RUNNING)
        .map(|recovery| {
            info!(task_id = %recovery.task_id, next = recovery.next,
                total = recovery.event_ids.len(), "resuming recovery");
            tokio::spawn(run(state.clone(), Arc::clone(&log), recovery))
        })
        .collect()
}

/// `POST /v1/webhooks/configs/{configId}/recover {since, until?}`: re-sends, in the background
/// and at most `recover_rate` per second, every delivery of the endpoint created in the window
/// whose latest status is `failed`, with the endpoint's current transform. Answers 202
/// `{task_id}`.
pub async fn recover(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let config_id = path.into_inner();
    let log = attempt_log(&state)?;
    let body = read_optional_json(body, state.body_limit)
        .await?
        .unwrap_or_else(|| json!({}));
    let fields = object(&body, "request body")?;
    let since = date(fields, "", "since")?
        .ok_or_else(|| ApiError::bad_request("since is required (a date-time)"))?;
    let until = date(fields, "", "until")?.unwrap_or(i64::MAX);
    endpoint(&state, &caller, &config_id)?;
    let event_ids = log
        .rows(&config_id, None)
        .take_while(|row| row.created_at >= since)
        .filter(|row| {
            row.org_id == caller.org_id && row.created_at <= until && row.status == "failed"
        })
        .map(|row| row.event_id)
        .collect();
    let recovery = Recovery {
        task_id: uuid::Uuid::new_v4().to_string(),
        org_id: caller.org_id.clone(),
        webhook_config_id: config_id,
        status: RUNNING.into(),
        event_ids,
        next: 0,
        sent: 0,
        failed: 0,
    };
    save(&log, &recovery).map_err(|e| ApiError::unavailable("ATTEMPT_LOG_UNAVAILABLE", e))?;
    let task_id = recovery.task_id.clone();
    tokio::spawn(run(state, log, recovery));
    Ok(HttpResponse::Accepted().json(json!({"task_id": task_id})))
}

/// `GET /v1/webhooks/configs/{configId}/recover/{taskId}`: `{task_id, status, total, sent,
/// failed}`.
pub async fn status(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (config_id, task_id) = path.into_inner();
    let log = attempt_log(&state)?;
    endpoint(&state, &caller, &config_id)?;
    let recovery = load(&log, &task_id)
        .filter(|r| r.org_id == caller.org_id && r.webhook_config_id == config_id)
        .ok_or_else(|| {
            ApiError::not_found("RECOVER_TASK_NOT_FOUND", format!("no recovery {task_id}"))
        })?;
    Ok(HttpResponse::Ok().json(recovery.progress()))
}
