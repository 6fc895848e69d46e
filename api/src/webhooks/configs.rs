//! `/v1/webhooks/configs[/{configId}]` in the shape of epilot's Webhooks API. The signing secret
//! (`whsec_…`) is generated on create and returned in that response only.
//!
//! `auth`, custom headers, filters and the `jsonataExpression` transform are validated on save
//! (JSONata compiled) with the dispatcher's own parser, so what is accepted here is what the
//! dispatcher can deliver with. Secrets inside `auth` (`password`, `keyValue`, `clientSecret`)
//! are never answered: they read as `"********"`. On update, epilot's rule applies to each of
//! them: omitted (or sent back as `"********"`) keeps the stored value, `null` clears it, a
//! string replaces it.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use erp_schemas::config::{ConfigChange, RetryPolicy, WebhookEndpoint};
use erp_schemas::timestamp::now_rfc3339;
use erp_webhooks::endpoint::{self, EndpointConfig};
use erp_webhooks::signing;

use crate::state::ApiState;
use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{kind, object, opt_bool, opt_string, read_json, req_string};

/// `WebhookConfig` fields stored verbatim. `auth`, `filter`, `filterConditions`,
/// `payloadConfiguration.custom_headers`, `jsonataExpression` and our extensions `ordering`,
/// `rateLimit` and `batch` are validated by [`settle`] and used by the dispatcher; the others are
/// kept for round trips.
const KEPT: [&str; 16] = [
    "eventVersion",
    "auth",
    "filter",
    "filterConditions",
    "payloadConfiguration",
    "enableStaticIP",
    "protected",
    "secureProxy",
    "status",
    "jsonataExpression",
    "deliveryMode",
    "multipartConfig",
    "_manifest",
    "ordering",
    "rateLimit",
    "batch",
];

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"];

/// The validated fields of a `WebhookConfig` body.
struct Fields {
    name: String,
    event_name: String,
    url: Option<String>,
    http_method: String,
    enabled: bool,
    retry_policy: RetryPolicy,
    extra: Map<String, Value>,
}

fn fields(body: &Value) -> Result<Fields, ApiError> {
    let map = object(body, "request body")?;
    let name = req_string(map, "", "name", 1, 255)?.to_owned();
    let event_name = req_string(map, "", "eventName", 1, 255)?.to_owned();
    let url = opt_string(map, "", "url", 1, 2048)?.map(str::to_owned);
    // A url with `{{env.*}}` references is checked when it is resolved, at send time.
    if let Some(url) = url
        .as_ref()
        .filter(|u| !erp_runtime::environment::has_reference(u))
    {
        match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "url {url:?} must be an absolute http or https URL"
                )));
            }
        }
    }
    let http_method = opt_string(map, "", "httpMethod", 1, 16)?
        .unwrap_or("POST")
        .to_owned();
    if !METHODS.contains(&http_method.as_str()) {
        return Err(ApiError::bad_request(format!(
            "httpMethod must be one of {}, got {http_method:?}",
            METHODS.join(", ")
        )));
    }
    let enabled = opt_bool(map, "", "enabled")?.unwrap_or(true);
    let retry_policy = match map.get("retryPolicy") {
        None | Some(Value::Null) => RetryPolicy::default(),
        Some(value @ Value::Object(_)) => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Raw {
                enabled: bool,
                max_attempts: Option<u32>,
            }
            let raw: Raw = serde_json::from_value(value.clone())
                .map_err(|e| ApiError::bad_request(format!("retryPolicy is not valid: {e}")))?;
            let max_attempts = raw.max_attempts.unwrap_or(3);
            if !(1..=5).contains(&max_attempts) {
                return Err(ApiError::bad_request(format!(
                    "retryPolicy.maxAttempts must be 1 to 5, got {max_attempts}"
                )));
            }
            RetryPolicy {
                enabled: raw.enabled,
                max_attempts,
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "retryPolicy must be an object, not {}",
                kind(other)
            )));
        }
    };
    let extra = KEPT
        .iter()
        .filter_map(|key| map.get(*key).map(|v| ((*key).to_owned(), v.clone())))
        .collect();
    Ok(Fields {
        name,
        event_name,
        url,
        http_method,
        enabled,
        retry_policy,
        extra,
    })
}

/// Applies the update rule for secrets (against `stored`, or nothing on create) and validates
/// the delivery configuration: a 400 naming the field when the dispatcher could not use it.
fn settle(
    extra: &mut Map<String, Value>,
    stored: Option<&Map<String, Value>>,
) -> Result<(), ApiError> {
    endpoint::keep_secrets(extra, stored.unwrap_or(&Map::new()));
    EndpointConfig::parse(extra)
        .map(|_| ())
        .map_err(|error| ApiError::bad_request(error.to_string()))
}

/// An endpoint as the API shows it: the secrets inside `auth` masked.
fn public(webhook: &WebhookEndpoint) -> WebhookEndpoint {
    let mut shown = webhook.clone();
    endpoint::mask_secrets(&mut shown.extra);
    shown
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "WEBHOOK_NOT_FOUND",
        format!("webhook config {id} not found"),
    )
}

/// `GET /v1/webhooks/configs[?eventName=]`
pub async fn list(
    state: web::Data<ApiState>,
    caller: Caller,
    query: web::Query<Map<String, Value>>,
) -> HttpResponse {
    let config = state.view().snapshot();
    let event_name = query.get("eventName").and_then(Value::as_str);
    let configs: Vec<WebhookEndpoint> = config
        .webhooks(&caller.org_id)
        .into_iter()
        .map(|entry| &entry.webhook)
        .filter(|w| event_name.is_none_or(|name| w.event_name == name))
        .map(public)
        .collect();
    HttpResponse::Ok().json(configs)
}

/// `GET /v1/webhooks/configured-events`: the events an endpoint can subscribe to, as
/// `[{eventName, eventLabel}]` in epilot's `event_<name>` form — the core events the pipeline
/// emits (`InboundEventMapped`), the platform events of the core event catalog (and of
/// `--core-event-schemas`), and any other name an endpoint of the organisation subscribes to.
pub async fn configured_events(state: web::Data<ApiState>, caller: Caller) -> HttpResponse {
    let mut names = std::collections::BTreeSet::new();
    names.insert(format!(
        "event_{}",
        erp_schemas::core_event::INBOUND_EVENT_MAPPED
    ));
    if let Ok(catalog) = erp_schemas::catalog::try_events() {
        names.extend(catalog.names().map(|n| format!("event_{n}")));
    }
    if let Some(schemas) = &state.event_schemas {
        names.extend(schemas.names().into_iter().map(|n| format!("event_{n}")));
    }
    let config = state.view().snapshot();
    names.extend(
        config
            .webhooks(&caller.org_id)
            .into_iter()
            .map(|entry| entry.webhook.event_name.clone()),
    );
    let entries: Vec<Value> = names
        .into_iter()
        .map(|name| {
            let label = name.strip_prefix("event_").unwrap_or(&name).to_owned();
            json!({"eventName": name, "eventLabel": label})
        })
        .collect();
    HttpResponse::Ok().json(entries)
}

/// `POST /v1/webhooks/configs`
pub async fn create(
    state: web::Data<ApiState>,
    caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(body, state.body_limit).await?;
    let mut fields = fields(&body)?;
    settle(&mut fields.extra, None)?;
    let now = now_rfc3339();
    let webhook = WebhookEndpoint {
        id: uuid::Uuid::new_v4().to_string(),
        name: fields.name,
        event_name: fields.event_name,
        url: fields.url,
        http_method: fields.http_method,
        enabled: fields.enabled,
        retry_policy: Some(fields.retry_policy),
        creation_time: now.clone(),
        updated_time: now.clone(),
        extra: fields.extra,
    };
    let secret = signing::new_secret();
    state
        .record(
            &caller,
            ConfigChange::WebhookUpserted {
                webhook: webhook.clone(),
                signing_secret: secret.clone(),
                previous_secrets: Vec::new(),
            },
        )
        .await?;
    let mut response = serde_json::to_value(public(&webhook))
        .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?;
    if let Some(map) = response.as_object_mut() {
        map.insert("signingSecret".into(), json!(secret));
    }
    Ok(HttpResponse::Created().json(response))
}

/// `GET /v1/webhooks/configs/{configId}`
pub async fn get(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let config = state.view().snapshot();
    let entry = config
        .webhook(&caller.org_id, &id)
        .ok_or_else(|| not_found(&id))?;
    Ok(HttpResponse::Ok().json(public(&entry.webhook)))
}

/// `PUT /v1/webhooks/configs/{configId}`: replaces the configuration; id, secret and creation
/// time stay. An omitted `retryPolicy` keeps the stored one, and so does an omitted (or masked)
/// secret inside `auth`.
pub async fn update(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let body = read_json(body, state.body_limit).await?;
    let mut fields = fields(&body)?;
    let retry_given = body.get("retryPolicy").is_some_and(|v| !v.is_null());
    let _guard = state.config.exclusive().await;
    let current = state
        .view()
        .snapshot()
        .webhook(&caller.org_id, &id)
        .cloned()
        .ok_or_else(|| not_found(&id))?;
    settle(&mut fields.extra, Some(&current.webhook.extra))?;
    let now = now_rfc3339();
    let webhook = WebhookEndpoint {
        id: id.clone(),
        name: fields.name,
        event_name: fields.event_name,
        url: fields.url,
        http_method: fields.http_method,
        enabled: fields.enabled,
        retry_policy: if retry_given {
            Some(fields.retry_policy)
        } else {
            current.webhook.retry_policy
        },
        creation_time: current.webhook.creation_time.clone(),
        updated_time: now.clone(),
        extra: fields.extra,
    };
    state
        .record(
            &caller,
            ConfigChange::WebhookUpserted {
                webhook: webhook.clone(),
                signing_secret: current.signing_secret,
                previous_secrets: current.previous_secrets,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(public(&webhook)))
}

/// `DELETE /v1/webhooks/configs/{configId}`
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
        .webhook(&caller.org_id, &id)
        .is_none()
    {
        return Err(not_found(&id));
    }
    state
        .record(&caller, ConfigChange::WebhookDeleted { webhook_id: id })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v1/webhooks/.well-known/public-key?orgId=`: the public key receivers check the `v1a`
/// signatures of that organisation's deliveries with (each organisation has its own key,
/// derived from the deployment's). Public, like any public key: no token needed. Without
/// `orgId` (epilot requires it; older clients of ours omit it) the deployment admin's
/// organisation is meant. Any organisation id is answered alike, so the route tells nothing
/// about which organisations exist.
pub async fn public_key(
    state: web::Data<ApiState>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let org_id = query
        .get("orgId")
        .map_or(state.org_id.as_str(), String::as_str);
    if org_id.is_empty() || org_id.len() > MAX_ORG_ID_LEN {
        return Err(ApiError::bad_request_code(
            "INVALID_ORG_ID",
            format!("orgId must be 1 to {MAX_ORG_ID_LEN} characters"),
        ));
    }
    let Some(keys) = &state.signing_keys else {
        return Err(ApiError::not_found(
            "NO_SIGNING_KEY",
            "no signing key is configured (--signing-key-file)",
        ));
    };
    let key = keys
        .for_org(org_id)
        .map_err(|error| ApiError::internal("SIGNING_KEY_UNAVAILABLE", error.to_string()))?;
    Ok(HttpResponse::Ok().json(json!({
        "public_key": key.public_key_pem(),
        "algorithm": "ed25519",
        "issuer": "erp-toolkit",
    })))
}

/// The longest `orgId` the public-key route derives a key for.
const MAX_ORG_ID_LEN: usize = 256;

/// The longest grace period of a secret rotation, in hours.
const MAX_GRACE_HOURS: i64 = 7 * 24;

/// `POST /v1/webhooks/configs/{configId}/rotate-secret {grace_period_hours?}` (an extension of
/// epilot's API): a new signing secret, shown once. Until the grace period (default 24 h) ends,
/// deliveries carry a `v1` signature with the old secret too, so a receiver can switch without
/// rejecting a single delivery.
pub async fn rotate_secret(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    // The body is optional; when there is one it must be a JSON object.
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request_code(
                "INVALID_JSON",
                format!("request body is not valid JSON: {e}"),
            )
        })?
    };
    object(&body, "request body")?;
    let grace_hours = match body.get("grace_period_hours") {
        None | Some(Value::Null) => 24,
        Some(value) => value
            .as_i64()
            .filter(|h| (0..=MAX_GRACE_HOURS).contains(h))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "grace_period_hours must be an integer from 0 to {MAX_GRACE_HOURS}"
                ))
            })?,
    };
    let _guard = state.config.exclusive().await;
    let current = state
        .view()
        .snapshot()
        .webhook(&caller.org_id, &id)
        .cloned()
        .ok_or_else(|| not_found(&id))?;
    let now_ms = erp_schemas::timestamp::now_millis();
    let valid_until = now_ms + grace_hours * 3_600_000;
    let mut previous: Vec<erp_schemas::config::PreviousSecret> = current
        .previous_secrets
        .into_iter()
        .filter(|p| p.valid_until > now_ms)
        .collect();
    if grace_hours > 0 {
        previous.push(erp_schemas::config::PreviousSecret {
            secret: current.signing_secret,
            valid_until,
        });
    }
    let secret = signing::new_secret();
    let mut webhook = current.webhook;
    webhook.updated_time = now_rfc3339();
    state
        .record(
            &caller,
            ConfigChange::WebhookUpserted {
                webhook,
                signing_secret: secret.clone(),
                previous_secrets: previous,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "signingSecret": secret,
        "previousSecretValidUntil": (grace_hours > 0)
            .then(|| erp_schemas::timestamp::format_millis(valid_until)),
    })))
}
