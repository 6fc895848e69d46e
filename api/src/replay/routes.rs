//! The replay routes: plan, run, progress, cancel (see [`crate::replay`]).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{object, opt_date_ms, opt_string, read_json};
use erp_schemas::timestamp::now_millis;

use super::Plan;
use super::scan::{RangeReader, Selection, Source};
use super::task::Progress;
use super::window::{OffsetRanges, ranges};
use crate::state::ApiState;

/// Most records a plan reads to count the selected ones; past it the count is an upper bound.
pub const COUNT_LIMIT: u64 = 1_000_000;

/// `offsets: {"<partition>": {"start": n, "end": m}}` (end exclusive).
fn offsets(fields: &Map<String, Value>) -> Result<Option<OffsetRanges>, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "offsets must map partitions to {\"start\": offset, \"end\": offset} with start <= end",
        )
    };
    match fields.get("offsets") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) if !map.is_empty() => {
            let mut out = OffsetRanges::new();
            for (partition, range) in map {
                let partition: i32 = partition.parse().map_err(|_| bad())?;
                let start = range["start"].as_i64().ok_or_else(bad)?;
                let end = range["end"].as_i64().ok_or_else(bad)?;
                if partition < 0 || start < 0 || end < start {
                    return Err(bad());
                }
                out.insert(partition, (start, end));
            }
            Ok(Some(out))
        }
        Some(_) => Err(bad()),
    }
}

/// `source: inbound (default) | dlq` and, for `dlq` only, `codes: [..]` (dead letter codes).
fn source_and_codes(
    fields: &Map<String, Value>,
) -> Result<(Source, Option<Vec<String>>), ApiError> {
    let source = match opt_string(fields, "", "source", 1, 20)? {
        None | Some("inbound") => Source::Inbound,
        Some("dlq") => Source::Dlq,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "source must be inbound or dlq, not {other}"
            )));
        }
    };
    let codes = match fields.get("codes") {
        None | Some(Value::Null) => None,
        Some(Value::Array(codes)) if !codes.is_empty() && source == Source::Dlq => Some(
            codes
                .iter()
                .map(|c| c.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiError::bad_request("codes must be a list of strings"))?,
        ),
        Some(_) if source != Source::Dlq => {
            return Err(ApiError::bad_request(
                "codes select dead letters: use them with source: dlq",
            ));
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "codes must be a non-empty list of strings",
            ));
        }
    };
    Ok((source, codes))
}

fn plan_json(plan: &Plan, topic: &str, counted: bool) -> Value {
    json!({
        "plan_id": plan.plan_id,
        "topic": topic,
        "source": plan.selection.source,
        "partitions": plan.ranges.iter().map(|r| json!({
            "partition": r.partition, "start_offset": r.start, "end_offset": r.end,
            "records": r.end - r.start,
        })).collect::<Vec<_>>(),
        "records": plan.records,
        "selected": plan.selected,
        "selected_counted": counted,
        "expires_in_seconds": super::PLAN_TTL_MS / 1000,
    })
}

/// `POST /v1/integrations/{id}/replays/plan` `{from_date?, to_date?, offsets?, use_case_id?}`:
/// the dry run every replay starts from.
pub async fn plan(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    state.caller_integration(&caller, &integration_id)?;
    let body = read_json(payload, state.body_limit).await?;
    let fields = object(&body, "request body")?;
    let (from, to, offsets) = (
        opt_date_ms(fields, "from_date")?,
        opt_date_ms(fields, "to_date")?,
        offsets(fields)?,
    );
    if offsets.is_some() && (from.is_some() || to.is_some()) {
        return Err(ApiError::bad_request(
            "give either from_date/to_date or offsets, not both",
        ));
    }
    if offsets.is_none() && from.is_none() {
        return Err(ApiError::bad_request("from_date or offsets is required"));
    }
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(ApiError::bad_request("from_date must not be after to_date"));
    }
    let use_case_id = opt_string(fields, "", "use_case_id", 1, 200)?.map(str::to_owned);
    if let Some(id) = &use_case_id
        && state
            .view()
            .snapshot()
            .use_case(&caller.org_id, &integration_id, id)
            .is_none()
    {
        return Err(ApiError::not_found(
            "USE_CASE_NOT_FOUND",
            format!("use case {id} not found"),
        ));
    }
    let (source, codes) = source_and_codes(fields)?;
    let runtime = state.runtime.clone();
    let topic = source.topic(&state.topics);
    let consumer = runtime
        .kafka
        .reader_config("erp-toolkit-replay-plan")
        .create::<rdkafka::consumer::BaseConsumer>()
        .map_err(|e| ApiError::unavailable("QUEUE_UNAVAILABLE", e.to_string()))?;
    let window_topic = topic.clone();
    let found = tokio::task::spawn_blocking(move || {
        // An inclusive to_date: the end is the first record after it.
        ranges(
            &consumer,
            &window_topic,
            from,
            to.map(|t| t + 1),
            offsets.as_ref(),
        )
    })
    .await
    .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?
    .map_err(|e| ApiError::unavailable("QUEUE_UNAVAILABLE", e))?;
    let selection = Selection {
        org_id: caller.org_id.clone(),
        integration_id,
        use_case_id,
        source,
        codes,
    };
    let records: u64 = found.iter().map(|r| (r.end - r.start) as u64).sum();
    let counted = records <= COUNT_LIMIT;
    let selected = if counted {
        let mut reader = RangeReader::open(&runtime, &selection, &found)
            .map_err(|e| ApiError::unavailable("QUEUE_UNAVAILABLE", e))?;
        let view = state.view().clone();
        let never = CancellationToken::new();
        let mut selected = 0;
        while let Some(record) = reader.next(&never).await {
            let record = record.map_err(|e| ApiError::unavailable("QUEUE_UNAVAILABLE", e))?;
            if record.is_some_and(|r| selection.selects(&r, &view)) {
                selected += 1;
            }
        }
        selected
    } else {
        records
    };
    let plan = Plan {
        plan_id: uuid::Uuid::new_v4().to_string(),
        selection,
        ranges: found,
        records,
        selected,
        created_at: now_millis(),
    };
    let answer = plan_json(&plan, &topic, counted);
    state.replays.keep_plan(plan);
    Ok(HttpResponse::Ok().json(answer))
}

/// `POST /v1/integrations/{id}/replays` `{plan_id}` → 202 `{task_id, …progress}`.
pub async fn run(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    state.caller_integration(&caller, &integration_id)?;
    let body = read_json(payload, state.body_limit).await?;
    let fields = object(&body, "request body")?;
    let plan_id = opt_string(fields, "", "plan_id", 1, 100)?.ok_or_else(|| {
        ApiError::bad_request("plan_id is required: make a plan first (POST …/replays/plan)")
    })?;
    let plan = state
        .replays
        .plan(&caller.org_id, plan_id)
        .filter(|p| p.selection.integration_id == integration_id)
        .ok_or_else(|| {
            ApiError::not_found(
                "REPLAY_PLAN_NOT_FOUND",
                format!("no plan {plan_id} for this integration (plans expire after 15 minutes)"),
            )
        })?;
    let progress = Arc::new(Progress {
        task_id: uuid::Uuid::new_v4().to_string(),
        plan,
        read: AtomicU64::new(0),
        republished: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        status: Mutex::new("running"),
        error: Mutex::new(None),
        started: Instant::now(),
        cancel: state.runtime.shutdown.child_token(),
    });
    state
        .replays
        .add_task(&caller.org_id, Arc::clone(&progress));
    tokio::spawn(super::task::run(
        state.runtime.clone(),
        state.producer.clone(),
        state.view().clone(),
        Arc::clone(&progress),
    ));
    Ok(HttpResponse::Accepted().json(progress.json()))
}

fn task_of(
    state: &ApiState,
    caller: &Caller,
    integration_id: &str,
    task_id: &str,
) -> Result<Arc<Progress>, ApiError> {
    state
        .replays
        .task(&caller.org_id, task_id)
        .filter(|t| t.plan.selection.integration_id == integration_id)
        .ok_or_else(|| ApiError::not_found("REPLAY_NOT_FOUND", format!("no replay {task_id}")))
}

/// `GET /v1/integrations/{id}/replays/{taskId}`
pub async fn status(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (integration_id, task_id) = path.into_inner();
    state.caller_integration(&caller, &integration_id)?;
    let task = task_of(&state, &caller, &integration_id, &task_id)?;
    Ok(HttpResponse::Ok().json(task.json()))
}

/// `DELETE /v1/integrations/{id}/replays/{taskId}`: stops a running replay (what was
/// re-published stays re-published).
pub async fn cancel(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (integration_id, task_id) = path.into_inner();
    state.caller_integration(&caller, &integration_id)?;
    let task = task_of(&state, &caller, &integration_id, &task_id)?;
    task.cancel.cancel();
    Ok(HttpResponse::Accepted().json(task.json()))
}
