//! `POST /v1/webhooks/configs/{configId}/trigger[?sync=true]` (epilot `triggerWebhook`): sends a
//! payload to one endpoint, e.g. to test it.
//!
//! The API never calls the endpoint itself: the payload becomes an outbound message addressed
//! to the endpoint on `erp.core.events`, so the dispatcher delivers it like any other — signed,
//! with the endpoint's auth, filters, transform, retries, isolation and destination policy —
//! and it appears in the attempt log. Without `sync` the answer is `{event_id}` once the message
//! is in Kafka; with `sync=true` the API waits (up to [`SYNC_WAIT`]) for the first attempt in
//! the attempt log and answers its outcome (`status`, `status_code`, `body`, …). Retries after a
//! failed first attempt go on in the background either way.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::ApiState;
use crate::webhooks::attempt_log::first_outcome;
use crate::webhooks::attempt_routes::{attempt_log, endpoint};
use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::read_json;
use erp_schemas::timestamp::now_rfc3339;

/// How long a synchronous trigger waits for the first attempt.
pub const SYNC_WAIT: Duration = Duration::from_secs(30);

/// The handler.
pub async fn trigger(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let config_id = path.into_inner();
    let sync = match query.get("sync").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::bad_request("sync must be true or false")),
    };
    let payload = read_json(body, state.body_limit).await?;
    crate::openapi::check("ExecutionPayload", &payload)
        .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
    endpoint(&state, &caller, &config_id)?;
    // Checked before anything is sent: a sync trigger without the log could never answer.
    let log = if sync {
        Some(attempt_log(&state)?)
    } else {
        None
    };
    let event_name = state
        .view()
        .snapshot()
        .webhook(&caller.org_id, &config_id)
        .map(|entry| {
            let name = &entry.webhook.event_name;
            name.strip_prefix("event_").unwrap_or(name).to_owned()
        })
        .unwrap_or_default();
    let event_id = uuid::Uuid::new_v4().to_string();
    let message = json!({
        "_event_id": event_id,
        "_event_name": event_name,
        "_event_time": now_rfc3339(),
        "_org_id": caller.org_id,
        "_event_source": "erp-toolkit.trigger",
        "_trigger_source_type": "api",
        "_delivery": {"type": "webhook", "webhook_id": config_id},
        "payload": payload,
    });
    let topic = state.topics.core_events();
    let bytes = state
        .runtime
        .kafka
        .wire
        .encode("core event", &topic, &message)
        .await
        .map_err(|e| ApiError::unavailable("KAFKA_UNAVAILABLE", e.to_string()))?;
    erp_runtime::kafka::send(&state.producer, &topic, &event_id, &bytes)
        .await
        .map_err(|e| ApiError::unavailable("KAFKA_UNAVAILABLE", e.to_string()))?;

    let Some(log) = log else {
        return Ok(HttpResponse::Ok().json(json!({ "event_id": event_id })));
    };
    let started = Instant::now();
    while started.elapsed() < SYNC_WAIT {
        if let Some(outcome) = first_outcome(&log, &config_id, &event_id) {
            return Ok(HttpResponse::Ok().json(outcome));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Sent, but not attempted in time (a busy or open-circuit endpoint): not an error of the
    // request; the delivery goes on and shows in the attempt log.
    Ok(HttpResponse::Ok().json(json!({
        "event_id": event_id,
        "message": format!(
            "no attempt within {}s; the delivery continues, see the attempt log",
            SYNC_WAIT.as_secs()
        ),
    })))
}
