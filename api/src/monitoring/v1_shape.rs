//! How monitoring v1 (spec §2.9, "split inbound/outbound") sees the span store: which spans are
//! inbound events, outbound deliveries and access-log rows, and how each span reads as epilot's
//! `InboundMonitoringEvent`, `OutboundMonitoringEvent` and `AccessLogEntry`.
//!
//! v1 has no table of its own: it is a view of the same spans (and, for counts, the same
//! rollups) as v2, so both generations always agree.

use std::collections::BTreeMap;

use libsql::Value as SqlValue;
use serde_json::{Value, json};

use erp_runtime::config::UseCaseEntry;

/// The code of an access-log row (an `info` span, so it is never counted as an outcome).
pub const ACCESS_CODE: &str = "API_ACCESS";

/// Codes of the processor's inbound spans that carry no use case ("General"): without them a
/// duplicate or an event for an unknown use case would be missing from the inbound view.
pub const INBOUND_GENERAL_CODES: &[&str] = &[
    "DUPLICATE_EVENT",
    "USE_CASE_NOT_FOUND",
    "USE_CASE_DISABLED",
    "INTEGRATION_NOT_FOUND",
    "POISON_RECORD",
];

/// The SQL condition selecting inbound spans: the processor's, not the dispatcher's deliveries
/// of an inbound use case's events (those are outbound deliveries).
pub fn inbound_clause() -> (String, Vec<SqlValue>) {
    let marks = vec!["?"; INBOUND_GENERAL_CODES.len()].join(", ");
    (
        format!(
            "(use_case_type = 'inbound' OR (use_case_type = '' AND code IN ({marks}))) \
             AND COALESCE({}, '') != 'dispatcher'",
            detail("stage")
        ),
        INBOUND_GENERAL_CODES
            .iter()
            .map(|c| SqlValue::Text((*c).to_owned()))
            .collect(),
    )
}

/// Whether a rollup cell of (type, code) may count as inbound: the rule of [`inbound_clause`]
/// but for the stage, which rollups do not keep (deliveries are taken out by their counts).
pub fn is_inbound(use_case_type: &str, code: &str) -> bool {
    use_case_type == "inbound"
        || (use_case_type.is_empty() && INBOUND_GENERAL_CODES.contains(&code))
}

/// The SQL expression of a span's detail field `key` (a fixed name, never input).
pub fn detail(key: &str) -> String {
    format!("json_extract(span, '$.detail.{key}')")
}

/// The condition selecting outbound deliveries: the dispatcher's attempt outcomes (a filtered
/// event is no delivery; the processor's outbound span is the mapping, not a delivery).
pub fn delivery_clause() -> (String, Vec<SqlValue>) {
    (
        format!(
            "{} = 'dispatcher' AND level IN ('success', 'error', 'warning')",
            detail("stage")
        ),
        Vec::new(),
    )
}

/// epilot's v1 error categories, and the codes each stands for; an error of any other code is
/// `system`.
const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "validation",
        &[
            "MAPPING_EXPRESSION_FAILED",
            "MISSING_IDENTIFIER",
            "METER_READING_INVALID",
            "INVALID_PAYLOAD",
            "PAYLOAD_TOO_LARGE",
            "LIMIT_EXCEEDED",
            "POISON_RECORD",
        ],
    ),
    (
        "configuration",
        &[
            "USE_CASE_INVALID_CONFIG",
            "USE_CASE_NOT_FOUND",
            "USE_CASE_DISABLED",
            "INTEGRATION_NOT_FOUND",
            "DELIVERY_TYPE_NOT_SUPPORTED",
            "DESTINATION_FORBIDDEN",
        ],
    ),
];

/// The names of the categories, as the filter accepts them.
pub const CATEGORY_NAMES: &[&str] = &[
    "validation",
    "configuration",
    "downstream_api",
    "timeout",
    "system",
];

/// The error category of an error span's `code`.
pub fn category(code: &str) -> &'static str {
    if let Some((name, _)) = CATEGORIES.iter().find(|(_, codes)| codes.contains(&code)) {
        return name;
    }
    if code.contains("TIMEOUT") {
        "timeout"
    } else if code.starts_with("HTTP_") || code.starts_with("OAuth") {
        "downstream_api"
    } else {
        "system"
    }
}

/// The SQL condition "an error of `name`'s category", the same rule as [`category`].
pub fn category_clause(name: &str) -> (String, Vec<SqlValue>) {
    let listed: Vec<&str> = CATEGORIES
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .collect();
    let text = |codes: &[&str]| {
        codes
            .iter()
            .map(|c| SqlValue::Text((*c).to_owned()))
            .collect()
    };
    let marks = |n: usize| vec!["?"; n].join(", ");
    match CATEGORIES.iter().find(|(n, _)| *n == name) {
        Some((_, codes)) => (
            format!("level = 'error' AND code IN ({})", marks(codes.len())),
            text(codes),
        ),
        None => {
            let not_listed = format!("code NOT IN ({})", marks(listed.len()));
            let clause = match name {
                "timeout" => format!("{not_listed} AND code LIKE '%TIMEOUT%'"),
                "downstream_api" => format!(
                    "{not_listed} AND code NOT LIKE '%TIMEOUT%' \
                     AND (code LIKE 'HTTP\\_%' ESCAPE '\\' OR code LIKE 'OAuth%')"
                ),
                _ => format!(
                    "{not_listed} AND code NOT LIKE '%TIMEOUT%' \
                     AND NOT (code LIKE 'HTTP\\_%' ESCAPE '\\' OR code LIKE 'OAuth%')"
                ),
            };
            (format!("level = 'error' AND {clause}"), text(&listed))
        }
    }
}

/// What v1 says of an integration's use cases: slug (`object_type`/`event_name`) and sync type.
#[derive(Debug, Default, Clone)]
pub struct UseCaseFacts {
    by_id: BTreeMap<String, (String, &'static str)>,
}

impl UseCaseFacts {
    /// From the integration's use cases.
    pub fn of(use_cases: &[&UseCaseEntry]) -> Self {
        let by_id = use_cases
            .iter()
            .map(|entry| {
                let uc = &entry.use_case;
                let config = uc.configuration.as_ref();
                let has = |key: &str| {
                    config
                        .and_then(|c| c.get(key))
                        .and_then(Value::as_array)
                        .is_some_and(|a| !a.is_empty())
                };
                let sync = if has("meter_readings") && !has("entities") {
                    "meter_reading"
                } else {
                    "entity"
                };
                (uc.id.clone(), (uc.slug.clone().unwrap_or_default(), sync))
            })
            .collect();
        Self { by_id }
    }

    /// The use case's slug (`""` when unknown).
    pub fn slug(&self, use_case_id: &str) -> &str {
        self.by_id.get(use_case_id).map_or("", |(s, _)| s.as_str())
    }

    /// The use case's sync type (`entity` when unknown).
    pub fn sync_type(&self, use_case_id: &str) -> &'static str {
        self.by_id.get(use_case_id).map_or("entity", |(_, t)| t)
    }

    /// Ids of the use cases `keep` selects.
    pub fn ids(&self, keep: impl Fn(&str, &str) -> bool) -> Vec<String> {
        self.by_id
            .iter()
            .filter(|(_, (slug, sync))| keep(slug, sync))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn text_or_null(value: &Value) -> Value {
    match value.as_str() {
        Some("") | None => Value::Null,
        Some(text) => json!(text),
    }
}

/// An inbound span as epilot's `InboundMonitoringEvent`. We record no receive time or duration
/// per span: `received_at` is the span's time, like `completed_at`.
pub fn inbound_event(span: &Value, facts: &UseCaseFacts) -> Value {
    let use_case_id = span["use_case_id"].as_str().unwrap_or_default();
    let error = span["level"] == "error";
    let code = span["code"].as_str().unwrap_or_default();
    let object_type = match facts.slug(use_case_id) {
        "" => span["detail"]["use_case_slug"]
            .as_str()
            .or(span["detail"]["event_name"].as_str())
            .unwrap_or_default(),
        slug => slug,
    };
    json!({
        "org_id": span["org_id"],
        "event_id": span["event_id"],
        "correlation_id": text_or_null(&span["correlation_id"]),
        "integration_id": text_or_null(&span["integration_id"]),
        "use_case_id": text_or_null(&span["use_case_id"]),
        "object_type": object_type,
        "sync_type": facts.sync_type(use_case_id),
        "status": span["level"],
        "error_code": if error { json!(code) } else { Value::Null },
        "error_message": if error { span["message"].clone() } else { Value::Null },
        "error_category": if error { json!(category(code)) } else { Value::Null },
        "processing_duration_ms": null,
        "received_at": span["created_at"],
        "completed_at": span["created_at"],
    })
}

/// A delivery's v1 status from its span level.
pub fn delivery_status(level: &str) -> &'static str {
    match level {
        "success" => "succeeded",
        "error" => "failed",
        _ => "pending",
    }
}

/// The span level of a v1 delivery status.
pub fn delivery_level(status: &str) -> &'static str {
    match status {
        "succeeded" => "success",
        "failed" => "error",
        _ => "warning",
    }
}

/// A dispatcher span as epilot's `OutboundMonitoringEvent`.
pub fn outbound_event(span: &Value) -> Value {
    let d = &span["detail"];
    json!({
        "org_id": span["org_id"],
        "event_id": d["core_event_id"],
        "event_name": d["event_name"].as_str().unwrap_or_default(),
        "status": delivery_status(span["level"].as_str().unwrap_or_default()),
        "url": d["url"].as_str().unwrap_or_default(),
        "http_method": d["http_method"].as_str().unwrap_or("POST"),
        "http_response": {
            "status_code": d["status_code"],
            "message": d["response_body"],
        },
        "webhook_config_id": d["webhook_config_id"].as_str().unwrap_or_default(),
        "metadata": {
            "webhook_id": d["webhook_id"],
            "correlation_id": span["correlation_id"],
            "use_case_id": span["use_case_id"],
            "attempt": d["attempt"],
            "code": span["code"],
            "message": span["message"],
            "span_id": span["id"],
        },
        "created_at": span["created_at"],
        "updated_at": span["created_at"],
    })
}

/// An access-log span as epilot's `AccessLogEntry`.
pub fn access_entry(span: &Value) -> Value {
    let d = &span["detail"];
    json!({
        "timestamp": span["created_at"],
        "environment": d["environment"],
        "service": d["service"],
        "request_id": span["id"],
        "method": d["method"],
        "path": d["path"],
        "status": d["status"],
        "response_latency_ms": d["response_latency_ms"],
        "response_length": d["response_length"],
        "token_id": d["token_id"],
        "org_id": span["org_id"],
        "origin": d["origin"],
        "source_ip": d["source_ip"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_fall_in_one_category() {
        assert_eq!(category("MAPPING_EXPRESSION_FAILED"), "validation");
        assert_eq!(category("USE_CASE_NOT_FOUND"), "configuration");
        assert_eq!(category("HTTP_503"), "downstream_api");
        assert_eq!(category("ACK_TIMEOUT"), "timeout");
        assert_eq!(category("MAPPING_PANICKED"), "system");
    }
}
