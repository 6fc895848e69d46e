//! Blueprints (our extension; see docs/blueprints.md): an integration exported as one
//! versioned, portable JSON document and installed into an organisation with a plan first.
//!
//! - `GET /v1/integrations/{id}/blueprint`: the document. Ids become names and slugs, webhook
//!   ids inside configurations `{"$ref": "webhooks/<key>"}`, secrets are left out, environment
//!   keys are declared (never their values).
//! - `POST /v1/blueprints/plan` `{blueprint}`: per object create, update (the changed fields),
//!   unchanged or conflict; missing environment values; endpoints whose credentials must be
//!   entered again.
//! - `POST /v1/blueprints/apply` `{blueprint, fingerprint?}`: the plan written as one
//!   `ConfigChange::Batch`, so no reader sees half of it; nothing is written when nothing
//!   changes, so installing the same blueprint twice is a no-op.
//!
//! Everything is in the caller's organisation: the export looks the integration up by
//! (organisation, id), and plan and apply only read and write the caller's objects.

/// The entries of a plan, and the builder the computations share.
mod entries;
/// Building a blueprint from an organisation's configuration.
pub mod export;
/// The document and how a posted one is read.
pub mod format;
/// The plan's webhook endpoints and use cases.
mod objects;
/// Plans: what installing would do, and the changes that do it.
pub mod plan;
/// Rewriting references (webhook ids, environment keys).
pub mod refs;

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use erp_schemas::config::ConfigChange;

use crate::state::ApiState;
use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{object, opt_string, read_json};

/// `GET /v1/integrations/{id}/blueprint`
pub async fn export_route(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let config = state.view().snapshot();
    let blueprint = export::export(&config, &caller.org_id, &id)?;
    let mut document = serde_json::to_value(&blueprint)
        .map_err(|e| ApiError::internal("ENCODING_FAILED", e.to_string()))?;
    if let Some(map) = document.as_object_mut() {
        map.insert(
            "exported_at".into(),
            json!(erp_schemas::timestamp::now_rfc3339()),
        );
    }
    Ok(HttpResponse::Ok().json(document))
}

/// The blueprint of a plan or apply body, read (`BLUEPRINT_INVALID` and friends), and the
/// fingerprint if one is given.
async fn read(
    state: &ApiState,
    body: web::Payload,
) -> Result<(format::Blueprint, Option<String>), ApiError> {
    let body = read_json(body, state.body_limit).await?;
    let map = object(&body, "request body")?;
    erp_http::body::only_fields(map, "", &["blueprint", "fingerprint"])?;
    let blueprint = map
        .get("blueprint")
        .ok_or_else(|| ApiError::bad_request_code("BLUEPRINT_INVALID", "blueprint is required"))?;
    let fingerprint = opt_string(map, "", "fingerprint", 1, 128)?.map(str::to_owned);
    Ok((format::parse(blueprint)?, fingerprint))
}

/// `POST /v1/blueprints/plan`
pub async fn plan_route(
    state: web::Data<ApiState>,
    caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (blueprint, _) = read(&state, body).await?;
    let config = state.view().snapshot();
    let computed = plan::compute(&config, &caller.org_id, &caller.actor, &blueprint)?;
    Ok(HttpResponse::Ok().json(computed.plan))
}

/// `POST /v1/blueprints/apply`: 409 `BLUEPRINT_CONFLICT` (with the plan) when any object is in
/// conflict, 409 `BLUEPRINT_PLAN_STALE` when a fingerprint is given and the plan is no longer
/// the one it was made from; else the plan, `applied` and the ids of what was created.
pub async fn apply_route(
    state: web::Data<ApiState>,
    caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (blueprint, fingerprint) = read(&state, body).await?;
    let _guard = state.config.exclusive().await;
    let config = state.view().snapshot();
    let computed = plan::compute(&config, &caller.org_id, &caller.actor, &blueprint)?;
    let plan_value = serde_json::to_value(&computed.plan)
        .map_err(|e| ApiError::internal("ENCODING_FAILED", e.to_string()))?;
    if let Some(fingerprint) = fingerprint
        && fingerprint != computed.plan.fingerprint
    {
        return Err(ApiError::conflict(
            "BLUEPRINT_PLAN_STALE",
            "the organisation changed since the plan was made: plan again",
        )
        .with_extra(json!({"plan": plan_value})));
    }
    let conflicts: Vec<String> = computed
        .conflicts()
        .iter()
        .map(|e| {
            format!(
                "{} {:?}: {}",
                e.kind,
                e.reference,
                e.reason.as_deref().unwrap_or("conflict")
            )
        })
        .collect();
    if !conflicts.is_empty() {
        return Err(ApiError::conflict(
            "BLUEPRINT_CONFLICT",
            format!("nothing was applied: {}", conflicts.join("; ")),
        )
        .with_extra(json!({"plan": plan_value})));
    }
    let plan::Computed {
        mut plan,
        changes,
        created,
    } = computed;
    let applied = !changes.is_empty();
    if applied {
        state
            .record(&caller, ConfigChange::Batch { changes })
            .await?;
    }
    for (index, id) in created {
        if let Some(entry) = plan.objects.get_mut(index) {
            entry.id = Some(id);
        }
    }
    let mut answer = serde_json::to_value(&plan)
        .map_err(|e| ApiError::internal("ENCODING_FAILED", e.to_string()))?;
    if let Some(map) = answer.as_object_mut() {
        map.insert("applied".into(), Value::Bool(applied));
    }
    Ok(HttpResponse::Ok().json(answer))
}
