//! Compiling a configuration: check it against the grammar (epilot spec §4.1) and parse every
//! JSONata expression once, naming the entity, field and key of anything wrong. The result is
//! shared by every event of the use-case version.

use serde_json::{Map, Value};

use crate::error::MappingError;
use crate::jsonata::Expression;
use crate::source::{Source, UniqueIds, compile_expression, invalid};

/// A configuration ready to map payloads.
#[derive(Debug, Clone)]
pub struct CompiledConfiguration {
    pub(super) entities: Vec<CompiledEntity>,
    pub(super) meter_readings: Vec<CompiledMeterReading>,
}

/// When something applies.
#[derive(Debug, Clone)]
pub(super) enum Condition {
    Always,
    Never,
    When(Expression),
}

/// Entity mapping modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EntityMode {
    Upsert,
    Delete,
    Purge,
    UpsertPruneScopePurge,
    UpsertPruneScopeDelete,
}

impl EntityMode {
    pub(super) fn reported(self) -> &'static str {
        match self {
            EntityMode::Delete => "delete",
            EntityMode::Purge => "purge",
            _ => "upsert",
        }
    }

    pub(super) fn prune_deletion(self) -> Option<&'static str> {
        match self {
            EntityMode::UpsertPruneScopePurge => Some("purge"),
            EntityMode::UpsertPruneScopeDelete => Some("delete"),
            _ => None,
        }
    }
}

/// How a prune scope is found.
#[derive(Debug, Clone)]
pub(super) enum PruneScope {
    Relations { schema: String, ids: UniqueIds },
    Query { query: UniqueIds },
}

/// One compiled entity mapping.
#[derive(Debug, Clone)]
pub struct CompiledEntity {
    pub(super) location: String,
    pub(super) schema: String,
    pub(super) unique_ids: Vec<String>,
    pub(super) pre: Option<Expression>,
    pub(super) enabled: Condition,
    pub(super) mode: EntityMode,
    pub(super) scope: Option<PruneScope>,
    pub(super) fields: Vec<CompiledField>,
    pub(super) pricing: Option<CompiledPricing>,
}

/// A `pricing` block: echoed with the data extracted for it.
#[derive(Debug, Clone)]
pub(super) struct CompiledPricing {
    pub(super) config: Value,
    pub(super) extract: Option<Expression>,
}

/// The use case a file proxy URL points at.
#[derive(Debug, Clone)]
pub(super) enum UseCaseRef {
    Slug(String),
    Id(String),
}

/// A relation item given in the configuration.
#[derive(Debug, Clone)]
pub(super) struct RelationItem {
    pub(super) schema: String,
    pub(super) tags: Option<Value>,
    pub(super) ids: UniqueIds,
}

/// A relation reference item given in the configuration.
#[derive(Debug, Clone)]
pub(super) struct RelationRefItem {
    pub(super) schema: String,
    pub(super) ids: UniqueIds,
    pub(super) path: String,
    pub(super) value_attribute: String,
    pub(super) value_operation: Option<String>,
    pub(super) value: Option<Source>,
}

/// What produces a field's value.
#[derive(Debug, Clone)]
pub(super) enum Producer {
    Value(Source),
    Relations {
        operation: String,
        items: Vec<RelationItem>,
        expression: Option<Expression>,
    },
    RelationRefs {
        operation: String,
        items: Vec<RelationRefItem>,
        expression: Option<Expression>,
    },
    FileProxyUrl {
        use_case: UseCaseRef,
        params: Vec<(String, Source)>,
    },
    PortalRef,
    EnvVarRef {
        key: String,
        default: Option<String>,
        expression: Option<Expression>,
    },
}

/// Repeatable attribute types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repeatable {
    Email,
    Phone,
}

impl Repeatable {
    pub(super) fn key(self) -> &'static str {
        match self {
            Repeatable::Email => "email",
            Repeatable::Phone => "phone",
        }
    }
}

/// One compiled field mapping.
#[derive(Debug, Clone)]
pub(super) struct CompiledField {
    pub(super) location: String,
    pub(super) attribute: String,
    pub(super) producer: Producer,
    pub(super) enabled: Condition,
    pub(super) repeatable: Option<Repeatable>,
    pub(super) tags: Option<Value>,
}

/// Meter reading modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadingMode {
    Upsert,
    Delete,
    UpsertPruneScope,
}

/// One compiled meter reading mapping.
#[derive(Debug, Clone)]
pub(super) struct CompiledMeterReading {
    pub(super) location: String,
    pub(super) pre: Option<Expression>,
    pub(super) mode: ReadingMode,
    pub(super) scope_source: Option<String>,
    pub(super) meter: UniqueIds,
    pub(super) counter: Option<UniqueIds>,
    pub(super) fields: Vec<CompiledField>,
}

/// Attributes every meter reading mapping must map.
pub const REQUIRED_READING_ATTRIBUTES: [&str; 4] = ["external_id", "timestamp", "source", "value"];

const OPERATIONS: [&str; 3] = ["_set", "_append", "_append_all"];

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
        })
    }

    /// The compiled entity mappings, in configuration order.
    pub fn entities(&self) -> &[CompiledEntity] {
        &self.entities
    }
}

fn list<'a>(
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

fn text<'a>(
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

fn required_text<'a>(
    object: &'a Map<String, Value>,
    location: &str,
    key: &str,
) -> Result<&'a str, MappingError> {
    text(object, location, key)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid(location, format!("{key} is required")))
}

fn optional_expression(
    object: &Map<String, Value>,
    location: &str,
    key: &str,
) -> Result<Option<Expression>, MappingError> {
    text(object, location, key)?
        .map(|source| compile_expression(&format!("{location}.{key}"), source))
        .transpose()
}

fn condition(object: &Map<String, Value>, location: &str) -> Result<Condition, MappingError> {
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

fn compile_entity(index: usize, raw: &Value) -> Result<CompiledEntity, MappingError> {
    let location = format!("entities[{index}]");
    let object = raw
        .as_object()
        .ok_or_else(|| invalid(&location, "must be an object"))?;
    let schema = required_text(object, &location, "entity_schema")?.to_owned();
    let location = format!("{location} ({schema})");
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

fn compile_scope(location: &str, raw: &Value) -> Result<PruneScope, MappingError> {
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

fn operation(object: &Map<String, Value>, location: &str) -> Result<String, MappingError> {
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

fn tags(object: &Map<String, Value>, location: &str) -> Result<Option<Value>, MappingError> {
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

fn compile_relations(location: &str, raw: &Value) -> Result<Producer, MappingError> {
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

fn compile_relation_refs(location: &str, raw: &Value) -> Result<Producer, MappingError> {
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

fn compile_file_proxy_url(location: &str, raw: &Value) -> Result<Producer, MappingError> {
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

fn compile_env_var_ref(location: &str, raw: &Value) -> Result<Producer, MappingError> {
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

fn compile_meter_reading(index: usize, raw: &Value) -> Result<CompiledMeterReading, MappingError> {
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
