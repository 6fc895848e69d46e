//! `POST /v1/events`: core events from the customer platform (epilot spec §6.1 envelope) for the
//! outbound flow, written to `erp.platform.events`. A Kafka-native platform produces to that
//! topic directly instead. Each event is keyed by its `trigger_entity` (else its `_event_id`),
//! so events of one entity keep their order. Every event is checked against the core event
//! catalog (`erp_schemas::catalog`) first; an invalid one refuses the request (400, with the
//! JSON pointer of each violation) and nothing is written.

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use erp_schemas::timestamp::parse_rfc3339;

use crate::events::MAX_EVENTS;
use crate::queue::{self, Queued};
use crate::state::IngestState;
use erp_http::ApiError;
use erp_http::Caller;
use erp_http::body::{kind, read_json};

/// `POST /v1/events`: `{"events": [...]}` or a bare array of core events.
pub async fn post(
    state: web::Data<IngestState>,
    caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(body, state.body_limit).await?;
    let events = match &body {
        Value::Array(events) => events,
        Value::Object(map) => match map.get("events") {
            Some(Value::Array(events)) => events,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "events must be an array, not {}",
                    kind(other)
                )));
            }
            None => return Err(ApiError::bad_request("events is required")),
        },
        other => {
            return Err(ApiError::bad_request(format!(
                "request body must be an object or an array, not {}",
                kind(other)
            )));
        }
    };
    if events.len() > MAX_EVENTS {
        return Err(ApiError::bad_request_code(
            "TOO_MANY_EVENTS",
            format!(
                "events has {} items; at most {MAX_EVENTS} are accepted per request",
                events.len()
            ),
        ));
    }
    let events = events
        .iter()
        .enumerate()
        .map(|(index, event)| envelope(index, event, &caller.org_id))
        .collect::<Result<Vec<_>, _>>()?;
    // The project's catalog, always: the envelope, then the schema of the event's version. A
    // refusal names the event and the JSON pointer of each violation.
    let catalog = erp_schemas::catalog::try_events()
        .map_err(|e| ApiError::internal("SCHEMA_CATALOG_BROKEN", e.to_string()))?;
    for (index, (_, _, event)) in events.iter().enumerate() {
        if let Err(error) = catalog.check(event) {
            return Err(ApiError::bad_request_code(
                error.code(),
                format!("events[{index}] {error}"),
            ));
        }
    }
    // Schemas given at deployment (`--core-event-schemas`), on top.
    if let Some(schemas) = &state.event_schemas {
        for (index, (_, _, event)) in events.iter().enumerate() {
            let name = event
                .get("_event_name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            schemas
                .check(name, event)
                .map_err(|message| ApiError::bad_request(format!("events[{index}] {message}")))?;
        }
    }

    let mut queued = Vec::with_capacity(events.len());
    for (key, event_id, event) in events {
        let bytes = serde_json::to_vec(&event)
            .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?;
        queued.push(Queued {
            event_id,
            key,
            bytes,
            status: "success",
            message: "Event queued for processing".into(),
        });
    }
    queue::queue(&state, &state.topics.platform_events(), queued, |_| {}).await
}

/// Checks the envelope; returns the record key, the event id and the event (with `_org_id` and a
/// minted `_ack_id` filled in when absent).
fn envelope(
    index: usize,
    event: &Value,
    org_id: &str,
) -> Result<(String, String, Value), ApiError> {
    let path = format!("events[{index}]");
    let mut event = event.clone();
    let map = event
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request(format!("{path} must be an object")))?;
    let text =
        |map: &serde_json::Map<String, Value>, key: &str| -> Result<Option<String>, ApiError> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(other) => Err(ApiError::bad_request(format!(
                    "{path}.{key} must be a non-empty string, not {other}"
                ))),
            }
        };
    let event_id = text(map, "_event_id")?
        .ok_or_else(|| ApiError::bad_request(format!("{path}._event_id is required")))?;
    text(map, "_event_name")?
        .ok_or_else(|| ApiError::bad_request(format!("{path}._event_name is required")))?;
    let time = text(map, "_event_time")?
        .ok_or_else(|| ApiError::bad_request(format!("{path}._event_time is required")))?;
    if parse_rfc3339(&time).is_none() {
        return Err(ApiError::bad_request(format!(
            "{path}._event_time {time:?} is not an RFC 3339 date-time"
        )));
    }
    match text(map, "_org_id")? {
        Some(org) if org != org_id => {
            return Err(ApiError::bad_request(format!(
                "{path}._org_id {org:?} is not the caller's organisation"
            )));
        }
        Some(_) => {}
        None => {
            map.insert("_org_id".into(), json!(org_id));
        }
    }
    match text(map, "_ack_id")? {
        Some(ack) if uuid::Uuid::parse_str(&ack).is_err() => {
            return Err(ApiError::bad_request(format!(
                "{path}._ack_id {ack:?} must be a UUID"
            )));
        }
        Some(_) => {}
        None => {
            map.insert("_ack_id".into(), json!(uuid::Uuid::new_v4().to_string()));
        }
    }
    let key = text(map, "trigger_entity")?.unwrap_or_else(|| event_id.clone());
    Ok((key, event_id, event))
}
