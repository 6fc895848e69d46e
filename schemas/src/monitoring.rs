//! Monitoring spans on `erp.monitoring`, in epilot's `MonitoringEventV2` shape: one row per
//! processing step, all rows of one inbound event sharing its `event_id`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The level of a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Success,
    Error,
    Skipped,
    Warning,
    Info,
}

/// A monitoring span (epilot `MonitoringEventV2`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitoringSpan {
    pub id: String,
    pub org_id: String,
    pub integration_id: String,
    pub event_id: String,
    /// `""` when unavailable.
    pub correlation_id: String,
    /// `""` for system-level ("General") spans.
    pub use_case_id: String,
    /// `inbound`, `outbound`, …, or `""`.
    pub use_case_type: String,
    pub level: Level,
    /// `""` for success.
    pub code: String,
    pub message: String,
    pub detail: Value,
    pub created_at: String,
}

/// The largest value of one span-batch record, in bytes. Below the broker's default
/// `message.max.bytes` (1 MB) with room for the record's framing; a larger set of spans is
/// split into several records.
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

/// The spans one record of `erp.monitoring` carries: a JSON object is one span, a JSON array
/// is the spans one stage wrote for one poll batch (see `docs/monitoring.md`, "Record format").
pub fn spans_of(payload: &[u8]) -> Result<Vec<MonitoringSpan>, serde_json::Error> {
    match serde_json::from_slice::<Value>(payload)? {
        Value::Array(items) => items
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>(),
        value => Ok(vec![serde_json::from_value(value)?]),
    }
}

/// One record of `erp.monitoring` to write: its key (the integration id) and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord {
    pub key: String,
    pub value: Vec<u8>,
}

/// The records that carry `spans`: one per integration (the key, so one integration's spans
/// stay in one partition and in order), a single span as an object and several as an array,
/// split where an array would pass [`MAX_BATCH_BYTES`]. Spans keep their relative order within
/// each integration; integrations come in the order of their first span.
pub fn batch_records(spans: &[MonitoringSpan]) -> Result<Vec<SpanRecord>, crate::SchemaError> {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: std::collections::HashMap<&str, Vec<Vec<u8>>> = Default::default();
    for span in spans {
        let encoded = crate::error::encode("monitoring span", span)?;
        let group = groups.entry(span.integration_id.as_str()).or_default();
        if group.is_empty() {
            order.push(span.integration_id.as_str());
        }
        group.push(encoded);
    }
    let mut records = Vec::new();
    for key in order {
        let encoded = groups.remove(key).unwrap_or_default();
        let mut chunk: Vec<Vec<u8>> = Vec::new();
        let mut size = 2;
        for span in encoded {
            if !chunk.is_empty() && size + span.len() + 1 > MAX_BATCH_BYTES {
                records.push(record_of(key, std::mem::take(&mut chunk)));
                size = 2;
            }
            size += span.len() + 1;
            chunk.push(span);
        }
        if !chunk.is_empty() {
            records.push(record_of(key, chunk));
        }
    }
    Ok(records)
}

fn record_of(key: &str, mut spans: Vec<Vec<u8>>) -> SpanRecord {
    let value = if spans.len() == 1 {
        spans.pop().unwrap_or_default()
    } else {
        crate::wire::json_array(spans.iter().map(Vec::as_slice))
    };
    SpanRecord {
        key: key.to_owned(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(integration: &str, n: usize, detail: Value) -> MonitoringSpan {
        MonitoringSpan {
            id: format!("span-{n}"),
            org_id: "org".into(),
            integration_id: integration.into(),
            event_id: format!("event-{n}"),
            correlation_id: String::new(),
            use_case_id: "uc".into(),
            use_case_type: "inbound".into(),
            level: Level::Success,
            code: String::new(),
            message: "mapped".into(),
            detail,
            created_at: "2026-12-04T10:00:00.000Z".into(),
        }
    }

    #[test]
    fn spans_are_grouped_per_integration_in_order_and_read_back() {
        let spans: Vec<_> = (0..5)
            .map(|n| span(if n % 2 == 0 { "a" } else { "b" }, n, Value::Null))
            .collect();
        let records = batch_records(&spans).expect("encodes");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].key, "a");
        let read = spans_of(&records[0].value).expect("reads");
        let ids: Vec<_> = read.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["span-0", "span-2", "span-4"]);
        assert_eq!(spans_of(&records[1].value).expect("reads").len(), 2);
    }

    #[test]
    fn a_single_span_is_an_object_as_before() {
        let records = batch_records(&[span("a", 1, Value::Null)]).expect("encodes");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].value.first(), Some(&b'{'));
        assert_eq!(spans_of(&records[0].value).expect("reads")[0].id, "span-1");
    }

    #[test]
    fn a_batch_too_large_for_one_record_is_split_without_losing_a_span() {
        let big = Value::String("x".repeat(100 * 1024));
        let spans: Vec<_> = (0..12).map(|n| span("a", n, big.clone())).collect();
        let records = batch_records(&spans).expect("encodes");
        assert!(records.len() >= 3, "{} records", records.len());
        let mut total = 0;
        for record in &records {
            assert!(record.value.len() <= MAX_BATCH_BYTES);
            total += spans_of(&record.value).expect("reads").len();
        }
        assert_eq!(total, 12);
        assert!(batch_records(&[]).expect("encodes").is_empty());
    }
}
