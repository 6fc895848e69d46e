//! The JSON Schema files under `schemas/json/`, embedded, and their bundling into self-contained
//! schemas. The files reference each other with relative `$ref`s (`../common.schema.json#/$defs/
//! address`), so a platform team can point any JSON Schema tool at the directory; a bundled schema
//! carries every definition it needs under `$defs`, for validators and for serving one schema at
//! a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::SchemaError;

/// One embedded schema file.
#[derive(Debug, Clone, Copy)]
pub struct SchemaFile {
    /// The path under `schemas/json/`, e.g. `entities/contact.schema.json`.
    pub path: &'static str,
    /// The file's text.
    pub text: &'static str,
}

macro_rules! schema_files {
    ($($path:literal),* $(,)?) => {
        &[$(SchemaFile { path: $path, text: include_str!(concat!("../../json/", $path)) }),*]
    };
}

/// Every file of `schemas/json/` (a test checks that none is missing).
pub static FILES: &[SchemaFile] = schema_files![
    "common.schema.json",
    "entities/account.schema.json",
    "entities/billing_account.schema.json",
    "entities/billing_event.schema.json",
    "entities/contact.schema.json",
    "entities/contract.schema.json",
    "entities/file.schema.json",
    "entities/meter.schema.json",
    "entities/meter_counter.schema.json",
    "entities/meter_reading.schema.json",
    "entities/order.schema.json",
    "entities/portal_user.schema.json",
    "entities/price.schema.json",
    "entities/product.schema.json",
    "entities/ticket.schema.json",
    "events/envelope.schema.json",
    "events/BillingAccountConnectionRemoved.schema.json",
    "events/BillingAddressUpdated.schema.json",
    "events/CustomerDetailsUpdated.schema.json",
    "events/CustomerRequestSubmitted.schema.json",
    "events/FileCreated.schema.json",
    "events/GeneralRequestCreated.schema.json",
    "events/InboundEventMapped.schema.json",
    "events/InstallmentUpdated.schema.json",
    "events/InvoiceSimulationRequested.schema.json",
    "events/LocationMoveRequested.schema.json",
    "events/MeterReadingAdded.schema.json",
    "events/OnDemandSyncContractRequested.schema.json",
    "events/OnDemandSyncCustomerRequested.schema.json",
    "events/OrderSubmission.schema.json",
    "events/PaymentMethodUpdated.schema.json",
    "events/ServiceInstallmentChange.schema.json",
    "events/ServiceMeterReadingAdded.schema.json",
    "events/TariffChange.schema.json",
    "events/TerminateContractRequested.schema.json",
];

/// The parsed files by path.
static PARSED: LazyLock<Result<BTreeMap<&'static str, Value>, String>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|file| {
            serde_json::from_str(file.text)
                .map(|value| (file.path, value))
                .map_err(|e| format!("{} is not JSON: {e}", file.path))
        })
        .collect()
});

/// The parsed file at `path` (under `schemas/json/`).
pub fn parsed(path: &str) -> Result<&'static Value, SchemaError> {
    let files = PARSED
        .as_ref()
        .map_err(|e| SchemaError::Catalog(e.clone()))?;
    files
        .get(path)
        .ok_or_else(|| SchemaError::Catalog(format!("no schema file {path}")))
}

/// The paths of the embedded files under `dir` (`entities`, `events`).
pub fn paths_under(dir: &str) -> impl Iterator<Item = &'static str> {
    let prefix = format!("{dir}/");
    FILES
        .iter()
        .map(|file| file.path)
        .filter(move |path| path.starts_with(&prefix))
}

/// `base`'s directory joined with the relative `reference`, `..` and `.` resolved.
fn join(base: &str, reference: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').collect();
    parts.pop();
    for part in reference.split('/') {
        match part {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// The file stem of a schema path: `entities/contact.schema.json` → `contact`.
fn stem(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.strip_suffix(".schema.json").unwrap_or(name)
}

/// Collects the definitions a bundled schema needs.
struct Bundler<'a> {
    files: &'a dyn Fn(&str) -> Option<&'a Value>,
    root: String,
    defs: Map<String, Value>,
    /// (file, JSON pointer) → name under `$defs`.
    names: HashMap<(String, String), String>,
}

impl Bundler<'_> {
    fn name_for(&self, file: &str, pointer: &str) -> String {
        let taken = |name: &str| self.names.values().any(|v| v == name);
        let wanted = pointer
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| stem(file))
            .to_owned();
        if !taken(&wanted) {
            return wanted;
        }
        let qualified = format!("{}.{wanted}", stem(file));
        (1..)
            .map(|n| match n {
                1 => qualified.clone(),
                n => format!("{qualified}{n}"),
            })
            .find(|name| !taken(name))
            .unwrap_or(qualified)
    }

    /// Rewrites every `$ref` in `value` (a part of the file `base`) to point into the bundle.
    fn rewrite(&mut self, value: &mut Value, base: &str) -> Result<(), SchemaError> {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get_mut("$ref") {
                    let new = self.resolve(reference, base)?;
                    *reference = new;
                }
                for (key, child) in map.iter_mut() {
                    // `const`, `enum` and `default` hold instance values, not schemas.
                    if !matches!(key.as_str(), "const" | "enum" | "default" | "examples") {
                        self.rewrite(child, base)?;
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.rewrite(item, base)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn resolve(&mut self, reference: &str, base: &str) -> Result<String, SchemaError> {
        let (file_part, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let file = if file_part.is_empty() {
            base.to_owned()
        } else {
            join(base, file_part)
        };
        if file == self.root {
            return Ok(format!("#{pointer}"));
        }
        let key = (file.clone(), pointer.to_owned());
        if let Some(name) = self.names.get(&key) {
            return Ok(format!("#/$defs/{name}"));
        }
        let name = self.name_for(&file, pointer);
        self.names.insert(key, name.clone());
        let mut target = (self.files)(&file)
            .ok_or_else(|| SchemaError::Catalog(format!("{base}: no schema file {file}")))?
            .pointer(pointer)
            .cloned()
            .ok_or_else(|| {
                SchemaError::Catalog(format!("{base}: $ref {reference} points at nothing"))
            })?;
        if let Value::Object(map) = &mut target {
            // A whole document's own definitions are bundled one by one, as they are used.
            map.remove("$defs");
            map.remove("$schema");
        }
        self.rewrite(&mut target, &file)?;
        self.defs.insert(name.clone(), target);
        Ok(format!("#/$defs/{name}"))
    }
}

/// The schema file at `path`, self-contained: every definition it references (in other files
/// too) copied under `$defs`, every `$ref` pointing there.
pub fn bundle(path: &str) -> Result<Value, SchemaError> {
    let files = PARSED
        .as_ref()
        .map_err(|e| SchemaError::Catalog(e.clone()))?;
    bundle_in(&|file| files.get(file), path)
}

/// [`bundle`] within another set of files (a released snapshot): `files` answers a path.
pub fn bundle_in<'a>(
    files: &'a dyn Fn(&str) -> Option<&'a Value>,
    path: &str,
) -> Result<Value, SchemaError> {
    let mut schema = files(path)
        .ok_or_else(|| SchemaError::Catalog(format!("no schema file {path}")))?
        .clone();
    let mut bundler = Bundler {
        files,
        root: path.to_owned(),
        defs: Map::new(),
        names: HashMap::new(),
    };
    let own: Vec<String> = schema
        .get("$defs")
        .and_then(Value::as_object)
        .map(|defs| defs.keys().cloned().collect())
        .unwrap_or_default();
    for name in own {
        // The file's own definitions keep their names.
        bundler
            .names
            .insert((path.to_owned(), format!("/$defs/{name}")), name);
    }
    bundler.rewrite(&mut schema, path)?;
    if let Value::Object(map) = &mut schema {
        let defs = map
            .entry("$defs")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(defs) = defs {
            defs.extend(bundler.defs);
        }
        if defs_is_empty(map) {
            map.remove("$defs");
        }
    }
    Ok(schema)
}

fn defs_is_empty(map: &Map<String, Value>) -> bool {
    map.get("$defs")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_directory_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("json");
        let mut on_disk = Vec::new();
        for dir in ["", "entities", "events"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("schemas/json is readable") {
                let path = entry.expect("entry").path();
                if path.extension().is_some_and(|e| e == "json") {
                    let relative = path.strip_prefix(&root).expect("under root");
                    on_disk.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|f| f.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn joins_relative_references() {
        assert_eq!(
            join("entities/contact.schema.json", "../common.schema.json"),
            "common.schema.json"
        );
        assert_eq!(
            join("events/A.schema.json", "envelope.schema.json"),
            "events/envelope.schema.json"
        );
        assert_eq!(
            join("events/A.schema.json", "./../entities/x.schema.json"),
            "entities/x.schema.json"
        );
    }

    #[test]
    fn a_bundle_references_only_its_own_definitions() {
        for file in FILES {
            let bundled = bundle(file.path).expect("bundles");
            let text = bundled.to_string();
            assert!(!text.contains(".schema.json"), "{}: {text}", file.path);
            let defs = bundled.get("$defs").and_then(Value::as_object);
            let mut refs = Vec::new();
            collect_refs(&bundled, &mut refs);
            for reference in refs {
                let name = reference.strip_prefix("#/$defs/");
                if let Some(name) = name {
                    let name = name.split('/').next().unwrap_or(name);
                    assert!(
                        defs.is_some_and(|d| d.contains_key(name)),
                        "{}: {reference} dangles",
                        file.path
                    );
                }
            }
        }
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
