//! The inbound event log's routes: `POST /v1/integrations/{id}/events` (a query) and
//! `…/events/replay`. The index they read is [`crate::events::log`].

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{id_list, object, opt_string, read_json};
use erp_runtime::config::Route;
use erp_schemas::inbound::InboundEventRecord;
use erp_schemas::timestamp::{format_millis, now_millis, parse_rfc3339};

use crate::events::log::*;
use crate::state::ApiState;

/// `POST /v1/integrations/{id}/events`
pub async fn query(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let log = event_log(&state)?;
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request_code(
                "INVALID_JSON",
                format!("request body is not valid JSON: {e}"),
            )
        })?
    };
    let fields = object(&body, "request body")?;
    let filter = |key: &str| opt_string(fields, "", key, 1, 1000).map(|v| v.map(str::to_owned));
    let (event_id, event_type, correlation_id) = (
        filter("event_id")?,
        filter("event_type")?,
        filter("correlation_id")?,
    );
    let object_type = filter("object_type")?.or(filter("event_name")?);
    let use_case_id = filter("use_case_id")?;
    if let Some(kind) = &event_type
        && !["CREATE", "UPDATE", "DELETE"].contains(&kind.as_str())
    {
        return Err(ApiError::bad_request(
            "event_type must be CREATE, UPDATE or DELETE",
        ));
    }
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
    let after = match fields.get("cursor") {
        None | Some(Value::Null) => None,
        Some(Value::Object(cursor)) => {
            let time = cursor
                .get("event_time")
                .and_then(Value::as_str)
                .and_then(parse_rfc3339)
                .ok_or_else(|| ApiError::bad_request("cursor.event_time must be a date-time"))?;
            let id = cursor
                .get("event_id")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_request("cursor.event_id is required"))?;
            Some(time_key(
                &integration_id,
                erp_schemas::timestamp::millis_of(time),
                id,
            ))
        }
        Some(_) => return Err(ApiError::bad_request("cursor must be an object")),
    };
    let config = state.view().snapshot();
    if config
        .integration(&caller.org_id, &integration_id)
        .is_none()
    {
        return Err(ApiError::integration_not_found(&integration_id));
    }

    let mut prefix = vec![b't'];
    prefix.extend_from_slice(integration_id.as_bytes());
    prefix.push(0);
    // The scan may walk a whole integration's index when the filters match little: work for a
    // blocking thread, not for an async worker that other requests are queued on.
    let scan = (
        Arc::clone(&log),
        caller.org_id.clone(),
        integration_id.clone(),
    );
    let (matches, has_more) = tokio::task::spawn_blocking(move || {
        let (log, org_id, integration_id) = scan;
        let resolve = |entry: &Entry| -> Option<String> {
            match config.route(
                &entry.org_id,
                &integration_id,
                entry.use_case_slug.as_deref(),
                entry.event_name.as_deref(),
            ) {
                Route::Matched(u) | Route::Disabled(u) => Some(u.use_case.id.clone()),
                Route::NotFound => None,
            }
        };
        let mut matches: Vec<(Entry, Option<String>)> = Vec::new();
        let mut has_more = false;
        let candidates: Box<dyn Iterator<Item = Entry>> = match &event_id {
            Some(id) => Box::new(log.entry_by_id(id).map(|(_, e)| e).into_iter()),
            None => Box::new(
                log.tree
                    .scan_prefix(&prefix)
                    .filter_map(Result::ok)
                    .filter(|(key, _)| after.as_ref().is_none_or(|a| key.as_ref() > a.as_slice()))
                    .filter_map(|(_, value)| serde_json::from_slice::<Entry>(&value).ok()),
            ),
        };
        for entry in candidates {
            if entry.org_id != org_id {
                continue;
            }
            let name = entry.event_name.clone().or(entry.use_case_slug.clone());
            if event_type
                .as_ref()
                .is_some_and(|t| entry.event_type.as_ref() != Some(t))
                || correlation_id
                    .as_ref()
                    .is_some_and(|c| *c != entry.correlation_id)
                || object_type
                    .as_ref()
                    .is_some_and(|o| name.as_ref() != Some(o))
            {
                continue;
            }
            let resolved = resolve(&entry);
            if use_case_id.is_some() && resolved != use_case_id {
                continue;
            }
            if matches.len() == limit {
                has_more = true;
                break;
            }
            matches.push((entry, resolved));
        }
        (matches, has_more)
    })
    .await
    .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?;

    let coordinates: Vec<(i32, i64)> = matches
        .iter()
        .map(|(e, _)| (e.partition, e.offset))
        .collect();
    let fetch_log = Arc::clone(&log);
    let records = tokio::task::spawn_blocking(move || fetch_log.fetch(&coordinates))
        .await
        .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?;
    let data: Vec<Value> = matches
        .iter()
        .zip(records)
        .map(|((entry, use_case_id), record)| {
            let mut event = json!({
                "event_id": entry.event_id,
                "event_type": entry.event_type.clone().unwrap_or_else(|| "UPDATE".into()),
                "object_type": entry.event_name.clone().or(entry.use_case_slug.clone()).unwrap_or_default(),
                "correlation_id": entry.correlation_id,
                "use_case_id": use_case_id,
                "received_at": format_millis(entry.received_at),
            });
            match record {
                Some(record) => {
                    event["timestamp"] = json!(record.timestamp);
                    event["format"] = json!(record.format);
                    event["payload"] = json!(record.payload);
                    if let Some(dedup) = record.deduplication_id {
                        event["deduplication_id"] = json!(dedup);
                    }
                }
                None => {
                    event["timestamp"] = json!(format_millis(entry.received_at));
                    event["format"] = json!("json");
                    event["payload"] = json!("");
                    event["payload_unavailable"] = json!(true);
                }
            }
            event
        })
        .collect();
    let next_cursor = has_more
        .then(|| matches.last())
        .flatten()
        .map(|(e, _)| json!({"event_time": format_millis(e.received_at), "event_id": e.event_id}));
    Ok(HttpResponse::Ok()
        .json(json!({"data": data, "next_cursor": next_cursor, "has_more": has_more})))
}

/// `POST /v1/integrations/{id}/events/replay`: each event is written to `erp.inbound.events`
/// again with its original payload, a new event id and a new correlation id, and without its
/// `deduplication_id` (a replay is asked for to be processed again, typically after a mapping
/// fix; it carries `replay_of` instead). Always 200, with a result per id.
pub async fn replay(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let log = event_log(&state)?;
    let body = read_json(body, state.body_limit).await?;
    let fields = object(&body, "request body")?;
    let ids = id_list(fields, "event_ids", MAX_REPLAY)?;
    let config = state.view().snapshot();
    if config
        .integration(&caller.org_id, &integration_id)
        .is_none()
    {
        return Err(ApiError::integration_not_found(&integration_id));
    }
    let found: Vec<Option<Entry>> = ids
        .iter()
        .map(|id| {
            log.entry_by_id(id)
                .map(|(_, e)| e)
                .filter(|e| e.org_id == caller.org_id)
        })
        .collect();
    let coordinates: Vec<(i32, i64)> = found
        .iter()
        .map(|e| e.as_ref().map_or((-1, -1), |e| (e.partition, e.offset)))
        .collect();
    let fetch_log = Arc::clone(&log);
    let records = tokio::task::spawn_blocking(move || fetch_log.fetch(&coordinates))
        .await
        .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?;
    let topic = state.topics.inbound_events();
    let mut results = Vec::with_capacity(ids.len());
    let mut replayed = 0;
    for ((id, entry), record) in ids.iter().zip(found).zip(records) {
        let record = record.filter(|r| entry.is_some() && r.integration_id == integration_id);
        let Some(record) = record else {
            results.push(json!({"event_id": id, "status": "not_found",
                "message": "no inbound event with this id for the integration (or it left the topic)"}));
            continue;
        };
        match config.route(
            &record.org_id,
            &record.integration_id,
            record.use_case_slug.as_deref(),
            record.event_name.as_deref(),
        ) {
            Route::Matched(_) => {}
            Route::Disabled(_) | Route::NotFound => {
                results.push(json!({"event_id": id, "status": "ignored",
                    "message": "no enabled use case matches the event"}));
                continue;
            }
        }
        let replay_id = erp_schemas::ids::new_event_id();
        let again = InboundEventRecord {
            event_id: replay_id.clone(),
            correlation_id: uuid::Uuid::new_v4().to_string(),
            received_at: now_millis(),
            deduplication_id: None,
            replay_of: Some(record.event_id.clone()),
            ..record
        };
        let written = match state
            .runtime
            .kafka
            .wire
            .encode("inbound event", &topic, &again)
            .await
        {
            Ok(value) => erp_runtime::kafka::send(&state.producer, &topic, &again.key(), &value)
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match written {
            Ok(_) => {
                replayed += 1;
                results.push(
                    json!({"event_id": id, "status": "queued", "replay_event_id": replay_id,
                    "message": "queued for re-processing"}),
                );
            }
            Err(error) => {
                results.push(json!({"event_id": id, "status": "error", "message": error}))
            }
        }
    }
    Ok(
        HttpResponse::Ok()
            .json(json!({"replayed": replayed, "results": results, "event_ids": ids})),
    )
}

fn event_log(state: &ApiState) -> Result<Arc<EventLog>, ApiError> {
    state.event_log.clone().ok_or_else(|| {
        ApiError::unavailable(
            "EVENT_LOG_UNAVAILABLE",
            "this instance keeps no event log (start it with a data directory)",
        )
    })
}
