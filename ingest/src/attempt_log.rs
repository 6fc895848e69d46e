//! The webhook attempt log (epilot Webhooks API: `WebhookEvent`), replay and recovery.
//!
//! - `POST /v2/webhooks/configs/{configId}/events` lists an endpoint's deliveries, newest first;
//!   `GET /v1/webhooks/configs/{configId}/events/{eventId}` shows one with its attempts.
//! - `POST …/events/{eventId}/replay` (204) and `POST …/events/replay-batch` (202) send
//!   deliveries again with the same `webhook-id`.
//! - `POST /v1/webhooks/configs/{configId}/recover` (our extension, after Svix "recover") sends
//!   every failed delivery of a time window again, rate-limited, in the background;
//!   `GET …/recover/{taskId}` shows its progress.
//!
//! Like the inbound event log, this keeps only an **index** in sled: it follows
//! `erp.monitoring`, keeps the dispatcher's attempt and skip spans, and folds them into one row
//! per delivery (endpoint + core event) with its latest status and every attempt. The event
//! itself stays in Kafka: each span names its coordinates, and the payload is read from there
//! when asked for. Rows older than the retention (4 weeks by default) are pruned.
//!
//! A replay is never an HTTP call from the API: it is a [`DeliveryTask`] marked as a replay,
//! written to the dispatcher's first retry tier, so it is as durable as any retry and is sent
//! by the same code with the same isolation (breaker, caps, safety).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use rdkafka::message::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

use erp_runtime::Runtime;
use erp_schemas::dead_letter::SourceCoordinates;
use erp_schemas::delivery_task::{DeliveryTask, Replay};
use erp_schemas::monitoring::{Level, MonitoringSpan};
use erp_schemas::timestamp::{format_millis, millis_of, now_millis, parse_rfc3339};

use crate::auth::Caller;
use crate::body::{id_list, object, opt_bool, opt_string, read_optional_json};
use crate::error::ApiError;
use crate::state::ApiState;
use crate::topic_index::{self, Fetcher};

/// Most deliveries per page (epilot's maximum).
const PAGE: usize = 25;
/// Most ids per batch replay (epilot's maximum).
const MAX_REPLAY: usize = 100;

/// How the attempt log and recovery run.
#[derive(Debug, Clone)]
pub struct AttemptLogSettings {
    /// How long a delivery stays in the index (by its first attempt).
    pub retention: Duration,
    /// Most deliveries a recovery re-sends per second.
    pub recover_rate: u32,
}

impl Default for AttemptLogSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(28 * 24 * 3600),
            recover_rate: 50,
        }
    }
}

/// One attempt (or skip) of a delivery, from its span.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AttemptRow {
    span_id: String,
    attempt: u64,
    at: String,
    status: String,
    outcome: String,
    code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status_code: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replay_id: Option<String>,
}

/// One delivery: an event for an endpoint, with its latest status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Row {
    pub(crate) org_id: String,
    pub(crate) webhook_config_id: String,
    pub(crate) event_id: String,
    event_name: String,
    url: String,
    http_method: String,
    webhook_id: String,
    pub(crate) created_at: i64,
    updated_at: String,
    pub(crate) status: String,
    code: String,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status_code: Option<u64>,
    response_body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<SourceCoordinates>,
    /// The last transformed body sent (see the dispatcher's span).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sent_body: Option<String>,
    /// Whether the last body sent was the output of a transform.
    #[serde(default)]
    transformed: bool,
    attempts: Vec<AttemptRow>,
}

impl Row {
    /// The highest attempt number so far: a replay continues the count.
    fn attempt_count(&self) -> u32 {
        self.attempts
            .iter()
            .map(|a| a.attempt)
            .max()
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }
}

fn prefix(kind: u8, config_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(config_id.len() + 2);
    key.push(kind);
    key.extend_from_slice(config_id.as_bytes());
    key.push(0);
    key
}

fn row_key(config_id: &str, event_id: &str) -> Vec<u8> {
    let mut key = prefix(b'r', config_id);
    key.extend_from_slice(event_id.as_bytes());
    key
}

fn time_key(config_id: &str, created_at: i64, event_id: &str) -> Vec<u8> {
    let mut key = prefix(b't', config_id);
    // Newest first in key order.
    key.extend_from_slice(&(i64::MAX - created_at.max(0)).to_be_bytes());
    key.extend_from_slice(event_id.as_bytes());
    key
}

/// The creation time and event id of a time key.
fn parse_time_key(key: &[u8]) -> Option<(String, i64, String)> {
    let zero = key.iter().position(|b| *b == 0)?;
    let config = String::from_utf8(key.get(1..zero)?.to_vec()).ok()?;
    let time: [u8; 8] = key.get(zero + 1..zero + 9)?.try_into().ok()?;
    let event = String::from_utf8(key.get(zero + 9..)?.to_vec()).ok()?;
    Some((config, i64::MAX - i64::from_be_bytes(time), event))
}

/// The index of the dispatcher's attempt spans (recoveries are kept beside it, see
/// [`crate::recovery`]), and a reader for events by coordinates.
pub struct AttemptLog {
    pub(crate) tree: sled::Tree,
    fetcher: Fetcher,
    pub(crate) settings: AttemptLogSettings,
    /// Cancelled when the process stops: ends recoveries running in the background.
    pub(crate) shutdown: tokio_util::sync::CancellationToken,
}

impl AttemptLog {
    /// Opens the index in `dir`, follows `erp.monitoring` from where it stopped, and prunes
    /// rows past the retention every hour.
    pub fn start(
        runtime: &Runtime,
        dir: &std::path::Path,
        settings: AttemptLogSettings,
    ) -> Result<(Arc<Self>, Vec<JoinHandle<()>>), ApiError> {
        let unavailable = |e: String| ApiError::unavailable("ATTEMPT_LOG_UNAVAILABLE", e);
        let tree = topic_index::open_tree(dir, "attempts").map_err(unavailable)?;
        let topic = runtime.kafka.topics.monitoring();
        let consumer = topic_index::follower(runtime, &tree, &topic, "erp-toolkit-attempt-log")
            .map_err(unavailable)?;
        let fetcher = Fetcher::new(runtime, "erp-toolkit-attempt-fetch").map_err(unavailable)?;
        let log = Arc::new(Self {
            tree,
            fetcher,
            settings,
            shutdown: runtime.shutdown.clone(),
        });
        let follow = {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                topic_index::follow(consumer, &log.tree, "attempt log", |message, batch| {
                    if let Some(span) = message
                        .payload()
                        .and_then(|p| serde_json::from_slice::<MonitoringSpan>(p).ok())
                    {
                        log.fold(&span, batch);
                    }
                })
                .await
            })
        };
        let prune = {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                loop {
                    let pruned = log.prune(now_millis());
                    if pruned > 0 {
                        tracing::info!(pruned, "attempt log pruned");
                    }
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            })
        };
        Ok((log, vec![follow, prune]))
    }

    /// Folds a delivery span into its row (other spans are ignored).
    fn fold(&self, span: &MonitoringSpan, batch: &mut sled::Batch) {
        let detail = &span.detail;
        let text = |key: &str| detail.get(key).and_then(Value::as_str).map(str::to_owned);
        if text("stage").as_deref() != Some("dispatcher") {
            return;
        }
        let (Some(config_id), Some(event_id)) = (text("webhook_config_id"), text("core_event_id"))
        else {
            return;
        };
        let key = row_key(&config_id, &event_id);
        let existing = self
            .tree
            .get(&key)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice::<Row>(&v).ok());
        if existing
            .as_ref()
            .is_some_and(|row| row.attempts.iter().any(|a| a.span_id == span.id))
        {
            // The same attempt recorded again after a dispatcher restart.
            return;
        }
        let outcome = text("outcome").unwrap_or_default();
        let status = match span.level {
            Level::Success => "succeeded",
            Level::Skipped => "skipped",
            Level::Error => "failed",
            // A failed attempt with a retry scheduled: the delivery is not over yet.
            Level::Warning | Level::Info => "in_progress",
        };
        let status_code = detail.get("status_code").and_then(Value::as_u64);
        let created = parse_rfc3339(&span.created_at).map_or_else(now_millis, millis_of);
        let mut row = existing.unwrap_or_else(|| Row {
            org_id: span.org_id.clone(),
            webhook_config_id: config_id.clone(),
            event_id: event_id.clone(),
            event_name: text("event_name").unwrap_or_default(),
            url: String::new(),
            http_method: String::new(),
            webhook_id: text("webhook_id").unwrap_or_default(),
            created_at: created,
            updated_at: String::new(),
            status: String::new(),
            code: String::new(),
            message: String::new(),
            status_code: None,
            response_body: String::new(),
            source: None,
            sent_body: None,
            transformed: false,
            attempts: Vec::new(),
        });
        row.url = text("url").unwrap_or(row.url);
        row.http_method = text("http_method").unwrap_or(row.http_method);
        row.updated_at = span.created_at.clone();
        row.status = status.into();
        row.code = span.code.clone();
        row.message = span.message.clone();
        row.status_code = status_code;
        row.response_body = text("response_body").unwrap_or_default();
        if let Some(source) = detail
            .get("source")
            .and_then(|s| serde_json::from_value::<SourceCoordinates>(s.clone()).ok())
        {
            row.source = Some(source);
        }
        if outcome != "skipped" {
            row.transformed = detail
                .get("transformed")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            row.sent_body = text("sent_body");
        }
        row.attempts.push(AttemptRow {
            span_id: span.id.clone(),
            attempt: detail.get("attempt").and_then(Value::as_u64).unwrap_or(0),
            at: span.created_at.clone(),
            status: status.into(),
            outcome,
            code: span.code.clone(),
            status_code,
            duration_ms: detail.get("duration_ms").and_then(Value::as_u64),
            next_attempt_at: text("next_attempt_at"),
            replay_id: text("replay_id"),
        });
        if let Ok(value) = serde_json::to_vec(&row) {
            batch.insert(time_key(&config_id, row.created_at, &event_id), Vec::new());
            batch.insert(key, value);
        }
    }

    /// Removes rows created before the retention; returns how many.
    fn prune(&self, now: i64) -> usize {
        let cutoff = now - i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX);
        let mut pruned = 0;
        for (key, _) in self.tree.scan_prefix([b't']).filter_map(Result::ok) {
            let Some((config, created, event)) = parse_time_key(&key) else {
                continue;
            };
            if created >= cutoff {
                continue;
            }
            let mut batch = sled::Batch::default();
            batch.remove(key);
            batch.remove(row_key(&config, &event));
            if self.tree.apply_batch(batch).is_ok() {
                pruned += 1;
            }
        }
        pruned
    }

    pub(crate) fn row(&self, config_id: &str, event_id: &str) -> Option<Row> {
        let value = self.tree.get(row_key(config_id, event_id)).ok().flatten()?;
        serde_json::from_slice(&value).ok()
    }

    /// The rows of an endpoint, newest first, after the time key `after`.
    pub(crate) fn rows(
        &self,
        config_id: &str,
        after: Option<Vec<u8>>,
    ) -> impl Iterator<Item = Row> + '_ {
        let start = after.unwrap_or_else(|| prefix(b't', config_id));
        let scope = prefix(b't', config_id);
        self.tree
            .range(start.clone()..)
            .filter_map(Result::ok)
            .take_while(move |(key, _)| key.starts_with(&scope))
            .filter(move |(key, _)| key.as_ref() != start.as_slice())
            .filter_map(|(key, _)| {
                let (config, _, event) = parse_time_key(&key)?;
                self.row(&config, &event)
            })
    }

    /// Reads the record at `source` from Kafka as text (blocking; run off the async threads).
    fn fetch(&self, source: &SourceCoordinates) -> Option<String> {
        let message = self
            .fetcher
            .fetch(&source.topic, source.partition, source.offset)?;
        message
            .payload()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    async fn fetch_async(self: &Arc<Self>, source: Option<SourceCoordinates>) -> Option<String> {
        let source = source?;
        let log = Arc::clone(self);
        tokio::task::spawn_blocking(move || log.fetch(&source))
            .await
            .ok()
            .flatten()
    }
}

/// What endpoints are sent for an event: an outbound message's `payload`, else the event (the
/// dispatcher's rule).
fn untransformed_body(event: &str) -> Option<String> {
    let value: Value = serde_json::from_str(event).ok()?;
    match value.get("_delivery") {
        Some(_) => serde_json::to_string(value.get("payload").unwrap_or(&Value::Null)).ok(),
        None => Some(event.to_owned()),
    }
}

/// A row in epilot's `WebhookEvent` shape; `event` is the record read from Kafka, if it was.
/// The endpoint's answer body as epilot shows it: the JSON object, else `{text}`.
fn response_body(row: &Row) -> Value {
    serde_json::from_str::<Value>(&row.response_body)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| {
            if row.response_body.is_empty() {
                json!({})
            } else {
                json!({"text": row.response_body})
            }
        })
}

/// The outcome of a delivery's first attempt in epilot's `TriggerWebhookResp` shape, once there
/// is one: `succeeded`, or `failed` (also when retries follow).
pub(crate) fn first_outcome(log: &AttemptLog, config_id: &str, event_id: &str) -> Option<Value> {
    let row = log.row(config_id, event_id)?;
    let attempted = row.attempts.iter().any(|a| a.outcome != "skipped");
    if row.status == "skipped" || !attempted {
        return (row.status == "skipped").then(|| {
            json!({"event_id": event_id, "status": "failed", "code": row.code,
                   "message": row.message, "start_date": format_millis(row.created_at),
                   "end_date": row.updated_at})
        });
    }
    let mut out = json!({
        "event_id": event_id,
        "status": if row.status == "succeeded" { "succeeded" } else { "failed" },
        "message": row.message,
        "body": response_body(&row),
        "code": row.code,
        "start_date": format_millis(row.created_at),
        "end_date": row.updated_at,
    });
    if let Some(code) = row.status_code {
        out["status_code"] = json!(code.to_string());
    }
    Some(out)
}

fn webhook_event(row: &Row, event: Option<&str>, with_attempts: bool) -> Value {
    let original = event.and_then(untransformed_body);
    let payload = row.sent_body.clone().or_else(|| original.clone());
    let body = response_body(row);
    let mut response = Map::new();
    if let Some(code) = row.status_code {
        response.insert("status_code".into(), json!(code));
    }
    response.insert("message".into(), json!(row.message));
    response.insert("body".into(), body);
    response.insert("code".into(), json!(row.code));
    let mut out = json!({
        "event_id": row.event_id,
        "org_id": row.org_id,
        "webhook_config_id": row.webhook_config_id,
        "webhook_id": row.webhook_id,
        "url": row.url,
        "created_at": format_millis(row.created_at),
        "updated_at": row.updated_at,
        "event_name": row.event_name,
        "http_response": response,
        "status": row.status,
        "http_method": row.http_method,
        "payload": payload.unwrap_or_default(),
        "retry_attempt": row.attempts.iter().filter(|a| a.outcome != "skipped").count().saturating_sub(1),
        "can_reapply_transform": event.is_some(),
    });
    if event.is_none() {
        out["payload_unavailable"] = json!(row.sent_body.is_none());
    }
    if with_attempts {
        out["attempts"] = json!(row.attempts);
        if row.sent_body.is_some()
            && let Some(original) = original
        {
            out["original_payload"] = json!(original);
        }
    }
    out
}

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

/// Writes a replay of `row` to the first retry tier. Why that tier: its records are due soonest
/// (a replay due now waits at most one first-tier delay behind tasks already there), and the
/// tier consumer already does everything a delivery needs, durably and with the endpoint's
/// isolation, so no second delivery path exists.
pub(crate) async fn enqueue_replay(
    state: &ApiState,
    log: &Arc<AttemptLog>,
    row: &Row,
    reapply_transform: bool,
) -> Result<(), ApiError> {
    let event = log.fetch_async(row.source.clone()).await.ok_or_else(|| {
        ApiError::unprocessable(
            "EVENT_UNAVAILABLE",
            format!("event {} is no longer in Kafka (retention)", row.event_id),
        )
    })?;
    let source = row.source.clone().ok_or_else(|| {
        ApiError::unprocessable("EVENT_UNAVAILABLE", "the delivery names no source record")
    })?;
    // Without `reapply_transform` the bytes sent last time go again: the kept transform output,
    // or the untransformed body when no transform ran. A large transformed body was not kept,
    // so the transform runs again (the only case where the bytes may differ).
    let body = match (reapply_transform, &row.sent_body, row.transformed) {
        (true, _, _) => None,
        (false, Some(sent), _) => Some(sent.clone()),
        (false, None, false) => untransformed_body(&event),
        (false, None, true) => None,
    };
    let now = now_millis();
    let task = DeliveryTask {
        webhook_config_id: row.webhook_config_id.clone(),
        org_id: row.org_id.clone(),
        webhook_id: row.webhook_id.clone(),
        event_id: row.event_id.clone(),
        attempts: row.attempt_count(),
        deferrals: 0,
        tier: 1,
        due_at_ms: now,
        due_at: format_millis(now),
        first_attempt_at: None,
        last_code: None,
        last_status: None,
        source,
        key: None,
        event,
        replay: Some(Replay {
            replay_id: uuid::Uuid::new_v4().to_string(),
            body,
        }),
        // A member of a batch is replayed on its own, with its own `webhook-id`.
        batch: Vec::new(),
    };
    let bytes = serde_json::to_vec(&task)
        .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?;
    erp_runtime::kafka::send(
        &state.producer,
        &state.topics.retry(1),
        &task.webhook_config_id,
        &bytes,
    )
    .await
    .map_err(|e| ApiError::unavailable("KAFKA_UNAVAILABLE", e.to_string()))?;
    Ok(())
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
    enqueue_replay(&state, &log, &row, reapply).await?;
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
        match enqueue_replay(&state, &log, &row, reapply).await {
            Ok(()) => replayed.push(id),
            Err(error) if error.code == "KAFKA_UNAVAILABLE" => return Err(error),
            Err(_) => {}
        }
    }
    Ok(HttpResponse::Accepted().json(json!({"replayed_event_ids": replayed})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_round_trip_and_sort_newest_first() {
        let older = time_key("w1", 1_000, "a");
        let newer = time_key("w1", 2_000, "b");
        assert!(newer < older);
        assert_eq!(
            parse_time_key(&older),
            Some(("w1".to_owned(), 1_000, "a".to_owned()))
        );
    }

    #[test]
    fn the_untransformed_body_of_an_outbound_message_is_its_payload() {
        let event = r#"{"_event_id":"1","_delivery":{"type":"webhook"},"payload":{"a":1}}"#;
        assert_eq!(untransformed_body(event).as_deref(), Some(r#"{"a":1}"#));
        let mapped = r#"{"_event_id":"1"}"#;
        assert_eq!(untransformed_body(mapped).as_deref(), Some(mapped));
    }
}
