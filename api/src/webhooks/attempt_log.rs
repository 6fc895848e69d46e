//! The webhook attempt log (epilot Webhooks API: `WebhookEvent`): the index behind its routes
//! ([`crate::webhooks::attempt_routes`]), replay and recovery.
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

use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

use erp_runtime::Runtime;
use erp_schemas::dead_letter::SourceCoordinates;
use erp_schemas::delivery_task::{DeliveryTask, Replay};
use erp_schemas::monitoring::{Level, MonitoringSpan};
use erp_schemas::timestamp::{format_millis, millis_of, now_millis, parse_rfc3339};
use erp_schemas::topics::Topics;

use crate::topic_index::{self, Fetcher};
use erp_http::ApiError;

/// Most deliveries per page (epilot's maximum).
pub(crate) const PAGE: usize = 25;
/// Most ids per batch replay (epilot's maximum).
pub(crate) const MAX_REPLAY: usize = 100;

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
pub(crate) struct AttemptRow {
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
    pub(crate) event_name: String,
    pub(crate) url: String,
    pub(crate) http_method: String,
    pub(crate) webhook_id: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: String,
    pub(crate) status: String,
    pub(crate) code: String,
    pub(crate) message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) status_code: Option<u64>,
    pub(crate) response_body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<SourceCoordinates>,
    /// The last transformed body sent (see the dispatcher's span).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sent_body: Option<String>,
    /// Whether the last body sent was the output of a transform.
    #[serde(default)]
    pub(crate) transformed: bool,
    pub(crate) attempts: Vec<AttemptRow>,
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

pub(crate) fn prefix(kind: u8, config_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(config_id.len() + 2);
    key.push(kind);
    key.extend_from_slice(config_id.as_bytes());
    key.push(0);
    key
}

pub(crate) fn row_key(config_id: &str, event_id: &str) -> Vec<u8> {
    let mut key = prefix(b'r', config_id);
    key.extend_from_slice(event_id.as_bytes());
    key
}

pub(crate) fn time_key(config_id: &str, created_at: i64, event_id: &str) -> Vec<u8> {
    let mut key = prefix(b't', config_id);
    // Newest first in key order.
    key.extend_from_slice(&(i64::MAX - created_at.max(0)).to_be_bytes());
    key.extend_from_slice(event_id.as_bytes());
    key
}

/// The creation time and event id of a time key.
pub(crate) fn parse_time_key(key: &[u8]) -> Option<(String, i64, String)> {
    let zero = key.iter().position(|b| *b == 0)?;
    let config = String::from_utf8(key.get(1..zero)?.to_vec()).ok()?;
    let time: [u8; 8] = key.get(zero + 1..zero + 9)?.try_into().ok()?;
    let event = String::from_utf8(key.get(zero + 9..)?.to_vec()).ok()?;
    Some((config, i64::MAX - i64::from_be_bytes(time), event))
}

/// The index of the dispatcher's attempt spans (recoveries are kept beside it, see
/// [`crate::webhooks::recovery`]), and a reader for events by coordinates.
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
                    // One span, or the spans of one dispatcher batch.
                    let spans = message
                        .payload()
                        .and_then(|p| erp_schemas::monitoring::spans_of(p).ok())
                        .unwrap_or_default();
                    for span in &spans {
                        log.fold(span, batch);
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
    pub(crate) fn fetch(&self, source: &SourceCoordinates) -> Option<String> {
        let message = self
            .fetcher
            .fetch(&source.topic, source.partition, source.offset)?;
        message
            .payload()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    pub(crate) async fn fetch_async(
        self: &Arc<Self>,
        source: Option<SourceCoordinates>,
    ) -> Option<String> {
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
pub(crate) fn untransformed_body(event: &str) -> Option<String> {
    let value: Value = serde_json::from_str(event).ok()?;
    match value.get("_delivery") {
        Some(_) => serde_json::to_string(value.get("payload").unwrap_or(&Value::Null)).ok(),
        None => Some(event.to_owned()),
    }
}

/// A row in epilot's `WebhookEvent` shape; `event` is the record read from Kafka, if it was.
/// The endpoint's answer body as epilot shows it: the JSON object, else `{text}`.
pub(crate) fn response_body(row: &Row) -> Value {
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

pub(crate) fn webhook_event(row: &Row, event: Option<&str>, with_attempts: bool) -> Value {
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

/// Writes a replay of `row` to the first retry tier. Why that tier: its records are due soonest
/// (a replay due now waits at most one first-tier delay behind tasks already there), and the
/// tier consumer already does everything a delivery needs, durably and with the endpoint's
/// isolation, so no second delivery path exists.
pub(crate) async fn enqueue_replay(
    producer: &FutureProducer,
    topics: &Topics,
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
    erp_runtime::kafka::send(producer, &topics.retry(1), &task.webhook_config_id, &bytes)
        .await
        .map_err(|e| ApiError::unavailable("KAFKA_UNAVAILABLE", e.to_string()))?;
    Ok(())
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
