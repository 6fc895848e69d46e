//! Reading request bodies as JSON with our own errors (size limit, malformed JSON), and small
//! validators that name the offending field.

use actix_web::web;
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Reads the body as a JSON value of at most `limit` bytes.
pub async fn read_json(payload: web::Payload, limit: usize) -> Result<Value, ApiError> {
    read_optional_json(payload, limit)
        .await?
        .ok_or_else(|| ApiError::bad_request_code("INVALID_JSON", "request body is empty"))
}

/// Reads the body as a JSON value of at most `limit` bytes; `None` for an empty body (for
/// endpoints whose body is optional).
pub async fn read_optional_json(
    mut payload: web::Payload,
    limit: usize,
) -> Result<Option<Value>, ApiError> {
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::too_large(format!(
                "request body exceeds the limit of {limit} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        ApiError::bad_request_code(
            "INVALID_JSON",
            format!("request body is not valid JSON: {e}"),
        )
    })
}

/// Refuses fields other than `allowed` (schemas with `additionalProperties: false`).
pub fn only_fields(map: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<(), ApiError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::bad_request(format!(
            "{path}{unknown} is not a known field (allowed: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The body as an object.
pub fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ApiError> {
    value
        .as_object()
        .ok_or_else(|| ApiError::bad_request(format!("{what} must be a JSON object")))
}

/// An optional string field with a length range.
pub fn opt_string<'a>(
    map: &'a Map<String, Value>,
    path: &str,
    key: &str,
    min: usize,
    max: usize,
) -> Result<Option<&'a str>, ApiError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => {
            let len = s.chars().count();
            if len < min || len > max {
                Err(ApiError::bad_request(format!(
                    "{path}{key} must be {min} to {max} characters long (is {len})"
                )))
            } else {
                Ok(Some(s))
            }
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "{path}{key} must be a string, not {}",
            kind(other)
        ))),
    }
}

/// A required string field with a length range.
pub fn req_string<'a>(
    map: &'a Map<String, Value>,
    path: &str,
    key: &str,
    min: usize,
    max: usize,
) -> Result<&'a str, ApiError> {
    opt_string(map, path, key, min, max)?
        .ok_or_else(|| ApiError::bad_request(format!("{path}{key} is required")))
}

/// An optional boolean field.
pub fn opt_bool(map: &Map<String, Value>, path: &str, key: &str) -> Result<Option<bool>, ApiError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::bad_request(format!(
            "{path}{key} must be a boolean, not {}",
            kind(other)
        ))),
    }
}

/// Whether `text` matches `^[a-z0-9][a-z0-9_-]*$` (epilot's slug pattern).
pub fn is_slug(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Whether `text` matches `^[a-zA-Z0-9_-]+$` (epilot's deduplication id pattern).
pub fn is_dedup_id(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The JSON type of a value, for messages (`a string`, `an object`, `null`).
pub use erp_schemas::error::json_kind as kind;

/// A required array of 1 to `max` strings (the ids of a replay request).
pub fn id_list(map: &Map<String, Value>, key: &str, max: usize) -> Result<Vec<String>, ApiError> {
    match map.get(key) {
        Some(Value::Array(ids)) if (1..=max).contains(&ids.len()) => ids
            .iter()
            .map(|id| {
                id.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::bad_request(format!("{key} must hold strings")))
            })
            .collect(),
        _ => Err(ApiError::bad_request(format!(
            "{key} must be an array of 1 to {max} ids"
        ))),
    }
}

/// A required UUID field, answered in canonical form (lower case, hyphenated).
pub fn uuid_field(map: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    match map.get(key) {
        Some(Value::String(text)) => uuid::Uuid::parse_str(text)
            .map(|id| id.to_string())
            .map_err(|_| ApiError::bad_request(format!("{key} must be a UUID, got {text:?}"))),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be a string, not {}",
            kind(other)
        ))),
        None => Err(ApiError::bad_request(format!("{key} is required"))),
    }
}

/// An optional RFC 3339 `date-time` field, in milliseconds since the epoch.
pub fn opt_date_ms(map: &Map<String, Value>, key: &str) -> Result<Option<i64>, ApiError> {
    match opt_string(map, "", key, 1, 64)? {
        None => Ok(None),
        Some(text) => erp_schemas::timestamp::parse_rfc3339(text)
            .map(|at| Some(erp_schemas::timestamp::millis_of(at)))
            .ok_or_else(|| ApiError::bad_request(format!("{key} must be an RFC 3339 date-time"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_and_dedup_patterns() {
        assert!(is_slug("customer-sync_2"));
        assert!(!is_slug("-customer"));
        assert!(!is_slug("Customer"));
        assert!(!is_slug(""));
        assert!(is_dedup_id("customer-C001-update_1"));
        assert!(!is_dedup_id("a b"));
        assert!(!is_dedup_id(""));
    }
}
