//! Versioning rules for the schemas we publish, checked against a committed snapshot of the
//! previous release (`schemas/released/<version>.json`), so a release never breaks a consumer
//! silently:
//!
//! - an Avro record stays FULL-compatible (BACKWARD: the new schema reads old records, for
//!   consumers that upgrade first and replay; FORWARD: the released schema reads new records, for
//!   consumers that upgrade later). A change that cannot be is a new record on a new subject;
//! - an entity schema accepts everything the released one described (its attributes keep a
//!   compatible type, nothing becomes required);
//! - an event keeps every released major version; within a major the schema accepts everything
//!   the released one did, and any change of what it accepts bumps the minor version.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::SchemaError;
use crate::avro::AvroRecord;
use crate::catalog::compat::compare;
use crate::catalog::events::EventVersion;
use crate::catalog::files::{FILES, bundle, bundle_in};
use crate::registry::can_read;

/// A snapshot of every schema source: `{"release", "json": {path: schema}, "avro": {name:
/// schema}}`.
pub fn snapshot(release: &str) -> Result<Value, SchemaError> {
    let mut json_files = Map::new();
    for file in FILES {
        let value: Value = serde_json::from_str(file.text)
            .map_err(|e| SchemaError::Catalog(format!("{}: {e}", file.path)))?;
        json_files.insert(file.path.to_owned(), value);
    }
    let mut avro = Map::new();
    for record in AvroRecord::ALL {
        let value: Value = serde_json::from_str(record.schema_text())
            .map_err(|e| SchemaError::Catalog(format!("{}.avsc: {e}", record.name())))?;
        avro.insert(record.name().to_owned(), value);
    }
    Ok(json!({"release": release, "json": json_files, "avro": avro}))
}

/// The schema without what does not change what it accepts (titles, descriptions, examples).
fn accepted(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "title" | "description" | "examples" | "$comment"
                    )
                })
                .map(|(k, v)| (k.clone(), accepted(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(accepted).collect()),
        other => other.clone(),
    }
}

/// Every way the current schemas break the rules against `snapshot`; empty when they hold.
pub fn check_against(snapshot: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let release = snapshot
        .get("release")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let empty = Map::new();
    let avro = snapshot
        .get("avro")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (name, released) in avro {
        check_avro(release, name, released, &mut problems);
    }
    let files: BTreeMap<String, Value> = snapshot
        .get("json")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let lookup = |path: &str| files.get(path);
    for path in files.keys() {
        let old = match bundle_in(&lookup, path) {
            Ok(old) => old,
            Err(e) => {
                problems.push(format!(
                    "{release} {path}: the snapshot does not bundle: {e}"
                ));
                continue;
            }
        };
        if path.starts_with("entities/") || path == "events/envelope.schema.json" {
            match bundle(path) {
                Ok(new) => problems.extend(
                    compare(&old, &new)
                        .into_iter()
                        .map(|d| format!("{path}: since {release}: {d}")),
                ),
                Err(_) => problems.push(format!("{path}: released in {release}, now missing")),
            }
        } else if path.starts_with("events/") {
            check_event(release, path, &old, &mut problems);
        }
    }
    problems
}

fn check_avro(release: &str, name: &str, released: &Value, problems: &mut Vec<String>) {
    let Some(record) = AvroRecord::ALL.into_iter().find(|r| r.name() == name) else {
        problems.push(format!(
            "Avro record {name}: released in {release}, now missing"
        ));
        return;
    };
    let old = match apache_avro::Schema::parse(released) {
        Ok(old) => old,
        Err(e) => {
            problems.push(format!(
                "Avro record {name} of {release} does not parse: {e}"
            ));
            return;
        }
    };
    let new = match record.schema() {
        Ok(new) => new,
        Err(e) => {
            problems.push(e.to_string());
            return;
        }
    };
    if let Err(reason) = can_read(&old, new) {
        problems.push(format!(
            "Avro record {name}: not BACKWARD-compatible with {release}: {reason}"
        ));
    }
    if let Err(reason) = can_read(new, &old) {
        problems.push(format!(
            "Avro record {name}: not FORWARD-compatible with {release}: {reason}"
        ));
    }
}

fn check_event(release: &str, path: &str, old: &Value, problems: &mut Vec<String>) {
    let text = |key: &str| old.get(key).and_then(Value::as_str).unwrap_or_default();
    let name = text("x-event-name");
    let Ok(version) = text("x-event-version").parse::<EventVersion>() else {
        problems.push(format!("{path} of {release} has no valid x-event-version"));
        return;
    };
    let catalog = match crate::catalog::try_events() {
        Ok(catalog) => catalog,
        Err(e) => {
            problems.push(e.to_string());
            return;
        }
    };
    let current = match catalog.lookup(name, &version.to_string()) {
        Ok(current) if current.version().major == version.major => current,
        _ => {
            problems.push(format!(
                "{name} {version}: released in {release}, its major version is gone from the catalog"
            ));
            return;
        }
    };
    let differences = compare(old, current.schema());
    problems.extend(differences.iter().map(|d| {
        format!(
            "{name} {version} → {}: since {release}: {d}",
            current.version()
        )
    }));
    if current.version() == version && accepted(old) != accepted(current.schema()) {
        problems.push(format!(
            "{name} {version}: the schema changed since {release} without a version bump (bump the minor)"
        ));
    }
}
