//! `/v2/integrations[/{id}]` (epilot spec §2.4.2): integrations with their use cases embedded.
//! `PUT` is declarative: the request is the desired state — use cases with a matching `id` are
//! updated, others created (a supplied unknown `id` becomes the new id), and the integration's
//! use cases missing from the list are deleted. All of it is one configuration event, so no
//! reader (the processor included) ever sees half of a change.

use std::collections::BTreeSet;

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use erp_runtime::ConfigState;
use erp_schemas::config::{ConfigChange, Integration, UseCase};
use erp_schemas::timestamp::now_rfc3339;

use crate::integrations::use_cases::{check_configuration, check_record, check_slug, check_type};
use crate::integrations::v1::editable;
use crate::state::ApiState;
use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{kind, object, opt_bool, opt_string, read_json, req_string};

/// The most use cases one integration may embed.
const MAX_USE_CASES: usize = 200;

/// An integration with its use cases, in the response shape.
fn with_use_cases(config: &ConfigState, integration: &Integration) -> Value {
    let use_cases: Vec<&UseCase> = config
        .use_cases(&integration.org_id, &integration.id)
        .into_iter()
        .map(|entry| &entry.use_case)
        .collect();
    let mut value = serde_json::to_value(integration).unwrap_or_else(|_| json!({}));
    if let Some(map) = value.as_object_mut() {
        map.insert("use_cases".into(), json!(use_cases));
    }
    value
}

/// A slug from a name: lower case, runs of anything but `[a-z0-9]` become one `-`.
pub fn slug_of(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    let slug: String = slug.chars().take(200).collect();
    if slug.is_empty() {
        "use-case".into()
    } else {
        slug
    }
}

/// The desired use cases of a request, validated, against the integration's current ones.
fn desired_use_cases(
    body: &Map<String, Value>,
    integration_id: &str,
    current: &[UseCase],
    caller: &Caller,
    now: &str,
) -> Result<Vec<UseCase>, ApiError> {
    let items = match body.get("use_cases") {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "use_cases must be an array, not {}",
                kind(other)
            )));
        }
    };
    if items.len() > MAX_USE_CASES {
        return Err(ApiError::bad_request(format!(
            "use_cases holds {} entries; at most {MAX_USE_CASES}",
            items.len()
        )));
    }
    let mut ids = BTreeSet::new();
    let mut out: Vec<UseCase> = Vec::with_capacity(items.len());
    let mut pending_slugs: Vec<(usize, String)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let path = format!("use_cases[{index}].");
        let map = item
            .as_object()
            .ok_or_else(|| ApiError::bad_request(format!("{path} must be an object")))?;
        let name = req_string(map, &path, "name", 1, 255)?.to_owned();
        let kind_of = req_string(map, &path, "type", 1, 64)?.to_owned();
        check_type(&kind_of)?;
        let enabled = opt_bool(map, &path, "enabled")?
            .ok_or_else(|| ApiError::bad_request(format!("{path}enabled is required")))?;
        let slug = opt_string(map, &path, "slug", 1, 255)?.map(str::to_owned);
        if let Some(slug) = &slug {
            check_slug(slug)?;
        }
        let change_description =
            opt_string(map, &path, "change_description", 0, 2000)?.map(str::to_owned);
        let mut configuration = map.get("configuration").cloned();
        if let Some(configuration) = &mut configuration {
            check_configuration(&kind_of, configuration).map_err(|e| ApiError {
                message: format!("{path}configuration: {}", e.message),
                ..e
            })?;
        }
        let id = opt_string(map, &path, "id", 1, 255)?.map(str::to_owned);
        let existing = id
            .as_deref()
            .and_then(|id| current.iter().find(|u| u.id == id));
        let use_case = match existing {
            Some(existing) => {
                if existing.kind != kind_of {
                    return Err(ApiError::bad_request(format!(
                        "{path}type cannot change from {:?} to {kind_of:?}",
                        existing.kind
                    )));
                }
                let slug = match (&existing.slug, slug) {
                    (Some(current), Some(given)) if *current != given => {
                        return Err(ApiError::bad_request_code(
                            "SLUG_IMMUTABLE",
                            format!("{path}slug is immutable once set (is {current:?})"),
                        ));
                    }
                    (Some(current), _) => Some(current.clone()),
                    (None, given) => given,
                };
                UseCase {
                    name,
                    slug,
                    enabled,
                    configuration,
                    change_description,
                    changed_by: Some(caller.actor.clone()),
                    updated_at: now.to_owned(),
                    ..existing.clone()
                }
            }
            None => UseCase {
                id: id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                integration_id: integration_id.to_owned(),
                name,
                slug,
                kind: kind_of,
                enabled,
                configuration,
                change_description,
                changed_by: Some(caller.actor.clone()),
                created_at: now.to_owned(),
                updated_at: now.to_owned(),
            },
        };
        check_record(&use_case, &format!("use_cases[{index}]"))?;
        if !ids.insert(use_case.id.clone()) {
            return Err(ApiError::bad_request(format!(
                "{path}id {:?} appears twice",
                use_case.id
            )));
        }
        if use_case.slug.is_none() {
            pending_slugs.push((out.len(), slug_of(&use_case.name)));
        }
        out.push(use_case);
    }
    // Given slugs must be unique; derived ones take the next free `-2`, `-3`, … suffix.
    let mut taken = BTreeSet::new();
    for use_case in &out {
        if let Some(slug) = &use_case.slug
            && !taken.insert(slug.clone())
        {
            return Err(ApiError::conflict(
                "SLUG_TAKEN",
                format!("slug {slug:?} is used by two use cases of this integration"),
            ));
        }
    }
    for (index, base) in pending_slugs {
        let mut candidate = base.clone();
        let mut n = 2;
        while taken.contains(&candidate) {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        taken.insert(candidate.clone());
        if let Some(use_case) = out.get_mut(index) {
            use_case.slug = Some(candidate);
        }
    }
    Ok(out)
}

/// The changes that turn `current` into `desired` (one batch with the integration).
fn batch(integration: Integration, current: &[UseCase], desired: Vec<UseCase>) -> ConfigChange {
    let keep: BTreeSet<&str> = desired.iter().map(|u| u.id.as_str()).collect();
    let mut changes = vec![ConfigChange::IntegrationUpserted {
        integration: integration.clone(),
    }];
    for gone in current.iter().filter(|u| !keep.contains(u.id.as_str())) {
        changes.push(ConfigChange::UseCaseDeleted {
            integration_id: integration.id.clone(),
            use_case_id: gone.id.clone(),
        });
    }
    for use_case in desired {
        let unchanged = current.iter().any(|u| {
            u.id == use_case.id
                && u.name == use_case.name
                && u.enabled == use_case.enabled
                && u.slug == use_case.slug
                && u.configuration == use_case.configuration
        });
        if !unchanged {
            changes.push(ConfigChange::UseCaseUpserted { use_case });
        }
    }
    ConfigChange::Batch { changes }
}

/// `GET /v2/integrations`
pub async fn list(state: web::Data<ApiState>, caller: Caller) -> HttpResponse {
    let config = state.view().snapshot();
    let integrations: Vec<Value> = config
        .integrations(&caller.org_id)
        .into_iter()
        .map(|integration| with_use_cases(&config, integration))
        .collect();
    HttpResponse::Ok().json(json!({"integrations": integrations}))
}

/// `GET /v2/integrations/{id}`
pub async fn get(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let config = state.view().snapshot();
    let integration = config
        .integration(&caller.org_id, &id)
        .ok_or_else(|| ApiError::integration_not_found(&id))?;
    Ok(HttpResponse::Ok().json(with_use_cases(&config, integration)))
}

/// `POST /v2/integrations`: a new integration with its use cases.
pub async fn create(
    state: web::Data<ApiState>,
    caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(body, state.body_limit).await?;
    let fields = editable(&body)?;
    let map = object(&body, "request body")?;
    let name = fields
        .name
        .ok_or_else(|| ApiError::bad_request("name is required"))?;
    let now = now_rfc3339();
    let integration = Integration {
        id: uuid::Uuid::new_v4().to_string(),
        org_id: caller.org_id.clone(),
        name,
        description: fields.description,
        extra: fields.extra,
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    let desired = desired_use_cases(map, &integration.id, &[], &caller, &now)?;
    let _guard = state.config.exclusive().await;
    refuse_taken_ids(&state.view().snapshot(), map, &[])?;
    state
        .record(&caller, batch(integration.clone(), &[], desired))
        .await?;
    let config = state.view().snapshot();
    Ok(HttpResponse::Created().json(with_use_cases(&config, &integration)))
}

/// Refuses a client-supplied use case id that is not one of `current` (the integration's own)
/// but names an object of **any** organisation: 409, with a message that says only that the id
/// is taken (not where). Identity is (organisation, id) in the fold, so such an id could not
/// touch another organisation's object anyway; refusing it keeps ids unique across the
/// deployment, so logs, spans and history keyed by id alone stay unambiguous.
fn refuse_taken_ids(
    config: &ConfigState,
    map: &Map<String, Value>,
    current: &[UseCase],
) -> Result<(), ApiError> {
    let Some(Value::Array(items)) = map.get("use_cases") else {
        return Ok(());
    };
    for item in items {
        if let Some(given) = item.get("id").and_then(Value::as_str)
            && !current.iter().any(|u| u.id == given)
            && config.id_taken(given)
        {
            return Err(ApiError::conflict(
                "USE_CASE_ID_TAKEN",
                format!("use case id {given} is already taken; omit it to get a new id"),
            ));
        }
    }
    Ok(())
}

/// `PUT /v2/integrations/{id}`: the declarative upsert.
pub async fn update(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let body = read_json(body, state.body_limit).await?;
    let fields = editable(&body)?;
    let map = object(&body, "request body")?;
    let name = fields
        .name
        .ok_or_else(|| ApiError::bad_request("name is required"))?;
    let _guard = state.config.exclusive().await;
    let config = state.view().snapshot();
    let current_integration = config
        .integration(&caller.org_id, &id)
        .cloned()
        .ok_or_else(|| ApiError::integration_not_found(&id))?;
    let current: Vec<UseCase> = config
        .use_cases(&caller.org_id, &id)
        .into_iter()
        .map(|entry| entry.use_case.clone())
        .collect();
    refuse_taken_ids(&config, map, &current)?;
    let now = now_rfc3339();
    let desired = desired_use_cases(map, &id, &current, &caller, &now)?;
    let integration = Integration {
        name,
        description: fields.description,
        extra: fields.extra,
        updated_at: now,
        ..current_integration
    };
    state
        .record(&caller, batch(integration.clone(), &current, desired))
        .await?;
    let config = state.view().snapshot();
    Ok(HttpResponse::Ok().json(with_use_cases(&config, &integration)))
}

/// `DELETE /v2/integrations/{id}`: the integration and its use cases.
pub async fn delete(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    crate::integrations::v1::delete(state, caller, path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_derived_from_names() {
        assert_eq!(slug_of("Meter Readings (SAP)"), "meter-readings-sap");
        assert_eq!(slug_of("  Zählerstände!  "), "z-hlerst-nde");
        assert_eq!(slug_of("###"), "use-case");
        assert!(erp_http::body::is_slug(&slug_of("-a-")));
    }
}
