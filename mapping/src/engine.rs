//! Mapping one payload (epilot spec §4.2): entity mappings in configuration order, each
//! optionally pre-processed and fanned out over an array, field by field; then meter readings.

use std::time::Duration;

use jsonata_core::value::JValue;
use serde_json::{Map, Value, json};

use crate::compile::{
    CompiledConfiguration, CompiledEntity, CompiledField, CompiledMeterReading, Condition,
    Producer, PruneScope, RelationItem, RelationRefItem, UseCaseRef,
};
use crate::context::MappingContext;
use crate::error::MappingError;
use crate::jsonata::{Evaluation, to_json, to_jvalue};
use crate::readings;
use crate::result::{EntityUpdate, MappingResult};
use crate::run::{Run, items_of};
use crate::source::{UniqueIds, is_empty_identifier, run, truthy};

/// Maps a parsed payload.
pub fn map_payload(
    configuration: &CompiledConfiguration,
    payload: &Value,
    context: &MappingContext,
) -> Result<MappingResult, MappingError> {
    map_document(configuration, to_jvalue(payload), context)
}

/// Maps a payload already in the engine's value type (see [`crate::payload::parse_document`]):
/// the fast path, with no intermediate JSON tree.
pub fn map_document(
    configuration: &CompiledConfiguration,
    root: JValue,
    context: &MappingContext,
) -> Result<MappingResult, MappingError> {
    let run = Run {
        evaluation: Evaluation::new(&root, context.timeout),
        context,
        root,
    };
    let mut result = MappingResult::default();
    for entity in &configuration.entities {
        run.entity(entity, &mut result)?;
    }
    for reading in &configuration.meter_readings {
        run.meter_reading(reading, &mut result)?;
    }
    Ok(result)
}

fn warning(schema: &str, field: &str, message: impl Into<String>) -> Value {
    json!({"entity_schema": schema, "field": field, "message": message.into()})
}

impl Run<'_> {
    pub(super) fn holds(
        &self,
        location: &str,
        condition: &Condition,
        input: &JValue,
    ) -> Result<bool, MappingError> {
        match condition {
            Condition::Always => Ok(true),
            Condition::Never => Ok(false),
            Condition::When(expression) => {
                let value = run(
                    &self.evaluation,
                    &format!("{location}.enabled"),
                    expression,
                    input,
                )?;
                Ok(truthy(&value))
            }
        }
    }

    fn entity(
        &self,
        entity: &CompiledEntity,
        result: &mut MappingResult,
    ) -> Result<(), MappingError> {
        let data = match &entity.pre {
            Some(expression) => run(
                &self.evaluation,
                &format!("{}.jsonataExpression", entity.location),
                expression,
                &self.root,
            )?,
            None => self.root.clone(),
        };
        let prune = entity.mode.prune_deletion();
        if data.is_undefined() && prune.is_none() {
            return Ok(());
        }
        // `enabled` sees the pre-processed data as a whole (e.g. `$count($) > 0`).
        if !self.holds(&entity.location, &entity.enabled, &data)? {
            return Ok(());
        }
        let mut keep = Vec::new();
        for (index, item) in items_of(&data).iter().enumerate() {
            let location = if entity.pre.is_some() {
                format!("{} item {index}", entity.location)
            } else {
                entity.location.clone()
            };
            let attributes =
                self.fields(&entity.fields, item, &entity.schema, &mut result.warnings)?;
            let mut unique_identifiers = Map::new();
            for attribute in &entity.unique_ids {
                match attributes.get(attribute) {
                    Some(value) if !is_empty_identifier(value) => {
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
            let pricing = match &entity.pricing {
                None => None,
                Some(pricing) => {
                    let extracted = match &pricing.extract {
                        Some(expression) => run(
                            &self.evaluation,
                            &format!("{}.pricing.jsonataExpression", entity.location),
                            expression,
                            item,
                        )?,
                        None => item.clone(),
                    };
                    let data: Vec<Value> = items_of(&extracted)
                        .iter()
                        .filter_map(to_json)
                        .filter(Value::is_object)
                        .collect();
                    Some(json!({"config": pricing.config, "data": data}))
                }
            };
            keep.push(Value::Object(unique_identifiers.clone()));
            result.entity_updates.push(EntityUpdate {
                entity_slug: entity.schema.clone(),
                unique_identifiers,
                attributes,
                mode: entity.mode.reported().to_owned(),
                pricing,
            });
        }
        if let (Some(deletion_mode), Some(scope)) = (prune, &entity.scope) {
            let scope = self.scope(&entity.location, &entity.schema, scope)?;
            if keep.is_empty() {
                result.warnings.push(warning(
                    &entity.schema,
                    "",
                    "the payload holds no entities for this mapping: every entity in the prune scope would be deleted",
                ));
            }
            result.prune_scope_updates.push(json!({
                "entity_slug": entity.schema,
                "scope": scope,
                "keep_unique_ids": keep,
                "deletion_mode": deletion_mode,
            }));
        }
        Ok(())
    }

    /// A prune scope, resolved against the original payload.
    fn scope(
        &self,
        location: &str,
        schema: &str,
        scope: &PruneScope,
    ) -> Result<Value, MappingError> {
        let resolve = |ids: &UniqueIds| -> Result<Map<String, Value>, MappingError> {
            ids.eval(&self.evaluation, &self.root)?
                .map_err(|attribute| MappingError::MissingIdentifier {
                    location: format!("{location}.scope"),
                    entity_schema: schema.to_owned(),
                    attribute,
                })
        };
        Ok(match scope {
            PruneScope::Relations { schema, ids } => {
                json!({"scope_mode": "relations", "schema": schema, "unique_ids": resolve(ids)?})
            }
            PruneScope::Query { query } => json!({"scope_mode": "query", "query": resolve(query)?}),
        })
    }

    /// The attributes of one item.
    pub(super) fn fields(
        &self,
        fields: &[CompiledField],
        item: &JValue,
        schema: &str,
        warnings: &mut Vec<Value>,
    ) -> Result<Map<String, Value>, MappingError> {
        let mut attributes = Map::new();
        for field in fields {
            if let Some(value) = self.field(field, item, schema, warnings)? {
                attributes.insert(field.attribute.clone(), value);
            }
        }
        Ok(attributes)
    }

    fn field(
        &self,
        field: &CompiledField,
        item: &JValue,
        schema: &str,
        warnings: &mut Vec<Value>,
    ) -> Result<Option<Value>, MappingError> {
        if !self.holds(&field.location, &field.enabled, item)? {
            return Ok(None);
        }
        let value = match &field.producer {
            Producer::Value(source) => source.eval(&self.evaluation, &field.location, item)?,
            Producer::Relations {
                operation,
                items,
                expression,
            } => self
                .relation_entries(field, item, items, expression.as_ref(), schema, warnings)?
                .map(|entries| json!({"$relation": {operation.as_str(): entries}})),
            Producer::RelationRefs {
                operation,
                items,
                expression,
            } => self
                .relation_ref_entries(field, item, items, expression.as_ref(), schema, warnings)?
                .map(|entries| json!({"$relation_ref": {operation.as_str(): entries}})),
            Producer::FileProxyUrl { use_case, params } => {
                self.file_proxy_url(field, item, use_case, params)?
            }
            Producer::PortalRef => {
                warnings.push(warning(
                    schema,
                    &field.attribute,
                    "PORTAL_REF_NO_MATCH: no portal configuration is available to erp-toolkit; attribute omitted",
                ));
                None
            }
            Producer::EnvVarRef {
                key,
                default,
                expression,
            } => self.env_var(
                field,
                key,
                default.as_deref(),
                expression.as_ref(),
                schema,
                warnings,
            )?,
        };
        Ok(value.map(|value| match field.repeatable {
            Some(kind) => repeatable(kind.key(), value, field.tags.as_ref()),
            None => value,
        }))
    }

    /// Relation (or, with `references`, relation_ref) entries produced by the field's JSONata
    /// form. Undefined leaves the attribute out; items that cannot be read are skipped with a
    /// warning; `[]` is an explicit empty list.
    fn dynamic_entries(
        &self,
        field: &CompiledField,
        item: &JValue,
        expression: Option<&crate::jsonata::Expression>,
        references: bool,
        schema: &str,
        warnings: &mut Vec<Value>,
    ) -> Result<Option<Vec<Value>>, MappingError> {
        let Some(expression) = expression else {
            return Ok(None);
        };
        let (key, label) = if references {
            ("relation_refs", "relation_ref")
        } else {
            ("relations", "relation")
        };
        let produced = run(
            &self.evaluation,
            &format!("{}.{key}.jsonataExpression", field.location),
            expression,
            item,
        )?;
        if produced.is_undefined() {
            return Ok(None);
        }
        let mut entries = Vec::new();
        for produced in items_of(&produced).iter().filter_map(to_json) {
            match dynamic_relation(&produced, item) {
                Ok(entry) if references && !entry.contains_key("path") => warnings.push(warning(
                    schema,
                    &field.attribute,
                    "relation_ref item skipped: path is missing",
                )),
                Ok(mut entry) => {
                    if !references {
                        entry.remove("path");
                        entry.remove("value");
                    }
                    entries.push(Value::Object(entry));
                }
                Err(reason) => warnings.push(warning(
                    schema,
                    &field.attribute,
                    format!("{label} item skipped: {reason}"),
                )),
            }
        }
        Ok(Some(entries))
    }

    fn relation_entries(
        &self,
        field: &CompiledField,
        item: &JValue,
        items: &[RelationItem],
        expression: Option<&crate::jsonata::Expression>,
        schema: &str,
        warnings: &mut Vec<Value>,
    ) -> Result<Option<Vec<Value>>, MappingError> {
        if items.is_empty() {
            return self.dynamic_entries(field, item, expression, false, schema, warnings);
        }
        let mut entries = Vec::new();
        for relation in items {
            match relation.ids.eval(&self.evaluation, item)? {
                Ok(ids) => {
                    let mut entry = Map::new();
                    entry.insert("$entity_unique_ids".into(), Value::Object(ids));
                    entry.insert("_schema".into(), json!(relation.schema));
                    if let Some(tags) = &relation.tags {
                        entry.insert("_tags".into(), tags.clone());
                    }
                    entries.push(Value::Object(entry));
                }
                Err(attribute) => warnings.push(warning(
                    schema,
                    &field.attribute,
                    format!(
                        "relation to {} skipped: unique id {attribute} is empty",
                        relation.schema
                    ),
                )),
            }
        }
        // Nothing resolvable: leave the relation as it is rather than clearing it.
        Ok((!entries.is_empty()).then_some(entries))
    }

    fn relation_ref_entries(
        &self,
        field: &CompiledField,
        item: &JValue,
        items: &[RelationRefItem],
        expression: Option<&crate::jsonata::Expression>,
        schema: &str,
        warnings: &mut Vec<Value>,
    ) -> Result<Option<Vec<Value>>, MappingError> {
        if items.is_empty() {
            return self.dynamic_entries(field, item, expression, true, schema, warnings);
        }
        let mut entries = Vec::new();
        for reference in items {
            let ids = match reference.ids.eval(&self.evaluation, item)? {
                Ok(ids) => ids,
                Err(attribute) => {
                    warnings.push(warning(
                        schema,
                        &field.attribute,
                        format!(
                            "relation_ref to {} skipped: unique id {attribute} is empty",
                            reference.schema
                        ),
                    ));
                    continue;
                }
            };
            let mut value = Map::new();
            value.insert("attribute".into(), json!(reference.value_attribute));
            if let Some(operation) = &reference.value_operation {
                value.insert("operation".into(), json!(operation));
            }
            if let Some(source) = &reference.value
                && let Some(v) = source.eval(
                    &self.evaluation,
                    &format!("{}.relation_refs.value", field.location),
                    item,
                )?
            {
                value.insert("value".into(), v);
            }
            entries.push(json!({
                "$entity_unique_ids": ids,
                "_schema": reference.schema,
                "path": reference.path,
                "value": value,
            }));
        }
        Ok((!entries.is_empty()).then_some(entries))
    }

    fn file_proxy_url(
        &self,
        field: &CompiledField,
        item: &JValue,
        use_case: &UseCaseRef,
        params: &[(String, crate::source::Source)],
    ) -> Result<Option<Value>, MappingError> {
        // Without an integration (a simulation) there is nothing to point at: skipped silently.
        let Some(proxy) = &self.context.file_proxy else {
            return Ok(None);
        };
        let (key, reference) = match use_case {
            UseCaseRef::Slug(slug) => ("useCaseSlug", slug),
            UseCaseRef::Id(id) => ("useCaseId", id),
        };
        let endpoint = if proxy.streaming_use_cases.contains(reference) {
            "stream/download"
        } else {
            "download"
        };
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("orgId", &proxy.org_id)
            .append_pair("integrationId", &proxy.integration_id)
            .append_pair(key, reference);
        for (name, source) in params {
            let location = format!("{}.file_proxy_url.params.{name}", field.location);
            if let Some(value) = source.eval(&self.evaluation, &location, item)? {
                let text = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                query.append_pair(name, &text);
            }
        }
        Ok(Some(json!(format!(
            "{}/{endpoint}?{}",
            proxy.base_url.trim_end_matches('/'),
            query.finish()
        ))))
    }

    fn env_var(
        &self,
        field: &CompiledField,
        key: &str,
        default: Option<&str>,
        expression: Option<&crate::jsonata::Expression>,
        schema: &str,
        warnings: &mut Vec<Value>,
    ) -> Result<Option<Value>, MappingError> {
        // A secret reads exactly like a missing key: no information about secrets leaks.
        let found = self
            .context
            .environment
            .as_ref()
            .and_then(|environment| environment.get(key))
            .filter(|value| !value.secret);
        let Some(found) = found else {
            if let Some(default) = default {
                return Ok(Some(json!(default)));
            }
            warnings.push(warning(
                schema,
                &field.attribute,
                format!("ENV_VAR_REF_NOT_FOUND: environment variable {key:?} is not set; attribute omitted"),
            ));
            return Ok(None);
        };
        let Some(expression) = expression else {
            return Ok(Some(json!(found.value)));
        };
        // Documented limit for env_var_ref expressions: 100 ms.
        let input = JValue::from(found.value.as_str());
        let evaluation =
            Evaluation::new(&input, self.context.timeout.min(Duration::from_millis(100)));
        let value = run(
            &evaluation,
            &format!("{}.env_var_ref.jsonataExpression", field.location),
            expression,
            &input,
        )?;
        Ok(to_json(&value))
    }

    fn meter_reading(
        &self,
        reading: &CompiledMeterReading,
        result: &mut MappingResult,
    ) -> Result<(), MappingError> {
        readings::map(self, reading, result)
    }
}

/// A relation (or relation_ref) item produced by JSONata: `{entity_schema, unique_ids:
/// [{attribute, constant|field}], _tags?, path?, value?}` into the extraction shape.
fn dynamic_relation(produced: &Value, item: &JValue) -> Result<Map<String, Value>, String> {
    let schema = produced
        .get("entity_schema")
        .and_then(Value::as_str)
        .ok_or("entity_schema is missing")?;
    let ids_config = produced
        .get("unique_ids")
        .and_then(Value::as_array)
        .ok_or("unique_ids is missing")?;
    let mut ids = Map::new();
    for id in ids_config {
        let attribute = id
            .get("attribute")
            .and_then(Value::as_str)
            .ok_or("a unique id has no attribute")?;
        let value = match (id.get("constant"), id.get("field").and_then(Value::as_str)) {
            (Some(constant), _) => Some(constant.clone()),
            (None, Some(key)) => item.get(key).and_then(to_json),
            (None, None) => None,
        };
        match value {
            Some(value) if !is_empty_identifier(&value) => {
                ids.insert(attribute.to_owned(), value);
            }
            _ => return Err(format!("unique id {attribute} of {schema} is empty")),
        }
    }
    let mut entry = Map::new();
    entry.insert("$entity_unique_ids".into(), Value::Object(ids));
    entry.insert("_schema".into(), json!(schema));
    for key in ["_tags", "path", "value"] {
        if let Some(v) = produced.get(key) {
            entry.insert(key.into(), v.clone());
        }
    }
    Ok(entry)
}

/// `_type: email|phone`: a scalar becomes `[{"email": v}]` (with `_tags` when configured); a
/// value that is already a list of items is kept as it is.
fn repeatable(key: &str, value: Value, tags: Option<&Value>) -> Value {
    match value {
        Value::Array(_) | Value::Null | Value::Object(_) => value,
        scalar => {
            let mut item = Map::new();
            if let Some(tags) = tags {
                item.insert("_tags".into(), tags.clone());
            }
            item.insert(key.into(), scalar);
            Value::Array(vec![Value::Object(item)])
        }
    }
}
