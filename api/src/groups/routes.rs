//! The consumer-group routes (deployment admin only): list with lag, one group's partitions,
//! reset plan and apply (see [`crate::groups`]).

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use serde_json::{Map, Value, json};
use tracing::info;

use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{object, opt_bool, opt_date_ms, read_json, req_string};
use erp_schemas::monitoring::{Level, MonitoringSpan};
use erp_schemas::positions::{PositionMarker, position_key};
use erp_schemas::timestamp::now_rfc3339;

use super::kafka::GroupClient;
use super::plans::{PLAN_TTL_MS, ResetPlan, Target, plan};
use super::{GroupSpec, Positions, catalogue, find, totals};
use crate::state::ApiState;

/// Longest wait for the acknowledgement of a reset marker.
const MARKER_TIMEOUT: Duration = Duration::from_secs(10);

fn unavailable(error: impl ToString) -> ApiError {
    ApiError::unavailable("QUEUE_UNAVAILABLE", error.to_string())
}

/// Runs blocking broker work for `spec` off the async threads.
async fn with_client<T: Send + 'static>(
    state: &ApiState,
    spec: &GroupSpec,
    work: impl FnOnce(&GroupClient) -> Result<T, String> + Send + 'static,
) -> Result<T, ApiError> {
    let kafka = state.runtime.kafka.clone();
    let group_id = spec.group_id.clone();
    tokio::task::spawn_blocking(move || {
        let client = GroupClient::new(&kafka, &group_id)?;
        work(&client)
    })
    .await
    .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?
    .map_err(unavailable)
}

fn group_of(state: &ApiState, group_id: &str) -> Result<GroupSpec, ApiError> {
    find(&state.topics, group_id).ok_or_else(|| {
        ApiError::not_found(
            "GROUP_NOT_FOUND",
            format!("consumer group {group_id} not found"),
        )
    })
}

/// The report of one group: its members when known, and the lag of each partition.
async fn report(
    state: &ApiState,
    spec: GroupSpec,
    topics: Option<Vec<String>>,
) -> Result<Value, ApiError> {
    let group = spec.clone();
    let (membership, partitions) = with_client(state, &spec, move |client| {
        let partitions = super::kafka::partitions(client, &group, topics.as_deref())?;
        Ok((client.membership(&group.group_id), partitions))
    })
    .await?;
    let (lag_records, lag_seconds) = totals(&partitions);
    Ok(json!({
        "group_id": spec.group_id,
        "role": spec.role,
        "topics": spec.topics,
        "positions": spec.positions,
        "state": membership.as_ref().map(|m| m.state.clone()),
        "members": membership.as_ref().map(|m| m.members),
        "lag_records": lag_records,
        "lag_seconds": lag_seconds,
        "partitions": partitions,
    }))
}

/// `GET /v1/ops/consumer-groups`: every group of the deployment with its total lag. A group
/// whose offsets could not be read is listed with `error` and unknown lag.
pub async fn list(state: web::Data<ApiState>, _caller: Caller) -> Result<HttpResponse, ApiError> {
    let mut groups = Vec::new();
    for spec in catalogue(&state.topics) {
        let (group_id, role, topics) = (spec.group_id.clone(), spec.role, spec.topics.clone());
        match report(&state, spec, None).await {
            Ok(mut report) => {
                if let Some(fields) = report.as_object_mut() {
                    fields.remove("partitions");
                }
                groups.push(report);
            }
            Err(error) => groups.push(json!({
                "group_id": group_id, "role": role, "topics": topics,
                "state": null, "members": null, "lag_records": null, "lag_seconds": null,
                "error": error.to_string(),
            })),
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "groups": groups })))
}

fn topics_query(
    spec: &GroupSpec,
    query: &HashMap<String, String>,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(list) = query.get("topics") else {
        return Ok(None);
    };
    let topics: Vec<String> = list.split(',').map(str::trim).map(str::to_owned).collect();
    check_topics(spec, &topics)?;
    Ok(Some(topics))
}

fn check_topics(spec: &GroupSpec, topics: &[String]) -> Result<(), ApiError> {
    match topics.iter().find(|t| !spec.topics.contains(t)) {
        Some(topic) => Err(ApiError::bad_request(format!(
            "group {} does not consume {topic} (it consumes {})",
            spec.group_id,
            spec.topics.join(", ")
        ))),
        None => Ok(()),
    }
}

/// `GET /v1/ops/consumer-groups/{group_id}[?topics=a,b]`: the lag of every partition.
pub async fn show(
    state: web::Data<ApiState>,
    _caller: Caller,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let spec = group_of(&state, &path)?;
    let topics = topics_query(&spec, &query)?;
    Ok(HttpResponse::Ok().json(report(&state, spec, topics).await?))
}

fn target(fields: &Map<String, Value>) -> Result<Target, ApiError> {
    let to = req_string(fields, "", "to", 1, 20)?;
    match to {
        "earliest" => Ok(Target::Earliest),
        "latest" => Ok(Target::Latest),
        "timestamp" => match opt_date_ms(fields, "timestamp")? {
            Some(timestamp) => Ok(Target::Timestamp { timestamp }),
            None => Err(ApiError::bad_request(
                "timestamp is required with to: timestamp",
            )),
        },
        "offset" => match fields.get("offset").and_then(Value::as_i64) {
            Some(offset) if offset >= 0 => Ok(Target::Offset { offset }),
            _ => Err(ApiError::bad_request(
                "offset (an integer >= 0) is required with to: offset",
            )),
        },
        other => Err(ApiError::bad_request(format!(
            "to must be earliest, latest, timestamp or offset, not {other}"
        ))),
    }
}

fn list_field<T: serde::de::DeserializeOwned>(
    fields: &Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<T>>, ApiError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{key} must be a non-empty list"))),
    }
    .and_then(|list: Option<Vec<T>>| match list {
        Some(list) if list.is_empty() => Err(ApiError::bad_request(format!(
            "{key} must be a non-empty list"
        ))),
        list => Ok(list),
    })
}

fn plan_json(plan: &ResetPlan) -> Value {
    let mut value = serde_json::to_value(plan).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        if let Some(Value::Array(moves)) = fields.get_mut("partitions") {
            for (json, moved) in moves.iter_mut().zip(&plan.partitions) {
                json["records_to_reread"] = json!(moved.reread());
                json["records_to_skip"] = json!(moved.skipped());
            }
        }
        fields.insert("records_to_reread".into(), json!(plan.reread()));
        fields.insert("records_to_skip".into(), json!(plan.skipped()));
        fields.insert("expires_in_seconds".into(), json!(PLAN_TTL_MS / 1000));
    }
    value
}

/// `POST /v1/ops/consumer-groups/{group_id}/reset/plan`
/// `{to: earliest|latest|timestamp|offset, timestamp?, offset?, topics?, partitions?}`: the dry
/// run every reset starts from.
pub async fn plan_reset(
    state: web::Data<ApiState>,
    _caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let spec = group_of(&state, &path)?;
    let body = read_json(payload, state.body_limit).await?;
    let fields = object(&body, "request body")?;
    let target = target(fields)?;
    let topics: Option<Vec<String>> = list_field(fields, "topics")?;
    if let Some(topics) = &topics {
        check_topics(&spec, topics)?;
    }
    let partitions: Option<Vec<i32>> = list_field(fields, "partitions")?;
    let planned = spec.clone();
    let found = with_client(&state, &spec, move |client| {
        plan(
            client,
            &planned,
            target,
            topics.as_deref(),
            partitions.as_deref(),
        )
    })
    .await?;
    if found.partitions.is_empty() {
        return Err(ApiError::bad_request(
            "the selection names no partition of the group's topics",
        ));
    }
    let answer = plan_json(&found);
    state.group_resets.keep(found);
    Ok(HttpResponse::Ok().json(answer))
}

/// Why an apply cannot go ahead, checked against the broker right before it.
async fn refusal(
    state: &ApiState,
    spec: &GroupSpec,
    plan: &ResetPlan,
    assume_stopped: bool,
) -> Result<Option<ApiError>, ApiError> {
    let keys: Vec<(String, i32)> = plan
        .partitions
        .iter()
        .map(|m| (m.topic.clone(), m.partition))
        .collect();
    let group_id = spec.group_id.clone();
    let (membership, committed) = with_client(state, spec, move |client| {
        Ok((client.membership(&group_id), client.committed(&keys)?))
    })
    .await?;
    Ok(match membership {
        Some(m) if m.active() => Some(ApiError::conflict(
            "GROUP_ACTIVE",
            format!(
                "group {} has {} active member(s) (state {}): stop its {} role first",
                spec.group_id, m.members, m.state, spec.role
            ),
        )),
        None if !assume_stopped => Some(ApiError::conflict(
            "GROUP_STATE_UNKNOWN",
            format!(
                "the broker cannot describe group {}: stop its {} role, then apply with \
                 assume_stopped: true",
                spec.group_id, spec.role
            ),
        )),
        _ => {
            let moved = plan
                .partitions
                .iter()
                .zip(&committed)
                .find(|(m, now)| m.current_offset != **now);
            moved.map(|(m, now)| {
                ApiError::conflict(
                    "GROUP_MOVED",
                    format!(
                        "group {} committed {} on {}/{} since the plan ({}): a member is still \
                         consuming; stop it and plan again",
                        spec.group_id,
                        now.map_or("nothing".into(), |o| o.to_string()),
                        m.topic,
                        m.partition,
                        m.current_offset
                            .map_or("nothing committed".into(), |o| o.to_string()),
                    ),
                )
            })
        }
    })
}

/// Writes the processor's reset markers: one per partition, to its changelog partition.
async fn write_markers(
    state: &ApiState,
    changelog: &str,
    plan: &ResetPlan,
) -> Result<(), ApiError> {
    for moved in &plan.partitions {
        let key = position_key(&moved.topic);
        let marker = PositionMarker {
            next_offset: moved.target_offset,
            reset: true,
        };
        let value = serde_json::to_vec(&marker).map_err(unavailable)?;
        let record = FutureRecord::to(changelog)
            .partition(moved.partition)
            .key(&key)
            .payload(&value);
        tokio::time::timeout(
            MARKER_TIMEOUT,
            state.producer.send(record, Timeout::After(MARKER_TIMEOUT)),
        )
        .await
        .map_err(|_| unavailable("no acknowledgement of a reset marker"))?
        .map_err(|(error, _)| unavailable(error))?;
    }
    Ok(())
}

/// The audit span of an applied or refused reset, on the deployment admin's organisation.
fn audit(state: &ApiState, plan: &ResetPlan, code: &str, message: String) -> MonitoringSpan {
    MonitoringSpan {
        id: erp_schemas::ids::derived_uuid(&[&plan.plan_id, code]),
        org_id: state.org_id.clone(),
        integration_id: String::new(),
        event_id: plan.plan_id.clone(),
        correlation_id: plan.plan_id.clone(),
        use_case_id: String::new(),
        use_case_type: String::new(),
        level: if code == "GROUP_RESET" {
            Level::Warning
        } else {
            Level::Info
        },
        code: code.to_owned(),
        message,
        detail: json!({
            "group_id": plan.group_id,
            "target": plan.target,
            "partitions": plan.partitions,
            "records_to_reread": plan.reread(),
            "records_to_skip": plan.skipped(),
        }),
        created_at: now_rfc3339(),
    }
}

async fn write_audit(state: &ApiState, span: &MonitoringSpan) {
    crate::monitoring::write_audit_span(&state.producer, &state.topics, &span.org_id, span).await;
}

/// `POST /v1/ops/consumer-groups/{group_id}/reset` `{plan_id, assume_stopped?}`: applies a
/// plan, refused (409) while the group has members, when the broker cannot tell and the
/// operator did not say it is stopped, or when the group committed since the plan.
pub async fn apply_reset(
    state: web::Data<ApiState>,
    _caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let spec = group_of(&state, &path)?;
    let body = read_json(payload, state.body_limit).await?;
    let fields = object(&body, "request body")?;
    let plan_id = req_string(fields, "", "plan_id", 1, 100)?;
    let assume_stopped = opt_bool(fields, "", "assume_stopped")?.unwrap_or(false);
    let plan = state
        .group_resets
        .take(plan_id)
        .filter(|p| p.group_id == spec.group_id)
        .ok_or_else(|| {
            ApiError::not_found(
                "PLAN_NOT_FOUND",
                format!(
                    "reset plan {plan_id} of group {} not found or expired",
                    spec.group_id
                ),
            )
        })?;
    let refused = match refusal(&state, &spec, &plan, assume_stopped).await {
        Ok(refused) => refused,
        Err(error) => Some(error),
    };
    if let Some(error) = refused {
        write_audit(
            &state,
            &audit(&state, &plan, "GROUP_RESET_REFUSED", error.to_string()),
        )
        .await;
        state.group_resets.keep(plan);
        return Err(error);
    }
    if let Positions::Changelog(changelog) = &spec.positions {
        write_markers(&state, changelog, &plan).await?;
    }
    let offsets: Vec<(String, i32, i64)> = plan
        .partitions
        .iter()
        .map(|m| (m.topic.clone(), m.partition, m.target_offset))
        .collect();
    let committed = with_client(&state, &spec, move |client| client.commit(&offsets)).await?;
    info!(group = %spec.group_id, plan = %plan.plan_id, partitions = plan.partitions.len(),
          "consumer group reset");
    let message = format!(
        "group {} reset: {} partition(s), {} record(s) to read again, {} skipped",
        spec.group_id,
        plan.partitions.len(),
        plan.reread(),
        plan.skipped()
    );
    write_audit(&state, &audit(&state, &plan, "GROUP_RESET", message)).await;
    let partitions: Vec<Value> = plan
        .partitions
        .iter()
        .zip(committed)
        .map(|(m, committed)| {
            json!({"topic": m.topic, "partition": m.partition,
                   "previous_offset": m.current_offset, "committed_offset": committed})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "plan_id": plan.plan_id,
        "group_id": spec.group_id,
        "applied": true,
        "positions": spec.positions,
        "partitions": partitions,
    })))
}
