//! The attempt log's routes: list an endpoint's deliveries, show one, replay one or a batch.
//! The index they read is [`crate::webhooks::attempt_log`].

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{id_list, object, opt_bool, opt_string, read_optional_json};

use erp_schemas::timestamp::{format_millis, millis_of, parse_rfc3339};

use crate::state::ApiState;
use crate::webhooks::attempt_log::*;

pub(crate) fn attempt_log(state: &ApiState) -> Result<Arc<AttemptLog>, ApiError> {
    state.attempt_log.clone().ok_or_else(|| {
        ApiError::unavailable(
            "ATTEMPT_LOG_UNAVAILABLE",
            "this instance keeps no attempt log (start it with a data directory)",
        )
    })
}

/// The caller's endpoint, or 404 (also for another organisation's).
pub(crate) fn endpoint(state: &ApiState, caller: &Caller, config_id: &str) -> Result<(), ApiError> {
    state
        .view()
        .snapshot()
        .webhook(&caller.org_id, config_id)
        .map(|_| ())
        .ok_or_else(|| {
            ApiError::not_found(
                "WEBHOOK_NOT_FOUND",
                format!("webhook config {config_id} not found"),
            )
        })
}

pub(crate) fn date(
    fields: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<i64>, ApiError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_str()
            .and_then(parse_rfc3339)
            .map(|t| Some(millis_of(t)))
            .ok_or_else(|| ApiError::bad_request(format!("{path}{key} must be a date-time"))),
    }
}

/// `POST /v2/webhooks/configs/{configId}/events`
pub async fn list(
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
    let limit = match fields.get("limit") {
        None | Some(Value::Null) => PAGE,
        Some(value) => value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be an integer from 1 to {PAGE}"))
            })?,
    };
    let event_id = opt_string(fields, "", "event_id", 1, 1000)?.map(str::to_owned);
    let status = opt_string(fields, "", "status", 1, 20)?.map(str::to_owned);
    if let Some(status) = &status
        && !["succeeded", "failed", "skipped", "in_progress"].contains(&status.as_str())
    {
        return Err(ApiError::bad_request(
            "status must be succeeded, failed or skipped",
        ));
    }
    let (from, to) = match fields.get("timestamp") {
        None | Some(Value::Null) => (None, None),
        Some(Value::Object(range)) => (
            date(range, "timestamp.", "from")?,
            date(range, "timestamp.", "to")?,
        ),
        Some(_) => return Err(ApiError::bad_request("timestamp must be an object")),
    };
    let after = match fields.get("cursor") {
        None | Some(Value::Null) => None,
        Some(Value::Object(cursor)) => {
            let time = date(cursor, "cursor.", "created_at")?
                .ok_or_else(|| ApiError::bad_request("cursor.created_at is required"))?;
            let id = cursor
                .get("event_id")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_request("cursor.event_id is required"))?;
            Some(time_key(&config_id, time, id))
        }
        Some(_) => return Err(ApiError::bad_request("cursor must be an object")),
    };
    endpoint(&state, &caller, &config_id)?;
    let filter = Filter {
        event_id,
        status,
        from,
        to,
    };
    let (data, last, has_more) = page(&log, &caller, &config_id, &filter, after, limit).await;
    let next_cursor = has_more
        .then_some(last)
        .flatten()
        .map(|(created_at, event_id)| json!({"created_at": format_millis(created_at), "event_id": event_id}));
    Ok(HttpResponse::Ok()
        .json(json!({"data": data, "next_cursor": next_cursor, "has_more": has_more})))
}

/// What a listing selects, beyond the endpoint and the organisation.
#[derive(Default)]
struct Filter {
    event_id: Option<String>,
    status: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
}

/// One page of an endpoint's deliveries, newest first, after the time key `after`: the
/// `WebhookEvent`s, the (created_at, event_id) of the last one, and whether more follow.
async fn page(
    log: &Arc<AttemptLog>,
    caller: &Caller,
    config_id: &str,
    filter: &Filter,
    after: Option<Vec<u8>>,
    limit: usize,
) -> (Vec<Value>, Option<(i64, String)>, bool) {
    let candidates: Box<dyn Iterator<Item = Row>> = match &filter.event_id {
        Some(id) => Box::new(log.row(config_id, id).into_iter()),
        None => Box::new(log.rows(config_id, after)),
    };
    let mut rows = Vec::new();
    let mut has_more = false;
    for row in candidates {
        // Newest first: past `from`, nothing older can match.
        if filter.from.is_some_and(|from| row.created_at < from) {
            break;
        }
        if row.org_id != caller.org_id
            || filter.to.is_some_and(|to| row.created_at > to)
            || filter.status.as_ref().is_some_and(|s| *s != row.status)
        {
            continue;
        }
        if rows.len() == limit {
            has_more = true;
            break;
        }
        rows.push(row);
    }
    let mut data = Vec::with_capacity(rows.len());
    for row in &rows {
        let event = log.fetch_async(row.source.clone()).await;
        data.push(webhook_event(row, event.as_deref(), false));
    }
    let last = rows.last().map(|r| (r.created_at, r.event_id.clone()));
    (data, last, has_more)
}

/// `GET /v1/webhooks/configs/{configId}/events[?status=&cursor=]` (deprecated by epilot in
/// favour of the v2 listing, served for middleware written against it): pages of 25, the cursor
/// an opaque base64 string.
pub async fn list_v1(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let config_id = path.into_inner();
    let log = attempt_log(&state)?;
    let status = query.get("status").cloned();
    if let Some(status) = &status
        && !["succeeded", "failed", "in_progress"].contains(&status.as_str())
    {
        return Err(ApiError::bad_request(
            "status must be succeeded, failed or in_progress",
        ));
    }
    let bad_cursor = || ApiError::bad_request("cursor is not a cursor this API answered");
    let after = match query.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(cursor) => {
            let bytes = URL_SAFE_NO_PAD
                .decode(cursor.trim_end_matches('='))
                .map_err(|_| bad_cursor())?;
            let (time, id): (i64, String) =
                serde_json::from_slice(&bytes).map_err(|_| bad_cursor())?;
            Some(time_key(&config_id, time, &id))
        }
    };
    endpoint(&state, &caller, &config_id)?;
    let filter = Filter {
        status,
        ..Filter::default()
    };
    let (data, last, has_more) = page(&log, &caller, &config_id, &filter, after, PAGE).await;
    let mut answer = json!({ "data": data });
    if has_more
        && let Some(last) = last
        && let Ok(bytes) = serde_json::to_vec(&last)
    {
        answer["cursor"] = Value::String(URL_SAFE_NO_PAD.encode(bytes));
    }
    Ok(HttpResponse::Ok().json(answer))
}

/// `GET /v1/webhooks/configs/{configId}/events/{eventId}`: one delivery with its attempts.
pub async fn get(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (config_id, event_id) = path.into_inner();
    let log = attempt_log(&state)?;
    endpoint(&state, &caller, &config_id)?;
    let row = found(&log, &caller, &config_id, &event_id)?;
    let event = log.fetch_async(row.source.clone()).await;
    Ok(HttpResponse::Ok().json(webhook_event(&row, event.as_deref(), true)))
}

fn found(
    log: &AttemptLog,
    caller: &Caller,
    config_id: &str,
    event_id: &str,
) -> Result<Row, ApiError> {
    log.row(config_id, event_id)
        .filter(|row| row.org_id == caller.org_id)
        .ok_or_else(|| {
            ApiError::not_found(
                "EVENT_NOT_FOUND",
                format!("no delivery of event {event_id} to webhook config {config_id}"),
            )
        })
}

/// `POST /v1/webhooks/configs/{configId}/events/{eventId}/replay {reapply_transform?}` → 204.
pub async fn replay(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (config_id, event_id) = path.into_inner();
    let log = attempt_log(&state)?;
    let body = read_optional_json(body, state.body_limit)
        .await?
        .unwrap_or_else(|| json!({}));
    let reapply =
        opt_bool(object(&body, "request body")?, "", "reapply_transform")?.unwrap_or(false);
    endpoint(&state, &caller, &config_id)?;
    let row = found(&log, &caller, &config_id, &event_id)?;
    enqueue_replay(&state.producer, &state.topics, &log, &row, reapply).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/webhooks/configs/{configId}/events/replay-batch {eventIds, reapply_transform?}`
/// → 202 `{replayed_event_ids}` (ids without a delivery, or whose event left Kafka, are left
/// out).
pub async fn replay_batch(
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
    let ids = id_list(fields, "eventIds", MAX_REPLAY)?;
    let reapply = opt_bool(fields, "", "reapply_transform")?.unwrap_or(false);
    endpoint(&state, &caller, &config_id)?;
    let mut replayed = Vec::new();
    for id in ids {
        let Ok(row) = found(&log, &caller, &config_id, &id) else {
            continue;
        };
        match enqueue_replay(&state.producer, &state.topics, &log, &row, reapply).await {
            Ok(()) => replayed.push(id),
            Err(error) if error.code == "KAFKA_UNAVAILABLE" => return Err(error),
            Err(_) => {}
        }
    }
    Ok(HttpResponse::Accepted().json(json!({"replayed_event_ids": replayed})))
}
