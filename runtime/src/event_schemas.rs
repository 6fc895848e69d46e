//! Extra JSON Schemas of core events (`<EventName>.schema.json` files, e.g. epilot's published
//! ones), loaded from a directory given at deployment (`--core-event-schemas`), that events posted
//! to `POST /v1/events` are checked against on top of the project's own catalog
//! (`erp_schemas::catalog`, always applied). Events whose name has no schema there pass this
//! check.
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
    use serde_json::json;

    /// A directory of `<Name>.schema.json` files, as a deployment would mount (here: the
    /// project's own catalog schemas, so the test needs nothing outside the repository).
    fn catalog_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let catalog = erp_schemas::catalog::events();
        for name in catalog.names() {
            let schema = catalog.latest(name).expect("known").schema();
            std::fs::write(
                dir.path().join(format!("{name}.schema.json")),
                schema.to_string(),
            )
            .expect("writes");
        }
        dir
    }

    #[test]
    fn events_pass_and_missing_required_fields_do_not() {
        let dir = catalog_dir();
        let schemas = EventSchemas::load(dir.path()).expect("schemas load");
        assert_eq!(
            schemas.len(),
            erp_schemas::catalog::events().names().count()
        );
        let event = json!({"_org_id": "o", "_event_id": "e", "_event_time": "2025-03-01T08:00:00Z",
            "_event_name": "OnDemandSyncCustomerRequested", "_event_version": "1.0",
            "external_id": "C-1", "contact_id": "c-1"});
        assert_eq!(
            schemas.check("OnDemandSyncCustomerRequested", &event),
            Ok(())
        );
        let mut broken = event.clone();
        if let Some(map) = broken.as_object_mut() {
            map.remove("contact_id");
        }
        let error = schemas
            .check("OnDemandSyncCustomerRequested", &broken)
            .expect_err("refused");
        assert!(error.contains("OnDemandSyncCustomerRequested"), "{error}");
        assert_eq!(schemas.check("NotInTheCatalog", &json!({})), Ok(()));
    }
}
