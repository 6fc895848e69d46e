//! The legacy formats of `POST /v1/erp/updates/mapping_simulation` (epilot spec §4.13): the v1.0
//! object mapping and the wrapped v2.0 format, both turned into the current configuration so one
//! engine maps everything.

use serde_json::{Map, Value, json};

use crate::error::MappingError;
use crate::source::invalid;

/// The current-format configuration for `object_type` of a v1.0 or wrapped v2.0 mapping.
pub fn configuration_for(
    mapping_configuration: &Value,
    object_type: &str,
) -> Result<Value, MappingError> {
    let root = mapping_configuration
        .as_object()
        .ok_or_else(|| invalid("mapping_configuration", "must be an object"))?;
    let mapping = root
        .get("mapping")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("mapping_configuration", "mapping is required"))?;
    match root.get("version").and_then(Value::as_str).unwrap_or("1.0") {
        "2.0" => mapping
            .get("events")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                invalid(
                    "mapping_configuration.mapping",
                    "events is required for version 2.0",
                )
            })?
            .get(object_type)
            .cloned()
            .ok_or_else(|| {
                invalid(
                    "mapping_configuration.mapping.events",
                    format!("has no event {object_type:?}"),
                )
            }),
        "1.0" => {
            let object = mapping
                .get("objects")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    invalid(
                        "mapping_configuration.mapping",
                        "objects is required for version 1.0",
                    )
                })?
                .get(object_type)
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    invalid(
                        "mapping_configuration.mapping.objects",
                        format!("has no object {object_type:?}"),
                    )
                })?;
            v1_object(object_type, object)
        }
        other => Err(invalid(
            "mapping_configuration.version",
            format!("must be 1.0 or 2.0, not {other:?}"),
        )),
    }
}

/// A v1.0 object: fields name their target entity; unique ids are given per entity, either as
/// local attribute names or as `{remote_key: local_attribute}`.
fn v1_object(object_type: &str, object: &Map<String, Value>) -> Result<Value, MappingError> {
    let location = format!("mapping.objects.{object_type}");
    let fields = object
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(&location, "fields is required"))?;
    let unique_ids = object.get("unique_ids").and_then(Value::as_object);
    let mut entities: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        let here = format!("{location}.fields[{i}]");
        let entity = field
            .get("entity")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&here, "entity is required"))?;
        let mut mapped = field
            .as_object()
            .cloned()
            .ok_or_else(|| invalid(&here, "must be an object"))?;
        mapped.remove("entity");
        if mapped.contains_key("field") && mapped.contains_key("jsonataExpression") {
            return Err(invalid(
                &here,
                "field and jsonataExpression are mutually exclusive in v1.0",
            ));
        }
        match entities.iter_mut().find(|(name, _)| name == entity) {
            Some((_, list)) => list.push(Value::Object(mapped)),
            None => entities.push((entity.to_owned(), vec![Value::Object(mapped)])),
        }
    }
    let entities: Vec<Value> = entities
        .into_iter()
        .map(|(entity, mut fields)| {
            let ids: Vec<String> = match unique_ids.and_then(|u| u.get(&entity)) {
                Some(Value::Array(locals)) => locals
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                Some(Value::Object(remote_to_local)) => remote_to_local
                    .iter()
                    .filter_map(|(remote, local)| {
                        let local = local.as_str()?;
                        let mapped = fields
                            .iter()
                            .any(|f| f.get("attribute").and_then(Value::as_str) == Some(local));
                        if !mapped {
                            fields.push(json!({"attribute": local, "field": remote}));
                        }
                        Some(local.to_owned())
                    })
                    .collect(),
                _ => Vec::new(),
            };
            json!({"entity_schema": entity, "unique_ids": ids, "fields": fields})
        })
        .collect();
    Ok(json!({"entities": entities}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_objects_become_entities_with_remote_unique_ids() {
        let config = json!({"version": "1.0", "mapping": {"objects": {"business_partner": {
            "unique_ids": {"contact": {"partner_id": "_id"}},
            "fields": [{"entity": "contact", "attribute": "first_name", "field": "firstName"},
                       {"entity": "contact", "attribute": "last_name", "jsonataExpression": "lastName"}]}}}});
        let converted = configuration_for(&config, "business_partner").expect("converts");
        assert_eq!(
            converted,
            json!({"entities": [{"entity_schema": "contact", "unique_ids": ["_id"], "fields": [
                {"attribute": "first_name", "field": "firstName"},
                {"attribute": "last_name", "jsonataExpression": "lastName"},
                {"attribute": "_id", "field": "partner_id"}]}]})
        );
        assert!(configuration_for(&config, "other").is_err());
    }

    #[test]
    fn wrapped_v2_picks_the_event() {
        let inner = json!({"entities": []});
        let config = json!({"version": "2.0", "mapping": {"events": {"bp": inner}}});
        assert_eq!(configuration_for(&config, "bp").expect("found"), inner);
    }
}
