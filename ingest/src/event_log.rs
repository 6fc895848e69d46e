//! The inbound event log (spec §2.5): `POST /v1/integrations/{id}/events` queries accepted ERP
//! events, `POST /v1/integrations/{id}/events/replay` re-queues them.
//!
//! Kafka holds the events (`erp.inbound.events`); this module keeps only an **index** of them in
//! sled — per integration, newest first, with each event's coordinates (partition, offset) — and
//! reads the events themselves from Kafka by those coordinates when answering. The index is
//! built by reading the topic, resumes where it stopped after a restart, and can always be
//! rebuilt by deleting it. An event whose record has left the topic (retention) is answered from
//! the index with `payload_unavailable: true`.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use rdkafka::message::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use erp_runtime::Runtime;
use erp_runtime::config_view::Route;
use erp_schemas::inbound::InboundEventRecord;
use erp_schemas::timestamp::{format_millis, now_millis, parse_rfc3339};

use crate::auth::Caller;
use crate::body::{id_list, object, opt_string, read_json};
use crate::error::ApiError;
use crate::state::ApiState;
use crate::topic_index::{self, Fetcher};

/// Most events per query page (epilot's maximum).
const PAGE: usize = 25;
/// Most ids per replay request.
const MAX_REPLAY: usize = 100;

/// What the index keeps of an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    event_id: String,
    org_id: String,
    partition: i32,
    offset: i64,
    received_at: i64,
    correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    use_case_slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event_type: Option<String>,
}

fn time_key(integration_id: &str, received_at: i64, event_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(integration_id.len() + event_id.len() + 11);
    key.push(b't');
    key.extend_from_slice(integration_id.as_bytes());
    key.push(0);
    // Newest first in key order.
    key.extend_from_slice(&(i64::MAX - received_at.max(0)).to_be_bytes());
    key.extend_from_slice(event_id.as_bytes());
    key
}

fn id_key(event_id: &str) -> Vec<u8> {
    let mut key = vec![b'i'];
    key.extend_from_slice(event_id.as_bytes());
    key
}

/// The index of `erp.inbound.events`, and a reader for fetching events by coordinates.
pub struct EventLog {
    tree: sled::Tree,
    topic: String,
    fetcher: Fetcher,
}

impl EventLog {
    /// Opens the index in `dir` and starts following the topic from where the index stopped.
    pub fn start(
        runtime: &Runtime,
        dir: &std::path::Path,
    ) -> Result<(Arc<Self>, JoinHandle<()>), ApiError> {
        let unavailable = |e: String| ApiError::unavailable("EVENT_LOG_UNAVAILABLE", e);
        let tree = topic_index::open_tree(dir, "inbound").map_err(unavailable)?;
        let topic = runtime.kafka.topics.inbound_events();
        let consumer = topic_index::follower(runtime, &tree, &topic, "erp-toolkit-event-log")
            .map_err(unavailable)?;
        let fetcher = Fetcher::new(runtime, "erp-toolkit-event-fetch").map_err(unavailable)?;
        let log = Arc::new(Self {
            tree,
            topic,
            fetcher,
        });
        let task = {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                topic_index::follow(consumer, &log.tree, "event log", |message, batch| {
                    log.index(message, batch)
                })
                .await
            })
        };
        Ok((log, task))
    }

    fn index(&self, message: &rdkafka::message::BorrowedMessage<'_>, batch: &mut sled::Batch) {
        let Some(Ok(record)) = message
            .payload()
            .map(serde_json::from_slice::<InboundEventRecord>)
        else {
            return;
        };
        let entry = Entry {
            event_id: record.event_id.clone(),
            org_id: record.org_id.clone(),
            partition: message.partition(),
            offset: message.offset(),
            received_at: record.received_at,
            correlation_id: record.correlation_id.clone(),
            event_name: record.event_name.clone(),
            use_case_slug: record.use_case_slug.clone(),
            event_type: record.event_type.clone(),
        };
        let key = time_key(&record.integration_id, record.received_at, &record.event_id);
        if let Ok(value) = serde_json::to_vec(&entry) {
            batch.insert(id_key(&record.event_id), key.clone());
            batch.insert(key, value);
        }
    }

    fn entry_by_id(&self, event_id: &str) -> Option<(Vec<u8>, Entry)> {
        let key = self.tree.get(id_key(event_id)).ok().flatten()?;
        let value = self.tree.get(&key).ok().flatten()?;
        let entry = serde_json::from_slice(&value).ok()?;
        Some((key.to_vec(), entry))
    }

    /// Reads the records at `coordinates` from Kafka (blocking; run off the async threads).
    fn fetch(&self, coordinates: &[(i32, i64)]) -> Vec<Option<InboundEventRecord>> {
        coordinates
            .iter()
            .map(|&(partition, offset)| {
                let message = self.fetcher.fetch(&self.topic, partition, offset)?;
                serde_json::from_slice(message.payload()?).ok()
            })
            .collect()
    }
}

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
        return Err(crate::integrations::not_found(&integration_id));
    }

    let mut prefix = vec![b't'];
    prefix.extend_from_slice(integration_id.as_bytes());
    prefix.push(0);
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
        if entry.org_id != caller.org_id {
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
        return Err(crate::integrations::not_found(&integration_id));
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
        let written = match serde_json::to_vec(&again) {
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
