//! Compiling an entity mapping: its mode, unique ids, scope, fields and pricing.

use serde_json::Value;

use crate::error::MappingError;
use crate::source::{UniqueIds, invalid};

use super::field::*;
use super::read::*;
use super::types::*;

pub(super) fn compile_entity(index: usize, raw: &Value) -> Result<CompiledEntity, MappingError> {
    let location = format!("entities[{index}]");
    let object = raw
        .as_object()
        .ok_or_else(|| invalid(&location, "must be an object"))?;
    let schema = required_text(object, &location, "entity_schema")?.to_owned();
    let location = format!("{location} ({schema})");
    crate::validation::declared_custom(object)
        .map_err(|_| invalid(&format!("{location}.custom_schema"), "must be a boolean"))?;
    let unique_ids = match object.get("unique_ids") {
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|id| {
                id.as_str().map(str::to_owned).ok_or_else(|| {
                    invalid(
                        &format!("{location}.unique_ids"),
                        "must be a list of attribute names",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(invalid(
                &location,
                "unique_ids is required (a list of attribute names)",
            ));
        }
    };
    let mode = match text(object, &location, "mode")? {
        None | Some("upsert") => EntityMode::Upsert,
        Some("delete") => EntityMode::Delete,
        Some("purge") => EntityMode::Purge,
        Some("upsert-prune-scope-purge") => EntityMode::UpsertPruneScopePurge,
        Some("upsert-prune-scope-delete") => EntityMode::UpsertPruneScopeDelete,
        Some(other) => {
            return Err(invalid(
                &format!("{location}.mode"),
                format!(
                    "unknown mode {other:?} (upsert, delete, purge, upsert-prune-scope-purge, upsert-prune-scope-delete)"
                ),
            ));
        }
    };
    let scope = match (mode.prune_deletion(), object.get("scope")) {
        (Some(_), Some(scope)) => Some(compile_scope(&format!("{location}.scope"), scope)?),
        (Some(_), None) => {
            return Err(invalid(
                &location,
                "scope is required for the upsert-prune-scope modes",
            ));
        }
        (None, _) => None,
    };
    let fields = match object.get("fields") {
        Some(Value::Array(fields)) => fields
            .iter()
            .enumerate()
            .map(|(i, field)| compile_field(&format!("{location}.fields[{i}]"), field))
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(invalid(
                &location,
                "fields is required (a list of field mappings)",
            ));
        }
    };
    let pricing = match object.get("pricing") {
        None | Some(Value::Null) => None,
        Some(Value::Object(pricing)) => {
            let here = format!("{location}.pricing");
            // Checked for syntax here; evaluated by the pricing step downstream.
            optional_expression(pricing, &here, "items_jsonata")?;
            Some(CompiledPricing {
                config: Value::Object(pricing.clone()),
                extract: optional_expression(pricing, &here, "jsonataExpression")?,
            })
        }
        Some(_) => return Err(invalid(&format!("{location}.pricing"), "must be an object")),
    };
    Ok(CompiledEntity {
        pre: optional_expression(object, &location, "jsonataExpression")?,
        enabled: condition(object, &location)?,
        location,
        schema,
        unique_ids,
        mode,
        scope,
        fields,
        pricing,
    })
}

pub(super) fn compile_scope(location: &str, raw: &Value) -> Result<PruneScope, MappingError> {
    let object = raw
        .as_object()
        .ok_or_else(|| invalid(location, "must be an object"))?;
    match text(object, location, "scope_mode")? {
        Some("relations") => Ok(PruneScope::Relations {
            schema: required_text(object, location, "schema")?.to_owned(),
            ids: UniqueIds::compile(location, object.get("unique_ids"), true)?,
        }),
        Some("query") => Ok(PruneScope::Query {
            query: UniqueIds::compile(
                &format!("{location}.query"),
                Some(object.get("query").unwrap_or(&Value::Null)),
                true,
            )
            .map_err(|_| invalid(location, "query mode needs a non-empty query list of {attribute, field|jsonataExpression|constant}"))?,
        }),
        Some(other) => Err(invalid(
            location,
            format!("unknown scope_mode {other:?} (relations, query)"),
        )),
        None => Err(invalid(location, "scope_mode is required (relations, query)")),
    }
}
