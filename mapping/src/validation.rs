//! Mapping output against the core entity schemas (erp-toolkit's extension of epilot's inbound
//! configuration, docs/mapping.md): the use case's `validation` level (`off | warn | strict`,
//! default `warn`) and the entity mappings declared `custom_schema: true`, which target an entity
//! schema of the organisation's own and are checked by nobody.

use serde_json::Value;

use erp_schemas::catalog::{self, OutputViolation, ValidationLevel};

use crate::error::MappingError;
use crate::result::MappingResult;
use crate::source::invalid;

/// The key of the level in an inbound configuration.
pub const VALIDATION_KEY: &str = "validation";
/// The key on an entity mapping that declares its schema custom.
pub const CUSTOM_SCHEMA_KEY: &str = "custom_schema";

/// The `validation` level of an inbound configuration; absent or `null` is `warn`.
pub fn level(
    configuration: &serde_json::Map<String, Value>,
) -> Result<ValidationLevel, MappingError> {
    match configuration.get(VALIDATION_KEY) {
        None | Some(Value::Null) => Ok(ValidationLevel::default()),
        Some(Value::String(text)) => text
            .parse()
            .map_err(|message: String| invalid("configuration.validation", message)),
        Some(_) => Err(invalid(
            "configuration.validation",
            "must be \"off\", \"warn\" or \"strict\"",
        )),
    }
}

/// Whether an entity mapping declares its schema custom (`custom_schema: true`).
pub fn declared_custom(entity: &serde_json::Map<String, Value>) -> Result<bool, MappingError> {
    match entity.get(CUSTOM_SCHEMA_KEY) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(custom)) => Ok(*custom),
        Some(_) => Err(invalid(
            &format!("{CUSTOM_SCHEMA_KEY} of an entity mapping"),
            "must be a boolean",
        )),
    }
}

/// An entity mapping whose `entity_schema` is neither a core entity nor declared custom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSchema {
    /// The index of the mapping in `entities[]`.
    pub index: usize,
    /// The slug it targets.
    pub entity_schema: String,
}

impl std::fmt::Display for UnknownSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "entities[{}].entity_schema {:?} is not a core entity schema ({}); declare it with \"custom_schema\": true when it is one of the organisation's own",
            self.index,
            self.entity_schema,
            catalog::entities().slugs().collect::<Vec<_>>().join(", ")
        )
    }
}

/// The entity mappings of an inbound configuration that target an unknown entity schema (refused
/// when a use case is saved). Mappings that are not objects or have no slug are the grammar's
/// business, not this check's.
pub fn unknown_schemas(configuration: &Value) -> Vec<UnknownSchema> {
    let entities = catalog::entities();
    configuration
        .get("entities")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, entity)| {
            let entity = entity.as_object()?;
            let slug = entity.get("entity_schema")?.as_str()?;
            let custom = declared_custom(entity).unwrap_or(false);
            (!custom && !entities.is_core(slug)).then(|| UnknownSchema {
                index,
                entity_schema: slug.to_owned(),
            })
        })
        .collect()
}

/// The violations of a mapping result against the core entity schemas (none at `off`). Updates of
/// schemas outside the catalog (custom ones) are not checked.
pub fn check(level: ValidationLevel, result: &MappingResult) -> Vec<OutputViolation> {
    if level == ValidationLevel::Off {
        return Vec::new();
    }
    match serde_json::to_value(result) {
        Ok(value) => catalog::check_mapping_output(&value),
        // A result is plain JSON values; it always serialises.
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn levels_default_to_warn_and_refuse_other_values() {
        let config = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(level(&config(json!({}))), Ok(ValidationLevel::Warn));
        assert_eq!(
            level(&config(json!({"validation": "strict"}))),
            Ok(ValidationLevel::Strict)
        );
        let error = level(&config(json!({"validation": "loud"}))).expect_err("refused");
        assert!(
            error.to_string().contains("configuration.validation"),
            "{error}"
        );
        assert!(level(&config(json!({"validation": true}))).is_err());
    }

    #[test]
    fn unknown_schemas_are_named_unless_declared_custom() {
        let configuration = json!({"entities": [
            {"entity_schema": "contact"},
            {"entity_schema": "opportunity"},
            {"entity_schema": "solar_plant", "custom_schema": true},
            {"entity_schema": "meter_reading"},
        ]});
        let unknown = unknown_schemas(&configuration);
        assert_eq!(
            unknown
                .iter()
                .map(|u| (u.index, u.entity_schema.as_str()))
                .collect::<Vec<_>>(),
            [(1, "opportunity"), (3, "meter_reading")]
        );
        assert!(unknown[0].to_string().contains("\"opportunity\""));
    }
}
