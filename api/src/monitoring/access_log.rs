//! The API's own access log (epilot's `…/monitoring/access-logs`): every authenticated call to
//! an integration's routes (`/v1|v2/integrations/{id}/…`) becomes an `info` span with code
//! `API_ACCESS` on `erp.monitoring`, so the indexer stores it like every other span — one
//! mechanism, one retention, exactly once — and it never counts as an outcome.
//!
//! Who: the token's id and name, never its value. What: method, the route *pattern* (not the
//! raw path, which could carry anything a caller typed), status, duration and response length.

use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::ServiceResponse;
use serde_json::json;
use tracing::debug;

use erp_http::auth::Caller;
use erp_schemas::monitoring::{Level, MonitoringSpan};
use erp_schemas::timestamp::now_rfc3339;

use super::v1_shape::ACCESS_CODE;
use crate::state::ApiState;

/// Records `response` (answered after `elapsed`) when it was an authenticated call to one
/// integration's routes. Hands the span to the producer and returns: the answer never waits for
/// its own log line, and a log line that could not be written is only a debug message.
pub fn record<B: MessageBody>(state: &ApiState, response: &ServiceResponse<B>, elapsed: Duration) {
    let request = response.request();
    let Some(pattern) = request.match_pattern() else {
        return;
    };
    if !(pattern.starts_with("/v1/integrations/{id}")
        || pattern.starts_with("/v2/integrations/{id}"))
    {
        return;
    }
    let Some(integration_id) = request.match_info().get("id").map(str::to_owned) else {
        return;
    };
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return;
    };
    let token_id = caller
        .actor
        .strip_prefix("token:")
        .map_or_else(|| caller.actor.clone(), str::to_owned);
    let token_name = state
        .view()
        .snapshot()
        .token(&token_id)
        .map(|t| t.name.clone());
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect::<String>())
    };
    let length = match response.response().body().size() {
        BodySize::Sized(n) => n,
        _ => 0,
    };
    let status = response.status().as_u16();
    let method = request.method().to_string();
    let request_id = uuid::Uuid::new_v4().to_string();
    let span = MonitoringSpan {
        id: request_id.clone(),
        org_id: caller.org_id,
        integration_id: integration_id.clone(),
        event_id: request_id,
        correlation_id: String::new(),
        use_case_id: String::new(),
        use_case_type: String::new(),
        level: Level::Info,
        code: ACCESS_CODE.to_owned(),
        message: format!("{method} {pattern} {status}"),
        detail: json!({
            "environment": "default",
            "service": "erp-toolkit-api",
            "method": method,
            "path": pattern,
            "status": status,
            "response_latency_ms": elapsed.as_millis() as u64,
            "response_length": length,
            "token_id": token_id,
            "token_name": token_name,
            "origin": header("origin").unwrap_or_default(),
            "source_ip": request.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
        }),
        created_at: now_rfc3339(),
    };
    let Ok(bytes) = serde_json::to_vec(&span) else {
        return;
    };
    let producer = state.producer.clone();
    let topic = state.topics.monitoring();
    tokio::spawn(async move {
        let sent =
            match erp_runtime::kafka::enqueue(&producer, &topic, &integration_id, &bytes).await {
                Ok(delivery) => delivery
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map(|_| ()).map_err(|(e, _)| e.to_string())),
                Err(error) => Err(error.to_string()),
            };
        if let Err(error) = sent {
            debug!(%error, "an access-log span was not written");
        }
    });
}
