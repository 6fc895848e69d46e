//! `/v1/environments[/{key}]`: the organisation's environment values, which `{{env.<key>}}`
//! references (webhook url, custom headers, auth secrets) and `env_var_ref` mappings read.
//!
//! Ours, not epilot's path: epilot keeps values in a separate, organisation-level Environments
//! API; integrations only declare what they need (`environment_config`). Values are
//! event-sourced in `erp.config`. A `SecretString` value is encrypted with the deployment's
//! secrets key before it is written (`erp_runtime::secrets`) and is answered as `"********"` by
//! every route; without a key file, this process refuses to store secrets (503).
//!
//! Declared `environment_config` entries with `required: true` that have no value are listed in
//! `GET /v1/environments` as `missing_required` (integration id and key); the API does not refuse
//! anything for them, because values are usually set after the integration is imported. A
//! reference to a missing value fails where it is used (a dead letter naming the variable).

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use erp_runtime::environment::secret_context;
use erp_schemas::config::valid_env_key;
use erp_schemas::config::{ConfigChange, EnvValueType};
use erp_schemas::timestamp::now_rfc3339;

use crate::state::ApiState;
use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{object, opt_string, read_json, req_string};

/// What a secret reads as.
pub const MASK: &str = "********";

/// Longest value accepted, in bytes.
const MAX_VALUE: usize = 64 * 1024;

fn type_name(value_type: EnvValueType) -> &'static str {
    match value_type {
        EnvValueType::String => "String",
        EnvValueType::SecretString => "SecretString",
    }
}

fn shown(key: &str, value_type: EnvValueType, stored: &str, updated_at: &str) -> Value {
    let value = match value_type {
        EnvValueType::String => stored,
        EnvValueType::SecretString => MASK,
    };
    json!({"key": key, "type": type_name(value_type), "value": value, "updated_at": updated_at})
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if valid_env_key(key) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "key {key:?} must match ^[a-z0-9][a-z0-9_.\\-]{{0,127}}$"
        )))
    }
}

/// `GET /v1/environments`
pub async fn list(state: web::Data<ApiState>, caller: Caller) -> HttpResponse {
    let config = state.view().snapshot();
    let values = config.environment(&caller.org_id);
    let environments: Vec<Value> = values
        .into_iter()
        .flatten()
        .map(|(key, entry)| shown(key, entry.value_type, &entry.stored, &entry.updated_at))
        .collect();
    let mut missing = Vec::new();
    for integration in config.integrations(&caller.org_id) {
        let declared = integration
            .extra
            .get("environment_config")
            .and_then(Value::as_array);
        for item in declared.into_iter().flatten() {
            let required = item.get("required").and_then(Value::as_bool) == Some(true);
            let Some(key) = item.get("key").and_then(Value::as_str) else {
                continue;
            };
            if required && !values.is_some_and(|v| v.contains_key(key)) {
                missing.push(json!({"integration_id": integration.id, "key": key}));
            }
        }
    }
    HttpResponse::Ok().json(json!({"environments": environments, "missing_required": missing}))
}

/// `PUT /v1/environments/{key}` with `{value, type?: String|SecretString}` (default `String`).
pub async fn put(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    check_key(&key)?;
    let body = read_json(body, state.body_limit).await?;
    let map = object(&body, "request body")?;
    let value = req_string(map, "", "value", 0, MAX_VALUE)?;
    let value_type = match opt_string(map, "", "type", 1, 32)? {
        None | Some("String") => EnvValueType::String,
        Some("SecretString") => EnvValueType::SecretString,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "type must be \"String\" or \"SecretString\", got {other:?}"
            )));
        }
    };
    let stored = match value_type {
        EnvValueType::String => value.to_owned(),
        EnvValueType::SecretString => {
            let keyring = state.view().secrets().ok_or_else(|| {
                ApiError::unavailable(
                    "SECRETS_KEY_MISSING",
                    "this deployment has no secrets key (--secrets-key-file): secrets cannot \
                     be stored",
                )
            })?;
            keyring
                .encrypt(value, &secret_context(&caller.org_id, &key))
                .map_err(|e| ApiError::internal("SECRET_ENCRYPTION_FAILED", e.to_string()))?
        }
    };
    let updated_at = now_rfc3339();
    let answer = shown(&key, value_type, &stored, &updated_at);
    state
        .record(
            &caller,
            ConfigChange::EnvironmentValueSet {
                key,
                value_type,
                value: stored,
                updated_at,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// `DELETE /v1/environments/{key}`
pub async fn delete(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    check_key(&key)?;
    let _guard = state.config.exclusive().await;
    let exists = state
        .view()
        .snapshot()
        .environment(&caller.org_id)
        .is_some_and(|values| values.contains_key(&key));
    if !exists {
        return Err(ApiError::not_found(
            "ENVIRONMENT_VALUE_NOT_FOUND",
            format!("environment variable {key} not found"),
        ));
    }
    state
        .record(
            &caller,
            ConfigChange::EnvironmentValueDeleted { key: key.clone() },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({"message": format!("environment variable {key} deleted")})))
}
