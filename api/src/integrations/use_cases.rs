//! `/v1/integrations/{id}/use-cases[/{useCaseId}]` (epilot spec §2.4.3), types `inbound`,
//! `outbound` and `file_proxy`.
//!
//! A configuration is compiled when it is saved: grammar errors and JSONata that does not parse
//! are answered with 422 naming the entity, field and expression, so a broken mapping never
//! reaches the processor. An inbound entity mapping that targets an entity schema outside the
//! core catalog is refused (400 `UNKNOWN_ENTITY_SCHEMA`, naming the entity) unless it declares
//! `custom_schema: true`. Then the use case as it will be stored is checked against epilot's
//! schema of its type (400 naming the field), so every answer that serves it again conforms.

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use erp_mapping::CompiledConfiguration;
use erp_mapping::outbound::CompiledOutbound;
use erp_schemas::config::{ConfigChange, USE_CASE_TYPES, UseCase};
use erp_schemas::timestamp::now_rfc3339;

use crate::state::ApiState;
use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{is_slug, kind, object, opt_bool, opt_string, read_json, req_string};

fn integration_missing(id: &str) -> ApiError {
    ApiError::not_found(
        "INTEGRATION_NOT_FOUND",
        format!("integration {id} not found"),
    )
}

pub(crate) fn use_case_missing(id: &str) -> ApiError {
    ApiError::not_found("USE_CASE_NOT_FOUND", format!("use case {id} not found"))
}

pub(crate) fn check_slug(slug: &str) -> Result<(), ApiError> {
    if is_slug(slug) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "slug {slug:?} must match ^[a-z0-9][a-z0-9_-]*$"
        )))
    }
}

pub(crate) fn check_type(kind: &str) -> Result<(), ApiError> {
    if !USE_CASE_TYPES.contains(&kind) {
        return Err(ApiError::bad_request(format!(
            "type must be one of {}, got {kind:?}",
            USE_CASE_TYPES.join(", ")
        )));
    }
    if record_schema(kind).is_none() {
        return Err(ApiError::bad_request_code(
            "USE_CASE_TYPE_NOT_SUPPORTED",
            format!(
                "use cases of type {kind:?} are not supported by this version; inbound, outbound and file_proxy are"
            ),
        ));
    }
    Ok(())
}

/// The schema of epilot's document a stored use case of type `kind` must satisfy; `None` for
/// the types this version does not store (managed_call and secure_proxy need endpoints that
/// run them, which it does not have).
fn record_schema(kind: &str) -> Option<&'static str> {
    match kind {
        "inbound" => Some("InboundUseCase"),
        "outbound" => Some("OutboundUseCase"),
        "file_proxy" => Some("FileProxyUseCase"),
        _ => None,
    }
}

/// Checks a use case exactly as it will be stored against epilot's schema of its type: what is
/// stored is answered again by every GET, and each answer must match `UseCase`. Runs on the
/// merged result of a partial update too. `at` names the use case in the message (`use case`,
/// or `use_cases[2]` in v2).
pub(crate) fn check_record(use_case: &UseCase, at: &str) -> Result<(), ApiError> {
    check_type(&use_case.kind)?;
    let schema = record_schema(&use_case.kind).unwrap_or("UseCase");
    let value = serde_json::to_value(use_case)
        .map_err(|e| ApiError::internal("ENCODING_FAILED", format!("use case: {e}")))?;
    crate::openapi::check(schema, &value)
        .map_err(|e| ApiError::bad_request(format!("{at} does not match {schema}: {e}")))
}

/// Checks a configuration the way the processor will read it; gives outbound mappings without
/// an `id` a new one (and creation times), as epilot does.
pub(crate) fn check_configuration(
    kind_of_use_case: &str,
    configuration: &mut Value,
) -> Result<(), ApiError> {
    let Some(object) = configuration.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "configuration must be an object, not {}",
            kind(configuration)
        )));
    };
    if kind_of_use_case == "outbound" {
        let now = erp_schemas::timestamp::now_rfc3339();
        if let Some(Value::Array(mappings)) = object.get_mut("mappings") {
            for mapping in mappings.iter_mut().filter_map(Value::as_object_mut) {
                if !mapping.get("id").is_some_and(Value::is_string) {
                    mapping.insert("id".into(), Value::String(uuid::Uuid::new_v4().to_string()));
                }
                mapping
                    .entry("created_at")
                    .or_insert_with(|| Value::String(now.clone()));
                mapping.insert("updated_at".into(), Value::String(now.clone()));
                // Nothing here runs a file proxy yet: such a mapping would be reported as a
                // success and never delivered, so it is refused until the runtime exists.
                if mapping
                    .get("delivery")
                    .and_then(|d| d.get("type"))
                    .and_then(Value::as_str)
                    == Some("file_proxy")
                {
                    return Err(ApiError::bad_request_code(
                        "DELIVERY_TYPE_NOT_SUPPORTED",
                        "outbound delivery type file_proxy is not supported by this deployment \
                         (no file proxy runtime); use webhook or poll",
                    ));
                }
            }
        }
        return CompiledOutbound::compile(configuration)
            .map(|_| ())
            .map_err(|error| ApiError::unprocessable("INVALID_CONFIGURATION", error.to_string()));
    }
    if kind_of_use_case == "file_proxy" {
        return crate::integrations::file_proxy::check(object);
    }
    CompiledConfiguration::compile(configuration)
        .map_err(|error| ApiError::unprocessable("INVALID_CONFIGURATION", error.to_string()))?;
    // A slug outside the catalog is a typo more often than a custom schema: the mapping's output
    // would be checked by nobody. A custom schema is declared on its entity mapping.
    match erp_mapping::validation::unknown_schemas(configuration).first() {
        Some(unknown) => Err(ApiError::bad_request_code(
            "UNKNOWN_ENTITY_SCHEMA",
            format!("configuration.{unknown}"),
        )),
        None => Ok(()),
    }
}

/// `GET /v1/integrations/{id}/use-cases`
pub async fn list(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let config = state.view().snapshot();
    if config
        .integration(&caller.org_id, &integration_id)
        .is_none()
    {
        return Err(integration_missing(&integration_id));
    }
    let use_cases: Vec<&UseCase> = config
        .use_cases(&caller.org_id, &integration_id)
        .into_iter()
        .map(|entry| &entry.use_case)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"use_cases": use_cases})))
}

/// A use case to create: what `POST …/use-cases` reads from its body, and what
/// `POST …/use-cases/from-template` makes of a template.
pub(crate) struct NewUseCase {
    pub(crate) name: String,
    pub(crate) slug: String,
    pub(crate) kind: String,
    pub(crate) enabled: bool,
    pub(crate) configuration: Option<Value>,
    pub(crate) change_description: Option<String>,
}

/// Creates a use case of the caller's integration `integration_id`: the one path of every
/// create, so a use case made from a template is validated, refused on a slug clash, recorded
/// in the history and announced exactly like one posted by hand.
pub(crate) async fn create_use_case(
    state: &ApiState,
    caller: &Caller,
    integration_id: String,
    new: NewUseCase,
) -> Result<UseCase, ApiError> {
    let NewUseCase {
        name,
        slug,
        kind,
        enabled,
        mut configuration,
        change_description,
    } = new;
    check_slug(&slug)?;
    check_type(&kind)?;
    if let Some(configuration) = &mut configuration {
        check_configuration(&kind, configuration)?;
    }

    let _guard = state.config.exclusive().await;
    let config = state.view().snapshot();
    if config
        .integration(&caller.org_id, &integration_id)
        .is_none()
    {
        return Err(integration_missing(&integration_id));
    }
    if config
        .use_cases(&caller.org_id, &integration_id)
        .iter()
        .any(|e| e.use_case.slug.as_deref() == Some(slug.as_str()))
    {
        return Err(ApiError::conflict(
            "SLUG_TAKEN",
            format!("slug {slug:?} is already used by another use case of this integration"),
        ));
    }
    let now = now_rfc3339();
    let use_case = UseCase {
        id: uuid::Uuid::new_v4().to_string(),
        integration_id,
        name,
        slug: Some(slug),
        kind,
        enabled,
        configuration,
        change_description,
        changed_by: Some(caller.actor.clone()),
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    check_record(&use_case, "use case")?;
    state
        .record(
            caller,
            ConfigChange::UseCaseUpserted {
                use_case: use_case.clone(),
            },
        )
        .await?;
    Ok(use_case)
}

/// `POST /v1/integrations/{id}/use-cases`
pub async fn create(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let body = read_json(body, state.body_limit).await?;
    let map = object(&body, "request body")?;
    let name = req_string(map, "", "name", 1, 255)?.to_owned();
    let slug = req_string(map, "", "slug", 1, 255)?.to_owned();
    check_slug(&slug)?;
    let kind = req_string(map, "", "type", 1, 64)?.to_owned();
    check_type(&kind)?;
    let enabled = opt_bool(map, "", "enabled")?
        .ok_or_else(|| ApiError::bad_request("enabled is required"))?;
    let change_description = opt_string(map, "", "change_description", 0, 2000)?.map(str::to_owned);
    let new = NewUseCase {
        name,
        slug,
        kind,
        enabled,
        configuration: map.get("configuration").cloned(),
        change_description,
    };
    let use_case = create_use_case(&state, &caller, integration_id, new).await?;
    Ok(HttpResponse::Created().json(use_case))
}

/// `GET /v1/integrations/{id}/use-cases/{useCaseId}`
pub async fn get(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (integration_id, use_case_id) = path.into_inner();
    let config = state.view().snapshot();
    if config
        .integration(&caller.org_id, &integration_id)
        .is_none()
    {
        return Err(integration_missing(&integration_id));
    }
    let entry = config
        .use_case(&caller.org_id, &integration_id, &use_case_id)
        .ok_or_else(|| use_case_missing(&use_case_id))?;
    Ok(HttpResponse::Ok().json(&entry.use_case))
}

/// `PUT /v1/integrations/{id}/use-cases/{useCaseId}`: partial update. A slug can be set once on
/// a use case without one and never changed.
pub async fn update(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (integration_id, use_case_id) = path.into_inner();
    let body = read_json(body, state.body_limit).await?;
    let map: &Map<String, Value> = object(&body, "request body")?;
    let name = opt_string(map, "", "name", 1, 255)?.map(str::to_owned);
    let slug = opt_string(map, "", "slug", 1, 255)?.map(str::to_owned);
    if let Some(slug) = &slug {
        check_slug(slug)?;
    }
    let kind = opt_string(map, "", "type", 1, 64)?.map(str::to_owned);
    let enabled = opt_bool(map, "", "enabled")?;
    let change_description = opt_string(map, "", "change_description", 0, 2000)?.map(str::to_owned);
    let configuration = map.get("configuration").cloned();

    let _guard = state.config.exclusive().await;
    let config = state.view().snapshot();
    if config
        .integration(&caller.org_id, &integration_id)
        .is_none()
    {
        return Err(integration_missing(&integration_id));
    }
    let mut use_case = config
        .use_case(&caller.org_id, &integration_id, &use_case_id)
        .map(|e| e.use_case.clone())
        .ok_or_else(|| use_case_missing(&use_case_id))?;
    if let Some(kind) = kind
        && kind != use_case.kind
    {
        return Err(ApiError::bad_request(format!(
            "type cannot change from {:?} to {kind:?}",
            use_case.kind
        )));
    }
    if let Some(slug) = slug {
        match &use_case.slug {
            Some(current) if *current == slug => {}
            Some(current) => {
                return Err(ApiError::bad_request_code(
                    "SLUG_IMMUTABLE",
                    format!("slug is immutable once set (is {current:?})"),
                ));
            }
            None => {
                if config
                    .use_cases(&caller.org_id, &integration_id)
                    .iter()
                    .any(|e| e.use_case.slug.as_deref() == Some(slug.as_str()))
                {
                    return Err(ApiError::conflict(
                        "SLUG_TAKEN",
                        format!(
                            "slug {slug:?} is already used by another use case of this integration"
                        ),
                    ));
                }
                use_case.slug = Some(slug);
            }
        }
    }
    if let Some(mut configuration) = configuration {
        check_configuration(&use_case.kind, &mut configuration)?;
        use_case.configuration = Some(configuration);
    }
    if let Some(name) = name {
        use_case.name = name;
    }
    if let Some(enabled) = enabled {
        use_case.enabled = enabled;
    }
    // Describes this change only; not inherited from the previous version.
    use_case.change_description = change_description;
    use_case.changed_by = Some(caller.actor.clone());
    use_case.updated_at = now_rfc3339();
    check_record(&use_case, "use case")?;
    state
        .record(
            &caller,
            ConfigChange::UseCaseUpserted {
                use_case: use_case.clone(),
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(use_case))
}

/// `DELETE /v1/integrations/{id}/use-cases/{useCaseId}`
pub async fn delete(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (integration_id, use_case_id) = path.into_inner();
    let _guard = state.config.exclusive().await;
    let config = state.view().snapshot();
    if config
        .integration(&caller.org_id, &integration_id)
        .is_none()
    {
        return Err(integration_missing(&integration_id));
    }
    if config
        .use_case(&caller.org_id, &integration_id, &use_case_id)
        .is_none()
    {
        return Err(use_case_missing(&use_case_id));
    }
    state
        .record(
            &caller,
            ConfigChange::UseCaseDeleted {
                integration_id,
                use_case_id: use_case_id.clone(),
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({"message": format!("use case {use_case_id} deleted")})))
}

/// Entries per page of a use case's history.
const HISTORY_PAGE: usize = 25;

/// The query of `GET …/history`.
#[derive(Debug, serde::Deserialize)]
pub struct HistoryQuery {
    pub cursor: Option<String>,
}

/// `GET /v1/integrations/{id}/use-cases/{useCaseId}/history?cursor=`: earlier versions of the
/// use case, newest first, projected from the configuration log.
pub async fn history(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let (integration_id, use_case_id) = path.into_inner();
    let skip = match &query.cursor {
        None => 0,
        Some(cursor) => cursor
            .strip_prefix("h")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::bad_request(format!("cursor {cursor:?} is not valid")))?,
    };
    let config = state.view().snapshot();
    if config
        .integration(&caller.org_id, &integration_id)
        .is_none()
    {
        return Err(integration_missing(&integration_id));
    }
    if config
        .use_case(&caller.org_id, &integration_id, &use_case_id)
        .is_none()
    {
        return Err(use_case_missing(&use_case_id));
    }
    let versions = config.use_case_history(&caller.org_id, &use_case_id);
    let history: Vec<Value> = versions
        .iter()
        .skip(skip)
        .take(HISTORY_PAGE)
        .map(|version| {
            let u = &version.use_case;
            let mut entry = json!({
                "id": erp_schemas::ids::derived_uuid(&[&u.id, &version.revision.to_string()]),
                "useCaseId": u.id,
                "integrationId": u.integration_id,
                "name": u.name,
                "enabled": u.enabled,
                "type": u.kind,
                "created_at": u.created_at,
                "updated_at": u.updated_at,
                "history_created_at": version.replaced_at,
            });
            if let Some(map) = entry.as_object_mut() {
                for (key, value) in [
                    ("slug", u.slug.clone().map(Value::String)),
                    ("configuration", u.configuration.clone()),
                    (
                        "change_description",
                        u.change_description.clone().map(Value::String),
                    ),
                    ("changed_by", u.changed_by.clone().map(Value::String)),
                ] {
                    if let Some(value) = value {
                        map.insert(key.into(), value);
                    }
                }
            }
            entry
        })
        .collect();
    let mut body = json!({"history": history});
    if skip + HISTORY_PAGE < versions.len() {
        body["next_cursor"] = json!(format!("h{}", skip + HISTORY_PAGE));
    }
    Ok(HttpResponse::Ok().json(body))
}
