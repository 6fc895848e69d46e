//! `/v1/access-tokens`: the organisation's API tokens. This API is ours, not epilot's (epilot
//! manages access tokens in its own user service); the path and the `name` field follow epilot's
//! `POST /v1/access-tokens`, roles are named as in spec §2.1 / C5.
//!
//! A token's value is answered once, by the create call; the configuration log and every later
//! answer carry only its id, name, roles and hash (the hash never leaves the server either).

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use erp_schemas::config::{AccessToken, ConfigChange};
use erp_schemas::timestamp::now_rfc3339;

use crate::state::ApiState;
use erp_http::ApiError;
use erp_http::auth::{Caller, Permissions, new_token, token_hash};
use erp_http::body::{kind, object, only_fields, opt_string, read_json, req_string};

/// The API shape of a token: everything but the hash.
fn shown(token: &AccessToken) -> Value {
    json!({
        "id": token.id,
        "org_id": token.org_id,
        "name": token.name,
        "roles": token.roles,
        "created_at": token.created_at,
        "created_by": token.created_by,
    })
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "ACCESS_TOKEN_NOT_FOUND",
        format!("access token {id} not found"),
    )
}

/// Whether `text` can name an organisation: 1–64 of `[A-Za-z0-9_-]`.
fn is_org_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The organisation a deployment-admin call is about: `?org_id=` (admin only), else the
/// caller's.
fn target_org(caller: &Caller, asked: Option<&str>) -> Result<String, ApiError> {
    match asked {
        None => Ok(caller.org_id.clone()),
        Some(org) if org == caller.org_id => Ok(org.to_owned()),
        Some(_) if !caller.deployment_admin => Err(ApiError::forbidden(
            "only the deployment admin token acts for another organisation",
        )),
        Some(org) if is_org_id(org) => Ok(org.to_owned()),
        Some(org) => Err(ApiError::bad_request(format!(
            "org_id {org:?} must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -"
        ))),
    }
}

/// `POST /v1/access-tokens {name, roles, org_id?}` → 201 with the token value (shown once).
/// `org_id` other than the caller's (creating an organisation's first token) is for the
/// deployment admin only.
pub async fn create(
    state: web::Data<ApiState>,
    caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(body, state.body_limit).await?;
    let fields = object(&body, "the body")?;
    only_fields(fields, "", &["name", "roles", "org_id"])?;
    let name = req_string(fields, "", "name", 1, 128)?.to_owned();
    let org_id = target_org(&caller, opt_string(fields, "", "org_id", 1, 64)?)?;
    let roles = match fields.get("roles") {
        Some(Value::Array(roles)) if !roles.is_empty() => roles,
        Some(Value::Array(_)) | None => {
            return Err(ApiError::bad_request("roles must list at least one role"));
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "roles must be an array of role names, not {}",
                kind(other)
            )));
        }
    };
    let mut names: Vec<String> = Vec::with_capacity(roles.len());
    for role in roles {
        let Some(role) = role.as_str() else {
            return Err(ApiError::bad_request("roles must be strings"));
        };
        if Permissions::of_role(role).is_none() {
            return Err(ApiError::bad_request_code(
                "UNKNOWN_ROLE",
                format!(
                    "unknown role {role:?} (integration:view, integration:manage, \
                     integration:consume, integration:*, erp:read, erp:write, erp:events, \
                     erp:monitoring, erp:*, owner)"
                ),
            ));
        }
        if !names.iter().any(|n| n == role) {
            names.push(role.to_owned());
        }
    }
    let value = new_token();
    let token = AccessToken {
        id: uuid::Uuid::new_v4().to_string(),
        org_id: org_id.clone(),
        name,
        roles: names,
        hash: token_hash(&value),
        created_at: now_rfc3339(),
        created_by: Some(caller.actor.clone()),
    };
    state
        .record_in(
            &org_id,
            &caller,
            ConfigChange::TokenCreated {
                token: token.clone(),
            },
        )
        .await?;
    let mut answer = shown(&token);
    if let Some(map) = answer.as_object_mut() {
        map.insert("token".into(), json!(value));
    }
    Ok(HttpResponse::Created().json(answer))
}

/// `GET /v1/access-tokens[?org_id=]` → `{access_tokens: [...]}` without values or hashes.
pub async fn list(
    state: web::Data<ApiState>,
    caller: Caller,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let org_id = target_org(&caller, query.get("org_id").map(String::as_str))?;
    let config = state.view().snapshot();
    let tokens: Vec<Value> = config.tokens(&org_id).into_iter().map(shown).collect();
    Ok(HttpResponse::Ok().json(json!({"access_tokens": tokens})))
}

/// `DELETE /v1/access-tokens/{id}`: the token stops authenticating at once on this instance
/// (and on the others as soon as their view applies the change). A token of another
/// organisation is 404, except for the deployment admin.
pub async fn revoke(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let org_id = {
        let config = state.view().snapshot();
        let token = config
            .token(&id)
            .filter(|t| caller.deployment_admin || t.org_id == caller.org_id)
            .ok_or_else(|| not_found(&id))?;
        token.org_id.clone()
    };
    state
        .record_in(
            &org_id,
            &caller,
            ConfigChange::TokenRevoked {
                token_id: id.clone(),
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({"id": id, "revoked": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(admin: bool) -> Caller {
        Caller {
            org_id: "a".into(),
            actor: "t".into(),
            permissions: Permissions::ALL,
            deployment_admin: admin,
        }
    }

    #[test]
    fn only_the_deployment_admin_names_another_org() {
        assert_eq!(target_org(&caller(false), None).ok().as_deref(), Some("a"));
        assert_eq!(
            target_org(&caller(false), Some("a")).ok().as_deref(),
            Some("a")
        );
        assert_eq!(
            target_org(&caller(false), Some("b")).map_err(|e| e.code),
            Err("FORBIDDEN")
        );
        assert_eq!(
            target_org(&caller(true), Some("b")).ok().as_deref(),
            Some("b")
        );
        assert!(target_org(&caller(true), Some("b/../c")).is_err());
    }
}
