//! Compiling a configuration: check it against the grammar and parse every JSONata expression
//! once, naming the entity, field and key of anything wrong. The result is shared by every
//! event of the use-case version.

use serde_json::Value;

use super::config::{
    Enabled, EntityMapping, FieldMapping, InboundConfiguration, Mode, RepeatableType,
};
use super::error::MappingError;
use crate::jsonata::Expression;

/// A configuration ready to map payloads.
#[derive(Debug, Clone)]
pub struct CompiledConfiguration {
    pub(super) entities: Vec<CompiledEntity>,
}

/// One compiled entity mapping.
#[derive(Debug, Clone)]
pub struct CompiledEntity {
    pub(super) location: String,
    pub(super) schema: String,
    pub(super) unique_ids: Vec<String>,
    pub(super) pre: Option<Expression>,
    pub(super) enabled: Condition,
    pub(super) mode: Mode,
    pub(super) fields: Vec<CompiledField>,
    pub(super) pricing: Option<Value>,
}

/// When something applies.
#[derive(Debug, Clone)]
pub(super) enum Condition {
    Always,
    Never,
    When(Expression),
}

/// Where a field's value comes from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    Constant(Value),
    Expression(Expression),
    /// A plain key of the current item.
    Key(String),
    /// A `$`-path (`$.address.street`, `$$.readingDate`), evaluated as JSONata.
    Path(Expression),
    /// A producer this version does not map yet: reported as a warning, attribute omitted.
    NotYetSupported(&'static str),
}

/// One compiled field mapping.
#[derive(Debug, Clone)]
pub(super) struct CompiledField {
    pub(super) location: String,
    pub(super) attribute: String,
    pub(super) source: Source,
    pub(super) enabled: Condition,
    pub(super) repeatable: Option<RepeatableType>,
    pub(super) tags: Option<Vec<String>>,
}

impl CompiledConfiguration {
    /// Compiles an inbound use case's `configuration`.
    pub fn compile(configuration: &Value) -> Result<Self, MappingError> {
        if !configuration.is_object() {
            return Err(invalid("configuration", "must be an object"));
        }
        let config: InboundConfiguration = serde_json::from_value(configuration.clone())
            .map_err(|e| invalid("configuration", &e.to_string()))?;
        let entities = config
            .entities
            .iter()
            .enumerate()
            .map(|(index, entity)| compile_entity(index, entity))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { entities })
    }

    /// The compiled entity mappings, in configuration order.
    pub fn entities(&self) -> &[CompiledEntity] {
        &self.entities
    }
}

fn invalid(location: &str, message: &str) -> MappingError {
    MappingError::InvalidConfiguration {
        location: location.to_owned(),
        message: message.to_owned(),
    }
}

fn expression(location: &str, source: &str) -> Result<Expression, MappingError> {
    Expression::compile(source).map_err(|error| MappingError::InvalidExpression {
        location: location.to_owned(),
        expression: source.to_owned(),
        error,
    })
}

fn condition(location: &str, enabled: &Option<Enabled>) -> Result<Condition, MappingError> {
    Ok(match enabled {
        None | Some(Enabled::Flag(true)) => Condition::Always,
        Some(Enabled::Flag(false)) => Condition::Never,
        Some(Enabled::Expression(source)) => Condition::When(expression(location, source)?),
    })
}

fn compile_entity(index: usize, raw: &Value) -> Result<CompiledEntity, MappingError> {
    let location = format!("entities[{index}]");
    let entity: EntityMapping =
        serde_json::from_value(raw.clone()).map_err(|e| invalid(&location, &e.to_string()))?;
    if entity.entity_schema.trim().is_empty() {
        return Err(invalid(&location, "entity_schema must not be empty"));
    }
    let location = format!("{location} ({})", entity.entity_schema);
    let pre = entity
        .jsonata_expression
        .as_deref()
        .map(|source| expression(&format!("{location}.jsonataExpression"), source))
        .transpose()?;
    let enabled = condition(&format!("{location}.enabled"), &entity.enabled)?;
    let fields = entity
        .fields
        .iter()
        .enumerate()
        .map(|(i, field)| compile_field(&format!("{location}.fields[{i}]"), field))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompiledEntity {
        location,
        schema: entity.entity_schema,
        unique_ids: entity.unique_ids,
        pre,
        enabled,
        mode: entity.mode,
        fields,
        pricing: entity.pricing,
    })
}

fn compile_field(location: &str, raw: &Value) -> Result<CompiledField, MappingError> {
    let field: FieldMapping =
        serde_json::from_value(raw.clone()).map_err(|e| invalid(location, &e.to_string()))?;
    if field.attribute.is_empty() {
        return Err(invalid(location, "attribute must not be empty"));
    }
    let location = format!("{location} (attribute \"{}\")", field.attribute);
    // Documented priority when several sources are given: constant, then jsonataExpression,
    // then field.
    let source = if let Some(constant) = field.constant {
        Source::Constant(constant)
    } else if let Some(source) = &field.jsonata_expression {
        Source::Expression(expression(
            &format!("{location}.jsonataExpression"),
            source,
        )?)
    } else if let Some(key) = &field.field {
        if key.starts_with('$') {
            Source::Path(expression(&format!("{location}.field"), key)?)
        } else {
            Source::Key(key.clone())
        }
    } else if field.relations.is_some() {
        Source::NotYetSupported("relations")
    } else if field.relation_refs.is_some() {
        Source::NotYetSupported("relation_refs")
    } else if field.file_proxy_url.is_some() {
        Source::NotYetSupported("file_proxy_url")
    } else if field.portal_ref.is_some() {
        Source::NotYetSupported("portal_ref")
    } else if field.env_var_ref.is_some() {
        Source::NotYetSupported("env_var_ref")
    } else {
        return Err(invalid(
            &location,
            "needs a value source: one of field, jsonataExpression, constant, relations, \
             relation_refs, file_proxy_url, portal_ref, env_var_ref",
        ));
    };
    let enabled = condition(&format!("{location}.enabled"), &field.enabled)?;
    Ok(CompiledField {
        location,
        attribute: field.attribute,
        source,
        enabled,
        repeatable: field.repeatable,
        tags: field.tags,
    })
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
        let error = CompiledConfiguration::compile(&config).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("entities[0] (contact).fields[1] (attribute \"full_name\")"),
            "{text}"
        );
        assert!(text.contains("firstName & "), "{text}");
    }

    #[test]
    fn reports_grammar_errors_with_location() {
        let config = json!({"entities": [{"entity_schema": "contact", "fields": []}]});
        let text = CompiledConfiguration::compile(&config)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("entities[0]") && text.contains("unique_ids"),
            "{text}"
        );
        let config = json!({"entities": [{"entity_schema": "c", "unique_ids": [], "fields": [{"attribute": "a"}]}]});
        let text = CompiledConfiguration::compile(&config)
            .unwrap_err()
            .to_string();
        assert!(text.contains("needs a value source"), "{text}");
    }

    #[test]
    fn tolerates_unknown_keys() {
        let config = json!({"entities": [{"entity_schema": "contact", "unique_ids": ["a"],
            "condition": "legacy", "fields": [{"attribute": "a", "field": "a", "comment": "temporary"}]}]});
        assert!(CompiledConfiguration::compile(&config).is_ok());
    }
}
