//! The recovery routes: start a recovery of an endpoint's failed deliveries, show its progress.
//! The runner is [`crate::webhooks::recovery`].

use actix_web::{HttpResponse, web};
use serde_json::json;

use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{object, read_optional_json};

use crate::state::ApiState;
use crate::webhooks::attempt_routes::{attempt_log, date, endpoint};
use crate::webhooks::recovery::{RUNNING, Recovery, load, run, save};

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
    tokio::spawn(run(
        state.producer.clone(),
        state.topics.clone(),
        log,
        recovery,
    ));
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
