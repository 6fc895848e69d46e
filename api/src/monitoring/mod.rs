//! Monitoring (spec §2.9): every span of `erp.monitoring` in a queryable store, and epilot's
//! monitoring v2 API over it.
//!
//! - [`store`]: the SQLite store — spans, five-minute rollups and the indexer's positions, one
//!   transaction per batch, so a span is indexed exactly once across crashes.
//! - [`indexer`]: follows `erp.monitoring` from the store's positions.
//! - [`counts`], [`listing`], [`time_series`]: the queries.
//! - [`external`]: partner log shipping, `POST …/monitoring/external-events`.
//! - [`routes`]: `POST …/monitoring/events|stats|time-series`, `GET …/events/{id}/associated`,
//!   `GET …/traces/{correlationId}`.
//! - [`v1`], [`v1_counts`], [`v1_shape`]: epilot's monitoring v1 (`inbound-events`,
//!   `outbound-events`, `stats`, `timeseries`, `access-logs`) as a view of the same spans.
//! - [`access_log`]: the API's own access log, written as `info` spans through the indexer.

pub mod access_log;
pub mod counts;
pub mod external;
pub mod indexer;
pub mod listing;
pub mod routes;
pub mod store;
pub mod time_series;
pub mod v1;
pub mod v1_counts;
pub mod v1_shape;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::state::ApiState;

/// The use-case types epilot's monitoring filters accept.
pub const USE_CASE_TYPES: &[&str] = &[
    "inbound",
    "outbound",
    "file_proxy",
    "managed_call",
    "secure_proxy",
];

/// The inbound event "head" of `event_id` (from the inbound event log), when this process keeps
/// one and the event is `org_id`'s and still in the topic; `null` otherwise.
pub async fn inbound_head(state: &ApiState, org_id: &str, event_id: &str) -> Value {
    let Some(log) = state.event_log.as_ref() else {
        return Value::Null;
    };
    let Some((_, entry)) = log.entry_by_id(event_id) else {
        return Value::Null;
    };
    if entry.org_id != org_id {
        return Value::Null;
    }
    let log = Arc::clone(log);
    let coordinates = [(entry.partition, entry.offset)];
    let fetched = tokio::task::spawn_blocking(move || log.fetch(&coordinates))
        .await
        .ok()
        .and_then(|mut records| records.pop().flatten());
    match fetched {
        Some(record) => json!({
            "event_id": record.event_id,
            "integration_id": record.integration_id,
            "correlation_id": record.correlation_id,
            "received_at": erp_schemas::timestamp::format_millis(record.received_at),
            "format": record.format,
            "payload": record.payload,
        }),
        None => Value::Null,
    }
}

/// Writes one audit span (a replay's start or end, a group reset) to `erp.monitoring` and waits
/// for its acknowledgement. A span that cannot be written is logged, not fatal: the operation
/// it describes has happened either way.
pub async fn write_audit_span(
    producer: &rdkafka::producer::FutureProducer,
    topics: &erp_schemas::topics::Topics,
    key: &str,
    span: &erp_schemas::monitoring::MonitoringSpan,
) {
    match serde_json::to_vec(span) {
        Ok(bytes) => {
            if let Err(error) =
                erp_runtime::kafka::send(producer, &topics.monitoring(), key, &bytes).await
            {
                tracing::warn!(%error, code = %span.code, correlation = %span.correlation_id,
                               "audit span not written");
            }
        }
        Err(error) => tracing::warn!(%error, code = %span.code, "audit span not serialised"),
    }
}
