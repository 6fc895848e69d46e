//! Partner log shipping (spec §2.10): `POST /v2/integrations/{id}/monitoring/external-events`.
//! A middleware sends its own spans; each is checked on its own, given a server-assigned
//! `EXTERNAL_*` code (a client can never pose as one of our stages), its `use_case_slug`
//! resolved against the integration's use cases, and written to `erp.monitoring` like any of
//! our spans — so it shows in traces, listings, stats and alerts.

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{object, read_json};
use erp_schemas::monitoring::{Level, MonitoringSpan};
use erp_schemas::timestamp::{format_millis, millis_of, parse_rfc3339};

use crate::state::ApiState;

/// Most spans per request (epilot's limit).
pub const MAX_SPANS: usize = 100;
/// Longest message kept, in characters.
const MAX_MESSAGE: usize = 4000;
/// Largest `detail` kept, serialised, in bytes.
const MAX_DETAIL_BYTES: usize = 16 * 1024;

/// The level and code of an external span's `level`.
fn level_of(text: &str) -> Option<(Level, &'static str)> {
    Some(match text {
        "success" => (Level::Success, "EXTERNAL_SUCCESS"),
        "error" => (Level::Error, "EXTERNAL_ERROR"),
        "warning" => (Level::Warning, "EXTERNAL_WARNING"),
        "info" => (Level::Info, "EXTERNAL_INFO"),
        _ => return None,
    })
}

/// One span of the request checked: the span to write, or why it is refused.
fn check(
    item: &Value,
    org_id: &str,
    integration_id: &str,
    resolve: &impl Fn(&str) -> (String, String),
) -> Result<MonitoringSpan, String> {
    let Some(fields) = item.as_object() else {
        return Err("a span must be an object".into());
    };
    let text = |key: &str| -> Result<&str, String> {
        match fields.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
            Some(Value::String(_)) | None | Some(Value::Null) => Err(format!("missing {key}")),
            Some(_) => Err(format!("{key} must be a string")),
        }
    };
    let correlation_id = text("correlation_id")?;
    if correlation_id.chars().count() > 256 {
        return Err("correlation_id is longer than 256 characters".into());
    }
    let (level, code) = level_of(text("level")?)
        .ok_or_else(|| "level must be one of success, error, warning, info".to_owned())?;
    let slug = text("use_case_slug")?;
    if slug.chars().count() > 256 {
        return Err("use_case_slug is longer than 256 characters".into());
    }
    let occurred_at = parse_rfc3339(text("occurred_at")?)
        .ok_or_else(|| "occurred_at must be an RFC 3339 date-time".to_owned())?;
    let message: String = text("message")?.chars().take(MAX_MESSAGE).collect();
    let detail = match fields.get("detail") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Object(detail)) => {
            let size = serde_json::to_vec(detail).map_or(usize::MAX, |b| b.len());
            if size > MAX_DETAIL_BYTES {
                return Err(format!("detail is larger than {MAX_DETAIL_BYTES} bytes"));
            }
            Value::Object(detail.clone())
        }
        Some(_) => return Err("detail must be an object".into()),
    };
    let (use_case_id, use_case_type) = resolve(slug);
    Ok(MonitoringSpan {
        // The external system owns identity: every span is new to us.
        id: uuid::Uuid::new_v4().to_string(),
        org_id: org_id.to_owned(),
        integration_id: integration_id.to_owned(),
        event_id: String::new(),
        correlation_id: correlation_id.to_owned(),
        use_case_id,
        use_case_type,
        level,
        code: code.to_owned(),
        message,
        detail,
        created_at: format_millis(millis_of(occurred_at)),
    })
}

/// `POST /v2/integrations/{id}/monitoring/external-events` → 202
/// `{accepted, rejected, results}`.
pub async fn ingest(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    // Another organisation's integration is not found, whatever the body.
    state.caller_integration(&caller, &integration_id)?;
    let body = read_json(payload, state.body_limit).await?;
    let fields: &Map<String, Value> = object(&body, "request body")?;
    let events = match fields.get("events") {
        Some(Value::Array(events)) if !events.is_empty() && events.len() <= MAX_SPANS => events,
        Some(Value::Array(_)) => {
            return Err(ApiError::bad_request(format!(
                "events must hold 1 to {MAX_SPANS} spans"
            )));
        }
        _ => {
            return Err(ApiError::bad_request(
                "events is required and must be an array",
            ));
        }
    };
    let config = state.view().snapshot();
    let use_cases = config.use_cases(&caller.org_id, &integration_id);
    // A known slug groups the span under its use case; an unknown one under the raw slug
    // (listed by `use_case_id: "__unknown__"`).
    let resolve = |slug: &str| -> (String, String) {
        use_cases
            .iter()
            .find(|u| u.use_case.slug.as_deref() == Some(slug))
            .map(|u| (u.use_case.id.clone(), u.use_case.kind.clone()))
            .unwrap_or_else(|| (slug.to_owned(), String::new()))
    };
    let mut results = Vec::with_capacity(events.len());
    let mut spans = Vec::new();
    for (index, item) in events.iter().enumerate() {
        match check(item, &caller.org_id, &integration_id, &resolve) {
            Ok(span) => {
                spans.push(span);
                results.push(json!({"index": index, "status": "accepted"}));
            }
            Err(reason) => {
                results.push(json!({"index": index, "status": "rejected", "reason": reason}))
            }
        }
    }
    let topic = state.topics.monitoring();
    // Handed to the producer together, and all acknowledged before the answer: a 202 means
    // they are on the bus, never "maybe".
    let unavailable =
        |e: String| ApiError::unavailable("QUEUE_UNAVAILABLE", format!("spans not written: {e}"));
    let mut deliveries = Vec::with_capacity(spans.len());
    for span in &spans {
        let bytes = serde_json::to_vec(span)
            .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?;
        let delivery =
            erp_runtime::kafka::enqueue(&state.producer, &topic, &integration_id, &bytes)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
        deliveries.push(delivery);
    }
    tokio::time::timeout(
        erp_runtime::kafka::SEND_TIMEOUT,
        erp_runtime::kafka::await_deliveries(deliveries),
    )
    .await
    .map_err(|_| unavailable("no acknowledgement from Kafka in time".to_owned()))?
    .map_err(|e| unavailable(e.to_string()))?;
    let accepted = spans.len();
    Ok(HttpResponse::Accepted().json(json!({
        "accepted": accepted,
        "rejected": events.len() - accepted,
        "results": results,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(slug: &str) -> (String, String) {
        if slug == "meter-readings" {
            ("uc-1".into(), "inbound".into())
        } else {
            (slug.into(), String::new())
        }
    }

    fn span() -> Value {
        json!({"correlation_id": "bp-1", "level": "error", "use_case_slug": "meter-readings",
               "occurred_at": "2026-07-20T09:00:00.120Z", "message": "SAP said no",
               "detail": {"step": "ingest"}})
    }

    #[test]
    fn a_valid_span_gets_a_server_code_and_its_use_case() {
        let out = check(&span(), "org", "int", &resolve).expect("accepted");
        assert_eq!(out.code, "EXTERNAL_ERROR");
        assert_eq!(
            (out.use_case_id.as_str(), out.use_case_type.as_str()),
            ("uc-1", "inbound")
        );
        assert_eq!(out.created_at, "2026-07-20T09:00:00.120Z");
        assert_eq!(out.event_id, "");
    }

    #[test]
    fn each_missing_or_wrong_field_is_named() {
        for (field, value, reason) in [
            ("correlation_id", Value::Null, "missing correlation_id"),
            (
                "level",
                json!("fatal"),
                "level must be one of success, error, warning, info",
            ),
            ("use_case_slug", json!(""), "missing use_case_slug"),
            (
                "occurred_at",
                json!("yesterday"),
                "occurred_at must be an RFC 3339 date-time",
            ),
            ("message", json!(7), "message must be a string"),
            ("detail", json!([1]), "detail must be an object"),
        ] {
            let mut item = span();
            item[field] = value;
            assert_eq!(
                check(&item, "o", "i", &resolve).err().as_deref(),
                Some(reason)
            );
        }
    }

    #[test]
    fn a_client_cannot_choose_the_code_or_the_id() {
        let mut item = span();
        item["code"] = json!("MAPPING_ERROR");
        item["id"] = json!("chosen");
        let out = check(&item, "o", "i", &resolve).expect("accepted");
        assert_eq!(out.code, "EXTERNAL_ERROR");
        assert_ne!(out.id, "chosen");
        let unknown = {
            let mut item = span();
            item["use_case_slug"] = json!("business_partner");
            check(&item, "o", "i", &resolve).expect("accepted")
        };
        assert_eq!(unknown.use_case_id, "business_partner");
    }
}
