//! `PUT` / `DELETE /v1/integrations/{id}/app-mapping` (epilot spec §2.4.7): which integration a
//! legacy app/component pair stands for, so `POST /v1/erp/updates/events` (which names no
//! integration) can be routed.
//!
//! A pair belongs to one integration of the caller's organisation; another organisation may map
//! the same pair to its own integration. Mappings are event-sourced in `erp.config` and go with
//! their integration when it is deleted.

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use erp_schemas::config::{AppMapping, ConfigChange};
use erp_schemas::timestamp::now_rfc3339;

use crate::state::ApiState;
use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{object, opt_bool, read_json, uuid_field};

/// The app and component ids of a request body.
fn pair(body: &Value) -> Result<(String, String), ApiError> {
    let map = object(body, "request body")?;
    Ok((uuid_field(map, "app_id")?, uuid_field(map, "component_id")?))
}

fn mapping_not_found(app_id: &str, component_id: &str, integration_id: &str) -> ApiError {
    ApiError::not_found(
        "APP_MAPPING_NOT_FOUND",
        format!(
            "app {app_id} component {component_id} is not mapped to integration {integration_id}"
        ),
    )
}

/// `PUT /v1/integrations/{id}/app-mapping` → `IntegrationAppMapping`. A pair mapped to another
/// integration is 409 unless `overwrite` is true; mapping it again to the same integration is
/// answered 200 without a new record, so a retried request is harmless.
pub async fn put(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let body = read_json(body, state.body_limit).await?;
    let (app_id, component_id) = pair(&body)?;
    let overwrite = opt_bool(object(&body, "request body")?, "", "overwrite")?.unwrap_or(false);
    let _guard = state.config.exclusive().await;
    let config = state.view().snapshot();
    if config
        .integration(&caller.org_id, &integration_id)
        .is_none()
    {
        return Err(ApiError::integration_not_found(&integration_id));
    }
    let now = now_rfc3339();
    let created_at = match config.app_mapping(&caller.org_id, &app_id, &component_id) {
        Some(existing) if existing.integration_id == integration_id => {
            return Ok(HttpResponse::Ok().json(json!({"integration_id": integration_id})));
        }
        Some(existing) if !overwrite => {
            return Err(ApiError::conflict(
                "APP_MAPPING_EXISTS",
                format!(
                    "app {app_id} component {component_id} is already mapped to integration {}; \
                     send \"overwrite\": true to replace the mapping",
                    existing.integration_id
                ),
            ));
        }
        Some(existing) => existing.created_at.clone(),
        None => now.clone(),
    };
    state
        .record(
            &caller,
            ConfigChange::AppMappingSet {
                mapping: AppMapping {
                    app_id,
                    component_id,
                    integration_id: integration_id.clone(),
                    created_at,
                    updated_at: now,
                },
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({"integration_id": integration_id})))
}

/// `DELETE /v1/integrations/{id}/app-mapping`: the pair must be mapped to this integration
/// (epilot: the integration id is "used for authorization, must match the mapping").
pub async fn delete(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let body = read_json(body, state.body_limit).await?;
    let (app_id, component_id) = pair(&body)?;
    let _guard = state.config.exclusive().await;
    let config = state.view().snapshot();
    if config
        .integration(&caller.org_id, &integration_id)
        .is_none()
    {
        return Err(ApiError::integration_not_found(&integration_id));
    }
    match config.app_mapping(&caller.org_id, &app_id, &component_id) {
        Some(existing) if existing.integration_id == integration_id => {}
        _ => return Err(mapping_not_found(&app_id, &component_id, &integration_id)),
    }
    state
        .record(
            &caller,
            ConfigChange::AppMappingDeleted {
                app_id: app_id.clone(),
                component_id: component_id.clone(),
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "message": format!("app {app_id} component {component_id} unmapped from integration {integration_id}")
    })))
}
