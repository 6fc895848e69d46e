//! epilot's monitoring v1 listings (spec §2.9): `POST /v1/integrations/{id}/monitoring/
//! inbound-events`, `…/outbound-events` and `…/access-logs`, read from the span store through
//! the same paged query as the v2 listing (see [`super::v1_shape`] for which spans each shows).

use actix_web::{HttpResponse, web};
use libsql::Value as SqlValue;
use serde_json::{Map, Value, json};

use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{opt_date_ms, opt_string};
use erp_schemas::timestamp::format_millis;

use super::listing::{Page, SpanFilter};
use super::routes::{cursor, limit, one_of, owned_request};
use super::v1_shape::{self as shape, UseCaseFacts, detail};
use crate::state::ApiState;

fn text(fields: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    opt_string(fields, "", key, 0, 1000).map(|v| v.map(str::to_owned))
}

fn equal(clause: String, value: String) -> (String, Vec<SqlValue>) {
    (format!("{clause} = ?"), vec![SqlValue::Text(value)])
}

/// The answer of a v1 listing: `page`'s spans as rows (`row`), and the cursor
/// `{<at_key>, <id_key>}` of the last one, its id being `tie` of the span.
fn page_answer(
    page: Page,
    tie: impl Fn(&Value) -> &Value,
    row: impl Fn(&Value) -> Value,
    keys: (&str, &str),
) -> HttpResponse {
    let has_more = page.has_more;
    let next_cursor = match (has_more, page.spans.last()) {
        (true, Some((at, span))) => json!({keys.0: format_millis(*at), keys.1: tie(span)}),
        _ => Value::Null,
    };
    let rows: Vec<Value> = page.spans.iter().map(|(_, span)| row(span)).collect();
    HttpResponse::Ok().json(json!({"data": rows, "next_cursor": next_cursor, "has_more": has_more}))
}

/// The span filter common to the three listings: window, limit, cursor.
fn base(
    fields: &Map<String, Value>,
    cursor_keys: (&str, &str),
    tie: &'static str,
) -> Result<SpanFilter, ApiError> {
    Ok(SpanFilter {
        from: opt_date_ms(fields, "from_date")?,
        to: opt_date_ms(fields, "to_date")?,
        limit: limit(fields)?,
        before: cursor(fields, cursor_keys.0, cursor_keys.1)?,
        tie: Some(tie),
        ..SpanFilter::default()
    })
}

/// `POST /v1/integrations/{id}/monitoring/inbound-events`
pub async fn inbound_events(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let (fields, store, _) = owned_request(&state, &caller, &integration_id, payload).await?;
    let snapshot = state.view().snapshot();
    let facts = UseCaseFacts::of(&snapshot.use_cases(&caller.org_id, &integration_id));
    let mut filter = base(&fields, ("completed_at", "event_id"), "event_id")?;
    filter.clauses.push(shape::inbound_clause());
    filter.use_case_id = text(&fields, "use_case_id")?;
    filter.level = one_of(
        &fields,
        "status",
        &["success", "error", "skipped", "warning"],
    )?;
    filter.correlation_id = text(&fields, "correlation_id")?;
    filter.event_id = text(&fields, "event_id")?;
    // We do not record the v1/v2 event_type: no event is known to have one.
    if one_of(
        &fields,
        "event_type",
        &["CREATE", "UPDATE", "DELETE", "TRIGGER"],
    )?
    .is_some()
    {
        filter.clauses.push(("0 = 1".to_owned(), Vec::new()));
    }
    let sync_types = ["entity", "meter_reading", "webhook", "api_deprecation"];
    if let Some(sync) = one_of(&fields, "sync_type", &sync_types)? {
        filter
            .clauses
            .push(in_ids("use_case_id", facts.ids(|_, s| s == sync)));
    }
    if let Some(category) = one_of(&fields, "error_category", shape::CATEGORY_NAMES)? {
        filter.clauses.push(shape::category_clause(&category));
    }
    for key in ["object_type", "event_name"] {
        if let Some(name) = text(&fields, key)? {
            // A configured use case's slug, or the routing key of an event no use case took.
            let (ids, mut values) = in_ids("use_case_id", facts.ids(|slug, _| slug == name));
            let clause = format!(
                "({ids} OR {} = ? OR {} = ?)",
                detail("use_case_slug"),
                detail("event_name")
            );
            values.extend([SqlValue::Text(name.clone()), SqlValue::Text(name)]);
            filter.clauses.push((clause, values));
        }
    }
    let page = store.page(&caller.org_id, &integration_id, filter).await?;
    Ok(page_answer(
        page,
        |span| &span["event_id"],
        |span| shape::inbound_event(span, &facts),
        ("completed_at", "event_id"),
    ))
}

/// `column IN (ids)`; matches nothing when `ids` is empty.
fn in_ids(column: &str, ids: Vec<String>) -> (String, Vec<SqlValue>) {
    if ids.is_empty() {
        return ("0 = 1".to_owned(), Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    (
        format!("{column} IN ({marks})"),
        ids.into_iter().map(SqlValue::Text).collect(),
    )
}

/// What breaks ties in the outbound listing and its cursor: the delivered event's id.
const CORE_EVENT_ID: &str = "json_extract(span, '$.detail.core_event_id')";

/// `POST /v1/integrations/{id}/monitoring/outbound-events`
pub async fn outbound_events(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let (fields, store, _) = owned_request(&state, &caller, &integration_id, payload).await?;
    let mut filter = base(&fields, ("created_at", "event_id"), CORE_EVENT_ID)?;
    filter.clauses.push(shape::delivery_clause());
    filter.level = one_of(&fields, "status", &["succeeded", "failed", "pending"])?
        .map(|s| shape::delivery_level(&s).to_owned());
    for key in ["event_name", "webhook_config_id"] {
        if let Some(value) = text(&fields, key)? {
            filter.clauses.push(equal(detail(key), value));
        }
    }
    let page = store.page(&caller.org_id, &integration_id, filter).await?;
    Ok(page_answer(
        page,
        |span| &span["detail"]["core_event_id"],
        shape::outbound_event,
        ("created_at", "event_id"),
    ))
}

/// `POST /v1/integrations/{id}/monitoring/access-logs`: the calls made to this integration's
/// routes, as the API recorded them ([`super::access_log`]).
pub async fn access_logs(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let (fields, store, _) = owned_request(&state, &caller, &integration_id, payload).await?;
    let mut filter = base(&fields, ("timestamp", "request_id"), "id")?;
    filter.info = true;
    filter.code = Some(shape::ACCESS_CODE.to_owned());
    for key in ["token_id", "service"] {
        if let Some(value) = text(&fields, key)? {
            filter.clauses.push(equal(detail(key), value));
        }
    }
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"];
    if let Some(method) = one_of(&fields, "method", &methods)? {
        filter.clauses.push(equal(detail("method"), method));
    }
    if let Some(part) = text(&fields, "path")? {
        filter.clauses.push((
            format!("instr({}, ?) > 0", detail("path")),
            vec![SqlValue::Text(part)],
        ));
    }
    match fields.get("status") {
        None | Some(Value::Null) => {}
        Some(value) => {
            let status = value
                .as_i64()
                .filter(|s| (100..=599).contains(s))
                .ok_or_else(|| ApiError::bad_request("status must be an HTTP status code"))?;
            filter.clauses.push((
                format!("{} = ?", detail("status")),
                vec![SqlValue::Integer(status)],
            ));
        }
    }
    let page = store.page(&caller.org_id, &integration_id, filter).await?;
    Ok(page_answer(
        page,
        |span| &span["id"],
        shape::access_entry,
        ("timestamp", "request_id"),
    ))
}
