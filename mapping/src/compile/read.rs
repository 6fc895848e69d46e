//! Reading the raw configuration: lists, texts, expressions and conditions, with errors that
//! name where they are.

use serde_json::{Map, Value};

use crate::error::MappingError;
use crate::jsonata::Expression;
use crate::source::{compile_expression, invalid};

use super::types::*;

pub(super) fn list<'a>(
    object: &'a Map<String, Value>,
    location: &str,
    key: &str,
) -> Result<&'a [Value], MappingError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(invalid(&format!("{location}.{key}"), "must be a list")),
    }
}

pub(super) fn text<'a>(
    object: &'a Map<String, Value>,
    location: &str,
    key: &str,
) -> Result<Option<&'a str>, MappingError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(&format!("{location}.{key}"), "must be a string")),
    }
}

pub(super) fn required_text<'a>(
    object: &'a Map<String, Value>,
    location: &str,
    key: &str,
) -> Result<&'a str, MappingError> {
    text(object, location, key)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid(location, format!("{key} is required")))
}

pub(super) fn optional_expression(
    object: &Map<String, Value>,
    location: &str,
    key: &str,
) -> Result<Option<Expression>, MappingError> {
    text(object, location, key)?
        .map(|source| compile_expression(&format!("{location}.{key}"), source))
        .transpose()
}

pub(super) fn condition(
    object: &Map<String, Value>,
    location: &str,
) -> Result<Condition, MappingError> {
    Ok(match object.get("enabled") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => Condition::Always,
        Some(Value::Bool(false)) => Condition::Never,
        Some(Value::String(source)) => {
            Condition::When(compile_expression(&format!("{location}.enabled"), source)?)
        }
        Some(_) => {
            return Err(invalid(
                &format!("{location}.enabled"),
                "must be a boolean or a JSONata expression",
            ));
        }
    })
}

pub(super) fn operation(
    object: &Map<String, Value>,
    location: &str,
) -> Result<String, MappingError> {
    // Required by the OpenAPI, defaulted to `_set` by the docs: accept both.
    let operation = text(object, location, "operation")?.unwrap_or("_set");
    if OPERATIONS.contains(&operation) {
        Ok(operation.to_owned())
    } else {
        Err(invalid(
            &format!("{location}.operation"),
            format!("must be one of _set, _append, _append_all, not {operation:?}"),
        ))
    }
}

pub(super) fn tags(
    object: &Map<String, Value>,
    location: &str,
) -> Result<Option<Value>, MappingError> {
    match object.get("_tags") {
        None | Some(Value::Null) => Ok(None),
        Some(tags @ Value::Array(items)) if items.iter().all(Value::is_string) => {
            Ok(Some(tags.clone()))
        }
        Some(_) => Err(invalid(
            &format!("{location}._tags"),
            "must be a list of strings",
        )),
    }
}
