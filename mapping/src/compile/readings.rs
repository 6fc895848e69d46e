//! Compiling a meter-reading mapping.

use serde_json::Value;

use crate::error::MappingError;
use crate::source::{UniqueIds, invalid};

use super::field::*;
use super::read::*;
use super::types::*;

pub(super) fn compile_meter_reading(
    index: usize,
    raw: &Value,
) -> Result<CompiledMeterReading, MappingError> {
    let location = format!("meter_readings[{index}]");
    let object = raw
        .as_object()
        .ok_or_else(|| invalid(&location, "must be an object"))?;
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
    let missing: Vec<&str> = REQUIRED_READING_ATTRIBUTES
        .iter()
        .copied()
        .filter(|required| !fields.iter().any(|f| f.attribute == *required))
        .collect();
    if !missing.is_empty() {
        // epilot's exact wording, so existing tooling recognises it.
        return Err(invalid(
            &location,
            format!(
                "Meter readings configuration (item {index}) is missing required field attributes: {}",
                missing.join(", ")
            ),
        ));
    }
    let mode = match text(object, &location, "mode")? {
        None | Some("upsert") => ReadingMode::Upsert,
        Some("delete") => ReadingMode::Delete,
        Some("upsert-prune-scope") => ReadingMode::UpsertPruneScope,
        Some(other) => {
            return Err(invalid(
                &format!("{location}.mode"),
                format!("unknown mode {other:?} (upsert, delete, upsert-prune-scope)"),
            ));
        }
    };
    match text(object, &location, "reading_matching")? {
        None | Some("external_id") | Some("strict-date") => {}
        Some(other) => {
            return Err(invalid(
                &format!("{location}.reading_matching"),
                format!("must be external_id or strict-date, not {other:?}"),
            ));
        }
    }
    let meter = object
        .get("meter")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(&location, "meter is required ({unique_ids: [...]})"))?;
    let meter = UniqueIds::compile(&format!("{location}.meter"), meter.get("unique_ids"), true)?;
    let counter = match object.get("meter_counter") {
        None | Some(Value::Null) => None,
        Some(Value::Object(counter)) => Some(UniqueIds::compile(
            &format!("{location}.meter_counter"),
            counter.get("unique_ids"),
            true,
        )?),
        Some(_) => {
            return Err(invalid(
                &format!("{location}.meter_counter"),
                "must be an object",
            ));
        }
    };
    let scope_source = object
        .get("scope")
        .and_then(|s| s.get("source"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(CompiledMeterReading {
        pre: optional_expression(object, &location, "jsonataExpression")?,
        location,
        mode,
        scope_source,
        meter,
        counter,
        fields,
    })
}
