//! JSON Schemas of catalog core events (epilot's `<EventName>.schema.json` files), loaded from a
//! directory given at deployment, to validate events posted to `POST /v1/events`. Events whose
//! name has no schema there are accepted unchecked (custom events).
//!
//! The schemas are applied to what the event itself defines: its required fields and every
//! property that is not a hydrated entity (an object, or a list of objects). Entities are open in
//! epilot (organisations add attributes) and epilot's own published samples do not pass the
//! nested entity schemas, so checking them would reject real events.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

/// The schema without the schemas of hydrated entities (object and list-of-object properties).
fn shallow(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        for property in properties.values_mut() {
            let kind = property.get("type").and_then(Value::as_str).unwrap_or("");
            let item_kind = property
                .get("items")
                .and_then(|items| items.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let entity = kind == "object"
                || property.get("$ref").is_some()
                || (kind == "array"
                    && (item_kind == "object" || property["items"].get("$ref").is_some()));
            if entity {
                *property = Value::Bool(true);
            }
        }
    }
    schema
}

/// Compiled schemas by event name.
pub struct EventSchemas {
    validators: HashMap<String, jsonschema::Validator>,
}

impl EventSchemas {
    /// Loads every `*.schema.json` in `dir`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let mut validators = HashMap::new();
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".schema.json"))
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let schema: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
            let validator = jsonschema::validator_for(&shallow(&schema))
                .map_err(|e| format!("{} is not a usable JSON Schema: {e}", path.display()))?;
            validators.insert(name.to_owned(), validator);
        }
        Ok(Self { validators })
    }

    /// How many schemas are loaded.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// The names of the events with a schema, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.validators.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Whether none is loaded.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// Checks an event against its schema: `Err` names the first violation and where it is.
    pub fn check(&self, name: &str, event: &Value) -> Result<(), String> {
        let Some(validator) = self.validators.get(name) else {
            return Ok(());
        };
        match validator.iter_errors(event).next() {
            None => Ok(()),
            Some(error) => {
                let at = error.instance_path().to_string();
                Err(format!(
                    "does not match the {name} schema at {}: {error}",
                    if at.is_empty() { "/" } else { &at }
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Option<std::path::PathBuf> {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|d| d.join("shared/reference/epilot/core-events"))
            .find(|d| d.is_dir())
    }

    #[test]
    fn epilot_samples_pass_and_missing_required_fields_do_not() {
        let Some(dir) = catalog() else {
            eprintln!("shared core-event catalog not found: skipped");
            return;
        };
        let schemas = EventSchemas::load(&dir).expect("schemas load");
        assert!(schemas.len() >= 15, "{} schemas", schemas.len());
        for entry in std::fs::read_dir(&dir).expect("dir").filter_map(Result::ok) {
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".sample.json"))
            else {
                continue;
            };
            let sample: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("sample"))
                    .expect("json");
            assert_eq!(schemas.check(name, &sample), Ok(()), "{name}");
            let mut broken = sample.clone();
            if let Some(map) = broken.as_object_mut() {
                map.remove("_event_id");
            }
            assert!(
                schemas.check(name, &broken).is_err(),
                "{name} without _event_id"
            );
        }
        assert_eq!(
            schemas.check("NotInTheCatalog", &serde_json::json!({})),
            Ok(())
        );
    }
}
