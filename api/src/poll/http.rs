//! The poll queue's endpoints (epilot `pollOutboundMessages`, `ackOutboundMessages`,
//! `listOutboundDlqMessages`, `redriveOutboundDlqMessages`, `unblockOutboundStream`).

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use erp_schemas::timestamp::format_millis;

use super::queue::PollQueue;
use super::stream::PollLimits;
use crate::state::ApiState;
use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{kind, object, only_fields, opt_string, read_json, read_optional_json};

/// The queue, after checking that the integration exists.
fn queue<'a>(
    state: &'a ApiState,
    caller: &Caller,
    integration_id: &str,
) -> Result<&'a Arc<PollQueue>, ApiError> {
    if state
        .view()
        .snapshot()
        .integration(&caller.org_id, integration_id)
        .is_none()
    {
        return Err(ApiError::not_found(
            "INTEGRATION_NOT_FOUND",
            format!("integration {integration_id} not found"),
        ));
    }
    state.poll.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "POLL_QUEUE_UNAVAILABLE",
            "the poll queue is not running on this instance",
        )
    })
}

/// An optional integer field within a range.
fn opt_int(
    map: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    match map.get(key) {
        None => Ok(None),
        Some(value) => match value.as_u64().filter(|n| (min..=max).contains(n)) {
            Some(n) => Ok(Some(n)),
            None => Err(ApiError::bad_request(format!(
                "{key} must be an integer from {min} to {max}, not {}",
                if value.is_number() {
                    value.to_string()
                } else {
                    kind(value).to_owned()
                }
            ))),
        },
    }
}

/// A required array of 1 to 100 items.
fn batch<'a>(map: &'a Map<String, Value>, key: &str) -> Result<&'a Vec<Value>, ApiError> {
    match map.get(key) {
        Some(Value::Array(items)) if (1..=100).contains(&items.len()) => Ok(items),
        Some(Value::Array(items)) => Err(ApiError::bad_request(format!(
            "{key} must have 1 to 100 items (has {})",
            items.len()
        ))),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be an array, not {}",
            kind(other)
        ))),
        None => Err(ApiError::bad_request(format!("{key} is required"))),
    }
}

fn string_of(value: &Value, path: &str) -> Result<String, ApiError> {
    value
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::bad_request(format!("{path} must be a non-empty string")))
}

/// `POST /v1/integrations/{id}/outbound/messages/poll` — body optional, `{limit 1..100 = 10}`.
pub async fn poll(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let body = read_optional_json(body, state.body_limit).await?;
    let limit = match &body {
        None => None,
        Some(body) => {
            let fields = object(body, "the body")?;
            only_fields(fields, "", &["limit"])?;
            opt_int(fields, "limit", 1, 100)?
        }
    }
    .unwrap_or(10);
    let queue = queue(&state, &caller, &integration_id)?;
    let settings = queue.settings();
    let limits = PollLimits {
        limit: usize::try_from(limit).unwrap_or(10),
        max_bytes: settings.max_response_bytes,
        visibility_ms: i64::try_from(settings.visibility_timeout.as_millis()).unwrap_or(i64::MAX),
    };
    let token = format!("lt_{}", ulid::Ulid::generate());
    let polled = queue
        .change(&integration_id, |stream, now| {
            stream.poll(now, limits, &token)
        })
        .await?;
    let messages: Vec<Value> = polled
        .messages
        .iter()
        .map(|item| {
            json!({
                "id": item.id,
                "lease_token": polled.lease_token,
                "use_case_id": item.use_case_id,
                "event_name": item.event_name,
                "event_id": item.event_id,
                "group": "0",
                "payload": item.payload,
                "enqueued_at": item.enqueued_at,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "messages": messages,
        "visibility_timeout_seconds": settings.visibility_timeout.as_secs(),
        "has_more": polled.has_more,
    })))
}

/// `POST /v1/integrations/{id}/outbound/messages/ack` — `{acks: [{id, lease_token}] (1..100)}`.
pub async fn ack(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let body = read_json(body, state.body_limit).await?;
    let fields = object(&body, "the body")?;
    let mut acks = Vec::new();
    for (index, ack) in batch(fields, "acks")?.iter().enumerate() {
        let here = format!("acks[{index}].");
        let ack = object(ack, &format!("acks[{index}]"))?;
        only_fields(ack, &here, &["id", "lease_token"])?;
        let id = ack
            .get("id")
            .ok_or_else(|| ApiError::bad_request(format!("{here}id is required")))?;
        let token = ack
            .get("lease_token")
            .ok_or_else(|| ApiError::bad_request(format!("{here}lease_token is required")))?;
        acks.push((
            string_of(id, &format!("{here}id"))?,
            string_of(token, &format!("{here}lease_token"))?,
        ));
    }
    let queue = queue(&state, &caller, &integration_id)?;
    let verdicts = queue
        .change(&integration_id, |stream, now| stream.ack(now, &acks))
        .await?;
    let results: Vec<Value> = acks
        .iter()
        .zip(verdicts)
        .map(|((id, _), verdict)| match verdict {
            Ok(()) => json!({"id": id, "status": "accepted"}),
            Err(reason) => json!({"id": id, "status": "rejected", "reason": reason.as_str()}),
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"results": results})))
}

/// Query of the DLQ listing.
#[derive(serde::Deserialize)]
pub struct DlqQuery {
    limit: Option<String>,
    next_token: Option<String>,
}

/// `GET /v1/integrations/{id}/outbound/messages/dlq?limit(1..100, 25)&next_token`
pub async fn dlq(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<DlqQuery>,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let limit = match &query.limit {
        None => 25,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::bad_request("limit must be an integer from 1 to 100"))?,
    };
    // The token is the listing position of the last entry returned.
    let after = match &query.next_token {
        None => None,
        Some(token) => Some(
            token
                .strip_prefix("dlq_")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("next_token is not a token we issued"))?,
        ),
    };
    let queue = queue(&state, &caller, &integration_id)?;
    let (entries, more) = queue
        .read_stream(&integration_id, |stream| stream.dlq_page(after, limit))
        .await?;
    let items: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "id": e.item.id,
                "use_case_id": e.item.use_case_id,
                "event_name": e.item.event_name,
                "event_id": e.item.event_id,
                "enqueued_at": e.item.enqueued_at,
                "dead_lettered_at": format_millis(e.dead_lettered_at_ms),
                "delivery_attempts": e.delivery_attempts,
                "reason": e.reason,
                "expires_at": format_millis(e.expires_at_ms),
            })
        })
        .collect();
    let mut answer = json!({"items": items});
    if let (true, Some(last)) = (more, entries.last()) {
        answer["next_token"] = json!(format!("dlq_{}", last.seq));
    }
    Ok(HttpResponse::Ok().json(answer))
}

/// `POST /v1/integrations/{id}/outbound/messages/dlq/redrive` — `{ids: [...] (1..100)}`.
pub async fn redrive(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let body = read_json(body, state.body_limit).await?;
    let fields = object(&body, "the body")?;
    only_fields(fields, "", &["ids"])?;
    let ids = batch(fields, "ids")?
        .iter()
        .enumerate()
        .map(|(index, id)| string_of(id, &format!("ids[{index}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let queue = queue(&state, &caller, &integration_id)?;
    let found = queue
        .change(&integration_id, |stream, now| stream.redrive(now, &ids))
        .await?;
    let results: Vec<Value> = ids
        .iter()
        .zip(found)
        .map(
            |(id, found)| json!({"id": id, "status": if found { "redriven" } else { "not_found" }}),
        )
        .collect();
    Ok(HttpResponse::Ok().json(json!({"results": results})))
}

/// `POST /v1/integrations/{id}/outbound/messages/unblock` — body optional, `{reason? ≤ 500}`.
pub async fn unblock(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let body = read_optional_json(body, state.body_limit).await?;
    let reason = match &body {
        None => None,
        Some(body) => {
            let fields = object(body, "the body")?;
            only_fields(fields, "", &["reason"])?;
            opt_string(fields, "", "reason", 0, 500)?.map(str::to_owned)
        }
    };
    let queue = queue(&state, &caller, &integration_id)?;
    let skipped = queue
        .change(&integration_id, |stream, now| {
            stream.unblock(now, reason.as_deref())
        })
        .await?;
    Ok(HttpResponse::Ok().json(match skipped {
        Some(id) => json!({"unblocked": true, "dead_lettered_id": id}),
        None => json!({"unblocked": false}),
    }))
}
