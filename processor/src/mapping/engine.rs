//! Mapping one payload (epilot spec §4.2): entity by entity in configuration order, each
//! optionally pre-processed and fanned out over an array, field by field.

use std::time::Duration;

use jsonata_core::value::JValue;
use serde_json::{Map, Value, json};

use super::compile::{CompiledConfiguration, CompiledEntity, CompiledField, Condition, Source};
use super::error::MappingError;
use super::result::{EntityUpdate, MappingResult};
use crate::jsonata::{Evaluation, Expression, to_json, to_jvalue};

/// Maps a parsed payload. Each JSONata evaluation is limited to `timeout`.
pub fn map_payload(
    configuration: &CompiledConfiguration,
    payload: &Value,
    timeout: Duration,
) -> Result<MappingResult, MappingError> {
    let root = to_jvalue(payload);
    let evaluation = Evaluation::new(&root, timeout);
    let mut result = MappingResult::default();
    for entity in &configuration.entities {
        map_entity(entity, &root, &evaluation, &mut result)?;
    }
    Ok(result)
}

fn run(
    evaluation: &Evaluation,
    location: &str,
    expression: &Expression,
    input: &JValue,
) -> Result<JValue, MappingError> {
    evaluation
        .evaluate(expression, input)
        .map_err(|error| MappingError::ExpressionFailed {
            location: location.to_owned(),
            expression: expression.source().to_owned(),
            error,
        })
}

fn holds(
    evaluation: &Evaluation,
    location: &str,
    condition: &Condition,
    input: &JValue,
) -> Result<bool, MappingError> {
    match condition {
        Condition::Always => Ok(true),
        Condition::Never => Ok(false),
        Condition::When(expression) => {
            let value = run(
                evaluation,
                &format!("{location}.enabled"),
                expression,
                input,
            )?;
            Ok(truthy(&value))
        }
    }
}

/// JSONata's `$boolean` semantics.
fn truthy(value: &JValue) -> bool {
    match value {
        JValue::Bool(b) => *b,
        JValue::Number(n) => *n != 0.0,
        JValue::String(s) => !s.is_empty(),
        JValue::Array(items) => items.iter().any(truthy),
        JValue::Object(map) => !map.is_empty(),
        _ => false,
    }
}

fn map_entity(
    entity: &CompiledEntity,
    root: &JValue,
    evaluation: &Evaluation,
    result: &mut MappingResult,
) -> Result<(), MappingError> {
    let data = match &entity.pre {
        Some(expression) => run(
            evaluation,
            &format!("{}.jsonataExpression", entity.location),
            expression,
            root,
        )?,
        None => root.clone(),
    };
    if data.is_undefined() {
        return Ok(());
    }
    // `enabled` sees the pre-processed data as a whole (e.g. `$count($) > 0`).
    if !holds(evaluation, &entity.location, &entity.enabled, &data)? {
        return Ok(());
    }
    let items: Vec<JValue> = match data.as_array() {
        Some(items) => items.clone(),
        None => vec![data],
    };
    for (item_index, item) in items.iter().enumerate() {
        let location = if entity.pre.is_some() {
            format!("{} item {item_index}", entity.location)
        } else {
            entity.location.clone()
        };
        let mut attributes = Map::new();
        for field in &entity.fields {
            if let Some(value) = field_value(field, item, evaluation, &entity.schema, result)? {
                attributes.insert(field.attribute.clone(), value);
            }
        }
        let mut unique_identifiers = Map::new();
        for attribute in &entity.unique_ids {
            match attributes.get(attribute) {
                Some(value) if !is_empty(value) => {
                    unique_identifiers.insert(attribute.clone(), value.clone());
                }
                _ => {
                    return Err(MappingError::MissingIdentifier {
                        location,
                        entity_schema: entity.schema.clone(),
                        attribute: attribute.clone(),
                    });
                }
            }
        }
        result.entity_updates.push(EntityUpdate {
            entity_slug: entity.schema.clone(),
            unique_identifiers,
            attributes,
            mode: entity.mode.as_update_mode().to_owned(),
            pricing: entity.pricing.clone(),
        });
    }
    Ok(())
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn field_value(
    field: &CompiledField,
    item: &JValue,
    evaluation: &Evaluation,
    schema: &str,
    result: &mut MappingResult,
) -> Result<Option<Value>, MappingError> {
    if !holds(evaluation, &field.location, &field.enabled, item)? {
        return Ok(None);
    }
    let value = match &field.source {
        Source::Constant(value) => Some(value.clone()),
        Source::Key(key) => item.get(key).and_then(to_json),
        Source::Expression(expression) => to_json(&run(
            evaluation,
            &format!("{}.jsonataExpression", field.location),
            expression,
            item,
        )?),
        Source::Path(expression) => to_json(&run(
            evaluation,
            &format!("{}.field", field.location),
            expression,
            item,
        )?),
        Source::NotYetSupported(what) => {
            result.warnings.push(json!({
                "entity_schema": schema,
                "field": field.attribute,
                "message": format!("{what} mappings are not supported by this version; attribute omitted"),
            }));
            None
        }
    };
    Ok(value.map(|value| match field.repeatable {
        Some(kind) => repeatable(kind, value, field.tags.as_deref()),
        None => value,
    }))
}

/// `_type: email|phone`: a scalar becomes `[{"email": v}]` (with `_tags` when configured); a
/// value that is already a list of items is kept as it is.
fn repeatable(kind: super::config::RepeatableType, value: Value, tags: Option<&[String]>) -> Value {
    match value {
        Value::Array(_) | Value::Null => value,
        scalar => {
            let mut item = Map::new();
            if let Some(tags) = tags {
                item.insert("_tags".into(), json!(tags));
            }
            item.insert(kind.key().into(), scalar);
            Value::Array(vec![Value::Object(item)])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(500);

    fn map(config: Value, payload: Value) -> Result<MappingResult, MappingError> {
        map_payload(&CompiledConfiguration::compile(&config)?, &payload, T)
    }

    #[test]
    fn maps_fields_by_key_path_expression_and_constant() {
        let result = map(
            json!({"entities": [{"entity_schema": "contact", "unique_ids": ["customer_number"], "fields": [
                {"attribute": "customer_number", "field": "customerId"},
                {"attribute": "street", "field": "$.address.street"},
                {"attribute": "full_name", "jsonataExpression": "firstName & ' ' & lastName"},
                {"attribute": "source", "constant": "SAP"},
                {"attribute": "email", "field": "email", "_type": "email"},
                {"attribute": "missing", "field": "nope"},
                {"attribute": "cleared", "constant": null}
            ]}]}),
            json!({"customerId": "C001", "firstName": "John", "lastName": "Doe",
                   "email": "john@example.com", "address": {"street": "Main"}}),
        )
        .expect("maps");
        let update = &result.entity_updates[0];
        assert_eq!(update.entity_slug, "contact");
        assert_eq!(update.mode, "upsert");
        assert_eq!(
            Value::Object(update.unique_identifiers.clone()),
            json!({"customer_number": "C001"})
        );
        assert_eq!(
            Value::Object(update.attributes.clone()),
            json!({"customer_number": "C001", "street": "Main", "full_name": "John Doe",
                   "source": "SAP", "email": [{"email": "john@example.com"}], "cleared": null})
        );
    }

    #[test]
    fn fans_out_over_arrays_with_root_access() {
        let result = map(
            json!({"entities": [{"entity_schema": "meter", "unique_ids": ["meter_number"],
                "jsonataExpression": "meters", "enabled": "$count($) > 0", "fields": [
                {"attribute": "meter_number", "field": "meterId"},
                {"attribute": "contract", "field": "$$.contractId"}
            ]}]}),
            json!({"contractId": "K1", "meters": [{"meterId": "M1"}, {"meterId": "M2"}]}),
        )
        .expect("maps");
        assert_eq!(result.entity_updates.len(), 2);
        assert_eq!(
            result.entity_updates[1].attributes["meter_number"],
            json!("M2")
        );
        assert_eq!(result.entity_updates[1].attributes["contract"], json!("K1"));
    }

    #[test]
    fn disabled_entities_and_fields_are_skipped() {
        let result = map(
            json!({"entities": [
                {"entity_schema": "a", "unique_ids": [], "enabled": false, "fields": [{"attribute": "x", "constant": 1}]},
                {"entity_schema": "b", "unique_ids": [], "fields": [
                    {"attribute": "x", "constant": 1, "enabled": "flag = true"},
                    {"attribute": "y", "jsonataExpression": "$error('never evaluated')", "enabled": false}
                ]}
            ]}),
            json!({"flag": false}),
        )
        .expect("maps");
        assert_eq!(result.entity_updates.len(), 1);
        assert!(result.entity_updates[0].attributes.is_empty());
    }

    #[test]
    fn empty_identifier_is_missing_identifier() {
        let error = map(
            json!({"entities": [{"entity_schema": "contact", "unique_ids": ["customer_number"],
                "fields": [{"attribute": "customer_number", "field": "id"}]}]}),
            json!({"id": ""}),
        )
        .unwrap_err();
        assert_eq!(error.code(), "MISSING_IDENTIFIER");
    }

    #[test]
    fn throwing_expression_is_an_error_with_its_code() {
        let error = map(
            json!({"entities": [{"entity_schema": "c", "unique_ids": [],
                "fields": [{"attribute": "x", "jsonataExpression": "$error('bad data')"}]}]}),
            json!({}),
        )
        .unwrap_err();
        assert_eq!(error.code(), "MAPPING_EXPRESSION_FAILED");
        assert!(error.to_string().contains("bad data"), "{error}");
    }
}
