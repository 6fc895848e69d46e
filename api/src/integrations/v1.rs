//! `/v1/integrations[/{id}]` (epilot spec §2.4.1).

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use erp_schemas::config::{ConfigChange, Integration};
use erp_schemas::timestamp::now_rfc3339;

use crate::state::ApiState;
use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{kind, object, opt_string, read_json};

/// The editable fields besides `name` and `description`, with the JSON type each must have.
const EDITABLE: [(&str, &str); 8] = [
    ("access_token_ids", "array"),
    ("app_ids", "array"),
    ("environment_config", "array"),
    ("settings", "object"),
    ("integration_type", "string"),
    ("connector_config", "object"),
    ("protected", "boolean"),
    ("_manifest", "array"),
];

fn type_matches(value: &Value, expected: &str) -> bool {
    match expected {
        "array" => value.is_array(),
        "object" => value.is_object(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        _ => false,
    }
}

/// The validated editable fields of a request body.
pub(crate) struct Editable {
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) extra: Map<String, Value>,
}

pub(crate) fn editable(body: &Value) -> Result<Editable, ApiError> {
    let map = object(body, "request body")?;
    let name = opt_string(map, "", "name", 1, 255)?.map(str::to_owned);
    let description = opt_string(map, "", "description", 0, 1000)?.map(str::to_owned);
    let mut extra = Map::new();
    for (key, expected) in EDITABLE {
        if let Some(value) = map.get(key) {
            if !type_matches(value, expected) {
                return Err(ApiError::bad_request(format!(
                    "{key} must be {} {expected}, not {}",
                    if expected == "array" || expected == "object" {
                        "an"
                    } else {
                        "a"
                    },
                    kind(value)
                )));
            }
            extra.insert(key.to_owned(), value.clone());
        }
    }
    if let Some(kind) = extra.get("integration_type").and_then(Value::as_str)
        && kind != "erp"
        && kind != "connector"
    {
        return Err(ApiError::bad_request(format!(
            "integration_type must be \"erp\" or \"connector\", got {kind:?}"
        )));
    }
    // The nested shapes (settings, connector_config, environment_config, …) are epilot's:
    // whatever is stored is answered again, and an answer must match the documented schema.
    crate::openapi::check("IntegrationEditableFields", &Value::Object(extra.clone()))
        .map_err(|e| ApiError::bad_request(format!("request body {e}")))?;
    Ok(Editable {
        name,
        description,
        extra,
    })
}

/// `GET /v1/integrations`
pub async fn list(state: web::Data<ApiState>, caller: Caller) -> HttpResponse {
    let config = state.view().snapshot();
    HttpResponse::Ok().json(json!({"integrations": config.integrations(&caller.org_id)}))
}

/// `POST /v1/integrations`
pub async fn create(
    state: web::Data<ApiState>,
    caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(body, state.body_limit).await?;
    let fields = editable(&body)?;
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
    state
        .record(
            &caller,
            ConfigChange::IntegrationUpserted {
                integration: integration.clone(),
            },
        )
        .await?;
    Ok(HttpResponse::Created().json(integration))
}

/// `GET /v1/integrations/{id}`
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
    Ok(HttpResponse::Ok().json(integration))
}

/// `PUT /v1/integrations/{id}`: the given editable fields replace the stored ones; fields not
/// given are kept.
pub async fn update(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let body = read_json(body, state.body_limit).await?;
    let fields = editable(&body)?;
    let _guard = state.config.exclusive().await;
    let mut integration = state
        .view()
        .snapshot()
        .integration(&caller.org_id, &id)
        .cloned()
        .ok_or_else(|| ApiError::integration_not_found(&id))?;
    if let Some(name) = fields.name {
        integration.name = name;
    }
    if fields.description.is_some() {
        integration.description = fields.description;
    }
    integration.extra.extend(fields.extra);
    let now = now_rfc3339();
    integration.updated_at = now.clone();
    state
        .record(
            &caller,
            ConfigChange::IntegrationUpserted {
                integration: integration.clone(),
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(integration))
}

/// `DELETE /v1/integrations/{id}`: removes the integration and all its use cases.
pub async fn delete(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let _guard = state.config.exclusive().await;
    if state
        .view()
        .snapshot()
        .integration(&caller.org_id, &id)
        .is_none()
    {
        return Err(ApiError::integration_not_found(&id));
    }
    state
        .record(
            &caller,
            ConfigChange::IntegrationDeleted {
                integration_id: id.clone(),
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({"message": format!("integration {id} deleted")})))
}
