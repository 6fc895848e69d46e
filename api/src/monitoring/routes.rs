//! epilot's monitoring v2 routes (spec §2.9) over the monitoring store:
//! `POST …/monitoring/events`, `…/stats`, `…/time-series`, `GET …/events/{eventId}/associated`
//! and `GET …/traces/{correlationId}`.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{object, opt_date_ms, opt_string, read_optional_json};
use erp_schemas::timestamp::{format_millis, millis_of, now_millis, parse_rfc3339};

use super::counts::{Tally, Window};
use super::listing::SpanFilter;
use super::store::Store;
use super::{USE_CASE_TYPES, time_series};
use crate::state::ApiState;

/// Most spans a trace or an event's associated list returns.
pub const TRACE_CAP: usize = 500;

/// The caller's integration's use-case ids (404 for an integration not the caller's).
pub(super) fn owned(
    state: &ApiState,
    caller: &Caller,
    integration_id: &str,
) -> Result<Vec<String>, ApiError> {
    state.caller_integration(caller, integration_id)?;
    Ok(state
        .view()
        .snapshot()
        .use_cases(&caller.org_id, integration_id)
        .iter()
        .map(|u| u.use_case.id.clone())
        .collect())
}

pub(super) async fn body(
    state: &ApiState,
    payload: web::Payload,
) -> Result<Map<String, Value>, ApiError> {
    let value = read_optional_json(payload, state.body_limit)
        .await?
        .unwrap_or_else(|| json!({}));
    Ok(object(&value, "request body")?.clone())
}

pub(super) fn one_of(
    fields: &Map<String, Value>,
    key: &str,
    allowed: &[&str],
) -> Result<Option<String>, ApiError> {
    match opt_string(fields, "", key, 0, 64)? {
        None => Ok(None),
        Some(value) if allowed.contains(&value) => Ok(Some(value.to_owned())),
        Some(value) => Err(ApiError::bad_request(format!(
            "{key} must be one of {}, not {value:?}",
            allowed.join(", ")
        ))),
    }
}

/// An optional array field whose items are each one of `allowed` (empty when absent).
pub(super) fn enum_array(
    fields: &Map<String, Value>,
    key: &str,
    allowed: &[&str],
) -> Result<Vec<String>, ApiError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .filter(|g| allowed.contains(g))
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "{key} items must be one of {}",
                            allowed.join(", ")
                        ))
                    })
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be an array"))),
    }
}

/// The `limit` of a listing: 1 to 100, 50 when absent.
pub(super) fn limit(fields: &Map<String, Value>) -> Result<usize, ApiError> {
    match fields.get("limit") {
        None | Some(Value::Null) => Ok(50),
        Some(value) => value
            .as_u64()
            .filter(|n| (1..=100).contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| ApiError::bad_request("limit must be an integer from 1 to 100")),
    }
}

/// A listing's `cursor` `{<at_key>: date-time, <id_key>: string}` as (ms, id).
pub(super) fn cursor(
    fields: &Map<String, Value>,
    at_key: &str,
    id_key: &str,
) -> Result<Option<(i64, String)>, ApiError> {
    match fields.get("cursor") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(cursor)) => {
            let at = cursor
                .get(at_key)
                .and_then(Value::as_str)
                .and_then(parse_rfc3339)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("cursor.{at_key} must be a date-time"))
                })?;
            let id = cursor
                .get(id_key)
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_request(format!("cursor.{id_key} is required")))?;
            Ok(Some((millis_of(at), id.to_owned())))
        }
        Some(_) => Err(ApiError::bad_request("cursor must be an object")),
    }
}

/// `POST /v2/integrations/{id}/monitoring/events`
pub async fn events(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let (fields, store, known_use_cases) =
        owned_request(&state, &caller, &integration_id, payload).await?;
    let text = |key: &str| opt_string(&fields, "", key, 0, 1000).map(|v| v.map(str::to_owned));
    let limit = limit(&fields)?;
    let before = cursor(&fields, "created_at", "id")?;
    let filter = SpanFilter {
        use_case_id: text("use_case_id")?,
        known_use_cases,
        use_case_type: one_of(&fields, "use_case_type", USE_CASE_TYPES)?,
        level: one_of(
            &fields,
            "level",
            &["success", "error", "skipped", "warning"],
        )?,
        code: text("code")?,
        event_id: text("event_id")?,
        correlation_id: text("correlation_id")?,
        from: opt_date_ms(&fields, "from_date")?,
        to: opt_date_ms(&fields, "to_date")?,
        before,
        limit,
        ..SpanFilter::default()
    };
    let page = store.page(&caller.org_id, &integration_id, filter).await?;
    let next_cursor = match (page.has_more, page.spans.last()) {
        (true, Some((at, span))) => json!({"created_at": format_millis(*at), "id": span["id"]}),
        _ => Value::Null,
    };
    let data: Vec<Value> = page.spans.into_iter().map(|(_, span)| span).collect();
    Ok(HttpResponse::Ok().json(json!({
        "data": data,
        "next_cursor": next_cursor,
        "has_more": page.has_more,
    })))
}

/// The window of a stats or time-series request: `[from, to]`, both inclusive in the request,
/// as a half-open range in ms.
pub(super) fn window(
    caller: &Caller,
    integration_id: &str,
    from: Option<i64>,
    to: Option<i64>,
    use_case_types: Vec<String>,
) -> Result<Window, ApiError> {
    let to = to.unwrap_or_else(now_millis);
    let from = from.unwrap_or(0);
    if from > to {
        return Err(ApiError::bad_request("from_date must not be after to_date"));
    }
    Ok(Window {
        org_id: caller.org_id.clone(),
        integration_id: integration_id.to_owned(),
        from,
        to: to.saturating_add(1),
        use_case_types,
    })
}

/// `POST /v2/integrations/{id}/monitoring/stats`
pub async fn stats(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let (fields, store, _) = owned_request(&state, &caller, &integration_id, payload).await?;
    let mut types: Vec<String> = one_of(&fields, "use_case_type", USE_CASE_TYPES)?
        .into_iter()
        .collect();
    if !matches!(fields.get("use_case_types"), None | Some(Value::Null)) {
        types = enum_array(&fields, "use_case_types", USE_CASE_TYPES)?;
    }
    let group_by = one_of(
        &fields,
        "group_by",
        &["use_case_id", "use_case_type", "level", "code", "date"],
    )?;
    let source = one_of(&fields, "source", &["monitoring", "incoming"])?;
    let window = window(
        &caller,
        &integration_id,
        opt_date_ms(&fields, "from_date")?,
        opt_date_ms(&fields, "to_date")?,
        types,
    )?;
    if source.as_deref() == Some("incoming") {
        if group_by.as_deref().is_some_and(|g| g != "use_case_id") {
            return Err(ApiError::bad_request(
                "source incoming supports only group_by use_case_id",
            ));
        }
        let incoming = store.incoming(window).await?;
        let total: i64 = incoming.iter().map(|(_, n)| n).sum();
        let breakdown: Vec<Value> = if group_by.is_some() {
            incoming
                .iter()
                .map(|(id, n)| json!({"use_case_id": id, "total_events": n}))
                .collect()
        } else {
            Vec::new()
        };
        return Ok(HttpResponse::Ok().json(json!({
            "total_events": total, "success_count": 0, "error_count": 0,
            "warning_count": 0, "skipped_count": 0, "success_rate": 0.0,
            "last_error_at": null, "breakdown": breakdown,
        })));
    }
    let last_error = store.last_error(window.clone()).await?;
    let cells = store.cells(window).await?;
    let mut all = Tally::default();
    let mut groups: BTreeMap<String, Tally> = BTreeMap::new();
    for cell in &cells {
        all.add(cell);
        if let Some(key) = group_by.as_deref() {
            let value = match key {
                "use_case_id" => cell.use_case_id.clone(),
                "use_case_type" => cell.use_case_type.clone(),
                "level" => cell.level.clone(),
                "code" => cell.code.clone(),
                _ => format_millis(cell.bucket_ms)
                    .get(..10)
                    .unwrap_or("")
                    .to_owned(),
            };
            groups.entry(value).or_default().add(cell);
        }
    }
    let breakdown: Vec<Value> = match group_by.as_deref() {
        Some(key) => groups
            .into_iter()
            .map(|(value, counts)| {
                let mut row = counts.json();
                row.insert(key.to_owned(), json!(value));
                row.insert("total_events".into(), json!(counts.total()));
                Value::Object(row)
            })
            .collect(),
        None => Vec::new(),
    };
    let mut answer = all.json();
    answer.insert("total_events".into(), json!(all.total()));
    answer.insert("ack_timeout_count".into(), json!(all.ack_timeout));
    answer.insert("success_rate".into(), json!(success_rate(&all)));
    answer.insert(
        "last_error_at".into(),
        last_error.map_or(Value::Null, |at| json!(format_millis(at))),
    );
    answer.insert("breakdown".into(), Value::Array(breakdown));
    Ok(HttpResponse::Ok().json(Value::Object(answer)))
}

/// Successes among outcomes, as a percentage with two decimals; 100 with no outcomes at all
/// (nothing failed).
pub(super) fn success_rate(counts: &Tally) -> f64 {
    let total = counts.total();
    if total == 0 {
        return 100.0;
    }
    (counts.success as f64 * 10_000.0 / total as f64).round() / 100.0
}

/// The window of a time-series request (v1 and v2) cut into its buckets.
pub(super) struct Series {
    pub window: Window,
    pub starts: Vec<i64>,
    pub interval: i64,
    pub interval_name: String,
}

/// Reads `from_date` (required), `to_date` and `interval` (required) of a time-series request;
/// a window of more than [`time_series::MAX_BUCKETS`] buckets is a 400.
pub(super) fn series_request(
    caller: &Caller,
    integration_id: &str,
    fields: &Map<String, Value>,
    use_case_types: Vec<String>,
) -> Result<Series, ApiError> {
    let from = opt_date_ms(fields, "from_date")?
        .ok_or_else(|| ApiError::bad_request("from_date is required"))?;
    let interval_name = one_of(fields, "interval", &time_series::INTERVAL_NAMES)?
        .ok_or_else(|| ApiError::bad_request("interval is required"))?;
    let interval = time_series::interval_ms(&interval_name).unwrap_or(time_series::DAY_MS);
    let window = window(
        caller,
        integration_id,
        Some(from),
        opt_date_ms(fields, "to_date")?,
        use_case_types,
    )?;
    let starts = time_series::bucket_starts(window.from, window.to, interval).ok_or_else(|| {
        ApiError::bad_request(format!(
            "the window holds more than {} buckets of {interval_name}",
            time_series::MAX_BUCKETS
        ))
    })?;
    Ok(Series {
        window,
        starts,
        interval,
        interval_name,
    })
}

/// A monitoring POST's body and the store, once the integration is known to be the caller's;
/// with the ids of its use cases.
pub(super) async fn owned_request(
    state: &ApiState,
    caller: &Caller,
    integration_id: &str,
    payload: web::Payload,
) -> Result<(Map<String, Value>, Store, Vec<String>), ApiError> {
    let fields = body(state, payload).await?;
    let store = state.monitoring_store()?.clone();
    let use_cases = owned(state, caller, integration_id)?;
    Ok((fields, store, use_cases))
}

/// `POST /v2/integrations/{id}/monitoring/time-series`
pub async fn series(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let (fields, store, _) = owned_request(&state, &caller, &integration_id, payload).await?;
    let types: Vec<String> = one_of(&fields, "use_case_type", USE_CASE_TYPES)?
        .into_iter()
        .collect();
    let group_by = one_of(&fields, "group_by", &["use_case_type", "use_case"])?;
    let Series {
        window,
        starts,
        interval,
        interval_name,
    } = series_request(&caller, &integration_id, &fields, types)?;
    let (from_ms, to_ms) = (window.from, window.to - 1);
    let cells = store.cells(window).await?;
    let buckets = time_series::buckets(&starts, interval, &cells, group_by.as_deref());
    Ok(HttpResponse::Ok().json(json!({
        "interval": interval_name,
        "from_date": format_millis(from_ms),
        "to_date": format_millis(to_ms),
        "buckets": buckets,
    })))
}

/// `GET /v2/integrations/{id}/monitoring/events/{eventId}/associated`
pub async fn associated(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (integration_id, event_id) = path.into_inner();
    let store = state.monitoring_store()?;
    owned(&state, &caller, &integration_id)?;
    let (spans, _) = store
        .chronological(
            &caller.org_id,
            &integration_id,
            super::listing::Shared::EventId,
            &event_id,
            TRACE_CAP,
        )
        .await?;
    let inbound = super::inbound_head(&state, &caller.org_id, &event_id).await;
    Ok(HttpResponse::Ok().json(json!({
        "monitoring_events": spans,
        "inbound_event": inbound,
    })))
}

/// `GET /v2/integrations/{id}/monitoring/traces/{correlationId}`
pub async fn trace(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (integration_id, correlation_id) = path.into_inner();
    let store = state.monitoring_store()?;
    owned(&state, &caller, &integration_id)?;
    if correlation_id.is_empty() {
        return Err(ApiError::bad_request("correlationId must not be empty"));
    }
    let (spans, truncated) = store
        .chronological(
            &caller.org_id,
            &integration_id,
            super::listing::Shared::CorrelationId,
            &correlation_id,
            TRACE_CAP,
        )
        .await?;
    let levels: Vec<&str> = spans.iter().filter_map(|s| s["level"].as_str()).collect();
    let status = ["error", "warning", "success"]
        .into_iter()
        .find(|l| levels.contains(l))
        .unwrap_or("info");
    let first_event = spans
        .iter()
        .find_map(|s| s["event_id"].as_str().filter(|e| !e.is_empty()))
        .map(str::to_owned);
    let inbound = match first_event {
        Some(event_id) => super::inbound_head(&state, &caller.org_id, &event_id).await,
        None => Value::Null,
    };
    Ok(HttpResponse::Ok().json(json!({
        "correlation_id": correlation_id,
        "status": status,
        "started_at": spans.first().map_or(Value::Null, |s| s["created_at"].clone()),
        "ended_at": spans.last().map_or(Value::Null, |s| s["created_at"].clone()),
        "span_count": spans.len(),
        "truncated": truncated,
        "spans": spans,
        "inbound_event": inbound,
    })))
}
