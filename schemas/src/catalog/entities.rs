//! The core entity schemas (spec §5) and the checks of mapping output against them.
//!
//! A mapping's entity update is partial: an upsert carries only the mapped attributes, so an
//! update is checked attribute by attribute, never for `required`. What is checked is what would
//! corrupt the entity: wrong types, values outside an enum, malformed dates and emails, the shapes
//! of repeatable email/phone/address/payment items and of relations. Attributes the schema does
//! not describe are custom attributes and pass, as in epilot. `null` clears an attribute and
//! passes. An array attribute may also be one array operation (`{"_append": [...]}`, spec §4.11),
//! a relation the extraction form `{"$relation": {"_set": [...]}}` (spec §4.5).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::files::{bundle, paths_under};
use super::violation::{Violation, collect, escape};
use crate::SchemaError;

const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";
const ARRAY_OPERATIONS: [&str; 3] = ["_set", "_append", "_append_all"];

/// Compiles a schema with format checking on (dates, emails and uuids are part of the contract).
pub(crate) fn compile(schema: &Value, what: &str) -> Result<jsonschema::Validator, SchemaError> {
    let mut schema = schema.clone();
    required_apart(&mut schema);
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| SchemaError::Catalog(format!("{what} does not compile: {e}")))
}

/// Moves every `required` next to `properties` into an `allOf` part of its own. jsonschema 0.41
/// fuses `required` into its `properties` validator in some shapes and then drops it — with two
/// required names and 15 or more properties, or with an `additionalProperties` schema — so
/// `required` is never seen beside `properties` (same meaning, and the violation keeps its
/// keyword and instance path).
fn required_apart(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties")
                && let Some(required) = map.remove("required")
            {
                let part = json!({ "required": required });
                match map.get_mut("allOf") {
                    Some(Value::Array(parts)) => parts.push(part),
                    _ => {
                        map.insert("allOf".into(), json!([part]));
                    }
                }
            }
            for (key, child) in map.iter_mut() {
                if !matches!(key.as_str(), "const" | "enum" | "default" | "examples") {
                    required_apart(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(required_apart),
        _ => {}
    }
}

/// How an attribute's update value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    /// An array: also accepts one array operation around the array.
    Array,
    /// `{"$relation": [...]}` or the extraction form `{"$relation": {"_set": [...]}}`.
    Relation,
    /// `{"$relation_ref": [...]}` or the extraction form.
    RelationRef,
}

struct Attribute {
    kind: Kind,
    validator: jsonschema::Validator,
}

/// One entity schema, compiled.
pub struct EntitySchema {
    slug: String,
    path: &'static str,
    schema: Value,
    validator: jsonschema::Validator,
    attributes: BTreeMap<String, Attribute>,
}

impl std::fmt::Debug for EntitySchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntitySchema")
            .field("slug", &self.slug)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The properties a schema declares, its own and those of the definitions it extends (`allOf`).
fn declared_properties(schema: &Value, defs: &Map<String, Value>) -> Map<String, Value> {
    let mut properties = Map::new();
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(target) = local_target(part, defs) {
            properties.extend(declared_properties(target, defs));
        }
    }
    if let Some(own) = schema.get("properties").and_then(Value::as_object) {
        properties.extend(own.clone());
    }
    properties
}

/// The definition a `{"$ref": "#/$defs/x"}` schema points at.
fn local_target<'a>(schema: &Value, defs: &'a Map<String, Value>) -> Option<&'a Value> {
    let reference = schema.get("$ref")?.as_str()?;
    defs.get(reference.strip_prefix("#/$defs/")?)
}

fn kind_of(schema: &Value, defs: &Map<String, Value>) -> Kind {
    match schema.get("$ref").and_then(Value::as_str) {
        Some("#/$defs/relation") => return Kind::Relation,
        Some("#/$defs/relation_ref") => return Kind::RelationRef,
        _ => {}
    }
    let mut current = schema;
    for _ in 0..8 {
        let is_array = match current.get("type") {
            Some(Value::String(t)) => t == "array",
            Some(Value::Array(types)) => types.iter().any(|t| t == "array"),
            _ => false,
        };
        if is_array {
            return Kind::Array;
        }
        match local_target(current, defs) {
            Some(next) => current = next,
            None => break,
        }
    }
    Kind::Plain
}

impl EntitySchema {
    fn load(path: &'static str) -> Result<Self, SchemaError> {
        let schema = bundle(path)?;
        let slug = schema
            .get("x-entity-schema")
            .and_then(Value::as_str)
            .ok_or_else(|| SchemaError::Catalog(format!("{path} has no x-entity-schema")))?
            .to_owned();
        let validator = compile(&schema, path)?;
        let defs = schema
            .get("$defs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut attributes = BTreeMap::new();
        for (name, property) in declared_properties(&schema, &defs) {
            let mut standalone = match &property {
                Value::Object(map) => map.clone(),
                other => Map::from_iter([("allOf".to_owned(), json!([other]))]),
            };
            standalone.insert("$schema".into(), json!(DRAFT));
            standalone.insert("$defs".into(), Value::Object(defs.clone()));
            let validator = compile(&Value::Object(standalone), &format!("{path} {name}"))?;
            let kind = kind_of(&property, &defs);
            attributes.insert(name, Attribute { kind, validator });
        }
        Ok(Self {
            slug,
            path,
            schema,
            validator,
            attributes,
        })
    }

    /// The entity schema slug (`contact`, …; `meter_reading` for readings).
    pub fn slug(&self) -> &str {
        &self.slug
    }

    /// The source file under `schemas/json/`.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// The schema, self-contained (bundled).
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// The attributes the schema describes (system fields included), sorted.
    pub fn attribute_names(&self) -> impl Iterator<Item = &str> {
        self.attributes.keys().map(String::as_str)
    }

    /// Checks a whole entity as stored or hydrated into an event (its required fields too).
    pub fn check_entity(&self, entity: &Value) -> Vec<Violation> {
        collect(&self.validator, entity)
    }

    /// Checks the attributes of one entity update (or meter reading update) of a mapping: each
    /// described attribute on its own, nothing required. Paths are relative to `attributes`.
    pub fn check_update(&self, attributes: &Map<String, Value>) -> Vec<Violation> {
        let mut violations = Vec::new();
        for (name, value) in attributes {
            let Some(attribute) = self.attributes.get(name) else {
                continue;
            };
            if value.is_null() {
                continue;
            }
            let at = format!("/{}", escape(name));
            violations.extend(check_attribute(attribute, value, &at));
        }
        violations
    }
}

fn check_attribute(attribute: &Attribute, value: &Value, at: &str) -> Vec<Violation> {
    let under = |violations: Vec<Violation>, prefix: &str| -> Vec<Violation> {
        violations.into_iter().map(|v| v.under(prefix)).collect()
    };
    match attribute.kind {
        Kind::Array => {
            if let Some((operation, items)) = array_operation(value) {
                return under(
                    collect(&attribute.validator, items),
                    &format!("{at}/{operation}"),
                );
            }
        }
        Kind::Relation | Kind::RelationRef => {
            let (key, operations) = if attribute.kind == Kind::Relation {
                ("$relation", &common().relation_operation)
            } else {
                ("$relation_ref", &common().relation_ref_operation)
            };
            if let Some(operation @ Value::Object(_)) = value.get(key) {
                return under(
                    collect(operations, operation),
                    &format!("{at}/{}", escape(key)),
                );
            }
        }
        Kind::Plain => {}
    }
    under(collect(&attribute.validator, value), at)
}

/// `{"_set" | "_append" | "_append_all": value}` → the operation and its value.
fn array_operation(value: &Value) -> Option<(&str, &Value)> {
    let map = value.as_object()?;
    if map.len() != 1 {
        return None;
    }
    let (key, items) = map.iter().next()?;
    ARRAY_OPERATIONS
        .contains(&key.as_str())
        .then_some((key.as_str(), items))
}

/// Validators of the shared definitions a mapping's extraction forms use.
struct Common {
    relation_operation: jsonschema::Validator,
    relation_ref_operation: jsonschema::Validator,
}

fn common() -> &'static Common {
    static COMMON: std::sync::LazyLock<Common> = std::sync::LazyLock::new(|| {
        let load = || -> Result<Common, SchemaError> {
            let mut schema = bundle("common.schema.json")?;
            let mut at = |name: &str| -> Result<jsonschema::Validator, SchemaError> {
                if let Value::Object(map) = &mut schema {
                    map.insert("$ref".into(), json!(format!("#/$defs/{name}")));
                }
                compile(&schema, name)
            };
            Ok(Common {
                relation_operation: at("relation_operation")?,
                relation_ref_operation: at("relation_ref_operation")?,
            })
        };
        // The embedded schemas are constants; the crate's tests compile every one of them.
        load().unwrap_or_else(|e| panic!("{e}"))
    });
    &COMMON
}

/// The core entity schemas and the meter reading schema.
pub struct EntityCatalog {
    schemas: BTreeMap<String, EntitySchema>,
}

/// The slug of the meter reading schema (readings are not entities, but mappings produce them).
pub const METER_READING: &str = "meter_reading";

impl EntityCatalog {
    pub(crate) fn load() -> Result<Self, SchemaError> {
        let mut schemas = BTreeMap::new();
        for path in paths_under("entities") {
            let schema = EntitySchema::load(path)?;
            schemas.insert(schema.slug.clone(), schema);
        }
        if !schemas.contains_key(METER_READING) {
            return Err(SchemaError::Catalog("no meter_reading schema".into()));
        }
        Ok(Self { schemas })
    }

    /// The schema of a core entity (or `meter_reading`), `None` for any other slug.
    pub fn get(&self, slug: &str) -> Option<&EntitySchema> {
        self.schemas.get(slug)
    }

    /// Whether `slug` is one of the core entities (not `meter_reading`, not a custom schema).
    pub fn is_core(&self, slug: &str) -> bool {
        slug != METER_READING && self.schemas.contains_key(slug)
    }

    /// The core entity slugs, sorted (without `meter_reading`).
    pub fn slugs(&self) -> impl Iterator<Item = &str> {
        self.schemas
            .keys()
            .map(String::as_str)
            .filter(|slug| *slug != METER_READING)
    }

    /// The meter reading schema.
    pub fn meter_reading(&self) -> &EntitySchema {
        // `load` refuses a catalog without it.
        &self.schemas[METER_READING]
    }

    /// Checks one entity update of a mapping: `None` when `slug` has no schema here (a custom
    /// entity schema, checked by nobody), else the violations (paths relative to `attributes`).
    pub fn check_update(
        &self,
        slug: &str,
        attributes: &Map<String, Value>,
    ) -> Option<Vec<Violation>> {
        self.get(slug).map(|schema| schema.check_update(attributes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_holds_beside_many_properties() {
        let mut properties = Map::new();
        for i in 0..20 {
            properties.insert(format!("p{i}"), json!({"type": "string"}));
        }
        for extra in [json!(true), json!({"type": "string"})] {
            let schema = json!({"properties": properties, "required": ["a", "b"], "additionalProperties": extra});
            let validator = compile(&schema, "test").expect("compiles");
            let errors: Vec<Violation> = collect(&validator, &json!({"b": "x"}));
            assert_eq!(errors.len(), 1, "{extra}");
            assert_eq!(
                (errors[0].path.as_str(), errors[0].keyword.as_str()),
                ("/a", "required")
            );
        }
    }
}
