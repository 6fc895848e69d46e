//! epilot's notification routes (spec §2.4.5): `GET …/notifications/history`, `GET
//! …/notifications/status`, `POST …/notifications/test`.

use actix_web::{HttpResponse, web};
use base64::Engine;
use serde_json::{Value, json};

use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{object, read_optional_json};
use erp_schemas::timestamp::{format_millis, now_millis};

use super::rules::settings;
use crate::state::ApiState;

fn encode_cursor(at: i64, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{at}:{id}"))
}

fn decode_cursor(text: &str) -> Option<(i64, String)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (at, id) = text.split_once(':')?;
    Some((at.parse().ok()?, id.to_owned()))
}

/// `GET /v2/integrations/{id}/notifications/history?cursor&limit&type`
pub async fn history(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    state.caller_integration(&caller, &integration_id)?;
    let limit = match query.get("limit") {
        None => 50,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::bad_request("limit must be an integer from 1 to 100"))?,
    };
    let before = match query.get("cursor") {
        None => None,
        Some(text) => {
            Some(decode_cursor(text).ok_or_else(|| ApiError::bad_request("cursor is not valid"))?)
        }
    };
    let (rows, more) = state
        .monitoring_store()?
        .alert_history(
            &caller.org_id,
            &integration_id,
            query.get("type").cloned(),
            before,
            limit,
        )
        .await?;
    let next_cursor = match (more, rows.last()) {
        (true, Some((at, id, _))) => json!(encode_cursor(*at, id)),
        _ => Value::Null,
    };
    let history: Vec<Value> = rows.into_iter().map(|(_, _, row)| row).collect();
    Ok(HttpResponse::Ok().json(json!({"history": history, "next_cursor": next_cursor})))
}

/// `GET /v2/integrations/{id}/notifications/status`
pub async fn status(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let found = state.caller_integration(&caller, &integration_id)?;
    let config = settings(&found.extra).unwrap_or_default();
    let states = state
        .monitoring_store()?
        .rule_states(&caller.org_id, &integration_id)
        .await?;
    let at = |ms: Option<i64>| ms.map_or(Value::Null, |ms| json!(format_millis(ms)));
    let mut alerting = false;
    let mut evaluated: Option<i64> = None;
    let rules: Vec<Value> = config
        .rules
        .iter()
        .map(|rule| {
            let state = states.get(&rule.id).cloned().unwrap_or_default();
            alerting |= state.alerting && rule.enabled;
            evaluated = evaluated.max(state.last_evaluated_ms);
            json!({
                "rule_id": rule.id,
                "state": if state.alerting { "alerting" } else { "ok" },
                "last_fired_at": at(state.last_fired_ms),
                "last_cleared_at": at(state.last_cleared_ms),
                "baseline": null,
            })
        })
        .collect();
    let health = if config.mute_until.is_some_and(|until| until > now_millis()) {
        "muted"
    } else if alerting {
        "alerting"
    } else {
        "healthy"
    };
    Ok(HttpResponse::Ok().json(json!({
        "health": health,
        "evaluated_at": at(evaluated),
        "rules": rules,
    })))
}

/// `POST /v2/integrations/{id}/notifications/test {kind, type?, channels?}` → 202: one test
/// `IntegrationAlert` to the integration's subscribed endpoints.
pub async fn test(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    state.caller_integration(&caller, &integration_id)?;
    let body = read_optional_json(payload, state.body_limit)
        .await?
        .unwrap_or_else(|| json!({}));
    let fields = object(&body, "request body")?;
    let kind = match fields.get("kind").and_then(Value::as_str) {
        Some(kind @ ("alert" | "digest")) => kind,
        _ => return Err(ApiError::bad_request("kind must be alert or digest")),
    };
    let rule_type = fields
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("critical_error");
    let now = now_millis();
    let id = erp_schemas::ids::new_event_id();
    let row = json!({
        "id": id,
        "type": if kind == "digest" { "integration_digest" } else { rule_type },
        "state_transition": null,
        "severity": "info",
        "title": format!("test {kind} of erp-toolkit"),
        "occurred_at": format_millis(now),
        "notified": true,
        "suppressed_reason": null,
        "recipients": [caller.actor.clone()],
        "context": {"test": true},
        "created_at": format_millis(now),
    });
    super::sweep::deliver(
        &state.runtime,
        &state.producer,
        &caller.org_id,
        &integration_id,
        &row,
    )
    .await;
    Ok(HttpResponse::Accepted().json(json!({
        "sent": true,
        "recipient": caller.actor,
        "channels": ["webhook"],
        "notification_id": id,
    })))
}
