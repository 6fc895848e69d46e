//! Compiling a configuration: check it against the grammar (epilot spec §4.1) and parse every
//! JSONata expression once, naming the entity, field and key of anything wrong. The result is
//! shared by every event of the use-case version.

/// Compiling an entity mapping.
mod entity;
/// Compiling fields and their value producers.
mod field;
/// Reading the raw configuration with located errors.
mod read;
/// Compiling a meter-reading mapping.
mod readings;
/// The compiled forms the engine runs.
mod types;

use serde_json::Value;

use crate::error::MappingError;
use crate::source::invalid;

pub use types::*;

use entity::compile_entity;
use read::list;
use readings::compile_meter_reading;

impl CompiledConfiguration {
    /// Compiles an inbound use case's `configuration`.
    pub fn compile(configuration: &Value) -> Result<Self, MappingError> {
        let object = configuration
            .as_object()
            .ok_or_else(|| invalid("configuration", "must be an object"))?;
        let entities = list(object, "configuration", "entities")?
            .iter()
            .enumerate()
            .map(|(index, entity)| compile_entity(index, entity))
            .collect::<Result<Vec<_>, _>>()?;
        let meter_readings = list(object, "configuration", "meter_readings")?
            .iter()
            .enumerate()
            .map(|(index, reading)| compile_meter_reading(index, reading))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            entities,
            meter_readings,
            validation: crate::validation::level(object)?,
        })
    }

    /// What a violation of the core entity schemas does for this use case (`validation`).
    pub fn validation(&self) -> erp_schemas::catalog::ValidationLevel {
        self.validation
    }

    /// The compiled entity mappings, in configuration order.
    pub fn entities(&self) -> &[CompiledEntity] {
        &self.entities
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_entity_field_and_expression_at_fault() {
        let config = json!({"entities": [
            {"entity_schema": "contact", "unique_ids": ["customer_number"], "fields": [
                {"attribute": "customer_number", "field": "id"},
                {"attribute": "full_name", "jsonataExpression": "firstName & "}
            ]}
        ]});
        let text = CompiledConfiguration::compile(&config)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("entities[0] (contact).fields[1] (attribute \"full_name\")"),
            "{text}"
        );
        assert!(text.contains("firstName & "), "{text}");
    }

    #[test]
    fn reports_grammar_errors_with_location() {
        let cases = [
            (
                json!({"entities": [{"entity_schema": "contact", "fields": []}]}),
                "unique_ids is required",
            ),
            (
                json!({"entities": [{"entity_schema": "c", "unique_ids": [], "fields": [{"attribute": "a"}]}]}),
                "needs a value source",
            ),
            (
                json!({"entities": [{"entity_schema": "c", "unique_ids": [], "mode": "upsert-prune-scope-purge", "fields": []}]}),
                "scope is required",
            ),
            (
                json!({"entities": [{"entity_schema": "c", "unique_ids": [], "mode": "replace", "fields": []}]}),
                "unknown mode",
            ),
            (
                json!({"entities": [{"entity_schema": "c", "unique_ids": [], "fields": [{"attribute": "a", "relations": {"operation": "_merge", "items": []}}]}]}),
                "operation",
            ),
            (
                json!({"entities": [{"entity_schema": "c", "unique_ids": [], "fields": [{"attribute": "a", "file_proxy_url": {"params": {}}}]}]}),
                "use_case_slug",
            ),
            (
                json!({"entities": [{"entity_schema": "c", "unique_ids": [], "fields": [{"attribute": "a", "env_var_ref": {"key": "Bad Key"}}]}]}),
                "must match",
            ),
            (
                json!({"meter_readings": [{"meter": {"unique_ids": [{"attribute": "meter_number", "field": "m"}]},
                "fields": [{"attribute": "external_id", "field": "id"}, {"attribute": "value", "field": "v"}]}]}),
                "Meter readings configuration (item 0) is missing required field attributes: timestamp, source",
            ),
            (
                json!({"meter_readings": [{"meter": {"unique_ids": []}, "fields": [
                {"attribute": "external_id", "field": "id"}, {"attribute": "value", "field": "v"},
                {"attribute": "timestamp", "field": "t"}, {"attribute": "source", "constant": "ERP"}]}]}),
                "at least one",
            ),
        ];
        for (config, expected) in cases {
            let text = CompiledConfiguration::compile(&config)
                .unwrap_err()
                .to_string();
            assert!(text.contains(expected), "{expected:?} not in {text}");
        }
    }

    #[test]
    fn tolerates_unknown_keys() {
        let config = json!({"entities": [{"entity_schema": "contact", "unique_ids": ["a"],
            "condition": "legacy", "fields": [{"attribute": "a", "field": "a", "comment": "temporary"}]}],
            "x-note": "kept"});
        assert!(CompiledConfiguration::compile(&config).is_ok());
    }
}
