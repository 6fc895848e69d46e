//! Compiling a field and its value producers: relations, relation references, file proxy URLs,
//! environment references.

use serde_json::Value;

use crate::error::MappingError;
use crate::source::{Source, UniqueIds, invalid};

use super::read::*;
use super::types::*;

pub(super) fn compile_relations(location: &str, raw: &Value) -> Result<Producer, MappingError> {
    let object = raw
        .as_object()
        .ok_or_else(|| invalid(location, "must be an object"))?;
    let operation = operation(object, location)?;
    let expression = optional_expression(object, location, "jsonataExpression")?;
    let items = list(object, location, "items")?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let here = format!("{location}.items[{i}]");
            let item = item
                .as_object()
                .ok_or_else(|| invalid(&here, "must be an object"))?;
            Ok(RelationItem {
                schema: required_text(item, &here, "entity_schema")?.to_owned(),
                tags: tags(item, &here)?,
                ids: UniqueIds::compile(&here, item.get("unique_ids"), true)?,
            })
        })
        .collect::<Result<Vec<_>, MappingError>>()?;
    if items.is_empty() && expression.is_none() {
        return Err(invalid(location, "needs items or a jsonataExpression"));
    }
    Ok(Producer::Relations {
        operation,
        items,
        expression,
    })
}

pub(super) fn compile_relation_refs(location: &str, raw: &Value) -> Result<Producer, MappingError> {
    let object = raw
        .as_object()
        .ok_or_else(|| invalid(location, "must be an object"))?;
    let operation = operation(object, location)?;
    let expression = optional_expression(object, location, "jsonataExpression")?;
    let items = list(object, location, "items")?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let here = format!("{location}.items[{i}]");
            let item = item
                .as_object()
                .ok_or_else(|| invalid(&here, "must be an object"))?;
            let value = item
                .get("value")
                .and_then(Value::as_object)
                .ok_or_else(|| invalid(&here, "value is required ({attribute, operation?, field|jsonataExpression|constant})"))?;
            let value_location = format!("{here}.value");
            let value_operation = text(value, &value_location, "operation")?.map(str::to_owned);
            if let Some(op) = &value_operation
                && !OPERATIONS.contains(&op.as_str())
            {
                return Err(invalid(&value_location, format!("operation must be one of _set, _append, _append_all, not {op:?}")));
            }
            Ok(RelationRefItem {
                schema: required_text(item, &here, "entity_schema")?.to_owned(),
                ids: UniqueIds::compile(&here, item.get("unique_ids"), true)?,
                path: required_text(item, &here, "path")?.to_owned(),
                value_attribute: required_text(value, &value_location, "attribute")?.to_owned(),
                value_operation,
                value: Source::compile(&value_location, value)?,
            })
        })
        .collect::<Result<Vec<_>, MappingError>>()?;
    if items.is_empty() && expression.is_none() {
        return Err(invalid(location, "needs items or a jsonataExpression"));
    }
    Ok(Producer::RelationRefs {
        operation,
        items,
        expression,
    })
}

pub(super) fn compile_file_proxy_url(
    location: &str,
    raw: &Value,
) -> Result<Producer, MappingError> {
    let object = raw
        .as_object()
        .ok_or_else(|| invalid(location, "must be an object"))?;
    let use_case = match (
        text(object, location, "use_case_slug")?,
        text(object, location, "use_case_id")?,
    ) {
        (Some(slug), None) => UseCaseRef::Slug(slug.to_owned()),
        (None, Some(id)) => UseCaseRef::Id(id.to_owned()),
        _ => {
            return Err(invalid(
                location,
                "exactly one of use_case_slug and use_case_id is required",
            ));
        }
    };
    let params = match object.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(params)) => params
            .iter()
            .map(|(name, param)| {
                let here = format!("{location}.params.{name}");
                let param = param
                    .as_object()
                    .ok_or_else(|| invalid(&here, "must be an object"))?;
                Ok((name.clone(), Source::require(&here, param)?))
            })
            .collect::<Result<Vec<_>, MappingError>>()?,
        Some(_) => return Err(invalid(&format!("{location}.params"), "must be an object")),
    };
    Ok(Producer::FileProxyUrl { use_case, params })
}

pub(super) fn compile_env_var_ref(location: &str, raw: &Value) -> Result<Producer, MappingError> {
    let object = raw
        .as_object()
        .ok_or_else(|| invalid(location, "must be an object"))?;
    let key = required_text(object, location, "key")?;
    let valid_key = key.len() <= 128
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if !valid_key {
        return Err(invalid(
            &format!("{location}.key"),
            format!("{key:?} must match ^[a-z0-9][a-z0-9_.-]{{0,127}}$"),
        ));
    }
    let expression = match text(object, location, "return")? {
        None | Some("value") => None,
        Some("jsonata") => Some(
            optional_expression(object, location, "jsonataExpression")?
                .ok_or_else(|| invalid(location, "return \"jsonata\" needs a jsonataExpression"))?,
        ),
        Some(other) => {
            return Err(invalid(
                &format!("{location}.return"),
                format!("must be value or jsonata, not {other:?}"),
            ));
        }
    };
    Ok(Producer::EnvVarRef {
        key: key.to_owned(),
        default: text(object, location, "default")?.map(str::to_owned),
        expression,
    })
}

pub(super) fn compile_field(location: &str, raw: &Value) -> Result<CompiledField, MappingError> {
    let object = raw
        .as_object()
        .ok_or_else(|| invalid(location, "must be an object"))?;
    let attribute = required_text(object, location, "attribute")?.to_owned();
    let location = format!("{location} (attribute \"{attribute}\")");
    // A special producer wins over a plain value source when both are (mistakenly) given.
    let producer = if let Some(raw) = object.get("relations") {
        compile_relations(&format!("{location}.relations"), raw)?
    } else if let Some(raw) = object.get("relation_refs") {
        compile_relation_refs(&format!("{location}.relation_refs"), raw)?
    } else if let Some(raw) = object.get("file_proxy_url") {
        compile_file_proxy_url(&format!("{location}.file_proxy_url"), raw)?
    } else if object.contains_key("portal_ref") {
        Producer::PortalRef
    } else if let Some(raw) = object.get("env_var_ref") {
        compile_env_var_ref(&format!("{location}.env_var_ref"), raw)?
    } else {
        Producer::Value(Source::compile(&location, object)?.ok_or_else(|| {
            invalid(
                &location,
                "needs a value source: one of field, jsonataExpression, constant, relations, \
                 relation_refs, file_proxy_url, portal_ref, env_var_ref",
            )
        })?)
    };
    let repeatable = match text(object, &location, "_type")? {
        None => None,
        Some("email") => Some(Repeatable::Email),
        Some("phone") => Some(Repeatable::Phone),
        Some(other) => {
            return Err(invalid(
                &format!("{location}._type"),
                format!("must be email or phone, not {other:?}"),
            ));
        }
    };
    Ok(CompiledField {
        enabled: condition(object, &location)?,
        tags: tags(object, &location)?,
        location,
        attribute,
        producer,
        repeatable,
    })
}
