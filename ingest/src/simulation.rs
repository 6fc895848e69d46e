//! `POST /v2/erp/updates/mapping_simulation` and `POST /v1/erp/updates/mapping_simulation`: the
//! dry run mapping authors develop with. The same compiler and engine as the processor, without
//! integration context (file proxy URLs are skipped, environment variables read as missing,
//! unknown reading enums are warnings). 400 for a malformed request or a payload over the
//! payload limits (`PAYLOAD_LIMIT_EXCEEDED`), 422 for a configuration or payload that cannot be
//! mapped.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::Value;

use erp_mapping::payload;
use erp_mapping::{CompiledConfiguration, MappingContext, legacy, map_payload};
use erp_schemas::inbound::PayloadFormat;

use crate::state::IngestState;
use erp_http::ApiError;
use erp_http::Caller;
use erp_http::body::{kind, object, read_json};

/// `POST /v2/erp/updates/mapping_simulation`
pub async fn simulate_v2(
    state: web::Data<IngestState>,
    _caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(body, state.body_limit).await?;
    let map = object(&body, "request body")?;
    let configuration = match map.get("event_configuration") {
        Some(configuration @ Value::Object(_)) => configuration.clone(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "event_configuration must be an object, not {}",
                kind(other)
            )));
        }
        None => return Err(ApiError::bad_request("event_configuration is required")),
    };
    let (format, payload) = format_and_payload(map)?;
    simulate(&state, configuration, format, payload).await
}

/// `POST /v1/erp/updates/mapping_simulation`: the legacy v1.0 object mapping or the wrapped
/// v2.0 format, picked by `object_type`.
pub async fn simulate_v1(
    state: web::Data<IngestState>,
    _caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(body, state.body_limit).await?;
    let map = object(&body, "request body")?;
    let mapping = match map.get("mapping_configuration") {
        Some(mapping @ Value::Object(_)) => mapping,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "mapping_configuration must be an object, not {}",
                kind(other)
            )));
        }
        None => return Err(ApiError::bad_request("mapping_configuration is required")),
    };
    let object_type = map
        .get("object_type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("object_type is required (a string)"))?;
    let (format, payload) = format_and_payload(map)?;
    let configuration = legacy::configuration_for(mapping, object_type)
        .map_err(|error| ApiError::unprocessable("INVALID_CONFIGURATION", error.to_string()))?;
    simulate(&state, configuration, format, payload).await
}

fn format_and_payload(
    map: &serde_json::Map<String, Value>,
) -> Result<(PayloadFormat, Value), ApiError> {
    let format = match map.get("format") {
        None => PayloadFormat::Json,
        Some(Value::String(f)) if f == "json" => PayloadFormat::Json,
        Some(Value::String(f)) if f == "xml" => PayloadFormat::Xml,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format must be \"json\" or \"xml\", got {other}"
            )));
        }
    };
    match map.get("payload") {
        Some(payload @ (Value::String(_) | Value::Object(_))) => Ok((format, payload.clone())),
        Some(other) => Err(ApiError::bad_request(format!(
            "payload must be a string or an object, not {}",
            kind(other)
        ))),
        None => Err(ApiError::bad_request("payload is required")),
    }
}

async fn simulate(
    state: &IngestState,
    configuration: Value,
    format: PayloadFormat,
    payload: Value,
) -> Result<HttpResponse, ApiError> {
    let timeout: Duration = state.mapping_timeout;
    let limits = state.payload_limits;
    // The same limits as at the events endpoints, checked before anything is built: a payload
    // sent as a string is read by the converters below, which stop at the first limit passed.
    if let Value::Object(_) = &payload {
        let text = payload.to_string();
        erp_mapping::limits::check(PayloadFormat::Json, &text, &limits)
            .map_err(|exceeded| crate::limits::refused("payload", &exceeded))?;
    }
    // Compiling and mapping are CPU work: off the HTTP threads. A panic in the mapping code is
    // this request's 500, never the process's end.
    // On a thread with the mapping stack: values a mapping builds can nest deeper than any
    // payload, and are dropped recursively (see `erp_mapping::jsonata`).
    let outcome = web::block(move || {
        erp_mapping::jsonata::on_mapping_stack(move || {
            run_simulation(configuration, format, payload, timeout, &limits)
        })
        .unwrap_or_else(|_| {
            Err(ApiError::internal(
                "MAPPING_PANICKED",
                "the mapping failed internally on this configuration and payload",
            ))
        })
    })
    .await
    .map_err(|e| ApiError::internal("INTERNAL_ERROR", format!("simulation task failed: {e}")))??;
    Ok(HttpResponse::Ok().json(outcome))
}

fn run_simulation(
    configuration: Value,
    format: PayloadFormat,
    payload: Value,
    timeout: Duration,
    limits: &erp_schemas::limits::PayloadLimits,
) -> Result<erp_mapping::MappingResult, ApiError> {
    {
        let compiled = CompiledConfiguration::compile(&configuration)
            .map_err(|e| ApiError::unprocessable("INVALID_CONFIGURATION", e.to_string()))?;
        let parsed = match payload {
            Value::String(text) => payload::parse(format, &text, limits).map_err(|e| match e {
                erp_mapping::MappingError::PayloadLimit(exceeded) => {
                    crate::limits::refused("payload", &exceeded)
                }
                other => ApiError::unprocessable("INVALID_PAYLOAD", other.to_string()),
            })?,
            Value::Object(_) if format == PayloadFormat::Xml => {
                return Err(ApiError::bad_request(
                    "payload must be a string when format is \"xml\"",
                ));
            }
            object => object,
        };
        let mut result = map_payload(&compiled, &parsed, &MappingContext::simulation(timeout))
            .map_err(|e| ApiError::unprocessable(e.code(), e.to_string()))?;
        schema_warnings(&configuration, &compiled, &mut result);
        Ok(result)
    }
}

/// The simulation's answer to the schema checks, as `warnings[]` entries (a simulation never fails
/// on them, whatever the level, so the author sees every violation at once): each violation of
/// the core entity schemas (unless `validation` is `off`), each entity mapping whose schema is
/// neither core nor declared custom (saving the use case would refuse it).
fn schema_warnings(
    configuration: &Value,
    compiled: &CompiledConfiguration,
    result: &mut erp_mapping::MappingResult,
) {
    let violations = erp_mapping::validation::check(compiled.validation(), result);
    result
        .warnings
        .extend(violations.iter().map(|v| v.to_warning()));
    for unknown in erp_mapping::validation::unknown_schemas(configuration) {
        result.warnings.push(serde_json::json!({
            "entity_schema": unknown.entity_schema,
            "field": "entity_schema",
            "message": unknown.to_string(),
        }));
    }
}
